//! CloudWatch Logs filter patterns, parsed once per request and matched against each message.
//!
//! Supported: the empty pattern (everything); term patterns (`ERROR Exception` all must occur,
//! `"quoted phrase"`, `-term` excludes, `?term` any-of; case-sensitive substring matching);
//! regular expressions (`%regex%`); JSON patterns (`{ $.a.b[0] = "x*" && ($.n >= 5 || $.f IS
//! TRUE) }` with `=`, `!=`, `<`, `<=`, `>`, `>=`, `IS NULL|TRUE|FALSE`, `EXISTS`, `NOT EXISTS`,
//! `*` wildcards in string values). Space-delimited patterns (`[ip, user, ...]`) are refused
//! with a clear error.

use serde_json::Value;

/// The most memory a pattern's compiled regular expression (and, separately, its lazy DFA cache)
/// may take: a pattern that needs more is refused, not compiled.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The deepest nesting of parentheses in a JSON pattern or a regular expression.
const MAX_NESTING: u32 = 32;

/// Why a filter pattern could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid filter pattern: {0}")]
pub struct PatternError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError(msg.into()))
}

/// A parsed filter pattern.
#[derive(Debug, Clone)]
pub enum FilterPattern {
    /// The empty pattern: every event matches.
    All,
    Terms(TermPattern),
    Regex(regex::Regex),
    Json(JsonExpr),
}

/// Terms of an unstructured pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TermPattern {
    /// Every one must occur.
    pub required: Vec<String>,
    /// When any are given, at least one must occur.
    pub any: Vec<String>,
    /// None may occur.
    pub excluded: Vec<String>,
}

impl FilterPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let p = pattern.trim();
        if p.is_empty() {
            return Ok(Self::All);
        }
        if let Some(body) = p.strip_prefix('{') {
            let Some(body) = body.strip_suffix('}') else {
                return err("a JSON pattern must end with '}'");
            };
            return Ok(Self::Json(JsonParser::new(body)?.parse_all()?));
        }
        if p.starts_with('[') {
            return err("space-delimited patterns ([field, ...]) are not supported");
        }
        if p.len() >= 2 && p.starts_with('%') && p.ends_with('%') {
            let re = regex::RegexBuilder::new(&p[1..p.len() - 1])
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .nest_limit(MAX_NESTING)
                .build()
                .map_err(|e| PatternError(format!("bad regular expression: {e}")))?;
            return Ok(Self::Regex(re));
        }
        Ok(Self::Terms(parse_terms(p)?))
    }

    pub fn matches(&self, message: &str) -> bool {
        match self {
            Self::All => true,
            Self::Terms(t) => t.matches(message),
            Self::Regex(re) => re.is_match(message),
            Self::Json(expr) => match serde_json::from_str::<Value>(message.trim()) {
                Ok(doc) => expr.eval(&doc),
                Err(_) => false,
            },
        }
    }
}

impl TermPattern {
    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| message.contains(t.as_str())))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
    }
}

fn parse_terms(p: &str) -> Result<TermPattern, PatternError> {
    let mut out = TermPattern::default();
    let mut chars = p.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            break;
        };
        let kind = match first {
            '?' | '-' => {
                chars.next();
                first
            }
            _ => ' ',
        };
        let mut term = String::new();
        if chars.next_if_eq(&'"').is_some() {
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e) => term.push(e),
                        None => return err("unterminated escape in quoted term"),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => term.push(c),
                }
            }
            if !closed {
                return err("unterminated quoted term");
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                term.push(c);
            }
        }
        if term.is_empty() {
            if kind == '-' || kind == '?' {
                return err(format!("'{kind}' must be followed by a term"));
            }
            continue;
        }
        match kind {
            '?' => out.any.push(term),
            '-' => out.excluded.push(term),
            _ => out.required.push(term),
        }
    }
    Ok(out)
}

/// A JSON pattern's boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonExpr {
    And(Box<JsonExpr>, Box<JsonExpr>),
    Or(Box<JsonExpr>, Box<JsonExpr>),
    Cond(Selector, Cond),
}

/// A path into the document (`$.a.b[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Cmp(CmpOp, Literal),
    IsNull,
    IsBool(bool),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    /// A string value; `*` is a wildcard.
    Str(String),
}

impl Selector {
    /// The value the selector names in `doc`, if any.
    pub fn resolve<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut v = doc;
        for step in &self.0 {
            v = match step {
                Step::Key(k) => v.as_object()?.get(k)?,
                Step::Index(i) => v.as_array()?.get(*i)?,
            };
        }
        Some(v)
    }
}

impl JsonExpr {
    pub fn eval(&self, doc: &Value) -> bool {
        match self {
            Self::And(a, b) => a.eval(doc) && b.eval(doc),
            Self::Or(a, b) => a.eval(doc) || b.eval(doc),
            Self::Cond(sel, cond) => {
                let v = sel.resolve(doc);
                match cond {
                    Cond::Exists => v.is_some(),
                    Cond::NotExists => v.is_none(),
                    Cond::IsNull => v.is_some_and(Value::is_null),
                    Cond::IsBool(b) => v.and_then(Value::as_bool) == Some(*b),
                    Cond::Cmp(op, lit) => v.is_some_and(|v| compare(v, *op, lit)),
                }
            }
        }
    }
}

fn compare(v: &Value, op: CmpOp, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::Number(n), Literal::Number(want)) => {
            let Some(have) = n.as_f64() else {
                return false;
            };
            match op {
                CmpOp::Eq => have == *want,
                CmpOp::Ne => have != *want,
                CmpOp::Lt => have < *want,
                CmpOp::Le => have <= *want,
                CmpOp::Gt => have > *want,
                CmpOp::Ge => have >= *want,
            }
        }
        (Value::String(s), Literal::Str(want)) => match op {
            CmpOp::Eq => wildcard_match(want, s),
            CmpOp::Ne => !wildcard_match(want, s),
            _ => false,
        },
        (Value::String(s), Literal::Number(want)) => match op {
            // A numeric literal against a string field compares the text, as `= 200` does on "200".
            CmpOp::Eq => s.parse::<f64>().ok() == Some(*want),
            CmpOp::Ne => s.parse::<f64>().ok() != Some(*want),
            _ => false,
        },
        (Value::Number(n), Literal::Str(want)) => match op {
            CmpOp::Eq => wildcard_match(want, &n.to_string()),
            CmpOp::Ne => !wildcard_match(want, &n.to_string()),
            _ => false,
        },
        (Value::Bool(b), Literal::Str(want)) => match op {
            CmpOp::Eq => want == if *b { "true" } else { "false" },
            CmpOp::Ne => want != if *b { "true" } else { "false" },
            _ => false,
        },
        _ => false,
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Op(CmpOp),
    Str(String),
    Word(String),
}

struct JsonParser {
    toks: Vec<Tok>,
    pos: usize,
    depth: u32,
}

fn lex(s: &str) -> Result<Vec<Tok>, PatternError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::LParen);
            }
            ')' => {
                chars.next();
                out.push(Tok::RParen);
            }
            '&' | '|' => {
                chars.next();
                if chars.next() != Some(c) {
                    return err(format!("expected '{c}{c}'"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
            }
            '=' => {
                chars.next();
                out.push(Tok::Op(CmpOp::Eq));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return err("expected '!='");
                }
                out.push(Tok::Op(CmpOp::Ne));
            }
            '<' | '>' => {
                chars.next();
                let eq = chars.next_if_eq(&'=').is_some();
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    _ => CmpOp::Ge,
                }));
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(e) => s.push(e),
                            None => return err("unterminated escape"),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return err("unterminated string");
                }
                out.push(Tok::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(c) =
                    chars.next_if(|c| !c.is_whitespace() && !"()&|=!<>\"".contains(*c))
                {
                    w.push(c);
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// Parses a selector such as `$.a.b[0]`.
pub fn parse_selector(w: &str) -> Result<Selector, PatternError> {
    let Some(mut rest) = w.strip_prefix('$') else {
        return err(format!(
            "expected a selector starting with '$', found '{w}'"
        ));
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return err(format!("empty field name in '{w}'"));
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return err(format!("unclosed '[' in '{w}'"));
            };
            let idx = r[..end]
                .parse()
                .map_err(|_| PatternError(format!("bad array index in '{w}'")))?;
            steps.push(Step::Index(idx));
            rest = &r[end + 1..];
        } else {
            return err(format!("bad selector '{w}'"));
        }
    }
    Ok(Selector(steps))
}

impl JsonParser {
    fn new(body: &str) -> Result<Self, PatternError> {
        Ok(Self {
            toks: lex(body)?,
            pos: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn parse_all(mut self) -> Result<JsonExpr, PatternError> {
        let e = self.parse_or()?;
        match self.peek() {
            None => Ok(e),
            Some(t) => err(format!("unexpected {t:?}")),
        }
    }

    fn parse_or(&mut self) -> Result<JsonExpr, PatternError> {
        let mut left = self.parse_and()?;
        while self.peek() == Some(&Tok::Or) {
            self.next();
            left = JsonExpr::Or(Box::new(left), Box::new(self.parse_and()?));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<JsonExpr, PatternError> {
        let mut left = self.parse_unary()?;
        while self.peek() == Some(&Tok::And) {
            self.next();
            left = JsonExpr::And(Box::new(left), Box::new(self.parse_unary()?));
        }
        Ok(left)
    }

    fn parse_unary(&mut self) -> Result<JsonExpr, PatternError> {
        match self.next() {
            Some(Tok::LParen) => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return err(format!(
                        "parentheses nested deeper than {MAX_NESTING} levels"
                    ));
                }
                let e = self.parse_or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => err("expected ')'"),
                }
            }
            Some(Tok::Word(w)) => {
                let sel = parse_selector(&w)?;
                Ok(JsonExpr::Cond(sel, self.parse_cond()?))
            }
            Some(t) => err(format!("unexpected {t:?}")),
            None => err("unexpected end of pattern"),
        }
    }

    fn keyword(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.to_ascii_uppercase();
                self.pos += 1;
                Some(w)
            }
            _ => None,
        }
    }

    fn parse_cond(&mut self) -> Result<Cond, PatternError> {
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.next();
                let lit = match self.next() {
                    Some(Tok::Str(s)) => Literal::Str(s),
                    Some(Tok::Word(w)) => match w.parse::<f64>() {
                        Ok(n) if w != "*" => Literal::Number(n),
                        _ => Literal::Str(w),
                    },
                    _ => return err("expected a value after the operator"),
                };
                if matches!(lit, Literal::Str(_))
                    && matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)
                {
                    return err("<, <=, > and >= need a numeric value");
                }
                Ok(Cond::Cmp(op, lit))
            }
            Some(Tok::Word(_)) => match self.keyword().as_deref() {
                Some("IS") => match self.keyword().as_deref() {
                    Some("NULL") => Ok(Cond::IsNull),
                    Some("TRUE") => Ok(Cond::IsBool(true)),
                    Some("FALSE") => Ok(Cond::IsBool(false)),
                    _ => err("expected NULL, TRUE or FALSE after IS"),
                },
                Some("EXISTS") => Ok(Cond::Exists),
                Some("NOT") => match self.keyword().as_deref() {
                    Some("EXISTS") => Ok(Cond::NotExists),
                    _ => err("expected EXISTS after NOT"),
                },
                Some(other) => err(format!("unexpected '{other}'")),
                None => err("expected a condition"),
            },
            _ => err("expected a comparison after the selector"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(pattern: &str, message: &str) -> bool {
        FilterPattern::parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .matches(message)
    }

    #[test]
    fn term_patterns_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("   ", "anything", true),
            ("ERROR", "[ERROR] disk full", true),
            ("ERROR", "error: lowercase", false),
            ("ERROR Exception", "ERROR in NullPointerException", true),
            ("ERROR Exception", "ERROR only", false),
            ("\"disk full\"", "ERROR disk full now", true),
            ("\"disk full\"", "full disk", false),
            ("-DEBUG", "INFO started", true),
            ("-DEBUG", "DEBUG noisy", false),
            ("ERROR -timeout", "ERROR timeout", false),
            ("ERROR -timeout", "ERROR refused", true),
            ("?ERROR ?WARN", "WARN low memory", true),
            ("?ERROR ?WARN", "INFO ok", false),
            ("?ERROR ?WARN -ignore", "ERROR ignore me", false),
            ("GET ?404 ?500", "GET /x 500", true),
            ("GET ?404 ?500", "POST /x 500", false),
            ("-\"health check\"", "GET /health-check", true),
            ("-\"health check\"", "health check ok", false),
            ("\"say \\\"hi\\\"\"", "they say \"hi\" twice", true),
            ("%ERR(OR)?\\s+\\d+%", "ERR 42", true),
            ("%^INFO%", "WARN INFO", false),
        ];
        for (p, msg, want) in cases {
            assert_eq!(m(p, msg), *want, "pattern {p:?} on {msg:?}");
        }
    }

    #[test]
    fn json_patterns_table() {
        let doc = r#"{"level":"error","code":500,"user":{"id":"u-17","admin":false},
            "tags":["a","b"],"latency":1250.5,"none":null,"ok":true}"#;
        let cases: &[(&str, bool)] = &[
            ("{ $.level = \"error\" }", true),
            ("{ $.level = error }", true),
            ("{$.level=\"warn\"}", false),
            ("{ $.level != \"warn\" }", true),
            ("{ $.code = 500 }", true),
            ("{ $.code >= 400 }", true),
            ("{ $.code < 400 }", false),
            ("{ $.latency > 1000 }", true),
            ("{ $.user.id = \"u-*\" }", true),
            ("{ $.user.id = \"*-17\" }", true),
            ("{ $.user.id = \"x*\" }", false),
            ("{ $.tags[1] = \"b\" }", true),
            ("{ $.tags[5] = \"b\" }", false),
            ("{ $.none IS NULL }", true),
            ("{ $.ok IS TRUE }", true),
            ("{ $.user.admin IS FALSE }", true),
            ("{ $.missing EXISTS }", false),
            ("{ $.missing NOT EXISTS }", true),
            ("{ $.missing = 1 }", false),
            ("{ $.missing != 1 }", false),
            ("{ $.level = \"error\" && $.code = 404 }", false),
            (
                "{ $.level = \"error\" && ($.code = 404 || $.code = 500) }",
                true,
            ),
            ("{ $.level = \"info\" || $.ok IS TRUE }", true),
        ];
        for (p, want) in cases {
            assert_eq!(m(p, doc), *want, "pattern {p}");
        }
        assert!(!m("{ $.level = \"error\" }", "not json at all"));
        assert!(!m("{ $.level = \"error\" }", "ERROR level"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        let deep = format!("{{ {}$.a = 1{} }}", "(".repeat(40), ")".repeat(40));
        for p in [
            "{ $.a = 1",
            "{ a = 1 }",
            "{ $.a = }",
            "{ $.a > \"x\" }",
            "{ ($.a = 1 }",
            "{ $.a = 1 & $.b = 2 }",
            "{ $.a IS maybe }",
            "\"unterminated",
            "[ip, user]",
            "%(unclosed%",
            "ERROR -",
            "%a{1000}{1000}%",
            &deep,
        ] {
            assert!(FilterPattern::parse(p).is_err(), "{p} should be refused");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abc"));
        assert!(wildcard_match("a*c", "ac"));
        assert!(!wildcard_match("a*c", "a"));
        assert!(wildcard_match("*b*", "abc"));
        assert!(!wildcard_match("ab*ba", "aba"));
        assert!(wildcard_match("exact", "exact"));
    }

    fn word() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{1,6}"
    }

    proptest! {
        #[test]
        fn every_required_term_must_occur(terms in prop::collection::vec(word(), 1..5), msg in "[A-Za-z0-9 ]{0,40}") {
            let p = FilterPattern::parse(&terms.join(" ")).unwrap();
            let want = terms.iter().all(|t| msg.contains(t.as_str()));
            prop_assert_eq!(p.matches(&msg), want);
        }

        #[test]
        fn excluding_a_term_negates_it(t in word(), msg in "[A-Za-z0-9 ]{0,40}") {
            let inc = FilterPattern::parse(&t).unwrap();
            let exc = FilterPattern::parse(&format!("-{t}")).unwrap();
            prop_assert_eq!(inc.matches(&msg), !exc.matches(&msg));
        }

        #[test]
        fn any_terms_match_if_one_occurs(terms in prop::collection::vec(word(), 1..5), msg in "[A-Za-z0-9 ]{0,40}") {
            let pattern: Vec<String> = terms.iter().map(|t| format!("?{t}")).collect();
            let p = FilterPattern::parse(&pattern.join(" ")).unwrap();
            prop_assert_eq!(p.matches(&msg), terms.iter().any(|t| msg.contains(t.as_str())));
        }

        #[test]
        fn a_quoted_phrase_is_a_substring_test(phrase in "[A-Za-z0-9 ]{1,12}", msg in "[A-Za-z0-9 ]{0,40}") {
            let p = FilterPattern::parse(&format!("\"{phrase}\"")).unwrap();
            prop_assert_eq!(p.matches(&msg), msg.contains(phrase.as_str()));
        }

        #[test]
        fn json_equality_matches_exactly_the_same_value(a in "[a-z]{1,8}", b in "[a-z]{1,8}", n in 0i64..1000, k in 0i64..1000) {
            let msg = serde_json::json!({"f": a, "n": n}).to_string();
            let p = FilterPattern::parse(&format!("{{ $.f = \"{b}\" }}")).unwrap();
            prop_assert_eq!(p.matches(&msg), a == b);
            let p = FilterPattern::parse(&format!("{{ $.n > {k} }}")).unwrap();
            prop_assert_eq!(p.matches(&msg), n > k);
        }

        #[test]
        fn parsing_never_panics(p in ".{0,40}", msg in ".{0,40}") {
            if let Ok(p) = FilterPattern::parse(&p) {
                let _ = p.matches(&msg);
            }
        }
    }
}
