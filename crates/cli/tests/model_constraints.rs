//! The model constraint tables of every service the binary serves: generated from the installed
//! botocore (no drift), and every pattern in them usable.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Command;

use gantry_aws_proto::constraints::{Constraints, Shape};

fn tables() -> [(&'static str, &'static Constraints); 12] {
    [
        ("ecs", gantry_ecs::SPEC.constraints),
        ("ecr", gantry_ecr::SPEC.constraints),
        ("logs", gantry_logs::SPEC.constraints),
        ("elbv2", gantry_elbv2::SPEC.constraints),
        ("kms", gantry_kms::SPEC.constraints),
        ("acm", gantry_acm::SPEC.constraints),
        ("secretsmanager", gantry_secretsmanager::SPEC.constraints),
        ("ssm", gantry_ssm::SPEC.constraints),
        ("codedeploy", gantry_codedeploy::SPEC.constraints),
        ("cloudwatch", gantry_cloudwatch::SPEC.constraints),
        (
            "application-autoscaling",
            gantry_autoscaling::SPEC.constraints,
        ),
        ("iam", gantry_iam::SPEC.constraints),
    ]
}

#[test]
fn the_tables_match_the_installed_botocore_models() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let has_botocore = Command::new("python3")
        .args(["-c", "import botocore"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_botocore {
        if ["GANTRY_REQUIRE_AWS_CLIENTS", "GANTRY_REQUIRE_DOCKER"]
            .iter()
            .any(|v| std::env::var(v).as_deref() == Ok("1"))
        {
            panic!("python3 with botocore is not available");
        }
        eprintln!("\n*** SKIPPED: python3 with botocore not available ***\n");
        return;
    }
    // The constraint tables, and the wire shapes of the services served on two protocols.
    for script in [
        "scripts/gen-model-constraints.py",
        "scripts/gen-wire-shapes.py",
    ] {
        let out = Command::new("python3")
            .arg(root.join(script))
            .arg("--check")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Visits every shape reachable from the table (shapes may be recursive).
fn walk(shape: &'static Shape, seen: &mut HashSet<usize>, f: &mut impl FnMut(&'static Shape)) {
    if !seen.insert(shape as *const Shape as usize) {
        return;
    }
    f(shape);
    match shape {
        Shape::Structure(members) => {
            for m in *members {
                walk(m.shape, seen, f);
            }
        }
        Shape::List { member, .. } => walk(member, seen, f),
        Shape::Map { key, value, .. } => {
            walk(key, seen, f);
            walk(value, seen, f);
        }
        _ => {}
    }
}

#[test]
fn every_pattern_of_the_models_compiles() {
    let mut broken = Vec::new();
    let mut count = 0;
    for (service, table) in tables() {
        assert!(!table.operations.is_empty(), "{service} has constraints");
        assert!(
            table.operations.windows(2).all(|w| w[0].name < w[1].name),
            "{service}: operations sorted for lookup"
        );
        let mut seen = HashSet::new();
        for op in table.operations {
            walk(op.input, &mut seen, &mut |s| {
                if let Shape::String {
                    pattern: Some(p), ..
                } = s
                {
                    count += 1;
                    if p.regex().is_none() {
                        broken.push(format!("{service}: {}", p.source));
                    }
                }
            });
        }
    }
    assert!(count > 20, "patterns found: {count}");
    assert!(
        broken.is_empty(),
        "patterns that do not compile: {broken:?}"
    );
}
