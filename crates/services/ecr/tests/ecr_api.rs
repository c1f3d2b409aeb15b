//! The ECR JSON API through `Registry::handle_ecr`, sharing one image store with `/v2/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};

fn code(r: Result<Value, gantry_aws_proto::AwsError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.code.into_owned(),
    }
}

#[tokio::test]
async fn create_describe_and_delete_repositories() {
    let t = TestRegistry::start().await;
    let v = t
        .ecr(
            "CreateRepository",
            json!({"repositoryName": "team/app", "imageTagMutability": "IMMUTABLE",
                   "tags": [{"Key": "env", "Value": "dev"}],
                   "imageScanningConfiguration": {"scanOnPush": true}}),
        )
        .await
        .unwrap();
    let repo = &v["repository"];
    assert_eq!(repo["repositoryName"], "team/app");
    assert_eq!(repo["registryId"], ACCOUNT);
    assert_eq!(
        repo["repositoryArn"],
        format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/app")
    );
    assert_eq!(repo["repositoryUri"], format!("{}/team/app", t.host()));
    assert_eq!(repo["imageTagMutability"], "IMMUTABLE");
    assert_eq!(repo["imageScanningConfiguration"]["scanOnPush"], true);
    assert_eq!(repo["encryptionConfiguration"]["encryptionType"], "AES256");
    assert!(repo["createdAt"].is_number());

    assert_eq!(
        code(
            t.ecr("CreateRepository", json!({"repositoryName": "team/app"}))
                .await
        ),
        "RepositoryAlreadyExistsException"
    );
    assert_eq!(
        code(
            t.ecr("CreateRepository", json!({"repositoryName": "Bad_Name"}))
                .await
        ),
        "InvalidParameterException"
    );
    assert_eq!(
        code(
            t.ecr("CreateRepository", json!({"repositoryName": 5}))
                .await
        ),
        "SerializationException"
    );

    for i in 0..3 {
        t.create_repo(&format!("page/r{i}")).await;
    }
    let all = t.ecr("DescribeRepositories", json!({})).await.unwrap();
    assert_eq!(all["repositories"].as_array().unwrap().len(), 4);
    let p1 = t
        .ecr("DescribeRepositories", json!({"maxResults": 3}))
        .await
        .unwrap();
    assert_eq!(p1["repositories"].as_array().unwrap().len(), 3);
    let tok = p1["nextToken"].as_str().unwrap();
    let p2 = t
        .ecr(
            "DescribeRepositories",
            json!({"maxResults": 3, "nextToken": tok}),
        )
        .await
        .unwrap();
    assert_eq!(p2["repositories"].as_array().unwrap().len(), 1);
    assert!(p2.get("nextToken").is_none());
    let one = t
        .ecr(
            "DescribeRepositories",
            json!({"repositoryNames": ["page/r1"]}),
        )
        .await
        .unwrap();
    assert_eq!(one["repositories"][0]["repositoryName"], "page/r1");
    assert_eq!(
        code(
            t.ecr(
                "DescribeRepositories",
                json!({"repositoryNames": ["nope/x"]})
            )
            .await
        ),
        "RepositoryNotFoundException"
    );

    // Delete: not empty without force.
    t.create_repo("del/me").await;
    t.push_image("del/me", "v1", &[b"l"]).await;
    assert_eq!(
        code(
            t.ecr("DeleteRepository", json!({"repositoryName": "del/me"}))
                .await
        ),
        "RepositoryNotEmptyException"
    );
    let v = t
        .ecr(
            "DeleteRepository",
            json!({"repositoryName": "del/me", "force": true}),
        )
        .await
        .unwrap();
    assert_eq!(v["repository"]["repositoryName"], "del/me");
    assert_eq!(
        t.req("GET", "/v2/del/me/manifests/v1", &[], "")
            .await
            .error_code(),
        "NAME_UNKNOWN"
    );
    assert_eq!(
        code(
            t.ecr("DeleteRepository", json!({"repositoryName": "del/me"}))
                .await
        ),
        "RepositoryNotFoundException"
    );
    // Re-created repository starts empty.
    t.create_repo("del/me").await;
    assert_eq!(
        t.req("GET", "/v2/del/me/tags/list", &[], "").await.json()["tags"],
        json!([])
    );
}

#[tokio::test]
async fn get_authorization_token_logs_docker_in() {
    let t = TestRegistry::start().await;
    let v = t.ecr("GetAuthorizationToken", json!({})).await.unwrap();
    let data = &v["authorizationData"][0];
    assert_eq!(data["proxyEndpoint"], format!("http://{}", t.host()));
    let expires = data["expiresAt"].as_f64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((expires - now - 12.0 * 3600.0).abs() < 60.0);
    let token = data["authorizationToken"].as_str().unwrap();
    let decoded = String::from_utf8(STANDARD.decode(token).unwrap()).unwrap();
    // The AWS CLI splits on every ':'.
    let parts: Vec<&str> = decoded.split(':').collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], "AWS");
    let r = t
        .req_auth("GET", "/v2/", &[], "", Some(&format!("Basic {token}")))
        .await;
    assert_eq!(r.status, 200);
    // registryIds (deprecated, still sent by the ECS agent).
    let v = t
        .ecr("GetAuthorizationToken", json!({"registryIds": [ACCOUNT]}))
        .await
        .unwrap();
    assert_eq!(v["authorizationData"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pushed_images_show_up_in_describe_images_and_list_images() {
    let t = TestRegistry::start().await;
    t.create_repo("img/app").await;
    let (d1, _) = t.push_image("img/app", "v1", &[b"aaaa", b"bb"]).await;
    let r = t
        .req(
            "PUT",
            "/v2/img/app/manifests/latest",
            &[("content-type", OCI_MANIFEST)],
            t.req("GET", "/v2/img/app/manifests/v1", &[], "").await.body,
        )
        .await;
    assert_eq!(r.status, 201);
    let (d2, _) = t.push_image("img/app", "tmp", &[b"c"]).await;
    assert_eq!(
        t.req("DELETE", "/v2/img/app/manifests/tmp", &[], "")
            .await
            .status,
        202
    );

    let v = t
        .ecr("DescribeImages", json!({"repositoryName": "img/app"}))
        .await
        .unwrap();
    let details = v["imageDetails"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    let tagged = details
        .iter()
        .find(|d| d["imageDigest"] == d1.as_str())
        .unwrap();
    let mut tags: Vec<&str> = tagged["imageTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v1"]);
    assert!(tagged["imageSizeInBytes"].as_u64().unwrap() >= 6);
    assert!(tagged["imagePushedAt"].is_number());
    assert_eq!(tagged["imageManifestMediaType"], OCI_MANIFEST);
    assert_eq!(
        tagged["artifactMediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let untagged = details
        .iter()
        .find(|d| d["imageDigest"] == d2.as_str())
        .unwrap();
    assert!(untagged.get("imageTags").is_none());

    let v = t
        .ecr(
            "DescribeImages",
            json!({"repositoryName": "img/app", "imageIds": [{"imageTag": "latest"}]}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageDetails"][0]["imageDigest"], d1.as_str());
    assert_eq!(
        code(
            t.ecr(
                "DescribeImages",
                json!({"repositoryName": "img/app", "imageIds": [{"imageTag": "nope"}]})
            )
            .await
        ),
        "ImageNotFoundException"
    );
    let v = t
        .ecr(
            "DescribeImages",
            json!({"repositoryName": "img/app", "filter": {"tagStatus": "UNTAGGED"}}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageDetails"].as_array().unwrap().len(), 1);
    assert_eq!(
        code(
            t.ecr("DescribeImages", json!({"repositoryName": "img/none"}))
                .await
        ),
        "RepositoryNotFoundException"
    );

    let v = t
        .ecr("ListImages", json!({"repositoryName": "img/app"}))
        .await
        .unwrap();
    assert_eq!(v["imageIds"].as_array().unwrap().len(), 3, "{v}");
    let v = t
        .ecr(
            "ListImages",
            json!({"repositoryName": "img/app", "filter": {"tagStatus": "TAGGED"}}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageIds"].as_array().unwrap().len(), 2);
    let v = t
        .ecr(
            "ListImages",
            json!({"repositoryName": "img/app", "filter": {"tagStatus": "UNTAGGED"}}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageIds"], json!([{"imageDigest": d2}]));
    let p1 = t
        .ecr(
            "ListImages",
            json!({"repositoryName": "img/app", "maxResults": 2}),
        )
        .await
        .unwrap();
    assert_eq!(p1["imageIds"].as_array().unwrap().len(), 2);
    let p2 = t
        .ecr(
            "ListImages",
            json!({"repositoryName": "img/app", "maxResults": 2, "nextToken": p1["nextToken"]}),
        )
        .await
        .unwrap();
    assert_eq!(p2["imageIds"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn batch_get_image_and_put_image_retag() {
    let t = TestRegistry::start().await;
    t.create_repo("img/retag").await;
    let (d, body) = t.push_image("img/retag", "v1", &[b"x"]).await;
    let v = t.ecr("BatchGetImage", json!({"repositoryName": "img/retag", "imageIds": [{"imageTag": "v1"}, {"imageTag": "missing"}]})).await.unwrap();
    assert_eq!(v["images"][0]["imageManifest"], body.as_str());
    assert_eq!(v["images"][0]["imageId"]["imageDigest"], d.as_str());
    assert_eq!(v["images"][0]["imageManifestMediaType"], OCI_MANIFEST);
    assert_eq!(v["failures"][0]["failureCode"], "ImageNotFound");
    let v = t.ecr("BatchGetImage", json!({"repositoryName": "img/retag", "imageIds": [{"imageTag": "v1"}], "acceptedMediaTypes": [DOCKER_MANIFEST]})).await.unwrap();
    assert_eq!(v["images"], json!([]));

    // The CLI's retag: BatchGetImage then PutImage with a new tag.
    let v = t
        .ecr(
            "PutImage",
            json!({"repositoryName": "img/retag", "imageManifest": body, "imageTag": "v2"}),
        )
        .await
        .unwrap();
    assert_eq!(v["image"]["imageId"]["imageDigest"], d.as_str());
    assert_eq!(v["image"]["imageId"]["imageTag"], "v2");
    let r = t.req("GET", "/v2/img/retag/manifests/v2", &[], "").await;
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(
        code(
            t.ecr(
                "PutImage",
                json!({"repositoryName": "img/retag", "imageManifest": body, "imageTag": "v2"})
            )
            .await
        ),
        "ImageAlreadyExistsException"
    );
    assert_eq!(code(t.ecr("PutImage", json!({"repositoryName": "img/retag", "imageManifest": body, "imageDigest": sha256(b"no")})).await), "ImageDigestDoesNotMatchException");
    let missing = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": sha256(b"none"), "size": 1}, "layers": []}).to_string();
    assert_eq!(
        code(
            t.ecr(
                "PutImage",
                json!({"repositoryName": "img/retag", "imageManifest": missing, "imageTag": "v3"})
            )
            .await
        ),
        "LayersNotFoundException"
    );
    assert_eq!(
        code(
            t.ecr(
                "PutImage",
                json!({"repositoryName": "img/nope", "imageManifest": body, "imageTag": "v3"})
            )
            .await
        ),
        "RepositoryNotFoundException"
    );

    // Immutability on the PutImage path.
    t.ecr(
        "PutImageTagMutability",
        json!({"repositoryName": "img/retag", "imageTagMutability": "IMMUTABLE"}),
    )
    .await
    .unwrap();
    let (_, other) = t.push_image("img/retag", "other", &[b"y"]).await;
    assert_eq!(
        code(
            t.ecr(
                "PutImage",
                json!({"repositoryName": "img/retag", "imageManifest": other, "imageTag": "v1"})
            )
            .await
        ),
        "ImageTagAlreadyExistsException"
    );
    // Exclusions make matching tags mutable again.
    t.ecr(
        "PutImageTagMutability",
        json!({"repositoryName": "img/retag", "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "v*"}]}),
    )
    .await
    .unwrap();
    t.ecr(
        "PutImage",
        json!({"repositoryName": "img/retag", "imageManifest": other, "imageTag": "v1"}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn batch_delete_image_makes_the_pull_fail_with_manifest_unknown() {
    let t = TestRegistry::start().await;
    t.create_repo("img/del").await;
    let (d, body) = t.push_image("img/del", "v1", &[b"x"]).await;
    t.ecr(
        "PutImage",
        json!({"repositoryName": "img/del", "imageManifest": body, "imageTag": "v2"}),
    )
    .await
    .unwrap();
    // Removing one of two tags only untags.
    let v = t
        .ecr(
            "BatchDeleteImage",
            json!({"repositoryName": "img/del", "imageIds": [{"imageTag": "v2"}]}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageIds"], json!([{"imageDigest": d, "imageTag": "v2"}]));
    assert_eq!(
        t.req("GET", "/v2/img/del/manifests/v1", &[], "")
            .await
            .status,
        200
    );
    // Removing the last tag deletes the image.
    t.ecr(
        "BatchDeleteImage",
        json!({"repositoryName": "img/del", "imageIds": [{"imageTag": "v1"}]}),
    )
    .await
    .unwrap();
    let r = t.req("GET", "/v2/img/del/manifests/v1", &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    assert_eq!(
        t.req("GET", &format!("/v2/img/del/manifests/{d}"), &[], "")
            .await
            .status,
        404
    );
    let v = t
        .ecr(
            "BatchDeleteImage",
            json!({"repositoryName": "img/del", "imageIds": [{"imageDigest": d}, {}]}),
        )
        .await
        .unwrap();
    assert_eq!(v["failures"][0]["failureCode"], "ImageNotFound");
    assert_eq!(v["failures"][1]["failureCode"], "MissingDigestAndTag");
    // By digest, refused while an index references the image.
    let (child, cb) = t.push_image("img/del", "child", &[b"c"]).await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": cb.len()}]}).to_string();
    assert_eq!(
        t.req(
            "PUT",
            "/v2/img/del/manifests/idx",
            &[("content-type", OCI_INDEX)],
            index
        )
        .await
        .status,
        201
    );
    let v = t
        .ecr(
            "BatchDeleteImage",
            json!({"repositoryName": "img/del", "imageIds": [{"imageDigest": child}]}),
        )
        .await
        .unwrap();
    assert_eq!(
        v["failures"][0]["failureCode"],
        "ImageReferencedByManifestList"
    );
}

#[tokio::test]
async fn repository_policies_and_resource_tags() {
    let t = TestRegistry::start().await;
    t.create_repo("pol/repo").await;
    assert_eq!(
        code(
            t.ecr("GetRepositoryPolicy", json!({"repositoryName": "pol/repo"}))
                .await
        ),
        "RepositoryPolicyNotFoundException"
    );
    assert_eq!(
        code(
            t.ecr(
                "SetRepositoryPolicy",
                json!({"repositoryName": "pol/repo", "policyText": "{nope"})
            )
            .await
        ),
        "InvalidParameterException"
    );
    let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]}).to_string();
    let v = t
        .ecr(
            "SetRepositoryPolicy",
            json!({"repositoryName": "pol/repo", "policyText": policy}),
        )
        .await
        .unwrap();
    assert_eq!(v["policyText"], policy.as_str());
    let v = t
        .ecr("GetRepositoryPolicy", json!({"repositoryName": "pol/repo"}))
        .await
        .unwrap();
    assert_eq!(v["policyText"], policy.as_str());
    assert_eq!(v["registryId"], ACCOUNT);
    t.ecr(
        "DeleteRepositoryPolicy",
        json!({"repositoryName": "pol/repo"}),
    )
    .await
    .unwrap();
    assert_eq!(
        code(
            t.ecr(
                "DeleteRepositoryPolicy",
                json!({"repositoryName": "pol/repo"})
            )
            .await
        ),
        "RepositoryPolicyNotFoundException"
    );

    let arn = format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/pol/repo");
    t.ecr("TagResource", json!({"resourceArn": arn, "tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]})).await.unwrap();
    t.ecr(
        "UntagResource",
        json!({"resourceArn": arn, "tagKeys": ["a"]}),
    )
    .await
    .unwrap();
    let v = t
        .ecr("ListTagsForResource", json!({"resourceArn": arn}))
        .await
        .unwrap();
    assert_eq!(v["tags"], json!([{"Key": "b", "Value": "2"}]));
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
        .collect();
    assert_eq!(
        code(
            t.ecr("TagResource", json!({"resourceArn": arn, "tags": many}))
                .await
        ),
        "TooManyTagsException"
    );
    assert_eq!(
        code(
            t.ecr(
                "ListTagsForResource",
                json!({"resourceArn": "arn:aws:s3:::bucket"})
            )
            .await
        ),
        "InvalidParameterException"
    );
    assert_eq!(
        code(
            t.ecr(
                "ListTagsForResource",
                json!({"resourceArn": format!("arn:aws:ecr:us-east-1:{ACCOUNT}:repository/none/x")})
            )
            .await
        ),
        "RepositoryNotFoundException"
    );
}

#[tokio::test]
async fn layer_upload_api_pushes_a_pullable_image() {
    let t = TestRegistry::start().await;
    t.create_repo("layer/api").await;
    let layer = random_bytes(150_000);
    let ld = sha256(&layer);
    let v = t
        .ecr(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "layer/api", "layerDigests": [ld, "bogus"]}),
        )
        .await
        .unwrap();
    assert_eq!(v["failures"][0]["failureCode"], "MissingLayerDigest");
    assert_eq!(v["failures"][1]["failureCode"], "InvalidLayerDigest");
    let v = t
        .ecr(
            "InitiateLayerUpload",
            json!({"repositoryName": "layer/api"}),
        )
        .await
        .unwrap();
    let id = v["uploadId"].as_str().unwrap().to_owned();
    assert!(v["partSize"].as_u64().unwrap() > 0);
    assert_eq!(
        code(
            t.ecr(
                "CompleteLayerUpload",
                json!({"repositoryName": "layer/api", "uploadId": id, "layerDigests": [ld]})
            )
            .await
        ),
        "EmptyUploadException"
    );
    let part = |a: usize, b: usize| json!({"repositoryName": "layer/api", "uploadId": id, "partFirstByte": a, "partLastByte": b - 1, "layerPartBlob": STANDARD.encode(&layer[a..b])});
    let v = t.ecr("UploadLayerPart", part(0, 100_000)).await.unwrap();
    assert_eq!(v["lastByteReceived"], 99_999);
    assert_eq!(
        code(t.ecr("UploadLayerPart", part(0, 100_000)).await),
        "InvalidLayerPartException"
    );
    t.ecr("UploadLayerPart", part(100_000, 150_000))
        .await
        .unwrap();
    let v = t
        .ecr(
            "CompleteLayerUpload",
            json!({"repositoryName": "layer/api", "uploadId": id, "layerDigests": [ld]}),
        )
        .await
        .unwrap();
    assert_eq!(v["layerDigest"], ld.as_str());
    let v = t
        .ecr(
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "layer/api", "layerDigests": [ld]}),
        )
        .await
        .unwrap();
    assert_eq!(v["layers"][0]["layerAvailability"], "AVAILABLE");
    assert_eq!(v["layers"][0]["layerSize"], 150_000);
    let v = t
        .ecr(
            "GetDownloadUrlForLayer",
            json!({"repositoryName": "layer/api", "layerDigest": ld}),
        )
        .await
        .unwrap();
    // Presigned, as ECR's S3 URLs are: no registry credentials needed, and only for this blob.
    let url = v["downloadUrl"].as_str().unwrap();
    let r = t.req_auth("GET", url, &[], "", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(sha256(&r.body), ld);
    let r = t.req_auth("HEAD", url, &[], "", None).await;
    assert_eq!(r.status, 200);
    let other = sha256(b"another blob");
    t.req(
        "POST",
        &format!("/v2/layer/api/blobs/uploads/?digest={other}"),
        &[],
        &b"another blob"[..],
    )
    .await;
    for bad in [
        url.replace(&ld, &other),
        url.replace("/layer/api/", "/layer/apx/"),
        url.replace("X-Gantry-Expires=", "X-Gantry-Expires=9"),
        format!("{}A", url),
    ] {
        let r = t.req_auth("GET", &bad, &[], "", None).await;
        assert_eq!(r.status, 403, "{bad}");
        assert!(String::from_utf8_lossy(&r.body).contains("DENIED"), "{bad}");
    }
    let r = t
        .req_auth("GET", url.split('?').next().unwrap(), &[], "", None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        code(
            t.ecr(
                "GetDownloadUrlForLayer",
                json!({"repositoryName": "layer/api", "layerDigest": sha256(b"q")})
            )
            .await
        ),
        "LayersNotFoundException"
    );
    // Wrong digest on completion.
    let v = t
        .ecr(
            "InitiateLayerUpload",
            json!({"repositoryName": "layer/api"}),
        )
        .await
        .unwrap();
    let id2 = v["uploadId"].as_str().unwrap();
    t.ecr("UploadLayerPart", json!({"repositoryName": "layer/api", "uploadId": id2, "partFirstByte": 0, "partLastByte": 2, "layerPartBlob": STANDARD.encode(b"abc")})).await.unwrap();
    assert_eq!(code(t.ecr("CompleteLayerUpload", json!({"repositoryName": "layer/api", "uploadId": id2, "layerDigests": [sha256(b"xyz")]})).await), "InvalidLayerException");
    assert_eq!(code(t.ecr("UploadLayerPart", json!({"repositoryName": "layer/api", "uploadId": id2, "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "YQ=="})).await), "UploadNotFoundException");
    assert_eq!(
        code(
            t.ecr(
                "InitiateLayerUpload",
                json!({"repositoryName": "layer/none"})
            )
            .await
        ),
        "RepositoryNotFoundException"
    );
}

#[tokio::test]
async fn unimplemented_operations_answer_a_proper_error() {
    let t = TestRegistry::start().await;
    for op in gantry_ecr::ECR_MODEL_OPERATIONS {
        if gantry_ecr::ECR_IMPLEMENTED_OPERATIONS.contains(op) {
            continue;
        }
        let e = t.ecr(op, json!({})).await.unwrap_err();
        assert_eq!(e.code, "ValidationException", "{op}");
        assert!(e.message.contains(op));
        assert_eq!(e.status.as_u16(), 400);
    }
    assert_eq!(
        code(t.ecr("NoSuchThing", json!({})).await),
        "UnknownOperationException"
    );
}

#[tokio::test]
async fn the_maintenance_pass_applies_lifecycle_policies() {
    let t = TestRegistry::start().await;
    t.create_repo("sched").await;
    for i in 0..4 {
        t.push_image("sched", &format!("release-{i}"), &[b"layer".as_slice()])
            .await;
    }
    t.push_image("sched", "keep-me", &[b"layer".as_slice()])
        .await;
    let policy = json!({"rules": [{"rulePriority": 1,
        "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"],
                      "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]})
    .to_string();
    t.ecr(
        "PutLifecyclePolicy",
        json!({"repositoryName": "sched", "lifecyclePolicyText": policy}),
    )
    .await
    .unwrap();
    // Putting a policy expires nothing by itself; the scheduled pass does.
    let listed = t
        .ecr("ListImages", json!({"repositoryName": "sched"}))
        .await
        .unwrap();
    assert_eq!(listed["imageIds"].as_array().unwrap().len(), 5);
    let report = t.reg.maintenance_pass().await.unwrap();
    assert_eq!(report.images_expired, 3);
    let listed = t
        .ecr("ListImages", json!({"repositoryName": "sched"}))
        .await
        .unwrap();
    let mut tags: Vec<&str> = listed["imageIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["imageTag"].as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, vec!["keep-me", "release-3"]);
    let r = t
        .req(
            "GET",
            "/v2/sched/manifests/release-0",
            &[],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 404);
    let got = t
        .ecr("GetLifecyclePolicy", json!({"repositoryName": "sched"}))
        .await
        .unwrap();
    assert!(got["lastEvaluatedAt"].is_number());
    // A deleted repository takes its policy with it.
    t.ecr(
        "DeleteRepository",
        json!({"repositoryName": "sched", "force": true}),
    )
    .await
    .unwrap();
    t.create_repo("sched").await;
    assert_eq!(
        code(
            t.ecr("GetLifecyclePolicy", json!({"repositoryName": "sched"}))
                .await
        ),
        "LifecyclePolicyNotFoundException"
    );
}
