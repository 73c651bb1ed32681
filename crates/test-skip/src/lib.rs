//! The one rule for a test whose dependency (a container engine, a registry,
//! PostgreSQL, a tool) is missing, shared by every crate's tests:
//!
//! - under `CI=true` the test fails: CI installs everything, so a missing
//!   dependency is a broken machine, never a reason to pass;
//! - elsewhere it fails naming what is missing, unless skipping was asked for
//!   with `SERVICE_DEMO_ALLOW_SKIP=1` (what `cargo xtask ci --allow-skip`
//!   sets): then it is reported as skipped, `skipped: <test>: <reason>` on
//!   stderr and appended to the file `SERVICE_DEMO_SKIP_LOG` names, which
//!   `cargo xtask ci` counts and prints.

use std::io::Write;

/// What the rule says for a missing dependency.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The test fails with this message.
    Fail(String),
    /// The test is skipped, reported with this line.
    Skip(String),
}

/// The rule, given `CI` and `SERVICE_DEMO_ALLOW_SKIP` as the environment has them.
pub fn verdict(test: &str, reason: &str, ci: Option<&str>, allow_skip: Option<&str>) -> Verdict {
    if ci == Some("true") {
        return Verdict::Fail(format!(
            "{test}: {reason}, and CI=true never skips a test: .ci/run must install it"
        ));
    }
    if allow_skip != Some("1") {
        return Verdict::Fail(format!(
            "{test}: {reason}: install it (`bash .ci/run` installs everything), or set \
             SERVICE_DEMO_ALLOW_SKIP=1 to skip such tests and say so"
        ));
    }
    Verdict::Skip(format!("skipped: {test}: {reason}"))
}

/// Applies the rule: panics (the test fails) or reports the skip and returns,
/// and the caller returns too.
#[track_caller]
pub fn skip_or_fail(test: &str, reason: &str) {
    let ci = std::env::var("CI").ok();
    let allow_skip = std::env::var("SERVICE_DEMO_ALLOW_SKIP").ok();
    match verdict(test, reason, ci.as_deref(), allow_skip.as_deref()) {
        Verdict::Fail(message) => panic!("{message}"),
        Verdict::Skip(line) => report(&line),
    }
}

/// `Some(())` when `ok`; otherwise the rule for the running test, whose
/// dependency `what` is missing: a failure, or `None` after reporting the skip.
#[track_caller]
pub fn require(ok: bool, what: &str) -> Option<()> {
    if ok {
        return Some(());
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed test")
        .to_owned();
    skip_or_fail(&test, &format!("{what} is missing"));
    None
}

fn report(line: &str) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("SERVICE_DEMO_SKIP_LOG") {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("SERVICE_DEMO_SKIP_LOG={path:?}: {e}"));
        // One write per line, so lines from parallel tests never interleave.
        log.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("SERVICE_DEMO_SKIP_LOG={path:?}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_never_skips_even_when_skipping_is_asked_for() {
        for allow in [None, Some("1")] {
            let Verdict::Fail(message) = verdict("t", "PostgreSQL is missing", Some("true"), allow)
            else {
                panic!("CI=true skipped a test");
            };
            assert!(message.contains("CI=true never skips"), "{message}");
        }
    }

    #[test]
    fn elsewhere_a_skip_is_asked_for_and_then_reported() {
        let Verdict::Fail(message) = verdict("t", "docker is missing", None, None) else {
            panic!("skipped without SERVICE_DEMO_ALLOW_SKIP=1");
        };
        assert!(message.contains("SERVICE_DEMO_ALLOW_SKIP=1"), "{message}");
        assert!(matches!(
            verdict("t", "x", Some("false"), Some("yes")),
            Verdict::Fail(_)
        ));
        assert_eq!(
            verdict("api::lists", "docker is missing", Some("false"), Some("1")),
            Verdict::Skip("skipped: api::lists: docker is missing".into())
        );
    }
}
