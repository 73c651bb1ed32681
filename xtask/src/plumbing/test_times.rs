//! How long `cargo test`'s tests took, from what stable cargo and libtest
//! print: cargo's `Running <source> (<binary>)` / `Doc-tests <crate>` lines
//! (stderr) name each test binary in the order they run, libtest's `test
//! result: … finished in 12.34s` (stdout) closes each, and libtest's `test
//! <name> has been running for over 60 seconds` names the slow tests inside
//! one. Per-test durations need libtest's unstable `--report-time` or
//! cargo-nextest (a process per test): what stable libtest gives is each
//! binary's time, and which of its tests passed a minute.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// Runs `cargo test` (`command`), echoing its stdout and stderr as they
/// come; returns its status and stdout lines, and adds the binaries' times
/// to `times`.
pub fn run_echoing(
    mut command: Command,
    times: &mut TestTimes,
) -> Result<(ExitStatus, Vec<String>)> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().context("starting cargo test")?;
    let stderr = child.stderr.take().expect("piped");
    let cargo_lines = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            lines.push(line);
        }
        lines
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        lines.push(line);
    }
    let status = child.wait()?;
    // Binaries run one after another: the n-th `Running` line is the n-th result's.
    for line in cargo_lines.join().unwrap_or_default() {
        times.cargo_line(&line);
    }
    for line in &lines {
        times.libtest_line(line);
    }
    Ok((status, lines))
}

/// One test binary's run.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryTime {
    /// `xtask tests/services.rs`, `items-api src/lib.rs`, `doc-tests service_kit`.
    pub name: String,
    pub duration: Duration,
    /// Its tests libtest reported as running for over 60 seconds.
    pub over_a_minute: Vec<String>,
}

/// The times of a `cargo test` run, fed line by line.
#[derive(Debug, Default)]
pub struct TestTimes {
    binaries: Vec<String>,
    durations: Vec<Duration>,
    /// `(index of the binary running, test name)`.
    slow: Vec<(usize, String)>,
}

impl TestTimes {
    /// A line of cargo's stderr: a binary starting.
    pub fn cargo_line(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            let source = rest.split(" (").next().unwrap_or(rest);
            let name = match source.strip_prefix("unittests ") {
                // The binary's file name (`xtask-0123abcd`) is the crate's.
                Some(path) => {
                    let file = rest.trim_end_matches(')').rsplit('/').next().unwrap_or("");
                    let krate = file.rsplit_once('-').map_or(file, |(stem, _)| stem);
                    format!("{krate} {path} (unit tests)")
                }
                None => source.to_owned(),
            };
            self.binaries.push(name);
        } else if let Some(krate) = line.strip_prefix("Doc-tests ") {
            self.binaries.push(format!("doc-tests {krate}"));
        }
    }

    /// A line of the test binaries' stdout: a result, or a slow test.
    pub fn libtest_line(&mut self, line: &str) {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" has been running for over 60 seconds"))
        {
            self.slow.push((self.durations.len(), name.to_owned()));
        } else if line.starts_with("test result: ") {
            let seconds = line
                .rsplit_once("finished in ")
                .and_then(|(_, s)| s.strip_suffix('s'))
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            self.durations.push(Duration::from_secs_f64(seconds));
        }
    }

    /// The `n` slowest binaries, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<BinaryTime> {
        let mut all: Vec<BinaryTime> = self
            .durations
            .iter()
            .enumerate()
            .map(|(i, &duration)| BinaryTime {
                name: self
                    .binaries
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("test binary #{}", i + 1)),
                duration,
                over_a_minute: self
                    .slow
                    .iter()
                    .filter(|(at, _)| *at == i)
                    .map(|(_, name)| name.clone())
                    .collect(),
            })
            .collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.duration));
        all.truncate(n);
        all
    }

    /// The report `cargo xtask ci` ends with: the ten slowest test binaries
    /// and the tests in each that ran over a minute.
    pub fn report(&self) -> String {
        let slowest = self.slowest(10);
        if slowest.is_empty() {
            return String::new();
        }
        let total: Duration = self.durations.iter().sum();
        let mut out = format!(
            "the {} slowest test binaries ({} run, {:.1}s in all; libtest's own times):\n",
            slowest.len(),
            self.durations.len(),
            total.as_secs_f64()
        );
        for binary in &slowest {
            out.push_str(&format!(
                "  {:>7.1}s  {}\n",
                binary.duration.as_secs_f64(),
                binary.name
            ));
            for test in &binary.over_a_minute {
                out.push_str(&format!("            over 60 s: {test}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_named_timed_and_ranked_with_their_slow_tests() {
        let mut times = TestTimes::default();
        let cargo = [
            "     Running unittests src/main.rs (/t/debug/deps/xtask-0123abcd)",
            "     Running tests/services.rs (/t/debug/deps/services-89ab)",
            "     Running tests/api.rs (/t/debug/deps/api-77)",
            "   Doc-tests service_kit",
        ];
        let libtest = [
            (
                0,
                "test result: ok. 170 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.25s",
            ),
            (
                1,
                "test a_scaffolded_service_is_complete has been running for over 60 seconds",
            ),
            (
                1,
                "test result: FAILED. 20 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 318.79s",
            ),
            (
                2,
                "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 40.00s",
            ),
            (
                3,
                "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            ),
        ];
        // Both streams are read at once: cargo's line for a binary comes
        // before its results, but the two interleave arbitrarily.
        for (i, line) in cargo.iter().enumerate() {
            times.cargo_line(line);
            for (_, out) in libtest.iter().filter(|(at, _)| *at == i) {
                times.libtest_line(out);
            }
        }
        let slowest = times.slowest(2);
        assert_eq!(slowest[0].name, "tests/services.rs");
        assert_eq!(slowest[0].duration, Duration::from_secs_f64(318.79));
        assert_eq!(
            slowest[0].over_a_minute,
            ["a_scaffolded_service_is_complete"]
        );
        assert_eq!(slowest[1].name, "tests/api.rs");
        assert!(times.report().contains("xtask src/main.rs (unit tests)"));
        let report = times.report();
        assert!(
            report.starts_with("the 4 slowest test binaries (4 run, 360.0s in all"),
            "{report}"
        );
        assert!(report.contains("   318.8s  tests/services.rs\n            over 60 s: a_scaffolded_service_is_complete\n"), "{report}");
        assert!(report.contains("doc-tests service_kit"), "{report}");
        assert_eq!(TestTimes::default().report(), "");
    }
}
