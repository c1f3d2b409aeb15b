//! The crate map of ARCHITECTURE.md, checked on the workspace's manifests (`cargo metadata`):
//! dependencies only point down the layers, no service crate depends on another service crate,
//! nothing but the binary depends on a role crate (agent, load balancer, simulator), and the pure
//! and protocol crates stay free of the runtimes they must not know.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Where a crate sits. A crate may depend (normally or to build) only on crates of a lower layer;
/// crates of one layer never depend on each other.
fn layer(name: &str, manifest: &str) -> Option<u8> {
    if manifest.contains("/crates/services/") {
        return Some(LAYER_SERVICE);
    }
    Some(match name {
        "gantry-domain" | "gantry-aws-proto" | "gantry-scheduler" | "gantry-iam-policy" => 0,
        "gantry-store" | "gantry-controller" => 1,
        "gantry-front" => 2,
        "gantry-agent" | "gantry-lb" | "gantry-sim" | "gantry-bench" | "gantry-testkit" => 4,
        "gantry" => 5,
        _ => return None,
    })
}

const LAYER_SERVICE: u8 = 3;

/// Registry crates a workspace crate must not depend on (normal or build dependencies).
fn forbidden(name: &str, manifest: &str) -> &'static [&'static str] {
    const RUNTIMES: &[&str] = &[
        "tokio", "axum", "hyper", "http", "rusqlite", "bollard", "reqwest",
    ];
    const DOCKER_AND_DB: &[&str] = &["bollard", "rusqlite"];
    if manifest.contains("/crates/services/") {
        return DOCKER_AND_DB;
    }
    match name {
        "gantry-domain" | "gantry-scheduler" | "gantry-controller" | "gantry-iam-policy" => {
            RUNTIMES
        }
        "gantry-front" | "gantry-aws-proto" => DOCKER_AND_DB,
        "gantry-store" => &["axum", "hyper", "bollard"],
        "gantry-agent" => &["rusqlite"],
        "gantry-lb" => DOCKER_AND_DB,
        _ => &[],
    }
}

struct Krate {
    name: String,
    manifest: String,
    /// (dependency, kind): kind is `normal`, `dev` or `build`.
    deps: Vec<(String, String)>,
}

fn workspace() -> Vec<Krate> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Krate {
            name: p["name"].as_str().unwrap().to_owned(),
            manifest: p["manifest_path"].as_str().unwrap().to_owned(),
            deps: p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap().to_owned(),
                        d["kind"].as_str().unwrap_or("normal").to_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

#[test]
fn dependencies_point_down_the_crate_map() {
    let crates = workspace();
    let layers: BTreeMap<&str, (u8, &str)> = crates
        .iter()
        .map(|k| {
            let l = layer(&k.name, &k.manifest).unwrap_or_else(|| {
                panic!(
                    "{} ({}) has no place in the crate map: add it to ARCHITECTURE.md and to \
                     layer() here",
                    k.name, k.manifest
                )
            });
            (k.name.as_str(), (l, k.manifest.as_str()))
        })
        .collect();
    let mut wrong = Vec::new();
    for k in &crates {
        let (mine, _) = layers[k.name.as_str()];
        for (dep, kind) in &k.deps {
            let Some(&(theirs, _)) = layers.get(dep.as_str()) else {
                if kind != "dev" && forbidden(&k.name, &k.manifest).contains(&dep.as_str()) {
                    wrong.push(format!("{} must not depend on {dep}", k.name));
                }
                continue;
            };
            if theirs == LAYER_SERVICE && mine == LAYER_SERVICE {
                wrong.push(format!(
                    "service crate {} depends on service crate {dep} ({kind}): cross-service \
                     needs go through a trait the composition root wires",
                    k.name
                ));
            } else if kind == "dev" {
                // Tests may use fixtures and anything below them, never a sibling or above.
                if theirs >= mine && dep != "gantry-testkit" {
                    wrong.push(format!("{} dev-depends upward on {dep}", k.name));
                }
            } else if theirs >= mine {
                wrong.push(format!(
                    "{} (layer {mine}) depends on {dep} (layer {theirs}) ({kind})",
                    k.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the crate map is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_service_crate_lives_under_crates_services() {
    let crates = workspace();
    let services: Vec<&str> = crates
        .iter()
        .filter(|k| k.manifest.contains("/crates/services/"))
        .map(|k| k.name.as_str())
        .collect();
    for expected in [
        "gantry-ecs",
        "gantry-ecr",
        "gantry-logs",
        "gantry-elbv2",
        "gantry-sts",
        "gantry-iam",
        "gantry-ec2",
        "gantry-kms",
        "gantry-secretsmanager",
        "gantry-ssm",
        "gantry-cloudwatch",
        "gantry-autoscaling",
        "gantry-codedeploy",
    ] {
        assert!(
            services.contains(&expected),
            "{expected} is not under crates/services: {services:?}"
        );
    }
    // Each depends on the front, which is how it plugs in.
    for k in crates
        .iter()
        .filter(|k| k.manifest.contains("/crates/services/"))
    {
        assert!(
            k.deps
                .iter()
                .any(|(d, kind)| d == "gantry-front" && kind == "normal"),
            "{} does not plug into gantry-front",
            k.name
        );
    }
}
