//! Real clients against the in-process registry: `skopeo` (copy of a hand-made multi-layer OCI
//! layout in and out, digests preserved) and the Docker Engine (login with the ECR token, build,
//! push, rmi, pull). When a tool is missing the test prints a loud skip line, unless
//! `GANTRY_REQUIRE_DOCKER=1`, which turns the skip into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// Whether `tool` can run; `false` means the caller must return (after the skip line).
async fn require(tool: &str, probe: &[&str]) -> bool {
    let ok = tokio::process::Command::new(tool)
        .args(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("GANTRY_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{tool} is not available and GANTRY_REQUIRE_DOCKER=1");
        }
        eprintln!("\n*** SKIPPED: {tool} not available ***\n");
    }
    ok
}

/// Runs a command with a deadline; returns stdout, panics with stderr on failure.
async fn run(cmd: &mut tokio::process::Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("command timed out")
        .expect("command did not start");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn write_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let d = sha256(data);
    let hex = d.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), data).expect("write blob");
    (d, data.len())
}

/// Writes an OCI image layout with `layers` gzip'd tar layers, tagged `tag`; returns the
/// manifest digest.
async fn make_oci_layout(dir: &Path, tag: &str, layers: usize) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    let work = tempfile::tempdir().expect("tempdir");
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let content = work.path().join(format!("c{i}"));
        std::fs::create_dir_all(&content).expect("mkdir");
        std::fs::write(
            content.join(format!("file{i}.txt")),
            random_bytes(20_000 + i * 1000),
        )
        .expect("write");
        let tar = work.path().join(format!("l{i}.tar"));
        run(tokio::process::Command::new("tar")
            .args(["--mtime=@0", "--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&content)
            .arg("."))
        .await;
        diff_ids.push(sha256(&std::fs::read(&tar).expect("read tar")));
        run(tokio::process::Command::new("gzip").arg("-n").arg(&tar)).await;
        let gz = std::fs::read(work.path().join(format!("l{i}.tar.gz"))).expect("read gz");
        let (d, size) = write_blob(dir, &gz);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size}));
    }
    let config = json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string();
    let (cd, cs) = write_blob(dir, config.as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs})
    .to_string();
    let (md, ms) = write_blob(dir, manifest.as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("write index");
    md
}

fn manifest_blobs(m: &Value) -> Vec<String> {
    let mut v = vec![m["config"]["digest"].as_str().unwrap_or("").to_owned()];
    for l in m["layers"].as_array().into_iter().flatten() {
        v.push(l["digest"].as_str().unwrap_or("").to_owned());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_of_a_multi_layer_image_in_and_out_keeps_every_digest() {
    if !require("skopeo", &["--version"]).await {
        return;
    }
    let t = TestRegistry::start().await;
    t.create_repo("skopeo/img").await;
    let password = t.reg.mint_password(ACCESS_KEY, common::REGION);
    let creds = format!("AWS:{password}");
    let src = tempfile::tempdir().unwrap();
    let digest = make_oci_layout(src.path(), "v1", 3).await;
    let src_manifest: Value = serde_json::from_slice(
        &std::fs::read(
            src.path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let dest = format!("docker://{}/skopeo/img:v1", t.host());
    run(tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
        ])
        .arg(format!("oci:{}:v1", src.path().display()))
        .arg(&dest))
    .await;
    // The registry has it under the same digest.
    let r = t.req("GET", "/v2/skopeo/img/manifests/v1", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let v = t
        .ecr("DescribeImages", json!({"repositoryName": "skopeo/img"}))
        .await
        .unwrap();
    assert_eq!(v["imageDetails"][0]["imageDigest"], digest.as_str());
    assert_eq!(v["imageDetails"][0]["imageTags"], json!(["v1"]));

    let inspect = run(tokio::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", &creds])
        .arg(&dest))
    .await;
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);

    let out = tempfile::tempdir().unwrap();
    run(tokio::process::Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
        ])
        .arg(&dest)
        .arg(format!("oci:{}:v1", out.path().display())))
    .await;
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    for b in manifest_blobs(&src_manifest) {
        let path = out
            .path()
            .join("blobs/sha256")
            .join(b.trim_start_matches("sha256:"));
        let data =
            std::fs::read(&path).unwrap_or_else(|_| panic!("blob {b} missing after copy out"));
        assert_eq!(sha256(&data), b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_login_build_push_rmi_pull_against_gantry() {
    if !require("docker", &["info"]).await {
        return;
    }
    let t = TestRegistry::start().await;
    let repo = format!("docker/busybox-{}", rand_hex(8));
    t.create_repo(&repo).await;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else {
        if std::env::var("GANTRY_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("busybox-static is not installed");
        }
        eprintln!("\n*** SKIPPED: busybox-static not available ***\n");
        return;
    };
    let docker_config = tempfile::tempdir().unwrap();
    let docker = || {
        let mut c = tokio::process::Command::new("docker");
        c.env("DOCKER_CONFIG", docker_config.path())
            .env("DOCKER_BUILDKIT", "0");
        c
    };
    // aws ecr get-login-password | docker login --username AWS --password-stdin REGISTRY
    let v = t.ecr("GetAuthorizationToken", json!({})).await.unwrap();
    let token = v["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap(),
    )
    .unwrap();
    let password = decoded.split(':').nth(1).unwrap().to_owned();
    let endpoint = v["authorizationData"][0]["proxyEndpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut login = docker();
    login
        .args(["login", "--username", "AWS", "--password-stdin", &endpoint])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().expect("docker login");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(password.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(busybox, ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    let image = format!("{}/{repo}:v1", t.host());
    run(docker().args(["build", "-q", "-t", &image]).arg(ctx.path())).await;
    let pushed = run(docker().args(["push", &image])).await;
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output: {pushed}"))
        .to_owned();
    // describe-images shows the pushed tag with the digest docker reports and a size.
    let v = t
        .ecr(
            "DescribeImages",
            json!({"repositoryName": repo, "imageIds": [{"imageTag": "v1"}]}),
        )
        .await
        .unwrap();
    assert_eq!(v["imageDetails"][0]["imageDigest"], digest.as_str());
    assert!(v["imageDetails"][0]["imageSizeInBytes"].as_u64().unwrap() > 100_000);
    assert_eq!(
        v["imageDetails"][0]["imageManifestMediaType"],
        DOCKER_MANIFEST
    );

    run(docker().args(["rmi", &image])).await;
    let pulled = run(docker().args(["pull", &image])).await;
    assert!(pulled.contains(&digest), "{pulled}");
    let echoed = run(docker().args([
        "run",
        "--rm",
        &image,
        "/bin/busybox",
        "echo",
        "hello-gantry",
    ]))
    .await;
    assert_eq!(echoed.trim(), "hello-gantry");
    run(docker().args(["rmi", &image])).await;

    // batch-delete-image makes the pull fail with manifest unknown.
    t.ecr(
        "BatchDeleteImage",
        json!({"repositoryName": repo, "imageIds": [{"imageTag": "v1"}]}),
    )
    .await
    .unwrap();
    let out = docker().args(["pull", &image]).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );
}
