//! Stage two's toolkit: typed readers over spanned nodes that record a diagnostic for every
//! problem and keep going, so one run reports everything wrong with a file.

use crate::diag::{Diagnostics, did_you_mean};
use crate::span::{Sp, Span, Text};
use crate::yaml::{Node, ScalarKind, Value};

/// Largest list or mapping we decode; bounds work on hostile input.
pub(crate) const MAX_ITEMS: usize = 10_000;

pub(crate) type Reader<T> = fn(&mut Diagnostics, &Node) -> Option<T>;

fn expected(d: &mut Diagnostics, n: &Node, what: &str) {
    d.error(n.span, "type", format!("expected {what}, found {}", n.kind_name()));
}

/// Any scalar as text; numbers and booleans as spelt. `null` is absent.
pub(crate) fn text(d: &mut Diagnostics, n: &Node) -> Option<Text> {
    match &n.value {
        Value::Scalar(s) => Some(Sp::new(s.text.clone(), n.span)),
        Value::Null => None,
        _ => {
            expected(d, n, "a string");
            None
        }
    }
}

/// Like [`text`], but `null` (an empty value) is the empty string.
pub(crate) fn text_or_empty(d: &mut Diagnostics, n: &Node) -> Option<Text> {
    match &n.value {
        Value::Null => Some(Sp::new(String::new(), n.span)),
        _ => text(d, n),
    }
}

pub(crate) fn boolean(d: &mut Diagnostics, n: &Node) -> Option<Sp<bool>> {
    match &n.value {
        Value::Null => None,
        Value::Scalar(s) => {
            let b = match s.kind {
                ScalarKind::Bool(b) => Some(b),
                _ => match s.text.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" => Some(true),
                    "false" | "no" | "off" => Some(false),
                    _ => None,
                },
            };
            if b.is_none() {
                d.error(n.span, "type", format!("expected true or false, found `{}`", s.text));
            }
            b.map(|b| Sp::new(b, n.span))
        }
        _ => {
            expected(d, n, "true or false");
            None
        }
    }
}

/// A non-negative whole number, bare or quoted (`600`, `'600'`).
pub(crate) fn count(d: &mut Diagnostics, n: &Node) -> Option<Sp<u64>> {
    match &n.value {
        Value::Null => None,
        Value::Scalar(s) => match s.text.trim().parse::<u64>() {
            Ok(v) => Some(Sp::new(v, n.span)),
            Err(_) => {
                d.error(n.span, "type", format!("expected a whole number, found `{}`", s.text));
                None
            }
        },
        _ => {
            expected(d, n, "a whole number");
            None
        }
    }
}

/// A list read item by item. A missing or empty value is an empty list.
pub(crate) fn list<T>(d: &mut Diagnostics, n: &Node, item: Reader<T>) -> Vec<T> {
    match &n.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => {
            if items.len() > MAX_ITEMS {
                d.error(n.span, "too-large", format!("list has {} items; the limit is {MAX_ITEMS}", items.len()));
                return Vec::new();
            }
            items.iter().filter_map(|i| item(d, i)).collect()
        }
        _ => {
            expected(d, n, "a list");
            Vec::new()
        }
    }
}

/// A list of strings; a single string is taken as a list of one.
pub(crate) fn strings(d: &mut Diagnostics, n: &Node) -> Vec<Text> {
    match &n.value {
        Value::Scalar(_) => text(d, n).into_iter().collect(),
        _ => list(d, n, text),
    }
}

/// The entries of a mapping with bookkeeping of which keys were read, so that the rest can be
/// reported as unknown with a suggestion.
pub(crate) struct Fields<'n> {
    what: &'static str,
    span: Span,
    entries: Vec<(&'n Node, &'n Node)>,
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    /// Opens a mapping node. `null` is an empty mapping; anything else is an error.
    pub(crate) fn open(d: &mut Diagnostics, n: &'n Node, what: &'static str) -> Option<Self> {
        let entries: Vec<(&Node, &Node)> = match &n.value {
            Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
            Value::Null => Vec::new(),
            _ => {
                d.error(n.span, "type", format!("expected {what} (a mapping), found {}", n.kind_name()));
                return None;
            }
        };
        if entries.len() > MAX_ITEMS {
            d.error(n.span, "too-large", format!("mapping has {} keys; the limit is {MAX_ITEMS}", entries.len()));
            return None;
        }
        let used = vec![false; entries.len()];
        Some(Fields { what, span: n.span, entries, used, known: Vec::new() })
    }

    pub(crate) fn span(&self) -> Span {
        self.span
    }

    /// The value under `key`, marking the key as known. `null` values are absent.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _)| k.as_text() == Some(key))?;
        self.used[i] = true;
        Some(self.entries[i].1).filter(|v| !v.is_null())
    }

    /// The key node under `key`, for positions of present-but-empty fields.
    pub(crate) fn key_span(&self, key: &str) -> Option<Span> {
        self.entries.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(k, _)| k.span)
    }

    pub(crate) fn opt<T>(&mut self, d: &mut Diagnostics, key: &'static str, read: Reader<T>) -> Option<T> {
        self.get(key).and_then(|n| read(d, n))
    }

    /// A field that must be present.
    pub(crate) fn req<T>(&mut self, d: &mut Diagnostics, key: &'static str, read: Reader<T>) -> Option<T> {
        match self.get(key) {
            Some(n) => read(d, n),
            None => {
                let span = self.key_span(key).unwrap_or(self.span);
                d.error(span, "missing-field", format!("{} is missing `{key}`", self.what));
                None
            }
        }
    }

    pub(crate) fn list<T>(&mut self, d: &mut Diagnostics, key: &'static str, item: Reader<T>) -> Vec<T> {
        self.get(key).map(|n| list(d, n, item)).unwrap_or_default()
    }

    pub(crate) fn strings(&mut self, d: &mut Diagnostics, key: &'static str) -> Vec<Text> {
        self.get(key).map(|n| strings(d, n)).unwrap_or_default()
    }

    /// Marks keys as known without reading them (accepted for compatibility, no effect).
    pub(crate) fn accept(&mut self, keys: &[&'static str]) {
        for k in keys {
            let _ = self.get(k);
        }
    }

    /// Entries whose keys were not read, in order.
    pub(crate) fn rest(&self) -> impl Iterator<Item = (&'n Node, &'n Node)> + '_ {
        self.entries.iter().zip(&self.used).filter(|(_, u)| !**u).map(|(e, _)| *e)
    }

    /// Reports every key that was not read as unknown (a warning: Release accepted such files).
    pub(crate) fn finish(self, d: &mut Diagnostics) {
        for (k, _) in self.rest() {
            let name = k.as_text().unwrap_or("?");
            d.warn(k.span, "unknown-key", format!("unknown key `{name}` in {}; it is ignored", self.what));
            if name == "datasets" && self.what == "application template" {
                // Release allows Instant Datasets per environment template only.
                d.hint(
                    "`datasets` belongs to an environment template: `environment_templates: [{name: ephemeral, datasets: [{name: NAME}]}]`",
                );
            } else if let Some(s) = did_you_mean(name, self.known.iter().copied()) {
                d.hint(format!("did you mean `{s}`?"));
            }
        }
    }
}
