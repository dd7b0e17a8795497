//! Load-balancer ports (`loadbalancer: true`): a TCP listener on 127.0.0.1 per such port,
//! passing each connection to a replica in turn.

use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Identifies a load-balancer port: environment, service, service port.
pub type TcpKey = (String, String, u16);

/// A wanted load-balancer port.
#[derive(Clone, Debug)]
pub struct TcpRoute {
    pub key: TcpKey,
    /// The port to listen on when free (the one used before a restart); else any.
    pub preferred: Option<u16>,
    pub upstreams: Vec<SocketAddr>,
}

struct Listener {
    local: SocketAddr,
    upstreams: Arc<ArcSwap<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The open load-balancer ports.
#[derive(Default)]
pub struct TcpProxies {
    open: Mutex<HashMap<TcpKey, Listener>>,
}

impl TcpProxies {
    /// Opens the ports in `wanted` that are not open yet, updates the replicas of the others,
    /// and closes the rest. Returns where each wanted port listens (a port that cannot be
    /// opened is logged and left out).
    pub async fn sync(&self, wanted: Vec<TcpRoute>) -> BTreeMap<TcpKey, SocketAddr> {
        let mut out = BTreeMap::new();
        let mut fresh = Vec::new();
        {
            let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let keep: std::collections::HashSet<&TcpKey> = wanted.iter().map(|w| &w.key).collect();
            open.retain(|k, l| {
                let stay = keep.contains(k);
                if !stay {
                    l.task.abort();
                }
                stay
            });
            for w in &wanted {
                match open.get(&w.key) {
                    Some(l) => {
                        l.upstreams.store(Arc::new(w.upstreams.clone()));
                        out.insert(w.key.clone(), l.local);
                    }
                    None => fresh.push(w.clone()),
                }
            }
        }
        for w in fresh {
            let listener = match bind(w.preferred).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(env = %w.key.0, service = %w.key.1, port = w.key.2, error = %e, "cannot open a load-balancer port");
                    continue;
                }
            };
            let Ok(local) = listener.local_addr() else { continue };
            let upstreams = Arc::new(ArcSwap::from_pointee(w.upstreams.clone()));
            let task = tokio::spawn(accept_loop(listener, upstreams.clone(), w.key.clone()));
            out.insert(w.key.clone(), local);
            let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(old) = open.insert(w.key, Listener { local, upstreams, task }) {
                old.task.abort();
            }
        }
        out
    }
}

impl Drop for TcpProxies {
    fn drop(&mut self) {
        for l in self.open.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            l.task.abort();
        }
    }
}

async fn bind(preferred: Option<u16>) -> std::io::Result<TcpListener> {
    if let Some(p) = preferred
        && let Ok(l) = TcpListener::bind(("127.0.0.1", p)).await
    {
        return Ok(l);
    }
    TcpListener::bind(("127.0.0.1", 0)).await
}

async fn accept_loop(listener: TcpListener, upstreams: Arc<ArcSwap<Vec<SocketAddr>>>, key: TcpKey) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut client, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "load-balancer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (upstreams, next, key) = (upstreams.load_full(), next.clone(), key.clone());
        tokio::spawn(async move {
            // Each replica in turn until one accepts the connection.
            for _ in 0..upstreams.len() {
                let addr = upstreams[next.fetch_add(1, Ordering::Relaxed) % upstreams.len()];
                match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                    Ok(Ok(mut up)) => {
                        let _ = up.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                        return;
                    }
                    _ => tracing::warn!(env = %key.0, service = %key.1, upstream = %addr, "load-balancer upstream refused"),
                }
            }
            tracing::warn!(env = %key.0, service = %key.1, client = %peer, "no replica took the connection");
        });
    }
}
