//! Managed scaling of a host pool (an Auto Scaling group capacity provider), as ECS defines it.
//!
//! ECS publishes `CapacityProviderReservation = M / N × 100`, where `N` is the number of
//! instances in the group and `M` the number it needs for the tasks it runs and the tasks waiting
//! for capacity; with `N = 0` the value is 200 when `M > 0` and 100 otherwise. The group then
//! tracks `targetCapacity`: it wants `⌈M × 100 / targetCapacity⌉` instances, grows by at least
//! `minimumScalingStepSize` and at most `maximumScalingStepSize` instances at a time, and shrinks
//! only by instances that run no task (managed termination protection), at most
//! `maximumScalingStepSize` at a time.
//!
//! `M` is computed by packing: instances that hold a task are needed; each waiting task then goes
//! to the first instance with room for it (an empty instance that receives one becomes needed),
//! and what fits nowhere opens new instances shaped like the largest instance of the pool. With no
//! instance to take the shape from, one new instance is assumed until the first one registers.

/// One instance of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInstance {
    /// The container instance id.
    pub id: String,
    /// Registered CPU units and MiB of memory.
    pub cpu: i64,
    pub memory: i64,
    /// What the tasks it holds leave free.
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    /// Tasks on it that are not STOPPED.
    pub tasks: usize,
    /// Whether new tasks may land on it (ACTIVE with its agent connected).
    pub placeable: bool,
}

/// CPU units and MiB of memory a waiting task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskNeed {
    pub cpu: i64,
    pub memory: i64,
}

/// The provider's `managedScaling` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingSettings {
    /// 1 to 100.
    pub target_capacity: u32,
    pub minimum_step: u32,
    pub maximum_step: u32,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        Self {
            target_capacity: 100,
            minimum_step: 1,
            maximum_step: 10_000,
        }
    }
}

/// What the pool needs now.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// `N`: instances in the pool.
    pub instances: usize,
    /// `M`: instances needed for the tasks running and waiting.
    pub needed: usize,
    /// `CapacityProviderReservation`, percent.
    pub reservation: f64,
    /// The instance count the pool should move to (one step at a time).
    pub desired: usize,
    /// When shrinking: the instances to remove (each runs no task and gets no waiting task).
    pub remove: Vec<String>,
}

/// Computes `M`, the reservation and the next desired count of a pool.
pub fn assess(
    instances: &[PoolInstance],
    waiting: &[TaskNeed],
    settings: ScalingSettings,
) -> Assessment {
    let n = instances.len();
    let mut needed_flags: Vec<bool> = instances.iter().map(|i| i.tasks > 0).collect();
    let mut room: Vec<(i64, i64)> = instances
        .iter()
        .map(|i| {
            if i.placeable {
                (i.remaining_cpu, i.remaining_memory)
            } else {
                (-1, -1)
            }
        })
        .collect();
    let shape = instances
        .iter()
        .map(|i| (i.cpu, i.memory))
        .max_by_key(|&(c, m)| (m, c));
    // New instances opened for what fits nowhere, as (free cpu, free memory).
    let mut new: Vec<(i64, i64)> = Vec::new();
    let mut unknown_shape = false;
    for t in waiting {
        if let Some(i) = room.iter().position(|&(c, m)| c >= t.cpu && m >= t.memory) {
            room[i].0 -= t.cpu;
            room[i].1 -= t.memory;
            needed_flags[i] = true;
            continue;
        }
        if let Some(j) = new.iter().position(|&(c, m)| c >= t.cpu && m >= t.memory) {
            new[j].0 -= t.cpu;
            new[j].1 -= t.memory;
            continue;
        }
        match shape {
            // A task larger than any instance: one instance each, it will not fit either way.
            Some((c, m)) => new.push((c - t.cpu, m - t.memory)),
            None => unknown_shape = true,
        }
    }
    let mut needed = needed_flags.iter().filter(|f| **f).count() + new.len();
    if unknown_shape {
        needed = needed.max(1);
    }
    let reservation = if n == 0 {
        if needed > 0 { 200.0 } else { 100.0 }
    } else {
        needed as f64 * 100.0 / n as f64
    };
    let target = settings.target_capacity.clamp(1, 100) as usize;
    let wanted = (needed * 100).div_ceil(target);
    let min_step = settings.minimum_step.max(1) as usize;
    let max_step = (settings.maximum_step as usize).max(min_step);
    let mut remove = Vec::new();
    let desired = if wanted > n {
        n + (wanted - n).clamp(min_step, max_step)
    } else if wanted < n {
        let surplus = (n - wanted).min(max_step);
        remove = instances
            .iter()
            .zip(&needed_flags)
            .filter(|(i, needed)| i.tasks == 0 && !**needed)
            .map(|(i, _)| i.id.clone())
            .take(surplus)
            .collect();
        n - remove.len()
    } else {
        n
    };
    Assessment {
        instances: n,
        needed,
        reservation,
        desired,
        remove,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inst(id: &str, tasks: usize, used_cpu: i64) -> PoolInstance {
        PoolInstance {
            id: id.into(),
            cpu: 1024,
            memory: 4096,
            remaining_cpu: 1024 - used_cpu,
            remaining_memory: 4096 - 64 * tasks as i64,
            tasks,
            placeable: true,
        }
    }

    const HALF: TaskNeed = TaskNeed {
        cpu: 512,
        memory: 64,
    };

    #[test]
    fn empty_pool_with_waiting_tasks_reports_200_and_grows_by_the_minimum_step() {
        let a = assess(&[], &[HALF, HALF], ScalingSettings::default());
        assert_eq!((a.instances, a.needed, a.desired), (0, 1, 1));
        assert_eq!(a.reservation, 200.0);
        let a = assess(
            &[],
            &[HALF],
            ScalingSettings {
                minimum_step: 2,
                ..Default::default()
            },
        );
        assert_eq!(a.desired, 2);
    }

    #[test]
    fn empty_pool_without_tasks_reports_100_and_stays() {
        let a = assess(&[], &[], ScalingSettings::default());
        assert_eq!((a.reservation, a.desired), (100.0, 0));
    }

    #[test]
    fn waiting_tasks_fill_free_room_before_new_instances_are_counted() {
        // One instance half full, five half-size tasks waiting: one fills it, four need two more.
        let a = assess(&[inst("a", 1, 512)], &[HALF; 5], ScalingSettings::default());
        assert_eq!((a.needed, a.desired), (3, 3));
        assert_eq!(a.reservation, 300.0);
    }

    #[test]
    fn target_capacity_keeps_spare_instances() {
        // Two needed at 50 % target: four wanted.
        let a = assess(
            &[inst("a", 2, 1024), inst("b", 2, 1024)],
            &[],
            ScalingSettings {
                target_capacity: 50,
                ..Default::default()
            },
        );
        assert_eq!((a.reservation, a.desired), (100.0, 4));
    }

    #[test]
    fn maximum_step_bounds_growth() {
        let a = assess(
            &[inst("a", 2, 1024)],
            &[HALF; 20],
            ScalingSettings {
                maximum_step: 3,
                ..Default::default()
            },
        );
        assert_eq!(a.needed, 11);
        assert_eq!(a.desired, 4);
    }

    #[test]
    fn shrinks_only_by_instances_without_tasks() {
        let a = assess(
            &[inst("a", 0, 0), inst("b", 1, 512), inst("c", 0, 0)],
            &[],
            ScalingSettings::default(),
        );
        assert_eq!(a.needed, 1);
        assert_eq!(a.desired, 1);
        assert_eq!(a.remove, vec!["a".to_owned(), "c".to_owned()]);
        assert!((a.reservation - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn an_empty_instance_that_takes_a_waiting_task_is_kept() {
        let a = assess(
            &[inst("a", 0, 0), inst("b", 0, 0)],
            &[HALF],
            ScalingSettings::default(),
        );
        assert_eq!((a.needed, a.desired), (1, 1));
        assert_eq!(a.remove, vec!["b".to_owned()]);
    }

    #[test]
    fn an_instance_that_cannot_take_tasks_does_not_receive_waiting_ones() {
        let mut gone = inst("a", 0, 0);
        gone.placeable = false;
        // It still counts in N, as an Auto Scaling group's instance does: M = 1 new one.
        let a = assess(&[gone.clone()], &[HALF], ScalingSettings::default());
        assert_eq!((a.needed, a.desired), (1, 1));
        assert!(a.remove.is_empty());
        let a = assess(
            &[gone, inst("b", 2, 1024)],
            &[HALF],
            ScalingSettings::default(),
        );
        assert_eq!((a.needed, a.desired), (2, 2));
    }

    proptest! {
        /// Never removes an instance that runs tasks; never asks for fewer instances than hold
        /// tasks; steps stay within the bounds; the reservation is M/N×100.
        #[test]
        fn decisions_respect_tasks_and_steps(
            tasks in proptest::collection::vec(0usize..3, 0..8),
            waiting in 0usize..12,
            target in 1u32..=100,
            min_step in 1u32..4,
            extra in 0u32..5,
        ) {
            let instances: Vec<PoolInstance> = tasks
                .iter()
                .enumerate()
                .map(|(i, &t)| inst(&format!("i{i}"), t, 512 * t.min(2) as i64))
                .collect();
            let settings = ScalingSettings { target_capacity: target, minimum_step: min_step, maximum_step: min_step + extra };
            let a = assess(&instances, &vec![HALF; waiting], settings);
            let busy = tasks.iter().filter(|t| **t > 0).count();
            prop_assert!(a.needed >= busy);
            for id in &a.remove {
                let i = instances.iter().find(|i| &i.id == id).unwrap();
                prop_assert_eq!(i.tasks, 0);
            }
            prop_assert!(a.desired >= busy);
            if a.desired > a.instances {
                let step = (a.desired - a.instances) as u32;
                prop_assert!(step >= min_step && step <= min_step + extra);
            } else {
                prop_assert_eq!(a.instances - a.desired, a.remove.len());
                prop_assert!(a.remove.len() as u32 <= min_step + extra);
            }
            if !instances.is_empty() {
                prop_assert!((a.reservation - a.needed as f64 * 100.0 / instances.len() as f64).abs() < 1e-9);
            }
        }
    }
}
