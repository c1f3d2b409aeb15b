//! Security groups on the host's packet filter.
//!
//! The agent follows its host's [`NetworkPolicy`] (`GET /ec2/v1/network-policy`) and enforces it
//! in iptables chains it owns entirely, hooked from `DOCKER-USER` (the chain Docker leaves to
//! users, evaluated first in `FORWARD`, which bridged traffic traverses): `GANTRY-<key>` and its
//! per-interface sub-chains. Each policy replaces the chains' contents atomically
//! (`iptables-restore --noflush`, which only touches the chains it names); rules Gantry did not
//! create are never read or changed. An agent with no awsvpc task on its host has no chain; the
//! chains are removed when the last one goes, on agent shutdown with none left, and by
//! `gantry agent --uninstall`.
//!
//! Per packet: established and related traffic of a task interface is accepted (security groups
//! are stateful); traffic between a task interface and another VPC is dropped (VPCs are not
//! routed to each other); a packet from a task interface must pass one of its egress rules, and a
//! packet to a task interface one of its ingress rules, else it is dropped; traffic that passed
//! is accepted when it stays in the VPC (Docker's isolation between bridges would drop it
//! otherwise), and left to Docker's rules when it leaves the VPC. Traffic originating on the
//! host itself (the load balancer, health checks) does not traverse `FORWARD` and is not
//! filtered.
//!
//! [`render`] is pure: policy in, `iptables-restore` input out.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use gantry_domain::network::{NetworkPolicy, PolicyRule};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// The chain Docker provides for user rules.
const HOOK: &str = "DOCKER-USER";

/// The name of this agent's main chain: `GANTRY-` and 8 hex characters derived from `identity`
/// (the container instance ARN), so several agents sharing one Engine keep apart.
pub fn chain_name(identity: &str) -> String {
    // FNV-1a: stable across releases and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("GANTRY-{:08x}", h as u32)
}

fn match_of(r: &PolicyRule) -> String {
    match r.protocol.as_str() {
        "-1" => String::new(),
        p @ ("tcp" | "udp") => {
            if r.from_port < 0 {
                format!(" -p {p}")
            } else if r.from_port == r.to_port {
                format!(" -p {p} -m {p} --dport {}", r.from_port)
            } else {
                format!(" -p {p} -m {p} --dport {}:{}", r.from_port, r.to_port)
            }
        }
        "icmp" => match (r.from_port, r.to_port) {
            (-1, _) => " -p icmp".to_owned(),
            (t, -1) => format!(" -p icmp -m icmp --icmp-type {t}"),
            (t, c) => format!(" -p icmp -m icmp --icmp-type {t}/{c}"),
        },
        n => format!(" -p {n}"),
    }
}

/// The `iptables-restore --noflush` input that makes `chain` and its sub-chains enforce
/// `policy`, deleting the sub-chains of `existing` it no longer uses.
pub fn render(chain: &str, policy: &NetworkPolicy, existing: &BTreeSet<String>) -> String {
    let est = format!("{chain}-E");
    let mut wanted: Vec<String> = vec![chain.to_owned(), est.clone()];
    for n in 0..policy.interfaces.len() {
        wanted.push(format!("{chain}-I{n}"));
        wanted.push(format!("{chain}-O{n}"));
    }
    let mut out = String::from("*filter\n");
    for c in wanted
        .iter()
        .chain(existing.iter().filter(|c| !wanted.contains(c)))
    {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let _ = writeln!(
        out,
        "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j {est}"
    );
    for i in &policy.interfaces {
        let _ = writeln!(out, "-A {est} -s {}/32 -j ACCEPT", i.ip);
        let _ = writeln!(out, "-A {est} -d {}/32 -j ACCEPT", i.ip);
    }
    for i in &policy.interfaces {
        for o in &policy.other_vpc_cidrs {
            let _ = writeln!(out, "-A {chain} -s {}/32 -d {o} -j DROP", i.ip);
            let _ = writeln!(out, "-A {chain} -s {o} -d {}/32 -j DROP", i.ip);
        }
    }
    for (n, i) in policy.interfaces.iter().enumerate() {
        let _ = writeln!(out, "-A {chain} -s {}/32 -j {chain}-O{n}", i.ip);
    }
    for (n, i) in policy.interfaces.iter().enumerate() {
        let _ = writeln!(out, "-A {chain} -d {}/32 -j {chain}-I{n}", i.ip);
    }
    for i in &policy.interfaces {
        let _ = writeln!(out, "-A {chain} -s {}/32 -d {} -j ACCEPT", i.ip, i.vpc_cidr);
    }
    for (n, i) in policy.interfaces.iter().enumerate() {
        let ingress = format!("{chain}-I{n}");
        for r in &i.ingress {
            let m = match_of(r);
            for c in &r.cidrs {
                let _ = writeln!(out, "-A {ingress} -s {c}{m} -j ACCEPT");
            }
        }
        let _ = writeln!(out, "-A {ingress} -j DROP");
        let egress = format!("{chain}-O{n}");
        for r in &i.egress {
            let m = match_of(r);
            for c in &r.cidrs {
                let _ = writeln!(out, "-A {egress} -d {c}{m} -j RETURN");
            }
        }
        let _ = writeln!(out, "-A {egress} -j DROP");
    }
    for c in existing.iter().filter(|c| !wanted.contains(c)) {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    out
}

/// Why the packet filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetfilterError(pub String);

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetfilterError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| NetfilterError(format!("cannot run {program}: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| NetfilterError(format!("{program}: {e}")))?;
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| NetfilterError(format!("{program} did not finish in 30 s")))?
        .map_err(|e| NetfilterError(format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(NetfilterError(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// This agent's chains on the host's packet filter.
#[derive(Debug)]
pub struct Netfilter {
    chain: String,
    /// Interfaces whose rules are in place, for tasks waiting to start.
    applied: watch::Sender<BTreeSet<String>>,
    /// Whether the packet filter is usable here (checked at start).
    usable: Result<(), NetfilterError>,
    lock: tokio::sync::Mutex<()>,
}

/// Checks that this host can enforce security groups: `iptables` runs with root powers,
/// Docker's `DOCKER-USER` chain exists, and bridged traffic traverses iptables.
pub async fn probe() -> Result<(), NetfilterError> {
    run("iptables", &["--wait", "-S", HOOK], None)
        .await
        .map_err(|e| NetfilterError(format!("the DOCKER-USER chain is not usable: {e}")))?;
    match std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables") {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => Err(NetfilterError(
            "net.bridge.bridge-nf-call-iptables is 0: bridged traffic bypasses iptables".into(),
        )),
        Err(e) => Err(NetfilterError(format!(
            "br_netfilter is not loaded (net.bridge.bridge-nf-call-iptables: {e})"
        ))),
    }
}

impl Netfilter {
    /// This agent's chains; `usable` is what [`probe`] found.
    pub fn new(identity: &str, usable: Result<(), NetfilterError>) -> Self {
        if let Err(e) = &usable {
            tracing::error!(error = %e, "security groups cannot be enforced on this host; awsvpc tasks will not start");
        }
        Self {
            chain: chain_name(identity),
            applied: watch::channel(BTreeSet::new()).0,
            usable,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether security groups can be enforced here, and why not.
    pub fn usable(&self) -> Result<(), NetfilterError> {
        self.usable.clone()
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Our chains as the filter table has them now.
    async fn existing(&self) -> Result<BTreeSet<String>, NetfilterError> {
        let dump = run("iptables-save", &["-t", "filter"], None).await?;
        let sub = format!("{}-", self.chain);
        Ok(dump
            .lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c == self.chain || c.starts_with(&sub))
            .map(str::to_owned)
            .collect())
    }

    /// Replaces the rules with `policy`'s, atomically, and hooks the chain from `DOCKER-USER`.
    /// A policy without interfaces (no awsvpc task on this host) leaves no chain at all.
    pub async fn apply(&self, policy: &NetworkPolicy) -> Result<(), NetfilterError> {
        self.usable()?;
        let _one = self.lock.lock().await;
        if policy.interfaces.is_empty() {
            self.remove_locked().await?;
            self.applied.send_replace(BTreeSet::new());
            return Ok(());
        }
        let existing = self.existing().await?;
        let input = render(&self.chain, policy, &existing);
        run("iptables-restore", &["--noflush", "--wait"], Some(&input)).await?;
        if run("iptables", &["--wait", "-C", HOOK, "-j", &self.chain], None)
            .await
            .is_err()
        {
            run(
                "iptables",
                &["--wait", "-I", HOOK, "1", "-j", &self.chain],
                None,
            )
            .await?;
        }
        let ids: BTreeSet<String> = policy.interfaces.iter().map(|i| i.eni_id.clone()).collect();
        tracing::info!(chain = %self.chain, interfaces = ids.len(), "security groups applied");
        self.applied.send_replace(ids);
        Ok(())
    }

    /// Waits until the rules of interface `eni_id` are in place.
    pub async fn wait_applied(
        &self,
        eni_id: &str,
        timeout: Duration,
    ) -> Result<(), NetfilterError> {
        self.usable()?;
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.contains(eni_id)))
            .await
            .map_err(|_| {
                NetfilterError(format!(
                    "the security groups of {eni_id} were not applied within {}s",
                    timeout.as_secs()
                ))
            })?
            .map(|_| ())
            .map_err(|_| NetfilterError("the security-group follower stopped".into()))
    }

    /// Unhooks and deletes every chain of this agent.
    pub async fn remove(&self) -> Result<(), NetfilterError> {
        if self.usable.is_err() {
            return Ok(());
        }
        let _one = self.lock.lock().await;
        self.remove_locked().await?;
        self.applied.send_replace(BTreeSet::new());
        Ok(())
    }

    async fn remove_locked(&self) -> Result<(), NetfilterError> {
        while run("iptables", &["--wait", "-D", HOOK, "-j", &self.chain], None)
            .await
            .is_ok()
        {}
        let existing = self.existing().await?;
        if existing.is_empty() {
            return Ok(());
        }
        let mut input = String::from("*filter\n");
        for c in &existing {
            let _ = writeln!(input, ":{c} - [0:0]");
        }
        for c in &existing {
            let _ = writeln!(input, "-X {c}");
        }
        input.push_str("COMMIT\n");
        run("iptables-restore", &["--noflush", "--wait"], Some(&input)).await?;
        tracing::info!(chain = %self.chain, "security-group chains removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_domain::network::InterfacePolicy;

    fn rule(p: &str, from: i64, to: i64, cidrs: &[&str]) -> PolicyRule {
        PolicyRule {
            protocol: p.into(),
            from_port: from,
            to_port: to,
            cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn chain_names_are_stable_and_short() {
        let a = chain_name("arn:aws:ecs:us-east-1:0:container-instance/c/1");
        assert_eq!(
            a,
            chain_name("arn:aws:ecs:us-east-1:0:container-instance/c/1")
        );
        assert_ne!(
            a,
            chain_name("arn:aws:ecs:us-east-1:0:container-instance/c/2")
        );
        assert_eq!(a.len(), 15);
        assert!(format!("{a}-I99999").len() <= 28);
    }

    #[test]
    fn renders_checks_per_interface_and_drops_what_no_rule_admits() {
        let policy = NetworkPolicy {
            vpc_cidrs: vec!["10.1.0.0/16".into()],
            other_vpc_cidrs: vec!["10.2.0.0/16".into()],
            interfaces: vec![InterfacePolicy {
                eni_id: "eni-1".into(),
                ip: "10.1.0.10".into(),
                vpc_cidr: "10.1.0.0/16".into(),
                ingress: vec![
                    rule("tcp", 80, 80, &["10.1.0.11/32"]),
                    rule("udp", 1000, 2000, &["0.0.0.0/0"]),
                    rule("icmp", 8, -1, &["10.0.0.0/8"]),
                ],
                egress: vec![rule("-1", -1, -1, &["0.0.0.0/0"])],
            }],
        };
        let old: BTreeSet<String> = ["GANTRY-x-I0", "GANTRY-x-I7", "GANTRY-x-O7"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let text = render("GANTRY-x", &policy, &old);
        let expected = "*filter
:GANTRY-x - [0:0]
:GANTRY-x-E - [0:0]
:GANTRY-x-I0 - [0:0]
:GANTRY-x-O0 - [0:0]
:GANTRY-x-I7 - [0:0]
:GANTRY-x-O7 - [0:0]
-A GANTRY-x -m conntrack --ctstate RELATED,ESTABLISHED -j GANTRY-x-E
-A GANTRY-x-E -s 10.1.0.10/32 -j ACCEPT
-A GANTRY-x-E -d 10.1.0.10/32 -j ACCEPT
-A GANTRY-x -s 10.1.0.10/32 -d 10.2.0.0/16 -j DROP
-A GANTRY-x -s 10.2.0.0/16 -d 10.1.0.10/32 -j DROP
-A GANTRY-x -s 10.1.0.10/32 -j GANTRY-x-O0
-A GANTRY-x -d 10.1.0.10/32 -j GANTRY-x-I0
-A GANTRY-x -s 10.1.0.10/32 -d 10.1.0.0/16 -j ACCEPT
-A GANTRY-x-I0 -s 10.1.0.11/32 -p tcp -m tcp --dport 80 -j ACCEPT
-A GANTRY-x-I0 -s 0.0.0.0/0 -p udp -m udp --dport 1000:2000 -j ACCEPT
-A GANTRY-x-I0 -s 10.0.0.0/8 -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A GANTRY-x-I0 -j DROP
-A GANTRY-x-O0 -d 0.0.0.0/0 -j RETURN
-A GANTRY-x-O0 -j DROP
-X GANTRY-x-I7
-X GANTRY-x-O7
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn an_empty_policy_leaves_an_empty_chain() {
        let text = render("GANTRY-x", &NetworkPolicy::default(), &BTreeSet::new());
        assert_eq!(
            text,
            "*filter\n:GANTRY-x - [0:0]\n:GANTRY-x-E - [0:0]\n-A GANTRY-x -m conntrack --ctstate RELATED,ESTABLISHED -j GANTRY-x-E\nCOMMIT\n"
        );
    }
}
