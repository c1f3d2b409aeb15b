//! Metric operations: `PutMetricData` (validated as CloudWatch does, aggregated into rows),
//! `GetMetricStatistics`, `GetMetricData` (metric statistics and metric math) and `ListMetrics`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use gantry_aws_proto::AwsError;
use serde::Deserialize;
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
    let given = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| Dimension {
            name: str_member(d, "Name").map(Cow::from),
            value: str_member(d, "Value").map(Cow::from),
        })
        .collect();
    dimension_list(given, || param.to_owned())
}

/// [`dimensions`] of decoded dimensions; `param` names the list in errors.
fn dimension_list(
    given: Vec<Dimension<'_>>,
    param: impl Fn() -> String,
) -> Result<Vec<(String, String)>, AwsError> {
    let mut dims: Vec<(String, String)> = Vec::with_capacity(given.len());
    for (i, d) in given.into_iter().enumerate() {
        let name = d
            .name
            .ok_or_else(|| missing(&format!("{}.member.{}.Name", param(), i + 1)))?;
        let value = d
            .value
            .ok_or_else(|| missing(&format!("{}.member.{}.Value", param(), i + 1)))?;
        if dims.iter().any(|(n, _)| *n == name) {
            return Err(invalid(format!(
                "The value {name} for parameter {}.member.{}.Name is invalid: \
                 a dimension name may appear once per metric.",
                param(),
                i + 1
            )));
        }
        dims.push((name.into_owned(), value.into_owned()));
    }
    dims.sort();
    Ok(dims)
}

/// A unit member: one of CloudWatch's units, or the validation error naming the value.
pub fn unit(v: Option<&Value>, path: &str) -> Result<Option<u8>, AwsError> {
    v.and_then(Value::as_str)
        .map(|name| unit_of(name, path))
        .transpose()
}

/// The unit `name`, or the validation error naming it.
fn unit_of(name: &str, path: &str) -> Result<u8, AwsError> {
    unit_id(name).ok_or_else(|| {
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

/// A number member as given: the number, or the text naming what was given instead (an
/// invalid value CloudWatch's error quotes). Decoded from JSON, only a number is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Given<T>(pub Result<T, String>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|x| Given(Ok(x)))
    }
}

/// A double member of a JSON value: a number, or what names anything else (a string as it is,
/// so that `"NaN"` is named `NaN`; anything else as JSON).
fn given_double(v: &Value) -> Given<f64> {
    Given(match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| n.to_string()),
        Value::String(s) => Err(s.clone()),
        other => Err(other.to_string()),
    })
}

/// The `PutMetricData` input. Decoded straight from a request body (borrowing its strings) when
/// every member has its model type, else converted from the JSON value by [`PutInput::of_value`]
/// so that the checks can name the offending value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutInput<'a> {
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub metric_data: Option<Vec<Datum<'a>>>,
    #[serde(default)]
    pub entity_metric_data: Option<Vec<serde::de::IgnoredAny>>,
}

/// One `MetricDatum`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datum<'a> {
    #[serde(borrow, default)]
    pub metric_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub dimensions: Option<Vec<Dimension<'a>>>,
    #[serde(default)]
    pub timestamp: Option<Given<f64>>,
    #[serde(default)]
    pub value: Option<Given<f64>>,
    #[serde(default)]
    pub statistic_values: Option<StatisticSet>,
    #[serde(default)]
    pub values: Option<Vec<Given<f64>>>,
    #[serde(default)]
    pub counts: Option<Vec<Given<f64>>>,
    #[serde(borrow, default)]
    pub unit: Option<Cow<'a, str>>,
    #[serde(default)]
    pub storage_resolution: Option<Given<i64>>,
}

/// A `Dimension` (name and value; either may be missing).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub value: Option<Cow<'a, str>>,
}

/// A `StatisticSet`; each member may be missing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticSet {
    #[serde(default)]
    pub sample_count: Option<Given<f64>>,
    #[serde(default)]
    pub sum: Option<Given<f64>>,
    #[serde(default)]
    pub minimum: Option<Given<f64>>,
    #[serde(default)]
    pub maximum: Option<Given<f64>>,
}

impl<'a> PutInput<'a> {
    /// The input of a JSON value (awsQuery requests, and JSON bodies with a member of another
    /// type than the model's): what is not of its member's type is kept as the text to name.
    pub fn of_value(input: &'a Value) -> PutInput<'a> {
        let text = |v: &'a Value, name: &str| v.get(name).and_then(Value::as_str).map(Cow::from);
        let present = |v: &'a Value, name: &str| v.get(name).filter(|v| !v.is_null());
        let list = |v: &'a Value, name: &str| -> Option<Vec<Given<f64>>> {
            v.get(name)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(given_double).collect())
        };
        PutInput {
            namespace: text(input, "Namespace"),
            metric_data: input
                .get("MetricData")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| Datum {
                            metric_name: text(item, "MetricName"),
                            dimensions: item.get("Dimensions").and_then(Value::as_array).map(
                                |ds| {
                                    ds.iter()
                                        .map(|d| Dimension {
                                            name: text(d, "Name"),
                                            value: text(d, "Value"),
                                        })
                                        .collect()
                                },
                            ),
                            timestamp: present(item, "Timestamp")
                                .map(|v| Given(v.as_f64().ok_or_else(|| v.to_string()))),
                            value: present(item, "Value").map(given_double),
                            statistic_values: present(item, "StatisticValues").map(|s| {
                                StatisticSet {
                                    sample_count: present(s, "SampleCount").map(given_double),
                                    sum: present(s, "Sum").map(given_double),
                                    minimum: present(s, "Minimum").map(given_double),
                                    maximum: present(s, "Maximum").map(given_double),
                                }
                            }),
                            values: list(item, "Values"),
                            counts: list(item, "Counts"),
                            unit: text(item, "Unit"),
                            storage_resolution: present(item, "StorageResolution")
                                .map(|v| Given(v.as_i64().ok_or_else(|| v.to_string()))),
                        })
                        .collect()
                }),
            entity_metric_data: input
                .get("EntityMetricData")
                .and_then(Value::as_array)
                .map(|a| vec![serde::de::IgnoredAny; a.len()]),
        }
    }
}

/// A double member as given: a finite number within CloudWatch's range, or the error naming it.
fn given(v: &Given<f64>, param: impl FnOnce() -> String) -> Result<f64, AwsError> {
    match &v.0 {
        Ok(x) if x.is_finite() && x.abs() <= VALUE_LIMIT => Ok(*x),
        Ok(x) => Err(invalid_value(&x.to_string(), &param())),
        Err(text) => Err(invalid_value(text, &param())),
    }
}

/// The rows a `PutMetricData` JSON value adds, after CloudWatch's checks.
pub fn put_metric_data(input: &Value, region: &str, now_ms: u64) -> Result<Vec<Row>, AwsError> {
    input_rows(PutInput::of_value(input), region, now_ms)
}

/// The rows a `PutMetricData` awsJson body adds: decoded into the typed input directly when
/// every member has its model type (no JSON value per member), else through the JSON value, so
/// that the error names what was given: `None` then (the caller decodes the value).
pub fn put_metric_data_body(
    body: &[u8],
    region: &str,
    now_ms: u64,
) -> Option<Result<Vec<Row>, AwsError>> {
    let input: PutInput<'_> = serde_json::from_slice(body).ok()?;
    Some(input_rows(input, region, now_ms))
}

/// The rows of a `PutMetricData` input, after CloudWatch's checks.
pub fn input_rows(input: PutInput<'_>, region: &str, now_ms: u64) -> Result<Vec<Row>, AwsError> {
    let namespace = input.namespace.ok_or_else(|| missing("Namespace"))?;
    if namespace.starts_with("AWS/") {
        return Err(invalid(format!(
            "The value {namespace} for parameter Namespace is invalid: namespaces starting \
             with AWS/ are reserved for AWS services."
        )));
    }
    if input.entity_metric_data.is_some_and(|a| !a.is_empty()) {
        return Err(invalid(
            "EntityMetricData is not supported by this server; send the data in MetricData.",
        ));
    }
    let items = input.metric_data.unwrap_or_default();
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
    for (i, item) in items.into_iter().enumerate() {
        // The member's parameter path, for errors only.
        let p = || format!("MetricData.member.{}", i + 1);
        let name = item
            .metric_name
            .ok_or_else(|| missing(&format!("{}.MetricName", p())))?;
        let dims = dimension_list(item.dimensions.unwrap_or_default(), || {
            format!("{}.Dimensions", p())
        })?;
        let unit = match item.unit {
            None => UNIT_NONE,
            Some(u) => unit_of(&u, &format!("metricData.{}.member.unit", i + 1))?,
        };
        let resolution = match item.storage_resolution {
            None => 60,
            Some(Given(Ok(r @ (1 | 60)))) => r,
            Some(Given(Ok(r))) => {
                return Err(invalid_value(
                    &r.to_string(),
                    &format!("{}.StorageResolution", p()),
                ));
            }
            Some(Given(Err(text))) => {
                return Err(invalid_value(&text, &format!("{}.StorageResolution", p())));
            }
        };
        let ts = match item.timestamp {
            None => now,
            Some(Given(Ok(t))) => t,
            Some(Given(Err(text))) => {
                return Err(invalid_value(&text, &format!("{}.Timestamp", p())));
            }
        };
        if ts < now - MAX_PAST_SECS {
            return Err(invalid(format!(
                "The parameter {}.Timestamp must specify a time no more than two weeks in the past.",
                p()
            )));
        }
        if ts > now + MAX_FUTURE_SECS {
            return Err(invalid(format!(
                "The parameter {}.Timestamp must specify a time no more than two hours in the future.",
                p()
            )));
        }
        let values = item.values.filter(|a| !a.is_empty());
        let counts = item.counts.filter(|a| !a.is_empty());
        let exclusive = [
            (item.value.is_some(), "Value"),
            (item.statistic_values.is_some(), "StatisticValues"),
            (values.is_some(), "Values"),
        ];
        let mut given_members = exclusive.iter().filter(|(g, _)| *g).map(|(_, n)| *n);
        if let (Some(a), Some(b)) = (given_members.next(), given_members.next()) {
            let p = p();
            return Err(combination(format!(
                "The parameters {p}.{a} and {p}.{b} are mutually exclusive and you have specified both."
            )));
        }
        let (agg, raw) = if let Some(v) = &item.value {
            let x = given(v, || format!("{}.Value", p()))?;
            (Agg::of(x, 1.0), values_of(x, 1.0))
        } else if let Some(s) = &item.statistic_values {
            let sp = format!("{}.StatisticValues", p());
            let get = |v: &Option<Given<f64>>, m: &str| match v {
                Some(v) => given(v, || format!("{sp}.{m}")),
                None => Err(missing(&format!("{sp}.{m}"))),
            };
            let agg = Agg {
                count: get(&s.sample_count, "SampleCount")?,
                sum: get(&s.sum, "Sum")?,
                min: get(&s.minimum, "Minimum")?,
                max: get(&s.maximum, "Maximum")?,
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
        } else if let Some(values) = &values {
            let p = p();
            if values.len() > MAX_VALUES {
                return Err(invalid(format!(
                    "The collection {p}.Values must not have a size greater than {MAX_VALUES}."
                )));
            }
            if let Some(counts) = &counts
                && counts.len() != values.len()
            {
                return Err(invalid(format!(
                    "The parameters {p}.Values and {p}.Counts must be of the same size."
                )));
            }
            let mut agg = Agg::EMPTY;
            let mut raw: Values = Some(Vec::new());
            for (j, v) in values.iter().enumerate() {
                let x = given(v, || format!("{p}.Values.member.{}", j + 1))?;
                let c = match &counts {
                    Some(c) => given(&c[j], || format!("{p}.Counts.member.{}", j + 1))?,
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
            let p = p();
            return Err(missing(&format!(
                "{p}.Value, {p}.StatisticValues or {p}.Values"
            )));
        };
        let secs = ts.floor() as i64;
        rows.push(Row {
            key: SeriesKey {
                region: region.to_owned(),
                namespace: namespace.clone().into_owned(),
                name: name.into_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_796_551_200_000;

    /// What each path makes of a body: the typed decoding (when it applies) and the JSON value's.
    type Rows = Result<Vec<Row>, AwsError>;

    fn both(body: &str) -> (Option<Rows>, Rows) {
        let value: Value = serde_json::from_str(body).unwrap();
        (
            put_metric_data_body(body.as_bytes(), "us-east-1", NOW_MS),
            put_metric_data(&value, "us-east-1", NOW_MS),
        )
    }

    fn message(r: &Rows) -> String {
        match r {
            Ok(rows) => format!("{} rows", rows.len()),
            Err(e) => format!("{}: {}", e.code, e.message),
        }
    }

    #[test]
    fn typed_decoding_and_the_json_value_agree() {
        let good = r#"{"Namespace":"App","MetricData":[
            {"MetricName":"A","Dimensions":[{"Name":"z","Value":"1"},{"Name":"a","Value":"\u00e9"}],
             "Timestamp":1796551190.5,"Value":2.5,"Unit":"Seconds"},
            {"MetricName":"B","Values":[1,2,2,-1],"Counts":[1,0,3,1],"StorageResolution":1},
            {"MetricName":"C","StatisticValues":{"SampleCount":4,"Sum":8,"Minimum":2,"Maximum":2},
             "Timestamp":null,"Unit":null,"Value":null},
            {"MetricName":"D","Values":[3],"Counts":[0]}]}"#;
        let (typed, value) = both(good);
        let typed = typed.expect("well-typed body decodes");
        assert_eq!(typed.as_ref().unwrap(), value.as_ref().unwrap());
        let rows = typed.unwrap();
        assert_eq!(rows.len(), 3, "the item with only zero counts adds nothing");
        assert_eq!(
            rows[0].key.dimensions,
            vec![("a".into(), "é".into()), ("z".into(), "1".into())]
        );
        assert_eq!(rows[0].bucket, 1_796_551_140);
        assert_eq!(rows[1].agg.count, 5.0);
        assert_eq!(rows[1].values, None, "a negative value has no percentiles");
        assert_eq!(rows[2].values, Some(vec![(2.0, 4.0)]));

        for (body, want) in [
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":"NaN"}]}"#,
                "InvalidParameterValue: The value NaN for parameter MetricData.member.1.Value is invalid.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"Timestamp":"x"}]}"#,
                r#"InvalidParameterValue: The value "x" for parameter MetricData.member.1.Timestamp is invalid."#,
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"StorageResolution":5}]}"#,
                "InvalidParameterValue: The value 5 for parameter MetricData.member.1.StorageResolution is invalid.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"StorageResolution":60.0}]}"#,
                "InvalidParameterValue: The value 60.0 for parameter MetricData.member.1.StorageResolution is invalid.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Values":[1,true]}]}"#,
                "InvalidParameterValue: The value true for parameter MetricData.member.1.Values.member.2 is invalid.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1},{"MetricName":"B","Value":1,"Values":[2]}]}"#,
                "InvalidParameterCombination: The parameters MetricData.member.2.Value and MetricData.member.2.Values are mutually exclusive and you have specified both.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"Dimensions":[{"Name":"k","Value":"1"},{"Name":"k","Value":"2"}]}]}"#,
                "InvalidParameterValue: The value k for parameter MetricData.member.1.Dimensions.member.2.Name is invalid: a dimension name may appear once per metric.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"Dimensions":[{"Name":"k"}]}]}"#,
                "MissingParameter: The parameter MetricData.member.1.Dimensions.member.1.Value is required.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","StatisticValues":{"SampleCount":1,"Sum":1,"Minimum":1}}]}"#,
                "MissingParameter: The parameter MetricData.member.1.StatisticValues.Maximum is required.",
            ),
            (
                r#"{"Namespace":"App","MetricData":[{"MetricName":"A","Value":1,"Unit":"Parsecs"}]}"#,
                "ValidationError: 1 validation error detected: Value 'Parsecs' at 'metricData.1.member.unit'",
            ),
            (
                r#"{"Namespace":5,"MetricData":[{"MetricName":"A","Value":1}]}"#,
                "MissingParameter: The parameter Namespace is required.",
            ),
        ] {
            let (typed, value) = both(body);
            let got = match typed {
                // Decoded typed, the checks must say what the value's do.
                Some(t) => {
                    assert_eq!(message(&t), message(&value), "{body}");
                    message(&t)
                }
                None => message(&value),
            };
            assert!(got.starts_with(want), "{body}: {got}");
        }
    }
}
