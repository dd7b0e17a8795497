//! Memory of environments asleep against awake: ENVS environments of the two-service `nap`
//! example (50, each on its own network: more than the engine's default address pools would
//! hold), their containers' memory as the engine reports it (`docker stats`), and the machine's
//! available memory (`MemAvailable`), all running, then all asleep, in one run.
//!
//! Run: `cargo bench -p offshoot --bench sleep_memory` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use support::{NAP, Server, container_memory, repo};

const ENVS: usize = 50;

/// The memory the engine reports for `containers`, in MiB.
fn containers_mib(containers: &[String]) -> f64 {
    container_memory(containers).iter().map(|(_, bytes)| *bytes as f64 / 1024.0 / 1024.0).sum()
}

fn available_mib() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let r = repo(NAP, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let mut ids = Vec::new();
    for _ in 0..ENVS {
        let e = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
        assert_eq!(e["status"], "ready", "{e}");
        ids.push(e["id"].as_str().expect("id").to_owned());
    }
    let containers: Vec<String> = ids.iter().flat_map(|id| [format!("offshoot-{id}-store"), format!("offshoot-{id}-web")]).collect();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (awake, awake_free) = (containers_mib(&containers), available_mib());
    for id in &ids {
        assert_eq!(s.json(&["env", "sleep", id, "--wait"])["status"], "sleeping");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (asleep, asleep_free) = (containers_mib(&containers), available_mib());
    println!("{ENVS} environments ({} containers) awake: {awake:.1} MiB in their containers", containers.len());
    println!("the same asleep: {asleep:.1} MiB in their containers");
    println!(
        "the machine's available memory: {awake_free:.0} MiB awake, {asleep_free:.0} MiB asleep ({:+.0} MiB)",
        asleep_free - awake_free
    );
    for id in &ids {
        s.json(&["env", "delete", id, "--wait"]);
    }
}
