//! A running process's memory and CPU figures, read from Linux's /proc.

use anyhow::{Context, Result};

/// A memory figure from /proc/<pid>/status in KiB: `VmRSS` (now), `VmHWM`
/// (peak), `RssAnon` (the part not backed by files, i.e. not shared code).
pub fn memory_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// User plus system CPU time the process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat).with_context(|| format!("unexpected /proc/{pid}/stat"))
}

/// utime + stime (fields 14 and 15, in clock ticks of 1/100 s: Linux's
/// USER_HZ on every architecture it supports) from a /proc/<pid>/stat line.
/// The command name (field 2) is in parentheses and may hold spaces, so
/// fields are counted after it.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        // A line in the kernel's format, with a space in the command name.
        let stat = "4242 (items api) S 1 4242 4242 0 -1 4194560 1630 0 0 0 1234 567 0 0 20 0 3 0 \
                    80000 12345678 1100 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(18.01));
        assert_eq!(parse_cpu_seconds("4242 (x) S 1"), None);
    }

    #[test]
    fn memory_figures_of_this_process() {
        let pid = std::process::id();
        let rss = memory_kib(pid, "VmRSS").unwrap();
        assert!(rss > 0 && rss <= memory_kib(pid, "VmHWM").unwrap());
        assert!(memory_kib(pid, "NoSuchField").is_err());
    }
}
