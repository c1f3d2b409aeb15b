//! Values, records and expression evaluation of the Logs Insights engine.

use std::cmp::Ordering;

use super::query::{BinOp, Expr};

/// A field's value. Fields are loosely typed, as in Logs Insights: a string that reads as a
/// number compares and computes as one.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
    /// Epoch milliseconds (`@timestamp`, `@ingestionTime`, `bin()`), shown as a date.
    Time(i64),
    Bool(bool),
}

impl Val {
    pub fn as_num(&self) -> Option<f64> {
        match self {
            Self::Num(n) => Some(*n),
            Self::Time(t) => Some(*t as f64),
            Self::Str(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            Self::Bool(_) => None,
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Num(n) => *n != 0.0,
            Self::Time(_) => true,
            Self::Str(s) => !s.is_empty(),
        }
    }

    /// The value as GetQueryResults shows it.
    pub fn display(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Num(n) => format_num(*n),
            Self::Time(t) => format_time(*t),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A number as Logs Insights shows it: integers without a fraction, others in shortest form.
pub fn format_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Epoch milliseconds as `yyyy-MM-dd HH:mm:ss.SSS` (UTC), the form Logs Insights shows.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// One record: fields in the order they appeared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub fields: Vec<(String, Val)>,
}

impl Record {
    pub fn get(&self, name: &str) -> Option<&Val> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn set(&mut self, name: &str, v: Val) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.fields.push((name.to_owned(), v)),
        }
    }

    /// Adds the fields of a JSON object message, flattened with `.` (arrays by index), as Logs
    /// Insights discovers them.
    pub fn add_json(&mut self, doc: &serde_json::Value) {
        fn walk(rec: &mut Record, prefix: &str, v: &serde_json::Value, depth: usize) {
            use serde_json::Value as J;
            match v {
                J::Object(m) if depth < 16 => {
                    for (k, v) in m {
                        let name = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(rec, &name, v, depth + 1);
                    }
                }
                J::Array(a) if depth < 16 => {
                    for (i, v) in a.iter().enumerate() {
                        walk(rec, &format!("{prefix}.{i}"), v, depth + 1);
                    }
                }
                J::Null => {}
                J::String(s) => rec.set(prefix, Val::Str(s.clone())),
                J::Number(n) => rec.set(prefix, Val::Num(n.as_f64().unwrap_or(0.0))),
                J::Bool(b) => rec.set(prefix, Val::Str(b.to_string())),
                other => rec.set(prefix, Val::Str(other.to_string())),
            }
        }
        if doc.is_object() {
            walk(self, "", doc, 0);
        }
    }
}

/// Total order used by `sort`, `min`/`max` and grouping: absent values first, numbers before
/// strings, numbers numerically.
pub fn cmp_vals(a: Option<&Val>, b: Option<&Val>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (a.as_num(), b.as_num()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.display().cmp(&b.display()),
        },
    }
}

/// Whether `name` is a function expressions may call.
pub fn is_function(name: &str) -> bool {
    arity(name).is_some()
}

/// `(min, max)` argument counts of each function.
fn arity(name: &str) -> Option<(usize, usize)> {
    Some(match name {
        "bin" => (1, 1),
        "datefloor" | "dateceil" => (2, 2),
        "frommillis" | "tomillis" => (1, 1),
        "abs" | "ceil" | "floor" | "sqrt" | "log" => (1, 1),
        "round" => (1, 2),
        "greatest" | "least" => (1, 64),
        "strlen" | "toupper" | "tolower" | "trim" | "ltrim" | "rtrim" => (1, 1),
        "concat" => (1, 64),
        "substr" => (2, 3),
        "replace" => (3, 3),
        "strcontains" => (2, 2),
        "ispresent" | "isempty" | "isblank" => (1, 1),
        "coalesce" => (1, 64),
        _ => return None,
    })
}

/// Checks a call's argument count.
pub fn check_arity(name: &str, n: usize) -> Result<(), String> {
    let Some((lo, hi)) = arity(name) else {
        return Err(format!("unknown function {name}"));
    };
    if n < lo || n > hi {
        return Err(if lo == hi {
            format!("function {name} takes {lo} argument(s), {n} given")
        } else {
            format!("function {name} takes {lo} to {hi} arguments, {n} given")
        });
    }
    Ok(())
}

fn num(v: Option<Val>) -> Option<f64> {
    v.as_ref().and_then(Val::as_num)
}

fn text(v: Option<Val>) -> Option<String> {
    v.map(|v| v.display())
}

/// Evaluates `e` against `rec` (`None`: the value is absent).
pub fn eval(e: &Expr, rec: &Record) -> Option<Val> {
    match e {
        Expr::Field(f) => rec.get(f).cloned(),
        Expr::Str(s) => Some(Val::Str(s.clone())),
        Expr::Num(n) => Some(Val::Num(*n)),
        Expr::Span(ms) => Some(Val::Num(*ms as f64)),
        Expr::Neg(x) => num(eval(x, rec)).map(|n| Val::Num(-n)),
        Expr::Not(x) => Some(Val::Bool(!eval(x, rec).is_some_and(|v| v.truthy()))),
        Expr::In(x, items, negated) => {
            let v = eval(x, rec);
            let found = v.as_ref().is_some_and(|v| {
                items.iter().any(|i| {
                    eval(i, rec).is_some_and(|i| cmp_vals(Some(v), Some(&i)) == Ordering::Equal)
                })
            });
            Some(Val::Bool(found != *negated))
        }
        Expr::Like(x, m, negated) => {
            let hit = eval(x, rec).is_some_and(|v| m.is_match(&v.display()));
            Some(Val::Bool(hit != *negated))
        }
        Expr::Bin(op, l, r) => binary(*op, l, r, rec),
        Expr::Call(f, args) => call(f, args, rec),
    }
}

fn binary(op: BinOp, l: &Expr, r: &Expr, rec: &Record) -> Option<Val> {
    match op {
        BinOp::And => {
            let a = eval(l, rec).is_some_and(|v| v.truthy());
            Some(Val::Bool(a && eval(r, rec).is_some_and(|v| v.truthy())))
        }
        BinOp::Or => {
            let a = eval(l, rec).is_some_and(|v| v.truthy());
            Some(Val::Bool(a || eval(r, rec).is_some_and(|v| v.truthy())))
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            // A comparison with an absent field is false (and so is its `!=`).
            let (a, b) = (eval(l, rec)?, eval(r, rec)?);
            let ord = match (a.as_num(), b.as_num()) {
                (Some(x), Some(y)) => x.partial_cmp(&y)?,
                _ => a.display().cmp(&b.display()),
            };
            Some(Val::Bool(match op {
                BinOp::Eq => ord == Ordering::Equal,
                BinOp::Ne => ord != Ordering::Equal,
                BinOp::Lt => ord == Ordering::Less,
                BinOp::Le => ord != Ordering::Greater,
                BinOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow => {
            let (a, b) = (num(eval(l, rec))?, num(eval(r, rec))?);
            let n = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div if b == 0.0 => return None,
                BinOp::Div => a / b,
                BinOp::Mod if b == 0.0 => return None,
                BinOp::Mod => a % b,
                _ => a.powf(b),
            };
            n.is_finite().then_some(Val::Num(n))
        }
    }
}

fn call(f: &str, args: &[Expr], rec: &Record) -> Option<Val> {
    let arg = |i: usize| args.get(i).and_then(|a| eval(a, rec));
    let ts_floor = |t: f64, period: f64| -> Option<Val> {
        if period <= 0.0 {
            return None;
        }
        let t = t as i64;
        let p = period as i64;
        Some(Val::Time(t.div_euclid(p) * p))
    };
    match f {
        "bin" => {
            let period = num(arg(0))?;
            let ts = rec.get("@timestamp")?.as_num()?;
            ts_floor(ts, period)
        }
        "datefloor" => ts_floor(num(arg(0))?, num(arg(1))?),
        "dateceil" => {
            let (t, p) = (num(arg(0))? as i64, num(arg(1))? as i64);
            (p > 0).then(|| Val::Time((t + p - 1).div_euclid(p) * p))
        }
        "frommillis" => Some(Val::Time(num(arg(0))? as i64)),
        "tomillis" => Some(Val::Num(num(arg(0))?)),
        "abs" => Some(Val::Num(num(arg(0))?.abs())),
        "ceil" => Some(Val::Num(num(arg(0))?.ceil())),
        "floor" => Some(Val::Num(num(arg(0))?.floor())),
        "sqrt" => {
            let n = num(arg(0))?;
            (n >= 0.0).then(|| Val::Num(n.sqrt()))
        }
        "log" => {
            let n = num(arg(0))?;
            (n > 0.0).then(|| Val::Num(n.ln()))
        }
        "round" => {
            let n = num(arg(0))?;
            let digits = match args.get(1) {
                Some(_) => num(arg(1))?.clamp(0.0, 15.0) as i32,
                None => 0,
            };
            let scale = 10f64.powi(digits);
            Some(Val::Num((n * scale).round() / scale))
        }
        "greatest" | "least" => {
            let vals: Vec<f64> = (0..args.len()).filter_map(|i| num(arg(i))).collect();
            let pick = if f == "greatest" {
                vals.into_iter().reduce(f64::max)
            } else {
                vals.into_iter().reduce(f64::min)
            };
            pick.map(Val::Num)
        }
        "strlen" => Some(Val::Num(text(arg(0))?.chars().count() as f64)),
        "toupper" => Some(Val::Str(text(arg(0))?.to_uppercase())),
        "tolower" => Some(Val::Str(text(arg(0))?.to_lowercase())),
        "trim" => Some(Val::Str(text(arg(0))?.trim().to_owned())),
        "ltrim" => Some(Val::Str(text(arg(0))?.trim_start().to_owned())),
        "rtrim" => Some(Val::Str(text(arg(0))?.trim_end().to_owned())),
        "concat" => Some(Val::Str(
            (0..args.len()).filter_map(|i| text(arg(i))).collect(),
        )),
        "substr" => {
            let s = text(arg(0))?;
            let start = num(arg(1))?.max(0.0) as usize;
            let len = match args.get(2) {
                Some(_) => num(arg(2))?.max(0.0) as usize,
                None => usize::MAX,
            };
            Some(Val::Str(s.chars().skip(start).take(len).collect()))
        }
        "replace" => {
            let (s, from, to) = (text(arg(0))?, text(arg(1))?, text(arg(2))?);
            if from.is_empty() {
                return Some(Val::Str(s));
            }
            Some(Val::Str(s.replace(&from, &to)))
        }
        "strcontains" => Some(Val::Num(f64::from(u8::from(
            text(arg(0))?.contains(&text(arg(1))?),
        )))),
        "ispresent" => Some(Val::Bool(arg(0).is_some())),
        "isempty" => Some(Val::Bool(arg(0).is_none_or(|v| v.display().is_empty()))),
        "isblank" => Some(Val::Bool(
            arg(0).is_none_or(|v| v.display().trim().is_empty()),
        )),
        "coalesce" => (0..args.len()).find_map(|i| arg(i).filter(|v| !v.display().is_empty())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::query::{Command, parse};

    fn filter_expr(q: &str) -> Expr {
        match parse(q).unwrap().commands.remove(0) {
            Command::Filter(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn rec(fields: &[(&str, Val)]) -> Record {
        Record {
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn times_show_as_insights_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_time(1_700_000_123_456), "2023-11-14 22:15:23.456");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn numbers_show_without_needless_fractions() {
        assert_eq!(format_num(3.0), "3");
        assert_eq!(format_num(2.5), "2.5");
        assert_eq!(format_num(-0.125), "-0.125");
    }

    #[test]
    fn comparisons_coerce_numeric_strings() {
        let r = rec(&[
            ("status", Val::Str("503".into())),
            ("path", Val::Str("/api/x".into())),
        ]);
        let t = |q: &str| eval(&filter_expr(q), &r).is_some_and(|v| v.truthy());
        assert!(t("filter status >= 500"));
        assert!(t("filter status = '503'"));
        assert!(!t("filter status < 500"));
        assert!(t("filter path like 'api'"));
        assert!(t("filter path like /^\\/api\\//"));
        assert!(t("filter path =~ /x$/"));
        assert!(t("filter status in [500, 503]"));
        assert!(t("filter status not in [200]"));
        assert!(t(
            "filter not (status = 200) and (path like 'nope' or status > 1)"
        ));
        assert!(!t("filter missing = 1"));
        assert!(!t("filter missing != 1"));
        assert!(t("filter ispresent(status) and not ispresent(missing)"));
        assert!(t("filter strlen(path) = 6 and toupper(path) = '/API/X'"));
        assert!(t("filter status * 2 - 6 = 1000"));
    }

    #[test]
    fn bin_floors_the_timestamp_to_its_period() {
        let r = rec(&[("@timestamp", Val::Time(125_500))]);
        let e = Expr::Call("bin".into(), vec![Expr::Span(60_000)]);
        assert_eq!(eval(&e, &r), Some(Val::Time(120_000)));
    }

    #[test]
    fn json_messages_flatten_into_fields() {
        let mut r = Record::default();
        r.add_json(&serde_json::json!({"a": {"b": 1, "c": [true, "x"]}, "n": null}));
        assert_eq!(r.get("a.b"), Some(&Val::Num(1.0)));
        assert_eq!(r.get("a.c.0"), Some(&Val::Str("true".into())));
        assert_eq!(r.get("a.c.1"), Some(&Val::Str("x".into())));
        assert_eq!(r.get("n"), None);
    }
}
