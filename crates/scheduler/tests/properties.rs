//! Property tests of placement. Case counts are moderate by default; set `PROPTEST_CASES` for
//! more (for example `PROPTEST_CASES=5000 cargo test -p gantry-scheduler --release`).

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use gantry_scheduler::{
    BinpackField, Expr, InstanceView, PlacementConstraint, PlacementRequest, PlacementResult,
    PlacementStrategy, Placer, RequiredAttribute, SchedRng, SpreadField, TaskDemand, cql, place,
};
use proptest::prelude::*;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

const ZONES: [&str; 3] = ["z1", "z2", "z3"];
const STACKS: [Option<&str>; 3] = [Some("blue"), Some("green"), None];
const GROUPS: [&str; 3] = ["service:a", "service:b", "family:c"];
const EXPRESSIONS: [&str; 6] = [
    "attribute:stack == blue",
    "attribute:stack in [blue, green] and attribute:zone != z3",
    "not(attribute:stack exists) or attribute:zone =~ z[12]",
    "not(task:group == service:a)",
    "runningTasksCount < 3",
    "attribute:stack != green && (attribute:zone == z1 || task:group == family:c)",
];

#[derive(Debug, Clone)]
struct Inst {
    cpu: i64,
    mem: i64,
    zone: usize,
    stack: usize,
    tcp: Vec<u16>,
    udp: Vec<u16>,
    connected: bool,
    active: bool,
    groups: Vec<usize>,
    running: u32,
    enis: i64,
}

fn inst_strategy() -> impl Strategy<Value = Inst> {
    (
        (0i64..4096, 0i64..8192, 0usize..3, 0usize..3),
        (
            proptest::sample::subsequence(vec![80u16, 443, 8080], 0..=3),
            proptest::sample::subsequence(vec![53u16, 8080], 0..=2),
        ),
        (proptest::bool::weighted(0.9), proptest::bool::weighted(0.9)),
        (proptest::collection::vec(0usize..3, 0..3), 0u32..5, 0i64..4),
    )
        .prop_map(
            |(
                (cpu, mem, zone, stack),
                (tcp, udp),
                (connected, active),
                (groups, running, enis),
            )| Inst {
                cpu,
                mem,
                zone,
                stack,
                tcp,
                udp,
                connected,
                active,
                groups,
                running,
                enis,
            },
        )
}

fn to_view(insts: &[Inst]) -> Vec<InstanceView> {
    insts
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let mut attributes = vec![("zone".to_owned(), Some(ZONES[x.zone].to_owned()))];
            if let Some(s) = STACKS[x.stack] {
                attributes.push(("stack".to_owned(), Some(s.to_owned())));
            }
            InstanceView {
                id: format!("ci-{i}"),
                ec2_instance_id: format!("i-{i}"),
                active: x.active,
                agent_connected: x.connected,
                attributes,
                remaining_cpu: x.cpu,
                remaining_memory: x.mem,
                remaining_enis: x.enis,
                used_tcp_ports: x.tcp.clone(),
                used_udp_ports: x.udp.clone(),
                dynamic_port_range: (60000, 60003),
                running_tasks_count: x.running,
                task_groups: x.groups.iter().map(|g| GROUPS[*g].to_owned()).collect(),
                ..InstanceView::default()
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Req {
    cpu: u32,
    mem: u32,
    count: u32,
    tcp: Vec<u16>,
    udp: Vec<u16>,
    dynamic: u32,
    group: usize,
    distinct: bool,
    exprs: Vec<usize>,
    strategy: Vec<u8>,
    require_stack: bool,
    enis: u32,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        (0u32..2048, 0u32..4096, 1u32..8),
        (
            proptest::sample::subsequence(vec![80u16, 443, 60001], 0..=2),
            proptest::sample::subsequence(vec![53u16], 0..=1),
            0u32..3,
        ),
        (0usize..3, proptest::bool::weighted(0.3), 0u32..2),
        (
            proptest::collection::vec(0usize..EXPRESSIONS.len(), 0..2),
            proptest::collection::vec(0u8..5, 0..3),
            proptest::bool::weighted(0.2),
        ),
    )
        .prop_map(
            |(
                (cpu, mem, count),
                (tcp, udp, dynamic),
                (group, distinct, enis),
                (exprs, strategy, require_stack),
            )| Req {
                cpu,
                mem,
                count,
                tcp,
                udp,
                dynamic,
                group,
                distinct,
                exprs,
                strategy,
                require_stack,
                enis,
            },
        )
}

fn strategy_of(code: u8) -> PlacementStrategy {
    match code {
        0 => PlacementStrategy::Binpack(BinpackField::Memory),
        1 => PlacementStrategy::Binpack(BinpackField::Cpu),
        2 => PlacementStrategy::Spread(SpreadField::Attribute("zone".into())),
        3 => PlacementStrategy::Spread(SpreadField::InstanceId),
        _ => PlacementStrategy::Random,
    }
}

fn to_request(r: &Req, parsed: &[Expr]) -> PlacementRequest {
    let mut constraints: Vec<PlacementConstraint> = r
        .exprs
        .iter()
        .map(|e| PlacementConstraint::MemberOf(parsed[*e].clone()))
        .collect();
    if r.distinct {
        constraints.push(PlacementConstraint::DistinctInstance);
    }
    PlacementRequest {
        task: TaskDemand {
            cpu: r.cpu,
            memory: r.mem,
            tcp_ports: r.tcp.clone(),
            udp_ports: r.udp.clone(),
            dynamic_tcp_ports: r.dynamic,
            dynamic_udp_ports: 0,
            enis: r.enis,
        },
        count: r.count,
        group: GROUPS[r.group].to_owned(),
        constraints,
        strategy: r.strategy.iter().map(|c| strategy_of(*c)).collect(),
        requires_attributes: if r.require_stack {
            vec![RequiredAttribute::named("stack")]
        } else {
            Vec::new()
        },
    }
}

/// Model of one instance as placements happen, kept by the test independently of the placer.
#[derive(Debug, Clone)]
struct Model {
    cpu: i64,
    mem: i64,
    tcp: HashSet<u16>,
    udp: HashSet<u16>,
    dynamic_free: i64,
    groups: Vec<String>,
    running: u32,
    enis: i64,
}

fn run_and_check(insts: &[Inst], reqs: &[Req], seed: u64) -> Vec<Vec<PlacementResult>> {
    let parsed: Vec<Expr> = EXPRESSIONS.iter().map(|e| cql::parse(e).unwrap()).collect();
    let view = to_view(insts);
    let mut model: Vec<Model> = view
        .iter()
        .map(|v| {
            let tcp: HashSet<u16> = v.used_tcp_ports.iter().copied().collect();
            let in_range = tcp.iter().filter(|p| (60000..=60003).contains(*p)).count() as i64;
            Model {
                cpu: v.remaining_cpu,
                mem: v.remaining_memory,
                udp: v.used_udp_ports.iter().copied().collect(),
                dynamic_free: 4 - in_range,
                tcp,
                groups: v.task_groups.clone(),
                running: v.running_tasks_count,
                enis: v.remaining_enis,
            }
        })
        .collect();
    let mut placer = Placer::new(&view);
    let mut rng = SchedRng::seed_from_u64(seed);
    let mut all = Vec::new();
    for r in reqs {
        let request = to_request(r, &parsed);
        let results = placer.place(&request, &mut rng);
        assert_eq!(results.len(), r.count as usize);
        for res in &results {
            let PlacementResult::Placed { instance } = *res else {
                continue;
            };
            let v = &view[instance];
            let m = &mut model[instance];
            assert!(
                v.active && v.agent_connected,
                "placed on an unusable instance"
            );
            // Constraints, evaluated on the instance as it was before this task.
            let overlay = InstanceView {
                task_groups: m.groups.clone(),
                running_tasks_count: m.running,
                ..v.clone()
            };
            for c in &request.constraints {
                match c {
                    PlacementConstraint::MemberOf(e) => {
                        assert!(e.matches(&overlay), "memberOf {e} broken on {instance}")
                    }
                    PlacementConstraint::DistinctInstance => assert!(
                        !m.groups.contains(&request.group),
                        "distinctInstance broken on {instance}"
                    ),
                }
            }
            if r.require_stack {
                assert!(v.attribute("stack").is_some());
            }
            // Resources.
            m.cpu -= i64::from(r.cpu);
            m.mem -= i64::from(r.mem);
            assert!(m.cpu >= 0, "cpu over-committed on {instance}");
            assert!(m.mem >= 0, "memory over-committed on {instance}");
            m.enis -= i64::from(r.enis);
            assert!(
                m.enis >= 0,
                "network interfaces over-committed on {instance}"
            );
            for p in &r.tcp {
                assert!(m.tcp.insert(*p), "tcp port {p} double-booked on {instance}");
                if (60000..=60003).contains(p) {
                    m.dynamic_free -= 1;
                }
            }
            for p in &r.udp {
                assert!(m.udp.insert(*p), "udp port {p} double-booked on {instance}");
            }
            m.dynamic_free -= i64::from(r.dynamic);
            assert!(
                m.dynamic_free >= 0,
                "dynamic ports over-committed on {instance}"
            );
            m.groups.push(request.group.clone());
            m.running += 1;
        }
        all.push(results);
    }
    all
}

proptest! {
    #![proptest_config(config(256))]

    /// Never over-commits CPU, memory, network interfaces or dynamic ports; never two tasks on one host port;
    /// `distinctInstance`, `memberOf` and `requiresAttributes` always hold; only ACTIVE and
    /// connected instances are used.
    #[test]
    fn placements_respect_resources_ports_and_constraints(
        insts in proptest::collection::vec(inst_strategy(), 0..30),
        reqs in proptest::collection::vec(req_strategy(), 1..6),
        seed in any::<u64>(),
    ) {
        run_and_check(&insts, &reqs, seed);
    }

    /// The same seed gives the same placement.
    #[test]
    fn same_seed_same_placement(
        insts in proptest::collection::vec(inst_strategy(), 1..30),
        reqs in proptest::collection::vec(req_strategy(), 1..5),
        seed in any::<u64>(),
    ) {
        prop_assert_eq!(run_and_check(&insts, &reqs, seed), run_and_check(&insts, &reqs, seed));
    }

    /// With room everywhere, spread keeps the per-value task counts within 1.
    #[test]
    fn spread_keeps_values_within_one(
        per_zone in proptest::collection::vec(1usize..6, 2..5),
        tasks in 1u32..60,
        then_binpack in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut view = Vec::new();
        for (z, n) in per_zone.iter().enumerate() {
            for _ in 0..*n {
                view.push(InstanceView {
                    attributes: vec![("zone".into(), Some(format!("z{z}")))],
                    remaining_cpu: 1 << 20,
                    remaining_memory: 1 << 20,
                    ..InstanceView::default()
                });
            }
        }
        let mut strategy = vec![PlacementStrategy::Spread(SpreadField::Attribute("zone".into()))];
        if then_binpack {
            strategy.push(PlacementStrategy::Binpack(BinpackField::Memory));
        }
        let request = PlacementRequest {
            task: TaskDemand { cpu: 1, memory: 1, ..TaskDemand::default() },
            count: tasks,
            group: "service:s".into(),
            strategy,
            ..PlacementRequest::default()
        };
        let results = place(&request, &view, &mut SchedRng::seed_from_u64(seed));
        let mut per_value: HashMap<String, u32> = HashMap::new();
        for z in 0..per_zone.len() {
            per_value.insert(format!("z{z}"), 0);
        }
        for r in &results {
            let i = r.instance().unwrap();
            let z = view[i].attribute("zone").flatten().unwrap().to_owned();
            *per_value.entry(z).or_default() += 1;
        }
        let max = per_value.values().max().copied().unwrap_or(0);
        let min = per_value.values().min().copied().unwrap_or(0);
        prop_assert!(max - min <= 1, "{per_value:?}");
    }

    /// Binpack (tasks arriving largest first) uses no more instances than first-fit-decreasing
    /// plus 5% (rounded up).
    #[test]
    fn binpack_is_close_to_first_fit_decreasing(
        capacity in 1000i64..4000,
        sizes in proptest::collection::vec(1u32..1000, 1..80),
        seed in any::<u64>(),
    ) {
        let mut sizes: Vec<u32> = sizes.into_iter().map(|s| s.min(capacity as u32)).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let view: Vec<InstanceView> = (0..sizes.len())
            .map(|_| InstanceView {
                remaining_cpu: 1 << 20,
                remaining_memory: capacity,
                ..InstanceView::default()
            })
            .collect();
        let mut placer = Placer::new(&view);
        let mut rng = SchedRng::seed_from_u64(seed);
        let mut used = HashSet::new();
        for s in &sizes {
            let request = PlacementRequest {
                task: TaskDemand { cpu: 1, memory: *s, ..TaskDemand::default() },
                count: 1,
                group: "family:x".into(),
                strategy: vec![PlacementStrategy::Binpack(BinpackField::Memory)],
                ..PlacementRequest::default()
            };
            let r = placer.place(&request, &mut rng);
            used.insert(r[0].instance().unwrap());
        }
        let mut bins: Vec<i64> = Vec::new();
        for s in &sizes {
            match bins.iter_mut().find(|b| **b >= i64::from(*s)) {
                Some(b) => *b -= i64::from(*s),
                None => bins.push(capacity - i64::from(*s)),
            }
        }
        let ffd = bins.len();
        let allowed = (ffd * 105).div_ceil(100);
        prop_assert!(used.len() <= allowed, "binpack used {} instances, FFD {}", used.len(), ffd);
    }
}
