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
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::*;

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
    println!("{HEADER}");
    // Worker processes for nginx, serving threads for our router: one, then one per core.
    for workers in [1usize, 2] {
        let nginx_port = free_port();
        let proxy = nginx(
            &dir,
            &format!("proxy{workers}"),
            workers,
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
            side_by_side(label, workers, ROUNDS, || wrk(router_port, path, &[], SECONDS), || wrk(nginx_port, path, &[], SECONDS));
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
