//! Property tests of the registry's parsers with arbitrary and hostile input: manifests (every
//! supported media type, cut short, spliced, oversized), references and digests. Each answers an
//! error for what it cannot use, never panics, and allocates at most a bounded multiple of its
//! input (the global allocator is capped around every call).

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::panic::AssertUnwindSafe;

use cap::Cap;
use gantry_ecr::manifest::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use gantry_ecr::{Digest, Reference};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

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

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn descriptor() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(json!(D)),
            Just(json!("sha512:00")),
            Just(json!("md5:abc")),
            ".{0,20}".prop_map(Value::from),
            Just(json!(7)),
        ],
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(u64::MAX)),
            Just(json!("12")),
            any::<u32>().prop_map(Value::from),
        ],
        prop::option::of(prop_oneof![
            Just(json!(OCI_MANIFEST)),
            Just(json!("application/x")),
            Just(json!(1))
        ]),
        prop::option::of(prop::collection::vec(".{0,10}", 0..3)),
    )
        .prop_map(|(digest, size, media, urls)| {
            let mut d = json!({"digest": digest, "size": size});
            if let Some(m) = media {
                d["mediaType"] = m;
            }
            if let Some(u) = urls {
                d["urls"] = json!(u);
            }
            d
        })
}

/// Manifest-shaped documents of every media type, damaged in the ways a client might.
fn manifest_text() -> impl Strategy<Value = (Vec<u8>, Option<String>)> {
    let media = prop_oneof![
        Just(Some(OCI_MANIFEST)),
        Just(Some(OCI_INDEX)),
        Just(Some(DOCKER_MANIFEST)),
        Just(Some(DOCKER_MANIFEST_LIST)),
        Just(Some("text/plain")),
        Just(None),
    ];
    (
        media.clone(),
        media,
        prop_oneof![Just(json!(2)), Just(json!(1)), Just(json!("2"))],
        prop::option::of(descriptor()),
        prop::collection::vec(descriptor(), 0..6),
        prop::option::of(descriptor()),
        any::<u16>(),
    )
        .prop_map(|(declared, header, schema, config, items, subject, cut)| {
            let mut m = json!({"schemaVersion": schema});
            if let Some(d) = declared {
                m["mediaType"] = json!(d);
            }
            if let Some(c) = config {
                m["config"] = c;
            }
            if declared == Some(OCI_INDEX) || declared == Some(DOCKER_MANIFEST_LIST) {
                m["manifests"] = json!(items);
            } else {
                m["layers"] = json!(items);
            }
            if let Some(s) = subject {
                m["subject"] = s;
            }
            let mut text = serde_json::to_vec(&m).unwrap();
            if cut % 4 == 1 {
                text.truncate(cut as usize % (text.len() + 1));
            }
            (text, header.map(str::to_owned))
        })
}

fn check(body: &[u8], content_type: Option<&str>) {
    within(64 * body.len() + (1 << 20), || {
        if let Ok(p) = manifest::parse(body, content_type) {
            assert!(p.blobs.len() + p.children.len() <= body.len());
        }
        let text = String::from_utf8_lossy(body);
        let _ = text.parse::<Digest>();
        let _ = Reference::parse(&text);
        let _ = manifest::valid_repository_name(&text);
        let _ = manifest::valid_tag(&text);
    });
}

#[test]
fn manifest_parsing_errs_never_panics_and_stays_bounded() {
    let config = |cases| {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    };
    config(500)
        .run(&manifest_text(), |(body, ct)| {
            check(&body, ct.as_deref());
            Ok(())
        })
        .unwrap();
    config(300)
        .run(
            &(prop::collection::vec(any::<u8>(), 0..2048), ".{0,60}"),
            |(bytes, ct)| {
                check(&bytes, Some(&ct));
                Ok(())
            },
        )
        .unwrap();
    // Hostile: the largest accepted manifest full of layers, deep nesting, huge sizes.
    let layer = json!({"mediaType": "l", "digest": D, "size": 1});
    let many = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "c", "digest": D, "size": 0},
        "layers": vec![layer; 30_000],
    }))
    .unwrap();
    assert!(many.len() <= manifest::MAX_MANIFEST_BYTES);
    let deep = format!(
        "{{\"schemaVersion\":2,\"annotations\":{}}}",
        "{\"a\":".repeat(50_000)
    );
    for body in [many, deep.into_bytes(), vec![b'['; 100_000]] {
        check(&body, Some(OCI_MANIFEST));
    }
}
