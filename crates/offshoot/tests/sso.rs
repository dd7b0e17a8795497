//! Single sign-on end to end: headless Chromium signs in to the dashboard through a real,
//! OpenID Certified provider (panva's `oidc-provider` from npm, installed by `scripts/services`
//! and configured by `oidc-provider.mjs` beside this file), against a real server.

mod support;

use fantoccini::{Client, Locator};
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::browser::*;
use support::*;

/// Where `scripts/services` installs the provider.
const PROVIDER: &str = "/opt/offshoot-npm/node_modules/oidc-provider/lib/index.js";

struct Provider {
    child: Child,
    issuer: String,
    accounts: std::path::PathBuf,
    secret: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    fn start(accounts: &serde_json::Value) -> Provider {
        assert!(std::path::Path::new(PROVIDER).exists(), "{PROVIDER} is missing: run `bash scripts/services`");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("accounts.json");
        std::fs::write(&file, accounts.to_string()).expect("accounts");
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, "a-client-secret-for-tests\n").expect("secret");
        let script = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
            .join("tests/oidc-provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_MODULE", PROVIDER)
            .env("OIDC_CLIENT_ID", "offshoot")
            .env("OIDC_CLIENT_SECRET", "a-client-secret-for-tests")
            .env("OIDC_ACCOUNTS", &file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the provider");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        while !line.starts_with("issuer ") {
            line.clear();
            assert!(out.read_line(&mut line).expect("the provider's output") > 0, "the provider stopped before listening");
        }
        let issuer = line.trim_start_matches("issuer ").trim().to_owned();
        // What it prints later is drained (a closed pipe would stop it).
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Provider { child, issuer, accounts: file, secret, _dir: dir }
    }

    fn set_accounts(&self, accounts: &serde_json::Value) {
        std::fs::write(&self.accounts, accounts.to_string()).expect("accounts");
    }
}

fn accounts(bob_groups: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "ada@example.com": {"groups": ["platform-admins", "engineers"]},
        "bob@example.com": {"groups": bob_groups},
        "cy@example.com": {"groups": ["sales"]},
        "dan@example.com": {"groups": [], "email_verified": false},
        "eve@elsewhere.test": {"groups": ["platform-admins"]},
    })
}

/// The page's main text (empty between two pages).
async fn main_text(c: &Client) -> String {
    match c.find(Locator::Css("main")).await {
        Ok(m) => m.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Signs in as `login` from the dashboard's login page, through the provider's own sign-in and
/// consent pages, until the browser is back on the dashboard; returns the page's main text.
async fn sign_in(c: &Client, s: &Server, login: &str) -> String {
    let base = format!("http://127.0.0.1:{}", s.api);
    c.goto(&format!("{base}/ui/login")).await.expect("login page");
    click(c, "a.button").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            let source = c.source().await.unwrap_or_default();
            panic!("the sign-in did not come back; at {:?}:\n{source}", c.current_url().await.map(|u| u.to_string()));
        }
        let url = c.current_url().await.expect("url").to_string();
        if url.starts_with(&base) && !url.contains("/ui/sso/") {
            return main_text(c).await;
        }
        if url.starts_with(&base) && (url.contains("/ui/sso/callback")) {
            // A refusal is a page of its own, at the callback's address.
            let text = main_text(c).await;
            if !text.is_empty() {
                return text;
            }
        } else if let Ok(input) = c.find(Locator::Css("input[name=login]")).await {
            input.send_keys(login).await.expect("type the login");
            c.find(Locator::Css("input[name=password]")).await.expect("password").send_keys("any password").await.expect("type");
            click(c, "button[type=submit]").await;
        } else if c.find(Locator::Css("input[name=prompt][value=consent]")).await.is_ok() {
            click(c, "button[type=submit]").await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A browser with no cookie of the dashboard's or the provider's (both on 127.0.0.1).
async fn forget(c: &Client, s: &Server) {
    c.goto(&format!("http://127.0.0.1:{}/ui/login", s.api)).await.expect("login page");
    c.delete_all_cookies().await.expect("cookies");
}

fn users(s: &Server) -> Vec<(String, String)> {
    let list = s.json(&["user", "list"]);
    list.as_array()
        .expect("a list")
        .iter()
        .map(|u| (u["email"].as_str().unwrap_or("").to_owned(), u["role"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn role_of(s: &Server, email: &str) -> Option<String> {
    users(s).into_iter().find(|(e, _)| e == email).map(|(_, r)| r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_makes_users_maps_groups_refuses_strangers_and_signs_out() {
    let provider = Provider::start(&accounts(&["engineers"]));
    let secret = provider.secret.to_str().expect("utf-8").to_owned();
    let s = Server::new_with(
        None,
        &[
            "--oidc-issuer",
            &provider.issuer,
            "--oidc-client-id",
            "offshoot",
            "--oidc-client-secret-file",
            &secret,
            "--oidc-allowed-domains",
            "example.com",
            "--oidc-admin-group",
            "platform-admins",
            "--oidc-developer-group",
            "engineers",
            "--oidc-scopes",
            "email groups",
        ],
    );
    let driver = chromedriver();
    let c = browser(&driver).await;
    let base = format!("http://127.0.0.1:{}", s.api);

    // The login page offers single sign-on beside the token.
    c.goto(&format!("{base}/ui/envs")).await.expect("open");
    assert!(c.current_url().await.expect("url").path().starts_with("/ui/login"));
    let login = main_text(&c).await;
    assert!(login.contains("Sign in with single sign-on") && login.contains("API token"), "{login}");
    shoot(&c, "sso-login").await;

    // First sign-in: the user is made, with the role its groups map to.
    assert_eq!(role_of(&s, "ada@example.com"), None);
    let page = sign_in(&c, &s, "ada@example.com").await;
    assert!(c.current_url().await.expect("url").path().starts_with("/ui/envs"), "{page}");
    let who = c.find(Locator::Css("#whoami")).await.expect("who").text().await.expect("text");
    assert_eq!(who, "ada@example.com (admin)");
    assert_eq!(role_of(&s, "ada@example.com").as_deref(), Some("admin"));
    shoot(&c, "sso-signed-in").await;

    // Signing out ends the dashboard's session and the provider's, and comes back to the login page.
    click(&c, "nav form button").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.expect("url");
        if url.as_str().starts_with(&base) && url.path() == "/ui/login" {
            break;
        }
        if let Ok(b) = c.find(Locator::Css("button[name=logout]")).await {
            let _ = b.click().await;
        }
        assert!(Instant::now() < deadline, "sign-out did not come back: {url}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    c.goto(&format!("{base}/ui/envs")).await.expect("open");
    assert!(c.current_url().await.expect("url").path().starts_with("/ui/login"), "the session ended");
    // The provider's session ended too: signing in again asks for the login again.
    c.goto(&format!("{base}/ui/sso/login")).await.expect("sso");
    wait_for(&c, "input[name=login]", 20).await;

    // A developer by group; after the provider moves it to the admins' group, an admin.
    forget(&c, &s).await;
    sign_in(&c, &s, "bob@example.com").await;
    assert_eq!(role_of(&s, "bob@example.com").as_deref(), Some("developer"));
    provider.set_accounts(&accounts(&["platform-admins"]));
    forget(&c, &s).await;
    sign_in(&c, &s, "bob@example.com").await;
    assert_eq!(role_of(&s, "bob@example.com").as_deref(), Some("admin"));

    // In neither group: the default role.
    forget(&c, &s).await;
    sign_in(&c, &s, "cy@example.com").await;
    assert_eq!(role_of(&s, "cy@example.com").as_deref(), Some("viewer"));

    // Another domain: refused, no user made, the refusal recorded.
    forget(&c, &s).await;
    let refused = sign_in(&c, &s, "eve@elsewhere.test").await;
    assert!(refused.contains("`eve@elsewhere.test` may not sign in here"), "{refused}");
    assert!(c.find(Locator::Css("#whoami")).await.is_err(), "not signed in");
    shoot(&c, "sso-refused").await;
    assert_eq!(role_of(&s, "eve@elsewhere.test"), None);
    // An address the provider has not verified: refused too.
    forget(&c, &s).await;
    let unverified = sign_in(&c, &s, "dan@example.com").await;
    assert!(unverified.contains("has not verified `dan@example.com`"), "{unverified}");
    assert_eq!(role_of(&s, "dan@example.com"), None);
    // A disabled user stays out.
    s.json(&["user", "disable", "cy@example.com"]);
    forget(&c, &s).await;
    let disabled = sign_in(&c, &s, "cy@example.com").await;
    assert!(disabled.contains("user `cy@example.com` is disabled"), "{disabled}");

    // A callback this browser did not start is refused (no login by someone else's code).
    forget(&c, &s).await;
    c.goto(&format!("{base}/ui/sso/callback?code=stolen&state=forged")).await.expect("callback");
    let text = main_text(&c).await;
    assert!(text.contains("did not start in this browser"), "{text}");

    // The audit trail: who single sign-on made, changed and refused.
    let audit = s.json(&["audit", "--user", "single-sign-on"]);
    let entries: Vec<String> = audit
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["operation"].as_str().unwrap_or(""),
                a["target"].as_str().unwrap_or(""),
                a["outcome"].as_str().unwrap_or("")
            )
        })
        .collect();
    for want in [
        "user.create ada@example.com ok",
        "user.create bob@example.com ok",
        "user.role bob@example.com ok",
        "user.create cy@example.com ok",
        "user.create eve@elsewhere.test refused",
        "user.create dan@example.com refused",
    ] {
        assert!(entries.iter().any(|e| e == want), "no `{want}` in {entries:#?}");
    }
    assert_eq!(entries.len(), 6, "{entries:#?}");

    // Token login stays, for automation and the built-in admin.
    forget(&c, &s).await;
    c.goto(&format!("{base}/ui/login")).await.expect("login");
    c.find(Locator::Css("#token")).await.expect("token field").send_keys(&s.token()).await.expect("type");
    click(&c, "form.card button[type=submit]").await;
    wait_text(&c, "Environments", 20).await;
    let who = c.find(Locator::Css("#whoami")).await.expect("who").text().await.expect("text");
    assert_eq!(who, "admin (admin)");
    c.close().await.expect("close");
}

/// Waits until the page has an element matching `css`.
async fn wait_for(c: &Client, css: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while c.find(Locator::Css(css)).await.is_err() {
        assert!(Instant::now() < deadline, "no `{css}` at {:?}", c.current_url().await.map(|u| u.to_string()));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A server whose provider cannot be reached still starts and serves; a sign-in says why it
/// cannot begin, and bad settings stop the server with what to fix.
#[test]
fn an_unreachable_provider_is_named_and_bad_settings_stop_the_server() {
    let s = Server::new_with(None, &["--oidc-issuer", "http://127.0.0.1:9", "--oidc-client-id", "offshoot"]);
    let r = http(s.api, "127.0.0.1", "/ui/sso/login").expect("answer");
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(r.contains("cannot be discovered"), "{r}");
    let r = http(s.api, "127.0.0.1", "/ui/login").expect("answer");
    assert!(r.contains("Sign in with single sign-on"), "{r}");
    drop(s);
    for (args, says) in [
        (vec!["--oidc-issuer", "http://idp.example.com", "--oidc-client-id", "x"], "must be an https:// URL"),
        (
            vec!["--oidc-issuer", "https://idp.example.com", "--oidc-client-id", "x", "--oidc-allowed-domains", "nodot"],
            "not an e-mail domain",
        ),
        (vec!["--oidc-issuer", "https://idp.example.com"], "--oidc-client-id"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all = vec!["server", "--listen", "127.0.0.1:0", "--router-listen", "127.0.0.1:0", "--data-dir"];
        let data = dir.path().join("data");
        all.push(data.to_str().expect("utf-8"));
        all.extend(args.iter().copied());
        let o = Command::new(bin()).args(&all).output().expect("run");
        assert!(!o.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
