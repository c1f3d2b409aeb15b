//! Metric alarms: one record each (`cloudwatch/alarm/<region>/<name>`, the `MetricAlarm` as
//! `DescribeAlarms` returns it), a history record per change, and their evaluation as
//! CloudWatch does it: the statistic over each of the last `EvaluationPeriods` periods, `M out of
//! N` with `DatapointsToAlarm`, `TreatMissingData`, OK / ALARM / INSUFFICIENT_DATA.
//!
//! Alarm actions need a target Gantry serves; none is served yet, so alarms with actions are
//! refused rather than created with actions that would never run.

use gantry_aws_proto::AwsError;
use gantry_front::RequestContext;
use gantry_store::{Store, Txn, TxnOutcome};
use serde_json::{Map, Value, json};

use crate::CloudWatchService;
use crate::error::{self, combination, invalid, invalid_value, missing, not_found};
use crate::metrics;
use crate::series::{SeriesKey, Stat};

const ALARM_PREFIX: &str = "cloudwatch/alarm/";
const HISTORY_PREFIX: &str = "cloudwatch/history/";
const TREAT: [&str; 4] = ["breaching", "notBreaching", "ignore", "missing"];
const COMPARISONS: [&str; 4] = [
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];

fn alarm_key(region: &str, name: &str) -> String {
    format!("{ALARM_PREFIX}{region}/{name}")
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

async fn load(
    svc: &CloudWatchService,
    region: &str,
    name: &str,
) -> Result<Option<(Value, u64)>, AwsError> {
    let rec = svc
        .store()
        .get(&alarm_key(region, name))
        .await
        .map_err(error::store)?;
    Ok(rec.and_then(|r| Some((serde_json::from_slice(&r.value).ok()?, r.revision))))
}

async fn all(svc: &CloudWatchService, region: &str) -> Result<Vec<(Value, u64)>, AwsError> {
    let prefix = format!("{ALARM_PREFIX}{region}/");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = svc
            .store()
            .scan(&prefix, after.as_deref(), 500)
            .await
            .map_err(error::store)?;
        for r in &page.records {
            if let Ok(v) = serde_json::from_slice(&r.value) {
                out.push((v, r.revision));
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

fn history(
    region: &str,
    name: &str,
    now_ms: u64,
    kind: &str,
    summary: &str,
    data: Value,
) -> (String, Vec<u8>) {
    let key = format!(
        "{HISTORY_PREFIX}{region}/{now_ms:013}-{:08x}",
        rand::random::<u32>()
    );
    let item = json!({
        "AlarmName": name,
        "AlarmType": "MetricAlarm",
        "Timestamp": secs(now_ms),
        "HistoryItemType": kind,
        "HistorySummary": summary,
        "HistoryData": data.to_string(),
    });
    (key, item.to_string().into_bytes())
}

/// `PutMetricAlarm`: creates or replaces an alarm (its state is kept on replace).
pub async fn put_metric_alarm(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let name = s(input, "AlarmName").ok_or_else(|| missing("AlarmName"))?;
    for actions in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
        for (i, arn) in input
            .get(actions)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let arn = arn.as_str().unwrap_or_default();
            if !svc.actions().is_some_and(|a| a.accepts(arn)) {
                return Err(invalid(format!(
                    "The value {arn} for parameter {actions}.member.{} is invalid: this server \
                     runs Application Auto Scaling policy actions only (no SNS, EC2 Auto Scaling \
                     or EC2 action target is served).",
                    i + 1
                )));
            }
        }
    }
    if input
        .get("Metrics")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty())
    {
        return Err(invalid(
            "Alarms on metric math (Metrics) are not supported by this server; alarm on one \
             metric with MetricName, Namespace, Statistic and Period.",
        ));
    }
    if s(input, "ExtendedStatistic").is_some() {
        return Err(invalid(
            "ExtendedStatistic (percentiles) is not supported by this server; use Statistic.",
        ));
    }
    if s(input, "ThresholdMetricId").is_some() || input.get("EvaluationCriteria").is_some() {
        return Err(invalid(
            "Anomaly detection and PromQL alarms are not supported by this server.",
        ));
    }
    let key = metrics::series_key(input, &ctx.region, "")?;
    let stat = s(input, "Statistic").ok_or_else(|| missing("Statistic"))?;
    metrics::parse_stat(stat, "Statistic")?;
    let period = input
        .get("Period")
        .and_then(Value::as_i64)
        .ok_or_else(|| missing("Period"))?;
    if !(period % 60 == 0 || [10, 20, 30].contains(&period)) || period <= 0 {
        return Err(invalid_value(&period.to_string(), "Period"));
    }
    let n = input
        .get("EvaluationPeriods")
        .and_then(Value::as_i64)
        .ok_or_else(|| missing("EvaluationPeriods"))?;
    let limit = if period >= 3600 { 7 * 86_400 } else { 86_400 };
    if period * n > limit {
        return Err(invalid(format!(
            "The evaluation period multiplied by the number of evaluation periods must be less \
             than or equal to {limit} seconds."
        )));
    }
    if let Some(m) = input.get("DatapointsToAlarm").and_then(Value::as_i64)
        && m > n
    {
        return Err(combination(
            "DatapointsToAlarm must be less than or equal to EvaluationPeriods.",
        ));
    }
    let op = s(input, "ComparisonOperator").ok_or_else(|| missing("ComparisonOperator"))?;
    if !COMPARISONS.contains(&op) {
        return Err(invalid(format!(
            "The value {op} for parameter ComparisonOperator is invalid: the anomaly-detection \
             operators need ThresholdMetricId, which this server does not support."
        )));
    }
    let threshold = input
        .get("Threshold")
        .filter(|v| !v.is_null())
        .ok_or_else(|| missing("Threshold"))?;
    metrics::double(threshold, "Threshold")?;
    if let Some(t) = s(input, "TreatMissingData")
        && !TREAT.contains(&t)
    {
        return Err(invalid(format!(
            "The value {t} for parameter TreatMissingData is invalid: use breaching, \
             notBreaching, ignore or missing."
        )));
    }
    metrics::unit(input.get("Unit"), "unit")?;

    let now = ctx.now;
    let mut alarm = Map::new();
    alarm.insert("AlarmName".into(), json!(name));
    alarm.insert(
        "AlarmArn".into(),
        json!(format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{name}",
            ctx.region, ctx.account_id
        )),
    );
    for k in [
        "AlarmDescription",
        "Statistic",
        "Unit",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluationPeriods",
        "Period",
    ] {
        if let Some(v) = input.get(k).filter(|v| !v.is_null()) {
            alarm.insert(k.into(), v.clone());
        }
    }
    alarm.insert("Namespace".into(), json!(key.namespace));
    alarm.insert("MetricName".into(), json!(key.name));
    alarm.insert(
        "Dimensions".into(),
        metrics::metric_json(&key)["Dimensions"].clone(),
    );
    alarm.insert(
        "AlarmConfigurationUpdatedTimestamp".into(),
        json!(secs(now)),
    );
    alarm.insert(
        "ActionsEnabled".into(),
        json!(
            input
                .get("ActionsEnabled")
                .and_then(Value::as_bool)
                .unwrap_or(true)
        ),
    );
    for k in ["OKActions", "AlarmActions", "InsufficientDataActions"] {
        alarm.insert(k.into(), input.get(k).cloned().unwrap_or(json!([])));
    }
    let tags = input.get("Tags").cloned().unwrap_or(json!([]));
    let existing = load(svc, &ctx.region, name).await?;
    let revision = existing.as_ref().map_or(0, |(_, r)| *r);
    match &existing {
        Some((old, _)) => {
            for k in [
                "StateValue",
                "StateReason",
                "StateReasonData",
                "StateUpdatedTimestamp",
                "StateTransitionedTimestamp",
            ] {
                if let Some(v) = old.get(k) {
                    alarm.insert(k.into(), v.clone());
                }
            }
        }
        None => {
            alarm.insert("StateValue".into(), json!("INSUFFICIENT_DATA"));
            alarm.insert(
                "StateReason".into(),
                json!("Unchecked: Initial alarm creation"),
            );
            alarm.insert("StateUpdatedTimestamp".into(), json!(secs(now)));
            alarm.insert("StateTransitionedTimestamp".into(), json!(secs(now)));
        }
    }
    let mut stored = Value::Object(alarm);
    stored["_tags"] = tags;
    let summary = if existing.is_some() {
        format!("Alarm \"{name}\" updated")
    } else {
        format!("Alarm \"{name}\" created")
    };
    let (hkey, hval) = history(
        &ctx.region,
        name,
        now,
        "ConfigurationUpdate",
        &summary,
        json!({"type": if existing.is_some() {"Update"} else {"Create"}, "version": "1.0"}),
    );
    let txn = Txn::new()
        .require_revision(alarm_key(&ctx.region, name), revision)
        .put(
            alarm_key(&ctx.region, name),
            stored.to_string().into_bytes(),
        )
        .put(hkey, hval);
    commit(svc, txn).await?;
    Ok(json!({}))
}

async fn commit(svc: &CloudWatchService, txn: Txn) -> Result<(), AwsError> {
    commit_through(svc.store().as_ref(), txn).await
}

async fn commit_through(store: &dyn Store, txn: Txn) -> Result<(), AwsError> {
    match store.commit(txn).await.map_err(error::store)? {
        TxnOutcome::Committed { .. } => Ok(()),
        _ => Err(AwsError::client(
            "ConcurrentModificationException",
            "The alarm was changed by another request at the same time; retry.",
        )
        .with_status(http::StatusCode::CONFLICT)),
    }
}

/// The alarm as `DescribeAlarms` returns it.
fn public(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.starts_with('_'));
    }
    v
}

/// `DescribeAlarms`.
pub async fn describe_alarms(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let names: Vec<&str> = input
        .get("AlarmNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let prefix = s(input, "AlarmNamePrefix");
    if !names.is_empty() && prefix.is_some() {
        return Err(combination(
            "AlarmNames and AlarmNamePrefix cannot be specified together.",
        ));
    }
    if s(input, "ChildrenOfAlarmName").is_some() || s(input, "ParentsOfAlarmName").is_some() {
        return Err(invalid(
            "Composite alarms are not supported by this server (ChildrenOfAlarmName, \
             ParentsOfAlarmName).",
        ));
    }
    let metric_alarms = input
        .get("AlarmTypes")
        .and_then(Value::as_array)
        .is_none_or(|t| t.is_empty() || t.iter().any(|x| x == "MetricAlarm"));
    let state = s(input, "StateValue");
    let action_prefix = s(input, "ActionPrefix");
    let max = input
        .get("MaxRecords")
        .and_then(Value::as_i64)
        .unwrap_or(50)
        .clamp(1, 100) as usize;
    let after = s(input, "NextToken");
    let mut alarms: Vec<Value> = if metric_alarms {
        all(svc, &ctx.region)
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    } else {
        Vec::new()
    };
    alarms.retain(|a| {
        let n = s(a, "AlarmName").unwrap_or_default();
        (names.is_empty() || names.contains(&n))
            && prefix.is_none_or(|p| n.starts_with(p))
            && state.is_none_or(|st| s(a, "StateValue") == Some(st))
            && action_prefix.is_none()
            && after.is_none_or(|t| n > t)
    });
    let more = alarms.len() > max;
    alarms.truncate(max);
    let mut out = json!({
        "MetricAlarms": alarms.into_iter().map(public).collect::<Vec<_>>(),
        "CompositeAlarms": [],
    });
    if more {
        let last = out["MetricAlarms"][max - 1]["AlarmName"].clone();
        out["NextToken"] = last;
    }
    Ok(out)
}

/// `DescribeAlarmsForMetric`.
pub async fn describe_alarms_for_metric(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let key = metrics::series_key(input, &ctx.region, "")?;
    let stat = s(input, "Statistic");
    let period = input.get("Period").and_then(Value::as_i64);
    let unit = s(input, "Unit");
    let alarms: Vec<Value> = all(svc, &ctx.region)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .filter(|a| {
            alarm_series(a, &ctx.region).is_some_and(|k| k == key)
                && stat.is_none_or(|x| s(a, "Statistic") == Some(x))
                && period.is_none_or(|p| a.get("Period").and_then(Value::as_i64) == Some(p))
                && unit.is_none_or(|u| s(a, "Unit") == Some(u))
        })
        .map(public)
        .collect();
    Ok(json!({ "MetricAlarms": alarms }))
}

fn alarm_series(a: &Value, region: &str) -> Option<SeriesKey> {
    metrics::series_key(a, region, "").ok()
}

/// `DeleteAlarms`: all or nothing.
pub async fn delete_alarms(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let names: Vec<&str> = input
        .get("AlarmNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if names.is_empty() {
        return Err(missing("AlarmNames"));
    }
    let mut txn = Txn::new();
    for name in &names {
        let Some((_, rev)) = load(svc, &ctx.region, name).await? else {
            return Err(not_found(format!("1 alarm(s) not found: {name}")));
        };
        let key = alarm_key(&ctx.region, name);
        txn = txn.require_revision(key.clone(), rev).delete(key);
    }
    commit(svc, txn).await?;
    Ok(json!({}))
}

/// `SetAlarmState`: the state holds until the next evaluation.
pub async fn set_alarm_state(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let name = s(input, "AlarmName").ok_or_else(|| missing("AlarmName"))?;
    let state = s(input, "StateValue").ok_or_else(|| missing("StateValue"))?;
    if !["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&state) {
        return Err(invalid_value(state, "StateValue"));
    }
    let reason = s(input, "StateReason").ok_or_else(|| missing("StateReason"))?;
    let data = s(input, "StateReasonData");
    if let Some(d) = data
        && serde_json::from_str::<Value>(d).is_err()
    {
        return Err(AwsError::client(
            "InvalidFormat",
            "The value for parameter StateReasonData is not valid JSON.",
        ));
    }
    let Some((alarm, rev)) = load(svc, &ctx.region, name).await? else {
        return Err(not_found(format!("Alarm {name} not found")));
    };
    let change = StateChange {
        state: state.to_owned(),
        reason: reason.to_owned(),
        data: data.map(str::to_owned),
    };
    let changed = s(&alarm, "StateValue") != Some(state);
    apply_state(
        svc.store().as_ref(),
        &ctx.region,
        alarm.clone(),
        rev,
        &change,
        ctx.now,
    )
    .await?;
    if changed {
        run_actions(svc, &ctx.region, &alarm, state, None, false).await;
    }
    Ok(json!({}))
}

/// `EnableAlarmActions` / `DisableAlarmActions`.
pub async fn set_actions_enabled(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
    enabled: bool,
) -> Result<Value, AwsError> {
    let names: Vec<&str> = input
        .get("AlarmNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for name in names {
        if let Some((mut alarm, rev)) = load(svc, &ctx.region, name).await? {
            alarm["ActionsEnabled"] = json!(enabled);
            let key = alarm_key(&ctx.region, name);
            commit(
                svc,
                Txn::new()
                    .require_revision(key.clone(), rev)
                    .put(key, alarm.to_string().into_bytes()),
            )
            .await?;
        }
    }
    Ok(json!({}))
}

/// `DescribeAlarmHistory`.
pub async fn describe_alarm_history(
    svc: &CloudWatchService,
    input: &Value,
    ctx: &RequestContext,
) -> Result<Value, AwsError> {
    let name = s(input, "AlarmName");
    let kind = s(input, "HistoryItemType");
    let start = input.get("StartDate").and_then(Value::as_f64);
    let end = input.get("EndDate").and_then(Value::as_f64);
    let max = input
        .get("MaxRecords")
        .and_then(Value::as_i64)
        .unwrap_or(100)
        .clamp(1, 100) as usize;
    let ascending = s(input, "ScanBy") == Some("TimestampAscending");
    let prefix = format!("{HISTORY_PREFIX}{}/", ctx.region);
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = svc
            .store()
            .scan(&prefix, after.as_deref(), 500)
            .await
            .map_err(error::store)?;
        for r in &page.records {
            let Ok(item) = serde_json::from_slice::<Value>(&r.value) else {
                continue;
            };
            let t = item.get("Timestamp").and_then(Value::as_f64).unwrap_or(0.0);
            if name.is_none_or(|n| s(&item, "AlarmName") == Some(n))
                && kind.is_none_or(|k| s(&item, "HistoryItemType") == Some(k))
                && start.is_none_or(|st| t >= st)
                && end.is_none_or(|e| t <= e)
            {
                items.push(item);
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if !ascending {
        items.reverse();
    }
    items.truncate(max);
    Ok(json!({ "AlarmHistoryItems": items }))
}

/// A new state for an alarm, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub state: String,
    pub reason: String,
    pub data: Option<String>,
}

/// Writes the alarm's new state through `store` (the API's, or the evaluating leader's fenced
/// one).
async fn apply_state(
    store: &dyn Store,
    region: &str,
    mut alarm: Value,
    rev: u64,
    change: &StateChange,
    now_ms: u64,
) -> Result<(), AwsError> {
    let name = s(&alarm, "AlarmName").unwrap_or_default().to_owned();
    let old = s(&alarm, "StateValue")
        .unwrap_or("INSUFFICIENT_DATA")
        .to_owned();
    alarm["StateValue"] = json!(change.state);
    alarm["StateReason"] = json!(change.reason);
    match &change.data {
        Some(d) => alarm["StateReasonData"] = json!(d),
        None => {
            if let Some(o) = alarm.as_object_mut() {
                o.remove("StateReasonData");
            }
        }
    }
    alarm["StateUpdatedTimestamp"] = json!(secs(now_ms));
    let key = alarm_key(region, &name);
    let mut txn = Txn::new().require_revision(key.clone(), rev);
    if old != change.state {
        alarm["StateTransitionedTimestamp"] = json!(secs(now_ms));
        let (hkey, hval) = history(
            region,
            &name,
            now_ms,
            "StateUpdate",
            &format!("Alarm updated from {old} to {}", change.state),
            json!({
                "version": "1.0",
                "oldState": {"stateValue": old},
                "newState": {"stateValue": change.state, "stateReason": change.reason},
            }),
        );
        txn = txn.put(hkey, hval);
    }
    commit_through(store, txn.put(key, alarm.to_string().into_bytes())).await
}

/// Runs the actions of `alarm` for `state` (when its actions are enabled); `repeat` limits them
/// to the Auto Scaling ones, which run again while the state lasts.
async fn run_actions(
    svc: &CloudWatchService,
    region: &str,
    alarm: &Value,
    state: &str,
    value: Option<f64>,
    repeat: bool,
) {
    let Some(actions) = svc.actions() else { return };
    if alarm.get("ActionsEnabled").and_then(Value::as_bool) == Some(false) {
        return;
    }
    let list = match state {
        "ALARM" => "AlarmActions",
        "OK" => "OKActions",
        _ => "InsufficientDataActions",
    };
    let name = s(alarm, "AlarmName").unwrap_or_default();
    let threshold = alarm
        .get("Threshold")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    for arn in alarm
        .get(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if repeat && !arn.starts_with("arn:aws:autoscaling:") {
            continue;
        }
        actions
            .invoke(region, arn, name, state, value, threshold)
            .await;
    }
}

/// One alarm's evaluation input: the statistic of each of the last `EvaluationPeriods` periods,
/// oldest first, `None` where there is no data.
pub fn decide(alarm: &Value, values: &[(i64, Option<f64>)]) -> Option<StateChange> {
    let threshold = alarm.get("Threshold").and_then(Value::as_f64)?;
    let op = s(alarm, "ComparisonOperator")?;
    let n = values.len();
    let m = alarm
        .get("DatapointsToAlarm")
        .and_then(Value::as_u64)
        .map_or(n, |m| m as usize);
    let treat = s(alarm, "TreatMissingData").unwrap_or("missing");
    let breaches = |x: f64| match op {
        "GreaterThanOrEqualToThreshold" => x >= threshold,
        "GreaterThanThreshold" => x > threshold,
        "LessThanThreshold" => x < threshold,
        _ => x <= threshold,
    };
    let words = match op {
        "GreaterThanOrEqualToThreshold" => "greater than or equal to",
        "GreaterThanThreshold" => "greater than",
        "LessThanThreshold" => "less than",
        _ => "less than or equal to",
    };
    let present: Vec<(i64, f64)> = values
        .iter()
        .filter_map(|(t, v)| v.map(|v| (*t, v)))
        .collect();
    let missing_count = n - present.len();
    if present.is_empty() {
        return match treat {
            "ignore" => None,
            "breaching" => Some(StateChange {
                state: "ALARM".into(),
                reason: format!(
                    "Threshold Crossed: no datapoints were received for {n} periods and {n} \
                     missing datapoints were treated as [Breaching]."
                ),
                data: None,
            }),
            "notBreaching" => Some(StateChange {
                state: "OK".into(),
                reason: format!(
                    "Threshold Crossed: no datapoints were received for {n} periods and {n} \
                     missing datapoints were treated as [NonBreaching]."
                ),
                data: None,
            }),
            _ => Some(StateChange {
                state: "INSUFFICIENT_DATA".into(),
                reason: format!(
                    "Insufficient Data: {n} datapoint{} {} unknown.",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "was" } else { "were" }
                ),
                data: None,
            }),
        };
    }
    let mut breaching = present.iter().filter(|(_, v)| breaches(*v)).count();
    let mut considered = present.len();
    match treat {
        "breaching" => {
            breaching += missing_count;
            considered = n;
        }
        "notBreaching" => considered = n,
        _ => {}
    }
    let needed = m.min(considered).max(1);
    let alarm_now = breaching >= needed;
    let shown: Vec<String> = present
        .iter()
        .rev()
        .take(5)
        .map(|(t, v)| format!("{v} ({})", reason_date(*t)))
        .collect();
    let reason = if alarm_now {
        format!(
            "Threshold Crossed: {breaching} out of the last {considered} datapoints [{}] {} {words} \
             the threshold ({threshold}) (minimum {m} datapoint{} for OK -> ALARM transition).",
            shown.join(", "),
            if breaching == 1 { "was" } else { "were" },
            if m == 1 { "" } else { "s" },
        )
    } else {
        format!(
            "Threshold Crossed: {} datapoint{} [{}] {} not {words} the threshold ({threshold}).",
            present.len(),
            if present.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if present.len() == 1 { "was" } else { "were" },
        )
    };
    let data = json!({
        "version": "1.0",
        "statistic": s(alarm, "Statistic"),
        "period": alarm.get("Period"),
        "recentDatapoints": present.iter().rev().take(5).map(|(_, v)| *v).collect::<Vec<_>>(),
        "threshold": threshold,
        "evaluatedDatapoints": present.iter().rev().map(|(t, v)| json!({
            "timestamp": crate::wire::format_timestamp(*t as f64),
            "value": v,
        })).collect::<Vec<_>>(),
    });
    Some(StateChange {
        state: if alarm_now { "ALARM" } else { "OK" }.into(),
        reason,
        data: Some(data.to_string()),
    })
}

fn reason_date(t: i64) -> String {
    // dd/MM/yy HH:mm:ss, as CloudWatch's reasons write datapoint times.
    let full = crate::wire::format_timestamp(t as f64);
    // full is YYYY-MM-DDTHH:MM:SS(.mmm)Z
    let (date, time) = full.split_once('T').unwrap_or((&full, ""));
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() == 3 {
        format!(
            "{}/{}/{} {}",
            parts[2],
            parts[1],
            &parts[0][parts[0].len().saturating_sub(2)..],
            time.get(..8).unwrap_or(time)
        )
    } else {
        full
    }
}

impl CloudWatchService {
    /// Evaluates every alarm at `now_ms` and records the state changes. Returns how many alarms
    /// changed state.
    pub async fn evaluate_alarms(&self, now_ms: u64) -> Result<usize, AwsError> {
        let mut regions = Vec::new();
        let mut after: Option<String> = None;
        let mut alarms = Vec::new();
        loop {
            let page = self
                .store()
                .scan(ALARM_PREFIX, after.as_deref(), 500)
                .await
                .map_err(error::store)?;
            for r in page.records {
                let region = r.key[ALARM_PREFIX.len()..]
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(v) = serde_json::from_slice::<Value>(&r.value) {
                    if !regions.contains(&region) {
                        regions.push(region.clone());
                    }
                    alarms.push((region, v, r.revision));
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut changed = 0;
        // Repeated actions write nothing of the alarm's, so the fencing of its state change does
        // not cover them: they run only once this pass has confirmed that the replica still
        // leads (asked at the first of them).
        let mut leads: Option<bool> = None;
        for (region, alarm, rev) in alarms {
            let Some(values) = self.alarm_values(&alarm, &region, now_ms) else {
                continue;
            };
            let latest = values.iter().rev().find_map(|(_, v)| *v);
            let Some(change) = decide(&alarm, &values) else {
                // The state holds (missing data ignored): Auto Scaling actions run again.
                let state = s(&alarm, "StateValue")
                    .unwrap_or("INSUFFICIENT_DATA")
                    .to_owned();
                if self.confirm_lead(&mut leads).await {
                    run_actions(self, &region, &alarm, &state, latest, true).await;
                }
                continue;
            };
            if s(&alarm, "StateValue") == Some(change.state.as_str()) {
                // Auto Scaling actions run again every period the alarm stays in the state.
                if self.confirm_lead(&mut leads).await {
                    run_actions(self, &region, &alarm, &change.state, latest, true).await;
                }
                continue;
            }
            match apply_state(
                self.controller_store().as_ref(),
                &region,
                alarm.clone(),
                rev,
                &change,
                now_ms,
            )
            .await
            {
                Ok(()) => {
                    changed += 1;
                    run_actions(self, &region, &alarm, &change.state, latest, false).await;
                }
                Err(e) if e.code == "ConcurrentModificationException" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Whether the evaluating replica still leads, asked once per pass (`cache`): an empty
    /// commit through the controller store, which a deposed leader's fenced store refuses.
    async fn confirm_lead(&self, cache: &mut Option<bool>) -> bool {
        if let Some(leads) = *cache {
            return leads;
        }
        let leads = matches!(
            self.controller_store().commit(Txn::new()).await,
            Ok(TxnOutcome::Committed { .. })
        );
        *cache = Some(leads);
        leads
    }

    fn alarm_values(
        &self,
        alarm: &Value,
        region: &str,
        now_ms: u64,
    ) -> Option<Vec<(i64, Option<f64>)>> {
        let key = alarm_series(alarm, region)?;
        let stat = Stat::parse(s(alarm, "Statistic")?)?;
        let period = alarm.get("Period").and_then(Value::as_i64)?.max(1);
        let n = alarm
            .get("EvaluationPeriods")
            .and_then(Value::as_i64)?
            .max(1);
        let unit = s(alarm, "Unit").and_then(crate::series::unit_id);
        let now = (now_ms / 1000) as i64;
        let end = now - now.rem_euclid(period);
        let start = end - n * period;
        let series = self.stat_series(&key, start, end, period, stat, unit);
        Some(
            (0..n)
                .map(|k| {
                    let t = start + k * period;
                    (t, series.get(&t).copied())
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(treat: &str, m: u64) -> Value {
        json!({
            "Threshold": 50.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "DatapointsToAlarm": m,
            "TreatMissingData": treat,
            "Statistic": "Average",
            "Period": 60,
        })
    }

    #[test]
    fn m_out_of_n_and_missing_data() {
        let v = |xs: &[Option<f64>]| {
            xs.iter()
                .enumerate()
                .map(|(i, x)| (i as i64 * 60, *x))
                .collect::<Vec<_>>()
        };
        let d = |a: &Value, xs: &[Option<f64>]| decide(a, &v(xs)).map(|c| c.state);
        let a = alarm("missing", 2);
        assert_eq!(
            d(&a, &[Some(60.0), Some(10.0), Some(70.0)]).as_deref(),
            Some("ALARM")
        );
        assert_eq!(
            d(&a, &[Some(60.0), Some(10.0), Some(20.0)]).as_deref(),
            Some("OK")
        );
        assert_eq!(
            d(&a, &[None, None, None]).as_deref(),
            Some("INSUFFICIENT_DATA")
        );
        assert_eq!(d(&alarm("ignore", 2), &[None, None, None]), None);
        assert_eq!(
            d(&alarm("breaching", 2), &[None, None, Some(10.0)]).as_deref(),
            Some("ALARM")
        );
        assert_eq!(
            d(&alarm("notBreaching", 2), &[None, None, Some(90.0)]).as_deref(),
            Some("OK")
        );
        assert_eq!(
            d(&alarm("notBreaching", 2), &[None, Some(90.0), Some(90.0)]).as_deref(),
            Some("ALARM")
        );
        let reason = decide(&a, &v(&[Some(60.0), Some(10.0), Some(70.0)]))
            .unwrap()
            .reason;
        assert!(
            reason.starts_with("Threshold Crossed: 2 out of the last 3 datapoints"),
            "{reason}"
        );
        assert!(
            reason.contains("greater than or equal to the threshold (50)"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_deposed_leaders_evaluation_changes_no_alarm() {
        use gantry_store::{FencedStore, MemoryStore, claim_leadership};
        use std::sync::Arc;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let svc = CloudWatchService::open(store.clone()).await.unwrap();
        let fenced = Arc::new(FencedStore::new(store.clone()));
        svc.set_controller_store(fenced.clone());
        let now = 1_700_000_000_000;
        let ctx = RequestContext {
            caller: None,
            request_id: "req".into(),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            now,
        };
        // Missing data counts as breaching: the first evaluation moves the alarm to ALARM.
        put_metric_alarm(
            &svc,
            &json!({"AlarmName": "a", "Namespace": "App", "MetricName": "Load",
                    "Statistic": "Average", "Period": 60, "EvaluationPeriods": 1,
                    "Threshold": 50.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "breaching"}),
            &ctx,
        )
        .await
        .unwrap();
        let state = |v: Value| {
            v["MetricAlarms"][0]["StateValue"]
                .as_str()
                .map(str::to_owned)
        };
        // This replica led, then another replica was elected: its evaluation is refused.
        fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
        claim_leadership(store.as_ref(), "b").await.unwrap();
        assert_eq!(svc.evaluate_alarms(now + 120_000).await.unwrap(), 0);
        let d = describe_alarms(&svc, &json!({}), &ctx).await.unwrap();
        assert_eq!(state(d).as_deref(), Some("INSUFFICIENT_DATA"));
        // Elected again: the same evaluation applies.
        fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
        assert_eq!(svc.evaluate_alarms(now + 120_000).await.unwrap(), 1);
        let d = describe_alarms(&svc, &json!({}), &ctx).await.unwrap();
        assert_eq!(state(d).as_deref(), Some("ALARM"));
    }

    /// Counts the actions run.
    #[derive(Debug, Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl crate::AlarmActions for Counting {
        fn accepts(&self, arn: &str) -> bool {
            arn.starts_with("arn:aws:autoscaling:")
        }
        async fn invoke(&self, _: &str, _: &str, _: &str, _: &str, _: Option<f64>, _: f64) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_deposed_leader_repeats_no_scaling_action() {
        use gantry_store::{FencedStore, MemoryStore, claim_leadership};
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let svc = CloudWatchService::open(store.clone()).await.unwrap();
        let fenced = Arc::new(FencedStore::new(store.clone()));
        svc.set_controller_store(fenced.clone());
        let actions = Arc::new(Counting::default());
        svc.set_actions(actions.clone());
        let now = 1_700_000_000_000;
        let ctx = RequestContext {
            caller: None,
            request_id: "req".into(),
            region: "us-east-1".into(),
            account_id: "111122223333".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            now,
        };
        let policy = "arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:1:resource/ecs/service/c/s:policyName/out";
        put_metric_alarm(
            &svc,
            &json!({"AlarmName": "a", "Namespace": "App", "MetricName": "Load",
                    "Statistic": "Average", "Period": 60, "EvaluationPeriods": 1,
                    "Threshold": 50.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "breaching", "AlarmActions": [policy]}),
            &ctx,
        )
        .await
        .unwrap();
        fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
        // Into ALARM: the action runs; staying there, it runs again each pass while leading.
        assert_eq!(svc.evaluate_alarms(now + 120_000).await.unwrap(), 1);
        assert_eq!(actions.0.load(Ordering::SeqCst), 1);
        assert_eq!(svc.evaluate_alarms(now + 180_000).await.unwrap(), 0);
        assert_eq!(actions.0.load(Ordering::SeqCst), 2);
        // Deposed: the alarm is still in ALARM, but this replica runs the action no more.
        claim_leadership(store.as_ref(), "b").await.unwrap();
        assert_eq!(svc.evaluate_alarms(now + 240_000).await.unwrap(), 0);
        assert_eq!(actions.0.load(Ordering::SeqCst), 2);
    }
}
