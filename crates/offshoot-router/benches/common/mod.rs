//! What the router's benchmarks share: nginx (Debian) as the side-by-side peer, wrk (Debian) as
//! the load, medians.

#![allow(dead_code, unreachable_pub, reason = "each benchmark uses what it needs")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROUNDS: usize = 5;
pub const SECONDS: u32 = 6;
pub const CONNECTIONS: u32 = 64;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so that the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// An nginx in `dir/name` with `workers` worker processes, no access log, and `http` (server
/// blocks and directives) in its `http` block.
pub fn nginx(dir: &Path, name: &str, workers: usize, http: &str) -> Nginx {
    let d = dir.join(name);
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let conf = format!(
        "worker_processes {workers};\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n  keepalive_requests 1000000;\n{http}\n}}\n",
        p = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", d.to_str().unwrap(), "-c", d.join("nginx.conf").to_str().unwrap(), "-g", "daemon off; user root;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx (apt-get install nginx-light)");
    Nginx(child)
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Run {
    pub rps: f64,
    pub p99_ms: f64,
}

/// wrk with `Host: bench.test` and `headers`, `seconds` long; any error response or socket error
/// stops the benchmark.
pub fn wrk(port: u16, path: &str, headers: &[&str], seconds: u32) -> Run {
    let mut args =
        vec!["-t2".to_owned(), format!("-c{CONNECTIONS}"), format!("-d{seconds}s"), "--latency".into(), "--timeout".into(), "10s".into()];
    for h in std::iter::once(&"Host: bench.test").chain(headers) {
        args.extend(["-H".to_owned(), (*h).to_owned()]);
    }
    args.push(format!("http://127.0.0.1:{port}{path}"));
    let out = Command::new("wrk").args(&args).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx") && !text.contains("Socket errors"), "errors during the run:\n{text}");
    let rps = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).map(str::trim).and_then(|v| v.parse().ok()).unwrap();
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(str::trim).map(parse_wrk_time).unwrap();
    Run { rps, p99_ms: p99 }
}

fn parse_wrk_time(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().unwrap();
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => panic!("unknown unit in {s}"),
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub const HEADER: &str = "workers  file/size   offshoot r/s  nginx r/s   ratio  offshoot p99  nginx p99   ratio";

/// Runs of ours and theirs, alternating after one warm-up each; prints the row of medians.
pub fn side_by_side(label: &str, workers: usize, rounds: usize, mut ours: impl FnMut() -> Run, mut theirs: impl FnMut() -> Run) {
    ours();
    theirs();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(ours());
        b.push(theirs());
    }
    let (o_rps, n_rps) = (median(a.iter().map(|r| r.rps).collect()), median(b.iter().map(|r| r.rps).collect()));
    let (o_p99, n_p99) = (median(a.iter().map(|r| r.p99_ms).collect()), median(b.iter().map(|r| r.p99_ms).collect()));
    println!(
        "{workers:<8} {label:<10} {o_rps:>13.0} {n_rps:>10.0} {:>7.2} {:>11.2}ms {:>8.2}ms {:>7.2}",
        o_rps / n_rps,
        o_p99,
        n_p99,
        o_p99 / n_p99
    );
}
