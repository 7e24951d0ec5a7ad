//! Per-connection timeouts hyper does not keep apart: the header timeout (a request head
//! begun must be complete within it) and the idle timeout (a kept-alive connection with no
//! request in flight is closed after it). hyper's own header timer also runs while a
//! kept-alive connection waits for its next request, so one value would serve both; here
//! they are separate, because a proxy in front (cloudflared) keeps idle connections longer
//! than a stalled header deserves.
//!
//! A connection's state is a few atomics shared by its socket wrapper (which sees bytes
//! arrive), its service (which sees requests begin and their responses end) and its
//! watchdog task (which sleeps until the next deadline).

use super::body::Body;
use bytes::Bytes;
use hyper::body::Frame;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const NONE: u64 = u64::MAX;
/// HTTP/2's connection preface: such a connection has no request head to time.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The two timeouts a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// What the watchdog decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head was begun and not finished in time: drop the connection.
    Header,
    /// No request for the idle timeout: close it gracefully.
    Idle,
}

/// One connection's activity.
pub struct ConnState {
    start: Instant,
    /// Requests whose response has not been sent whole yet.
    busy: AtomicUsize,
    /// When the connection last became idle (ms since `start`).
    idle_since_ms: AtomicU64,
    /// When the request head being waited for was begun (`NONE`: none is): a new
    /// connection's first head counts from the accept, a kept-alive one's next from its
    /// first byte.
    head_since_ms: AtomicU64,
    read_any: AtomicBool,
    h2: AtomicBool,
    changed: Notify,
}

impl ConnState {
    pub fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            start: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            read_any: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Bytes arrived.
    fn on_read(&self, bytes: &[u8]) {
        if !self.read_any.swap(true, Ordering::Relaxed) && bytes.starts_with(H2_PREFACE) {
            // HTTP/2 multiplexes streams over frames: only the idle timeout applies.
            self.h2.store(true, Ordering::Relaxed);
            self.head_since_ms.store(NONE, Ordering::Release);
            self.changed.notify_one();
            return;
        }
        if self.busy.load(Ordering::Acquire) == 0
            && !self.h2.load(Ordering::Relaxed)
            && self
                .head_since_ms
                .compare_exchange(NONE, self.now_ms(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A request's head was read: it is in flight until the guard (held by its response
    /// body) is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(NONE, Ordering::Release);
        Busy(self.clone())
    }

    /// Resolves when the connection has outlived a timeout.
    pub async fn expired(&self, t: Timeouts) -> Expiry {
        loop {
            let notified = self.changed.notified();
            let now = self.now_ms();
            let (deadline, expiry) = if self.busy.load(Ordering::Acquire) > 0 {
                // Nothing to time while a request runs (its body has its own deadline);
                // look again when it ends.
                (None, Expiry::Idle)
            } else {
                match self.head_since_ms.load(Ordering::Acquire) {
                    NONE => (
                        Some(
                            self.idle_since_ms.load(Ordering::Acquire) + t.idle.as_millis() as u64,
                        ),
                        Expiry::Idle,
                    ),
                    since => (Some(since + t.header.as_millis() as u64), Expiry::Header),
                }
            };
            match deadline {
                Some(d) if d <= now => return expiry,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(d - now)) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// A request in flight; dropping it (when the response body ends or is dropped) may make the
/// connection idle.
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        s.idle_since_ms.store(s.now_ms(), Ordering::Release);
        if s.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it is sent whole.
pub struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl Tracked {
    pub fn boxed(inner: Body, busy: Busy) -> Body {
        use http_body_util::BodyExt;
        Tracked { inner, _busy: busy }.boxed_unsync()
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the connection's state when bytes arrive.
pub struct Watched<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        Watched { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_millis(100),
        idle: Duration::from_millis(300),
    };

    #[tokio::test]
    async fn a_new_connection_must_send_its_first_head_within_the_header_timeout() {
        let s = ConnState::new();
        let t = Instant::now();
        assert_eq!(s.expired(T).await, Expiry::Header);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(280),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_kept_alive_connection_expires_after_the_idle_timeout() {
        let s = ConnState::new();
        drop(s.begin());
        let t = Instant::now();
        assert_eq!(s.expired(T).await, Expiry::Idle);
        assert!(t.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_begun_head_expires_after_the_header_timeout() {
        let s = ConnState::new();
        drop(s.begin());
        let s2 = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s2.on_read(b"GET / HT");
        });
        let t = Instant::now();
        assert_eq!(s.expired(T).await, Expiry::Header);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_millis(300),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_timed_and_idle_counts_from_its_end() {
        let s = ConnState::new();
        let busy = s.begin();
        let s2 = s.clone();
        let t = Instant::now();
        let watch = tokio::spawn(async move { s2.expired(T).await });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!watch.is_finished());
        drop(busy);
        assert_eq!(watch.await.unwrap(), Expiry::Idle);
        assert!(t.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn http2_has_no_head_to_time() {
        let s = ConnState::new();
        s.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        s.on_read(b"\x00\x00");
        assert_eq!(s.expired(T).await, Expiry::Idle);
    }
}
