//! The router in front of environments. A routing table (pure; [`table`]) maps a request's
//! host and path to a service's ready replicas; a reverse proxy on hyper ([`Router`]) streams
//! the request there under the environment's `ingress` settings; listeners ([`serve`]) speak
//! HTTP/1.1, h2c and TLS (HTTP/2 by ALPN), with limits, timeouts and a graceful drain; [`tcp`]
//! opens the load-balancer ports. A request for a sleeping environment asks a [`Waker`] to wake
//! it and is held until a table where it is awake is swapped in.

pub mod access;
mod body;
pub mod certs;
pub mod ingress;
mod metrics;
mod proxy;
mod server;
pub mod table;
pub mod tcp;

pub use access::Gatekeeper;
pub use body::ProxyBody;
pub use certs::{CertBook, Served};
pub use ingress::IngressSettings;
pub use proxy::{Router, RouterConfig, Scheme, Waker};
pub use server::{Tls, TlsError, serve, serve_threads};
pub use table::{Backend, Content, Route, RouteError, Table, Visibility};

/// Signs every page the router writes itself (404 for an unknown host among them), so that a
/// client can tell an Offshoot router on a port from another program (`offshoot doctor`).
pub const SIGNATURE: &str = "Offshoot router";
