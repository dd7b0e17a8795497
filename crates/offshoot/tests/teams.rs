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
        Operation::RotateBypass => ("POST", "/apps/nope/bypass-token?rotate=true".into(), Some(json!({}))),
        Operation::CreateEnv => ("POST", "/envs".into(), Some(json!({"app": "nope", "branch": "main"}))),
        Operation::ApprovePullRequest => ("POST", "/apps/nope/pulls/7/approve".into(), Some(json!({}))),
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

/// The response's status, its headers (lower-case names) and its body.
fn exchange(port: u16, head: &str) -> (u16, Vec<(String, String)>, String) {
    exchange_with(port, head, b"")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The `name=value` a `Set-Cookie` header sets.
fn cookie(headers: &[(String, String)], name: &str) -> String {
    let set = headers.iter().filter(|(k, _)| k == "set-cookie").map(|(_, v)| v).find(|v| v.starts_with(&format!("{name}=")));
    set.and_then(|v| v.split(';').next()).expect("a cookie set").to_owned()
}

#[test]
fn team_only_previews_answer_signed_in_users_and_bypass_tokens() {
    let s = Server::new(None);
    let repo = app_repo("shop", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let env = s.json(&["env", "create", "shop", "--branch", "main", "--wait"]);
    let id = env["id"].as_str().expect("id").to_owned();
    let host = format!("web-{id}.localhost");
    let get = |path: &str, extra: &str| exchange(s.router, &format!("GET {path} HTTP/1.1\r\nHost: {host}{extra}"));
    assert_eq!(get("/", "").0, 200, "public by default");

    assert_eq!(s.json(&["app", "set", "shop", "--access", "team"])["access"], "team");
    // Anonymous: a browser is sent to sign in, another client gets 401; the service sees nothing.
    let (status, headers, _) = get("/", "\r\nAccept: text/html");
    assert_eq!(status, 302);
    let to = header(&headers, "location").expect("location");
    assert!(to.starts_with(&format!("http://127.0.0.1:{}/ui/preview?host=web%2D{id}%2Elocalhost&next=%2F", s.api)), "{to}");
    assert_eq!(get("/", "").0, 401);

    // The bypass token: in the header, or once in the query (a cookie, and the URL without it).
    let token = s.json(&["app", "bypass-token", "shop"])["token"].as_str().expect("token").to_owned();
    assert_eq!(s.json(&["app", "bypass-token", "shop"])["token"], token.as_str(), "the same until rotated");
    let (status, _, body) = get("/", &format!("\r\nx-offshoot-bypass: {token}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("backend:"), "the service's page: {body}");
    assert_eq!(get("/", "\r\nx-offshoot-bypass: osb_wrong").0, 403);
    let (status, headers, _) = get(&format!("/index.html?offshoot_bypass={token}&x=1"), "");
    assert_eq!((status, header(&headers, "location")), (302, Some("/index.html?x=1")), "not forwarded");
    let preview = cookie(&headers, "offshoot_preview");
    assert_eq!(get("/", &format!("\r\nCookie: {preview}")).0, 200);
    assert_eq!(get("/", "\r\nCookie: offshoot_preview=1.forged").0, 401);
    // Rotated: the old token is refused; the new one works.
    let rotated = s.json(&["app", "bypass-token", "shop", "--rotate"])["token"].as_str().expect("token").to_owned();
    assert_ne!(rotated, token);
    assert_eq!(get("/", &format!("\r\nx-offshoot-bypass: {token}")).0, 403);
    assert_eq!(get("/", &format!("\r\nx-offshoot-bypass: {rotated}")).0, 200);

    // A signed-in user (a viewer): the dashboard sends the browser back with a ticket, which
    // becomes the preview cookie.
    let viewer = token_for(&s, "v@example.com", "viewer");
    let session = dashboard_login(&s, &viewer);
    let sign_in = to.trim_start_matches(&format!("http://127.0.0.1:{}", s.api)).to_owned();
    let (status, headers, _) = exchange(s.api, &format!("GET {sign_in} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}"));
    assert_eq!(status, 303, "{headers:?}");
    let back = header(&headers, "location").expect("location");
    let prefix = format!("http://{host}:{}/__offshoot/auth?ticket=", s.router);
    assert!(back.starts_with(&prefix), "{back}");
    let (status, headers, _) = get(back.trim_start_matches(&format!("http://{host}:{}", s.router)), "");
    assert_eq!((status, header(&headers, "location")), (302, Some("/")));
    let signed_in = cookie(&headers, "offshoot_preview");
    assert_eq!(get("/", &format!("\r\nCookie: {signed_in}")).0, 200);
    // Not signed in: the dashboard asks to log in first; a host it does not serve is refused.
    let (status, headers, _) = exchange(s.api, &format!("GET {sign_in} HTTP/1.1\r\nHost: 127.0.0.1"));
    assert!(status == 303 && header(&headers, "location").is_some_and(|l| l.starts_with("/ui/login?next=")), "{status} {headers:?}");
    let (status, _, _) =
        exchange(s.api, &format!("GET /ui/preview?host=evil.example.com HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}"));
    assert_eq!(status, 404);
    // Public again: anyone.
    s.json(&["app", "set", "shop", "--access", "public"]);
    assert_eq!(get("/", "").0, 200);
    s.json(&["env", "delete", &id, "--wait"]);
}

fn exchange_with(port: u16, head: &str, body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let raw = http_raw(port, head, body).expect("an answer");
    let (top, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = top.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).expect("a status");
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    (status, headers, rest.to_owned())
}

/// The dashboard's application settings form, under the session's role: an admin saves them
/// (the same settings the CLI shows), a developer is refused with the role it needs.
#[test]
fn the_dashboard_saves_an_applications_settings_under_the_same_roles() {
    let s = Server::new(None);
    let repo = app_repo("shop", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let developer = token_for(&s, "d@example.com", "developer");
    for (token, allowed) in [(s.token(), true), (developer, false)] {
        let session = dashboard_login(&s, &token);
        let (status, _, page) = exchange(s.api, &format!("GET /ui/apps/shop HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}"));
        assert_eq!(status, 200);
        assert!(page.contains("action=\"/ui/apps/shop/settings\""), "the settings form is on the page");
        let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token").to_owned();
        let form = format!(
            "csrf={csrf}&pull_requests=on&pull_request_label=preview&access=team&static_builder=&terraform_image=hashicorp%2Fterraform%3A1.10\
             &idle_sleep=2h&ttl=7d&pull_request_ttl=off&sleep_schedule=0+20+*+*+1-5&wake_schedule="
        );
        let head = format!(
            "POST /ui/apps/shop/settings HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
            form.len()
        );
        let (status, _, body) = exchange_with(s.api, &head, form.as_bytes());
        if allowed {
            assert_eq!(status, 303, "{body}");
            let app = s.json(&["app", "show", "shop"]);
            assert_eq!((app["access"].as_str(), app["pull_request_label"].as_str()), (Some("team"), Some("preview")), "{app}");
            assert_eq!(
                (app["terraform_image"].as_str(), app["idle_sleep_seconds"].as_i64()),
                (Some("hashicorp/terraform:1.10"), Some(7200)),
                "{app}"
            );
            assert_eq!(app["sleep_schedule"], "0 20 * * 1-5", "{app}");
        } else {
            assert_eq!(status, 422, "{body}");
            assert!(body.contains("`app.settings` needs the admin role; d@example.com has the developer role"), "{body}");
        }
        // A form without the session's CSRF token is refused.
        let head = format!(
            "POST /ui/apps/shop/settings HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
            form.len()
        );
        let forged = form.replacen(&csrf, &"0".repeat(csrf.len()), 1);
        assert_eq!(exchange_with(s.api, &head, forged.as_bytes()).0, 403);
    }
    let audit = s.json(&["audit", "--app", "shop"]);
    let settings: Vec<(&str, &str)> = audit
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["operation"] == "app.settings")
        .map(|a| (a["actor"].as_str().unwrap_or(""), a["outcome"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(settings, [("d@example.com", "refused"), ("admin", "ok")]);
}

/// A dashboard form posted with the session's CSRF token (read from `page`).
fn post_form(s: &Server, session: &str, page: &str, path: &str, fields: &str) -> (u16, String) {
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).expect("a CSRF token");
    let form = format!("csrf={csrf}&{fields}");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        form.len()
    );
    let (status, _, body) = exchange_with(s.api, &head, form.as_bytes());
    (status, body)
}

fn get_page(s: &Server, session: &str, path: &str) -> (u16, String) {
    let (status, _, body) = exchange(s.api, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}"));
    (status, body)
}

/// Users, datasets and template versions from the dashboard, each form under the session's role.
#[test]
fn the_dashboard_manages_users_datasets_and_versions_under_the_same_roles() {
    let s = Server::new(None);
    let repo = app_repo("shop", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let admin = dashboard_login(&s, &s.token());
    let developer = dashboard_login(&s, &token_for(&s, "d@example.com", "developer"));

    // Users: an admin's page; a developer is refused it.
    let (status, page) = get_page(&s, &admin, "/ui/users");
    assert_eq!(status, 200);
    assert!(page.contains("d@example.com") && page.contains("action=\"/ui/users\""), "{page}");
    assert_eq!(post_form(&s, &admin, &page, "/ui/users", "email=new%40example.com&role=viewer").0, 303);
    assert_eq!(post_form(&s, &admin, &page, "/ui/users/new@example.com/role", "role=developer").0, 303);
    let users = s.json(&["user", "list"]);
    let new = users.as_array().expect("list").iter().find(|u| u["email"] == "new@example.com").expect("made").clone();
    assert_eq!(new["role"], "developer");
    assert_eq!(post_form(&s, &admin, &page, "/ui/users/new@example.com/disable", "").0, 303);
    let (status, body) = post_form(&s, &admin, &page, "/ui/users", "email=not-an-email&role=viewer");
    assert!(status == 422 && body.contains("is not an e-mail address"), "{status} {body}");
    let (status, body) = get_page(&s, &developer, "/ui/users");
    assert!(status == 403 && body.contains("`user.list` needs the admin role"), "{status} {body}");

    // Datasets: refused to a developer, checked for an admin.
    let (_, page) = get_page(&s, &admin, "/ui/datasets");
    assert!(page.contains("New dataset"), "{page}");
    let (status, body) = post_form(&s, &admin, &page, "/ui/datasets", "name=tiny&source=not-a-url&pool_size=1&refresh=");
    assert_eq!(status, 422, "{body}");
    let (_, dev_page) = get_page(&s, &developer, "/ui/datasets");
    let (status, body) = post_form(&s, &developer, &dev_page, "/ui/datasets/tiny/refresh", "");
    assert!(status == 422 && body.contains("`dataset.refresh` needs the admin role"), "{status} {body}");

    // Versions: an older one restored as the newest.
    let t = s.json(&["app", "show", "shop"]);
    assert_eq!(t["version"], 1);
    let tpl: serde_json::Value = call(&s, &s.token(), "GET", "/apps/shop/template", None).1;
    let changed = tpl["template"].as_str().expect("template").replace("failure_threshold: 30", "failure_threshold: 31");
    assert_eq!(call(&s, &s.token(), "PUT", "/apps/shop/template", Some(&serde_json::json!({"template": changed}))).0, 200);
    let (_, page) = get_page(&s, &admin, "/ui/apps/shop");
    assert!(page.contains("Restore version 1 as a new version"), "{page}");
    let (_, dev_page) = get_page(&s, &developer, "/ui/apps/shop");
    let (status, body) = post_form(&s, &developer, &dev_page, "/ui/apps/shop/restore", "version=1");
    assert!(status == 422 && body.contains("`app.template` needs the admin role"), "{status} {body}");
    assert_eq!(post_form(&s, &admin, &page, "/ui/apps/shop/restore", "version=1").0, 303);
    let now: serde_json::Value = call(&s, &s.token(), "GET", "/apps/shop/template", None).1;
    assert_eq!((now["version"].as_i64(), now["template"].as_str()), (Some(3), tpl["template"].as_str()), "{now}");
}

/// Every dashboard form, posted under every role: refused with the operation and the role it
/// needs exactly when the role is below it. Each operation has a form here or is listed as
/// having none: a new operation must be placed in one or the other.
#[test]
fn every_dashboard_form_is_allowed_or_refused_by_role() {
    const NO_FORM: &[Operation] = &[
        Operation::RotateWebhook,
        Operation::GrantApp,
        Operation::RotateBypass,
        Operation::ExecInEnv,
        Operation::UpdateEnv,
        Operation::RegistryLogin,
        Operation::RegistryLogout,
        Operation::CreateToken,
        Operation::RevokeToken,
    ];
    // (operation, form, fields); the application deleted last.
    let forms: &[(Operation, &str, &str)] = &[
        (Operation::CreateApp, "/ui/apps", "repo=%2Fnonexistent"),
        (Operation::UpdateTemplate, "/ui/apps/shop/config", "template=x%3A+%5B&env_vars="),
        (Operation::UpdateTemplate, "/ui/apps/shop/restore", "version=1"),
        (Operation::SetSecret, "/ui/apps/shop/secrets", "key=K&service=&value=v"),
        (Operation::SetSecret, "/ui/apps/shop/secrets", "key=f.txt&value=v&file=1"),
        (
            Operation::UpdateApp,
            "/ui/apps/shop/settings",
            "pull_requests=off&pull_request_label=&access=public&static_builder=&terraform_image=&idle_sleep=off&ttl=off&pull_request_ttl=off&sleep_schedule=&wake_schedule=",
        ),
        (Operation::CreateEnv, "/ui/envs", "app=shop&branch=no-such-branch"),
        (Operation::ApprovePullRequest, "/ui/apps/shop/pulls/7/approve", ""),
        (Operation::DeployEnv, "/ui/envs/nope123/deploy", ""),
        (Operation::ExtendEnv, "/ui/envs/nope123/extend", "ttl=3600"),
        (Operation::SleepEnv, "/ui/envs/nope123/sleep", ""),
        (Operation::WakeEnv, "/ui/envs/nope123/wake", ""),
        (Operation::DeleteEnv, "/ui/envs/nope123/delete", ""),
        (Operation::CreateDataset, "/ui/datasets", "name=tiny&source=not-a-url&pool_size=1&refresh="),
        (Operation::RefreshDataset, "/ui/datasets/nope/refresh", ""),
        (Operation::DeleteDataset, "/ui/datasets/nope/delete", ""),
        (Operation::CreateUser, "/ui/users", "email=m%40example.com&role=viewer"),
        (Operation::UpdateUser, "/ui/users/nobody@example.com/role", "role=viewer"),
        (Operation::DisableUser, "/ui/users/nobody@example.com/disable", ""),
        (Operation::DeleteApp, "/ui/apps/shop/delete", ""),
    ];
    for op in Operation::ALL {
        let with_form = forms.iter().any(|(o, _, _)| o == op);
        assert!(with_form != NO_FORM.contains(op), "{} must have a dashboard form here or be listed without one", op.as_str());
    }
    let s = Server::new(None);
    let repo = app_repo("shop", "web", "", None, false);
    s.json(&["app", "create", "--repo", repo.path().to_str().expect("utf-8")]);
    let sessions = [
        (Role::Viewer, dashboard_login(&s, &token_for(&s, "v@example.com", "viewer"))),
        (Role::Developer, dashboard_login(&s, &token_for(&s, "d@example.com", "developer"))),
        (Role::Admin, dashboard_login(&s, &s.token())),
    ];
    // A page with a CSRF token for each session.
    let pages: Vec<String> = sessions.iter().map(|(_, session)| get_page(&s, session, "/ui/envs").1).collect();
    for (op, path, fields) in forms {
        for ((role, session), page) in sessions.iter().zip(&pages) {
            let (status, body) = post_form(&s, session, page, path, fields);
            let refusal = format!("`{}` needs the {} role", op.as_str(), op.needs());
            if *role < op.needs() {
                assert!(body.contains(&refusal), "{path} as {role}: {status} {body}");
            } else {
                assert!(!body.contains("role") || !body.contains("needs the"), "{path} as {role}: refused: {body}");
            }
        }
    }
}
