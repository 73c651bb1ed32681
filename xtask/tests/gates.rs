//! Gates in GitHub check runs (against a fake of GitHub's API that checks the
//! exact requests), and the smoke / preprod suites against the real items-api.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::contract::github_answer;
use support::{
    FakeHttp, Request, TempDir, assert_fails, assert_ok, free_port, git, head, http_status, stdout,
    xtask, xtask_in,
};
use xtask::plumbing::retry::wait_until;

const TOKEN: &str = "ghs_fake-token-for-tests";

fn github_env(fake: &FakeHttp) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_TOKEN", TOKEN.to_owned()),
        ("GITHUB_REPOSITORY", "acme/service-demo".to_owned()),
        ("GITHUB_API_URL", fake.url()),
        ("GATE_STORE", "github".to_owned()),
    ]
}

fn run_github(fake: &FakeHttp, args: &[&str]) -> std::process::Output {
    let env = github_env(fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    xtask(args, &env)
}

#[track_caller]
fn assert_github_headers(request: &Request) {
    assert_eq!(request.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(request.headers["accept"], "application/vnd.github+json");
    assert_eq!(request.headers["x-github-api-version"], "2022-11-28");
    assert!(
        request.headers.contains_key("user-agent"),
        "GitHub requires a User-Agent"
    );
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

#[test]
fn recording_a_gate_creates_one_completed_check_run_with_the_digest() {
    let fake = FakeHttp::start_github(|request, _| {
        let answer = github_answer("POST", &request.target, 201, json!({"id": 7}));
        (201, vec![], answer)
    });
    let sha = head();
    let out = run_github(
        &fake,
        &[
            "gate",
            "record",
            "--sha",
            &sha[..8],
            "--name",
            "preprod-tests",
            "--conclusion",
            "success",
            "--digest",
            &digest('a'),
        ],
    );
    assert_ok(&out);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/repos/acme/service-demo/check-runs")
    );
    assert_github_headers(request);
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        json!({
            "name": "CD / Preprod Tests",
            "head_sha": sha,
            "status": "completed",
            "conclusion": "success",
            "external_id": digest('a'),
            "output": {"title": "preprod-tests: success", "summary": format!("Tested image digest: `{}`", digest('a'))},
        })
    );
    assert!(!stdout(&out).contains(TOKEN));
}

/// Check runs for one commit on two pages: only the expected app's count.
fn check_runs_fake(sha: String, runs: Vec<Value>) -> FakeHttp {
    let runs = Arc::new(Mutex::new(runs));
    FakeHttp::start_github(move |request, base| {
        let path = format!(
            "/repos/acme/service-demo/commits/{sha}/check-runs?check_name=CD%20%2F%20Preprod%20Tests&filter=all&per_page=100"
        );
        let runs = runs.lock().unwrap();
        let (half, rest) = runs.split_at(runs.len() / 2);
        if request.target == path {
            let next = vec![(
                "Link".to_owned(),
                format!("<{base}{path}&page=2>; rel=\"next\", <{base}{path}&page=2>; rel=\"last\""),
            )];
            (
                200,
                next,
                github_answer(
                    "GET",
                    &request.target,
                    200,
                    json!({"total_count": runs.len(), "check_runs": half}),
                ),
            )
        } else if request.target == format!("{path}&page=2") {
            (
                200,
                vec![],
                github_answer(
                    "GET",
                    &request.target,
                    200,
                    json!({"total_count": runs.len(), "check_runs": rest}),
                ),
            )
        } else {
            (
                404,
                vec![],
                json!({"message": "Not Found", "got": request.target}).to_string(),
            )
        }
    })
}

fn run(app: &str, sha: &str, id: u64, completed_at: &str, conclusion: &str, digest: &str) -> Value {
    json!({
        "id": id, "name": "CD / Preprod Tests", "head_sha": sha, "status": "completed",
        "conclusion": conclusion, "completed_at": completed_at, "external_id": digest,
        "app": {"slug": app},
    })
}

#[test]
fn a_check_reads_every_page_and_trusts_only_the_expected_app() {
    let sha = head();
    let fake = check_runs_fake(
        sha.clone(),
        vec![
            run(
                "github-actions",
                &sha,
                1,
                "2026-11-01T10:00:00Z",
                "failure",
                &digest('a'),
            ),
            // Newest, but from another app that anyone with a token could create.
            run(
                "someone-elses-app",
                &sha,
                9,
                "2026-11-03T10:00:00Z",
                "success",
                &digest('b'),
            ),
            run(
                "github-actions",
                &sha,
                5,
                "2026-11-02T10:00:00Z",
                "success",
                &digest('a'),
            ),
            run(
                "github-actions",
                "0000000000000000000000000000000000000000",
                6,
                "2026-11-04T10:00:00Z",
                "failure",
                &digest('a'),
            ),
        ],
    );
    let check = |expected: char| {
        run_github(
            &fake,
            &[
                "gate",
                "check",
                "--sha",
                &sha,
                "--name",
                "preprod-tests",
                "--digest",
                &digest(expected),
            ],
        )
    };
    let ok = check('a');
    assert_ok(&ok);
    assert!(stdout(&ok).contains(&digest('a')));
    let message = assert_fails(&check('b'));
    assert!(
        message.contains("rebuilt or moved"),
        "the other app's pass must not count: {message}"
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "two pages per check: {requests:#?}");
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_github_headers(request);
    }
    assert!(requests[1].target.ends_with("&page=2"));

    // The latest run of the expected app failing wins over its older pass.
    let fake = check_runs_fake(
        sha.clone(),
        vec![
            run(
                "github-actions",
                &sha,
                1,
                "2026-11-01T10:00:00Z",
                "success",
                &digest('a'),
            ),
            run(
                "github-actions",
                &sha,
                2,
                "2026-11-02T10:00:00Z",
                "failure",
                &digest('a'),
            ),
        ],
    );
    let message = assert_fails(&run_github(
        &fake,
        &["gate", "check", "--sha", &sha, "--name", "preprod-tests"],
    ));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
}

/// Two services built from one commit are two images, each with its own gate:
/// the newer result for one digest does not hide the other's.
#[test]
fn each_image_of_a_commit_has_its_own_gate() {
    let sha = head();
    let runs = vec![
        run(
            "github-actions",
            &sha,
            1,
            "2026-11-01T10:00:00Z",
            "success",
            &digest('a'),
        ),
        run(
            "github-actions",
            &sha,
            2,
            "2026-11-02T10:00:00Z",
            "failure",
            &digest('b'),
        ),
        run(
            "github-actions",
            &sha,
            3,
            "2026-11-03T10:00:00Z",
            "success",
            &digest('c'),
        ),
    ];
    let fake = check_runs_fake(sha.clone(), runs);
    let check = |expected: char| {
        let args = [
            "gate",
            "check",
            "--sha",
            &sha,
            "--name",
            "preprod-tests",
            "--digest",
            &digest(expected),
        ];
        run_github(&fake, &args)
    };
    assert_ok(&check('a'));
    let message = assert_fails(&check('b'));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
    // An image never tested: the commit's latest result, for another image, does not count.
    let message = assert_fails(&check('d'));
    assert!(message.contains("rebuilt or moved"), "{message}");
}

#[test]
fn github_app_names_the_app_whose_check_runs_count() {
    let sha = head();
    let fake = check_runs_fake(
        sha.clone(),
        vec![
            run(
                "github-actions",
                &sha,
                1,
                "2026-11-02T10:00:00Z",
                "failure",
                &digest('a'),
            ),
            run(
                "service-demo-ci",
                &sha,
                2,
                "2026-11-01T10:00:00Z",
                "success",
                &digest('b'),
            ),
        ],
    );
    let check = |extra: &[&str]| {
        let mut args = vec![
            "gate",
            "check",
            "--sha",
            &sha,
            "--name",
            "preprod-tests",
            "--digest",
        ];
        let expected = digest('b');
        args.push(&expected);
        args.extend_from_slice(extra);
        run_github(&fake, &args)
    };
    // By default only github-actions' runs count: its failure is the latest.
    let message = assert_fails(&check(&[]));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
    // Named, the other app's pass counts and github-actions' failure does not.
    let ok = check(&["--github-app", "service-demo-ci"]);
    assert_ok(&ok);
    assert!(stdout(&ok).contains(&digest('b')), "{}", stdout(&ok));
    // The same from the environment, as a workflow sets it.
    let env = github_env(&fake);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("GATE_GITHUB_APP", "service-demo-ci"));
    let expected = digest('b');
    assert_ok(&xtask(
        &[
            "gate",
            "check",
            "--sha",
            &sha,
            "--name",
            "preprod-tests",
            "--digest",
            &expected,
        ],
        &env,
    ));
}

#[test]
fn an_expired_token_is_named() {
    let fake =
        FakeHttp::start_github(|_, _| (401, vec![], r#"{"message":"Bad credentials"}"#.to_owned()));
    let message = assert_fails(&run_github(
        &fake,
        &["gate", "check", "--sha", &head(), "--name", "preprod-tests"],
    ));
    assert!(
        message.contains("401") && message.contains("invalid or expired"),
        "{message}"
    );
    assert!(!message.contains(TOKEN), "the token leaked: {message}");
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
    let (remote, work) = support::remote_and_clone(dir.path());
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
