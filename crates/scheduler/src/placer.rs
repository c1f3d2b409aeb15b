//! The placement engine: feasibility, constraints, strategies, with incremental state.

use std::collections::HashMap;

use crate::cql::{Expr, Facts};
use crate::request::{
    BinpackField, PlacementConstraint, PlacementRequest, PlacementStrategy, RequiredAttribute,
    SpreadField,
};
use crate::rng::SchedRng;
use crate::view::InstanceView;

/// Why a task could not be placed: the first check the *closest-matching* instance failed.
///
/// Checks run in this order, and the closest-matching instance is the one that passed the most
/// of them (ties: the one with the most of the missing resource, then the first in the view):
/// agent connected (`AGENT`), `requiresAttributes` (`ATTRIBUTE`), `memberOf`, `distinctInstance`,
/// CPU, memory, ports. Constraints come before resources so that the closest instance is one the
/// task is allowed on, as ECS's service events name it ("The closest matching container-instance
/// ... has insufficient memory available").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    /// No ACTIVE instance in the view at all. ECS answers RunTask with
    /// `InvalidParameterException: No Container Instances were found in your cluster.`
    NoInstances,
    Agent,
    Attribute,
    MemberOf,
    DistinctInstance,
    ResourceCpu,
    ResourceMemory,
    ResourcePorts,
    ResourceEni,
}

impl FailureReason {
    /// The `failures[].reason` string ECS returns.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoInstances => "No Container Instances were found in your cluster.",
            Self::Agent => "AGENT",
            Self::Attribute => "ATTRIBUTE",
            Self::MemberOf => "MemberOf placement constraint unsatisfied.",
            Self::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
            Self::ResourceCpu => "RESOURCE:CPU",
            Self::ResourceMemory => "RESOURCE:MEMORY",
            Self::ResourcePorts => "RESOURCE:PORTS",
            Self::ResourceEni => "RESOURCE:ENI",
        }
    }

    /// How a service event describes the closest-matching instance ("The closest matching
    /// container-instance {id} {detail}.").
    pub fn event_detail(self) -> &'static str {
        match self {
            Self::NoInstances => "does not exist",
            Self::Agent => "has an agent that is disconnected",
            Self::Attribute => "is missing an attribute required by your task",
            Self::MemberOf => "does not satisfy the memberOf placement constraint",
            Self::DistinctInstance => "is already running a task of this group",
            Self::ResourceCpu => "has insufficient CPU units available",
            Self::ResourceMemory => "has insufficient memory available",
            Self::ResourcePorts => "is already using a port required by your task",
            Self::ResourceEni => {
                "has no network interface left for a task using the awsvpc network mode"
            }
        }
    }
}

/// A task that could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementFailure {
    pub reason: FailureReason,
    /// Index in the view of the closest-matching instance (for `failures[].arn` and service
    /// events); `None` when there is no ACTIVE instance.
    pub closest: Option<usize>,
}

/// The outcome for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementResult {
    /// Placed on the instance at this index of the view.
    Placed {
        instance: usize,
    },
    Failed(PlacementFailure),
}

impl PlacementResult {
    /// The chosen instance's index, if placed.
    pub fn instance(&self) -> Option<usize> {
        match self {
            Self::Placed { instance } => Some(*instance),
            Self::Failed(_) => None,
        }
    }
}

/// Places `request.count` tasks on a snapshot of instances. Tasks of the same call see the
/// earlier ones' reservations (no double booking within a call). Deterministic for a given seed.
///
/// For many calls against the same snapshot (a reconcile pass, a benchmark), keep a [`Placer`]:
/// it keeps its indexes and reservations between calls.
pub fn place(
    request: &PlacementRequest,
    view: &[InstanceView],
    rng: &mut SchedRng,
) -> Vec<PlacementResult> {
    Placer::new(view).place(request, rng)
}

/// Spread fields with at most this many values get per-value candidate lists.
const MAX_BUCKETS: usize = 64;

/// Check stages, in order; the closest failing instance is the one with the highest stage.
type Stage = FailureReason;

/// Instances that pass the checks that do not change as tasks are placed (status, agent,
/// `requiresAttributes`, task-independent `memberOf`), for one request shape.
#[derive(Debug)]
struct StaticFilter {
    pass: Vec<u32>,
    closest: Option<(Stage, u32)>,
    /// `pass` split by spread value, per spread field index (fields with few values only).
    buckets: HashMap<usize, Vec<Vec<u32>>>,
}

#[derive(Debug)]
struct SpreadValues {
    /// Value id of each instance (0: attribute missing).
    of: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct SpreadCounts {
    group: u32,
    /// Index in `spread_values`.
    field: usize,
    /// Tasks of `group` per value id.
    counts: Vec<u32>,
}

/// A strategy key resolved to the arrays it reads, for the scan.
enum KeyRef<'a> {
    Instance(&'a [u32]),
    Spread(&'a [u32], &'a [u32]),
    Cpu,
    Memory,
}

#[derive(Debug, Clone, Copy)]
enum KeyKind {
    SpreadInstance,
    SpreadAttribute(usize),
    BinpackCpu,
    BinpackMemory,
}

/// What a [`Placer`] derived from the instances' static properties (status, agent connection,
/// registration, attributes: what [`same_statics`] compares), never from resources or tasks: the
/// instances each request shape may use and the values of each spread attribute. A caller that
/// keeps a view across placements hands it from one placer to the next
/// ([`Placer::into_index`], [`Placer::with_index`]) while the instances, their order and their
/// static properties stay the same, instead of computing it again per placer.
#[derive(Debug, Default)]
pub struct StaticIndex {
    spread_values: Vec<(String, SpreadValues)>,
    statics: HashMap<String, StaticFilter>,
}

/// Whether two views of an instance agree on everything a [`StaticIndex`] is derived from.
pub fn same_statics(a: &InstanceView, b: &InstanceView) -> bool {
    a.id == b.id
        && a.active == b.active
        && a.agent_connected == b.agent_connected
        && a.registered_at == b.registered_at
        && a.ec2_instance_id == b.ec2_instance_id
        && a.agent_version == b.agent_version
        && a.attributes == b.attributes
}

/// Placement state over one snapshot: remaining resources, ports, task groups and the indexes
/// placement needs, all updated incrementally as tasks are placed.
///
/// Build it once per snapshot (`O(instances)`); each placement then scans only the instances
/// that pass the request's static checks (cached per request shape) with array reads, and the
/// spread counts are kept per (group, field) rather than recounted.
#[derive(Debug)]
pub struct Placer<'v> {
    view: &'v [InstanceView],
    cpu: Vec<i64>,
    mem: Vec<i64>,
    /// Network interfaces left for awsvpc tasks.
    enis: Vec<i64>,
    /// Free dynamic ports: TCP, UDP.
    dyn_free: Vec<[u32; 2]>,
    running: Vec<u32>,
    /// Sorted unavailable host ports (TCP, UDP), built on the first request with static ports.
    ports: Option<Vec<[Vec<u16>; 2]>>,
    /// Groups (ids) of the tasks this placer put on each instance.
    placed_groups: Vec<Vec<u32>>,
    group_ids: HashMap<String, u32>,
    group_names: Vec<String>,
    /// Tasks per instance, per group id (view plus placed), built on first use of the group.
    group_counts: Vec<Option<Vec<u32>>>,
    spread_values: Vec<(String, SpreadValues)>,
    spread_counts: Vec<SpreadCounts>,
    statics: HashMap<String, StaticFilter>,
}

/// An instance as it is now: the view plus this placer's placements (for task-dependent CQL).
struct Overlay<'a> {
    view: &'a InstanceView,
    running: u32,
    placed: &'a [u32],
    names: &'a [String],
}

impl Facts for Overlay<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.view.attribute(name)
    }
    fn ec2_instance_id(&self) -> &str {
        &self.view.ec2_instance_id
    }
    fn agent_connected(&self) -> bool {
        self.view.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.view.agent_version.as_deref()
    }
    fn registered_at(&self) -> u64 {
        self.view.registered_at
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.running)
    }
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.view.task_groups.iter().any(|g| f(g))
            || self
                .placed
                .iter()
                .any(|g| self.names.get(*g as usize).is_some_and(|n| f(n)))
    }
}

fn range_len((lo, hi): (u16, u16)) -> u32 {
    if hi >= lo { u32::from(hi - lo) + 1 } else { 0 }
}

fn in_range(p: u16, (lo, hi): (u16, u16)) -> bool {
    p >= lo && p <= hi
}

fn has_required(v: &InstanceView, req: &[RequiredAttribute]) -> bool {
    req.iter().all(|r| match (v.attribute(&r.name), &r.value) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(have), Some(want)) => have == Some(want.as_str()),
    })
}

impl<'v> Placer<'v> {
    /// Indexes a snapshot. Instance indexes in results refer to `view`.
    pub fn new(view: &'v [InstanceView]) -> Self {
        let n = view.len();
        let mut dyn_free = Vec::with_capacity(n);
        for v in view {
            let r = v.dynamic_port_range;
            let used_tcp = v.used_tcp_ports.iter().filter(|p| in_range(**p, r)).count() as u32;
            let used_udp = v.used_udp_ports.iter().filter(|p| in_range(**p, r)).count() as u32;
            let len = range_len(r);
            dyn_free.push([
                len.saturating_sub(used_tcp + v.dynamic_tcp_in_use),
                len.saturating_sub(used_udp + v.dynamic_udp_in_use),
            ]);
        }
        Self {
            view,
            cpu: view.iter().map(|v| v.remaining_cpu).collect(),
            mem: view.iter().map(|v| v.remaining_memory).collect(),
            enis: view.iter().map(|v| v.remaining_enis).collect(),
            dyn_free,
            running: view.iter().map(|v| v.running_tasks_count).collect(),
            ports: None,
            placed_groups: vec![Vec::new(); n],
            group_ids: HashMap::new(),
            group_names: Vec::new(),
            group_counts: Vec::new(),
            spread_values: Vec::new(),
            spread_counts: Vec::new(),
            statics: HashMap::new(),
        }
    }

    /// Indexes a snapshot, reusing what an earlier placer derived from the instances' static
    /// properties. `index` must come from a placer over views of the same instances, in the same
    /// order, each with the same static properties ([`same_statics`]).
    pub fn with_index(view: &'v [InstanceView], index: StaticIndex) -> Self {
        let mut placer = Self::new(view);
        placer.spread_values = index.spread_values;
        placer.statics = index.statics;
        placer
    }

    /// What this placer derived from the instances' static properties, for the next placer over
    /// the same instances ([`Self::with_index`]).
    pub fn into_index(self) -> StaticIndex {
        StaticIndex {
            spread_values: self.spread_values,
            statics: self.statics,
        }
    }

    /// The instances this placer works on.
    pub fn view(&self) -> &'v [InstanceView] {
        self.view
    }

    /// Remaining (CPU units, MiB) of an instance after this placer's placements.
    pub fn remaining(&self, instance: usize) -> Option<(i64, i64)> {
        Some((*self.cpu.get(instance)?, *self.mem.get(instance)?))
    }

    /// Places `request.count` tasks, keeping the reservations for later calls.
    pub fn place(
        &mut self,
        request: &PlacementRequest,
        rng: &mut SchedRng,
    ) -> Vec<PlacementResult> {
        let count = request.count as usize;
        let mut out = Vec::with_capacity(count);
        if count == 0 {
            return out;
        }
        let prepared = self.prepare(request);
        for _ in 0..count {
            let r = self.place_one(request, &prepared, rng);
            out.push(r);
            if let PlacementResult::Failed(_) = r {
                // Nothing changed: every remaining task fails the same way.
                out.resize(count, r);
                break;
            }
        }
        out
    }

    fn group_id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.group_ids.get(name) {
            return *id;
        }
        let id = self.group_names.len() as u32;
        self.group_ids.insert(name.to_owned(), id);
        self.group_names.push(name.to_owned());
        self.group_counts.push(None);
        id
    }

    fn ensure_group_counts(&mut self, g: u32) {
        let gi = g as usize;
        if self.group_counts[gi].is_some() {
            return;
        }
        let name = &self.group_names[gi];
        let counts = self
            .view
            .iter()
            .zip(&self.placed_groups)
            .map(|(v, placed)| {
                (v.task_groups.iter().filter(|t| *t == name).count()
                    + placed.iter().filter(|p| **p == g).count()) as u32
            })
            .collect();
        self.group_counts[gi] = Some(counts);
    }

    fn ensure_spread(&mut self, g: u32, attr: &str) -> usize {
        let field = match self.spread_values.iter().position(|(a, _)| a == attr) {
            Some(f) => f,
            None => {
                let mut ids: HashMap<&str, u32> = HashMap::new();
                let of = self
                    .view
                    .iter()
                    .map(|v| match v.attribute(attr).flatten() {
                        None => 0,
                        Some(val) => {
                            let next = ids.len() as u32 + 1;
                            *ids.entry(val).or_insert(next)
                        }
                    })
                    .collect();
                let len = ids.len() + 1;
                self.spread_values
                    .push((attr.to_owned(), SpreadValues { of, len }));
                self.spread_values.len() - 1
            }
        };
        if let Some(i) = self
            .spread_counts
            .iter()
            .position(|c| c.group == g && c.field == field)
        {
            return i;
        }
        self.ensure_group_counts(g);
        let values = &self.spread_values[field].1;
        let mut counts = vec![0u32; values.len];
        if let Some(Some(per_instance)) = self.group_counts.get(g as usize) {
            for (value, c) in values.of.iter().zip(per_instance) {
                counts[*value as usize] += c;
            }
        }
        self.spread_counts.push(SpreadCounts {
            group: g,
            field,
            counts,
        });
        self.spread_counts.len() - 1
    }

    fn ensure_ports(&mut self) {
        if self.ports.is_some() {
            return;
        }
        let sorted = |ps: &[u16]| {
            let mut v = ps.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        self.ports = Some(
            self.view
                .iter()
                .map(|v| [sorted(&v.used_tcp_ports), sorted(&v.used_udp_ports)])
                .collect(),
        );
    }

    fn ensure_static(&mut self, key: &str, request: &PlacementRequest) {
        if self.statics.contains_key(key) {
            return;
        }
        let exprs: Vec<&Expr> = request
            .constraints
            .iter()
            .filter_map(|c| match c {
                PlacementConstraint::MemberOf(e) if !e.depends_on_tasks() => Some(e),
                _ => None,
            })
            .collect();
        let mut pass = Vec::new();
        let mut closest: Option<(Stage, u32)> = None;
        for (i, v) in self.view.iter().enumerate() {
            if !v.active {
                continue;
            }
            let stage = if !v.agent_connected {
                Some(Stage::Agent)
            } else if !has_required(v, &request.requires_attributes) {
                Some(Stage::Attribute)
            } else if !exprs.iter().all(|e| e.matches(v)) {
                Some(Stage::MemberOf)
            } else {
                None
            };
            match stage {
                None => pass.push(i as u32),
                Some(s) => {
                    if closest.is_none_or(|(cs, _)| s > cs) {
                        closest = Some((s, i as u32));
                    }
                }
            }
        }
        self.statics.insert(
            key.to_owned(),
            StaticFilter {
                pass,
                closest,
                buckets: HashMap::new(),
            },
        );
    }

    fn prepare(&mut self, request: &PlacementRequest) -> Prepared {
        let g = self.group_id(&request.group);
        self.ensure_group_counts(g);
        let mut keys = Vec::new();
        for s in &request.strategy {
            match s {
                PlacementStrategy::Random => break,
                PlacementStrategy::Binpack(BinpackField::Cpu) => keys.push(KeyKind::BinpackCpu),
                PlacementStrategy::Binpack(BinpackField::Memory) => {
                    keys.push(KeyKind::BinpackMemory)
                }
                PlacementStrategy::Spread(SpreadField::InstanceId) => {
                    keys.push(KeyKind::SpreadInstance)
                }
                PlacementStrategy::Spread(SpreadField::Attribute(a)) => {
                    keys.push(KeyKind::SpreadAttribute(self.ensure_spread(g, a)));
                }
            }
        }
        keys.truncate(crate::request::MAX_STRATEGIES);
        let mut task = request.task.clone();
        task.normalize();
        if !task.tcp_ports.is_empty() || !task.udp_ports.is_empty() {
            self.ensure_ports();
        }
        // The static filter's cache key: the request's task-independent checks.
        let mut key = String::new();
        for r in &request.requires_attributes {
            key.push_str(&r.name);
            key.push('\u{1}');
            key.push_str(r.value.as_deref().unwrap_or("\u{2}"));
            key.push('\u{1}');
        }
        key.push('\u{3}');
        let mut dynamic = Vec::new();
        for (ci, c) in request.constraints.iter().enumerate() {
            if let PlacementConstraint::MemberOf(e) = c {
                if e.depends_on_tasks() {
                    dynamic.push(ci);
                } else {
                    key.push_str(&e.to_string());
                    key.push('\u{1}');
                }
            }
        }
        self.ensure_static(&key, request);
        let mut bucketed = None;
        if let Some(KeyKind::SpreadAttribute(s)) = keys.first() {
            let field = self.spread_counts[*s].field;
            let values = &self.spread_values[field].1;
            if values.len <= MAX_BUCKETS
                && let Some(filter) = self.statics.get_mut(&key)
            {
                filter.buckets.entry(field).or_insert_with(|| {
                    let mut b = vec![Vec::new(); values.len];
                    for &i in &filter.pass {
                        b[values.of[i as usize] as usize].push(i);
                    }
                    b
                });
                bucketed = Some((field, *s));
            }
        }
        Prepared {
            bucketed,
            group: g,
            keys,
            distinct: request
                .constraints
                .iter()
                .any(|c| matches!(c, PlacementConstraint::DistinctInstance)),
            dynamic,
            static_key: key,
            task,
        }
    }

    fn place_one(
        &mut self,
        request: &PlacementRequest,
        p: &Prepared,
        rng: &mut SchedRng,
    ) -> PlacementResult {
        let Some(filter) = self.statics.get(&p.static_key) else {
            return PlacementResult::Failed(PlacementFailure {
                reason: FailureReason::NoInstances,
                closest: None,
            });
        };
        let Some(Some(group_counts)) = self.group_counts.get(p.group as usize) else {
            return PlacementResult::Failed(PlacementFailure {
                reason: FailureReason::NoInstances,
                closest: None,
            });
        };
        let dynamic: Vec<&Expr> = p
            .dynamic
            .iter()
            .filter_map(|ci| match request.constraints.get(*ci) {
                Some(PlacementConstraint::MemberOf(e)) => Some(e),
                _ => None,
            })
            .collect();
        let need_cpu = i64::from(p.task.cpu);
        let need_mem = i64::from(p.task.memory);
        let port_need = !p.task.tcp_ports.is_empty()
            || !p.task.udp_ports.is_empty()
            || p.task.dynamic_tcp_ports > 0
            || p.task.dynamic_udp_ports > 0;
        let nk = p.keys.len();

        let mut closest = filter.closest;
        let mut note = |stage: Stage, i: u32, cpu: &[i64], mem: &[i64]| {
            let replace = match closest {
                None => true,
                Some((cs, ci)) => {
                    stage > cs
                        || (stage == cs
                            && match stage {
                                Stage::ResourceCpu => cpu[i as usize] > cpu[ci as usize],
                                Stage::ResourceMemory => mem[i as usize] > mem[ci as usize],
                                _ => false,
                            })
                }
            };
            if replace {
                closest = Some((stage, i));
            }
        };

        let keys: Vec<KeyRef<'_>> = p
            .keys
            .iter()
            .map(|k| match *k {
                KeyKind::SpreadInstance => KeyRef::Instance(group_counts),
                KeyKind::SpreadAttribute(s) => {
                    let sc = &self.spread_counts[s];
                    KeyRef::Spread(&self.spread_values[sc.field].1.of, &sc.counts)
                }
                KeyKind::BinpackCpu => KeyRef::Cpu,
                KeyKind::BinpackMemory => KeyRef::Memory,
            })
            .collect();
        let mut best: Option<u32> = None;
        let mut best_key = [0u64; crate::request::MAX_STRATEGIES];
        let mut ties = 0u64;
        let mut visit = |i: u32| -> bool {
            let iu = i as usize;
            if !dynamic.is_empty() {
                let overlay = Overlay {
                    view: &self.view[iu],
                    running: self.running[iu],
                    placed: &self.placed_groups[iu],
                    names: &self.group_names,
                };
                if !dynamic.iter().all(|e| e.eval(&overlay)) {
                    note(Stage::MemberOf, i, &self.cpu, &self.mem);
                    return false;
                }
            }
            if p.distinct && group_counts[iu] > 0 {
                note(Stage::DistinctInstance, i, &self.cpu, &self.mem);
                return false;
            }
            let cpu = self.cpu[iu];
            if cpu < need_cpu {
                note(Stage::ResourceCpu, i, &self.cpu, &self.mem);
                return false;
            }
            let mem = self.mem[iu];
            if mem < need_mem {
                note(Stage::ResourceMemory, i, &self.cpu, &self.mem);
                return false;
            }
            if port_need && !self.ports_ok(iu, &p.task) {
                note(Stage::ResourcePorts, i, &self.cpu, &self.mem);
                return false;
            }
            if p.task.enis > 0 && self.enis[iu] < i64::from(p.task.enis) {
                note(Stage::ResourceEni, i, &self.cpu, &self.mem);
                return false;
            }
            let mut key = [0u64; crate::request::MAX_STRATEGIES];
            for (k, kind) in keys.iter().enumerate() {
                key[k] = match kind {
                    KeyRef::Instance(counts) => u64::from(counts[iu]),
                    KeyRef::Spread(of, counts) => u64::from(counts[of[iu] as usize]),
                    KeyRef::Cpu => cpu as u64,
                    KeyRef::Memory => mem as u64,
                };
            }
            let ord = if best.is_none() {
                std::cmp::Ordering::Less
            } else {
                key[..nk].cmp(&best_key[..nk])
            };
            match ord {
                std::cmp::Ordering::Less => {
                    best = Some(i);
                    best_key = key;
                    ties = 1;
                }
                std::cmp::Ordering::Equal => {
                    ties += 1;
                    if rng.below(ties) == 0 {
                        best = Some(i);
                    }
                }
                std::cmp::Ordering::Greater => {}
            }
            true
        };
        let mut bucketed = false;
        if let Some((field, s)) = p.bucketed
            && let Some(buckets) = filter.buckets.get(&field)
        {
            // The first key is a spread over a field with few values: only the values with the
            // fewest tasks can win, so scan their instances first and stop at the first count
            // that has a feasible instance.
            bucketed = true;
            let counts = &self.spread_counts[s].counts;
            let mut order: Vec<(u32, usize)> = (0..buckets.len())
                .filter(|v| !buckets[*v].is_empty())
                .map(|v| (counts[v], v))
                .collect();
            order.sort_unstable();
            let mut k = 0;
            while k < order.len() {
                let level = order[k].0;
                let mut found = false;
                while k < order.len() && order[k].0 == level {
                    for &i in &buckets[order[k].1] {
                        found |= visit(i);
                    }
                    k += 1;
                }
                if found {
                    break;
                }
            }
        }
        if !bucketed {
            for &i in &filter.pass {
                visit(i);
            }
        }
        match best {
            Some(i) => {
                self.commit(i as usize, p);
                PlacementResult::Placed {
                    instance: i as usize,
                }
            }
            None => PlacementResult::Failed(PlacementFailure {
                reason: closest.map_or(FailureReason::NoInstances, |(s, _)| s),
                closest: closest.map(|(_, i)| i as usize),
            }),
        }
    }

    fn ports_ok(&self, i: usize, task: &crate::view::TaskDemand) -> bool {
        let [tcp_free, udp_free] = self.dyn_free[i];
        let range = self.view[i].dynamic_port_range;
        // Static ports inside the dynamic range come out of the same pool.
        let in_pool = |ports: &[u16]| ports.iter().filter(|p| in_range(**p, range)).count() as u32;
        if tcp_free < task.dynamic_tcp_ports + in_pool(&task.tcp_ports)
            || udp_free < task.dynamic_udp_ports + in_pool(&task.udp_ports)
        {
            return false;
        }
        if task.tcp_ports.is_empty() && task.udp_ports.is_empty() {
            return true;
        }
        let Some(ports) = &self.ports else {
            return false;
        };
        let [tcp, udp] = &ports[i];
        task.tcp_ports.iter().all(|p| tcp.binary_search(p).is_err())
            && task.udp_ports.iter().all(|p| udp.binary_search(p).is_err())
    }

    fn commit(&mut self, i: usize, p: &Prepared) {
        let task = &p.task;
        self.cpu[i] -= i64::from(task.cpu);
        self.mem[i] -= i64::from(task.memory);
        self.enis[i] = self.enis[i].saturating_sub(i64::from(task.enis));
        self.running[i] += 1;
        self.placed_groups[i].push(p.group);
        if let Some(Some(c)) = self.group_counts.get_mut(p.group as usize) {
            c[i] += 1;
        }
        for sc in &mut self.spread_counts {
            if sc.group == p.group {
                let value = self.spread_values[sc.field].1.of[i] as usize;
                sc.counts[value] += 1;
            }
        }
        let range = self.view[i].dynamic_port_range;
        let [tcp_free, udp_free] = &mut self.dyn_free[i];
        let static_tcp = task
            .tcp_ports
            .iter()
            .filter(|p| in_range(**p, range))
            .count() as u32;
        let static_udp = task
            .udp_ports
            .iter()
            .filter(|p| in_range(**p, range))
            .count() as u32;
        *tcp_free = tcp_free.saturating_sub(task.dynamic_tcp_ports + static_tcp);
        *udp_free = udp_free.saturating_sub(task.dynamic_udp_ports + static_udp);
        if let Some(ports) = &mut self.ports {
            let [tcp, udp] = &mut ports[i];
            for (set, add) in [(tcp, &task.tcp_ports), (udp, &task.udp_ports)] {
                for p in add {
                    if let Err(at) = set.binary_search(p) {
                        set.insert(at, *p);
                    }
                }
            }
        }
    }
}

/// A request resolved against the placer's indexes, once per call.
#[derive(Debug)]
struct Prepared {
    /// When the first key is a spread over a field with few values: (field, spread counts).
    bucketed: Option<(usize, usize)>,
    group: u32,
    keys: Vec<KeyKind>,
    distinct: bool,
    /// Indexes of the task-dependent `memberOf` constraints.
    dynamic: Vec<usize>,
    static_key: String,
    task: crate::view::TaskDemand,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
