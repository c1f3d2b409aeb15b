//! The Cluster Query Language (CQL): parsing and evaluation.
//!
//! CQL selects container instances, for `memberOf` placement constraints and for
//! `ListContainerInstances --filter`. Grammar (derived from the ECS documentation; keywords and
//! word operators are case-insensitive, attribute names are not):
//!
//! ```text
//! expr      := and_expr (("||" | "or") and_expr)*
//! and_expr  := unary (("&&" | "and") unary)*
//! unary     := ("!" | "not") unary | "(" expr ")" | predicate
//! predicate := subject ("exists" | "!exists" | "not_exists")
//!            | subject ("in" | "!in" | "not_in" | "not in") "[" value ("," value)* "]"
//!            | subject binary_op value
//! subject   := agentConnected | agentVersion | ec2InstanceId | registeredAt
//!            | runningTasksCount | task:group | attribute:NAME
//! binary_op := "==" | equals | "!=" | not_equals | ">" | greater_than | ">=" | greater_than_equal
//!            | "<" | less_than | "<=" | less_than_equal | "=~" | matches | "!~" | not_matches
//! value     := 'quoted' | "quoted" | a bare run of non-space characters, ending at `,` `]` `)`
//!              unless they are balanced inside it (so `(m5|c5).*` is one value)
//! ```
//!
//! Semantics:
//! - `attribute:x` compares the attribute's value. An instance without the attribute (or with the
//!   attribute but no value) matches no value test, negated ones included: as the ECS docs say,
//!   `attribute:stack != prod` lists the instances that have `stack` with another value. Use
//!   `!exists` or `not(attribute:stack == prod)` to include instances without it. `>`/`<` compare
//!   numerically when both sides are numbers, as versions when both are dotted versions
//!   (`1.14.5`), else as strings.
//! - `task:group` holds when *some* task group on the instance satisfies the test; the negated
//!   operators hold when none does (so `task:group != database`, like the documented
//!   `not(task:group == database)`, is anti-affinity and matches empty instances).
//! - `registeredAt` takes a date (`2018-06-18`, a whole day) or a time (`2018-06-18T22:28:28Z`,
//!   `+00:00` or no zone meaning UTC, a whole second); `==` means within it, `<` before it, `>`
//!   after it.
//! - `agentVersion` compares as a version; `runningTasksCount` as an integer; `agentConnected`
//!   against `true`/`false`.
//! - `=~` matches the *whole* value against a Java regular expression (as Java's
//!   `Pattern.matches`). `\Q...\E` quoting and possessive quantifiers are translated; a `*` that
//!   cannot be a quantifier (at the start, or after `-`, `_`, `:`, `/`, `@` or a space) is the
//!   wildcard `.*`, so `g2.*`, `us-east-*` and `*.large` all do what they look like; when nothing
//!   else compiles, a value with `*` is taken as a wildcard pattern. Lookaround and
//!   backreferences are rejected with a parse error.
//!
//! Errors carry the 0-based character position of the problem; their `Display` reads
//! `Invalid expression at position 12: expected operator`.

mod parser;
mod value;

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use crate::view::InstanceView;

pub(crate) use value::{cmp_versions, parse_version};

/// A CQL expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid expression at position {position}: {message}")]
pub struct CqlError {
    /// 0-based character offset of the problem in the expression.
    pub position: usize,
    /// What was expected or what is wrong, in lowercase.
    pub message: String,
}

/// Parses a CQL expression.
pub fn parse(expr: &str) -> Result<Expr, CqlError> {
    parser::parse(expr)
}

/// Most expressions [`parse_cached`] remembers; the cache starts over when it is full.
const PARSED_CACHE_LEN: usize = 256;

/// [`parse`], remembering the result per expression text: requests of one shape (a service's
/// launches, a client's RunTask calls) repeat the same few expressions, whose parse compiles
/// regular expressions. The copy shares the compiled regular expressions.
pub fn parse_cached(expr: &str) -> Result<Expr, CqlError> {
    type Cache = std::collections::HashMap<String, Result<Expr, CqlError>>;
    static CACHE: std::sync::LazyLock<std::sync::Mutex<Cache>> =
        std::sync::LazyLock::new(Default::default);
    if let Some(hit) = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(expr)
    {
        return hit.clone();
    }
    let parsed = parse(expr);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= PARSED_CACHE_LEN {
        cache.clear();
    }
    cache.insert(expr.to_owned(), parsed.clone());
    parsed
}

/// A parsed CQL expression.
///
/// `Display` prints it back in a canonical form (symbol operators, single spaces, quotes only
/// where needed), which parses to an equal expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Predicate(Predicate),
}

/// `subject operator [argument]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub subject: Subject,
    pub operator: Operator,
    pub argument: Argument,
}

/// What a predicate looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    /// `task:group`: the groups of the tasks on the instance.
    TaskGroup,
    /// `attribute:<name>`.
    Attribute(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AgentConnected => f.write_str("agentConnected"),
            Self::AgentVersion => f.write_str("agentVersion"),
            Self::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Self::RegisteredAt => f.write_str("registeredAt"),
            Self::RunningTasksCount => f.write_str("runningTasksCount"),
            Self::TaskGroup => f.write_str("task:group"),
            Self::Attribute(n) => write!(f, "attribute:{n}"),
        }
    }
}

/// A CQL operator (symbol and word forms parse to the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Operator {
    /// The symbol form (`==`, `!exists`, `=~`, ...).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Equals => "==",
            Self::NotEquals => "!=",
            Self::GreaterThan => ">",
            Self::GreaterThanEqual => ">=",
            Self::LessThan => "<",
            Self::LessThanEqual => "<=",
            Self::Exists => "exists",
            Self::NotExists => "!exists",
            Self::In => "in",
            Self::NotIn => "!in",
            Self::Matches => "=~",
            Self::NotMatches => "!~",
        }
    }

    /// The positive operator this one negates, if it is a negation.
    fn positive(self) -> (Self, bool) {
        match self {
            Self::NotEquals => (Self::Equals, true),
            Self::NotExists => (Self::Exists, true),
            Self::NotIn => (Self::In, true),
            Self::NotMatches => (Self::Matches, true),
            other => (other, false),
        }
    }
}

/// The argument of a predicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Argument {
    /// For `exists` / `!exists`.
    None,
    Value(Value),
    /// For `in` / `!in`.
    List(Vec<Value>),
}

/// A literal argument, with its typed forms prepared at parse time.
#[derive(Debug, Clone)]
pub struct Value {
    raw: String,
    number: Option<f64>,
    version: Option<Vec<u64>>,
    /// For `registeredAt`: the half-open interval of epoch milliseconds.
    interval: Option<(i64, i64)>,
    regex: Option<Regex>,
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Value {
    pub(crate) fn new(raw: String) -> Self {
        Self {
            number: raw.parse::<f64>().ok().filter(|n| n.is_finite()),
            version: parse_version(&raw).filter(|v| v.len() > 1),
            interval: None,
            regex: None,
            raw,
        }
    }

    /// The value as written (without quotes).
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs_quotes = self.raw.is_empty()
            || self.raw.chars().any(|c| {
                c.is_whitespace()
                    || matches!(c, ',' | '[' | ']' | '(' | ')' | '\'' | '"' | '&' | '|')
            });
        if !needs_quotes {
            f.write_str(&self.raw)
        } else if !self.raw.contains('\'') {
            write!(f, "'{}'", self.raw)
        } else {
            write!(f, "\"{}\"", self.raw.replace('"', "\\\""))
        }
    }
}

/// Parentheses only where the tree needs them (`&&` binds tighter than `||`, both group to the
/// left), so that the printed form nests no deeper than its source and parses back under the
/// parser's length and depth limits.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grouped = |f: &mut fmt::Formatter<'_>, e: &Expr, paren: bool| {
            if paren {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Self::And(a, b) => {
                grouped(f, a, matches!(**a, Self::Or(..)))?;
                f.write_str(" && ")?;
                grouped(f, b, matches!(**b, Self::And(..) | Self::Or(..)))
            }
            Self::Or(a, b) => {
                grouped(f, a, false)?;
                f.write_str(" || ")?;
                grouped(f, b, matches!(**b, Self::Or(..)))
            }
            Self::Not(e) => write!(f, "!({e})"),
            Self::Predicate(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.operator.symbol())?;
        match &self.argument {
            Argument::None => Ok(()),
            Argument::Value(v) => write!(f, " {v}"),
            Argument::List(vs) => {
                f.write_str(" [")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// What an expression can ask about an instance.
pub(crate) trait Facts {
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    fn ec2_instance_id(&self) -> &str;
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    fn registered_at(&self) -> u64;
    fn running_tasks_count(&self) -> u64;
    /// Whether `f` holds for some task group on the instance.
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl Facts for InstanceView {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        InstanceView::attribute(self, name)
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ec2_instance_id
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn registered_at(&self) -> u64 {
        self.registered_at
    }
    fn running_tasks_count(&self) -> u64 {
        u64::from(self.running_tasks_count)
    }
    fn any_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|g| f(g))
    }
}

impl Expr {
    /// Whether the instance satisfies the expression.
    pub fn matches(&self, instance: &InstanceView) -> bool {
        self.eval(instance)
    }

    /// Whether the result can change when tasks are placed (it looks at `task:group` or
    /// `runningTasksCount`). Other expressions depend only on the instance's registration and
    /// attributes, so the scheduler evaluates them once per snapshot.
    pub fn depends_on_tasks(&self) -> bool {
        match self {
            Self::And(a, b) | Self::Or(a, b) => a.depends_on_tasks() || b.depends_on_tasks(),
            Self::Not(e) => e.depends_on_tasks(),
            Self::Predicate(p) => {
                matches!(p.subject, Subject::TaskGroup | Subject::RunningTasksCount)
            }
        }
    }

    pub(crate) fn eval<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        match self {
            Self::And(a, b) => a.eval(facts) && b.eval(facts),
            Self::Or(a, b) => a.eval(facts) || b.eval(facts),
            Self::Not(e) => !e.eval(facts),
            Self::Predicate(p) => p.eval(facts),
        }
    }
}

/// Tests one string against a positive operator.
fn test_str(op: Operator, arg: &Argument, s: &str) -> bool {
    match (op, arg) {
        (Operator::Exists, _) => true,
        (Operator::Equals, Argument::Value(v)) => s == v.raw,
        (Operator::In, Argument::List(vs)) => vs.iter().any(|v| v.raw == s),
        (Operator::Matches, Argument::Value(v)) => v.regex.as_ref().is_some_and(|r| r.is_match(s)),
        (cmp, Argument::Value(v)) => compare_str(s, v).is_some_and(|o| ordering_holds(cmp, o)),
        _ => false,
    }
}

fn compare_str(s: &str, v: &Value) -> Option<Ordering> {
    if let Some(n) = v.number
        && let Ok(x) = s.parse::<f64>()
    {
        return x.partial_cmp(&n);
    }
    if let Some(vv) = &v.version
        && let Some(sv) = parse_version(s).filter(|sv| sv.len() > 1)
    {
        return Some(cmp_versions(&sv, vv));
    }
    Some(s.cmp(v.raw.as_str()))
}

fn ordering_holds(op: Operator, o: Ordering) -> bool {
    match op {
        Operator::Equals => o == Ordering::Equal,
        Operator::GreaterThan => o == Ordering::Greater,
        Operator::GreaterThanEqual => o != Ordering::Less,
        Operator::LessThan => o == Ordering::Less,
        Operator::LessThanEqual => o != Ordering::Greater,
        _ => false,
    }
}

impl Predicate {
    fn eval<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        let (op, negated) = self.operator.positive();
        let arg = &self.argument;
        let positive = match &self.subject {
            Subject::Attribute(name) => match (op, facts.attribute(name)) {
                (Operator::Exists, present) => present.is_some(),
                (_, Some(Some(v))) => test_str(op, arg, v),
                // No value: no value test holds, negated or not.
                _ => return false,
            },
            Subject::TaskGroup => facts.any_group(&mut |g| test_str(op, arg, g)),
            Subject::Ec2InstanceId => test_str(op, arg, facts.ec2_instance_id()),
            Subject::AgentConnected => test_str(
                op,
                arg,
                if facts.agent_connected() {
                    "true"
                } else {
                    "false"
                },
            ),
            Subject::AgentVersion => match (facts.agent_version().and_then(parse_version), arg) {
                (Some(have), Argument::Value(v)) => v
                    .version
                    .as_ref()
                    .is_some_and(|want| ordering_holds(op, cmp_versions(&have, want))),
                _ => return false,
            },
            Subject::RegisteredAt => match arg {
                Argument::Value(Value {
                    interval: Some((start, end)),
                    ..
                }) => {
                    let t = i64::try_from(facts.registered_at()).unwrap_or(i64::MAX);
                    match op {
                        Operator::Equals => t >= *start && t < *end,
                        Operator::LessThan => t < *start,
                        Operator::LessThanEqual => t < *end,
                        Operator::GreaterThan => t >= *end,
                        Operator::GreaterThanEqual => t >= *start,
                        _ => false,
                    }
                }
                _ => false,
            },
            Subject::RunningTasksCount => match arg {
                Argument::Value(v) => v.number.is_some_and(|n| {
                    let have = facts.running_tasks_count() as f64;
                    have.partial_cmp(&n).is_some_and(|o| ordering_holds(op, o))
                }),
                _ => false,
            },
        };
        positive != negated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
