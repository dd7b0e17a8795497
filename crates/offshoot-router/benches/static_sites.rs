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
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::*;

/// Fewer, shorter rounds than the proxy benchmark: five files, two worker counts.
const ROUNDS_HERE: usize = 3;
const SECONDS_HERE: u32 = 4;

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
    println!("wrk -t2 -c{CONNECTIONS} -d{SECONDS_HERE}s, keep-alive, {ROUNDS_HERE} rounds each, alternating; medians");
    println!("{HEADER}");
    for workers in [1usize, 2] {
        let nginx_port = free_port();
        let _nginx = nginx(
            &dir,
            &format!("nginx{workers}"),
            workers,
            &format!(
                "  include /etc/nginx/mime.types;\n  sendfile on;\n  tcp_nopush on;\n  etag on;\n  gzip_static on;\n  server {{ listen 127.0.0.1:{nginx_port} default_server; root {}; }}",
                site.display()
            ),
        );
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
            let headers: &[&str] = if gzip { &["Accept-Encoding: gzip"] } else { &[] };
            side_by_side(
                label,
                workers,
                ROUNDS_HERE,
                || wrk(router_port, path, headers, SECONDS_HERE),
                || wrk(nginx_port, path, headers, SECONDS_HERE),
            );
        }
        stop.send(true).unwrap();
        rt.block_on(served).unwrap().unwrap();
    }
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
