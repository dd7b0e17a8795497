//! Bodies that stream through the proxy: the request body (size limit checked as bytes pass,
//! send progress for the send timeout), the response body (read timeout between frames), and
//! the read-ahead buffer of `proxy_buffering` (memory, then a temporary file).

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What the router answers with.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

const NOT_DONE: u64 = u64::MAX;

/// How far the request has been sent upstream (milliseconds since the request started).
#[derive(Debug)]
pub(crate) struct Progress {
    start: Instant,
    last: AtomicU64,
    done: AtomicU64,
    pub(crate) too_large: AtomicBool,
}

impl Progress {
    pub(crate) fn new(body_done: bool) -> Arc<Self> {
        Arc::new(Progress {
            start: Instant::now(),
            last: AtomicU64::new(0),
            done: AtomicU64::new(if body_done { 0 } else { NOT_DONE }),
            too_large: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NOT_DONE - 1)
    }

    /// Resolves when the send timeout (while the body is being sent) or the read timeout
    /// (after it was sent) runs out; `true` for the read timeout.
    pub(crate) async fn expired(&self, send: Duration, read: Duration) -> bool {
        loop {
            let done = self.done.load(Ordering::Acquire);
            let (deadline, is_read) = if done == NOT_DONE {
                (self.last.load(Ordering::Acquire).saturating_add(ms(send)), false)
            } else {
                (done.saturating_add(ms(read)), true)
            };
            let now = self.now();
            if now >= deadline {
                return is_read;
            }
            tokio::time::sleep(Duration::from_millis(deadline - now)).await;
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(NOT_DONE - 1)
}

/// The client's request body on its way upstream.
pub(crate) struct RequestBody {
    /// `None`: no body.
    inner: Option<Incoming>,
    limit: Option<u64>,
    seen: u64,
    progress: Arc<Progress>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, limit: Option<u64>, progress: Arc<Progress>) -> Self {
        RequestBody { inner: Some(inner), limit, seen: 0, progress }
    }

    pub(crate) fn empty(progress: Arc<Progress>) -> Self {
        RequestBody { inner: None, limit: None, seen: 0, progress }
    }
}

/// The request body grew past `proxy_body_size`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the limit of {0} bytes")]
pub(crate) struct TooLarge(pub(crate) u64);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if let Some(limit) = this.limit
                        && this.seen > limit
                    {
                        this.progress.too_large.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(limit)))));
                    }
                }
                this.progress.last.store(this.progress.now(), Ordering::Release);
            }
            Poll::Ready(None) => this.progress.done.store(this.progress.now(), Ordering::Release),
            _ => {}
        }
        if inner.is_end_stream() {
            this.progress.done.store(this.progress.now(), Ordering::Release);
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The upstream went quiet for longer than the read timeout in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub(crate) struct ReadTimeout(Duration);

/// The upstream's response body, cut when it is silent for longer than the read timeout. The
/// timer is armed only when the upstream makes the reader wait (a body already received costs
/// no timer).
pub(crate) struct ResponseBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl ResponseBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        ResponseBody { inner, timeout, sleep: None, armed: false }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    sleep.as_mut().reset(deadline);
                    this.armed = true;
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimeout(this.timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Read-ahead for `proxy_buffering`: a task drains the upstream as fast as it sends, keeping
/// up to `memory` bytes in memory and then up to `file_limit` bytes in an unlinked temporary
/// file; the client reads in order at its own pace. When both are full the upstream waits.
pub(crate) fn buffered(
    upstream: ResponseBody,
    memory: usize,
    file_limit: u64,
    temp_dir: &std::path::Path,
    spilled: prometheus_client::metrics::counter::Counter,
) -> ProxyBody {
    use http_body_util::BodyExt as _;
    let shared = Arc::new(Shared { state: Mutex::new(State::default()), notify: tokio::sync::Notify::new() });
    let temp_dir = temp_dir.to_path_buf();
    tokio::spawn(pump(upstream, shared.clone(), memory, file_limit, temp_dir, spilled));
    Reader { shared, pending: None }.boxed_unsync()
}

#[derive(Default)]
struct State {
    memory: VecDeque<Bytes>,
    memory_bytes: usize,
    /// Spilled bytes live in `file[read..written]`; while any are there, new data goes to the
    /// file too, so the order is kept.
    file: Option<Arc<std::fs::File>>,
    written: u64,
    read: u64,
    trailers: Option<hyper::HeaderMap>,
    finished: bool,
    error: Option<String>,
    /// The client went away.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    notify: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn pump(
    mut upstream: ResponseBody,
    shared: Arc<Shared>,
    memory: usize,
    file_limit: u64,
    temp_dir: std::path::PathBuf,
    spilled: prometheus_client::metrics::counter::Counter,
) {
    use http_body_util::BodyExt as _;
    loop {
        let frame = match upstream.frame().await {
            None => break,
            Some(Err(e)) => {
                shared.lock().error = Some(e.to_string());
                shared.notify.notify_waiters();
                return;
            }
            Some(Ok(f)) => f,
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                shared.lock().trailers = f.into_trailers().ok();
                continue;
            }
        };
        // Wait for room: memory when nothing is spilled, else the file.
        enum Room {
            Taken,
            File(Arc<std::fs::File>, u64),
            Wait,
        }
        loop {
            let notified = shared.notify.notified();
            let room = {
                let mut s = shared.lock();
                if s.closed {
                    return;
                }
                if s.written == s.read {
                    // The file is drained: start it over.
                    (s.written, s.read) = (0, 0);
                }
                if s.written == 0 && (s.memory_bytes == 0 || s.memory_bytes + data.len() <= memory) {
                    s.memory_bytes += data.len();
                    s.memory.push_back(data.clone());
                    Room::Taken
                } else if s.written - s.read + data.len() as u64 <= file_limit {
                    if s.file.is_none() {
                        match temp_file(&temp_dir) {
                            Ok(f) => s.file = Some(Arc::new(f)),
                            Err(e) => tracing::warn!(error = %e, dir = %temp_dir.display(), "cannot create a proxy buffer file"),
                        }
                    }
                    s.file.clone().map_or(Room::Wait, |f| Room::File(f, s.written))
                } else {
                    Room::Wait
                }
            };
            match room {
                Room::Taken => {}
                Room::File(f, offset) => {
                    let d = data.clone();
                    let wrote = tokio::task::spawn_blocking(move || std::os::unix::fs::FileExt::write_all_at(&*f, &d, offset)).await;
                    if !matches!(wrote, Ok(Ok(()))) {
                        shared.lock().error = Some("cannot write the proxy buffer file".into());
                        shared.notify.notify_waiters();
                        return;
                    }
                    shared.lock().written += data.len() as u64;
                    spilled.inc_by(data.len() as u64);
                }
                Room::Wait => {
                    notified.await;
                    continue;
                }
            }
            shared.notify.notify_waiters();
            break;
        }
    }
    shared.lock().finished = true;
    shared.notify.notify_waiters();
}

fn temp_file(dir: &std::path::Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = dir.join(format!("proxy-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let f =
        std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().read(true).write(true).create_new(true), 0o600).open(&name)?;
    std::fs::remove_file(&name)?;
    Ok(f)
}

type NextFrame = Pin<Box<dyn std::future::Future<Output = Option<Result<Frame<Bytes>, BoxError>>> + Send>>;

/// The client side of the read-ahead buffer.
struct Reader {
    shared: Arc<Shared>,
    pending: Option<NextFrame>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_waiters();
    }
}

async fn next_frame(shared: Arc<Shared>) -> Option<Result<Frame<Bytes>, BoxError>> {
    const CHUNK: u64 = 64 * 1024;
    loop {
        let notified = shared.notify.notified();
        let (file, offset, len) = {
            let mut s = shared.lock();
            if let Some(d) = s.memory.pop_front() {
                s.memory_bytes -= d.len();
                drop(s);
                shared.notify.notify_waiters();
                return Some(Ok(Frame::data(d)));
            }
            if s.written > s.read {
                (s.file.clone(), s.read, (s.written - s.read).min(CHUNK))
            } else if let Some(e) = &s.error {
                return Some(Err(e.clone().into()));
            } else if s.finished {
                return s.trailers.take().map(|t| Ok(Frame::trailers(t)));
            } else {
                (None, 0, 0)
            }
        };
        if let Some(f) = file {
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; usize::try_from(len).unwrap_or(0)];
                std::os::unix::fs::FileExt::read_exact_at(&*f, &mut buf, offset).map(|()| buf)
            })
            .await;
            let Ok(Ok(buf)) = read else {
                return Some(Err("cannot read the proxy buffer file".into()));
            };
            let mut s = shared.lock();
            s.read += len;
            drop(s);
            shared.notify.notify_waiters();
            return Some(Ok(Frame::data(Bytes::from(buf))));
        }
        notified.await;
    }
}

impl Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let fut = this.pending.get_or_insert_with(|| Box::pin(next_frame(this.shared.clone())));
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                this.pending = None;
                Poll::Ready(r)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
