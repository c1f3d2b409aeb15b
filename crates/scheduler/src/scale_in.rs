//! Scale-in: which running tasks of a service to stop first.

use std::collections::HashMap;

use crate::request::{BinpackField, PlacementStrategy, SpreadField};
use crate::rng::SchedRng;
use crate::view::InstanceView;

/// A running task of the service, as scale-in sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningTask {
    /// Index in the view of the instance the task runs on.
    pub instance: usize,
    /// CPU units the task holds.
    pub cpu: u32,
    /// MiB the task holds.
    pub memory: u32,
}

/// Chooses `count` of `tasks` to stop, in stopping order (indexes into `tasks`), mirroring the
/// placement strategy (empty: [`PlacementStrategy::service_default`]):
/// - `spread(field)`: a task on the value with the **most** of the service's tasks, keeping the
///   balance (for the default, the fullest zone, then the fullest instance in it);
/// - `binpack(field)`: the task on the instance that would have the **most** remaining of the
///   field after it stops;
/// - `random`: any of what is left.
///
/// Later strategies break the ties of earlier ones; remaining ties are broken with `rng`.
pub fn choose_tasks_to_stop(
    tasks: &[RunningTask],
    view: &[InstanceView],
    strategy: &[PlacementStrategy],
    count: usize,
    rng: &mut SchedRng,
) -> Vec<usize> {
    let default;
    let strategy = if strategy.is_empty() {
        default = PlacementStrategy::service_default();
        &default[..]
    } else {
        strategy
    };
    // Value of every task for each spread key, and the per-value task counts.
    enum Key {
        Spread { of: Vec<usize>, counts: Vec<u32> },
        Binpack(BinpackField),
    }
    let mut keys = Vec::new();
    for s in strategy {
        match s {
            PlacementStrategy::Random => break,
            PlacementStrategy::Binpack(f) => keys.push(Key::Binpack(*f)),
            PlacementStrategy::Spread(field) => {
                let mut ids: HashMap<Option<&str>, usize> = HashMap::new();
                let of: Vec<usize> = tasks
                    .iter()
                    .map(|t| {
                        let value = match field {
                            SpreadField::InstanceId => return t.instance,
                            SpreadField::Attribute(a) => {
                                view.get(t.instance).and_then(|v| v.attribute(a).flatten())
                            }
                        };
                        let next = ids.len();
                        *ids.entry(value).or_insert(next)
                    })
                    .collect();
                let len = of.iter().max().map_or(0, |m| m + 1);
                let mut counts = vec![0u32; len];
                for v in &of {
                    counts[*v] += 1;
                }
                keys.push(Key::Spread { of, counts });
            }
        }
    }
    // Resources freed so far on each instance by the tasks already chosen.
    let mut freed: HashMap<usize, (i64, i64)> = HashMap::new();
    let mut stopped = vec![false; tasks.len()];
    let mut out = Vec::with_capacity(count.min(tasks.len()));
    while out.len() < count {
        let mut best: Option<usize> = None;
        let mut best_key: Vec<i64> = Vec::new();
        let mut ties = 0u64;
        let mut key = Vec::with_capacity(keys.len());
        for (ti, t) in tasks.iter().enumerate() {
            if stopped[ti] {
                continue;
            }
            key.clear();
            for k in &keys {
                key.push(match k {
                    Key::Spread { of, counts } => i64::from(counts[of[ti]]),
                    Key::Binpack(f) => {
                        let (fc, fm) = freed.get(&t.instance).copied().unwrap_or((0, 0));
                        let v = view.get(t.instance);
                        match f {
                            BinpackField::Cpu => {
                                v.map_or(0, |v| v.remaining_cpu) + fc + i64::from(t.cpu)
                            }
                            BinpackField::Memory => {
                                v.map_or(0, |v| v.remaining_memory) + fm + i64::from(t.memory)
                            }
                        }
                    }
                });
            }
            // Higher keys stop first.
            let ord = if best.is_none() {
                std::cmp::Ordering::Greater
            } else {
                key.as_slice().cmp(best_key.as_slice())
            };
            match ord {
                std::cmp::Ordering::Greater => {
                    best = Some(ti);
                    best_key.clone_from(&key);
                    ties = 1;
                }
                std::cmp::Ordering::Equal => {
                    ties += 1;
                    if rng.below(ties) == 0 {
                        best = Some(ti);
                    }
                }
                std::cmp::Ordering::Less => {}
            }
        }
        let Some(ti) = best else { break };
        stopped[ti] = true;
        out.push(ti);
        let t = tasks[ti];
        let e = freed.entry(t.instance).or_insert((0, 0));
        e.0 += i64::from(t.cpu);
        e.1 += i64::from(t.memory);
        for k in &mut keys {
            if let Key::Spread { of, counts } = k {
                counts[of[ti]] -= 1;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn inst(zone: &str, cpu: i64, mem: i64) -> InstanceView {
        InstanceView {
            attributes: vec![("ecs.availability-zone".into(), Some(zone.into()))],
            remaining_cpu: cpu,
            remaining_memory: mem,
            ..InstanceView::default()
        }
    }

    fn task(instance: usize) -> RunningTask {
        RunningTask {
            instance,
            cpu: 100,
            memory: 100,
        }
    }

    #[test]
    fn default_stops_from_the_fullest_zone_then_the_fullest_instance() {
        let view = vec![inst("a", 0, 0), inst("a", 0, 0), inst("b", 0, 0)];
        // Zone a: instance 0 has 3 tasks, instance 1 has 1; zone b: 2 tasks.
        let tasks = [task(0), task(0), task(0), task(1), task(2), task(2)];
        let mut rng = SchedRng::seed_from_u64(1);
        let order = choose_tasks_to_stop(&tasks, &view, &[], 4, &mut rng);
        let on: Vec<usize> = order.iter().map(|t| tasks[*t].instance).collect();
        // a=4,b=2 -> stop on 0 (a, 3 on it); a=3,b=2 -> 0 again; a=2,b=2 -> tie zones, then the
        // fullest instance: 0 (1), 1 (1) or 2 (2) -> 2; then a=2,b=1 -> instance 0 or 1.
        assert_eq!(&on[..3], &[0, 0, 2]);
        assert!(on[3] == 0 || on[3] == 1);
    }

    #[test]
    fn binpack_stops_where_most_would_remain() {
        let view = vec![
            inst("a", 100, 1000),
            inst("a", 100, 5000),
            inst("a", 100, 3000),
        ];
        let tasks = [task(0), task(1), task(2)];
        let mut rng = SchedRng::seed_from_u64(1);
        let order = choose_tasks_to_stop(
            &tasks,
            &view,
            &[PlacementStrategy::Binpack(BinpackField::Memory)],
            3,
            &mut rng,
        );
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn never_more_than_there_are() {
        let view = vec![inst("a", 0, 0)];
        let mut rng = SchedRng::seed_from_u64(1);
        let order = choose_tasks_to_stop(
            &[task(0), task(0)],
            &view,
            &[PlacementStrategy::Random],
            5,
            &mut rng,
        );
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1]);
    }
}
