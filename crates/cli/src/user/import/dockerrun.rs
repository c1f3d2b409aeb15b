//! Elastic Beanstalk's multicontainer `Dockerrun.aws.json` (AWSEBDockerrunVersion 2) as a
//! bridge-mode task definition. `containerDefinitions` are ECS container definitions and pass
//! through (the server checks them as RegisterTaskDefinition does); host source paths under
//! /var/app/current (the source bundle) or relative ones are taken from the application
//! directory; the log volumes Elastic Beanstalk adds per container (`awseb-logs-NAME`) become
//! host directories LOG_DIR/NAME.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ImportError, Plan, refuse};

/// Where Elastic Beanstalk deploys the source bundle on an instance.
const BUNDLE: &str = "/var/app/current";
/// The prefix of the log volumes Elastic Beanstalk provides.
const LOG_VOLUME_PREFIX: &str = "awseb-logs-";

/// The top-level keys of a v2 file.
const TOP_LEVEL: &[&str] = &[
    "AWSEBDockerrunVersion",
    "containerDefinitions",
    "volumes",
    "authentication",
    "executionRoleArn",
];

/// The members of an ECS `ContainerDefinition` (botocore's model): anything else in a container
/// definition is refused rather than dropped.
const CONTAINER_MEMBERS: &[&str] = &[
    "name",
    "image",
    "repositoryCredentials",
    "cpu",
    "memory",
    "memoryReservation",
    "links",
    "portMappings",
    "essential",
    "restartPolicy",
    "entryPoint",
    "command",
    "environment",
    "environmentFiles",
    "mountPoints",
    "volumesFrom",
    "linuxParameters",
    "secrets",
    "dependsOn",
    "startTimeout",
    "stopTimeout",
    "versionConsistency",
    "hostname",
    "user",
    "workingDirectory",
    "disableNetworking",
    "privileged",
    "readonlyRootFilesystem",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "dockerSecurityOptions",
    "interactive",
    "pseudoTerminal",
    "dockerLabels",
    "ulimits",
    "logConfiguration",
    "healthCheck",
    "systemControls",
    "resourceRequirements",
    "firelensConfiguration",
    "credentialSpecs",
];

/// The members of an ECS `Volume`.
const VOLUME_MEMBERS: &[&str] = &[
    "name",
    "host",
    "dockerVolumeConfiguration",
    "efsVolumeConfiguration",
    "s3filesVolumeConfiguration",
    "fsxWindowsFileServerVolumeConfiguration",
    "configuredAtLaunch",
];

/// The host path for `source` as given in the file.
fn host_path(source: &str, app_dir: &Path) -> String {
    let rel = if source == BUNDLE {
        Some("")
    } else if let Some(rest) = source
        .strip_prefix(BUNDLE)
        .and_then(|r| r.strip_prefix('/'))
    {
        Some(rest)
    } else if !source.starts_with('/') {
        Some(source)
    } else {
        None
    };
    match rel {
        Some(r) => {
            let mut p = app_dir.to_path_buf();
            for part in r.split('/').filter(|p| !p.is_empty() && *p != ".") {
                p.push(part);
            }
            p.to_string_lossy().into_owned()
        }
        None => source.to_owned(),
    }
}

pub(crate) fn translate(
    text: &str,
    family: &str,
    app_dir: &Path,
    log_dir: &Path,
) -> Result<Plan, ImportError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| ImportError(format!("not valid JSON: {e}")))?;
    let Some(top) = doc.as_object() else {
        return refuse("a Dockerrun.aws.json is a JSON object");
    };
    for k in top.keys() {
        if k == "authentication" {
            return refuse(
                "authentication (a .dockercfg in Amazon S3) is not supported: give the containers repositoryCredentials naming a Secrets Manager secret instead",
            );
        }
        if !TOP_LEVEL.contains(&k.as_str()) {
            return refuse(format!(
                "unsupported key {k}: a version 2 file has AWSEBDockerrunVersion, containerDefinitions, volumes, authentication and executionRoleArn"
            ));
        }
    }
    let version = match top.get("AWSEBDockerrunVersion") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return refuse("AWSEBDockerrunVersion is missing (2 for several containers)"),
    };
    if version.trim() != "2" {
        return refuse(format!(
            "AWSEBDockerrunVersion {version} is not supported: only version 2 (containerDefinitions) maps to a task definition"
        ));
    }
    let Some(containers) = top.get("containerDefinitions").and_then(Value::as_array) else {
        return refuse("containerDefinitions is missing or not a list");
    };
    if containers.is_empty() {
        return refuse("containerDefinitions is empty");
    }
    let mut names = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            return refuse(format!("containerDefinitions[{i}] has no name"));
        };
        for k in c.as_object().into_iter().flat_map(|o| o.keys()) {
            if !CONTAINER_MEMBERS.contains(&k.as_str()) {
                return refuse(format!(
                    "containerDefinitions[{i}] ({name}): unsupported key {k} (not a member of an ECS container definition)"
                ));
            }
        }
        names.push(name.to_owned());
    }

    let mut notes = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    for (i, v) in top
        .get("volumes")
        .map(|v| {
            v.as_array()
                .cloned()
                .ok_or_else(|| ImportError("volumes is not a list".into()))
        })
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(obj) = v.as_object() else {
            return refuse(format!("volumes[{i}] is not an object"));
        };
        for k in obj.keys() {
            if !VOLUME_MEMBERS.contains(&k.as_str()) {
                return refuse(format!(
                    "volumes[{i}]: unsupported key {k} (not a member of an ECS volume)"
                ));
            }
        }
        let mut obj: Map<String, Value> = obj.clone();
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(src) = obj
            .get("host")
            .and_then(|h| h.get("sourcePath"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
        {
            let path = host_path(&src, app_dir);
            if path != src {
                notes.push(format!("volume {name}: {src} is {path}"));
            }
            obj.insert("host".into(), json!({"sourcePath": path}));
        }
        volumes.push(Value::Object(obj));
    }
    let declared: Vec<String> = volumes
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    let mut log_volumes: Vec<String> = Vec::new();
    for c in containers {
        for mp in c
            .get("mountPoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(sv) = mp.get("sourceVolume").and_then(Value::as_str) else {
                continue;
            };
            let Some(owner) = sv.strip_prefix(LOG_VOLUME_PREFIX) else {
                continue;
            };
            if declared.iter().any(|d| d == sv)
                || log_volumes.iter().any(|l| l == sv)
                || !names.iter().any(|n| n == owner)
            {
                continue;
            }
            let path = log_dir.join(owner).to_string_lossy().into_owned();
            notes.push(format!("log volume {sv}: {path}"));
            volumes.push(json!({"name": sv, "host": {"sourcePath": path}}));
            log_volumes.push(sv.to_owned());
        }
    }

    let mut td = json!({
        "family": family,
        "networkMode": "bridge",
        "containerDefinitions": containers,
    });
    if !volumes.is_empty() {
        td["volumes"] = Value::Array(volumes);
    }
    if let Some(role) = top.get("executionRoleArn") {
        td["executionRoleArn"] = role.clone();
    }
    Ok(Plan {
        task_definition: td,
        replicas: None,
        notes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The example of Elastic Beanstalk's documentation (two containers, a link, host volumes
    /// from the source bundle and a log volume).
    const EB_EXAMPLE: &str = r#"{
      "AWSEBDockerrunVersion": 2,
      "volumes": [
        {"name": "php-app", "host": {"sourcePath": "/var/app/current/php-app"}},
        {"name": "nginx-proxy-conf", "host": {"sourcePath": "/var/app/current/proxy/conf.d"}}
      ],
      "containerDefinitions": [
        {"name": "php-app", "image": "php:fpm", "essential": true, "memory": 128,
         "mountPoints": [{"sourceVolume": "php-app", "containerPath": "/var/www/html", "readOnly": true}]},
        {"name": "nginx-proxy", "image": "nginx", "essential": true, "memory": 128,
         "portMappings": [{"hostPort": 80, "containerPort": 80}],
         "links": ["php-app"],
         "mountPoints": [
           {"sourceVolume": "php-app", "containerPath": "/var/www/html", "readOnly": true},
           {"sourceVolume": "nginx-proxy-conf", "containerPath": "/etc/nginx/conf.d", "readOnly": true},
           {"sourceVolume": "awseb-logs-nginx-proxy", "containerPath": "/var/log/nginx"}]}
      ]
    }"#;

    #[test]
    fn the_documentation_example_becomes_a_bridge_task_definition() {
        let p = translate(
            EB_EXAMPLE,
            "web",
            Path::new("/srv/bundle"),
            Path::new("/srv/logs"),
        )
        .unwrap();
        let td = &p.task_definition;
        assert_eq!(td["family"], "web");
        assert_eq!(td["networkMode"], "bridge");
        assert_eq!(td["containerDefinitions"][1]["links"], json!(["php-app"]));
        assert_eq!(
            td["volumes"],
            json!([
                {"name": "php-app", "host": {"sourcePath": "/srv/bundle/php-app"}},
                {"name": "nginx-proxy-conf", "host": {"sourcePath": "/srv/bundle/proxy/conf.d"}},
                {"name": "awseb-logs-nginx-proxy", "host": {"sourcePath": "/srv/logs/nginx-proxy"}}
            ])
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n == "volume php-app: /var/app/current/php-app is /srv/bundle/php-app")
        );
    }

    #[test]
    fn relative_and_other_absolute_paths() {
        let app = Path::new("/b");
        assert_eq!(host_path("conf/x", app), "/b/conf/x");
        assert_eq!(host_path("./conf", app), "/b/conf");
        assert_eq!(host_path("/var/app/current", app), "/b");
        assert_eq!(host_path("/var/app/currentish", app), "/var/app/currentish");
        assert_eq!(host_path("/srv/data", app), "/srv/data");
    }

    #[test]
    fn what_cannot_map_is_refused_by_name() {
        let t = |s: &str| {
            translate(s, "f", Path::new("/a"), Path::new("/l"))
                .unwrap_err()
                .0
        };
        assert!(t("{ not json").starts_with("not valid JSON: "));
        assert!(
            t(r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a"}], "authentication": {"bucket": "b", "key": "k"}}"#)
                .contains("authentication")
        );
        assert!(
            t(r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a"}], "network": 1}"#)
                .contains("unsupported key network")
        );
        assert!(
            t(r#"{"AWSEBDockerrunVersion": "1", "Image": {"Name": "x"}}"#)
                .contains("unsupported key Image")
        );
        assert!(
            t(r#"{"AWSEBDockerrunVersion": "1", "containerDefinitions": [{"name": "a"}]}"#)
                .contains("AWSEBDockerrunVersion 1 is not supported")
        );
        assert!(t(r#"{"containerDefinitions": []}"#).contains("AWSEBDockerrunVersion is missing"));
        assert_eq!(
            t(
                r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a", "mountpoints": []}]}"#
            ),
            "containerDefinitions[0] (a): unsupported key mountpoints (not a member of an ECS container definition)"
        );
        assert!(
            t(r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a"}], "volumes": [{"name": "v", "path": "/x"}]}"#)
                .contains("volumes[0]: unsupported key path")
        );
    }
}
