//! The routing table: which backend answers a `(host, path)`. Pure: built from a list of
//! routes, then only read. Lookups are two hash probes at most (the exact host, then the
//! wildcard for its parent domain) and a scan of that host's few path rules, so their cost does
//! not depend on how many hostnames are routed.

use crate::ingress::IngressSettings;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Who may reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Anyone.
    Public,
    /// Anyone; Release's name for a route that skips its CDN. Same as public here.
    PublicDirect,
    /// Only clients from the trusted networks.
    Private,
}

impl Visibility {
    /// `public`, `public-direct` or `private`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "public-direct" => Some(Self::PublicDirect),
            "private" => Some(Self::Private),
            _ => None,
        }
    }
}

/// One service of one environment, as the router sees it.
#[derive(Debug)]
pub struct Backend {
    pub env_id: Arc<str>,
    pub service: Arc<str>,
    /// `None` when the service can take traffic; otherwise the state to show (`starting`,
    /// `failed`, ...).
    pub unavailable: Option<String>,
    /// The ready replicas' addresses; requests go round robin.
    pub upstreams: Vec<SocketAddr>,
    pub settings: Arc<IngressSettings>,
    /// Content the router answers with itself (a static site), instead of replicas.
    pub content: Option<Arc<dyn Content>>,
    /// The environment sleeps: a request wakes it (through the router's [`crate::Waker`]) and
    /// is held until a table where it is awake comes.
    pub asleep: bool,
    /// Its application, when its previews are for the team only (see [`crate::access`]).
    pub team_only: Option<Arc<str>>,
    /// `upstreams` as URI authorities, made once.
    pub(crate) authorities: Vec<hyper::http::uri::Authority>,
    /// This backend's metrics, looked up once.
    pub(crate) stats: std::sync::OnceLock<crate::metrics::Stats>,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(env_id: &str, service: &str, upstreams: Vec<SocketAddr>, settings: Arc<IngressSettings>) -> Self {
        let authorities = upstreams.iter().filter_map(|a| a.to_string().parse().ok()).collect();
        Backend {
            env_id: env_id.into(),
            service: service.into(),
            unavailable: None,
            upstreams,
            settings,
            content: None,
            asleep: false,
            team_only: None,
            authorities,
            stats: std::sync::OnceLock::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// A backend the router answers for itself (a static site).
    pub fn content(env_id: &str, service: &str, content: Arc<dyn Content>, settings: Arc<IngressSettings>) -> Self {
        let mut b = Backend::new(env_id, service, Vec::new(), settings);
        b.content = Some(content);
        b
    }

    /// A backend of a sleeping environment.
    pub fn asleep(mut self) -> Self {
        self.asleep = true;
        self
    }

    /// Only for the team of `app` (a signed-in dashboard user, or a bypass token).
    pub fn team_only(mut self, app: &str) -> Self {
        self.team_only = Some(app.into());
        self
    }

    pub fn unavailable(mut self, state: impl Into<String>) -> Self {
        self.unavailable = Some(state.into());
        self
    }

    /// The index of the next upstream, round robin; `None` when there is none.
    pub fn pick(&self) -> Option<usize> {
        match self.upstreams.len() {
            0 => None,
            1 => Some(0),
            n => Some(self.next.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

/// What answers a backend's requests in the router itself, such as a static site from storage.
pub trait Content: Send + Sync + std::fmt::Debug {
    /// The response to a request for `path` (percent-encoded, as sent).
    fn serve<'a>(
        &'a self,
        method: &'a hyper::Method,
        path: &'a str,
        headers: &'a hyper::HeaderMap,
    ) -> std::pin::Pin<Box<dyn Future<Output = hyper::Response<crate::ProxyBody>> + Send + 'a>>;
}

/// A route as configured: a host pattern (exact, or `*.` and a domain for one label of any
/// name), a path prefix, and where it goes.
#[derive(Clone, Debug)]
pub struct Route {
    pub host: String,
    pub path: String,
    pub visibility: Visibility,
    pub backend: Arc<Backend>,
}

/// A route the table could not take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("`{0}` is not a valid hostname pattern")]
    BadHost(String),
    #[error("`{0}` is not a valid path prefix (it must start with `/`)")]
    BadPath(String),
    #[error("`{host}{path}` is already routed to service `{service}` of environment `{env}`")]
    Taken { host: String, path: String, env: String, service: String },
}

#[derive(Clone, Debug)]
struct Entry {
    /// Normalized, without a trailing `/` (the root is empty).
    path: Box<str>,
    visibility: Visibility,
    backend: Arc<Backend>,
}

/// The result of a lookup.
#[derive(Clone, Copy, Debug)]
pub struct Match<'a> {
    pub backend: &'a Arc<Backend>,
    pub visibility: Visibility,
}

/// Hosts → path rules, longest prefix first.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<Box<str>, Vec<Entry>>,
    /// Keyed by the domain after `*.`.
    wildcard: HashMap<Box<str>, Vec<Entry>>,
    len: usize,
}

impl Table {
    /// Builds a table; routes that cannot be taken are returned with the reason (the first of
    /// two identical `(host, path)` routes wins).
    pub fn build(routes: impl IntoIterator<Item = Route>) -> (Table, Vec<(Route, RouteError)>) {
        let mut t = Table::default();
        let mut rejected = Vec::new();
        for r in routes {
            if let Err(e) = t.insert(&r) {
                rejected.push((r, e));
            }
        }
        for list in t.exact.values_mut().chain(t.wildcard.values_mut()) {
            // Stable: among equal prefixes the first declared stays first.
            list.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
        }
        (t, rejected)
    }

    fn insert(&mut self, r: &Route) -> Result<(), RouteError> {
        let (wild, host) = match r.host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, r.host.as_str()),
        };
        let host = normalize_host(host).filter(|h| !h.contains('*')).ok_or_else(|| RouteError::BadHost(r.host.clone()))?;
        if !r.path.starts_with('/') {
            return Err(RouteError::BadPath(r.path.clone()));
        }
        let path = normalize_path(&r.path).ok_or_else(|| RouteError::BadPath(r.path.clone()))?;
        let path = path.trim_end_matches('/');
        let map = if wild { &mut self.wildcard } else { &mut self.exact };
        let list = map.entry(host.into_owned().into_boxed_str()).or_default();
        if let Some(e) = list.iter().find(|e| &*e.path == path) {
            return Err(RouteError::Taken {
                host: r.host.clone(),
                path: r.path.clone(),
                env: e.backend.env_id.to_string(),
                service: e.backend.service.to_string(),
            });
        }
        list.push(Entry { path: path.into(), visibility: r.visibility, backend: r.backend.clone() });
        self.len += 1;
        Ok(())
    }

    /// Every `(environment, service)` the table routes to.
    pub fn services(&self) -> std::collections::HashSet<(Arc<str>, Arc<str>)> {
        self.exact.values().chain(self.wildcard.values()).flatten().map(|e| (e.backend.env_id.clone(), e.backend.service.clone())).collect()
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some route answers for a normalized host.
    /// Every host routed by name (wildcard routes as `*.domain`).
    pub fn hosts(&self) -> Vec<String> {
        self.exact.keys().map(|h| h.to_string()).chain(self.wildcard.keys().map(|d| format!("*.{d}"))).collect()
    }

    pub fn has_host(&self, host: &str) -> bool {
        self.exact.contains_key(host) || host.split_once('.').is_some_and(|(_, domain)| self.wildcard.contains_key(domain))
    }

    /// The route for a normalized host (see [`normalize_host`]) and a normalized path (see
    /// [`normalize_path`]). An exact host beats a wildcard; within a host the longest matching
    /// prefix wins, matching whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    pub fn lookup(&self, host: &str, path: &str) -> Option<Match<'_>> {
        let list = match self.exact.get(host) {
            Some(l) => l,
            None => self.wildcard.get(host.split_once('.')?.1)?,
        };
        list.iter().find(|e| prefix_matches(&e.path, path)).map(|e| Match { backend: &e.backend, visibility: e.visibility })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || (path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// The host part of a `Host` header or URI authority, lower-cased, without port or trailing
/// dot; `None` when it is not a plausible DNS name or IP address.
pub fn normalize_host(raw: &str) -> Option<Cow<'_, str>> {
    let h = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal, with or without a port.
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port))
            || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
            || inside.parse::<std::net::Ipv6Addr>().is_err()
        {
            return None;
        }
        return Some(Cow::Owned(format!("[{}]", inside.to_ascii_lowercase())));
    } else {
        match raw.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => raw,
        }
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    let mut lower = true;
    for b in h.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {}
            b'A'..=b'Z' => lower = false,
            _ => return None,
        }
    }
    if h.split('.').any(|label| label.is_empty() || label.len() > 63) {
        return None;
    }
    Some(if lower { Cow::Borrowed(h) } else { Cow::Owned(h.to_ascii_lowercase()) })
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The path a request's target names, as routing sees it: percent-escapes of printable ASCII
/// but `%` decoded, repeated `/` merged, `.` and `..` segments resolved, so that `/api/../admin`
/// and `/%61dmin` match the rules for `/admin`. `None` when the path climbs above the root,
/// holds a control byte or a malformed escape. Normalising a normal form gives it back.
/// (The upstream receives the target unchanged.)
pub fn normalize_path(raw: &str) -> Option<Cow<'_, str>> {
    let simple = raw.starts_with('/')
        && !raw.contains("//")
        && !raw.contains('%')
        && !raw.split('/').any(|s| s == "." || s == "..")
        && raw.bytes().all(|b| b > 0x20 && b != 0x7f);
    if simple {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            // A malformed escape is refused (as nginx does), and `%25` stays an escape: a `%`
            // decoded could start an escape of its own, so the normal form would not be one.
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if (0x21..0x7f).contains(&v) && v != b'%' {
                decoded.push(v);
            } else {
                decoded.extend_from_slice(&bytes[i..i + 3]);
            }
            i += 3;
            continue;
        }
        if b <= 0x20 || b == 0x7f {
            return None;
        }
        decoded.push(b);
        i += 1;
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut p = String::with_capacity(decoded.len() + 1);
    for s in &out {
        p.push('/');
        p.push_str(s);
    }
    if trailing || p.is_empty() {
        p.push('/');
    }
    Some(Cow::Owned(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new("e1", name, vec![], Arc::default()))
    }

    fn route(host: &str, path: &str, svc: &str) -> Route {
        Route { host: host.into(), path: path.into(), visibility: Visibility::Public, backend: backend(svc) }
    }

    fn svc<'a>(t: &'a Table, host: &str, path: &str) -> Option<&'a str> {
        t.lookup(host, path).map(|m| &*m.backend.service)
    }

    #[test]
    fn longest_prefix_then_exact_host_wins() {
        let (t, rejected) = Table::build([
            route("a.test", "/", "web"),
            route("a.test", "/api", "api"),
            route("a.test", "/api/v1/streaming/", "stream"),
            route("*.test", "/", "wild"),
            route("A.Test", "/api", "dup"),
        ]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(matches!(rejected[0].1, RouteError::Taken { .. }));
        assert_eq!(svc(&t, "a.test", "/"), Some("web"));
        assert_eq!(svc(&t, "a.test", "/apix"), Some("web"));
        assert_eq!(svc(&t, "a.test", "/api"), Some("api"));
        assert_eq!(svc(&t, "a.test", "/api/v1/x"), Some("api"));
        assert_eq!(svc(&t, "a.test", "/api/v1/streaming"), Some("stream"));
        assert_eq!(svc(&t, "a.test", "/api/v1/streaming/x"), Some("stream"));
        assert_eq!(svc(&t, "b.test", "/api"), Some("wild"));
        assert_eq!(svc(&t, "c.b.test", "/"), None, "a wildcard covers one label");
        assert_eq!(svc(&t, "test", "/"), None);
        assert_eq!(t.len(), 5 - 1);
    }

    #[test]
    fn an_exact_host_without_a_matching_path_does_not_fall_back_to_the_wildcard() {
        let (t, _) = Table::build([route("a.test", "/api", "api"), route("*.test", "/", "wild")]);
        assert_eq!(svc(&t, "a.test", "/other"), None);
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Web-E1.Example.COM:8080").as_deref(), Some("web-e1.example.com"));
        assert_eq!(normalize_host("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("[::1]"));
        // Found by fuzzing: any run of hex digits and colons passed for an IPv6 literal.
        for bad in ["", "a b", "a..b", "a:b", "[::1", "x/y", "a:123456", "ünï.test", "[0101:cccccccccccccccccccc]", "[1:2]"] {
            assert_eq!(normalize_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_are_normalized_for_matching() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("//admin//x", "/admin/x"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a%2Fb", "/a/b"),
            ("/%00", "/%00"),
            // Found by fuzzing: `%6` then `%61` once gave `/%6ai`, itself an escape.
            ("/%2561dmin", "/%2561dmin"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(normalize_path("/../etc"), None);
        assert_eq!(normalize_path("/a\tb"), None);
        for malformed in ["/%6%61i", "/%", "/a%zz", "/%+1"] {
            assert_eq!(normalize_path(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn round_robin_visits_every_upstream() {
        let addrs: Vec<SocketAddr> = (1..=3).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
        let b = Backend::new("e", "s", addrs.clone(), Arc::default());
        let picked: Vec<_> = (0..6).filter_map(|_| b.pick()).map(|i| b.upstreams[i]).collect();
        assert_eq!(picked, [addrs.clone(), addrs].concat());
    }
}
