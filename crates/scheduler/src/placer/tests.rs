use super::*;
use crate::cql;
use crate::request::{PlacementConstraint, PlacementRequest, PlacementStrategy, SpreadField};
use crate::view::{InstanceView, TaskDemand};

fn instance(i: usize, zone: &str, cpu: i64, mem: i64) -> InstanceView {
    InstanceView {
        id: format!("ci-{i}"),
        ec2_instance_id: format!("i-{i:08x}"),
        attributes: vec![
            ("ecs.availability-zone".into(), Some(zone.into())),
            ("ecs.instance-type".into(), Some("m5.large".into())),
        ],
        remaining_cpu: cpu,
        remaining_memory: mem,
        ..InstanceView::default()
    }
}

fn req(cpu: u32, mem: u32, count: u32) -> PlacementRequest {
    PlacementRequest {
        task: TaskDemand {
            cpu,
            memory: mem,
            ..TaskDemand::default()
        },
        count,
        group: "family:web".into(),
        ..PlacementRequest::default()
    }
}

fn placed(results: &[PlacementResult]) -> Vec<usize> {
    results
        .iter()
        .filter_map(PlacementResult::instance)
        .collect()
}

fn rng() -> SchedRng {
    SchedRng::seed_from_u64(42)
}

#[test]
fn binpack_memory_picks_least_remaining_that_fits() {
    let view = vec![
        instance(0, "a", 4096, 4000),
        instance(1, "a", 4096, 600),
        instance(2, "a", 4096, 1000),
    ];
    let mut r = req(10, 512, 1);
    r.strategy = vec![PlacementStrategy::Binpack(BinpackField::Memory)];
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![1]);
    // Second and third: 1 now has 88 left, so 2 (1000) then 2 again (488 < 512? no: 4000).
    r.count = 3;
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![1, 2, 0]);
}

#[test]
fn binpack_cpu_picks_least_remaining_cpu() {
    let view = vec![
        instance(0, "a", 1024, 4000),
        instance(1, "a", 300, 4000),
        instance(2, "a", 512, 4000),
    ];
    let mut r = req(256, 10, 2);
    r.strategy = vec![PlacementStrategy::Binpack(BinpackField::Cpu)];
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![1, 2]);
}

#[test]
fn spread_by_zone_balances_then_binpack_inside_the_zone() {
    let mut view = Vec::new();
    for (i, z) in ["a", "b", "c", "a", "b", "c"].iter().enumerate() {
        view.push(instance(i, z, 4096, 2000 + i as i64 * 100));
    }
    let mut r = req(10, 100, 6);
    r.strategy = vec![
        PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        PlacementStrategy::Binpack(BinpackField::Memory),
    ];
    let got = placed(&place(&r, &view, &mut rng()));
    assert_eq!(got.len(), 6);
    let zone = |i: usize| {
        view[i]
            .attribute("ecs.availability-zone")
            .flatten()
            .unwrap()
    };
    for z in ["a", "b", "c"] {
        assert_eq!(got.iter().filter(|i| zone(**i) == z).count(), 2, "{got:?}");
    }
    // Inside each zone, binpack keeps using the fuller instance (0, 1, 2).
    assert!(got.iter().all(|i| *i < 3), "{got:?}");
}

#[test]
fn spread_counts_existing_tasks_of_the_group_only() {
    let mut view = vec![instance(0, "a", 4096, 4096), instance(1, "b", 4096, 4096)];
    view[0].task_groups = vec!["family:other".into(); 5];
    view[1].task_groups = vec!["family:web".into()];
    let mut r = req(10, 10, 1);
    r.strategy = vec![PlacementStrategy::Spread(SpreadField::Attribute(
        "ecs.availability-zone".into(),
    ))];
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![0]);
}

#[test]
fn spread_by_instance_id_round_robins() {
    let view: Vec<_> = (0..4).map(|i| instance(i, "a", 4096, 4096)).collect();
    let mut r = req(10, 10, 8);
    r.strategy = vec![PlacementStrategy::Spread(SpreadField::InstanceId)];
    let got = placed(&place(&r, &view, &mut rng()));
    for i in 0..4 {
        assert_eq!(got.iter().filter(|x| **x == i).count(), 2);
    }
}

#[test]
fn distinct_instance_holds_and_fails_with_its_reason() {
    let mut view: Vec<_> = (0..3).map(|i| instance(i, "a", 4096, 4096)).collect();
    view[2].task_groups = vec!["family:web".into()];
    let mut r = req(10, 10, 3);
    r.constraints = vec![PlacementConstraint::DistinctInstance];
    let res = place(&r, &view, &mut rng());
    let mut got = placed(&res);
    got.sort_unstable();
    assert_eq!(got, vec![0, 1]);
    let PlacementResult::Failed(f) = res[2] else {
        panic!("third task placed: {res:?}")
    };
    assert_eq!(f.reason, FailureReason::DistinctInstance);
    assert_eq!(
        f.reason.as_str(),
        "DistinctInstance placement constraint unsatisfied."
    );
}

#[test]
fn member_of_filters_and_task_group_affinity_sees_this_calls_placements() {
    let mut view: Vec<_> = (0..4).map(|i| instance(i, "a", 4096, 4096)).collect();
    view[3]
        .attributes
        .push(("stack".into(), Some("blue".into())));
    view[1].task_groups = vec!["service:db".into()];
    let blue = cql::parse("attribute:stack == blue").unwrap();
    let mut r = req(10, 10, 2);
    r.constraints = vec![PlacementConstraint::MemberOf(blue)];
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![3, 3]);

    // Affinity with the db group: only instance 1.
    let mut r = req(10, 10, 2);
    r.constraints = vec![PlacementConstraint::MemberOf(
        cql::parse("task:group == service:db").unwrap(),
    )];
    assert_eq!(placed(&place(&r, &view, &mut rng())), vec![1, 1]);

    // Anti-affinity with its own group and runningTasksCount see earlier placements of the call.
    let mut r = req(10, 10, 5);
    r.group = "family:solo".into();
    r.constraints = vec![PlacementConstraint::MemberOf(
        cql::parse("not(task:group == family:solo)").unwrap(),
    )];
    let res = place(&r, &view, &mut rng());
    let mut got = placed(&res);
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert!(
        matches!(res[4], PlacementResult::Failed(f) if f.reason == FailureReason::MemberOf && f.closest.is_some()),
        "{res:?}"
    );
    let mut r = req(10, 10, 3);
    r.constraints = vec![PlacementConstraint::MemberOf(
        cql::parse("runningTasksCount == 0 and ec2InstanceId == i-00000000").unwrap(),
    )];
    let res = place(&r, &view, &mut rng());
    assert_eq!(res[0], PlacementResult::Placed { instance: 0 });
    assert!(matches!(res[1], PlacementResult::Failed(f) if f.reason == FailureReason::MemberOf));
}

#[test]
fn failure_reasons_in_precedence_order() {
    let t = |view: &[InstanceView], r: &PlacementRequest| match place(r, view, &mut rng())[0] {
        PlacementResult::Failed(f) => (f.reason, f.closest),
        other => panic!("placed: {other:?}"),
    };
    // No instances, or none ACTIVE.
    assert_eq!(t(&[], &req(1, 1, 1)), (FailureReason::NoInstances, None));
    let mut draining = instance(0, "a", 4096, 4096);
    draining.active = false;
    assert_eq!(
        t(&[draining.clone()], &req(1, 1, 1)),
        (FailureReason::NoInstances, None)
    );
    // Disconnected agent.
    let mut off = instance(1, "a", 4096, 4096);
    off.agent_connected = false;
    assert_eq!(
        t(&[draining, off.clone()], &req(1, 1, 1)),
        (FailureReason::Agent, Some(1))
    );
    // Missing required attribute beats a disconnected agent.
    let mut r = req(1, 1, 1);
    r.requires_attributes = vec![RequiredAttribute::named("ecs.capability.task-eni")];
    let plain = instance(2, "a", 4096, 4096);
    assert_eq!(
        t(&[off.clone(), plain.clone()], &r),
        (FailureReason::Attribute, Some(1))
    );
    // Required attribute with a value.
    let mut r = req(1, 1, 1);
    r.requires_attributes = vec![RequiredAttribute {
        name: "ecs.instance-type".into(),
        value: Some("m5.xlarge".into()),
    }];
    assert_eq!(
        t(std::slice::from_ref(&plain), &r).0,
        FailureReason::Attribute
    );
    // CPU, then memory, then ports; the closest is the one with the most of what is missing.
    let small_cpu = instance(3, "a", 100, 4096);
    let smaller_cpu = instance(4, "a", 50, 4096);
    assert_eq!(
        t(
            &[smaller_cpu.clone(), small_cpu.clone(), off.clone()],
            &req(512, 1, 1)
        ),
        (FailureReason::ResourceCpu, Some(1))
    );
    let small_mem = instance(5, "a", 4096, 100);
    assert_eq!(
        t(&[small_cpu.clone(), small_mem.clone()], &req(512, 512, 1)),
        (FailureReason::ResourceMemory, Some(1))
    );
    let mut busy = instance(6, "a", 4096, 4096);
    busy.used_tcp_ports = vec![22, 80];
    let mut r = req(512, 512, 1);
    r.task.tcp_ports = vec![80];
    assert_eq!(
        t(&[small_mem.clone(), busy.clone()], &r),
        (FailureReason::ResourcePorts, Some(1))
    );
    // Constraints come before resources: an allowed instance short of memory is closer than a
    // roomy one the constraint excludes.
    let mut blue_small = instance(7, "a", 4096, 100);
    blue_small
        .attributes
        .push(("stack".into(), Some("blue".into())));
    let mut r = req(1, 512, 1);
    r.constraints = vec![PlacementConstraint::MemberOf(
        cql::parse("attribute:stack == blue").unwrap(),
    )];
    assert_eq!(
        t(&[plain.clone(), blue_small], &r),
        (FailureReason::ResourceMemory, Some(1))
    );
    assert_eq!(t(&[plain], &r), (FailureReason::MemberOf, Some(0)));
}

#[test]
fn static_ports_are_not_double_booked_within_a_call() {
    let mut view: Vec<_> = (0..3).map(|i| instance(i, "a", 4096, 4096)).collect();
    view[0].used_tcp_ports = vec![8080];
    let mut r = req(1, 1, 3);
    r.task.tcp_ports = vec![8080];
    r.task.udp_ports = vec![8080];
    let res = place(&r, &view, &mut rng());
    let mut got = placed(&res);
    got.sort_unstable();
    assert_eq!(got, vec![1, 2]);
    assert!(
        matches!(res[2], PlacementResult::Failed(f) if f.reason == FailureReason::ResourcePorts)
    );
    // UDP and TCP are separate.
    let mut r = req(1, 1, 1);
    r.task.udp_ports = vec![8080];
    assert!(place(&r, &view[..1], &mut rng())[0].instance().is_some());
}

#[test]
fn dynamic_ports_run_out() {
    let mut view = vec![instance(0, "a", 4096, 4096)];
    view[0].dynamic_port_range = (50000, 50003);
    view[0].used_tcp_ports = vec![50001];
    let mut r = req(1, 1, 3);
    r.task.dynamic_tcp_ports = 1;
    let res = place(&r, &view, &mut rng());
    assert_eq!(placed(&res), vec![0, 0, 0]);
    let mut placer = Placer::new(&view);
    placer.place(&r, &mut rng());
    let mut one = req(1, 1, 1);
    one.task.dynamic_tcp_ports = 1;
    assert!(matches!(
        placer.place(&one, &mut rng())[0],
        PlacementResult::Failed(f) if f.reason == FailureReason::ResourcePorts
    ));
    // A static port inside the dynamic range takes from the pool too.
    let mut placer = Placer::new(&view);
    let mut st = req(1, 1, 1);
    st.task.tcp_ports = vec![50000, 50002];
    assert!(placer.place(&st, &mut rng())[0].instance().is_some());
    assert_eq!(placed(&placer.place(&r, &mut rng())), vec![0]);
}

#[test]
fn over_capacity_requests_fail_the_rest_with_the_reason() {
    let view = vec![instance(0, "a", 1024, 1024), instance(1, "b", 1024, 1024)];
    let res = place(&req(512, 512, 5), &view, &mut rng());
    assert_eq!(placed(&res).len(), 4);
    assert!(matches!(res[4], PlacementResult::Failed(f) if f.reason == FailureReason::ResourceCpu));
}

#[test]
fn a_placer_keeps_reservations_across_calls() {
    let view = vec![instance(0, "a", 1024, 1024)];
    let mut placer = Placer::new(&view);
    assert_eq!(
        placed(&placer.place(&req(512, 512, 1), &mut rng())),
        vec![0]
    );
    assert_eq!(
        placed(&placer.place(&req(512, 512, 1), &mut rng())),
        vec![0]
    );
    assert!(
        placer.place(&req(512, 512, 1), &mut rng())[0]
            .instance()
            .is_none()
    );
    assert_eq!(placer.remaining(0), Some((0, 0)));
}

#[test]
fn same_seed_same_placement_and_random_uses_the_seed() {
    let view: Vec<_> = (0..50).map(|i| instance(i, "a", 4096, 4096)).collect();
    let mut r = req(1, 1, 20);
    r.strategy = vec![PlacementStrategy::Random];
    let a = place(&r, &view, &mut SchedRng::seed_from_u64(9));
    let b = place(&r, &view, &mut SchedRng::seed_from_u64(9));
    let c = place(&r, &view, &mut SchedRng::seed_from_u64(10));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let distinct: std::collections::HashSet<_> = placed(&a).into_iter().collect();
    assert!(distinct.len() > 5, "random spreads: {distinct:?}");
}

#[test]
fn service_default_spreads_zones_then_instances() {
    let mut view = Vec::new();
    for i in 0..6 {
        view.push(instance(i, ["a", "b"][i % 2], 4096, 4096));
    }
    let mut r = req(1, 1, 6);
    r.group = "service:web".into();
    r.strategy = PlacementStrategy::service_default();
    let mut got = placed(&place(&r, &view, &mut rng()));
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn awsvpc_tasks_run_out_of_network_interfaces() {
    let mut view: Vec<_> = (0..2).map(|i| instance(i, "a", 4096, 4096)).collect();
    view[0].remaining_enis = 2;
    view[1].remaining_enis = 1;
    let mut r = req(1, 1, 4);
    r.task.enis = 1;
    let res = place(&r, &view, &mut rng());
    let mut got = placed(&res);
    got.sort_unstable();
    assert_eq!(got, vec![0, 0, 1]);
    assert!(matches!(res[3], PlacementResult::Failed(f) if f.reason == FailureReason::ResourceEni));
    assert_eq!(FailureReason::ResourceEni.as_str(), "RESOURCE:ENI");
    // Tasks without an interface are not limited by it.
    assert_eq!(placed(&place(&req(1, 1, 4), &view, &mut rng())).len(), 4);
}

#[test]
fn a_placer_with_an_earlier_placers_index_places_as_a_fresh_one() {
    let zones = ["a", "b", "c"];
    let mut view: Vec<InstanceView> = (0..30)
        .map(|i| {
            let mut v = instance(i, zones[i % 3], 2048, 4096 + (i as i64 % 7) * 512);
            if i % 4 == 0 {
                v.attributes[1].1 = Some("c5.large".into());
            }
            v
        })
        .collect();
    let mut r = req(128, 256, 10);
    r.strategy = vec![
        PlacementStrategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        PlacementStrategy::Binpack(BinpackField::Memory),
    ];
    r.constraints = vec![PlacementConstraint::MemberOf(
        cql::parse("attribute:ecs.instance-type =~ m5.*").unwrap(),
    )];
    let mut index = StaticIndex::default();
    for round in 0..8u64 {
        let fresh = Placer::new(&view).place(&r, &mut SchedRng::seed_from_u64(round));
        let mut reused = Placer::with_index(&view, index);
        let got = reused.place(&r, &mut SchedRng::seed_from_u64(round));
        assert_eq!(got, fresh, "round {round}");
        index = reused.into_index();
        // What a commit changes between batches: resources and task groups, not statics.
        let before = view.clone();
        for i in placed(&got) {
            view[i].remaining_cpu -= 128;
            view[i].remaining_memory -= 256;
            view[i].task_groups.push(r.group.clone());
        }
        assert!(before.iter().zip(&view).all(|(a, b)| same_statics(a, b)));
    }
    let mut moved = view[0].clone();
    moved.agent_connected = false;
    assert!(!same_statics(&view[0], &moved));
}
