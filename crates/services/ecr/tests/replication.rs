//! Registry replication through `Registry::handle_ecr`: the configuration per region, images
//! pushed through `/v2/` seen from the destination region, their replication status, across a
//! restart and a garbage collection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use gantry_ecr::RegistryOptions;
use serde_json::{Value, json};

async fn ecr_in(
    t: &TestRegistry,
    region: &str,
    op: &str,
    body: Value,
) -> Result<Value, gantry_aws_proto::AwsError> {
    let mut ctx = t.ctx();
    ctx.region = region.into();
    t.reg
        .handle_ecr(op, body.to_string().as_bytes(), &ctx)
        .await
}

fn err(r: Result<Value, gantry_aws_proto::AwsError>) -> (String, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => (e.code.into_owned(), e.message.to_string()),
    }
}

fn config() -> Value {
    json!({"rules": [{
        "destinations": [{"region": "us-west-2", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}],
    }]})
}

#[tokio::test]
async fn configuration_is_per_region_and_validated() {
    let t = TestRegistry::start().await;
    let empty = ecr_in(&t, "us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(
        empty,
        json!({"registryId": ACCOUNT, "replicationConfiguration": {"rules": []}})
    );

    let put = ecr_in(
        &t,
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": config()}),
    )
    .await
    .unwrap();
    assert_eq!(put, json!({"replicationConfiguration": config()}));
    let got = ecr_in(&t, "us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], config());
    // Another region's registry has its own (empty) configuration.
    let west = ecr_in(&t, "us-west-2", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(west["replicationConfiguration"], json!({"rules": []}));

    // A destination in the source region is refused as ECR refuses it.
    let (code, msg) = err(ecr_in(
        &t,
        "us-west-2",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": config()}),
    )
    .await);
    assert_eq!(code, "InvalidParameterException");
    assert_eq!(
        msg,
        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication destination cannot be the same as the source registry'"
    );
    let (code, msg) = err(ecr_in(
        &t,
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": {"rules": [{
            "destinations": [{"region": "us-west-2", "registryId": "123456789012"}]}]}}),
    )
    .await);
    assert_eq!(code, "InvalidParameterException");
    assert!(
        msg.contains("cross-account replication is not supported"),
        "{msg}"
    );
    // Refusals leave the stored configuration alone; an empty one clears it.
    let got = ecr_in(&t, "us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], config());
    ecr_in(
        &t,
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": {"rules": []}}),
    )
    .await
    .unwrap();
    let got = ecr_in(&t, "us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], json!({"rules": []}));
}

#[tokio::test]
async fn pushed_images_are_in_the_destination_region_across_restart_and_gc() {
    let options = RegistryOptions {
        gc_grace: Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(options.clone()).await;
    ecr_in(
        &t,
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": config()}),
    )
    .await
    .unwrap();
    t.create_repo("prod/api").await;
    t.create_repo("dev/api").await;
    let layer = random_bytes(4096);
    let (digest, manifest) = t.push_image("prod/api", "v1", &[&layer]).await;
    let (dev_digest, _) = t.push_image("dev/api", "v1", &[&layer]).await;

    let status = ecr_in(
        &t,
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "prod/api", "imageId": {"imageTag": "v1"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        status,
        json!({
            "repositoryName": "prod/api",
            "imageId": {"imageDigest": digest, "imageTag": "v1"},
            "replicationStatuses": [{"region": "us-west-2", "registryId": ACCOUNT, "status": "COMPLETE"}],
        })
    );
    // A repository no rule selects replicates nowhere.
    let dev = ecr_in(
        &t,
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "dev/api", "imageId": {"imageDigest": dev_digest}}),
    )
    .await
    .unwrap();
    assert_eq!(dev["replicationStatuses"], json!([]));

    // The destination region answers for the image, manifest byte-exact.
    let got = ecr_in(
        &t,
        "us-west-2",
        "BatchGetImage",
        json!({"repositoryName": "prod/api", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await
    .unwrap();
    assert_eq!(got["images"][0]["imageManifest"], manifest);
    assert_eq!(got["images"][0]["imageId"]["imageDigest"], digest);

    // ECR's errors.
    let (code, msg) = err(ecr_in(
        &t,
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "prod/api", "imageId": {"imageTag": "v2"}}),
    )
    .await);
    assert_eq!(code, "ImageNotFoundException");
    assert_eq!(
        msg,
        format!(
            "The image with imageId {{imageDigest:'null', imageTag:'v2'}} does not exist within the repository with name 'prod/api' in the registry with id '{ACCOUNT}'"
        )
    );
    let (code, msg) = err(ecr_in(
        &t,
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "prod/ghost", "imageId": {"imageTag": "v1"}}),
    )
    .await);
    assert_eq!(code, "RepositoryNotFoundException");
    assert_eq!(
        msg,
        format!(
            "The repository with name 'prod/ghost' does not exist in the registry with id '{ACCOUNT}'"
        )
    );

    // A restart keeps the configuration and the status; a collection keeps the blobs.
    let (dir, store) = t.stop();
    let t = TestRegistry::start_on(dir, store, options).await;
    t.reg.maintenance_pass().await.unwrap();
    let status = ecr_in(
        &t,
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": "prod/api", "imageId": {"imageDigest": digest}}),
    )
    .await
    .unwrap();
    assert_eq!(status["replicationStatuses"][0]["status"], "COMPLETE");
    let layer_digest = sha256(&layer);
    let r = t
        .req(
            "GET",
            &format!("/v2/prod/api/blobs/{layer_digest}"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &layer[..]);
}
