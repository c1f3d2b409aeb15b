//! Model-derived validation: the length, count, range and pattern constraints of a service's
//! input shapes, checked on the wire before the service sees the request, worded as AWS words
//! them (`1 validation error detected: Value 'x' at 'member' failed to satisfy constraint:
//! Member must have length less than or equal to 256`).
//!
//! The tables ([`Constraints`], one per service) are generated from the botocore models by
//! `scripts/gen-model-constraints.py` into each service crate; a test regenerates them and fails
//! on drift. Only shapes that carry a constraint (or contain one) are in them, so an operation
//! without constraints costs nothing. Required members and enum values are left to the services.
//!
//! How AWS's validator names things, and so how the messages here do:
//! * a member's path is its name (lowerCamel for the query protocol), nested members joined by
//!   `.`, the N-th element of a list `list.N.member` (1-based);
//! * lengths count UTF-16 code units for strings, decoded bytes for blobs, elements for lists and
//!   entries for maps; numbers are checked against `min`/`max` as values;
//! * a pattern must match the whole value (Java's `Pattern.matches`); `\w`, `\d` and `\s` are
//!   ASCII classes, as in Java;
//! * a list of scalars is reported at the list (`Member must satisfy constraint: [...]`), a map's
//!   keys and values at the map (`Map keys must satisfy constraint: [...]`,
//!   `Map value must satisfy constraint: [...]`).
//!
//! Bounded: the walk follows the shape, so its work is linear in the request; at most
//! [`MAX_REPORTED`] violations are reported, and echoed values are cut at [`MAX_ECHOED`]
//! characters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

use crate::query::QueryRequest;

/// The most violations one error message reports.
pub const MAX_REPORTED: usize = 100;
/// The most characters of an offending value echoed in a message.
pub const MAX_ECHOED: usize = 1024;

/// A service's constraint table.
#[derive(Debug)]
pub struct Constraints {
    /// The error code of a violation (`InvalidParameterException`, `ValidationError`, ...).
    pub error_code: &'static str,
    /// Member names as the wire spells them (awsJson: as in the model) or lowerCamel in
    /// messages (awsQuery).
    pub naming: Naming,
    /// Operations whose input carries a constraint, sorted by name.
    pub operations: &'static [Operation],
}

impl Constraints {
    /// A table without constraints (services whose model has none that Gantry enforces).
    pub const NONE: Constraints = Constraints {
        error_code: "ValidationError",
        naming: Naming::Query,
        operations: &[],
    };

    /// The constrained input shape of `op`, if it has one.
    pub fn input(&self, op: &str) -> Option<&'static Shape> {
        self.operations
            .binary_search_by(|o| o.name.cmp(op))
            .ok()
            .map(|i| self.operations[i].input)
    }
}

/// How member names appear in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// awsJson: as the model (and the wire) spells them.
    Json,
    /// awsQuery: the wire's PascalCase with a lowercase first letter.
    Query,
}

/// An operation with a constrained input.
#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub input: &'static Shape,
}

/// A member of a structure.
#[derive(Debug)]
pub struct Member {
    /// The member's name in the model.
    pub name: &'static str,
    pub shape: &'static Shape,
}

/// A shape with what is constrained in it.
#[derive(Debug)]
pub enum Shape {
    /// A structure: only its members that are (or contain something) constrained.
    Structure(&'static [Member]),
    List {
        member: &'static Shape,
        min: Option<u64>,
        max: Option<u64>,
    },
    Map {
        key: &'static Shape,
        value: &'static Shape,
        min: Option<u64>,
        max: Option<u64>,
    },
    String {
        min: Option<u64>,
        max: Option<u64>,
        pattern: Option<&'static Pattern>,
    },
    Blob {
        min: Option<u64>,
        max: Option<u64>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Nothing to check (a list or map element, or a map key, without constraints).
    Any,
}

/// A model pattern, compiled on first use.
#[derive(Debug)]
pub struct Pattern {
    /// As the model writes it (and as messages quote it).
    pub source: &'static str,
    compiled: OnceLock<Option<regex::Regex>>,
}

impl Pattern {
    pub const fn new(source: &'static str) -> Self {
        Self {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// The pattern as a Rust regex matching whole values; `None` when it cannot be translated
    /// (the generator's test makes sure every pattern of the tables can).
    pub fn regex(&self) -> Option<&regex::Regex> {
        self.compiled
            .get_or_init(|| {
                let translated = format!("^(?:{})$", java_to_rust(self.source));
                match regex::Regex::new(&translated) {
                    Ok(r) => Some(r),
                    Err(error) => {
                        tracing::error!(pattern = self.source, %error, "model pattern does not compile; not enforced");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn matches(&self, value: &str) -> bool {
        self.regex().is_none_or(|r| r.is_match(value))
    }
}

/// Rewrites Java's ASCII classes (`\w`, `\d`, `\s`, `\S`, ...) as explicit ASCII classes, inside
/// and outside brackets; everything else is the same in both dialects for the models' patterns.
fn java_to_rust(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 16);
    let mut in_class = false;
    let mut chars = java.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (inside, outside) = match e {
                    'w' => ("0-9A-Za-z_", "[0-9A-Za-z_]"),
                    'd' => ("0-9", "[0-9]"),
                    's' => ("\\t\\n\\x0B\\f\\r ", "[\\t\\n\\x0B\\f\\r ]"),
                    'W' if !in_class => ("", "[^0-9A-Za-z_]"),
                    'D' if !in_class => ("", "[^0-9]"),
                    'S' if !in_class => ("", "[^\\t\\n\\x0B\\f\\r ]"),
                    _ => {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                };
                out.push_str(if in_class { inside } else { outside });
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` or `^]` right after the opening bracket is literal.
                let mut rest = chars.clone();
                match rest.next() {
                    Some('^') => {
                        out.push('^');
                        chars.next();
                    }
                    Some(']') => {
                        out.push_str("\\]");
                        chars.next();
                    }
                    _ => {}
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// One violated constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The member's path, e.g. `tags.3.member.key`.
    pub path: String,
    /// The offending value as AWS echoes it.
    pub value: String,
    /// What it fails, e.g. `Member must have length less than or equal to 256`.
    pub constraint: String,
}

/// The message AWS gives for `violations` (empty when there are none).
pub fn message(violations: &[Violation]) -> String {
    let mut out = String::new();
    if violations.is_empty() {
        return out;
    }
    let n = violations.len();
    let _ = write!(
        out,
        "{n} validation error{} detected: ",
        if n == 1 { "" } else { "s" }
    );
    for (i, v) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(
            out,
            "Value '{}' at '{}' failed to satisfy constraint: {}",
            v.value, v.path, v.constraint
        );
    }
    out
}

/// Checks an awsJson request body against `shape`. Members of the wrong JSON type are skipped
/// (the service's decoder reports them).
pub fn validate_json(shape: &Shape, body: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    json_value(shape, body, "", &mut out);
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn push(out: &mut Vec<Violation>, path: &str, value: String, constraint: String) {
    if out.len() < MAX_REPORTED {
        out.push(Violation {
            path: path.to_owned(),
            value,
            constraint,
        });
    }
}

fn json_value(shape: &Shape, v: &Value, path: &str, out: &mut Vec<Violation>) {
    if out.len() >= MAX_REPORTED {
        return;
    }
    match (shape, v) {
        (Shape::Structure(members), Value::Object(obj)) => {
            for m in *members {
                if let Some(child) = obj.get(m.name) {
                    json_value(m.shape, child, &join(path, m.name), out);
                }
            }
        }
        (Shape::List { member, min, max }, Value::Array(items)) => {
            if let Some(c) = length_violation(items.len() as u64, *min, *max) {
                push(out, path, echo_json(v), c);
            }
            if is_scalar(member) {
                let mut failed = Vec::new();
                for item in items {
                    scalar_json(member, item, &mut failed);
                }
                if !failed.is_empty() {
                    failed.dedup();
                    push(
                        out,
                        path,
                        echo_json(v),
                        format!("Member must satisfy constraint: [{}]", failed.join(", ")),
                    );
                }
            } else {
                for (i, item) in items.iter().enumerate() {
                    json_value(member, item, &format!("{path}.{}.member", i + 1), out);
                }
            }
        }
        (
            Shape::Map {
                key,
                value,
                min,
                max,
            },
            Value::Object(obj),
        ) => {
            if let Some(c) = length_violation(obj.len() as u64, *min, *max) {
                push(out, path, echo_json(v), c);
            }
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for (k, val) in obj {
                scalar_str(key, k, &mut keys);
                if is_scalar(value) {
                    scalar_json(value, val, &mut values);
                } else {
                    json_value(value, val, &join(path, k), out);
                }
            }
            for (failed, what) in [(keys, "Map keys"), (values, "Map value")] {
                if !failed.is_empty() {
                    let mut failed = failed;
                    failed.dedup();
                    push(
                        out,
                        path,
                        echo_json(v),
                        format!("{what} must satisfy constraint: [{}]", failed.join(", ")),
                    );
                }
            }
        }
        (s, v) if is_scalar(s) => {
            let mut failed = Vec::new();
            scalar_json(s, v, &mut failed);
            for c in failed {
                push(out, path, echo_json(v), c);
            }
        }
        _ => {}
    }
}

/// Whether an awsJson request body certainly satisfies `shape`, decided in one streaming pass
/// over the bytes with no tree built and no string copied (unless it has escapes). `false` means
/// "maybe not": the caller then builds the value and runs [`validate_json`] for the message. A
/// body that is not JSON counts as conforming, as it does for [`validate_json`]'s callers (the
/// service's decoder answers it).
///
/// Conservative by construction: where the streaming view can differ from the parsed value
/// (duplicate keys, which the value collapses), it answers `false` whenever the value could fail.
pub fn json_conforms(shape: &'static Shape, body: &[u8]) -> bool {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    match Conforms(shape).deserialize(&mut de) {
        // Trailing bytes make the body something other than JSON: the service answers it.
        Ok(ok) => ok || de.end().is_err(),
        Err(_) => true,
    }
}

/// The streaming check of one value against its shape; yields whether it conforms.
struct Conforms(&'static Shape);

impl<'de> serde::de::DeserializeSeed<'de> for Conforms {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Conforms {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(true)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }

    fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
        Ok(match self.0 {
            Shape::Integer { min, max } => range_violation_i64(v, *min, *max).is_none(),
            Shape::Float { min, max } => range_violation_f64(v as f64, *min, *max).is_none(),
            _ => true,
        })
    }

    fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
        Ok(match self.0 {
            Shape::Integer { min, max } => match i64::try_from(v) {
                Ok(i) => range_violation_i64(i, *min, *max).is_none(),
                Err(_) => max.is_none(),
            },
            Shape::Float { min, max } => range_violation_f64(v as f64, *min, *max).is_none(),
            _ => true,
        })
    }

    fn visit_f64<E>(self, v: f64) -> Result<bool, E> {
        Ok(match self.0 {
            Shape::Float { min, max } => range_violation_f64(v, *min, *max).is_none(),
            _ => true,
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(match self.0 {
            Shape::String { .. } | Shape::Blob { .. } => {
                let mut failed = Vec::new();
                scalar_str(self.0, v, &mut failed);
                failed.is_empty()
            }
            _ => true,
        })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let Shape::List { member, min, max } = self.0 else {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            return Ok(true);
        };
        let mut ok = true;
        let mut n = 0u64;
        while let Some(item_ok) = seq.next_element_seed(Conforms(member))? {
            ok &= item_ok;
            n += 1;
        }
        Ok(ok && length_violation(n, *min, *max).is_none())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut ok = true;
        match self.0 {
            Shape::Structure(members) => {
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match members.iter().find(|m| m.name == key.0.as_ref()) {
                        Some(m) => ok &= map.next_value_seed(Conforms(m.shape))?,
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
            }
            Shape::Map {
                key: key_shape,
                value,
                min,
                max,
            } => {
                let mut n = 0u64;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let mut failed = Vec::new();
                    scalar_str(key_shape, &key.0, &mut failed);
                    ok &= failed.is_empty();
                    ok &= map.next_value_seed(Conforms(value))?;
                    n += 1;
                }
                // Duplicate keys collapse in the parsed value, so its count may be lower than
                // this one: a minimum above one is left to the full check.
                ok &= length_violation(n, *min, *max).is_none() && min.is_none_or(|m| m <= 1);
            }
            _ => {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
            }
        }
        Ok(ok)
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn is_scalar(shape: &Shape) -> bool {
    matches!(
        shape,
        Shape::String { .. }
            | Shape::Blob { .. }
            | Shape::Integer { .. }
            | Shape::Float { .. }
            | Shape::Any
    )
}

/// The constraints a scalar JSON value fails (values of another JSON type fail none here).
fn scalar_json(shape: &Shape, v: &Value, failed: &mut Vec<String>) {
    match (shape, v) {
        (Shape::String { .. } | Shape::Blob { .. }, Value::String(s)) => {
            scalar_str(shape, s, failed)
        }
        (Shape::Integer { min, max }, Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                failed.extend(range_violation_i64(i, *min, *max));
            } else if n.is_u64() {
                // Above i64::MAX: over any integer maximum of the models.
                if let Some(m) = max {
                    failed.push(format!("Member must have value less than or equal to {m}"));
                }
            }
        }
        (Shape::Float { min, max }, Value::Number(n)) => {
            if let Some(f) = n.as_f64() {
                failed.extend(range_violation_f64(f, *min, *max));
            }
        }
        _ => {}
    }
}

/// The constraints a scalar given as text fails (the query protocol's values, JSON strings, map
/// keys).
fn scalar_str(shape: &Shape, s: &str, failed: &mut Vec<String>) {
    match shape {
        Shape::String { min, max, pattern } => {
            if let Some(c) = length_violation(s.encode_utf16().count() as u64, *min, *max) {
                failed.push(c);
            }
            if let Some(p) = pattern
                && !p.matches(s)
            {
                failed.push(format!(
                    "Member must satisfy regular expression pattern: {}",
                    p.source
                ));
            }
        }
        Shape::Blob { min, max } => {
            if let Some(n) = decoded_len(s)
                && let Some(c) = length_violation(n, *min, *max)
            {
                failed.push(c);
            }
        }
        Shape::Integer { min, max } => {
            if let Ok(i) = s.trim().parse::<i64>() {
                failed.extend(range_violation_i64(i, *min, *max));
            }
        }
        Shape::Float { min, max } => {
            if let Ok(f) = s.trim().parse::<f64>() {
                failed.extend(range_violation_f64(f, *min, *max));
            }
        }
        _ => {}
    }
}

/// The byte length of a base64 value, without decoding it; `None` when it is not base64.
fn decoded_len(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        // Let the decoder (which may accept unpadded input) tell.
        return base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
            .map(|v| v.len() as u64);
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    Some((b.len() / 4 * 3).saturating_sub(pad) as u64)
}

fn length_violation(n: u64, min: Option<u64>, max: Option<u64>) -> Option<String> {
    if let Some(m) = max
        && n > m
    {
        return Some(format!("Member must have length less than or equal to {m}"));
    }
    if let Some(m) = min
        && n < m
    {
        return Some(format!(
            "Member must have length greater than or equal to {m}"
        ));
    }
    None
}

fn range_violation_i64(v: i64, min: Option<i64>, max: Option<i64>) -> Option<String> {
    if let Some(m) = max
        && v > m
    {
        return Some(format!("Member must have value less than or equal to {m}"));
    }
    if let Some(m) = min
        && v < m
    {
        return Some(format!(
            "Member must have value greater than or equal to {m}"
        ));
    }
    None
}

fn range_violation_f64(v: f64, min: Option<f64>, max: Option<f64>) -> Option<String> {
    if let Some(m) = max
        && v > m
    {
        return Some(format!("Member must have value less than or equal to {m}"));
    }
    if let Some(m) = min
        && v < m
    {
        return Some(format!(
            "Member must have value greater than or equal to {m}"
        ));
    }
    None
}

/// A value as AWS echoes it: strings bare, lists as `[a, b]`, the rest as JSON; cut at
/// [`MAX_ECHOED`] characters.
fn echo_json(v: &Value) -> String {
    let mut out = String::new();
    echo_into(v, &mut out);
    cut(out)
}

fn echo_into(v: &Value, out: &mut String) {
    if out.len() > MAX_ECHOED {
        return;
    }
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                echo_into(item, out);
                if out.len() > MAX_ECHOED {
                    break;
                }
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn cut(mut s: String) -> String {
    if s.chars().count() > MAX_ECHOED {
        s = s.chars().take(MAX_ECHOED).collect();
        s.push_str("...");
    }
    s
}

/// Checks an awsQuery request against `shape` (lists as `Name.member.N`, maps as
/// `Name.entry.N.key`/`.value`, structures as `Name.Member`).
pub fn validate_query(shape: &Shape, req: &QueryRequest) -> Vec<Violation> {
    let mut index: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in req.pairs() {
        index.entry(k.as_str()).or_insert(v.as_str());
    }
    let mut out = Vec::new();
    if let Shape::Structure(members) = shape {
        for m in *members {
            query_value(m.shape, &index, m.name, &lower_first(m.name), &mut out);
        }
    }
    out
}

fn lower_first(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The distinct element indexes under `prefix` (`prefix` ends with `.`), in order.
fn indexes(index: &BTreeMap<&str, &str>, prefix: &str) -> Vec<u64> {
    let mut found: Vec<u64> = index
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter_map(|(k, _)| k[prefix.len()..].split('.').next()?.parse().ok())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// The element at `key` as AWS echoes it: a scalar bare, a structure as `{Member=value, ...}`.
fn echo_query(index: &BTreeMap<&str, &str>, key: &str) -> String {
    if let Some(v) = index.get(key) {
        return (*v).to_owned();
    }
    let prefix = format!("{key}.");
    let fields: Vec<String> = index
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .take(64)
        .map(|(k, v)| format!("{}={v}", &k[prefix.len()..]))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn query_value(
    shape: &Shape,
    index: &BTreeMap<&str, &str>,
    key: &str,
    path: &str,
    out: &mut Vec<Violation>,
) {
    if out.len() >= MAX_REPORTED {
        return;
    }
    match shape {
        Shape::Structure(members) => {
            for m in *members {
                query_value(
                    m.shape,
                    index,
                    &format!("{key}.{}", m.name),
                    &join(path, &lower_first(m.name)),
                    out,
                );
            }
        }
        Shape::List { member, min, max } => {
            let prefix = format!("{key}.member.");
            let items = indexes(index, &prefix);
            // An empty list is sent as `Name=` with no members.
            let present = !items.is_empty() || index.contains_key(key);
            if !present {
                return;
            }
            let echo = || {
                let values: Vec<String> = items
                    .iter()
                    .map(|i| echo_query(index, &format!("{prefix}{i}")))
                    .collect();
                cut(format!("[{}]", values.join(", ")))
            };
            if let Some(c) = length_violation(items.len() as u64, *min, *max) {
                push(out, path, echo(), c);
            }
            if is_scalar(member) {
                let mut failed = Vec::new();
                for i in &items {
                    if let Some(v) = index.get(format!("{prefix}{i}").as_str()) {
                        scalar_str(member, v, &mut failed);
                    }
                }
                if !failed.is_empty() {
                    failed.dedup();
                    push(
                        out,
                        path,
                        echo(),
                        format!("Member must satisfy constraint: [{}]", failed.join(", ")),
                    );
                }
            } else {
                for i in &items {
                    query_value(
                        member,
                        index,
                        &format!("{prefix}{i}"),
                        &format!("{path}.{i}.member"),
                        out,
                    );
                }
            }
        }
        Shape::Map {
            key: key_shape,
            value,
            min,
            max,
        } => {
            let prefix = format!("{key}.entry.");
            let entries = indexes(index, &prefix);
            if entries.is_empty() {
                return;
            }
            if let Some(c) = length_violation(entries.len() as u64, *min, *max) {
                push(out, path, format!("{} entries", entries.len()), c);
            }
            let mut keys = Vec::new();
            let mut values = Vec::new();
            for i in &entries {
                if let Some(k) = index.get(format!("{prefix}{i}.key").as_str()) {
                    scalar_str(key_shape, k, &mut keys);
                }
                if is_scalar(value) {
                    if let Some(v) = index.get(format!("{prefix}{i}.value").as_str()) {
                        scalar_str(value, v, &mut values);
                    }
                } else {
                    query_value(value, index, &format!("{prefix}{i}.value"), path, out);
                }
            }
            for (failed, what) in [(keys, "Map keys"), (values, "Map value")] {
                if !failed.is_empty() {
                    let mut failed = failed;
                    failed.dedup();
                    push(
                        out,
                        path,
                        format!("{} entries", entries.len()),
                        format!("{what} must satisfy constraint: [{}]", failed.join(", ")),
                    );
                }
            }
        }
        s => {
            if let Some(v) = index.get(key) {
                let mut failed = Vec::new();
                scalar_str(s, v, &mut failed);
                for c in failed {
                    push(out, path, cut((*v).to_owned()), c);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    static NAME_PATTERN: Pattern = Pattern::new("[\\.\\-_/#A-Za-z0-9]+");
    static NAME: Shape = Shape::String {
        min: Some(1),
        max: Some(8),
        pattern: Some(&NAME_PATTERN),
    };
    static LIMIT: Shape = Shape::Integer {
        min: Some(1),
        max: Some(100),
    };
    static TAG_KEY: Shape = Shape::String {
        min: Some(1),
        max: Some(3),
        pattern: None,
    };
    static TAG: Shape = Shape::Structure(&[
        Member {
            name: "key",
            shape: &TAG_KEY,
        },
        Member {
            name: "value",
            shape: &TAG_KEY,
        },
    ]);
    static TAGS: Shape = Shape::List {
        member: &TAG,
        min: None,
        max: Some(2),
    };
    static NAMES: Shape = Shape::List {
        member: &NAME,
        min: Some(1),
        max: Some(3),
    };
    static TAG_MAP: Shape = Shape::Map {
        key: &TAG_KEY,
        value: &TAG_KEY,
        min: None,
        max: Some(2),
    };
    static BLOB: Shape = Shape::Blob {
        min: None,
        max: Some(3),
    };
    static INPUT: Shape = Shape::Structure(&[
        Member {
            name: "logGroupName",
            shape: &NAME,
        },
        Member {
            name: "limit",
            shape: &LIMIT,
        },
        Member {
            name: "tags",
            shape: &TAGS,
        },
        Member {
            name: "names",
            shape: &NAMES,
        },
        Member {
            name: "tagMap",
            shape: &TAG_MAP,
        },
        Member {
            name: "blob",
            shape: &BLOB,
        },
    ]);

    #[test]
    fn a_valid_request_has_no_violation() {
        let body = json!({"logGroupName": "/a/b", "limit": 100, "tags": [{"key": "k", "value": "v"}],
                          "names": ["a"], "tagMap": {"a": "b"}, "blob": "YWJj", "unknown": [1]});
        assert_eq!(validate_json(&INPUT, &body), vec![]);
    }

    #[test]
    fn each_kind_of_constraint_is_worded_as_aws_words_it() {
        let body = json!({"logGroupName": "bad name!", "limit": 20000,
                          "tags": [{"key": "k"}, {"key": "long", "value": "v"}, {"key": "x"}],
                          "names": [], "blob": "YWJjZA=="});
        let v = validate_json(&INPUT, &body);
        let text: Vec<String> = v
            .iter()
            .map(|v| format!("{} | {} | {}", v.path, v.value, v.constraint))
            .collect();
        assert_eq!(
            text,
            vec![
                "logGroupName | bad name! | Member must have length less than or equal to 8",
                "logGroupName | bad name! | Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
                "limit | 20000 | Member must have value less than or equal to 100",
                "tags | [{\"key\":\"k\"}, {\"key\":\"long\",\"value\":\"v\"}, {\"key\":\"x\"}] | Member must have length less than or equal to 2",
                "tags.2.member.key | long | Member must have length less than or equal to 3",
                "names | [] | Member must have length greater than or equal to 1",
                "blob | YWJjZA== | Member must have length less than or equal to 3",
            ]
        );
        assert!(
            message(&v[2..3])
                .starts_with("1 validation error detected: Value '20000' at 'limit' failed")
        );
        assert!(message(&v).starts_with("7 validation errors detected: Value 'bad name!'"));
    }

    #[test]
    fn lists_of_scalars_and_maps_are_reported_at_the_collection() {
        let body =
            json!({"names": ["ok", "not ok"], "tagMap": {"long": "v", "k": "vvvv", "z": "1"}});
        let v = validate_json(&INPUT, &body);
        assert_eq!(v.len(), 4, "{v:?}");
        assert_eq!(v[0].path, "names");
        assert_eq!(
            v[0].constraint,
            "Member must satisfy constraint: [Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+]"
        );
        assert_eq!(
            v[1].constraint,
            "Member must have length less than or equal to 2"
        );
        assert_eq!(
            v[2].constraint,
            "Map keys must satisfy constraint: [Member must have length less than or equal to 3]"
        );
        assert_eq!(
            v[3].constraint,
            "Map value must satisfy constraint: [Member must have length less than or equal to 3]"
        );
    }

    #[test]
    fn values_of_another_type_are_left_to_the_decoder() {
        let body = json!({"logGroupName": 5, "limit": "many", "tags": {"a": 1}});
        assert_eq!(validate_json(&INPUT, &body), vec![]);
    }

    #[test]
    fn strings_count_utf16_units() {
        let body = json!({"logGroupName": "é"});
        assert_eq!(validate_json(&INPUT, &body).len(), 1, "pattern only");
        static SHORT: Shape = Shape::String {
            min: None,
            max: Some(1),
            pattern: None,
        };
        assert!(validate_json(&SHORT, &json!("é")).is_empty());
        assert_eq!(validate_json(&SHORT, &json!("😀")).len(), 1);
    }

    #[test]
    fn query_requests_are_checked_with_query_paths() {
        static QINPUT: Shape = Shape::Structure(&[
            Member {
                name: "Name",
                shape: &NAME,
            },
            Member {
                name: "Tags",
                shape: &TAGS,
            },
            Member {
                name: "PageSize",
                shape: &LIMIT,
            },
        ]);
        static QTAG: Shape = Shape::Structure(&[Member {
            name: "Key",
            shape: &TAG_KEY,
        }]);
        static QTAGS: Shape = Shape::List {
            member: &QTAG,
            min: Some(1),
            max: None,
        };
        static QINPUT2: Shape = Shape::Structure(&[Member {
            name: "Tags",
            shape: &QTAGS,
        }]);
        let req = QueryRequest::parse(
            b"Action=X&Name=a%20b&PageSize=0&Tags.member.1.Key=k&Tags.member.2.Key=x&Tags.member.3.Key=y",
            None,
        );
        let v = validate_query(&QINPUT, &req);
        let text: Vec<String> = v
            .iter()
            .map(|v| format!("{} | {} | {}", v.path, v.value, v.constraint))
            .collect();
        assert_eq!(
            text,
            vec![
                "name | a b | Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
                "tags | [{Key=k}, {Key=x}, {Key=y}] | Member must have length less than or equal to 2",
                "pageSize | 0 | Member must have value greater than or equal to 1",
            ]
        );
        let long_key = QueryRequest::parse(b"Tags.member.1.Key=long", None);
        let v = validate_query(&QINPUT2, &long_key);
        assert_eq!(v[0].path, "tags.1.member.key");
        let empty = QueryRequest::parse(b"Tags=", None);
        assert_eq!(
            validate_query(&QINPUT2, &empty)[0].constraint,
            "Member must have length greater than or equal to 1"
        );
        assert!(validate_query(&QINPUT2, &QueryRequest::parse(b"", None)).is_empty());
    }

    #[test]
    fn java_classes_become_ascii_classes() {
        assert_eq!(java_to_rust("[\\w-_]*"), "[0-9A-Za-z_-_]*");
        assert_eq!(java_to_rust("\\S{36,128}"), "[^\\t\\n\\x0B\\f\\r ]{36,128}");
        assert_eq!(java_to_rust("^\\d{12}$"), "^[0-9]{12}$");
        let p = Pattern::new("[\\w+=/:,.@-]*");
        assert!(p.matches("role/a_b+c=d"));
        assert!(!p.matches("é"), "\\w is ASCII, as in Java");
        let p = Pattern::new("[^:*]*");
        assert!(p.matches("any thing"));
        assert!(!p.matches("a:b"));
    }

    #[test]
    fn reports_are_bounded() {
        let many: Vec<Value> = (0..1000).map(|_| json!({"key": "toolong"})).collect();
        static WIDE: Shape = Shape::List {
            member: &TAG,
            min: None,
            max: None,
        };
        let v = validate_json(&WIDE, &Value::Array(many));
        assert_eq!(v.len(), MAX_REPORTED);
        let long = "x".repeat(10 * MAX_ECHOED);
        let v = validate_json(&NAME, &json!(long));
        assert!(v[0].value.chars().count() <= MAX_ECHOED + 3);
    }
}
