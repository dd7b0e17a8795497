//! Push to URL: from a signed GitHub push webhook for a one-line change of a service built from a
//! Dockerfile, until the router serves the new commit's page; with its breakdown from the
//! deployment's phases (fetch, build, start: containers replaced and ready) and the route switch
//! (ready → first response with the new page through the router). Beside it, in the same rounds,
//! the same change by hand with the docker CLI: `docker build` of the same context, `docker rm
//! -f` of the old container, `docker run -d` of the new one, then polling its own address until
//! it serves the new page. Offshoot's own share is everything but the engine's build and start
//! and the service's readiness, estimated as the total minus the by-hand time.
//!
//! Run: `cargo bench -p offshoot --bench push_to_url` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};
use support::{DOCKERFILE, Server, app_repo, docker, git, http, http_raw, median};

const ROUNDS: usize = 15;

fn commit(dir: &std::path::Path, n: usize) -> String {
    std::fs::write(dir.join("web/index.html"), format!("round {n}\n")).expect("write");
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
fn by_hand(ctx: &std::path::Path, n: usize, name: &str) -> f64 {
    std::fs::write(ctx.join("index.html"), format!("round {n}\n")).expect("write");
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
    let want = format!("round {n}");
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

fn main() {
    let repo = app_repo("bench", "web", "", None, false);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "bench", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let host = format!("web-{id}.localhost");
    let w = s.json(&["app", "webhook", "bench"]);
    let (url, secret) = (w["url"].as_str().expect("url"), w["secret"].as_str().expect("secret"));
    let path = url.split_once(&format!("127.0.0.1:{}", s.api)).expect("address").1.to_owned();

    // The by-hand side: the same Dockerfile and page in a directory of its own.
    let hand = tempfile::tempdir().expect("tempdir");
    std::fs::write(hand.path().join("Dockerfile"), DOCKERFILE).expect("write");
    let name = format!("offshoot-bench-by-hand-{}", std::process::id());
    by_hand(hand.path(), 0, &name);

    let mut before = String::from("0000000000000000000000000000000000000000");
    let (mut total, mut hand_total) = (Vec::new(), Vec::new());
    let mut phases: Vec<(f64, f64, f64, f64)> = Vec::new();
    for n in 1..=ROUNDS {
        let sha = commit(repo.path(), n);
        let body = format!(
            r#"{{"ref":"refs/heads/main","before":"{before}","after":"{sha}","deleted":false,"repository":{{"full_name":"o/bench"}}}}"#
        );
        let sig = offshoot_git::hooks::sign_github(secret.as_bytes(), body.as_bytes());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: url-{n}\r\nX-Hub-Signature-256: {sig}",
            body.len()
        );
        let want = format!("round {n}");
        let start = Instant::now();
        let resp = http_raw(s.api, &head, body.as_bytes()).unwrap_or_default();
        assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
        until("the new page through the router", || http(s.router, &host, "/").is_some_and(|p| p.contains(&want)));
        let took = start.elapsed().as_secs_f64();
        total.push(took);
        // The deployment's own record of where the time went.
        let e = s.json(&["env", "show", &id]);
        let d = e["deployments"].as_array().into_iter().flatten().find(|d| d["commit"] == sha.as_str()).cloned().unwrap_or_default();
        let ms = |k: &str| d["phases"][k].as_f64().unwrap_or(0.0) / 1000.0;
        phases.push((ms("fetch"), ms("build"), ms("start"), ms("ready")));
        hand_total.push(by_hand(hand.path(), n, &name));
        before = sha;
    }
    docker(&["rm", "-f", &name]);
    let m = |f: fn(&(f64, f64, f64, f64)) -> f64| median(phases.iter().map(f).collect());
    let (fetch, build, start, ready) = (m(|p| p.0), m(|p| p.1), m(|p| p.2), m(|p| p.3));
    let t = median(total.clone());
    let h = median(hand_total.clone());
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    println!("push webhook → new page served through the router: median {t:.3} s over {ROUNDS} pushes [{}]", fmt(&total));
    println!(
        "  breakdown (medians): fetch {fetch:.3} s, build {build:.3} s, start {start:.3} s, deployment ready {ready:.3} s after the webhook; route switch and polling {:.3} s",
        (t - ready).max(0.0)
    );
    println!("by hand (docker build + rm -f + run -d + page at the container): median {h:.3} s [{}]", fmt(&hand_total));
    println!("ratio offshoot / by hand: {:.2}; Offshoot's own share (total minus by hand): {:.0} ms", t / h, (t - h) * 1000.0);
}
