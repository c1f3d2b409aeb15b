//! CreateLogStream, DeleteLogStream, DescribeLogStreams.

use gantry_front::RequestContext;
use gantry_store::{StoreExt, Txn, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::groups::delete_prefix;
use crate::model::{LAYOUT_CHUNKS, LogStream};
use crate::wire::{
    check_group_name, check_stream_name, commit_with_retry, group_ref, limit, load_group,
    load_stream, paginate, parse, required, stream_arn, with_token,
};
use crate::{LogsError, LogsService, keys};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamRequest {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
}

fn names(body: &[u8]) -> Result<(String, String), LogsError> {
    let req: StreamRequest = parse(body)?;
    let group = required(req.log_group_name, "logGroupName")?;
    let stream = required(req.log_stream_name, "logStreamName")?;
    check_group_name(&group)?;
    check_stream_name(&stream)?;
    Ok((group, stream))
}

pub(crate) async fn create(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let (group_name, stream_name) = names(body)?;
    let gkey = keys::group(&ctx.region, &group_name);
    let skey = keys::stream(&ctx.region, &group_name, &stream_name);
    commit_with_retry(svc.store.as_ref(), || async {
        let mut group = load_group(svc, ctx, &group_name).await?;
        if svc.store.get(&skey).await?.is_some() {
            return Err(LogsError::ResourceAlreadyExists(
                "The specified log stream already exists".to_owned(),
            ));
        }
        let stream = LogStream {
            name: stream_name.clone(),
            creation_time: ctx.now,
            num: group.value.next_stream_num,
            first_event_timestamp: None,
            last_event_timestamp: None,
            last_ingestion_time: None,
            stored_bytes: 0,
            last_seq: 0,
            layout: LAYOUT_CHUNKS,
        };
        group.value.next_stream_num += 1;
        let txn = Txn::new()
            .require_revision(&gkey, group.revision)
            .require_absent(&skey)
            .put(&gkey, encode(&gkey, &group.value)?)
            .put(&skey, encode(&skey, &stream)?);
        Ok((txn, ()))
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn delete(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let (group_name, stream_name) = names(body)?;
    let skey = keys::stream(&ctx.region, &group_name, &stream_name);
    let prefix = commit_with_retry(svc.store.as_ref(), || async {
        let group = load_group(svc, ctx, &group_name).await?;
        let stream = load_stream(svc, ctx, &group_name, &stream_name).await?;
        let txn = Txn::new()
            .require_revision(&skey, stream.revision)
            .delete(&skey);
        let prefix = keys::batches(&ctx.region, &group.value.incarnation, stream.value.num);
        Ok((txn, prefix))
    })
    .await?;
    // Stream numbers are never reused, so the batches are unreachable already.
    delete_prefix(svc, &prefix).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreamsRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// The wire shape of a log stream.
pub(crate) fn to_wire(ctx: &RequestContext, group: &str, s: &LogStream) -> Value {
    let mut v = json!({
        "logStreamName": s.name,
        "creationTime": s.creation_time,
        "arn": stream_arn(ctx, group, &s.name),
        "storedBytes": s.stored_bytes,
    });
    if let Some(t) = s.first_event_timestamp {
        v["firstEventTimestamp"] = json!(t);
    }
    if let Some(t) = s.last_event_timestamp {
        v["lastEventTimestamp"] = json!(t);
    }
    if let Some(t) = s.last_ingestion_time {
        v["lastIngestionTime"] = json!(t);
    }
    if s.last_seq > 0 {
        v["uploadSequenceToken"] = json!(s.sequence_token());
    }
    v
}

pub(crate) async fn describe(
    svc: &LogsService,
    body: &[u8],
    ctx: &RequestContext,
) -> Result<Value, LogsError> {
    let req: DescribeLogStreamsRequest = parse(body)?;
    let group = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    let limit = limit(req.limit, 50, 50)?;
    let by_time = match req.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(other) => {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )));
        }
    };
    if by_time && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let descending = req.descending.unwrap_or(false);
    load_group(svc, ctx, &group).await?;
    let scan_prefix = format!(
        "{}{}",
        keys::streams(&ctx.region, &group),
        req.log_stream_name_prefix.as_deref().unwrap_or("")
    );
    let streams = svc.store.scan_all_typed::<LogStream>(&scan_prefix).await?;
    let mut items: Vec<(String, LogStream)> = streams
        .into_iter()
        .map(|s| {
            let key = if by_time {
                format!(
                    "{:020}/{}",
                    s.value.last_event_timestamp.unwrap_or(0),
                    s.value.name
                )
            } else {
                s.value.name.clone()
            };
            (key, s.value)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let (page, next) = paginate(items, req.next_token.as_deref(), limit, descending)?;
    let out: Vec<Value> = page.iter().map(|s| to_wire(ctx, &group, s)).collect();
    Ok(with_token(json!({"logStreams": out}), next))
}
