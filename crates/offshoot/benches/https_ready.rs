//! Automatic HTTPS, against Pebble: how long after an environment is ready its URL answers over
//! verified HTTPS, and how many ACME orders the environments took.
//!
//! - Wildcard (DNS-01 through BIND): `WILDCARD_ENVS` one-service environments; the goal is one
//!   order for all of them and no wait after ready.
//! - One certificate per host (HTTP-01 answered by the router): `HOST_ENVS` environments; each
//!   host is ordered while its environment deploys.
//!
//! Each environment is created with `--wait`; from its return, `curl` (trusting only Pebble's
//! root, TLS 1.3) is tried every 20 ms until it succeeds. Medians are quoted (a noisy machine).
//!
//! Run: `cargo bench -p offshoot --bench https_ready` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::acme::*;
use support::{Server, app_repo, eventually, free_port, median};

const WILDCARD_ENVS: usize = 20;
const HOST_ENVS: usize = 5;

/// Milliseconds from `ready` until `host` answers over verified HTTPS.
fn to_https(host: &str, tls: u16, root: &std::path::Path, ready: Instant) -> f64 {
    let deadline = ready + Duration::from_secs(120);
    loop {
        let (ok, _, trace) = curl(host, tls, root);
        if ok && trace.contains("SSL certificate verify ok") {
            return ready.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(Instant::now() < deadline, "{host} never answered over HTTPS:\n{trace}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn orders(s: &Server) -> (usize, i64) {
    let list = s.json(&["cert", "list"]);
    let list = list.as_array().cloned().unwrap_or_default();
    (list.len(), list.iter().filter_map(|c| c["orders"].as_i64()).sum())
}

/// Creates `n` environments of the one-service app, each timed from ready to HTTPS.
fn run(s: &Server, n: usize, tls: u16, root: &std::path::Path) -> Vec<f64> {
    let repo = app_repo("site", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let mut took = Vec::new();
    for _ in 0..n {
        let env = s.json(&["env", "create", "site", "--branch", "main", "--wait"]);
        let ready = Instant::now();
        assert_eq!(env["status"], "ready", "{env}");
        let id = env["id"].as_str().expect("id");
        took.push(to_https(&format!("web-{id}.{DOMAIN}"), tls, root, ready));
    }
    took
}

fn main() {
    // Wildcard.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_named, dns) = bind(dir.path());
    let key = dir.path().join("tsig.key");
    std::fs::write(&key, TSIG_SECRET).expect("key");
    let pebble_port = free_port();
    let pebble_w = pebble(dir.path(), pebble_port, free_port(), dns, 3600);
    let root = pebble_w.root(dir.path());
    let s = server(dir.path(), pebble_port, Some((dns, &key)));
    let started = Instant::now();
    eventually(60, "the wildcard", || (orders(&s).1 == 1).then_some(()));
    let issue_ms = started.elapsed().as_secs_f64() * 1000.0;
    let tls = s.tls.expect("TLS");
    let wildcard = run(&s, WILDCARD_ENVS, tls, &root);
    let (certs_w, orders_w) = orders(&s);
    drop(s);
    drop(pebble_w);

    // One certificate per host.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (_chall, dns2) = challtestsrv(dir2.path());
    let pebble_port = free_port();
    let s2 = server(dir2.path(), pebble_port, None);
    let pebble_h = pebble(dir2.path(), pebble_port, s2.router, dns2, 3600);
    let root2 = pebble_h.root(dir2.path());
    let per_host = run(&s2, HOST_ENVS, s2.tls.expect("TLS"), &root2);
    let (certs_h, orders_h) = orders(&s2);

    println!("automatic HTTPS against Pebble (medians; from `env create --wait` returning ready to a verified TLS 1.3 response)");
    println!("  wildcard by DNS-01: first issuance at start {issue_ms:.0} ms; then {WILDCARD_ENVS} environments:");
    println!(
        "    ready -> HTTPS {:.0} ms (max {:.0} ms); certificates {certs_w}, ACME orders {orders_w}",
        median(wildcard.clone()),
        wildcard.iter().copied().fold(0.0, f64::max)
    );
    println!("  one per host by HTTP-01: {HOST_ENVS} environments:");
    println!(
        "    ready -> HTTPS {:.0} ms (max {:.0} ms); certificates {certs_h}, ACME orders {orders_h}",
        median(per_host.clone()),
        per_host.iter().copied().fold(0.0, f64::max)
    );
}
