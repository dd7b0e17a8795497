//! An upgrade in place: environments made by an older build keep running, untouched, when the
//! current build starts on the same data directory. Needs that older build:
//! `OFFSHOOT_BEFORE_BIN=/path/to/older/offshoot` (skipped, saying why, without it: CI has no
//! older build). The store's own upgrade from the schema before is tested on fixtures in
//! `offshoot-store/tests/upgrade.rs`, always.

#![expect(clippy::print_stderr, reason = "a skipped check says why")]

mod support;

use support::*;

#[test]
fn environments_of_an_older_build_are_adopted_without_a_restart() {
    let Ok(before) = std::env::var("OFFSHOOT_BEFORE_BIN") else {
        eprintln!("upgrade: skipped, OFFSHOOT_BEFORE_BIN does not name an older build");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let r = app_repo("adopt", "web", "", None, false);
    let mut old = Server::start_bin(&before, &data, None, &[], &[]);
    old.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
    let env = old.json(&["env", "create", "adopt", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let started = |c: &str| docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}", c]);
    let containers: Vec<(String, String)> = containers(&id);
    assert!(!containers.is_empty());
    let before_start: Vec<String> = containers.iter().map(|(name, _)| started(name)).collect();
    old.kill();

    let new = Server::start(&data, None);
    let now = new.json(&["env", "show", &id]);
    assert_eq!(now["status"], "ready", "{now}");
    assert_eq!(now["services"][0]["status"], "ready", "{now}");
    let host = format!("web-{id}.localhost");
    let page =
        eventually(30, "the adopted environment to be routed", || http(new.router, &host, "/").filter(|p| p.contains("adopt on main")));
    assert!(page.contains("200 OK"), "{page}");
    // A reconcile round has passed (the first runs at start-up): nothing was recreated.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after_start: Vec<String> = containers.iter().map(|(name, _)| started(name)).collect();
    assert_eq!(before_start, after_start, "the containers were left running as they were");
    assert_eq!(new.json(&["env", "delete", &id, "--wait"])["status"], "deleted");
    assert_eq!(leftovers(&id), "");
}
