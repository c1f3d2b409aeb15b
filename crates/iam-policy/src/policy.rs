//! Compiled policies: what evaluation runs on.
//!
//! Compiling happens once per document: actions are split at the colon into a lowercase service
//! prefix and a lowercase operation glob (actions are case-insensitive), resource ARNs into their
//! six colon-separated segments, each a case-sensitive glob (the sixth keeps its colons), policy
//! variables are located, condition values are parsed (numbers, dates, CIDRs), principals are
//! sorted into accounts, ARNs and service names.

use crate::condition::{Condition, OperatorSpec, Unresolved};
use crate::document::{Effect, PolicyDocument, PolicyKind, PrincipalType, Principals};
use crate::error::PolicyError;
use crate::glob::Glob;
use crate::vars::{Lookup, Template};

/// A validated policy compiled for evaluation. Cheap to share (`Arc<Policy>`), immutable.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: PolicyKind,
    statements: Box<[CompiledStatement]>,
}

impl Policy {
    /// Parses, validates and compiles `json` as a policy of `kind`.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Self, PolicyError> {
        Ok(Self::compile(&PolicyDocument::parse(json, kind)?))
    }

    /// Compiles a validated document.
    pub fn compile(doc: &PolicyDocument) -> Self {
        let variables = doc.variables_enabled();
        let statements = doc
            .statements
            .iter()
            .map(|st| CompiledStatement {
                sid: st.sid.as_deref().map(Into::into),
                effect: st.effect,
                principal: st
                    .principal
                    .as_ref()
                    .map(|p| CompiledPrincipal::compile(p, st.not_principal)),
                actions: ActionMatcher::compile(&st.actions, st.not_action),
                resources: match &st.resources {
                    None => ResourceMatcher::Attached,
                    Some(list) => ResourceMatcher::compile(list, st.not_resource, variables),
                },
                conditions: st
                    .conditions
                    .iter()
                    .map(|c| Condition::compile(c.operator, &c.key, &c.values, variables))
                    .collect(),
            })
            .collect();
        Policy {
            kind: doc.kind,
            statements,
        }
    }

    /// What the policy was validated as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The number of statements.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// The `Sid` of statement `index`, if it has one.
    pub fn sid(&self, index: usize) -> Option<&str> {
        self.statements.get(index).and_then(|s| s.sid.as_deref())
    }

    /// The condition operators the policy uses (for reports such as `SimulatePrincipalPolicy`'s
    /// missing context values).
    pub fn condition_operators(&self) -> impl Iterator<Item = OperatorSpec> + '_ {
        self.statements
            .iter()
            .flat_map(|s| s.conditions.iter().map(Condition::spec))
    }

    pub(crate) fn statements(&self) -> &[CompiledStatement] {
        &self.statements
    }
}

/// How a statement's principal element relates to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PrincipalMatch {
    /// Not named.
    None,
    /// Named through its account (an account id or `:root` ARN): the account delegates to its
    /// identity-based policies.
    Account,
    /// Named through the role of a role session, or the IAM user behind a federated user
    /// session: the grant is limited by the permissions boundary and session policies.
    Underlying,
    /// Named directly: its own ARN, `*`, or its service name.
    Direct,
}

/// What evaluation knows of the caller for principal matching.
pub(crate) struct CallerIds<'a> {
    pub(crate) arn: &'a str,
    pub(crate) account: &'a str,
    pub(crate) underlying_arn: Option<&'a str>,
    pub(crate) service: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledPrincipal {
    negated: bool,
    any: bool,
    aws_any: bool,
    accounts: Box<[Box<str>]>,
    arns: Box<[Box<str>]>,
    services: Box<[Box<str>]>,
    others: Box<[Box<str>]>,
}

impl CompiledPrincipal {
    fn compile(p: &Principals, negated: bool) -> Self {
        let mut c = CompiledPrincipal {
            negated,
            any: false,
            aws_any: false,
            accounts: Box::new([]),
            arns: Box::new([]),
            services: Box::new([]),
            others: Box::new([]),
        };
        match p {
            Principals::Any => c.any = true,
            Principals::Listed(list) => {
                let (mut accounts, mut arns, mut services, mut others) =
                    (vec![], vec![], vec![], vec![]);
                for (t, v) in list {
                    match t {
                        PrincipalType::Aws if v == "*" => c.aws_any = true,
                        PrincipalType::Aws => match root_account(v) {
                            Some(account) => accounts.push(account.into()),
                            None => arns.push(v.as_str().into()),
                        },
                        PrincipalType::Service => services.push(v.to_ascii_lowercase().into()),
                        PrincipalType::Federated | PrincipalType::CanonicalUser => {
                            others.push(v.as_str().into())
                        }
                    }
                }
                c.accounts = accounts.into();
                c.arns = arns.into();
                c.services = services.into();
                c.others = others.into();
            }
        }
        c
    }

    fn named(&self, caller: &CallerIds<'_>) -> PrincipalMatch {
        if let Some(service) = caller.service {
            return if self.any
                || self
                    .services
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(service))
            {
                PrincipalMatch::Direct
            } else {
                PrincipalMatch::None
            };
        }
        if self.any || self.aws_any || self.arns.iter().any(|a| &**a == caller.arn) {
            PrincipalMatch::Direct
        } else if caller
            .underlying_arn
            .is_some_and(|u| self.arns.iter().any(|a| &**a == u))
        {
            PrincipalMatch::Underlying
        } else if self.accounts.iter().any(|a| &**a == caller.account) {
            PrincipalMatch::Account
        } else {
            PrincipalMatch::None
        }
    }

    /// `Principal`: how the caller is named. `NotPrincipal`: a statement that applies to every
    /// caller it does not name applies as to a caller named directly.
    pub(crate) fn matches(&self, caller: &CallerIds<'_>) -> PrincipalMatch {
        let named = self.named(caller);
        if !self.negated {
            named
        } else if named == PrincipalMatch::None {
            PrincipalMatch::Direct
        } else {
            PrincipalMatch::None
        }
    }
}

/// `arn:aws:iam::123456789012:root` or `123456789012` → the account id.
fn root_account(v: &str) -> Option<&str> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v);
    }
    let rest = v.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (service == "iam" && region.is_empty() && resource == "root").then_some(account)
}

/// The `Action` (or `NotAction`) element, indexed by service prefix: a request's action is
/// looked up by its prefix (a binary search), then only that service's operation patterns are
/// tried, so a statement listing thousands of actions (`ReadOnlyAccess`) costs a few
/// comparisons for an action it does not name.
#[derive(Debug, Clone)]
pub(crate) struct ActionMatcher {
    negated: bool,
    any: bool,
    /// Lowercase service prefixes, sorted and distinct, each with its lowercase operation
    /// patterns.
    services: Box<[ServiceActions]>,
}

/// A lowercase service prefix and its lowercase operation patterns.
type ServiceActions = (Box<str>, Box<[Glob]>);

impl ActionMatcher {
    fn compile(actions: &[String], negated: bool) -> Self {
        let mut any = false;
        let mut by_service: std::collections::BTreeMap<String, Vec<Glob>> =
            std::collections::BTreeMap::new();
        for a in actions {
            let a = a.to_ascii_lowercase();
            match a.split_once(':') {
                _ if a == "*" => any = true,
                Some((service, op)) => {
                    let globs = by_service.entry(service.to_owned()).or_default();
                    let glob = Glob::new(op);
                    if !globs.contains(&glob) {
                        globs.push(glob);
                    }
                }
                None => {}
            }
        }
        ActionMatcher {
            negated,
            any,
            services: by_service
                .into_iter()
                .map(|(s, globs)| (s.into_boxed_str(), globs.into_boxed_slice()))
                .collect(),
        }
    }

    /// `service`/`operation`: the request action split at its colon.
    pub(crate) fn matches(&self, service: &str, operation: &str) -> bool {
        let listed = self.any
            || self
                .services
                .binary_search_by(|(s, _)| cmp_lowercase(s, service))
                .is_ok_and(|i| {
                    self.services[i]
                        .1
                        .iter()
                        .any(|g| g.matches_ignore_ascii_case(operation))
                });
        listed != self.negated
    }
}

/// Orders `lower` (lowercase) against `text` as if `text` were lowercased.
fn cmp_lowercase(lower: &str, text: &str) -> std::cmp::Ordering {
    lower
        .bytes()
        .cmp(text.bytes().map(|b| b.to_ascii_lowercase()))
}

#[derive(Debug, Clone)]
enum LastSegment {
    Fixed(Glob),
    Var(Template),
}

#[derive(Debug, Clone)]
pub(crate) struct ResourcePattern {
    /// The first five segments of an ARN pattern; empty for `*` and patterns with fewer than six
    /// segments, which match the whole ARN as one string.
    head: Box<[Glob]>,
    last: LastSegment,
}

impl ResourcePattern {
    fn compile(pattern: &str, variables: bool) -> Self {
        let segments: Vec<&str> = pattern.splitn(6, ':').collect();
        let var_at = if variables { pattern.find("${") } else { None };
        let head_len: usize = segments.iter().take(5).map(|s| s.len() + 1).sum();
        let split = segments.len() == 6 && var_at.is_none_or(|at| at >= head_len);
        let (head, last_text): (Box<[Glob]>, &str) = if split {
            (
                segments[..5].iter().map(|s| Glob::new(s)).collect(),
                segments[5],
            )
        } else {
            (Box::new([]), pattern)
        };
        let t = Template::parse(last_text, variables);
        let last = if t.has_variables() {
            LastSegment::Var(t)
        } else {
            LastSegment::Fixed(t.to_glob())
        };
        ResourcePattern { head, last }
    }

    fn matches(&self, arn: &str, env: &dyn Lookup) -> Result<bool, Unresolved> {
        let last = if self.head.is_empty() {
            arn
        } else {
            let mut parts = arn.splitn(6, ':');
            for g in self.head.iter() {
                match parts.next() {
                    Some(seg) if g.matches(seg) => {}
                    _ => return Ok(false),
                }
            }
            match parts.next() {
                Some(seg) => seg,
                None => return Ok(false),
            }
        };
        Ok(match &self.last {
            LastSegment::Fixed(g) => g.matches(last),
            LastSegment::Var(t) => t.resolve_glob(env).ok_or(Unresolved)?.matches(last),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ResourceMatcher {
    /// No `Resource` element (resource-based and trust policies): the attached resource.
    Attached,
    List {
        negated: bool,
        any: bool,
        patterns: Box<[ResourcePattern]>,
    },
}

impl ResourceMatcher {
    fn compile(list: &[String], negated: bool, variables: bool) -> Self {
        let mut any = false;
        let mut patterns = Vec::new();
        for r in list {
            if r == "*" {
                any = true;
            } else {
                patterns.push(ResourcePattern::compile(r, variables));
            }
        }
        ResourceMatcher::List {
            negated,
            any,
            patterns: patterns.into(),
        }
    }

    pub(crate) fn matches(&self, resource: &str, env: &dyn Lookup) -> Result<bool, Unresolved> {
        match self {
            ResourceMatcher::Attached => Ok(true),
            ResourceMatcher::List {
                negated,
                any,
                patterns,
            } => {
                let mut listed = *any;
                if !listed {
                    for p in patterns.iter() {
                        if p.matches(resource, env)? {
                            listed = true;
                            break;
                        }
                    }
                }
                Ok(listed != *negated)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledStatement {
    pub(crate) sid: Option<Box<str>>,
    pub(crate) effect: Effect,
    pub(crate) principal: Option<CompiledPrincipal>,
    pub(crate) actions: ActionMatcher,
    pub(crate) resources: ResourceMatcher,
    pub(crate) conditions: Box<[Condition]>,
}

impl CompiledStatement {
    /// Whether the statement applies to the action, resource and request context (the
    /// principal is checked by the caller). A policy variable without a value makes the
    /// statement not apply.
    pub(crate) fn applies(
        &self,
        service: &str,
        operation: &str,
        resource: &str,
        env: &dyn Lookup,
    ) -> bool {
        if !self.actions.matches(service, operation) {
            return false;
        }
        match self.resources.matches(resource, env) {
            Ok(true) => {}
            Ok(false) | Err(Unresolved) => return false,
        }
        self.conditions.iter().all(|c| c.evaluate(env) == Ok(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::Values;

    struct NoVars;
    impl Lookup for NoVars {
        fn lookup(&self, _: &str) -> Option<Values<'_>> {
            None
        }
    }

    #[test]
    fn actions_are_case_insensitive_and_split_at_the_colon() {
        let m =
            ActionMatcher::compile(&["ECS:Describe*".into(), "ecr:BatchGetImage".into()], false);
        assert!(m.matches("ecs", "DescribeClusters"));
        assert!(m.matches("ECS", "describeservices"));
        assert!(m.matches("ecr", "batchgetimage"));
        assert!(!m.matches("ecr", "PutImage"));
        assert!(!m.matches("ecsx", "DescribeClusters"));
        assert!(!m.matches("ec", "DescribeClusters"));
        assert!(!m.matches("", "DescribeClusters"));
        let not = ActionMatcher::compile(&["iam:*".into()], true);
        assert!(not.matches("ecs", "RunTask"));
        assert!(!not.matches("IAM", "CreateUser"));
    }

    #[test]
    fn resources_match_segment_by_segment_and_case_sensitively() {
        let m = ResourceMatcher::compile(
            &["arn:aws:ecs:*:123456789012:task-definition/web:*".into()],
            false,
            true,
        );
        assert_eq!(
            m.matches(
                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
                &NoVars
            ),
            Ok(true)
        );
        assert_eq!(
            m.matches(
                "arn:aws:ecs:us-east-1:123456789012:task-definition/Web:1",
                &NoVars
            ),
            Ok(false)
        );
        assert_eq!(
            m.matches(
                "arn:aws:ecs:us-east-1:210987654321:task-definition/web:1",
                &NoVars
            ),
            Ok(false)
        );
        assert_eq!(m.matches("*", &NoVars), Ok(false));
        // A `*` does not run across segments.
        let m =
            ResourceMatcher::compile(&["arn:aws:ecs:us-east-1:*:cluster/*".into()], false, true);
        assert_eq!(
            m.matches("arn:aws:ecs:us-east-1:1:2:cluster/x", &NoVars),
            Ok(false)
        );
        let star = ResourceMatcher::compile(&["*".into()], false, true);
        assert_eq!(star.matches("*", &NoVars), Ok(true));
        let not = ResourceMatcher::compile(&["arn:aws:s3:::b/*".into()], true, true);
        assert_eq!(not.matches("arn:aws:s3:::b/k", &NoVars), Ok(false));
        assert_eq!(not.matches("arn:aws:s3:::c/k", &NoVars), Ok(true));
    }

    #[test]
    fn root_arns_and_account_ids_name_accounts() {
        assert_eq!(root_account("123456789012"), Some("123456789012"));
        assert_eq!(
            root_account("arn:aws:iam::123456789012:root"),
            Some("123456789012")
        );
        assert_eq!(root_account("arn:aws:iam::123456789012:user/root"), None);
    }
}
