//! The dashboard's pages with 1,000 environments: a real server (SQLite store) whose store
//! holds one application with 12 versions and 1,000 environments (3 services and 2 deployments
//! each) is asked ROUNDS times for each page by a logged-in client over loopback; medians and
//! p99 of the time to the whole response (server time plus a loopback round trip). Beside them,
//! in the same run, the API's JSON list of the same environments (`GET /api/v1/envs`, what
//! `offshoot env list` reads). The target is under 50 ms per page. Then the server's own
//! memory, resident and peak, with those environments registered (goal: under 200 MiB).
//!
//! Run: `cargo bench -p offshoot --bench dashboard_pages` (needs `bash scripts/services`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/support/mod.rs"]
mod support;

use offshoot_store::{App, Deployment, Environment, ServiceRow, Store, now_ms};
use std::io::{Read as _, Write as _};
use std::time::Instant;
use support::{Server, median};

const ENVS: usize = 1000;
const ROUNDS: usize = 40;

const TEMPLATE: &str = "app: demo\nhostnames:\n- web: web-${env_id}.${domain}\nservices:\n- name: web\n  image: busybox:stable\n  ports:\n  - type: node_port\n    port: '8080'\n- name: api\n  image: busybox:stable\n- name: db\n  image: busybox:stable\n";

async fn fixture(db: &str) -> String {
    let store = Store::open(db).await.expect("store");
    let now = now_ms();
    let app = App { name: "demo".into(), repo: "/nonexistent/demo".into(), default_branch: "main".into(), created_at: now };
    store.create_app(&app, TEMPLATE, "").await.expect("app");
    for v in 0..11 {
        store.add_version("demo", &format!("{TEMPLATE}# revision {v}\n"), "").await.expect("version");
    }
    let mut first = String::new();
    for i in 0..ENVS {
        let id = format!("e{i:06}");
        if i == 0 {
            first = id.clone();
        }
        let e = Environment {
            id: id.clone().into(),
            app: "demo".into(),
            branch: format!("feature/{i}"),
            commit_sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            environment_template: None,
            // Not `ready`: the reconciler would look for their containers.
            status: offshoot_store::EnvStatus::Failed,
            reason: Some("a benchmark fixture".into()),
            template: TEMPLATE.into(),
            env_vars: String::new(),
            expires_at: Some(now + 86_400_000),
            created_at: now - i as i64 * 60_000,
            updated_at: now,
            parent_id: None,
            import_info: None,
            pull_request: None,
            sleeping_since: None,
            last_request_at: None,
            idle_sleep_seconds: None,
            parameters: None,
        };
        store.create_env(&e).await.expect("env");
        for s in ["web", "api", "db"] {
            let detail = offshoot_store::ServiceDetail {
                hostnames: vec![format!("{s}-{id}.localhost")],
                image: Some("busybox:stable".into()),
                ..offshoot_store::ServiceDetail::new()
            };
            store
                .set_service(&ServiceRow {
                    env_id: id.clone().into(),
                    name: s.into(),
                    status: offshoot_store::ServiceStatus::Failed,
                    reason: None,
                    detail,
                })
                .await
                .expect("service");
        }
        for (n, w) in ["setup", "patch"].iter().enumerate() {
            let d = Deployment {
                id: format!("d{i:06}{n}").into(),
                env_id: id.clone().into(),
                workflow: (*w).into(),
                commit_sha: e.commit_sha.clone(),
                status: offshoot_store::DeploymentStatus::Failed,
                error: Some("fixture".into()),
                phases: r#"{"fetch":5,"build":100,"start":300,"ready":410}"#.into(),
                created_at: now - 1000 + n as i64,
                finished_at: Some(now),
            };
            store.create_deployment(&d).await.expect("deployment");
        }
    }
    first
}

/// One GET with the session cookie (or bearer token): status and milliseconds to the end of the body.
fn get(port: u16, path: &str, auth: &str) -> (u16, f64, usize) {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let head = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, ms, out.len())
}

fn main() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db = format!("sqlite://{}", data.join("offshoot.db").display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let t = Instant::now();
    let first = rt.block_on(fixture(&db));
    println!("fixture: 1 application, 12 versions, {ENVS} environments in {:.1} s", t.elapsed().as_secs_f64());
    let s = Server::start(&data, None);

    // Log in as a browser does.
    let form = format!("token={}&next=/ui/envs", s.token());
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.api)).expect("connect");
    write!(
        c,
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .expect("login");
    let mut answer = String::new();
    c.read_to_string(&mut answer).expect("read");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let session = format!("Cookie: {cookie}");
    let bearer = format!("Authorization: Bearer {}", s.token());

    let pages = [
        ("environments", "/ui/envs".to_owned(), session.as_str()),
        ("environment", format!("/ui/envs/{first}"), session.as_str()),
        ("applications", "/ui/apps".to_owned(), session.as_str()),
        ("application", "/ui/apps/demo".to_owned(), session.as_str()),
        ("datasets", "/ui/datasets".to_owned(), session.as_str()),
        ("API env list", "/api/v1/envs".to_owned(), bearer.as_str()),
    ];
    println!("{ROUNDS} requests per page after 3 to warm up; time to the whole response over loopback");
    println!("{:<14} {:>9} {:>9} {:>10}", "page", "median", "p99", "bytes");
    for (name, path, auth) in &pages {
        for _ in 0..3 {
            get(s.api, path, auth);
        }
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let (status, ms, n) = get(s.api, path, auth);
            assert_eq!(status, 200, "{path}");
            times.push(ms);
            bytes = n;
        }
        let p99 = {
            let mut v = times.clone();
            v.sort_by(f64::total_cmp);
            v[(v.len() * 99 / 100).min(v.len() - 1)]
        };
        println!("{name:<14} {:>7.2}ms {:>7.2}ms {bytes:>10}", median(times), p99);
    }
    // The server's own memory with every environment registered and every page served.
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap_or_default();
    let kib = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    println!(
        "server memory with {ENVS} environments registered: resident {} MiB, peak {} MiB (goal: under 200 MiB)",
        kib("VmRSS:").unwrap_or(0) / 1024,
        kib("VmHWM:").unwrap_or(0) / 1024
    );
}
