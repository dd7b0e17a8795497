//! Release's interpolation grammar (not Jinja): `${NAME}`, `${NAME:-fallback}` (the fallback
//! may itself interpolate), and, where enabled, bare `$NAME`. Names may contain dots
//! (`parameters.x`, `envs.X`). A `$` not starting an expression is literal.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var { name: String, fallback: Option<Vec<Piece>> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterpError {
    /// Byte offset of the offending `$` in the input.
    pub offset: usize,
    pub message: String,
}

/// Whether bare `$NAME` is an expression (in `mapping`) or literal text (elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bare {
    Expand,
    Literal,
}

/// Deepest nesting of fallbacks we accept.
const MAX_DEPTH: usize = 16;

pub fn parse(s: &str, bare: Bare) -> Result<Vec<Piece>, InterpError> {
    let (pieces, end) = parse_until(s, 0, bare, false, 0)?;
    debug_assert_eq!(end, s.len());
    Ok(pieces)
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8, dotted: bool) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || (dotted && (c == b'.' || c == b'-'))
}

/// Parses from `i` until the end, or (inside a fallback) until the closing `}`; returns the
/// pieces and the index just past what was consumed (the `}` is not consumed).
fn parse_until(s: &str, mut i: usize, bare: Bare, in_fallback: bool, depth: usize) -> Result<(Vec<Piece>, usize), InterpError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut lit_start = i;
    while i < b.len() {
        if in_fallback && b[i] == b'}' {
            break;
        }
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let dollar = i;
        if b.get(i + 1) == Some(&b'{') {
            lit.push_str(&s[lit_start..dollar]);
            let start = i + 2;
            let mut j = start;
            while j < b.len() && is_name_char(b[j], true) {
                j += 1;
            }
            let name = &s[start..j];
            let err = |message: String| InterpError { offset: dollar, message };
            if j >= b.len() {
                return Err(err(format!("`{}` is never closed with `}}`", excerpt(s, dollar))));
            }
            if name.is_empty() || !is_name_start(b[start]) {
                return Err(err(format!("`{}` does not start with a variable name", excerpt(s, dollar))));
            }
            let fallback = match b[j] {
                b'}' => {
                    i = j + 1;
                    None
                }
                b':' if b.get(j + 1) == Some(&b'-') => {
                    if depth >= MAX_DEPTH {
                        return Err(err("fallbacks are nested too deeply".into()));
                    }
                    let (fb, end) = parse_until(s, j + 2, bare, true, depth + 1)?;
                    if end >= b.len() {
                        return Err(err(format!("`{}` is never closed with `}}`", excerpt(s, dollar))));
                    }
                    i = end + 1;
                    Some(fb)
                }
                _ => {
                    return Err(err(format!(
                        "unsupported expression `{}`: only `${{NAME}}` and `${{NAME:-fallback}}` are understood",
                        excerpt(s, dollar)
                    )));
                }
            };
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            out.push(Piece::Var { name: name.to_owned(), fallback });
            lit_start = i;
        } else if bare == Bare::Expand && b.get(i + 1).is_some_and(|c| is_name_start(*c)) {
            lit.push_str(&s[lit_start..dollar]);
            let mut j = i + 1;
            while j < b.len() && is_name_char(b[j], false) {
                j += 1;
            }
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            out.push(Piece::Var { name: s[i + 1..j].to_owned(), fallback: None });
            i = j;
            lit_start = i;
        } else {
            i += 1;
        }
    }
    lit.push_str(&s[lit_start..i]);
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok((out, i))
}

fn excerpt(s: &str, from: usize) -> &str {
    let rest = &s[from..];
    let end = rest.find('}').map_or(rest.len().min(40), |e| e + 1);
    let mut end = end.min(rest.len());
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    &rest[..end]
}

/// Every variable name an expression refers to, fallbacks included.
pub fn names(pieces: &[Piece]) -> Vec<&str> {
    let mut out = Vec::new();
    for p in pieces {
        if let Piece::Var { name, fallback } = p {
            out.push(name.as_str());
            if let Some(fb) = fallback {
                out.extend(names(fb));
            }
        }
    }
    out
}

/// Renders pieces; `lookup` answers for variables. Returns the text and the names that were
/// undefined with no fallback (they render as empty, as in a shell).
pub fn render<'p>(pieces: &'p [Piece], lookup: &mut dyn FnMut(&str) -> Option<String>) -> (String, Vec<&'p str>) {
    let mut out = String::new();
    let mut missing = Vec::new();
    render_into(pieces, lookup, &mut out, &mut missing);
    (out, missing)
}

fn render_into<'p>(pieces: &'p [Piece], lookup: &mut dyn FnMut(&str) -> Option<String>, out: &mut String, missing: &mut Vec<&'p str>) {
    for p in pieces {
        match p {
            Piece::Lit(s) => out.push_str(s),
            Piece::Var { name, fallback } => match (lookup(name), fallback) {
                (Some(v), _) if !v.is_empty() || fallback.is_none() => out.push_str(&v),
                (_, Some(fb)) => render_into(fb, lookup, out, missing),
                (_, None) => missing.push(name),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> Piece {
        Piece::Var { name: name.into(), fallback: None }
    }

    #[test]
    fn grammar() {
        assert_eq!(parse("plain $5 text", Bare::Expand), Ok(vec![Piece::Lit("plain $5 text".into())]));
        assert_eq!(
            parse("${A}/v1/${B:-x${C}}", Bare::Literal),
            Ok(vec![
                var("A"),
                Piece::Lit("/v1/".into()),
                Piece::Var { name: "B".into(), fallback: Some(vec![Piece::Lit("x".into()), var("C")]) }
            ])
        );
        assert_eq!(parse("wss://$HOST", Bare::Expand), Ok(vec![Piece::Lit("wss://".into()), var("HOST")]));
        assert_eq!(parse("wss://$HOST", Bare::Literal), Ok(vec![Piece::Lit("wss://$HOST".into())]));
        assert_eq!(parse("${parameters.model}", Bare::Literal), Ok(vec![var("parameters.model")]));
        assert!(parse("${A", Bare::Literal).is_err());
        assert!(parse("${}", Bare::Literal).is_err());
        assert!(parse("${A:?err}", Bare::Literal).is_err());
        assert!(parse("${A:-x", Bare::Literal).is_err());
        assert!(parse("${1A}", Bare::Literal).is_err());
    }

    #[test]
    fn rendering_with_fallbacks() {
        let pieces = parse("${A}-${B:-b}-${C}-${E:-${A}}", Bare::Literal).unwrap_or_default();
        let mut lookup = |n: &str| match n {
            "A" => Some("a".to_owned()),
            "E" => Some(String::new()),
            _ => None,
        };
        let (s, missing) = render(&pieces, &mut lookup);
        assert_eq!(s, "a-b--a");
        assert_eq!(missing, vec!["C"]);
    }
}
