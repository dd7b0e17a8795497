//! Static sites: our router serving a built site from its storage (the local filesystem, as by
//! default) beside nginx (Debian) serving the same directory with `root`, side by side in one
//! run. wrk (Debian) drives keep-alive requests for: a small HTML page, a 200 KB script, a
//! 2 MiB file (from our memory cache), a 16 MiB file (streamed from storage: over the cache's
//! per-file limit), and the script with `Accept-Encoding: gzip` (we serve our stored gzip variant,
//! nginx its `.gz` file with `gzip_static on`). No access log on either; `sendfile on` for nginx.
//! One worker (process or thread), then two (one per core here). Medians of ROUNDS rounds,
//! alternating.
//!
//! Run: `cargo bench -p offshoot-router --bench static_sites` (needs `apt-get install wrk
//! nginx-light`).

#![expect(clippy::print_stdout, clippy::unwrap_used, reason = "a benchmark reports on stdout and stops on any failure")]

use offshoot_router::{Backend, Content, IngressSettings, ProxyBody, Route, Router, RouterConfig, Table, Visibility};
use offshoot_sites::{Bucket, Fallback, Limits, Site};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;
const SECONDS: u32 = 4;
const CONNECTIONS: u32 = 64;

/// The site as the router's content (the server has the same adapter).
#[derive(Debug)]
struct Served(Arc<Site>);

impl Content for Served {
    fn serve<'a>(
        &'a self,
        method: &'a hyper::Method,
        path: &'a str,
        headers: &'a hyper::HeaderMap,
    ) -> std::pin::Pin<Box<dyn Future<Output = hyper::Response<ProxyBody>> + Send + 'a>> {
        Box::pin(self.0.serve(method, path, headers))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn nginx(dir: &Path, workers: usize, port: u16, root: &Path) -> Nginx {
    let d = dir.join(format!("nginx{workers}"));
    std::fs::create_dir_all(d.join("logs")).unwrap();
    let conf = format!(
        "worker_processes {workers};\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  etag on;\n  gzip_static on;\n  keepalive_requests 1000000;\n  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n  server {{ listen 127.0.0.1:{port} default_server; root {root}; }}\n}}\n",
        p = d.display(),
        root = root.display()
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

fn wrk(port: u16, path: &str, gzip: bool) -> Run {
    let mut args = vec![
        "-t2".to_owned(),
        format!("-c{CONNECTIONS}"),
        format!("-d{SECONDS}s"),
        "--latency".into(),
        "--timeout".into(),
        "10s".into(),
        "-H".into(),
        "Host: bench.test".into(),
    ];
    if gzip {
        args.extend(["-H".into(), "Accept-Encoding: gzip".into()]);
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The response's headers and body length, to check that both servers answer alike.
fn head(port: u16, path: &str, gzip: bool) -> (String, usize) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let enc = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench.test\r\n{enc}Connection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (String::from_utf8_lossy(&out[..split]).to_lowercase(), out.len() - split - 4)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("offshoot-static-bench-{}", std::process::id()));
    let site = dir.join("dist");
    std::fs::create_dir_all(site.join("assets")).unwrap();
    let page: String = format!("<!doctype html><title>bench</title>{}", "<p>a paragraph of the page</p>\n".repeat(60));
    let script: String = (0..4000).map(|i| format!("export const value{i} = compute({i}, 'a string');\n")).collect();
    std::fs::write(site.join("index.html"), &page).unwrap();
    std::fs::write(site.join("assets/app.3f2a9c1b7e.js"), &script).unwrap();
    std::fs::write(site.join("video.bin"), (0..2u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::write(site.join("movie.bin"), (0..16u32 << 20).map(|i| (i % 241) as u8).collect::<Vec<u8>>()).unwrap();
    // nginx's gzip_static wants the .gz beside the file; ours makes its own at ingest.
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(script.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(site.join("assets/app.3f2a9c1b7e.js.gz"), gz).unwrap();

    // The site as a build hands it over: a tar of the output directory.
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all("dist", &site).unwrap();
    let archive = tar.into_inner().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let bucket = Arc::new(Bucket::open(dir.join("store").to_str().unwrap(), 256 << 20).unwrap());
    let manifest = rt
        .block_on(offshoot_sites::ingest_tar(&bucket, "0123456789abcdef0123456789abcdef", std::io::Cursor::new(archive), Limits::default()))
        .unwrap()
        .0;
    let site_obj = Arc::new(Site::new(bucket, &manifest, None, &Fallback::Page("index.html".into())));
    let table = || {
        let backend = Arc::new(Backend::content("bench", "web", Arc::new(Served(site_obj.clone())), Arc::new(IngressSettings::default())));
        Table::build(vec![Route { host: "bench.test".into(), path: "/".into(), visibility: Visibility::Public, backend }]).0
    };

    let cases = [
        ("html 2 KB", "/index.html", false),
        ("js 200 KB", "/assets/app.3f2a9c1b7e.js", false),
        ("js gzip", "/assets/app.3f2a9c1b7e.js", true),
        ("2 MiB", "/video.bin", false),
        ("16 MiB", "/movie.bin", false),
    ];
    println!("wrk -t2 -c{CONNECTIONS} -d{SECONDS}s, keep-alive, {ROUNDS} rounds each, alternating; medians");
    println!(
        "{:<8} {:<10} {:>13} {:>10} {:>7} {:>13} {:>10} {:>7}",
        "workers", "file", "offshoot r/s", "nginx r/s", "ratio", "offshoot p99", "nginx p99", "ratio"
    );
    for workers in [1usize, 2] {
        let nginx_port = free_port();
        let _nginx = nginx(&dir, workers, nginx_port, &site);
        wait_port(nginx_port);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let router = Router::new(RouterConfig { drain_timeout: Duration::from_secs(1), ..RouterConfig::default() });
        router.swap(table());
        let (router_port, served) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            (port, tokio::spawn(offshoot_router::serve_threads(router, listener, None, rx, workers)))
        });
        wait_port(router_port);
        for (label, path, gzip) in cases {
            // The same bytes from both.
            let (ours, theirs) = (head(router_port, path, gzip), head(nginx_port, path, gzip));
            assert_eq!(ours.1, theirs.1, "{label}: bodies differ in length\n{}\n{}", ours.0, theirs.0);
            assert_eq!(ours.0.contains("content-encoding: gzip"), gzip, "{label}: {}", ours.0);
            wrk(router_port, path, gzip);
            wrk(nginx_port, path, gzip);
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                ours.push(wrk(router_port, path, gzip));
                theirs.push(wrk(nginx_port, path, gzip));
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
        stop.send(true).unwrap();
        rt.block_on(served).unwrap().unwrap();
    }
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
