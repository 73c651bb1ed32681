//! The README's fork-and-follow walkthrough, read from the README itself: six
//! commands from a fork to a release in prod. Each command is either run here
//! against the stand-ins (a bare remote behind GitHub's URL, the fake GitHub,
//! the real xtask binary) or named below as needing a real GitHub or kind,
//! with the reason; a command in neither list fails the test, so the README
//! cannot gain a step nobody has run or named.

mod support;

/// The heading of the walkthrough in README.md.
const SECTION: &str = "## Doing it for real: fork and follow";
/// How many commands the README promises from fork to prod.
const COMMANDS: usize = 6;

/// Commands that need a real GitHub or a real kind cluster, and why they cannot run here.
const NEEDS_REAL: [(&str, &str); 7] = [
    (
        "gh repo fork ",
        "forks on github.com (here: a bare repository behind the fork's URL)",
    ),
    (
        "cd service-demo",
        "enters the clone `gh repo fork --clone` made",
    ),
    (
        "gh repo set-default ",
        "a setting of the gh CLI (not installed here); setup reads the fork from origin itself",
    ),
    (
        "cargo xtask cluster up",
        "Terraform, kind and the charts' images come from the internet (its --dry-run plan is tested in tests/cluster.rs)",
    ),
    ("gh pr create ", "opens the pull request on github.com"),
    (
        "gh pr merge ",
        "merges on github.com (the solo ruleset lets its author merge)",
    ),
    (
        "gh workflow run ",
        "starts release.yml on GitHub's runners and the cluster's runner",
    ),
];

/// Commands run here, in order, against the stand-ins.
const RUN_HERE: [&str; 5] = [
    "cargo xtask setup",
    "git switch -c ",
    "echo ",
    "git commit ",
    "git push ",
];

/// The lines of the walkthrough's first `sh` block.
fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(support::workspace_root().join("README.md")).unwrap();
    let section = readme
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("README.md has no section {SECTION:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the walkthrough opens with a ```sh block")
        .0;
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The simple commands of one line (`a && b && c`).
fn commands(line: &str) -> Vec<&str> {
    line.split(" && ").map(str::trim).collect()
}

/// Where a command is classified: Ok(true) run here, Ok(false) needs GitHub or kind.
fn classify(command: &str) -> Result<bool, String> {
    let here = RUN_HERE.iter().any(|p| command.starts_with(p));
    let real = NEEDS_REAL.iter().any(|(p, _)| command.starts_with(p));
    match (here, real) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        (true, true) => Err(format!("{command:?} is in both lists")),
        (false, false) => Err(format!(
            "{command:?} is neither run by this test nor named as needing GitHub or kind: run it here \
             (RUN_HERE) or say why it cannot be (NEEDS_REAL)"
        )),
    }
}

#[test]
fn every_walkthrough_command_is_run_here_or_named_as_needing_github_or_kind() {
    let lines = walkthrough();
    assert_eq!(
        lines.len(),
        COMMANDS,
        "the README promises {COMMANDS} commands from fork to prod: {lines:#?}"
    );
    let problems: Vec<String> = lines
        .iter()
        .flat_map(|line| commands(line))
        .filter_map(|command| classify(command).err())
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // Every entry of both lists is still used: a list that names a command the README dropped lies.
    let all: Vec<&str> = lines.iter().flat_map(|line| commands(line)).collect();
    for prefix in RUN_HERE
        .iter()
        .copied()
        .chain(NEEDS_REAL.iter().map(|(p, _)| *p))
    {
        assert!(
            all.iter().any(|c| c.starts_with(prefix)),
            "{prefix:?} is listed but the walkthrough no longer has it"
        );
    }
}

#[test]
fn a_command_the_lists_do_not_know_is_refused() {
    assert!(classify("kubectl apply -f gitops/policy/").is_err());
    assert!(classify("sudo useradd kind-runner").is_err());
    assert_eq!(classify("cargo xtask setup"), Ok(true));
    assert_eq!(classify("gh pr merge --squash"), Ok(false));
}

/// A clone of a fork of this repository at HEAD: origin `https://github.com/<owner>/service-demo.git`,
/// which git rewrites (`insteadOf`) to a bare repository in `dir`.
fn clone_of_fork(dir: &std::path::Path, owner: &str) -> std::path::PathBuf {
    let remote = dir.join("fork.git");
    let root = support::workspace_root();
    support::git(
        dir,
        &[
            "clone",
            "--quiet",
            "--bare",
            root.to_str().unwrap(),
            remote.to_str().unwrap(),
        ],
    );
    // The fork's main is the commit under test, whichever branch (or detached HEAD, as in CI) it is on here.
    let head = support::head();
    support::git(&remote, &["update-ref", "refs/heads/main", &head]);
    support::git(&remote, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let url = format!("https://github.com/{owner}/service-demo.git");
    let rewrite = format!("url.{}.insteadOf={url}", remote.display());
    let work = dir.join("service-demo");
    support::git(
        dir,
        &[
            "-c",
            &rewrite,
            "clone",
            "--quiet",
            &url,
            work.to_str().unwrap(),
        ],
    );
    for (key, value) in [
        ("user.name", "learner"),
        ("user.email", "learner@example.com"),
        (&format!("url.{}.insteadOf", remote.display()), url.as_str()),
    ] {
        support::git(&work, &["config", key, value]);
    }
    work
}

/// A `cargo` first on PATH that runs this build's xtask for `cargo xtask …`, as the alias would,
/// without compiling it again in the clone (a prebuilt xtask acts on the checkout it runs in).
fn cargo_shim(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = bin.join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\n[ \"$1\" = xtask ] || {{ echo \"the walkthrough runs only cargo xtask\" >&2; exit 99; }}\nshift\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_xtask")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs one of the README's commands, as written, with `sh` in `work`.
fn run_here(work: &std::path::Path, bin: &std::path::Path, command: &str, envs: &[(&str, &str)]) {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = std::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(work)
        .env("PATH", path)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("GITHUB_OUTPUT")
        .envs(support::TEST_RELEASE_PROFILE)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command}:\n{}\n{}",
        support::stdout(&output),
        support::stderr(&output)
    );
}

/// The walkthrough as a learner alone runs it, against the stand-ins: the README's own commands
/// run here in order (setup against the fake GitHub, the one-line change pushed to the fork's
/// bare remote), and what needs GitHub or kind replayed by the fake's rules: `cluster up`'s
/// secrets, variables and runner; the merge (no approval, the CI check passed); the release's
/// job in `prod` from main. Then: doctor passes every check, and the change builds items-api.
#[test]
fn the_walkthrough_runs_against_the_stand_ins() {
    use support::fake_github::FakeGitHub;
    const TOKEN: &str = "ghp_walkthrough-fake-token";
    let dir = support::TempDir::new("walkthrough");
    let work = clone_of_fork(dir.path(), "Learner");
    let bin = cargo_shim(dir.path());
    let github = FakeGitHub::start("Learner", "service-demo", TOKEN);
    let envs = [
        ("GITHUB_TOKEN", TOKEN),
        ("GITHUB_API_URL", github.url().leak() as &str),
    ];
    let mut ran = Vec::new();
    for line in walkthrough() {
        for command in commands(&line) {
            if classify(command).unwrap() {
                run_here(&work, &bin, command, &envs);
                ran.push(command.to_owned());
            }
        }
        // After the line that needs kind: what `cluster up` writes to GitHub.
        if line.starts_with("cargo xtask cluster up") {
            github.cluster_up("http://127.0.0.1:8090");
        }
    }
    assert_eq!(ran.len(), RUN_HERE.len(), "{ran:#?}");
    // setup pointed the fork at itself, lower-cased, and committed it to the fork's main.
    let values = support::git(
        &work,
        &["show", "origin/main:gitops/values/prod/service-demo.yaml"],
    );
    assert!(values.contains("ghcr.io/learner/service-demo"), "{values}");
    // Every check doctor makes passes (Argo CD: a fake checked against its REST description).
    let argocd = support::FakeHttp::start_argocd(|request, _| {
        if request.target == "/api/v1/applications?projects=service-demo" {
            let items = serde_json::json!({"items": [{"metadata": {"name": "service-demo-dev"}}]});
            let answer = support::contract::argocd_answer("GET", &request.target, 200, items);
            return (200, vec![], answer);
        }
        let message = format!("the fake serves no {}", request.target);
        let error = serde_json::json!({"error": message, "code": 5, "message": message});
        (404, vec![], error.to_string())
    });
    let doctor = support::xtask_in(
        &work,
        &["doctor"],
        &[
            envs[0],
            envs[1],
            ("ARGOCD_SERVER", &argocd.url()),
            ("ARGOCD_AUTH_TOKEN", "t"),
        ],
    );
    support::assert_ok(&doctor);
    assert!(
        !support::stdout(&doctor).contains('✘'),
        "{}",
        support::stdout(&doctor)
    );
    // The pull request's one line builds something: items-api is affected.
    let affected = support::xtask_in(
        &work,
        &[
            "affected",
            "--base",
            "origin/main",
            "--head",
            "hello",
            "--json",
        ],
        &[],
    );
    support::assert_ok(&affected);
    let report: serde_json::Value = serde_json::from_str(&support::stdout(&affected)).unwrap();
    assert_eq!(
        report["affected"],
        serde_json::json!(["items-api"]),
        "{report}"
    );
    // The learner alone merges (solo: no approval, the CI check required) and releases from main.
    let check = "Lint, SCA and tests";
    assert!(
        github.merge(0, &[]).is_err(),
        "a merge without the CI check must be refused"
    );
    github.merge(0, &[check]).unwrap();
    github.run_job("prod", "main").unwrap();
    assert!(github.run_job("prod", "hello").is_err());
}
