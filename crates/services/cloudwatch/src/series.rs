//! The metric series index, pure: each series (region, namespace, metric name, dimensions) keeps
//! aggregates (sample count, sum, minimum, maximum) per storage bucket (a minute for standard
//! resolution, a second for high resolution) and unit. A `PutMetricData` adds to aggregates;
//! reads combine them into periods. Bounded: buckets older than the retention are dropped.

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

    /// The value of one of CloudWatch's statistics.
    pub fn stat(&self, stat: Stat) -> f64 {
        match stat {
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

/// The statistics Gantry computes (percentiles and trimmed statistics are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
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

    pub fn as_str(self) -> &'static str {
        match self {
            Stat::SampleCount => "SampleCount",
            Stat::Average => "Average",
            Stat::Sum => "Sum",
            Stat::Minimum => "Minimum",
            Stat::Maximum => "Maximum",
        }
    }
}

/// One aggregate as stored: which series, when (bucket start, seconds), which unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: SeriesKey,
    pub bucket: i64,
    pub unit: u8,
    pub agg: Agg,
}

#[derive(Debug, Default)]
pub struct Series {
    /// (bucket start in seconds, unit) → aggregate.
    pub points: BTreeMap<(i64, u8), Agg>,
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
    /// time order.
    pub fn periods(
        &self,
        key: &SeriesKey,
        start: i64,
        end: i64,
        period: i64,
        unit: Option<u8>,
    ) -> Vec<PeriodAgg> {
        let Some(series) = self.series.get(key) else {
            return Vec::new();
        };
        aggregate_periods(
            series
                .points
                .range((start, 0)..(end, 0))
                .map(|(k, a)| (k.0, k.1, *a)),
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
            !s.points.is_empty()
        });
        dropped
    }
}

/// Combines bucket aggregates `(time, unit, agg)` in time order into periods.
pub fn aggregate_periods(
    buckets: impl Iterator<Item = (i64, u8, Agg)>,
    start: i64,
    period: i64,
    unit: Option<u8>,
) -> Vec<PeriodAgg> {
    let mut out: Vec<PeriodAgg> = Vec::new();
    let mut open: BTreeMap<u8, usize> = BTreeMap::new();
    let mut current = i64::MIN;
    for (t, u, agg) in buckets {
        if unit.is_some_and(|want| want != u) {
            continue;
        }
        let p = start + (t - start).div_euclid(period) * period;
        if p != current {
            current = p;
            open.clear();
        }
        match open.get(&u) {
            Some(&i) => out[i].agg.merge(&agg),
            None => {
                open.insert(u, out.len());
                out.push(PeriodAgg {
                    start: p,
                    unit: u,
                    agg,
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
                index.add(&Row { key: key(), bucket, unit: UNIT_NONE, agg: Agg::of(*v, f64::from(*c)) }, 0);
            }
            let end = 7200;
            let got = index.periods(&key(), start, end, period, None);
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
            },
            1,
        );
        index.add(
            &Row {
                key: key(),
                bucket: 60,
                unit: ms,
                agg: Agg::of(5.0, 1.0),
            },
            2,
        );
        assert_eq!(index.periods(&key(), 0, 3600, 300, None).len(), 2);
        let only = index.periods(&key(), 0, 3600, 300, Some(ms));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].agg.sum, 5.0);
        assert_eq!(index.expire(120), 2);
        assert!(index.is_empty());
    }
}
