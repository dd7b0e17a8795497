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
fn every_crate_is_described_in_architecture_md() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for e in std::fs::read_dir(root().join("crates")).expect("crates").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(arch.contains(&format!("`{name}`")), "ARCHITECTURE.md does not describe `{name}`");
    }
}
