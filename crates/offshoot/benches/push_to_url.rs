//! Push to URL: from a signed GitHub push webhook for a one-line change of a service built from a
//! Dockerfile, until the router serves the new commit's page; with its breakdown from the
//! deployment's phases (fetch, build, start: containers replaced and ready) and the route switch
//! (ready → first response with the new page through the router). Beside it, in the same rounds,
//! the same change by hand with the docker CLI: `docker build` of the same context, `docker rm
//! -f` of the old container, `docker run -d` of the new one, then polling its own address until
//! it serves the new page. Offshoot's own share is everything but the engine's build and start
//! and the service's readiness, estimated as the total minus the by-hand time. Every round's page
//! is new to this run, so every side builds (Offshoot's build, with the service's build
//! arguments, and the one by hand share no layer).
//!
//! Run: `cargo bench -p offshoot --bench push_to_url` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::{DOCKERFILE, Server, app_repo, docker, git, http, http_raw, median};

const ROUNDS: usize = 15;

/// This run's mark in every page: no round's content was ever built before, by either side.
fn run_mark() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn commit(dir: &std::path::Path, n: usize, mark: &str) -> String {
    std::fs::write(dir.join("web/index.html"), format!("round {n} of run {mark}\n")).expect("write");
    git(dir, &["commit", "-qam", "round"]);
    let o = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().expect("git");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Polls `f` every 2 ms until it says yes.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One change by hand: build, replace, wait for the new page at the container's address.
fn by_hand(ctx: &std::path::Path, n: usize, name: &str, mark: &str) -> f64 {
    std::fs::write(ctx.join("index.html"), format!("by hand: round {n} of run {mark}\n")).expect("write");
    let start = Instant::now();
    let tag = format!("offshoot-bench/by-hand:{n}");
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &tag, "."])
        .env("DOCKER_BUILDKIT", "0")
        .current_dir(ctx)
        .output()
        .expect("docker build");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    docker(&["rm", "-f", name]);
    let id = docker(&["run", "-d", "--name", name, &tag]);
    assert!(!id.trim().is_empty(), "docker run failed");
    let ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]).trim().to_owned();
    let want = format!("by hand: round {n} of run {mark}");
    until("the container by hand", || {
        std::net::TcpStream::connect((ip.as_str(), 8080))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read as _, Write as _};
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            })
            .is_some_and(|p| p.contains(&want))
    });
    start.elapsed().as_secs_f64()
}

/// A server with the bench app's ready environment and its webhook.
struct Side {
    s: Server,
    id: String,
    host: String,
    path: String,
    secret: String,
}

fn side(s: Server, repo: &std::path::Path) -> Side {
    s.json(&["app", "create", "--repo", repo.to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "bench", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let w = s.json(&["app", "webhook", "bench"]);
    let (url, secret) = (w["url"].as_str().expect("url"), w["secret"].as_str().expect("secret").to_owned());
    let path = url.split_once(&format!("127.0.0.1:{}", s.api)).expect("address").1.to_owned();
    Side { host: format!("web-{id}.localhost"), s, id, path, secret }
}

/// One push: seconds to the new page through the router, and the deployment's phases.
fn push(side: &Side, n: usize, before: &str, sha: &str, mark: &str) -> (f64, (f64, f64, f64, f64)) {
    let body = format!(
        r#"{{"ref":"refs/heads/main","before":"{before}","after":"{sha}","deleted":false,"repository":{{"full_name":"o/bench"}}}}"#
    );
    let sig = offshoot_git::hooks::sign_github(side.secret.as_bytes(), body.as_bytes());
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: url-{n}\r\nX-Hub-Signature-256: {sig}",
        side.path,
        body.len()
    );
    let want = format!("round {n} of run {mark}");
    let start = Instant::now();
    let resp = http_raw(side.s.api, &head, body.as_bytes()).unwrap_or_default();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    until("the new page through the router", || http(side.s.router, &side.host, "/").is_some_and(|p| p.contains(&want)));
    let took = start.elapsed().as_secs_f64();
    let e = side.s.json(&["env", "show", &side.id]);
    let d = e["deployments"].as_array().into_iter().flatten().find(|d| d["commit"] == sha).cloned().unwrap_or_default();
    let ms = |k: &str| d["phases"][k].as_f64().unwrap_or(0.0) / 1000.0;
    (took, (ms("fetch"), ms("build"), ms("start"), ms("ready")))
}

type Phases = (f64, f64, f64, f64);

fn report(label: &str, total: &[f64], phases: &[Phases]) -> f64 {
    let m = |f: fn(&Phases) -> f64| median(phases.iter().map(f).collect());
    let (fetch, build, start, ready) = (m(|p| p.0), m(|p| p.1), m(|p| p.2), m(|p| p.3));
    let t = median(total.to_vec());
    let list = total.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    println!("{label}: push webhook → new page through the router: median {t:.3} s over {ROUNDS} pushes [{list}]");
    println!(
        "  breakdown (medians): fetch {fetch:.3} s, build {build:.3} s, start {start:.3} s, deployment ready {ready:.3} s after the webhook; route switch and polling {:.3} s",
        (t - ready).max(0.0)
    );
    t
}

fn main() {
    // Each side its own repository (and so its own content tags: neither builds for the other).
    let repo = app_repo("bench", "web", "", None, false);
    let old_repo = app_repo("bench", "web", "", None, false);
    let after = side(Server::new(None), repo.path());
    let before = std::env::var("OFFSHOOT_BEFORE_BIN").ok().map(|bin| side(Server::new_bin(&bin), old_repo.path()));

    // The by-hand side: the same Dockerfile and page in a directory of its own.
    let hand = tempfile::tempdir().expect("tempdir");
    std::fs::write(hand.path().join("Dockerfile"), DOCKERFILE).expect("write");
    let name = format!("offshoot-bench-by-hand-{}", std::process::id());
    let mark = run_mark();
    by_hand(hand.path(), 0, &name, &mark);

    let mut prev = String::from("0000000000000000000000000000000000000000");
    let mut old_prev = prev.clone();
    let (mut total, mut phases, mut old_total, mut old_phases, mut hand_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 1..=ROUNDS {
        let sha = commit(repo.path(), n, &mark);
        let (t, p) = push(&after, n, &prev, &sha, &mark);
        total.push(t);
        phases.push(p);
        if let Some(b) = &before {
            let old_mark = format!("{mark} before");
            let old_sha = commit(old_repo.path(), n, &old_mark);
            let (t, p) = push(b, n, &old_prev, &old_sha, &old_mark);
            old_prev = old_sha;
            old_total.push(t);
            old_phases.push(p);
        }
        hand_total.push(by_hand(hand.path(), n, &name, &mark));
        prev = sha;
    }
    docker(&["rm", "-f", &name]);
    let t = report("offshoot", &total, &phases);
    if before.is_some() {
        let b = report("built before the change", &old_total, &old_phases);
        println!("ratio after / before: {:.2}", t / b);
    }
    let h = median(hand_total.clone());
    let list = hand_total.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    println!("by hand (docker build + rm -f + run -d + page at the container): median {h:.3} s [{list}]");
    println!("ratio offshoot / by hand: {:.2}; Offshoot's own share (total minus by hand): {:.0} ms", t / h, (t - h) * 1000.0);
}
