//! Gates in the local store (git notes on the service repository's remote),
//! the rule that inside GitHub Actions only a signed gate counts, and the
//! smoke / preprod suites against the real items-api.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    FakeHttp, TempDir, assert_fails, assert_ok, free_port, git, http_status, stdout, xtask,
    xtask_in,
};
use xtask::plumbing::retry::wait_until;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A service repository with a remote and one pushed commit: `(remote, clone, sha)`.
fn service_repository(dir: &std::path::Path) -> (PathBuf, PathBuf, String) {
    let (remote, work) = support::remote_and_clone(dir);
    git(
        &work,
        &[
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "feat: something",
        ],
    );
    git(&work, &["push", "--quiet", "origin", "main"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    (remote, work, sha)
}

fn gate(work: &std::path::Path, command: &str, sha: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["gate", command, "--sha", sha, "--name", "preprod-tests"];
    args.extend_from_slice(extra);
    xtask_in(work, &args, &[])
}

/// Two services built from one commit are two images, each with its own gate:
/// the newer result for one digest does not hide the other's.
#[test]
fn each_image_of_a_commit_has_its_own_gate() {
    let dir = TempDir::new("gates-per-image");
    let (remote, work, sha) = service_repository(dir.path());
    for (c, conclusion) in [('a', "success"), ('b', "failure"), ('c', "success")] {
        let digest = digest(c);
        let args = ["--conclusion", conclusion, "--digest", digest.as_str()];
        assert_ok(&gate(&work, "record", &sha, &args));
    }
    // The notes went to the remote, by the bot.
    let note = git(&remote, &["notes", "--ref=refs/notes/gates", "show", &sha]);
    let gates: Value = serde_json::from_str(&note).unwrap();
    assert_eq!(
        gates[format!("preprod-tests@{}", digest('b'))]["conclusion"],
        "failure"
    );
    let check = |c: char| gate(&work, "check", &sha, &["--digest", &digest(c)]);
    assert_ok(&check('a'));
    let message = assert_fails(&check('b'));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
    // An image never tested: the commit's latest result, for another image, does not count.
    let message = assert_fails(&check('d'));
    assert!(message.contains("rebuilt or moved"), "{message}");
}

/// Inside GitHub Actions the local store is neither written nor read: a
/// gate there is a signed attestation, and without a key nothing is recorded.
#[test]
fn inside_actions_a_gate_without_a_signing_key_is_refused() {
    let dir = TempDir::new("gates-in-actions");
    let (remote, work, sha) = service_repository(dir.path());
    let actions = [("GITHUB_ACTIONS", "true")];
    for command in ["record", "check"] {
        let extra: &[&str] = match command {
            "record" => &["--conclusion", "success", "--digest", &digest('a')],
            _ => &[],
        };
        let mut args = vec!["gate", command, "--sha", &sha, "--name", "preprod-tests"];
        args.extend_from_slice(extra);
        let message = assert_fails(&xtask_in(&work, &args, &actions));
        assert!(
            message.contains("a signed attestation only") && message.contains("gate keygen"),
            "{command}: {message}"
        );
    }
    let notes = git(&remote, &["for-each-ref", "refs/notes"]);
    assert!(notes.is_empty(), "a note was pushed from Actions: {notes}");
}

/// The real items-api binary on a free port, reporting `commit` as its commit.
struct Service(Child, String);

impl Service {
    fn start(commit: &str) -> Self {
        let root = support::workspace_root();
        // What `cargo test --workspace` builds, so under it this is a no-op: a
        // narrower `--package items-api` build unifies features differently
        // and rebuilt tokio and everything above it (2-3 minutes on 2 cores).
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success());
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(target.join("debug/items-api"))
            .env("PORT", addr.rsplit(':').next().unwrap())
            .env("GIT_COMMIT", commit)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let healthy = || http_status(&addr, "GET", "/healthz") == Some(200);
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(20), healthy),
            "items-api did not start"
        );
        Self(child, format!("http://{addr}"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn smoke_and_preprod_suites_pass_on_the_real_service_and_record_the_gate() {
    // A service repository with a remote, where the gate notes go.
    let dir = TempDir::new("preprod-test");
    let (remote, work, sha) = service_repository(dir.path());
    let service = Service::start(&sha);

    let smoke = xtask(&["smoke", "--url", &service.1], &[]);
    assert_ok(&smoke);
    assert!(
        stdout(&smoke).contains("✔ create → get → delete round trip"),
        "{}",
        stdout(&smoke)
    );
    assert!(
        stdout(&smoke).contains("smoke: 4 passed, 0 failed"),
        "{}",
        stdout(&smoke)
    );

    let preprod = xtask_in(
        &work,
        &[
            "preprod-test",
            "--url",
            &service.1,
            "--sha",
            &sha,
            "--digest",
            &digest('c'),
        ],
        &[],
    );
    assert_ok(&preprod);
    assert!(
        stdout(&preprod).contains("0 failed"),
        "{}",
        stdout(&preprod)
    );
    // The gate went to the remote as a git note on the commit.
    let note = git(&remote, &["notes", "--ref=refs/notes/gates", "show", &sha]);
    let gates: Value = serde_json::from_str(&note).unwrap();
    assert_eq!(
        gates["preprod-tests"],
        json!({"conclusion": "success", "digest": digest('c')})
    );
    assert_ok(&xtask_in(
        &work,
        &[
            "gate",
            "check",
            "--sha",
            &sha,
            "--name",
            "preprod-tests",
            "--digest",
            &digest('c'),
        ],
        &[],
    ));

    // Preprod running another commit: the suite fails and records the failure.
    let other = Service::start("0123456789abcdef0123456789abcdef01234567");
    let message = assert_fails(&xtask_in(
        &work,
        &[
            "preprod-test",
            "--url",
            &other.1,
            "--sha",
            &sha,
            "--digest",
            &digest('c'),
        ],
        &[],
    ));
    assert!(
        message.contains("preprod runs commit \"0123456789abcdef"),
        "{message}"
    );
    let message = assert_fails(&xtask_in(
        &work,
        &["gate", "check", "--sha", &sha, "--name", "preprod-tests"],
        &[],
    ));
    assert!(message.contains("failed"), "{message}");
}

#[test]
fn smoke_names_the_failing_check() {
    // A build whose health endpoint is broken.
    let fake = FakeHttp::start(|request, _| match request.target.as_str() {
        "/healthz" => (500, vec![], r#"{"status":"broken"}"#.to_owned()),
        _ => (200, vec![], r#"{"version":"1"}"#.to_owned()),
    });
    let message = assert_fails(&xtask(&["smoke", "--url", &fake.url()], &[]));
    assert!(
        message.contains("✘ GET /healthz answers 200: GET /healthz answered 500"),
        "{message}"
    );
    assert!(message.contains("smoke failed"), "{message}");
}
