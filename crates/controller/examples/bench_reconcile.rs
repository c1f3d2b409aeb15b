//! Reconcile cost for many services: `cargo run --release -p gantry-controller --example
//! bench_reconcile [SERVICES] [TASKS] [EVENTS]` (defaults 5000 × 10, 100 events each).
//!
//! Three passes over the same services (min 100 % / max 200 %): stable (the common case, every
//! second), in the middle of a rolling deployment (2 × TASKS live, all old ones stopped, the old
//! deployment removed and the record rewritten), and stable with 100 stopped tasks of history
//! each (breaker and throttle derivation over the task list).

use std::hint::black_box;
use std::time::Instant;

use gantry_controller::service::{Plan, SequentialIds, TaskView, reconcile};
use gantry_controller::sim::{self, Sim};
use gantry_domain::task::{TaskStatus, stop_code};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let services = arg(1, 5_000);
    let tasks = arg(2, 10);
    let events = arg(3, 100);
    let desired = i64::try_from(tasks).unwrap_or(10);

    // A template service brought to a steady state by the simulator, then copied.
    let mut s = Sim::new(
        sim::replica_service("web", desired, 100, 200),
        sim::instances(3),
    );
    s.run_until_stable(100);
    for i in 0..events {
        let id = format!("ev-{i}");
        s.service.push_event(
            id,
            s.now,
            format!("(service web) has started 1 tasks: (task t{i})."),
        );
    }
    s.service.push_event(
        "ev-steady".into(),
        s.now,
        "(service web) has reached a steady state.".into(),
    );
    assert!(s.plan().is_empty(), "template is not stable");
    let stable = s.clone();

    let mut rolling = s.clone();
    rolling.deploy(2);
    rolling.tick();
    let busy = rolling.plan();
    assert!(busy.stops.len() == tasks && busy.service.is_some());

    let mut history = s.clone();
    for i in 0..100 {
        history.tasks.push(TaskView {
            id: format!("old{i}"),
            deployment_id: Some(history.primary_id()),
            desired: TaskStatus::Stopped,
            last: TaskStatus::Stopped,
            health: gantry_controller::service::Health::NoCheck,
            created_at: history.now - 100_000,
            started_at: Some(history.now - 99_000),
            stopped_at: Some(history.now - 50_000),
            stop_code: Some(stop_code::SERVICE_SCHEDULER_INITIATED.into()),
            instance_id: Some("i-000".into()),
            protected_until: None,
            scale_in_rank: None,
        });
    }

    println!("{services} services x {tasks} tasks, {events} events each");
    for (name, sim) in [
        ("stable", &stable),
        ("rolling", &rolling),
        ("stable+100 stopped", &history),
    ] {
        let copies: Vec<Sim> = (0..services).map(|_| sim.clone()).collect();
        let mut ids = SequentialIds::default();
        let mut best = f64::MAX;
        let mut changes = 0;
        for _round in 0..5 {
            let start = Instant::now();
            changes = 0;
            for c in &copies {
                let plan: Plan = reconcile(&c.service, &c.tasks, &c.instances, c.now, &mut ids);
                changes += usize::from(!plan.is_empty());
                black_box(plan);
            }
            let per = start.elapsed().as_secs_f64() * 1e6 / services as f64;
            best = best.min(per);
        }
        println!(
            "{name:>20}: {best:8.2} µs/service  ({:.1} ms for all; {changes} non-empty plans)",
            best * services as f64 / 1e3
        );
    }
}
