//! The server's CPU time over the measured window (`--server-pid`): user + system time from
//! `/proc/PID/stat`, read when the warm-up ends and again when the load is over.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::outcome::Schedule;

/// `/proc`'s clock ticks per second (`USER_HZ`, 100 on every Linux architecture Cohort runs
/// on).
const TICKS_PER_SECOND: u64 = 100;

/// User + system time from the text of `/proc/PID/stat`: fields 14 and 15, counted after the
/// command name's closing parenthesis (the name may hold spaces and parentheses).
pub(crate) fn parse_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1000 / TICKS_PER_SECOND))
}

fn cpu_time(pid: u32) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A process's CPU time since the end of the warm-up.
#[derive(Debug)]
pub(crate) struct Sampler {
    pid: u32,
    /// Its CPU time when the warm-up ended.
    start: JoinHandle<Option<Duration>>,
}

impl Sampler {
    /// Reads `pid`'s CPU time when the schedule's warm-up ends.
    pub(crate) fn start(pid: u32, schedule: &Schedule) -> Sampler {
        let from = Instant::from_std(schedule.measure_from);
        let start = tokio::spawn(async move {
            tokio::time::sleep_until(from).await;
            cpu_time(pid)
        });
        Sampler { pid, start }
    }

    /// The CPU time from the end of the warm-up to now, when the load is over (at the
    /// deadline, or earlier with a request budget); `None` if the process could not be read.
    pub(crate) async fn finish(self) -> Option<Duration> {
        let start = self.start.await.ok()??;
        Some(cpu_time(self.pid)?.saturating_sub(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_follow_the_command_name() {
        // A name with a space and a parenthesis, as `comm` may be.
        let stat = "4242 (stack (x) y) S 1 4242 4242 0 -1 4194560 8169 0 0 0 1234 567 0 0 20 0 9 0 \
                    1061 1234567 4321 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(18_010)));
        assert_eq!(parse_stat("4242 (stack) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }
}
