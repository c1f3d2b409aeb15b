//! Scheduled actions' schedules: `at(yyyy-mm-ddThh:mm:ss)` (once) and `rate(N unit)` (every N
//! minutes, hours or days from `StartTime`), in UTC. `cron()` schedules and other time zones are
//! refused by [`parse`].

use time::PrimitiveDateTime;
use time::macros::format_description;

/// A parsed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once, at this time (ms since the epoch).
    At(u64),
    /// Every this many milliseconds.
    Rate(u64),
}

/// Parses `text`, or says why it cannot be served.
pub fn parse(text: &str, timezone: Option<&str>) -> Result<Schedule, String> {
    if let Some(tz) = timezone
        && !["UTC", "Etc/UTC", "GMT", "Etc/GMT"].contains(&tz)
    {
        return Err(format!(
            "Timezone {tz} is not supported by this server; give times in UTC."
        ));
    }
    let inner = |prefix: &str| {
        text.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(at) = inner("at(") {
        let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let t = PrimitiveDateTime::parse(at, &fmt)
            .map_err(|_| format!("Invalid at() schedule {text}: use at(yyyy-mm-ddThh:mm:ss)."))?
            .assume_utc();
        return u64::try_from(t.unix_timestamp())
            .map(|s| Schedule::At(s * 1000))
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
    if text.starts_with("cron(") {
        return Err(format!(
            "cron() schedules are not supported by this server ({text}); use at() or rate()."
        ));
    }
    Err(format!(
        "Invalid schedule {text}: use at(yyyy-mm-ddThh:mm:ss) or rate(N minutes|hours|days)."
    ))
}

/// The first run strictly after `after_ms`, given the schedule's start (`StartTime`, else when it
/// was created); `None` when it never runs again.
pub fn next_after(schedule: Schedule, start_ms: u64, after_ms: u64) -> Option<u64> {
    match schedule {
        Schedule::At(t) => (t > after_ms).then_some(t),
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

    #[test]
    fn schedules_parse_and_step() {
        assert_eq!(
            parse("at(2026-12-06T10:00:00)", None),
            Ok(Schedule::At(1_796_551_200_000))
        );
        assert_eq!(
            parse("rate(5 minutes)", Some("UTC")),
            Ok(Schedule::Rate(300_000))
        );
        assert_eq!(parse("rate(1 hour)", None), Ok(Schedule::Rate(3_600_000)));
        assert!(parse("rate(1 hours)", None).is_err());
        assert!(parse("rate(0 minutes)", None).is_err());
        assert!(
            parse("cron(0 8 * * ? *)", None)
                .unwrap_err()
                .contains("cron()")
        );
        assert!(
            parse("at(2026-12-06T10:00:00)", Some("Europe/Paris"))
                .unwrap_err()
                .contains("Europe/Paris")
        );
        assert_eq!(next_after(Schedule::At(1000), 0, 999), Some(1000));
        assert_eq!(next_after(Schedule::At(1000), 0, 1000), None);
        assert_eq!(next_after(Schedule::Rate(100), 50, 10), Some(50));
        assert_eq!(next_after(Schedule::Rate(100), 50, 50), Some(150));
        assert_eq!(next_after(Schedule::Rate(100), 50, 249), Some(250));
    }
}
