//! The built-in HTTP router: sends a request to the ready service whose hostname matches its
//! `Host`, and answers 502/503 with a small page naming the environment and the service's state
//! when it cannot (404, revealing nothing, for unknown hosts). The table is rebuilt from the
//! store and swapped whole.

use crate::controller::Shared;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use offshoot_store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) env_id: String,
    pub(crate) service: String,
    pub(crate) status: String,
    pub(crate) port: Option<u16>,
}

#[derive(Default)]
pub(crate) struct Table(RwLock<Arc<HashMap<String, Route>>>);

impl Table {
    pub(crate) fn replace(&self, routes: HashMap<String, Route>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
    }
    fn get(&self, host: &str) -> Option<Route> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(host).cloned()
    }
}

/// Every hostname of every live environment.
pub(crate) async fn load(store: &Store) -> Result<HashMap<String, Route>, offshoot_store::StoreError> {
    let mut out = HashMap::new();
    for env in store.envs(None, false).await? {
        for s in store.services(&env.id).await? {
            let detail: serde_json::Value = serde_json::from_str(&s.detail).unwrap_or_default();
            let port = detail["upstream_port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let status = if env.status == "tearing_down" { env.status.clone() } else { s.status.clone() };
            for h in detail["hostnames"].as_array().into_iter().flatten().filter_map(|h| h.as_str()) {
                out.insert(h.to_ascii_lowercase(), Route { env_id: env.id.clone(), service: s.name.clone(), status: status.clone(), port });
            }
        }
    }
    Ok(out)
}

type Body = BoxBody<Bytes, hyper::Error>;

fn page(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {t}</title></head><body style=\"font-family:sans-serif;margin:3em\"><h1>{code} {t}</h1><p>{x}</p><p><small>Offshoot router</small></p></body></html>\n",
        code = status.as_u16(),
        t = esc(title),
        x = esc(text)
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"];

async fn handle(ctx: Shared, client: Client<HttpConnector, Incoming>, peer: SocketAddr, mut req: Request<Incoming>) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(name, port)| if port.chars().all(|c| c.is_ascii_digit()) { name } else { h })
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let Some(route) = ctx.routes.get(&host) else {
        return page(StatusCode::NOT_FOUND, "Not Found", "No environment answers for this host.");
    };
    let Some(port) = route.port.filter(|_| route.status == "ready") else {
        let state = if route.status == "ready" { "not exposed" } else { route.status.as_str() };
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            &format!("Service `{}` of environment `{}` is {state}. Try again in a moment.", route.service, route.env_id),
        );
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Ok(uri) = format!("http://127.0.0.1:{port}{path}").parse() else {
        return page(StatusCode::BAD_REQUEST, "Bad Request", "The request target is not valid.");
    };
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(*h);
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            tracing::warn!(env = %route.env_id, service = %route.service, error = %e, "upstream error");
            page(
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                &format!("Service `{}` of environment `{}` did not answer.", route.service, route.env_id),
            )
        }
    }
}

/// Serves the router until `shutdown` resolves.
pub(crate) async fn serve(listener: tokio::net::TcpListener, ctx: Shared, shutdown: tokio::sync::watch::Receiver<bool>) {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).pool_idle_timeout(std::time::Duration::from_secs(30)).build_http();
    loop {
        let mut stop = shutdown.clone();
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "router accept failed");
                continue;
            }
        };
        let (ctx, client) = (ctx.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (ctx, client) = (ctx.clone(), client.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(ctx, client, peer, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "router connection ended");
            }
        });
    }
}
