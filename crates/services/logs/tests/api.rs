//! In-process tests: every operation through `JsonService::call` on a MemoryStore (and the main
//! flow on a SqliteStore), with the JSON the AWS clients see.

use std::sync::Arc;

use gantry_front::{JsonService, RequestContext};
use gantry_logs::{LogsService, TARGET_PREFIX};
use gantry_store::{MemoryStore, SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};

const DAY: u64 = 24 * 60 * 60 * 1000;
const NOW: u64 = 1_800_000_000_000;

struct Harness {
    svc: LogsService,
    now: u64,
}

impl Harness {
    fn new() -> Self {
        Self::on(Arc::new(MemoryStore::new()))
    }

    fn on(store: Arc<dyn Store>) -> Self {
        Self {
            svc: LogsService::new(store),
            now: NOW,
        }
    }

    fn ctx(&self) -> RequestContext {
        RequestContext {
            caller: None,
            request_id: uuid_like(self.now),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            access_key_id: "AKID".into(),
            now: self.now,
        }
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, (u16, String, String)> {
        self.svc
            .call(op, body.to_string().as_bytes(), &self.ctx())
            .await
            .map_err(|e| (e.status.as_u16(), e.code.to_string(), e.message))
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        match self.call(op, body.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{op} {body} failed: {e:?}"),
        }
    }

    async fn err(&self, op: &str, body: Value) -> (u16, String, String) {
        match self.call(op, body.clone()).await {
            Ok(v) => panic!("{op} {body} should fail, got {v}"),
            Err(e) => e,
        }
    }

    async fn group_with_streams(&self, group: &str, streams: &[&str]) {
        self.ok("CreateLogGroup", json!({"logGroupName": group}))
            .await;
        for s in streams {
            self.ok(
                "CreateLogStream",
                json!({"logGroupName": group, "logStreamName": s}),
            )
            .await;
        }
    }

    async fn put(&self, group: &str, stream: &str, events: &[(u64, &str)]) -> Value {
        let evs: Vec<Value> = events
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": m}))
            .collect();
        self.ok(
            "PutLogEvents",
            json!({"logGroupName": group, "logStreamName": stream, "logEvents": evs}),
        )
        .await
    }
}

fn uuid_like(n: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", n % 0xffff_ffff_ffff)
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect()
}

#[tokio::test]
async fn log_groups_are_created_described_and_deleted() {
    let h = Harness::new();
    assert_eq!(
        h.ok(
            "CreateLogGroup",
            json!({"logGroupName": "/ecs/web", "tags": {"team": "a"}})
        )
        .await,
        json!({})
    );
    let e = h
        .err("CreateLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    assert_eq!((e.0, e.1.as_str()), (400, "ResourceAlreadyExistsException"));
    h.ok("CreateLogGroup", json!({"logGroupName": "/ecs/api"}))
        .await;
    h.ok("CreateLogGroup", json!({"logGroupName": "other"}))
        .await;
    let v = h
        .ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/w"}))
        .await;
    assert_eq!(
        v,
        json!({"logGroups": [{
            "logGroupName": "/ecs/web",
            "creationTime": NOW,
            "metricFilterCount": 0,
            "arn": "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web:*",
            "logGroupArn": "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/web",
            "storedBytes": 0,
            "logGroupClass": "STANDARD",
        }]})
    );
    let v = h
        .ok("DescribeLogGroups", json!({"logGroupNamePattern": "API"}))
        .await;
    assert_eq!(v["logGroups"][0]["logGroupName"], "/ecs/api");
    let e = h
        .err(
            "DescribeLogGroups",
            json!({"logGroupNamePattern": "a", "logGroupNamePrefix": "b"}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    // Pages of 2 then 1, in name order.
    let p1 = h.ok("DescribeLogGroups", json!({"limit": 2})).await;
    let names: Vec<&str> = p1["logGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/ecs/api", "/ecs/web"]);
    let p2 = h
        .ok(
            "DescribeLogGroups",
            json!({"limit": 2, "nextToken": p1["nextToken"]}),
        )
        .await;
    assert_eq!(p2["logGroups"][0]["logGroupName"], "other");
    assert!(p2.get("nextToken").is_none());
    assert_eq!(
        h.err("DescribeLogGroups", json!({"limit": 51})).await.1,
        "InvalidParameterException"
    );
    h.ok("DeleteLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    let e = h
        .err("DeleteLogGroup", json!({"logGroupName": "/ecs/web"}))
        .await;
    assert_eq!(
        e,
        (
            400,
            "ResourceNotFoundException".into(),
            "The specified log group does not exist.".into()
        )
    );
    assert_eq!(
        h.err("CreateLogGroup", json!({"logGroupName": "bad:name"}))
            .await
            .1,
        "InvalidParameterException"
    );
    assert_eq!(
        h.err("CreateLogGroup", json!({})).await.1,
        "InvalidParameterException"
    );
}

#[tokio::test]
async fn log_streams_are_listed_by_name_or_last_event_time() {
    let h = Harness::new();
    let e = h
        .err(
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": "s"}),
        )
        .await;
    assert_eq!(e.2, "The specified log group does not exist.");
    h.group_with_streams("g", &["b", "a", "c"]).await;
    let e = h
        .err(
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": "a"}),
        )
        .await;
    assert_eq!(e.1, "ResourceAlreadyExistsException");
    h.put("g", "b", &[(NOW - 3000, "x")]).await;
    h.put("g", "c", &[(NOW - 1000, "y")]).await;
    h.put("g", "a", &[(NOW - 2000, "z")]).await;
    let v = h
        .ok("DescribeLogStreams", json!({"logGroupName": "g"}))
        .await;
    let names: Vec<&str> = v["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let a = &v["logStreams"][0];
    assert_eq!(a["firstEventTimestamp"], NOW - 2000);
    assert_eq!(a["lastEventTimestamp"], NOW - 2000);
    assert_eq!(a["lastIngestionTime"], NOW);
    assert_eq!(a["storedBytes"], 27);
    assert_eq!(
        a["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:g:log-stream:a"
    );
    assert!(a["uploadSequenceToken"].is_string());
    let mut all = Vec::new();
    let mut token: Option<Value> = None;
    loop {
        let mut req = json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:000000000000:log-group:g", "orderBy": "LastEventTime", "descending": true, "limit": 2});
        if let Some(t) = &token {
            req["nextToken"] = t.clone();
        }
        let v = h.ok("DescribeLogStreams", req).await;
        all.extend(
            v["logStreams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["logStreamName"].as_str().unwrap().to_owned()),
        );
        match v.get("nextToken") {
            Some(t) => token = Some(t.clone()),
            None => break,
        }
    }
    assert_eq!(all, ["c", "a", "b"]);
    let v = h
        .ok(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "logStreamNamePrefix": "b"}),
        )
        .await;
    assert_eq!(v["logStreams"].as_array().unwrap().len(), 1);
    let e = h
        .err(
            "DescribeLogStreams",
            json!({"logGroupName": "g", "logStreamNamePrefix": "b", "orderBy": "LastEventTime"}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    h.ok(
        "DeleteLogStream",
        json!({"logGroupName": "g", "logStreamName": "b"}),
    )
    .await;
    let e = h
        .err(
            "DeleteLogStream",
            json!({"logGroupName": "g", "logStreamName": "b"}),
        )
        .await;
    assert_eq!(e.2, "The specified log stream does not exist.");
    // A re-created stream starts empty.
    h.ok(
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "b"}),
    )
    .await;
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "b", "startFromHead": true}),
        )
        .await;
    assert!(messages(&v).is_empty());
}

#[tokio::test]
async fn put_log_events_validates_batches_and_reports_rejections() {
    let h = Harness::new();
    h.group_with_streams("g", &["s"]).await;
    let v = h
        .put("g", "s", &[(NOW - 10, "one"), (NOW - 5, "two")])
        .await;
    let token = v["nextSequenceToken"].as_str().unwrap().to_owned();
    assert!(v.get("rejectedLogEventsInfo").is_none());
    // The sequence token is optional and a stale one is ignored.
    let v = h.ok("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "sequenceToken": "1", "logEvents": [{"timestamp": NOW, "message": "three"}]})).await;
    assert_ne!(v["nextSequenceToken"].as_str().unwrap(), token);
    let e = h.err("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": NOW, "message": "b"}, {"timestamp": NOW - 1, "message": "a"}]})).await;
    assert_eq!(e.1, "InvalidParameterException");
    assert!(e.2.contains("chronological"), "{}", e.2);
    let e = h
        .err(
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": []}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    let e = h.err("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "nope", "logEvents": [{"timestamp": NOW, "message": "a"}]})).await;
    assert_eq!(e.2, "The specified log stream does not exist.");
    let e = h.err("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": NOW - 2 * DAY, "message": "a"}, {"timestamp": NOW, "message": "b"}]})).await;
    assert!(e.2.contains("24 hours"), "{}", e.2);
    let v = h
        .put(
            "g",
            "s",
            &[(NOW - 15 * DAY, "old"), (NOW - 15 * DAY + 1, "old2")],
        )
        .await;
    assert_eq!(
        v["rejectedLogEventsInfo"],
        json!({"tooOldLogEventEndIndex": 2})
    );
    let v = h
        .put("g", "s", &[(NOW, "ok"), (NOW + 3 * 3_600_000, "future")])
        .await;
    assert_eq!(
        v["rejectedLogEventsInfo"],
        json!({"tooNewLogEventStartIndex": 1})
    );
    let all = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
    assert_eq!(messages(&all), ["one", "two", "three", "ok"]);
    assert_eq!(
        all["events"][0],
        json!({"timestamp": NOW - 10, "message": "one", "ingestionTime": NOW})
    );
}

#[tokio::test]
async fn get_log_events_pages_forward_and_backward_with_aws_tokens() {
    let h = Harness::new();
    h.group_with_streams("g", &["s"]).await;
    // Two overlapping batches: reads merge them in timestamp order.
    h.put(
        "g",
        "s",
        &[(NOW - 100, "m0"), (NOW - 80, "m2"), (NOW - 60, "m4")],
    )
    .await;
    h.put(
        "g",
        "s",
        &[(NOW - 90, "m1"), (NOW - 70, "m3"), (NOW - 50, "m5")],
    )
    .await;
    // Default: the latest events, oldest first.
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2}),
        )
        .await;
    assert_eq!(messages(&v), ["m4", "m5"]);
    let back = v["nextBackwardToken"].as_str().unwrap().to_owned();
    let fwd = v["nextForwardToken"].as_str().unwrap().to_owned();
    assert!(back.starts_with("b/") && fwd.starts_with("f/"));
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2, "nextToken": back}),
        )
        .await;
    assert_eq!(messages(&v), ["m2", "m3"]);
    let v = h.ok("GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "limit": 2, "nextToken": v["nextBackwardToken"]})).await;
    assert_eq!(messages(&v), ["m0", "m1"]);
    let start = v["nextBackwardToken"].clone();
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2, "nextToken": start}),
        )
        .await;
    assert!(messages(&v).is_empty());
    assert_eq!(
        v["nextBackwardToken"], start,
        "the same token back at the start"
    );
    // At the end, the forward token comes back unchanged, then new events appear behind it.
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": fwd}),
        )
        .await;
    assert!(messages(&v).is_empty());
    assert_eq!(v["nextForwardToken"], fwd.as_str());
    h.put("g", "s", &[(NOW - 40, "m6")]).await;
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": fwd}),
        )
        .await;
    assert_eq!(messages(&v), ["m6"]);
    // From the head, with a time window [start, end).
    let v = h.ok("GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "startTime": NOW - 90, "endTime": NOW - 60})).await;
    assert_eq!(messages(&v), ["m1", "m2", "m3"]);
    let mut seen = Vec::new();
    let mut token = None::<String>;
    loop {
        let mut req =
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "limit": 3});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let v = h.ok("GetLogEvents", req).await;
        let next = v["nextForwardToken"].as_str().unwrap().to_owned();
        seen.extend(messages(&v));
        if token.as_deref() == Some(next.as_str()) {
            break;
        }
        token = Some(next);
    }
    assert_eq!(seen, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    let e = h
        .err(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": "x/123"}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    let e = h
        .err(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "nope"}),
        )
        .await;
    assert_eq!(e.1, "ResourceNotFoundException");
}

#[tokio::test]
async fn filter_log_events_interleaves_streams_and_paginates() {
    let h = Harness::new();
    h.group_with_streams("/ecs/app", &["web/c/1", "web/c/2", "db/c/1"])
        .await;
    h.put(
        "/ecs/app",
        "web/c/1",
        &[
            (NOW - 50, "GET /a 200"),
            (NOW - 30, "GET /b 500 ERROR"),
            (NOW - 10, "{\"level\":\"error\",\"code\":503}"),
        ],
    )
    .await;
    h.put(
        "/ecs/app",
        "web/c/2",
        &[(NOW - 40, "POST /c 201"), (NOW - 20, "GET /health 200")],
    )
    .await;
    h.put(
        "/ecs/app",
        "db/c/1",
        &[(NOW - 45, "checkpoint ERROR disk"), (NOW - 5, "ready")],
    )
    .await;
    let v = h
        .ok(
            "FilterLogEvents",
            json!({"logGroupName": "/ecs/app", "interleaved": true}),
        )
        .await;
    assert_eq!(
        messages(&v),
        [
            "GET /a 200",
            "checkpoint ERROR disk",
            "POST /c 201",
            "GET /b 500 ERROR",
            "GET /health 200",
            "{\"level\":\"error\",\"code\":503}",
            "ready"
        ]
    );
    // AWS has answered an empty list since May 2020.
    assert_eq!(v["searchedLogStreams"], json!([]));
    assert!(v.get("nextToken").is_none());
    let first = &v["events"][0];
    assert_eq!(first["logStreamName"], "web/c/1");
    assert_eq!(first["ingestionTime"], NOW);
    let ids: std::collections::HashSet<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "event ids are unique");
    // Event ids are stable across calls.
    let again = h
        .ok("FilterLogEvents", json!({"logGroupName": "/ecs/app"}))
        .await;
    assert_eq!(again["events"], v["events"]);
    let cases: &[(Value, &[&str])] = &[
        (
            json!({"filterPattern": "ERROR"}),
            &["checkpoint ERROR disk", "GET /b 500 ERROR"],
        ),
        (
            json!({"filterPattern": "GET -ERROR"}),
            &["GET /a 200", "GET /health 200"],
        ),
        (
            json!({"filterPattern": "?POST ?ready"}),
            &["POST /c 201", "ready"],
        ),
        (
            json!({"filterPattern": "\"GET /b\""}),
            &["GET /b 500 ERROR"],
        ),
        (
            json!({"filterPattern": "{ $.code >= 500 }"}),
            &["{\"level\":\"error\",\"code\":503}"],
        ),
        (
            json!({"filterPattern": "{ $.level = \"error\" }"}),
            &["{\"level\":\"error\",\"code\":503}"],
        ),
        (
            json!({"logStreamNamePrefix": "web/"}),
            &[
                "GET /a 200",
                "POST /c 201",
                "GET /b 500 ERROR",
                "GET /health 200",
                "{\"level\":\"error\",\"code\":503}",
            ],
        ),
        (
            json!({"logStreamNames": ["db/c/1", "web/c/2"]}),
            &[
                "checkpoint ERROR disk",
                "POST /c 201",
                "GET /health 200",
                "ready",
            ],
        ),
        // Both ends inclusive ("events with a timestamp later than endTime are not returned").
        (
            json!({"startTime": NOW - 40, "endTime": NOW - 20}),
            &["POST /c 201", "GET /b 500 ERROR", "GET /health 200"],
        ),
    ];
    for (extra, want) in cases {
        let mut req = extra.clone();
        req["logGroupName"] = json!("/ecs/app");
        let v = h.ok("FilterLogEvents", req).await;
        assert_eq!(messages(&v), *want, "{extra}");
    }
    // Pages of 3 cover everything once.
    let mut seen = Vec::new();
    let mut token: Option<Value> = None;
    loop {
        let mut req = json!({"logGroupIdentifier": "/ecs/app", "limit": 3});
        if let Some(t) = &token {
            req["nextToken"] = t.clone();
        }
        let v = h.ok("FilterLogEvents", req).await;
        seen.extend(messages(&v));
        match v.get("nextToken") {
            Some(t) => token = Some(t.clone()),
            None => break,
        }
    }
    assert_eq!(seen, messages(&again));
    let e = h
        .err(
            "FilterLogEvents",
            json!({"logGroupName": "/ecs/app", "filterPattern": "{ $.a = "}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    let e = h.err("FilterLogEvents", json!({"logGroupName": "/ecs/app", "logStreamNames": ["a"], "logStreamNamePrefix": "a"})).await;
    assert_eq!(e.1, "InvalidParameterException");
    let e = h
        .err("FilterLogEvents", json!({"logGroupName": "nope"}))
        .await;
    assert_eq!(e.2, "The specified log group does not exist.");
}

#[tokio::test]
async fn retention_hides_then_deletes_expired_events() {
    let mut h = Harness::new();
    h.group_with_streams("g", &["s"]).await;
    h.put(
        "g",
        "s",
        &[(NOW - 5 * DAY, "old-a"), (NOW - 5 * DAY + 1, "old-b")],
    )
    .await;
    h.put("g", "s", &[(NOW - 2 * DAY, "mid")]).await;
    h.put("g", "s", &[(NOW - 1000, "new")]).await;
    let e = h
        .err(
            "PutRetentionPolicy",
            json!({"logGroupName": "g", "retentionInDays": 2}),
        )
        .await;
    assert_eq!(e.1, "InvalidParameterException");
    assert!(e.2.contains("3653"), "{}", e.2);
    let e = h
        .err(
            "PutRetentionPolicy",
            json!({"logGroupName": "nope", "retentionInDays": 3}),
        )
        .await;
    assert_eq!(e.1, "ResourceNotFoundException");
    h.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 3}),
    )
    .await;
    let g = h.ok("DescribeLogGroups", json!({})).await;
    assert_eq!(g["logGroups"][0]["retentionInDays"], 3);
    assert_eq!(g["logGroups"][0]["storedBytes"], 31 * 2 + 29 * 2);
    // Expired events are never read, even before the job runs.
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
    assert_eq!(messages(&v), ["mid", "new"]);
    let v = h.ok("FilterLogEvents", json!({"logGroupName": "g"})).await;
    assert_eq!(messages(&v), ["mid", "new"]);
    // Ingesting an event already past retention reports it as expired.
    let v = h
        .put(
            "g",
            "s",
            &[(NOW - 4 * DAY, "late"), (NOW - 4 * DAY + 1, "late2")],
        )
        .await;
    assert_eq!(
        v["rejectedLogEventsInfo"],
        json!({"expiredLogEventEndIndex": 2})
    );
    h.put("g", "s", &[(NOW, "now")]).await;
    assert_eq!(h.svc.enforce_retention(h.now).await.unwrap(), 1);
    assert_eq!(h.svc.enforce_retention(h.now).await.unwrap(), 0);
    let s = h
        .ok("DescribeLogStreams", json!({"logGroupName": "g"}))
        .await;
    assert_eq!(s["logStreams"][0]["firstEventTimestamp"], NOW - 2 * DAY);
    assert_eq!(s["logStreams"][0]["storedBytes"], 29 * 2 + 29);
    // A day later "mid" expires too; removing the policy keeps the rest forever.
    h.now += 2 * DAY;
    assert_eq!(h.svc.enforce_retention(h.now).await.unwrap(), 1);
    h.ok("DeleteRetentionPolicy", json!({"logGroupName": "g"}))
        .await;
    let g = h.ok("DescribeLogGroups", json!({})).await;
    assert!(g["logGroups"][0].get("retentionInDays").is_none());
    let v = h.ok("FilterLogEvents", json!({"logGroupName": "g"})).await;
    assert_eq!(messages(&v), ["new", "now"]);
}

#[tokio::test]
async fn retention_job_stops_on_shutdown() {
    let svc = Arc::new(
        LogsService::new(Arc::new(MemoryStore::new()))
            .with_retention_interval(std::time::Duration::from_millis(5)),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let job = tokio::spawn(svc.run_retention(rx));
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), job)
        .await
        .expect("job stops")
        .expect("no panic");
}

#[tokio::test]
async fn tags_by_arn_and_by_deprecated_group_operations() {
    let h = Harness::new();
    h.ok(
        "CreateLogGroup",
        json!({"logGroupName": "g", "tags": {"a": "1"}}),
    )
    .await;
    let arn = "arn:aws:logs:us-east-1:000000000000:log-group:g";
    h.ok(
        "TagResource",
        json!({"resourceArn": arn, "tags": {"b": "2"}}),
    )
    .await;
    assert_eq!(
        h.ok("ListTagsForResource", json!({"resourceArn": arn}))
            .await,
        json!({"tags": {"a": "1", "b": "2"}})
    );
    h.ok(
        "UntagResource",
        json!({"resourceArn": arn, "tagKeys": ["a"]}),
    )
    .await;
    assert_eq!(
        h.ok("ListTagsLogGroup", json!({"logGroupName": "g"})).await,
        json!({"tags": {"b": "2"}})
    );
    h.ok(
        "TagLogGroup",
        json!({"logGroupName": "g", "tags": {"c": "3"}}),
    )
    .await;
    h.ok("UntagLogGroup", json!({"logGroupName": "g", "tags": ["b"]}))
        .await;
    assert_eq!(
        h.ok(
            "ListTagsForResource",
            json!({"resourceArn": format!("{arn}:*")})
        )
        .await,
        json!({"tags": {"c": "3"}})
    );
    let e = h
        .err(
            "ListTagsForResource",
            json!({"resourceArn": "arn:aws:logs:us-east-1:000000000000:log-group:nope"}),
        )
        .await;
    assert_eq!(e.1, "ResourceNotFoundException");
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
    let e = h
        .err("TagResource", json!({"resourceArn": arn, "tags": many}))
        .await;
    assert_eq!(e.1, "TooManyTagsException");
}

#[tokio::test]
async fn unimplemented_and_unknown_operations_answer_errors() {
    let h = Harness::new();
    let e = h.err("CreateExportTask", json!({})).await;
    assert_eq!((e.0, e.1.as_str()), (400, "InvalidOperationException"));
    assert!(e.2.contains("CreateExportTask"));
    let e = h.err("NoSuchThing", json!({})).await;
    assert_eq!(e.1, "UnknownOperationException");
    assert!(e.2.contains(TARGET_PREFIX));
    let e = h
        .svc
        .call("CreateLogGroup", b"{not json", &h.ctx())
        .await
        .unwrap_err();
    assert_eq!(e.code, "SerializationException");
}

#[tokio::test]
async fn deleting_a_group_removes_its_events_for_good() {
    let store = Arc::new(MemoryStore::new());
    let mut h = Harness::on(store.clone());
    h.group_with_streams("g", &["s"]).await;
    h.put("g", "s", &[(NOW, "before")]).await;
    h.ok("DeleteLogGroup", json!({"logGroupName": "g"})).await;
    assert!(
        store
            .scan("logs/", None, 0)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    h.now += 1;
    h.group_with_streams("g", &["s"]).await;
    let v = h.ok("FilterLogEvents", json!({"logGroupName": "g"})).await;
    assert!(messages(&v).is_empty());
}

#[tokio::test]
async fn events_survive_on_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let opts = || SqliteOptions {
        durable: false,
        ..SqliteOptions::default()
    };
    {
        let store = Arc::new(SqliteStore::open(&path, opts()).unwrap());
        let h = Harness::on(store.clone());
        h.group_with_streams("g", &["s"]).await;
        let batch: Vec<(u64, String)> = (0..2000)
            .map(|i| (NOW - 2000 + i, format!("line {i}")))
            .collect();
        let refs: Vec<(u64, &str)> = batch.iter().map(|(t, m)| (*t, m.as_str())).collect();
        h.put("g", "s", &refs).await;
        // Two chunks (the batch spans two seconds), each with its reverse-index entry, the stream
        // and the group.
        let keys: Vec<String> = store
            .scan("logs/", None, 0)
            .await
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert_eq!(keys.iter().filter(|k| k.contains("/c/")).count(), 2);
        assert_eq!(keys.iter().filter(|k| k.contains("/r/")).count(), 2);
        store.close();
    }
    let store = Arc::new(SqliteStore::open(&path, opts()).unwrap());
    let h = Harness::on(store);
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "limit": 5}),
        )
        .await;
    assert_eq!(
        messages(&v),
        ["line 0", "line 1", "line 2", "line 3", "line 4"]
    );
    let v = h
        .ok(
            "FilterLogEvents",
            json!({"logGroupName": "g", "filterPattern": "\"line 1999\""}),
        )
        .await;
    assert_eq!(messages(&v), ["line 1999"]);
}

#[tokio::test]
async fn streams_stored_per_batch_are_converted_on_first_read() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let h = Harness::on(store.clone());
    h.group_with_streams("g", &["s"]).await;
    // A stream as the layout before chunks left it: one JSON record per batch, keyed by first
    // timestamp and sequence, and no layout in the stream record.
    let group = store.get("logs/group/us-east-1/g").await.unwrap().unwrap();
    let group: Value = serde_json::from_slice(&group.value).unwrap();
    let prefix = format!(
        "logs/events/us-east-1/{}/{:010}/",
        group["incarnation"].as_str().unwrap(),
        1
    );
    let skey = "logs/stream/us-east-1/g:s";
    let mut stream: Value =
        serde_json::from_slice(&store.get(skey).await.unwrap().unwrap().value).unwrap();
    stream.as_object_mut().unwrap().remove("layout");
    stream["first_event_timestamp"] = json!(NOW - 3_000);
    stream["last_event_timestamp"] = json!(NOW - 500);
    stream["stored_bytes"] = json!(5 * 27);
    stream["last_seq"] = json!(2);
    let b1 = json!({"seq": 1, "ingestion_time": NOW, "first_ts": NOW - 3_000, "last_ts": NOW - 1_000,
        "bytes": 81, "events": [[NOW - 3_000, "a"], [NOW - 2_000, "c"], [NOW - 1_000, "e"]]});
    let b2 = json!({"seq": 2, "ingestion_time": NOW, "first_ts": NOW - 2_500, "last_ts": NOW - 500,
        "bytes": 54, "events": [[NOW - 2_500, "b"], [NOW - 500, "f"]]});
    let mut txn = gantry_store::Txn::new().put(skey, stream.to_string().into_bytes());
    for b in [&b1, &b2] {
        let key = format!(
            "{prefix}{:016}/{:012}",
            b["first_ts"].as_u64().unwrap(),
            b["seq"].as_u64().unwrap()
        );
        txn = txn.put(key, b.to_string().into_bytes());
    }
    assert!(store.commit(txn).await.unwrap().is_committed());
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await;
    assert_eq!(messages(&v), ["a", "b", "c", "e", "f"]);
    let keys: Vec<String> = store
        .scan(&prefix, None, 0)
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert!(
        keys.iter()
            .all(|k| k[prefix.len()..].starts_with("c/") || k[prefix.len()..].starts_with("r/")),
        "{keys:?}"
    );
    // New events land beside the converted ones; every read path sees them all.
    h.put("g", "s", &[(NOW - 1_500, "d")]).await;
    let v = h.ok("FilterLogEvents", json!({"logGroupName": "g"})).await;
    assert_eq!(messages(&v), ["a", "b", "c", "d", "e", "f"]);
    let v = h
        .ok(
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "limit": 2}),
        )
        .await;
    assert_eq!(messages(&v), ["e", "f"]);
}

#[tokio::test]
async fn a_deposed_leaders_retention_deletes_nothing() {
    use gantry_store::{FencedStore, claim_leadership};
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let h = Harness::on(store.clone());
    h.group_with_streams("g", &["s"]).await;
    h.put("g", "s", &[(NOW - 5 * DAY, "old")]).await;
    h.put("g", "s", &[(NOW - 1000, "new")]).await;
    h.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 3}),
    )
    .await;
    // This replica led, then another replica was elected: its retention copy is deposed.
    let fenced = Arc::new(FencedStore::new(store.clone()));
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    claim_leadership(store.as_ref(), "b").await.unwrap();
    let deposed = h.svc.writing_through(fenced.clone());
    let _ = deposed.enforce_retention(h.now).await;
    let before = h
        .ok("DescribeLogStreams", json!({"logGroupName": "g"}))
        .await;
    assert_eq!(
        before["logStreams"][0]["firstEventTimestamp"],
        NOW - 5 * DAY
    );
    // Elected again: the same job now deletes the expired batch.
    fenced.set_token(claim_leadership(store.as_ref(), "a").await.unwrap());
    assert_eq!(deposed.enforce_retention(h.now).await.unwrap(), 1);
    let after = h
        .ok("DescribeLogStreams", json!({"logGroupName": "g"}))
        .await;
    assert_eq!(after["logStreams"][0]["firstEventTimestamp"], NOW - 1000);
}

#[tokio::test]
async fn concurrent_resource_policy_writes_keep_the_limit_of_ten() {
    let h = Arc::new(Harness::new());
    let doc = json!({"Statement": {"Effect": "Allow", "Action": "logs:PutLogEvents",
        "Principal": {"Service": "route53.amazonaws.com"}, "Resource": "*"}})
    .to_string();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let h = h.clone();
            let doc = doc.clone();
            tokio::spawn(async move {
                h.call(
                    "PutResourcePolicy",
                    json!({"policyName": format!("p{i:02}"), "policyDocument": doc}),
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(
                e,
                (
                    400,
                    "LimitExceededException".to_owned(),
                    "Resource limit exceeded.".to_owned()
                )
            ),
        }
    }
    assert_eq!(created, 10);
    let listed = h.ok("DescribeResourcePolicies", json!({"limit": 50})).await;
    assert_eq!(listed["resourcePolicies"].as_array().unwrap().len(), 10);
}
