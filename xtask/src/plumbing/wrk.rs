//! wrk, the HTTP load generator: one pinned run, parsed, with the CPU both
//! sides used over the same wall clock.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::plumbing::proc_stats;

/// How wrk loads the server.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub seconds: u64,
    /// The CPU wrk is pinned to.
    pub cpu: usize,
}

/// One wrk run, as parsed from its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// wrk's user+system CPU time over the run's wall time (1.0 = one core).
    pub wrk_cpu: f64,
    /// The server's, likewise.
    pub server_cpu: f64,
}

impl Run {
    /// The server's CPU time per request, in µs: what a request costs,
    /// whether or not the server had its core to itself.
    pub fn cpu_per_request_us(&self) -> f64 {
        self.server_cpu / self.requests_per_sec * 1e6
    }
}

/// Runs wrk against `url` under bash, whose `times` builtin reports the CPU
/// time its children used; the server's (`server_pid`) comes from /proc over
/// the same span. `script` is a wrk Lua script (e.g. from [`post_script`]).
pub fn run(
    sh: &Shell,
    load: Load,
    url: &str,
    script: Option<&Path>,
    server_pid: u32,
) -> Result<Run> {
    let script_arg = script
        .map(|s| format!("-s {}", s.display()))
        .unwrap_or_default();
    let Load {
        threads,
        connections,
        seconds,
        cpu,
    } = load;
    let line = format!(
        "taskset -c {cpu} wrk -t{threads} -c{connections} -d{seconds}s --latency {script_arg} {url}; times"
    );
    let server_cpu_before = proc_stats::cpu_seconds(server_pid)?;
    let started = Instant::now();
    let output = cmd!(sh, "bash -c {line}").quiet().read()?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = proc_stats::cpu_seconds(server_pid)? - server_cpu_before;
    parse(&output, wall, server_cpu).with_context(|| format!("unexpected wrk output:\n{output}"))
}

/// A wrk script that POSTs `json` on every request, written into `dir`.
pub fn post_script(dir: &Path, json: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("post.lua");
    let body = json.replace('\\', "\\\\").replace('\'', "\\'");
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    Ok(path)
}

/// The run with the median throughput, so its latencies belong to one real run.
pub fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    sorted[sorted.len() / 2]
}

/// A run from wrk's output followed by `times`, the run's wall time and the
/// server's CPU seconds over it.
fn parse(output: &str, wall_seconds: f64, server_cpu_seconds: f64) -> Option<Run> {
    let requests_per_sec = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let percentile = |p: &str| {
        output
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .and_then(|v| parse_duration_ms(v.trim()))
    };
    // `times` prints the shell's times, then its children's: "0m1.2s 0m3.4s".
    let children = output
        .lines()
        .rev()
        .find(|l| l.contains('m') && l.ends_with('s'))?;
    let cpu: f64 = children
        .split_whitespace()
        .filter_map(parse_times_field)
        .sum();
    Some(Run {
        requests_per_sec,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        wrk_cpu: cpu / wall_seconds,
        server_cpu: server_cpu_seconds / wall_seconds,
    })
}

/// wrk prints `812.00us`, `1.23ms` or `2.01s`.
fn parse_duration_ms(value: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// bash `times` fields look like `0m1.234s`.
fn parse_times_field(field: &str) -> Option<f64> {
    let (minutes, seconds) = field.strip_suffix('s')?.split_once('m')?;
    Some(minutes.parse::<f64>().ok()? * 60.0 + seconds.parse::<f64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "\
Running 15s test @ http://127.0.0.1:18080/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  700.00us
     75%    1.00ms
     90%    1.20ms
     99%    2.50ms
  1000000 requests in 15.00s, 100.00MB read
Requests/sec:  66666.66
Transfer/sec:      6.67MB
0m0.001s 0m0.002s
0m6.000s 0m9.000s
";

    #[test]
    fn parses_wrk_output_and_child_cpu_time() {
        let run = parse(WRK_OUTPUT, 15.0, 13.5).unwrap();
        assert_eq!(run.requests_per_sec, 66666.66);
        assert!((run.p50_ms - 0.7).abs() < 1e-9, "{}", run.p50_ms);
        assert!((run.p99_ms - 2.5).abs() < 1e-9, "{}", run.p99_ms);
        assert!((run.wrk_cpu - 1.0).abs() < 1e-9, "{}", run.wrk_cpu);
        assert!((run.server_cpu - 0.9).abs() < 1e-9, "{}", run.server_cpu);
        assert!((run.cpu_per_request_us() - 13.5).abs() < 1e-3);
        assert_eq!(parse("Requests/sec: 1\n", 1.0, 1.0), None);
    }

    #[test]
    fn median_run_is_a_real_run() {
        let run = |rps: f64| Run {
            requests_per_sec: rps,
            p50_ms: rps,
            p99_ms: rps,
            wrk_cpu: 0.0,
            server_cpu: 0.0,
        };
        assert_eq!(median(&[run(3.0), run(1.0), run(2.0)]), run(2.0));
    }

    #[test]
    fn post_script_quotes_the_body_for_lua() {
        let dir = std::env::temp_dir().join(format!("wrk-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = std::fs::read_to_string(post_script(&dir, r#"{"name":"it's"}"#).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(script.unwrap().contains(r#"wrk.body = '{"name":"it\'s"}'"#));
    }
}
