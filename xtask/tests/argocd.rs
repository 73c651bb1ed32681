//! `cargo xtask argocd wait|sync` against a fake Argo CD that replays
//! sequences of Application documents (shaped like Argo CD's own, from
//! `fixtures/argocd/application.json`) and records every request.

mod support;

use std::collections::VecDeque;
use std::process::Output;
use std::sync::Mutex;

use serde_json::{Value, json};
use support::{FakeHttp, Request, TempDir, assert_fails, assert_ok, git, stdout, xtask, xtask_in};

const NEW: &str = "1111111111111111111111111111111111111111";
const OLD: &str = "2222222222222222222222222222222222222222";
const TOKEN: &str = "argocd-t0ken";

/// The recorded preprod Application, running OLD, healthy.
fn stale_healthy() -> Value {
    let text =
        include_str!("fixtures/argocd/application.json").replace("\"OLD\"", &format!("\"{OLD}\""));
    serde_json::from_str(&text).unwrap()
}

fn with(mut doc: Value, edit: impl FnOnce(&mut Value)) -> Value {
    edit(&mut doc["status"]);
    doc
}

/// After a refresh: git has NEW, the cluster runs OLD.
fn out_of_sync() -> Value {
    with(stale_healthy(), |s| {
        s["sync"]["status"] = json!("OutOfSync");
        s["sync"]["revision"] = json!(NEW);
        s["reconciledAt"] = json!("2026-11-23T10:00:02Z");
    })
}

/// The automated sync of NEW running; pods being replaced.
fn syncing() -> Value {
    with(out_of_sync(), |s| {
        let op = &mut s["operationState"];
        op["phase"] = json!("Running");
        op["message"] = json!("waiting for healthy state of apps/Deployment/service-demo");
        op["operation"]["sync"]["revision"] = json!(NEW);
        op["syncResult"]["revision"] = json!(NEW);
        op["startedAt"] = json!("2026-11-23T10:00:03Z");
        op.as_object_mut().unwrap().remove("finishedAt");
        s["health"]["status"] = json!("Progressing");
    })
}

/// Synced to NEW by a finished operation; health as assessed at `reconciled`.
fn synced(health: &str, message: &str, reconciled: &str) -> Value {
    with(syncing(), |s| {
        s["sync"]["status"] = json!("Synced");
        let op = &mut s["operationState"];
        op["phase"] = json!("Succeeded");
        op["message"] = json!("successfully synced (all tasks run)");
        op["finishedAt"] = json!("2026-11-23T10:00:10Z");
        s["health"] = json!({"status": health, "message": message});
        s["reconciledAt"] = json!(reconciled);
    })
}

/// Synced and Healthy, but that health was computed before the sync finished.
fn healthy_before_the_sync_finished() -> Value {
    synced("Healthy", "", "2026-11-23T10:00:09Z")
}

fn done() -> Value {
    synced("Healthy", "", "2026-11-23T10:00:12Z")
}

fn degraded() -> Value {
    synced(
        "Degraded",
        "Deployment \"service-demo\" exceeded its progress deadline",
        "2026-11-23T10:00:11Z",
    )
}

const FAILED_MESSAGE: &str = "one or more objects failed to apply, reason: Deployment.apps \"service-demo\" is invalid: spec.template.spec.containers[0].image: Required value";

fn failed() -> Value {
    with(syncing(), |s| {
        let op = &mut s["operationState"];
        op["phase"] = json!("Failed");
        op["message"] = json!(FAILED_MESSAGE);
        op["finishedAt"] = json!("2026-11-23T10:00:04Z");
    })
}

/// Answers in order; the last one is repeated.
struct Replay(Mutex<VecDeque<(u16, String)>>);

impl Replay {
    fn new(answers: Vec<(u16, Value)>) -> Self {
        Self(Mutex::new(
            answers
                .into_iter()
                .map(|(status, body)| (status, body.to_string()))
                .collect(),
        ))
    }

    fn ok(docs: Vec<Value>) -> Self {
        Self::new(docs.into_iter().map(|d| (200, d)).collect())
    }

    fn next(&self) -> (u16, Vec<(String, String)>, String) {
        let mut answers = self.0.lock().unwrap();
        let (status, body) = if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().expect("an answer")
        };
        (status, vec![], body)
    }
}

/// A fake Argo CD: application reads, label-selected lists and sync requests
/// each replay their own sequence. Like Argo CD, it answers 401 without the
/// token and 404 to any other request, so a wrong path or token fails the test.
/// Every exchange is checked against Argo CD's own REST description.
fn argocd(app: Replay, list: Replay, sync: Replay) -> FakeHttp {
    FakeHttp::start_argocd(move |request: &Request, _| {
        if request.headers.get("authorization") != Some(&format!("Bearer {TOKEN}")) {
            let body = json!({"error": "no session information", "code": 16, "message": "no session information"});
            return (401, vec![], body.to_string());
        }
        match (request.method.as_str(), ArgoRequest::of(&request.target)) {
            ("POST", Some(ArgoRequest::Sync)) => sync.next(),
            ("GET", Some(ArgoRequest::List)) => list.next(),
            ("GET", Some(ArgoRequest::Read)) => app.next(),
            _ => {
                let message = format!("the fake serves no {} {}", request.method, request.target);
                (
                    404,
                    vec![],
                    json!({"error": message, "code": 5, "message": message}).to_string(),
                )
            }
        }
    })
}

/// The requests of Argo CD's API that xtask makes.
enum ArgoRequest {
    /// `/api/v1/applications/<name>`, optionally `?refresh=normal`.
    Read,
    /// `/api/v1/applications?selector=<label>`.
    List,
    /// `/api/v1/applications/<name>/sync`.
    Sync,
}

impl ArgoRequest {
    fn of(target: &str) -> Option<Self> {
        if target.starts_with("/api/v1/applications?selector=") {
            return Some(Self::List);
        }
        let rest = target.strip_prefix("/api/v1/applications/")?;
        let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        match name.split_once('/') {
            Some((name, "sync")) if valid_name(name) && query.is_empty() => Some(Self::Sync),
            None if valid_name(name) && matches!(query, "" | "refresh=normal") => Some(Self::Read),
            _ => None,
        }
    }
}

/// A fake Argo CD that only answers application reads.
fn app_only(docs: Vec<Value>) -> FakeHttp {
    argocd(Replay::ok(docs), Replay::ok(vec![]), Replay::ok(vec![]))
}

fn run(server: &FakeHttp, args: &[&str]) -> Output {
    run_in(server, &support::workspace_root(), args)
}

fn run_in(server: &FakeHttp, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut all = vec!["argocd"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--poll-interval", "10ms"]);
    xtask_in(
        dir,
        &all,
        &[
            ("ARGOCD_SERVER", &server.url()),
            ("ARGOCD_AUTH_TOKEN", TOKEN),
        ],
    )
}

/// Every request carried the token, and these were their targets.
fn targets(server: &FakeHttp) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
            format!("{} {}", r.method, r.target)
        })
        .collect()
}

const APP: &str = "/api/v1/applications/service-demo-preprod";

#[test]
fn an_early_healthy_from_before_the_sync_is_not_trusted() {
    let server = app_only(vec![
        stale_healthy(),
        stale_healthy(),
        out_of_sync(),
        out_of_sync(),
        syncing(),
        healthy_before_the_sync_finished(),
        done(),
    ]);
    let out = run(
        &server,
        &["wait", "--app", "service-demo-preprod", "--revision", NEW],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("service-demo-preprod runs 1111111 and is healthy"),
        "{text}"
    );
    // Seven reads: it went on past the stale Healthy (read 1) and past the
    // Healthy computed before the sync finished (read 6).
    let mut expected = vec![format!("GET {APP}?refresh=normal")];
    expected.extend(std::iter::repeat_n(format!("GET {APP}"), 6));
    assert_eq!(targets(&server), expected);
    // One line per state change, not per poll.
    let lines: Vec<&str> = text.lines().skip(1).collect();
    let state = |s: &str| format!("argocd: service-demo-preprod · {s}");
    assert_eq!(
        lines[..4],
        [
            state("sync Synced at 2222222 · health Healthy · operation Succeeded 2222222"),
            state("sync OutOfSync at 1111111 · health Healthy · operation Succeeded 2222222"),
            state("sync OutOfSync at 1111111 · health Progressing · operation Running 1111111"),
            state("sync Synced at 1111111 · health Healthy · operation Succeeded 1111111"),
        ],
        "{text}"
    );
    assert!(lines[4].starts_with("argocd: service-demo-preprod runs 1111111 and is healthy ("));
    assert_eq!(lines.len(), 5, "{text}");
}

#[test]
fn a_transient_degraded_is_tolerated_but_a_lasting_one_fails() {
    let server = app_only(vec![syncing(), degraded(), degraded(), done()]);
    let args = ["wait", "--app", "service-demo-preprod", "--revision", NEW];
    assert_ok(&run(&server, &args));

    let server = app_only(vec![syncing(), degraded()]);
    let message = assert_fails(&run(
        &server,
        &[&args[..], &["--degraded-grace", "200ms"]].concat(),
    ));
    assert!(
        message.contains("unhealthy for longer than 200ms")
            && message
                .contains("Degraded: Deployment \"service-demo\" exceeded its progress deadline"),
        "{message}"
    );
    // It did poll through the grace period before failing, reading the one
    // application, with the token, asking for a refresh once.
    let targets = targets(&server);
    assert!(targets.len() > 10, "{}", targets.len());
    assert_eq!(targets[0], format!("GET {APP}?refresh=normal"));
    assert!(
        targets[1..].iter().all(|t| *t == format!("GET {APP}")),
        "{targets:?}"
    );
}

#[test]
fn a_failed_sync_fails_at_once_with_argo_cds_message() {
    let server = app_only(vec![syncing(), failed(), done()]);
    let message = assert_fails(&run(
        &server,
        &[
            "wait",
            "--app",
            "service-demo-preprod",
            "--revision",
            &NEW[..12],
        ],
    ));
    assert!(
        message.contains("did not sync 1111111: sync failed: "),
        "{message}"
    );
    assert!(message.contains(FAILED_MESSAGE), "{message}");
    assert_eq!(
        targets(&server),
        [format!("GET {APP}?refresh=normal"), format!("GET {APP}")]
    );
}

#[test]
fn the_fake_argo_cd_refuses_a_wrong_token_and_an_unknown_path() {
    // The fake's own rules, so a test using it cannot pass on a wrong request.
    let server = app_only(vec![done()]);
    let wrong_token = xtask(
        &[
            "argocd",
            "wait",
            "--app",
            "service-demo-preprod",
            "--revision",
            NEW,
        ],
        &[
            ("ARGOCD_SERVER", &server.url()),
            ("ARGOCD_AUTH_TOKEN", "not-the-token"),
        ],
    );
    let message = assert_fails(&wrong_token);
    assert!(message.contains("401"), "{message}");
    for target in [
        "/api/v1/application/service-demo-preprod",
        "/api/v1/applications/service-demo-preprod/resource-tree",
        "/api/v1/applications/service-demo-preprod?refresh=hard",
    ] {
        assert!(ArgoRequest::of(target).is_none(), "{target}");
    }
    assert!(matches!(ArgoRequest::of(APP), Some(ArgoRequest::Read)));
    assert!(matches!(
        ArgoRequest::of(&format!("{APP}/sync")),
        Some(ArgoRequest::Sync)
    ));
}

#[test]
fn applications_that_appear_late_are_waited_for_and_previews_are_found_by_label() {
    // By name: Argo CD answers 404 (or 403) until the app exists.
    let not_found = json!({"error": "applications.argoproj.io \"service-demo-preprod\" not found", "code": 5, "message": "applications.argoproj.io \"service-demo-preprod\" not found"});
    let denied = json!({"error": "permission denied", "code": 7, "message": "permission denied"});
    let server = argocd(
        Replay::new(vec![(404, not_found), (403, denied), (200, done())]),
        Replay::ok(vec![]),
        Replay::ok(vec![]),
    );
    let out = run(
        &server,
        &["wait", "--app", "service-demo-preprod", "--revision", NEW],
    );
    assert_ok(&out);
    assert!(
        stdout(&out).contains("application service-demo-preprod not found"),
        "{}",
        stdout(&out)
    );
    assert_eq!(server.requests().len(), 3);
    // The refresh is asked for on the first read that reaches the app.
    assert_eq!(targets(&server)[2], format!("GET {APP}?refresh=normal"));

    // A preview: the ApplicationSet's generator has not run yet, then has.
    let preview = with(done(), |_| {});
    let mut preview = preview;
    preview["metadata"]["name"] = json!("service-demo-pr-7");
    let server = argocd(
        Replay::ok(vec![preview.clone()]),
        Replay::ok(vec![
            json!({"metadata": {}, "items": null}),
            json!({"metadata": {}, "items": []}),
            json!({"metadata": {}, "items": [preview]}),
        ]),
        Replay::ok(vec![]),
    );
    let out = run(&server, &["wait", "--pr", "7", "--revision", NEW]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("no application labelled service-demo/pull-request=7"),
        "{}",
        stdout(&out)
    );
    let list = "GET /api/v1/applications?selector=service-demo/pull-request%3D7".to_owned();
    assert_eq!(
        targets(&server),
        [
            list.clone(),
            list.clone(),
            list,
            "GET /api/v1/applications/service-demo-pr-7?refresh=normal".into()
        ]
    );
}

/// Several services previewed for one pull request: `--pr` alone is
/// ambiguous and says so; `--service` selects by the service label too.
#[test]
fn a_preview_of_one_of_several_services_is_chosen_with_service() {
    let preview = |name: &str| {
        let mut app = with(done(), |_| {});
        app["metadata"]["name"] = json!(name);
        app
    };
    let both = json!({"metadata": {}, "items": [preview("service-demo-pr-7"), preview("orders-api-pr-7")]});
    let server = argocd(
        Replay::ok(vec![]),
        Replay::ok(vec![both]),
        Replay::ok(vec![]),
    );
    let message = assert_fails(&run(&server, &["wait", "--pr", "7", "--revision", NEW]));
    assert!(
        message.contains("2 applications carry service-demo/pull-request=7: the ApplicationSet makes one per pull request and service; name the service with --service NAME"),
        "{message}"
    );

    let one = json!({"metadata": {}, "items": [preview("orders-api-pr-7")]});
    let server = argocd(
        Replay::ok(vec![preview("orders-api-pr-7")]),
        Replay::ok(vec![one]),
        Replay::ok(vec![]),
    );
    let out = run(
        &server,
        &[
            "wait",
            "--pr",
            "7",
            "--service",
            "orders-api",
            "--revision",
            NEW,
        ],
    );
    assert_ok(&out);
    assert_eq!(
        targets(&server),
        [
            "GET /api/v1/applications?selector=service-demo/pull-request%3D7%2Cservice-demo/service%3Dorders-api",
            "GET /api/v1/applications/orders-api-pr-7?refresh=normal"
        ]
    );
}

#[test]
fn a_wrong_revision_times_out_saying_where_it_was() {
    let server = app_only(vec![stale_healthy()]);
    let message = assert_fails(&run(
        &server,
        &[
            "wait",
            "--app",
            "service-demo-preprod",
            "--revision",
            NEW,
            "--timeout",
            "300ms",
        ],
    ));
    assert!(
        message.contains("timed out after 300ms waiting for service-demo-preprod to run 1111111; last seen: service-demo-preprod · sync Synced at 2222222 · health Healthy · operation Succeeded 2222222"),
        "{message}"
    );
}

#[test]
fn an_expired_token_fails_at_once_and_bad_input_is_named() {
    let expired = json!({"error": "invalid session: token has invalid claims: token is expired", "code": 16, "message": "invalid session: token has invalid claims: token is expired"});
    let server = argocd(
        Replay::new(vec![(401, expired)]),
        Replay::ok(vec![]),
        Replay::ok(vec![]),
    );
    let out = run(
        &server,
        &["wait", "--app", "service-demo-preprod", "--revision", NEW],
    );
    let message = assert_fails(&out);
    assert!(
        message.contains("401 Unauthorized")
            && message.contains("ARGOCD_AUTH_TOKEN is invalid or expired"),
        "{message}"
    );
    assert!(!message.contains(TOKEN) && !stdout(&out).contains(TOKEN));
    assert_eq!(server.requests().len(), 1);

    let message = assert_fails(&run(&server, &["wait", "--app", "x", "--revision", "main"]));
    assert!(
        message.contains("--revision \"main\" is not a commit sha"),
        "{message}"
    );
    let message = assert_fails(&run(&server, &["wait", "--revision", NEW]));
    assert!(message.contains("--app"), "{message}");
    assert_eq!(server.requests().len(), 1, "bad input sends nothing");
}

#[test]
fn sync_posts_the_gitops_tip_then_waits_for_it() {
    // Without --revision, the revision is the tip of the GitOps branch.
    let dir = TempDir::new("argocd-sync");
    let (_remote, work) = support::remote_and_clone(dir.path());
    std::fs::write(work.join("README"), "gitops").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "first"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let tip = git(&work, &["rev-parse", "HEAD"]);
    let as_tip =
        |doc: Value| serde_json::from_str::<Value>(&doc.to_string().replace(NEW, &tip)).unwrap();

    let in_progress = json!({"error": "another operation is already in progress", "code": 9, "message": "another operation is already in progress"});
    for sync_answer in [(200, stale_healthy()), (400, in_progress)] {
        let server = argocd(
            Replay::ok(vec![as_tip(syncing()), as_tip(done())]),
            Replay::ok(vec![]),
            Replay::new(vec![sync_answer]),
        );
        let out = run_in(
            &server,
            &work,
            &["sync", "--app", "service-demo-prod", "--no-refresh"],
        );
        assert_ok(&out);
        assert!(
            stdout(&out).contains(&format!("runs {} and is healthy", &tip[..7])),
            "{}",
            stdout(&out)
        );
        let requests = server.requests();
        assert_eq!(
            targets(&server),
            [
                "POST /api/v1/applications/service-demo-prod/sync",
                "GET /api/v1/applications/service-demo-prod",
                "GET /api/v1/applications/service-demo-prod"
            ]
        );
        let body: Value = serde_json::from_str(&requests[0].body).unwrap();
        assert_eq!(body, json!({"revision": tip, "prune": true}));
        assert_eq!(requests[0].headers["content-type"], "application/json");
    }
}

/// release.yml's one job syncs every released Application (release's `apps` output,
/// comma-separated) in order, each to the same release commit, each waited for.
#[test]
fn sync_of_several_apps_syncs_each_in_turn_to_the_same_revision() {
    let revision = NEW;
    let server = argocd(
        Replay::ok(vec![done()]),
        Replay::ok(vec![]),
        Replay::ok(vec![stale_healthy()]),
    );
    let out = run(
        &server,
        &[
            "sync",
            "--app",
            "service-demo-prod,service-demo-dev",
            "--revision",
            revision,
            "--no-refresh",
        ],
    );
    assert_ok(&out);
    assert_eq!(
        targets(&server),
        [
            "POST /api/v1/applications/service-demo-prod/sync",
            "GET /api/v1/applications/service-demo-prod",
            "POST /api/v1/applications/service-demo-dev/sync",
            "GET /api/v1/applications/service-demo-dev",
        ]
    );
    for request in server.requests().iter().filter(|r| r.method == "POST") {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, json!({"revision": revision, "prune": true}));
    }
}

/// The workflows run `argocd wait` and `preprod-test` without an `if:` on
/// their variables: a fork that has not set them gets a failure naming each,
/// not a skipped gate (issue 15, fault 5).
#[test]
fn unset_repository_variables_are_named_not_skipped() {
    let empty_server = [("ARGOCD_SERVER", ""), ("ARGOCD_AUTH_TOKEN", TOKEN)];
    let wait = [
        "argocd",
        "wait",
        "--app",
        "service-demo-preprod",
        "--revision",
        NEW,
    ];
    let message = assert_fails(&xtask(&wait, &empty_server));
    assert!(message.contains("ARGOCD_SERVER is not set"), "{message}");
    let (head, digest) = (support::head(), format!("sha256:{}", "a".repeat(64)));
    // cd.yml derives preprod's URL through the ingress controller (INGRESS_URL).
    let test = [
        "preprod-test",
        "--env",
        "preprod",
        "--sha",
        &head,
        "--digest",
        &digest,
    ];
    let message = assert_fails(&xtask(&test, &[("INGRESS_URL", "")]));
    assert!(
        message.contains("preprod's URL") && message.contains("set --ingress-url or INGRESS_URL"),
        "{message}"
    );
    let test = [
        "preprod-test",
        "--url",
        "",
        "--sha",
        &head,
        "--digest",
        &digest,
    ];
    let message = assert_fails(&xtask(&test, &[]));
    assert!(
        message.contains("--url is empty") && message.contains("INGRESS_URL"),
        "{message}"
    );
}
