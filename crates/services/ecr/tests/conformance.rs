//! The OCI distribution-spec conformance checks (distribution-spec `conformance/`), one test per
//! upstream check, grouped by the four workflows: pull, push, content discovery, content
//! management. Test names are the upstream check names in snake case.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::json;

const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

async fn setup() -> TestRegistry {
    let t = TestRegistry::start().await;
    t.create_repo("conformance/repo").await;
    t.create_repo("conformance/other").await;
    t
}

const REPO: &str = "conformance/repo";

// ---------------------------------------------------------------------------------------------
// Setup / base
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_v2_base_should_yield_200_and_api_version_header() {
    let t = setup().await;
    let r = t.req("GET", "/v2/", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[tokio::test]
async fn get_v2_base_without_credentials_should_yield_401_with_basic_challenge() {
    let t = setup().await;
    let r = t.req_auth("GET", "/v2/", &[], "", None).await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert!(challenge.contains("service=\"ecr.amazonaws.com\""));
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    let bad = t
        .req_auth("GET", "/v2/", &[], "", Some("Basic QVdTOm5vcGU="))
        .await;
    assert_eq!(bad.status, 401);
    // The access key pair works too.
    use base64::Engine as _;
    let keys = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCESS_KEY}:{SECRET_KEY}"))
    );
    assert_eq!(
        t.req_auth("GET", "/v2/", &[], "", Some(&keys)).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Pull
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pull_head_request_to_nonexistent_blob_should_result_in_404_response() {
    let t = setup().await;
    let r = t
        .req(
            "HEAD",
            &format!("/v2/{REPO}/blobs/{}", sha256(b"nope")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn pull_head_request_to_existing_blob_should_yield_200() {
    let t = setup().await;
    let d = t.push_blob(REPO, b"hello blob").await;
    let r = t
        .req("HEAD", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn pull_get_nonexistent_blob_should_result_in_404_response() {
    let t = setup().await;
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/blobs/{}", sha256(b"nope")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn pull_get_request_to_existing_blob_url_should_yield_200() {
    let t = setup().await;
    let data = random_bytes(3 << 20);
    let d = t.push_blob(REPO, &data).await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &data[..]);
    assert_eq!(sha256(&r.body), d);
}

#[tokio::test]
async fn pull_get_request_with_range_should_yield_206() {
    let t = setup().await;
    let data = random_bytes(100_000);
    let d = t.push_blob(REPO, &data).await;
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/blobs/{d}"),
            &[("range", "bytes=10-19")],
            "",
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100000"));
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/blobs/{d}"),
            &[("range", "bytes=99990-")],
            "",
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &data[99990..]);
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/blobs/{d}"),
            &[("range", "bytes=200000-")],
            "",
        )
        .await;
    assert_eq!(r.status, 416);
}

#[tokio::test]
async fn pull_get_nonexistent_manifest_should_return_404() {
    let t = setup().await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/manifests/nonexistent"), &[], "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/manifests/{}", sha256(b"x")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn pull_get_request_to_manifest_path_digest_should_yield_200_response() {
    let t = setup().await;
    let (d, body) = t.push_image(REPO, "v1", &[b"layer-a"]).await;
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/manifests/{d}"),
            &[("accept", OCI_MANIFEST)],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], body.as_bytes(), "byte-exact");
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(sha256(&r.body), d);
}

#[tokio::test]
async fn pull_get_request_to_manifest_path_tag_should_yield_200_response() {
    let t = setup().await;
    let (d, body) = t.push_image(REPO, "tagtest0", &[b"layer-a"]).await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/manifests/tagtest0"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], body.as_bytes());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let h = t
        .req("HEAD", &format!("/v2/{REPO}/manifests/tagtest0"), &[], "")
        .await;
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(h.body.is_empty());
}

#[tokio::test]
async fn pull_400_response_body_should_contain_oci_conforming_json() {
    let t = setup().await;
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/v1"),
            &[("content-type", OCI_MANIFEST)],
            "{not json",
        )
        .await;
    assert_eq!(r.status, 400);
    let v = r.json();
    let e = &v["errors"][0];
    assert_eq!(e["code"], "MANIFEST_INVALID");
    assert!(e["message"].is_string());
}

// ---------------------------------------------------------------------------------------------
// Push
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn push_post_request_with_digest_and_blob_should_yield_a_201() {
    let t = setup().await;
    let data = b"monolithic";
    let d = sha256(data);
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
            &[],
            &data[..],
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{REPO}/blobs/{d}").as_str())
    );
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .body,
        &data[..]
    );
}

#[tokio::test]
async fn push_post_request_should_yield_a_session_id_then_put_should_yield_201() {
    let t = setup().await;
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with(&format!("/v2/{REPO}/blobs/uploads/")));
    let data = random_bytes(70_000);
    let d = sha256(&data);
    let r = t
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-type", "application/octet-stream")],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .body,
        data
    );
}

#[tokio::test]
async fn push_streamed_patch_then_put_without_body_should_yield_201() {
    let t = setup().await;
    let loc = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = loc.header("location").unwrap().to_owned();
    let data = random_bytes(1 << 20);
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("content-type", "application/octet-stream")],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", data.len() - 1).as_str())
    );
    let d = sha256(&data);
    let r = t
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-length", "0")],
            "",
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn push_chunked_upload_checks() {
    // Upstream: "PATCH request with first chunk should return 202", "Retry previous blob chunk
    // should return 416", "Get on stale blob upload should return 204 with a range and location",
    // "PATCH request with second chunk should return 202", "PUT request with final chunk should
    // return 201".
    let t = setup().await;
    let data = random_bytes(30_000);
    let (a, b, c) = (&data[..10_000], &data[10_000..20_000], &data[20_000..]);
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = r.header("location").unwrap().to_owned();

    let r = t
        .req(
            "PATCH",
            &loc,
            &[
                ("content-range", "0-9999"),
                ("content-type", "application/octet-stream"),
            ],
            a.to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "first chunk");
    assert_eq!(r.header("range"), Some("0-9999"));
    let loc = r.header("location").unwrap().to_owned();

    let r = t
        .req("PATCH", &loc, &[("content-range", "0-9999")], a.to_vec())
        .await;
    assert_eq!(r.status, 416, "retry previous chunk");
    assert_eq!(r.header("range"), Some("0-9999"));

    let r = t.req("GET", &loc, &[], "").await;
    assert_eq!(r.status, 204, "stale upload status");
    assert_eq!(r.header("range"), Some("0-9999"));
    assert!(r.header("location").is_some());

    let r = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "10000-19999")],
            b.to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "second chunk");

    let d = sha256(&data);
    let r = t
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "20000-29999")],
            c.to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "final chunk: {:?}", r.body);
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .body,
        data
    );
}

#[tokio::test]
async fn push_delete_upload_session_should_cancel_it() {
    let t = setup().await;
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = r.header("location").unwrap().to_owned();
    assert_eq!(t.req("DELETE", &loc, &[], "").await.status, 204);
    let r = t.req("GET", &loc, &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn push_post_request_to_mount_another_repositorys_blob_should_return_201_or_202() {
    let t = setup().await;
    let d = t.push_blob("conformance/other", b"mount me").await;
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .status,
        404
    );
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?mount={d}&from=conformance/other"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{REPO}/blobs/{d}").as_str())
    );
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .status,
        200
    );
    // Unknown source blob: falls back to a new upload session.
    let r = t
        .req(
            "POST",
            &format!(
                "/v2/{REPO}/blobs/uploads/?mount={}&from=conformance/other",
                sha256(b"z")
            ),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn push_to_a_repository_that_does_not_exist_should_fail_with_name_unknown() {
    let t = setup().await;
    let r = t
        .req("POST", "/v2/never/created/blobs/uploads/", &[], "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    let r = t
        .req(
            "PUT",
            "/v2/never/created/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            "{}",
        )
        .await;
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn push_registry_should_accept_a_manifest_upload_with_no_layers() {
    let t = setup().await;
    let cfg = b"{}";
    let cd = t.push_blob(REPO, cfg).await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.test",
        "config": {"mediaType": EMPTY_CONFIG, "digest": cd, "size": 2}, "layers": []})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/nolayers"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn push_put_should_accept_a_manifest_upload_by_digest_and_reject_a_wrong_digest() {
    let t = setup().await;
    let cd = t.push_blob(REPO, b"{\"a\":1}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 7}, "layers": []})
    .to_string();
    let d = sha256(m.as_bytes());
    let wrong = sha256(b"other");
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/{wrong}"),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/{d}"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/{REPO}/manifests/{d}").as_str())
    );
}

#[tokio::test]
async fn push_manifest_referencing_unknown_blobs_should_fail_with_manifest_blob_unknown() {
    let t = setup().await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"missing"), "size": 7}, "layers": []})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/v1"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn push_all_four_manifest_media_types_are_stored_byte_exact() {
    let t = setup().await;
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = t.push_blob(REPO, cfg).await;
    let ld = t.push_blob(REPO, b"layer").await;
    // Docker schema 2, with unusual whitespace to check byte-exactness.
    let docker = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{DOCKER_MANIFEST}\",\n   \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"size\": {}, \"digest\": \"{cd}\"}},\n   \"layers\": [{{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"size\": 5, \"digest\": \"{ld}\"}}]\n}}",
        cfg.len()
    );
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/docker"),
            &[("content-type", DOCKER_MANIFEST)],
            docker.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let docker_digest = r.header("docker-content-digest").unwrap().to_owned();
    let (oci_digest, _) = t.push_image(REPO, "oci", &[b"layer"]).await;
    let list = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": docker_digest, "size": docker.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/list"),
            &[(
                "content-type",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            )],
            list.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": oci_digest, "size": 1}]})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/index"),
            &[("content-type", OCI_INDEX)],
            index.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // An index with an unknown child is refused.
    let bad = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 1}]})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/bad"),
            &[("content-type", OCI_INDEX)],
            bad,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
    for (tag, body, mt) in [
        ("docker", &docker, DOCKER_MANIFEST),
        (
            "list",
            &list,
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
        ("index", &index, OCI_INDEX),
    ] {
        let r = t
            .req("GET", &format!("/v2/{REPO}/manifests/{tag}"), &[], "")
            .await;
        assert_eq!(&r.body[..], body.as_bytes(), "{tag}");
        assert_eq!(r.header("content-type"), Some(mt));
    }
}

#[tokio::test]
async fn push_sha512_blob_and_manifest_digests_are_supported() {
    let t = setup().await;
    let data = b"sha512 content";
    let d = gantry_ecr::Algorithm::Sha512.digest(data).to_string();
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={d}"),
            &[],
            &data[..],
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
            .await
            .body,
        &data[..]
    );
    let cd = t.push_blob(REPO, b"{}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": EMPTY_CONFIG, "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": d, "size": data.len()}]}).to_string();
    let md = gantry_ecr::Algorithm::Sha512
        .digest(m.as_bytes())
        .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/{md}"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
}

#[tokio::test]
async fn push_registry_should_accept_a_manifest_with_a_subject_and_return_oci_subject() {
    let t = setup().await;
    let (subject, subject_body) = t.push_image(REPO, "subject", &[b"s"]).await;
    let cd = t.push_blob(REPO, b"{}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": EMPTY_CONFIG, "digest": cd, "size": 2}, "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_body.len()},
        "annotations": {"org.example": "x"}})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/{}", sha256(m.as_bytes())),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
}

// ---------------------------------------------------------------------------------------------
// Content discovery
// ---------------------------------------------------------------------------------------------

async fn with_tags(t: &TestRegistry, tags: &[&str]) {
    let (d, body) = t.push_image(REPO, tags[0], &[b"tags"]).await;
    let _ = d;
    for tag in &tags[1..] {
        let r = t
            .req(
                "PUT",
                &format!("/v2/{REPO}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 201);
    }
}

#[tokio::test]
async fn content_discovery_get_request_to_list_tags_should_yield_200_response() {
    let t = setup().await;
    with_tags(&t, &["c", "a", "b", "d"]).await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/tags/list"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"name": REPO, "tags": ["a", "b", "c", "d"]})
    );
    let r = t
        .req("GET", "/v2/conformance/other/tags/list", &[], "")
        .await;
    assert_eq!(r.json()["tags"], json!([]));
    let r = t
        .req("GET", "/v2/conformance/none/tags/list", &[], "")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn content_discovery_get_number_of_tags_should_be_limited_by_n_query_parameter() {
    let t = setup().await;
    with_tags(&t, &["t1", "t2", "t3", "t4"]).await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/tags/list?n=2"), &[], "")
        .await;
    assert_eq!(r.json()["tags"], json!(["t1", "t2"]));
    let link = r.header("link").unwrap();
    assert!(
        link.contains("last=t2") && link.contains("rel=\"next\""),
        "{link}"
    );
    let r = t
        .req("GET", &format!("/v2/{REPO}/tags/list?n=10"), &[], "")
        .await;
    assert_eq!(r.json()["tags"], json!(["t1", "t2", "t3", "t4"]));
    assert!(r.header("link").is_none());
}

#[tokio::test]
async fn content_discovery_get_start_of_tag_is_set_by_last_query_parameter() {
    let t = setup().await;
    with_tags(&t, &["t1", "t2", "t3", "t4"]).await;
    let r = t
        .req("GET", &format!("/v2/{REPO}/tags/list?n=2&last=t2"), &[], "")
        .await;
    assert_eq!(r.json()["tags"], json!(["t3", "t4"]));
}

#[tokio::test]
async fn content_discovery_get_request_to_list_of_referrers_should_yield_200_response() {
    let t = setup().await;
    let (subject, body) = t.push_image(REPO, "subject", &[b"s"]).await;
    let cd = t.push_blob(REPO, b"{}").await;
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": EMPTY_CONFIG, "digest": cd, "size": 2}, "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": body.len()},
            "annotations": {"n": i.to_string()}})
        .to_string();
        let r = t
            .req(
                "PUT",
                &format!("/v2/{REPO}/manifests/{}", sha256(m.as_bytes())),
                &[("content-type", OCI_MANIFEST)],
                m,
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let r = t
        .req("GET", &format!("/v2/{REPO}/referrers/{subject}"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let v = r.json();
    assert_eq!(v["mediaType"], OCI_INDEX);
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    assert!(v["manifests"][0]["annotations"].is_object());
    // Filtered by artifactType.
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/referrers/{subject}?artifactType=application/vnd.example.sig"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let v = r.json();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    // A subject with no referrers: an empty index.
    let r = t
        .req(
            "GET",
            &format!("/v2/{REPO}/referrers/{}", sha256(b"none")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Content management
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn content_management_delete_request_to_manifest_tag_should_return_202() {
    let t = setup().await;
    let (d, _) = t.push_image(REPO, "deltag", &[b"x"]).await;
    let r = t
        .req("DELETE", &format!("/v2/{REPO}/manifests/deltag"), &[], "")
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/deltag"), &[], "")
            .await
            .status,
        404
    );
    // The manifest itself stays.
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/{d}"), &[], "")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn content_management_delete_request_to_manifest_digest_should_yield_202_response() {
    let t = setup().await;
    let (d, _) = t.push_image(REPO, "delme", &[b"x"]).await;
    let r = t
        .req("DELETE", &format!("/v2/{REPO}/manifests/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 202);
    // "GET request to deleted manifest URL should yield 404 response"
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/{d}"), &[], "")
            .await
            .status,
        404
    );
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/delme"), &[], "")
            .await
            .status,
        404
    );
    let r = t
        .req("DELETE", &format!("/v2/{REPO}/manifests/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 404, "already deleted");
}

#[tokio::test]
async fn content_management_delete_request_to_blob_url_should_yield_202_response() {
    let t = setup().await;
    let d = t.push_blob(REPO, b"delete blob").await;
    let r = t
        .req("DELETE", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 202);
    // "GET request to deleted blob URL should yield 404 response"
    let r = t
        .req("GET", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn content_management_tag_immutability_is_enforced_on_manifest_put() {
    let t = setup().await;
    t.ecr(
        "PutImageTagMutability",
        json!({"repositoryName": REPO, "imageTagMutability": "IMMUTABLE"}),
    )
    .await
    .unwrap();
    let (_, body) = t.push_image(REPO, "fixed", &[b"one"]).await;
    // Same manifest again: fine.
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/fixed"),
            &[("content-type", OCI_MANIFEST)],
            body,
        )
        .await;
    assert_eq!(r.status, 201);
    // Another manifest under the same tag: refused.
    let cd = t.push_blob(REPO, b"{\"x\":2}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 7}, "layers": []}).to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/fixed"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "TAG_INVALID");
}
