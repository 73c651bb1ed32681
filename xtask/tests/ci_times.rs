//! `cargo xtask ci` ends with the slowest test binaries, timed by libtest,
//! on a real `cargo test` of a small workspace.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TempDir, assert_fails, assert_ok, stderr, stdout, xtask_in};

/// A workspace at `root` of `files`, with its lock file.
fn workspace(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let lock = Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        lock.status.success(),
        "{}",
        String::from_utf8_lossy(&lock.stderr)
    );
}

/// A package's manifest.
fn package(name: &str) -> String {
    format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n")
}

/// `cargo xtask ci` with only its test step.
const TEST_STEP_ONLY: [&str; 9] = [
    "ci", "--skip", "fmt", "--skip", "clippy", "--skip", "deny", "--skip", "assets",
];

#[test]
fn ci_ends_with_the_slowest_test_binaries_and_their_times() {
    let dir = TempDir::new("ci-times");
    let root = dir.path().join("workspace");
    workspace(
        &root,
        &[
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"3\"\nmembers = [\"xtask\", \"slowpoke\"]\n",
            ),
            ("xtask/Cargo.toml", &package("pipeline")),
            ("xtask/src/lib.rs", "#[test]\nfn quick() {}\n"),
            ("slowpoke/Cargo.toml", &package("slowpoke")),
            ("slowpoke/src/lib.rs", "\n"),
            (
                "slowpoke/tests/slow.rs",
                "#[test]\nfn takes_a_while() {\n    std::thread::sleep(std::time::Duration::from_millis(1500));\n}\n",
            ),
        ],
    );
    let target = dir.path().join("target");
    let output = xtask_in(
        &root,
        &TEST_STEP_ONLY,
        &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
    );
    assert_ok(&output);
    let err = stderr(&output);
    let report = &err[err
        .find("slowest test binaries")
        .unwrap_or_else(|| panic!("no slowest list: {err}"))..];
    let first = report.lines().nth(1).unwrap();
    let (seconds, name) = first.trim().split_once("s  ").unwrap();
    assert_eq!(name, "tests/slow.rs", "{report}");
    assert!(seconds.parse::<f64>().unwrap() >= 1.5, "{report}");
    assert!(
        report.contains("pipeline src/lib.rs (unit tests)"),
        "{report}"
    );
    assert!(report.contains("doc-tests slowpoke"), "{report}");
    assert!(err.rfind("| test |").unwrap() < err.rfind("tests/slow.rs").unwrap());
}

/// Two test binaries that each wait (at most `MEET_SECONDS`) for the other to
/// have started: they pass only when they run at the same time.
fn meeting_workspace(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("workspace");
    let meet = |me: &str, other: &str| {
        format!(
            "#[test]\nfn meets_the_other() {{\n    \
             let dir = std::path::PathBuf::from(std::env::var(\"MEET_DIR\").unwrap());\n    \
             std::fs::write(dir.join(\"{me}\"), \"\").unwrap();\n    \
             let seconds: u64 = std::env::var(\"MEET_SECONDS\").unwrap().parse().unwrap();\n    \
             for _ in 0..seconds * 20 {{\n        \
             if dir.join(\"{other}\").exists() {{ return; }}\n        \
             std::thread::sleep(std::time::Duration::from_millis(50));\n    }}\n    \
             panic!(\"{other} never started while {me} ran\");\n}}\n"
        )
    };
    workspace(
        &root,
        &[
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"3\"\nmembers = [\"xtask\"]\n",
            ),
            ("xtask/Cargo.toml", &package("pipeline")),
            ("xtask/src/lib.rs", "\n"),
            ("xtask/tests/a.rs", &meet("a", "b")),
            ("xtask/tests/b.rs", &meet("b", "a")),
        ],
    );
    root
}

#[test]
fn test_binaries_run_at_once_and_a_failing_one_is_named_after_all_ran() {
    let dir = TempDir::new("ci-parallel");
    let root = meeting_workspace(dir.path());
    let target = dir.path().join("target");
    let run = |jobs: &str, meet: &str, seconds: &str| {
        let meet = dir.path().join(meet);
        std::fs::create_dir_all(&meet).unwrap();
        let mut args = TEST_STEP_ONLY.to_vec();
        args.extend(["--test-jobs", jobs]);
        let envs = [
            ("CARGO_TARGET_DIR", target.to_str().unwrap()),
            ("MEET_DIR", meet.to_str().unwrap()),
            ("MEET_SECONDS", seconds),
        ];
        xtask_in(&root, &args, &envs)
    };
    // Two at a time: each finds the other running.
    let together = run("2", "together", "60");
    assert_ok(&together);
    assert!(
        stdout(&together).contains("tests: 2 passed, 0 failed, 0 skipped"),
        "{}",
        stdout(&together)
    );
    // One at a time (as `cargo test` runs them): the first waits in vain, and
    // the second still runs and passes.
    let alone = run("1", "alone", "1");
    let err = assert_fails(&alone);
    let out = stdout(&alone);
    assert!(
        out.contains("tests: 1 passed, 1 failed, 0 skipped"),
        "{out}"
    );
    assert!(out.contains("never started while"), "{out}");
    assert!(
        err.contains("tests failed in tests/a.rs") || err.contains("tests failed in tests/b.rs"),
        "{err}"
    );
}
