//! `gantry push IMAGE`: creates the repository when missing, logs Docker in with a token from
//! `GetAuthorizationToken`, tags the image for the registry and pushes it (Docker's own progress
//! on a terminal, its plain lines when piped).

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::json;

use super::PushArgs;

/// `(repository, tag)` of a local image reference: the path without a registry host, the tag
/// (default `latest`). Digests are refused: a push needs a tag.
fn split_image(image: &str) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(
        !image.contains('@'),
        "push a tagged image, not a digest: {image}"
    );
    let (path, tag) = match image.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (image, "latest"),
    };
    // A first component with a dot or a port, or `localhost`, is a registry host.
    let path = match path.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => path,
    };
    anyhow::ensure!(!path.is_empty(), "no repository name in {image}");
    Ok((path.to_owned(), tag.to_owned()))
}

fn docker(args: &[&str], stdin: Option<&str>, inherit: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    if !inherit {
        cmd.stdout(Stdio::null());
        cmd.stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run docker: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {} failed: {}",
        args.first().copied().unwrap_or(""),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let conn = args.conn.connect()?;
    let (name, tag) = split_image(&args.image)?;
    let repository = args.repository.clone().unwrap_or(name);
    let uri = match conn
        .ecr(
            "DescribeRepositories",
            json!({"repositoryNames": [repository]}),
        )
        .await
    {
        Ok(found) => found["repositories"][0]["repositoryUri"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        Err(e) if e.code() == Some("RepositoryNotFoundException") => {
            let created = conn
                .ecr("CreateRepository", json!({"repositoryName": repository}))
                .await
                .map_err(|e| anyhow::anyhow!("CreateRepository: {e}"))?;
            println!("created repository {repository}");
            created["repository"]["repositoryUri"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        }
        Err(e) => anyhow::bail!("DescribeRepositories: {e}"),
    };
    anyhow::ensure!(!uri.is_empty(), "the repository {repository} has no URI");
    let registry = uri.split('/').next().unwrap_or("").to_owned();
    let token = conn
        .ecr("GetAuthorizationToken", json!({}))
        .await
        .map_err(|e| anyhow::anyhow!("GetAuthorizationToken: {e}"))?;
    let encoded = token["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| anyhow::anyhow!("the authorization token is not base64: {e}"))?;
    let decoded = String::from_utf8_lossy(&decoded);
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("the authorization token is not USER:PASSWORD"))?;
    docker(
        &["login", "--username", user, "--password-stdin", &registry],
        Some(password),
        false,
    )?;
    println!("logged in to {registry}");
    let target = format!("{uri}:{tag}");
    docker(&["tag", &args.image, &target], None, false)?;
    println!("pushing {target}");
    docker(&["push", &target], None, true)?;
    println!("pushed {target}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn image_references_split_into_repository_and_tag() {
        let s = |i| split_image(i).expect(i);
        assert_eq!(s("web"), ("web".into(), "latest".into()));
        assert_eq!(s("team/web:1.2"), ("team/web".into(), "1.2".into()));
        assert_eq!(s("localhost:5000/web:v1"), ("web".into(), "v1".into()));
        assert_eq!(
            s("registry.example.com/a/b"),
            ("a/b".into(), "latest".into())
        );
        assert!(split_image("web@sha256:00").is_err());
    }
}
