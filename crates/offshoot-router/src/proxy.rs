//! The reverse proxy: one request in, one request to a replica out, bodies streamed both ways.

use crate::body::{Progress, ProxyBody, RequestBody, ResponseBody};
use crate::metrics::{EnvLabels, ErrorLabels, Metrics, RequestLabels, code_class};
use crate::table::{Backend, Table, Visibility, normalize_host, normalize_path};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
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

/// The router: a routing table swapped whole, a pool of upstream connections, metrics.
pub struct Router {
    table: ArcSwap<Table>,
    pub(crate) config: RouterConfig,
    client: Client<HttpConnector, RequestBody>,
    pub(crate) metrics: Metrics,
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
}

impl Router {
    pub fn new(config: RouterConfig) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.enforce_http(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90)).pool_max_idle_per_host(256).set_host(false);
        let client = builder.build(connector);
        let connections = crate::server::limiter(config.max_connections);
        Arc::new(Router { table: ArcSwap::from_pointee(Table::default()), config, client, metrics: Metrics::new(), connections })
    }

    /// Replaces the routing table. Requests already routed finish on the old one; no request
    /// sees a half-built table.
    pub fn swap(&self, table: Table) {
        self.table.store(Arc::new(table));
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

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr, scheme: Scheme) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let table = self.table.load();
        let (resp, env, service) = self.route(&table, req, peer, scheme).await;
        let status = resp.status().as_u16();
        let elapsed = started.elapsed();
        let (env, service) = (env.unwrap_or_else(|| Arc::from("-")), service.unwrap_or_else(|| Arc::from("-")));
        self.metrics.requests.get_or_create(&RequestLabels { env: env.clone(), service: service.clone(), code: code_class(status) }).inc();
        self.metrics.latency.get_or_create(&EnvLabels { env: env.clone() }).observe(elapsed.as_secs_f64());
        tracing::info!(target: "offshoot::access", %env, %service, %method, path = %truncate(&path, 200), status, ms = elapsed.as_secs_f64() * 1000.0, client = %peer.ip());
        resp
    }

    async fn route(
        &self,
        table: &Table,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        scheme: Scheme,
    ) -> (Response<ProxyBody>, Option<Arc<str>>, Option<Arc<str>>) {
        // The host: from the absolute-form target or `:authority`, else the Host header.
        let raw_host = match req.uri().authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned),
        };
        let Some(raw_host) = raw_host else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request names no host."), None, None);
        };
        let Some(host) = normalize_host(&raw_host) else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The Host header is not a valid hostname."), None, None);
        };
        let Some(path) = normalize_path(req.uri().path()) else {
            return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request path is not valid."), None, None);
        };
        let Some(m) = table.lookup(&host, &path) else {
            return (page(StatusCode::NOT_FOUND, "Not Found", "No environment answers for this address."), None, None);
        };
        let b: &Arc<Backend> = m.backend;
        let ids = (Some(b.env_id.clone()), Some(b.service.clone()));
        if m.visibility == Visibility::Private && !self.trusted(peer.ip()) {
            return (page(StatusCode::FORBIDDEN, "Forbidden", "This address is private to the environment's network."), ids.0, ids.1);
        }
        if let Some(state) = &b.unavailable {
            let text = format!("Service `{}` of environment `{}` is {state}. Try again in a moment.", b.service, b.env_id);
            return (page(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &text), ids.0, ids.1);
        }
        let settings = b.settings.clone();
        if let Some(limit) = settings.body_limit
            && req.body().size_hint().lower() > limit
        {
            return (too_large(limit), ids.0, ids.1);
        }

        // The request to send: same method, target and headers, minus hop-by-hop ones, plus
        // the forwarding headers.
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let mut headers = std::mem::take(&mut parts.headers);
        strip_hop_by_hop(&mut headers);
        if let Some(proto) = &upgrade {
            headers.insert(header::UPGRADE, proto.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        if !headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(&raw_host)
        {
            headers.insert(header::HOST, v);
        }
        self.forwarding_headers(&mut headers, peer, &raw_host, scheme);
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let bodiless = body.is_end_stream();
        let progress = Progress::new(bodiless);
        let mut body = Some(if bodiless {
            RequestBody::empty(progress.clone())
        } else {
            RequestBody::new(body, settings.body_limit, progress.clone())
        });

        // Replicas in turn: a replica that refuses the connection is skipped when the request
        // can be sent again (it has no body).
        let attempts = if bodiless { b.upstreams.len().max(1) } else { 1 };
        let mut last_error = String::new();
        for _ in 0..attempts {
            let Some(addr) = b.pick() else { break };
            let Ok(uri) = Uri::builder().scheme("http").authority(addr.to_string()).path_and_query(pq.as_str()).build() else {
                return (page(StatusCode::BAD_REQUEST, "Bad Request", "The request target is not valid."), ids.0, ids.1);
            };
            let mut out = Request::new(match body.take() {
                Some(b) => b,
                None => break,
            });
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = uri;
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = headers.clone();
            let sent = tokio::select! {
                r = self.client.request(out) => Ok(r),
                read = progress.expired(settings.send_timeout, settings.read_timeout) => Err(read),
            };
            let resp = match sent {
                Err(read_timeout) => {
                    let kind = if read_timeout { "read_timeout" } else { "send_timeout" };
                    self.upstream_error(b, kind);
                    let text = format!("Service `{}` of environment `{}` did not answer in time.", b.service, b.env_id);
                    return (page(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout", &text), ids.0, ids.1);
                }
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    if progress.too_large.load(std::sync::atomic::Ordering::Acquire) {
                        return (too_large(settings.body_limit.unwrap_or(0)), ids.0, ids.1);
                    }
                    let connect = e.is_connect();
                    self.upstream_error(b, if connect { "connect" } else { "reset" });
                    last_error = format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default());
                    tracing::warn!(env = %b.env_id, service = %b.service, upstream = %addr, error = %last_error, "upstream error");
                    if connect && bodiless {
                        body = Some(RequestBody::empty(progress.clone()));
                        continue;
                    }
                    break;
                }
            };
            return (self.respond(resp, b, client_upgrade, &settings), ids.0, ids.1);
        }
        let text = if last_error.is_empty() {
            format!("Service `{}` of environment `{}` has no ready replica.", b.service, b.env_id)
        } else {
            format!("Service `{}` of environment `{}` did not answer.", b.service, b.env_id)
        };
        (page(StatusCode::BAD_GATEWAY, "Bad Gateway", &text), ids.0, ids.1)
    }

    fn upstream_error(&self, b: &Backend, kind: &'static str) {
        self.metrics.upstream_errors.get_or_create(&ErrorLabels { env: b.env_id.clone(), service: b.service.clone(), kind }).inc();
    }

    fn forwarding_headers(&self, headers: &mut HeaderMap, peer: SocketAddr, host: &str, scheme: Scheme) {
        let ip = peer.ip();
        // Headers a trusted proxy in front of us set are extended; anyone else's are replaced.
        let keep = self.trusted(ip);
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).filter(|_| keep) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip.to_string(),
        };
        set(headers, "x-forwarded-for", &xff);
        if !(keep && headers.contains_key("x-forwarded-proto")) {
            headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme.as_str()));
        }
        if !(keep && headers.contains_key("x-forwarded-host")) {
            set(headers, "x-forwarded-host", host);
        }
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let quoted_host = if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            host.to_owned()
        } else {
            format!("\"{}\"", host.replace(['"', '\\'], ""))
        };
        let element = format!("for={node};host={quoted_host};proto={}", scheme.as_str());
        let forwarded = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()).filter(|_| keep) {
            Some(prev) => format!("{prev}, {element}"),
            None => element,
        };
        set(headers, header::FORWARDED.as_str(), &forwarded);
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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for h in named.iter().chain(HOP_BY_HOP.iter()) {
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
pub(crate) fn page(status: StatusCode, title: &str, text: &str) -> Response<ProxyBody> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {t}</title></head><body style=\"font-family:sans-serif;margin:3em\"><h1>{code} {t}</h1><p>{x}</p><p><small>Offshoot router</small></p></body></html>\n",
        code = status.as_u16(),
        t = esc(title),
        x = esc(text)
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
