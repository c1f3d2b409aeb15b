//! The `Condition` element: operators, set qualifiers, `...IfExists`, compiled values and their
//! evaluation.
//!
//! Logic, as AWS documents it ("Condition operators", "Conditions with multiple context keys or
//! values"):
//! - several operators, and several keys under one operator: AND;
//! - several policy values for one key: OR (for a negated operator, NOR: the request value must
//!   match none of them);
//! - a key absent from the request: the condition is false, except for negated operators
//!   (`StringNotEquals`, `NotIpAddress`, `ArnNotLike`, ...), where it is true; `...IfExists`
//!   makes any operator true on an absent key; `Null` tests presence itself;
//! - `ForAnyValue:` — at least one request value satisfies the operator (false when the key is
//!   absent or empty); `ForAllValues:` — every request value does (true when absent or empty);
//!   without a qualifier a multi-valued key behaves as `ForAnyValue:` for positive operators and
//!   as "no request value matches" for negated ones.

use std::net::IpAddr;

use ipnet::IpNet;
use time::OffsetDateTime;

use crate::glob::Glob;
use crate::vars::{Lookup, Template, Val};

/// A condition operator, without its set qualifier or `IfExists` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionOperator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

impl ConditionOperator {
    /// Every operator, in the order AWS documents them.
    pub const ALL: [ConditionOperator; 27] = [
        Self::StringEquals,
        Self::StringNotEquals,
        Self::StringEqualsIgnoreCase,
        Self::StringNotEqualsIgnoreCase,
        Self::StringLike,
        Self::StringNotLike,
        Self::NumericEquals,
        Self::NumericNotEquals,
        Self::NumericLessThan,
        Self::NumericLessThanEquals,
        Self::NumericGreaterThan,
        Self::NumericGreaterThanEquals,
        Self::DateEquals,
        Self::DateNotEquals,
        Self::DateLessThan,
        Self::DateLessThanEquals,
        Self::DateGreaterThan,
        Self::DateGreaterThanEquals,
        Self::Bool,
        Self::BinaryEquals,
        Self::IpAddress,
        Self::NotIpAddress,
        Self::ArnEquals,
        Self::ArnLike,
        Self::ArnNotEquals,
        Self::ArnNotLike,
        Self::Null,
    ];

    /// The operator's name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::StringLike => "StringLike",
            Self::StringNotLike => "StringNotLike",
            Self::NumericEquals => "NumericEquals",
            Self::NumericNotEquals => "NumericNotEquals",
            Self::NumericLessThan => "NumericLessThan",
            Self::NumericLessThanEquals => "NumericLessThanEquals",
            Self::NumericGreaterThan => "NumericGreaterThan",
            Self::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Self::DateEquals => "DateEquals",
            Self::DateNotEquals => "DateNotEquals",
            Self::DateLessThan => "DateLessThan",
            Self::DateLessThanEquals => "DateLessThanEquals",
            Self::DateGreaterThan => "DateGreaterThan",
            Self::DateGreaterThanEquals => "DateGreaterThanEquals",
            Self::Bool => "Bool",
            Self::BinaryEquals => "BinaryEquals",
            Self::IpAddress => "IpAddress",
            Self::NotIpAddress => "NotIpAddress",
            Self::ArnEquals => "ArnEquals",
            Self::ArnLike => "ArnLike",
            Self::ArnNotEquals => "ArnNotEquals",
            Self::ArnNotLike => "ArnNotLike",
            Self::Null => "Null",
        }
    }

    /// Parses an operator name (case-sensitive, as IAM is).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether the operator is a negated matching operator (true on an absent key, NOR over the
    /// policy values).
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NumericNotEquals
                | Self::DateNotEquals
                | Self::NotIpAddress
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    /// Whether the operator's values may hold policy variables (string and ARN operators).
    pub fn supports_variables(self) -> bool {
        matches!(
            self,
            Self::StringEquals
                | Self::StringNotEquals
                | Self::StringEqualsIgnoreCase
                | Self::StringNotEqualsIgnoreCase
                | Self::StringLike
                | Self::StringNotLike
                | Self::ArnEquals
                | Self::ArnLike
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    fn is_date(self) -> bool {
        matches!(
            self,
            Self::DateEquals
                | Self::DateNotEquals
                | Self::DateLessThan
                | Self::DateLessThanEquals
                | Self::DateGreaterThan
                | Self::DateGreaterThanEquals
        )
    }
}

/// `ForAnyValue:` / `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

/// A full operator as written: qualifier, operator, `IfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperatorSpec {
    pub qualifier: Option<SetQualifier>,
    pub operator: ConditionOperator,
    pub if_exists: bool,
}

impl OperatorSpec {
    /// Parses `ForAnyValue:StringLikeIfExists` and the like; `None` for an unknown operator.
    /// `Null` takes no `IfExists` suffix.
    pub fn parse(text: &str) -> Option<Self> {
        let (qualifier, rest) = if let Some(rest) = text.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else if let Some(rest) = text.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else {
            (None, text)
        };
        if let Some(op) = ConditionOperator::parse(rest) {
            return Some(OperatorSpec {
                qualifier,
                operator: op,
                if_exists: false,
            });
        }
        let base = rest.strip_suffix("IfExists")?;
        let operator = ConditionOperator::parse(base)?;
        if operator == ConditionOperator::Null {
            return None;
        }
        Some(OperatorSpec {
            qualifier,
            operator,
            if_exists: true,
        })
    }
}

/// Parses a date as IAM accepts it in `Date*` conditions and `aws:CurrentTime`: ISO 8601
/// (`2026-01-02`, `2026-01-02T03:04:05Z`, with an offset or fractional seconds, or without a
/// zone meaning UTC) or seconds since the epoch.
pub fn parse_date(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    // Lowercase `t`/`z` are accepted by IAM too.
    let upper = text.to_ascii_uppercase();
    if let Ok(t) = OffsetDateTime::parse(&upper, &Rfc3339) {
        return Some(t);
    }
    let date_only = format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(&upper, &date_only) {
        return Some(d.midnight().assume_utc());
    }
    let no_zone = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(upper.trim_end_matches('Z'), &no_zone) {
        return Some(t.assume_utc());
    }
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(t) = time::PrimitiveDateTime::parse(upper.trim_end_matches('Z'), &minutes) {
        return Some(t.assume_utc());
    }
    None
}

/// A string or ARN policy value: fixed text compiled once, or a template with variables.
#[derive(Debug, Clone)]
enum StrVal {
    Fixed { text: Box<str>, glob: Glob },
    Var(Template),
}

#[derive(Debug, Clone)]
enum CompiledValues {
    /// String operators; for `...IgnoreCase` the fixed text is lowercased.
    Str(Box<[StrVal]>),
    /// ARN operators: the policy values, and for those without variables their six segments
    /// compiled (`None`: not an ARN, matches nothing).
    Arn(Box<[StrVal]>, Box<[Option<ArnPattern>]>),
    /// `None`: a value that is not a number, which matches nothing.
    Num(Box<[Option<f64>]>),
    /// Nanoseconds since the epoch; `None` never matches.
    Date(Box<[Option<i128>]>),
    /// Lowercased `true`/`false` (other values match nothing).
    Bool(Box<[Box<str>]>),
    Binary(Box<[Box<str>]>),
    Ip(Box<[Option<IpNet>]>),
    /// `Null`: `true` asks for an absent key, `false` for a present one.
    Null(Box<[Option<bool>]>),
}

/// One compiled condition: one operator applied to one key.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    spec: OperatorSpec,
    key: Box<str>,
    values: CompiledValues,
}

/// Why a condition could not be evaluated to true or false: a policy variable without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unresolved;

impl Condition {
    /// Compiles `spec` on `key` with the policy's `values` (already validated).
    pub(crate) fn compile(
        spec: OperatorSpec,
        key: &str,
        values: &[String],
        variables: bool,
    ) -> Self {
        use ConditionOperator as Op;
        let op = spec.operator;
        let vars = variables && op.supports_variables();
        let str_vals = |lower: bool| -> Box<[StrVal]> {
            values
                .iter()
                .map(|v| {
                    let t = Template::parse(v, vars);
                    if t.has_variables() {
                        StrVal::Var(t)
                    } else {
                        let text = t.plain_text().unwrap_or_default();
                        let text = if lower { text.to_lowercase() } else { text };
                        StrVal::Fixed {
                            glob: t.to_glob(),
                            text: text.into(),
                        }
                    }
                })
                .collect()
        };
        let values = match op {
            Op::StringEquals | Op::StringNotEquals | Op::StringLike | Op::StringNotLike => {
                CompiledValues::Str(str_vals(false))
            }
            Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
                CompiledValues::Str(str_vals(true))
            }
            Op::ArnEquals | Op::ArnLike | Op::ArnNotEquals | Op::ArnNotLike => {
                let vals = str_vals(false);
                let patterns = vals
                    .iter()
                    .map(|v| match v {
                        StrVal::Fixed { text, .. } => ArnPattern::new(text),
                        StrVal::Var(_) => None,
                    })
                    .collect();
                CompiledValues::Arn(vals, patterns)
            }
            Op::NumericEquals
            | Op::NumericNotEquals
            | Op::NumericLessThan
            | Op::NumericLessThanEquals
            | Op::NumericGreaterThan
            | Op::NumericGreaterThanEquals => {
                CompiledValues::Num(values.iter().map(|v| parse_number(v)).collect())
            }
            Op::DateEquals
            | Op::DateNotEquals
            | Op::DateLessThan
            | Op::DateLessThanEquals
            | Op::DateGreaterThan
            | Op::DateGreaterThanEquals => CompiledValues::Date(
                values
                    .iter()
                    .map(|v| parse_date(v).map(|t| t.unix_timestamp_nanos()))
                    .collect(),
            ),
            Op::Bool => CompiledValues::Bool(
                values
                    .iter()
                    .map(|v| v.to_ascii_lowercase().into())
                    .collect(),
            ),
            Op::BinaryEquals => {
                CompiledValues::Binary(values.iter().map(|v| v.as_str().into()).collect())
            }
            Op::IpAddress | Op::NotIpAddress => {
                CompiledValues::Ip(values.iter().map(|v| parse_net(v)).collect())
            }
            Op::Null => CompiledValues::Null(
                values
                    .iter()
                    .map(|v| match v.to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => None,
                    })
                    .collect(),
            ),
        };
        Condition {
            spec,
            key: key.to_ascii_lowercase().into(),
            values,
        }
    }

    /// Evaluates the condition against the request.
    pub(crate) fn evaluate(&self, env: &dyn Lookup) -> Result<bool, Unresolved> {
        let found = env.lookup(&self.key).filter(|v| !v.is_empty());
        if let CompiledValues::Null(wants) = &self.values {
            let absent = found.is_none();
            return Ok(wants.contains(&Some(absent)));
        }
        let op = self.spec.operator;
        let Some(values) = found else {
            if self.spec.if_exists {
                return Ok(true);
            }
            return Ok(match self.spec.qualifier {
                Some(SetQualifier::ForAllValues) => true,
                Some(SetQualifier::ForAnyValue) => false,
                None => op.is_negated(),
            });
        };
        // Resolve variables once per evaluation.
        let resolved = self.resolve(env)?;
        let positive = |v: Val<'_>| self.positive_match(v, resolved.as_deref());
        let negated = op.is_negated();
        let ok = match self.spec.qualifier {
            None if negated => values.all(|v| !positive(v)),
            None => values.any(positive),
            Some(SetQualifier::ForAnyValue) => values.any(|v| positive(v) != negated),
            Some(SetQualifier::ForAllValues) => values.all(|v| positive(v) != negated),
        };
        Ok(ok)
    }

    /// For string and ARN values with variables: the values resolved for this request.
    fn resolve(&self, env: &dyn Lookup) -> Result<Option<Vec<ResolvedStr>>, Unresolved> {
        let (vals, lower) = match &self.values {
            CompiledValues::Str(v) => (
                v,
                matches!(
                    self.spec.operator,
                    ConditionOperator::StringEqualsIgnoreCase
                        | ConditionOperator::StringNotEqualsIgnoreCase
                ),
            ),
            CompiledValues::Arn(v, _) => (v, false),
            _ => return Ok(None),
        };
        if !vals.iter().any(|v| matches!(v, StrVal::Var(_))) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(vals.len());
        for v in vals.iter() {
            out.push(match v {
                StrVal::Fixed { text, glob } => ResolvedStr {
                    text: text.to_string(),
                    glob: glob.clone(),
                },
                StrVal::Var(t) => {
                    let text = t.resolve_string(env).ok_or(Unresolved)?;
                    let glob = t.resolve_glob(env).ok_or(Unresolved)?;
                    let text = if lower { text.to_lowercase() } else { text };
                    ResolvedStr { text, glob }
                }
            });
        }
        Ok(Some(out))
    }

    /// Whether one request value matches any policy value under the positive form of the
    /// operator.
    fn positive_match(&self, val: Val<'_>, resolved: Option<&[ResolvedStr]>) -> bool {
        use ConditionOperator as Op;
        let op = self.spec.operator;
        let value = val.text;
        match &self.values {
            CompiledValues::Str(vals) => {
                let lowered;
                let value = if matches!(
                    op,
                    Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase
                ) {
                    lowered = value.to_lowercase();
                    lowered.as_str()
                } else {
                    value
                };
                let like = matches!(op, Op::StringLike | Op::StringNotLike);
                match resolved {
                    Some(rs) => rs.iter().any(|r| {
                        if like {
                            r.glob.matches(value)
                        } else {
                            r.text == value
                        }
                    }),
                    None => vals.iter().any(|v| match v {
                        StrVal::Fixed { text, glob } => {
                            if like {
                                glob.matches(value)
                            } else {
                                &**text == value
                            }
                        }
                        StrVal::Var(_) => false,
                    }),
                }
            }
            CompiledValues::Arn(_, patterns) => match resolved {
                Some(rs) => rs
                    .iter()
                    .any(|r| ArnPattern::new(&r.text).is_some_and(|p| p.matches(value))),
                None => patterns.iter().flatten().any(|p| p.matches(value)),
            },
            CompiledValues::Num(vals) => {
                let Some(n) = val.number() else {
                    return false;
                };
                vals.iter().flatten().any(|p| match op {
                    Op::NumericEquals | Op::NumericNotEquals => n == *p,
                    Op::NumericLessThan => n < *p,
                    Op::NumericLessThanEquals => n <= *p,
                    Op::NumericGreaterThan => n > *p,
                    Op::NumericGreaterThanEquals => n >= *p,
                    _ => false,
                })
            }
            CompiledValues::Date(vals) => {
                let Some(t) = val.date_nanos() else {
                    return false;
                };
                vals.iter().flatten().any(|p| match op {
                    Op::DateEquals | Op::DateNotEquals => t == *p,
                    Op::DateLessThan => t < *p,
                    Op::DateLessThanEquals => t <= *p,
                    Op::DateGreaterThan => t > *p,
                    Op::DateGreaterThanEquals => t >= *p,
                    _ => false,
                })
            }
            CompiledValues::Bool(vals) => {
                let v = value.to_ascii_lowercase();
                (v == "true" || v == "false") && vals.iter().any(|p| **p == *v)
            }
            CompiledValues::Binary(vals) => vals.iter().any(|p| &**p == value),
            CompiledValues::Ip(nets) => {
                let Some(addr) = val.ip() else {
                    return false;
                };
                nets.iter().flatten().any(|n| n.contains(&addr))
            }
            CompiledValues::Null(_) => false,
        }
    }

    pub(crate) fn spec(&self) -> OperatorSpec {
        self.spec
    }
}

#[derive(Debug)]
struct ResolvedStr {
    text: String,
    glob: Glob,
}

pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let n: f64 = text.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

pub(crate) fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An `ArnLike`/`ArnEquals` value: six colon-separated segments (the last keeps its colons),
/// each matched with `*` and `?`, case-sensitively, against the same segment of the request's
/// ARN.
#[derive(Debug, Clone)]
pub(crate) struct ArnPattern {
    segments: Box<[Glob]>,
}

impl ArnPattern {
    /// `None` when `pattern` has fewer than six segments (it matches no ARN).
    pub(crate) fn new(pattern: &str) -> Option<Self> {
        let segments: Box<[Glob]> = pattern.splitn(6, ':').map(Glob::new).collect();
        (segments.len() == 6).then_some(ArnPattern { segments })
    }

    pub(crate) fn matches(&self, arn: &str) -> bool {
        let mut parts = arn.splitn(6, ':');
        self.segments
            .iter()
            .all(|g| parts.next().is_some_and(|seg| g.matches(seg)))
    }
}

/// Whether a `Date*` policy value is one IAM accepts (a value it cannot parse fails legacy
/// parsing).
pub(crate) fn date_value_is_valid(op: ConditionOperator, value: &str) -> bool {
    !op.is_date() || parse_date(value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::{CtxValue, Values};
    use std::collections::HashMap;

    struct Env(HashMap<String, Vec<CtxValue>>);
    impl Lookup for Env {
        fn lookup(&self, key: &str) -> Option<Values<'_>> {
            self.0.get(key).map(|v| Values::Many(v))
        }
    }
    fn env(pairs: &[(&str, &[&str])]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.iter().map(|s| CtxValue::new(s.to_string())).collect(),
                )
            })
            .collect())
    }
    fn cond(op: &str, key: &str, values: &[&str]) -> Condition {
        let spec = OperatorSpec::parse(op).expect("operator");
        let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        Condition::compile(spec, key, &values, true)
    }
    fn eval(op: &str, key: &str, values: &[&str], ctx: &[(&str, &[&str])]) -> bool {
        cond(op, key, values).evaluate(&env(ctx)).expect("resolved")
    }

    #[test]
    fn operator_names_round_trip() {
        for op in ConditionOperator::ALL {
            assert_eq!(ConditionOperator::parse(op.as_str()), Some(op));
        }
        assert_eq!(OperatorSpec::parse("NullIfExists"), None);
        assert_eq!(OperatorSpec::parse("StringEqualsX"), None);
        assert_eq!(OperatorSpec::parse("stringequals"), None);
        let s = OperatorSpec::parse("ForAllValues:StringLikeIfExists").unwrap();
        assert_eq!(s.qualifier, Some(SetQualifier::ForAllValues));
        assert!(s.if_exists);
    }

    #[test]
    fn string_operators() {
        let ctx: &[(&str, &[&str])] = &[("ecs:cluster", &["arn:aws:ecs:us-east-1:1:cluster/prod"])];
        assert!(eval(
            "StringEquals",
            "ecs:Cluster",
            &["x", "arn:aws:ecs:us-east-1:1:cluster/prod"],
            ctx
        ));
        assert!(!eval(
            "StringEquals",
            "ecs:cluster",
            &["ARN:aws:ecs:us-east-1:1:cluster/prod"],
            ctx
        ));
        assert!(eval(
            "StringEqualsIgnoreCase",
            "ecs:cluster",
            &["ARN:AWS:ecs:us-east-1:1:cluster/PROD"],
            ctx
        ));
        assert!(eval("StringLike", "ecs:cluster", &["*cluster/p?od"], ctx));
        assert!(!eval(
            "StringNotLike",
            "ecs:cluster",
            &["nope", "*/prod"],
            ctx
        ));
        assert!(eval("StringNotEquals", "ecs:cluster", &["a", "b"], ctx));
        assert!(!eval(
            "StringNotEqualsIgnoreCase",
            "ecs:cluster",
            &["arn:aws:ecs:us-east-1:1:CLUSTER/prod"],
            ctx
        ));
    }

    #[test]
    fn absent_keys_follow_the_documented_rules() {
        let none: &[(&str, &[&str])] = &[];
        assert!(!eval("StringEquals", "aws:k", &["a"], none));
        assert!(eval("StringNotEquals", "aws:k", &["a"], none));
        assert!(eval("StringEqualsIfExists", "aws:k", &["a"], none));
        assert!(eval("NotIpAddress", "aws:SourceIp", &["10.0.0.0/8"], none));
        assert!(eval(
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            &["a"],
            none
        ));
        assert!(!eval(
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            &["a"],
            none
        ));
        assert!(eval("Null", "aws:k", &["true"], none));
        assert!(!eval("Null", "aws:k", &["false"], none));
        assert!(eval("Null", "aws:k", &["false"], &[("aws:k", &["v"])]));
    }

    #[test]
    fn set_qualifiers() {
        let ctx: &[(&str, &[&str])] = &[("aws:TagKeys", &["env", "team"])];
        assert!(eval(
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            &["env", "team", "cost"],
            ctx
        ));
        assert!(!eval(
            "ForAllValues:StringEquals",
            "aws:TagKeys",
            &["env"],
            ctx
        ));
        assert!(eval(
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            &["team"],
            ctx
        ));
        assert!(!eval(
            "ForAnyValue:StringEquals",
            "aws:TagKeys",
            &["cost"],
            ctx
        ));
        assert!(eval(
            "ForAnyValue:StringNotEquals",
            "aws:TagKeys",
            &["env"],
            ctx
        ));
        assert!(!eval(
            "ForAllValues:StringNotLike",
            "aws:TagKeys",
            &["*"],
            ctx
        ));
        assert!(eval(
            "ForAllValues:StringNotLike",
            "aws:TagKeys",
            &["key1*"],
            ctx
        ));
    }

    #[test]
    fn numeric_date_bool_binary() {
        let ctx: &[(&str, &[&str])] = &[
            ("s3:max-keys", &["10"]),
            ("aws:CurrentTime", &["2026-06-01T12:00:00Z"]),
            ("aws:SecureTransport", &["TRUE"]),
            ("k:bin", &["QmluYXJ5"]),
        ];
        assert!(eval("NumericLessThanEquals", "s3:max-keys", &["10"], ctx));
        assert!(!eval("NumericLessThan", "s3:max-keys", &["10"], ctx));
        assert!(eval("NumericGreaterThan", "s3:max-keys", &["9.5"], ctx));
        assert!(eval("NumericNotEquals", "s3:max-keys", &["11"], ctx));
        assert!(!eval("NumericEquals", "s3:max-keys", &["abc"], ctx));
        assert!(eval(
            "DateLessThan",
            "aws:CurrentTime",
            &["2026-06-02"],
            ctx
        ));
        assert!(eval(
            "DateGreaterThan",
            "aws:CurrentTime",
            &["1700000000"],
            ctx
        ));
        assert!(eval(
            "DateEquals",
            "aws:CurrentTime",
            &["2026-06-01T14:00:00+02:00"],
            ctx
        ));
        assert!(eval("Bool", "aws:SecureTransport", &["true"], ctx));
        assert!(!eval("Bool", "aws:SecureTransport", &["false"], ctx));
        assert!(eval("BinaryEquals", "k:bin", &["QmluYXJ5"], ctx));
    }

    #[test]
    fn ip_addresses() {
        let v4: &[(&str, &[&str])] = &[("aws:SourceIp", &["203.0.113.7"])];
        let v6: &[(&str, &[&str])] = &[("aws:SourceIp", &["2001:db8::1"])];
        assert!(eval("IpAddress", "aws:SourceIp", &["203.0.113.0/24"], v4));
        assert!(eval("IpAddress", "aws:SourceIp", &["203.0.113.7"], v4));
        assert!(!eval("IpAddress", "aws:SourceIp", &["198.51.100.0/24"], v4));
        assert!(eval(
            "NotIpAddress",
            "aws:SourceIp",
            &["198.51.100.0/24"],
            v4
        ));
        assert!(eval("IpAddress", "aws:SourceIp", &["2001:db8::/32"], v6));
        assert!(!eval("IpAddress", "aws:SourceIp", &["203.0.113.0/24"], v6));
    }

    #[test]
    fn arn_operators_match_segment_by_segment() {
        let ctx: &[(&str, &[&str])] = &[(
            "aws:SourceArn",
            &["arn:aws:ecs:us-east-1:123456789012:service/c/web"],
        )];
        assert!(eval(
            "ArnLike",
            "aws:SourceArn",
            &["arn:aws:ecs:*:123456789012:service/*"],
            ctx
        ));
        assert!(eval(
            "ArnEquals",
            "aws:SourceArn",
            &["arn:aws:ecs:us-east-1:123456789012:service/c/web"],
            ctx
        ));
        assert!(!eval("ArnLike", "aws:SourceArn", &["arn:aws:ecs:*"], ctx));
        assert!(eval(
            "ArnNotLike",
            "aws:SourceArn",
            &["arn:aws:s3:::*"],
            ctx
        ));
        assert!(!eval(
            "ArnLike",
            "aws:SourceArn",
            &["arn:aws:ecs:us-east-1:123456789012:service/c/web"],
            &[("aws:SourceArn", &["not-an-arn"])]
        ));
    }

    #[test]
    fn variables_in_condition_values() {
        let ctx: &[(&str, &[&str])] = &[("aws:username", &["dev"]), ("s3:prefix", &["dev/home"])];
        assert!(eval("StringLike", "s3:prefix", &["${aws:username}/*"], ctx));
        assert!(!eval(
            "StringLike",
            "s3:prefix",
            &["${aws:username}x/*"],
            ctx
        ));
    }

    #[test]
    fn unresolved_variables_are_reported() {
        let c = cond("StringEquals", "s3:prefix", &["${aws:userid}"]);
        assert_eq!(c.evaluate(&env(&[("s3:prefix", &["x"])])), Err(Unresolved));
    }

    #[test]
    fn dates_parse_in_the_documented_forms() {
        for ok in [
            "2026-01-02",
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123Z",
            "2026-01-02t03:04:05z",
            "2026-01-02T03:04:05+01:00",
            "2026-01-02T03:04:05",
            "1700000000",
        ] {
            assert!(parse_date(ok).is_some(), "{ok}");
        }
        for bad in ["yesterday", "2026-13-01", ""] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
