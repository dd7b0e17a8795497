//! Secret values written in an Environment Variables file (`secret: true`) are never shown:
//! `masked` gives the file with each such value replaced by [`MASK`], and `unmasked` puts the
//! stored values back into a file edited from a masked one, so that saving what was shown loses
//! nothing. Both edit the text in place (by the values' spans): comments, order and layout stay.

use crate::document::{self, Kind};
use crate::envvars::{EnvVarsFile, Var};
use crate::span::Span;

/// What a secret value reads as when shown.
pub const MASK: &str = "[redacted]";

/// Each secret variable with a value: (section, key, the value's span, the value).
fn secrets(file: &EnvVarsFile) -> Vec<(String, String, Span, String)> {
    let mut out = Vec::new();
    let mut add = |section: &str, vars: &[Var]| {
        for v in vars.iter().filter(|v| v.secret) {
            if let Some(value) = &v.value {
                out.push((section.to_owned(), v.key.value.clone(), value.span, value.value.expose().to_owned()));
            }
        }
    };
    add("defaults", &file.defaults);
    for (service, vars) in &file.services {
        add(&format!("services.{}", service.value), vars);
    }
    add("environment", &file.envs);
    out
}

fn read(text: &str) -> Option<EnvVarsFile> {
    let doc = document::check("environment_variables.yaml", text, Some(Kind::EnvVars));
    if doc.diagnostics.iter().any(|d| d.is_error()) {
        return None;
    }
    doc.env_vars
}

/// Where a value is written in `text`: its span without trailing blank space, and from its
/// block indicator (`|`, `>-`, ...) for a block scalar, whose span starts at its content.
fn value_range(text: &str, span: Span) -> Option<std::ops::Range<usize>> {
    let (mut start, mut end) = (span.offset, span.offset + span.len);
    if end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
        return None;
    }
    end -= text[start..end].len() - text[start..end].trim_end().len();
    let before = text[..start].trim_end();
    let indicator = before.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
    if indicator.ends_with(['|', '>']) && text[before.len()..start].contains('\n') {
        start = indicator.len() - 1;
    }
    Some(start..end.max(start))
}

/// Replaces values (in any order) of `text` with what is given; a span that does not fit is left.
fn splice(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_owned();
    for (range, with) in edits {
        out.replace_range(range, &with);
    }
    out
}

/// The file as it may be shown: every secret value replaced by `"[redacted]"`. A file that
/// cannot be read (never a stored one) is not shown at all.
pub fn masked(text: &str) -> String {
    let Some(file) = read(text) else {
        return "# The Environment Variables file cannot be read, so it is not shown (it may hold secrets).\n".to_owned();
    };
    let edits = secrets(&file)
        .into_iter()
        .filter(|(_, _, _, v)| !v.is_empty())
        .filter_map(|(_, _, span, _)| Some((value_range(text, span)?, format!("\"{MASK}\""))))
        .collect();
    splice(text, edits)
}

/// A file edited from a masked one, with each secret value still reading [`MASK`] given back the
/// value the same variable (same section and key) has in `stored`. A masked value with nothing
/// to take it from is an error naming it.
pub fn unmasked(edited: &str, stored: &str) -> Result<String, String> {
    let Some(file) = read(edited) else { return Ok(edited.to_owned()) };
    let all = secrets(&file);
    if !all.iter().any(|(_, _, _, v)| v == MASK) {
        return Ok(edited.to_owned());
    }
    let before = read(stored).map(|f| secrets(&f)).unwrap_or_default();
    let mut edits = Vec::new();
    // A key written twice in a section (the last one counts) is matched by its place among
    // those of its name: the second `TOKEN` takes the second stored `TOKEN`'s value.
    let mut nth: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for (section, key, span, value) in all {
        let place = nth.entry((section.clone(), key.clone())).or_default();
        let index = *place;
        *place += 1;
        if value != MASK {
            continue;
        }
        let same = |(s, k, _, _): &&(String, String, Span, String)| *s == section && *k == key;
        let Some((_, _, old, _)) = before.iter().filter(same).nth(index).filter(|(_, _, _, v)| v != MASK) else {
            return Err(format!(
                "`{key}` ({section}) reads `{MASK}`, and there is no stored value to keep: write its value, or remove the variable"
            ));
        };
        // The stored value as it was written (quoting and all).
        if let (Some(at), Some(from)) = (value_range(edited, span), value_range(stored, *old)) {
            edits.push((at, stored[from].to_owned()));
        }
    }
    Ok(splice(edited, edits))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# shop\ndefaults:\n- key: LOG_LEVEL\n  value: info\n- key: TOKEN\n  value: 's3cr:et'\n  secret: true\nservices:\n  api:\n  - key: API_KEY\n    value: |\n      line one\n    secret: true\n  - key: FROM_SECRET_STORE\n    secret: true\n";

    #[test]
    fn secret_values_are_masked_and_come_back_on_save() {
        let shown = masked(FILE);
        assert!(!shown.contains("s3cr:et") && !shown.contains("line one"), "{shown}");
        assert!(shown.contains("# shop") && shown.contains("value: info"), "the rest stays: {shown}");
        assert_eq!(shown.matches(MASK).count(), 2, "{shown}");
        assert!(read(&shown).is_some(), "what is shown is a valid file: {shown}");
        // Saved as shown: the same file.
        assert_eq!(unmasked(&shown, FILE).expect("unmasked"), FILE);
        // An edit elsewhere keeps the secrets; a new value replaces one.
        let edited = shown.replace("value: info", "value: debug");
        let saved = unmasked(&edited, FILE).expect("unmasked");
        assert!(saved.contains("value: debug") && saved.contains("'s3cr:et'") && saved.contains("line one"), "{saved}");
        let replaced = unmasked(&shown.replacen(&format!("\"{MASK}\""), "new-value", 1), FILE).expect("unmasked");
        assert!(replaced.contains("new-value") && !replaced.contains("s3cr:et"), "{replaced}");
    }

    #[test]
    fn a_key_written_twice_gets_back_its_own_value() {
        // Found by fuzzing: the second `TOKEN` took the first one's value back.
        let file = "defaults:\n- key: TOKEN\n  value: first\n  secret: true\n- key: TOKEN\n  value: second\n  secret: true\n";
        let shown = masked(file);
        assert!(!shown.contains("first") && !shown.contains("second"), "{shown}");
        assert_eq!(unmasked(&shown, file).expect("unmasked"), file);
    }

    #[test]
    fn a_masked_value_with_nothing_stored_is_refused_by_name() {
        let shown = masked(FILE).replace("TOKEN", "OTHER");
        let e = unmasked(&shown, FILE).expect_err("no stored OTHER");
        assert!(e.contains("`OTHER` (defaults)"), "{e}");
        assert!(masked("defaults: [").starts_with("# The Environment Variables file cannot be read"));
    }
}
