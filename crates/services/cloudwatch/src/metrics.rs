//! Metric operations: `PutMetricData` (validated as CloudWatch does, aggregated into rows),
//! `GetMetricStatistics`, `GetMetricData` (metric statistics and metric math) and `ListMetrics`.

use std::collections::{BTreeMap, HashSet};

use gantry_aws_proto::AwsError;
use serde_json::{Map, Value, json};

use crate::error::{combination, invalid, invalid_value, missing};
use crate::series::{
    Agg, PeriodAgg, Row, SeriesKey, Stat, UNIT_NONE, UNITS, Values, merge_values, unit_id,
    values_of, values_of_set,
};

/// Most metric items in one `PutMetricData`.
pub const MAX_ITEMS: usize = 1000;
/// Most values in one item's `Values`.
pub const MAX_VALUES: usize = 150;
/// Most datapoints one `GetMetricStatistics` may return.
pub const MAX_STATISTICS_DATAPOINTS: i64 = 1440;
/// Values CloudWatch accepts lie within ±2^360.
const VALUE_LIMIT: f64 = 2.348_542_582_773_833_3e108;
/// Data may be put at most two weeks in the past and two hours in the future.
const MAX_PAST_SECS: f64 = 14.0 * 86400.0;
const MAX_FUTURE_SECS: f64 = 2.0 * 3600.0;

/// A double member: a finite number within CloudWatch's range, or the error naming it.
pub fn double(v: &Value, param: &str) -> Result<f64, AwsError> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            return Err(invalid_value(s, param));
        }
        _ => None,
    };
    match x {
        Some(x) if x.is_finite() && x.abs() <= VALUE_LIMIT => Ok(x),
        Some(x) => Err(invalid_value(&x.to_string(), param)),
        None => Err(invalid_value(&v.to_string(), param)),
    }
}

fn str_member<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// The dimensions of a metric, sorted by name; duplicate names are refused.
pub fn dimensions(v: Option<&Value>, param: &str) -> Result<Vec<(String, String)>, AwsError> {
    let mut dims = Vec::new();
    let mut seen = HashSet::new();
    for (i, d) in v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = str_member(d, "Name")
            .ok_or_else(|| missing(&format!("{param}.member.{}.Name", i + 1)))?;
        let value = str_member(d, "Value")
            .ok_or_else(|| missing(&format!("{param}.member.{}.Value", i + 1)))?;
        if !seen.insert(name.to_owned()) {
            return Err(invalid(format!(
                "The value {name} for parameter {param}.member.{}.Name is invalid: \
                 a dimension name may appear once per metric.",
                i + 1
            )));
        }
        dims.push((name.to_owned(), value.to_owned()));
    }
    dims.sort();
    Ok(dims)
}

/// A unit member: one of CloudWatch's units, or the validation error naming the value.
pub fn unit(v: Option<&Value>, path: &str) -> Result<Option<u8>, AwsError> {
    let Some(name) = v.and_then(Value::as_str) else {
        return Ok(None);
    };
    unit_id(name).map(Some).ok_or_else(|| {
        AwsError::client(
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at '{path}' failed to satisfy \
                 constraint: Member must satisfy enum value set: [{}]",
                UNITS.join(", ")
            ),
        )
    })
}

/// The rows a `PutMetricData` input adds, after CloudWatch's checks.
pub fn put_metric_data(input: &Value, region: &str, now_ms: u64) -> Result<Vec<Row>, AwsError> {
    let namespace = str_member(input, "Namespace").ok_or_else(|| missing("Namespace"))?;
    if namespace.starts_with("AWS/") {
        return Err(invalid(format!(
            "The value {namespace} for parameter Namespace is invalid: namespaces starting \
             with AWS/ are reserved for AWS services."
        )));
    }
    if input
        .get("EntityMetricData")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(invalid(
            "EntityMetricData is not supported by this server; send the data in MetricData.",
        ));
    }
    let items = input
        .get("MetricData")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.is_empty() {
        return Err(missing("MetricData"));
    }
    if items.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_ITEMS}."
        )));
    }
    let now = now_ms as f64 / 1000.0;
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("MetricData.member.{}", i + 1);
        let name =
            str_member(item, "MetricName").ok_or_else(|| missing(&format!("{p}.MetricName")))?;
        let dims = dimensions(item.get("Dimensions"), &format!("{p}.Dimensions"))?;
        let unit = unit(
            item.get("Unit"),
            &format!("metricData.{}.member.unit", i + 1),
        )?
        .unwrap_or(UNIT_NONE);
        let resolution = match item.get("StorageResolution") {
            None | Some(Value::Null) => 60,
            Some(v) => match v.as_i64() {
                Some(1) => 1,
                Some(60) => 60,
                _ => {
                    return Err(invalid_value(
                        &v.to_string(),
                        &format!("{p}.StorageResolution"),
                    ));
                }
            },
        };
        let ts = match item.get("Timestamp") {
            None | Some(Value::Null) => now,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| invalid_value(&v.to_string(), &format!("{p}.Timestamp")))?,
        };
        if ts < now - MAX_PAST_SECS {
            return Err(invalid(format!(
                "The parameter {p}.Timestamp must specify a time no more than two weeks in the past."
            )));
        }
        if ts > now + MAX_FUTURE_SECS {
            return Err(invalid(format!(
                "The parameter {p}.Timestamp must specify a time no more than two hours in the future."
            )));
        }
        let value = item.get("Value").filter(|v| !v.is_null());
        let set = item.get("StatisticValues").filter(|v| !v.is_null());
        let values = item
            .get("Values")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        let counts = item
            .get("Counts")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty());
        let exclusive = [
            (value.is_some(), "Value"),
            (set.is_some(), "StatisticValues"),
            (values.is_some(), "Values"),
        ];
        let given: Vec<&str> = exclusive
            .iter()
            .filter(|(g, _)| *g)
            .map(|(_, n)| *n)
            .collect();
        if given.len() > 1 {
            return Err(combination(format!(
                "The parameters {p}.{} and {p}.{} are mutually exclusive and you have specified both.",
                given[0], given[1]
            )));
        }
        let (agg, raw) = if let Some(v) = value {
            let x = double(v, &format!("{p}.Value"))?;
            (Agg::of(x, 1.0), values_of(x, 1.0))
        } else if let Some(s) = set {
            let sp = format!("{p}.StatisticValues");
            let get = |m: &str| match s.get(m) {
                Some(v) if !v.is_null() => double(v, &format!("{sp}.{m}")),
                _ => Err(missing(&format!("{sp}.{m}"))),
            };
            let agg = Agg {
                count: get("SampleCount")?,
                sum: get("Sum")?,
                min: get("Minimum")?,
                max: get("Maximum")?,
            };
            if agg.count <= 0.0 {
                return Err(invalid_value(
                    &agg.count.to_string(),
                    &format!("{sp}.SampleCount"),
                ));
            }
            if agg.min > agg.max {
                return Err(invalid(format!(
                    "The parameter {sp}.Minimum must not be greater than {sp}.Maximum."
                )));
            }
            (agg, values_of_set(&agg))
        } else if let Some(values) = values {
            if values.len() > MAX_VALUES {
                return Err(invalid(format!(
                    "The collection {p}.Values must not have a size greater than {MAX_VALUES}."
                )));
            }
            if let Some(counts) = counts
                && counts.len() != values.len()
            {
                return Err(invalid(format!(
                    "The parameters {p}.Values and {p}.Counts must be of the same size."
                )));
            }
            let mut agg = Agg::EMPTY;
            let mut raw: Values = Some(Vec::new());
            for (j, v) in values.iter().enumerate() {
                let x = double(v, &format!("{p}.Values.member.{}", j + 1))?;
                let c = match counts {
                    Some(c) => double(&c[j], &format!("{p}.Counts.member.{}", j + 1))?,
                    None => 1.0,
                };
                if c < 0.0 {
                    return Err(invalid_value(
                        &c.to_string(),
                        &format!("{p}.Counts.member.{}", j + 1),
                    ));
                }
                if c > 0.0 {
                    agg.merge(&Agg::of(x, c));
                    merge_values(&mut raw, &values_of(x, c));
                }
            }
            if agg.count == 0.0 {
                continue;
            }
            (agg, raw)
        } else {
            return Err(missing(&format!(
                "{p}.Value, {p}.StatisticValues or {p}.Values"
            )));
        };
        let secs = ts.floor() as i64;
        rows.push(Row {
            key: SeriesKey {
                region: region.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                dimensions: dims,
            },
            bucket: secs - secs.rem_euclid(resolution),
            unit,
            agg,
            values: raw,
        });
    }
    Ok(rows)
}

/// A period CloudWatch accepts: 1, 5, 10, 30 or a multiple of 60 seconds.
pub fn check_period(period: i64, param: &str) -> Result<(), AwsError> {
    if period <= 0 || !(period % 60 == 0 || [1, 5, 10, 30].contains(&period)) {
        return Err(invalid(format!(
            "The parameter {param} must be 1, 5, 10, 30, or a multiple of 60."
        )));
    }
    Ok(())
}

/// Where a query's periods start: the start time rounded down to the period's granularity
/// (a minute for periods of a minute or more).
pub fn align_start(start: f64, period: i64) -> i64 {
    let s = start.floor() as i64;
    let g = if period % 60 == 0 { 60 } else { period };
    s - s.rem_euclid(g)
}

/// `StartTime`/`EndTime` of a request, checked.
pub fn time_range(input: &Value) -> Result<(f64, f64), AwsError> {
    let start = input
        .get("StartTime")
        .and_then(Value::as_f64)
        .ok_or_else(|| missing("StartTime"))?;
    let end = input
        .get("EndTime")
        .and_then(Value::as_f64)
        .ok_or_else(|| missing("EndTime"))?;
    if start >= end {
        return Err(invalid(
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    Ok((start, end))
}

/// The series a `Metric`-like value (`Namespace`, `MetricName`, `Dimensions`) names.
pub fn series_key(v: &Value, region: &str, param: &str) -> Result<SeriesKey, AwsError> {
    let prefix = if param.is_empty() {
        String::new()
    } else {
        format!("{param}.")
    };
    Ok(SeriesKey {
        region: region.to_owned(),
        namespace: str_member(v, "Namespace")
            .ok_or_else(|| missing(&format!("{prefix}Namespace")))?
            .to_owned(),
        name: str_member(v, "MetricName")
            .ok_or_else(|| missing(&format!("{prefix}MetricName")))?
            .to_owned(),
        dimensions: dimensions(v.get("Dimensions"), &format!("{prefix}Dimensions"))?,
    })
}

/// The statistic named `s` of GetMetricData's `Stat` or an alarm's `Statistic` or
/// `ExtendedStatistic`: a basic statistic or a percentile (`p99`, `p99.9`); the trimmed and
/// winsorized statistics are refused.
pub fn parse_stat(s: &str, param: &str) -> Result<Stat, AwsError> {
    Stat::parse(s)
        .or_else(|| Stat::parse_percentile(s))
        .ok_or_else(|| unsupported_stat(s, param))
}

fn unsupported_stat(s: &str, param: &str) -> AwsError {
    invalid(format!(
        "The value {s} for parameter {param} is invalid: this server computes SampleCount, \
         Average, Sum, Minimum, Maximum and percentiles (p0.0 to p100, at most two decimals); \
         trimmed and winsorized means, trimmed counts and sums, percentile ranks and IQM are \
         not supported."
    ))
}

/// One `GetMetricStatistics` datapoint as JSON, with the requested statistics (percentiles
/// under `ExtendedStatistics`, left out where the raw values cannot answer them).
pub fn datapoint(p: &PeriodAgg, stats: &[Stat]) -> Value {
    let mut m = Map::new();
    m.insert("Timestamp".into(), json!(p.start));
    let mut extended = Map::new();
    for s in stats {
        match s {
            Stat::Percentile(_) => {
                if let Some(v) = p.stat(*s) {
                    extended.insert(s.name(), json!(v));
                }
            }
            other => {
                m.insert(other.as_str().into(), json!(p.agg.stat(*other)));
            }
        }
    }
    if !extended.is_empty() {
        m.insert("ExtendedStatistics".into(), Value::Object(extended));
    }
    m.insert("Unit".into(), json!(UNITS[usize::from(p.unit)]));
    Value::Object(m)
}

/// The statistics a `GetMetricStatistics` asks for.
pub fn statistics(input: &Value) -> Result<Vec<Stat>, AwsError> {
    let stats: Vec<&str> = input
        .get("Statistics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let extended: Vec<&str> = input
        .get("ExtendedStatistics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !stats.is_empty() && !extended.is_empty() {
        return Err(combination(
            "The parameters Statistics and ExtendedStatistics are mutually exclusive and you \
             have specified both.",
        ));
    }
    if stats.is_empty() && extended.is_empty() {
        return Err(missing("Statistics or ExtendedStatistics"));
    }
    let mut out = Vec::new();
    for (i, s) in extended.iter().enumerate() {
        let stat = Stat::parse_percentile(s)
            .ok_or_else(|| unsupported_stat(s, &format!("ExtendedStatistics.member.{}", i + 1)))?;
        if !out.contains(&stat) {
            out.push(stat);
        }
    }
    for (i, s) in stats.iter().enumerate() {
        let stat = Stat::parse(s).ok_or_else(|| {
            AwsError::client(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{s}' at 'statistics.{}.member' failed \
                     to satisfy constraint: Member must satisfy enum value set: [Maximum, \
                     SampleCount, Sum, Minimum, Average]",
                    i + 1
                ),
            )
        })?;
        if !out.contains(&stat) {
            out.push(stat);
        }
    }
    Ok(out)
}

/// Metric names and dimensions `ListMetrics` filters by.
#[derive(Debug)]
pub struct ListFilter {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dimensions: Vec<(String, Option<String>)>,
    pub recent_ms: Option<u64>,
}

impl ListFilter {
    pub fn parse(input: &Value, now_ms: u64) -> Result<ListFilter, AwsError> {
        let mut dims = Vec::new();
        for (i, d) in input
            .get("Dimensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = str_member(d, "Name")
                .ok_or_else(|| missing(&format!("Dimensions.member.{}.Name", i + 1)))?;
            dims.push((name.to_owned(), str_member(d, "Value").map(str::to_owned)));
        }
        let recent_ms = match str_member(input, "RecentlyActive") {
            None => None,
            Some("PT3H") => Some(now_ms.saturating_sub(3 * 3600 * 1000)),
            Some(other) => return Err(invalid_value(other, "RecentlyActive")),
        };
        if input.get("IncludeLinkedAccounts").and_then(Value::as_bool) == Some(true) {
            return Err(invalid(
                "IncludeLinkedAccounts is not supported: this server has no monitoring account \
                 links.",
            ));
        }
        Ok(ListFilter {
            namespace: str_member(input, "Namespace").map(str::to_owned),
            name: str_member(input, "MetricName").map(str::to_owned),
            dimensions: dims,
            recent_ms,
        })
    }

    pub fn matches(&self, key: &SeriesKey, last_put_ms: u64, region: &str) -> bool {
        key.region == region
            && self.namespace.as_deref().is_none_or(|n| n == key.namespace)
            && self.name.as_deref().is_none_or(|n| n == key.name)
            && self.recent_ms.is_none_or(|t| last_put_ms >= t)
            && self.dimensions.iter().all(|(name, value)| {
                key.dimensions
                    .iter()
                    .any(|(n, v)| n == name && value.as_deref().is_none_or(|want| want == v))
            })
    }
}

/// A metric as `ListMetrics`, `GetMetricData` and alarms write it.
pub fn metric_json(key: &SeriesKey) -> Value {
    json!({
        "Namespace": key.namespace,
        "MetricName": key.name,
        "Dimensions": key.dimensions.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect::<Vec<_>>(),
    })
}

/// A series of values by timestamp, as metric math combines them.
pub type TimeSeries = BTreeMap<i64, f64>;
