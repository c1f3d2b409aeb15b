//! Registry replication through `Registry::handle_ecr`: the configuration per region, images
//! pushed through `/v2/` seen from the destination region, their replication status, across a
//! restart and a garbage collection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use gantry_ecr::RegistryOptions;
use serde_json::{Value, json};

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
    let empty = t
        .ecr_in("us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(
        empty,
        json!({"registryId": ACCOUNT, "replicationConfiguration": {"rules": []}})
    );

    let put = t
        .ecr_in(
            "us-east-1",
            "PutReplicationConfiguration",
            json!({"replicationConfiguration": config()}),
        )
        .await
        .unwrap();
    assert_eq!(put, json!({"replicationConfiguration": config()}));
    let got = t
        .ecr_in("us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], config());
    // Another region's registry has its own (empty) configuration.
    let west = t
        .ecr_in("us-west-2", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(west["replicationConfiguration"], json!({"rules": []}));

    // A destination in the source region is refused as ECR refuses it.
    let (code, msg) = err(t
        .ecr_in(
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
    let (code, msg) = err(t
        .ecr_in(
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
    let got = t
        .ecr_in("us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], config());
    t.ecr_in(
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": {"rules": []}}),
    )
    .await
    .unwrap();
    let got = t
        .ecr_in("us-east-1", "DescribeRegistry", json!({}))
        .await
        .unwrap();
    assert_eq!(got["replicationConfiguration"], json!({"rules": []}));
}

async fn status_of(t: &TestRegistry, repo: &str, image_id: Value) -> Value {
    t.ecr_in(
        "us-east-1",
        "DescribeImageReplicationStatus",
        json!({"repositoryName": repo, "imageId": image_id}),
    )
    .await
    .unwrap()["replicationStatuses"]
        .clone()
}

#[tokio::test]
async fn pushed_images_are_copied_into_the_destination_region_across_restart_and_gc() {
    let options = RegistryOptions {
        gc_grace: Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(options.clone()).await;
    t.ecr_in(
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": config()}),
    )
    .await
    .unwrap();
    // The destination region's creation template for replication: immutable tags.
    t.ecr_in(
        "us-west-2",
        "CreateRepositoryCreationTemplate",
        json!({"prefix": "prod", "appliedFor": ["REPLICATION"], "imageTagMutability": "IMMUTABLE"}),
    )
    .await
    .unwrap();
    t.create_repo("prod/api").await;
    t.create_repo("dev/api").await;
    let layer = random_bytes(4096);
    let (digest, manifest) = t.push_image("prod/api", "v1", &[&layer]).await;
    let (dev_digest, _) = t.push_image("dev/api", "v1", &[&layer]).await;

    // Queued with the push, not yet copied: the destination has no such repository.
    assert_eq!(
        status_of(&t, "prod/api", json!({"imageTag": "v1"})).await,
        json!([{"region": "us-west-2", "registryId": ACCOUNT, "status": "IN_PROGRESS"}])
    );
    let (code, _) = err(t
        .ecr_in(
            "us-west-2",
            "DescribeRepositories",
            json!({"repositoryNames": ["prod/api"]}),
        )
        .await);
    assert_eq!(code, "RepositoryNotFoundException");
    // A repository no rule selects replicates nowhere.
    assert_eq!(
        status_of(&t, "dev/api", json!({"imageDigest": dev_digest})).await,
        json!([])
    );

    // A crash after the push's answer: the job is in the store and runs after the restart.
    let (dir, store) = t.stop();
    let t = TestRegistry::start_on(dir, store, options.clone()).await;
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 1);
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 0);
    let status = t
        .ecr_in(
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

    // The destination region has the repository (from the template) and the image, byte-exact.
    let west = t
        .ecr_in("us-west-2", "DescribeRepositories", json!({}))
        .await
        .unwrap();
    let names: Vec<&str> = west["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repositoryName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod/api"]);
    assert_eq!(west["repositories"][0]["imageTagMutability"], "IMMUTABLE");
    assert!(
        west["repositories"][0]["repositoryArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:ecr:us-west-2:")
    );
    let got = t
        .ecr_in(
            "us-west-2",
            "BatchGetImage",
            json!({"repositoryName": "prod/api", "imageIds": [{"imageTag": "v1"}]}),
        )
        .await
        .unwrap();
    assert_eq!(got["images"][0]["imageManifest"], manifest);
    assert_eq!(got["images"][0]["imageId"]["imageDigest"], digest);

    // /v2/ with a us-west-2 password reads the replica; us-east-1 keeps its own.
    let west_auth = t.auth_in("us-west-2");
    let layer_digest = sha256(&layer);
    let r = t.get_as("prod/api/manifests/v1", &west_auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], manifest.as_bytes());
    let r = t.get_as("dev/api/manifests/v1", &west_auth).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");

    // The source image deleted and collected: the replica keeps its blobs.
    t.ecr_in(
        "us-east-1",
        "BatchDeleteImage",
        json!({"repositoryName": "prod/api", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await
    .unwrap();
    t.ecr_in(
        "us-east-1",
        "BatchDeleteImage",
        json!({"repositoryName": "dev/api", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await
    .unwrap();
    t.reg.maintenance_pass().await.unwrap();
    let r = t
        .get_as(&format!("prod/api/blobs/{layer_digest}"), &west_auth)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &layer[..]);
    let r = t
        .req(
            "GET",
            &format!("/v2/prod/api/blobs/{layer_digest}"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 404, "the source region no longer links the blob");

    // Another image under the same tag cannot overwrite the destination's immutable tag: that
    // destination reports FAILED with the reason.
    let (digest2, _) = t.push_image("prod/api", "v1", &[&random_bytes(512)]).await;
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 1);
    let statuses = status_of(&t, "prod/api", json!({"imageDigest": digest2})).await;
    assert_eq!(statuses[0]["status"], "FAILED", "{statuses}");
    let code = statuses[0]["failureCode"].as_str().unwrap();
    assert!(code.starts_with("IMAGE_TAG_IMMUTABLE: "), "{code}");
}

#[tokio::test]
async fn an_index_replicates_with_its_children_and_every_pushed_tag() {
    let t = TestRegistry::start().await;
    t.ecr_in(
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": {"rules": [
            {"destinations": [{"region": "eu-west-1", "registryId": ACCOUNT},
                              {"region": "us-west-2", "registryId": ACCOUNT}]}]}}),
    )
    .await
    .unwrap();
    t.create_repo("multi").await;
    let (child, child_body) = t.push_image("multi", "amd64", &[&random_bytes(300)]).await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": child_body.len()}],
    })
    .to_string();
    for tag in ["latest", "stable"] {
        let r = t
            .req(
                "PUT",
                &format!("/v2/multi/manifests/{tag}"),
                &[("content-type", OCI_INDEX)],
                index.clone(),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    // The child and the index, to each of two destinations (the second tag joined the
    // index's pending jobs).
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 4);
    for region in ["eu-west-1", "us-west-2"] {
        let got = t
            .ecr_in(
                region,
                "BatchGetImage",
                json!({"repositoryName": "multi", "imageIds": [
                {"imageTag": "latest"}, {"imageTag": "stable"}, {"imageTag": "amd64"},
                {"imageDigest": child}]}),
            )
            .await
            .unwrap();
        assert_eq!(got["failures"], json!([]), "{region}: {got}");
        let bodies: Vec<&str> = got["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["imageManifest"].as_str().unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                index.as_str(),
                index.as_str(),
                child_body.as_str(),
                child_body.as_str()
            ],
            "{region}"
        );
    }
    let statuses = status_of(&t, "multi", json!({"imageTag": "stable"})).await;
    assert_eq!(
        statuses,
        json!([
            {"region": "eu-west-1", "registryId": ACCOUNT, "status": "COMPLETE"},
            {"region": "us-west-2", "registryId": ACCOUNT, "status": "COMPLETE"},
        ])
    );
}

#[tokio::test]
async fn a_job_of_a_deleted_source_repository_is_dropped() {
    let t = TestRegistry::start().await;
    t.ecr_in(
        "us-east-1",
        "PutReplicationConfiguration",
        json!({"replicationConfiguration": config()}),
    )
    .await
    .unwrap();
    t.create_repo("prod/gone").await;
    t.push_image("prod/gone", "v1", &[&random_bytes(100)]).await;
    t.ecr(
        "DeleteRepository",
        json!({"repositoryName": "prod/gone", "force": true}),
    )
    .await
    .unwrap();
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 1);
    assert_eq!(t.reg.replicate_pending().await.unwrap(), 0);
    let (code, _) = err(t
        .ecr_in(
            "us-west-2",
            "DescribeRepositories",
            json!({"repositoryNames": ["prod/gone"]}),
        )
        .await);
    assert_eq!(code, "RepositoryNotFoundException");
    // Re-created, the repository has no status left from before.
    t.create_repo("prod/gone").await;
    let (digest, _) = t.push_image("prod/gone", "v2", &[&random_bytes(100)]).await;
    assert_eq!(
        status_of(&t, "prod/gone", json!({"imageDigest": digest})).await,
        json!([{"region": "us-west-2", "registryId": ACCOUNT, "status": "IN_PROGRESS"}])
    );
}
