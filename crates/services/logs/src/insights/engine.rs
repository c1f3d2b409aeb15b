//! Running a compiled query over records, one at a time.
//!
//! The commands before the first `stats`, `sort` or `limit` stream: each record passes through
//! them and is dropped or kept. The first of those three consumes the stream with bounded state
//! (aggregates per group; the best `k` rows of a sort; the first `n` rows of a limit) and the
//! commands after it run over the rows it produced, which are few. A query with neither `stats`
//! nor `sort` returns the most recent events first, as Logs Insights does.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use super::eval::{Record, Val, cmp_vals, eval};
use super::query::{Agg, AggFn, Command, Expr, ParseSpec, Query};

/// A result row: `(field, value)` in column order.
pub type Row = Vec<(String, String)>;

/// How a record fared in the streaming commands.
enum Passed {
    Dropped,
    Kept(Record),
}

/// The running state of the first blocking command.
enum Sink {
    Stats(Aggregator),
    Sort(TopK),
    Limit { n: usize, rows: Vec<Record> },
}

/// A query being run.
pub struct Engine {
    commands: Vec<Command>,
    /// Index of the first blocking command (`commands.len()` when there is none).
    block: usize,
    sink: Sink,
    /// Dedup commands' seen keys, by command index (streaming part only).
    seen: HashMap<usize, HashSet<Vec<String>>>,
    matched: u64,
    cap: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("commands", &self.commands.len())
            .field("matched", &self.matched)
            .finish()
    }
}

fn is_blocking(c: &Command) -> bool {
    matches!(
        c,
        Command::Stats { .. } | Command::Sort(_) | Command::Limit(_)
    )
}

impl Engine {
    /// Runs `query`, returning at most `cap` rows.
    pub fn new(query: Query, cap: usize) -> Self {
        let mut commands = query.commands;
        let has_order = commands
            .iter()
            .any(|c| matches!(c, Command::Stats { .. } | Command::Sort(_)));
        if !has_order {
            // Most recent first, before the first limit (or at the end).
            let at = commands
                .iter()
                .position(|c| matches!(c, Command::Limit(_)))
                .unwrap_or(commands.len());
            commands.insert(
                at,
                Command::Sort(vec![(Expr::Field("@timestamp".to_owned()), true)]),
            );
        }
        let block = commands
            .iter()
            .position(is_blocking)
            .unwrap_or(commands.len());
        let sink = match commands.get(block) {
            Some(Command::Stats { aggs, by }) => Sink::Stats(Aggregator::new(aggs, by)),
            Some(Command::Sort(keys)) => {
                let k = match commands.get(block + 1) {
                    Some(Command::Limit(n)) => (*n).min(cap),
                    _ => cap,
                };
                Sink::Sort(TopK::new(keys.clone(), k))
            }
            Some(Command::Limit(n)) => Sink::Limit {
                n: (*n).min(cap),
                rows: Vec::new(),
            },
            _ => Sink::Limit {
                n: cap,
                rows: Vec::new(),
            },
        };
        Self {
            commands,
            block,
            sink,
            seen: HashMap::new(),
            matched: 0,
            cap,
        }
    }

    /// Records that passed the streaming commands (AWS's `recordsMatched`).
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// Whether further records can change the result.
    pub fn wants_more(&self) -> bool {
        match &self.sink {
            Sink::Limit { n, rows } => rows.len() < *n,
            _ => true,
        }
    }

    /// Feeds one record.
    pub fn push(&mut self, rec: Record) {
        let Passed::Kept(rec) = self.stream(rec) else {
            return;
        };
        self.matched += 1;
        match &mut self.sink {
            Sink::Stats(a) => a.add(&rec),
            Sink::Sort(t) => t.push(rec),
            Sink::Limit { n, rows } => {
                if rows.len() < *n {
                    rows.push(rec);
                }
            }
        }
    }

    fn stream(&mut self, mut rec: Record) -> Passed {
        for (i, c) in self.commands[..self.block].iter().enumerate() {
            match c {
                Command::Dedup(keys) => {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| eval(k, &rec).map(|v| v.display()).unwrap_or_default())
                        .collect();
                    if !self.seen.entry(i).or_default().insert(key) {
                        return Passed::Dropped;
                    }
                }
                other => {
                    if !apply_row(other, &mut rec) {
                        return Passed::Dropped;
                    }
                }
            }
        }
        Passed::Kept(rec)
    }

    /// The result rows.
    pub fn finish(self) -> Vec<Row> {
        let mut rows = match self.sink {
            Sink::Stats(a) => a.finish(),
            Sink::Sort(t) => t.finish(),
            Sink::Limit { rows, .. } => rows,
        };
        let rest = self.commands.get(self.block + 1..).unwrap_or(&[]);
        for c in rest {
            rows = apply_all(c, rows);
        }
        rows.truncate(self.cap);
        let columns = columns(&self.commands);
        rows.into_iter()
            .map(|r| match &columns {
                None => r
                    .fields
                    .iter()
                    .map(|(n, v)| (n.clone(), v.display()))
                    .collect(),
                Some(cols) => cols
                    .iter()
                    .filter_map(|(name, e)| eval(e, &r).map(|v| (name.clone(), v.display())))
                    .collect(),
            })
            .collect()
    }
}

/// The columns shown: the last `display`; else the fields named by `fields` and `parse` (unless
/// a `stats` reshaped the rows); else every field.
fn columns(commands: &[Command]) -> Option<Vec<(String, Expr)>> {
    if let Some(Command::Display(list)) = commands
        .iter()
        .rev()
        .find(|c| matches!(c, Command::Display(_)))
    {
        return Some(
            list.iter()
                .map(|(_, name)| (name.clone(), Expr::Field(name.clone())))
                .collect(),
        );
    }
    let last_stats = commands
        .iter()
        .rposition(|c| matches!(c, Command::Stats { .. }));
    let after = last_stats.map_or(0, |i| i + 1);
    if last_stats.is_some() {
        return None;
    }
    let mut cols: Vec<(String, Expr)> = Vec::new();
    let mut add = |name: &str| {
        if !cols.iter().any(|(n, _)| n == name) {
            cols.push((name.to_owned(), Expr::Field(name.to_owned())));
        }
    };
    let mut any_fields = false;
    for c in &commands[after..] {
        match c {
            Command::Fields(list) => {
                any_fields = true;
                for (_, name) in list {
                    add(name);
                }
            }
            Command::Parse { spec, .. } => match spec {
                ParseSpec::Glob { names, .. } => names.iter().for_each(|n| add(n)),
                ParseSpec::Regex(re) => re.capture_names().flatten().for_each(&mut add),
            },
            _ => {}
        }
    }
    any_fields.then_some(cols)
}

/// Applies a per-row command; `false` drops the row.
fn apply_row(c: &Command, rec: &mut Record) -> bool {
    match c {
        Command::Fields(list) => {
            let vals: Vec<(String, Option<Val>)> = list
                .iter()
                .map(|(e, name)| (name.clone(), eval(e, rec)))
                .collect();
            for (name, v) in vals {
                if let Some(v) = v {
                    rec.set(&name, v);
                }
            }
            true
        }
        Command::Filter(e) => eval(e, rec).is_some_and(|v| v.truthy()),
        Command::Parse { field, spec } => {
            if let Some(text) = eval(field, rec).map(|v| v.display()) {
                parse_into(spec, &text, rec);
            }
            true
        }
        _ => true,
    }
}

fn parse_into(spec: &ParseSpec, text: &str, rec: &mut Record) {
    match spec {
        ParseSpec::Regex(re) => {
            if let Some(caps) = re.captures(text) {
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        rec.set(name, Val::Str(m.as_str().to_owned()));
                    }
                }
            }
        }
        ParseSpec::Glob { parts, names } => {
            if let Some(vals) = glob_captures(parts, text) {
                for (name, v) in names.iter().zip(vals) {
                    rec.set(name, Val::Str(v.to_owned()));
                }
            }
        }
    }
}

/// Matches a glob (`parts` joined by `*`) within `text`; returns what each `*` matched. The
/// leading literal may start anywhere; each `*` takes the shortest text up to the next literal,
/// the last one everything to the end when the glob ends with `*`.
pub fn glob_captures<'a>(parts: &[String], text: &'a str) -> Option<Vec<&'a str>> {
    let (first, rest) = parts.split_first()?;
    let mut pos = text.find(first.as_str())? + first.len();
    let mut out = Vec::with_capacity(rest.len());
    for (i, lit) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if lit.is_empty() {
            if last {
                out.push(&text[pos..]);
                pos = text.len();
            } else {
                out.push("");
            }
            continue;
        }
        let at = text[pos..].find(lit.as_str())? + pos;
        out.push(&text[pos..at]);
        pos = at + lit.len();
    }
    Some(out)
}

/// Applies a command to materialized rows.
fn apply_all(c: &Command, rows: Vec<Record>) -> Vec<Record> {
    match c {
        Command::Stats { aggs, by } => {
            let mut a = Aggregator::new(aggs, by);
            rows.iter().for_each(|r| a.add(r));
            a.finish()
        }
        Command::Sort(keys) => {
            let mut t = TopK::new(keys.clone(), usize::MAX);
            rows.into_iter().for_each(|r| t.push(r));
            t.finish()
        }
        Command::Limit(n) => rows.into_iter().take(*n).collect(),
        Command::Dedup(keys) => {
            let mut seen = HashSet::new();
            rows.into_iter()
                .filter(|r| {
                    let key: Vec<String> = keys
                        .iter()
                        .map(|k| eval(k, r).map(|v| v.display()).unwrap_or_default())
                        .collect();
                    seen.insert(key)
                })
                .collect()
        }
        other => rows
            .into_iter()
            .filter_map(|mut r| apply_row(other, &mut r).then_some(r))
            .collect(),
    }
}

/// The best `k` rows by sort keys, in order; ties keep arrival order.
struct TopK {
    keys: Vec<(Expr, bool)>,
    k: usize,
    rows: Vec<(Vec<Option<Val>>, u64, Record)>,
    seq: u64,
}

impl TopK {
    fn new(keys: Vec<(Expr, bool)>, k: usize) -> Self {
        Self {
            keys,
            k,
            rows: Vec::new(),
            seq: 0,
        }
    }

    fn order(
        keys: &[(Expr, bool)],
        a: &(Vec<Option<Val>>, u64, Record),
        b: &(Vec<Option<Val>>, u64, Record),
    ) -> Ordering {
        for (i, (_, desc)) in keys.iter().enumerate() {
            let o = cmp_vals(a.0[i].as_ref(), b.0[i].as_ref());
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.1.cmp(&b.1)
    }

    fn push(&mut self, rec: Record) {
        if self.k == 0 {
            return;
        }
        let keyvals = self.keys.iter().map(|(e, _)| eval(e, &rec)).collect();
        self.rows.push((keyvals, self.seq, rec));
        self.seq += 1;
        if self.rows.len() >= self.k.saturating_mul(2).max(1024) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let keys = &self.keys;
        self.rows.sort_by(|a, b| Self::order(keys, a, b));
        self.rows.truncate(self.k);
    }

    fn finish(mut self) -> Vec<Record> {
        self.compact();
        self.rows.into_iter().map(|(_, _, r)| r).collect()
    }
}

/// One aggregate's running state.
#[derive(Debug, Clone)]
enum Acc {
    Count(u64),
    Distinct(HashSet<String>),
    Sum(Option<f64>),
    Avg { sum: f64, n: u64 },
    Min(Option<Val>),
    Max(Option<Val>),
    Pct(Vec<f64>),
    Stddev { n: u64, mean: f64, m2: f64 },
    Earliest(Option<(f64, Val)>),
    Latest(Option<(f64, Val)>),
}

impl Acc {
    fn new(f: AggFn) -> Self {
        match f {
            AggFn::Count => Self::Count(0),
            AggFn::CountDistinct => Self::Distinct(HashSet::new()),
            AggFn::Sum => Self::Sum(None),
            AggFn::Avg => Self::Avg { sum: 0.0, n: 0 },
            AggFn::Min => Self::Min(None),
            AggFn::Max => Self::Max(None),
            AggFn::Pct => Self::Pct(Vec::new()),
            AggFn::Stddev => Self::Stddev {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            AggFn::Earliest => Self::Earliest(None),
            AggFn::Latest => Self::Latest(None),
        }
    }

    fn add(&mut self, agg: &Agg, rec: &Record) {
        let v = match &agg.arg {
            None => Some(Val::Num(1.0)),
            Some(e) => eval(e, rec),
        };
        let Some(v) = v else {
            return;
        };
        let ts = rec.get("@timestamp").and_then(Val::as_num).unwrap_or(0.0);
        match self {
            Self::Count(n) => *n += 1,
            Self::Distinct(s) => {
                s.insert(v.display());
            }
            Self::Sum(s) => {
                if let Some(x) = v.as_num() {
                    *s = Some(s.unwrap_or(0.0) + x);
                }
            }
            Self::Avg { sum, n } => {
                if let Some(x) = v.as_num() {
                    *sum += x;
                    *n += 1;
                }
            }
            Self::Min(m) => {
                if m.as_ref()
                    .is_none_or(|cur| cmp_vals(Some(&v), Some(cur)) == Ordering::Less)
                {
                    *m = Some(v);
                }
            }
            Self::Max(m) => {
                if m.as_ref()
                    .is_none_or(|cur| cmp_vals(Some(&v), Some(cur)) == Ordering::Greater)
                {
                    *m = Some(v);
                }
            }
            Self::Pct(vals) => {
                if let Some(x) = v.as_num() {
                    vals.push(x);
                }
            }
            Self::Stddev { n, mean, m2 } => {
                if let Some(x) = v.as_num() {
                    *n += 1;
                    let d = x - *mean;
                    *mean += d / *n as f64;
                    *m2 += d * (x - *mean);
                }
            }
            Self::Earliest(e) => {
                if e.as_ref().is_none_or(|(t, _)| ts < *t) {
                    *e = Some((ts, v));
                }
            }
            Self::Latest(l) => {
                if l.as_ref().is_none_or(|(t, _)| ts >= *t) {
                    *l = Some((ts, v));
                }
            }
        }
    }

    fn value(self, pct: f64) -> Option<Val> {
        match self {
            Self::Count(n) => Some(Val::Num(n as f64)),
            Self::Distinct(s) => Some(Val::Num(s.len() as f64)),
            Self::Sum(s) => s.map(Val::Num),
            Self::Avg { sum, n } => (n > 0).then(|| Val::Num(sum / n as f64)),
            Self::Min(m) | Self::Max(m) => m,
            Self::Pct(mut vals) => {
                if vals.is_empty() {
                    return None;
                }
                vals.sort_by(f64::total_cmp);
                // Nearest rank.
                let rank = ((pct / 100.0) * vals.len() as f64).ceil() as usize;
                Some(Val::Num(vals[rank.clamp(1, vals.len()) - 1]))
            }
            Self::Stddev { n, m2, .. } => match n {
                0 => None,
                1 => Some(Val::Num(0.0)),
                n => Some(Val::Num((m2 / (n - 1) as f64).sqrt())),
            },
            Self::Earliest(e) | Self::Latest(e) => e.map(|(_, v)| v),
        }
    }
}

/// One group of `stats`: its `by` values and its aggregates.
type Group = (Vec<Option<Val>>, Vec<Acc>);

/// `stats` state: aggregates per group of `by` values.
struct Aggregator {
    aggs: Vec<Agg>,
    by: Vec<(Expr, String)>,
    groups: HashMap<Vec<String>, Group>,
}

impl Aggregator {
    fn new(aggs: &[Agg], by: &[(Expr, String)]) -> Self {
        Self {
            aggs: aggs.to_vec(),
            by: by.to_vec(),
            groups: HashMap::new(),
        }
    }

    fn add(&mut self, rec: &Record) {
        let vals: Vec<Option<Val>> = self.by.iter().map(|(e, _)| eval(e, rec)).collect();
        let key: Vec<String> = vals
            .iter()
            .map(|v| match v {
                Some(v) => format!("v{}", v.display()),
                None => "n".to_owned(),
            })
            .collect();
        let aggs = &self.aggs;
        let (_, accs) = self
            .groups
            .entry(key)
            .or_insert_with(|| (vals, aggs.iter().map(|a| Acc::new(a.func)).collect()));
        for (acc, agg) in accs.iter_mut().zip(aggs) {
            acc.add(agg, rec);
        }
    }

    /// One row per group, ordered by the `by` values.
    fn finish(self) -> Vec<Record> {
        let mut groups: Vec<Group> = self.groups.into_values().collect();
        groups.sort_by(|a, b| {
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| cmp_vals(x.as_ref(), y.as_ref()))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        groups
            .into_iter()
            .map(|(vals, accs)| {
                let mut r = Record::default();
                for ((_, name), v) in self.by.iter().zip(vals) {
                    if let Some(v) = v {
                        r.set(name, v);
                    }
                }
                for (agg, acc) in self.aggs.iter().zip(accs) {
                    if let Some(v) = acc.value(agg.pct) {
                        r.set(&agg.name, v);
                    }
                }
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::query::parse;
    use proptest::prelude::*;

    fn event(ts: i64, msg: &str) -> Record {
        let mut r = Record::default();
        r.set("@timestamp", Val::Time(ts));
        r.set("@message", Val::Str(msg.to_owned()));
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(msg) {
            r.add_json(&doc);
        }
        r
    }

    fn run(q: &str, events: &[(i64, &str)]) -> Vec<Row> {
        let mut e = Engine::new(parse(q).unwrap(), 10_000);
        for (ts, m) in events {
            e.push(event(*ts, m));
        }
        e.finish()
    }

    fn cell<'a>(row: &'a Row, field: &str) -> Option<&'a str> {
        row.iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn counts_per_minute_bin() {
        let evs = [
            (60_000, "a"),
            (61_000, "b"),
            (119_999, "c"),
            (120_000, "d"),
            (300_500, "e"),
        ];
        let rows = run("stats count(*) by bin(1m)", &evs);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (cell(r, "bin(1m)").unwrap(), cell(r, "count(*)").unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1970-01-01 00:01:00.000", "3"),
                ("1970-01-01 00:02:00.000", "1"),
                ("1970-01-01 00:05:00.000", "1"),
            ]
        );
        assert_eq!(rows[0][0].0, "bin(1m)");
    }

    #[test]
    fn aggregates_by_field() {
        let evs = [
            (1, r#"{"svc":"a","ms":10}"#),
            (2, r#"{"svc":"a","ms":30}"#),
            (3, r#"{"svc":"b","ms":5}"#),
            (4, r#"{"svc":"a","ms":20}"#),
            (5, r#"{"svc":"b"}"#),
        ];
        let rows = run(
            "stats count(*) as n, count(ms) as c, sum(ms), avg(ms), min(ms), max(ms), pct(ms, 50) as p50, count_distinct(ms) as d by svc",
            &evs,
        );
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(cell(a, "svc"), Some("a"));
        assert_eq!(cell(a, "n"), Some("3"));
        assert_eq!(cell(a, "sum(ms)"), Some("60"));
        assert_eq!(cell(a, "avg(ms)"), Some("20"));
        assert_eq!(cell(a, "min(ms)"), Some("10"));
        assert_eq!(cell(a, "max(ms)"), Some("30"));
        assert_eq!(cell(a, "p50"), Some("20"));
        assert_eq!(cell(a, "d"), Some("3"));
        let b = &rows[1];
        assert_eq!((cell(b, "n"), cell(b, "c")), (Some("2"), Some("1")));
    }

    #[test]
    fn parse_filter_sort_limit_and_fields() {
        let evs = [
            (1, "GET /a 200 12ms"),
            (2, "GET /b 500 40ms"),
            (3, "POST /c 503 7ms"),
            (4, "GET /d 404 3ms"),
        ];
        let rows = run(
            "parse @message '* * * *ms' as method, path, status, ms | filter status >= 500 | sort ms asc | limit 1 | fields path, ms",
            &evs,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(cell(&rows[0], "path"), Some("/c"));
        assert_eq!(cell(&rows[0], "@message"), None);
        let rows = run(
            "parse @message /^(?<method>\\w+) (?<path>\\S+)/ | filter method = 'GET' | display path",
            &evs,
        );
        let paths: Vec<_> = rows.iter().map(|r| cell(r, "path").unwrap()).collect();
        assert_eq!(paths, vec!["/d", "/b", "/a"], "most recent first");
        assert!(rows.iter().all(|r| r.len() == 1));
    }

    #[test]
    fn dedup_keeps_the_first_of_each_value() {
        let evs = [
            (1, r#"{"u":"x"}"#),
            (2, r#"{"u":"y"}"#),
            (3, r#"{"u":"x"}"#),
        ];
        let rows = run("fields u | sort @timestamp asc | dedup u", &evs);
        let got: Vec<_> = rows.iter().map(|r| cell(r, "u").unwrap()).collect();
        assert_eq!(got, vec!["x", "y"]);
    }

    #[test]
    fn limit_stops_wanting_records() {
        let mut e = Engine::new(parse("filter @message like 'x' | limit 2").unwrap(), 10_000);
        // With no sort, an implicit sort by time keeps every candidate in play.
        e.push(event(1, "x"));
        assert!(e.wants_more());
        let mut e = Engine::new(
            parse("sort @timestamp | limit 2 | limit 1").unwrap(),
            10_000,
        );
        e.push(event(1, "x"));
        assert_eq!(e.finish().len(), 1);
    }

    #[test]
    fn a_second_stats_runs_over_the_first() {
        let evs = [(60_000, "a"), (61_000, "b"), (180_000, "c")];
        let rows = run(
            "stats count(*) as n by bin(1m) as t | stats max(n) as peak, count(*) as bins",
            &evs,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(cell(&rows[0], "peak"), Some("2"));
        assert_eq!(cell(&rows[0], "bins"), Some("2"));
    }

    #[test]
    fn glob_captures_are_shortest_up_to_the_next_literal() {
        let p = |g: &str| g.split('*').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            glob_captures(&p("user=* ip=*"), "x user=bob ip=1.2.3.4"),
            Some(vec!["bob", "1.2.3.4"])
        );
        assert_eq!(glob_captures(&p("[*]"), "[a] [b]"), Some(vec!["a"]));
        assert_eq!(glob_captures(&p("a=*;"), "b=1"), None);
    }

    proptest! {
        /// `stats count(*) by bin(p)` partitions the events: the counts add up to the events,
        /// and each bin holds exactly the events whose timestamps floor to it.
        #[test]
        fn bin_counts_partition_the_events(
            ts in proptest::collection::vec(0i64..10_000_000, 0..300),
            period_s in 1i64..600,
        ) {
            let q = format!("stats count(*) by bin({period_s}s)");
            let mut e = Engine::new(parse(&q).unwrap(), 10_000);
            for t in &ts {
                e.push(event(*t, "m"));
            }
            let rows = e.finish();
            let mut expected: std::collections::BTreeMap<i64, u64> = Default::default();
            for t in &ts {
                *expected.entry(t.div_euclid(period_s * 1000) * period_s * 1000).or_default() += 1;
            }
            let got: Vec<(String, String)> = rows.iter().map(|r| (r[0].1.clone(), r[1].1.clone())).collect();
            let want: Vec<(String, String)> = expected
                .iter()
                .map(|(b, n)| (crate::insights::eval::format_time(*b), n.to_string()))
                .collect();
            prop_assert_eq!(got, want);
        }

        /// Sorting with a limit returns the same rows as sorting everything then truncating.
        #[test]
        fn sort_limit_matches_a_full_sort(
            vals in proptest::collection::vec(0u32..50, 0..3000),
            k in 1usize..40,
        ) {
            let q = format!("sort v desc | limit {k}");
            let mut e = Engine::new(parse(&q).unwrap(), 10_000);
            for (i, v) in vals.iter().enumerate() {
                e.push(event(i as i64, &format!("{{\"v\":{v}}}")));
            }
            let got: Vec<String> = e.finish().iter().map(|r| cell(r, "v").unwrap().to_owned()).collect();
            let mut idx: Vec<usize> = (0..vals.len()).collect();
            idx.sort_by(|a, b| vals[*b].cmp(&vals[*a]).then(a.cmp(b)));
            let want: Vec<String> = idx.into_iter().take(k).map(|i| vals[i].to_string()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
