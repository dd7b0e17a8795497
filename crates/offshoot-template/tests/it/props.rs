//! Random and mutated YAML never panics, and loading is deterministic.

use crate::corpus_dir;
use offshoot_template::document;
use proptest::prelude::*;

fn corpus_sample() -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files.iter().step_by(4).filter_map(|p| std::fs::read_to_string(p).ok()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "[a-z_:\\- \\[\\]{}$&*!|>'\"#\n0-9.]{0,300}") {
        let a = document::check("r.yaml", &s, None);
        let b = document::check("r.yaml", &s, None);
        prop_assert_eq!(a.diagnostics, b.diagnostics);
    }

    #[test]
    fn mutated_corpus_never_panics(file in 0usize..1000, at in 0usize..100_000, op in 0u8..4, insert in "[ :\\-\\[{$}*&\n]{1,3}") {
        let sample = corpus_sample();
        let src = &sample[file % sample.len()];
        let mut at = at % (src.len() + 1);
        while !src.is_char_boundary(at) { at -= 1; }
        let mutated = match op {
            0 => format!("{}{}{}", &src[..at], insert, &src[at..]),
            1 => { let end = src[at..].find('\n').map_or(src.len(), |e| at + e); format!("{}{}", &src[..at], &src[end..]) }
            2 => src.replacen("  ", " ", 1 + at % 5),
            _ => format!("{}{}", &src[at..], &src[..at]),
        };
        for kind in [None, Some(document::Kind::Template), Some(document::Kind::EnvVars), Some(document::Kind::Compose)] {
            let _ = document::check("m.yaml", &mutated, kind);
        }
    }
}

#[test]
fn hostile_inputs_are_bounded() {
    // An alias bomb is refused by the parser's budget, not expanded.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 { "a".to_owned() } else { format!("l{}", i - 1) };
        bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let doc = document::check("bomb.yaml", &bomb, None);
    assert!(doc.has_errors());
    // Deep nesting is refused rather than overflowing the stack.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(document::check("deep.yaml", &deep, None).has_errors());
    // Oversized input is refused up front.
    let big = "a: b\n".repeat(600_000);
    assert!(document::check("big.yaml", &big, None).diagnostics.iter().any(|d| d.code == "too-large"));
}
