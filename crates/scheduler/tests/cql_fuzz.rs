//! Property tests of the Cluster Query Language parser with arbitrary and hostile expressions:
//! it answers a positioned error for what it cannot parse, never panics (deep nesting included),
//! allocates at most a bounded multiple of its input (the global allocator is capped around every
//! call), and what it parses prints back to an expression that parses to the same thing.

#![allow(clippy::unwrap_used)]

use std::alloc::System;
use std::panic::AssertUnwindSafe;

use cap::Cap;
use gantry_scheduler::cql;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

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

/// Expressions made of CQL's tokens, in any order.
fn expression() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("attribute:ecs.instance-type".to_owned()),
        Just("attribute:ecs.availability-zone".to_owned()),
        Just("ec2InstanceId".to_owned()),
        Just("registeredAt".to_owned()),
        Just("runningTasksCount".to_owned()),
        Just("task:group".to_owned()),
        Just("==".to_owned()),
        Just("!=".to_owned()),
        Just(">=".to_owned()),
        Just("<".to_owned()),
        Just("exists".to_owned()),
        Just("in".to_owned()),
        Just("matches".to_owned()),
        Just("and".to_owned()),
        Just("or".to_owned()),
        Just("not".to_owned()),
        Just("&&".to_owned()),
        Just("||".to_owned()),
        Just("!".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just("'".to_owned()),
        Just("t2.*".to_owned()),
        Just("2026-01-01T00:00:00Z".to_owned()),
        "[a-z0-9.*-]{1,8}",
        ".{0,4}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.join(" "))
}

fn check(text: &str) {
    let parsed = within(64 * text.len() + (1 << 20), || cql::parse(text));
    match parsed {
        Ok(expr) => {
            // The canonical form spaces its operators, so near the length limit it may be
            // longer than its source; below it, it parses back to the same tree.
            let printed = expr.to_string();
            match cql::parse(&printed) {
                Ok(again) => assert_eq!(again, expr, "{text:?} -> {printed:?}"),
                Err(e) => assert!(
                    printed.chars().count() > 2000 && e.message.contains("longer than"),
                    "{text:?} -> {printed:?}: {e}"
                ),
            }
        }
        Err(e) => assert!(e.position <= text.chars().count(), "{text:?}: {e}"),
    }
}

#[test]
fn cql_parsing_errs_never_panics_and_stays_bounded() {
    let runner = |cases| {
        TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        })
    };
    runner(500)
        .run(&expression(), |text| {
            check(&text);
            Ok(())
        })
        .unwrap();
    runner(200)
        .run(&".{0,200}", |text| {
            check(&text);
            Ok(())
        })
        .unwrap();
    let deep_parens = format!(
        "{}attribute:a == b{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let deep_nots = format!("{}attribute:a exists", "not ".repeat(100_000));
    let long_chain = vec!["attribute:a == b"; 20_000].join(" and ");
    let wide_list = format!("attribute:a in [{}]", vec!["x"; 50_000].join(", "));
    for text in [deep_parens, deep_nots, long_chain, wide_list] {
        check(&text);
        assert!(cql::parse(&text).is_err(), "{}...", &text[..40]);
    }
    // The longest chain ECS's 2,000 characters allow parses, and its tree prints, compares and
    // drops without running out of stack.
    let longest_chain = vec!["attribute:a==b"; 125].join("&&");
    assert!(longest_chain.len() <= 2000);
    check(&longest_chain);
    assert!(cql::parse(&longest_chain).is_ok());
}
