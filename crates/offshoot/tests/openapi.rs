//! The API against the description it publishes (`GET /api/v1/openapi.json`, made from the
//! handlers' annotations by utoipa). schemathesis generates requests for every operation, valid
//! and malformed, and checks every answer: no 5xx; status, content type and body as described;
//! 401 without a token; 405 with a true `Allow` for other methods; schema-violating requests
//! refused. Two passes on a server that has an application and a ready environment: first with
//! the path parameters pinned to them, so that generated bodies reach real objects (nothing is
//! deleted); then free, with unknown names and whatever it finds in answers, deletions included.
//!
//! Left out: creating applications and datasets (they connect to the repository or database
//! server a body names: a generated one could be anywhere), and the operations that can lock the
//! caller out (revoking tokens, disabling users, changing roles); their own tests cover them.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

const SCHEMATHESIS: &str = "/opt/offshoot-schemathesis/bin/schemathesis";

/// One pass of schemathesis over the description; its whole output.
fn pass(st: &str, s: &Server, dir: &Path, spec: &Path, config: Option<&Path>, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(st);
    if let Some(c) = config {
        cmd.args(["--config-file", c.to_str().expect("utf-8")]);
    }
    let auth = format!("Authorization: Bearer {}", s.token());
    let url = format!("http://127.0.0.1:{}", s.api);
    cmd.args(["run", spec.to_str().expect("utf-8"), "--url", &url, "-H", &auth]);
    // Not checked: that every schema-valid request is accepted (names, hosts and roles have
    // rules a schema does not say; refusals are 4xx with the reason), and that a deleted
    // resource answers 404 (an environment's teardown runs after the 202, and its record stays
    // readable with the status `deleted`).
    cmd.args(["--checks", "all", "--exclude-checks", "positive_data_acceptance,use_after_free"]);
    for op in ["create_app", "create_dataset", "revoke_token", "disable_user", "set_user"] {
        cmd.args(["--exclude-operation-id", op]);
    }
    // Stopping a container takes up to its 10 s grace: a sleep that waits for one is no hang.
    // One worker: hypothesis, under schemathesis's threads, now and then fails inside itself
    // ("AST constructor recursion depth mismatch"), which says nothing of the API.
    cmd.args(["--seed", "1", "-w", "1", "--max-examples", "25", "--request-timeout", "60", "--max-response-time", "60"]);
    cmd.args(extra).current_dir(dir).env("NO_COLOR", "1");
    let out = cmd.output().expect("run schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// How many test cases a pass generated and how many passed (`N generated, N passed`).
fn cases(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next().is_some_and(|n| n.parse::<u64>().is_ok()) && words.next().is_some_and(|w| w.starts_with("generated"))
        })
        .unwrap_or_default();
    let number = |word: &str| {
        line.split(',').find(|p| p.contains(word)).and_then(|p| p.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    (number("generated"), number("passed"))
}

#[test]
fn the_api_answers_as_its_openapi_description_says() {
    let st = std::env::var("OFFSHOOT_SCHEMATHESIS").unwrap_or_else(|_| SCHEMATHESIS.into());
    assert!(Path::new(&st).exists(), "schemathesis is not at {st}: `scripts/services` installs it (or set OFFSHOOT_SCHEMATHESIS)");
    let s = Server::new(None);
    let work = tempfile::tempdir().expect("tempdir");

    // The description: served without a token, OpenAPI 3.1, every operation in it.
    let (status, headers, body) = fetch(s.api, "GET", "localhost", "/api/v1/openapi.json", &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("content-type").map(String::as_str), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("the description is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let ops: usize = doc["paths"].as_object().expect("paths").values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
    assert!(ops >= 50, "{ops} operations described");
    assert_eq!(
        doc["components"]["responses"]["Unauthorized"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let spec = work.path().join("openapi.json");
    std::fs::write(&spec, &body).expect("write the description");

    // An application and a ready environment for the pinned pass.
    let repo = app_repo("demo", "web", "", None, false);
    let created = s.cli(&["app", "create", "--repo", repo.path().to_str().expect("utf-8"), "--name", "demo"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let env = s.json(&["env", "create", "demo", "--branch", "main", "--wait"]);
    assert_eq!(env["status"], "ready", "{env}");
    let id = env["id"].as_str().expect("id").to_owned();
    let config = work.path().join("pinned.toml");
    std::fs::write(&config, format!("[parameters]\n\"path.name\" = \"demo\"\n\"path.id\" = \"{id}\"\n")).expect("config");

    let pinned =
        pass(&st, &s, work.path(), &spec, Some(&config), &["--exclude-operation-id", "delete_app", "--exclude-operation-id", "delete_env"]);
    let free = pass(&st, &s, work.path(), &spec, None, &[]);
    for (name, (ok, text)) in [("pinned", &pinned), ("free", &free)] {
        assert!(ok, "schemathesis ({name} pass) found the API unlike its description:\n{text}");
        // A pass whose requests were all refused at the door proves nothing.
        assert!(!text.contains("Authentication failed"), "{name} pass: requests were refused as unauthenticated:\n{text}");
        let (generated, passed) = cases(text);
        assert!(generated >= 1000 && passed == generated, "{name} pass: {generated} cases generated, {passed} passed:\n{text}");
    }
    // The token still works (no pass locked itself out), and nothing panicked.
    let auth = format!("Bearer {}", s.token());
    let (status, _, me) = fetch(s.api, "GET", "localhost", "/api/v1/whoami", &[("Authorization", &auth)]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&me));
    assert!(!s.log().contains("panicked"), "the server panicked:\n{}", s.log());
}
