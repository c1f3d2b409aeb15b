//! UDP listeners of network load balancers (protocols `UDP` and `TCP_UDP`).
//!
//! A datagram from a client address (`ip:port`) not seen before opens a flow: a target is picked
//! as for a TCP connection and a socket of its own, connected to the target, carries the
//! client's datagrams there; the target's replies go back to the client from the listener's
//! socket. A flow lives until it has been idle (no datagram either way) for
//! [`FLOW_IDLE_TIMEOUT`], AWS's fixed UDP idle timeout, or until its target leaves the target
//! group or the group leaves the configuration (checked every few seconds). A listener keeps at most [`MAX_FLOWS`] flows: a datagram that would open one more is
//! dropped (UDP is allowed to lose it) until idle flows expire.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gantry_domain::lb::Action;
use tokio::net::UdpSocket;

use crate::balancer::{Group, Outstanding, now_ms};
use crate::state::{Inner, Routes, choose_group};
use crate::usage::{FlowGuard, FlowProtocol, LbUsage};

/// How long a flow may stay without a datagram in either direction (AWS: 120 s for UDP).
pub(crate) const FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Flows per listener (each holds a socket).
pub(crate) const MAX_FLOWS: usize = 4096;

/// How often idle flows are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Flows by client address, each with the epoch ms of its last datagram (shared with the task
/// relaying the target's replies, which refreshes it too).
#[derive(Debug)]
pub(crate) struct FlowTable<F> {
    flows: HashMap<SocketAddr, (F, Arc<AtomicU64>)>,
    max: usize,
    idle_ms: u64,
}

impl<F> FlowTable<F> {
    pub(crate) fn new(max: usize, idle: Duration) -> Self {
        Self {
            flows: HashMap::new(),
            max,
            idle_ms: idle.as_millis() as u64,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// The flow of `client`, marked active at `now` (epoch ms).
    pub(crate) fn get(&self, client: SocketAddr, now: u64) -> Option<&F> {
        let (flow, last) = self.flows.get(&client)?;
        last.fetch_max(now, Ordering::Relaxed);
        Some(flow)
    }

    /// Whether a new flow may be added (after dropping the idle ones if the table is full).
    pub(crate) fn has_room(&mut self, now: u64) -> bool {
        if self.flows.len() >= self.max {
            self.expire(now, |_| true);
        }
        self.flows.len() < self.max
    }

    /// Adds the flow of `client` with `last`, the epoch ms of its last datagram (a clock the
    /// task relaying replies refreshes too); gives the flow back when the table is full.
    pub(crate) fn insert(
        &mut self,
        client: SocketAddr,
        flow: F,
        last: Arc<AtomicU64>,
    ) -> Result<(), F> {
        let now = last.load(Ordering::Relaxed);
        if !self.flows.contains_key(&client) && !self.has_room(now) {
            return Err(flow);
        }
        self.flows.insert(client, (flow, last));
        Ok(())
    }

    /// Drops the flows idle at `now` and those `keep` refuses; returns how many went.
    pub(crate) fn expire(&mut self, now: u64, keep: impl Fn(&F) -> bool) -> usize {
        let before = self.flows.len();
        let idle_ms = self.idle_ms;
        self.flows.retain(|_, (flow, last)| {
            now.saturating_sub(last.load(Ordering::Relaxed)) < idle_ms && keep(flow)
        });
        before - self.flows.len()
    }
}

/// One client's flow to a target.
#[derive(Debug)]
struct Flow {
    upstream: Arc<UdpSocket>,
    group: Arc<Group>,
    /// Counts the flow on its target (least outstanding requests) for as long as it lives.
    outstanding: Outstanding,
    replies: tokio::task::AbortHandle,
    /// Counts the flow on its load balancer while it lives.
    usage: FlowGuard,
}

impl Flow {
    /// Whether its group is still in the configuration and its target still registered in it
    /// (draining targets are, until their deregistration delay ends).
    fn is_current(&self, routes: &Routes) -> bool {
        let target = self.outstanding.target();
        routes
            .groups
            .get(&self.group.arn)
            .is_some_and(|g| Arc::ptr_eq(g, &self.group))
            && self
                .group
                .targets
                .load()
                .iter()
                .any(|t| Arc::ptr_eq(t, target))
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

/// Binds the UDP socket of a listener.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Serves a UDP listener on `port` until aborted (dropping the flows closes their sockets).
pub(crate) async fn serve(inner: Weak<Inner>, socket: UdpSocket, port: u16) {
    let socket = Arc::new(socket);
    let mut flows: FlowTable<Flow> = FlowTable::new(MAX_FLOWS, FLOW_IDLE_TIMEOUT);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(port, error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = sweep.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                let routes = inner.routes.load();
                let gone = flows.expire(now_ms(), |f| f.is_current(&routes));
                if gone > 0 {
                    tracing::debug!(port, gone, left = flows.len(), "UDP flows closed");
                }
                continue;
            }
        };
        let datagram = &buf[..n];
        let now = now_ms();
        if let Some(flow) = flows.get(client, now) {
            flow.usage.usage().bytes(FlowProtocol::Udp, n as u64);
            // A full send buffer drops the datagram, as the network may.
            let _ = flow.upstream.try_send(datagram);
            continue;
        }
        let Some(inner) = inner.upgrade() else { return };
        if !flows.has_room(now) {
            tracing::debug!(port, %client, "UDP flow table full; datagram dropped");
            continue;
        }
        let Some((group, lb)) = group_for(&inner, port) else {
            continue;
        };
        drop(inner);
        let Some(target) = group.pick(None, None) else {
            continue;
        };
        let upstream = match connect(&target.addr.load_full()).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::debug!(port, target = %target.key, error = %e, "cannot open a UDP flow");
                continue;
            }
        };
        let usage = lb.flow(FlowProtocol::Udp);
        lb.bytes(FlowProtocol::Udp, n as u64);
        let _ = upstream.try_send(datagram);
        let activity = Arc::new(AtomicU64::new(now));
        let replies = tokio::spawn(relay_replies(
            upstream.clone(),
            socket.clone(),
            client,
            activity.clone(),
            lb,
        ))
        .abort_handle();
        let flow = Flow {
            upstream,
            group,
            outstanding: target.begin(),
            replies,
            usage,
        };
        if flows.insert(client, flow, activity).is_err() {
            tracing::debug!(port, %client, "UDP flow table full; datagram dropped");
        }
    }
}

/// The target group a UDP listener's default action forwards to, and its load balancer's
/// counts.
fn group_for(inner: &Inner, port: u16) -> Option<(Arc<Group>, Arc<LbUsage>)> {
    let routes = inner.routes.load();
    let plan = routes.by_port.get(&port)?;
    let Some(Action::Forward { target_groups, .. }) = plan.table.default_action() else {
        return None;
    };
    Some((choose_group(&routes, target_groups, None)?, plan.lb.clone()))
}

/// A socket of its own, connected to the target at `addr` (`host:port`).
async fn connect(addr: &str) -> io::Result<UdpSocket> {
    let remote = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address for {addr}")))?;
    let local: IpAddr = match remote {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    socket.connect(remote).await?;
    Ok(socket)
}

/// Sends the target's datagrams to `client` from the listener's socket.
async fn relay_replies(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Arc<AtomicU64>,
    lb: Arc<LbUsage>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(n) => {
                activity.fetch_max(now_ms(), Ordering::Relaxed);
                lb.bytes(FlowProtocol::Udp, n as u64);
                let _ = listener.try_send_to(&buf[..n], client);
            }
            // An ICMP port unreachable from the target: later datagrams may find it up.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                tracing::debug!(%client, error = %e, "UDP flow receive failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn clock(at: u64) -> Arc<AtomicU64> {
        Arc::new(AtomicU64::new(at))
    }

    #[test]
    fn flows_are_found_by_client_and_expire_when_idle() {
        let mut t = FlowTable::new(10, Duration::from_secs(120));
        t.insert(client(1), "a", clock(1_000)).unwrap();
        t.insert(client(2), "b", clock(1_000)).unwrap();
        assert_eq!(t.get(client(1), 2_000), Some(&"a"));
        assert_eq!(t.get(client(3), 2_000), None);
        // Client 1 was active at 2 s, client 2 last at 1 s: at 121.5 s only client 2 is idle.
        assert_eq!(t.expire(121_500, |_| true), 1);
        assert_eq!(t.get(client(1), 121_500), Some(&"a"));
        assert_eq!(t.get(client(2), 121_500), None);
        // Activity refreshed from elsewhere (a reply) keeps a flow.
        let replies = clock(121_500);
        t.insert(client(4), "d", replies.clone()).unwrap();
        replies.store(200_000, Ordering::Relaxed);
        assert_eq!(
            t.expire(241_600, |_| true),
            1,
            "client 1 idle since 121.5 s"
        );
        assert_eq!(t.get(client(4), 241_600), Some(&"d"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_makes_room_from_idle_flows() {
        let mut t = FlowTable::new(2, Duration::from_secs(120));
        t.insert(client(1), 1, clock(0)).unwrap();
        t.insert(client(2), 2, clock(100_000)).unwrap();
        assert!(!t.has_room(110_000));
        assert_eq!(t.insert(client(3), 3, clock(110_000)), Err(3));
        // Replacing an existing client's flow needs no room.
        t.insert(client(2), 22, clock(110_000)).unwrap();
        assert_eq!(t.get(client(2), 110_000), Some(&22));
        // At 125 s client 1 is idle: it makes room for client 3.
        t.insert(client(3), 3, clock(125_000)).unwrap();
        assert_eq!(t.get(client(1), 125_000), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn flows_refused_by_keep_are_dropped() {
        let dropped = Arc::new(());
        let mut t = FlowTable::new(10, Duration::from_secs(120));
        t.insert(client(1), (1, dropped.clone()), clock(0)).unwrap();
        t.insert(client(2), (2, dropped.clone()), clock(0)).unwrap();
        assert_eq!(Arc::strong_count(&dropped), 3);
        assert_eq!(t.expire(1_000, |(n, _)| *n != 2), 1);
        assert_eq!(
            Arc::strong_count(&dropped),
            2,
            "the flow's value is dropped"
        );
        assert!(t.get(client(2), 1_000).is_none());
        assert!(t.get(client(1), 1_000).is_some());
    }
}
