//! Load held, and the server killed at random instants under it. Environments live whole
//! lifecycles (created, patched by a signed push webhook, put to sleep, woken, deleted) a few at
//! a time, while environments kept alive are served by the router at a steady rate. At the end
//! nothing is left: no environment, container, network or volume.
//!
//! The CI runs a short version. The long one (200 lifecycles, 50 alive, 1,000 requests a second)
//! is the same test with its sizes in the environment:
//!
//! ```text
//! OFFSHOOT_SOAK_LIFECYCLES=200 OFFSHOOT_SOAK_ALIVE=50 OFFSHOOT_SOAK_RPS=1000 OFFSHOOT_SOAK_WORKERS=4 \
//! OFFSHOOT_SOAK_MINUTES=30 OFFSHOOT_SOAK_REPORT=/tmp/soak.txt cargo nextest run -p offshoot --test soak load_held
//! ```

mod support;

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use support::hooks::{Hook, github_push};
use support::*;

const TEMPLATE: &str = "app: soak
auto_deploy: true
hostnames:
- web: web-${env_id}.${domain}
services:
- name: web
  image: busybox:stable
  command: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www']
  ports:
  - type: node_port
    port: '8080'
    target_port: '8080'
  readiness_probe:
    http_get:
      path: /
      port: '8080'
    period_seconds: 1
    failure_threshold: 30
";

fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The server, replaced when it is killed and started again.
struct Shared {
    server: RwLock<Server>,
    router: AtomicU16,
    /// Set while the server is down or coming back: failed requests then are the fault's.
    restarting: AtomicBool,
}

impl Shared {
    /// A CLI call; `None` when it failed (the server may be down).
    fn try_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let o = self.server.read().expect("lock").cli(&[args, &["--output", "json"]].concat());
        o.status.success().then(|| serde_json::from_slice(&o.stdout).ok()).flatten()
    }

    fn env(&self, id: &str) -> Option<serde_json::Value> {
        self.try_json(&["env", "show", id])
    }

    /// Runs `act` until `done` holds of the environment (or of its absence), for up to `secs`.
    fn until(&self, secs: u64, what: &str, id: &str, act: impl Fn(&Shared), done: impl Fn(Option<&serde_json::Value>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            act(self);
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                let e = self.env(id);
                if done(e.as_ref()) && !self.restarting.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if Instant::now() >= deadline {
                let e = self.env(id).unwrap_or_default();
                let services: Vec<String> = e["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| format!("{} {} {}", s["name"], s["status"], s["reason"]))
                    .collect();
                let log = self.server.read().expect("lock").log();
                let about: Vec<&str> = log.lines().filter(|l| l.contains(id) || l.contains("WARN") || l.contains("ERROR")).collect();
                panic!(
                    "{id}: not {what} after {secs} s: {} ({}), services {services:?}; {e}\n{}",
                    e["status"],
                    e["reason"],
                    about[about.len().saturating_sub(40)..].join("\n")
                );
            }
        }
    }
}

/// Deleted: no longer found, or kept on record as deleted.
fn gone(e: Option<&serde_json::Value>) -> bool {
    e.is_none_or(|e| e["status"] == "deleted")
}

fn status_is(e: Option<&serde_json::Value>, s: &str) -> bool {
    e.is_some_and(|e| e["status"] == s)
}

/// Signs and posts a GitHub push of `commit` on `branch` (nothing when the server is down).
fn push_hook(sh: &Shared, branch: &str, commit: &str, delivery: &str) {
    let Some(w) = sh.try_json(&["app", "webhook", "soak"]) else { return };
    let hook = Hook::from_answer(sh.server.read().expect("lock").api, &w);
    hook.github("push", delivery, &github_push(branch, "0000000000000000000000000000000000000000", commit));
}

fn git_out(dir: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git").current_dir(dir).args(args).output().expect("git");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// One lifecycle on branch `lc-N`: created, patched by a push webhook, put to sleep, woken,
/// deleted; each step retried until it holds (the server may be killed meanwhile). Its id.
fn lifecycle(sh: &Shared, repo: &std::path::Path, n: usize) -> String {
    let branch = format!("lc-{n}");
    git_out(repo, &["branch", "-f", &branch, "main"]);
    let existing = |sh: &Shared| {
        sh.try_json(&["env", "list"]).and_then(|l| {
            l.as_array().and_then(|a| a.iter().find(|e| e["branch"] == branch.as_str()).and_then(|e| e["id"].as_str()).map(str::to_owned))
        })
    };
    // Created once: a create whose answer was lost is found by its branch.
    let id = loop {
        if let Some(id) = existing(sh) {
            break id;
        }
        if let Some(e) = sh.try_json(&["env", "create", "soak", "--branch", &branch]) {
            break e["id"].as_str().expect("id").to_owned();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let settled = |e: Option<&serde_json::Value>| e.is_some_and(|e| e["status"] == "ready" || e["status"] == "failed");
    sh.until(180, "ready", &id, |_| {}, settled);
    if status_is(sh.env(&id).as_ref(), "failed") {
        // Failed with its reason (a kill can cut a deployment short): deployed again.
        let reason = sh.env(&id).map(|e| e["reason"].to_string()).unwrap_or_default();
        assert!(!reason.is_empty() && reason != "null", "{id} failed without a reason");
        sh.until(180, "ready again", &id, |sh| drop(sh.try_json(&["env", "deploy", &id])), |e| status_is(e, "ready"));
    }
    // Patched: a commit on its branch, announced by a signed webhook (the same delivery id
    // again until the environment has it).
    let tree = git_out(repo, &["rev-parse", &format!("{branch}^{{tree}}")]);
    let commit = git_out(repo, &["commit-tree", &tree, "-p", &branch, "-m", &format!("patch {n}")]);
    git_out(repo, &["update-ref", &format!("refs/heads/{branch}"), &commit]);
    let delivery = format!("soak-{n}-{}", std::process::id());
    sh.until(
        180,
        "patched",
        &id,
        |sh| push_hook(sh, &branch, &commit, &delivery),
        |e| e.is_some_and(|e| e["status"] == "ready" && e["commit"].as_str() == Some(commit.as_str())),
    );
    sh.until(120, "asleep", &id, |sh| drop(sh.try_json(&["env", "sleep", &id])), |e| status_is(e, "sleeping"));
    sh.until(120, "awake", &id, |sh| drop(sh.try_json(&["env", "wake", &id])), |e| status_is(e, "ready"));
    sh.until(120, "deleted", &id, |sh| drop(sh.try_json(&["env", "delete", &id])), gone);
    id
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// What a run measured; written out through `Debug`.
#[derive(Debug, Default)]
#[allow(dead_code, reason = "read through Debug, in the report")]
struct Report {
    lifecycles: usize,
    seconds: f64,
    requests: u64,
    /// Failed requests to environments kept alive, outside the server's restarts.
    errors: u64,
    /// Failed while the server was down or coming back (the fault's).
    injected: u64,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    rss_end_kib: u64,
    kills: usize,
}

/// Runs the soak: `kills` kill -9s of the server at random instants, the sizes from the
/// environment (or the short defaults).
fn soak(kills: usize) -> Report {
    let lifecycles = size("OFFSHOOT_SOAK_LIFECYCLES", 8);
    let alive = size("OFFSHOOT_SOAK_ALIVE", 3);
    let rps = size("OFFSHOOT_SOAK_RPS", 200) as u64;
    let workers = size("OFFSHOOT_SOAK_WORKERS", 3);
    let repo = repo(TEMPLATE, None, &[], &[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Server::start(&data, None);
    server.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let mut kept = Vec::new();
    for _ in 0..alive {
        let e = server.json(&["env", "create", "soak", "--branch", "main"]);
        kept.push(e["id"].as_str().expect("id").to_owned());
    }
    let sh = Arc::new(Shared { router: AtomicU16::new(server.router), server: RwLock::new(server), restarting: AtomicBool::new(false) });
    // Threads hold the server: on a failure it would outlive the test, environments and all.
    struct CleanUp(Arc<Shared>, Arc<AtomicBool>);
    impl Drop for CleanUp {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
            self.0.server.write().unwrap_or_else(std::sync::PoisonError::into_inner).clean_up();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let _clean_up = CleanUp(sh.clone(), stop.clone());
    for id in &kept {
        sh.until(180, "ready", id, |_| {}, |e| status_is(e, "ready"));
    }
    let hosts: Vec<String> = kept.iter().map(|id| format!("web-{id}.localhost")).collect();
    for h in &hosts {
        eventually(30, "served", || http(sh.router.load(Ordering::SeqCst), h, "/").filter(|r| r.starts_with("HTTP/1.1 200")));
    }

    let (requests, errors, injected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors_seen = Arc::new(Mutex::new(Vec::new()));
    let load_threads = 8u64;
    let mut load = Vec::new();
    for t in 0..load_threads {
        let (sh, stop, hosts) = (sh.clone(), stop.clone(), hosts.clone());
        let (requests, errors, injected, seen) = (requests.clone(), errors.clone(), injected.clone(), errors_seen.clone());
        let every = Duration::from_secs_f64(load_threads as f64 / rps.max(1) as f64);
        load.push(std::thread::spawn(move || {
            let mut i = t as usize;
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let during_restart = sh.restarting.load(Ordering::SeqCst);
                let answer = http(sh.router.load(Ordering::SeqCst), &hosts[i % hosts.len()], "/");
                requests.fetch_add(1, Ordering::Relaxed);
                if !answer.as_deref().is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
                    if during_restart || sh.restarting.load(Ordering::SeqCst) {
                        injected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut s = seen.lock().expect("lock");
                        if s.len() < 5 {
                            s.push(answer.unwrap_or_default().lines().next().unwrap_or("no answer").to_owned());
                        }
                    }
                }
                i += load_threads as usize;
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }));
    }
    let pid = || sh.server.read().expect("lock").child.id();
    let rss_start = rss_kib(pid());
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (sh, stop, peak) = (sh.clone(), stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(sh.server.read().expect("lock").child.id()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let repo_path = repo.path().to_owned();
    let mut running = Vec::new();
    for _ in 0..workers {
        let (sh, next, ids, repo_path) = (sh.clone(), next.clone(), ids.clone(), repo_path.clone());
        running.push(std::thread::spawn(move || {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= lifecycles {
                    return;
                }
                let id = lifecycle(&sh, &repo_path, n);
                ids.lock().expect("lock").push(id);
            }
        }));
    }
    // The kills, at random instants while the lifecycles run.
    let mut rng = fastrand::Rng::new();
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.u64(3_000..12_000)));
        if running.iter().all(std::thread::JoinHandle::is_finished) {
            break;
        }
        sh.restarting.store(true, Ordering::SeqCst);
        {
            let mut server = sh.server.write().expect("lock");
            server.restart(&[]);
            sh.router.store(server.router, Ordering::SeqCst);
        }
        // Back once the environments kept alive are served again.
        for h in &hosts {
            eventually(60, &format!("served again after kill {k}"), || {
                http(sh.router.load(Ordering::SeqCst), h, "/").filter(|r| r.starts_with("HTTP/1.1 200"))
            });
        }
        sh.restarting.store(false, Ordering::SeqCst);
    }
    for r in running {
        r.join().expect("a lifecycle failed");
    }
    // The load goes on for the run's whole length, when one is given.
    let minutes = size("OFFSHOOT_SOAK_MINUTES", 0) as u64;
    if let Some(rest) = Duration::from_secs(minutes * 60).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.join().expect("load");
    }
    sampler.join().expect("sampler");
    let rss_end = rss_kib(pid());
    let report = Report {
        lifecycles,
        seconds,
        requests: requests.load(Ordering::SeqCst),
        errors: errors.load(Ordering::SeqCst),
        injected: injected.load(Ordering::SeqCst),
        rss_start_kib: rss_start,
        rss_peak_kib: peak.load(Ordering::SeqCst),
        rss_end_kib: rss_end,
        kills,
    };
    assert_eq!(report.errors, 0, "requests to environments kept alive failed: {:?}; {report:?}", errors_seen.lock().expect("lock"));

    // Nothing left: every environment deleted, nothing of theirs on the engine.
    for id in &kept {
        sh.until(120, "deleted", id, |sh| drop(sh.try_json(&["env", "delete", id])), gone);
    }
    let remaining = sh.try_json(&["env", "list"]).expect("env list");
    assert!(remaining.as_array().is_some_and(|l| l.iter().all(|e| e["status"] == "deleted")), "environments remain: {remaining}");
    for id in kept.iter().chain(ids.lock().expect("lock").iter()) {
        eventually(60, &format!("nothing of {id} on the engine"), || leftovers(id).trim().is_empty().then_some(()));
    }
    if let Ok(path) = std::env::var("OFFSHOOT_SOAK_REPORT") {
        std::fs::write(path, format!("{report:#?}\n")).expect("write the report");
    }
    report
}

/// Lifecycles under steady router load and webhooks: no request to an environment kept alive
/// fails, and the server's memory at the end is within reach of where it started.
#[test]
fn load_held() {
    let r = soak(0);
    assert!(r.requests > 0, "{r:?}");
    assert!(r.rss_end_kib <= r.rss_start_kib + r.rss_start_kib / 2 + 32 * 1024, "memory grew: {r:?}");
}

/// The same, with the server killed (-9) at random instants and started again: every lifecycle
/// still completes, requests fail only while the server is down, and nothing is left.
#[test]
fn killed_at_random_instants_under_load() {
    let r = soak(3);
    assert!(r.requests > 0, "{r:?}");
}
