//! Policy documents: JSON → [`PolicyDocument`], validated for its [`PolicyKind`] with IAM's
//! `MalformedPolicyDocument` wording.
//!
//! Checks run in the order IAM applies them, so a document with several faults gets the message
//! IAM gives first: syntax (JSON, elements, types, operators), `Version`, legacy parsing
//! (`Effect` case, dates, resource shape), principals, statement ids, actions present,
//! resources present, resource ARN format, action prefixes.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::condition::{OperatorSpec, date_value_is_valid};
use crate::error::PolicyError;

/// What a document is used as; decides which elements it must and may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user, group or role (managed or inline). No `Principal`.
    Identity,
    /// Attached to a resource (ECR repository or registry policy, secret policy). Needs
    /// `Principal`; `Resource` is optional (the resource it is attached to).
    Resource,
    /// A role's trust policy (`AssumeRolePolicyDocument`). Needs `Principal`; no `Resource`.
    Trust,
    /// An inline or managed session policy passed to `AssumeRole`. No `Principal`.
    Session,
    /// A managed policy used as a permissions boundary. No `Principal`.
    PermissionsBoundary,
}

impl PolicyKind {
    /// Whether IAM stores the document as an identity-style policy (no principal, `Resource`
    /// required, `Version` 2012-10-17).
    fn is_identity_like(self) -> bool {
        matches!(
            self,
            PolicyKind::Identity | PolicyKind::Session | PolicyKind::PermissionsBoundary
        )
    }
}

/// The policy language version (`Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
    /// `2008-10-17`: the original language; `${...}` is plain text.
    V2008_10_17,
}

impl PolicyVersion {
    /// The version as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2012_10_17 => "2012-10-17",
            PolicyVersion::V2008_10_17 => "2008-10-17",
        }
    }
}

/// `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    /// `Allow` or `Deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// The type of a listed principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalType {
    /// `AWS`: `*`, an account id, or an IAM/STS ARN.
    Aws,
    /// `Service`: a service principal such as `ecs-tasks.amazonaws.com`.
    Service,
    /// `Federated`: an identity provider.
    Federated,
    /// `CanonicalUser`: an S3 canonical user id.
    CanonicalUser,
}

impl PrincipalType {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Aws => "AWS",
            PrincipalType::Service => "Service",
            PrincipalType::Federated => "Federated",
            PrincipalType::CanonicalUser => "CanonicalUser",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "AWS" => Some(PrincipalType::Aws),
            "Service" => Some(PrincipalType::Service),
            "Federated" => Some(PrincipalType::Federated),
            "CanonicalUser" => Some(PrincipalType::CanonicalUser),
            _ => None,
        }
    }
}

/// `Principal` / `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principals {
    /// `"Principal": "*"`: everyone.
    Any,
    /// Listed principals, in document order.
    Listed(Vec<(PrincipalType, String)>),
}

/// One condition: operator (with qualifier and `IfExists`), key, policy values as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionEntry {
    pub operator: OperatorSpec,
    pub key: String,
    pub values: Vec<String>,
}

/// One statement, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `Principal` or `NotPrincipal` (see `not_principal`); `None` in identity policies.
    pub principal: Option<Principals>,
    pub not_principal: bool,
    /// `Action` or `NotAction` (see `not_action`); never empty.
    pub actions: Vec<String>,
    pub not_action: bool,
    /// `Resource` or `NotResource` (see `not_resource`); `None` where the kind allows leaving it
    /// out (resource-based and trust policies): the statement then covers the resource the
    /// policy is attached to.
    pub resources: Option<Vec<String>>,
    pub not_resource: bool,
    pub conditions: Vec<ConditionEntry>,
}

/// A validated policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    pub kind: PolicyKind,
    /// `None` when the document has no `Version` (the 2008-10-17 language).
    pub version: Option<PolicyVersion>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses and validates `json` as a policy of `kind`.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(json).map_err(|_| PolicyError::Syntax)?;
        Self::from_value(&value, kind)
    }

    /// Validates an already-parsed JSON value as a policy of `kind`.
    pub fn from_value(value: &Value, kind: PolicyKind) -> Result<Self, PolicyError> {
        let doc = syntax(value, kind)?;
        if kind.is_identity_like() && doc.version != Some(PolicyVersion::V2012_10_17) {
            return Err(PolicyError::Version);
        }
        if !effect_case_is_exact(value) {
            return Err(PolicyError::LegacyParsing);
        }
        semantics(&doc)?;
        Ok(doc)
    }

    /// Whether policy variables are active (`Version` 2012-10-17).
    pub fn variables_enabled(&self) -> bool {
        self.version == Some(PolicyVersion::V2012_10_17)
    }
}

/// Stage 1: JSON shape. Every fault here is "Syntax errors in policy." except a missing
/// `Effect` in a resource-based policy.
fn syntax(value: &Value, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
    let obj = value.as_object().ok_or(PolicyError::Syntax)?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return Err(PolicyError::Syntax);
        }
    }
    let version = match obj.get("Version") {
        None => None,
        Some(Value::String(v)) if v == "2012-10-17" => Some(PolicyVersion::V2012_10_17),
        Some(Value::String(v)) if v == "2008-10-17" => Some(PolicyVersion::V2008_10_17),
        Some(_) => return Err(PolicyError::Syntax),
    };
    let id = match obj.get("Id") {
        None => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => return Err(PolicyError::Syntax),
    };
    let raw: Vec<&Map<String, Value>> = match obj.get("Statement") {
        Some(Value::Object(s)) => vec![s],
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|s| s.as_object().ok_or(PolicyError::Syntax))
            .collect::<Result<_, _>>()?,
        _ => return Err(PolicyError::Syntax),
    };
    let statements = raw
        .into_iter()
        .map(|s| statement_syntax(s, kind))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicyDocument {
        kind,
        version,
        id,
        statements,
    })
}

/// A statement as written, before the semantic checks: the raw `Effect` text is kept for the
/// legacy (case-sensitive) check.
fn statement_syntax(s: &Map<String, Value>, kind: PolicyKind) -> Result<Statement, PolicyError> {
    for key in s.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(PolicyError::Syntax);
        }
    }
    let both = |a: &str, b: &str| s.contains_key(a) && s.contains_key(b);
    if both("Action", "NotAction")
        || both("Resource", "NotResource")
        || both("Principal", "NotPrincipal")
    {
        return Err(PolicyError::Syntax);
    }
    let effect = match s.get("Effect") {
        None if kind == PolicyKind::Resource => return Err(PolicyError::MissingField("Effect")),
        None => return Err(PolicyError::Syntax),
        Some(Value::String(e)) if e.eq_ignore_ascii_case("allow") => Effect::Allow,
        Some(Value::String(e)) if e.eq_ignore_ascii_case("deny") => Effect::Deny,
        Some(_) => return Err(PolicyError::Syntax),
    };
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => return Err(PolicyError::Syntax),
    };
    let (actions, not_action) = match (s.get("Action"), s.get("NotAction")) {
        (Some(v), None) => (string_list(v)?, false),
        (None, Some(v)) => (string_list(v)?, true),
        _ => (Vec::new(), false),
    };
    let (resources, not_resource) = match (s.get("Resource"), s.get("NotResource")) {
        (Some(v), None) => (Some(string_list(v)?), false),
        (None, Some(v)) => (Some(string_list(v)?), true),
        _ => (None, false),
    };
    let (principal, not_principal) = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(v), None) => (Some(principals(v)?), false),
        (None, Some(v)) => (Some(principals(v)?), true),
        _ => (None, false),
    };
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(v) => conditions(v)?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        not_principal,
        actions,
        not_action,
        resources,
        not_resource,
        conditions,
    })
}

fn string_list(v: &Value) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or(PolicyError::Syntax))
            .collect(),
        _ => Err(PolicyError::Syntax),
    }
}

fn principals(v: &Value) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Any),
        Value::Object(map) if !map.is_empty() => {
            let mut out = Vec::new();
            for (k, v) in map {
                let Some(t) = PrincipalType::parse(k) else {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    return Err(PolicyError::InvalidPrincipal {
                        kind: k.clone(),
                        value,
                    });
                };
                for value in string_list(v)? {
                    out.push((t, value));
                }
            }
            Ok(Principals::Listed(out))
        }
        _ => Err(PolicyError::Syntax),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn conditions(v: &Value) -> Result<Vec<ConditionEntry>, PolicyError> {
    let map = v.as_object().ok_or(PolicyError::Syntax)?;
    let mut out = Vec::new();
    for (op_text, block) in map {
        let block = block.as_object().ok_or(PolicyError::Syntax)?;
        let Some(operator) = OperatorSpec::parse(op_text) else {
            // IAM tolerates an unknown operator only with nothing under it.
            if block.is_empty() {
                continue;
            }
            return Err(PolicyError::Syntax);
        };
        for (key, values) in block {
            let values = match values {
                Value::Array(items) => items.iter().map(scalar_text).collect::<Option<Vec<_>>>(),
                other => scalar_text(other).map(|v| vec![v]),
            }
            .ok_or(PolicyError::Syntax)?;
            out.push(ConditionEntry {
                operator,
                key: key.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// Stage 2: what IAM checks once the shape is right.
fn semantics(doc: &PolicyDocument) -> Result<(), PolicyError> {
    let kind = doc.kind;
    legacy_parsing(doc)?;
    for st in &doc.statements {
        match (&st.principal, kind) {
            (Some(_), k) if k.is_identity_like() => return Err(PolicyError::PrincipalNotAllowed),
            (None, PolicyKind::Resource | PolicyKind::Trust) => {
                return Err(PolicyError::MissingField("Principal"));
            }
            (Some(Principals::Listed(list)), _) => {
                for (t, v) in list {
                    if !principal_is_valid(*t, v) {
                        return Err(PolicyError::InvalidPrincipal {
                            kind: t.as_str().to_string(),
                            value: v.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        if kind == PolicyKind::Trust && st.resources.is_some() {
            return Err(PolicyError::ProhibitedField(if st.not_resource {
                "NotResource"
            } else {
                "Resource"
            }));
        }
    }
    let mut sids = HashSet::new();
    for st in &doc.statements {
        if let Some(sid) = st.sid.as_deref().filter(|s| !s.is_empty())
            && !sids.insert(sid)
        {
            return Err(PolicyError::DuplicateSid);
        }
    }
    if kind != PolicyKind::Resource {
        for st in &doc.statements {
            if let Some(sid) = &st.sid
                && !sid.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(PolicyError::SidNotAlphanumeric);
            }
        }
    }
    if doc.statements.iter().any(|st| st.actions.is_empty()) {
        return Err(PolicyError::MissingActions);
    }
    if kind.is_identity_like()
        && doc
            .statements
            .iter()
            .any(|st| st.resources.as_ref().is_none_or(Vec::is_empty))
    {
        return Err(PolicyError::MissingResources);
    }
    if doc
        .statements
        .iter()
        .any(|st| st.resources.as_ref().is_some_and(Vec::is_empty))
    {
        return Err(PolicyError::MissingResources);
    }
    for st in &doc.statements {
        for r in st.resources.iter().flatten() {
            resource_format(r)?;
        }
    }
    for st in &doc.statements {
        for a in &st.actions {
            action_prefix(a)?;
        }
        for c in &st.conditions {
            if !c.key.contains(':') {
                return Err(PolicyError::MissingVendor);
            }
        }
    }
    Ok(())
}

fn legacy_parsing(doc: &PolicyDocument) -> Result<(), PolicyError> {
    for st in &doc.statements {
        for c in &st.conditions {
            if !c
                .values
                .iter()
                .all(|v| date_value_is_valid(c.operator.operator, v))
            {
                return Err(PolicyError::LegacyParsing);
            }
        }
        for r in st.resources.iter().flatten() {
            if r != "*" && r.contains("::") && r.matches(':').count() < 5 {
                return Err(PolicyError::LegacyParsing);
            }
        }
    }
    Ok(())
}

/// `Effect` must be written exactly `Allow`/`Deny` (IAM's legacy parser is case-sensitive,
/// while the syntax check is not), checked on the raw JSON.
fn effect_case_is_exact(value: &Value) -> bool {
    let statements: Vec<&Value> = match value.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(s) => vec![s],
        None => Vec::new(),
    };
    statements.iter().all(|s| {
        matches!(
            s.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny") | None
        )
    })
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn principal_is_valid(t: PrincipalType, v: &str) -> bool {
    match t {
        PrincipalType::Aws => {
            if v == "*" || is_account_id(v) {
                return true;
            }
            let mut parts = v.splitn(6, ':');
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
                return false;
            };
            if partition.is_empty()
                || !region.is_empty()
                || !is_account_id(account)
                || resource.contains('*')
            {
                return false;
            }
            match service {
                "iam" => {
                    resource == "root"
                        || ["user/", "role/"]
                            .iter()
                            .any(|p| resource.strip_prefix(p).is_some_and(|n| !n.is_empty()))
                }
                "sts" => ["assumed-role/", "federated-user/"]
                    .iter()
                    .any(|p| resource.strip_prefix(p).is_some_and(|n| !n.is_empty())),
                _ => false,
            }
        }
        PrincipalType::Service => !v.is_empty() && !v.contains('*') && v.contains('.'),
        PrincipalType::Federated | PrincipalType::CanonicalUser => !v.is_empty(),
    }
}

const IAM_RESOURCE_PREFIXES: [&str; 13] = [
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
];

fn resource_format(r: &str) -> Result<(), PolicyError> {
    if r == "*" {
        return Ok(());
    }
    let Some(rest) = r.strip_prefix("arn:") else {
        return Err(PolicyError::InvalidResource(format!(
            "Resource {r} must be in ARN format or \"*\"."
        )));
    };
    let (partition, rest) = rest.split_once(':').unwrap_or((rest, ""));
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        let segs: Vec<&str> = rest.splitn(4, ':').collect();
        let seg = |i: usize| {
            segs.get(i)
                .copied()
                .filter(|s| !s.is_empty() || segs.len() > 1)
                .unwrap_or("*")
        };
        return Err(PolicyError::InvalidResource(format!(
            "Partition \"{partition}\" is not valid for resource \"arn:{partition}:{}:{}:{}:{}\".",
            seg(0),
            seg(1),
            seg(2),
            seg(3)
        )));
    }
    let Some((service, rest)) = rest.split_once(':') else {
        return Err(PolicyError::InvalidResource(
            "Resource vendor must be fully qualified and cannot contain regexes.".to_string(),
        ));
    };
    if service.is_empty() || service.contains(['*', '?']) {
        return Err(PolicyError::InvalidResource(
            "Resource vendor must be fully qualified and cannot contain regexes.".to_string(),
        ));
    }
    let (region, rest) = rest.split_once(':').unwrap_or((rest, ""));
    match service {
        "iam" if !region.is_empty() => {
            return Err(PolicyError::InvalidResource(format!(
                "IAM resource {r} cannot contain region information."
            )));
        }
        "s3" if !region.is_empty() => {
            return Err(PolicyError::InvalidResource(format!(
                "Resource {r} can not contain region information."
            )));
        }
        _ => {}
    }
    if service == "iam" {
        let resource = rest.split_once(':').map_or("", |(_, res)| res);
        if resource != "*"
            && !IAM_RESOURCE_PREFIXES
                .iter()
                .any(|p| resource.starts_with(p))
        {
            return Err(PolicyError::InvalidResource(format!(
                "IAM resource path must either be \"*\" or start with {}.",
                IAM_RESOURCE_PREFIXES.join(", ")
            )));
        }
    }
    Ok(())
}

fn action_prefix(action: &str) -> Result<(), PolicyError> {
    if action == "*" {
        return Ok(());
    }
    let mut parts = action.split(':');
    let vendor = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (None, _) => return Err(PolicyError::MissingVendor),
        (Some(_), Some(_)) => return Err(PolicyError::TooManyColons),
        _ => {}
    }
    if vendor != "*"
        && (vendor.is_empty()
            || !vendor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return Err(PolicyError::InvalidVendor(vendor.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, kind: PolicyKind) -> Result<PolicyDocument, String> {
        crate::parse_document(json, kind).map_err(|e| e.to_string())
    }

    const ALLOW: &str = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:RunTask","Resource":"*"}}"#;

    #[test]
    fn a_plain_identity_policy_parses() {
        let doc = check(ALLOW, PolicyKind::Identity).unwrap();
        assert_eq!(doc.statements.len(), 1);
        assert_eq!(doc.statements[0].effect, Effect::Allow);
        assert_eq!(doc.statements[0].actions, vec!["ecs:RunTask"]);
    }

    #[test]
    fn malformed_documents_get_iam_messages() {
        let identity: &[(&str, &str)] = &[
            ("not json", "Syntax errors in policy."),
            ("[]", "Syntax errors in policy."),
            (r#"{"Version":"2012-10-17"}"#, "Syntax errors in policy."),
            (
                r#"{"Version":"2012-10-17","Statement":[]}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Extra":1,"Statement":{"Effect":"Allow","Action":"a:b","Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Action":"a:b","Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"a:b","Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","NotAction":"a:c","Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":{"a":1},"Resource":"*"}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":{"StringEqualz":{"a:b":"c"}}}}"#,
                "Syntax errors in policy.",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"a:b","Resource":"*"}}"#,
                "Policy document must be version 2012-10-17 or greater.",
            ),
            (
                r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*"}}"#,
                "Policy document must be version 2012-10-17 or greater.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"allow","Action":"a:b","Resource":"*"}}"#,
                "The policy failed legacy parsing",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"tomorrow"}}}}"#,
                "The policy failed legacy parsing",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"arn:aws::a"}}"#,
                "The policy failed legacy parsing",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"a:b","Resource":"*"}}"#,
                "Policy document should not specify a principal.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"a:b","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"a:b","Resource":"*"}]}"#,
                "Statement IDs (SID) in a single policy must be unique.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Sid":"a-b","Effect":"Allow","Action":"a:b","Resource":"*"}}"#,
                "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}"#,
                "Policy statement must contain actions.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}"#,
                "Policy statement must contain actions.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b"}}"#,
                "Policy statement must contain resources.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"bucket"}}"#,
                "Resource bucket must be in ARN format or \"*\".",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"arn:aws:iam:us-east-1:123456789012:user/x"}}"#,
                "IAM resource arn:aws:iam:us-east-1:123456789012:user/x cannot contain region information.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"arn:aws:iam::123456789012:thing/x"}}"#,
                "IAM resource path must either be \"*\" or start with user/, federated-user/, role/, group/, instance-profile/, mfa/, server-certificate/, policy/, sms-mfa/, saml-provider/, oidc-provider/, report/, access-report/.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"arn:foo:s3:::b"}}"#,
                "Partition \"foo\" is not valid for resource \"arn:foo:s3:::b\".",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"a:b","Resource":"arn:aws:*:us-east-1:1:x"}}"#,
                "Resource vendor must be fully qualified and cannot contain regexes.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"RunTask","Resource":"*"}}"#,
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:a:b","Resource":"*"}}"#,
                "Actions/Condition can contain only one colon.",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"e cs:RunTask","Resource":"*"}}"#,
                "Vendor e cs is not valid",
            ),
            (
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:RunTask","Resource":"*","Condition":{"StringEquals":{"cluster":"x"}}}}"#,
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ),
        ];
        for (json, want) in identity {
            assert_eq!(
                check(json, PolicyKind::Identity).unwrap_err(),
                *want,
                "{json}"
            );
        }
    }

    #[test]
    fn principals_are_required_and_checked_where_they_belong() {
        let trust_no_principal =
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}"#;
        assert_eq!(
            check(trust_no_principal, PolicyKind::Trust).unwrap_err(),
            "Missing required field Principal"
        );
        let trust_resource = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}}"#;
        assert_eq!(
            check(trust_resource, PolicyKind::Trust).unwrap_err(),
            "Has prohibited field Resource"
        );
        let bad = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"dev"},"Action":"sts:AssumeRole"}}"#;
        assert_eq!(
            check(bad, PolicyKind::Trust).unwrap_err(),
            "Invalid principal in policy: \"AWS\":\"dev\""
        );
        let ok = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["123456789012","arn:aws:iam::123456789012:role/r","arn:aws:sts::123456789012:assumed-role/r/s"],"Service":["ecs-tasks.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
        check(ok, PolicyKind::Trust).unwrap();
        let repo = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull-from-ci","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/ci"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
        check(repo, PolicyKind::Resource).unwrap();
        let no_effect =
            r#"{"Version":"2012-10-17","Statement":[{"Principal":"*","Action":"ecr:*"}]}"#;
        assert_eq!(
            check(no_effect, PolicyKind::Resource).unwrap_err(),
            "Missing required field Effect"
        );
    }

    #[test]
    fn condition_values_may_be_scalars_or_lists() {
        let json = r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":false},"NumericLessThan":{"s3:max-keys":[10,"20"]},"UnknownOp":{}}}}"#;
        let doc = check(json, PolicyKind::Identity).unwrap();
        assert_eq!(doc.statements[0].conditions.len(), 2);
    }
}
