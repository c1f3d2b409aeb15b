//! Placement throughput and latency over a large simulated cluster.
//!
//! ```text
//! cargo run --release -p gantry-scheduler --example bench_place -- [instances] [placements] [seed]
//! ```
//!
//! Defaults: 10,000 instances in 3 availability zones with mixed sizes, 50,000 placements of
//! mixed task sizes across 50 services, each one a separate decision with
//! `spread(attribute:ecs.availability-zone)` + `binpack(memory)` and one `memberOf`.
//!
//! Part 1 keeps one `Placer` over the snapshot (how a reconcile pass or a hot RunTask path uses
//! it) and times every decision. Part 2 times the one-shot `place()` (index built per call) for
//! RunTask-like calls of 10 tasks.

use std::time::Instant;

use gantry_scheduler::{
    BinpackField, InstanceView, PlacementConstraint, PlacementRequest, PlacementResult,
    PlacementStrategy, Placer, SchedRng, SpreadField, TaskDemand, cql, place,
};

fn cluster(n: usize, rng: &mut SchedRng) -> Vec<InstanceView> {
    // (type, cpu units, MiB): what the ECS agent registers for these EC2 sizes.
    const SIZES: [(&str, i64, i64); 6] = [
        ("m5.large", 2048, 7680),
        ("m5.xlarge", 4096, 15_630),
        ("m5.2xlarge", 8192, 31_600),
        ("c5.xlarge", 4096, 7_450),
        ("r5.xlarge", 4096, 31_600),
        ("t3.medium", 2048, 3_900),
    ];
    (0..n)
        .map(|i| {
            let (ty, cpu, mem) = SIZES[rng.below(SIZES.len() as u64) as usize];
            let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][i % 3];
            InstanceView {
                id: format!("{i:032x}"),
                ec2_instance_id: format!("i-{i:017x}"),
                agent_version: Some("1.105.1".into()),
                registered_at: 1_700_000_000_000 + i as u64,
                attributes: vec![
                    ("ecs.availability-zone".into(), Some(zone.into())),
                    ("ecs.instance-type".into(), Some(ty.into())),
                    ("ecs.os-type".into(), Some("linux".into())),
                    ("ecs.cpu-architecture".into(), Some("x86_64".into())),
                    ("stack".into(), Some(["blue", "green"][i % 2].into())),
                    ("ecs.capability.task-eni".into(), None),
                ],
                remaining_cpu: cpu,
                remaining_memory: mem,
                used_tcp_ports: vec![22, 2375, 2376, 51678, 51679],
                ..InstanceView::default()
            }
        })
        .collect()
}

/// CPU time this thread has run, in nanoseconds (Linux `schedstat`), to tell the scheduler's
/// own cost from time lost to other processes on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let instances: usize = args.first().map_or(Ok(10_000), |s| s.parse())?;
    let placements: usize = args.get(1).map_or(Ok(50_000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;

    let mut rng = SchedRng::seed_from_u64(seed);
    let view = cluster(instances, &mut rng);
    let member_of = cql::parse("attribute:ecs.instance-type =~ m5.* or attribute:stack == blue")?;
    let strategy = vec![
        PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        PlacementStrategy::Binpack(BinpackField::Memory),
    ];
    const SHAPES: [(u32, u32); 4] = [(256, 512), (512, 1024), (1024, 2048), (128, 256)];
    let requests: Vec<PlacementRequest> = (0..200)
        .map(|k| {
            let (cpu, memory) = SHAPES[k % SHAPES.len()];
            PlacementRequest {
                task: TaskDemand {
                    cpu,
                    memory,
                    dynamic_tcp_ports: 1,
                    ..TaskDemand::default()
                },
                count: 1,
                group: format!("service:svc-{}", k % 50),
                constraints: vec![PlacementConstraint::MemberOf(member_of.clone())],
                strategy: strategy.clone(),
                requires_attributes: Vec::new(),
            }
        })
        .collect();

    println!(
        "cluster: {instances} instances, 3 AZs, 6 instance types; strategy spread(AZ)+binpack(memory); memberOf: {member_of}"
    );

    // Part 1: a long-lived placer, one decision per call.
    let build = Instant::now();
    let mut placer = Placer::new(&view);
    let build_ms = build.elapsed().as_secs_f64() * 1e3;
    let mut lat = Vec::with_capacity(placements);
    let mut placed = 0usize;
    let mut failed = 0usize;
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    for k in 0..placements {
        let t = Instant::now();
        let r = placer.place(&requests[k % requests.len()], &mut rng);
        lat.push(t.elapsed().as_nanos() as u64);
        match r.first() {
            Some(PlacementResult::Placed { .. }) => placed += 1,
            _ => failed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => secs,
    };
    lat.sort_unstable();
    println!(
        "placer: on-CPU time {cpu_secs:.2} s = {:.0} placements/s per core-second",
        placements as f64 / cpu_secs
    );
    println!(
        "placer (one index per snapshot, built in {build_ms:.1} ms): {placements} decisions in {secs:.2} s = {:.0} placements/s; p50 {:.1} us, p99 {:.1} us, max {:.1} us; placed {placed}, failed {failed}",
        placements as f64 / secs,
        percentile(&lat, 0.50) as f64 / 1e3,
        percentile(&lat, 0.99) as f64 / 1e3,
        lat.last().copied().unwrap_or(0) as f64 / 1e3,
    );

    // Part 2: one-shot place() per RunTask-like call of 10 tasks (index built per call).
    let calls = 200usize;
    let mut lat = Vec::with_capacity(calls);
    let start = Instant::now();
    for k in 0..calls {
        let mut req = requests[k % requests.len()].clone();
        req.count = 10;
        let t = Instant::now();
        let r = place(&req, &view, &mut rng);
        lat.push(t.elapsed().as_nanos() as u64);
        assert_eq!(r.len(), 10);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "one-shot place() with count=10: {calls} calls in {secs:.2} s = {:.0} placements/s; per call p50 {:.2} ms, p99 {:.2} ms",
        (calls * 10) as f64 / secs,
        percentile(&lat, 0.50) as f64 / 1e6,
        percentile(&lat, 0.99) as f64 / 1e6,
    );
    Ok(())
}
