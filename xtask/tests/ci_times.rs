//! `cargo xtask ci` ends with the slowest test binaries, timed by libtest,
//! on a real `cargo test` of a small workspace.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TempDir, assert_ok, stderr, xtask_in};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn ci_ends_with_the_slowest_test_binaries_and_their_times() {
    let dir = TempDir::new("ci-times");
    let root = dir.path().join("workspace");
    let package = |name: &str| {
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n")
    };
    write(
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
    let lock = Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        lock.status.success(),
        "{}",
        String::from_utf8_lossy(&lock.stderr)
    );
    let target = dir.path().join("target");
    let args = [
        "ci", "--skip", "fmt", "--skip", "clippy", "--skip", "deny", "--skip", "assets",
    ];
    let output = xtask_in(
        &root,
        &args,
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
