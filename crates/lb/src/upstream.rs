//! The HTTP/1.1 client side: keep-alive connections to targets, driven by the task that
//! serves the client (no connection task, no channels).
//!
//! Each target keeps a stack of idle connections (last in, first out, so the warmest are
//! reused and the others time out). A connection is a socket and a read buffer. A request head
//! (and a small body) goes out in one write; the response head is read and parsed in the
//! calling task, and the response body ([`ResponseBody`]) reads from the same socket when the
//! client side polls it. Once that body has been read to the end and the target allows it, the
//! connection goes back on the stack; a body abandoned early closes it. A request body of
//! unknown or large size is written by a task of its own while the response is read, so a
//! target that answers while still reading cannot deadlock the exchange.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;

use crate::balancer::{Group, Outstanding, TargetRt, now_ms};
use crate::h1::{self, Chunk, ChunkedDecoder, RequestFraming, ResponseFraming, ResponseHead};
use crate::pool::MAX_READ;
pub use crate::pool::{Connection, UpstreamPool};

impl Connection {
    /// Gives a connection whose exchange is complete back to `target`'s pool (unless bytes
    /// beyond the exchange arrived or the target's address changed).
    pub(crate) fn release(self, target: &TargetRt) {
        if self.buf.is_empty() && **target.addr.load() == *self.addr {
            target.pool.put(self);
        }
    }
}

/// Reads more into `buf` (at least a quarter of `read_size` of room, which doubles while reads
/// fill it); 0 at end of stream.
pub(crate) async fn fill<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    read_size: &mut usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < *read_size / 4 {
        buf.reserve(*read_size);
    }
    let room = buf.capacity() - buf.len();
    let n = r.read_buf(buf).await?;
    if n == room && *read_size < MAX_READ {
        *read_size *= 2;
    }
    Ok(n)
}

/// A request body as the client sent it, ready to go to a target.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    /// Read in full already: goes out with the head, and can be sent again.
    Full(Bytes),
    /// Streamed as it arrives (by a task of its own); gone once a send has started it.
    Stream(Option<Incoming>),
}

impl RequestBody {
    /// Whether a failed send can be tried again with this body.
    pub fn can_resend(&self) -> bool {
        !matches!(self, RequestBody::Stream(None))
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// The connection failed before any response byte, with the request body still at hand: the
    /// target most likely closed an idle connection as it was reused.
    Stale(io::Error),
    /// Anything else: the exchange is lost.
    Failed(io::Error),
}

/// The task writing a streamed request body (aborted when the exchange is dropped): the
/// write half back once the body is complete.
struct Writer(JoinHandle<Option<OwnedWriteHalf>>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The socket of an exchange: whole, or split while a task writes the request body.
enum Io {
    Whole(TcpStream),
    Split { read: OwnedReadHalf, writer: Writer },
}

impl Io {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // `read_buf` keeps no state between polls, so a fresh future per poll is equivalent to
        // polling one future.
        match self {
            Io::Whole(s) => std::pin::pin!(s.read_buf(buf)).poll(cx),
            Io::Split { read, .. } => std::pin::pin!(read.read_buf(buf)).poll(cx),
        }
    }

    /// The socket back, if the request body was written in full.
    fn reclaim(self) -> Option<TcpStream> {
        match self {
            Io::Whole(s) => Some(s),
            Io::Split { read, mut writer } => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(&mut writer.0).poll(&mut cx) {
                    Poll::Ready(Ok(Some(w))) => read.reunite(w).ok(),
                    _ => None,
                }
            }
        }
    }

    /// The socket for a tunnel, once the request body is written.
    async fn into_stream(self) -> Option<TcpStream> {
        match self {
            Io::Whole(s) => Some(s),
            Io::Split { read, mut writer } => read.reunite((&mut writer.0).await.ok()??).ok(),
        }
    }
}

/// Reads more into `buf` (at least a quarter of `read_size` of room, which doubles while reads
/// fill it); 0 at end of stream.
fn poll_fill(
    io: &mut Io,
    buf: &mut BytesMut,
    read_size: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < *read_size / 4 {
        buf.reserve(*read_size);
    }
    let room = buf.capacity() - buf.len();
    let n = ready!(io.poll_read_buf(cx, buf))?;
    if n == room && *read_size < MAX_READ {
        *read_size *= 2;
    }
    Poll::Ready(Ok(n))
}

/// The connection of an exchange whose response head has been read, positioned at the body.
pub struct Exchange {
    io: Io,
    buf: BytesMut,
    read_size: usize,
    addr: Arc<String>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

pub(crate) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// Sends a request (`head` is its encoded head) and reads the response head, skipping interim
/// 1xx responses other than 101.
pub async fn send(
    conn: Connection,
    head: &[u8],
    body: &mut RequestBody,
    framing: RequestFraming,
) -> Result<(ResponseHead, Exchange), SendError> {
    let Connection {
        mut stream,
        mut buf,
        mut read_size,
        addr,
    } = conn;
    let stale = |e: io::Error| {
        if is_connection_error(&e) {
            SendError::Stale(e)
        } else {
            SendError::Failed(e)
        }
    };
    let mut io = match body {
        RequestBody::Empty => {
            stream.write_all(head).await.map_err(stale)?;
            Io::Whole(stream)
        }
        RequestBody::Full(data) => {
            if head.len() + data.len() <= 16 * 1024 {
                let mut out = Vec::with_capacity(head.len() + data.len());
                out.extend_from_slice(head);
                out.extend_from_slice(data);
                stream.write_all(&out).await.map_err(stale)?;
            } else {
                let mut out = Buf::chain(head, data.clone());
                stream.write_all_buf(&mut out).await.map_err(stale)?;
            }
            Io::Whole(stream)
        }
        RequestBody::Stream(slot) => {
            stream.write_all(head).await.map_err(stale)?;
            let Some(incoming) = slot.take() else {
                return Err(SendError::Failed(io::Error::other(
                    "request body already sent",
                )));
            };
            let (read, write) = stream.into_split();
            let writer = Writer(tokio::spawn(write_body(write, incoming, framing)));
            Io::Split { read, writer }
        }
    };
    let resendable = body.can_resend();
    let mut received = false;
    loop {
        match h1::parse_response_head(&mut buf) {
            Ok(Some(head)) if head.status.is_informational() && head.status.as_u16() != 101 => {
                continue;
            }
            Ok(Some(head)) => {
                let exchange = Exchange {
                    io,
                    buf,
                    read_size,
                    addr,
                };
                return Ok((head, exchange));
            }
            Ok(None) => {}
            Err(e) => return Err(SendError::Failed(e.into())),
        }
        let read =
            std::future::poll_fn(|cx| poll_fill(&mut io, &mut buf, &mut read_size, cx)).await;
        let e = match read {
            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "target closed the connection"),
            Ok(_) => {
                received = true;
                continue;
            }
            Err(e) => e,
        };
        return Err(if !received && resendable && is_connection_error(&e) {
            SendError::Stale(e)
        } else {
            SendError::Failed(e)
        });
    }
}

/// Writes a streamed request body; the write half back once it is complete (dropping it on a
/// failure shuts the connection's sending side, so the target sees the body end).
async fn write_body(
    mut w: OwnedWriteHalf,
    mut body: Incoming,
    framing: RequestFraming,
) -> Option<OwnedWriteHalf> {
    let mut sent: u64 = 0;
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "client request body failed");
                return None;
            }
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                trailers = f.into_trailers().ok();
                break;
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        let result = match framing {
            RequestFraming::Chunked => {
                let mut size = Vec::with_capacity(12);
                h1::encode_chunk_size(&mut size, data.len());
                let mut out = Buf::chain(&size[..], data).chain(&b"\r\n"[..]);
                w.write_all_buf(&mut out).await
            }
            RequestFraming::Length(n) if sent > n => return None,
            _ => w.write_all(&data).await,
        };
        if result.is_err() {
            return None;
        }
    }
    match framing {
        RequestFraming::Chunked => {
            let mut end = Vec::new();
            h1::encode_last_chunk(&mut end, trailers.as_ref());
            w.write_all(&end).await.ok()?;
        }
        RequestFraming::Length(n) if sent != n => return None,
        _ => {}
    }
    Some(w)
}

enum Decoder {
    Length(u64),
    Chunked(ChunkedDecoder),
    Eof,
    Done,
}

/// A target's response body, read from the connection as the client side polls it. It holds
/// the target's outstanding-request count until it is done, and gives the connection back to
/// the target's pool once it has been read to the end (when the target allows it).
pub struct ResponseBody {
    io: Option<Io>,
    buf: BytesMut,
    read_size: usize,
    addr: Arc<String>,
    decoder: Decoder,
    keep_alive: bool,
    guard: Option<Outstanding>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl Exchange {
    /// The response body, framed as the head says (`keep_alive`: whether the target allows
    /// another request on the connection).
    pub fn body(
        self,
        framing: ResponseFraming,
        keep_alive: bool,
        guard: Outstanding,
    ) -> ResponseBody {
        let decoder = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => Decoder::Done,
            ResponseFraming::Length(n) => Decoder::Length(n),
            ResponseFraming::Chunked => Decoder::Chunked(ChunkedDecoder::default()),
            ResponseFraming::Eof => Decoder::Eof,
        };
        let mut body = ResponseBody {
            io: Some(self.io),
            buf: self.buf,
            read_size: self.read_size,
            addr: self.addr,
            decoder,
            keep_alive,
            guard: Some(guard),
        };
        if matches!(body.decoder, Decoder::Done) {
            body.finish(true);
        }
        body
    }

    /// The target's socket and the bytes it sent after the head, for a tunnel.
    pub async fn into_tunnel(self) -> Option<(TcpStream, Bytes)> {
        let stream = self.io.into_stream().await?;
        Some((stream, self.buf.freeze()))
    }
}

impl ResponseBody {
    /// The body is complete (`clean`: ended as framed): the connection goes back to the pool
    /// if it can carry another request, and the request stops counting as outstanding.
    fn finish(&mut self, clean: bool) {
        self.decoder = Decoder::Done;
        let guard = self.guard.take();
        if let Some(io) = self.io.take()
            && clean
            && self.keep_alive
            && self.buf.is_empty()
            && let Some(guard) = &guard
            && let Some(stream) = io.reclaim()
        {
            let target = guard.target();
            if **target.addr.load() == *self.addr {
                target.pool.put(Connection {
                    stream,
                    buf: std::mem::take(&mut self.buf),
                    read_size: self.read_size,
                    addr: self.addr.clone(),
                });
            }
        }
    }

    fn data(&mut self, n: usize) -> Bytes {
        self.buf.split_to(n).freeze()
    }
}

fn unexpected_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "target closed the connection before the end of the body",
    )
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            match &mut this.decoder {
                Decoder::Done => return Poll::Ready(None),
                Decoder::Length(remaining) => {
                    if !this.buf.is_empty() {
                        let n = usize::try_from(*remaining)
                            .map_or(this.buf.len(), |r| r.min(this.buf.len()));
                        *remaining -= n as u64;
                        let done = *remaining == 0;
                        let data = this.data(n);
                        if done {
                            this.finish(true);
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decoder::Chunked(dec) => match dec.decode(&mut this.buf) {
                    Ok(Chunk::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Chunk::Trailers(t)) => {
                        this.finish(true);
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Chunk::End) => {
                        this.finish(true);
                        return Poll::Ready(None);
                    }
                    Ok(Chunk::NeedMore) => {}
                    Err(e) => {
                        this.finish(false);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                Decoder::Eof => {
                    if !this.buf.is_empty() {
                        let n = this.buf.len();
                        return Poll::Ready(Some(Ok(Frame::data(this.data(n)))));
                    }
                }
            }
            let Some(io) = this.io.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(poll_fill(io, &mut this.buf, &mut this.read_size, cx)) {
                Ok(0) => {
                    let clean = matches!(this.decoder, Decoder::Eof);
                    this.finish(false);
                    return Poll::Ready(if clean {
                        None
                    } else {
                        Some(Err(unexpected_eof()))
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    this.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// A connection to `target` (pooled unless `fresh`; `true` with it when it was reused). When
/// `target` refuses it is marked failed and, the first time (`moved_on` still false), the
/// request moves on to another target of `group`, which `target` then names. `None` when no
/// connection could be made.
pub(crate) async fn connect_or_move_on(
    group: &Group,
    target: &mut Arc<TargetRt>,
    moved_on: &mut bool,
    fresh: bool,
) -> Option<(Connection, bool)> {
    loop {
        let addr = target.addr.load_full();
        match target.pool.checkout(&addr, fresh).await {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::debug!(target = %target.key, error = %e, "cannot connect to target");
                target.mark_failed(now_ms());
                match group.pick(None, Some(target)) {
                    Some(next) if !*moved_on => {
                        *moved_on = true;
                        *target = next;
                    }
                    _ => return None,
                }
            }
        }
    }
}
