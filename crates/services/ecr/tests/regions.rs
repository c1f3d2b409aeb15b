//! Repositories per region: the ECR API in each region, `/v2/` in the region of its password
//! or of an AWS-style host, and records written before regions read as the default region's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use gantry_ecr::RegistryOptions;
use gantry_store::{Store, Txn};
use serde_json::json;

async fn names_in(t: &TestRegistry, region: &str) -> Vec<String> {
    let v = t
        .ecr_in(region, "DescribeRepositories", json!({}))
        .await
        .unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repositoryName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_region_has_its_own_repositories_and_images() {
    let t = TestRegistry::start().await;
    t.create_repo("app").await;
    t.ecr_in(
        "us-west-2",
        "CreateRepository",
        json!({"repositoryName": "app", "imageTagMutability": "IMMUTABLE"}),
    )
    .await
    .unwrap();
    t.ecr_in(
        "us-west-2",
        "CreateRepository",
        json!({"repositoryName": "west-only"}),
    )
    .await
    .unwrap();
    assert_eq!(names_in(&t, "us-east-1").await, ["app"]);
    assert_eq!(names_in(&t, "us-west-2").await, ["app", "west-only"]);
    assert!(names_in(&t, "eu-west-1").await.is_empty());
    let west = t
        .ecr_in(
            "us-west-2",
            "DescribeRepositories",
            json!({"repositoryNames": ["app"]}),
        )
        .await
        .unwrap();
    assert_eq!(west["repositories"][0]["imageTagMutability"], "IMMUTABLE");

    // An image pushed in us-east-1 (the test client's password region) is not in us-west-2.
    let layer = random_bytes(1000);
    let (digest, manifest) = t.push_image("app", "v1", &[&layer]).await;
    let west_auth = t.auth_in("us-west-2");
    let r = t.get_as("app/manifests/v1", &west_auth).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    let r = t
        .req_auth(
            "GET",
            &format!("/v2/app/blobs/{}", sha256(&layer)),
            &[],
            Vec::new(),
            Some(&west_auth),
        )
        .await;
    assert_eq!(r.status, 404, "a blob is readable only where it is linked");
    let images = t
        .ecr_in("us-west-2", "ListImages", json!({"repositoryName": "app"}))
        .await
        .unwrap();
    assert_eq!(images["imageIds"], json!([]));

    // An AWS-style host names the region for an access key (which names none).
    use base64::Engine as _;
    let key_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"))
    );
    let east_host = format!("{ACCOUNT}.dkr.ecr.us-east-1.localhost");
    let west_host = format!("{ACCOUNT}.dkr.ecr.us-west-2.localhost");
    let r = t
        .req_auth(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", OCI_MANIFEST), ("host", &east_host)],
            Vec::new(),
            Some(&key_auth),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], manifest.as_bytes());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let r = t
        .req_auth(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", OCI_MANIFEST), ("host", &west_host)],
            Vec::new(),
            Some(&key_auth),
        )
        .await;
    assert_eq!(r.status, 404);
    // A us-east-1 password at a us-west-2 host is refused.
    let r = t
        .req(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", OCI_MANIFEST), ("host", &west_host)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.error_code(), "DENIED");
}

/// Rewrites every registry key into the layout before regions, as an older server left them.
async fn unscope(store: &dyn Store) {
    let mut txn = Txn::new();
    let page = store.scan("ecr/", None, 10_000).await.unwrap();
    for rec in page.records {
        let old = if let Some(rest) = rec.key.strip_prefix("ecr/region/us-east-1/") {
            Some(format!("ecr/{rest}"))
        } else if let Some(rest) = rec.key.strip_prefix("ecr/blobref/") {
            let (d, rest) = rest.split_once('#').unwrap();
            let (_, repo) = rest.split_once('#').unwrap();
            Some(format!("ecr/link/{d}#{repo}"))
        } else if rec.key.starts_with("ecr/known-region/") {
            None
        } else {
            continue;
        };
        txn = txn.delete(&rec.key);
        if let Some(old) = old {
            txn = txn.put(old, rec.value);
        }
    }
    assert!(store.commit(txn).await.unwrap().is_committed());
}

#[tokio::test]
async fn records_written_before_regions_are_the_default_regions_after_an_upgrade() {
    let options = RegistryOptions {
        gc_grace: std::time::Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(options.clone()).await;
    t.create_repo("team/app").await;
    t.ecr_in("us-east-1",
        "PutLifecyclePolicy",
        json!({"repositoryName": "team/app", "lifecyclePolicyText": json!({"rules": [{
            "rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5},
            "action": {"type": "expire"}}]}).to_string()}),
    )
    .await
    .unwrap();
    let layer = random_bytes(2048);
    let (digest, manifest) = t.push_image("team/app", "v1", &[&layer]).await;
    let (dir, store) = t.stop();
    unscope(store.as_ref()).await;
    assert!(
        store.get("ecr/repo/team/app").await.unwrap().is_some(),
        "the old layout is in place"
    );

    // The upgraded server moves them into its default region (us-east-1 here).
    let t = TestRegistry::start_on(dir, store, options).await;
    assert!(t.store.get("ecr/repo/team/app").await.unwrap().is_none());
    assert_eq!(names_in(&t, "us-east-1").await, ["team/app"]);
    assert!(names_in(&t, "us-west-2").await.is_empty());
    let policy = t
        .ecr_in(
            "us-east-1",
            "GetLifecyclePolicy",
            json!({"repositoryName": "team/app"}),
        )
        .await
        .unwrap();
    assert!(
        policy["lifecyclePolicyText"]
            .as_str()
            .unwrap()
            .contains("untagged")
    );
    // A collection right away keeps the image's blobs: their links moved too.
    t.reg.maintenance_pass().await.unwrap();
    let r = t
        .req(
            "GET",
            "/v2/team/app/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], manifest.as_bytes());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let r = t
        .req(
            "GET",
            &format!("/v2/team/app/blobs/{}", sha256(&layer)),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &layer[..]);
}
