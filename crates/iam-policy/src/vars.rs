//! Policy variables: `${aws:username}`, `${aws:PrincipalTag/team}`, `${*}`, `${?}`, `${$}` and
//! default values (`${aws:username, 'anonymous'}`), parsed once into a [`Template`].
//!
//! Variables exist only in documents whose `Version` is `2012-10-17`; elsewhere `${...}` is plain
//! text. A variable is replaced by the single value of its key in the request (key names are
//! case-insensitive); a key that is absent or has several values takes the default, and without
//! a default the template does not resolve, so the element holding it matches nothing.

use std::net::IpAddr;
use std::sync::OnceLock;

use crate::condition::{parse_addr, parse_date, parse_number};
use crate::glob::{Glob, TokBuilder};

/// One request-context value, with its parsed forms computed on first use and kept (a
/// context is built per request, and the same `aws:SourceIp` or `aws:CurrentTime` is compared
/// by many statements).
#[derive(Debug, Clone, Default)]
pub(crate) struct CtxValue {
    pub(crate) text: String,
    ip: OnceLock<Option<IpAddr>>,
    date: OnceLock<Option<i128>>,
    number: OnceLock<Option<f64>>,
}

impl CtxValue {
    pub(crate) fn new(text: String) -> Self {
        CtxValue {
            text,
            ..CtxValue::default()
        }
    }
}

impl PartialEq for CtxValue {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CtxValue {}

/// One value of a key in the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Val<'a> {
    pub(crate) text: &'a str,
    cache: Option<&'a CtxValue>,
}

impl Val<'_> {
    pub(crate) fn ip(self) -> Option<IpAddr> {
        match self.cache {
            Some(c) => *c.ip.get_or_init(|| parse_addr(&c.text)),
            None => parse_addr(self.text),
        }
    }

    pub(crate) fn date_nanos(self) -> Option<i128> {
        let parse = |t: &str| parse_date(t).map(|d| d.unix_timestamp_nanos());
        match self.cache {
            Some(c) => *c.date.get_or_init(|| parse(&c.text)),
            None => parse(self.text),
        }
    }

    pub(crate) fn number(self) -> Option<f64> {
        match self.cache {
            Some(c) => *c.number.get_or_init(|| parse_number(&c.text)),
            None => parse_number(self.text),
        }
    }
}

/// Values of one key in the request: one value (derived from the principal) or a list (from
/// the request context).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    One(&'a str),
    Many(&'a [CtxValue]),
}

impl<'a> Values<'a> {
    pub(crate) fn is_empty(self) -> bool {
        match self {
            Values::One(_) => false,
            Values::Many(v) => v.is_empty(),
        }
    }

    pub(crate) fn single(self) -> Option<&'a str> {
        match self {
            Values::One(v) => Some(v),
            Values::Many([v]) => Some(v.text.as_str()),
            Values::Many(_) => None,
        }
    }

    pub(crate) fn any(self, mut f: impl FnMut(Val<'a>) -> bool) -> bool {
        match self {
            Values::One(text) => f(Val { text, cache: None }),
            Values::Many(vs) => vs.iter().any(|c| {
                f(Val {
                    text: &c.text,
                    cache: Some(c),
                })
            }),
        }
    }

    pub(crate) fn all(self, mut f: impl FnMut(Val<'a>) -> bool) -> bool {
        match self {
            Values::One(text) => f(Val { text, cache: None }),
            Values::Many(vs) => vs.iter().all(|c| {
                f(Val {
                    text: &c.text,
                    cache: Some(c),
                })
            }),
        }
    }
}

/// Where variables and condition keys are looked up; keys are passed lowercased.
pub(crate) trait Lookup {
    fn lookup(&self, key_lower: &str) -> Option<Values<'_>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Policy text: `*` and `?` are wildcards where the element has them.
    Pattern(Box<str>),
    /// Text that is matched as it is (`${*}`, `${?}`, `${$}`).
    Literal(Box<str>),
    /// A variable, with its key lowercased.
    Var {
        key: Box<str>,
        default: Option<Box<str>>,
    },
}

/// A policy string with its variables located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Box<[Part]>,
}

impl Template {
    /// Parses `text`; with `variables` false (documents older than `2012-10-17`) the text is
    /// taken as it is.
    pub(crate) fn parse(text: &str, variables: bool) -> Self {
        if !variables || !text.contains("${") {
            return Template {
                parts: Box::new([Part::Pattern(text.into())]),
            };
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            let inner = &rest[start + 2..start + 2 + len];
            let Some(part) = parse_variable(inner) else {
                // Not a variable: keep the text, including `${`, as policy text.
                parts.push(Part::Pattern(rest[..start + 2].into()));
                rest = &rest[start + 2..];
                continue;
            };
            if start > 0 {
                parts.push(Part::Pattern(rest[..start].into()));
            }
            parts.push(part);
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Pattern(rest.into()));
        }
        Template {
            parts: parts.into_boxed_slice(),
        }
    }

    /// Whether the template has variables to resolve (special characters do not count).
    pub(crate) fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }

    /// The text of a template without variables, special characters written out.
    pub(crate) fn plain_text(&self) -> Option<String> {
        let mut out = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Pattern(t) | Part::Literal(t) => out.push_str(t),
                Part::Var { .. } => return None,
            }
        }
        Some(out)
    }

    /// Resolves into a wildcard pattern: policy text keeps its wildcards, substituted values and
    /// special characters do not.
    pub(crate) fn resolve_glob(&self, env: &dyn Lookup) -> Option<Glob> {
        let mut b = TokBuilder::default();
        for part in self.parts.iter() {
            match part {
                Part::Pattern(t) => b.push_pattern(t),
                Part::Literal(t) => b.push_literal(t),
                Part::Var { key, default } => b.push_literal(resolve_var(env, key, default)?),
            }
        }
        Some(b.finish())
    }

    /// Resolves into plain text (for operators without wildcards).
    pub(crate) fn resolve_string(&self, env: &dyn Lookup) -> Option<String> {
        let mut out = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Pattern(t) | Part::Literal(t) => out.push_str(t),
                Part::Var { key, default } => out.push_str(resolve_var(env, key, default)?),
            }
        }
        Some(out)
    }

    /// Compiles a template without variables into a glob.
    pub(crate) fn to_glob(&self) -> Glob {
        let mut b = TokBuilder::default();
        for part in self.parts.iter() {
            match part {
                Part::Pattern(t) => b.push_pattern(t),
                Part::Literal(t) => b.push_literal(t),
                Part::Var { .. } => {}
            }
        }
        b.finish()
    }
}

fn resolve_var<'a>(
    env: &'a dyn Lookup,
    key: &str,
    default: &'a Option<Box<str>>,
) -> Option<&'a str> {
    env.lookup(key)
        .and_then(Values::single)
        .or(default.as_deref())
}

fn parse_variable(inner: &str) -> Option<Part> {
    let inner = inner.trim();
    match inner {
        "*" | "?" | "$" => return Some(Part::Literal(inner.into())),
        "" => return None,
        _ => {}
    }
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let quoted = default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))?;
            (key.trim(), Some(quoted.into()))
        }
        None => (inner, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(Part::Var {
        key: key.to_ascii_lowercase().into(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, Vec<CtxValue>>);
    impl Lookup for Env {
        fn lookup(&self, key: &str) -> Option<Values<'_>> {
            self.0.get(key).map(|v| Values::Many(v))
        }
    }

    fn env() -> Env {
        Env(HashMap::from([
            ("aws:username", vec![CtxValue::new("dev".into())]),
            ("aws:principaltag/team", vec![CtxValue::new("web".into())]),
            (
                "aws:tagkeys",
                vec![CtxValue::new("a".into()), CtxValue::new("b".into())],
            ),
        ]))
    }

    #[test]
    fn variables_resolve_case_insensitively() {
        let t = Template::parse("arn:aws:s3:::b/${AWS:UserName}/*", true);
        assert_eq!(
            t.resolve_string(&env()).as_deref(),
            Some("arn:aws:s3:::b/dev/*")
        );
        let g = t.resolve_glob(&env()).unwrap();
        assert!(g.matches("arn:aws:s3:::b/dev/x"));
        assert!(!g.matches("arn:aws:s3:::b/other/x"));
    }

    #[test]
    fn defaults_fill_missing_and_multi_valued_keys() {
        let t = Template::parse("${aws:userid, 'anonymous'}", true);
        assert_eq!(t.resolve_string(&env()).as_deref(), Some("anonymous"));
        let t = Template::parse("${aws:TagKeys,'x'}", true);
        assert_eq!(t.resolve_string(&env()).as_deref(), Some("x"));
        let t = Template::parse("${aws:userid}", true);
        assert_eq!(t.resolve_string(&env()), None);
    }

    #[test]
    fn special_characters_are_literal() {
        let t = Template::parse("a${*}b${?}${$}", true);
        assert!(!t.has_variables());
        let g = t.resolve_glob(&env()).unwrap();
        assert!(g.matches("a*b?$"));
        assert!(!g.matches("axb?$"));
    }

    #[test]
    fn old_versions_keep_the_text() {
        let t = Template::parse("${aws:username}", false);
        assert_eq!(t.resolve_string(&env()).as_deref(), Some("${aws:username}"));
        let t = Template::parse("a${ b", true);
        assert_eq!(t.resolve_string(&env()).as_deref(), Some("a${ b"));
    }
}
