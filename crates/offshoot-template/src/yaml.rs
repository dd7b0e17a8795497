//! Stage one: YAML text to a tree of spanned nodes.
//!
//! serde-saphyr does the parsing (YAML 1.1 scalars, merge keys, alias budgets); this module keeps
//! every node's position and, for plain scalars that YAML resolved to booleans or numbers, the
//! exact spelling (`0755`, `1.10`, `y`), because Release takes such values as the strings they
//! spell. Duplicate keys are kept until here and then reported: the last one wins.

use crate::diag::Diagnostics;
use crate::span::Span;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::options::DuplicateKeyPolicy;
use serde_saphyr::{Location, Spanned};
use std::fmt;

/// Largest file we read: Release files are kilobytes; this bounds memory and time on hostile input.
pub const MAX_SOURCE_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug)]
pub struct Scalar {
    /// The string value, or for a plain scalar resolved to a bool or number, its spelling.
    pub text: String,
    pub kind: ScalarKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarKind {
    Str,
    Bool(bool),
    Int(i128),
    Float(f64),
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(s) => match s.kind {
                ScalarKind::Str => "a string",
                ScalarKind::Bool(_) => "a boolean",
                ScalarKind::Int(_) | ScalarKind::Float(_) => "a number",
            },
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar node (any scalar; numbers and booleans as spelt).
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
    }
}

/// What the parser hands us before spans are attached to children.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = a.next_key()? {
            let value = a.next_value()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

fn span_of(loc: &Location) -> Span {
    let s = loc.span();
    Span {
        line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
        column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        offset: s.byte_offset().and_then(|o| usize::try_from(o).ok()).unwrap_or(0),
        len: s.byte_len().and_then(|l| usize::try_from(l).ok()).unwrap_or(0),
    }
}

/// The source text of a node where it was defined (through aliases, at its anchor).
fn spelling<'s>(src: &'s str, loc: &Location) -> Option<&'s str> {
    let s = span_of(loc);
    src.get(s.offset..s.offset + s.len).filter(|t| !t.is_empty())
}

fn convert(src: &str, raw: Spanned<Raw>, diags: &mut Diagnostics) -> Node {
    let span = span_of(&raw.referenced);
    let typed = |kind: ScalarKind, fallback: String| {
        let text = spelling(src, &raw.defined).map_or(fallback, str::to_owned);
        Value::Scalar(Scalar { text, kind })
    };
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => typed(ScalarKind::Bool(b), b.to_string()),
        Raw::Int(i) => typed(ScalarKind::Int(i), i.to_string()),
        Raw::Float(f) => typed(ScalarKind::Float(f), f.to_string()),
        Raw::Str(s) => Value::Scalar(Scalar { text: s, kind: ScalarKind::Str }),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| convert(src, i, diags)).collect()),
        Raw::Map(entries) => {
            let mut out: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let k = convert(src, k, diags);
                let v = convert(src, v, diags);
                let dup = k.as_text().and_then(|kt| out.iter().position(|(ok, _)| ok.as_text() == Some(kt)));
                if let Some(i) = dup {
                    let first = out.remove(i).0;
                    diags.warn(
                        k.span,
                        "duplicate-key",
                        format!(
                            "duplicate key `{}` (first at line {}); the last one wins",
                            k.as_text().unwrap_or_default(),
                            first.span.line
                        ),
                    );
                    diags.hint("remove one of the two entries");
                }
                out.push((k, v));
            }
            Value::Map(out)
        }
    };
    Node { value, span }
}

/// Parses one YAML document. Syntax errors become one error diagnostic at the right line;
/// duplicate keys become warnings.
pub fn parse(src: &str, diags: &mut Diagnostics) -> Option<Node> {
    if src.len() > MAX_SOURCE_BYTES {
        diags.error(
            Span { line: 1, column: 1, ..Span::default() },
            "too-large",
            format!("file is {} bytes; the limit is {MAX_SOURCE_BYTES}", src.len()),
        );
        return None;
    }
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_nodes: 200_000,
            max_events: 400_000,
            max_documents: 1,
        },
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<Raw>>>(src, options) {
        Ok(Some(raw)) => Some(convert(src, raw, diags)),
        Ok(None) => Some(Node { value: Value::Null, span: Span { line: 1, column: 1, ..Span::default() } }),
        Err(e) => {
            let span = e.location().map_or(Span { line: 1, column: 1, ..Span::default() }, |l| span_of(&l));
            let message = yaml_message(&e);
            diags.error(span, "yaml-syntax", message);
            if e.to_string().contains("alias") {
                diags.hint("a plain value starting with `*` is read as an alias; quote it");
            }
            None
        }
    }
}

/// The parser's message without its own position prefix (we print positions ourselves).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    if full.contains("Documents {") {
        return "the file holds more than one YAML document (`---`); a Release file holds one".into();
    }
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let msg = match first.find(": ") {
        Some(i) if first.starts_with("line ") => &first[i + 2..],
        _ => first,
    };
    let msg = msg.find(" at line ").map_or(msg, |i| &msg[..i]);
    format!("invalid YAML: {msg}")
}
