//! Time to ready of a three-app environment (a front end importing a backend and an admin app,
//! `parallelize_app_imports: true`) beside the slowest of the three apps alone, side by side in
//! one run on the same server, images cached. Medians of ROUNDS runs each, measured by the
//! server (the deployment's `ready` phase: from the request to ready, in milliseconds) and, for
//! reference, by the client (`env create --wait`, which polls every 100 ms). Beside them, the
//! engine's floor: `docker run -d` of one container and of three at once.
//!
//! Run: `cargo bench -p offshoot --bench imports_ready` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;
use support::{Server, app_repo, docker, median};

const ROUNDS: usize = 5;

/// (server-side seconds to ready, client-side seconds).
fn round(s: &Server, app: &str) -> (f64, f64) {
    let start = Instant::now();
    let env = s.json(&["env", "create", app, "--branch", "main", "--wait"]);
    let took = start.elapsed().as_secs_f64();
    let ready = env["deployments"][0]["phases"]["ready"].as_f64().expect("ready phase") / 1000.0;
    if std::env::var_os("SHOW_PHASES").is_some() {
        println!("  {app}: {}", env["deployments"][0]["phases"]);
        for i in env["imports"].as_array().into_iter().flatten() {
            let child = s.json(&["env", "show", i["env_id"].as_str().unwrap_or("")]);
            println!("    {}: {}", i["app"], child["deployments"][0]["phases"]);
        }
    }
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    (ready, took)
}

fn report(label: &str, runs: &[(f64, f64)]) -> f64 {
    let server = median(runs.iter().map(|r| r.0).collect());
    let client = median(runs.iter().map(|r| r.1).collect());
    let list: Vec<String> = runs.iter().map(|r| format!("{:.3}", r.0)).collect();
    println!("{label:<40} ready {server:.3} s (client {client:.2} s) over {ROUNDS} runs [{}]", list.join(", "));
    server
}

fn main() {
    let backend = app_repo("backend", "api", "", None, false);
    let admin = app_repo("admin", "panel", "", None, false);
    // No build argument that differs per environment: every image is built once, for all runs.
    let solo = app_repo("solo", "web", "", None, false);
    let frontend =
        app_repo("frontend", "web", "app_imports:\n- name: backend\n- name: admin\nparallelize_app_imports: true\n", None, false);
    let s = Server::new(None);
    for r in [&backend, &admin, &solo, &frontend] {
        s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    }
    // Build every image once.
    for app in ["backend", "admin", "solo", "frontend"] {
        round(&s, app);
    }
    let mut singles = Vec::new();
    for app in ["backend", "admin", "solo"] {
        let runs: Vec<(f64, f64)> = (0..ROUNDS).map(|_| round(&s, app)).collect();
        singles.push(report(&format!("{app} alone"), &runs));
    }
    let slowest = singles.iter().copied().fold(0.0, f64::max);
    let runs: Vec<(f64, f64)> = (0..ROUNDS).map(|_| round(&s, "frontend")).collect();
    let all = report("frontend + backend + admin (parallel)", &runs);
    println!("ratio three apps / slowest single app: {:.2}", all / slowest);
    // The engine's own floor, same run: `docker run -d` of one such container, and of three at
    // once, on one network (what any tool starting three apps' containers pays).
    let one = median((0..ROUNDS).map(|_| docker_runs(1)).collect());
    let three = median((0..ROUNDS).map(|_| docker_runs(3)).collect());
    println!("docker run -d: one container {one:.3} s, three at once {three:.3} s: ratio {:.2}", three / one);
    println!("ratio three apps / the engine's floor for three at once: {:.2} (goal: at most 1.2)", all / three);
}

/// Seconds for `docker run -d` of `n` busybox httpd containers at once on one network.
fn docker_runs(n: usize) -> f64 {
    let net = format!("offshoot-bench-floor-{}", std::process::id());
    docker(&["network", "create", &net]);
    let start = Instant::now();
    let runs: Vec<_> = (0..n)
        .map(|i| {
            let (net, name) = (net.clone(), format!("{net}-{i}"));
            std::thread::spawn(move || {
                docker(&["run", "-d", "--network", &net, "--name", &name, "busybox:stable", "httpd", "-f", "-p", "8080"])
            })
        })
        .collect();
    for r in runs {
        assert!(!r.join().expect("docker run").trim().is_empty(), "docker run failed");
    }
    let took = start.elapsed().as_secs_f64();
    for i in 0..n {
        docker(&["rm", "-f", &format!("{net}-{i}")]);
    }
    docker(&["network", "rm", &net]);
    took
}
