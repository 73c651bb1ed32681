//! Gates and `cargo xtask release` against real git remotes (bare repositories
//! in temp dirs) and a real registry, with a fault injected at each step.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{
    FakeHttp, Registry, TempDir, assert_fails, assert_ok, git, head, stdout, xtask, xtask_in,
};

/// A service repository with its GitOps files, its bare remote, and a registry
/// holding `main-<sha>` for the newest commit.
struct Fixture {
    _dir: TempDir,
    remote: PathBuf,
    work: PathBuf,
    registry: Registry,
    /// Commits on main, oldest first.
    commits: Vec<String>,
    /// The digest of every `main-<sha>` image.
    digest: String,
}

impl Fixture {
    fn new() -> Option<Self> {
        let registry = Registry::start()?;
        let dir = TempDir::new("release");
        let (remote, work) = support::remote_and_clone(dir.path());
        support::write_environments(&work);
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "feat: first"]);
        git(&work, &["tag", "--annotate", "v0.1.0", "-m", "v0.1.0"]);
        std::fs::write(work.join("service.txt"), "two").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "feat: second"]);
        git(
            &work,
            &["push", "--quiet", "--follow-tags", "origin", "main"],
        );
        let commits = git(&work, &["rev-list", "--reverse", "HEAD"])
            .lines()
            .map(str::to_owned)
            .collect();
        let mut fixture = Self {
            _dir: dir,
            remote,
            work,
            registry,
            commits,
            digest: String::new(),
        };
        fixture.digest = fixture.publish_build("one build");
        Some(fixture)
    }

    /// Push a build as `pr-<N>-<workspace HEAD>` (`image build` tags with the
    /// workspace's HEAD); returns that tag.
    fn push_build(&self, content: &str) -> String {
        let binary = self
            .work
            .parent()
            .unwrap()
            .join(format!("bin-{}", fastrand::u64(..)));
        std::fs::write(&binary, content).unwrap();
        let tag = format!("pr-{}-{}", fastrand::u32(1..), head());
        let repo = self.registry.repository();
        assert_ok(&xtask(
            &[
                "image",
                "build",
                "--binary",
                binary.to_str().unwrap(),
                "--tag",
                &tag,
                "--push",
                &repo,
            ],
            &[],
        ));
        tag
    }

    /// Give a pushed build another name (as CI would have built it under).
    fn retag(&self, from: &str, to: &str) -> Output {
        xtask(
            &[
                "image",
                "retag",
                from,
                to,
                "--repository",
                &self.registry.repository(),
            ],
            &[],
        )
    }

    /// Push a build as `main-<newest sha>`; returns its digest.
    fn publish_build(&self, content: &str) -> String {
        self.publish_build_of(self.sha(), content)
    }

    /// Push a build as `main-<sha>` for any commit; returns its digest.
    fn publish_build_of(&self, sha: &str, content: &str) -> String {
        let built = self.push_build(content);
        let tag = format!("main-{sha}");
        assert_ok(&self.retag(&built, &tag));
        self.digest_of(&tag).unwrap()
    }

    fn sha(&self) -> &str {
        self.commits.last().unwrap()
    }

    fn digest_of(&self, tag: &str) -> Option<String> {
        support::image_digest(&self.registry.repository(), tag)
    }

    fn run(&self, args: &[&str]) -> Output {
        xtask_in(
            &self.work,
            args,
            &[("IMAGE_REPOSITORY", &self.registry.repository())],
        )
    }

    fn promote_preprod(&self) {
        let tag = format!("main-{}", self.sha());
        assert_ok(&self.run(&[
            "promote",
            "--env",
            "preprod",
            "--tag",
            &tag,
            "--digest",
            &self.digest,
        ]));
    }

    fn gate(&self, conclusion: &str, digest: &str) {
        self.gate_of(self.sha(), conclusion, digest);
    }

    fn gate_of(&self, sha: &str, conclusion: &str, digest: &str) {
        assert_ok(&self.run(&[
            "gate",
            "record",
            "--sha",
            sha,
            "--name",
            "preprod-tests",
            "--conclusion",
            conclusion,
            "--digest",
            digest,
        ]));
    }

    fn release(&self, version: &str) -> Output {
        self.run(&["release", "--version", version])
    }

    fn remote_file(&self, path: &str) -> String {
        git(&self.remote, &["show", &format!("main:{path}")])
    }

    /// Everything a release could change, to compare before and after a fault.
    fn state(&self) -> String {
        format!(
            "{}\n{}\n{:?}",
            git(
                &self.remote,
                &["for-each-ref", "--format=%(refname) %(objectname)"]
            ),
            git(&self.work, &["status", "--porcelain"]),
            self.digest_of("v1.0.0"),
        )
    }

    /// A new commit on main, pushed (on top of what the pipeline pushed); it
    /// becomes the newest of `commits`.
    fn commit_on_main(&mut self, content: &str, subject: &str) -> String {
        git(
            &self.work,
            &["pull", "--quiet", "--ff-only", "origin", "main"],
        );
        std::fs::write(self.work.join("service.txt"), content).unwrap();
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "--quiet", "-m", subject]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        self.commits.push(sha.clone());
        sha
    }

    fn tag_commit(&self, tag: &str) -> String {
        git(&self.remote, &["rev-parse", &format!("{tag}^{{commit}}")])
    }

    fn release_commits(&self) -> usize {
        git(&self.remote, &["log", "--format=%s", "main"])
            .lines()
            .filter(|s| s.starts_with("release: "))
            .count()
    }
}

#[test]
fn a_release_ships_the_tested_digest_to_prod_and_dev_in_one_commit_and_reruns_as_a_no_op() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);

    let dry = fx.run(&["release", "--version", "1.0.0", "--dry-run"]);
    assert_ok(&dry);
    assert!(stdout(&dry).contains("+  tag: v1.0.0"), "{}", stdout(&dry));
    assert_eq!(fx.digest_of("v1.0.0"), None, "a dry run retags nothing");
    // The workflow's boolean input arrives as RELEASE_DRY_RUN=true.
    let from_env = xtask_in(
        &fx.work,
        &["release", "--version", "1.0.0"],
        &[
            ("IMAGE_REPOSITORY", &fx.registry.repository()),
            ("RELEASE_DRY_RUN", "true"),
        ],
    );
    assert_ok(&from_env);
    assert!(
        stdout(&from_env).contains("dry run: would retag"),
        "{}",
        stdout(&from_env)
    );
    assert_eq!(fx.digest_of("v1.0.0"), None, "a dry run retags nothing");

    let release = fx.release("1.0.0");
    assert_ok(&release);
    // The same bits under the release name.
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
    // prod and dev in one commit, by tag and digest.
    for env in ["prod", "dev"] {
        let values = fx.remote_file(&format!("gitops/values/{env}/service-demo.yaml"));
        assert!(values.contains("tag: v1.0.0 # set by release"), "{values}");
        assert!(
            values.contains(&format!("digest: \"{}\"", fx.digest)),
            "{values}"
        );
    }
    let files = git(&fx.remote, &["show", "--name-only", "--format=%s", "main"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [
            "release: v1.0.0",
            "",
            "gitops/values/dev/service-demo.yaml",
            "gitops/values/prod/service-demo.yaml"
        ]
    );
    // The annotated tag on the released commit, pushed, with notes since v0.1.0.
    assert_eq!(git(&fx.remote, &["rev-parse", "v1.0.0^{commit}"]), fx.sha());
    let notes = git(
        &fx.remote,
        &["tag", "--list", "--format=%(contents)", "v1.0.0"],
    );
    assert!(
        notes.contains("feat: second") && !notes.contains("feat: first"),
        "{notes}"
    );
    assert!(notes.contains(&fx.digest), "{notes}");

    // Status: the PR build, the main build and the release are one digest.
    let main_tag = format!("main-{}", fx.sha());
    assert_ok(&fx.retag(&main_tag, &format!("pr-1-{}", fx.sha())));
    let status = fx.run(&["status"]);
    assert_ok(&status);
    let status = stdout(&status);
    let names = status
        .split("image names in")
        .nth(1)
        .unwrap_or_else(|| panic!("no names section:\n{status}"));
    let short = &fx.digest[..19];
    for (name, runs) in [
        (format!("pr-1-{}", fx.sha()), ""),
        (main_tag.clone(), "runs in preprod"),
        ("v1.0.0".into(), "runs in dev, prod"),
    ] {
        let line = names
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{status}"));
        assert!(line.contains(short) && line.contains(runs), "{line}");
    }
    assert!(status.contains("one digest under every name"), "{status}");

    // Rerun: nothing new anywhere.
    let before = fx.state();
    let again = fx.release("1.0.0");
    assert_ok(&again);
    assert!(
        stdout(&again).contains("already run v1.0.0"),
        "{}",
        stdout(&again)
    );
    assert_eq!(fx.state(), before);
    assert_eq!(fx.release_commits(), 1);

    // Versions: not semver, not newer.
    let message = assert_fails(&fx.release("1.1"));
    assert!(message.contains("not a semantic version"), "{message}");
    let message = assert_fails(&fx.release("0.9.0"));
    assert!(
        message.contains("not newer than the existing release v1.0.0"),
        "{message}"
    );
    assert_eq!(fx.state(), before);
}

#[test]
fn release_defaults_to_the_commit_preprod_runs_and_sha_and_allow_older_choose_others() {
    let Some(mut fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    let (preprod_sha, preprod_digest) = (fx.sha().to_owned(), fx.digest.clone());
    // main moves on: a newer commit, built and passing its gate, that preprod
    // does not run. Releasing HEAD by mistake would go through.
    let head_sha = fx.commit_on_main("three", "feat: third");
    let head_digest = fx.publish_build("third build");
    fx.gate("success", &head_digest);
    assert_ne!(head_sha, preprod_sha);
    assert_ne!(head_digest, preprod_digest);

    // No --sha: the commit preprod runs.
    let dry = fx.run(&["release", "--version", "1.0.0", "--dry-run"]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains(&format!("would retag main-{preprod_sha} → v1.0.0")),
        "{}",
        stdout(&dry)
    );
    assert_ok(&fx.release("1.0.0"));
    assert_eq!(fx.tag_commit("v1.0.0"), preprod_sha);
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&preprod_digest));

    // --sha names another commit: its build ships, with the notes since v1.0.0.
    assert_ok(&fx.run(&["release", "--version", "1.2.0", "--sha", &head_sha[..12]]));
    assert_eq!(fx.tag_commit("v1.2.0"), head_sha);
    assert_eq!(fx.digest_of("v1.2.0").as_ref(), Some(&head_digest));
    let prod = fx.remote_file("gitops/values/prod/service-demo.yaml");
    assert!(
        prod.contains("tag: v1.2.0") && prod.contains(&head_digest),
        "{prod}"
    );
    let notes = git(
        &fx.remote,
        &["tag", "--list", "--format=%(contents)", "v1.2.0"],
    );
    assert!(
        notes.contains("feat: third") && !notes.contains("feat: second"),
        "{notes}"
    );

    // A version below the newest release: refused, nothing changed; allowed
    // with --allow-older (a hotfix line).
    let hotfix = ["release", "--version", "1.1.0", "--sha", &preprod_sha];
    let before = fx.state();
    let message = assert_fails(&fx.run(&hotfix));
    assert!(
        message.contains("not newer than the existing release v1.2.0")
            && message.contains("--allow-older"),
        "{message}"
    );
    assert_eq!(fx.state(), before);
    assert_eq!(fx.digest_of("v1.1.0"), None);
    assert_ok(&fx.run(&[&hotfix[..], &["--allow-older"]].concat()));
    assert_eq!(fx.tag_commit("v1.1.0"), preprod_sha);
    assert_eq!(fx.digest_of("v1.1.0").as_ref(), Some(&preprod_digest));
}

#[test]
fn inside_actions_the_github_release_is_published_once_and_a_failed_publish_is_finished_by_a_rerun()
{
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    // Inside Actions only a signed gate counts: a key pair, and the result signed.
    let keys = fx.work.parent().unwrap().join("keys");
    assert_ok(&fx.run(&["gate", "keygen", "--out-dir", keys.to_str().unwrap()]));
    let private = std::fs::read_to_string(keys.join("gate.key")).unwrap();
    let public = std::fs::read_to_string(keys.join("gate.pub")).unwrap();
    assert_ok(&xtask_in(
        &fx.work,
        &[
            "gate",
            "record",
            "--sha",
            fx.sha(),
            "--name",
            "preprod-tests",
            "--conclusion",
            "success",
            "--digest",
            &fx.digest,
        ],
        &[
            ("IMAGE_REPOSITORY", fx.registry.repository().as_str()),
            ("GATE_SIGNING_KEY", private.as_str()),
        ],
    ));
    // GitHub's answers, in order: down, created, and "already exists" for a rerun.
    let answers = std::sync::Mutex::new(vec![
        (
            422,
            r#"{"message":"Validation Failed","errors":[{"resource":"Release","code":"already_exists","field":"tag_name"}]}"#,
        ),
        (201, r#"{"id":1,"tag_name":"v1.0.0"}"#),
        (502, r#"{"message":"Server Error"}"#),
    ]);
    let github = FakeHttp::start_github(move |request, _| {
        let (status, body) = answers
            .lock()
            .unwrap()
            .pop()
            .expect("no more requests expected");
        let body = serde_json::from_str(body).unwrap();
        let answer = support::contract::github_answer("POST", &request.target, status, body);
        (status, vec![], answer)
    });
    let api = github.url();
    let repository = fx.registry.repository();
    let release_with = |key: &str| {
        xtask_in(
            &fx.work,
            &["release", "--version", "1.0.0"],
            &[
                ("IMAGE_REPOSITORY", repository.as_str()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_TOKEN", "t0ken"),
                ("GITHUB_REPOSITORY", "octo/service-demo"),
                ("GITHUB_API_URL", api.as_str()),
                // An unsigned pass in git notes as well: not enough inside Actions.
                ("GATE_PUBLIC_KEY", key),
            ],
        )
    };
    fx.gate("success", &fx.digest);
    let before = fx.state();
    let message = assert_fails(&release_with(""));
    assert!(
        message.contains("needs a signed gate") && message.contains("gate keygen"),
        "{message}"
    );
    assert_eq!(fx.state(), before, "refused before anything changed");
    let release = || release_with(&public);

    let message = assert_fails(&release());
    assert!(message.contains("GitHub answered 502"), "{message}");
    // Everything before the publish is done, so a rerun only publishes.
    assert_eq!(git(&fx.remote, &["rev-parse", "v1.0.0^{commit}"]), fx.sha());
    assert_ok(&release());
    let again = release();
    assert_ok(&again);
    assert!(
        stdout(&again).contains("the GitHub release v1.0.0 already exists"),
        "{}",
        stdout(&again)
    );
    assert_eq!(fx.release_commits(), 1);

    let notes = git(
        &fx.remote,
        &["tag", "--list", "--format=%(contents)", "v1.0.0"],
    );
    let requests = github.requests();
    assert_eq!(requests.len(), 3);
    for request in requests {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/repos/octo/service-demo/releases")
        );
        assert_eq!(request.headers["authorization"], "Bearer t0ken");
        assert_eq!(request.headers["accept"], "application/vnd.github+json");
        assert_eq!(request.headers["x-github-api-version"], "2022-11-28");
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
        assert_eq!(body["tag_name"], "v1.0.0");
        assert_eq!(body["name"], "v1.0.0");
        // The release's text is the tag's notes: the commits since v0.1.0.
        let text = body["body"].as_str().unwrap();
        assert_eq!(text.trim(), notes.trim());
        assert!(
            text.contains("feat: second") && !text.contains("feat: first"),
            "{text}"
        );
    }
}

#[test]
fn the_gate_must_have_passed_for_the_very_digest_being_released() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    let before = fx.state();

    let message = assert_fails(&fx.release("1.0.0"));
    assert!(
        message.contains("gate preprod-tests has no result"),
        "{message}"
    );
    fx.gate("failure", &fx.digest);
    let message = assert_fails(&fx.release("1.0.0"));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
    // A pass for other bits (the tag was rebuilt after testing) does not count:
    // each image of a commit has its own gate, and this digest's last result failed.
    fx.gate("success", &format!("sha256:{}", "e".repeat(64)));
    let message = assert_fails(&fx.release("1.0.0"));
    assert!(message.contains("gate preprod-tests failed"), "{message}");
    let check = fx.run(&[
        "gate",
        "check",
        "--sha",
        fx.sha(),
        "--name",
        "preprod-tests",
        "--digest",
        &fx.digest,
    ]);
    assert!(assert_fails(&check).contains("gate preprod-tests failed"));
    // Bits never tested at all: the commit's latest pass, for other bits, does not count.
    let untested = format!("sha256:{}", "f".repeat(64));
    let check = fx.run(&[
        "gate",
        "check",
        "--sha",
        fx.sha(),
        "--name",
        "preprod-tests",
        "--digest",
        &untested,
    ]);
    assert!(assert_fails(&check).contains("rebuilt or moved"));
    // Only the gate notes moved.
    assert_eq!(
        fx.state()
            .lines()
            .filter(|l| !l.starts_with("refs/notes/gates"))
            .collect::<Vec<_>>(),
        before
            .lines()
            .filter(|l| !l.starts_with("refs/notes/gates"))
            .collect::<Vec<_>>()
    );

    fx.gate("success", &fx.digest);
    assert_ok(&fx.run(&[
        "gate",
        "check",
        "--sha",
        &fx.sha()[..10],
        "--name",
        "preprod-tests",
        "--digest",
        &fx.digest,
    ]));
    assert_ok(&fx.release("1.0.0"));
}

#[test]
fn a_push_rejected_after_the_retag_is_finished_by_a_rerun_without_duplicates() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    let hook = fx.remote.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'branch is frozen' >&2\nexit 1\n").unwrap();
    make_executable(&hook);

    let message = assert_fails(&fx.release("1.0.0"));
    assert!(message.contains("pre-receive hook declined"), "{message}");
    assert!(message.contains("rerun the same command"), "{message}");
    // The retag happened; prod did not move; no git tag.
    assert_eq!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
    assert!(
        fx.remote_file("gitops/values/prod/service-demo.yaml")
            .contains("tag: v0.1.0")
    );
    assert_eq!(git(&fx.remote, &["tag", "--list", "v1.0.0"]), "");

    std::fs::remove_file(&hook).unwrap();
    let rerun = fx.release("1.0.0");
    assert_ok(&rerun);
    assert!(
        stdout(&rerun).contains("already names"),
        "{}",
        stdout(&rerun)
    );
    assert_eq!(fx.release_commits(), 1);
    assert_eq!(git(&fx.remote, &["rev-parse", "v1.0.0^{commit}"]), fx.sha());
}

#[test]
fn registry_down_or_a_release_tag_on_other_bits_changes_nothing() {
    let Some(mut fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);

    // v1.0.0 already names other bits in the registry: refused.
    let other = fx.push_build("some other build");
    assert_ok(&fx.retag(&other, "v1.0.0"));
    assert_ne!(fx.digest_of("v1.0.0").as_ref(), Some(&fx.digest));
    let before = fx.state();
    let message = assert_fails(&fx.release("1.0.0"));
    assert!(message.contains("release tags are immutable"), "{message}");
    assert_eq!(fx.state(), before);

    // The registry is down before the retag: nothing changes.
    let remote_refs = git(&fx.remote, &["for-each-ref"]);
    fx.registry.stop();
    let message = assert_fails(&fx.release("1.1.0"));
    assert!(message.contains("did not answer"), "{message}");
    assert_eq!(git(&fx.remote, &["for-each-ref"]), remote_refs);
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_commit_that_is_not_on_main_is_never_released_even_with_a_build_and_a_passing_gate() {
    let Some(fx) = Fixture::new() else { return };
    // A branch's commit, pushed as a branch, built and tagged as if it were main.
    git(
        &fx.work,
        &["checkout", "--quiet", "-b", "feature/unreviewed"],
    );
    std::fs::write(fx.work.join("service.txt"), "unreviewed").unwrap();
    git(&fx.work, &["commit", "--quiet", "-am", "feat: unreviewed"]);
    git(
        &fx.work,
        &["push", "--quiet", "origin", "feature/unreviewed"],
    );
    let branch_sha = git(&fx.work, &["rev-parse", "HEAD"]);
    let digest = fx.publish_build_of(&branch_sha, "unreviewed bits");
    fx.gate_of(&branch_sha, "success", &digest);
    let before = fx.state();
    let message = assert_fails(&fx.run(&["release", "--version", "1.0.0", "--sha", &branch_sha]));
    assert!(
        message.contains("is not on origin/main") && message.contains("merge it first"),
        "{message}"
    );
    assert_eq!(fx.state(), before, "a refused release changes nothing");
}

#[test]
fn a_main_branch_that_is_a_refspec_or_an_option_is_refused_before_any_fetch() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    let before = fx.state();
    // Each would make the fetch read another branch (or git read an option) as "main".
    for branch in [
        "feature/unreviewed:refs/xtask/release/main",
        "feature/*",
        "--upload-pack=touch pwned",
        "main..other",
    ] {
        let flag = format!("--main-branch={branch}");
        let message = assert_fails(&fx.run(&["release", "--version", "1.0.0", &flag]));
        assert!(
            message.contains("RELEASE_BRANCH") && message.contains(branch),
            "{branch}: {message}"
        );
        assert_eq!(
            fx.state(),
            before,
            "{branch}: a refused release changes nothing"
        );
    }
    assert!(!fx.work.join("pwned").exists());
}

#[test]
fn an_older_build_under_a_newer_version_is_refused_before_the_registry_changes() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    assert_ok(&fx.release("1.0.0"));
    // The first commit (an ancestor of what prod runs), built and gated.
    let first = fx.commits[0].clone();
    let digest = fx.publish_build_of(&first, "the older build");
    fx.gate_of(&first, "success", &digest);
    let before = fx.state();
    let message = assert_fails(&fx.run(&["release", "--version", "2.0.0", "--sha", &first]));
    assert!(
        message.contains("refusing to move prod from v1.0.0 to v2.0.0")
            && message.contains("an older build"),
        "{message}"
    );
    assert_eq!(
        fx.state(),
        before,
        "no v2.0.0 in the registry, no commit, no tag"
    );
    assert_eq!(fx.digest_of("v2.0.0"), None);
    // Said on purpose, it goes through (a hotfix line).
    assert_ok(&fx.run(&[
        "release",
        "--version",
        "2.0.0",
        "--sha",
        &first,
        "--allow-older",
    ]));
    assert!(
        fx.remote_file("gitops/values/prod/service-demo.yaml")
            .contains("v2.0.0")
    );
}

#[test]
fn release_notes_list_peoples_commits_and_leave_out_the_pipelines_own() {
    let Some(mut fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    assert_ok(&fx.release("1.0.0"));
    // A person's change lands on main after the pipeline's commits.
    git(&fx.work, &["pull", "--quiet", "--rebase", "origin", "main"]);
    std::fs::write(fx.work.join("service.txt"), "three").unwrap();
    git(&fx.work, &["commit", "--quiet", "-am", "fix: third"]);
    // A person's commit written to look like the pipeline's: still listed.
    std::fs::write(fx.work.join("service.txt"), "four").unwrap();
    git(
        &fx.work,
        &[
            "commit",
            "--quiet",
            "-am",
            "feat: sneaky\n\nEnvironment: dev\nImage-Tag: v9.9.9",
        ],
    );
    git(&fx.work, &["push", "--quiet", "origin", "main"]);
    fx.commits.push(git(&fx.work, &["rev-parse", "HEAD"]));
    fx.digest = fx.publish_build("third build");
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    assert_ok(&fx.release("1.1.0"));
    let notes = git(
        &fx.remote,
        &["tag", "--list", "--format=%(contents)", "v1.1.0"],
    );
    assert!(notes.contains("- fix: third ("), "{notes}");
    assert!(notes.contains("- feat: sneaky ("), "{notes}");
    for pipeline in ["- release: v1.0.0", "- cd: promote", "- feat: second"] {
        assert!(!notes.contains(pipeline), "{pipeline:?} in:\n{notes}");
    }
}

#[test]
fn release_hands_the_sync_its_own_gitops_commit_not_the_branch_tip() {
    let Some(fx) = Fixture::new() else { return };
    fx.promote_preprod();
    fx.gate("success", &fx.digest);
    let output_file = fx.work.parent().unwrap().join("github-output");
    let release = || {
        xtask_in(
            &fx.work,
            &["release", "--version", "1.0.0"],
            &[
                ("IMAGE_REPOSITORY", fx.registry.repository().as_str()),
                ("GITHUB_OUTPUT", output_file.to_str().unwrap()),
            ],
        )
    };
    assert_ok(&release());
    let release_commit = git(&fx.remote, &["rev-parse", "main"]);
    assert_eq!(
        git(&fx.remote, &["log", "-1", "--format=%s", &release_commit]),
        "release: v1.0.0"
    );
    let written = std::fs::read_to_string(&output_file).unwrap();
    assert!(
        written.contains(&format!("gitops_commit={release_commit}\n")),
        "{written}"
    );
    // What the same job then syncs: the released service's prod and dev Applications.
    assert!(
        written.contains("apps=service-demo-prod,service-demo-dev\n"),
        "{written}"
    );
}
