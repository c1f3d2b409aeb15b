//! `GetMetricData`'s queries: metric statistics and the basics of metric math. Expressions
//! support numbers, query ids, `+ - * /`, comparisons (`> < >= <= == !=`, 1 or 0), `AND`/`OR`,
//! parentheses, arrays `[a, b]`, `METRICS()` / `METRICS("text")`, the functions `SUM`, `AVG`,
//! `MIN`, `MAX` (across series, per timestamp), `ABS`, `CEIL`, `FLOOR`, `IF(c, a[, b])` and
//! `FILL(x, value|REPEAT)`. Anything else is refused with the position it was found at.
//!
//! Series combine at the timestamps they share; a series combined with a number applies to each
//! value.

use std::collections::{BTreeMap, HashMap};

use gantry_aws_proto::AwsError;
use serde_json::Value;

use crate::CloudWatchService;
use crate::metrics::{self, TimeSeries};

/// One query's outcome.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub id: String,
    pub label: String,
    pub values: TimeSeries,
    pub return_data: bool,
}

fn math_error(id: &str, msg: impl std::fmt::Display) -> AwsError {
    AwsError::client(
        "ValidationError",
        format!("Error in expression {id}: {msg}"),
    )
}

/// Evaluates every query of a `GetMetricData` (or an alarm's `Metrics`) over `[start, end)`.
pub fn evaluate_queries(
    svc: &CloudWatchService,
    queries: &[Value],
    start: f64,
    end: f64,
    region: &str,
) -> Result<Vec<QueryResult>, AwsError> {
    let mut order = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (i, q) in queries.iter().enumerate() {
        let id = q.get("Id").and_then(Value::as_str).ok_or_else(|| {
            crate::error::missing(&format!("MetricDataQueries.member.{}.Id", i + 1))
        })?;
        if by_id.insert(id.to_owned(), i).is_some() {
            return Err(crate::error::invalid(format!(
                "The value {id} for parameter MetricDataQueries.member.{}.Id is invalid: ids \
                 must be unique.",
                i + 1
            )));
        }
        order.push(id.to_owned());
    }
    let mut done: HashMap<String, TimeSeries> = HashMap::new();
    let mut stat_ids: Vec<(String, String)> = Vec::new();
    let mut default_period = 60i64;
    // Metric statistics first.
    for (i, q) in queries.iter().enumerate() {
        let Some(ms) = q.get("MetricStat").filter(|v| !v.is_null()) else {
            continue;
        };
        let p = format!("MetricDataQueries.member.{}.MetricStat", i + 1);
        if q.get("Expression").is_some_and(|e| !e.is_null()) {
            return Err(crate::error::combination(format!(
                "The parameters MetricDataQueries.member.{0}.MetricStat and \
                 MetricDataQueries.member.{0}.Expression are mutually exclusive and you have \
                 specified both.",
                i + 1
            )));
        }
        let metric = ms
            .get("Metric")
            .ok_or_else(|| crate::error::missing(&format!("{p}.Metric")))?;
        let key = metrics::series_key(metric, region, &format!("{p}.Metric"))?;
        let period = ms
            .get("Period")
            .and_then(Value::as_i64)
            .ok_or_else(|| crate::error::missing(&format!("{p}.Period")))?;
        metrics::check_period(period, &format!("{p}.Period"))?;
        let stat_name = ms
            .get("Stat")
            .and_then(Value::as_str)
            .ok_or_else(|| crate::error::missing(&format!("{p}.Stat")))?;
        let stat = metrics::parse_stat(stat_name, &format!("{p}.Stat"))?;
        let unit = metrics::unit(ms.get("Unit"), "unit")?;
        let first = metrics::align_start(start, period);
        let values = svc.stat_series(&key, first, end.ceil() as i64, period, stat, unit);
        if i == 0 || stat_ids.is_empty() {
            default_period = period;
        }
        let id = order[i].clone();
        let label = q
            .get("Label")
            .and_then(Value::as_str)
            .unwrap_or(&key.name)
            .to_owned();
        stat_ids.push((id.clone(), label));
        done.insert(id, values);
    }
    let labels: HashMap<String, String> = stat_ids.iter().cloned().collect();
    let mut ctx = Ctx {
        queries,
        by_id: &by_id,
        done,
        in_progress: Vec::new(),
        stat_ids: &stat_ids,
        start,
        end,
        default_period,
    };
    for (i, q) in queries.iter().enumerate() {
        if q.get("MetricStat").is_some_and(|v| !v.is_null()) {
            continue;
        }
        if q.get("Expression").and_then(Value::as_str).is_none() {
            return Err(crate::error::missing(&format!(
                "MetricDataQueries.member.{0}.MetricStat or MetricDataQueries.member.{0}.Expression",
                i + 1
            )));
        }
        ctx.resolve(&order[i])?;
    }
    Ok(order
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let q = &queries[i];
            let label = q
                .get("Label")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| labels.get(id).cloned())
                .unwrap_or_else(|| id.clone());
            QueryResult {
                id: id.clone(),
                label,
                // Ids are unique: each series is taken once.
                values: ctx.done.remove(id).unwrap_or_default(),
                return_data: q.get("ReturnData").and_then(Value::as_bool).unwrap_or(true),
            }
        })
        .collect())
}

struct Ctx<'a> {
    queries: &'a [Value],
    by_id: &'a HashMap<String, usize>,
    done: HashMap<String, TimeSeries>,
    in_progress: Vec<String>,
    stat_ids: &'a [(String, String)],
    start: f64,
    end: f64,
    default_period: i64,
}

impl Ctx<'_> {
    fn resolve(&mut self, id: &str) -> Result<TimeSeries, AwsError> {
        if let Some(s) = self.done.get(id) {
            return Ok(s.clone());
        }
        if self.in_progress.iter().any(|x| x == id) {
            return Err(math_error(
                id,
                "the expressions refer to each other in a cycle",
            ));
        }
        let Some(&i) = self.by_id.get(id) else {
            return Err(AwsError::client(
                "ValidationError",
                format!("Error in expression: unknown metric id {id}"),
            ));
        };
        let q = &self.queries[i];
        let expr = q
            .get("Expression")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let period = q
            .get("Period")
            .and_then(Value::as_i64)
            .unwrap_or(self.default_period);
        self.in_progress.push(id.to_owned());
        let tokens = lex(&expr).map_err(|e| math_error(id, e))?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
        };
        let ast = parser.expr().map_err(|e| math_error(id, e))?;
        if parser.pos != tokens.len() {
            return Err(math_error(
                id,
                format!("unexpected {:?}", tokens[parser.pos]),
            ));
        }
        let value = self.eval(&ast, id, period)?;
        self.in_progress.pop();
        let series = match value {
            Val::Series(s) => s,
            Val::Scalar(x) => self.grid(period).into_iter().map(|t| (t, x)).collect(),
            Val::Array(_) => {
                return Err(math_error(
                    id,
                    "the expression returns several series; wrap it in SUM, AVG, MIN or MAX",
                ));
            }
        };
        self.done.insert(id.to_owned(), series.clone());
        Ok(series)
    }

    fn grid(&self, period: i64) -> Vec<i64> {
        let first = metrics::align_start(self.start, period);
        let end = self.end.ceil() as i64;
        (0..)
            .map(|k| first + k * period)
            .take_while(|t| *t < end)
            .take(100_800)
            .collect()
    }

    fn eval(&mut self, e: &Expr, id: &str, period: i64) -> Result<Val, AwsError> {
        Ok(match e {
            Expr::Num(x) => Val::Scalar(*x),
            Expr::Str(_) => return Err(math_error(id, "a string is only allowed in METRICS()")),
            Expr::Id(name) => Val::Series(self.resolve(name)?),
            Expr::Neg(inner) => map(self.eval(inner, id, period)?, |x| -x),
            Expr::Bin(op, a, b) => {
                let a = self.eval(a, id, period)?;
                let b = self.eval(b, id, period)?;
                binary(*op, a, b).map_err(|m| math_error(id, m))?
            }
            Expr::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.eval(item, id, period)? {
                        Val::Series(s) => out.push(s),
                        Val::Array(a) => out.extend(a),
                        Val::Scalar(_) => {
                            return Err(math_error(id, "an array holds series, not numbers"));
                        }
                    }
                }
                Val::Array(out)
            }
            Expr::Call(name, args) => self.call(name, args, id, period)?,
        })
    }

    fn call(&mut self, name: &str, args: &[Expr], id: &str, period: i64) -> Result<Val, AwsError> {
        let upper = name.to_ascii_uppercase();
        match upper.as_str() {
            "METRICS" => {
                let filter = match args {
                    [] => None,
                    [Expr::Str(s)] => Some(s.clone()),
                    _ => return Err(math_error(id, "METRICS takes no argument or one string")),
                };
                let mut out = Vec::new();
                for (sid, label) in self.stat_ids {
                    if filter
                        .as_deref()
                        .is_none_or(|f| sid.contains(f) || label.contains(f))
                    {
                        out.push(self.resolve(sid)?);
                    }
                }
                Ok(Val::Array(out))
            }
            "SUM" | "AVG" | "MIN" | "MAX" => {
                let [arg] = args else {
                    return Err(math_error(id, format!("{upper} takes one argument")));
                };
                let series = match self.eval(arg, id, period)? {
                    Val::Array(a) => a,
                    Val::Series(s) => vec![s],
                    Val::Scalar(x) => return Ok(Val::Scalar(x)),
                };
                let mut acc: BTreeMap<i64, (f64, f64, f64, f64)> = BTreeMap::new();
                for s in &series {
                    for (t, v) in s {
                        let e =
                            acc.entry(*t)
                                .or_insert((0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
                        e.0 += v;
                        e.1 += 1.0;
                        e.2 = e.2.min(*v);
                        e.3 = e.3.max(*v);
                    }
                }
                Ok(Val::Series(
                    acc.into_iter()
                        .map(|(t, (sum, n, min, max))| {
                            let v = match upper.as_str() {
                                "SUM" => sum,
                                "AVG" => sum / n,
                                "MIN" => min,
                                _ => max,
                            };
                            (t, v)
                        })
                        .collect(),
                ))
            }
            "ABS" | "CEIL" | "FLOOR" => {
                let [arg] = args else {
                    return Err(math_error(id, format!("{upper} takes one argument")));
                };
                let f: fn(f64) -> f64 = match upper.as_str() {
                    "ABS" => f64::abs,
                    "CEIL" => f64::ceil,
                    _ => f64::floor,
                };
                Ok(map(self.eval(arg, id, period)?, f))
            }
            "IF" => {
                let (c, a, b) = match args {
                    [c, a] => (c, a, None),
                    [c, a, b] => (c, a, Some(b)),
                    _ => return Err(math_error(id, "IF takes two or three arguments")),
                };
                let c = self.eval(c, id, period)?;
                let a = self.eval(a, id, period)?;
                let b = match b {
                    Some(b) => Some(self.eval(b, id, period)?),
                    None => None,
                };
                let grid = self.grid(period);
                let at = |v: &Val, t: i64| match v {
                    Val::Scalar(x) => Some(*x),
                    Val::Series(s) => s.get(&t).copied(),
                    Val::Array(_) => None,
                };
                let times: Vec<i64> = match &c {
                    Val::Series(s) => s.keys().copied().collect(),
                    _ => grid,
                };
                let mut out = TimeSeries::new();
                for t in times {
                    let Some(cv) = at(&c, t) else { continue };
                    let v = if cv != 0.0 {
                        at(&a, t)
                    } else {
                        b.as_ref().and_then(|b| at(b, t))
                    };
                    if let Some(v) = v {
                        out.insert(t, v);
                    }
                }
                Ok(Val::Series(out))
            }
            "FILL" => {
                let [x, fill] = args else {
                    return Err(math_error(id, "FILL takes two arguments"));
                };
                let x = self.eval(x, id, period)?;
                let repeat = matches!(fill, Expr::Id(n) if n.eq_ignore_ascii_case("REPEAT"));
                let value = if repeat {
                    None
                } else {
                    match self.eval(fill, id, period)? {
                        Val::Scalar(v) => Some(v),
                        _ => {
                            return Err(math_error(
                                id,
                                "FILL's second argument is a number or REPEAT",
                            ));
                        }
                    }
                };
                let grid = self.grid(period);
                let fill_one = |s: TimeSeries| {
                    let mut out = TimeSeries::new();
                    let mut last: Option<f64> = None;
                    for t in &grid {
                        match s.get(t) {
                            Some(v) => {
                                last = Some(*v);
                                out.insert(*t, *v);
                            }
                            None => {
                                if let Some(v) = value.or(last) {
                                    out.insert(*t, v);
                                }
                            }
                        }
                    }
                    out
                };
                Ok(match x {
                    Val::Series(s) => Val::Series(fill_one(s)),
                    Val::Array(a) => Val::Array(a.into_iter().map(fill_one).collect()),
                    Val::Scalar(v) => Val::Scalar(v),
                })
            }
            _ => Err(math_error(
                id,
                format!("the function {name} is not supported by this server"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
enum Val {
    Scalar(f64),
    Series(TimeSeries),
    Array(Vec<TimeSeries>),
}

fn map(v: Val, f: impl Fn(f64) -> f64) -> Val {
    match v {
        Val::Scalar(x) => Val::Scalar(f(x)),
        Val::Series(s) => Val::Series(s.into_iter().map(|(t, x)| (t, f(x))).collect()),
        Val::Array(a) => Val::Array(
            a.into_iter()
                .map(|s| s.into_iter().map(|(t, x)| (t, f(x))).collect())
                .collect(),
        ),
    }
}

fn apply(op: Op, a: f64, b: f64) -> f64 {
    let truth = |c: bool| if c { 1.0 } else { 0.0 };
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div => a / b,
        Op::Gt => truth(a > b),
        Op::Lt => truth(a < b),
        Op::Ge => truth(a >= b),
        Op::Le => truth(a <= b),
        Op::Eq => truth(a == b),
        Op::Ne => truth(a != b),
        Op::And => truth(a != 0.0 && b != 0.0),
        Op::Or => truth(a != 0.0 || b != 0.0),
    }
}

fn binary(op: Op, a: Val, b: Val) -> Result<Val, String> {
    Ok(match (a, b) {
        (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(apply(op, x, y)),
        (Val::Series(s), Val::Scalar(y)) => {
            Val::Series(s.into_iter().map(|(t, x)| (t, apply(op, x, y))).collect())
        }
        (Val::Scalar(x), Val::Series(s)) => {
            Val::Series(s.into_iter().map(|(t, y)| (t, apply(op, x, y))).collect())
        }
        (Val::Series(a), Val::Series(b)) => Val::Series(
            a.into_iter()
                .filter_map(|(t, x)| b.get(&t).map(|y| (t, apply(op, x, *y))))
                .collect(),
        ),
        (Val::Array(a), Val::Scalar(y)) => Val::Array(
            a.into_iter()
                .map(|s| s.into_iter().map(|(t, x)| (t, apply(op, x, y))).collect())
                .collect(),
        ),
        _ => return Err("arrays combine only with numbers".into()),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '+' | '-' | '*' | '/' => {
                out.push(Tok::Op(match c {
                    '+' => Op::Add,
                    '-' => Op::Sub,
                    '*' => Op::Mul,
                    _ => Op::Div,
                }));
                i += 1;
            }
            '>' | '<' | '=' | '!' => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    _ => return Err(format!("unexpected '{c}' at position {}", i + 1)),
                };
                out.push(Tok::Op(op));
                i += if two { 2 } else { 1 };
            }
            '"' => {
                let rest = &s[i + 1..];
                let Some(end) = rest.find('"') else {
                    return Err(format!("unterminated string at position {}", i + 1));
                };
                out.push(Tok::Str(rest[..end].to_owned()));
                i += end + 2;
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'e') {
                    i += 1;
                }
                let text = &s[start..i];
                out.push(Tok::Num(
                    text.parse().map_err(|_| format!("bad number {text}"))?,
                ));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &s[start..i];
                match word {
                    "AND" | "and" => out.push(Tok::Op(Op::And)),
                    "OR" | "or" => out.push(Tok::Op(Op::Or)),
                    _ => out.push(Tok::Ident(word.to_owned())),
                }
            }
            other => return Err(format!("unexpected '{other}' at position {}", i + 1)),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    Id(String),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Array(Vec<Expr>),
    Call(String, Vec<Expr>),
}

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn level(
        &mut self,
        ops: &[Op],
        next: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = next(self)?;
        while let Some(Tok::Op(op)) = self.peek() {
            if !ops.contains(op) {
                break;
            }
            let op = *op;
            self.pos += 1;
            let right = next(self)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.level(&[Op::Or], Self::and)
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.level(&[Op::And], Self::cmp)
    }

    fn cmp(&mut self) -> Result<Expr, String> {
        self.level(&[Op::Gt, Op::Lt, Op::Ge, Op::Le, Op::Eq, Op::Ne], Self::sum)
    }

    fn sum(&mut self) -> Result<Expr, String> {
        self.level(&[Op::Add, Op::Sub], Self::product)
    }

    fn product(&mut self) -> Result<Expr, String> {
        self.level(&[Op::Mul, Op::Div], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::Op(Op::Sub)) {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn expect(&mut self, t: &Tok) -> Result<(), String> {
        if self.peek() == Some(t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {t:?}, found {:?}", self.peek()))
        }
    }

    fn list(&mut self, close: &Tok) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            match self.peek() {
                Some(Tok::Comma) => self.pos += 1,
                Some(t) if t == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                other => return Err(format!("expected ',' or {close:?}, found {other:?}")),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let tok = self.peek().cloned().ok_or("unexpected end of expression")?;
        self.pos += 1;
        match tok {
            Tok::Num(x) => Ok(Expr::Num(x)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Tok::LBracket => Ok(Expr::Array(self.list(&Tok::RBracket)?)),
            Tok::Ident(name) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    Ok(Expr::Call(name, self.list(&Tok::RParen)?))
                } else {
                    Ok(Expr::Id(name))
                }
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Expr {
        let t = lex(s).unwrap();
        let mut p = Parser { tokens: &t, pos: 0 };
        let e = p.expr().unwrap();
        assert_eq!(p.pos, t.len());
        e
    }

    #[test]
    fn precedence_and_series_arithmetic() {
        let a: TimeSeries = [(0, 1.0), (60, 2.0)].into_iter().collect();
        let b: TimeSeries = [(60, 10.0), (120, 3.0)].into_iter().collect();
        let sum = binary(Op::Add, Val::Series(a.clone()), Val::Series(b)).unwrap();
        let Val::Series(s) = sum else { panic!() };
        assert_eq!(s, [(60, 12.0)].into_iter().collect());
        assert!(matches!(parse("1 + 2 * m1"), Expr::Bin(Op::Add, _, _)));
        assert!(matches!(
            parse("SUM(METRICS()) / 2"),
            Expr::Bin(Op::Div, _, _)
        ));
        assert!(matches!(
            parse("IF(m1 > 50 AND m2 < 3, 1, 0)"),
            Expr::Call(_, _)
        ));
        assert!(lex("m1 ? 2").is_err());
    }
}
