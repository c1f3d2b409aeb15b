//! The Logs Insights query language: lexer, parser and syntax tree.
//!
//! A query is commands separated by `|`: `fields`, `display`, `filter`, `parse`, `stats`, `sort`,
//! `limit` and `dedup`. Errors carry the character span they concern, as AWS's
//! `queryCompileError` does.

use regex::Regex;

/// Why a query does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub message: String,
    pub start: usize,
    pub end: usize,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

/// Longest regex program a query may compile (per pattern).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// A time span such as `5m`, in milliseconds.
    Span(i64),
    Regex(String),
    Punct(&'static str),
    Star,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
    /// Line (1-based) and column (0-based) of `start`.
    line: usize,
    col: usize,
}

const PUNCT: &[&str] = &[
    "!=", "<=", ">=", "=~", "|", ",", "(", ")", "[", "]", "=", "<", ">", "+", "-", "/", "%", "^",
];

/// Words after which a `/` starts a regular expression rather than a division.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "like", "filter", "parse", "by", "as", "fields", "display", "stats",
    "sort", "dedup",
];

fn unit_ms(unit: &str) -> Option<i64> {
    Some(match unit {
        "ms" => 1,
        "s" | "sec" | "second" | "seconds" => 1000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "week" | "weeks" => 7 * 86_400_000,
        "mo" | "month" | "months" => 30 * 86_400_000,
        "q" | "quarter" | "quarters" => 90 * 86_400_000,
        "y" | "year" | "years" => 365 * 86_400_000,
        _ => return None,
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '@' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '$')
}

fn lex(src: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    let (mut line, mut line_start) = (1, 0);
    let pos_of = |i: usize| chars.get(i).map_or(src.len(), |c| c.0);
    while i < chars.len() {
        let (at, c) = chars[i];
        if c == '\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let col = i - line_start;
        let start = i;
        let unexpected = |what: String| QueryError {
            message: format!("unexpected symbol found {what} at line {line} and position {col}"),
            start,
            end: start + 1,
        };
        // `parse field /re/`: the regex follows the field.
        let after_parse_field = out.len() >= 2
            && matches!(&out[out.len() - 2].tok, Tok::Ident(w) if w.eq_ignore_ascii_case("parse"));
        let operand_before = !after_parse_field
            && match out.last().map(|t| &t.tok) {
                Some(Tok::Ident(w)) => !KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)),
                Some(Tok::Str(_) | Tok::Num(_) | Tok::Span(_) | Tok::Punct(")")) => true,
                _ => false,
            };
        let tok = if c == '#' {
            // A comment to the end of the line.
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
            continue;
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&(_, d)) = chars.get(i) else {
                    return Err(QueryError {
                        message: format!(
                            "unterminated string literal at line {line} and position {col}"
                        ),
                        start,
                        end: chars.len(),
                    });
                };
                i += 1;
                match d {
                    '\\' => {
                        if let Some(&(_, e)) = chars.get(i) {
                            s.push(e);
                            i += 1;
                        }
                    }
                    d if d == c => break,
                    d => s.push(d),
                }
            }
            Tok::Str(s)
        } else if c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&(_, d)) = chars.get(i) else {
                    return Err(QueryError {
                        message: format!(
                            "unterminated quoted field at line {line} and position {col}"
                        ),
                        start,
                        end: chars.len(),
                    });
                };
                i += 1;
                if d == '`' {
                    break;
                }
                s.push(d);
            }
            Tok::Ident(s)
        } else if c == '/' && !operand_before {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&(_, d)) = chars.get(i) else {
                    return Err(QueryError {
                        message: format!(
                            "unterminated regular expression at line {line} and position {col}"
                        ),
                        start,
                        end: chars.len(),
                    });
                };
                i += 1;
                match d {
                    '\\' if chars.get(i).is_some_and(|e| e.1 == '/') => {
                        s.push('/');
                        i += 1;
                    }
                    '/' => break,
                    d => s.push(d),
                }
            }
            Tok::Regex(s)
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.1.is_ascii_digit()))
        {
            let s0 = i;
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                i += 1;
            }
            let text = &src[at..pos_of(i)];
            let num: f64 = text.parse().map_err(|_| unexpected(format!("'{text}'")))?;
            let u0 = i;
            while i < chars.len() && chars[i].1.is_ascii_alphabetic() {
                i += 1;
            }
            if u0 < i {
                let unit = &src[pos_of(u0)..pos_of(i)];
                let ms = unit_ms(unit).ok_or_else(|| QueryError {
                    message: format!("invalid time unit {unit} at line {line} and position {col}"),
                    start: s0,
                    end: i,
                })?;
                Tok::Span((num * ms as f64) as i64)
            } else {
                Tok::Num(num)
            }
        } else if is_ident_start(c) {
            while i < chars.len() && is_ident_char(chars[i].1) {
                i += 1;
            }
            Tok::Ident(src[at..pos_of(i)].to_owned())
        } else if c == '*' {
            i += 1;
            Tok::Star
        } else {
            let rest = &src[at..];
            let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) else {
                return Err(unexpected(format!("'{c}'")));
            };
            i += p.chars().count();
            Tok::Punct(p)
        };
        out.push(Token {
            tok,
            start,
            end: i,
            line,
            col,
        });
    }
    Ok(out)
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// An expression over a record's fields.
#[derive(Debug, Clone)]
pub enum Expr {
    Field(String),
    Str(String),
    Num(f64),
    /// A time span literal (milliseconds).
    Span(i64),
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `x in [a, b]` (negated: `not in`).
    In(Box<Expr>, Vec<Expr>, bool),
    /// `x like "text"` (substring), or `x like /re/` and `x =~ /re/` (negated: `not like`).
    Like(Box<Expr>, Matcher, bool),
}

/// What `like` tests.
#[derive(Debug, Clone)]
pub enum Matcher {
    Substring(String),
    Regex(Regex),
}

impl Matcher {
    pub fn is_match(&self, s: &str) -> bool {
        match self {
            Self::Substring(t) => s.contains(t.as_str()),
            Self::Regex(r) => r.is_match(s),
        }
    }
}

/// An aggregate function of `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    Pct,
    Stddev,
    Earliest,
    Latest,
}

impl AggFn {
    fn from_name(n: &str) -> Option<Self> {
        Some(match n {
            "count" => Self::Count,
            "count_distinct" => Self::CountDistinct,
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "pct" | "percentile" => Self::Pct,
            "stddev" => Self::Stddev,
            "earliest" => Self::Earliest,
            "latest" => Self::Latest,
            _ => return None,
        })
    }
}

/// One aggregate of `stats`: `count(*)` has no argument.
#[derive(Debug, Clone)]
pub struct Agg {
    pub func: AggFn,
    pub arg: Option<Expr>,
    /// `pct`'s percentile (0..=100).
    pub pct: f64,
    pub name: String,
}

/// How `parse` extracts fields.
#[derive(Debug, Clone)]
pub enum ParseSpec {
    /// A glob with `*` per extracted field, in order.
    Glob {
        parts: Vec<String>,
        names: Vec<String>,
    },
    /// A regex whose named groups are the fields.
    Regex(Regex),
}

/// One command of the pipeline.
#[derive(Debug, Clone)]
pub enum Command {
    Fields(Vec<(Expr, String)>),
    Display(Vec<(Expr, String)>),
    Filter(Expr),
    Parse {
        field: Expr,
        spec: ParseSpec,
    },
    Stats {
        aggs: Vec<Agg>,
        by: Vec<(Expr, String)>,
    },
    /// Fields and whether each sorts descending.
    Sort(Vec<(Expr, bool)>),
    Limit(usize),
    Dedup(Vec<Expr>),
}

/// A compiled query.
#[derive(Debug, Clone)]
pub struct Query {
    pub commands: Vec<Command>,
}

/// Most rows `limit` accepts (AWS's cap on a query's results).
pub const MAX_LIMIT: usize = 10_000;

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
}

fn kw(t: &Tok, word: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
}

fn regex(src: &str, start: usize, end: usize) -> Result<Regex, QueryError> {
    regex::RegexBuilder::new(src)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(32)
        .build()
        .map_err(|e| QueryError {
            message: format!(
                "invalid regular expression /{src}/: {}",
                e.to_string().lines().last().unwrap_or("")
            ),
            start,
            end,
        })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn error_here(&self) -> QueryError {
        match self.toks.get(self.i) {
            Some(t) => QueryError {
                message: format!(
                    "unexpected symbol found {} at line {} and position {}",
                    &self.src_chars(t.start, t.end),
                    t.line,
                    t.col
                ),
                start: t.start,
                end: t.end,
            },
            None => {
                let n = self.src.chars().count();
                QueryError {
                    message: "unexpected end of query".to_owned(),
                    start: n,
                    end: n,
                }
            }
        }
    }

    fn src_chars(&self, start: usize, end: usize) -> String {
        self.src.chars().skip(start).take(end - start).collect()
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| kw(t, word)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), QueryError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn at_command_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Punct("|")))
    }

    /// The source text from token `from` to the current position, as a column name.
    fn text_since(&self, from: usize) -> String {
        let (Some(a), Some(b)) = (self.toks.get(from), self.toks.get(self.i.saturating_sub(1)))
        else {
            return String::new();
        };
        self.src_chars(a.start, b.end)
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        let mut commands = Vec::new();
        loop {
            commands.push(self.command()?);
            if self.peek().is_none() {
                break;
            }
            self.expect_punct("|")?;
        }
        Ok(Query { commands })
    }

    fn field_name(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.error_here()),
        }
    }

    fn named_list(&mut self) -> Result<Vec<(Expr, String)>, QueryError> {
        let mut out = Vec::new();
        loop {
            let from = self.i;
            let e = self.expr()?;
            let mut name = self.text_since(from);
            if self.eat_kw("as") {
                name = self.field_name()?;
            }
            out.push((e, name));
            if !self.eat_punct(",") {
                return Ok(out);
            }
        }
    }

    fn command(&mut self) -> Result<Command, QueryError> {
        let Some(Tok::Ident(word)) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        let cmd_at = self.i;
        self.i += 1;
        let cmd = match word.to_ascii_lowercase().as_str() {
            "fields" => Command::Fields(self.named_list()?),
            "display" => Command::Display(self.named_list()?),
            "filter" => Command::Filter(self.expr()?),
            "parse" => self.parse_cmd()?,
            "stats" => self.stats()?,
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let e = self.expr()?;
                    let desc = if self.eat_kw("desc") {
                        true
                    } else {
                        self.eat_kw("asc");
                        false
                    };
                    keys.push((e, desc));
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                Command::Sort(keys)
            }
            "limit" | "head" => match self.peek() {
                Some(Tok::Num(n)) if n.fract() == 0.0 && *n >= 1.0 => {
                    let n = *n;
                    self.i += 1;
                    if n as usize > MAX_LIMIT {
                        let t = &self.toks[self.i - 1];
                        return Err(QueryError {
                            message: format!(
                                "limit must be between 1 and {MAX_LIMIT} at line {} and position {}",
                                t.line, t.col
                            ),
                            start: t.start,
                            end: t.end,
                        });
                    }
                    Command::Limit(n as usize)
                }
                _ => return Err(self.error_here()),
            },
            "dedup" => {
                let mut fields = Vec::new();
                loop {
                    fields.push(self.primary()?);
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                Command::Dedup(fields)
            }
            _ => {
                self.i = cmd_at;
                return Err(self.error_here());
            }
        };
        if self.at_command_end() {
            Ok(cmd)
        } else {
            Err(self.error_here())
        }
    }

    fn parse_cmd(&mut self) -> Result<Command, QueryError> {
        // `parse /re/` reads @message; `parse field 'glob' as a, b` or `parse field /re/`.
        let field = match self.peek() {
            Some(Tok::Regex(_) | Tok::Str(_)) => Expr::Field("@message".to_owned()),
            _ => self.primary()?,
        };
        let Some(t) = self.bump() else {
            return Err(self.error_here());
        };
        let spec = match t.tok {
            Tok::Regex(src) => {
                let re = regex(&src, t.start, t.end)?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(QueryError {
                        message: format!(
                            "parse regular expression must have at least one named capture group at line {} and position {}",
                            t.line, t.col
                        ),
                        start: t.start,
                        end: t.end,
                    });
                }
                ParseSpec::Regex(re)
            }
            Tok::Str(glob) => {
                if !self.eat_kw("as") {
                    return Err(self.error_here());
                }
                let mut names = Vec::new();
                loop {
                    names.push(self.field_name()?);
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                let parts: Vec<String> = glob.split('*').map(str::to_owned).collect();
                if parts.len() - 1 != names.len() {
                    return Err(QueryError {
                        message: format!(
                            "parse pattern has {} wildcards but {} fields at line {} and position {}",
                            parts.len() - 1,
                            names.len(),
                            t.line,
                            t.col
                        ),
                        start: t.start,
                        end: self.toks.get(self.i - 1).map_or(t.end, |t| t.end),
                    });
                }
                ParseSpec::Glob { parts, names }
            }
            _ => {
                self.i -= 1;
                return Err(self.error_here());
            }
        };
        Ok(Command::Parse { field, spec })
    }

    fn stats(&mut self) -> Result<Command, QueryError> {
        let mut aggs = Vec::new();
        loop {
            let from = self.i;
            let Some(Tok::Ident(fname)) = self.peek().cloned() else {
                return Err(self.error_here());
            };
            let Some(func) = AggFn::from_name(&fname.to_ascii_lowercase()) else {
                return Err(self.error_here());
            };
            self.i += 1;
            self.expect_punct("(")?;
            let mut arg = None;
            let mut pct = 0.0;
            if matches!(self.peek(), Some(Tok::Star)) {
                if func != AggFn::Count {
                    return Err(self.error_here());
                }
                self.i += 1;
            } else if func == AggFn::Count && matches!(self.peek(), Some(Tok::Punct(")"))) {
            } else {
                arg = Some(self.expr()?);
                if func == AggFn::Pct {
                    self.expect_punct(",")?;
                    match self.peek() {
                        Some(Tok::Num(n)) if (0.0..=100.0).contains(n) => {
                            pct = *n;
                            self.i += 1;
                        }
                        _ => return Err(self.error_here()),
                    }
                }
            }
            self.expect_punct(")")?;
            let mut name = self.text_since(from);
            if self.eat_kw("as") {
                name = self.field_name()?;
            }
            aggs.push(Agg {
                func,
                arg,
                pct,
                name,
            });
            if !self.eat_punct(",") {
                break;
            }
        }
        let by = if self.eat_kw("by") {
            self.named_list()?
        } else {
            Vec::new()
        };
        Ok(Command::Stats { aggs, by })
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.or()
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.and()?;
        while self.eat_kw("or") {
            let r = self.and()?;
            l = Expr::Bin(BinOp::Or, Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.not()?;
        while self.eat_kw("and") {
            let r = self.not()?;
            l = Expr::Bin(BinOp::And, Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_kw("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let l = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Punct("=")) => Some(BinOp::Eq),
            Some(Tok::Punct("!=")) => Some(BinOp::Ne),
            Some(Tok::Punct("<")) => Some(BinOp::Lt),
            Some(Tok::Punct("<=")) => Some(BinOp::Le),
            Some(Tok::Punct(">")) => Some(BinOp::Gt),
            Some(Tok::Punct(">=")) => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.i += 1;
            let r = self.additive()?;
            return Ok(Expr::Bin(op, Box::new(l), Box::new(r)));
        }
        let negated = self.eat_kw("not");
        if self.eat_kw("in") {
            self.expect_punct("[")?;
            let mut items = Vec::new();
            if !self.eat_punct("]") {
                loop {
                    items.push(self.additive()?);
                    if !self.eat_punct(",") {
                        break;
                    }
                }
                self.expect_punct("]")?;
            }
            return Ok(Expr::In(Box::new(l), items, negated));
        }
        let like = self.eat_kw("like") || (!negated && self.eat_punct("=~"));
        if like {
            let Some(t) = self.bump() else {
                return Err(self.error_here());
            };
            let m = match t.tok {
                Tok::Str(s) => Matcher::Substring(s),
                Tok::Regex(r) => Matcher::Regex(regex(&r, t.start, t.end)?),
                _ => {
                    self.i -= 1;
                    return Err(self.error_here());
                }
            };
            return Ok(Expr::Like(Box::new(l), m, negated));
        }
        if negated {
            return Err(self.error_here());
        }
        Ok(l)
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.multiplicative()?;
        loop {
            let op = if self.eat_punct("+") {
                BinOp::Add
            } else if self.eat_punct("-") {
                BinOp::Sub
            } else {
                return Ok(l);
            };
            let r = self.multiplicative()?;
            l = Expr::Bin(op, Box::new(l), Box::new(r));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, QueryError> {
        let mut l = self.power()?;
        loop {
            let op = if matches!(self.peek(), Some(Tok::Star)) {
                self.i += 1;
                BinOp::Mul
            } else if self.eat_punct("/") {
                BinOp::Div
            } else if self.eat_punct("%") {
                BinOp::Mod
            } else {
                return Ok(l);
            };
            let r = self.power()?;
            l = Expr::Bin(op, Box::new(l), Box::new(r));
        }
    }

    fn power(&mut self) -> Result<Expr, QueryError> {
        let l = self.unary()?;
        if self.eat_punct("^") {
            let r = self.power()?;
            return Ok(Expr::Bin(BinOp::Pow, Box::new(l), Box::new(r)));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.eat_punct("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let Some(t) = self.toks.get(self.i).cloned() else {
            return Err(self.error_here());
        };
        match t.tok {
            Tok::Num(n) => {
                self.i += 1;
                Ok(Expr::Num(n))
            }
            Tok::Span(ms) => {
                self.i += 1;
                Ok(Expr::Span(ms))
            }
            Tok::Str(s) => {
                self.i += 1;
                Ok(Expr::Str(s))
            }
            Tok::Punct("(") => {
                self.i += 1;
                let e = self.expr()?;
                self.expect_punct(")")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                self.i += 1;
                if self.eat_punct("(") {
                    let lname = name.to_ascii_lowercase();
                    if !super::eval::is_function(&lname) {
                        self.i -= 2;
                        return Err(QueryError {
                            message: format!(
                                "unknown function {name} at line {} and position {}",
                                t.line, t.col
                            ),
                            start: t.start,
                            end: t.end,
                        });
                    }
                    let mut args = Vec::new();
                    if !self.eat_punct(")") {
                        loop {
                            args.push(self.expr()?);
                            if !self.eat_punct(",") {
                                break;
                            }
                        }
                        self.expect_punct(")")?;
                    }
                    if let Err(message) = super::eval::check_arity(&lname, args.len()) {
                        return Err(QueryError {
                            message: format!("{message} at line {} and position {}", t.line, t.col),
                            start: t.start,
                            end: self.toks.get(self.i - 1).map_or(t.end, |e| e.end),
                        });
                    }
                    Ok(Expr::Call(lname, args))
                } else {
                    Ok(Expr::Field(name))
                }
            }
            _ => Err(self.error_here()),
        }
    }
}

/// Compiles a query string.
pub fn parse(src: &str) -> Result<Query, QueryError> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(QueryError {
            message: "query must contain at least one command".to_owned(),
            start: 0,
            end: 0,
        });
    }
    let mut p = Parser { src, toks, i: 0 };
    p.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pipeline_of_every_command() {
        let q = parse(
            "fields @timestamp, @message | filter status >= 500 and path like /api/ \
             | parse @message 'user=* ip=*' as user, ip | stats count(*) as n, pct(latency, 95) by bin(5m), user \
             | sort n desc | limit 20 | dedup user | display user, n",
        )
        .unwrap();
        assert_eq!(q.commands.len(), 8);
        match &q.commands[3] {
            Command::Stats { aggs, by } => {
                assert_eq!(aggs[0].name, "n");
                assert_eq!(aggs[1].name, "pct(latency, 95)");
                assert_eq!(aggs[1].pct, 95.0);
                assert_eq!(by[0].1, "bin(5m)");
                assert!(
                    matches!(by[0].0, Expr::Call(ref f, ref a) if f == "bin" && matches!(a[0], Expr::Span(300_000)))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn count_star_names_its_column_as_written() {
        let q = parse("stats count(*) by bin(1m)").unwrap();
        let Command::Stats { aggs, by } = &q.commands[0] else {
            panic!()
        };
        assert_eq!(aggs[0].name, "count(*)");
        assert_eq!(by[0].1, "bin(1m)");
    }

    #[test]
    fn syntax_errors_name_the_symbol_and_position() {
        let e = parse("fields @message | filter x = ").unwrap_err();
        assert_eq!(e.message, "unexpected end of query");
        let e = parse("fields @message | frobnicate x").unwrap_err();
        assert_eq!(
            e.message,
            "unexpected symbol found frobnicate at line 1 and position 18"
        );
        assert_eq!((e.start, e.end), (18, 28));
        let e = parse("stats nosuch(x)").unwrap_err();
        assert!(
            e.message.starts_with("unexpected symbol found nosuch"),
            "{e}"
        );
        let e = parse("filter strlenx(@message) > 3").unwrap_err();
        assert!(e.message.starts_with("unknown function strlenx"), "{e}");
        assert!(parse("limit 0").is_err());
        assert!(parse("limit 10001").is_err());
        assert!(parse("parse @message 'a=* b=*' as a").is_err());
        assert!(parse("filter @message like /(/").is_err());
        assert!(parse("").is_err());
        assert!(parse("fields a b").is_err());
    }

    #[test]
    fn slashes_are_division_after_operands_and_regexes_elsewhere() {
        let q = parse("fields a / 2 as half | filter @message like /x\\/y/").unwrap();
        assert!(
            matches!(&q.commands[0], Command::Fields(f) if matches!(f[0].0, Expr::Bin(BinOp::Div, _, _)))
        );
        let Command::Filter(Expr::Like(_, Matcher::Regex(r), false)) = &q.commands[1] else {
            panic!()
        };
        assert!(r.is_match("ax/yb"));
    }

    #[test]
    fn in_and_not_like_parse() {
        let q = parse("filter level in ['ERROR', 'WARN'] and msg not like 'health'").unwrap();
        let Command::Filter(Expr::Bin(BinOp::And, l, r)) = &q.commands[0] else {
            panic!()
        };
        assert!(matches!(**l, Expr::In(_, ref items, false) if items.len() == 2));
        assert!(matches!(**r, Expr::Like(_, Matcher::Substring(_), true)));
    }
}
