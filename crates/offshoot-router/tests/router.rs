//! The router through real sockets: real HTTP clients on one side, real HTTP upstreams on the
//! other (in-process hyper servers on loopback; the server crate's tests route to containers).

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use offshoot_router::tcp::{TcpProxies, TcpRoute};
use offshoot_router::{Backend, IngressSettings, Route, Router, RouterConfig, Table, Tls, Visibility};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// An upstream named `name`: `/slow` answers after 3 s, `/big` sends 1 MiB, `/headers` echoes
/// the request head, `/upload` counts the body, `/ws` upgrades and echoes bytes; anything else
/// answers the name.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, std::convert::Infallible>(answer(name, req).await)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).with_upgrades().await;
            });
        }
    });
    addr
}

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("slow"))
        }
        "/big" => Response::new(full(vec![b'x'; 1 << 20])),
        "/huge" => Response::new(full(vec![b'x'; 8 << 20])),
        "/headers" => {
            let mut out = format!("{} {}\n", req.method(), req.uri());
            for (k, v) in req.headers() {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            Response::new(full(out))
        }
        "/upload" => {
            let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            Response::new(full(format!("{n}")))
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap());
            r
        }
        _ => Response::new(full(name)),
    }
}

struct Running {
    addr: SocketAddr,
    router: Arc<Router>,
    stop: tokio::sync::watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(config: RouterConfig, routes: Vec<Route>, tls: Option<Arc<Tls>>) -> Running {
    let router = Router::new(config);
    let (table, rejected) = Table::build(routes);
    assert!(rejected.is_empty(), "{rejected:?}");
    router.swap(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let done = tokio::spawn(offshoot_router::serve(router.clone(), listener, tls, rx));
    Running { addr, router, stop, done }
}

fn backend(env: &str, svc: &str, ups: Vec<SocketAddr>, settings: IngressSettings) -> Arc<Backend> {
    Arc::new(Backend::new(env, svc, ups, Arc::new(settings)))
}

fn route(host: &str, path: &str, b: &Arc<Backend>) -> Route {
    Route { host: host.into(), path: path.into(), visibility: Visibility::Public, backend: b.clone() }
}

/// One HTTP/1.1 request on a new connection.
async fn send(addr: SocketAddr, req: Request<Body>) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (parts.status, parts.headers, body)
}

fn get(host: &str, path: &str) -> Request<Body> {
    Request::builder().uri(path).header("host", host).body(full("")).unwrap()
}

#[tokio::test]
async fn rules_route_by_exact_host_then_longest_prefix_and_unknown_hosts_get_a_bare_404() {
    let (web, api, wild) = (upstream("web").await, upstream("api").await, upstream("wild").await);
    let s = IngressSettings::default();
    let (bw, ba, bx) =
        (backend("e1", "web", vec![web], s.clone()), backend("e1", "api", vec![api], s.clone()), backend("e2", "wild", vec![wild], s));
    let r =
        start(RouterConfig::default(), vec![route("app.test", "/", &bw), route("app.test", "/api", &ba), route("*.test", "/", &bx)], None)
            .await;
    for (host, path, want) in [
        ("app.test", "/", "web"),
        ("APP.test:8080", "/api", "api"),
        ("app.test", "/api/v1", "api"),
        ("app.test", "/apix", "web"),
        ("app.test", "/x/../api/", "api"),
        ("other.test", "/api", "wild"),
    ] {
        let (st, _, body) = send(r.addr, get(host, path)).await;
        assert_eq!((st, &body[..]), (StatusCode::OK, want.as_bytes()), "{host}{path}");
    }
    let (st, _, body) = send(r.addr, get("nope.example", "/")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let page = String::from_utf8_lossy(&body);
    assert!(!page.contains("e1") && !page.contains("e2") && !page.contains("web"), "{page}");
    let (st, _, _) = send(r.addr, get("bad host", "/")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let metrics = r.router.metrics_text();
    assert!(metrics.contains(r#"offshoot_router_requests_total{env="e1",service="api",code="2xx"} 3"#), "{metrics}");
    assert!(metrics.contains("offshoot_router_request_duration_seconds_bucket"), "{metrics}");
    // Once its routes are gone, an environment's series go too.
    r.router.swap(Table::build(vec![route("*.test", "/", &bx)]).0);
    let metrics = r.router.metrics_text();
    assert!(!metrics.contains(r#"env="e1""#) && metrics.contains(r#"env="e2""#), "{metrics}");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    let up = upstream("h").await;
    let b = backend("e1", "web", vec![up], IngressSettings::default());
    // The test client (loopback) is not trusted: its forwarding headers are replaced.
    let cfg = RouterConfig { trusted: vec!["10.0.0.0/8".parse().unwrap()], ..RouterConfig::default() };
    let r = start(cfg, vec![route("h.test", "/", &b)], None).await;
    let req = Request::builder()
        .uri("/headers?q=1")
        .header("host", "h.test")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-kept", "yes")
        .body(full(""))
        .unwrap();
    let (st, headers, body) = send(r.addr, req).await;
    let seen = String::from_utf8_lossy(&body).to_lowercase();
    assert_eq!(st, StatusCode::OK);
    assert!(seen.starts_with("get /headers?q=1\n"), "{seen}");
    assert!(seen.contains("host: h.test\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http\n") && seen.contains("x-forwarded-host: h.test\n"), "{seen}");
    assert!(seen.contains("forwarded: for=127.0.0.1;host=h.test;proto=http\n"), "{seen}");
    assert!(seen.contains("x-kept: yes"), "{seen}");
    for gone in ["x-private", "keep-alive:", "proxy-authorization", "6.6.6.6"] {
        assert!(!seen.contains(gone), "{gone} reached the upstream: {seen}");
    }
    assert!(!headers.contains_key("keep-alive"));

    // An absolute-form target routes, and the upstream sees its host, not a different Host.
    let mut raw = TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"GET http://h.test/headers HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert!(out.starts_with("http/1.1 200") && out.contains("host: h.test\n") && !out.contains("elsewhere"), "{out}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_while_streaming_and_a_slow_upstream_504() {
    let up = upstream("u").await;
    let settings = IngressSettings { body_limit: Some(4096), read_timeout: Duration::from_secs(1), ..IngressSettings::default() };
    let b = backend("e1", "u", vec![up], settings);
    let r = start(RouterConfig::default(), vec![route("u.test", "/", &b)], None).await;

    // Chunked, no length: the router only learns the size by streaming.
    let chunks = (0..8).map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b'a'; 1024]))));
    let streamed = chunked(chunks.collect()).boxed();
    let req = Request::builder().method("POST").uri("/upload").header("host", "u.test").body(streamed).unwrap();
    let (st, _, _) = send(r.addr, req).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // Declared too large: refused before anything is read.
    let req = Request::builder().method("POST").uri("/upload").header("host", "u.test").body(full(vec![b'a'; 5000])).unwrap();
    assert_eq!(send(r.addr, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Within the limit: passed on whole.
    let req = Request::builder().method("POST").uri("/upload").header("host", "u.test").body(full(vec![b'a'; 4096])).unwrap();
    let (st, _, body) = send(r.addr, req).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"4096"[..]));

    let t = Instant::now();
    let (st, _, _) = send(r.addr, get("u.test", "/slow")).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
    assert!(r.router.metrics_text().contains(r#"kind="read_timeout""#));
}

/// A stream of ready items (no extra dependency for one test).
fn chunked<T>(items: Vec<T>) -> impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> + Unpin + Send + Sync + 'static
where
    T: Into<Result<Frame<Bytes>, std::convert::Infallible>> + Unpin + Send + Sync + 'static,
{
    struct Chunks<T>(std::collections::VecDeque<T>);
    impl<T: Unpin + Into<Result<Frame<Bytes>, std::convert::Infallible>>> hyper::body::Body for Chunks<T> {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.pop_front().map(Into::into))
        }
    }
    Chunks(items.into())
}

#[tokio::test]
async fn private_routes_answer_trusted_networks_only() {
    let up = upstream("p").await;
    let b = backend("e1", "admin", vec![up], IngressSettings::default());
    let private = Route { visibility: Visibility::Private, ..route("p.test", "/admin", &b) };
    let routes = vec![route("p.test", "/", &b), private];
    let untrusting = RouterConfig { trusted: vec!["10.0.0.0/8".parse().unwrap()], ..RouterConfig::default() };
    let r = start(untrusting, routes.clone(), None).await;
    assert_eq!(send(r.addr, get("p.test", "/admin/x")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(r.addr, get("p.test", "/%61dmin")).await.0, StatusCode::FORBIDDEN, "escapes do not get around a rule");
    assert_eq!(send(r.addr, get("p.test", "/public")).await.0, StatusCode::OK);
    let r = start(RouterConfig::default(), routes, None).await;
    assert_eq!(send(r.addr, get("p.test", "/admin/x")).await.0, StatusCode::OK, "loopback is trusted by default");
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let up = upstream("ws").await;
    let b = backend("e1", "ws", vec![up], IngressSettings::default());
    let r = start(RouterConfig::default(), vec![route("ws.test", "/", &b)], None).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket") && head.contains("sec-websocket-accept"), "{head}");
    // A masked text frame "hello", echoed byte for byte.
    let frame = [0x81, 0x85, 1, 2, 3, 4, b'h' ^ 1, b'e' ^ 2, b'l' ^ 3, b'l' ^ 4, b'o' ^ 1];
    for _ in 0..3 {
        s.write_all(&frame).await.unwrap();
        let mut back = [0u8; 11];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await.unwrap().unwrap();
        assert_eq!(back, frame);
    }
}

#[tokio::test]
async fn http2_cleartext_and_over_tls_with_a_reloaded_certificate() {
    let up = upstream("two").await;
    let b = backend("e1", "two", vec![up], IngressSettings::default());
    let dir = std::env::temp_dir().join(format!("offshoot-router-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let write_cert = |cn: &str| {
        let mut params = rcgen::CertificateParams::new(vec!["*.env.test".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    };
    let first = write_cert("first");
    let tls = Tls::load(&cert_path, &key_path).unwrap();
    let plain = start(RouterConfig::default(), vec![route("two.test", "/", &b)], None).await;
    let secure = start(RouterConfig::default(), vec![route("two.env.test", "/", &b)], Some(tls.clone())).await;

    // h2c with prior knowledge.
    let s = TcpStream::connect(plain.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(Request::builder().uri("http://two.test/").body(full("")).unwrap()).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(&resp.into_body().collect().await.unwrap().to_bytes()[..], b"two");

    // HTTP/2 over TLS, negotiated by ALPN; the certificate presented is the one on disk.
    let (version, body, presented) = tls_get(secure.addr, &first).await;
    assert_eq!((version, &body[..]), (hyper::Version::HTTP_2, &b"two"[..]));
    assert_eq!(presented, first);

    // A new certificate on disk is served without a restart.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_cert("second");
    assert!(tls.reload_if_changed().unwrap());
    let (_, _, presented) = tls_get(secure.addr, &second).await;
    assert_eq!(presented, second);
    // A broken pair is refused and the current one stays.
    std::fs::write(&key_path, "not a key").unwrap();
    assert!(tls.reload_if_changed().is_err());
    assert_eq!(tls_get(secure.addr, &second).await.2, second);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn tls_get(addr: SocketAddr, trust: &[u8]) -> (hyper::Version, Bytes, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(trust.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let s = TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(rustls_pki_types::ServerName::try_from("two.env.test").unwrap(), s).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(Request::builder().uri("https://two.env.test/").body(full("")).unwrap()).await.unwrap();
    let v = resp.version();
    (v, resp.into_body().collect().await.unwrap().to_bytes(), presented)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_table_under_load_fails_no_request() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let make = |i: usize| {
        let (ba, bb) = (backend("e1", "a", vec![a], IngressSettings::default()), backend("e1", "b", vec![b], IngressSettings::default()));
        // Every table routes the host; the extra hosts change each time.
        let mut routes = vec![route("load.test", "/", if i.is_multiple_of(2) { &ba } else { &bb })];
        routes.extend((0..200).map(|j| route(&format!("h{i}-{j}.test"), "/", &ba)));
        Table::build(routes).0
    };
    let r = start(RouterConfig::default(), vec![], None).await;
    r.router.swap(make(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), r.addr);
        clients.push(tokio::spawn(async move {
            // Keep-alive connections, like a browser.
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let resp = tx.send_request(get("load.test", "/")).await;
                match resp {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let body = r.into_body().collect().await.unwrap().to_bytes();
                        assert!(&body[..] == b"a" || &body[..] == b"b");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for i in 1..=300 {
        r.router.swap(make(i));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 300, "{}", ok.load(Ordering::Relaxed));
}

#[tokio::test]
async fn replicas_take_turns_and_a_dead_one_is_skipped_for_retryable_requests() {
    let (a, b) = (upstream("one").await, upstream("two").await);
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let backend = backend("e1", "svc", vec![a, dead, b], IngressSettings::default());
    let r = start(RouterConfig::default(), vec![route("rr.test", "/", &backend)], None).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (st, _, body) = send(r.addr, get("rr.test", "/")).await;
        assert_eq!(st, StatusCode::OK);
        seen.push(String::from_utf8_lossy(&body).into_owned());
    }
    assert!(seen.iter().any(|s| s == "one") && seen.iter().any(|s| s == "two"), "{seen:?}");
}

#[tokio::test]
async fn buffering_reads_ahead_through_a_temporary_file_and_keeps_the_bytes_in_order() {
    let up = upstream("big").await;
    let settings = IngressSettings { buffering: true, buffer_size: 4096, buffers_number: 2, ..IngressSettings::default() };
    let b = backend("e1", "big", vec![up], settings);
    let cfg = RouterConfig {
        temp_dir: std::env::temp_dir().join(format!("offshoot-router-buf-{}", std::process::id())),
        ..RouterConfig::default()
    };
    let r = start(cfg, vec![route("big.test", "/", &b)], None).await;
    // A slow reader with a small receive buffer: the router must hold much of the 8 MiB.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(r.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(get("big.test", "/huge")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 8 << 20);
    assert!(body.iter().all(|&c| c == b'x'));
    let metrics = r.router.metrics_text();
    let spilled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("offshoot_router_buffer_file_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(spilled > 512 * 1024, "most of the body went through the file: {spilled}");
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let up = upstream("h").await;
    let b = backend("e1", "h", vec![up], IngressSettings::default());
    let cfg = RouterConfig { max_header_bytes: 8192, ..RouterConfig::default() };
    let r = start(cfg, vec![route("h.test", "/", &b)], None).await;
    let req = Request::builder().uri("/").header("host", "h.test").header("x-big", "y".repeat(20_000)).body(full("")).unwrap();
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn shutdown_drains_requests_in_flight() {
    let up = upstream("d").await;
    let b = backend("e1", "d", vec![up], IngressSettings::default());
    let r = start(RouterConfig::default(), vec![route("d.test", "/", &b)], None).await;
    let addr = r.addr;
    let slow = tokio::spawn(async move { send(addr, get("d.test", "/slow")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.stop.send(true).unwrap();
    let (st, _, body) = slow.await.unwrap();
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"slow"[..]));
    tokio::time::timeout(Duration::from_secs(5), r.done).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn load_balancer_ports_pass_tcp_through() {
    let echo_addr = echo_server().await;
    let proxies = TcpProxies::default();
    let key = ("e1".to_owned(), "db".to_owned(), 5432);
    let open = proxies.sync(vec![TcpRoute { key: key.clone(), preferred: None, upstreams: vec![echo_addr], asleep: false }]).await;
    let local = open[&key];
    assert!(local.ip().is_loopback());
    let mut s = TcpStream::connect(local).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // Closed when no longer wanted.
    assert!(proxies.sync(vec![]).await.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(local).await.is_err());
}

#[tokio::test]
async fn a_stalled_upload_gets_504_after_the_send_timeout() {
    let up = upstream("u").await;
    let settings = IngressSettings { send_timeout: Duration::from_millis(500), ..IngressSettings::default() };
    let b = backend("e1", "u", vec![up], settings);
    let r = start(RouterConfig::default(), vec![route("u.test", "/", &b)], None).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    // 100 bytes announced, 10 sent, then nothing.
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: u.test\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let t = Instant::now();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(&head, b"HTTP/1.1 504");
    assert!(t.elapsed() >= Duration::from_millis(400) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn slow_heads_idle_connections_and_the_connection_budget_are_bounded() {
    let up = upstream("p").await;
    let b = backend("e1", "p", vec![up], IngressSettings::default());
    let cfg = RouterConfig {
        header_read_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(600),
        max_connections: 1,
        ..RouterConfig::default()
    };
    let r = start(cfg, vec![route("p.test", "/", &b)], None).await;
    let closed_within = |mut s: TcpStream, limit: Duration| async move {
        let mut buf = [0u8; 256];
        let t = Instant::now();
        loop {
            match tokio::time::timeout(limit, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("still open after {limit:?}"),
            }
        }
    };
    // A head that never ends is cut after the header timeout.
    let mut slow = TcpStream::connect(r.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: p.test\r\nX-Slow: ").await.unwrap();
    let took = closed_within(slow, Duration::from_secs(3)).await;
    assert!(took >= Duration::from_millis(300), "{took:?}");

    // One connection at a time: a second waits until the first is gone.
    let mut first = TcpStream::connect(r.addr).await.unwrap();
    first.write_all(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut second = TcpStream::connect(r.addr).await.unwrap();
    second.write_all(b"GET / HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(200), second.read(&mut buf)).await.is_err(), "served beyond the budget");
    // The idle first connection is closed after the idle timeout (the header timeout, shorter,
    // bounds an idle HTTP/1 keep-alive wait too); then the second is served.
    let took = closed_within(first, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    let n = tokio::time::timeout(Duration::from_secs(3), second.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
}

#[tokio::test]
async fn a_trusted_client_s_forwarding_headers_are_extended() {
    let up = upstream("h").await;
    let b = backend("e1", "web", vec![up], IngressSettings::default());
    let r = start(RouterConfig::default(), vec![route("h.test", "/", &b)], None).await;
    let req = Request::builder()
        .uri("/headers")
        .header("host", "h.test")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .body(full(""))
        .unwrap();
    let (_, _, body) = send(r.addr, req).await;
    let seen = String::from_utf8_lossy(&body).to_lowercase();
    assert!(seen.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    assert!(seen.contains("forwarded: for=203.0.113.7;proto=https, for=127.0.0.1;host=h.test;proto=http\n"), "{seen}");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let up = upstream("i").await;
    let b = backend("e1", "i", vec![up], IngressSettings::default());
    let cfg = RouterConfig { idle_timeout: Duration::from_millis(500), ..RouterConfig::default() };
    let r = start(cfg, vec![route("i.test", "/", &b)], None).await;
    let s = TcpStream::connect(r.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    let conn = tokio::spawn(conn);
    let resp = tx.send_request(Request::builder().uri("http://i.test/").body(full("")).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), conn).await.expect("closed by the router").unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
}

/// A waker that counts its asks and, on the first, wakes the environment after `after`: swaps
/// in a table where the route's backend is awake.
struct SlowWaker {
    asks: AtomicUsize,
    after: Duration,
    awake: Vec<Route>,
    router: std::sync::OnceLock<std::sync::Weak<Router>>,
}

impl offshoot_router::Waker for SlowWaker {
    fn wake(&self, _env_id: &str) {
        if self.asks.fetch_add(1, Ordering::SeqCst) > 0 {
            return;
        }
        let (router, after, awake) = (self.router.get().cloned(), self.after, self.awake.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(r) = router.and_then(|w| w.upgrade()) {
                r.swap(Table::build(awake).0);
            }
        });
    }
}

async fn sleeping(config: RouterConfig, wake_after: Duration) -> (Running, Arc<SlowWaker>) {
    let up = upstream("awake").await;
    let asleep = Arc::new(Backend::new("sleepy", "web", vec![], Arc::new(IngressSettings::default())).asleep());
    let awake = backend("sleepy", "web", vec![up], IngressSettings::default());
    let r = start(config, vec![route("web.test", "/", &asleep)], None).await;
    let waker = Arc::new(SlowWaker {
        asks: AtomicUsize::new(0),
        after: wake_after,
        awake: vec![route("web.test", "/", &awake)],
        router: std::sync::OnceLock::new(),
    });
    let _ = waker.router.set(Arc::downgrade(&r.router));
    r.router.set_waker(waker.clone());
    (r, waker)
}

#[tokio::test]
async fn requests_for_a_sleeping_environment_are_held_until_it_wakes_and_wake_it_once() {
    let (r, waker) = sleeping(RouterConfig::default(), Duration::from_millis(300)).await;
    let started = Instant::now();
    let held: Vec<_> = (0..50).map(|_| tokio::spawn(send(r.addr, get("web.test", "/")))).collect();
    for h in held {
        let (status, _, body) = h.await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"awake"[..]));
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "answered only once awake");
    assert!(waker.asks.load(Ordering::SeqCst) >= 1);
    // Every held request asked; the waker woke once (its own count is the caller's business),
    // and the requests count as the environment's activity.
    let seen = r.router.last_requests();
    assert!(seen.iter().any(|(env, at)| env == "sleepy" && *at > 0), "{seen:?}");
    let _ = r.stop.send(true);
    let _ = r.done.await;
}

#[tokio::test]
async fn a_wake_too_slow_gets_503_with_retry_after_and_a_browser_a_page_that_reloads() {
    let config = RouterConfig { wake_timeout: Duration::from_millis(400), ..RouterConfig::default() };
    let (r, _waker) = sleeping(config, Duration::from_secs(30)).await;
    let (status, headers, body) = send(r.addr, get("web.test", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("2"));
    assert!(String::from_utf8_lossy(&body).contains("is waking up and was not ready within 0.4 s"), "{body:?}");
    let browser = Request::builder().uri("/").header("host", "web.test").header("accept", "text/html,*/*").body(full("")).unwrap();
    let started = Instant::now();
    let (status, headers, body) = send(r.addr, browser).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("refresh").map(|v| v.to_str().unwrap()), Some("2"), "the page reloads itself");
    assert!(String::from_utf8_lossy(&body).contains("Environment `sleepy` is waking up."), "{body:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "a browser is not held past the shorter of its two limits");
    let _ = r.stop.send(true);
    let _ = r.done.await;
}

/// A waker for load-balancer ports: counts its asks and, on the first, after `after`, syncs
/// the ports with the environment awake.
struct TcpWaker {
    asks: AtomicUsize,
    after: Duration,
    awake: Vec<TcpRoute>,
    proxies: std::sync::OnceLock<std::sync::Weak<TcpProxies>>,
}

impl offshoot_router::Waker for TcpWaker {
    fn wake(&self, _env_id: &str) {
        if self.asks.fetch_add(1, Ordering::SeqCst) > 0 {
            return;
        }
        let (proxies, after, awake) = (self.proxies.get().cloned(), self.after, self.awake.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(p) = proxies.and_then(|w| w.upgrade()) {
                p.sync(awake).await;
            }
        });
    }
}

async fn echo_server() -> SocketAddr {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_load_balancer_connection_wakes_a_sleeping_environment_and_counts_as_activity() {
    let echo = echo_server().await;
    let key = ("sleepy".to_owned(), "db".to_owned(), 5432);
    let asleep = TcpRoute { key: key.clone(), preferred: None, upstreams: vec![], asleep: true };
    let awake = TcpRoute { upstreams: vec![echo], asleep: false, ..asleep.clone() };
    let proxies = Arc::new(TcpProxies::new(Duration::from_secs(10)));
    let waker = Arc::new(TcpWaker {
        asks: AtomicUsize::new(0),
        after: Duration::from_millis(300),
        awake: vec![awake],
        proxies: std::sync::OnceLock::new(),
    });
    let _ = waker.proxies.set(Arc::downgrade(&proxies));
    proxies.set_waker(waker.clone());
    assert!(proxies.last_connections().is_empty(), "no connection yet");
    let local = proxies.sync(vec![asleep]).await[&key];

    // Ten clients at once: each is held until the environment wakes, then passed through.
    let started = Instant::now();
    let clients: Vec<_> = (0..10u8)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(local).await.unwrap();
                s.write_all(&[b'a' + i; 4]).await.unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [b'a' + i; 4]);
                s
            })
        })
        .collect();
    let mut open = Vec::new();
    for c in clients {
        open.push(c.await.unwrap());
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "passed on only once awake");
    assert!(waker.asks.load(Ordering::SeqCst) >= 1, "the connections asked for a wake");
    // An open connection is activity now, however long ago it was opened.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = |p: &TcpProxies| p.last_connections().into_iter().find(|(e, _)| e == "sleepy").map(|(_, at)| at).unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(at(&proxies) >= before - 50, "open connections count as activity now");
    // Closed: the time of the last close, which no longer moves.
    drop(open);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = at(&proxies);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(at(&proxies), closed);
    // The port gone, so is its environment's activity.
    proxies.sync(vec![]).await;
    assert!(proxies.last_connections().is_empty());
}

#[tokio::test]
async fn a_load_balancer_connection_to_an_environment_that_does_not_wake_is_closed_after_the_timeout() {
    let key = ("sleepy".to_owned(), "db".to_owned(), 5432);
    let proxies = TcpProxies::new(Duration::from_millis(400));
    let local = proxies.sync(vec![TcpRoute { key: key.clone(), preferred: None, upstreams: vec![], asleep: true }]).await[&key];
    let mut s = TcpStream::connect(local).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed by the port").unwrap_or(0);
    assert_eq!(n, 0, "closed without data");
    assert!(started.elapsed() >= Duration::from_millis(350), "{:?}", started.elapsed());
}

/// A waker that cannot wake: it says so to the router and the load-balancer ports, later.
struct RefusingWaker {
    router: std::sync::OnceLock<std::sync::Weak<Router>>,
    proxies: std::sync::OnceLock<std::sync::Weak<TcpProxies>>,
}

impl offshoot_router::Waker for RefusingWaker {
    fn wake(&self, env_id: &str) {
        let (router, proxies, env) = (self.router.get().cloned(), self.proxies.get().cloned(), env_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(r) = router.and_then(|w| w.upgrade()) {
                r.wake_failed(&env, "capacity: 3 of 3 environments run and none is idle");
            }
            if let Some(p) = proxies.and_then(|w| w.upgrade()) {
                p.wake_failed(&env);
            }
        });
    }
}

#[tokio::test]
async fn a_wake_that_fails_answers_the_held_requests_and_connections_with_why_at_once() {
    let asleep = Arc::new(Backend::new("sleepy", "web", vec![], Arc::new(IngressSettings::default())).asleep());
    let r = start(RouterConfig::default(), vec![route("web.test", "/", &asleep)], None).await;
    let proxies = Arc::new(TcpProxies::new(Duration::from_secs(60)));
    let waker = Arc::new(RefusingWaker { router: std::sync::OnceLock::new(), proxies: std::sync::OnceLock::new() });
    let _ = waker.router.set(Arc::downgrade(&r.router));
    let _ = waker.proxies.set(Arc::downgrade(&proxies));
    r.router.set_waker(waker.clone());
    proxies.set_waker(waker);
    let key = ("sleepy".to_owned(), "db".to_owned(), 5432);
    let local = proxies.sync(vec![TcpRoute { key: key.clone(), preferred: None, upstreams: vec![], asleep: true }]).await[&key];

    let started = Instant::now();
    let (status, headers, body) = send(r.addr, get("web.test", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("30"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Environment `sleepy` is asleep and could not wake: capacity: 3 of 3 environments run"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "not held until the wake timeout: {:?}", started.elapsed());

    let mut s = TcpStream::connect(local).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed at once").unwrap_or(0);
    assert_eq!(n, 0);
    // A failure before a request was made does not answer it: it asks for a new wake.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = Instant::now();
    let (status, _, body) = send(r.addr, get("web.test", "/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("could not wake"), "{body:?}");
    let waited = again.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(5), "answered by the new wake's failure: {waited:?}");
    let _ = r.stop.send(true);
    let _ = r.done.await;
}
