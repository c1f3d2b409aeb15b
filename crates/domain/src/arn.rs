//! Amazon Resource Names as ECS writes them: `arn:aws:ecs:<region>:<account>:<type>/<path>`.

use std::fmt;

/// A parsed ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    /// Everything after the account, e.g. `cluster/default` or `task-definition/web:3`.
    pub resource: String,
}

/// Why a string is not an ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid arn: {0}")]
pub struct ArnError(pub String);

impl Arn {
    pub fn new(service: &str, region: &str, account: &str, resource: impl Into<String>) -> Self {
        Self {
            partition: "aws".into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        }
    }

    pub fn parse(s: &str) -> Result<Self, ArnError> {
        let mut parts = s.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(ArnError(s.to_owned()));
        };
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(ArnError(s.to_owned()));
        }
        Ok(Self {
            partition: partition.into(),
            service: service.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        })
    }

    /// The resource type (`cluster`, `task-definition`, ...) and the rest after the first `/`.
    pub fn resource_parts(&self) -> (&str, &str) {
        match self.resource.split_once('/') {
            Some((t, rest)) => (t, rest),
            None => (self.resource.as_str(), ""),
        }
    }

    pub fn cluster(region: &str, account: &str, name: &str) -> Self {
        Self::new("ecs", region, account, format!("cluster/{name}"))
    }

    pub fn task_definition(region: &str, account: &str, family: &str, revision: u32) -> Self {
        Self::new(
            "ecs",
            region,
            account,
            format!("task-definition/{family}:{revision}"),
        )
    }

    pub fn container_instance(region: &str, account: &str, cluster: &str, id: &str) -> Self {
        Self::new(
            "ecs",
            region,
            account,
            format!("container-instance/{cluster}/{id}"),
        )
    }

    pub fn task(region: &str, account: &str, cluster: &str, id: &str) -> Self {
        Self::new("ecs", region, account, format!("task/{cluster}/{id}"))
    }

    pub fn service(region: &str, account: &str, cluster: &str, name: &str) -> Self {
        Self::new("ecs", region, account, format!("service/{cluster}/{name}"))
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

/// A reference to a cluster as users give it: a name or a cluster ARN. Returns the name.
pub fn cluster_name_from_ref(reference: &str) -> Result<String, ArnError> {
    if reference.starts_with("arn:") {
        let arn = Arn::parse(reference)?;
        match arn.resource_parts() {
            ("cluster", name) if !name.is_empty() && !name.contains('/') => Ok(name.to_owned()),
            _ => Err(ArnError(reference.to_owned())),
        }
    } else {
        Ok(reference.to_owned())
    }
}

/// A reference to a container instance: an id or an ARN (`container-instance/<cluster>/<id>` or the
/// old `container-instance/<id>` form). Returns the id.
pub fn container_instance_id_from_ref(reference: &str) -> Result<String, ArnError> {
    if reference.starts_with("arn:") {
        let arn = Arn::parse(reference)?;
        match arn.resource_parts() {
            ("container-instance", rest) if !rest.is_empty() => {
                Ok(rest.rsplit('/').next().unwrap_or(rest).to_owned())
            }
            _ => Err(ArnError(reference.to_owned())),
        }
    } else {
        Ok(reference.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_round_trips() {
        let a = Arn::task_definition("us-east-1", "000000000000", "web", 3);
        let s = a.to_string();
        assert_eq!(
            s,
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"
        );
        assert_eq!(Arn::parse(&s).unwrap(), a);
        assert_eq!(a.resource_parts(), ("task-definition", "web:3"));
    }

    #[test]
    fn cluster_refs_accept_names_and_arns() {
        assert_eq!(cluster_name_from_ref("prod").unwrap(), "prod");
        assert_eq!(
            cluster_name_from_ref("arn:aws:ecs:eu-west-1:1:cluster/prod").unwrap(),
            "prod"
        );
        assert!(cluster_name_from_ref("arn:aws:ecs:eu-west-1:1:service/prod/x").is_err());
        assert!(cluster_name_from_ref("arn:nope").is_err());
    }

    #[test]
    fn container_instance_refs_accept_both_arn_forms() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(container_instance_id_from_ref(id).unwrap(), id);
        let new = format!("arn:aws:ecs:us-east-1:0:container-instance/prod/{id}");
        let old = format!("arn:aws:ecs:us-east-1:0:container-instance/{id}");
        assert_eq!(container_instance_id_from_ref(&new).unwrap(), id);
        assert_eq!(container_instance_id_from_ref(&old).unwrap(), id);
    }
}
