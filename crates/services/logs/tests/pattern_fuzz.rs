//! Filter patterns against hostile input: arbitrary pattern strings (random text, and fragments of
//! the pattern grammar and of regular expressions put together at random) and arbitrary messages
//! (random text, JSON, deeply nested JSON). Parsing and matching must answer a result or an error,
//! never panic, and allocate a bounded amount whatever the input: every allocation is counted by
//! a wrapping global allocator, so this file holds one test and runs it on one thread.

use std::alloc::System;

use cap::Cap;
use gantry_logs::pattern::FilterPattern;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The longest pattern FilterLogEvents accepts (longer ones are refused before parsing).
const MAX_PATTERN_CHARS: usize = 1024;

/// Bytes parsing plus matching may allocate in all (every allocation counted, not only those
/// live at once) for one input: a fixed part (the regex engines' compiled programs and caches are
/// capped at 1 MiB each; compiling and refusing a pattern that would exceed that allocates a few
/// times as much on the way) plus a multiple of the input's size.
fn allocation_bound(pattern: &str, message: &str) -> usize {
    32 * (1 << 20) + 64 * (pattern.len() + message.len())
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("$.".to_owned()),
        Just("$.a.b[0]".to_owned()),
        Just("[999999999999999999999]".to_owned()),
        Just(" = ".to_owned()),
        Just(" != ".to_owned()),
        Just(" >= ".to_owned()),
        Just(" < ".to_owned()),
        Just(" && ".to_owned()),
        Just(" || ".to_owned()),
        Just("&".to_owned()),
        Just("|".to_owned()),
        Just("!".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("%".to_owned()),
        Just("*".to_owned()),
        Just("-".to_owned()),
        Just("?".to_owned()),
        Just(" IS NULL".to_owned()),
        Just(" IS TRUE".to_owned()),
        Just(" NOT EXISTS".to_owned()),
        Just(" EXISTS".to_owned()),
        Just("1e308".to_owned()),
        Just("-0.5".to_owned()),
        Just("NaN".to_owned()),
        Just("a{1000}".to_owned()),
        Just("{1000,}".to_owned()),
        Just("(a|b)*".to_owned()),
        Just("\\w+".to_owned()),
        Just("\\p{L}".to_owned()),
        Just("[^x]".to_owned()),
        Just("(?i)".to_owned()),
        "[a-zA-Z0-9_ ]{0,8}",
        ".{0,4}",
    ]
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        prop::collection::vec(fragment(), 0..64).prop_map(|v| v.concat()),
        prop::collection::vec(fragment(), 0..64).prop_map(|v| format!("{{{}}}", v.concat())),
        prop::collection::vec(fragment(), 0..64).prop_map(|v| format!("%{}%", v.concat())),
        (1usize..600).prop_map(|n| format!("{{ {}$.a = 1{} }}", "(".repeat(n), ")".repeat(n))),
        (1usize..400).prop_map(|n| format!("%{}a{}%", "(".repeat(n), ")".repeat(n))),
        (1usize..200).prop_map(|n| format!("%{}%", "a{10}".repeat(n))),
    ]
    .prop_map(|p| p.chars().take(MAX_PATTERN_CHARS).collect())
}

fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,256}",
        "[ -~]{0,256}",
        Just(
            r#"{"a":{"b":[1,2,3]},"level":"error","n":1e308,"s":"x*y","t":true,"z":null}"#
                .to_owned()
        ),
        (1usize..5_000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        (1usize..5_000).prop_map(|n| "{\"a\":".repeat(n)),
        (0usize..100_000).prop_map(|n| "x".repeat(n)),
    ]
}

/// Patterns whose regular expressions or nesting would take the most: each is refused or compiled
/// within the bound.
const HEAVY: &[&str] = &[
    "%(\\w{100}){100}%",
    "%\\w{1000}%",
    "%[\\p{L}\\p{N}]{500}x%",
    "%(a|aa)*b{900}%",
    "%((((((((((a*)*)*)*)*)*)*)*)*)*)*b%",
    "%.{1000}%",
    "%(?s).{600}z%",
];

fn allocated_by(pattern: &str, message: &str) -> (usize, bool) {
    let before = ALLOCATOR.total_allocated();
    let outcome = FilterPattern::parse(pattern).map(|p| p.matches(message));
    (ALLOCATOR.total_allocated() - before, outcome.is_ok())
}

#[test]
fn filter_patterns_never_panic_and_allocate_a_bounded_amount() {
    let long = "ab".repeat(10_000);
    for p in HEAVY {
        let (allocated, ok) = allocated_by(p, &long);
        eprintln!("{p}: {allocated} bytes, parsed: {ok}");
        assert!(
            allocated <= allocation_bound(p, &long),
            "{allocated} bytes allocated for pattern {p:?}"
        );
    }
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    let parsed = std::cell::Cell::new(0u32);
    runner
        .run(&(pattern(), message()), |(pattern, message)| {
            let before = ALLOCATOR.total_allocated();
            let outcome = FilterPattern::parse(&pattern).map(|p| p.matches(&message));
            let allocated = ALLOCATOR.total_allocated() - before;
            if let Err(e) = &outcome {
                prop_assert!(e.to_string().starts_with("Invalid filter pattern: "));
            } else {
                parsed.set(parsed.get() + 1);
            }
            prop_assert!(
                allocated <= allocation_bound(&pattern, &message),
                "{allocated} bytes allocated for pattern {pattern:?} on a {}-byte message",
                message.len()
            );
            Ok(())
        })
        .unwrap();
    // The generators reach both outcomes.
    assert!(parsed.get() > 100, "only {} patterns parsed", parsed.get());
}
