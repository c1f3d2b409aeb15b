//! Keep-alive HTTP/1.1 connections to targets.
//!
//! Each target keeps a stack of idle connections (last in, first out, so the warmest are
//! reused and the others time out). A connection goes back on the stack when its response body
//! has been read to the end (the proxy's response body does that); one whose body was abandoned is dropped, which
//! closes it. Connections are made before a request is handed over, so a refused connection
//! leaves the request intact for another target.

use std::io;
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::proxy::ProxyBody;

/// Idle connections kept per target.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (backends commonly close
/// theirs after 60-75 s; reusing one just as it closes would fail a request).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub type Sender = http1::SendRequest<ProxyBody>;

struct Idle {
    sender: Sender,
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
    /// The most recently used idle connection that is still open and fresh.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock();
        while let Some(c) = idle.pop() {
            if c.sender.is_closed() {
                continue;
            }
            if c.since.elapsed() > IDLE_TIMEOUT {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            return Some(c.sender);
        }
        None
    }

    /// Puts a connection whose exchange is complete back.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes every idle connection (the target's address changed).
    pub fn clear(&self) {
        self.idle.lock().clear();
    }

    /// A connection ready for a request: an idle one (`reused` true) or a new one to `addr`.
    /// Fails only when a new connection cannot be made.
    pub async fn checkout(&self, addr: &str) -> io::Result<(Sender, bool)> {
        while let Some(mut s) = self.take() {
            // Ready at once unless its connection task has not yet seen the end of the
            // previous exchange; an error means it closed.
            if s.ready().await.is_ok() {
                return Ok((s, true));
            }
        }
        connect(addr).await.map(|s| (s, false))
    }
}

async fn connect(addr: &str) -> io::Result<Sender> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "target connection ended with an error");
        }
    });
    Ok(sender)
}
