//! Fault tests (reliability matrix R2-R5, R9): dropped connections mid-upload, wrong digests,
//! restarts with open sessions, garbage collection racing pushes, abandoned sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gantry_ecr::RegistryOptions;
use rand::Rng;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const REPO: &str = "faults/repo";

/// Sends a PATCH declaring `data.len()` bytes but writes only the first `cut`, then drops the
/// connection.
async fn patch_and_drop(t: &TestRegistry, loc: &str, start: u64, data: &[u8], cut: usize) {
    let mut s = tokio::net::TcpStream::connect(t.addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Range: {}-{}\r\nContent-Length: {}\r\n\r\n",
        t.addr,
        t.auth,
        start,
        start + data.len() as u64 - 1,
        data.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(&data[..cut]).await.expect("write body");
    s.flush().await.expect("flush");
    drop(s);
}

/// Polls the session until its Range reports `want` bytes.
async fn wait_for_offset(t: &TestRegistry, loc: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = t.req("GET", loc, &[], "").await;
        assert_eq!(r.status, 204, "session status: {:?}", r.body);
        assert!(r.header("location").is_some());
        let range = r.header("range").unwrap_or("").to_owned();
        let expect = format!("0-{}", want.saturating_sub(1));
        if range == expect {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "session range stuck at {range}, want {expect}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn dropped_connections_mid_patch_leave_no_partial_blob_and_the_upload_resumes() {
    const N: usize = 50;
    let t = TestRegistry::start().await;
    t.create_repo(REPO).await;
    let data = random_bytes(4 << 20);
    let digest = sha256(&data);
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = r.header("location").unwrap().to_owned();
    let mut offset = 0usize;
    let mut rng = rand::rng();
    for _ in 0..N {
        let rest = &data[offset..];
        // Leave room so that every drop makes progress and the upload is never complete.
        let cut = rng.random_range(1..=(rest.len() / 8).max(1));
        patch_and_drop(&t, &loc, offset as u64, rest, cut).await;
        offset += cut;
        wait_for_offset(&t, &loc, offset as u64).await;
        let head = t
            .req("HEAD", &format!("/v2/{REPO}/blobs/{digest}"), &[], "")
            .await;
        assert_eq!(head.status, 404, "no partial blob may be visible");
        assert!(
            t.reg.blob_store().list().await.unwrap().is_empty(),
            "nothing under blobs/"
        );
    }
    // Resume: the rest in one chunk, then the final PUT.
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", &format!("{}-{}", offset, data.len() - 1))],
            data[offset..].to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = t
        .req("PUT", &format!("{loc}?digest={digest}"), &[], "")
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let got = t
        .req("GET", &format!("/v2/{REPO}/blobs/{digest}"), &[], "")
        .await;
    assert_eq!(sha256(&got.body), digest);
}

#[tokio::test]
async fn wrong_digest_gives_digest_invalid_and_stores_nothing() {
    let t = TestRegistry::start().await;
    t.create_repo(REPO).await;
    let data = random_bytes(100_000);
    let wrong = sha256(b"something else");
    // Monolithic.
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    // Session + PUT.
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = r.header("location").unwrap().to_owned();
    let r = t
        .req("PUT", &format!("{loc}?digest={wrong}"), &[], data.clone())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    for d in [wrong, sha256(&data)] {
        assert_eq!(
            t.req("HEAD", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
                .await
                .status,
            404
        );
    }
    assert!(t.reg.blob_store().list().await.unwrap().is_empty());
    assert!(
        t.reg.blob_store().upload_list().await.unwrap().is_empty(),
        "sessions removed"
    );
    // A malformed digest is DIGEST_INVALID too.
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest=sha256:xyz"),
            &[],
            "x",
        )
        .await;
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn upload_sessions_and_blobs_survive_a_restart() {
    let t = TestRegistry::start().await;
    t.create_repo(REPO).await;
    let data = random_bytes(600_000);
    let digest = sha256(&data);
    let kept = t.push_blob(REPO, b"kept across restart").await;
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let loc = r.header("location").unwrap().to_owned();
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-299999")],
            data[..300_000].to_vec(),
        )
        .await;
    assert_eq!(r.status, 202);
    let (dir, store) = t.stop();
    let t = TestRegistry::start_on(dir, store, RegistryOptions::default()).await;
    let r = t.req("GET", &loc, &[], "").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-299999"));
    let r = t
        .req(
            "PUT",
            &format!("{loc}?digest={digest}"),
            &[("content-range", "300000-599999")],
            data[300_000..].to_vec(),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        sha256(
            &t.req("GET", &format!("/v2/{REPO}/blobs/{digest}"), &[], "")
                .await
                .body
        ),
        digest
    );
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/blobs/{kept}"), &[], "")
            .await
            .status,
        200
    );
    // Tokens minted before the restart still work (same secret): `t.auth` was minted by the
    // first instance's signer with the same secret, and requests above succeeded.
}

#[tokio::test]
async fn concurrent_pushes_of_the_same_layer_store_one_blob() {
    let t = Arc::new(TestRegistry::start().await);
    t.create_repo(REPO).await;
    t.create_repo("faults/other").await;
    let data = Arc::new(random_bytes(500_000));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (t, data) = (t.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let repo = if i % 2 == 0 { REPO } else { "faults/other" };
            t.push_blob(repo, &data).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let blobs = t.reg.blob_store().list().await.unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].1.size, 500_000);
}

#[tokio::test]
async fn garbage_collection_while_clients_push_breaks_no_pushed_image() {
    let opts = RegistryOptions {
        gc_grace: Duration::from_secs(3),
        maintenance_interval: Duration::from_millis(20),
        ..RegistryOptions::default()
    };
    let t = Arc::new(TestRegistry::start_with(opts).await);
    t.create_repo(REPO).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gc = tokio::spawn(t.reg.clone().run_maintenance(stop_rx));
    let shared = Arc::new(random_bytes(64 * 1024));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (t, shared) = (t.clone(), shared.clone());
        clients.push(tokio::spawn(async move {
            let mut pushed = Vec::new();
            for i in 0..10 {
                let own = random_bytes(32 * 1024 + i);
                let tag = format!("c{c}-{i}");
                let (d, _) = t.push_image(REPO, &tag, &[&shared, &own]).await;
                pushed.push((tag, d));
            }
            pushed
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    // Orphans: a blob nothing uses, and an image that gets deleted.
    let orphan = t.push_blob(REPO, b"orphan blob").await;
    let (gone, _) = t
        .push_image(REPO, "gone", &[b"only in the deleted image"])
        .await;
    assert_eq!(
        t.req("DELETE", &format!("/v2/{REPO}/manifests/{gone}"), &[], "")
            .await
            .status,
        202
    );
    // Every acknowledged tag is pullable with all blobs intact.
    for (tag, d) in &all {
        let m = t
            .req("GET", &format!("/v2/{REPO}/manifests/{tag}"), &[], "")
            .await;
        assert_eq!(m.status, 200, "{tag}");
        assert_eq!(&sha256(&m.body), d);
        let v = m.json();
        let mut descs = vec![v["config"].clone()];
        descs.extend(v["layers"].as_array().unwrap().iter().cloned());
        for desc in descs {
            let bd = desc["digest"].as_str().unwrap();
            let b = t
                .req("GET", &format!("/v2/{REPO}/blobs/{bd}"), &[], "")
                .await;
            assert_eq!(b.status, 200, "{tag} blob {bd}");
            assert_eq!(sha256(&b.body), bd);
        }
    }
    // After the grace period the orphans are collected, the images are not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Vec<String> = t
            .reg
            .blob_store()
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(d, _)| d.to_string())
            .collect();
        if !listed.contains(&orphan) && !listed.contains(&sha256(b"only in the deleted image")) {
            break;
        }
        assert!(Instant::now() < deadline, "orphans never collected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (tag, _) in &all {
        let m = t
            .req("GET", &format!("/v2/{REPO}/manifests/{tag}"), &[], "")
            .await;
        for l in m.json()["layers"].as_array().unwrap() {
            let bd = l["digest"].as_str().unwrap();
            assert_eq!(
                t.req("HEAD", &format!("/v2/{REPO}/blobs/{bd}"), &[], "")
                    .await
                    .status,
                200
            );
        }
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), gc)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn garbage_collection_keeps_index_children_and_referrers() {
    let opts = RegistryOptions {
        gc_grace: Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo(REPO).await;
    let (child, child_body) = t.push_image(REPO, "tmp", &[b"child layer"]).await;
    // Untag the child: only the index keeps it.
    assert_eq!(
        t.req("DELETE", &format!("/v2/{REPO}/manifests/tmp"), &[], "")
            .await
            .status,
        202
    );
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": child_body.len()}]})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/multi"),
            &[("content-type", OCI_INDEX)],
            index,
        )
        .await;
    assert_eq!(r.status, 201);
    let cd = t.push_blob(REPO, b"{}").await;
    let sig_layer = t.push_blob(REPO, b"signature").await;
    let sig = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig_layer, "size": 9}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": child, "size": child_body.len()}})
    .to_string();
    let r = t
        .req(
            "PUT",
            &format!("/v2/{REPO}/manifests/{}", sha256(sig.as_bytes())),
            &[("content-type", OCI_MANIFEST)],
            sig,
        )
        .await;
    assert_eq!(r.status, 201);
    let orphan = t.push_blob(REPO, b"nobody uses me").await;
    let report = t.reg.maintenance_pass().await.unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{orphan}"), &[], "")
            .await
            .status,
        404
    );
    for d in [sha256(b"child layer"), sig_layer, cd] {
        assert_eq!(
            t.req("HEAD", &format!("/v2/{REPO}/blobs/{d}"), &[], "")
                .await
                .status,
            200,
            "{d}"
        );
    }
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/{child}"), &[], "")
            .await
            .status,
        200
    );
    let refs = t
        .req("GET", &format!("/v2/{REPO}/referrers/{child}"), &[], "")
        .await;
    assert_eq!(refs.json()["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn abandoned_upload_sessions_are_purged_after_the_ttl() {
    let opts = RegistryOptions {
        upload_ttl: Duration::from_millis(300),
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo(REPO).await;
    let stale = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let stale = stale.header("location").unwrap().to_owned();
    let r = t.req("PATCH", &stale, &[], random_bytes(10_000)).await;
    assert_eq!(r.status, 202);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let active = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let active = active.header("location").unwrap().to_owned();
    let report = t.reg.maintenance_pass().await.unwrap();
    assert_eq!(report.uploads_purged, 1);
    assert_eq!(t.req("GET", &stale, &[], "").await.status, 404);
    assert_eq!(t.req("GET", &active, &[], "").await.status, 204);
}

#[tokio::test]
async fn a_crash_between_blob_commit_and_link_leaves_nothing_visible_and_the_push_can_be_retried() {
    let opts = RegistryOptions {
        gc_grace: Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo(REPO).await;
    let data = random_bytes(200_000);
    let digest: gantry_ecr::Digest = sha256(&data).parse().unwrap();
    // What a crash right after the rename leaves behind: the blob file, no link.
    let store = t.reg.blob_store();
    store
        .upload_create(
            "crashed-1",
            gantry_ecr::blob::UploadMeta {
                repository: REPO.into(),
                region: None,
                created_at: 0.0,
                client: None,
            },
        )
        .await
        .unwrap();
    let body: gantry_ecr::blob::ByteStream = Box::pin(futures::stream::once({
        let data = data.clone();
        async move { Ok(bytes::Bytes::from(data)) }
    }));
    store
        .upload_append("crashed-1", Some(0), body)
        .await
        .unwrap();
    store.upload_commit("crashed-1", &digest).await.unwrap();
    // A session interrupted while being created.
    std::fs::create_dir_all(t.dir.path().join("uploads/.tmp-interrupted")).unwrap();
    let (dir, st) = t.stop();
    let t = TestRegistry::start_on(
        dir,
        st,
        RegistryOptions {
            gc_grace: Duration::ZERO,
            ..RegistryOptions::default()
        },
    )
    .await;
    assert!(!t.dir.path().join("uploads/.tmp-interrupted").exists());
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{digest}"), &[], "")
            .await
            .status,
        404
    );
    // Retrying the push works (no stale "already exists") and the blob is verified.
    assert_eq!(t.push_blob(REPO, &data).await, digest.to_string());
    let got = t
        .req("GET", &format!("/v2/{REPO}/blobs/{digest}"), &[], "")
        .await;
    assert_eq!(sha256(&got.body), digest.to_string());
    // Had nobody retried, GC would have reclaimed it.
    let orphan = random_bytes(1000);
    let od: gantry_ecr::Digest = sha256(&orphan).parse().unwrap();
    store_unlinked(&t, &orphan, &od).await;
    t.reg.maintenance_pass().await.unwrap();
    let listed: Vec<gantry_ecr::Digest> = t
        .reg
        .blob_store()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(!listed.contains(&od), "unlinked blob collected");
}

async fn store_unlinked(t: &TestRegistry, data: &[u8], d: &gantry_ecr::Digest) {
    let store = t.reg.blob_store();
    let meta = gantry_ecr::blob::UploadMeta {
        repository: REPO.into(),
        region: None,
        created_at: 0.0,
        client: None,
    };
    store.upload_create("crashed-2", meta).await.unwrap();
    let data = bytes::Bytes::copy_from_slice(data);
    let body: gantry_ecr::blob::ByteStream =
        Box::pin(futures::stream::once(async move { Ok(data) }));
    store
        .upload_append("crashed-2", Some(0), body)
        .await
        .unwrap();
    store.upload_commit("crashed-2", d).await.unwrap();
}

#[tokio::test]
async fn upload_sessions_are_capped_per_repository_and_per_client() {
    let opts = RegistryOptions {
        max_uploads_per_repository: 3,
        max_uploads_per_client: 5,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo("app/a").await;
    t.create_repo("app/b").await;
    let start = |repo: &'static str| {
        let t = &t;
        async move {
            t.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], "")
                .await
        }
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = start("app/a").await;
        assert_eq!(r.status, 202);
        open.push(r.header("location").unwrap().to_owned());
    }
    let refused = start("app/a").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_code(), "TOOMANYREQUESTS");
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("app/a has 3 upload sessions open"),
        "{:?}",
        refused.json()
    );
    // The ECR API answers the same cap with its own error.
    let e = t
        .ecr("InitiateLayerUpload", json!({"repositoryName": "app/a"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "LimitExceededException");
    // Finishing or cancelling a session makes room.
    assert_eq!(
        t.req("DELETE", &open.pop().unwrap(), &[], "").await.status,
        204
    );
    assert_eq!(start("app/a").await.status, 202);
    // Another repository has room, but the client has 3 sessions open: 2 more, then no more.
    assert_eq!(start("app/b").await.status, 202);
    assert_eq!(start("app/b").await.status, 202);
    let refused = start("app/b").await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("has 5 upload sessions open"),
        "{:?}",
        refused.json()
    );
}

#[tokio::test]
async fn abandoned_upload_sessions_are_purged_at_start_up() {
    assert!(
        RegistryOptions::default().upload_ttl <= Duration::from_secs(3 * 3600),
        "abandoned sessions go within hours"
    );
    let opts = || RegistryOptions {
        upload_ttl: Duration::from_millis(300),
        maintenance_interval: Duration::from_secs(3600),
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts()).await;
    t.create_repo(REPO).await;
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let stale = r.header("location").unwrap().to_owned();
    assert_eq!(
        t.req("PATCH", &stale, &[], random_bytes(1000)).await.status,
        202
    );
    let (dir, st) = t.stop();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t = TestRegistry::start_on(dir, st, opts()).await;
    // No maintenance pass has run: opening the registry purged it.
    assert_eq!(t.req("GET", &stale, &[], "").await.status, 404);
    assert!(
        t.reg.blob_store().upload_list().await.unwrap().is_empty(),
        "nothing left on disk"
    );
}

#[tokio::test]
async fn an_upload_cannot_grow_past_the_maximum_blob_size() {
    let opts = RegistryOptions {
        max_blob_bytes: 1000,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo(REPO).await;
    let r = t
        .req("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], "")
        .await;
    let session = r.header("location").unwrap().to_owned();
    assert_eq!(
        t.req("PATCH", &session, &[], random_bytes(600))
            .await
            .status,
        202
    );
    let r = t.req("PATCH", &session, &[], random_bytes(600)).await;
    assert_eq!(r.status, 413, "{:?}", r.json());
    assert_eq!(r.error_code(), "SIZE_INVALID");
    // In one request, too.
    let data = random_bytes(1001);
    let r = t
        .req(
            "POST",
            &format!("/v2/{REPO}/blobs/uploads/?digest={}", sha256(&data)),
            &[],
            data,
        )
        .await;
    assert_eq!(r.status, 413);
    // Through the ECR API, the part is refused whole.
    let id = t
        .ecr("InitiateLayerUpload", json!({"repositoryName": REPO}))
        .await
        .unwrap()["uploadId"]
        .as_str()
        .unwrap()
        .to_owned();
    use base64::Engine as _;
    let part = base64::engine::general_purpose::STANDARD.encode(random_bytes(1001));
    let e = t
        .ecr(
            "UploadLayerPart",
            json!({"repositoryName": REPO, "uploadId": id, "partFirstByte": 0,
                   "partLastByte": 1000, "layerPartBlob": part}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidParameterException", "{e}");
}

#[tokio::test]
async fn a_deposed_leaders_garbage_collection_deletes_nothing() {
    use gantry_store::{FencedStore, claim_leadership};
    let opts = RegistryOptions {
        gc_grace: Duration::ZERO,
        ..RegistryOptions::default()
    };
    let t = TestRegistry::start_with(opts).await;
    t.create_repo(REPO).await;
    let orphan = t.push_blob(REPO, b"nobody uses me").await;
    // This replica led, then another replica was elected: its maintenance is deposed.
    let fenced = Arc::new(FencedStore::new(t.store.clone()));
    t.reg.set_controller_store(fenced.clone());
    fenced.set_token(claim_leadership(t.store.as_ref(), "a").await.unwrap());
    claim_leadership(t.store.as_ref(), "b").await.unwrap();
    let report = t.reg.maintenance_pass().await.unwrap();
    assert_eq!(
        (report.links_removed, report.blobs_removed),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{orphan}"), &[], "")
            .await
            .status,
        200
    );
    // Elected again: the same pass collects the orphan.
    fenced.set_token(claim_leadership(t.store.as_ref(), "a").await.unwrap());
    let report = t.reg.maintenance_pass().await.unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert_eq!(
        t.req("HEAD", &format!("/v2/{REPO}/blobs/{orphan}"), &[], "")
            .await
            .status,
        404
    );
}

/// ECR's manifest size limit (4 MiB, the model's `ImageManifest` maximum): a manifest of exactly
/// that size is stored, one byte more answers 413 `SIZE_INVALID` and stores nothing.
#[tokio::test]
async fn a_manifest_beyond_ecrs_size_limit_is_refused() {
    let t = TestRegistry::start().await;
    t.create_repo(REPO).await;
    let cfg = t.push_blob(REPO, b"{}").await;
    // An OCI manifest padded through an annotation to `size` bytes.
    let manifest = |size: usize| {
        let bare = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cfg, "size": 2},
            "layers": [], "annotations": {"pad": ""}})
        .to_string();
        let padded = bare.replace(
            r#""pad":"""#,
            &format!(r#""pad":"{}""#, "x".repeat(size - bare.len())),
        );
        assert_eq!(padded.len(), size);
        padded
    };
    let limit = gantry_ecr::manifest::MAX_MANIFEST_BYTES;
    assert_eq!(limit, 4 * 1024 * 1024);
    let put = |tag: &'static str, body: String| {
        let t = &t;
        async move {
            t.req(
                "PUT",
                &format!("/v2/{REPO}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                body,
            )
            .await
        }
    };
    let r = put("at-limit", manifest(limit)).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = put("over-limit", manifest(limit + 1)).await;
    assert_eq!(r.status, 413, "{:?}", r.json());
    assert_eq!(r.error_code(), "SIZE_INVALID");
    assert_eq!(
        t.req("GET", &format!("/v2/{REPO}/manifests/over-limit"), &[], "")
            .await
            .status,
        404
    );
}
