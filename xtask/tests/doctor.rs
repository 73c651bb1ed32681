//! `cargo xtask doctor` against a fake GitHub and a fake Argo CD over real
//! TCP: each fake answers only the exact requests doctor must make (401
//! without the token, 404 otherwise). One test for a ready fork, one per
//! missing thing; the tokens never appear in the output.

mod support;

use serde_json::{Value, json};
use support::{FakeHttp, assert_fails, assert_ok, stdout, xtask};

const GITHUB_TOKEN: &str = "ghp_doctor-fake-github-token";
const ARGOCD_TOKEN: &str = "argocd-doctor-fake-token";
const REPO: &str = "acme/service-demo";

/// What the fork has configured, as GitHub would list it.
#[derive(Clone)]
struct Fork {
    variables: Vec<&'static str>,
    repo_secrets: Vec<&'static str>,
    preprod_secrets: Vec<&'static str>,
    prod_secrets: Vec<&'static str>,
    prod_variables: Vec<&'static str>,
    runner: (&'static str, Vec<&'static str>),
    visibility: &'static str,
    protection: Option<Value>,
}

impl Fork {
    fn ready() -> Self {
        Self {
            variables: vec!["ARGOCD_SERVER", "PREPROD_URL", "PREVIEW_DOMAIN"],
            repo_secrets: vec!["ARGOCD_PREVIEW_TOKEN"],
            preprod_secrets: vec!["ARGOCD_PREPROD_TOKEN", "GATE_SIGNING_KEY"],
            prod_secrets: vec!["ARGOCD_AUTH_TOKEN"],
            prod_variables: vec!["GATE_PUBLIC_KEY"],
            runner: ("online", vec!["self-hosted", "Linux", "X64", "kind"]),
            visibility: "public",
            protection: Some(json!({
                "required_pull_request_reviews": {
                    "bypass_pull_request_allowances": {"apps": [{"slug": "github-actions"}]}
                },
                "restrictions": null
            })),
        }
    }
}

/// `{key: [{name, value}…]}` as GitHub lists variables and secrets.
fn listing(key: &str, names: &[&str]) -> String {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "value": "a value doctor never prints"}))
        .collect();
    json!({"total_count": items.len(), key: items}).to_string()
}

/// Every request doctor makes of GitHub, in order.
const GITHUB_REQUESTS: [&str; 9] = [
    "GET /repos/acme/service-demo/actions/variables?per_page=100",
    "GET /repos/acme/service-demo/actions/secrets?per_page=100",
    "GET /repos/acme/service-demo/environments/preprod/secrets?per_page=100",
    "GET /repos/acme/service-demo/environments/prod/secrets?per_page=100",
    "GET /repos/acme/service-demo/environments/prod/variables?per_page=100",
    "GET /repos/acme/service-demo/actions/runners?per_page=100",
    "GET /repos/acme/service-demo",
    "GET /users/acme/packages/container/service-demo",
    "GET /repos/acme/service-demo/branches/main/protection",
];

fn github(fork: Fork) -> FakeHttp {
    FakeHttp::start(move |request, _| {
        if request.headers.get("authorization") != Some(&format!("Bearer {GITHUB_TOKEN}")) {
            return (401, vec![], r#"{"message": "Bad credentials"}"#.into());
        }
        let prefix = "/repos/acme/service-demo";
        let ok = |body: String| (200, vec![], body);
        let path = request.target.strip_suffix("?per_page=100");
        match (path, request.target.as_str()) {
            (Some(p), _) if p == format!("{prefix}/actions/variables") => {
                let mut listed: Value =
                    serde_json::from_str(&listing("variables", &fork.variables)).unwrap();
                for variable in listed["variables"].as_array_mut().unwrap() {
                    if variable["name"] == "CLUSTER_RUNNER" {
                        variable["value"] = json!(r#"["self-hosted", "laptop"]"#);
                    }
                }
                ok(listed.to_string())
            }
            (Some(p), _) if p == format!("{prefix}/actions/secrets") => {
                ok(listing("secrets", &fork.repo_secrets))
            }
            (Some(p), _) if p == format!("{prefix}/environments/preprod/secrets") => {
                ok(listing("secrets", &fork.preprod_secrets))
            }
            (Some(p), _) if p == format!("{prefix}/environments/prod/secrets") => {
                ok(listing("secrets", &fork.prod_secrets))
            }
            (Some(p), _) if p == format!("{prefix}/environments/prod/variables") => {
                ok(listing("variables", &fork.prod_variables))
            }
            (Some(p), _) if p == format!("{prefix}/actions/runners") => {
                let labels: Vec<Value> = fork.runner.1.iter().map(|l| json!({"name": l})).collect();
                let runner = json!({"name": "laptop", "status": fork.runner.0, "labels": labels});
                ok(json!({"total_count": 1, "runners": [runner]}).to_string())
            }
            (None, t) if t == prefix => ok(json!({"owner": {"type": "User"}}).to_string()),
            (None, "/users/acme/packages/container/service-demo") => {
                ok(json!({"visibility": fork.visibility}).to_string())
            }
            (None, t) if t == format!("{prefix}/branches/main/protection") => {
                match &fork.protection {
                    Some(rules) => ok(rules.to_string()),
                    None => (404, vec![], r#"{"message": "Branch not protected"}"#.into()),
                }
            }
            _ => (404, vec![], r#"{"message": "Not Found"}"#.into()),
        }
    })
}

/// A fake Argo CD that lists two Applications of project service-demo.
fn argocd() -> FakeHttp {
    FakeHttp::start(|request, _| {
        if request.headers.get("authorization") != Some(&format!("Bearer {ARGOCD_TOKEN}")) {
            let message = "no session information";
            return (
                401,
                vec![],
                json!({"error": message, "code": 16, "message": message}).to_string(),
            );
        }
        if request.method == "GET" && request.target == "/api/v1/applications?projects=service-demo"
        {
            let items = json!({"items": [{"metadata": {"name": "service-demo-dev"}}, {"metadata": {"name": "service-demo-prod"}}]});
            return (200, vec![], items.to_string());
        }
        (404, vec![], json!({"message": "not found"}).to_string())
    })
}

/// doctor against the fakes; checks the exact requests; returns the output.
fn doctor(fork: Fork, argocd_token: &str) -> (std::process::Output, String) {
    let (github, argocd) = (github(fork), argocd());
    let output = xtask(
        &["doctor"],
        &[
            ("GITHUB_TOKEN", GITHUB_TOKEN),
            ("GITHUB_REPOSITORY", REPO),
            ("GITHUB_API_URL", &github.url()),
            ("ARGOCD_SERVER", &argocd.url()),
            ("ARGOCD_AUTH_TOKEN", argocd_token),
        ],
    );
    let asked: Vec<String> = github
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(asked, GITHUB_REQUESTS);
    let argocd_asked: Vec<String> = argocd.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(argocd_asked, ["/api/v1/applications?projects=service-demo"]);
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in [GITHUB_TOKEN, ARGOCD_TOKEN, "a value doctor never prints"] {
        assert!(!text.contains(secret), "printed {secret:?}:\n{text}");
    }
    let text = stdout(&output);
    (output, text)
}

/// doctor fails naming exactly one missing thing, with each of `expected`.
#[track_caller]
fn missing(fork: Fork, argocd_token: &str, expected: &[&str]) {
    let (output, text) = doctor(fork, argocd_token);
    let message = assert_fails(&output);
    assert!(message.contains("1 thing(s) missing"), "{message}");
    assert_eq!(text.matches('✘').count(), 1, "{text}");
    for needle in expected {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn a_ready_fork_passes_every_check() {
    let (output, text) = doctor(Fork::ready(), ARGOCD_TOKEN);
    assert_ok(&output);
    assert!(!text.contains('✘'), "{text}");
    for line in [
        "✔ variable PREPROD_URL: set",
        "✔ secret ARGOCD_AUTH_TOKEN (environment prod): set",
        "✔ gate key GATE_PUBLIC_KEY in environment prod: set",
        "✔ cluster runner: laptop is online with [\"self-hosted\", \"kind\"]",
        "the token sees 2 application(s) of project service-demo",
        "✔ GHCR package: ghcr.io/acme/service-demo is public",
        "✔ bot pushes to main: main's protection lets the github-actions bot push",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn a_missing_variable_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.variables.retain(|v| *v != "PREPROD_URL");
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ variable PREPROD_URL: not set",
            "fix: gh variable set PREPROD_URL --repo acme/service-demo",
        ],
    );
}

#[test]
fn a_missing_environment_secret_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.prod_secrets.clear();
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ secret ARGOCD_AUTH_TOKEN (environment prod): not set",
            "fix: gh secret set ARGOCD_AUTH_TOKEN --repo acme/service-demo --env prod",
        ],
    );
}

#[test]
fn an_offline_runner_and_a_runner_without_the_label_are_named() {
    let mut fork = Fork::ready();
    fork.runner.0 = "offline";
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ cluster runner: laptop has the labels [\"self-hosted\", \"kind\"] but is offline",
            "./config.sh --url https://github.com/acme/service-demo --token",
        ],
    );
    let mut fork = Fork::ready();
    fork.runner.1 = vec!["self-hosted", "Linux"];
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ cluster runner: no self-hosted runner has the labels [\"self-hosted\", \"kind\"]",
            "--labels kind",
        ],
    );
}

#[test]
fn argo_cd_refusing_the_token_is_named() {
    missing(
        Fork::ready(),
        "an-expired-token",
        &[
            "✘ Argo CD: Argo CD refused the token (401 Unauthorized)",
            "fix: export ARGOCD_AUTH_TOKEN=",
        ],
    );
}

#[test]
fn a_private_package_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.visibility = "private";
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ GHCR package: ghcr.io/acme/service-demo is \"private\": the cluster cannot pull it",
            "Change visibility",
        ],
    );
}

#[test]
fn branch_protection_that_refuses_the_bot_is_named() {
    let mut fork = Fork::ready();
    fork.protection = Some(
        json!({"required_pull_request_reviews": {"required_approving_review_count": 1}, "restrictions": null}),
    );
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ bot pushes to main: main requires pull request reviews",
            "bypass",
        ],
    );
}

#[test]
fn a_missing_gate_key_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.prod_variables.clear();
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ gate key GATE_PUBLIC_KEY in environment prod: not set",
            "gh variable set GATE_PUBLIC_KEY --repo acme/service-demo --env prod < gate.pub",
        ],
    );
}

/// The runner's labels come from the repository variable CLUSTER_RUNNER when it is set.
#[test]
fn the_cluster_runner_variable_names_the_labels_looked_for() {
    let mut fork = Fork::ready();
    fork.variables.push("CLUSTER_RUNNER");
    missing(
        fork.clone(),
        ARGOCD_TOKEN,
        &["✘ cluster runner: no self-hosted runner has the labels [\"self-hosted\", \"laptop\"]"],
    );
    fork.runner.1 = vec!["self-hosted", "laptop"];
    let (output, text) = doctor(fork, ARGOCD_TOKEN);
    assert_ok(&output);
    assert!(
        text.contains("✔ cluster runner: laptop is online with [\"self-hosted\", \"laptop\"]"),
        "{text}"
    );
}
