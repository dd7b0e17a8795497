//! The reverse proxy: one request in, one request to a replica out, bodies streamed both ways.

use crate::body::{Progress, ProxyBody, RequestBody, ResponseBody};
use crate::metrics::{ErrorLabels, Metrics};
use crate::table::{Backend, Table, Visibility, normalize_host, normalize_path};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Parts as UriParts, Scheme as UriScheme};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the router protects itself and whom it trusts.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Clients allowed on `private` routes, and whose `X-Forwarded-*` headers are kept.
    pub trusted: Vec<IpNet>,
    /// Longest time to receive a request head (also bounds an idle HTTP/1 keep-alive wait).
    pub header_read_timeout: Duration,
    /// Largest request head, in bytes (at least 8 KiB). Over it: 431.
    pub max_header_bytes: usize,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection with no bytes either way for this long is closed (gracefully).
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Where `proxy_buffering` spills responses.
    pub temp_dir: PathBuf,
    /// Longest wait to connect to a replica before trying the next.
    pub connect_timeout: Duration,
    /// Longest a request for a sleeping environment is held while it wakes; then 503 with
    /// `Retry-After`.
    pub wake_timeout: Duration,
    /// How long a browser (`Accept: text/html`) is held before it gets a page that says the
    /// environment is waking and reloads itself.
    pub wake_page_after: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            trusted: vec![
                IpNet::from(IpAddr::from([127, 0, 0, 1])).supernet_or_self(8),
                IpNet::from(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
            ],
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(75),
            drain_timeout: Duration::from_secs(30),
            temp_dir: std::env::temp_dir().join("offshoot-router"),
            connect_timeout: Duration::from_secs(5),
            wake_timeout: Duration::from_secs(60),
            wake_page_after: Duration::from_secs(2),
        }
    }
}

trait SupernetOrSelf {
    fn supernet_or_self(self, prefix: u8) -> IpNet;
}

impl SupernetOrSelf for IpNet {
    fn supernet_or_self(self, prefix: u8) -> IpNet {
        IpNet::new(self.addr(), prefix).map(|n| n.trunc()).unwrap_or(self)
    }
}

/// The scheme a client used to reach the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A pool of keep-alive connections to upstreams (one per serving thread, so a request and its
/// upstream connection stay on one thread).
pub(crate) type Upstreams = Client<HttpConnector, RequestBody>;

/// Wakes sleeping environments: the router asks it for every request it holds (the waker
/// makes one wake of many asks) and waits for a table where the environment is awake.
pub trait Waker: Send + Sync {
    fn wake(&self, env_id: &str);
}

/// The router: a routing table swapped whole, metrics, the connection budget.
pub struct Router {
    table: ArcSwap<Table>,
    /// Counts the swaps: held requests wait for the next one.
    swaps: tokio::sync::watch::Sender<u64>,
    waker: std::sync::OnceLock<Arc<dyn Waker>>,
    /// Judges requests for team-only previews.
    gatekeeper: std::sync::OnceLock<Arc<dyn crate::Gatekeeper>>,
    /// Certificates served by name, ACME's HTTP-01 answers, and where HTTPS is.
    certs: Arc<crate::CertBook>,
    /// Wakes that failed lately, by environment: when, and why. Requests held since are
    /// answered with the reason rather than left to time out.
    refused: std::sync::Mutex<HashMap<String, (Instant, String)>>,
    pub(crate) config: RouterConfig,
    pub(crate) metrics: Metrics,
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
}

impl Router {
    pub fn new(config: RouterConfig) -> Arc<Self> {
        let connections = crate::server::limiter(config.max_connections);
        Arc::new(Router {
            table: ArcSwap::from_pointee(Table::default()),
            swaps: tokio::sync::watch::Sender::new(0),
            waker: std::sync::OnceLock::new(),
            gatekeeper: std::sync::OnceLock::new(),
            certs: Arc::default(),
            refused: std::sync::Mutex::default(),
            config,
            metrics: Metrics::new(),
            connections,
        })
    }

    /// Who wakes sleeping environments (set once; without one, their requests wait and time
    /// out).
    pub fn set_waker(&self, waker: Arc<dyn Waker>) {
        let _ = self.waker.set(waker);
    }

    /// The certificates served by name and the ACME answers (the same book for every listener).
    pub fn certs(&self) -> &Arc<crate::CertBook> {
        &self.certs
    }

    /// Every host the current table routes.
    pub fn hosts(&self) -> Vec<String> {
        self.table.load().hosts()
    }

    /// Whether the current table routes `host` (a sign-in may be sent back only there).
    pub fn serves(&self, host: &str) -> bool {
        crate::table::normalize_host(host).is_some_and(|h| self.table.load().has_host(&h))
    }

    /// Who judges requests for team-only previews (set once; without one they are refused).
    pub fn set_gatekeeper(&self, gatekeeper: Arc<dyn crate::Gatekeeper>) {
        let _ = self.gatekeeper.set(gatekeeper);
    }

    /// The waker could not wake `env_id`: the requests held for it get a 503 with `reason`
    /// now, not when their wait runs out. A later request asks for a new wake.
    pub fn wake_failed(&self, env_id: &str, reason: &str) {
        let now = Instant::now();
        let mut refused = self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refused.retain(|_, (at, _)| now.duration_since(*at) < self.config.wake_timeout);
        refused.insert(env_id.to_owned(), (now, reason.to_owned()));
        drop(refused);
        self.swaps.send_modify(|n| *n += 1);
    }

    /// Why a wake of `env_id` asked at `asked` or later failed, if one did.
    fn refused_since(&self, env_id: &str, asked: Instant) -> Option<String> {
        let refused = self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refused.get(env_id).filter(|(at, _)| *at >= asked).map(|(_, why)| why.clone())
    }

    /// How long a request for a sleeping environment waits for it to wake.
    pub fn wake_timeout(&self) -> Duration {
        self.config.wake_timeout
    }

    /// When each environment last got a request through this router (ms since the epoch), for
    /// those that got one since it started. Probes reach replicas directly and never count.
    pub fn last_requests(&self) -> Vec<(String, i64)> {
        self.metrics.last_requests()
    }

    /// A new pool of upstream connections.
    pub(crate) fn upstreams(&self) -> Upstreams {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.config.connect_timeout));
        connector.enforce_http(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90)).pool_max_idle_per_host(256).set_host(false);
        builder.build(connector)
    }

    /// Replaces the routing table. Requests already routed finish on the old one; no request
    /// sees a half-built table.
    pub fn swap(&self, table: Table) {
        let live = table.services();
        self.metrics.retain(&live.iter().map(|(e, s)| (&**e, &**s)).collect());
        self.table.store(Arc::new(table));
        self.swaps.send_modify(|n| *n += 1);
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// The Prometheus text exposition of the router's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.config.trusted.iter().any(|n| n.contains(&ip))
    }

    /// What the proxy needs to know about a client connection, worked out once per connection.
    pub(crate) fn client(&self, addr: SocketAddr, scheme: Scheme, upstreams: Upstreams) -> ClientInfo {
        let ip = addr.ip();
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        ClientInfo {
            addr,
            scheme,
            trusted: self.trusted(ip),
            upstreams,
            ip: HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            node,
        }
    }

    /// Answers one request.
    pub(crate) async fn handle(&self, req: Request<Incoming>, client: &ClientInfo) -> Response<ProxyBody> {
        let started = Instant::now();
        let log = tracing::enabled!(target: "offshoot::access", tracing::Level::INFO);
        let line = log.then(|| (req.method().clone(), truncate(req.uri().path(), 200).to_owned()));
        let table = self.table.load();
        let (resp, backend) = self.route(&table, req, client).await;
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        let stats = backend.as_ref().map_or(&self.metrics.unrouted, |b| b.stats.get_or_init(|| self.metrics.stats(&b.env_id, &b.service)));
        stats.record(status, elapsed);
        if let Some((method, path)) = line {
            let (env, service) = backend.as_ref().map_or(("-", "-"), |b| (&*b.env_id, &*b.service));
            tracing::info!(target: "offshoot::access", env, service, %method, path, status, ms = elapsed.as_secs_f64() * 1000.0, client = %client.addr.ip());
        }
        resp
    }

    async fn route(&self, table: &Table, mut req: Request<Incoming>, client: &ClientInfo) -> (Response<ProxyBody>, Option<Arc<Backend>>) {
        // The host: from the absolute-form target or `:authority`, else the Host header.
        let raw_host = match req.uri().authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned),
        };
        let Some(raw_host) = raw_host else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request names no host."), None);
        };
        let Some(host) = normalize_host(&raw_host) else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The Host header is not a valid hostname."), None);
        };
        // Owned: a team-only preview's gate may take the request apart.
        let Some(path) = normalize_path(req.uri().path()).map(std::borrow::Cow::into_owned) else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request path is not valid."), None);
        };
        // An ACME server checking a token the router publishes, over plain HTTP.
        if client.scheme == Scheme::Http
            && let Some(answer) = self.certs.answer(&path)
        {
            let mut r = Response::new(Full::new(Bytes::from(answer)).map_err(|never| match never {}).boxed_unsync());
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            return (r, None);
        }
        let Some(m) = table.lookup(&host, &path) else {
            return (page(StatusCode::NOT_FOUND, "Not Found", "No environment answers for this address."), None);
        };
        // A host with a certificate is served over HTTPS: plain HTTP is sent there.
        if client.scheme == Scheme::Http
            && let Some(port) = self.certs.https_port()
            && self.certs.covers(&host)
        {
            let port = if port == 443 { String::new() } else { format!(":{port}") };
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            let to = format!("https://{host}{port}{}{query}", req.uri().path());
            let mut r = page(StatusCode::PERMANENT_REDIRECT, "Permanent Redirect", "This address is served over HTTPS.");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return (r, Some(m.backend.clone()));
        }
        let mut b: Arc<Backend> = m.backend.clone();
        if m.visibility == Visibility::Private && !client.trusted {
            return (page(StatusCode::FORBIDDEN, "Forbidden", "This address is private to the environment's network."), Some(b));
        }
        // A team-only preview: judged before anything wakes or answers.
        if let Some(app) = b.team_only.clone() {
            let html = accepts_html(req.headers());
            let (mut parts, body) = req.into_parts();
            let tls = client.scheme == Scheme::Https;
            match crate::access::decide(self.gatekeeper.get().map(|g| g.as_ref()), (&app, &host), &mut parts, html, tls) {
                crate::access::Decision::Pass => req = Request::from_parts(parts, body),
                crate::access::Decision::Answer(r) => return (r, Some(b)),
            }
        }
        if b.asleep {
            let html = accepts_html(req.headers());
            match self.hold(&host, &path, html, &b).await {
                Ok(awake) => b = awake,
                Err(resp) => return (resp, Some(b)),
            }
        }
        if let Some(state) = &b.unavailable {
            let text = format!("Service `{}` of environment `{}` is {state}. Try again in a moment.", b.service, b.env_id);
            return (page(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &text), Some(b));
        }
        if let Some(content) = &b.content {
            return (content.serve(req.method(), req.uri().path(), req.headers()).await, Some(b));
        }
        let settings = &b.settings;
        if let Some(limit) = settings.body_limit
            && req.body().size_hint().lower() > limit
        {
            return (too_large(limit), Some(b));
        }

        // The request to send: same method, target and headers, minus hop-by-hop ones, plus
        // the forwarding headers.
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        parts.extensions.clear();
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        if let Some(proto) = upgrade {
            parts.headers.insert(header::UPGRADE, proto);
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        // The upstream sees the host the request was routed by: an absolute-form target or
        // `:authority` wins over a `Host` header, as for routing.
        if (parts.uri.authority().is_some() || !parts.headers.contains_key(header::HOST))
            && let Ok(v) = HeaderValue::from_str(&raw_host)
        {
            parts.headers.insert(header::HOST, v);
        }
        forwarding_headers(&mut parts.headers, client, &raw_host);
        let pq = parts.uri.path_and_query().cloned();
        let bodiless = body.is_end_stream();
        let progress = Progress::new(bodiless);
        let mut next_body = Some(if bodiless {
            RequestBody::empty(progress.clone())
        } else {
            RequestBody::new(body, settings.body_limit, progress.clone())
        });

        // Replicas in turn: a replica that refuses the connection is skipped when the request
        // can be sent again (it has no body).
        let attempts = if bodiless { b.upstreams.len().max(1) } else { 1 };
        let mut parts = Some(parts);
        let mut last_error = String::new();
        for attempt in 0..attempts {
            let Some(i) = b.pick() else { break };
            let (Some(body), Some(mut head)) = (next_body.take(), parts.take()) else { break };
            if attempt + 1 < attempts {
                parts = Some(copy_head(&head));
            }
            let mut uri = UriParts::default();
            uri.scheme = Some(UriScheme::HTTP);
            uri.authority = Some(b.authorities[i].clone());
            uri.path_and_query = pq.clone();
            let Ok(uri) = Uri::from_parts(uri) else {
                return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request target is not valid."), Some(b));
            };
            head.uri = uri;
            let out = Request::from_parts(head, body);
            let sent = tokio::select! {
                r = client.upstreams.request(out) => Ok(r),
                read = progress.expired(settings.send_timeout, settings.read_timeout) => Err(read),
            };
            let resp = match sent {
                Err(read_timeout) => {
                    let kind = if read_timeout { "read_timeout" } else { "send_timeout" };
                    self.upstream_error(&b, kind);
                    let text = format!("Service `{}` of environment `{}` did not answer in time.", b.service, b.env_id);
                    return (page(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout", &text), Some(b));
                }
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    if progress.too_large.load(std::sync::atomic::Ordering::Acquire) {
                        return (too_large(settings.body_limit.unwrap_or(0)), Some(b));
                    }
                    let connect = e.is_connect();
                    self.upstream_error(&b, if connect { "connect" } else { "reset" });
                    last_error = format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default());
                    tracing::warn!(env = %b.env_id, service = %b.service, upstream = %b.upstreams[i], error = %last_error, "upstream error");
                    if connect && bodiless {
                        next_body = Some(RequestBody::empty(progress.clone()));
                        continue;
                    }
                    break;
                }
            };
            let resp = self.respond(resp, &b, client_upgrade, settings);
            return (resp, Some(b));
        }
        let text = if last_error.is_empty() {
            format!("Service `{}` of environment `{}` has no ready replica.", b.service, b.env_id)
        } else {
            format!("Service `{}` of environment `{}` did not answer.", b.service, b.env_id)
        };
        (page(StatusCode::BAD_GATEWAY, "Bad Gateway", &text), Some(b))
    }

    /// Holds a request for a sleeping environment: asks the waker to wake it, then waits for a
    /// table where the route's backend is awake, at most `wake_timeout` (a browser:
    /// `wake_page_after`, then a page that reloads itself).
    async fn hold(&self, host: &str, path: &str, html: bool, asleep: &Backend) -> Result<Arc<Backend>, Response<ProxyBody>> {
        // Subscribed before looking: a swap between the look and the wait is not missed.
        let mut swaps = self.swaps.subscribe();
        let asked = Instant::now();
        if let Some(w) = self.waker.get() {
            w.wake(&asleep.env_id);
        }
        let limit = if html { self.config.wake_page_after.min(self.config.wake_timeout) } else { self.config.wake_timeout };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.table.load().lookup(host, path) {
                Some(m) if !m.backend.asleep => return Ok(m.backend.clone()),
                Some(_) => {
                    if let Some(why) = self.refused_since(&asleep.env_id, asked) {
                        let text = format!("Environment `{}` is asleep and could not wake: {why}", asleep.env_id);
                        let mut r = page(StatusCode::SERVICE_UNAVAILABLE, "Asleep", &text);
                        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                        return Err(r);
                    }
                }
                None => return Err(page(StatusCode::NOT_FOUND, "Not Found", "No environment answers for this address.")),
            }
            match tokio::time::timeout_at(deadline, swaps.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(waking(asleep, html, limit)),
            }
        }
    }

    fn upstream_error(&self, b: &Backend, kind: &'static str) {
        self.metrics.upstream_errors.get_or_create(&ErrorLabels { env: b.env_id.clone(), service: b.service.clone(), kind }).inc();
    }

    fn respond(
        &self,
        resp: Response<Incoming>,
        b: &Backend,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        settings: &crate::ingress::IngressSettings,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = resp.into_parts();
        let head_bytes: usize = parts.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        if head_bytes > settings.buffer_size.max(1024) {
            self.upstream_error(b, "header_too_big");
            let text = format!(
                "Service `{}` of environment `{}` sent response headers larger than `proxy_buffer_size` ({} bytes).",
                b.service, b.env_id, settings.buffer_size
            );
            return page(StatusCode::BAD_GATEWAY, "Bad Gateway", &text);
        }
        if parts.status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade
        {
            let upgraded = parts.headers.get(header::UPGRADE).cloned();
            strip_hop_by_hop(&mut parts.headers);
            if let Some(p) = upgraded {
                parts.headers.insert(header::UPGRADE, p);
                parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            let upstream = hyper::upgrade::on(Response::from_parts(parts.clone(), body));
            let (env, service) = (b.env_id.clone(), b.service.clone());
            tokio::spawn(async move {
                match tokio::try_join!(client, upstream) {
                    Ok((c, u)) => {
                        let mut c = hyper_util::rt::TokioIo::new(c);
                        let mut u = hyper_util::rt::TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(%env, %service, error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(%env, %service, error = %e, "upgrade failed"),
                }
            });
            return Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed_unsync());
        }
        strip_hop_by_hop(&mut parts.headers);
        let body = ResponseBody::new(body, settings.read_timeout);
        let body = if settings.buffering {
            crate::body::buffered(
                body,
                settings.buffer_size.saturating_mul(settings.buffers_number.max(1)),
                settings.max_temp_file_size,
                &self.config.temp_dir,
                self.metrics.spilled_bytes.clone(),
            )
        } else {
            body.boxed_unsync()
        };
        Response::from_parts(parts, body)
    }
}

/// A request head for another attempt.
fn copy_head(h: &hyper::http::request::Parts) -> hyper::http::request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = h.method.clone();
    parts.uri = h.uri.clone();
    parts.version = h.version;
    parts.headers = h.headers.clone();
    parts
}

/// A client connection's address, scheme and standing.
#[derive(Clone, Debug)]
pub(crate) struct ClientInfo {
    pub(crate) addr: SocketAddr,
    pub(crate) scheme: Scheme,
    /// From a trusted network: may use private routes; its forwarding headers are extended.
    pub(crate) trusted: bool,
    upstreams: Upstreams,
    ip: HeaderValue,
    /// The `for=` value of `Forwarded`.
    node: String,
}

/// `X-Forwarded-For`, `-Proto`, `-Host` and `Forwarded`: a trusted client's are extended, anyone
/// else's replaced.
fn forwarding_headers(headers: &mut HeaderMap, client: &ClientInfo, host: &str) {
    let keep = client.trusted;
    match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).filter(|_| keep) {
        Some(prev) => set(headers, "x-forwarded-for", &format!("{prev}, {}", client.addr.ip())),
        None => {
            headers.insert(HeaderName::from_static("x-forwarded-for"), client.ip.clone());
        }
    }
    if !(keep && headers.contains_key("x-forwarded-proto")) {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(client.scheme.as_str()));
    }
    if !(keep && headers.contains_key("x-forwarded-host")) {
        set(headers, "x-forwarded-host", host);
    }
    let quoted_host = if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
        std::borrow::Cow::Borrowed(host)
    } else {
        std::borrow::Cow::Owned(format!("\"{}\"", host.replace(['"', '\\'], "")))
    };
    let element = format!("for={};host={quoted_host};proto={}", client.node, client.scheme.as_str());
    match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()).filter(|_| keep) {
        Some(prev) => set(headers, header::FORWARDED.as_str(), &format!("{prev}, {element}")),
        None => set(headers, header::FORWARDED.as_str(), &element),
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn set(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
        headers.insert(n, v);
    }
}

/// `Upgrade` of an HTTP/1.1 request that asks for one (`Connection: upgrade`).
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks { req.headers().get(header::UPGRADE).cloned() } else { None }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1): the fixed list and any header the
/// `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for h in &named {
            headers.remove(h);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
}

fn too_large(limit: u64) -> Response<ProxyBody> {
    let mut r = page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large",
        &format!("The request body is larger than this environment accepts ({limit} bytes; see `ingress.proxy_body_size`)."),
    );
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A small HTML page in the router's own words.
/// Whether a client asks for HTML first (a browser).
fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// The answer to a request held longer than it may be while its environment wakes: 503 with
/// `Retry-After`, and for a browser a page that reloads itself.
fn waking(b: &Backend, html: bool, waited: Duration) -> Response<ProxyBody> {
    let text = if html {
        format!("Environment `{}` is waking up. This page reloads by itself in a moment.", b.env_id)
    } else {
        let secs = if waited.subsec_millis() == 0 { waited.as_secs().to_string() } else { format!("{:.1}", waited.as_secs_f64()) };
        format!("Environment `{}` is waking up and was not ready within {secs} s. Try again in a moment.", b.env_id)
    };
    let mut r = page(StatusCode::SERVICE_UNAVAILABLE, "Waking Up", &text);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    if html {
        r.headers_mut().insert(header::REFRESH, HeaderValue::from_static("2"));
    }
    r
}

pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response<ProxyBody> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {t}</title></head><body style=\"font-family:sans-serif;margin:3em\"><h1>{code} {t}</h1><p>{x}</p><p><small>{sig}</small></p></body></html>\n",
        code = status.as_u16(),
        t = esc(title),
        x = esc(text),
        sig = crate::SIGNATURE
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
