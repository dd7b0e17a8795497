//! The short fuzzing run of every CI run, on the stable toolchain: each target is fed its seed
//! corpus (the conformance corpus beside the repository and the seeds kept here), then a fixed
//! number of mutations of those seeds (bytes flipped, inserted, removed, copied from another
//! seed), from a fixed random seed so a failure replays. The long campaigns are libFuzzer's
//! (`scripts/fuzz`).

use std::path::{Path, PathBuf};

/// Mutated inputs per target in this run.
const MUTATIONS: usize = 20_000;

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A target's seeds: the conformance corpus for the YAML loaders, and `seeds/<target>/`.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut out = files(&manifest_dir().join("seeds").join(target));
    if matches!(target, "template" | "env_vars" | "compose") {
        let corpus = manifest_dir().join("../../../shared/corpus/release");
        assert!(corpus.is_dir(), "the conformance corpus is missing at {}", corpus.display());
        out.extend(files(&corpus));
        out.extend(files(&manifest_dir().join("../../examples/shop")));
        out.extend(files(&manifest_dir().join("../../examples/shop/.release")));
    }
    assert!(!out.is_empty(), "no seeds for `{target}`");
    out
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=8) {
        let at = rng.usize(..=data.len());
        match rng.u8(..6) {
            0 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u8(..8);
            }
            1 => data.insert(at, rng.u8(..)),
            2 if at < data.len() => {
                let end = (at + rng.usize(1..=16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                // A piece of another seed, spliced in.
                let other = &seeds[rng.usize(..seeds.len())];
                if !other.is_empty() {
                    let from = rng.usize(..other.len());
                    let end = (from + rng.usize(1..=64)).min(other.len());
                    data.splice(at..at, other[from..end].iter().copied());
                }
            }
            4 => {
                // Bytes that parsers treat specially.
                let special: &[&[u8]] = &[
                    b"\n",
                    b": ",
                    b"- ",
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b"\"",
                    b"'",
                    b"&a ",
                    b"*a",
                    b"%2e",
                    b"..",
                    b"/",
                    b"\0",
                    b"\xff",
                    b"${",
                    b"[redacted]",
                ];
                data.splice(at..at, special[rng.usize(..special.len())].iter().copied());
            }
            _ => {
                if at < data.len() {
                    data.truncate(at);
                }
            }
        }
    }
    data
}

/// Feeds `target` its seeds, then its mutations; a failure names the input.
fn replay(target: &str) {
    let (_, run) = offshoot_fuzz::TARGETS.into_iter().find(|(n, _)| *n == target).expect("a target");
    let seeds = seeds(target);
    for s in &seeds {
        run(s);
    }
    let mut rng = fastrand::Rng::with_seed(0x0ff5_400f);
    for _ in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds);
        if let Err(panic) = std::panic::catch_unwind(|| run(&input)) {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()));
            panic!("target `{target}` failed on {:?}: {}", String::from_utf8_lossy(&input), why.unwrap_or_default());
        }
    }
}

#[test]
fn every_target_has_a_test_here() {
    let here = include_str!("replay.rs");
    for (name, _) in offshoot_fuzz::TARGETS {
        assert!(here.contains(&format!("replay(\"{name}\")")), "no replay test for `{name}`");
        assert!(manifest_dir().join("../../fuzz/fuzz_targets").join(format!("{name}.rs")).is_file(), "no cargo-fuzz target for `{name}`");
    }
}

#[test]
fn template() {
    replay("template")
}
#[test]
fn env_vars() {
    replay("env_vars")
}
#[test]
fn compose() {
    replay("compose")
}
#[test]
fn webhook() {
    replay("webhook")
}
#[test]
fn router_path_host() {
    replay("router_path_host")
}
#[test]
fn api_body() {
    replay("api_body")
}
#[test]
fn repo_url() {
    replay("repo_url")
}

#[test]
fn the_properties_can_fail() {
    // A host whose normal form is not a fixed point would be caught: the property is checked
    // on a host that needs lower-casing and on a path that needs resolving.
    offshoot_fuzz::router_path_host(b"Shop.Example.COM.:8080\n/a/./b/../c//d");
    // A server path is refused where none is allowed, and the target says so if it is not.
    let accepted = std::panic::catch_unwind(|| offshoot_fuzz::repo_url(b"/srv/repo"));
    assert!(accepted.is_ok(), "a server path is refused, so the target passes");
    assert!(offshoot_git::source::check("/srv/repo", true).is_ok(), "and accepted for an administrator");
}
