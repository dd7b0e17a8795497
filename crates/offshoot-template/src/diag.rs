//! Diagnostics: what is wrong, where, and how to fix it.

use crate::span::Span;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about one place in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    /// A stable machine-readable name, e.g. `unknown-key`.
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders `file:line:col: severity: message`, the source line with a caret under the
    /// offending text, and the hint.
    pub fn render(&self, source: &str) -> String {
        let mut out =
            format!("{}:{}:{}: {}: {} [{}]\n", self.file, self.line, self.column, self.severity.as_str(), self.message, self.code);
        if self.line > 0
            && let Some(text) = source.lines().nth(self.line as usize - 1)
        {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let col = self.column.max(1) as usize - 1;
            let width = source
                .get(self.span.offset..self.span.offset + self.span.len)
                .map(|s| s.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1)
                .clamp(1, text.chars().count().saturating_sub(col).max(1));
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{gutter} | {text}");
            let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(width));
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        out
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub struct Diagnostics {
    file: Arc<str>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &str) -> Self {
        Diagnostics { file: Arc::from(file), items: Vec::new() }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn push(&mut self, severity: Severity, span: Span, code: &'static str, message: impl Into<String>, hint: Option<String>) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            line: span.line,
            column: span.column,
            severity,
            code,
            message: message.into(),
            hint,
            span,
        });
    }

    pub fn error(&mut self, span: Span, code: &'static str, message: impl Into<String>) {
        self.push(Severity::Error, span, code, message, None);
    }

    pub fn warn(&mut self, span: Span, code: &'static str, message: impl Into<String>) {
        self.push(Severity::Warning, span, code, message, None);
    }

    /// Attaches a hint to the most recent diagnostic.
    pub fn hint(&mut self, hint: impl Into<String>) {
        if let Some(last) = self.items.last_mut() {
            last.hint = Some(hint.into());
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Sorted by position, errors before warnings at the same place.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|a| (a.line, a.column, a.severity));
        self.items
    }
}

/// The closest candidate to a misspelt name, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = if c.eq_ignore_ascii_case(input) { 1.0 } else { strsim::jaro_winkler(&lower, c) };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
