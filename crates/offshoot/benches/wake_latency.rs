//! Wake latency: from the first request to a sleeping environment (the two-service `nap`
//! example: a store with a volume and a web page that depends on it) to its response through the
//! router, over ROUNDS wakes. Beside it, in the same rounds, the floor: the engine starting the
//! same stopped containers in the same order by hand (`docker start`), each waited for until its
//! readiness probe passes (the store's port, then the page at the web container's address).
//!
//! Run: `cargo bench -p offshoot --bench wake_latency` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};
use support::{NAP, Server, docker, http, repo};

const ROUNDS: usize = 20;

/// Polls `f` every 2 ms until it says yes.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn page_at(ip: &str, want: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect((ip, 8080)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    s.read_to_string(&mut out).is_ok() && (out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")) && out.contains(want)
}

fn address(container: &str) -> String {
    docker(&["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]).trim().to_owned()
}

/// The percentile `p` (0 to 100) of `v`.
fn percentile(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn main() {
    let r = repo(NAP, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let host = format!("web-{id}.localhost");
    let want = format!("nap of {id}");
    let (store, web) = (format!("offshoot-{id}-store"), format!("offshoot-{id}-web"));
    let (mut woken, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        // Offshoot: the first request wakes it and is answered.
        assert_eq!(s.json(&["env", "sleep", &id, "--wait"])["status"], "sleeping");
        let start = Instant::now();
        let page = http(s.router, &host, "/").unwrap_or_default();
        woken.push(start.elapsed().as_secs_f64());
        assert!(page.starts_with("HTTP/1.1 200") && page.contains(&want), "{page}");

        // The floor: the same containers started by hand, in order, each until ready.
        assert_eq!(s.json(&["env", "sleep", &id, "--wait"])["status"], "sleeping");
        let start = Instant::now();
        docker(&["start", &store]);
        let store_ip = address(&store);
        until("the store's port", || std::net::TcpStream::connect((store_ip.as_str(), 6379)).is_ok());
        docker(&["start", &web]);
        let web_ip = address(&web);
        until("the page", || page_at(&web_ip, &want));
        floor.push(start.elapsed().as_secs_f64());
        // Back in step: the wake finds them running and ready.
        assert_eq!(s.json(&["env", "wake", &id, "--wait"])["status"], "ready");
    }
    s.json(&["env", "delete", &id, "--wait"]);
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
    let (m, p90) = (support::median(woken.clone()), percentile(woken.clone(), 90));
    let (fm, fp90) = (support::median(floor.clone()), percentile(floor.clone(), 90));
    println!("first request to a sleeping environment → its page: median {m:.3} s, p90 {p90:.3} s over {ROUNDS} wakes [{}]", list(&woken));
    println!("the engine starting the same containers by hand, each until ready: median {fm:.3} s, p90 {fp90:.3} s [{}]", list(&floor));
    println!("ratio wake / floor (medians): {:.2} (goal: at most 1.3; and the median under 1 s)", m / fm);
}
