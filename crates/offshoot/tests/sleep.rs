//! End to end on the Docker engine: an environment put to sleep stops its containers (kept,
//! their memory freed, their volume's data kept) and wakes on the first request through the
//! router, which holds that request (and every other that arrives meanwhile) and answers it.

mod support;

use std::time::Instant;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
use support::*;

/// The memory each of an environment's containers uses now, as the engine reports it (bytes).
fn memory(id: &str) -> Vec<(String, u64)> {
    let names: Vec<String> = containers(id).into_iter().map(|(n, _)| n).collect();
    container_memory(&names)
}

fn running(id: &str) -> Vec<String> {
    containers(id)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| docker(&["inspect", "--format", "{{.State.Running}}", n]).trim() == "true")
        .collect()
}

#[test]
fn a_sleeping_environment_frees_its_memory_keeps_its_data_and_wakes_once_on_requests() {
    let repo = repo(NAP, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let web = format!("web-{id}.localhost");
    let o = s.cli(&["env", "exec", &id, "store", "--", "sh", "-c", "echo kept > /data/mark"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before: Vec<(String, u64)> = memory(&id);
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().all(|(_, m)| *m > 0), "running containers use memory: {before:?}");

    // Asleep: the same containers, stopped; no memory in use.
    let slept = s.json(&["env", "sleep", &id, "--wait"]);
    assert_eq!(slept["status"], "sleeping", "{slept}");
    assert!(slept["sleeping_since"].as_i64().is_some(), "{slept}");
    assert_eq!(containers(&id).len(), 2, "kept, not removed");
    assert_eq!(running(&id), Vec::<String>::new());
    let after = memory(&id);
    assert!(after.iter().all(|(_, m)| *m == 0), "stopped containers hold no memory: {after:?}");
    let services = slept["services"].as_array().expect("services");
    assert!(services.iter().all(|s| s["status"] == "sleeping"), "{slept}");

    // The first request wakes it and gets the page.
    let started = Instant::now();
    let page = http(s.router, &web, "/").expect("answer");
    let first = started.elapsed();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains(&format!("nap of {id}")), "{page}");
    let awake = s.json(&["env", "show", &id]);
    assert_eq!(awake["status"], "ready", "{awake}");
    assert!(awake.get("sleeping_since").is_none(), "{awake}");
    assert_eq!(running(&id).len(), 2);
    let mark = s.cli(&["env", "exec", &id, "store", "--", "cat", "/data/mark"]);
    assert_eq!(String::from_utf8_lossy(&mark.stdout).trim(), "kept", "the volume's data survives a sleep");

    // Asleep again: 50 requests at once all get the page, and wake it once.
    s.json(&["env", "sleep", &id, "--wait"]);
    let answers: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..50).map(|_| sc.spawn(|| http(s.router, &web, "/").unwrap_or_default())).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let ok = answers.iter().filter(|a| a.starts_with("HTTP/1.1 200")).count();
    assert_eq!(ok, 50, "{:?}", answers.iter().find(|a| !a.starts_with("HTTP/1.1 200")));
    let log = s.json(&["activity", "--limit", "100"]);
    let wakes: Vec<&serde_json::Value> =
        log.as_array().expect("entries").iter().filter(|a| a["operation"] == "env.wake" && a["target"] == id.as_str()).collect();
    assert_eq!(wakes.len(), 2, "one wake per sleep, whatever the requests: {wakes:?}");
    assert!(wakes.iter().all(|w| w["actor"] == "router" && w["outcome"] == "ok"), "{wakes:?}");
    let last = eventually(10, "the last request recorded", || s.json(&["env", "show", &id])["last_request_at"].as_i64());
    assert!(last >= now_ms() - 60_000, "{last}");

    // A sleeping environment is torn down like any other.
    s.json(&["env", "sleep", &id, "--wait"]);
    let gone = s.json(&["env", "delete", &id, "--wait"]);
    assert_eq!(gone["status"], "deleted", "{gone}");
    assert_eq!(leftovers(&id), "");
    assert!(first < std::time::Duration::from_secs(60), "the first request after sleep took {first:?}");
}

#[test]
fn an_environment_without_requests_for_its_idle_time_sleeps_and_probes_do_not_keep_it_awake() {
    let repo = repo(NAP, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let app = s.json(&["app", "set", "nap", "--idle-sleep", "10s"]);
    assert_eq!(app["idle_sleep_seconds"], 10, "{app}");
    let env = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    assert_eq!(env["idle_sleep_seconds"], 10, "{env}");
    let web = format!("web-{id}.localhost");
    // Requests every second for 16 s: awake throughout (its readiness probe runs every second
    // too, and counts for nothing).
    let until = Instant::now() + std::time::Duration::from_secs(16);
    while Instant::now() < until {
        assert!(http(s.router, &web, "/").is_some_and(|p| p.starts_with("HTTP/1.1 200")));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(s.json(&["env", "show", &id])["status"], "ready");
    // No request: asleep within the idle time and a reconcile round or two.
    let stopped = Instant::now();
    eventually(30, "idle sleep", || (s.json(&["env", "show", &id])["status"] == "sleeping").then_some(()));
    assert!(stopped.elapsed() >= std::time::Duration::from_secs(9), "not before its idle time: {:?}", stopped.elapsed());
    // Recorded once its containers have stopped.
    eventually(15, "the idle sleep recorded", || {
        let log = s.json(&["activity", "--limit", "20"]);
        let entries = log.as_array().cloned().unwrap_or_default();
        entries.iter().any(|a| a["operation"] == "env.sleep" && a["actor"] == "idle" && a["target"] == id.as_str()).then_some(())
    });
    // An environment that opts out stays awake.
    s.json(&["env", "wake", &id, "--wait"]);
    let set = s.json(&["env", "set", &id, "--idle-sleep", "off"]);
    assert!(set.get("idle_sleep_seconds").is_none(), "{set}");
    std::thread::sleep(std::time::Duration::from_secs(17));
    assert_eq!(s.json(&["env", "show", &id])["status"], "ready");
    let bad = s.cli(&["env", "set", &id, "--idle-sleep", "1s"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("idle_sleep: `1s` is not between 10 seconds and 30 days"), "{bad:?}");
}

#[test]
fn a_server_killed_while_an_environment_wakes_or_falls_asleep_finishes_it_after_a_restart() {
    // The web page takes 2 s to come up after a start, and the store ignores SIGTERM (its
    // stop takes the engine's 10 s): both operations are long enough to be killed in the middle.
    let slow = NAP.replace("trap 'exit 0' TERM; mkdir -p /data", "mkdir -p /data").replace("httpd -f", "sleep 2 && httpd -f");
    let r = repo(&slow, None, &[], &[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, None);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let (store, web) = (format!("offshoot-{id}-store"), format!("offshoot-{id}-web"));
    let is_running = |c: &str| docker(&["inspect", "--format", "{{.State.Running}}", c]).trim() == "true";
    s.json(&["env", "sleep", &id, "--wait"]);

    // A wake, killed once the store runs again and before the page is up.
    assert_eq!(s.json(&["env", "wake", &id])["status"], "sleeping", "started, not waited for");
    eventually(30, "the store started", || is_running(&store).then_some(()));
    s.kill();
    let mut s2 = Server::start(&data, None);
    eventually(60, "the wake finished after the restart", || (s2.json(&["env", "show", &id])["status"] == "ready").then_some(()));
    let page = http(s2.router, &format!("web-{id}.localhost"), "/").unwrap_or_default();
    assert!(page.starts_with("HTTP/1.1 200") && page.contains(&format!("nap of {id}")), "{page}");

    // A sleep, killed once the page has stopped and while the store takes its 10 s.
    assert_eq!(s2.json(&["env", "sleep", &id])["status"], "ready", "started, not waited for");
    eventually(30, "the page stopped", || (!is_running(&web)).then_some(()));
    s2.kill();
    let s3 = Server::start(&data, None);
    eventually(60, "the sleep finished after the restart", || {
        let e = s3.json(&["env", "show", &id]);
        (e["status"] == "sleeping" && !is_running(&store) && !is_running(&web)).then_some(())
    });
    assert_eq!(containers(&id).len(), 2, "kept, not removed");
    assert_eq!(s3.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(leftovers(&id), "");
}

#[test]
fn at_its_limit_the_server_puts_the_least_recently_used_environment_to_sleep_and_says_so() {
    // The page may take 64 MiB.
    let limited = NAP.replace("- name: web\n  image:", "- name: web\n  memory:\n    limits: 64Mi\n  image:");
    assert_ne!(limited, NAP);
    let r = repo(&limited, None, &[], &[]);
    let mut s = Server::new_with(None, &["--max-environments", "1", "--memory-budget", "2GiB"]);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let first = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    let first = first["id"].as_str().expect("id").to_owned();
    let second = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    assert_eq!(second["status"], "ready", "{second}");
    let second = second["id"].as_str().expect("id").to_owned();
    let shown = s.json(&["env", "show", &first]);
    assert_eq!(shown["status"], "sleeping", "made room: {shown}");
    let st = s.json(&["status"]);
    assert_eq!((st["running"].as_u64(), st["sleeping"].as_u64(), st["max_environments"].as_u64()), (Some(1), Some(1), Some(1)), "{st}");
    assert_eq!(st["memory_budget"].as_u64(), Some(2 << 30), "{st}");
    let text = s.cli(&["status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("environments: 1 running (of 1), 1 sleeping"), "{text:?}");
    let log = s.json(&["activity", "--limit", "20"]);
    let made_room = log.as_array().expect("entries").iter().any(|a| a["actor"] == "capacity" && a["target"] == first.as_str());
    assert!(made_room, "{log}");
    let bad = s.cli(&["server", "--memory-budget", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`lots` is not a size"), "{bad:?}");

    // Restarted with a budget nothing fits in: a request for the sleeping one is answered at
    // once with why it cannot wake, not held until the wake timeout.
    s.kill();
    let data = s.data.clone();
    let s2 = Server::start_with(&data, None, &["--memory-budget", "1MiB"]);
    let started = Instant::now();
    let page = http(s2.router, &format!("web-{first}.localhost"), "/").expect("answer");
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(page.contains(&format!("Environment `{first}` is asleep and could not wake")) && page.contains("memory budget"), "{page}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    let shown = s2.json(&["env", "show", &first]);
    assert_eq!(shown["status"], "sleeping", "{shown}");
    for id in [first.as_str(), second.as_str()] {
        s2.json(&["env", "delete", id, "--wait"]);
        assert_eq!(leftovers(id), "");
    }
}

#[test]
fn a_load_balancer_connection_wakes_a_sleeping_environment_and_keeps_it_awake_while_open() {
    use std::io::{Read as _, Write as _};
    let lb = NAP.replace("    port: '6379'\n  volumes:", "    port: '6379'\n    loadbalancer: true\n  volumes:");
    let r = repo(&lb, None, &[], &[]);
    let s = Server::new(None);
    s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    s.json(&["app", "set", "nap", "--idle-sleep", "10s"]);
    let env = s.json(&["env", "create", "nap", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let address = |e: &serde_json::Value| -> std::net::SocketAddr {
        let store = e["services"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "store")).expect("store");
        store["load_balancers"][0]["address"].as_str().expect("address").parse().expect("addr")
    };
    let before = address(&env);

    // Asleep, its port stays open, at the same address; a connection wakes it and is passed on.
    let slept = s.json(&["env", "sleep", &id, "--wait"]);
    assert_eq!(slept["status"], "sleeping", "{slept}");
    assert_eq!(address(&slept), before, "{slept}");
    assert_eq!(running(&id), Vec::<String>::new());
    let mut c = std::net::TcpStream::connect(before).expect("connect");
    c.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    c.write_all(b"ping\n").expect("write");
    let mut back = [0u8; 5];
    c.read_exact(&mut back).expect("echo once awake");
    assert_eq!(&back, b"ping\n");
    assert_eq!(s.json(&["env", "show", &id])["status"], "ready");
    let log = s.json(&["activity", "--limit", "20"]);
    let woke = log
        .as_array()
        .expect("entries")
        .iter()
        .any(|a| a["operation"] == "env.wake" && a["actor"] == "router" && a["target"] == id.as_str());
    assert!(woke, "{log}");

    // An open connection is activity: no request for twice the idle time, still awake.
    std::thread::sleep(std::time::Duration::from_secs(20));
    assert_eq!(s.json(&["env", "show", &id])["status"], "ready", "an open load-balancer connection keeps it awake");
    c.write_all(b"pong\n").expect("write");
    c.read_exact(&mut back).expect("echo");
    assert_eq!(&back, b"pong\n");
    // Closed: asleep after its idle time.
    drop(c);
    eventually(40, "idle sleep after the connection closed", || (s.json(&["env", "show", &id])["status"] == "sleeping").then_some(()));
    assert_eq!(s.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(leftovers(&id), "");
}
