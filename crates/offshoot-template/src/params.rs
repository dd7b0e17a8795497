//! `parameters`: a template's inputs, given per environment (`--param NAME=VALUE`) and
//! referenced as `${parameters.NAME}`. Each has a `type` (`string`, the default, `integer`,
//! `number` or `boolean`), may list the `options` it allows, and is required unless it has a
//! `default`.

use crate::model::{Parameter, Template};
use std::collections::BTreeMap;

/// At most this many values given to one environment.
pub const MAX_GIVEN: usize = 64;
/// The longest value of a parameter, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The types a parameter may declare.
pub const TYPES: &[&str] = &["string", "integer", "number", "boolean"];

/// Why a value does not fit its parameter (`None`: it fits).
pub fn check_value(p: &Parameter, value: &str) -> Option<String> {
    if value.len() > MAX_VALUE_BYTES {
        return Some(format!("parameter `{}` is {} bytes long; the limit is {MAX_VALUE_BYTES}", p.name, value.len()));
    }
    let kind = p.kind.as_ref().map_or("string", |k| k.as_str());
    let fits = match kind {
        "integer" => value.parse::<i64>().is_ok(),
        "number" => value.parse::<f64>().is_ok_and(f64::is_finite),
        "boolean" => matches!(value, "true" | "false"),
        _ => true,
    };
    if !fits {
        return Some(format!("parameter `{}` is {}, and `{value}` is not {}", p.name, article(kind), article(kind)));
    }
    if !p.options.is_empty() && !p.options.iter().any(|o| o.as_str() == value) {
        let options: Vec<&str> = p.options.iter().map(|o| o.as_str()).collect();
        return Some(format!("parameter `{}` is one of {}, not `{value}`", p.name, options.join(", ")));
    }
    None
}

fn article(kind: &str) -> String {
    match kind {
        "integer" => "an integer".into(),
        other => format!("a {other}"),
    }
}

/// The value of every parameter of `t` for an environment given `given`: each given value
/// checked, the defaults for the rest. Every problem at once (an unknown name, a value of the
/// wrong type or not among the options, a required parameter not given).
pub fn bind(t: &Template, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut problems = Vec::new();
    if given.len() > MAX_GIVEN {
        problems.push(format!("{} parameters given; at most {MAX_GIVEN} are allowed", given.len()));
    }
    for name in given.keys().filter(|n| !t.parameters.iter().any(|p| p.name.as_str() == n.as_str())) {
        let declared: Vec<&str> = t.parameters.iter().map(|p| p.name.as_str()).collect();
        problems.push(if declared.is_empty() {
            format!("parameter `{name}` is not declared: the template has no `parameters`")
        } else {
            format!("parameter `{name}` is not declared; the template's are {}", declared.join(", "))
        });
    }
    let mut out = BTreeMap::new();
    for p in &t.parameters {
        match given.get(p.name.as_str()).map(String::as_str).or(p.default.as_ref().map(|d| d.as_str())) {
            Some(v) => {
                if let Some(why) = check_value(p, v) {
                    problems.push(why);
                }
                out.insert(p.name.value.clone(), v.to_owned());
            }
            None => problems.push(format!(
                "parameter `{}` has no default and was not given: pass `--param {}=VALUE`{}",
                p.name,
                p.name,
                p.description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
            )),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Parses `NAME=VALUE` as given on a command line.
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{self, Kind};

    fn template(src: &str) -> Template {
        document::check("t.yaml", src, Some(Kind::Template)).template.expect("template")
    }

    const T: &str = "parameters:\n- name: llm\n  type: string\n  default: llama2\n- name: replicas\n  type: integer\n  default: '2'\n- name: tier\n  options: [small, large]\n- name: debug\n  type: boolean\n  default: 'false'\nservices: []\n";

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let got = bind(&template(T), &given(&[("tier", "large")])).expect("bound");
        assert_eq!(got, given(&[("llm", "llama2"), ("replicas", "2"), ("tier", "large"), ("debug", "false")]));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs = bind(&template(T), &given(&[("replicas", "two"), ("debug", "yes"), ("colour", "red")])).expect_err("refused");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("`colour` is not declared; the template's are llm, replicas, tier, debug")));
        assert!(errs.iter().any(|e| e == "parameter `replicas` is an integer, and `two` is not an integer"));
        assert!(errs.iter().any(|e| e == "parameter `debug` is a boolean, and `yes` is not a boolean"));
        assert!(errs.iter().any(|e| e.starts_with("parameter `tier` has no default and was not given: pass `--param tier=VALUE`")));
        let errs = bind(&template(T), &given(&[("tier", "medium")])).expect_err("refused");
        assert_eq!(errs, vec!["parameter `tier` is one of small, large, not `medium`".to_owned()]);
    }

    #[test]
    fn values_are_bounded() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let errs = bind(&template(T), &given(&[("tier", "small"), ("llm", &long)])).expect_err("refused");
        assert!(errs[0].contains("the limit is 4096"), "{errs:?}");
    }

    #[test]
    fn assignments_parse() {
        assert_eq!(parse_assignment("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_assignment("a="), Ok(("a".into(), String::new())));
        assert!(parse_assignment("=b").is_err());
        assert!(parse_assignment("ab").is_err());
    }
}
