//! The metric series index, pure: each series (region, namespace, metric name, dimensions) keeps
//! aggregates (sample count, sum, minimum, maximum) per storage bucket (a minute for standard
//! resolution, a second for high resolution) and unit. A `PutMetricData` adds to aggregates;
//! reads combine them into periods. Bounded: buckets older than the retention are dropped.
//!
//! Beside each aggregate, the bucket's raw values ([`Values`]: distinct values with their
//! counts) answer percentiles exactly. As in CloudWatch, a bucket has none once a statistic set
//! that is not a repeated single value (more than one sample and `Minimum` < `Maximum`) or a
//! negative value was put into it; nor past [`MAX_DISTINCT`] distinct values (memory stays
//! bounded).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// CloudWatch's units (`StandardUnit`), in model order.
pub const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The index of `name` in [`UNITS`].
pub fn unit_id(name: &str) -> Option<u8> {
    UNITS.iter().position(|u| *u == name).map(|i| i as u8)
}

/// The unit of a datum that names none.
pub const UNIT_NONE: u8 = 26;

/// One series: what `ListMetrics` lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub region: String,
    pub namespace: String,
    pub name: String,
    /// Sorted by name; names are unique.
    pub dimensions: Vec<(String, String)>,
}

/// Statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Agg {
    pub const EMPTY: Agg = Agg {
        count: 0.0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// `count` samples of `value`.
    pub fn of(value: f64, count: f64) -> Agg {
        Agg {
            count,
            sum: value * count,
            min: value,
            max: value,
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value of one of CloudWatch's statistics (`NaN` for a percentile: those come from
    /// the raw values, see [`PeriodAgg::stat`]).
    pub fn stat(&self, stat: Stat) -> f64 {
        match stat {
            Stat::Percentile(_) => f64::NAN,
            Stat::SampleCount => self.count,
            Stat::Sum => self.sum,
            Stat::Average => {
                if self.count > 0.0 {
                    self.sum / self.count
                } else {
                    0.0
                }
            }
            Stat::Minimum => self.min,
            Stat::Maximum => self.max,
        }
    }
}

/// The statistics Gantry computes (trimmed means, winsorized means, trimmed counts and sums,
/// percentile ranks and `IQM` are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
    /// `pNN.NN`: the percentile, in hundredths (`p99` is 9900, `p99.9` 9990).
    Percentile(u16),
}

impl Stat {
    pub const ALL: [Stat; 5] = [
        Stat::SampleCount,
        Stat::Average,
        Stat::Sum,
        Stat::Minimum,
        Stat::Maximum,
    ];

    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "SampleCount" => Stat::SampleCount,
            "Average" => Stat::Average,
            "Sum" => Stat::Sum,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            _ => return None,
        })
    }

    /// A percentile as CloudWatch names one: `p` then 0 to 100 with at most two decimals
    /// (`p99`, `p99.9`, `p0.0`, `p100`).
    pub fn parse_percentile(s: &str) -> Option<Stat> {
        let n = s.strip_prefix('p')?;
        let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
        if whole.is_empty()
            || whole.len() > 3
            || frac.len() > 2
            || !whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit())
            || (n.contains('.') && frac.is_empty())
        {
            return None;
        }
        let whole: u16 = whole.parse().ok()?;
        let frac: u16 = format!("{frac:0<2}").parse().ok()?;
        let h = whole.checked_mul(100)?.checked_add(frac)?;
        (h <= 10_000).then_some(Stat::Percentile(h))
    }

    /// The basic statistics' names (`Percentile` has no fixed one: see [`Stat::name`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::SampleCount => "SampleCount",
            Stat::Average => "Average",
            Stat::Sum => "Sum",
            Stat::Minimum => "Minimum",
            Stat::Maximum => "Maximum",
            Stat::Percentile(_) => "Percentile",
        }
    }

    /// The statistic's name as a request gave it (`p99`, `p99.5`).
    pub fn name(self) -> String {
        match self {
            Stat::Percentile(h) if h % 100 == 0 => format!("p{}", h / 100),
            Stat::Percentile(h) if h % 10 == 0 => format!("p{}.{}", h / 100, (h % 100) / 10),
            Stat::Percentile(h) => format!("p{}.{:02}", h / 100, h % 100),
            other => other.as_str().to_owned(),
        }
    }
}

/// Most distinct raw values a bucket keeps for percentiles.
pub const MAX_DISTINCT: usize = 10_000;

/// Raw values of a bucket or period: distinct values in ascending order with their counts, or
/// `None` when percentiles cannot be computed from what was put.
pub type Values = Option<Vec<(f64, f64)>>;

/// The raw values a datum of `count` samples of `value` stands for (none for a negative value).
pub fn values_of(value: f64, count: f64) -> Values {
    // `+ 0.0` makes -0 a 0.
    (value >= 0.0).then(|| vec![(value + 0.0, count)])
}

/// A bucket's raw values as kept: the bits of each (non-negative, so ordered like the values)
/// distinct value → its count; an insertion costs a logarithm of the bucket's size.
type Kept = Option<BTreeMap<u64, f64>>;

fn keep(into: &mut Kept, more: &Values) {
    let (Some(map), Some(more)) = (into.as_mut(), more.as_ref()) else {
        *into = None;
        return;
    };
    for (v, c) in more {
        *map.entry((v + 0.0).to_bits()).or_insert(0.0) += c;
    }
    if map.len() > MAX_DISTINCT {
        *into = None;
    }
}

fn kept_values(kept: &Kept) -> Values {
    kept.as_ref()
        .map(|m| m.iter().map(|(b, c)| (f64::from_bits(*b), *c)).collect())
}

/// The raw values a statistic set stands for, where CloudWatch can tell them: a single sample,
/// or `Minimum` equal to `Maximum` (every sample is that value).
pub fn values_of_set(agg: &Agg) -> Values {
    if agg.count == 1.0 || agg.min == agg.max {
        values_of(agg.min, agg.count)
    } else {
        None
    }
}

/// Adds `more` into `into` (both ascending, distinct); `None` wins, and so does going past
/// [`MAX_DISTINCT`].
pub fn merge_values(into: &mut Values, more: &Values) {
    let (Some(a), Some(b)) = (into.as_mut(), more.as_ref()) else {
        *into = None;
        return;
    };
    if b.is_empty() {
        return;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1 + y.1)
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        out.push(next);
    }
    if out.len() > MAX_DISTINCT {
        *into = None;
    } else {
        *a = out;
    }
}

/// The `hundredths`/100 percentile of `values` (ascending, with counts): the smallest value
/// such that at least that share of the samples is less than or equal to it (nearest rank;
/// `p0` is the minimum, `p100` the maximum). `None` without samples.
pub fn percentile(values: &[(f64, f64)], hundredths: u16) -> Option<f64> {
    let total: f64 = values.iter().map(|v| v.1).sum();
    if total <= 0.0 {
        return None;
    }
    let rank = total * f64::from(hundredths) / 10_000.0;
    let mut seen = 0.0;
    for (v, c) in values {
        if *c <= 0.0 {
            continue;
        }
        seen += c;
        if seen >= rank {
            return Some(*v);
        }
    }
    values.iter().rev().find(|v| v.1 > 0.0).map(|v| v.0)
}

/// One aggregate as stored: which series, when (bucket start, seconds), which unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: SeriesKey,
    pub bucket: i64,
    pub unit: u8,
    pub agg: Agg,
    /// The raw values behind `agg`, for percentiles.
    pub values: Values,
}

#[derive(Debug, Default)]
pub struct Series {
    /// (bucket start in seconds, unit) → aggregate.
    pub points: BTreeMap<(i64, u8), Agg>,
    /// (bucket start in seconds, unit) → raw values.
    values: BTreeMap<(i64, u8), Kept>,
    /// When data was last put (milliseconds), for `RecentlyActive`.
    pub last_put_ms: u64,
}

/// Every series of the server.
#[derive(Debug, Default)]
pub struct Index {
    series: HashMap<Arc<SeriesKey>, Series>,
}

/// One period's aggregate for one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodAgg {
    /// Start of the period, seconds.
    pub start: i64,
    pub unit: u8,
    pub agg: Agg,
    /// The period's raw values when asked for.
    pub values: Values,
}

impl PeriodAgg {
    /// The statistic's value; `None` for a percentile the raw values cannot answer.
    pub fn stat(&self, stat: Stat) -> Option<f64> {
        match stat {
            Stat::Percentile(h) => percentile(self.values.as_deref()?, h),
            other => Some(self.agg.stat(other)),
        }
    }

    /// Adds another aggregate of the same period.
    pub fn merge(&mut self, other: &PeriodAgg) {
        self.agg.merge(&other.agg);
        merge_values(&mut self.values, &other.values);
    }
}

impl Index {
    pub fn add(&mut self, row: &Row, put_ms: u64) {
        let series = match self.series.get_mut(&row.key) {
            Some(s) => s,
            None => self.series.entry(Arc::new(row.key.clone())).or_default(),
        };
        series
            .points
            .entry((row.bucket, row.unit))
            .and_modify(|a| a.merge(&row.agg))
            .or_insert(row.agg);
        let kept = series
            .values
            .entry((row.bucket, row.unit))
            .or_insert_with(|| Some(BTreeMap::new()));
        keep(kept, &row.values);
        series.last_put_ms = series.last_put_ms.max(put_ms);
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The series, sorted, with when each was last put.
    pub fn keys(&self) -> Vec<(Arc<SeriesKey>, u64)> {
        let mut keys: Vec<_> = self
            .series
            .iter()
            .map(|(k, s)| (k.clone(), s.last_put_ms))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    /// The aggregates of `key` per period of `period` seconds starting at `start`, for buckets in
    /// `[start, end)`, one per (period, unit) that has data, restricted to `unit` when given; in
    /// time order. With `raw`, each period also carries its raw values (for percentiles).
    pub fn periods(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
        period: i64,
        unit: Option<u8>,
        raw: bool,
    ) -> Vec<PeriodAgg> {
        let Some(series) = self.series.get(key) else {
            return Vec::new();
        };
        let empty: Values = Some(Vec::new());
        aggregate_periods(
            series.points.range((start, 0)..(end, 0)).map(|(k, a)| {
                let values = if raw {
                    series.values.get(k).and_then(kept_values)
                } else {
                    empty.clone()
                };
                (k.0, k.1, *a, values)
            }),
            start,
            period,
            unit,
        )
    }

    /// Drops buckets that start before `cutoff` (seconds) and series left without data.
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let mut dropped = 0;
        self.series.retain(|_, s| {
            let keep = s.points.split_off(&(cutoff, 0));
            dropped += s.points.len();
            s.points = keep;
            s.values = s.values.split_off(&(cutoff, 0));
            !s.points.is_empty()
        });
        dropped
    }
}

/// Combines bucket aggregates `(time, unit, agg, raw values)` in time order into periods.
pub fn aggregate_periods(
    buckets: impl Iterator<Item = (i64, u8, Agg, Values)>,
    start: i64,
    period: i64,
    unit: Option<u8>,
) -> Vec<PeriodAgg> {
    let mut out: Vec<PeriodAgg> = Vec::new();
    // The current period's (unit, index in `out`): a period has one unit or a few.
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut current = i64::MIN;
    for (t, u, agg, values) in buckets {
        if unit.is_some_and(|want| want != u) {
            continue;
        }
        let p = start + (t - start).div_euclid(period) * period;
        if p != current {
            current = p;
            open.clear();
        }
        match open.iter().find(|(unit, _)| *unit == u) {
            Some(&(_, i)) => {
                out[i].agg.merge(&agg);
                merge_values(&mut out[i].values, &values);
            }
            None => {
                open.push((u, out.len()));
                out.push(PeriodAgg {
                    start: p,
                    unit: u,
                    agg,
                    values,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SeriesKey {
        SeriesKey {
            region: "us-east-1".into(),
            namespace: "App".into(),
            name: "Latency".into(),
            dimensions: vec![("Host".into(), "a".into())],
        }
    }

    proptest! {
        /// The index's period statistics equal a direct computation over the raw samples.
        #[test]
        fn period_statistics_match_a_reference(
            samples in proptest::collection::vec((0i64..7200, -1.0e6f64..1.0e6, 1u8..4), 1..300),
            period_minutes in 1i64..30,
            start in 0i64..3600,
        ) {
            let period = period_minutes * 60;
            let mut index = Index::default();
            for (t, v, c) in &samples {
                let bucket = t - t.rem_euclid(60);
                index.add(&Row { key: key(), bucket, unit: UNIT_NONE, agg: Agg::of(*v, f64::from(*c)), values: values_of(*v, f64::from(*c)) }, 0);
            }
            let end = 7200;
            let got = index.periods(&key(), start, end, period, None, false);
            let mut want: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
            for (t, v, c) in &samples {
                let bucket = t - t.rem_euclid(60);
                if bucket < start || bucket >= end { continue; }
                let p = start + (bucket - start).div_euclid(period) * period;
                want.entry(p).or_default().push((*v, f64::from(*c)));
            }
            prop_assert_eq!(got.len(), want.len());
            for (g, (p, vals)) in got.iter().zip(want.iter()) {
                prop_assert_eq!(g.start, *p);
                let count: f64 = vals.iter().map(|(_, c)| c).sum();
                let sum: f64 = vals.iter().map(|(v, c)| v * c).sum();
                let min = vals.iter().map(|(v, _)| *v).fold(f64::INFINITY, f64::min);
                let max = vals.iter().map(|(v, _)| *v).fold(f64::NEG_INFINITY, f64::max);
                prop_assert_eq!(g.agg.count, count);
                prop_assert!((g.agg.sum - sum).abs() <= 1e-6 * sum.abs().max(1.0));
                prop_assert_eq!(g.agg.min, min);
                prop_assert_eq!(g.agg.max, max);
                prop_assert!((g.agg.stat(Stat::Average) - sum / count).abs() <= 1e-6 * (sum / count).abs().max(1.0));
            }
        }
    }

    /// Nearest rank over the samples written out one by one.
    fn reference_percentile(samples: &[(u32, u8)], hundredths: u16) -> Option<f64> {
        let mut all: Vec<u32> = samples
            .iter()
            .flat_map(|(v, c)| std::iter::repeat_n(*v, usize::from(*c)))
            .collect();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let n = all.len() as u64;
        let rank = (n * u64::from(hundredths)).div_ceil(10_000).max(1);
        Some(f64::from(all[(rank - 1) as usize]))
    }

    proptest! {
        /// Percentiles of the index's periods equal nearest rank over the raw samples, however
        /// the samples are split into puts and buckets.
        #[test]
        fn percentiles_match_a_reference(
            samples in proptest::collection::vec((0i64..600, 0u32..50, 1u8..4), 1..200),
            hundredths in prop_oneof![Just(0u16), Just(5000), Just(9000), Just(9900), Just(10_000), 0u16..=10_000],
        ) {
            let mut index = Index::default();
            for (t, v, c) in &samples {
                let bucket = t - t.rem_euclid(60);
                let value = f64::from(*v);
                let count = f64::from(*c);
                index.add(&Row { key: key(), bucket, unit: UNIT_NONE, agg: Agg::of(value, count), values: values_of(value, count) }, 0);
            }
            let got = index.periods(&key(), 0, 600, 600, None, true);
            prop_assert_eq!(got.len(), 1);
            let flat: Vec<(u32, u8)> = samples.iter().map(|(_, v, c)| (*v, *c)).collect();
            prop_assert_eq!(got[0].stat(Stat::Percentile(hundredths)), reference_percentile(&flat, hundredths));
        }

        /// Any two-decimal percentile name parses back to itself.
        #[test]
        fn percentile_names_round_trip(h in 0u16..=10_000) {
            let name = Stat::Percentile(h).name();
            prop_assert_eq!(Stat::parse_percentile(&name), Some(Stat::Percentile(h)));
        }
    }

    #[test]
    fn percentile_names_are_checked() {
        assert_eq!(Stat::parse_percentile("p99"), Some(Stat::Percentile(9900)));
        assert_eq!(
            Stat::parse_percentile("p99.9"),
            Some(Stat::Percentile(9990))
        );
        assert_eq!(Stat::parse_percentile("p0.0"), Some(Stat::Percentile(0)));
        assert_eq!(
            Stat::parse_percentile("p100"),
            Some(Stat::Percentile(10_000))
        );
        for bad in [
            "p", "p100.01", "p101", "p99.", "p9.999", "pxx", "tm99", "P99", "p-1",
        ] {
            assert_eq!(Stat::parse_percentile(bad), None, "{bad}");
        }
    }

    #[test]
    fn statistic_sets_and_negative_values_have_no_percentiles() {
        let set = |count: f64, sum: f64, min: f64, max: f64| Agg {
            count,
            sum,
            min,
            max,
        };
        assert_eq!(
            values_of_set(&set(1.0, 3.0, 3.0, 3.0)),
            Some(vec![(3.0, 1.0)])
        );
        assert_eq!(
            values_of_set(&set(4.0, 8.0, 2.0, 2.0)),
            Some(vec![(2.0, 4.0)])
        );
        assert_eq!(values_of_set(&set(2.0, 3.0, 1.0, 2.0)), None);
        assert_eq!(values_of(-1.0, 1.0), None);
        let mut index = Index::default();
        let row = |agg: Agg, values: Values| Row {
            key: key(),
            bucket: 60,
            unit: UNIT_NONE,
            agg,
            values,
        };
        index.add(&row(Agg::of(5.0, 1.0), values_of(5.0, 1.0)), 0);
        let p = index.periods(&key(), 0, 600, 600, None, true);
        assert_eq!(p[0].stat(Stat::Percentile(9900)), Some(5.0));
        index.add(&row(set(2.0, 3.0, 1.0, 2.0), None), 0);
        let p = index.periods(&key(), 0, 600, 600, None, true);
        assert_eq!(p[0].stat(Stat::Percentile(9900)), None);
        assert_eq!(p[0].stat(Stat::SampleCount), Some(3.0));
    }

    #[test]
    fn too_many_distinct_values_drop_the_raw_values() {
        let mut v: Values = Some(Vec::new());
        let many: Vec<(f64, f64)> = (0..MAX_DISTINCT).map(|i| (i as f64, 1.0)).collect();
        merge_values(&mut v, &Some(many));
        assert_eq!(v.as_ref().map(Vec::len), Some(MAX_DISTINCT));
        merge_values(&mut v, &Some(vec![(0.5, 1.0)]));
        assert_eq!(v, None);
    }

    #[test]
    fn units_are_kept_apart_and_filtered() {
        let mut index = Index::default();
        let seconds = unit_id("Seconds").unwrap();
        let ms = unit_id("Milliseconds").unwrap();
        index.add(
            &Row {
                key: key(),
                bucket: 60,
                unit: seconds,
                agg: Agg::of(1.0, 1.0),
                values: values_of(1.0, 1.0),
            },
            1,
        );
        index.add(
            &Row {
                key: key(),
                bucket: 60,
                unit: ms,
                agg: Agg::of(5.0, 1.0),
                values: values_of(5.0, 1.0),
            },
            2,
        );
        assert_eq!(index.periods(&key(), 0, 3600, 300, None, false).len(), 2);
        let only = index.periods(&key(), 0, 3600, 300, Some(ms), false);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].agg.sum, 5.0);
        assert_eq!(index.expire(120), 2);
        assert!(index.is_empty());
    }
}
