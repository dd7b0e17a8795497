//! Listeners: plain HTTP (HTTP/1.1 and h2c) and TLS (ALPN `h2` / `http/1.1`, certificate
//! reloaded when its files change), with connection limits, timeouts and a graceful drain.

use crate::certs::CertBook;
use crate::proxy::{Router, Scheme};
use pin_project_lite::pin_project;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// A TLS certificate problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate `{path}`: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("`{0}` holds no certificate")]
    NoCert(PathBuf),
    #[error("cannot read the private key `{path}`: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("the private key `{path}` is not usable: {source}")]
    BadKey { path: PathBuf, source: rustls::Error },
    #[error("the certificate `{cert}` does not match the key `{key}`: {source}")]
    Mismatch { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What the TLS listener serves: certificates by name from a [`CertBook`] (ACME's), else the
/// certificate and key of PEM files, reloaded when they change.
#[derive(Debug)]
pub struct Tls {
    files: Option<(PathBuf, PathBuf)>,
    current: Arc<arc_swap::ArcSwapOption<CertifiedKey>>,
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    book: Arc<OnceLock<Arc<CertBook>>>,
    config: Arc<rustls::ServerConfig>,
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert { path: cert.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let ck = CertifiedKey::from_der(certs, der, &provider()).map_err(|source| match source {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch { cert: cert.to_owned(), key: key.to_owned(), source },
        source => TlsError::BadKey { path: key.to_owned(), source },
    })?;
    Ok(ck)
}

impl Tls {
    fn build(files: Option<(PathBuf, PathBuf)>, current: Option<CertifiedKey>) -> Arc<Tls> {
        let current = Arc::new(arc_swap::ArcSwapOption::from(current.map(Arc::new)));
        let book = Arc::new(OnceLock::new());
        // The resolver holds what it reads, not the `Tls`: the listener keeps only the config.
        let resolver = Arc::new(Resolver { current: current.clone(), book: book.clone() });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_no_client_auth().with_cert_resolver(resolver.clone()))
            .unwrap_or_else(|_| {
                // The default provider always supports the default versions.
                rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(resolver)
            });
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let stamp = files.as_ref().map_or((None, None), |(c, k)| (modified(c), modified(k)));
        Arc::new(Tls { files, current, stamp: Mutex::new(stamp), book, config: Arc::new(config) })
    }

    /// Loads a certificate chain and its private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>, TlsError> {
        let ck = load_key(cert, key)?;
        Ok(Tls::build(Some((cert.to_owned(), key.to_owned())), Some(ck)))
    }

    /// Serves only what `book` holds (certificates from ACME).
    pub fn from_book(book: Arc<CertBook>) -> Arc<Tls> {
        let tls = Tls::build(None, None);
        tls.use_book(book);
        tls
    }

    /// Serves `book`'s certificate for a name it covers, the files' for the others.
    pub fn use_book(&self, book: Arc<CertBook>) {
        let _ = self.book.set(book);
    }

    /// Reloads the files when their modification times changed; `Ok(true)` when a new
    /// certificate is in use. A bad new pair leaves the old one in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let Some((cert, key)) = &self.files else { return Ok(false) };
        let stamp = (modified(cert), modified(key));
        let mut last = self.stamp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == stamp {
            return Ok(false);
        }
        let ck = load_key(cert, key)?;
        self.current.store(Some(Arc::new(ck)));
        *last = stamp;
        Ok(true)
    }

    /// Checks the files every `every` until `shutdown`.
    pub fn watch(self: &Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let Some((cert, _)) = self.files.clone() else { return };
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => return,
                }
                match tls.reload_if_changed() {
                    Ok(true) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use"),
                }
            }
        });
    }
}

#[derive(Debug)]
struct Resolver {
    current: Arc<arc_swap::ArcSwapOption<CertifiedKey>>,
    book: Arc<OnceLock<Arc<CertBook>>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let from_book = hello.server_name().and_then(|name| self.book.get().and_then(|b| b.resolve(name)));
        from_book.or_else(|| self.current.load_full())
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

pin_project! {
    /// Records when bytes last moved, for the idle timeout.
    struct IdleIo<T> {
        #[pin]
        inner: T,
        last: Arc<AtomicU64>,
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_read(cx, buf);
        if r.is_ready() {
            this.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if r.is_ready() {
            this.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The connection budget shared by a router's listeners.
pub(crate) fn limiter(max: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)))
}

/// Serves `listener` until `shutdown` turns true, then stops accepting, asks every connection
/// to finish its requests in flight, and waits for them up to the drain timeout. Connections run
/// on the calling runtime.
pub async fn serve(router: Arc<Router>, listener: TcpListener, tls: Option<Arc<Tls>>, shutdown: watch::Receiver<bool>) {
    let upstreams = router.upstreams();
    let ctx = Arc::new(ConnCtx {
        router: router.clone(),
        tls: tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone())),
        shutdown: shutdown.clone(),
    });
    accept_loop(&router, &listener, shutdown, |stream, peer, permit| match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => {
            tokio::spawn(ctx.clone().run(stream, peer, permit, upstreams.clone()));
        }
        Err(e) => tracing::warn!(error = %e, "router cannot use a connection"),
    })
    .await;
    drop(listener);
    drain(&router).await;
}

/// Serves `listener` with `threads` worker threads, each running its own single-threaded
/// runtime and upstream pool, as NGINX runs one event loop per worker: a connection, its
/// requests and their upstream connections stay on one thread, with no hand-offs between
/// threads. Connections are dealt to the workers in turn. Returns when all have drained.
pub async fn serve_threads(
    router: Arc<Router>,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
    threads: usize,
) -> io::Result<()> {
    let ctx = Arc::new(ConnCtx {
        router: router.clone(),
        tls: tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone())),
        shutdown: shutdown.clone(),
    });
    let mut workers = Vec::new();
    let mut done = Vec::new();
    for i in 0..threads.max(1) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, std::net::SocketAddr, OwnedSemaphorePermit)>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let ctx = ctx.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(format!("offshoot-router-{i}")).spawn(move || {
            rt.block_on(async move {
                let upstreams = ctx.router.upstreams();
                let mut running = tokio::task::JoinSet::new();
                while let Some((stream, peer, permit)) = rx.recv().await {
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => {
                            running.spawn(ctx.clone().run(stream, peer, permit, upstreams.clone()));
                        }
                        Err(e) => tracing::warn!(error = %e, "router cannot use a connection"),
                    }
                    while running.try_join_next().is_some() {}
                }
                // The acceptor has drained (or given up): what is left is cut.
                running.abort_all();
            });
            let _ = done_tx.send(());
        })?;
        workers.push(tx);
        done.push(done_rx);
    }
    let mut next = 0usize;
    accept_loop(&router, &listener, shutdown, |stream, peer, permit| {
        let _ = workers[next % workers.len()].send((stream, peer, permit));
        next = next.wrapping_add(1);
    })
    .await;
    drop(listener);
    drain(&router).await;
    drop(workers);
    for d in done {
        let _ = d.await;
    }
    Ok(())
}

/// What every connection of a listener shares.
struct ConnCtx {
    router: Arc<Router>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
}

impl ConnCtx {
    async fn run(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        permit: OwnedSemaphorePermit,
        upstreams: crate::proxy::Upstreams,
    ) {
        let _permit = permit;
        let router = &self.router;
        router.metrics.connections.inc();
        match &self.tls {
            None => connection(router, stream, router.client(peer, Scheme::Http, upstreams), self.shutdown.clone()).await,
            Some(a) => match tokio::time::timeout(router.config.header_read_timeout, a.accept(stream)).await {
                Ok(Ok(s)) => connection(router, s, router.client(peer, Scheme::Https, upstreams), self.shutdown.clone()).await,
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
            },
        }
        router.metrics.connections.dec();
    }
}

/// Accepts connections within the connection budget until `shutdown`, handing each to `take`.
async fn accept_loop(
    router: &Router,
    listener: &TcpListener,
    mut shutdown: watch::Receiver<bool>,
    mut take: impl FnMut(std::net::TcpStream, std::net::SocketAddr, OwnedSemaphorePermit),
) {
    let slots = router.connections.clone();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted.and_then(|(s, peer)| {
            s.set_nodelay(true)?;
            Ok((s.into_std()?, peer))
        }) {
            Ok((stream, peer)) => take(stream, peer, permit),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "router accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until every connection of the router ended, up to the drain timeout.
async fn drain(router: &Router) {
    let all = u32::try_from(router.config.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    match tokio::time::timeout(router.config.drain_timeout, router.connections.acquire_many(all)).await {
        Ok(Ok(permits)) => drop(permits),
        _ => tracing::warn!(open = router.metrics.connections.get(), "router drain timed out; closing the remaining connections"),
    }
}

async fn connection<T>(router: &Arc<Router>, io: T, client: crate::proxy::ClientInfo, mut shutdown: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let last = Arc::new(AtomicU64::new(now_ms()));
    let io = IdleIo { inner: io, last: last.clone() };
    let r = router.clone();
    let peer = client.addr;
    let client = Arc::new(client);
    let service = hyper::service::service_fn(move |req| {
        let (r, client) = (r.clone(), client.clone());
        async move { Ok::<_, std::convert::Infallible>(r.handle(req, &client).await) }
    });
    let cfg = &router.config;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(cfg.header_read_timeout).max_buf_size(cfg.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = cfg.idle_timeout;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let quiet_for = Duration::from_millis(now_ms().saturating_sub(last.load(Ordering::Relaxed)));
        let idle_wait = idle.saturating_sub(quiet_for);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(client = %peer, error = %e, "router connection ended");
                }
                return;
            }
            changed = shutdown.changed(), if !closing => {
                if changed.is_err() || *shutdown.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep(idle_wait), if !closing => {
                let quiet = Duration::from_millis(now_ms().saturating_sub(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!(client = %peer, "closing an idle connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
