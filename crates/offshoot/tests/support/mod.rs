//! Driving a real `offshoot server` process through the CLI: shared by the end-to-end tests and
//! the benchmark.

#![allow(dead_code, unreachable_pub)]

pub mod acme;
pub mod browser;
pub mod engine;
pub mod hooks;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_offshoot")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The API, router and TLS ports of a server's "offshoot server ready api=ADDR router=PORT
/// tls=Some(PORT)" line.
fn ready_ports(line: &str) -> Option<(u16, u16, Option<u16>)> {
    let rest = line.split_once("offshoot server ready ")?.1;
    let field = |name: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(name));
    let api = field("api=")?.rsplit_once(':')?.1.parse().ok()?;
    let tls = field("tls=Some(").and_then(|p| p.trim_end_matches(')').parse().ok());
    Some((api, field("router=")?.parse().ok()?, tls))
}

pub struct Server {
    /// The `offshoot` binary it runs (and whose CLI talks to it).
    pub bin: String,
    pub child: Child,
    pub data: PathBuf,
    pub api: u16,
    pub router: u16,
    /// The TLS listener's port, when it has one.
    pub tls: Option<u16>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(data: &Path, db: Option<&str>) -> Server {
        Server::start_with(data, db, &[])
    }

    /// Started with extra `offshoot server` arguments.
    pub fn start_with(data: &Path, db: Option<&str>, extra: &[&str]) -> Server {
        Server::start_with_env(data, db, extra, &[])
    }

    /// Started with extra arguments and environment variables.
    pub fn start_with_env(data: &Path, db: Option<&str>, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_bin(bin(), data, db, extra, envs)
    }

    /// Started from another build of `offshoot` (a benchmark's "before"). It listens on ports
    /// the kernel picks (port 0) and is known by the ports its "ready" line names: a port chosen
    /// here and bound later could be taken by another test's server in between.
    pub fn start_bin(bin: &str, data: &Path, db: Option<&str>, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin);
        cmd.args(["server", "--data-dir", data.to_str().expect("utf-8")]);
        // Loopback, unless the test says where.
        for (flag, default) in [("--listen", "127.0.0.1:0"), ("--router-listen", "127.0.0.1:0")] {
            if !extra.contains(&flag) {
                cmd.args([flag, default]);
            }
        }
        if let Some(db) = db {
            cmd.args(["--database-url", db]);
        }
        cmd.args(extra);
        cmd.envs(envs.iter().copied());
        let log_path = data.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        let from = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let mut child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("start the server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited ({status}); see {}", log_path.display());
            }
            let text = std::fs::read(&log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
            if let Some((api, router, tls)) = text.lines().find_map(ready_ports) {
                let s = Server { bin: bin.to_owned(), child, data: data.to_owned(), api, router, tls, _tmp: None };
                assert!(http(api, "localhost", "/healthz").is_some_and(|r| r.contains("ok")), "the server's health check fails");
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not start; see {}", log_path.display());
    }

    pub fn new(db: Option<&str>) -> Server {
        Server::new_with(db, &[])
    }

    pub fn new_with(db: Option<&str>, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_with(&tmp.path().join("data"), db, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A server of another build of `offshoot` in a temporary data directory.
    pub fn new_bin(bin: &str) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_bin(bin, &tmp.path().join("data"), None, &[], &[]);
        s._tmp = Some(tmp);
        s
    }

    pub fn new_with_env(db: Option<&str>, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_with_env(&tmp.path().join("data"), db, extra, envs);
        s._tmp = Some(tmp);
        s
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin-token")).expect("admin token").trim().to_owned()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let token = std::fs::read_to_string(self.data.join("admin-token")).expect("admin token");
        Command::new(&self.bin)
            .args(args)
            .env("OFFSHOOT_URL", format!("http://127.0.0.1:{}", self.api))
            .env("OFFSHOOT_TOKEN", token.trim())
            .output()
            .expect("run the CLI")
    }

    /// The CLI with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        let token = std::fs::read_to_string(self.data.join("admin-token")).expect("admin token");
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("OFFSHOOT_URL", format!("http://127.0.0.1:{}", self.api))
            .env("OFFSHOOT_TOKEN", token.trim())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the CLI");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        child.wait_with_output().expect("wait for the CLI")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let o = self.cli(&all);
        assert!(o.status.success(), "{args:?} failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server (-9) and starts it again on its data directory, as a crash and a
    /// restart would: what it left on the engine stays (dropping a server cleans up after it).
    pub fn restart(&mut self, extra: &[&str]) {
        self.kill();
        let next = Server::start_with(&self.data, None, extra);
        let mut old = std::mem::replace(self, next);
        self._tmp = old._tmp.take();
        // Killed already; its clean-up would remove what the new one runs.
        std::mem::forget(old);
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    pub fn instance(&self) -> String {
        std::fs::read_to_string(self.data.join("instance-id")).unwrap_or_default().trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.clean_up();
    }
}

impl Server {
    /// Kills the server and removes what it left on the engine, whatever the test did (failed
    /// environments keep their network and volumes until deleted). Dropping a server does it;
    /// a test whose threads share the server calls it when they may outlive a failure.
    pub fn clean_up(&mut self) {
        self.kill();
        let label = format!("label=offshoot.instance={}", self.instance());
        for id in docker(&["ps", "-aq", "--filter", &label]).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        for id in docker(&["network", "ls", "-q", "--filter", &label]).split_whitespace() {
            docker(&["network", "rm", id]);
        }
        for id in docker(&["volume", "ls", "-q", "--filter", &label]).split_whitespace() {
            docker(&["volume", "rm", "-f", id]);
        }
    }
}

/// Logs in to the dashboard with `token`: the session cookie (`offshoot_session=...`).
pub fn dashboard_login(s: &Server, token: &str) -> String {
    let form = format!("token={token}&next=%2Fui");
    let head = format!(
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        form.len()
    );
    let answer = http_raw(s.api, &head, form.as_bytes()).expect("an answer");
    answer
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim())
        .find(|v| v.starts_with("offshoot_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// The median of measurements (benchmarks report medians: this machine is noisy).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A raw HTTP/1.1 exchange: `head` is the request without its final blank line.
pub fn http_raw(port: u16, head: &str, body: &[u8]) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    // The router may answer (413) before taking the whole body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// A real HTTP/1.1 request to 127.0.0.1:port with a Host header; the whole response.
pub fn http(port: u16, host: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

pub fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() { copy_dir(&src, &dst) } else { std::fs::copy(&src, &dst).map(|_| ()).expect("copy") }
    }
}

/// The example shop as a git repository, with `edit` applied to its template.
pub fn shop_repo(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
            .join("../../examples/shop"),
        dir.path(),
    );
    let t = dir.path().join(".release/application_template.yaml");
    let text = std::fs::read_to_string(&t).expect("template");
    std::fs::write(&t, edit(text)).expect("write");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "shop"]);
    dir
}

pub fn containers(env: &str) -> Vec<(String, String)> {
    let out = docker(&["ps", "-a", "--filter", &format!("label=offshoot.env={env}"), "--format", "{{.Names}} {{.ID}}"]);
    let mut v: Vec<(String, String)> = out.lines().filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned()))).collect();
    v.sort();
    v
}

pub fn leftovers(env: &str) -> String {
    let label = format!("label=offshoot.env={env}");
    format!(
        "{}{}{}",
        docker(&["ps", "-aq", "--filter", &label]),
        docker(&["network", "ls", "-q", "--filter", &label]),
        docker(&["volume", "ls", "-q", "--filter", &label])
    )
}

/// A repository holding `.release.yaml`, the template `template`, optional variables, and
/// `files`, committed on `main`; then each extra branch with its own files.
pub fn repo(template: &str, vars: Option<&str>, files: &[(&str, &str)], branches: &[(&str, &[(&str, &str)])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let write = |rel: &str, text: &str| {
        let f = p.join(rel);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, text).expect("write");
    };
    let mut release = "application_template: .release/application_template.yaml\n".to_owned();
    write(".release/application_template.yaml", template);
    if let Some(v) = vars {
        write(".release/environment_variables.yaml", v);
        release.push_str("environment_variables: .release/environment_variables.yaml\n");
    }
    write(".release.yaml", &release);
    for (rel, text) in files {
        write(rel, text);
    }
    git(p, &["init", "-q", "-b", "main"]);
    git(p, &["add", "-A"]);
    git(p, &["commit", "-qm", "main"]);
    for (branch, files) in branches {
        git(p, &["checkout", "-q", "-b", branch]);
        for (rel, text) in *files {
            write(rel, text);
        }
        git(p, &["commit", "-qam", branch]);
        git(p, &["checkout", "-q", "main"]);
    }
    dir
}

pub const DOCKERFILE: &str = "FROM busybox:stable\nARG BACKEND_URL=\nCOPY index.html /www/index.html\nRUN echo \"backend: $BACKEND_URL\" >> /www/index.html\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// An application `spa`: an API built from `api/` and a static front end built in
/// `front-end/` by its `build.sh` (into `dist/`, where `dist/assets` exists).
pub const SPA_TEMPLATE: &str = "app: spa
hostnames:
- api: api-${env_id}.${domain}
- web: web-${env_id}.${domain}
services:
- name: api
  image: offshoot/spa/api
  has_repo: true
  build:
    context: api
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
- name: web
  static: true
  build_base: front-end
  build_package_install_command: mkdir -p dist/assets
  build_command: sh build.sh
  build_output_directory: dist/
";

pub fn one_service(app: &str, service: &str, extra: &str) -> String {
    format!(
        "app: {app}\n{extra}hostnames:\n- {service}: {service}-${{env_id}}.${{domain}}\nservices:\n- name: {service}\n  image: offshoot/{app}/{service}\n  has_repo: true\n  build:\n    context: {service}\n    args:\n    - BACKEND_URL=${{envs.BACKEND_URL}}\n  ports:\n  - type: node_port\n    port: '8080'\n    target_port: '8080'\n  readiness_probe:\n    http_get:\n      path: /\n      port: '8080'\n    period_seconds: 1\n    failure_threshold: 30\n"
    )
}

pub fn app_repo(app: &str, service: &str, extra: &str, vars: Option<&str>, feature: bool) -> tempfile::TempDir {
    let index = format!("{service}/index.html");
    let dockerfile = format!("{service}/Dockerfile");
    let main_page = format!("{app} on main\n");
    let feature_page = format!("{app} on feature/new\n");
    let files = [(index.as_str(), main_page.as_str()), (dockerfile.as_str(), DOCKERFILE)];
    let feature_files = [(index.as_str(), feature_page.as_str())];
    let branches: Vec<(&str, &[(&str, &str)])> = if feature { vec![("feature/new", &feature_files[..])] } else { vec![] };
    repo(&one_service(app, service, extra), vars, &files, &branches)
}

/// A local image with the PostgreSQL and MariaDB clients (`psql`, `mariadb`) on busybox: the
/// binaries from this machine's packages with the shared libraries they load (no registry is
/// reachable). Built once; concurrent builds produce the same image.
pub fn db_client_image() -> &'static str {
    const TAG: &str = "offshoot-test/dbclient:local";
    if Command::new("docker").args(["image", "inspect", TAG]).output().is_ok_and(|o| o.status.success()) {
        return TAG;
    }
    let ctx = tempfile::tempdir().expect("tempdir");
    let root = ctx.path().join("root");
    let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/services)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .expect("psql");
    let bins = [pg_bin, PathBuf::from("/usr/bin/mariadb")];
    let mut files: Vec<PathBuf> = bins.to_vec();
    for b in &bins {
        let o = Command::new("ldd").arg(b).output().expect("ldd");
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let path = line.split("=>").nth(1).unwrap_or(line).split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                files.push(PathBuf::from(path));
            }
        }
    }
    for f in &files {
        let dest = root.join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(f, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", f.display()));
    }
    std::fs::create_dir_all(root.join("usr/local/bin")).expect("mkdir");
    std::os::unix::fs::symlink(&bins[0], root.join("usr/local/bin/psql")).expect("symlink");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: files dns\n").expect("nsswitch");
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox:stable\nCOPY root/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n")
        .expect("Dockerfile");
    let o = Command::new("docker").args(["build", "-q", "-t", TAG]).arg(ctx.path()).output().expect("docker build");
    assert!(o.status.success(), "building {TAG}: {}", String::from_utf8_lossy(&o.stderr));
    TAG
}

/// Runs SQL on this machine's PostgreSQL as the `offshoot` role; returns the output (`psql -tA`).
pub fn psql(db: &str, sql: &str) -> String {
    psql_at(5432, "offshoot", db, sql)
}

/// `sql` on database `db` of the PostgreSQL on 127.0.0.1:`port` as `user` (password `offshoot`
/// where one is asked); what it printed.
pub fn psql_at(port: u16, user: &str, db: &str, sql: &str) -> String {
    let o = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .env("PGPASSWORD", "offshoot")
        .output()
        .expect("psql");
    assert!(o.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Runs SQL on this machine's MariaDB as the `offshoot` user; returns the output (`-N -B`).
pub fn mariadb(db: &str, sql: &str) -> String {
    let o = Command::new("mariadb")
        .args(["--protocol=TCP", "-h", "127.0.0.1", "-u", "offshoot", "-poffshoot", "-N", "-B", "-e", sql])
        .args((!db.is_empty()).then_some(db))
        .output()
        .expect("mariadb");
    assert!(o.status.success(), "mariadb {sql}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP/1.1 exchange through the router with extra request headers: status, response
/// headers (names lower-cased) and body bytes. `method` is `GET` or `HEAD`.
pub fn fetch(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::BTreeMap<String, String>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the router");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let text = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    (status, headers, out[split + 4..].to_vec())
}

/// A helper process (an S3 stand-in, chromedriver) listening on a port, stopped when dropped.
pub struct Helper {
    child: Child,
    pub port: u16,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with `args` (where `{port}` is a free port) and waits until it listens.
pub fn helper(program: &str, args: &[&str], hint: &str) -> Helper {
    let port = free_port();
    let args: Vec<String> = args.iter().map(|a| a.replace("{port}", &port.to_string())).collect();
    let child = Command::new(program)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} cannot start ({e}); {hint}"));
    let h = Helper { child, port };
    eventually(20, &format!("{program} listens"), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    h
}

/// Plays every scenario of `offshoot_control::conformance` on the server `s`, each its own
/// application (`<prefix><n>`) and environment, all at once, and checks how each ended: ready or
/// failed, each step's status, the words of the reason. The environments' ids, to tear down.
pub fn play_conformance(s: &Server, prefix: &str) -> Vec<String> {
    let all = offshoot_control::conformance::scenarios();
    assert!(all.len() >= 7);
    let repos: Vec<_> = all.iter().enumerate().map(|(i, sc)| repo(&format!("app: {prefix}{i}\n{}", sc.template), None, &[], &[])).collect();
    let mut envs = Vec::new();
    for (i, r) in repos.iter().enumerate() {
        s.json(&["app", "create", "--repo", r.path().to_str().expect("utf-8")]);
        envs.push(s.json(&["env", "create", &format!("{prefix}{i}"), "--branch", "main"])["id"].as_str().expect("id").to_owned());
    }
    for (sc, id) in all.iter().zip(&envs) {
        let env = eventually(120, &format!("{}: the environment to settle", sc.name), || {
            let e = s.json(&["env", "show", id]);
            matches!(e["status"].as_str(), Some("ready" | "failed")).then_some(e)
        });
        assert_eq!(env["status"] == "ready", sc.ready, "{}: {env}", sc.name);
        let steps: Vec<(String, String)> = env["deployments"][0]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| (st["name"].as_str().unwrap_or("").to_owned(), st["status"].as_str().unwrap_or("").to_owned()))
            .collect();
        let want: Vec<(String, String)> = sc.steps.iter().map(|(n, st)| ((*n).to_owned(), st.as_str().to_owned())).collect();
        assert_eq!(steps, want, "{}: {env}", sc.name);
        let reason = env["reason"].as_str().unwrap_or("");
        for w in sc.reason_has {
            assert!(reason.contains(w), "{}: the reason `{reason}` does not say `{w}`", sc.name);
        }
    }
    envs
}

/// Two services, a store with a volume and a web page that depends on it; both stop at once on
/// SIGTERM, as well-behaved images do (one that ignores it is killed after 10 s, as by `docker
/// stop`).
pub const NAP: &str = r#"app: nap
hostnames:
- web: web-${env_id}.${domain}
services:
- name: store
  image: busybox:stable
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /data; touch /data/orders; nc -ll -p 6379 -e cat & wait"]
  ports:
  - type: container_port
    port: '6379'
  volumes:
  - type: persistent
    name: store-data
    mount_path: /data
  readiness_probe:
    tcp_socket:
      port: '6379'
    period_seconds: 1
    failure_threshold: 30
- name: web
  image: busybox:stable
  depends_on: [store]
  command: [sh, -c, "trap 'exit 0' TERM; mkdir -p /www; echo nap of $RELEASE_ENV_ID > /www/index.html; httpd -f -p 8080 -h /www & wait"]
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
"#;

/// The memory each of `containers` uses now, as the engine reports it (`docker stats`), in
/// bytes: `(name, bytes)`; a stopped container uses 0.
pub fn container_memory(containers: &[String]) -> Vec<(String, u64)> {
    let mut args = vec!["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"];
    args.extend(containers.iter().map(String::as_str));
    docker(&args)
        .lines()
        .filter_map(|l| {
            let (name, usage) = l.split_once(' ')?;
            let used = usage.split('/').next()?.trim();
            let (num, unit) = used.split_at(used.find(|c: char| c.is_ascii_alphabetic())?);
            let factor = match unit {
                "B" => 1.0,
                "KiB" | "kB" => 1024.0,
                "MiB" | "MB" => 1024.0 * 1024.0,
                "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            Some((name.to_owned(), (num.trim().parse::<f64>().ok()? * factor) as u64))
        })
        .collect()
}
