//! Property tests of host and path parsing and of route matching against a naive reference.

#![allow(clippy::unwrap_used)]

use offshoot_router::table::{normalize_host, normalize_path};
use offshoot_router::{Backend, IngressSettings, Route, Table, Visibility};
use proptest::prelude::*;
use std::sync::Arc;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_owned()), Just("ab".to_owned()), Just("api".to_owned()), Just("v1".to_owned()), Just("x".to_owned())]
}

fn rule_path() -> impl Strategy<Value = String> {
    (proptest::collection::vec(segment(), 0..3), any::<bool>()).prop_map(|(segs, slash)| {
        let mut p = format!("/{}", segs.join("/"));
        if slash && !segs.is_empty() {
            p.push('/');
        }
        p
    })
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![Just("a.test"), Just("b.test"), Just("c.b.test"), Just("*.test"), Just("*.b.test")].prop_map(str::to_owned)
}

/// What the table must answer, written the slow and obvious way.
fn reference(rules: &[(String, String)], host: &str, path: &str) -> Option<usize> {
    let mut seen = std::collections::HashSet::new();
    let accepted: Vec<(usize, &String, String)> = rules
        .iter()
        .enumerate()
        .filter_map(|(i, (h, p))| {
            let p = p.trim_end_matches('/').to_owned();
            seen.insert((h.clone(), p.clone())).then_some((i, h, p))
        })
        .collect();
    let exact: Vec<_> = accepted.iter().filter(|(_, h, _)| h.as_str() == host).collect();
    let pool = if exact.is_empty() {
        let parent = host.split_once('.')?.1;
        accepted.iter().filter(|(_, h, _)| h.strip_prefix("*.") == Some(parent)).collect()
    } else {
        exact
    };
    let segs = |s: &str| s.split('/').filter(|x| !x.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let path_segs = segs(path);
    pool.iter()
        .filter(|(_, _, p)| {
            let ps = segs(p);
            ps.len() <= path_segs.len() && ps[..] == path_segs[..ps.len()]
        })
        // Longest prefix; the first declared among equals.
        .max_by_key(|(i, _, p)| (p.len(), std::cmp::Reverse(*i)))
        .map(|(i, _, _)| *i)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lookup_agrees_with_the_reference(
        rules in proptest::collection::vec((host(), rule_path()), 0..8),
        req_host in prop_oneof![Just("a.test"), Just("b.test"), Just("c.b.test"), Just("d.test"), Just("test")],
        req_path in rule_path(),
    ) {
        let routes: Vec<Route> = rules
            .iter()
            .enumerate()
            .map(|(i, (h, p))| Route {
                host: h.clone(),
                path: p.clone(),
                visibility: Visibility::Public,
                backend: Arc::new(Backend::new("e", &i.to_string(), vec![], Arc::new(IngressSettings::default()))),
            })
            .collect();
        let (t, _) = Table::build(routes);
        let got = t.lookup(req_host, &req_path).map(|m| m.backend.service.parse::<usize>().unwrap());
        prop_assert_eq!(got, reference(&rules, req_host, &req_path));
    }

    #[test]
    fn normalized_paths_are_canonical(raw in "(/|[a-z]|%2[eEfF]|%41|\\.|\\.\\.){0,24}") {
        let raw = format!("/{raw}");
        if let Some(p) = normalize_path(&raw) {
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"), "{}", p);
            prop_assert!(!p.split('/').any(|s| s == "." || s == ".."), "{}", p);
            let again = normalize_path(&p).map(|x| x.into_owned());
            prop_assert_eq!(again.as_deref(), Some(&*p), "idempotent");
        }
    }

    #[test]
    fn host_parsing_never_panics_and_yields_lowercase(raw in "\\PC{0,80}") {
        if let Some(h) = normalize_host(&raw) {
            prop_assert_eq!(h.to_ascii_lowercase(), h.to_string());
            prop_assert!(!h.is_empty() && h.len() <= 255);
            prop_assert!(h.starts_with('[') || !h.contains(':'));
        }
    }

    #[test]
    fn a_port_and_case_do_not_change_the_host(name in "[a-zA-Z0-9-]{1,20}(\\.[a-zA-Z0-9-]{1,20}){0,3}", port in 1u16..) {
        let with_port = format!("{name}:{port}");
        let lower = name.to_ascii_lowercase();
        let (a, b) = (normalize_host(&with_port).map(|x| x.into_owned()), normalize_host(&lower).map(|x| x.into_owned()));
        prop_assert_eq!(a, b);
    }
}
