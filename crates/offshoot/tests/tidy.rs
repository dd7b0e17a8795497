//! Architecture invariants, checked (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
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
        for banned in ["std::fs", "std::net", "std::process", "std::env", "tokio", "reqwest", "File::open", "println!", "eprintln!"] {
            assert!(!src.contains(banned), "{} uses `{banned}`: the template crate does no I/O", f.display());
        }
    }
    let manifest = std::fs::read_to_string(root().join("crates/offshoot-template/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).unwrap_or("");
    for line in deps.lines().filter(|l| l.contains('=')) {
        let name = line.split(['=', '.']).next().unwrap_or("").trim();
        assert!(
            ["schemars", "serde", "serde_json", "serde-saphyr", "thiserror", "strsim", "shell-words"].contains(&name),
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
