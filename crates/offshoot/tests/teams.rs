//! Users, roles, tokens and the audit trail, through the real API. The role matrix is generated
//! from the control plane's list of operations: every operation × every role, with the expected
//! allow or 403, and exactly one audit entry per request. A new operation without a request here
//! does not compile (the `match` below is exhaustive); its role is declared with it.

mod support;

use offshoot_control::{Operation, Role};
use support::*;

/// A raw API call: its status and body.
fn call(s: &Server, token: &str, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
        body.len()
    );
    let raw = http_raw(s.api, &head, body.as_bytes()).expect("an answer");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status");
    let json = raw.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A request that does `op`, on objects that do not exist (an allowed request then fails past
/// the role check, without changing anything that matters), made unique by `n`.
fn request(op: Operation, n: usize) -> (&'static str, String, Option<serde_json::Value>) {
    use serde_json::json;
    let (m, p, b) = match op {
        Operation::CreateApp => ("POST", "/apps".into(), Some(json!({"repo": "/nonexistent/repo"}))),
        Operation::DeleteApp => ("DELETE", "/apps/nope".into(), None),
        Operation::UpdateApp => ("POST", "/apps/nope/settings".into(), Some(json!({"pull_requests": true}))),
        Operation::RotateWebhook => ("POST", "/apps/nope/webhook".into(), Some(json!({}))),
        Operation::UpdateTemplate => ("PUT", "/apps/nope/template".into(), Some(json!({"template": "app: nope\n"}))),
        Operation::SetSecret => ("POST", "/apps/nope/secrets".into(), Some(json!({"key": "K", "value": "v"}))),
        Operation::GrantApp => ("POST", "/apps/nope/grants".into(), Some(json!({"email": "dev@example.com", "role": "admin"}))),
        Operation::CreateEnv => ("POST", "/envs".into(), Some(json!({"app": "nope", "branch": "main"}))),
        Operation::DeployEnv => ("POST", "/envs/nope123/deploy".into(), Some(json!({}))),
        Operation::DeleteEnv => ("DELETE", "/envs/nope123".into(), None),
        Operation::ExecInEnv => ("POST", "/envs/nope123/exec".into(), Some(json!({"service": "web", "command": ["true"]}))),
        Operation::SleepEnv => ("POST", "/envs/nope123/sleep".into(), Some(json!({}))),
        Operation::WakeEnv => ("POST", "/envs/nope123/wake".into(), Some(json!({}))),
        Operation::UpdateEnv => ("POST", "/envs/nope123/settings".into(), Some(json!({"idle_sleep": "1h"}))),
        Operation::ExtendEnv => ("POST", "/envs/nope123/extend".into(), Some(json!({"ttl_seconds": 3600}))),
        Operation::CreateDataset => ("POST", "/datasets".into(), Some(json!({"name": "nope", "source": "not a url"}))),
        Operation::RefreshDataset => ("POST", "/datasets/nope/refresh".into(), Some(json!({}))),
        Operation::DeleteDataset => ("DELETE", "/datasets/nope".into(), None),
        Operation::RegistryLogin => ("POST", "/registries".into(), Some(json!({"host": "bad host", "username": "u", "password": "p"}))),
        Operation::RegistryLogout => ("DELETE", "/registries/registry.example.com".into(), None),
        Operation::CreateUser => ("POST", "/users".into(), Some(json!({"email": format!("new{n}@example.com"), "role": "viewer"}))),
        Operation::UpdateUser => ("POST", "/users/nobody@example.com".into(), Some(json!({"role": "viewer"}))),
        Operation::DisableUser => ("POST", "/users/nobody@example.com/disable".into(), Some(json!({}))),
        Operation::CreateToken => ("POST", "/tokens".into(), Some(json!({"name": format!("matrix{n}"), "expires": "1h"}))),
        Operation::RevokeToken => ("DELETE", "/tokens/tnope".into(), None),
    };
    (m, p, b)
}

fn token_for(s: &Server, email: &str, role: &str) -> String {
    s.json(&["user", "create", email, "--role", role]);
    let t = s.json(&["token", "create", "--user", email, "--name", "test"]);
    t["token"].as_str().expect("token").to_owned()
}

#[test]
fn every_operation_is_allowed_or_refused_by_role_and_leaves_one_audit_entry() {
    let s = Server::new(None);
    let tokens = [
        (Role::Viewer, token_for(&s, "viewer@example.com", "viewer")),
        (Role::Developer, token_for(&s, "dev@example.com", "developer")),
        (Role::Admin, s.token()),
    ];
    let mut n = 0;
    for &op in Operation::ALL {
        for (role, token) in &tokens {
            n += 1;
            let before = s.json(&["activity", "--limit", "1000"]).as_array().expect("list").len();
            let (method, path, body) = request(op, n);
            let (status, answer) = call(&s, token, method, &path, body.as_ref());
            let allowed = *role >= op.needs();
            if allowed {
                assert_ne!(status, 403, "{} as {role}: allowed, but {answer}", op.as_str());
            } else {
                assert_eq!(status, 403, "{} as {role}: must be refused: {answer}", op.as_str());
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(message.contains(op.as_str()) && message.contains(&format!("needs the {} role", op.needs())), "{message}");
            }
            let after = s.json(&["activity", "--limit", "1000"]);
            let after = after.as_array().expect("list");
            assert_eq!(after.len(), before + 1, "{} as {role}: exactly one audit entry", op.as_str());
            let entry = &after[0];
            assert_eq!(entry["operation"], op.as_str(), "{entry}");
            let expected = if allowed { ["ok", "refused", "failed"].as_slice() } else { ["refused"].as_slice() };
            assert!(expected.contains(&entry["outcome"].as_str().unwrap_or("")), "{} as {role}: {entry}", op.as_str());
            assert!(entry["token_id"].as_str().is_some_and(|t| t.starts_with('t')), "{entry}");
            assert_eq!(entry["address"], "127.0.0.1", "{entry}");
        }
    }
}

#[test]
fn users_tokens_and_grants() {
    let s = Server::new(None);
    let repo = app_repo("shop", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    s.json(&["app", "create", "--repo", app_repo("other", "web", "", None, false).path().to_str().expect("utf-8")]);
    let viewer = token_for(&s, "v@example.com", "viewer");

    // A viewer reads, and is refused what changes, with the role it needs.
    assert_eq!(call(&s, &viewer, "GET", "/envs", None).0, 200);
    let (status, body) = call(&s, &viewer, "POST", "/envs", Some(&serde_json::json!({"app": "shop", "branch": "main"})));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["message"], "`env.create` needs the developer role; v@example.com has the viewer role");
    // Users are an admin's business.
    assert_eq!(call(&s, &viewer, "GET", "/users", None).0, 403);

    // A grant raises the role for one application only.
    assert!(s.cli(&["app", "grant", "shop", "v@example.com", "--role", "developer"]).status.success());
    let (status, body) = call(&s, &viewer, "POST", "/envs", Some(&serde_json::json!({"app": "shop", "branch": "main"})));
    assert_eq!(status, 202, "{body}");
    assert_eq!(call(&s, &viewer, "POST", "/envs", Some(&serde_json::json!({"app": "other", "branch": "main"}))).0, 403);
    let users = s.json(&["user", "list"]);
    let v = users.as_array().expect("list").iter().find(|u| u["email"] == "v@example.com").expect("listed").clone();
    assert_eq!(v["grants"], serde_json::json!([{"app": "shop", "role": "developer"}]));

    // Its own tokens: made, listed, revoked; not another user's.
    let (status, made) = call(&s, &viewer, "POST", "/tokens", Some(&serde_json::json!({"name": "ci", "expires": "1h"})));
    assert_eq!(status, 201, "{made}");
    let second = made["token"].as_str().expect("token").to_owned();
    assert!(made["expires_at"].as_i64().is_some());
    assert_eq!(call(&s, &second, "GET", "/whoami", None).1["email"], "v@example.com");
    let (_, mine) = call(&s, &viewer, "GET", "/tokens", None);
    assert_eq!(mine.as_array().expect("list").len(), 2, "{mine}");
    assert!(!mine.to_string().contains(&second), "a token's value is never listed");
    assert_eq!(call(&s, &viewer, "POST", "/tokens", Some(&serde_json::json!({"user": "admin"}))).0, 403);
    assert_eq!(call(&s, &viewer, "DELETE", &format!("/tokens/{}", made["id"].as_str().expect("id")), None).0, 204);
    assert_eq!(call(&s, &second, "GET", "/envs", None).0, 401, "a revoked token is refused");

    // The role changes at once; a disabled user's tokens die.
    s.json(&["user", "set", "v@example.com", "--role", "admin"]);
    assert_eq!(call(&s, &viewer, "GET", "/users", None).0, 200);
    assert!(s.cli(&["user", "disable", "v@example.com"]).status.success());
    assert_eq!(call(&s, &viewer, "GET", "/envs", None).0, 401);
    let o = s.cli(&["token", "create", "--user", "v@example.com"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is disabled"), "{}", String::from_utf8_lossy(&o.stderr));
    // The built-in admin stays.
    assert!(!s.cli(&["user", "disable", "admin"]).status.success());
    assert!(!s.cli(&["user", "set", "admin", "--role", "viewer"]).status.success());

    // The audit trail names users and filters by application, user and time.
    let shop = s.json(&["audit", "--app", "shop", "--since", "1h"]);
    assert!(shop.as_array().expect("list").iter().any(|a| a["operation"] == "env.create" && a["actor"] == "v@example.com"), "{shop}");
    assert!(shop.as_array().expect("list").iter().all(|a| a["target"].as_str().is_some_and(|t| !t.starts_with("other"))), "{shop}");
    let by = s.json(&["audit", "--user", "v@example.com"]);
    assert!(by.as_array().expect("list").iter().all(|a| a["actor"] == "v@example.com"), "{by}");
    let envs = s.json(&["env", "list"]);
    for e in envs.as_array().expect("list") {
        s.json(&["env", "delete", e["id"].as_str().expect("id"), "--wait"]);
    }
}
