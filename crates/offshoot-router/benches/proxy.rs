//! The router beside nginx, side by side in one run: wrk (Debian) drives keep-alive requests
//! through our router and through nginx (Debian) configured as the equivalent reverse proxy
//! (keep-alive upstream pool, HTTP/1.1 upstream, `proxy_buffering off` as ingress-nginx has it,
//! no access log on either) to the same upstream, an nginx serving a small and a 1 MiB file.
//! Our router holds 10,000 other hostnames. Both run with one worker (process or thread), then
//! with two (one per core here). Then table lookups with 10 to 100,000 hostnames. Medians of
//! ROUNDS rounds, alternating.
//!
//! Run: `cargo bench -p offshoot-router` (needs `apt-get install wrk nginx-light`).

#![expect(clippy::print_stdout, clippy::unwrap_used, reason = "a benchmark reports on stdout and stops on any failure")]

use offshoot_router::{Backend, IngressSettings, Route, Router, RouterConfig, Table, Visibility};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;
const SECONDS: u32 = 6;
const CONNECTIONS: u32 = 64;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so that the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn nginx(dir: &Path, name: &str, workers: u32, server: &str) -> Nginx {
    let d = dir.join(name);
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let conf = format!(
        "worker_processes {workers};\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n  keepalive_requests 1000000;\n{server}\n}}\n",
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

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Run {
    rps: f64,
    p99_ms: f64,
}

fn wrk(port: u16, path: &str) -> Run {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            "-H",
            "Host: bench.test",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("wrk (apt-get install wrk)");
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn table(hosts: usize, upstream: SocketAddr) -> Table {
    let settings = Arc::new(IngressSettings { body_limit: None, ..IngressSettings::default() });
    let backend = Arc::new(Backend::new("bench", "web", vec![upstream], settings.clone()));
    let mut routes = vec![Route { host: "bench.test".into(), path: "/".into(), visibility: Visibility::Public, backend }];
    for i in 0..hosts {
        let b = Arc::new(Backend::new(&format!("e{i}"), "web", vec![upstream], settings.clone()));
        routes.push(Route { host: format!("web-e{i}.example.test"), path: "/".into(), visibility: Visibility::Public, backend: b.clone() });
        routes.push(Route { host: format!("web-e{i}.example.test"), path: "/api".into(), visibility: Visibility::Public, backend: b });
    }
    Table::build(routes).0
}

fn main() {
    let dir = std::env::temp_dir().join(format!("offshoot-proxy-bench-{}", std::process::id()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("small"), "hello from the upstream\n").unwrap();
    std::fs::write(www.join("big"), vec![b'x'; 1 << 20]).unwrap();

    let up_port = free_port();
    let _upstream =
        nginx(&dir, "upstream", 1, &format!("  server {{ listen 127.0.0.1:{up_port} default_server; root {}; }}", www.display()));
    wait_port(up_port);
    let upstream: SocketAddr = ([127, 0, 0, 1], up_port).into();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    println!("wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, keep-alive, {ROUNDS} rounds each, alternating; medians");
    println!(
        "{:<8} {:<10} {:>13} {:>10} {:>7} {:>13} {:>10} {:>7}",
        "workers", "response", "offshoot r/s", "nginx r/s", "ratio", "offshoot p99", "nginx p99", "ratio"
    );
    // Worker processes for nginx, serving threads for our router: one, then one per core.
    for workers in [1usize, 2] {
        let nginx_port = free_port();
        let proxy = nginx(
            &dir,
            &format!("proxy{workers}"),
            u32::try_from(workers).unwrap(),
            &format!(
                "  upstream app {{ server 127.0.0.1:{up_port}; keepalive 256; }}\n  server {{\n    listen 127.0.0.1:{nginx_port} default_server;\n    location / {{\n      proxy_pass http://app;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $remote_addr;\n      proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n      proxy_buffering off;\n    }}\n  }}"
            ),
        );
        wait_port(nginx_port);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let (router_port, served) = rt.block_on(async {
            let router = Router::new(RouterConfig { drain_timeout: Duration::from_secs(1), ..RouterConfig::default() });
            router.swap(table(10_000, upstream));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            (port, tokio::spawn(offshoot_router::serve_threads(router, listener, None, rx, workers)))
        });
        wait_port(router_port);
        if let Ok(secs) = std::env::var("PROXY_BENCH_HOLD") {
            // For profiling: keep everything up and let another tool drive it.
            println!("router 127.0.0.1:{router_port}  nginx 127.0.0.1:{nginx_port}  upstream 127.0.0.1:{up_port}  (Host: bench.test)");
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
            return;
        }
        for (label, path) in [("small", "/small"), ("1 MiB", "/big")] {
            // Warm both pools.
            wrk(router_port, path);
            wrk(nginx_port, path);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ours.push(wrk(router_port, path));
                theirs.push(wrk(nginx_port, path));
            }
            let (o_rps, n_rps) = (median(ours.iter().map(|r| r.rps).collect()), median(theirs.iter().map(|r| r.rps).collect()));
            let (o_p99, n_p99) = (median(ours.iter().map(|r| r.p99_ms).collect()), median(theirs.iter().map(|r| r.p99_ms).collect()));
            println!(
                "{workers:<8} {label:<10} {o_rps:>13.0} {n_rps:>10.0} {:>7.2} {:>11.2}ms {:>8.2}ms {:>7.2}",
                o_rps / n_rps,
                o_p99,
                n_p99,
                o_p99 / n_p99
            );
        }
        drop(proxy);
        stop.send(true).unwrap();
        rt.block_on(served).unwrap().unwrap();
    }

    // Lookup cost against the number of routed hostnames.
    println!("\ntable lookup, median of {ROUNDS} × 1,000,000 lookups of existing hosts");
    for hosts in [10usize, 1_000, 10_000, 100_000] {
        let t = table(hosts, upstream);
        let names: Vec<String> = (0..1024).map(|i| format!("web-e{}.example.test", (i * 7919) % hosts)).collect();
        let mut runs = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let mut found = 0usize;
            for i in 0..1_000_000 {
                let path = if i % 2 == 0 { "/api/orders" } else { "/" };
                found += usize::from(t.lookup(&names[i % names.len()], path).is_some());
            }
            assert_eq!(found, 1_000_000);
            runs.push(start.elapsed().as_secs_f64() * 1e9 / 1e6);
        }
        println!("{hosts:>7} hosts: {:>6.1} ns per lookup", median(runs));
    }
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
