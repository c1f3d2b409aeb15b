//! Metric filters: PutMetricFilter, DescribeMetricFilters, DeleteMetricFilter, TestMetricFilter,
//! and turning matching events into metric data as PutLogEvents accepts them.
//!
//! Filters use the filter-pattern language of FilterLogEvents ([`FilterPattern`]). Each accepted
//! PutLogEvents batch is matched against its group's filters; the values (a number, or a `$.`
//! selector into JSON messages) are aggregated per metric, dimensions and minute, and handed to
//! the [`MetricPublisher`] the composition root wires to CloudWatch. Publishing never fails the
//! PutLogEvents call; a failure is logged.

use std::collections::BTreeMap;

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::LogGroup;
use crate::pattern::{FilterPattern, Selector, parse_selector};
use crate::wire::{
    check_group_name, commit_with_retry, limit, load_group, paginate, parse, required, with_token,
};
use crate::{LogsError, LogsService, keys};

/// Most metric filters per log group (AWS's quota).
pub const MAX_FILTERS_PER_GROUP: usize = 100;
/// Most dimensions per metric transformation.
const MAX_DIMENSIONS: usize = 3;

pub(crate) fn filters_prefix(region: &str, group: &str) -> String {
    format!("logs/metricfilter/{region}/{group}:")
}

fn filter_key(region: &str, group: &str, name: &str) -> String {
    format!("{}{name}", filters_prefix(region, group))
}

fn region_filters_prefix(region: &str) -> String {
    format!("logs/metricfilter/{region}/")
}

/// Aggregated values of one metric series in one minute, as a filter produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub namespace: String,
    pub name: String,
    /// Sorted by name.
    pub dimensions: Vec<(String, String)>,
    pub unit: Option<String>,
    /// Start of the minute, in seconds since the epoch.
    pub minute: i64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// Where metric filters publish (CloudWatch, wired by the composition root).
#[async_trait::async_trait]
pub trait MetricPublisher: Send + Sync + std::fmt::Debug {
    async fn publish(
        &self,
        region: &str,
        samples: Vec<MetricSample>,
        now_ms: u64,
    ) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Transformation {
    metric_name: String,
    metric_namespace: String,
    metric_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

/// A stored metric filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MetricFilter {
    name: String,
    group: String,
    pattern: String,
    transformations: Vec<Transformation>,
    creation_time: u64,
}

impl MetricFilter {
    fn to_wire(&self) -> Value {
        json!({
            "filterName": self.name,
            "filterPattern": self.pattern,
            "metricTransformations": self.transformations,
            "creationTime": self.creation_time,
            "logGroupName": self.group,
            "applyOnTransformedLogs": false,
        })
    }
}

/// A metric value or dimension value: a literal, or a selector into JSON messages.
#[derive(Debug, Clone)]
enum ValueSource {
    Literal(String),
    Json(Selector),
}

impl ValueSource {
    fn parse(text: &str, member: &str) -> Result<Self, LogsError> {
        if text.starts_with("$.") || text.starts_with("$[") {
            return parse_selector(text)
                .map(Self::Json)
                .map_err(|e| LogsError::invalid(format!("Invalid {member} '{text}': {}", e.0)));
        }
        if text.starts_with('$') {
            return Err(LogsError::invalid(format!(
                "Invalid {member} '{text}': fields of space-delimited patterns ($name) are not supported; use a number or a JSON selector such as $.field"
            )));
        }
        Ok(Self::Literal(text.to_owned()))
    }

    fn value(&self, doc: Option<&Value>) -> Option<String> {
        match self {
            Self::Literal(s) => Some(s.clone()),
            Self::Json(sel) => match sel.resolve(doc?)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
        }
    }
}

/// A filter ready to match events.
#[derive(Debug)]
struct Compiled {
    pattern: FilterPattern,
    transformation: Transformation,
    value: ValueSource,
    dimensions: Vec<(String, ValueSource)>,
    needs_json: bool,
}

fn compile(f: &MetricFilter) -> Result<Compiled, LogsError> {
    let pattern =
        FilterPattern::parse(&f.pattern).map_err(|e| LogsError::invalid(e.to_string()))?;
    let Some(t) = f.transformations.first() else {
        return Err(LogsError::invalid(
            "1 validation error detected: Value at 'metricTransformations' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    };
    let value = ValueSource::parse(&t.metric_value, "metricValue")?;
    if let ValueSource::Literal(v) = &value
        && v.parse::<f64>().is_err()
    {
        return Err(LogsError::invalid(format!(
            "Invalid metric value '{v}': the metric value must be a number or a JSON selector such as $.field"
        )));
    }
    let dimensions = t
        .dimensions
        .iter()
        .flatten()
        .map(|(k, v)| Ok((k.clone(), ValueSource::parse(v, "dimension value")?)))
        .collect::<Result<Vec<_>, LogsError>>()?;
    let needs_json = matches!(value, ValueSource::Json(_))
        || dimensions
            .iter()
            .any(|(_, d)| matches!(d, ValueSource::Json(_)));
    Ok(Compiled {
        pattern,
        transformation: t.clone(),
        value,
        dimensions,
        needs_json,
    })
}

/// Aggregates what `filters` make of `events` (`(timestamp ms, message)`).
fn samples(filters: &[Compiled], events: &[(u64, String)]) -> Vec<MetricSample> {
    type Key = (String, String, Vec<(String, String)>, Option<String>, i64);
    let mut acc: BTreeMap<Key, (f64, f64, f64, f64)> = BTreeMap::new();
    let mut add = |key: Key, v: f64| {
        let e = acc
            .entry(key)
            .or_insert((0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
        e.0 += 1.0;
        e.1 += v;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    };
    for f in filters {
        let t = &f.transformation;
        for (ts, message) in events {
            let minute = (*ts / 1000) as i64;
            let minute = minute - minute.rem_euclid(60);
            if f.pattern.matches(message) {
                let doc = if f.needs_json {
                    serde_json::from_str::<Value>(message.trim()).ok()
                } else {
                    None
                };
                let Some(v) = f
                    .value
                    .value(doc.as_ref())
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
                else {
                    continue;
                };
                let mut dims = Vec::with_capacity(f.dimensions.len());
                for (k, src) in &f.dimensions {
                    match src.value(doc.as_ref()) {
                        Some(d) if !d.is_empty() => dims.push((k.clone(), d)),
                        // An event without a dimension's value publishes nothing, as in AWS.
                        _ => break,
                    }
                }
                if dims.len() != f.dimensions.len() {
                    continue;
                }
                dims.sort();
                add(
                    (
                        t.metric_namespace.clone(),
                        t.metric_name.clone(),
                        dims,
                        t.unit.clone(),
                        minute,
                    ),
                    v,
                );
            } else if let Some(d) = t.default_value {
                add(
                    (
                        t.metric_namespace.clone(),
                        t.metric_name.clone(),
                        Vec::new(),
                        t.unit.clone(),
                        minute,
                    ),
                    d,
                );
            }
        }
    }
    acc.into_iter()
        .map(
            |((namespace, name, dimensions, unit, minute), (count, sum, min, max))| MetricSample {
                namespace,
                name,
                dimensions,
                unit,
                minute,
                count,
                sum,
                min,
                max,
            },
        )
        .collect()
}

/// Publishes what the group's metric filters make of newly accepted events.
pub(crate) async fn publish_events(
    svc: &LogsService,
    ctx: &RequestContext,
    group: &str,
    events: &[(u64, String)],
) {
    let Some(publisher) = svc.metrics.as_ref() else {
        return;
    };
    let filters = match svc
        .store
        .scan_all_typed::<MetricFilter>(&filters_prefix(&ctx.region, group))
        .await
    {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(group, %error, "metric filters could not be read; events not published");
            return;
        }
    };
    if filters.is_empty() {
        return;
    }
    let compiled: Vec<Compiled> = filters
        .iter()
        .filter_map(|f| compile(&f.value).ok())
        .collect();
    let out = samples(&compiled, events);
    if out.is_empty() {
        return;
    }
    if let Err(error) = publisher.publish(&ctx.region, out, ctx.now).await {
        tracing::warn!(group, %error, "metric filter data could not be published");
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutMetricFilterRequest {
    log_group_name: Option<String>,
    filter_name: Option<String>,
    filter_pattern: Option<String>,
    metric_transformations: Option<Vec<Transformation>>,
    apply_on_transformed_logs: Option<bool>,
    field_selection_criteria: Option<String>,
    emit_system_field_dimensions: Option<Vec<String>>,
}

fn check_filter_name(name: &str) -> Result<(), LogsError> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'filterName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
        )));
    }
    Ok(())
}

pub(crate) async fn put(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: PutMetricFilterRequest = parse(body)?;
    let group = required(req.log_group_name, "logGroupName")?;
    let name = required(req.filter_name, "filterName")?;
    let pattern = required(req.filter_pattern, "filterPattern")?;
    let transformations = required(req.metric_transformations, "metricTransformations")?;
    check_group_name(&group)?;
    check_filter_name(&name)?;
    if req.apply_on_transformed_logs == Some(true) {
        return Err(LogsError::invalid(
            "applyOnTransformedLogs is not supported: log transformers are not available on this endpoint.",
        ));
    }
    if req.field_selection_criteria.is_some() || req.emit_system_field_dimensions.is_some() {
        return Err(LogsError::invalid(
            "fieldSelectionCriteria and emitSystemFieldDimensions are not supported on this endpoint.",
        ));
    }
    if transformations.len() != 1 {
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value at 'metricTransformations' failed to satisfy constraint: Member must have length less than or equal to 1 and greater than or equal to 1 (found {})",
            transformations.len()
        )));
    }
    let t = &transformations[0];
    let dims = t.dimensions.as_ref().map_or(0, BTreeMap::len);
    if dims > MAX_DIMENSIONS {
        return Err(LogsError::invalid(format!(
            "A metric transformation can have at most {MAX_DIMENSIONS} dimensions."
        )));
    }
    if dims > 0 && t.default_value.is_some() {
        return Err(LogsError::invalid(
            "A metric transformation cannot have both a defaultValue and dimensions.",
        ));
    }
    let filter = MetricFilter {
        name: name.clone(),
        group: group.clone(),
        pattern,
        transformations,
        creation_time: ctx.now,
    };
    compile(&filter)?;
    let gkey = keys::group(&ctx.region, &group);
    let fkey = filter_key(&ctx.region, &group, &name);
    commit_with_retry(svc.store.as_ref(), || async {
        let g = load_group(svc, ctx, &group).await?;
        let existing = svc.store.get_typed::<MetricFilter>(&fkey).await?;
        let mut rec = filter.clone();
        let mut txn = Txn::new().require_revision(&gkey, g.revision);
        match &existing {
            Some(e) => {
                // An update keeps the filter's creation time.
                rec.creation_time = e.value.creation_time;
                txn = txn.require_revision(&fkey, e.revision);
            }
            None => {
                let count = svc
                    .store
                    .scan(
                        &filters_prefix(&ctx.region, &group),
                        None,
                        MAX_FILTERS_PER_GROUP + 1,
                    )
                    .await?
                    .records
                    .len();
                if count >= MAX_FILTERS_PER_GROUP {
                    return Err(LogsError::LimitExceeded(
                        "Resource limit exceeded.".to_owned(),
                    ));
                }
                let mut gv: LogGroup = g.value.clone();
                gv.metric_filter_count = count as u32 + 1;
                txn = txn.require_absent(&fkey).put(&gkey, encode(&gkey, &gv)?);
            }
        }
        Ok((txn.put(&fkey, encode(&fkey, &rec)?), ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteMetricFilterRequest {
    log_group_name: Option<String>,
    filter_name: Option<String>,
}

pub(crate) async fn delete(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DeleteMetricFilterRequest = parse(body)?;
    let group = required(req.log_group_name, "logGroupName")?;
    let name = required(req.filter_name, "filterName")?;
    check_group_name(&group)?;
    check_filter_name(&name)?;
    let gkey = keys::group(&ctx.region, &group);
    let fkey = filter_key(&ctx.region, &group, &name);
    commit_with_retry(svc.store.as_ref(), || async {
        let g = load_group(svc, ctx, &group).await?;
        let Some(f) = svc.store.get(&fkey).await? else {
            return Err(LogsError::ResourceNotFound(
                "The specified metric filter does not exist.".to_owned(),
            ));
        };
        let mut gv: LogGroup = g.value.clone();
        gv.metric_filter_count = gv.metric_filter_count.saturating_sub(1);
        let txn = Txn::new()
            .require_revision(&gkey, g.revision)
            .require_revision(&fkey, f.revision)
            .delete(&fkey)
            .put(&gkey, encode(&gkey, &gv)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeMetricFiltersRequest {
    log_group_name: Option<String>,
    filter_name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
    metric_name: Option<String>,
    metric_namespace: Option<String>,
}

pub(crate) async fn describe(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeMetricFiltersRequest = parse(body)?;
    let limit = limit(req.limit, 50, 50)?;
    if req.filter_name_prefix.is_some() && req.log_group_name.is_none() {
        return Err(LogsError::invalid(
            "If you specify filterNamePrefix, you must also specify logGroupName.",
        ));
    }
    if req.metric_name.is_some() != req.metric_namespace.is_some() {
        return Err(LogsError::invalid(
            "metricName and metricNamespace must be specified together.",
        ));
    }
    let prefix = match &req.log_group_name {
        Some(g) => {
            check_group_name(g)?;
            load_group(svc, ctx, g).await?;
            format!(
                "{}{}",
                filters_prefix(&ctx.region, g),
                req.filter_name_prefix.as_deref().unwrap_or("")
            )
        }
        None => region_filters_prefix(&ctx.region),
    };
    let all = svc.store.scan_all_typed::<MetricFilter>(&prefix).await?;
    let items: Vec<(String, Value)> = all
        .into_iter()
        .map(|v| v.value)
        .filter(|f| {
            req.metric_name.as_ref().is_none_or(|n| {
                f.transformations.iter().any(|t| {
                    &t.metric_name == n
                        && req
                            .metric_namespace
                            .as_ref()
                            .is_none_or(|ns| &t.metric_namespace == ns)
                })
            })
        })
        .map(|f| (format!("{}\u{0}{}", f.group, f.name), f.to_wire()))
        .collect();
    let (page, next) = paginate(items, req.next_token.as_deref(), limit, false)?;
    Ok(with_token(json!({"metricFilters": page}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestMetricFilterRequest {
    filter_pattern: Option<String>,
    log_event_messages: Option<Vec<String>>,
}

pub(crate) async fn test(
    _svc: &LogsService,
    body: &[u8],
    _ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: TestMetricFilterRequest = parse(body)?;
    let pattern = required(req.filter_pattern, "filterPattern")?;
    let messages = required(req.log_event_messages, "logEventMessages")?;
    if messages.is_empty() || messages.len() > 50 {
        return Err(LogsError::invalid(
            "1 validation error detected: Value at 'logEventMessages' failed to satisfy constraint: Member must have length between 1 and 50",
        ));
    }
    let pattern = FilterPattern::parse(&pattern).map_err(|e| LogsError::invalid(e.to_string()))?;
    let matches: Vec<Value> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| pattern.matches(m))
        .map(|(i, m)| json!({"eventNumber": i + 1, "eventMessage": m, "extractedValues": {}}))
        .collect();
    Ok(json!({"matches": matches}))
}

/// Metric filters of a group, for DeleteLogGroup to remove with it.
pub(crate) async fn keys_of_group(
    svc: &LogsService,
    region: &str,
    group: &str,
) -> Result<Vec<String>, LogsError> {
    Ok(svc
        .store
        .scan(
            &filters_prefix(region, group),
            None,
            MAX_FILTERS_PER_GROUP * 2,
        )
        .await?
        .records
        .into_iter()
        .map(|r| r.key)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pattern: &str, value: &str, dims: &[(&str, &str)], default: Option<f64>) -> Compiled {
        compile(&MetricFilter {
            name: "f".into(),
            group: "g".into(),
            pattern: pattern.into(),
            transformations: vec![Transformation {
                metric_name: "Errors".into(),
                metric_namespace: "App".into(),
                metric_value: value.into(),
                default_value: default,
                dimensions: (!dims.is_empty()).then(|| {
                    dims.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                unit: None,
            }],
            creation_time: 0,
        })
        .unwrap()
    }

    fn ev(ts: u64, m: &str) -> (u64, String) {
        (ts, m.to_owned())
    }

    #[test]
    fn matching_events_count_per_minute() {
        let f = filter("ERROR", "1", &[], None);
        let out = samples(
            &[f],
            &[
                ev(60_000, "ERROR a"),
                ev(61_000, "INFO b"),
                ev(119_000, "ERROR c"),
                ev(120_000, "ERROR d"),
            ],
        );
        let got: Vec<(i64, f64)> = out.iter().map(|s| (s.minute, s.sum)).collect();
        assert_eq!(got, vec![(60, 2.0), (120, 1.0)]);
    }

    #[test]
    fn json_values_and_dimensions_are_extracted() {
        let f = filter(
            "{ $.latency > 0 }",
            "$.latency",
            &[("Service", "$.svc")],
            None,
        );
        let out = samples(
            &[f],
            &[
                ev(0, r#"{"latency": 10, "svc": "a"}"#),
                ev(1, r#"{"latency": 30, "svc": "a"}"#),
                ev(2, r#"{"latency": 5, "svc": "b"}"#),
                ev(3, r#"{"latency": 7}"#),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].dimensions, vec![("Service".into(), "a".into())]);
        assert_eq!(
            (out[0].count, out[0].sum, out[0].min, out[0].max),
            (2.0, 40.0, 10.0, 30.0)
        );
        assert_eq!(out[1].sum, 5.0);
    }

    #[test]
    fn default_values_fill_non_matching_events() {
        let f = filter("ERROR", "1", &[], Some(0.0));
        let out = samples(&[f], &[ev(0, "ERROR"), ev(1, "fine"), ev(2, "fine")]);
        assert_eq!((out[0].count, out[0].sum), (3.0, 1.0));
    }

    #[test]
    fn metric_values_must_be_numbers_or_selectors() {
        let bad = MetricFilter {
            name: "f".into(),
            group: "g".into(),
            pattern: "x".into(),
            transformations: vec![Transformation {
                metric_name: "m".into(),
                metric_namespace: "n".into(),
                metric_value: "abc".into(),
                default_value: None,
                dimensions: None,
                unit: None,
            }],
            creation_time: 0,
        };
        assert!(compile(&bad).is_err());
        let mut space = bad.clone();
        space.transformations[0].metric_value = "$bytes".into();
        assert!(
            compile(&space)
                .unwrap_err()
                .to_string()
                .contains("space-delimited")
        );
    }
}
