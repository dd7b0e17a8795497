//! Webhook received → workflow started: a signed GitHub push webhook for a new commit on a
//! branch with a ready environment, until its `patch` deployment is started (the deployment's
//! `created_at`, recorded as it is spawned). ROUNDS pushes, median and p99, plus the webhook's
//! own answer time. Beside it, in the same run, the same pushes found by polling (`--poll-interval
//! 1`), the path peers take (Argo CD polls every 180 s by default).
//!
//! Run: `cargo bench -p offshoot --bench webhook_latency` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Server, app_repo, git, http_raw, median};

const ROUNDS: usize = 30;
const POLL_ROUNDS: usize = 8;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn commit(dir: &std::path::Path, n: usize) -> String {
    std::fs::write(dir.join("web/index.html"), format!("round {n}\n")).expect("write");
    git(dir, &["commit", "-qam", "round"]);
    let o = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().expect("git");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Waits until the environment's deployment of `sha` exists and finished; its `created_at`.
fn started(s: &Server, env: &str, sha: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = s.json(&["env", "show", env]);
        if let Some(d) = e["deployments"].as_array().into_iter().flatten().find(|d| d["commit"] == sha)
            && d["status"] != "running"
        {
            assert_eq!(d["status"], "succeeded", "{d}");
            return d["created_at"].as_i64().expect("created_at");
        }
        assert!(Instant::now() < deadline, "no deployment of {sha}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64) * 0.99).ceil() as usize - 1]
}

fn setup(s: &Server, repo: &tempfile::TempDir) -> String {
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "bench", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    env["id"].as_str().expect("id").to_owned()
}

fn main() {
    let repo = app_repo("bench", "web", "", None, false);
    let s = Server::new(None);
    let env = setup(&s, &repo);
    let w = s.json(&["app", "webhook", "bench"]);
    let (url, secret) = (w["url"].as_str().expect("url"), w["secret"].as_str().expect("secret"));
    let path = url.split_once(&format!("127.0.0.1:{}", s.api)).expect("address").1.to_owned();
    let mut latency = Vec::new();
    let mut answer = Vec::new();
    let mut before = String::from("0000000000000000000000000000000000000000");
    for n in 0..ROUNDS {
        let sha = commit(repo.path(), n);
        let body = format!(
            r#"{{"ref":"refs/heads/main","before":"{before}","after":"{sha}","deleted":false,"repository":{{"full_name":"o/bench"}}}}"#
        );
        let sig = offshoot_git::hooks::sign_github(secret.as_bytes(), body.as_bytes());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: bench-{n}\r\nX-Hub-Signature-256: {sig}",
            body.len()
        );
        let t0 = now_ms();
        let clock = Instant::now();
        let resp = http_raw(s.api, &head, body.as_bytes()).unwrap_or_default();
        answer.push(clock.elapsed().as_secs_f64() * 1000.0);
        assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
        latency.push((started(&s, &env, &sha) - t0) as f64);
        before = sha;
    }
    let list: Vec<String> = latency.iter().map(|l| format!("{l:.0}")).collect();
    println!(
        "webhook → workflow started: median {:.0} ms, p99 {:.0} ms over {ROUNDS} pushes (webhook answered in median {:.1} ms) [{}]",
        median(latency.clone()),
        p99(latency),
        median(answer),
        list.join(", ")
    );
    drop(s);

    // The same pushes found by polling every second.
    let repo = app_repo("bench", "web", "", None, false);
    let s = Server::new_with(None, &["--poll-interval", "1"]);
    let env = setup(&s, &repo);
    let mut polled = Vec::new();
    for n in 0..POLL_ROUNDS {
        let t0 = now_ms();
        let sha = commit(repo.path(), n);
        polled.push((started(&s, &env, &sha) - t0) as f64);
    }
    let list: Vec<String> = polled.iter().map(|l| format!("{l:.0}")).collect();
    println!(
        "polling every 1 s → workflow started: median {:.0} ms over {POLL_ROUNDS} pushes [{}] (Argo CD's default interval: 180 s)",
        median(polled),
        list.join(", ")
    );
}
