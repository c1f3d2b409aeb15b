//! Serving a router on a TCP listener with bounded connections: a request-head timeout, an idle
//! keep-alive timeout, a stalled-body timeout, a cap on concurrent connections, and a bounded
//! graceful shutdown.
//!
//! hyper serves each connection (HTTP/1.1, or HTTP/2 with prior knowledge, told apart by
//! hyper-util's `auto` builder). hyper's own `header_read_timeout` is not used: it does not cover
//! the bytes `auto` reads to tell the protocol apart (a client that sends nothing is never timed
//! out), and it restarts after every response, so it cannot tell a slow head from an idle
//! keep-alive connection. Instead each connection's task watches its state, which the socket
//! wrapper and the request/response bodies keep up to date:
//!
//! * before its first request, a connection must deliver a complete request head within
//!   [`ListenerLimits::header_read_timeout`] of being accepted;
//! * between requests it may stay idle for [`ListenerLimits::idle_timeout`]; once the first byte
//!   of the next head arrives, that head must complete within the header timeout;
//! * while a request body is being received, more than the idle timeout without a byte closes
//!   the connection;
//! * a request whose body is complete runs as long as its handler and response need: the agents'
//!   assignment streams and the load balancers' configuration streams stay open indefinitely and
//!   carry heartbeats.
//!
//! At [`ListenerLimits::max_connections`], the listener closes the connection that has been
//! waiting the longest without a request in flight (a slow or idle client) to make room; when
//! every connection has a request in flight it stops accepting until one ends. So slow clients
//! can never hold the listener against a client that sends its request at once: an agent or a
//! load balancer connecting while a thousand half-sent requests are open is served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::head_scan::HeadScan;

/// Limits of one listener. The defaults are the server's defaults (README, "Server flags").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// How long a connection may take to deliver a complete request head: from its accept for
    /// the first request, from the head's first byte for later ones.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open without a request in flight, and how long a request
    /// body may stall.
    pub idle_timeout: Duration,
    /// The most connections served at once.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// What a listener did on its way out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeOutcome {
    /// Connections still busy when the drain deadline passed, closed without waiting further.
    pub dropped: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish (idle ones close at once, busy ones after their current response), and
/// closes whatever is still open `drain` later.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> ServeOutcome {
    let max = limits.max_connections.max(1);
    let conns = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let builder = Arc::new(builder);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        if conns.len() >= max {
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = max,
                    "connection limit reached; closing the longest-waiting idle connections"
                );
                last_full_warning = Some(Instant::now());
            }
            let closed = conns.closed.notified();
            conns.evict_one();
            tokio::select! {
                () = closed => {}
                // An evicted connection may have started a request meanwhile: look again.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut shutdown => break,
            }
            continue;
        }
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: pause, so a
                    // persistent condition does not spin, and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = conns.add();
        tasks.spawn(serve_connection(
            stream,
            app.clone(),
            builder.clone(),
            conn,
            conns.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    let dropped = if drained.is_err() { tasks.len() } else { 0 };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    ServeOutcome { dropped }
}

/// Serves one connection until it ends, times out, is evicted, or the listener shuts down.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    conn: Arc<Conn>,
    conns: Arc<Connections>,
    limits: ListenerLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
        heads: HeadScan::default(),
    });
    let svc_conn = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let request = RequestGuard::start(&svc_conn);
        let (parts, incoming) = req.into_parts();
        let body = RequestBody {
            guard: (!hyper::body::Body::is_end_stream(&incoming))
                .then(|| BodyGuard::open(&svc_conn)),
            inner: incoming,
        };
        let req = hyper::Request::from_parts(parts, Body::new(body));
        let app = app.clone();
        async move {
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|b| {
                Body::new(ResponseBody {
                    inner: b,
                    _request: request,
                })
            }))
        }
    });
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let changed = conn.changed.notified();
        let evicted = conn.evict.notified();
        let deadline = conn.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = sleep_until(deadline) => {
                if conn.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(conn = conn.id, "connection timed out");
                    break;
                }
            }
            () = changed => {}
            () = evicted => {
                if conn.is_idle() {
                    tracing::debug!(conn = conn.id, "idle connection closed to make room");
                    break;
                }
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    conns.remove(conn.id);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The live connections of one listener.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified whenever a connection ends.
    closed: Notify,
}

impl Connections {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.live().len()
    }

    fn add(&self) -> Arc<Conn> {
        let now = Instant::now();
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(ConnState {
                in_flight: 0,
                bodies_open: 0,
                seen_request: false,
                waiting_since: now,
                head_started: None,
                last_read: now,
            }),
            changed: Notify::new(),
            evict: Notify::new(),
        });
        self.live().insert(conn.id, conn.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.live().remove(&id);
        self.closed.notify_waiters();
    }

    /// Asks the connection that has waited the longest without a request in flight to close.
    fn evict_one(&self) {
        let victim = self
            .live()
            .values()
            .filter_map(|c| c.waiting_since().map(|t| (t, c.clone())))
            .min_by_key(|(t, _)| *t)
            .map(|(_, c)| c);
        if let Some(c) = victim {
            c.evict.notify_one();
        }
    }
}

/// One connection's state, kept up to date by its socket wrapper and its bodies.
#[derive(Debug)]
struct Conn {
    id: u64,
    state: Mutex<ConnState>,
    /// Notified when a change may bring the deadline earlier.
    changed: Notify,
    /// Notified when the listener needs the room.
    evict: Notify,
}

#[derive(Debug)]
struct ConnState {
    /// Requests whose response has not been fully sent.
    in_flight: usize,
    /// Request bodies not yet fully received.
    bodies_open: usize,
    seen_request: bool,
    /// When the connection last had no request in flight (its accept, or its last response).
    waiting_since: Instant,
    /// When the first byte arrived after `waiting_since`.
    head_started: Option<Instant>,
    last_read: Instant,
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_idle(&self) -> bool {
        self.state().in_flight == 0
    }

    /// Since when the connection has had no request in flight, if it has none.
    fn waiting_since(&self) -> Option<Instant> {
        let s = self.state();
        (s.in_flight == 0).then_some(s.waiting_since)
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: &ListenerLimits) -> Option<Instant> {
        let s = self.state();
        if s.in_flight > 0 {
            return (s.bodies_open > 0).then(|| s.last_read + limits.idle_timeout);
        }
        if !s.seen_request {
            return Some(s.waiting_since + limits.header_read_timeout);
        }
        Some(match s.head_started {
            Some(t) => t + limits.header_read_timeout,
            None => s.waiting_since + limits.idle_timeout,
        })
    }

    fn on_read(&self) {
        let now = Instant::now();
        let mut s = self.state();
        s.last_read = now;
        if s.in_flight == 0 && s.seen_request && s.head_started.is_none() {
            s.head_started = Some(now);
            drop(s);
            self.changed.notify_one();
        }
    }
}

/// Counts a request in flight until its response body is dropped (fully sent or abandoned).
#[derive(Debug)]
struct RequestGuard(Arc<Conn>);

impl RequestGuard {
    fn start(conn: &Arc<Conn>) -> Self {
        let mut s = conn.state();
        s.in_flight += 1;
        s.seen_request = true;
        s.head_started = None;
        drop(s);
        conn.changed.notify_one();
        Self(conn.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.waiting_since = Instant::now();
            s.head_started = None;
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// Counts a request body being received until its end (or until it is dropped).
#[derive(Debug)]
struct BodyGuard(Arc<Conn>);

impl BodyGuard {
    fn open(conn: &Arc<Conn>) -> Self {
        let mut s = conn.state();
        s.bodies_open += 1;
        s.last_read = Instant::now();
        drop(s);
        conn.changed.notify_one();
        Self(conn.clone())
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.bodies_open = s.bodies_open.saturating_sub(1);
        drop(s);
        self.0.changed.notify_one();
    }
}

/// The request body, releasing its [`BodyGuard`] at its end.
struct RequestBody {
    inner: Incoming,
    guard: Option<BodyGuard>,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body, holding its request's [`RequestGuard`] until hyper is done with it.
struct ResponseBody {
    inner: Body,
    _request: RequestGuard,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting every read in its connection's state and refusing request heads with
/// bare LF line endings (see [`crate::head_scan`]).
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
    heads: HeadScan,
}

/// The answer to a request head with a bare LF; the connection closes after it.
const BARE_LF_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 52\r\nconnection: close\r\n\r\nBad Request: request head lines must end with CRLF.\n";

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
            let this = &mut *self;
            if this.heads.feed(&buf.filled()[before..]).is_err() {
                buf.set_filled(before);
                tracing::debug!(conn = this.conn.id, "request head with a bare LF refused");
                // Answered here unless a response is under way (pipelining): then only closed.
                if this.conn.is_idle() {
                    let _ = this.inner.try_write(BARE_LF_ANSWER);
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head with a bare LF line ending",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::any;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const HEAD: Duration = Duration::from_millis(300);
    const IDLE: Duration = Duration::from_millis(1200);

    async fn start(max_connections: usize) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            any(|body: Body| async move {
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                format!("got {}", bytes.len())
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let limits = ListenerLimits {
            header_read_timeout: HEAD,
            idle_timeout: IDLE,
            max_connections,
        };
        tokio::spawn(serve(
            listener,
            app,
            limits,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        (addr, tx)
    }

    /// How long until the server closes `s` (reads until EOF or reset), at most `limit`.
    async fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(t + limit, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => return None,
            }
        }
    }

    async fn request(s: &mut TcpStream) -> String {
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Writes `raw` on a new connection and reads until the server closes it.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn request_heads_with_bare_lf_line_endings_are_refused() {
        let (addr, _stop) = start(16).await;
        for bad in [
            &b"GET / HTTP/1.1\nHost: x\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
            // The second request of a keep-alive connection, after a body with line feeds.
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\n\n\nGET / HTTP/1.1\r\nHost: x\n\r\n",
        ] {
            let got = exchange(addr, bad).await;
            assert!(
                got.ends_with("HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 52\r\nconnection: close\r\n\r\nBad Request: request head lines must end with CRLF.\n"),
                "{:?}: {got:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(got.matches("got 0").count(), 0, "{got}");
        }
        // CRLF heads, bodies with line feeds, chunked bodies: served.
        let got = exchange(
            addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\n\n\nPOST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
        assert!(
            got.contains("got 3") && got.contains("got 2") && got.ends_with("got 0"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_the_header_timeout() {
        let (addr, _stop) = start(16).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let after = closed_after(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(after >= HEAD - Duration::from_millis(50), "{after:?}");
        assert!(after < IDLE, "{after:?}");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_lasts_the_idle_timeout_not_the_header_timeout() {
        let (addr, _stop) = start(16).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut s).await.contains("got 2"));
        let after = closed_after(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(after >= IDLE - Duration::from_millis(100), "{after:?}");
    }

    #[tokio::test]
    async fn a_slow_second_head_gets_the_header_timeout() {
        let (addr, _stop) = start(16).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut s).await.contains("got 2"));
        s.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        let after = closed_after(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(after < IDLE, "{after:?}");
    }

    #[tokio::test]
    async fn a_stalled_body_is_closed_after_the_idle_timeout() {
        let (addr, _stop) = start(16).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let after = closed_after(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(after >= IDLE - Duration::from_millis(100), "{after:?}");
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let (addr, _stop) = start(2).await;
        let mut oldest = TcpStream::connect(addr).await.unwrap();
        oldest.write_all(b"GET / HT").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut younger = TcpStream::connect(addr).await.unwrap();
        younger.write_all(b"GET / HT").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A third client, at the cap, is served at once; the oldest half-sent one made room.
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        let answer = tokio::time::timeout(HEAD / 2, request(&mut fresh))
            .await
            .expect("served without waiting for a timeout");
        assert!(answer.contains("got 2"), "{answer}");
        assert!(
            closed_after(&mut oldest, Duration::from_millis(10))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_finishes_busy_ones() {
        let (addr, stop) = start(16).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut idle).await.contains("got 2"));
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        assert!(
            closed_after(&mut idle, Duration::from_millis(500))
                .await
                .is_some()
        );
        busy.write_all(b"cd").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = busy.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("got 4"));
    }
}
