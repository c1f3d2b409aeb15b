//! Typed forms of CQL arguments: versions, dates, regular expressions.

use std::cmp::Ordering;

use regex::Regex;

/// Parses an agent version such as `1.14.5` or `v1.105.1` into its numeric segments.
pub(crate) fn parse_version(s: &str) -> Option<Vec<u64>> {
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    // Build metadata or pre-release suffixes (`1.14.5-rc1`) are ignored for ordering.
    let core = s.split(['-', '+']).next().unwrap_or(s);
    if core.is_empty() {
        return None;
    }
    core.split('.').map(|seg| seg.parse().ok()).collect()
}

/// Orders two versions segment by segment, missing segments counting as 0 (`1.14` == `1.14.0`).
pub(crate) fn cmp_versions(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses the `registeredAt` forms ECS documents (`2018-06-18T22:28:28+00:00`,
/// `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28`, `2018-06-18`; fractional seconds are accepted)
/// into the half-open interval of epoch milliseconds the value names: a whole day for a date, a
/// whole second for a time without fraction. Times without offset are UTC.
pub(crate) fn parse_date(s: &str) -> Option<(i64, i64)> {
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let y = digits(parts.next()?, 4)?;
    let m = digits(parts.next()?, 2)?;
    let d = digits(parts.next()?, 2)?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * 86_400_000;
    let Some(time) = time else {
        return Some((day_ms, day_ms + 86_400_000));
    };
    // Split off the zone: `Z`, `+hh:mm`, `-hh:mm`, `+hhmm`.
    let (clock, offset_min) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (hh, mm) = match z.split_once(':') {
            Some((h, m)) => (digits(h, 2)?, digits(m, 2)?),
            None if z.len() == 4 => (digits(&z[..2], 2)?, digits(&z[2..], 2)?),
            None => (digits(z, 2)?, 0),
        };
        if hh > 23 || mm > 59 {
            return None;
        }
        (c, sign * (hh * 60 + mm))
    } else {
        (time, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut it = hms.split(':');
    let hh = digits(it.next()?, 2)?;
    let mi = digits(it.next()?, 2)?;
    let ss = match it.next() {
        Some(x) => digits(x, 2)?,
        None => 0,
    };
    if it.next().is_some() || hh > 23 || mi > 59 || ss > 60 {
        return None;
    }
    let mut start = day_ms + ((hh * 60 + mi) * 60 + ss) * 1000 - offset_min * 60_000;
    let width = match frac {
        None => 1000,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let mut ms = 0i64;
            for (i, b) in f.bytes().take(3).enumerate() {
                ms += i64::from(b - b'0') * [100, 10, 1][i];
            }
            start += ms;
            1
        }
        Some(_) => return None,
    };
    Some((start, start + width))
}

/// Compiles a CQL `matches` argument.
///
/// ECS documents Java regular expressions (`java.util.regex.Pattern`) matched against the whole
/// value, and shows wildcard-looking values such as `t2.*`. We translate what differs from the
/// `regex` crate: `\Q...\E` quoting, possessive quantifiers (`a*+`, treated as greedy), and a `*`
/// that cannot be a Java quantifier: a pattern starting with `*` is a plain wildcard pattern
/// (`*.large`: `.` literal), and a `*` after `-`, `_`, `:`, `/`, `@` or a space (`us-east-*`) is
/// read as `.*`. When the result still does not compile and the value contains `*`, it is taken
/// as a plain wildcard pattern. Lookaround
/// and backreferences are not supported.
pub(crate) fn compile_match(raw: &str) -> Result<Regex, String> {
    let glob = |raw: &str| {
        let pattern = regex::escape(raw).replace("\\*", ".*");
        Regex::new(&format!("^(?:{pattern})$"))
    };
    if raw.starts_with('*') {
        // Never a Java regular expression: a wildcard pattern (`*.large`).
        return glob(raw).map_err(|e| e.to_string());
    }
    let translated = translate_java_regex(raw);
    match Regex::new(&format!("^(?:{translated})$")) {
        Ok(re) => Ok(re),
        Err(e) => {
            if raw.contains('*')
                && let Ok(re) = glob(raw)
            {
                return Ok(re);
            }
            let detail = e
                .to_string()
                .lines()
                .find_map(|l| l.strip_prefix("error: ").map(str::to_owned))
                .unwrap_or_else(|| "not a supported regular expression".to_owned());
            Err(detail)
        }
    }
}

fn translate_java_regex(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::with_capacity(raw.len() + 4);
    let mut i = 0;
    let mut in_class = false;
    // Whether the previous emitted token was a quantifier (for possessive `+`).
    let mut after_quantifier = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            if chars.get(i + 1) == Some(&'Q') {
                let rest: String = chars[i + 2..].iter().collect();
                let (lit, consumed) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], end + 2),
                    None => (rest.as_str(), rest.len()),
                };
                out.push_str(&regex::escape(lit));
                i += 2 + lit.chars().count() + (consumed - lit.len()).min(2);
                after_quantifier = false;
                continue;
            }
            out.push(c);
            if let Some(n) = chars.get(i + 1) {
                out.push(*n);
            }
            i += 2;
            after_quantifier = false;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                // A leading `]` or `^]` is literal inside the class.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                after_quantifier = false;
            }
            '+' if after_quantifier => {
                // Possessive quantifier: the regex crate never backtracks, so greedy is the
                // closest reading.
                after_quantifier = false;
            }
            '*' => {
                let prev = if i == 0 { None } else { Some(chars[i - 1]) };
                let wildcard = match prev {
                    None => true,
                    Some(p) => matches!(p, '-' | '_' | ':' | '/' | '@' | ' '),
                };
                if wildcard {
                    out.push_str(".*");
                } else {
                    out.push('*');
                }
                after_quantifier = true;
            }
            '+' | '?' | '}' => {
                out.push(c);
                after_quantifier = true;
            }
            _ => {
                out.push(c);
                after_quantifier = false;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_documented_form() {
        let day = parse_date("2018-06-18").unwrap();
        assert_eq!(day.0, 1_529_280_000_000);
        assert_eq!(day.1 - day.0, 86_400_000);
        let z = parse_date("2018-06-18T22:28:28Z").unwrap();
        assert_eq!(z.0, 1_529_360_908_000);
        assert_eq!(parse_date("2018-06-18T22:28:28+00:00").unwrap(), z);
        assert_eq!(parse_date("2018-06-18T22:28:28").unwrap(), z);
        assert_eq!(parse_date("2018-06-19T00:28:28+02:00").unwrap(), z);
        assert_eq!(parse_date("2018-06-18T22:28:28.5Z").unwrap().0, z.0 + 500);
        assert_eq!(parse_date("1970-01-01").unwrap().0, 0);
        assert!(parse_date("2018-02-30").is_none());
        assert!(parse_date("2018-13-01").is_none());
        assert!(parse_date("18-06-18").is_none());
        assert!(parse_date("2018-06-18T25:00:00").is_none());
        assert!(parse_date("yesterday").is_none());
    }

    #[test]
    fn versions_order_numerically() {
        let v = |s| parse_version(s).unwrap();
        assert_eq!(cmp_versions(&v("1.14.5"), &v("1.9.0")), Ordering::Greater);
        assert_eq!(cmp_versions(&v("1.14"), &v("1.14.0")), Ordering::Equal);
        assert_eq!(cmp_versions(&v("v1.105.1"), &v("1.105.2")), Ordering::Less);
        assert!(parse_version("abc").is_none());
        assert!(parse_version("").is_none());
    }

    #[test]
    fn regex_translation() {
        let m = |p: &str, s: &str| compile_match(p).unwrap().is_match(s);
        assert!(m("g2.*", "g2.2xlarge"));
        assert!(!m("g2.*", "t2.micro"));
        assert!(m("t2.*", "t2.small"));
        assert!(m("us-east-*", "us-east-1a"));
        assert!(m("*.large", "m5.large"));
        assert!(!m("*.large", "m5.xlarge"));
        assert!(m("\\Qa.b\\E", "a.b"));
        assert!(!m("\\Qa.b\\E", "axb"));
        assert!(m("a++b", "aaab"));
        assert!(m("(m5|c5)\\.(x|2x)?large", "c5.2xlarge"));
        assert!(m("[a-c]+", "abc"));
        assert!(
            !m("us", "us-east-1"),
            "whole-value match, as Java's matches()"
        );
        assert!(compile_match("(unclosed").is_err());
        assert!(compile_match("(?=x)y").is_err());
    }
}
