//! Pull through cache tag refresh, in process: one registry is the upstream of another's pull
//! through cache rule. A cached tag is checked against the upstream once per refresh interval;
//! when the upstream's tag names a new image, the tag moves to it and the old image stays,
//! untagged; when the upstream cannot be reached, the cached image is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use gantry_ecr::{RegistryOptions, SecretProblem, UpstreamCredentials, UpstreamLogin};
use gantry_store::Txn;
use serde_json::{Value, json};

const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:000000000000:secret:ecr-pullthroughcache/upstream-AbCdEf";
const TAG_KEY: &str = "ecr/region/us-east-1/tag/hub/lib/app#v1";

/// The upstream registry's login, as the secret would hold it.
#[derive(Debug)]
struct Login(String);

#[async_trait]
impl UpstreamCredentials for Login {
    async fn login(&self, _arn: &str) -> Result<UpstreamLogin, SecretProblem> {
        Ok(UpstreamLogin {
            username: "AWS".into(),
            password: self.0.clone(),
        })
    }
}

/// A registry caching `hub/<repo>` from `up`'s `<repo>`, checking cached tags after `refresh`.
async fn cache_of(up: &TestRegistry, refresh: Duration) -> TestRegistry {
    let cache = TestRegistry::start_with(RegistryOptions {
        pull_through_refresh: refresh,
        ..RegistryOptions::default()
    })
    .await;
    cache
        .reg
        .set_upstream_credentials(Arc::new(Login(up.reg.mint_password(ACCESS_KEY, REGION))));
    cache
        .ecr(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": format!("http://{}", up.host()),
                   "credentialArn": SECRET}),
        )
        .await
        .expect("create rule");
    cache
}

async fn pulled_digest(cache: &TestRegistry, method: &str) -> String {
    let r = cache
        .req(
            method,
            "/v2/hub/lib/app/manifests/v1",
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{method} v1: {:?}", r.body);
    r.header("docker-content-digest").unwrap().to_owned()
}

/// The cache's images of `hub/lib/app`: digest and tags, sorted by digest.
async fn images(cache: &TestRegistry) -> Vec<(String, Vec<String>)> {
    let out = cache
        .ecr("DescribeImages", json!({"repositoryName": "hub/lib/app"}))
        .await
        .unwrap();
    let mut v: Vec<(String, Vec<String>)> = out["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let tags = i["imageTags"]
                .as_array()
                .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (i["imageDigest"].as_str().unwrap().to_owned(), tags)
        })
        .collect();
    v.sort();
    v
}

async fn tag_record(cache: &TestRegistry) -> Value {
    let rec = cache.store.get(TAG_KEY).await.unwrap().expect("tag record");
    serde_json::from_slice(&rec.value).unwrap()
}

/// Rewrites when the cached tag was last synced with the upstream.
async fn set_synced_at(cache: &TestRegistry, at: f64) {
    let rec = cache.store.get(TAG_KEY).await.unwrap().expect("tag record");
    let mut v: Value = serde_json::from_slice(&rec.value).unwrap();
    v["upstream_synced_at"] = json!(at);
    let txn = Txn::new()
        .require_revision(TAG_KEY, rec.revision)
        .put(TAG_KEY, serde_json::to_vec(&v).unwrap());
    assert!(cache.store.commit(txn).await.unwrap().is_committed());
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn layer_digest(manifest: &str) -> String {
    let m: Value = serde_json::from_str(manifest).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_stale_tag_moves_to_the_upstreams_new_image_and_the_old_one_stays_untagged() {
    let up = TestRegistry::start().await;
    up.create_repo("lib/app").await;
    let (d1, _) = up.push_image("lib/app", "v1", &[&random_bytes(1500)]).await;
    let cache = cache_of(&up, Duration::from_secs(3600)).await;

    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    let rec = tag_record(&cache).await;
    let synced = rec["upstream_synced_at"]
        .as_f64()
        .expect("synced when cached");
    assert!((now() - synced).abs() < 60.0, "{rec}");

    // The upstream's tag moves; within the interval the cache still serves what it holds.
    let (d2, m2) = up.push_image("lib/app", "v1", &[&random_bytes(1700)]).await;
    assert_ne!(d1, d2);
    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    assert_eq!(pulled_digest(&cache, "HEAD").await, d1);

    // Once the interval has passed, a pull by tag fetches the new image (a HEAD too).
    set_synced_at(&cache, now() - 3601.0).await;
    assert_eq!(pulled_digest(&cache, "HEAD").await, d2);
    assert_eq!(pulled_digest(&cache, "GET").await, d2);
    assert_eq!(images(&cache).await, {
        let mut v = vec![(d1.clone(), vec![]), (d2.clone(), vec!["v1".to_owned()])];
        v.sort();
        v
    });
    let blob = cache
        .req(
            "GET",
            &format!("/v2/hub/lib/app/blobs/{}", layer_digest(&m2)),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body.len(), 1700);
    // The old image is still pullable by digest.
    let old = cache
        .req(
            "GET",
            &format!("/v2/hub/lib/app/manifests/{d1}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    assert_eq!(old.status, 200);
    assert_eq!(old.header("docker-content-digest"), Some(d1.as_str()));
    let synced_again = tag_record(&cache).await["upstream_synced_at"]
        .as_f64()
        .unwrap();
    assert!(now() - synced_again < 60.0);
}

#[tokio::test]
async fn an_unchanged_upstream_tag_is_only_marked_synced() {
    let up = TestRegistry::start().await;
    up.create_repo("lib/app").await;
    let (d1, _) = up.push_image("lib/app", "v1", &[&random_bytes(900)]).await;
    let cache = cache_of(&up, Duration::from_secs(3600)).await;
    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    let before = tag_record(&cache).await;
    let stale = now() - 7200.0;
    set_synced_at(&cache, stale).await;

    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    let after = tag_record(&cache).await;
    assert!(after["upstream_synced_at"].as_f64().unwrap() > stale + 3600.0);
    // The tag did not move: its own time is unchanged.
    assert_eq!(after["updated_at"], before["updated_at"]);
    assert_eq!(images(&cache).await, vec![(d1, vec!["v1".to_owned()])]);
}

#[tokio::test]
async fn an_unreachable_upstream_leaves_the_cached_tag_served() {
    let up = TestRegistry::start().await;
    up.create_repo("lib/app").await;
    let (d1, _) = up.push_image("lib/app", "v1", &[&random_bytes(800)]).await;
    let cache = cache_of(&up, Duration::ZERO).await;
    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    // The rule now names a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    cache
        .ecr(
            "DeletePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub"}),
        )
        .await
        .unwrap();
    cache
        .ecr(
            "CreatePullThroughCacheRule",
            json!({"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": format!("http://{closed}"),
                   "credentialArn": SECRET}),
        )
        .await
        .unwrap();

    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    assert_eq!(pulled_digest(&cache, "HEAD").await, d1);
    // The failed check is not recorded as a sync.
    set_synced_at(&cache, 1.0).await;
    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    assert_eq!(tag_record(&cache).await["upstream_synced_at"], json!(1.0));
}

#[tokio::test]
async fn concurrent_pulls_of_a_stale_tag_all_get_the_new_image() {
    let up = TestRegistry::start().await;
    up.create_repo("lib/app").await;
    let (d1, _) = up.push_image("lib/app", "v1", &[&random_bytes(600)]).await;
    let cache = Arc::new(cache_of(&up, Duration::from_secs(3600)).await);
    assert_eq!(pulled_digest(&cache, "GET").await, d1);
    let (d2, _) = up.push_image("lib/app", "v1", &[&random_bytes(4096)]).await;
    set_synced_at(&cache, now() - 3601.0).await;

    let pulls: Vec<_> = (0..6)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { pulled_digest(&cache, "GET").await })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap(), d2);
    }
    let mut want = vec![(d1, vec![]), (d2, vec!["v1".to_owned()])];
    want.sort();
    assert_eq!(images(&cache).await, want);
}

#[tokio::test]
async fn a_pull_by_digest_never_checks_the_upstream() {
    let up = TestRegistry::start().await;
    up.create_repo("lib/app").await;
    let (d1, _) = up.push_image("lib/app", "v1", &[&random_bytes(700)]).await;
    let cache = cache_of(&up, Duration::ZERO).await;
    let r = cache
        .req(
            "GET",
            &format!("/v2/hub/lib/app/manifests/{d1}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    // Cached by digest: no tag, and the upstream moving its tag changes nothing here.
    assert_eq!(images(&cache).await, vec![(d1.clone(), vec![])]);
    up.push_image("lib/app", "v1", &[&random_bytes(710)]).await;
    let again = cache
        .req(
            "GET",
            &format!("/v2/hub/lib/app/manifests/{d1}"),
            &[("accept", OCI_MANIFEST)],
            Vec::new(),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(images(&cache).await, vec![(d1, vec![])]);
}
