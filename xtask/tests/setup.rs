//! `cargo xtask setup` against the stateful fake GitHub (over real TCP) and a
//! real clone whose `origin` is a GitHub URL rewritten (`insteadOf`) to a bare
//! repository: then `doctor` reads back what setup wrote, for both profiles.
//! The fake enforces GitHub's rules (write-only secrets sealed to its key, no
//! self-approval, rulesets that refuse pushes but to their bypass actors,
//! environments that refuse other branches' jobs), so the tests show a
//! learner alone can merge and release, and nobody else can push.

mod support;

use std::path::{Path, PathBuf};

use support::fake_github::{Actor, FakeGitHub};
use support::{
    FakeHttp, TempDir, assert_fails, assert_ok, copy_dir, git, stderr, stdout, workspace_root,
    xtask_in,
};

const TOKEN: &str = "ghp_setup-fake-token-never-printed";
const CI_CHECK: &str = "Lint, SCA and tests";

/// A clone of a fork of this repository: origin `https://github.com/<owner>/service-demo.git`,
/// pushed (through `insteadOf`) to a bare repository in `dir`.
fn clone_of_fork(dir: &Path, owner: &str) -> PathBuf {
    let (remote, work) = support::remote_and_clone(dir);
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    for part in ["charts", "gitops", "terraform", ".github"] {
        copy_dir(&workspace_root().join(part), &work.join(part));
    }
    for file in ["Cargo.toml", "Dockerfile"] {
        std::fs::copy(workspace_root().join(file), work.join(file)).unwrap();
    }
    let url = format!("https://github.com/{owner}/service-demo.git");
    for (key, value) in [
        ("user.name", "dev"),
        ("user.email", "dev@example.com"),
        ("remote.origin.url", url.as_str()),
    ] {
        git(&work, &["config", key, value]);
    }
    let rewrite = format!("url.{}.insteadOf", remote.display());
    git(&work, &["config", &rewrite, &url]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "the fork"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    work
}

fn setup(work: &Path, github: &FakeGitHub, args: &[&str]) -> std::process::Output {
    let mut all = vec!["setup", "--root", work.to_str().unwrap()];
    all.extend(args);
    xtask_in(
        work,
        &all,
        &[("GITHUB_TOKEN", TOKEN), ("GITHUB_API_URL", &github.url())],
    )
}

/// A fake Argo CD that lists two Applications of project service-demo.
fn argocd() -> FakeHttp {
    FakeHttp::start_argocd(|request, _| {
        if request.target == "/api/v1/applications?projects=service-demo" {
            let items = serde_json::json!({"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]});
            let answer = support::contract::argocd_answer("GET", &request.target, 200, items);
            return (200, vec![], answer);
        }
        let message = format!("the fake serves no {}", request.target);
        let error = serde_json::json!({"error": message, "code": 5, "message": message});
        (404, vec![], error.to_string())
    })
}

fn doctor(work: &Path, github: &FakeGitHub, argocd: &FakeHttp) -> std::process::Output {
    xtask_in(
        work,
        &["doctor", "--root", work.to_str().unwrap()],
        &[
            ("GITHUB_TOKEN", TOKEN),
            ("GITHUB_API_URL", &github.url()),
            ("ARGOCD_SERVER", &argocd.url()),
            ("ARGOCD_AUTH_TOKEN", "argocd-token"),
        ],
    )
}

fn read(work: &Path, file: &str) -> String {
    std::fs::read_to_string(work.join(file)).unwrap()
}

/// Every secret setup wrote, opened with the fake's key.
fn secrets(github: &FakeGitHub) -> Vec<String> {
    [
        ("env:preprod", "GATE_SIGNING_KEY"),
        ("env:image-signing", "IMAGE_SIGNING_KEY"),
        ("env:preview", "GITOPS_DEPLOY_KEY"),
        ("env:preprod", "GITOPS_DEPLOY_KEY"),
        ("env:prod", "GITOPS_DEPLOY_KEY"),
    ]
    .iter()
    .map(|(scope, name)| {
        github
            .secret(scope, name)
            .unwrap_or_else(|| panic!("no secret {name} in {scope}"))
    })
    .collect()
}

#[track_caller]
fn assert_no_secret_anywhere(work: &Path, github: &FakeGitHub, output: &str) {
    let secrets = secrets(github);
    let history = git(work, &["log", "--all", "-p"]);
    let mut files = vec![work.to_path_buf()];
    let mut tree = String::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            tree.push_str(&text);
        }
    }
    for secret in &secrets {
        let body = secret.lines().nth(1).unwrap();
        assert!(
            !output.contains(body),
            "the output holds a secret:\n{output}"
        );
        assert!(!history.contains(body), "git history holds a secret");
        assert!(!tree.contains(body), "the work tree holds a secret");
    }
    assert!(!output.contains(TOKEN), "the token was printed");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("xtask-deploy-key-")
        })
        .collect();
    assert!(left.is_empty(), "a deploy key directory was left: {left:?}");
}

fn setup_then_doctor(profile: &str) {
    let dir = TempDir::new(&format!("setup-{profile}"));
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let output = setup(&work, &github, &["--profile", profile]);
    assert_ok(&output);
    let text = format!("{}{}", stdout(&output), stderr(&output));

    // Secrets hold the right keys: the private halves of the public halves setup published.
    let opened = secrets(&github);
    assert!(
        opened[0].starts_with("-----BEGIN PRIVATE KEY-----"),
        "gate key"
    );
    assert!(
        opened[1].starts_with("-----BEGIN PRIVATE KEY-----"),
        "image key"
    );
    assert!(
        opened[2].contains("BEGIN OPENSSH PRIVATE KEY"),
        "deploy key"
    );
    assert!(
        opened[2] == opened[3] && opened[3] == opened[4],
        "one deploy key everywhere"
    );
    let image_public = github
        .variable("env:image-signing", "IMAGE_PUBLIC_KEY")
        .unwrap();
    assert_eq!(
        read(&work, "gitops/policy/cosign.pub").trim(),
        image_public.trim()
    );
    let policy = read(&work, "gitops/policy/image-signatures.yaml");
    for line in image_public.lines() {
        assert!(policy.contains(line), "the policy lacks {line}");
    }
    assert!(
        github
            .variable("env:prod", "GATE_PUBLIC_KEY")
            .unwrap()
            .contains("PUBLIC KEY")
    );
    assert_eq!(
        github.variable("repo", "PIPELINE_READY").as_deref(),
        Some("true")
    );
    assert_no_secret_anywhere(&work, &github, &text);

    // The files were committed with [skip ci] and pushed to main, before the rulesets.
    assert_ne!(git(&work, &["rev-parse", "HEAD"]), head);
    assert_eq!(
        git(&work, &["ls-remote", "origin", "refs/heads/main"])
            .split_whitespace()
            .next(),
        Some(git(&work, &["rev-parse", "HEAD"]).as_str())
    );
    assert!(git(&work, &["log", "-1", "--format=%s"]).contains("[skip ci]"));
    assert!(git(&work, &["status", "--porcelain"]).is_empty());
    let order = github.writes();
    let last_secret = order.iter().rposition(|w| w.contains("/secrets/")).unwrap();
    let first_ruleset = order.iter().position(|w| w.contains("/rulesets")).unwrap();
    assert!(last_secret < first_ruleset, "{order:#?}");
    assert!(
        order.last().unwrap().contains("/actions/variables"),
        "PIPELINE_READY last: {order:#?}"
    );
    assert!(read(&work, ".github/CODEOWNERS").contains("/gitops/argocd/ @acme"));

    // GitHub's rules, as the fake enforces them, against what setup made.
    let deploy_public = github.variable("repo", "GITOPS_DEPLOY_PUBLIC_KEY").unwrap();
    assert!(github.push(Actor::User("acme"), "refs/heads/main").is_err());
    assert!(
        github
            .push(Actor::GitHubActions, "refs/heads/main")
            .is_err()
    );
    assert!(
        github
            .push(Actor::GitHubActions, "refs/tags/v0.1.0")
            .is_err()
    );
    github
        .push(Actor::DeployKey(&deploy_public), "refs/heads/main")
        .unwrap();
    github
        .push(Actor::DeployKey(&deploy_public), "refs/tags/v0.1.0")
        .unwrap();
    github
        .push(Actor::User("acme"), "refs/heads/feature")
        .unwrap();
    assert!(github.approve("acme", "acme").is_err(), "no self-approval");
    assert!(github.merge(0, &[]).is_err(), "CI is required");
    match profile {
        "solo" => github.merge(0, &[CI_CHECK]).unwrap(),
        _ => {
            assert!(
                github.merge(0, &[CI_CHECK]).is_err(),
                "team: an approval is required"
            );
            github.approve("acme", "teammate").unwrap();
            github.merge(1, &[CI_CHECK]).unwrap();
        }
    }
    for environment in ["preview", "preprod", "prod", "image-signing"] {
        github.run_job(environment, "main").unwrap();
        assert!(
            github.run_job(environment, "feature").is_err(),
            "{environment}"
        );
    }

    // What cluster up writes, then doctor: every line ✔.
    let argocd = argocd();
    github.cluster_up(&argocd.url());
    let output = doctor(&work, &github, &argocd);
    let text = stdout(&output);
    assert_ok(&output);
    assert!(!text.contains('✘'), "{text}");
    for line in [
        "✔ variable PIPELINE_READY: set",
        "✔ Actions: enabled",
        "✔ environment prod: main only, with required reviewers",
        "✔ secret GITOPS_DEPLOY_KEY (environment preview): set",
        if profile == "solo" {
            "(the solo profile: you alone can merge)"
        } else {
            "1 approval(s) and code-owner review (the team profile"
        },
        "✔ required status check on main: \"Lint, SCA and tests\" must pass before a merge",
        "✔ release tags refs/tags/v*:",
        "✔ label preview: set",
        "✔ image key: gitops/policy/cosign.pub is IMAGE_SIGNING_KEY's public half",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains(TOKEN));
}

#[test]
fn setup_then_doctor_passes_every_check_solo() {
    setup_then_doctor("solo");
}

#[test]
fn setup_then_doctor_passes_every_check_team() {
    setup_then_doctor("team");
}

#[test]
fn a_second_setup_sends_no_write_and_says_so() {
    let dir = TempDir::new("setup-twice");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    assert_ok(&setup(&work, &github, &[]));
    let (writes, head) = (github.writes().len(), git(&work, &["rev-parse", "HEAD"]));
    let output = setup(&work, &github, &[]);
    assert_ok(&output);
    assert_eq!(
        github.writes().len(),
        writes,
        "{:#?}",
        &github.writes()[writes..]
    );
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), head);
    assert!(
        stdout(&output).contains("nothing to change"),
        "{}",
        stdout(&output)
    );
}

/// A private fork: Argo CD reads it over SSH with the read-only deploy key `cluster up` gives it,
/// so its Argo CD objects name `git@github.com:<owner>/<name>.git`; links elsewhere stay HTTPS.
/// A second run changes nothing; made public, the objects name HTTPS again.
#[test]
fn a_private_forks_argocd_objects_name_its_ssh_url() {
    let dir = TempDir::new("setup-private");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    github.state.lock().unwrap().private = true;
    let output = setup(&work, &github, &[]);
    assert_ok(&output);
    let (https, ssh) = (
        "https://github.com/acme/service-demo.git",
        "git@github.com:acme/service-demo.git",
    );
    for file in [
        "project.yaml",
        "bootstrap-project.yaml",
        "root.yaml",
        "apps/services.yaml",
        "apps/previews.yaml",
    ] {
        let text = read(&work, &format!("gitops/argocd/{file}"));
        assert!(
            text.contains(ssh) && !text.contains(https),
            "{file}:\n{text}"
        );
    }
    for file in [
        "Cargo.toml",
        "charts/service-demo/Chart.yaml",
        "terraform/variables.tf",
    ] {
        let text = read(&work, file);
        assert!(
            text.contains("https://github.com/acme/service-demo") && !text.contains(ssh),
            "{file}"
        );
    }
    let pushed = git(&work, &["show", "origin/main:gitops/argocd/root.yaml"]);
    assert!(pushed.contains(ssh), "{pushed}");
    let (writes, head) = (github.writes().len(), git(&work, &["rev-parse", "HEAD"]));
    assert_ok(&setup(&work, &github, &[]));
    assert_eq!(github.writes().len(), writes);
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), head);
    github.state.lock().unwrap().private = false;
    assert_ok(&setup(&work, &github, &[]));
    let root = read(&work, "gitops/argocd/root.yaml");
    assert!(root.contains(https) && !root.contains(ssh), "{root}");
}

#[test]
fn dry_run_sends_no_write_changes_nothing_and_masks_secrets() {
    let dir = TempDir::new("setup-dry");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let output = setup(&work, &github, &["--dry-run"]);
    assert_ok(&output);
    let text = stdout(&output);
    assert!(github.writes().is_empty(), "{:#?}", github.writes());
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), head);
    assert!(git(&work, &["status", "--porcelain"]).is_empty());
    for line in [
        r#"PUT /repos/acme/service-demo/environments/preprod/secrets/GATE_SIGNING_KEY {"encrypted_value":"***","key_id":"***"}"#,
        r#"PUT /repos/acme/service-demo/actions/permissions {"allowed_actions":"all","enabled":true}"#,
        "POST /repos/acme/service-demo/rulesets",
        "+++ b/gitops/policy/cosign.pub",
        "nothing was changed",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(!text.contains(TOKEN));
}

#[test]
fn a_capitalised_owner_gives_lower_case_image_names() {
    let dir = TempDir::new("setup-case");
    let work = clone_of_fork(dir.path(), "Acme");
    let github = FakeGitHub::start("Acme", "service-demo", TOKEN);
    assert_ok(&setup(&work, &github, &[]));
    let values = read(&work, "gitops/values/prod/service-demo.yaml");
    assert!(values.contains("ghcr.io/acme/"), "{values}");
    let everything = git(&work, &["grep", "-h", "ghcr.io/"]);
    assert!(!everything.contains("ghcr.io/Acme"), "{everything}");
    assert!(read(&work, "gitops/argocd/project.yaml").contains("github.com/Acme/service-demo"));
    assert!(read(&work, ".github/CODEOWNERS").contains("/gitops/argocd/ @Acme"));
}

#[test]
fn a_failure_half_way_names_what_was_done_and_a_second_run_finishes() {
    let dir = TempDir::new("setup-resume");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    github.state.lock().unwrap().fail = Some("POST /repos/acme/service-demo/keys".into());
    let message = assert_fails(&setup(&work, &github, &[]));
    assert!(
        message.contains("setup stopped before finishing"),
        "{message}"
    );
    assert!(
        message.contains("run `cargo xtask setup` again"),
        "{message}"
    );
    assert!(
        message.contains("POST /repos/acme/service-demo/keys"),
        "{message}"
    );
    assert!(!message.contains("Stack backtrace"), "{message}");
    assert!(github.variable("repo", "PIPELINE_READY").is_none());
    github.state.lock().unwrap().fail = None;
    assert_ok(&setup(&work, &github, &[]));
    assert_eq!(
        github.variable("repo", "PIPELINE_READY").as_deref(),
        Some("true")
    );
    let deploy_public = github.variable("repo", "GITOPS_DEPLOY_PUBLIC_KEY").unwrap();
    github
        .push(Actor::DeployKey(&deploy_public), "refs/heads/main")
        .unwrap();
    let writes = github.writes().len();
    assert_ok(&setup(&work, &github, &[]));
    assert_eq!(github.writes().len(), writes);
}

#[test]
fn an_origin_that_is_not_github_is_refused_naming_the_fix() {
    let dir = TempDir::new("setup-origin");
    let work = clone_of_fork(dir.path(), "acme");
    git(
        &work,
        &[
            "config",
            "remote.origin.url",
            "https://gitlab.com/acme/service-demo.git",
        ],
    );
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    let message = assert_fails(&setup(&work, &github, &[]));
    assert!(
        message.contains("git remote set-url origin https://github.com/"),
        "{message}"
    );
    assert!(github.requests().is_empty());
}

#[test]
fn doctor_prints_every_verdict_when_a_check_cannot_be_made() {
    let dir = TempDir::new("doctor-forbidden");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    assert_ok(&setup(&work, &github, &[]));
    let argocd = argocd();
    github.cluster_up(&argocd.url());
    github.state.lock().unwrap().forbid = Some("GET /users/acme/packages".into());
    let output = doctor(&work, &github, &argocd);
    let text = stdout(&output);
    assert_fails(&output);
    assert!(
        text.contains("✘ GHCR package of items-api: could not check"),
        "{text}"
    );
    assert!(text.contains("403"), "{text}");
    assert!(
        text.contains("✔ label preview: set"),
        "the checks after it ran:\n{text}"
    );
    assert_eq!(text.matches('✘').count(), 1, "{text}");
}

/// The fake's exchanges are checked against GitHub's OpenAPI description: a
/// request GitHub does not have is a violation (what every test's fake would
/// fail on when dropped), and setup's and doctor's requests have none.
#[test]
fn the_fake_is_checked_against_githubs_openapi_description() {
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    let addr = github.url().trim_start_matches("http://").to_owned();
    support::http_status(
        &addr,
        "DELETE",
        "/repos/acme/service-demo/actions/permissions",
    );
    let violations = github.http.take_violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("DELETE /repos/acme/service-demo/actions/permissions")),
        "{violations:#?}"
    );
    let dir = TempDir::new("setup-contract");
    let work = clone_of_fork(dir.path(), "acme");
    assert_ok(&setup(&work, &github, &[]));
    let argocd = argocd();
    github.cluster_up(&argocd.url());
    assert_ok(&doctor(&work, &github, &argocd));
    assert!(github.requests().len() > 60, "{:#?}", github.requests());
    github.http.assert_contract();
}

/// What kind does with a preview's image, against a real registry on
/// loopback: pulled without credentials it answers; behind a login (a private
/// GHCR package) it is refused naming the click GitHub's API cannot do.
#[test]
fn anonymous_pull_names_the_click_when_a_package_is_private() {
    let dir = TempDir::new("anonymous-pull");
    let Some(open) = support::Registry::start() else {
        return;
    };
    let repository = open.repository();
    let tag = format!("pr-1-{}", support::head());
    assert_ok(&support::push_stand_in(
        dir.path(),
        &repository,
        "bits",
        &tag,
        &[],
    ));
    let image = format!("{repository}:{tag}");
    let output = support::xtask(&["doctor", "--anonymous-pull", &image], &[]);
    assert_ok(&output);
    assert!(
        stdout(&output).contains("can be pulled without credentials"),
        "{}",
        stdout(&output)
    );
    let missing = format!("{repository}:pr-2-def5678");
    let message = assert_fails(&support::xtask(
        &["doctor", "--anonymous-pull", &missing],
        &[],
    ));
    assert!(message.contains("has no such tag"), "{message}");

    // bcrypt (cost 4) of "s3cret-Pa55word-do-not-print", as in tests/registry.rs.
    let hash = "$2b$04$E5jSM2Wc3F.Qsab7Zzm3LeQssIIJlamB9KzT/cBvwm0r2qOE0TBxK";
    let Some(private) = support::Registry::start_with_users(&format!("ci:{hash}\n")) else {
        return;
    };
    let image = format!("{}/acme/service-demo:pr-1-abc1234", private.addr);
    let output = support::xtask(&["doctor", "--anonymous-pull", &image], &[]);
    let message = assert_fails(&output);
    assert!(
        message.contains("cannot be pulled without credentials"),
        "{message}"
    );
    assert!(message.contains("Change visibility → Public"), "{message}");
    assert!(
        message.contains("/packages/container/service-demo/settings"),
        "{message}"
    );
    assert!(!message.contains("Stack backtrace"), "{message}");
}

/// A commit of the learner's own on main is never pushed by setup, and the
/// refusal comes before any write to GitHub.
#[test]
fn a_local_commit_of_yours_is_never_pushed_and_nothing_is_written() {
    let dir = TempDir::new("setup-own-commit");
    let work = clone_of_fork(dir.path(), "acme");
    std::fs::write(work.join("mine.txt"), "work in progress\n").unwrap();
    git(&work, &["add", "mine.txt"]);
    git(&work, &["commit", "--quiet", "-m", "wip"]);
    let remote = git(&work, &["ls-remote", "origin", "refs/heads/main"]);
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    let message = assert_fails(&setup(&work, &github, &[]));
    assert!(message.contains("not setup's (\"wip\""), "{message}");
    assert!(github.writes().is_empty(), "{:#?}", github.writes());
    assert_eq!(
        git(&work, &["ls-remote", "origin", "refs/heads/main"]),
        remote
    );
}

/// The deploy key registered must be the public half of the secret the
/// environments hold: another writable key (a stale one, or someone's) is named.
#[test]
fn doctor_names_a_deploy_key_that_is_not_the_secrets() {
    let dir = TempDir::new("doctor-deploy-key");
    let work = clone_of_fork(dir.path(), "acme");
    let github = FakeGitHub::start("acme", "service-demo", TOKEN);
    assert_ok(&setup(&work, &github, &[]));
    let argocd = argocd();
    github.cluster_up(&argocd.url());
    let text = stdout(&doctor(&work, &github, &argocd));
    assert!(text.contains("✔ GitOps deploy key: writable deploy key \"gitops\", the public half of GITOPS_DEPLOY_KEY"), "{text}");
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey";
    github.state.lock().unwrap().keys[0]["key"] = serde_json::json!(other);
    let output = doctor(&work, &github, &argocd);
    let text = stdout(&output);
    assert_fails(&output);
    assert!(
        text.contains(
            "✘ GitOps deploy key: no writable deploy key is the public half of GITOPS_DEPLOY_KEY"
        ),
        "{text}"
    );
    assert_eq!(text.matches('✘').count(), 1, "{text}");
    // setup puts it right: a new pair, registered, in every environment.
    assert_ok(&setup(&work, &github, &[]));
    assert_ok(&doctor(&work, &github, &argocd));
}
