//! `cargo xtask doctor` against a fake GitHub and a fake Argo CD over real
//! TCP: each fake answers only the exact requests doctor must make (401
//! without the token, 404 otherwise). One test for a ready fork, one per
//! missing or unsafe thing (an unprotected main, the github-actions app as a
//! bypass actor, an environment any branch may use, prod without reviewers,
//! a runner that is not ephemeral); the tokens never appear in the output.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::contract::github_answer;
use support::{FakeHttp, assert_fails, assert_ok, stdout, xtask};

const GITHUB_TOKEN: &str = "ghp_doctor-fake-github-token";
const ARGOCD_TOKEN: &str = "argocd-doctor-fake-token";
const REPO: &str = "acme/service-demo";

/// What the fork has configured, as GitHub would list it.
#[derive(Clone)]
struct Fork {
    variables: Vec<&'static str>,
    preview_secrets: Vec<&'static str>,
    preprod_secrets: Vec<&'static str>,
    prod_secrets: Vec<&'static str>,
    image_signing_secrets: Vec<&'static str>,
    prod_variables: Vec<&'static str>,
    /// Each environment as `GET /repos/{r}/environments/{name}` answers; absent: 404.
    environments: BTreeMap<&'static str, Value>,
    /// Every environment's deployment branch policies.
    branch_policies: Value,
    runner: (&'static str, Vec<&'static str>),
    /// The runner's `ephemeral` field; None: GitHub leaves it out.
    ephemeral: Option<bool>,
    /// The fork pull request approval policy; None: 404.
    fork_approval: Option<&'static str>,
    visibility: &'static str,
    deploy_keys: Value,
    classic_protection: Option<Value>,
    /// The branch ruleset (id 42); None: no such ruleset.
    ruleset: Option<Value>,
    /// The release tags' ruleset (id 43); None: no such ruleset.
    tag_ruleset: Option<Value>,
    /// The image-signing environment's IMAGE_PUBLIC_KEY.
    image_public_key: String,
}

const ENVIRONMENTS: [&str; 4] = ["preview", "preprod", "prod", "image-signing"];

/// An environment limited to main by a custom branch policy, with reviewers or not.
fn environment(reviewers: bool) -> Value {
    let mut rules = vec![json!({"id": 1, "type": "branch_policy"})];
    if reviewers {
        rules.push(json!({"id": 2, "type": "required_reviewers", "reviewers": [{"type": "User", "reviewer": {"login": "acme"}}]}));
    }
    json!({
        "name": "env",
        "deployment_branch_policy": {"protected_branches": false, "custom_branch_policies": true},
        "protection_rules": rules
    })
}

impl Fork {
    fn ready() -> Self {
        let deploy_key = "GITOPS_DEPLOY_KEY";
        Self {
            variables: vec!["ARGOCD_SERVER", "INGRESS_URL", "PIPELINE_READY"],
            preview_secrets: vec!["ARGOCD_PREVIEW_TOKEN", deploy_key],
            preprod_secrets: vec!["ARGOCD_PREPROD_TOKEN", "GATE_SIGNING_KEY", deploy_key],
            prod_secrets: vec!["ARGOCD_AUTH_TOKEN", deploy_key],
            image_signing_secrets: vec!["IMAGE_SIGNING_KEY"],
            prod_variables: vec!["GATE_PUBLIC_KEY"],
            environments: BTreeMap::from([
                ("preview", environment(false)),
                ("preprod", environment(false)),
                ("prod", environment(true)),
                ("image-signing", environment(false)),
            ]),
            branch_policies: json!([{"id": 7, "name": "main", "type": "branch"}]),
            runner: ("online", vec!["self-hosted", "Linux", "X64", "kind"]),
            ephemeral: Some(true),
            fork_approval: Some("all_external_contributors"),
            visibility: "public",
            deploy_keys: json!([{"id": 3, "title": "gitops", "read_only": false}]),
            classic_protection: None,
            ruleset: Some(json!({
                "id": 42, "name": "main", "target": "branch", "enforcement": "active",
                "conditions": {"ref_name": {"include": ["~DEFAULT_BRANCH"], "exclude": []}},
                "rules": [{"type": "deletion"}, {"type": "non_fast_forward"}, {"type": "pull_request", "parameters": {}},
                    {"type": "required_status_checks", "parameters": {"strict_required_status_checks_policy": false,
                        "required_status_checks": [{"context": "Lint, SCA and tests"}]}}],
                "bypass_actors": [{"actor_id": null, "actor_type": "DeployKey", "bypass_mode": "always"}]
            })),
            image_public_key: std::fs::read_to_string(
                support::workspace_root().join("gitops/policy/cosign.pub"),
            )
            .unwrap(),
            tag_ruleset: Some(json!({
                "id": 43, "name": "release tags", "target": "tag", "enforcement": "active",
                "conditions": {"ref_name": {"include": ["refs/tags/v*"], "exclude": []}},
                "rules": [{"type": "creation"}, {"type": "update"}, {"type": "deletion"}],
                "bypass_actors": [{"actor_id": null, "actor_type": "DeployKey", "bypass_mode": "always"}]
            })),
        }
    }

    fn rulesets(&self) -> Vec<&Value> {
        self.ruleset.iter().chain(&self.tag_ruleset).collect()
    }

    /// Every request doctor must make of GitHub for this fork, in order.
    fn requests(&self) -> Vec<String> {
        let prefix = "GET /repos/acme/service-demo";
        let mut asked = vec![
            format!("{prefix}/actions/variables?per_page=100"),
            format!("{prefix}/actions/permissions"),
        ];
        for name in ENVIRONMENTS {
            asked.push(format!("{prefix}/environments/{name}"));
            let custom = self
                .environments
                .get(name)
                .is_some_and(|e| e["deployment_branch_policy"]["custom_branch_policies"] == true);
            if custom {
                asked.push(format!(
                    "{prefix}/environments/{name}/deployment-branch-policies?per_page=100"
                ));
            }
        }
        for name in ENVIRONMENTS {
            asked.push(format!("{prefix}/environments/{name}/secrets?per_page=100"));
        }
        asked.extend([
            format!("{prefix}/environments/prod/variables?per_page=100"),
            format!("{prefix}/environments/image-signing/variables/IMAGE_PUBLIC_KEY"),
            format!("{prefix}/actions/runners?per_page=100"),
            format!("{prefix}/actions/permissions/fork-pr-contributor-approval"),
            prefix.to_owned(),
            "GET /users/acme/packages/container/service-demo".to_owned(),
            format!("{prefix}/keys?per_page=100"),
            format!("{prefix}/branches/main/protection"),
            format!("{prefix}/rulesets?per_page=100"),
        ]);
        for ruleset in self.rulesets() {
            if ruleset["enforcement"] == "active" {
                asked.push(format!("{prefix}/rulesets/{}", ruleset["id"]));
            }
        }
        asked.push(format!("{prefix}/labels/preview"));
        asked
    }
}

/// `{key: [{name, value}…]}` as GitHub lists variables and secrets.
fn listing(key: &str, names: &[&str]) -> String {
    // GitHub never answers a secret's value (its description has none); a variable's it does.
    let item = |name: &str| match key {
        "secrets" => json!({"name": name}),
        _ => json!({"name": name, "value": "a value doctor never prints"}),
    };
    let items: Vec<Value> = names.iter().map(|n| item(n)).collect();
    json!({"total_count": items.len(), key: items}).to_string()
}

/// The fake's answer to `target` (below `/repos/acme/service-demo` when `path` is Some).
fn answer(fork: &Fork, path: Option<&str>, target: &str) -> Option<String> {
    let listed = |key: &str, names: &[&str]| Some(listing(key, names));
    let environment = |name: &str| fork.environments.get(name).map(Value::to_string);
    let Some(path) = path else {
        return match target {
            "/users/acme/packages/container/service-demo" => {
                Some(json!({"visibility": fork.visibility}).to_string())
            }
            _ => None,
        };
    };
    match path {
        "" => Some(json!({"owner": {"type": "User"}}).to_string()),
        "/actions/permissions" => {
            Some(json!({"enabled": true, "allowed_actions": "all"}).to_string())
        }
        "/environments/image-signing/variables/IMAGE_PUBLIC_KEY" => {
            Some(json!({"name": "IMAGE_PUBLIC_KEY", "value": fork.image_public_key}).to_string())
        }
        "/labels/preview" => Some(json!({"id": 1, "name": "preview"}).to_string()),
        "/actions/variables?per_page=100" => {
            let mut listed: Value =
                serde_json::from_str(&listing("variables", &fork.variables)).unwrap();
            for variable in listed["variables"].as_array_mut().unwrap() {
                if variable["name"] == "CLUSTER_RUNNER" {
                    variable["value"] = json!(r#"["self-hosted", "laptop"]"#);
                }
            }
            Some(listed.to_string())
        }
        "/environments/preview" => environment("preview"),
        "/environments/preprod" => environment("preprod"),
        "/environments/prod" => environment("prod"),
        "/environments/image-signing" => environment("image-signing"),
        p if p.ends_with("/deployment-branch-policies?per_page=100") => {
            Some(json!({"total_count": 1, "branch_policies": fork.branch_policies}).to_string())
        }
        "/environments/preview/secrets?per_page=100"
            if fork.environments.contains_key("preview") =>
        {
            listed("secrets", &fork.preview_secrets)
        }
        "/environments/preprod/secrets?per_page=100" => listed("secrets", &fork.preprod_secrets),
        "/environments/prod/secrets?per_page=100" => listed("secrets", &fork.prod_secrets),
        "/environments/image-signing/secrets?per_page=100" => {
            listed("secrets", &fork.image_signing_secrets)
        }
        "/environments/prod/variables?per_page=100" => listed("variables", &fork.prod_variables),
        "/actions/runners?per_page=100" => {
            let labels: Vec<Value> = fork.runner.1.iter().map(|l| json!({"name": l})).collect();
            let mut runner = json!({"name": "laptop", "status": fork.runner.0, "labels": labels});
            if let Some(ephemeral) = fork.ephemeral {
                runner["ephemeral"] = json!(ephemeral);
            }
            Some(json!({"total_count": 1, "runners": [runner]}).to_string())
        }
        "/actions/permissions/fork-pr-contributor-approval" => fork
            .fork_approval
            .map(|p| json!({"approval_policy": p}).to_string()),
        "/keys?per_page=100" => Some(fork.deploy_keys.to_string()),
        "/branches/main/protection" => fork.classic_protection.as_ref().map(Value::to_string),
        "/rulesets?per_page=100" => {
            let summaries: Vec<Value> = fork.rulesets().into_iter().map(|r| {
                json!({"id": r["id"], "name": r["name"], "target": r["target"], "enforcement": r["enforcement"]})
            }).collect();
            Some(Value::from(summaries).to_string())
        }
        "/rulesets/42" => fork.ruleset.as_ref().map(Value::to_string),
        "/rulesets/43" => fork.tag_ruleset.as_ref().map(Value::to_string),
        _ => None,
    }
}

/// The fake GitHub, checked against GitHub's OpenAPI description; each
/// answer is completed to what the description requires around what the
/// test sets.
fn github(fork: Fork) -> FakeHttp {
    FakeHttp::start_github(move |request, _| {
        if request.headers.get("authorization") != Some(&format!("Bearer {GITHUB_TOKEN}")) {
            return (401, vec![], r#"{"message": "Bad credentials"}"#.into());
        }
        let path = request.target.strip_prefix("/repos/acme/service-demo");
        match answer(&fork, path, &request.target) {
            Some(body) if request.method == "GET" => {
                let body = serde_json::from_str(&body).unwrap();
                (
                    200,
                    vec![],
                    github_answer("GET", &request.target, 200, body),
                )
            }
            _ => (404, vec![], r#"{"message": "Not Found"}"#.into()),
        }
    })
}

/// A fake Argo CD that lists two Applications of project service-demo,
/// checked against Argo CD's own REST description.
fn argocd() -> FakeHttp {
    FakeHttp::start_argocd(|request, _| {
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
    // A home of its own: no runner dispatcher of this machine's is seen.
    let home = support::TempDir::new("doctor-home");
    doctor_at_home(fork, argocd_token, home.path())
}

fn doctor_at_home(
    fork: Fork,
    argocd_token: &str,
    home: &std::path::Path,
) -> (std::process::Output, String) {
    doctor_with(fork, argocd_token, home, &[])
}

fn doctor_with(
    fork: Fork,
    argocd_token: &str,
    home: &std::path::Path,
    more_env: &[(&str, &str)],
) -> (std::process::Output, String) {
    let expected = fork.requests();
    let (github, argocd) = (github(fork), argocd());
    let mut env = vec![
        ("GITHUB_TOKEN", GITHUB_TOKEN),
        ("GITHUB_REPOSITORY", REPO),
        ("ARGOCD_AUTH_TOKEN", argocd_token),
        ("HOME", home.to_str().unwrap()),
    ];
    env.extend(more_env);
    let (github_url, argocd_url) = (github.url(), argocd.url());
    env.push(("GITHUB_API_URL", &github_url));
    env.push(("ARGOCD_SERVER", &argocd_url));
    let output = xtask(&["doctor"], &env);
    let asked: Vec<String> = github
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(asked, expected);
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
    missing_n(fork, argocd_token, 1, expected);
}

/// doctor fails naming exactly `n` missing things, with each of `expected`.
#[track_caller]
fn missing_n(fork: Fork, argocd_token: &str, n: usize, expected: &[&str]) {
    let (output, text) = doctor(fork, argocd_token);
    let message = assert_fails(&output);
    assert!(
        message.contains(&format!("{n} thing(s) missing")),
        "{message}"
    );
    assert_eq!(text.matches('✘').count(), n, "{text}");
    for needle in expected {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// Just-in-time runners are registered only while a job runs: with none registered, the
/// dispatcher `cluster up` started on this machine is the runner (its pid file names a live
/// process); without it, the runner is missing.
#[test]
fn between_jobs_the_running_dispatcher_is_the_runner() {
    let mut fork = Fork::ready();
    fork.runner.1 = vec!["self-hosted", "Linux"];
    let home = support::TempDir::new("doctor-dispatcher");
    let cache = home.path().join(".cache/service-demo");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("cluster-runner.pid"),
        std::process::id().to_string(),
    )
    .unwrap();
    // The runner firewall's rules as `iptables -S` lists them (the stand-in's file), kind's node at 172.18.0.2.
    let tools = support::TempDir::new("doctor-firewall");
    let rules = tools.path().join("rules");
    for (name, body) in [
        ("docker", "echo 172.18.0.2"),
        (
            "iptables",
            "case \"$1\" in -S) [ -s \"$RULES\" ] && cat \"$RULES\" ;; -C) [ -s \"$RULES\" ] ;; *) exit 1 ;; esac",
        ),
    ] {
        let path = tools.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&path)
            .status()
            .unwrap();
    }
    let chain = "SERVICE-DEMO-RUNNER";
    let mut listed = vec![
        format!("-N {chain}"),
        format!("-A {chain} -o sd-runner0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        format!("-A {chain} -o sd-runner0 -j DROP"),
    ];
    for port in [6443, 80, 443, 30080] {
        listed.push(format!(
            "-A {chain} -d 172.18.0.2/32 -i sd-runner0 -p tcp -m tcp --dport {port} -j ACCEPT"
        ));
    }
    for range in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "0.0.0.0/8",
        "224.0.0.0/4",
    ] {
        listed.push(format!("-A {chain} -d {range} -i sd-runner0 -j DROP"));
    }
    std::fs::write(&rules, listed.join("\n") + "\n").unwrap();
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap()
    );
    let iptables = tools.path().join("iptables");
    let env = [
        ("PATH", path.as_str()),
        ("XTASK_IPTABLES", iptables.to_str().unwrap()),
        ("RULES", rules.to_str().unwrap()),
    ];
    let (output, text) = doctor_with(fork.clone(), ARGOCD_TOKEN, home.path(), &env);
    assert_ok(&output);
    assert!(
        text.contains(
            "✔ cluster runner: no runner is registered between jobs; the dispatcher on this machine"
        ),
        "{text}"
    );
    assert!(
        text.contains("✔ cluster runner's firewall: in place"),
        "{text}"
    );
    // A running dispatcher whose runners are not confined is named, with the command that confines them.
    std::fs::write(&rules, "").unwrap();
    let (output, text) = doctor_with(fork.clone(), ARGOCD_TOKEN, home.path(), &env);
    assert_fails(&output);
    assert!(
        text.contains("✘ cluster runner's firewall: the runners are not confined: no iptables chain SERVICE-DEMO-RUNNER"),
        "{text}"
    );
    assert!(text.contains("cargo xtask cluster up"), "{text}");
    // One rule of the chain missing is named too.
    listed.pop();
    std::fs::write(&rules, listed.join("\n") + "\n").unwrap();
    let (_, text) = doctor_with(fork.clone(), ARGOCD_TOKEN, home.path(), &env);
    assert!(
        text.contains("holds 13 rules that are not the 14 wanted"),
        "{text}"
    );
    // A dispatcher that is gone (a pid no process has) is no runner.
    std::fs::write(cache.join("cluster-runner.pid"), "999999999").unwrap();
    let (output, text) = doctor_at_home(fork, ARGOCD_TOKEN, home.path());
    assert_fails(&output);
    assert!(
        text.contains("✘ cluster runner: no self-hosted runner has the labels"),
        "{text}"
    );
}

#[test]
fn a_ready_fork_passes_every_check() {
    let (output, text) = doctor(Fork::ready(), ARGOCD_TOKEN);
    assert_ok(&output);
    assert!(!text.contains('✘'), "{text}");
    for line in [
        "✔ variable INGRESS_URL: set",
        "✔ secret ARGOCD_AUTH_TOKEN (environment prod): set",
        "✔ gate key GATE_PUBLIC_KEY in environment prod: set",
        "✔ cluster runner: laptop is online with [\"self-hosted\", \"kind\"], ephemeral",
        "✔ environment preview: main only",
        "✔ environment prod: main only, with required reviewers",
        "✔ secret GITOPS_DEPLOY_KEY (environment preprod): set",
        "✔ outside contributors' pull requests: approval required for every outside contributor",
        "✔ GitOps deploy key: writable deploy key \"gitops\"",
        "✔ classic protection of main: none",
        "the token sees 2 application(s) of project service-demo",
        "✔ GHCR package of items-api: ghcr.io/acme/service-demo is public",
        "✔ main protected: a ruleset refuses direct pushes; only the deploy key bypasses it",
        "✔ release tags refs/tags/v*: a tag ruleset restricts creating, moving and deleting them; only the deploy key bypasses it",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn a_missing_variable_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.variables.retain(|v| *v != "INGRESS_URL");
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ variable INGRESS_URL: not set",
            "fix: cargo xtask cluster up   (the ingress controller's address",
        ],
    );
}

#[test]
fn a_missing_environment_secret_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.prod_secrets.retain(|s| *s != "ARGOCD_AUTH_TOKEN");
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ secret ARGOCD_AUTH_TOKEN (environment prod): not set",
            "fix: cargo xtask cluster up   (the Argo CD token of project role `release`)",
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
            "fix: cargo xtask cluster up   (on the machine that runs kind",
        ],
    );
    let mut fork = Fork::ready();
    fork.runner.1 = vec!["self-hosted", "Linux"];
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ cluster runner: no self-hosted runner has the labels [\"self-hosted\", \"kind\"]",
            "one just-in-time runner per queued job of main",
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
            "✘ GHCR package of items-api: ghcr.io/acme/service-demo is \"private\": the cluster cannot pull it",
            "Change visibility",
        ],
    );
}

#[test]
fn an_unprotected_main_is_refused_with_the_ruleset_that_fixes_it() {
    let mut fork = Fork::ready();
    fork.ruleset = None;
    // No ruleset protecting main requires CI's check either: two ✘.
    missing_n(
        fork.clone(),
        ARGOCD_TOKEN,
        2,
        &[
            "✘ main protected: main is not protected: every workflow's GITHUB_TOKEN (and every writer) can push to it",
            "fix: cargo xtask setup   (--profile solo: a pull request and CI required",
            "✘ required status check on main: no ruleset requires \"Lint, SCA and tests\"",
        ],
    );
    // A ruleset that restricts nothing, or is only evaluated, or covers another branch, protects nothing.
    let mut ruleset = Fork::ready().ruleset.unwrap();
    ruleset["rules"] = json!([{"type": "deletion"}]);
    fork.ruleset = Some(ruleset);
    // No ruleset protecting main requires CI's check either: two ✘.
    missing_n(
        fork.clone(),
        ARGOCD_TOKEN,
        2,
        &["✘ main protected: main is not protected"],
    );
    let mut ruleset = Fork::ready().ruleset.unwrap();
    ruleset["enforcement"] = json!("evaluate");
    fork.ruleset = Some(ruleset);
    // No ruleset protecting main requires CI's check either: two ✘.
    missing_n(
        fork.clone(),
        ARGOCD_TOKEN,
        2,
        &["✘ main protected: main is not protected"],
    );
    let mut ruleset = Fork::ready().ruleset.unwrap();
    ruleset["conditions"]["ref_name"]["include"] = json!(["refs/heads/release"]);
    fork.ruleset = Some(ruleset);
    missing_n(
        fork,
        ARGOCD_TOKEN,
        2,
        &["✘ main protected: main is not protected"],
    );
}

#[test]
fn a_ruleset_without_the_ci_check_is_refused() {
    let mut fork = Fork::ready();
    let mut ruleset = fork.ruleset.take().unwrap();
    ruleset["rules"].as_array_mut().unwrap().pop();
    fork.ruleset = Some(ruleset);
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ required status check on main: no ruleset requires \"Lint, SCA and tests\" (ci.yml's checks): a pull request with failing CI can be merged",
            "fix: cargo xtask setup",
        ],
    );
}

#[test]
fn the_github_actions_app_as_a_bypass_actor_is_refused() {
    let mut fork = Fork::ready();
    let ruleset = fork.ruleset.as_mut().unwrap();
    ruleset["bypass_actors"]
        .as_array_mut()
        .unwrap()
        .push(json!({"actor_id": 15368, "actor_type": "Integration", "bypass_mode": "always"}));
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ main protected: the github-actions app may bypass main's ruleset: any branch's workflow with `contents: write` can push to main",
            "only the deploy key bypasses",
        ],
    );
}

#[test]
fn a_ruleset_the_deploy_key_cannot_bypass_and_classic_protection_are_named() {
    let mut fork = Fork::ready();
    fork.ruleset.as_mut().unwrap()["bypass_actors"] = json!([]);
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ main protected: main's ruleset refuses the deploy key's GitOps commits",
            "Deploy keys",
        ],
    );
    let mut fork = Fork::ready();
    // Without push restrictions GitHub leaves `restrictions` out (its description has no null there).
    fork.classic_protection = Some(json!({
        "required_pull_request_reviews": {"bypass_pull_request_allowances": {"apps": [{"slug": "github-actions"}]}},
    }));
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ classic protection of main: main has classic branch protection, which no deploy key can bypass",
            "gh api -X DELETE repos/acme/service-demo/branches/main/protection",
        ],
    );
}

#[test]
fn no_writable_deploy_key_is_named_with_its_fix() {
    let mut fork = Fork::ready();
    fork.deploy_keys = json!([{"id": 3, "title": "read only", "read_only": true}]);
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ GitOps deploy key: no writable deploy key",
            "fix: cargo xtask setup   (it makes the key, registers it writable",
        ],
    );
}

const CREATE_PROD: &str = "cargo xtask setup   (it makes prod deployable from main only, the token's user its required reviewer)";

#[test]
fn an_environment_any_branch_may_use_is_refused_with_the_rule_that_fixes_it() {
    let mut fork = Fork::ready();
    fork.environments.get_mut("prod").unwrap()["deployment_branch_policy"] = Value::Null;
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ environment prod: no deployment branch rule: any branch's workflow can read its secrets",
            &format!("fix: {CREATE_PROD}"),
        ],
    );
    let mut fork = Fork::ready();
    fork.environments.get_mut("preprod").unwrap()["deployment_branch_policy"] =
        json!({"protected_branches": true, "custom_branch_policies": false});
    missing(
        fork,
        ARGOCD_TOKEN,
        &["✘ environment preprod: deploys from every protected branch, not main only"],
    );
    // The branch policies are the same for all four environments here: four ✘.
    let mut fork = Fork::ready();
    fork.branch_policies =
        json!([{"name": "main", "type": "branch"}, {"name": "*", "type": "branch"}]);
    let (output, text) = doctor(fork, ARGOCD_TOKEN);
    assert!(
        assert_fails(&output).contains("4 thing(s) missing"),
        "{text}"
    );
    assert!(
        text.contains(
            "✘ environment prod: deploys from [\"branch:main\", \"branch:*\"], not main only"
        ),
        "{text}"
    );
}

#[test]
fn prod_without_required_reviewers_is_refused() {
    let mut fork = Fork::ready();
    fork.environments.insert("prod", environment(false));
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ environment prod: no required reviewers",
            &format!("fix: {CREATE_PROD}"),
        ],
    );
}

/// A missing environment: its secrets' fixes create it with its rule first, never a bare `gh secret set --env`.
#[test]
fn a_missing_environment_is_created_with_its_rule_before_its_secrets() {
    let mut fork = Fork::ready();
    fork.environments.remove("preview");
    let (output, text) = doctor(fork, ARGOCD_TOKEN);
    assert!(
        assert_fails(&output).contains("3 thing(s) missing"),
        "{text}"
    );
    let create = "cargo xtask setup   (it makes preview deployable from main only)";
    for line in [
        format!("✘ environment preview: does not exist\n    fix: {create}\n"),
        "✘ secret ARGOCD_PREVIEW_TOKEN (environment preview): not set\n    fix: cargo xtask cluster up".to_owned(),
        "✘ secret GITOPS_DEPLOY_KEY (environment preview): not set\n    fix: cargo xtask setup".to_owned(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn a_runner_that_is_not_ephemeral_is_refused_and_an_unknown_one_warned_about() {
    let mut fork = Fork::ready();
    fork.ephemeral = Some(false);
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ cluster runner: laptop is online with [\"self-hosted\", \"kind\"] but not ephemeral",
            "`cargo xtask cluster runner` runs it in the foreground",
            "in a fresh container removed after the job",
        ],
    );
    let mut fork = Fork::ready();
    fork.ephemeral = None;
    let (output, text) = doctor(fork, ARGOCD_TOKEN);
    assert_ok(&output);
    assert!(
        text.contains("⚠ GitHub does not say whether it is ephemeral"),
        "{text}"
    );
}

#[test]
fn outside_contributors_running_workflows_without_approval_is_refused() {
    let mut fork = Fork::ready();
    fork.fork_approval = Some("first_time_contributors");
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ outside contributors' pull requests: approval policy \"first_time_contributors\"",
            "fix: cargo xtask setup   (or https://github.com/acme/service-demo/settings/actions",
        ],
    );
    let mut fork = Fork::ready();
    fork.fork_approval = None;
    let (output, text) = doctor(fork, ARGOCD_TOKEN);
    assert_ok(&output);
    assert!(
        text.contains("⚠ if this fork is public: cargo xtask setup"),
        "{text}"
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
            "fix: cargo xtask setup   (it makes the gate key pair",
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

#[test]
fn release_tags_that_a_workflow_could_move_are_refused() {
    let mut fork = Fork::ready();
    fork.tag_ruleset = None;
    missing(
        fork.clone(),
        ARGOCD_TOKEN,
        &[
            "✘ release tags refs/tags/v*: no tag ruleset restricts creating, moving and deleting refs/tags/v*",
            "fix: cargo xtask setup   (a tag ruleset on refs/tags/v* that only the deploy key bypasses)",
        ],
    );
    // One that lets tags move, one that covers other tags, a branch ruleset
    // naming the tags, and one only evaluated protect nothing.
    let ready = Fork::ready().tag_ruleset.unwrap();
    let mut edits: Vec<Value> = Vec::new();
    let mut moving = ready.clone();
    moving["rules"] = json!([{"type": "creation"}, {"type": "deletion"}]);
    edits.push(moving);
    let mut other = ready.clone();
    other["conditions"]["ref_name"]["include"] = json!(["refs/tags/release-*"]);
    edits.push(other);
    let mut branch = ready.clone();
    branch["target"] = json!("branch");
    edits.push(branch);
    let mut evaluated = ready.clone();
    evaluated["enforcement"] = json!("evaluate");
    edits.push(evaluated);
    for ruleset in edits {
        fork.tag_ruleset = Some(ruleset);
        missing(
            fork.clone(),
            ARGOCD_TOKEN,
            &["✘ release tags refs/tags/v*: no tag ruleset restricts"],
        );
    }
    let mut bot = ready.clone();
    bot["bypass_actors"] = json!([
        {"actor_id": null, "actor_type": "DeployKey", "bypass_mode": "always"},
        {"actor_id": 15368, "actor_type": "Integration", "bypass_mode": "always"}
    ]);
    fork.tag_ruleset = Some(bot);
    missing(
        fork.clone(),
        ARGOCD_TOKEN,
        &[
            "✘ release tags refs/tags/v*: the github-actions app may bypass the release tags' ruleset",
        ],
    );
    let mut keyless = ready;
    keyless["bypass_actors"] = json!([]);
    fork.tag_ruleset = Some(keyless);
    missing(
        fork,
        ARGOCD_TOKEN,
        &["✘ release tags refs/tags/v*: the release tags' ruleset refuses the deploy key"],
    );
}

/// The key the cluster admits (cosign.pub) is not the one the pipeline signs with: every signed pod is refused.
#[test]
fn an_image_key_that_is_not_the_signing_keys_is_refused() {
    let mut fork = Fork::ready();
    fork.image_public_key =
        "-----BEGIN PUBLIC KEY-----\nanother\n-----END PUBLIC KEY-----\n".into();
    missing(
        fork,
        ARGOCD_TOKEN,
        &[
            "✘ image key: gitops/policy/cosign.pub is not IMAGE_SIGNING_KEY's public half",
            "fix: cargo xtask setup",
        ],
    );
}
