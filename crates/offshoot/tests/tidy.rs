//! Architecture invariants, checked (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_template_crate_does_no_io() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/offshoot-template/src"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read");
        for banned in [
            "std::fs",
            "std::net",
            "std::process",
            "std::env",
            "tokio",
            "reqwest",
            "File::open",
            "println!",
            "eprintln!",
            // The clock and the machine's time zone: callers give the time.
            "SystemTime",
            "::now()",
            "chrono::Local",
        ] {
            assert!(!src.contains(banned), "{} uses `{banned}`: the template crate does no I/O", f.display());
        }
    }
    let manifest = std::fs::read_to_string(root().join("crates/offshoot-template/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).unwrap_or("");
    for line in deps.lines().filter(|l| l.contains('=')) {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        assert!(
            ["schemars", "serde", "serde_json", "serde-saphyr", "thiserror", "strsim", "shell-words", "chrono", "croner"].contains(&name),
            "offshoot-template may not depend on `{name}`"
        );
    }
}

#[test]
fn the_cli_does_not_depend_on_server_crates() {
    let manifest = std::fs::read_to_string(root().join("crates/offshoot-cli/Cargo.toml")).expect("manifest");
    for banned in ["offshoot-server", "offshoot-store", "offshoot-runtime", "sqlx", "bollard"] {
        assert!(!manifest.contains(banned), "offshoot-cli depends on {banned}");
    }
}

#[test]
fn the_router_depends_on_no_other_offshoot_crate() {
    let manifest = std::fs::read_to_string(root().join("crates/offshoot-router/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).unwrap_or("");
    assert!(!deps.contains("offshoot-"), "offshoot-router depends on another Offshoot crate:\n{deps}");
}

#[test]
fn the_control_crate_depends_on_no_web_framework_nor_engine_client() {
    let manifest = std::fs::read_to_string(root().join("crates/offshoot-control/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).unwrap_or("");
    for line in deps.lines().filter(|l| l.contains('=')) {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        for banned in
            ["axum", "hyper", "tower", "reqwest", "maud", "bollard", "kube", "offshoot-server", "offshoot-docker", "offshoot-kube"]
        {
            assert!(!name.starts_with(banned), "offshoot-control may not depend on `{name}`");
        }
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates/offshoot-control"), &mut files);
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read");
        for banned in ["axum::", "hyper::", "tower::", "reqwest::", "bollard::"] {
            assert!(!src.contains(banned), "{} uses `{banned}`: the control crate has no HTTP", f.display());
        }
    }
}

#[test]
fn every_crate_is_described_in_architecture_md() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for e in std::fs::read_dir(root().join("crates")).expect("crates").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(arch.contains(&format!("`{name}`")), "ARCHITECTURE.md does not describe `{name}`");
    }
}

/// The README stays a front page: every page of the manual in `docs/` is linked from it, and
/// every relative link in the README and the manual names a file that exists.
#[test]
fn the_readme_links_every_docs_page_and_no_link_is_broken() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs")).expect("docs/").flatten().map(|e| e.path()).collect();
    pages.sort();
    assert!(pages.len() >= 10, "{pages:?}");
    for p in &pages {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(readme.contains(&format!("(docs/{name})")), "README.md does not link docs/{name}");
    }
    assert!(readme.lines().count() < 120, "README.md has grown past a front page: move the detail into docs/");
    let mut files = vec![root().join("README.md")];
    files.extend(pages);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let dir = f.parent().expect("parent");
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            let target = link.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(dir.join(target).exists(), "{} links `{link}`, which does not exist", f.display());
        }
    }
}

/// The modules of a crate (its `src/*.rs` files) and which others each names with `crate::`.
fn module_graph(src: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(src).expect("src").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
    let names: std::collections::BTreeSet<String> =
        files.iter().filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned)).collect();
    let mut graph = std::collections::BTreeMap::new();
    for f in &files {
        let me = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(f).expect("read");
        let mut deps = std::collections::BTreeSet::new();
        let mut words = |s: &str| {
            for w in s.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if names.contains(w) && w != me {
                    deps.insert(w.to_owned());
                }
            }
        };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            match rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: every module named in the group.
                Some(group) => words(group.split('}').next().unwrap_or("")),
                None => words(rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")),
            }
        }
        // `lib.rs` reaches its modules by name.
        if me == "lib" {
            for n in &names {
                if text.contains(&format!("{n}::")) && n != "lib" {
                    deps.insert(n.clone());
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

/// The strongly connected components of a graph with more than one member (Tarjan).
fn circles(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        index: std::collections::HashMap<&'a str, usize>,
        low: std::collections::HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g: graph, index: Default::default(), low: Default::default(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_circle_of_more_than_three_modules_in_the_control_plane() {
    for krate in ["offshoot-server", "offshoot-control"] {
        let graph = module_graph(&root().join("crates").join(krate).join("src"));
        assert!(graph.len() > 3, "{krate}: modules not found");
        for c in circles(&graph) {
            assert!(c.len() <= 3, "{krate}: these modules import each other in a circle: {c:?}");
        }
    }
    // The check sees a circle when there is one.
    let mut g = std::collections::BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("d", "e")] {
        g.entry(a.to_owned()).or_insert_with(std::collections::BTreeSet::new).insert(b.to_owned());
    }
    assert_eq!(circles(&g), vec![vec!["a", "b", "c", "d"]]);
}

#[test]
fn no_control_plane_file_is_over_1000_lines() {
    for krate in ["offshoot-server", "offshoot-control"] {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(krate), &mut files);
        for f in files {
            let lines = std::fs::read_to_string(&f).expect("read").lines().count();
            assert!(lines <= 1000, "{} has {lines} lines: split it (at most 1,000)", f.display());
        }
    }
}
