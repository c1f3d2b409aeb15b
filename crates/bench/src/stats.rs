//! The figures of a run, computed from the raw latencies: pure, no I/O.

use std::fmt;
use std::time::Duration;

/// What the workers of one run observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Latency of every successful request (HTTP 200), in microseconds.
    pub latencies_us: Vec<u64>,
    /// Requests answered with another status, or not answered at all.
    pub errors: u64,
}

impl Observed {
    pub fn merge(&mut self, other: Observed) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
    }
}

/// The summary printed at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub requests_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The value at quantile `q` (0..=1) of an ascending slice, nearest-rank; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises `observed` over a run that lasted `elapsed`.
pub fn summarize(mut observed: Observed, elapsed: Duration) -> Summary {
    observed.latencies_us.sort_unstable();
    let sorted = &observed.latencies_us;
    let ok = sorted.len() as u64;
    let secs = elapsed.as_secs_f64();
    Summary {
        ok,
        errors: observed.errors,
        elapsed,
        requests_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        p50_us: quantile(sorted, 0.50),
        p99_us: quantile(sorted, 0.99),
        max_us: sorted.last().copied().unwrap_or(0),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok={} errors={} elapsed_s={:.2} req_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.max_us),
        )
    }
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 2m"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        other => return Err(format!("invalid duration unit {other:?} in {s:?}")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.50), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn summary_counts_rate_over_elapsed_time() {
        let s = summarize(
            Observed {
                latencies_us: vec![3000, 1000, 2000, 4000],
                errors: 1,
            },
            Duration::from_secs(2),
        );
        assert_eq!(s.ok, 4);
        assert_eq!(s.errors, 1);
        assert_eq!(s.requests_per_sec, 2.0);
        assert_eq!(s.p50_us, 2000);
        assert_eq!(s.max_us, 4000);
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
