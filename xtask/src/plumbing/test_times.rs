//! How long a test run's binaries took, from what stable cargo and libtest
//! print: cargo's `Running <source> (<binary>)` / `Doc-tests <crate>` line
//! names a test binary, libtest's `test result: … finished in 12.34s` closes
//! it, and libtest's `test
//! <name> has been running for over 60 seconds` names the slow tests inside
//! one. Per-test durations need libtest's unstable `--report-time` or
//! cargo-nextest (a process per test): what stable libtest gives is each
//! binary's time, and which of its tests passed a minute.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

/// One test binary's run.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryTime {
    /// `xtask tests/services.rs`, `items-api src/lib.rs`, `doc-tests service_kit`.
    pub name: String,
    pub duration: Duration,
    /// Its tests libtest reported as running for over 60 seconds.
    pub over_a_minute: Vec<String>,
}

/// The times of a test run's binaries, read from what each test process printed.
#[derive(Debug, Default)]
pub struct TestTimes {
    binaries: Vec<BinaryTime>,
}

impl TestTimes {
    /// What one test process printed (cargo's `Running …` or `Doc-tests …`
    /// line before each binary's output): each binary closed by a `test
    /// result:` line is timed, with its tests that ran over a minute.
    pub fn add_output(&mut self, output: &str) {
        let (mut name, mut slow) = (None, Vec::new());
        for line in output.lines().map(str::trim) {
            if let Some(binary) = binary_name(line) {
                name = Some(binary);
                slow.clear();
            } else if let Some(test) = line
                .strip_prefix("test ")
                .and_then(|rest| rest.strip_suffix(" has been running for over 60 seconds"))
            {
                slow.push(test.to_owned());
            } else if line.starts_with("test result: ") {
                let seconds = line
                    .rsplit_once("finished in ")
                    .and_then(|(_, s)| s.strip_suffix('s'))
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(0.0);
                let number = self.binaries.len() + 1;
                self.binaries.push(BinaryTime {
                    name: name
                        .take()
                        .unwrap_or_else(|| format!("test binary #{number}")),
                    duration: Duration::from_secs_f64(seconds),
                    over_a_minute: std::mem::take(&mut slow),
                });
            }
        }
    }

    /// The `n` slowest binaries, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<BinaryTime> {
        let mut all = self.binaries.clone();
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
        let total: Duration = self.binaries.iter().map(|b| b.duration).sum();
        let mut out = format!(
            "the {} slowest test binaries ({} run, {:.1}s in all; libtest's own times):\n",
            slowest.len(),
            self.binaries.len(),
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

/// The binary a cargo line names: `tests/services.rs`, `xtask src/main.rs
/// (unit tests)` (the crate from the executable's name), `doc-tests service_kit`.
fn binary_name(line: &str) -> Option<String> {
    if let Some(krate) = line.strip_prefix("Doc-tests ") {
        return Some(format!("doc-tests {krate}"));
    }
    let rest = line.strip_prefix("Running ")?;
    let source = rest.split(" (").next().unwrap_or(rest);
    Some(match source.strip_prefix("unittests ") {
        // The binary's file name (`xtask-0123abcd`) is the crate's.
        Some(path) => {
            let file = rest.trim_end_matches(')').rsplit('/').next().unwrap_or("");
            let krate = file.rsplit_once('-').map_or(file, |(stem, _)| stem);
            format!("{krate} {path} (unit tests)")
        }
        None => source.to_owned(),
    })
}

/// The seconds each test process took in the previous run, by name, from
/// `path` (`<seconds>\t<name>` lines); empty when there is none.
pub fn previous(path: &Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (seconds, name) = line.split_once('\t')?;
            Some((name.to_owned(), seconds.parse().ok()?))
        })
        .collect()
}

/// Writes this run's `(name, time)` of each test process to `path`, for
/// [`previous`].
pub fn save(path: &Path, times: &[(String, Duration)]) -> Result<()> {
    let text: String = times
        .iter()
        .map(|(name, time)| format!("{:.1}\t{name}\n", time.as_secs_f64()))
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::plumbing::fs::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_named_timed_and_ranked_with_their_slow_tests() {
        let mut times = TestTimes::default();
        // Each test process's output: cargo's line, then libtest's.
        for output in [
            "     Running unittests src/main.rs (/t/debug/deps/xtask-0123abcd)\n\nrunning 170 tests\n\
             test result: ok. 170 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.25s\n",
            "     Running tests/services.rs (/t/debug/deps/services-89ab)\n\
             test a_scaffolded_service_is_complete has been running for over 60 seconds\n\
             test result: FAILED. 20 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 318.79s\n",
            "     Running tests/api.rs (/t/debug/deps/api-77)\n\
             test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 40.00s\n",
            "   Compiling x\n   Doc-tests service_kit\n\
             test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
            // A binary that died before its result line: not timed, and names nothing after it.
            "     Running tests/crashed.rs (/t/debug/deps/crashed-1)\n\nrunning 3 tests\n",
        ] {
            times.add_output(output);
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
        assert!(!report.contains("crashed"), "{report}");
        assert_eq!(TestTimes::default().report(), "");
    }

    #[test]
    fn the_previous_runs_times_are_read_back_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xtask/test-times.tsv");
        assert!(previous(&path).is_empty(), "no previous run");
        let times = [
            ("tests/demo.rs".to_owned(), Duration::from_secs_f64(70.04)),
            ("doc-tests".to_owned(), Duration::from_millis(900)),
        ];
        save(&path, &times).unwrap();
        let read = previous(&path);
        assert_eq!(read.get("tests/demo.rs"), Some(&70.0));
        assert_eq!(read.get("doc-tests"), Some(&0.9));
        assert_eq!(read.len(), 2);
    }
}
