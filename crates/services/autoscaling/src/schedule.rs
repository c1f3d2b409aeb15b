//! Scheduled actions' schedules: `at(yyyy-mm-ddThh:mm:ss)` (once), `rate(N unit)` (every N
//! minutes, hours or days from `StartTime`) and `cron(Minutes Hours Day-of-month Month
//! Day-of-week Year)`, AWS's six-field form: `?` in one of the two day fields, `L` (last day of
//! the month; `nL` the month's last weekday n), `W` (nearest weekday), `#` (`3#2`: the second
//! Tuesday), weekdays 1-7 = SUN-SAT or their names, months 1-12 or JAN-DEC, years 1970-2199.
//! `at()` and `cron()` read in the action's `Timezone` (an IANA name, UTC by default). Across a
//! daylight-saving change a time the clocks skip runs at the first minute after the jump, and a
//! time they pass twice runs once, at its first passing (evaluation by the `croner` crate).

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at this time (ms since the epoch).
    At(u64),
    /// Every this many milliseconds.
    Rate(u64),
    /// A cron expression in a time zone.
    Cron(Box<CronSchedule>),
}

/// A `cron()` schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: Tz,
}

fn zone(timezone: Option<&str>) -> Result<Tz, String> {
    match timezone {
        None => Ok(Tz::UTC),
        Some(name) => name
            .parse::<Tz>()
            .map_err(|_| format!("Invalid timezone: {name} is not an IANA time zone name.")),
    }
}

/// Parses `text` with its `Timezone`, or says why it is invalid.
pub fn parse(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
    let tz = zone(timezone)?;
    let inner = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(at) = inner("at(") {
        let t = NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S")
            .map_err(|_| format!("Invalid at() schedule {text}: use at(yyyy-mm-ddThh:mm:ss)."))?;
        // A time the clocks skip is the first instant after the jump.
        let local = tz
            .from_local_datetime(&t)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(t + chrono::Duration::hours(1)))
                    .earliest()
            })
            .ok_or_else(|| format!("Invalid at() schedule {text}."))?;
        return u64::try_from(local.timestamp_millis())
            .map(Schedule::At)
            .map_err(|_| format!("Invalid at() schedule {text}."));
    }
    if let Some(rate) = inner("rate(") {
        let mut parts = rate.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "Invalid rate() schedule {text}: use rate(N minutes|hours|days)."
            ));
        };
        let n: u64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("Invalid rate() schedule {text}: N must be a positive integer.")
        })?;
        let unit_ms = match (n, unit) {
            (1, "minute") | (2.., "minutes") => 60_000,
            (1, "hour") | (2.., "hours") => 3_600_000,
            (1, "day") | (2.., "days") => 86_400_000,
            _ => {
                return Err(format!(
                    "Invalid rate() schedule {text}: the unit is minute(s), hour(s) or day(s) (singular for 1)."
                ));
            }
        };
        return Ok(Schedule::Rate(n * unit_ms));
    }
    if let Some(expr) = inner("cron(") {
        return parse_cron(expr)
            .map(|cron| Schedule::Cron(Box::new(CronSchedule { cron, tz })))
            .map_err(|why| format!("Invalid cron() schedule {text}: {why}"));
    }
    Err(format!(
        "Invalid schedule {text}: use at(yyyy-mm-ddThh:mm:ss), rate(N minutes|hours|days) or cron(Minutes Hours Day-of-month Month Day-of-week Year)."
    ))
}

/// AWS's six fields, checked for AWS's rules, then evaluated by `croner` (seconds fixed at 0,
/// Quartz weekdays 1-7 = SUN-SAT, as AWS numbers them).
fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [minutes, hours, dom, month, dow, year] = fields[..] else {
        return Err(format!(
            "expected 6 fields (Minutes Hours Day-of-month Month Day-of-week Year), got {}",
            fields.len()
        ));
    };
    match (dom == "?", dow == "?") {
        (true, true) | (false, false) => {
            return Err(
                "exactly one of Day-of-month and Day-of-week must be ? (they cannot both be given)"
                    .to_owned(),
            );
        }
        _ => {}
    }
    let plain = |f: &str, extra: &str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || ",-*/".contains(c) || extra.contains(c))
    };
    for (name, f, extra) in [
        ("Minutes", minutes, ""),
        ("Hours", hours, ""),
        ("Day-of-month", dom, "?"),
        ("Month", month, ""),
        ("Day-of-week", dow, "?#"),
        ("Year", year, ""),
    ] {
        if !plain(f, extra) {
            return Err(format!(
                "the {name} field {f} has a character AWS does not allow"
            ));
        }
    }
    for (name, f) in [("Minutes", minutes), ("Hours", hours), ("Year", year)] {
        if f.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(format!("the {name} field {f} takes numbers only"));
        }
    }
    for item in year.split(',') {
        let range = item.split('/').next().unwrap_or_default();
        for y in range.split('-').filter_map(|v| v.parse::<u32>().ok()) {
            if !(1970..=2199).contains(&y) {
                return Err(format!("the year {y} is outside 1970-2199"));
            }
        }
    }
    // `L` alone among the weekdays is the week's last day, Saturday.
    let dow = if dow == "L" { "7" } else { dow };
    let pattern = format!("0 {minutes} {hours} {dom} {month} {dow} {year}");
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Required)
        .alternative_weekdays(true)
        .build()
        .parse(&pattern)
        .map_err(|e| e.to_string())
}

/// The first run strictly after `after_ms`, given the schedule's start (`StartTime`, else when it
/// was created); `None` when it never runs again.
pub fn next_after(schedule: &Schedule, start_ms: u64, after_ms: u64) -> Option<u64> {
    match *schedule {
        Schedule::At(t) => (t > after_ms).then_some(t),
        Schedule::Cron(ref c) => {
            // Runs at or after the start, strictly after `after_ms`.
            let from = after_ms.max(start_ms.saturating_sub(1));
            // Whole seconds: runs fall on whole minutes.
            let from = chrono::DateTime::from_timestamp(i64::try_from(from / 1000).ok()?, 0)?
                .with_timezone(&c.tz);
            let next = c.cron.find_next_occurrence(&from, false).ok()?;
            u64::try_from(next.timestamp_millis()).ok()
        }
        Schedule::Rate(every) => {
            if start_ms > after_ms {
                return Some(start_ms);
            }
            let k = (after_ms - start_ms) / every + 1;
            Some(start_ms + k * every)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06T10:00:00Z, a Sunday.
    const SUNDAY_10H: u64 = 1_796_551_200_000;

    fn next(text: &str, tz: Option<&str>, after: u64) -> Option<u64> {
        let s = parse(text, tz).unwrap_or_else(|e| panic!("{text}: {e}"));
        next_after(&s, 0, after)
    }

    #[test]
    fn schedules_parse_and_step() {
        assert_eq!(
            parse("at(2026-12-06T10:00:00)", None),
            Ok(Schedule::At(SUNDAY_10H))
        );
        assert_eq!(
            parse("rate(5 minutes)", Some("UTC")),
            Ok(Schedule::Rate(300_000))
        );
        assert_eq!(parse("rate(1 hour)", None), Ok(Schedule::Rate(3_600_000)));
        assert!(parse("rate(1 hours)", None).is_err());
        assert!(parse("rate(0 minutes)", None).is_err());
        assert_eq!(next_after(&Schedule::At(1000), 0, 999), Some(1000));
        assert_eq!(next_after(&Schedule::At(1000), 0, 1000), None);
        assert_eq!(next_after(&Schedule::Rate(100), 50, 10), Some(50));
        assert_eq!(next_after(&Schedule::Rate(100), 50, 50), Some(150));
        assert_eq!(next_after(&Schedule::Rate(100), 50, 249), Some(250));
    }

    #[test]
    fn at_reads_the_time_zone() {
        // 10:00 in Paris in December is 09:00 UTC.
        assert_eq!(
            parse("at(2026-12-06T10:00:00)", Some("Europe/Paris")),
            Ok(Schedule::At(1_796_547_600_000))
        );
    }

    #[test]
    fn cron_fields_as_aws_reads_them() {
        // Every day at 08:00 UTC.
        assert_eq!(
            next("cron(0 8 * * ? *)", None, SUNDAY_10H),
            Some(1_796_630_400_000)
        );
        // Weekdays 1-7 are SUN-SAT: 2-6 is Monday to Friday.
        assert_eq!(
            next("cron(0 9 ? * 2-6 *)", None, 1_796_472_000_000),
            Some(1_796_634_000_000)
        );
        assert_eq!(
            next("cron(0 9 ? * MON-FRI *)", None, 1_796_472_000_000),
            Some(1_796_634_000_000)
        );
        // The second Tuesday of the month (3#2): December 8th.
        assert_eq!(
            next("cron(0 12 ? * 3#2 *)", None, SUNDAY_10H),
            Some(1_796_731_200_000)
        );
        // The last day of the month.
        assert_eq!(
            next("cron(0 0 L * ? *)", None, SUNDAY_10H),
            Some(1_798_675_200_000)
        );
        // The weekday nearest the 15th: November 15th 2026 is a Sunday, so Monday the 16th.
        let nov1 = 1_793_491_200_000;
        assert_eq!(
            next("cron(0 0 15W * ? *)", None, nov1),
            Some(1_794_787_200_000)
        );
        // The last Thursday (5L) of November 2026: the 26th.
        assert_eq!(
            next("cron(0 0 ? * 5L *)", None, nov1),
            Some(1_795_651_200_000)
        );
        // L alone among the weekdays: Saturday.
        assert_eq!(
            next("cron(0 0 ? * L *)", None, SUNDAY_10H),
            Some(1_797_033_600_000)
        );
        // A year.
        assert_eq!(
            next("cron(0 0 1 1 ? 2028)", None, SUNDAY_10H),
            Some(1_830_297_600_000)
        );
        assert_eq!(next("cron(0 0 1 1 ? 2025)", None, SUNDAY_10H), None);
        // A start time holds the first run back.
        let s = parse("cron(0 8 * * ? *)", None).expect("parses");
        assert_eq!(
            next_after(&s, 1_796_630_400_000 + 1, SUNDAY_10H),
            Some(1_796_630_400_000 + 86_400_000)
        );
        assert_eq!(
            next_after(&s, 1_796_630_400_000, SUNDAY_10H),
            Some(1_796_630_400_000)
        );
    }

    #[test]
    fn cron_in_a_time_zone_and_across_daylight_saving() {
        // 08:00 in New York in December is 13:00 UTC.
        assert_eq!(
            next("cron(0 8 * * ? *)", Some("America/New_York"), SUNDAY_10H),
            Some(1_796_562_000_000)
        );
        // 2027-03-14 02:30 does not exist in New York (02:00 jumps to 03:00): the run comes at
        // 03:00 EDT (07:00 UTC), once, and the next day at 02:30 EDT again.
        let s = parse("cron(30 2 * * ? *)", Some("America/New_York")).expect("parses");
        let first = next_after(&s, 0, 1_805_000_400_000).expect("runs");
        assert_eq!(first, 1_805_007_600_000);
        assert_eq!(next_after(&s, 0, first), Some(1_805_092_200_000));
        // 2026-11-01 01:30 happens twice in New York: the run comes at the first (EDT, 05:30
        // UTC) only, then the next day at 01:30 EST (06:30 UTC).
        let s = parse("cron(30 1 * * ? *)", Some("America/New_York")).expect("parses");
        let first = next_after(&s, 0, 1_793_505_600_000).expect("runs");
        assert_eq!(first, 1_793_511_000_000);
        assert_eq!(next_after(&s, 0, first), Some(1_793_601_000_000));
    }

    #[test]
    fn invalid_cron_expressions_and_zones_are_named() {
        for (text, why) in [
            ("cron(0 8 * * ?)", "6 fields"),
            ("cron(0 8 * * * *)", "exactly one"),
            ("cron(0 8 ? * ? *)", "exactly one"),
            ("cron(0 25 * * ? *)", "cron()"),
            ("cron(61 8 * * ? *)", "cron()"),
            ("cron(0 8 ? * 9 *)", "cron()"),
            ("cron(0 8 ? * 3#6 *)", "cron()"),
            ("cron(0 8 * * ? 1969)", "1969"),
            ("cron(0 8 ? * +MON *)", "Day-of-week"),
            ("cron(0 8 * * ? @yearly)", "Year"),
            ("cron(0 8 * 13 ? *)", "cron()"),
            ("every day", "Invalid schedule"),
        ] {
            let e = parse(text, None).expect_err(text);
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains(text), "{text}: {e}");
        }
        let e = parse("cron(0 8 * * ? *)", Some("Mars/Olympus")).expect_err("zone");
        assert!(e.contains("Mars/Olympus"), "{e}");
    }
}
