//! Prometheus metrics of the router: requests by environment, service and status class,
//! latency to the response head by environment, upstream errors by kind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) env: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EnvLabels {
    pub(crate) env: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub(crate) env: Arc<str>,
    pub(crate) service: Arc<str>,
    pub(crate) kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// One backend's series, looked up once and then updated without a map lookup.
#[derive(Debug)]
pub(crate) struct Stats {
    by_class: [Counter; 5],
    latency: Histogram,
    /// When its environment last got a request (ms since the epoch), shared by its services.
    last_request: Arc<AtomicI64>,
}

impl Stats {
    pub(crate) fn record(&self, status: u16, elapsed: std::time::Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].inc();
        self.latency.observe(elapsed.as_secs_f64());
        self.last_request.fetch_max(now_ms(), Ordering::Relaxed);
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The kinds of upstream error counted.
pub(crate) const ERROR_KINDS: [&str; 5] = ["connect", "reset", "read_timeout", "send_timeout", "header_too_big"];

pub(crate) struct Metrics {
    registry: Registry,
    /// The `(environment, service)` pairs that have series.
    known: std::sync::Mutex<std::collections::HashSet<(Arc<str>, Arc<str>)>>,
    /// When each environment last got a request (0: not since the router started).
    last_requests: std::sync::Mutex<HashMap<Arc<str>, Arc<AtomicI64>>>,
    /// Requests no route matched.
    pub(crate) unrouted: Stats,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) latency: Family<EnvLabels, Histogram, fn() -> Histogram>,
    pub(crate) upstream_errors: Family<ErrorLabels, Counter>,
    pub(crate) connections: Gauge,
    pub(crate) spilled_bytes: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("offshoot_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EnvLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        let connections = Gauge::default();
        let spilled_bytes = Counter::default();
        registry.register("buffer_file_bytes", "Response bytes read ahead into temporary files (proxy_buffering)", spilled_bytes.clone());
        registry.register("requests", "Requests answered, by environment, service and status class", requests.clone());
        registry.register("request_duration_seconds", "Time to the response head, by environment", latency.clone());
        registry.register(
            "upstream_errors",
            "Upstream failures (connect, timeout, reset), by environment and service",
            upstream_errors.clone(),
        );
        registry.register("open_connections", "Client connections open now", connections.clone());
        let mut m = Metrics {
            registry,
            known: std::sync::Mutex::default(),
            last_requests: std::sync::Mutex::default(),
            unrouted: Stats { by_class: Default::default(), latency: latency_histogram(), last_request: Arc::default() },
            requests,
            latency,
            upstream_errors,
            connections,
            spilled_bytes,
        };
        m.unrouted = m.stats("-", "-");
        m
    }

    /// The series of one environment's service.
    pub(crate) fn stats(&self, env: &str, service: &str) -> Stats {
        let (env, service): (Arc<str>, Arc<str>) = (env.into(), service.into());
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((env.clone(), service.clone()));
        let by_class =
            CLASSES.map(|code| self.requests.get_or_create(&RequestLabels { env: env.clone(), service: service.clone(), code }).clone());
        let last_request =
            self.last_requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(env.clone()).or_default().clone();
        Stats { by_class, latency: self.latency.get_or_create(&EnvLabels { env }).clone(), last_request }
    }

    /// When each environment last got a request, for those that got one since the router
    /// started (ms since the epoch).
    pub(crate) fn last_requests(&self) -> Vec<(String, i64)> {
        let all = self.last_requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .filter(|(e, _)| &***e != "-")
            .map(|(e, at)| (e.to_string(), at.load(Ordering::Relaxed)))
            .filter(|(_, at)| *at > 0)
            .collect()
    }

    /// Drops the series of services no longer routed (ephemeral environments would otherwise
    /// grow the exposition without bound).
    pub(crate) fn retain(&self, live: &std::collections::HashSet<(&str, &str)>) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone: Vec<(Arc<str>, Arc<str>)> = known.iter().filter(|(e, s)| &**e != "-" && !live.contains(&(&**e, &**s))).cloned().collect();
        for (env, service) in gone {
            for code in CLASSES {
                self.requests.remove(&RequestLabels { env: env.clone(), service: service.clone(), code });
            }
            for kind in ERROR_KINDS {
                self.upstream_errors.remove(&ErrorLabels { env: env.clone(), service: service.clone(), kind });
            }
            known.remove(&(env.clone(), service));
            if !known.iter().any(|(e, _)| *e == env) && !live.iter().any(|(e, _)| *e == &*env) {
                self.last_requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&env);
                self.latency.remove(&EnvLabels { env });
            }
        }
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
