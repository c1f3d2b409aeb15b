//! Property tests of the wire decoders with arbitrary and hostile input: the awsJson body decoder
//! and target parser, the awsQuery decoder, the model-constraint checks of both, and SigV4's
//! parsing of the Authorization header, the presigned query and the date. Each answers an error
//! for what it cannot use, never panics, and allocates at most a bounded multiple of its input:
//! the global allocator is capped around every call, so an allocation beyond the budget aborts
//! the test.
//!
//! Bounded in time: a few hundred cases per decoder, inputs up to a few KiB, a few seconds in a
//! debug build.

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use cap::Cap;
use gantry_aws_proto::constraints::{self, Member, Pattern, Shape};
use gantry_aws_proto::query::QueryRequest;
use gantry_aws_proto::{json, sigv4};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The cap is process-wide: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` with at most `budget` more bytes allocatable; past it, the allocation fails and the
/// process aborts ("memory allocation of N bytes failed").
fn within<T>(budget: usize, f: impl FnOnce() -> T) -> T {
    ALLOCATOR
        .set_limit(ALLOCATOR.allocated().saturating_add(budget))
        .unwrap();
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    ALLOCATOR.set_limit(usize::MAX).unwrap();
    match out {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Linear in the input, with room for fixed costs.
fn budget(input_len: usize) -> usize {
    64 * input_len + (1 << 20)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// JSON text: valid documents, and valid documents cut short or with bytes spliced in.
fn json_text() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    let doc = leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (doc, any::<u16>(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(v, at, junk)| {
        let mut text = serde_json::to_vec(&v).unwrap();
        match at % 3 {
            0 => {}
            1 => text.truncate(at as usize % (text.len() + 1)),
            _ => {
                let at = at as usize % (text.len() + 1);
                text.splice(at..at, junk);
            }
        }
        text
    })
}

static NAME_PATTERN: Pattern = Pattern::new("[\\.\\-_/#A-Za-z0-9]+");
static NAME: Shape = Shape::String {
    min: Some(1),
    max: Some(16),
    pattern: Some(&NAME_PATTERN),
};
static COUNT: Shape = Shape::Integer {
    min: Some(1),
    max: Some(100),
};
static RATIO: Shape = Shape::Float {
    min: Some(0.0),
    max: Some(1.0),
};
static BLOB: Shape = Shape::Blob {
    min: None,
    max: Some(8),
};
static NAMES: Shape = Shape::List {
    member: &NAME,
    min: Some(1),
    max: Some(4),
};
static LABELS: Shape = Shape::Map {
    key: &NAME,
    value: &NAME,
    min: None,
    max: Some(4),
};
/// A recursive shape: the walk must follow the value, not loop on the shape.
static NODE: Shape = Shape::Structure(&[
    Member {
        name: "name",
        shape: &NAME,
    },
    Member {
        name: "count",
        shape: &COUNT,
    },
    Member {
        name: "ratio",
        shape: &RATIO,
    },
    Member {
        name: "blob",
        shape: &BLOB,
    },
    Member {
        name: "names",
        shape: &NAMES,
    },
    Member {
        name: "labels",
        shape: &LABELS,
    },
    Member {
        name: "children",
        shape: &CHILDREN,
    },
    Member {
        name: "Name",
        shape: &NAME,
    },
    Member {
        name: "Children",
        shape: &CHILDREN,
    },
]);
static CHILDREN: Shape = Shape::List {
    member: &NODE,
    min: None,
    max: Some(3),
};

fn check_json(text: &[u8]) {
    within(budget(text.len()), || {
        let _ = json::parse_body::<Value>(text);
        let _ = json::parse_body::<HashMap<String, Option<Vec<u32>>>>(text);
        let conforms = constraints::json_conforms(&NODE, text);
        if let Ok(v) = serde_json::from_slice::<Value>(text) {
            let found = constraints::validate_json(&NODE, &v);
            // The streaming pre-check may only say "conforms" when the full check agrees.
            assert!(!conforms || found.is_empty(), "{found:?}");
            assert!(found.len() <= constraints::MAX_REPORTED);
            let message = constraints::message(&found);
            assert!(
                message.len() <= constraints::MAX_REPORTED * (2 * constraints::MAX_ECHOED + 512)
            );
        }
        let _ = json::parse_target(&String::from_utf8_lossy(text));
    });
}

#[test]
fn aws_json_decoding_errs_never_panics_and_stays_bounded() {
    let _serial = serial();
    runner(400)
        .run(&json_text(), |text| {
            check_json(&text);
            Ok(())
        })
        .unwrap();
    runner(200)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            check_json(&bytes);
            Ok(())
        })
        .unwrap();
    // Hostile shapes of input.
    let deep_array = "[".repeat(100_000);
    let deep_object = "{\"children\":[".repeat(20_000);
    let wide = format!("{{\"names\":[{}\"x\"]}}", "\"a\",".repeat(50_000));
    let many_keys = format!(
        "{{\"labels\":{{{}\"z\":\"z\"}}}}",
        (0..20_000)
            .map(|i| format!("\"k{i}\":\"v\","))
            .collect::<String>()
    );
    let long_number = format!("{{\"count\":{}}}", "9".repeat(100_000));
    let escapes = format!("{{\"name\":\"{}\"}}", "\\u0000".repeat(50_000));
    let big_blob = format!("{{\"blob\":\"{}\"}}", "QUFB".repeat(50_000));
    for text in [
        deep_array,
        deep_object,
        wide,
        many_keys,
        long_number,
        escapes,
        big_blob,
    ] {
        check_json(text.as_bytes());
    }
}

/// Documents shaped like `NODE` (its member names, values in and out of range): the streaming
/// pre-check and the full check agree exactly on documents without duplicate keys.
fn node_text() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        (-5i64..120).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0f64..2.0).prop_map(Value::from),
        "[a-z#!]{0,20}".prop_map(Value::from),
        "(QUFB){0,4}=?".prop_map(Value::from),
    ];
    let key = prop::sample::select(vec![
        "name", "count", "ratio", "blob", "names", "labels", "children", "Name", "Children", "k",
    ]);
    let doc = leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    });
    doc.prop_map(|v| serde_json::to_vec(&v).unwrap())
}

#[test]
fn streaming_pre_check_agrees_with_the_full_check() {
    let _serial = serial();
    runner(2000)
        .run(&node_text(), |text| {
            let v: Value = serde_json::from_slice(&text).unwrap();
            let found = constraints::validate_json(&NODE, &v);
            prop_assert_eq!(
                constraints::json_conforms(&NODE, &text),
                found.is_empty(),
                "{} -> {:?}",
                String::from_utf8_lossy(&text),
                found
            );
            Ok(())
        })
        .unwrap();
    // Duplicate keys collapse to the last in the parsed value; the pre-check stays conservative.
    for (text, conforms) in [
        (r#"{"name":"ok","name":"bad!"}"#, false),
        (r#"{"name":"bad!","name":"ok"}"#, false),
        (r#"{"name":"ok"} trailing"#, true),
        (r#"{"count":0}"#, false),
        (r#"{"count":18446744073709551615}"#, false),
        (r#"{"children":[{"names":[]}]}"#, false),
        (r#"{"labels":{"a":"b","c":"d"}}"#, true),
    ] {
        assert_eq!(
            constraints::json_conforms(&NODE, text.as_bytes()),
            conforms,
            "{text}"
        );
    }
}

/// Query strings: member names made of the protocol's pieces, values of any text.
fn query_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just("Name".to_owned()),
        Just("Children".to_owned()),
        Just("member".to_owned()),
        Just("entry".to_owned()),
        Just("key".to_owned()),
        Just("value".to_owned()),
        Just("Action".to_owned()),
        (0u64..20).prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_owned()),
        "[a-zA-Z%+.=&]{0,6}",
    ];
    let key = prop::collection::vec(piece, 1..7).prop_map(|p| p.join("."));
    let pair = (key, ".{0,20}").prop_map(|(k, v)| {
        format!(
            "{}={}",
            k,
            form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        )
    });
    prop::collection::vec(pair, 0..40).prop_map(|pairs| pairs.join("&").into_bytes())
}

fn check_query(text: &[u8]) {
    within(budget(text.len()), || {
        let req = QueryRequest::parse(text, Some(&String::from_utf8_lossy(text)));
        let _ = req.action();
        let _ = req.list("Children");
        let _ = req.structs("Children");
        let _ = req.map("Labels");
        let found = constraints::validate_query(&NODE, &req);
        assert!(found.len() <= constraints::MAX_REPORTED);
    });
}

#[test]
fn aws_query_decoding_never_panics_and_stays_bounded() {
    let _serial = serial();
    runner(400)
        .run(&query_text(), |text| {
            check_query(&text);
            Ok(())
        })
        .unwrap();
    runner(200)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            check_query(&bytes);
            Ok(())
        })
        .unwrap();
    let nested: String = (1..=3000)
        .map(|i| format!("Children.member.{i}.Children.member.{i}.Name=n{i}&"))
        .collect();
    let sparse = "Children.member.18446744073709551615.Name=x&Names.member.4294967296=y";
    let percent = "%".repeat(50_000);
    for text in [nested.as_str(), sparse, percent.as_str()] {
        check_query(text.as_bytes());
    }
}

/// Authorization headers built from SigV4's parts, shuffled and damaged.
fn authorization() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("AWS4-HMAC-SHA256".to_owned()),
        Just("Credential=AKID/20260101/us-east-1/ecs/aws4_request".to_owned()),
        Just("Credential=AKID/2026/us-east-1".to_owned()),
        Just("Credential=".to_owned()),
        Just("SignedHeaders=host;x-amz-date".to_owned()),
        Just("SignedHeaders=".to_owned()),
        Just("SignedHeaders=;;;".to_owned()),
        Just("Signature=deadbeef".to_owned()),
        Just("Signature=".to_owned()),
        Just(",".to_owned()),
        Just(", ".to_owned()),
        Just("=".to_owned()),
        "[ -~]{0,30}",
    ];
    prop::collection::vec(part, 0..10).prop_map(|p| p.concat())
}

fn check_sigv4(authorization: &str, date: &str, query: &str, body: &[u8]) {
    let mut creds = HashMap::new();
    creds.insert("AKID".to_owned(), "secret".to_owned());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let input_len = authorization.len() + date.len() + query.len() + body.len();
    within(budget(input_len), || {
        let uri = format!("/?{query}");
        let mut builder = http::Request::builder().method("POST").uri(
            uri.parse::<http::Uri>()
                .unwrap_or_else(|_| http::Uri::from_static("/")),
        );
        builder = builder.header("host", "localhost");
        if let Ok(v) = http::HeaderValue::from_str(authorization) {
            builder = builder.header("authorization", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(date) {
            builder = builder.header("x-amz-date", v);
        }
        let Ok(req) = builder.body(()) else {
            return;
        };
        let (parts, ()) = req.into_parts();
        let verified = sigv4::verify(&parts, body, &creds, now);
        assert!(verified.is_err(), "nothing here carries a valid signature");
        let _ = sigv4::parse_amz_date(date);
    });
}

#[test]
fn sigv4_parsing_errs_never_panics_and_stays_bounded() {
    let _serial = serial();
    let strategy = (
        authorization(),
        prop_oneof![Just("20260101T000000Z".to_owned()), "[0-9TZ]{0,20}"],
        prop_oneof![
            Just(String::new()),
            Just("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fecs%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00".to_owned()),
            "[a-zA-Z0-9%=&-]{0,80}",
        ],
        prop::collection::vec(any::<u8>(), 0..64),
    );
    runner(500)
        .run(&strategy, |(auth, date, query, body)| {
            check_sigv4(&auth, &date, &query, &body);
            Ok(())
        })
        .unwrap();
    let huge_headers = format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ecs/aws4_request, SignedHeaders={}, Signature=00",
        "h;".repeat(20_000)
    );
    let huge_scope = format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders=host, Signature=00",
        "/".repeat(50_000)
    );
    for auth in [huge_headers, huge_scope] {
        check_sigv4(&auth, "20260101T000000Z", "", b"");
    }
}
