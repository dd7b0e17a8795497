//! Load-balancer ports (`loadbalancer: true`): a TCP listener on 127.0.0.1 per such port,
//! passing each connection to a replica in turn. A port of a sleeping environment stays open:
//! a connection wakes the environment (through the [`Waker`]) and is passed on once it is
//! awake. Connections are activity: while one is open, or when one was last closed, is what
//! [`TcpProxies::last_connections`] reports.

use crate::Waker;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Identifies a load-balancer port: environment, service, service port.
pub type TcpKey = (String, String, u16);

/// A wanted load-balancer port.
#[derive(Clone, Debug)]
pub struct TcpRoute {
    pub key: TcpKey,
    /// The port to listen on when free (the one used before a restart); else any.
    pub preferred: Option<u16>,
    pub upstreams: Vec<SocketAddr>,
    /// The environment sleeps: a connection wakes it and waits for its replicas.
    pub asleep: bool,
}

/// Where a port's connections go now.
#[derive(Debug, PartialEq, Eq)]
struct Upstreams {
    addrs: Vec<SocketAddr>,
    asleep: bool,
    /// When a wake of the environment last failed: connections waiting since are closed.
    refused: Option<std::time::Instant>,
}

struct Listener {
    local: SocketAddr,
    upstreams: watch::Sender<Upstreams>,
    task: tokio::task::JoinHandle<()>,
}

/// One environment's load-balancer connections: how many are open, when one last closed.
#[derive(Default)]
struct Use {
    open: usize,
    last_ms: i64,
}

type Activity = Arc<Mutex<HashMap<String, Use>>>;

/// What an accepted connection shares with its port.
#[derive(Clone)]
struct Port {
    key: TcpKey,
    upstreams: watch::Receiver<Upstreams>,
    activity: Activity,
    waker: Arc<OnceLock<Arc<dyn Waker>>>,
    wake_timeout: Duration,
    next: Arc<AtomicUsize>,
}

/// The open load-balancer ports.
pub struct TcpProxies {
    open: Mutex<HashMap<TcpKey, Listener>>,
    activity: Activity,
    waker: Arc<OnceLock<Arc<dyn Waker>>>,
    wake_timeout: Duration,
}

impl Default for TcpProxies {
    fn default() -> Self {
        TcpProxies::new(Duration::from_secs(60))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TcpProxies {
    /// Ports whose connections to a sleeping environment wait at most `wake_timeout` for it
    /// to wake (then they are closed).
    pub fn new(wake_timeout: Duration) -> Self {
        TcpProxies { open: Mutex::default(), activity: Arc::default(), waker: Arc::default(), wake_timeout }
    }

    /// Who wakes sleeping environments (set once; without one, connections to them wait and
    /// are closed).
    pub fn set_waker(&self, waker: Arc<dyn Waker>) {
        let _ = self.waker.set(waker);
    }

    /// The waker could not wake `env_id`: the connections waiting for it are closed now, not
    /// when their wait runs out.
    pub fn wake_failed(&self, env_id: &str) {
        let now = std::time::Instant::now();
        for (k, l) in lock(&self.open).iter() {
            if k.0 == env_id {
                l.upstreams.send_modify(|u| u.refused = Some(now));
            }
        }
    }

    /// When each environment last had a load-balancer connection (ms since the epoch): now
    /// for one with a connection open, else when its last one closed; only those that had one
    /// since the ports were opened.
    pub fn last_connections(&self) -> Vec<(String, i64)> {
        let now = crate::metrics::now_ms();
        lock(&self.activity)
            .iter()
            .map(|(env, u)| (env.clone(), if u.open > 0 { now } else { u.last_ms }))
            .filter(|(_, at)| *at > 0)
            .collect()
    }

    /// Opens the ports in `wanted` that are not open yet, updates the replicas of the others,
    /// and closes the rest. Returns where each wanted port listens (a port that cannot be
    /// opened is logged and left out).
    pub async fn sync(&self, wanted: Vec<TcpRoute>) -> BTreeMap<TcpKey, SocketAddr> {
        let mut out = BTreeMap::new();
        let mut fresh = Vec::new();
        {
            let mut open = lock(&self.open);
            let keep: HashSet<&TcpKey> = wanted.iter().map(|w| &w.key).collect();
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
                        l.upstreams.send_if_modified(|u| {
                            let changed = (&u.addrs, u.asleep) != (&w.upstreams, w.asleep);
                            u.addrs.clone_from(&w.upstreams);
                            u.asleep = w.asleep;
                            changed
                        });
                        out.insert(w.key.clone(), l.local);
                    }
                    None => fresh.push(w.clone()),
                }
            }
        }
        // The activity of environments that no longer have a port (and no connection) goes.
        let envs: HashSet<&str> = wanted.iter().map(|w| w.key.0.as_str()).collect();
        lock(&self.activity).retain(|env, u| u.open > 0 || envs.contains(env.as_str()));
        for w in fresh {
            let listener = match bind(w.preferred).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(env = %w.key.0, service = %w.key.1, port = w.key.2, error = %e, "cannot open a load-balancer port");
                    continue;
                }
            };
            let Ok(local) = listener.local_addr() else { continue };
            let (upstreams, receiver) = watch::channel(Upstreams { addrs: w.upstreams.clone(), asleep: w.asleep, refused: None });
            let port = Port {
                key: w.key.clone(),
                upstreams: receiver,
                activity: self.activity.clone(),
                waker: self.waker.clone(),
                wake_timeout: self.wake_timeout,
                next: Arc::default(),
            };
            let task = tokio::spawn(accept_loop(listener, port));
            out.insert(w.key.clone(), local);
            if let Some(old) = lock(&self.open).insert(w.key, Listener { local, upstreams, task }) {
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

async fn accept_loop(listener: TcpListener, port: Port) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "load-balancer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(port.clone().pass(client, peer));
    }
}

/// Counts a connection as its environment's activity while it is open.
struct Open {
    activity: Activity,
    env: String,
}

impl Open {
    fn new(activity: &Activity, env: &str) -> Self {
        let mut all = lock(activity);
        let u = all.entry(env.to_owned()).or_default();
        u.open += 1;
        u.last_ms = crate::metrics::now_ms();
        Open { activity: activity.clone(), env: env.to_owned() }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(u) = lock(&self.activity).get_mut(&self.env) {
            u.open = u.open.saturating_sub(1);
            u.last_ms = crate::metrics::now_ms();
        }
    }
}

impl Port {
    /// Passes one client connection to a replica, waking the environment first if it sleeps.
    async fn pass(mut self, mut client: TcpStream, peer: SocketAddr) {
        let (env, service) = (self.key.0.clone(), self.key.1.clone());
        let _open = Open::new(&self.activity, &env);
        if self.upstreams.borrow_and_update().asleep {
            let asked = std::time::Instant::now();
            if let Some(w) = self.waker.get() {
                w.wake(&env);
            }
            let ready = |u: &Upstreams| !u.asleep && !u.addrs.is_empty();
            let woken = self.upstreams.wait_for(|u| ready(u) || u.refused.is_some_and(|at| at >= asked));
            match tokio::time::timeout(self.wake_timeout, woken).await {
                Ok(Ok(u)) if ready(&u) => {}
                Ok(Ok(_)) => {
                    tracing::warn!(%env, %service, client = %peer, "the environment could not wake: connection closed");
                    return;
                }
                _ => {
                    tracing::warn!(%env, %service, client = %peer, "the environment did not wake in time: connection closed");
                    return;
                }
            }
        }
        let upstreams = self.upstreams.borrow().addrs.clone();
        // Each replica in turn until one accepts the connection.
        for _ in 0..upstreams.len() {
            let addr = upstreams[self.next.fetch_add(1, Ordering::Relaxed) % upstreams.len()];
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                Ok(Ok(mut up)) => {
                    let _ = up.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    return;
                }
                _ => tracing::warn!(%env, %service, upstream = %addr, "load-balancer upstream refused"),
            }
        }
        tracing::warn!(%env, %service, client = %peer, "no replica took the connection");
    }
}
