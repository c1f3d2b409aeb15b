//! Elastic Load Balancing v2 (`elasticloadbalancing`, API version 2015-12-01) over the awsQuery
//! protocol, and the channel `gantry lb` proxies use to follow it.
//!
//! - [`Elbv2Service`]: a [`QueryService`] for the front. Every operation of the model is listed in
//!   [`Elbv2Operation`]; the implemented ones live in one module per resource, the rest answer
//!   `OperationNotPermitted` (see `COMPAT.md`).
//! - [`lb_router`]: `GET /lb/v1/config` (newline-delimited JSON snapshots of the region's whole
//!   configuration, one on connect and one after every change, plus heartbeats) and
//!   `POST /lb/v1/health` (a proxy's active health-check results) and `POST /lb/v1/metrics` (a
//!   proxy's traffic, published as CloudWatch's `AWS/ApplicationELB` and `AWS/NetworkELB`
//!   metrics, see [`usage`]), all SigV4-signed with the service name `elasticloadbalancing`.
//! - [`register_targets`], [`deregister_targets`], [`target_health`], [`target_group`]: what
//!   the ECS service runner calls directly, without HTTP.
//!
//! State lives in the store under `elbv2/<region>/` (see [`keys`]). Must not depend on Docker.

#[rustfmt::skip]
mod model_constraints;
mod attributes;
mod certificates;
pub mod channel;
mod error;
pub mod health;
pub mod keys;
mod limits;
mod listeners;
mod load_balancers;
mod rules;
mod tags;
mod target_groups;
mod targets;
pub mod usage;
mod wire;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gantry_aws_proto::AwsError;
use gantry_aws_proto::query::QueryRequest;
use gantry_domain::lb::{LoadBalancer, TargetGroup};
use gantry_front::{Protocol, QueryService, RequestContext, ServiceSpec};
use gantry_store::{Store, StoreExt, Txn, TxnOutcome, Versioned};

pub use certificates::listeners_using_certificate;
pub use channel::{LbChannel, lb_router};
pub use error::Elbv2Error;
pub use health::{HEALTH_REPORT_TTL_MS, TargetHealthInfo};
pub use rules::{RuleForward, rule_forward, set_rule_weights};
pub use targets::{
    TargetSpec, deregister_targets, register_targets, register_targets_with_address, sweep_expired,
    target_health,
};

use keys::ElbArn;
use wire::Params;

/// The XML namespace of ELBv2 responses.
pub const XMLNS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

gantry_front::operations! {
/// Every operation of the ELBv2 API model.
pub enum Elbv2Operation {
AddListenerCertificates,
AddTags,
AddTrustStoreRevocations,
CreateListener,
CreateLoadBalancer,
CreateRule,
CreateTargetGroup,
CreateTrustStore,
DeleteListener,
DeleteLoadBalancer,
DeleteRule,
DeleteSharedTrustStoreAssociation,
DeleteTargetGroup,
DeleteTrustStore,
DeregisterTargets,
DescribeAccountLimits,
DescribeCapacityReservation,
DescribeListenerAttributes,
DescribeListenerCertificates,
DescribeListeners,
DescribeLoadBalancerAttributes,
DescribeLoadBalancers,
DescribeRules,
DescribeSSLPolicies,
DescribeTags,
DescribeTargetGroupAttributes,
DescribeTargetGroups,
DescribeTargetHealth,
DescribeTrustStoreAssociations,
DescribeTrustStoreRevocations,
DescribeTrustStores,
GetResourcePolicy,
GetTrustStoreCaCertificatesBundle,
GetTrustStoreRevocationContent,
ModifyCapacityReservation,
ModifyIpPools,
ModifyListener,
ModifyListenerAttributes,
ModifyLoadBalancerAttributes,
ModifyRule,
ModifyTargetGroup,
ModifyTargetGroupAttributes,
ModifyTrustStore,
RegisterTargets,
RemoveListenerCertificates,
RemoveTags,
RemoveTrustStoreRevocations,
SetIpAddressType,
SetRulePriorities,
SetSecurityGroups,
SetSubnets,
}
}

/// How the front reaches ELBv2.
pub static SPEC: ServiceSpec = ServiceSpec {
    iam_prefix: "elasticloadbalancing",
    signing_name: "elasticloadbalancing",
    protocol: Protocol::Query {
        xmlns: XMLNS,
        version: "2015-12-01",
    },
    operations: Elbv2Operation::NAMES,
    constraints: &model_constraints::CONSTRAINTS,
};

/// A subnet as load balancers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetRef {
    pub id: String,
    pub vpc_id: String,
    pub availability_zone: String,
}

/// Why a network lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkLookupError {
    #[error("subnet {0} not found")]
    SubnetNotFound(String),
    #[error("security group {0} not found")]
    SecurityGroupNotFound(String),
    #[error("{0}")]
    Internal(String),
}

/// EC2's subnets and security groups, as load balancers need them (implemented by the
/// composition root over the EC2 crate's records; this crate never depends on it).
#[async_trait]
pub trait Networks: Send + Sync {
    async fn subnets(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<SubnetRef>, NetworkLookupError>;
    /// (group id, VPC id) of each group.
    async fn security_groups(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, NetworkLookupError>;
    /// The default security group of a VPC.
    async fn default_security_group(
        &self,
        region: &str,
        vpc_id: &str,
    ) -> Result<Option<String>, NetworkLookupError>;
}

/// ACM's certificates as listeners need them (implemented by the composition root over the
/// ACM crate; this crate never depends on it).
#[async_trait]
pub trait Certificates: Send + Sync + fmt::Debug {
    /// Whether `arn` names a certificate of `region`.
    async fn exists(&self, region: &str, arn: &str) -> Result<bool, String>;
    /// The certificate `arn` names with its chain and private key, for the proxies; `None` when
    /// it no longer exists.
    async fn material(
        &self,
        region: &str,
        arn: &str,
    ) -> Result<Option<gantry_domain::lb::CertificateMaterial>, String>;
}

/// The ELBv2 API.
pub struct Elbv2Service {
    /// ACM; without it HTTPS and TLS listeners are refused.
    pub(crate) certificates: Option<Arc<dyn Certificates>>,
    pub(crate) store: Arc<dyn Store>,
    /// EC2's subnets and groups; without them subnets and groups are stored as given.
    pub(crate) networks: Option<Arc<dyn Networks>>,
    /// Load balancer DNS names are `<name>-<10 digits>.<region>.<dns_suffix>`.
    pub(crate) dns_suffix: String,
}

impl fmt::Debug for Elbv2Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elbv2Service")
            .field("dns_suffix", &self.dns_suffix)
            .finish_non_exhaustive()
    }
}

/// Default DNS suffix: `*.localhost` names resolve to the loopback address in curl, browsers and
/// systemd-resolved, which is where `gantry up` runs its proxy.
pub const DEFAULT_DNS_SUFFIX: &str = "elb.localhost";

impl Elbv2Service {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            certificates: None,
            networks: None,
            dns_suffix: DEFAULT_DNS_SUFFIX.to_owned(),
        }
    }

    /// Validates load balancers' subnets and security groups against EC2.
    pub fn with_networks(mut self, networks: Arc<dyn Networks>) -> Self {
        self.networks = Some(networks);
        self
    }

    /// Checks listener certificates against ACM (and allows HTTPS and TLS listeners).
    pub fn with_certificates(mut self, certificates: Arc<dyn Certificates>) -> Self {
        self.certificates = Some(certificates);
        self
    }

    /// Uses another DNS suffix for load balancer names (a zone that points at the `gantry lb`
    /// hosts).
    pub fn with_dns_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.dns_suffix = suffix.into();
        self
    }

    /// Whether Gantry serves `op` (the others answer `OperationNotPermitted`).
    pub fn is_implemented(op: Elbv2Operation) -> bool {
        use Elbv2Operation::*;
        matches!(
            op,
            CreateLoadBalancer
                | DescribeLoadBalancers
                | DeleteLoadBalancer
                | SetSubnets
                | SetSecurityGroups
                | SetIpAddressType
                | DescribeLoadBalancerAttributes
                | ModifyLoadBalancerAttributes
                | CreateTargetGroup
                | DescribeTargetGroups
                | ModifyTargetGroup
                | DeleteTargetGroup
                | DescribeTargetGroupAttributes
                | ModifyTargetGroupAttributes
                | CreateListener
                | DescribeListeners
                | ModifyListener
                | DeleteListener
                | DescribeListenerAttributes
                | ModifyListenerAttributes
                | CreateRule
                | DescribeRules
                | ModifyRule
                | DeleteRule
                | SetRulePriorities
                | RegisterTargets
                | DeregisterTargets
                | DescribeTargetHealth
                | AddTags
                | RemoveTags
                | DescribeTags
                | AddListenerCertificates
                | RemoveListenerCertificates
                | DescribeListenerCertificates
                | DescribeSSLPolicies
                | DescribeAccountLimits
        )
    }

    async fn dispatch(
        &self,
        op: Elbv2Operation,
        p: &Params,
        ctx: &RequestContext,
    ) -> Result<String, Elbv2Error> {
        use Elbv2Operation::*;
        match op {
            CreateLoadBalancer => load_balancers::create(self, p, ctx).await,
            DescribeLoadBalancers => load_balancers::describe(self, p, ctx).await,
            DeleteLoadBalancer => load_balancers::delete(self, p, ctx).await,
            SetSubnets => load_balancers::set_subnets(self, p, ctx).await,
            SetSecurityGroups => load_balancers::set_security_groups(self, p, ctx).await,
            SetIpAddressType => load_balancers::set_ip_address_type(self, p, ctx).await,
            DescribeLoadBalancerAttributes => {
                load_balancers::describe_attributes(self, p, ctx).await
            }
            ModifyLoadBalancerAttributes => load_balancers::modify_attributes(self, p, ctx).await,
            CreateTargetGroup => target_groups::create(self, p, ctx).await,
            DescribeTargetGroups => target_groups::describe(self, p, ctx).await,
            ModifyTargetGroup => target_groups::modify(self, p, ctx).await,
            DeleteTargetGroup => target_groups::delete(self, p, ctx).await,
            DescribeTargetGroupAttributes => target_groups::describe_attributes(self, p, ctx).await,
            ModifyTargetGroupAttributes => target_groups::modify_attributes(self, p, ctx).await,
            CreateListener => listeners::create(self, p, ctx).await,
            DescribeListeners => listeners::describe(self, p, ctx).await,
            ModifyListener => listeners::modify(self, p, ctx).await,
            DeleteListener => listeners::delete(self, p, ctx).await,
            DescribeListenerAttributes => listeners::describe_attributes(self, p, ctx).await,
            ModifyListenerAttributes => listeners::modify_attributes(self, p, ctx).await,
            AddListenerCertificates => certificates::add(self, p, ctx).await,
            RemoveListenerCertificates => certificates::remove(self, p, ctx).await,
            DescribeListenerCertificates => certificates::describe(self, p, ctx).await,
            DescribeSSLPolicies => certificates::describe_ssl_policies(p),
            DescribeAccountLimits => limits::describe(p),
            CreateRule => rules::create(self, p, ctx).await,
            DescribeRules => rules::describe(self, p, ctx).await,
            ModifyRule => rules::modify(self, p, ctx).await,
            DeleteRule => rules::delete(self, p, ctx).await,
            SetRulePriorities => rules::set_priorities(self, p, ctx).await,
            RegisterTargets => targets::register_op(self, p, ctx).await,
            DeregisterTargets => targets::deregister_op(self, p, ctx).await,
            DescribeTargetHealth => targets::describe_health_op(self, p, ctx).await,
            AddTags => tags::add(self, p, ctx).await,
            RemoveTags => tags::remove(self, p, ctx).await,
            DescribeTags => tags::describe(self, p, ctx).await,
            other => Err(Elbv2Error::OperationNotPermitted(format!(
                "The operation {other} is not supported by this endpoint."
            ))),
        }
    }
}

#[async_trait]
impl QueryService for Elbv2Service {
    fn spec(&self) -> &'static ServiceSpec {
        &SPEC
    }

    async fn call(
        &self,
        action: &str,
        req: &QueryRequest,
        ctx: &RequestContext,
    ) -> Result<String, AwsError> {
        let Ok(op) = action.parse::<Elbv2Operation>() else {
            return Err(Elbv2Error::UnknownAction(action.to_owned()).into());
        };
        let p = Params::from_request(req);
        self.dispatch(op, &p, ctx).await.map_err(AwsError::from)
    }
}

const MAX_CAS_ATTEMPTS: usize = 32;

/// Builds a transaction from fresh reads and commits it; on a compare-and-swap conflict, reads
/// and builds again. An empty transaction commits nothing and returns the result as is.
pub(crate) async fn commit_with_retry<F, Fut, R>(
    store: &dyn Store,
    mut build: F,
) -> Result<R, Elbv2Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Txn, R), Elbv2Error>>,
{
    let mut last_key = String::new();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (txn, result) = build().await?;
        if txn.is_empty() {
            return Ok(result);
        }
        match store.commit(txn).await? {
            TxnOutcome::Committed { .. } => return Ok(result),
            TxnOutcome::Conflict { key } => last_key = key,
        }
    }
    Err(Elbv2Error::Contention(last_key))
}

/// The load balancer an ARN names.
pub(crate) async fn load_balancer_by_arn(
    store: &dyn Store,
    region: &str,
    arn: &str,
) -> Result<Versioned<LoadBalancer>, Elbv2Error> {
    let not_found = || Elbv2Error::LoadBalancerNotFound(arn.to_owned());
    // Not a load balancer ARN of this region (malformed, another kind, region or service).
    let Some(ElbArn::LoadBalancer { name, id }) = keys::parse_arn(arn, region) else {
        return Err(Elbv2Error::validation(format!(
            "'{arn}' is not a valid load balancer ARN"
        )));
    };
    match store
        .get_typed::<LoadBalancer>(&keys::load_balancer(region, &name))
        .await?
    {
        Some(lb) if lb.value.id == id => Ok(lb),
        _ => Err(not_found()),
    }
}

/// The target group an ARN names.
pub(crate) async fn target_group_by_arn(
    store: &dyn Store,
    region: &str,
    arn: &str,
) -> Result<Versioned<TargetGroup>, Elbv2Error> {
    let not_found = || Elbv2Error::TargetGroupNotFound(arn.to_owned());
    // Not a target group ARN of this region (malformed, another kind, region or service).
    let Some(ElbArn::TargetGroup { name, id }) = keys::parse_arn(arn, region) else {
        return Err(Elbv2Error::validation(format!(
            "'{arn}' is not a valid target group ARN"
        )));
    };
    match store
        .get_typed::<TargetGroup>(&keys::target_group(region, &name))
        .await?
    {
        Some(tg) if tg.value.id == id => Ok(tg),
        _ => Err(not_found()),
    }
}

/// A target group by ARN, for callers outside the API (ECS reads the deregistration delay and
/// health-check settings). `None` when it does not exist.
pub async fn target_group(
    store: &dyn Store,
    region: &str,
    arn: &str,
) -> Result<Option<TargetGroup>, Elbv2Error> {
    if !matches!(
        keys::parse_arn(arn, region),
        Some(ElbArn::TargetGroup { .. })
    ) {
        return Ok(None);
    }
    match target_group_by_arn(store, region, arn).await {
        Ok(tg) => Ok(Some(tg.value)),
        Err(Elbv2Error::TargetGroupNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A target group by name (CodeDeploy's deployment groups name their target groups); `None`
/// when it does not exist.
pub async fn target_group_named(
    store: &dyn Store,
    region: &str,
    name: &str,
) -> Result<Option<TargetGroup>, Elbv2Error> {
    Ok(store
        .get_typed::<TargetGroup>(&keys::target_group(region, name))
        .await?
        .map(|v| v.value))
}

/// The ARN of a listener's default rule (whose forward action CodeDeploy's traffic shifts
/// rewrite with [`set_rule_weights`]); `None` when the listener does not exist.
pub async fn listener_default_rule(
    store: &dyn Store,
    region: &str,
    listener_arn: &str,
) -> Result<Option<String>, Elbv2Error> {
    let Some(ElbArn::Listener { lb_name, lb_id, id }) = keys::parse_arn(listener_arn, region)
    else {
        return Ok(None);
    };
    let Some(lb) = store
        .get_typed::<LoadBalancer>(&keys::load_balancer(region, &lb_name))
        .await?
    else {
        return Ok(None);
    };
    if lb.value.id != lb_id {
        return Ok(None);
    }
    Ok(lb
        .value
        .listeners
        .iter()
        .find(|l| l.id == id)
        .map(|l| l.arn.replacen(":listener/", ":listener-rule/", 1) + "/" + &l.default_rule_id))
}

/// The ARNs of the load balancers whose listeners or rules forward to `tg_arn` (ECS refuses a
/// service whose target group has none).
pub async fn target_group_load_balancers(
    store: &dyn Store,
    region: &str,
    tg_arn: &str,
) -> Result<Vec<String>, Elbv2Error> {
    let lbs = all_load_balancers(store, region).await?;
    Ok(lbs_using(&lbs, tg_arn))
}

pub(crate) async fn all_load_balancers(
    store: &dyn Store,
    region: &str,
) -> Result<Vec<LoadBalancer>, Elbv2Error> {
    Ok(store
        .scan_all_typed::<LoadBalancer>(&keys::load_balancers(region))
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

/// ARNs of the load balancers in `lbs` that send traffic to `tg_arn`.
pub(crate) fn lbs_using(lbs: &[LoadBalancer], tg_arn: &str) -> Vec<String> {
    lbs.iter()
        .filter(|lb| {
            lb.listeners.iter().any(|l| {
                l.default_actions
                    .iter()
                    .chain(l.rules.iter().flat_map(|r| r.actions.iter()))
                    .any(|a| a.target_group_arns().any(|t| t == tg_arn))
            })
        })
        .map(|lb| lb.arn.clone())
        .collect()
}

/// Checks the target groups `actions` forward to exist and fit a load balancer of type `lb_type`
/// (HTTP groups behind application load balancers, TCP, UDP or TCP_UDP groups behind network
/// ones; which of those a network listener takes is checked with its protocol by the listener).
pub(crate) async fn check_action_targets(
    store: &dyn Store,
    region: &str,
    lb_type: gantry_domain::lb::LoadBalancerType,
    actions: &[gantry_domain::lb::Action],
) -> Result<(), Elbv2Error> {
    use gantry_domain::lb::{Action, LoadBalancerType};
    for a in actions {
        if lb_type == LoadBalancerType::Network && !matches!(a, Action::Forward { .. }) {
            return Err(Elbv2Error::InvalidAction(format!(
                "Action type '{}' is not supported on network load balancers",
                a.type_str()
            )));
        }
        for arn in a.target_group_arns() {
            let tg = target_group_by_arn(store, region, arn).await?.value;
            let http = matches!(tg.protocol.as_str(), "HTTP" | "HTTPS");
            if http != (lb_type == LoadBalancerType::Application) {
                return Err(Elbv2Error::IncompatibleProtocols(format!(
                    "The target group '{arn}' has protocol {} which is not compatible with a {} load balancer",
                    tg.protocol,
                    lb_type.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// Wraps one `<member>` list result: `<{tag}><member>..</member>...</{tag}>`.
pub(crate) fn xml_list<T>(
    tag: &str,
    items: &[T],
    f: impl Fn(&mut gantry_aws_proto::query::XmlWriter, &T),
) -> gantry_aws_proto::query::XmlWriter {
    let mut w = gantry_aws_proto::query::XmlWriter::new();
    wire::write_list(&mut w, tag, items, f);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_operation_is_listed_once() {
        assert_eq!(Elbv2Operation::ALL.len(), 51);
        let implemented = Elbv2Operation::ALL
            .iter()
            .filter(|o| Elbv2Service::is_implemented(**o))
            .count();
        assert_eq!(implemented, 36);
        for op in Elbv2Operation::ALL {
            assert_eq!(op.as_str().parse::<Elbv2Operation>(), Ok(*op));
        }
    }
}
