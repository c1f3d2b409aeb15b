//! CPU time from Linux's `/proc`: of this process, of the server, and of the whole machine, so a
//! run can report CPU per request, a figure that other load on the machine does not skew the way
//! it skews requests per second.

use std::time::Duration;

/// Clock ticks per second in `/proc` (`USER_HZ`, 100 on every Linux architecture we run on).
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system, all threads) of a process, from the text of `/proc/PID/stat`.
pub fn parse_process_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(ticks(utime + stime))
}

/// Busy and total CPU time of the machine (all cores), from the text of `/proc/stat`.
pub fn parse_machine_stat(stat: &str) -> Option<(Duration, Duration)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((ticks(total - idle), ticks(total)))
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 1000 / TICKS_PER_SEC)
}

/// CPU counters at one instant; `None` where `/proc` could not be read.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    client: Option<Duration>,
    server: Option<Duration>,
    machine: Option<(Duration, Duration)>,
}

fn process(pid: &str) -> Option<Duration> {
    parse_process_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

impl Sample {
    pub fn now(server_pid: Option<u32>) -> Self {
        Self {
            client: process("self"),
            server: server_pid.and_then(|p| process(&p.to_string())),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(parse_machine_stat),
        }
    }
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    /// Busy CPU time of the whole machine (client, server and anything else running).
    pub machine_busy: Option<Duration>,
}

pub fn usage(before: Sample, after: Sample) -> Usage {
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    Usage {
        client: diff(before.client, after.client),
        server: diff(before.server, after.server),
        machine_busy: diff(before.machine.map(|m| m.0), after.machine.map(|m| m.0)),
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn micros_each(d: Option<Duration>, requests: u64) -> String {
    match d {
        Some(d) if requests > 0 => format!("{:.0}", d.as_secs_f64() * 1e6 / requests as f64),
        _ => "n/a".to_owned(),
    }
}

impl Usage {
    /// One line: CPU seconds used and CPU microseconds per successful request.
    pub fn line(&self, requests: u64) -> String {
        format!(
            "server_cpu_s={} client_cpu_s={} machine_busy_cpu_s={} server_cpu_us_per_req={} \
             client_cpu_us_per_req={}",
            secs(self.server),
            secs(self.client),
            secs(self.machine_busy),
            micros_each(self.server, requests),
            micros_each(self.client, requests),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_is_user_plus_system_ticks() {
        let stat = "1234 (gantry (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_process_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_process_stat("garbage"), None);
    }

    #[test]
    fn usage_line_divides_cpu_by_requests() {
        let u = Usage {
            client: Some(Duration::from_millis(500)),
            server: Some(Duration::from_secs(2)),
            machine_busy: None,
        };
        assert_eq!(
            u.line(10_000),
            "server_cpu_s=2.00 client_cpu_s=0.50 machine_busy_cpu_s=n/a \
             server_cpu_us_per_req=200 client_cpu_us_per_req=50"
        );
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(
            parse_machine_stat(stat),
            Some((Duration::from_millis(1500), Duration::from_secs(10)))
        );
    }
}
