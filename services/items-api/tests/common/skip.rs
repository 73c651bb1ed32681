//! The project's rule for a test whose dependency (PostgreSQL, schemathesis)
//! is missing: it fails, unless `SERVICE_DEMO_ALLOW_SKIP=1` asks for skips.
//! A skip is said on stderr as `skipped: <test>: <reason>` and appended to the
//! file named by `SERVICE_DEMO_SKIP_LOG`, where `cargo xtask ci` counts them.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::io::Write;

/// Fails `test` because of `reason`, or, when skipping is allowed, records
/// the skip and returns (the caller then returns too).
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("SERVICE_DEMO_ALLOW_SKIP").as_deref() != Ok("1") {
        panic!("{test}: {reason} (to skip such tests instead, set SERVICE_DEMO_ALLOW_SKIP=1)");
    }
    let line = format!("skipped: {test}: {reason}");
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
