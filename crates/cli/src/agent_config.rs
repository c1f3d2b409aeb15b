//! The agent's configuration as the ECS agent reads it: `/etc/ecs/ecs.config` (or
//! `--config FILE`), `KEY=VALUE` lines with ECS's key names, then the same keys from the
//! environment, then `gantry agent`'s flags. Keys Gantry does not know are warned about once;
//! values it cannot honour are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file the ECS agent reads when no `--config` is given.
pub const DEFAULT_FILE: &str = "/etc/ecs/ecs.config";

/// Every key Gantry reads.
const KNOWN: &[&str] = &[
    "ECS_CLUSTER",
    "ECS_INSTANCE_ATTRIBUTES",
    "ECS_RESERVED_MEMORY",
    "ECS_RESERVED_PORTS",
    "ECS_RESERVED_PORTS_UDP",
    "ECS_CONTAINER_STOP_TIMEOUT",
    "ECS_IMAGE_PULL_BEHAVIOR",
    "ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION",
    "ECS_AVAILABLE_LOGGING_DRIVERS",
    "ECS_ENABLE_TASK_IAM_ROLE",
    "ECS_LOGLEVEL",
    "ECS_CONTAINER_INSTANCE_TAGS",
    "ECS_BACKEND_HOST",
    "ECS_DATADIR",
];

/// The ECS keys of one agent: the file's, overridden by the environment's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcsConfig {
    values: BTreeMap<String, String>,
    /// Keys Gantry does not read, each once.
    pub unknown: Vec<String>,
}

/// Parses `KEY=VALUE` lines (comments with `#`, optional `export`, optional quotes).
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    out
}

impl EcsConfig {
    /// Reads `file` (`--config`; else [`DEFAULT_FILE`] when it exists) and the environment's
    /// `ECS_*` keys over it.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut values = match file {
            Some(f) => parse(
                &std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?,
            ),
            None => std::fs::read_to_string(DEFAULT_FILE)
                .map(|t| parse(&t))
                .unwrap_or_default(),
        };
        for (k, v) in std::env::vars() {
            if KNOWN.contains(&k.as_str()) && !v.is_empty() {
                values.insert(k, v);
            }
        }
        let unknown = values
            .keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(Self { values, unknown })
    }

    #[cfg(test)]
    fn from_text(text: &str) -> Self {
        let values = parse(text);
        let unknown = values
            .keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .cloned()
            .collect();
        Self { values, unknown }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The agent's log filter from `ECS_LOGLEVEL` (ECS's `crit` is `error`).
    pub fn log_level(&self) -> Option<&'static str> {
        Some(
            match self.get("ECS_LOGLEVEL")?.to_ascii_lowercase().as_str() {
                "debug" => "debug",
                "info" => "info",
                "warn" => "warn",
                "error" | "crit" => "error",
                _ => return None,
            },
        )
    }

    /// Applies the keys to `cfg` (flags are applied after, by the caller).
    pub fn apply(&self, cfg: &mut gantry_agent::AgentConfig) -> anyhow::Result<()> {
        if let Some(v) = self.get("ECS_INSTANCE_ATTRIBUTES") {
            for (k, v) in string_map("ECS_INSTANCE_ATTRIBUTES", v)? {
                cfg.attributes.push((k, v));
            }
        }
        if let Some(v) = self.get("ECS_CONTAINER_INSTANCE_TAGS") {
            cfg.tags = string_map("ECS_CONTAINER_INSTANCE_TAGS", v)?;
        }
        if let Some(v) = self.get("ECS_RESERVED_MEMORY") {
            cfg.reserved_memory_mib = v.trim().parse::<u32>().map(i64::from).map_err(|_| {
                anyhow::anyhow!("ECS_RESERVED_MEMORY must be a number of MiB, got {v:?}")
            })?;
        }
        if let Some(v) = self.get("ECS_RESERVED_PORTS") {
            cfg.reserved_ports = ports("ECS_RESERVED_PORTS", v)?;
        }
        if let Some(v) = self.get("ECS_RESERVED_PORTS_UDP") {
            cfg.reserved_ports_udp = ports("ECS_RESERVED_PORTS_UDP", v)?;
        }
        if let Some(v) = self.get("ECS_CONTAINER_STOP_TIMEOUT") {
            cfg.container_stop_timeout = duration("ECS_CONTAINER_STOP_TIMEOUT", v)?;
        }
        if let Some(v) = self.get("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION") {
            cfg.task_cleanup_wait = duration("ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION", v)?;
        }
        if let Some(v) = self.get("ECS_IMAGE_PULL_BEHAVIOR") {
            use gantry_agent::ImagePullBehavior as B;
            cfg.image_pull_behavior = match v {
                "default" => B::Default,
                "always" => B::Always,
                "prefer-cached" => B::PreferCached,
                "once" => anyhow::bail!(
                    "ECS_IMAGE_PULL_BEHAVIOR=once is not supported by Gantry's agent; use default, always or prefer-cached"
                ),
                other => anyhow::bail!(
                    "ECS_IMAGE_PULL_BEHAVIOR must be default, always, once or prefer-cached, got {other:?}"
                ),
            };
        }
        if let Some(v) = self.get("ECS_AVAILABLE_LOGGING_DRIVERS") {
            let drivers: Vec<String> = serde_json::from_str(v).map_err(|_| {
                anyhow::anyhow!(
                    "ECS_AVAILABLE_LOGGING_DRIVERS must be a JSON list of names, got {v:?}"
                )
            })?;
            let supported = gantry_domain::capability::LOGGING_DRIVERS;
            if let Some(d) = drivers.iter().find(|d| !supported.contains(&d.as_str())) {
                anyhow::bail!(
                    "ECS_AVAILABLE_LOGGING_DRIVERS: Gantry's agent does not support the {d} logging driver (supported: {})",
                    supported.join(", ")
                );
            }
            cfg.logging_drivers = drivers;
        }
        if let Some(v) = self.get("ECS_ENABLE_TASK_IAM_ROLE") {
            cfg.task_iam_role = match v {
                "true" => true,
                "false" => false,
                other => {
                    anyhow::bail!("ECS_ENABLE_TASK_IAM_ROLE must be true or false, got {other:?}")
                }
            };
        }
        Ok(())
    }
}

/// A JSON object of strings (`{"stack": "prod"}`), in order.
fn string_map(key: &str, v: &str) -> anyhow::Result<Vec<(String, String)>> {
    let map: BTreeMap<String, String> = serde_json::from_str(v)
        .map_err(|_| anyhow::anyhow!("{key} must be a JSON object of strings, got {v:?}"))?;
    Ok(map.into_iter().collect())
}

/// A JSON list of port numbers (`[22, 2375]`).
fn ports(key: &str, v: &str) -> anyhow::Result<Vec<u16>> {
    serde_json::from_str(v)
        .map_err(|_| anyhow::anyhow!("{key} must be a JSON list of ports, got {v:?}"))
}

/// A Go duration as the ECS agent takes it: `30s`, `2m`, `1h30m`, `500ms`.
fn duration(key: &str, v: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("{key} must be a duration such as 30s, 5m or 3h, got {v:?}");
    let mut total = Duration::ZERO;
    let mut rest = v.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        let seconds = match &rest[digits..unit_end] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[unit_end..];
    }
    Ok(total)
}

/// The path `--config` names, or the default file.
pub fn describe(file: Option<&PathBuf>) -> String {
    file.map_or_else(|| DEFAULT_FILE.to_owned(), |f| f.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ecs_keys_and_names_unknown_ones() {
        let c = EcsConfig::from_text(
            "# comment\nECS_CLUSTER=prod\nexport ECS_RESERVED_MEMORY=512\n\
             ECS_INSTANCE_ATTRIBUTES={\"stack\": \"blue\"}\nECS_RESERVED_PORTS=\"[22, 8080]\"\n\
             ECS_RESERVED_PORTS_UDP=[5353]\nECS_CONTAINER_STOP_TIMEOUT=1m30s\n\
             ECS_CONTAINER_INSTANCE_TAGS={\"team\": \"a\"}\nECS_LOGLEVEL=crit\nECS_WHATEVER=1\n",
        );
        assert_eq!(c.get("ECS_CLUSTER"), Some("prod"));
        assert_eq!(c.unknown, vec!["ECS_WHATEVER".to_owned()]);
        assert_eq!(c.log_level(), Some("error"));
        let mut cfg = gantry_agent::AgentConfig::new("http://x:1", "c", "/tmp/x");
        c.apply(&mut cfg).expect("apply");
        assert_eq!(cfg.reserved_memory_mib, 512);
        assert_eq!(cfg.reserved_ports, vec![22, 8080]);
        assert_eq!(cfg.reserved_ports_udp, vec![5353]);
        assert_eq!(cfg.container_stop_timeout, Duration::from_secs(90));
        assert_eq!(cfg.attributes, vec![("stack".into(), "blue".into())]);
        assert_eq!(cfg.tags, vec![("team".into(), "a".into())]);
    }

    #[test]
    fn refuses_what_cannot_be_honoured() {
        let refuse = |text: &str| {
            let mut cfg = gantry_agent::AgentConfig::new("http://x:1", "c", "/tmp/x");
            EcsConfig::from_text(text)
                .apply(&mut cfg)
                .expect_err(text)
                .to_string()
        };
        assert!(refuse("ECS_IMAGE_PULL_BEHAVIOR=once").contains("not supported"));
        assert!(refuse("ECS_AVAILABLE_LOGGING_DRIVERS=[\"splunk\"]").contains("splunk"));
        assert!(refuse("ECS_ENABLE_TASK_IAM_ROLE=maybe").contains("true or false"));
        assert!(refuse("ECS_RESERVED_MEMORY=lots").contains("MiB"));
        assert!(refuse("ECS_CONTAINER_STOP_TIMEOUT=soon").contains("duration"));
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(duration("k", "3h").expect("h"), Duration::from_secs(10800));
        assert_eq!(
            duration("k", "500ms").expect("ms"),
            Duration::from_millis(500)
        );
        assert!(duration("k", "10").is_err());
    }
}
