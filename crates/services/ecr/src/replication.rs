//! Registry replication: `PutReplicationConfiguration`, the `replicationConfiguration` of
//! `DescribeRegistry`, and `DescribeImageReplicationStatus`.
//!
//! A replication configuration belongs to the registry of one region, as in ECR: it is stored
//! under `ecr/registry/replication/<region>` and validated as ECR validates it (destinations in
//! another region of this account, at most 25 distinct destinations, `PREFIX_MATCH` filters).
//!
//! The image store is one for every region of the account: repositories, images and the `/v2/`
//! endpoint are the same whichever region a request is signed for. An image pushed through one
//! region is therefore in every destination region of a matching rule as soon as its push
//! commits, with the very repository (and so the source's settings) and the same blob links,
//! which the garbage collector honours. Nothing is copied and nothing is left pending, so a
//! replication status is always `COMPLETE`; it is derived from the configuration and the image
//! each time it is asked for, and survives restarts with the store.

use gantry_aws_proto::AwsError;
use gantry_store::{StoreExt, Txn};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::RegistryAction;
use crate::ecr::{Ecr, ImageId, invalid, to_aws};
use crate::error::RegistryError;

/// The most distinct destinations a configuration may name across its rules (ECR's quota).
pub(crate) const MAX_DESTINATIONS: usize = 25;

/// The only repository filter type ECR knows.
const PREFIX_MATCH: &str = "PREFIX_MATCH";

fn config_key(region: &str) -> String {
    format!("ecr/registry/replication/{region}")
}

/// `ReplicationConfiguration`, stored as it travels on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReplicationConfiguration {
    #[serde(default)]
    pub rules: Vec<ReplicationRule>,
}

/// `ReplicationRule`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReplicationRule {
    #[serde(default)]
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_filters: Option<Vec<RepositoryFilter>>,
}

/// `ReplicationDestination`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Destination {
    pub region: String,
    pub registry_id: String,
}

/// `RepositoryFilter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepositoryFilter {
    pub filter: String,
    pub filter_type: String,
}

impl ReplicationRule {
    /// Whether the rule replicates `repository`: a rule without filters replicates every
    /// repository; otherwise one filter's prefix must begin the name.
    pub fn matches(&self, repository: &str) -> bool {
        match &self.repository_filters {
            None => true,
            Some(filters) if filters.is_empty() => true,
            Some(filters) => filters
                .iter()
                .any(|f| f.filter_type == PREFIX_MATCH && repository.starts_with(&f.filter)),
        }
    }
}

impl ReplicationConfiguration {
    /// The destinations `repository` replicates to, each once, in the order the rules name them.
    pub fn destinations_for(&self, repository: &str) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(repository)) {
            for d in &rule.destinations {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// ECR's checks of a configuration set in `region` of the registry `account`.
    pub fn validate(&self, region: &str, account: &str) -> Result<(), RegistryError> {
        let mut distinct: Vec<&Destination> = Vec::new();
        for rule in &self.rules {
            if rule.destinations.is_empty() {
                return Err(invalid(
                    "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'A replication rule must have at least one destination'",
                ));
            }
            for f in rule.repository_filters.iter().flatten() {
                if f.filter_type != PREFIX_MATCH {
                    return Err(invalid(format!(
                        "1 validation error detected: Value '{}' at 'replicationConfiguration.rules.member.repositoryFilters.member.filterType' failed to satisfy constraint: Member must satisfy enum value set: [PREFIX_MATCH]",
                        f.filter_type
                    )));
                }
            }
            for d in &rule.destinations {
                if d.registry_id != account {
                    return Err(invalid(format!(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'cross-account replication is not supported: this server holds only the registry with id '{account}', so destination registry '{}' cannot be replicated to'",
                        d.registry_id
                    )));
                }
                if d.region == region {
                    return Err(invalid(
                        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'Replication destination cannot be the same as the source registry'",
                    ));
                }
                if !distinct.contains(&d) {
                    distinct.push(d);
                }
            }
        }
        if distinct.len() > MAX_DESTINATIONS {
            return Err(invalid(format!(
                "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: 'A replication configuration may contain at most {MAX_DESTINATIONS} unique destinations, {} were given'",
                distinct.len()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutReplicationConfigurationInput {
    replication_configuration: Option<ReplicationConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DescribeImageReplicationStatusInput {
    registry_id: Option<String>,
    repository_name: Option<String>,
    image_id: Option<ImageId>,
}

impl crate::Registry {
    /// The replication configuration of the registry in `region` (no rules when none was put).
    pub(crate) async fn replication_configuration(
        &self,
        region: &str,
    ) -> Result<ReplicationConfiguration, RegistryError> {
        Ok(self
            .store
            .get_typed::<ReplicationConfiguration>(&config_key(region))
            .await?
            .map(|v| v.value)
            .unwrap_or_default())
    }
}

impl Ecr<'_> {
    pub(crate) async fn put_replication_configuration(
        &self,
        i: PutReplicationConfigurationInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            self.authorize(RegistryAction::Manage, None)?;
            let cfg = i
                .replication_configuration
                .ok_or_else(|| invalid("replicationConfiguration is required"))?;
            cfg.validate(&self.ctx.region, &self.reg.cfg.account_id)?;
            let key = config_key(&self.ctx.region);
            self.reg
                .store
                .commit(Txn::new().put(&key, crate::meta::enc(&key, &cfg)?))
                .await?;
            tracing::info!(
                region = %self.ctx.region,
                rules = cfg.rules.len(),
                "replication configuration put"
            );
            Ok(cfg)
        };
        let cfg = run.await.map_err(to_aws)?;
        Ok(json!({ "replicationConfiguration": cfg }))
    }

    pub(crate) async fn describe_registry(&self) -> Result<Value, AwsError> {
        let run = async {
            self.authorize(RegistryAction::Describe, None)?;
            self.reg.replication_configuration(&self.ctx.region).await
        };
        let cfg = run.await.map_err(to_aws)?;
        Ok(json!({
            "registryId": self.reg.cfg.account_id,
            "replicationConfiguration": cfg,
        }))
    }

    pub(crate) async fn describe_image_replication_status(
        &self,
        i: DescribeImageReplicationStatusInput,
    ) -> Result<Value, AwsError> {
        let run = async {
            let repo = self.repo_name(&i.registry_id, &i.repository_name)?;
            self.authorize(RegistryAction::Describe, Some(&repo))?;
            let id = i
                .image_id
                .clone()
                .ok_or_else(|| invalid("imageId is required"))?;
            self.reg.get_repo(&repo).await?;
            let image = self.resolve_image_id(&repo, &id).await?;
            let cfg = self.reg.replication_configuration(&self.ctx.region).await?;
            // The store is every region's: the image is in each destination once it exists here.
            let statuses: Vec<Value> = cfg
                .destinations_for(&repo)
                .into_iter()
                .map(|d| {
                    json!({
                        "region": d.region,
                        "registryId": d.registry_id,
                        "status": "COMPLETE",
                    })
                })
                .collect();
            let mut image_id = json!({ "imageDigest": image.digest.to_string() });
            if let Some(tag) = &id.image_tag {
                image_id["imageTag"] = json!(tag);
            }
            Ok(json!({
                "repositoryName": repo,
                "imageId": image_id,
                "replicationStatuses": statuses,
            }))
        };
        run.await.map_err(to_aws)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "000000000000";

    fn dest(region: &str) -> Destination {
        Destination {
            region: region.into(),
            registry_id: ACCOUNT.into(),
        }
    }

    fn rule(regions: &[&str], prefixes: Option<&[&str]>) -> ReplicationRule {
        ReplicationRule {
            destinations: regions.iter().map(|r| dest(r)).collect(),
            repository_filters: prefixes.map(|p| {
                p.iter()
                    .map(|f| RepositoryFilter {
                        filter: (*f).into(),
                        filter_type: PREFIX_MATCH.into(),
                    })
                    .collect()
            }),
        }
    }

    fn message(r: Result<(), RegistryError>) -> String {
        match r {
            Err(RegistryError::InvalidParameter(m)) => m,
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn prefix_filters_select_repositories() {
        let r = rule(&["us-west-2"], Some(&["prod/", "web"]));
        assert!(r.matches("prod/api"));
        assert!(r.matches("webapp"));
        assert!(!r.matches("dev/prod/api"));
        assert!(!r.matches("pro"));
        assert!(rule(&["us-west-2"], None).matches("anything"));
        assert!(rule(&["us-west-2"], Some(&[])).matches("anything"));
    }

    #[test]
    fn destinations_are_the_union_of_matching_rules_without_repeats() {
        let cfg = ReplicationConfiguration {
            rules: vec![
                rule(&["us-west-2", "eu-west-1"], Some(&["prod"])),
                rule(&["eu-west-1", "ap-south-1"], None),
                rule(&["ca-central-1"], Some(&["dev"])),
            ],
        };
        assert_eq!(
            cfg.destinations_for("prod/api"),
            vec![dest("us-west-2"), dest("eu-west-1"), dest("ap-south-1")]
        );
        assert_eq!(
            cfg.destinations_for("other"),
            vec![dest("eu-west-1"), dest("ap-south-1")]
        );
        assert!(
            ReplicationConfiguration::default()
                .destinations_for("prod")
                .is_empty()
        );
    }

    #[test]
    fn validation_follows_ecr() {
        let ok = ReplicationConfiguration {
            rules: vec![rule(&["us-west-2"], Some(&["prod"]))],
        };
        ok.validate("us-east-1", ACCOUNT).unwrap();
        ReplicationConfiguration::default()
            .validate("us-east-1", ACCOUNT)
            .unwrap();

        assert!(
            message(ok.validate("us-west-2", ACCOUNT))
                .contains("Replication destination cannot be the same as the source registry")
        );

        let other_account = ReplicationConfiguration {
            rules: vec![ReplicationRule {
                destinations: vec![Destination {
                    region: "us-west-2".into(),
                    registry_id: "123456789012".into(),
                }],
                repository_filters: None,
            }],
        };
        assert!(
            message(other_account.validate("us-east-1", ACCOUNT))
                .contains("cross-account replication is not supported")
        );

        let empty = ReplicationConfiguration {
            rules: vec![rule(&[], None)],
        };
        assert!(message(empty.validate("us-east-1", ACCOUNT)).contains("at least one destination"));

        let mut bad_filter = rule(&["us-west-2"], Some(&["prod"]));
        bad_filter.repository_filters.as_mut().unwrap()[0].filter_type = "WILDCARD".into();
        let bad = ReplicationConfiguration {
            rules: vec![bad_filter],
        };
        assert!(message(bad.validate("us-east-1", ACCOUNT)).contains("[PREFIX_MATCH]"));
    }

    #[test]
    fn at_most_25_distinct_destinations() {
        let regions: Vec<String> = (0..26).map(|i| format!("xx-region-{i}")).collect();
        let refs: Vec<&str> = regions.iter().map(String::as_str).collect();
        // 25 distinct destinations, some repeated across rules: allowed.
        let fits = ReplicationConfiguration {
            rules: vec![rule(&refs[..20], None), rule(&refs[15..25], Some(&["p"]))],
        };
        fits.validate("us-east-1", ACCOUNT).unwrap();
        let over = ReplicationConfiguration {
            rules: vec![rule(&refs[..20], None), rule(&refs[15..], Some(&["p"]))],
        };
        assert!(message(over.validate("us-east-1", ACCOUNT)).contains("at most 25 unique"));
    }
}
