//! The web dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven over WebDriver with fantoccini, against a real server, git
//! repository and Docker. Screenshots of the main pages are kept in the target directory
//! (`<target>/tmp/dashboard-screenshots/`) for review.

mod support;

use fantoccini::{Client, Locator};
use std::time::{Duration, Instant};
use support::browser::*;
use support::*;

/// The environment page's status badge; empty while the page is being replaced (after a form's
/// post, before the redirect's page is there).
async fn badge(c: &Client) -> String {
    match c.find(Locator::Css("#live .badge")).await {
        Ok(b) => b.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

const TEMPLATE: &str = "app: demo
hostnames:
- web: web-${env_id}.${domain}
parameters:
- name: title
  description: the page's heading
  default: Demo page
services:
- name: web
  image: busybox:stable
  registry: public
  command: [sh, -c, \"echo 'hello from the web service'; mkdir -p /www; echo '<h1>'$TITLE'</h1>' > /www/index.html; exec httpd -f -p 8080 -h /www\"]
  envs:
  - key: TITLE
    value: ${parameters.title}
  ports:
  - type: node_port
    port: '8080'
  readiness_probe:
    http_get:
      path: /
      port: '8080'
    period_seconds: 1
    failure_threshold: 30
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_create_an_app_and_an_environment_watch_it_and_delete_it() {
    let repo = repo(TEMPLATE, None, &[("README", "demo\n")], &[]);
    let s = Server::new(None);
    let driver = chromedriver();
    let c = browser(&driver).await;
    let base = format!("http://127.0.0.1:{}", s.api);

    // Not logged in: sent to the login page; a wrong token is refused.
    c.goto(&format!("{base}/ui/apps")).await.expect("goto");
    assert!(c.current_url().await.expect("url").as_str().contains("/ui/login?next=/ui/apps"));
    c.find(Locator::Css("#token")).await.expect("token field").send_keys("not-a-token").await.expect("type");
    c.find(Locator::Css("form button[type=submit]")).await.expect("button").click().await.expect("click");
    wait_text(&c, "That token is not valid.", 10).await;
    shoot(&c, "login").await;
    // With the keyboard only: the field has the focus, Enter submits.
    let active = c.active_element().await.expect("focus");
    assert_eq!(active.attr("id").await.expect("id").as_deref(), Some("token"), "the token field has the focus");
    active.send_keys(&format!("{}\u{E007}", s.token())).await.expect("type and press Enter");
    wait_text(&c, "No environment yet.", 10).await;

    // An application from the repository.
    c.goto(&format!("{base}/ui/apps")).await.expect("goto");
    c.find(Locator::Css("#repo")).await.expect("repo").send_keys(repo.path().to_str().expect("utf-8")).await.expect("type");
    c.find(Locator::Css("form.card button[type=submit]")).await.expect("create").click().await.expect("click");
    let text = wait_text(&c, "Application demo", 20).await;
    assert!(text.contains("Version 1"), "{text}");
    let template = c.find(Locator::Css("#template")).await.expect("editor").prop("value").await.expect("value").unwrap_or_default();
    assert!(template.contains("name: web"), "{template}");
    shoot(&c, "application").await;
    // Every field has its label.
    let unlabelled = c
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]),textarea,select')].filter(e => !e.id || !document.querySelector('label[for=\"' + e.id + '\"]')).map(e => e.name)",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(unlabelled, serde_json::json!([]), "fields without a label");
    // A secret: accepted, never shown again.
    c.find(Locator::Css("#key")).await.expect("key").send_keys("API_TOKEN").await.expect("type");
    c.find(Locator::Css("#value")).await.expect("value").send_keys("s3cr3t-from-the-browser").await.expect("type");
    c.find(Locator::Css("form[action$='/secrets'] button")).await.expect("set").click().await.expect("click");
    wait_text(&c, "Application demo", 10).await;
    assert!(!c.source().await.expect("source").contains("s3cr3t-from-the-browser"));
    // A file secret: its content kept line by line (the browser's CRLF made LF), never shown.
    c.find(Locator::Css("#file_key")).await.expect("name").send_keys("tls.key").await.expect("type");
    c.find(Locator::Css("#file_value")).await.expect("content").send_keys("-----BEGIN KEY-----\nabc\n").await.expect("type");
    c.find(Locator::Css("form[action$='/secrets'] input[name=file] ~ button")).await.expect("set").click().await.expect("click");
    wait_text(&c, "Application demo", 10).await;
    assert!(!c.source().await.expect("source").contains("-----BEGIN KEY-----"));
    let activity = s.json(&["activity"]);
    let set = activity.as_array().expect("list").iter().any(|a| a["target"] == "demo/tls.key" && a["outcome"] == "ok");
    assert!(set, "set, and recorded by name: {activity}");

    // A bad template is refused with its diagnostics; nothing is saved.
    let editor = c.find(Locator::Css("#template")).await.expect("editor");
    editor.clear().await.expect("clear");
    editor.send_keys("services:\n- name: web\n  image: busybox\n  ports:\n  - type: node_prot\n").await.expect("type");
    c.find(Locator::Css("form[action$='/config'] button")).await.expect("save").click().await.expect("click");
    let text = wait_text(&c, "node_prot", 10).await;
    assert!(text.contains("application_template.yaml:5:"), "the diagnostic names its line: {text}");
    assert!(text.contains("5 |   - type: node_prot"), "the line itself is shown: {text}");
    assert!(!text.contains("Version 2"), "{text}");
    shoot(&c, "application-diagnostics").await;
    // A valid change is a new version, with its diff.
    let editor = c.find(Locator::Css("#template")).await.expect("editor");
    editor.clear().await.expect("clear");
    editor.send_keys(&format!("{TEMPLATE}# reviewed in the dashboard\n")).await.expect("type");
    c.find(Locator::Css("form[action$='/config'] button")).await.expect("save").click().await.expect("click");
    let text = wait_text(&c, "Version 2", 10).await;
    assert!(text.contains("+ # reviewed in the dashboard"), "{text}");

    // An environment for `main` with a parameter of its own, watched until ready (the page
    // updates itself).
    c.goto(&format!("{base}/ui/apps/demo")).await.expect("goto");
    let title = c.find(Locator::Css("#param_title")).await.expect("a field for the parameter");
    assert_eq!(title.attr("placeholder").await.expect("placeholder").as_deref(), Some("Demo page"), "its default");
    title.send_keys("Parameter page").await.expect("type");
    c.find(Locator::Css("form[action='/ui/envs'] button")).await.expect("create env").click().await.expect("click");
    wait_text(&c, "Environment ", 10).await;
    let url = c.current_url().await.expect("url").to_string();
    let id = url.rsplit('/').next().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = badge(&c).await;
        if status == "ready" {
            break;
        }
        assert!(status != "failed" && Instant::now() < deadline, "status {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(c.current_url().await.expect("url").to_string(), url, "updated in place, not reloaded");
    // Each deployment's phases as a bar, a named segment per phase.
    let bar = c.find(Locator::Css("#deployments .timeline")).await.expect("a timeline");
    let label = bar.attr("aria-label").await.expect("label").unwrap_or_default();
    assert!(label.contains("fetch") && label.contains(" ms, ready after "), "{label}");
    shoot(&c, "environment").await;
    // Deploy again: a second deployment appears, and the environment is ready again.
    c.find(Locator::Css("form[action$='/deploy'] button")).await.expect("deploy").click().await.expect("click");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = c.find_all(Locator::Css("#deployments tbody tr")).await.expect("deployments").len();
        let status = badge(&c).await;
        if rows == 2 && status == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "{rows} deployments, status {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Its URL, opened in the browser (the router answers for `web-<id>.localhost`).
    let link = c.find(Locator::Css("#live td a[href^='http://web-']")).await.expect("service URL");
    let href = link.attr("href").await.expect("href").expect("an href");
    assert_eq!(href, format!("http://web-{id}.localhost:{}/", s.router));
    c.goto(&href).await.expect("open the environment");
    let page = c.find(Locator::Css("h1")).await.expect("h1").text().await.expect("text");
    assert_eq!(page, "Parameter page", "the parameter reached the service");

    // A log line, live.
    c.goto(&url).await.expect("back");
    click(&c, "[data-logs='web']").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = c.find(Locator::Css("#logs")).await.expect("logs").text().await.unwrap_or_default();
        if logs.contains("hello from the web service") {
            break;
        }
        assert!(Instant::now() < deadline, "no log line: {logs:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shoot(&c, "environment-logs").await;
    let params = c.find(Locator::Css("#parameters")).await.expect("its parameters").text().await.expect("text");
    assert!(params.contains("title") && params.contains("Parameter page"), "{params}");
    // What Docker does not apply of its template, with why.
    let compat = c.find(Locator::Css("#compat")).await.expect("what is not applied").text().await.expect("text");
    assert!(compat.contains("services[0].registry") && compat.contains("keeps built images on the engine"), "{compat}");
    let steps = c.find(Locator::Css("#steps")).await.expect("the workflow's steps").text().await.expect("text");
    assert!(steps.contains("services-0") && steps.contains("succeeded"), "{steps}");
    // On a phone's screen.
    c.set_window_size(390, 844).await.expect("resize");
    shoot(&c, "environment-phone").await;
    c.set_window_size(1280, 900).await.expect("resize");

    // Put to sleep from its page; its URL, opened in the browser, wakes it (the browser may see
    // the page that says it is waking, which reloads itself) and shows the page.
    c.goto(&url).await.expect("back");
    click(&c, "form[action$='/sleep'] button").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = badge(&c).await;
        if status == "sleeping" {
            break;
        }
        assert!(Instant::now() < deadline, "status {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.find(Locator::Css("form[action$='/wake'] button")).await.expect("a Wake button while it sleeps");
    c.goto(&href).await.expect("open the sleeping environment");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h1 = match c.find(Locator::Css("h1")).await {
            Ok(h) => h.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if h1 == "Parameter page" {
            break;
        }
        assert!(h1.is_empty() || h1 == "503 Waking Up", "{h1}");
        assert!(Instant::now() < deadline, "still `{h1}`");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.goto(&url).await.expect("back");
    wait_text(&c, "Sleep", 10).await;

    // An application with environments cannot be deleted; the page says why.
    c.goto(&format!("{base}/ui/apps/demo")).await.expect("goto");
    c.find(Locator::Css("form[action$='/delete'] button")).await.expect("delete app").click().await.expect("click");
    wait_text(&c, "application `demo` still has 1 environment(s)", 10).await;
    let alert = c.find(Locator::Css("[role=alert]")).await.expect("an alert").text().await.expect("text");
    assert!(alert.contains("still has 1 environment"), "{alert}");
    // Datasets: none here, said plainly.
    c.goto(&format!("{base}/ui/datasets")).await.expect("goto");
    wait_text(&c, "No dataset.", 10).await;
    accessible(&c, "datasets").await;
    c.goto(&format!("{base}/ui/users")).await.expect("goto");
    wait_text(&c, "New user", 10).await;
    accessible(&c, "users").await;
    // The activity log: what the dashboard did, the refusal above included, newest first.
    c.goto(&format!("{base}/ui/activity")).await.expect("goto");
    let log = wait_text(&c, "app.delete", 10).await;
    assert!(log.contains("admin") && log.contains("refused") && log.contains("still has 1 environment"), "{log}");
    assert!(log.contains("env.create") && log.contains(&format!("environment {id}")), "{log}");
    c.find(Locator::Css(&format!("a[href='/ui/envs/{id}']"))).await.expect("the environment is linked");
    shoot(&c, "activity").await;

    // The environments list, then the deletion.
    c.goto(&format!("{base}/ui/envs")).await.expect("goto");
    let text = wait_text(&c, &id, 10).await;
    assert!(text.contains("ready") && text.contains("main"), "{text}");
    // The server's capacity as bars above the list.
    let capacity = c.find(Locator::Css("section.capacity")).await.expect("capacity").text().await.expect("text");
    assert!(capacity.contains("1 running, 0 sleeping") && capacity.contains("Memory"), "{capacity}");
    shoot(&c, "environments").await;
    c.goto(&url).await.expect("back");
    c.find(Locator::Css("form[action$='/delete'] button")).await.expect("delete").click().await.expect("click");
    wait_text(&c, "deleted", 60).await;
    assert_eq!(leftovers(&id), "");

    // A form from elsewhere (no CSRF token) is refused, even with the session cookie.
    let cookie = c.get_named_cookie("offshoot_session").await.expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    let forged = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-b", &format!("offshoot_session={}", cookie.value())])
        .args(["-d", "branch=main&app=demo&csrf=forged", &format!("{base}/ui/envs")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&forged.stdout), "403");
    // Pages load nothing from elsewhere and cannot be framed.
    let head = std::process::Command::new("curl").args(["-sI", &format!("{base}/ui/login")]).output().expect("curl");
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("content-security-policy: default-src 'self'") && head.contains("x-frame-options: deny"), "{head}");

    // Logging out ends the session, and the live streams it had open.
    let mut stream = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "30", "-b", &format!("offshoot_session={}", cookie.value()), &format!("{base}/ui/envs/{id}/events")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(stream.try_wait().expect("wait").is_none(), "the stream is open while the session lives");
    c.find(Locator::Css("form[action='/ui/logout'] button")).await.expect("logout").click().await.expect("click");
    let closed = Instant::now();
    let out = stream.wait_with_output().expect("curl");
    assert!(closed.elapsed() < Duration::from_secs(10), "the stream outlived the session");
    assert!(String::from_utf8_lossy(&out.stdout).contains("event: live"), "it had been sending");
    c.goto(&format!("{base}/ui/envs")).await.expect("goto");
    assert!(c.current_url().await.expect("url").as_str().contains("/ui/login"));
    c.close().await.expect("close the browser");
}
