//! Keep-alive connections to targets and each target's pool of idle ones. Knows nothing of
//! balancing or of the exchanges run over a connection ([`crate::upstream`]).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::net::TcpStream;

/// Idle connections kept per target.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (backends commonly close
/// theirs after 60-75 s; reusing one just as it closes would fail a request).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First read size of a connection; it doubles while reads fill it, up to [`MAX_READ`].
pub(crate) const MIN_READ: usize = 16 * 1024;
pub(crate) const MAX_READ: usize = 256 * 1024;
/// A pooled connection keeps a read buffer up to this size.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

/// A keep-alive connection to a target.
#[derive(Debug)]
pub struct Connection {
    pub(crate) stream: TcpStream,
    /// Bytes read but not consumed (empty between exchanges).
    pub(crate) buf: BytesMut,
    pub(crate) read_size: usize,
    /// The address it was made to.
    pub(crate) addr: Arc<String>,
}

struct Idle {
    conn: Connection,
    since: Instant,
}

/// A target's idle connections.
#[derive(Default)]
pub struct UpstreamPool {
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("idle", &self.idle.lock().len())
            .finish()
    }
}

impl UpstreamPool {
    /// The most recently used idle connection that is fresh.
    fn take(&self) -> Option<Connection> {
        let mut idle = self.idle.lock();
        let c = idle.pop()?;
        if c.since.elapsed() > IDLE_TIMEOUT {
            // Everything below is older still.
            idle.clear();
            return None;
        }
        Some(c.conn)
    }

    /// Puts a connection whose exchange is complete back.
    pub(crate) fn put(&self, mut conn: Connection) {
        if conn.buf.capacity() > MAX_KEPT_BUFFER {
            conn.buf = BytesMut::new();
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// The number of idle connections.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// Closes every idle connection (the target's address changed).
    pub fn clear(&self) {
        self.idle.lock().clear();
    }

    /// A connection ready for a request: an idle one (`reused` true) unless `fresh`, or a new
    /// one to `addr`. Fails only when a new connection cannot be made.
    pub async fn checkout(
        &self,
        addr: &Arc<String>,
        fresh: bool,
    ) -> io::Result<(Connection, bool)> {
        while !fresh && let Some(c) = self.take() {
            if c.addr == *addr && is_open(&c.stream) {
                return Ok((c, true));
            }
        }
        connect(addr).await.map(|c| (c, false))
    }
}

/// Whether an idle connection still looks usable: nothing to read and not closed by the
/// target as far as the socket knows (a readiness check, no system call when nothing
/// arrived since the last read).
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

async fn connect(addr: &Arc<String>) -> io::Result<Connection> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str()))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(Connection {
        stream,
        buf: BytesMut::new(),
        read_size: MIN_READ,
        addr: addr.clone(),
    })
}
