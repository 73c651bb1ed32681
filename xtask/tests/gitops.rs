//! GitOps commands against real git: a bare repository in a temp dir is the
//! remote, clones are the service repositories, and the real `xtask` binary
//! runs as a separate process, as it does in CI.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TempDir, assert_ok, git, stderr, stdout};

/// A bare remote and one clone of it, with a chain of commits on main.
struct Fixture {
    dir: TempDir,
    remote: PathBuf,
    work: PathBuf,
    /// Commits on main, oldest first (full SHAs).
    commits: Vec<String>,
}

const PREPROD_VALUES: &str = "\
# preprod: written by hand, image set by the pipeline.\r
image:\r
  repository: ghcr.io/example/service-demo\r
  tag: \"main-0000000\"   # written by CD\r
  digest: ''\r
\r
env:\r
  ENV_NAME: preprod\r
replicaCount: 2\r
";

const PROD_VALUES: &str = "\
# prod
image:
  repository: ghcr.io/example/service-demo
  tag: v0.0.1 # written by release
  digest: \"\"
env:
  ENV_NAME: prod
";

impl Fixture {
    fn new(commits: usize) -> Self {
        Self::with_prod(commits, PROD_VALUES)
    }

    /// A fixture whose dev and prod values start as `prod` (e.g. the repository's placeholder).
    fn with_prod(commits: usize, prod: &str) -> Self {
        let dir = TempDir::new("gitops");
        let (remote, work) = support::remote_and_clone(dir.path());
        git(&work, &["checkout", "--quiet", "-b", "main"]);
        for (env, text) in [("dev", prod), ("preprod", PREPROD_VALUES), ("prod", prod)] {
            let path = work.join(format!("gitops/values/{env}/service-demo.yaml"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(
                &path,
                text.replace("ENV_NAME: prod", &format!("ENV_NAME: {env}")),
            )
            .unwrap();
        }
        std::fs::create_dir_all(work.join("gitops/values/pr")).unwrap();
        std::fs::write(work.join("gitops/values/pr/.gitkeep"), "").unwrap();
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "-m", "initial values"]);
        let mut fixture = Fixture {
            dir,
            remote,
            work,
            commits: Vec::new(),
        };
        for i in 0..commits {
            fixture.commit(&format!("feature {i}"));
        }
        git(&fixture.work, &["push", "--quiet", "origin", "main"]);
        fixture
    }

    /// A service commit on main (pushed by the caller).
    fn commit(&mut self, message: &str) -> String {
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        self.commits.push(sha.clone());
        sha
    }

    fn xtask_in(&self, repo: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .arg("--repo")
            .arg(repo)
            // Inside Actions these are set; here nothing may reach a registry or GitHub.
            .env_remove("IMAGE_REPOSITORY")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    }

    fn xtask(&self, args: &[&str]) -> Output {
        self.xtask_in(&self.work, args)
    }

    /// A file on the remote's main.
    fn remote_file(&self, path: &str) -> String {
        git(&self.remote, &["show", &format!("main:{path}")])
    }

    fn remote_head(&self) -> String {
        git(&self.remote, &["rev-parse", "main"])
    }

    /// Everything about the clone a command must leave alone.
    fn local_state(&self) -> String {
        let status = git(
            &self.work,
            &["status", "--porcelain", "--untracked-files=all"],
        );
        let refs = git(
            &self.work,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
                "refs/tags",
            ],
        );
        let head = git(&self.work, &["rev-parse", "HEAD"]);
        let files =
            std::fs::read_to_string(self.work.join("gitops/values/preprod/service-demo.yaml"))
                .unwrap();
        format!("{status}\n{refs}\n{head}\n{files}")
    }
}

/// A file on the remote's main, exactly as stored.
fn remote_file_raw(remote: &Path, path: &str) -> String {
    let output = Command::new("git")
        .args(["show", &format!("main:{path}")])
        .current_dir(remote)
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn short(sha: &str) -> &str {
    &sha[..7]
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[test]
fn promotion_changes_exactly_the_tag_and_digest_lines() {
    let f = Fixture::new(2);
    let before = f.local_state();
    let tag = format!("main-{}", short(&f.commits[1]));
    let output = f.xtask(&[
        "promote", "--env", "preprod", "--tag", &tag, "--digest", DIGEST,
    ]);
    assert_ok(&output);
    assert!(stdout(&output).contains("pushed"), "{}", stdout(&output));

    // Byte for byte: the tag and digest values changed; comments, quoting and CRLF did not.
    let expected = PREPROD_VALUES
        .replace("tag: \"main-0000000\"", &format!("tag: \"{tag}\""))
        .replace("digest: ''", &format!("digest: '{DIGEST}'"));
    assert_eq!(
        remote_file_raw(&f.remote, "gitops/values/preprod/service-demo.yaml"),
        expected
    );
    let stat = git(&f.remote, &["diff", "--numstat", "main~1", "main"]);
    assert_eq!(stat, "2\t2\tgitops/values/preprod/service-demo.yaml");
    let message = git(&f.remote, &["log", "-1", "--format=%an <%ae>%n%B", "main"]);
    assert!(message.starts_with(&format!("service-demo-bot <service-demo-bot@users.noreply.github.com>\ncd: promote {tag} to preprod\n")), "{message}");
    assert!(
        message.contains(&format!("Source-Commit: {}", f.commits[1])),
        "{message}"
    );
    assert!(
        message.contains(&format!("Image-Digest: {DIGEST}")),
        "{message}"
    );
    // Only the remote moved: the working tree, index and branches are untouched.
    assert_eq!(f.local_state(), before);

    // Again: a no-op, no commit.
    let head = f.remote_head();
    let output = f.xtask(&[
        "promote", "--env", "preprod", "--tag", &tag, "--digest", DIGEST,
    ]);
    assert_ok(&output);
    assert!(
        stdout(&output).contains("nothing to do"),
        "{}",
        stdout(&output)
    );
    assert_eq!(f.remote_head(), head);
}

#[test]
fn dry_run_prints_the_diff_and_pushes_nothing() {
    let f = Fixture::new(1);
    let head = f.remote_head();
    let tag = format!("main-{}", short(&f.commits[0]));
    let output = f.xtask(&["promote", "--env", "preprod", "--tag", &tag, "--dry-run"]);
    assert_ok(&output);
    let out = stdout(&output);
    assert!(
        out.contains(&format!("+  tag: \"{tag}\"   # written by CD")),
        "{out}"
    );
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(f.remote_head(), head);
}

#[test]
fn an_older_build_is_refused_unless_rollback_is_allowed() {
    let f = Fixture::new(3);
    let newer = format!("main-{}", short(&f.commits[2]));
    let older = format!("main-{}", short(&f.commits[0]));
    assert_ok(&f.xtask(&["promote", "--env", "preprod", "--tag", &newer]));
    let head = f.remote_head();

    let output = f.xtask(&["promote", "--env", "preprod", "--tag", &older]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("refusing") && err.contains("--allow-rollback"),
        "{err}"
    );
    assert_eq!(f.remote_head(), head, "a refusal commits nothing");

    assert_ok(&f.xtask(&[
        "promote",
        "--env",
        "preprod",
        "--tag",
        &older,
        "--allow-rollback",
    ]));
    assert!(
        f.remote_file("gitops/values/preprod/service-demo.yaml")
            .contains(&older)
    );
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let f = Fixture::new(1);
    let head = f.remote_head();
    let tag = format!("main-{}", short(&f.commits[0]));
    let cases: [(&[&str], &str); 5] = [
        (
            &["promote", "--env", "staging", "--tag", &tag],
            "unknown environment \"staging\"",
        ),
        (
            &["promote", "--env", "prod", "--tag", "latest"],
            "malformed image tag \"latest\"",
        ),
        (
            &[
                "promote",
                "--env",
                "prod",
                "--tag",
                &tag,
                "--digest",
                "sha256:12",
            ],
            "malformed digest",
        ),
        (
            &["promote", "--env", "prod", "--tag", "main-abcdef0"],
            "commit abcdef0 is not in this repository",
        ),
        (
            &["rollback", "--env", "prod"],
            "no earlier image to roll back to",
        ),
    ];
    for (args, expected) in cases {
        let output = f.xtask(args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert_eq!(f.remote_head(), head);
}

#[test]
fn a_failed_edit_or_a_refused_push_leaves_everything_as_it_was_and_a_rerun_succeeds() {
    let f = Fixture::new(1);
    let tag = format!("main-{}", short(&f.commits[0]));

    // An edit that cannot be made in place: dev's file lacks the key.
    let dev = f.work.join("gitops/values/dev/service-demo.yaml");
    std::fs::write(&dev, "image:\n  tag: v0.0.1\nenv:\n  ENV_NAME: dev\n").unwrap();
    git(&f.work, &["commit", "--quiet", "-am", "dev without digest"]);
    git(&f.work, &["push", "--quiet", "origin", "main"]);
    let before = f.local_state();
    let head = f.remote_head();
    let output = f.xtask(&[
        "promote",
        "--env",
        "dev",
        "--tag",
        &tag,
        "--digest",
        DIGEST,
        "--allow-rollback",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("add the key to the file first"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        (f.local_state(), f.remote_head()),
        (before.clone(), head.clone())
    );

    // A push the remote refuses for good (a hook), not a race.
    let hook = f.remote.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'protected branch' >&2\nexit 1\n").unwrap();
    make_executable(&hook);
    let output = f.xtask(&["promote", "--env", "preprod", "--tag", &tag]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("refused the push"),
        "{}",
        stderr(&output)
    );
    assert_eq!((f.local_state(), f.remote_head()), (before, head));

    // The fault is fixed: the same command now lands.
    std::fs::remove_file(&hook).unwrap();
    assert_ok(&f.xtask(&["promote", "--env", "preprod", "--tag", &tag]));
    assert!(
        f.remote_file("gitops/values/preprod/service-demo.yaml")
            .contains(&tag)
    );
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What a batch of concurrent promotions did.
#[derive(Debug, Default)]
struct Tally {
    landed: usize,
    refused: usize,
    noop: usize,
}

/// Starts `promote --env preprod` of each build in `builds` at once, in a
/// random order, the one of build `i` in the checkout `checkout(i)` with
/// `extra` arguments; waits for all of them (bounded) and sorts out what each
/// did. Anything but landing, a no-op or a refusal as older fails the test.
fn promote_concurrently(
    f: &Fixture,
    builds: &[usize],
    checkout: impl Fn(usize) -> PathBuf,
    extra: &[&str],
) -> Tally {
    let mut order = builds.to_vec();
    fastrand::shuffle(&mut order);
    let started = Instant::now();
    let children: Vec<_> = order
        .iter()
        .map(|&i| {
            let tag = format!("main-{}", short(&f.commits[i]));
            let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
                .args(["promote", "--env", "preprod", "--tag", &tag])
                .args(["--push-attempts", "100"])
                .args(extra)
                .arg("--repo")
                .arg(checkout(i))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, child)
        })
        .collect();
    let mut tally = Tally::default();
    for (i, output) in wait_all(children, Duration::from_secs(300)) {
        let (out, err) = (stdout(&output), stderr(&output));
        match (output.status.success(), out.as_str(), err.as_str()) {
            (true, out, _) if out.contains("pushed") => tally.landed += 1,
            (true, out, _) if out.contains("nothing to do") => tally.noop += 1,
            (false, _, err) if err.contains("refusing") => tally.refused += 1,
            _ => panic!("promotion of build {i} neither landed nor was refused:\n{out}\n{err}"),
        }
    }
    eprintln!(
        "{} concurrent promotions: {tally:?} in {:?}",
        builds.len(),
        started.elapsed()
    );
    assert_eq!(tally.landed + tally.refused + tally.noop, builds.len());
    assert!(tally.landed >= 1);
    tally
}

/// Waits for every child, killing all of them and failing past `limit`.
fn wait_all(mut pending: Vec<(usize, Child)>, limit: Duration) -> Vec<(usize, Output)> {
    let deadline = Instant::now() + limit;
    let mut done = Vec::new();
    while !pending.is_empty() {
        let mut running = Vec::new();
        for (i, mut child) in pending {
            match child.try_wait().unwrap() {
                Some(_) => done.push((i, child.wait_with_output().unwrap())),
                None => running.push((i, child)),
            }
        }
        pending = running;
        if Instant::now() > deadline {
            for (_, child) in &mut pending {
                let _ = child.kill();
            }
            panic!("{} promotions still running after {limit:?}", pending.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done
}

/// The builds (indexes into `f.commits`) promoted to preprod on `remote`'s
/// main, oldest first, read from the commit subjects that touched `path`.
fn promoted_builds(f: &Fixture, remote: &Path, path: &str) -> Vec<usize> {
    let subjects = git(
        remote,
        &["log", "--reverse", "--format=%s", "main", "--", path],
    );
    subjects
        .lines()
        .filter_map(|s| s.strip_prefix("cd: promote main-"))
        .map(|rest| {
            f.commits
                .iter()
                .position(|c| c.starts_with(&rest[..7]))
                .unwrap()
        })
        .collect()
}

#[test]
fn fifty_concurrent_promotions_end_on_the_newest_build() {
    const N: usize = 50;
    let f = Fixture::new(N);
    // Each CI job has its own checkout.
    let clones: Vec<PathBuf> = (0..N)
        .map(|i| {
            let clone = f.dir.path().join(format!("clone-{i}"));
            git(
                f.dir.path(),
                &[
                    "clone",
                    "--quiet",
                    f.remote.to_str().unwrap(),
                    clone.to_str().unwrap(),
                ],
            );
            clone
        })
        .collect();
    let builds: Vec<usize> = (0..N).collect();
    let tally = promote_concurrently(&f, &builds, |i| clones[i].clone(), &[]);
    let newest = format!("main-{}", short(&f.commits[N - 1]));
    assert!(
        f.remote_file("gitops/values/preprod/service-demo.yaml")
            .contains(&newest)
    );
    // Every landed promotion is in history, and each moved preprod forward.
    let promoted = promoted_builds(&f, &f.remote, "gitops/values/preprod/service-demo.yaml");
    assert_eq!(promoted.len(), tally.landed, "{promoted:?}");
    assert!(
        promoted.windows(2).all(|w| w[0] < w[1]),
        "not monotonic: {promoted:?}"
    );
}

#[test]
fn fifty_concurrent_promotions_in_one_checkout_share_its_gitops_cache() {
    const N: usize = 50;
    let f = Fixture::new(2 * N);
    let gitops_remote = separate_gitops_remote(&f);
    let cache_root = f.work.join(".git/xtask");
    let mut landed = 0;
    // Cold: no cache yet, every process creates it at once. Warm: it exists
    // and every process fetches into it at once.
    for (round, builds) in [("cold", 0..N), ("warm", N..2 * N)] {
        assert_eq!(cache_root.exists(), round == "warm", "{round}");
        let builds: Vec<usize> = builds.collect();
        let tally = promote_concurrently(
            &f,
            &builds,
            |_| f.work.clone(),
            &["--gitops-repo", gitops_remote.to_str().unwrap()],
        );
        landed += tally.landed;
        let newest = format!("main-{}", short(&f.commits[builds[N - 1]]));
        let values = git(
            &gitops_remote,
            &["show", "main:values/preprod/service-demo.yaml"],
        );
        assert!(values.contains(&newest), "{round}: {values}");
        let promoted = promoted_builds(&f, &gitops_remote, "values/preprod/service-demo.yaml");
        assert_eq!(promoted.len(), landed, "{round}: {promoted:?}");
        assert!(
            promoted.windows(2).all(|w| w[0] < w[1]),
            "{round}: not monotonic: {promoted:?}"
        );
    }
    // One cache, and no half-made one left beside it.
    let entries: Vec<String> = std::fs::read_dir(&cache_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with("gitops-"), "{entries:?}");
    assert!(git(&f.work, &["status", "--porcelain"]).is_empty());
}

#[test]
fn preview_deploy_cleanup_and_gc() {
    let f = Fixture::new(1);
    let sha = f.commits[0].clone();
    let output = f.xtask(&["preview", "deploy", "--pr", "7", "--sha", &sha]);
    assert_ok(&output);
    let values = f.remote_file("gitops/values/pr/pr-7/service-demo.yaml");
    assert!(values.contains(&format!("tag: \"pr-7-{sha}\"")), "{values}");
    assert!(
        values.contains("ENV_NAME: \"pr-7\"") && values.contains("SERVICES_NAMESPACE: \"dev\""),
        "{values}"
    );
    assert_eq!(
        git(&f.remote, &["log", "-1", "--format=%s", "main"]),
        format!("ci: deploy pr-7 ({})", short(&sha))
    );
    // Same commit again: no-op.
    assert!(
        stdout(&f.xtask(&["preview", "deploy", "--pr", "7", "--sha", &sha]))
            .contains("nothing to do")
    );

    // Previews of pull request 3 (closed, last changed in 2020) and 5 (closed, just now); 7 is open.
    git(&f.work, &["pull", "--quiet", "origin", "main"]);
    // 3 in the layout before services (a file per pull request), 5 in today's (a folder).
    f.preview_file_dated("gitops/values/pr/pr-3.yaml", Some("2020-01-01T00:00:00Z"));
    f.preview_file_dated("gitops/values/pr/pr-5/service-demo.yaml", None);
    let states = [(3, "closed"), (5, "closed"), (7, "open")];
    let github = support::FakeHttp::start_github(move |request, _| {
        let pr: u64 = request.target.rsplit('/').next().unwrap().parse().unwrap();
        let state = states.iter().find(|(n, _)| *n == pr).unwrap().1;
        let pull = serde_json::json!({"number": pr, "state": state});
        let answer = support::contract::github_answer("GET", &request.target, 200, pull);
        (200, vec![], answer)
    });
    let env = github_env(&github);
    let listed = || {
        git(
            &f.remote,
            &["ls-tree", "-r", "--name-only", "main", "gitops/values/pr/"],
        )
    };

    // Without GitHub, gc cannot tell closed from open: it refuses and changes nothing.
    let before = f.remote_head();
    let refused = support::assert_fails(&f.xtask(&["preview", "gc"]));
    assert!(
        refused.contains("set GITHUB_TOKEN and GITHUB_REPOSITORY"),
        "{refused}"
    );
    assert_eq!(f.remote_head(), before);

    // Closed and unchanged for 72 hours: only 3.
    assert_ok(&f.xtask_env(&["preview", "gc", "--max-age", "72h"], &env));
    let files = listed();
    assert!(
        !files.contains("pr-3.yaml")
            && files.contains("pr-5/service-demo.yaml")
            && files.contains("pr-7/service-demo.yaml"),
        "{files}"
    );
    // Closed: 5 too; the open pull request's preview stays.
    assert_ok(&f.xtask_env(&["preview", "gc"], &env));
    let files = listed();
    assert!(
        !files.contains("pr-5/") && files.contains("pr-7/service-demo.yaml"),
        "{files}"
    );
    assert!(stdout(&f.xtask_env(&["preview", "gc"], &env)).contains("nothing to do"));
    let asked: Vec<String> = github
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    let pulls = |n: &[u64]| {
        n.iter()
            .map(|n| format!("GET /repos/acme/service-demo/pulls/{n}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        asked,
        [pulls(&[3, 5, 7]), pulls(&[5, 7]), pulls(&[7])].concat()
    );
    assert!(
        github
            .requests()
            .iter()
            .all(|r| r.headers["authorization"] == format!("Bearer {GITHUB_TOKEN}"))
    );

    assert_ok(&f.xtask(&["preview", "cleanup", "--pr", "7"]));
    let files = git(
        &f.remote,
        &["ls-tree", "--name-only", "main", "gitops/values/pr/"],
    );
    assert!(!files.contains("pr-7"), "{files}");
    assert_eq!(
        git(&f.remote, &["log", "-1", "--format=%s", "main"]),
        "ci: remove preview pr-7"
    );
    assert!(stdout(&f.xtask(&["preview", "cleanup", "--pr", "7"])).contains("nothing to do"));
}

/// `preview deploy --label preview` asks GitHub about the pull request and
/// writes the values file only for an open one of this repository, labelled,
/// whose head is --sha; every other answer changes nothing and tells the
/// workflow (`deployed=false` in GITHUB_OUTPUT).
#[test]
fn preview_deploy_only_for_an_open_labelled_pull_request_of_this_repository() {
    let f = Fixture::new(1);
    let sha = f.commits[0].clone();
    let answer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let served = answer.clone();
    let github = support::FakeHttp::start_github(move |request, _| {
        let pull = serde_json::from_str(&served.lock().unwrap()).unwrap();
        let answer = support::contract::github_answer("GET", &request.target, 200, pull);
        (200, vec![], answer)
    });
    let pull = |state: &str, repo: &str, label: &str, head: &str| {
        format!(
            r#"{{"number": 7, "state": "{state}", "labels": [{{"name": "{label}"}}], "head": {{"sha": "{head}", "repo": {{"full_name": "{repo}"}}}}}}"#
        )
    };
    let output_file = f.dir.path().join("github-output");
    let mut env = github_env(&github);
    env.push(("GITHUB_OUTPUT", output_file.display().to_string()));
    let deploy = [
        "preview", "deploy", "--pr", "7", "--sha", &sha, "--digest", DIGEST, "--label", "preview",
    ];
    let other = "0123456789abcdef0123456789abcdef01234567";
    let refusals = [
        (
            pull("closed", "acme/service-demo", "preview", &sha),
            "it is \"closed\"",
        ),
        (
            pull("open", "mallory/service-demo", "preview", &sha),
            "it comes from mallory/service-demo",
        ),
        (
            pull("open", "acme/service-demo", "bug", &sha),
            "it has no \"preview\" label",
        ),
        (
            pull("open", "acme/service-demo", "preview", other),
            "its head is now 0123456",
        ),
    ];
    let before = f.remote_head();
    for (pull, reason) in refusals {
        *answer.lock().unwrap() = pull;
        let output = f.xtask_env(&deploy, &env);
        assert_ok(&output);
        assert!(
            stdout(&output).contains(reason),
            "{reason}: {}",
            stdout(&output)
        );
        assert_eq!(f.remote_head(), before, "{reason}: the GitOps branch moved");
        let written = std::fs::read_to_string(&output_file).unwrap();
        assert!(written.ends_with("deployed=false\n"), "{written}");
    }
    *answer.lock().unwrap() = pull("open", "acme/service-demo", "preview", &sha);
    assert_ok(&f.xtask_env(&deploy, &env));
    assert!(
        f.remote_file("gitops/values/pr/pr-7/service-demo.yaml")
            .contains(&format!("pr-7-{sha}"))
    );
    assert!(
        std::fs::read_to_string(&output_file)
            .unwrap()
            .ends_with("deployed=true\n")
    );
    for request in github.requests() {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("GET", "/repos/acme/service-demo/pulls/7")
        );
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {GITHUB_TOKEN}")
        );
    }
    assert_eq!(github.requests().len(), 5);
    // In Actions without a token, the label cannot be checked: refused, nothing written.
    let head = f.remote_head();
    let message = support::assert_fails(&f.xtask_env(&deploy, &[("GITHUB_ACTIONS", "true")]));
    assert!(message.contains("--label needs GITHUB_TOKEN"), "{message}");
    assert_eq!(f.remote_head(), head);
}

/// After the first release, prod's history holds only the placeholder the repository starts with
/// (`v0.0.0`, no digest): a rollback to it would leave prod running nothing, so it is refused and
/// nothing is pushed.
#[test]
fn the_first_release_is_never_rolled_back_to_the_placeholder() {
    let f = Fixture::with_prod(1, &PROD_VALUES.replace("tag: v0.0.1", "tag: \"v0.0.0\""));
    git(&f.work, &["tag", "v0.1.0", &f.commits[0]]);
    assert_ok(&f.xtask(&[
        "promote", "--env", "prod", "--tag", "v0.1.0", "--digest", DIGEST,
    ]));
    let head = f.remote_head();
    let output = f.xtask(&["rollback", "--env", "prod"]);
    let message = support::assert_fails(&output);
    assert!(
        message.contains("no earlier image to roll back to")
            && message.contains("v0.1.0 is the first build"),
        "{message}"
    );
    assert!(
        !message.contains("v0.0.0"),
        "the placeholder is not offered: {message}"
    );
    assert_eq!(f.remote_head(), head, "a refused rollback pushes nothing");
    let output = f.xtask(&["rollback", "--env", "prod", "--to", "v0.0.0"]);
    assert!(support::assert_fails(&output).contains("never ran v0.0.0"));
    assert_eq!(f.remote_head(), head);
}

#[test]
fn rollback_status_and_trace_on_a_scripted_history() {
    let f = Fixture::new(2);
    // Two releases: tags in the service repo name their commits.
    git(&f.work, &["tag", "v0.1.0", &f.commits[0]]);
    git(&f.work, &["tag", "v0.2.0", &f.commits[1]]);
    let digest_1 = DIGEST;
    let digest_2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let main_1 = format!("main-{}", short(&f.commits[0]));
    assert_ok(&f.xtask(&[
        "promote", "--env", "preprod", "--tag", &main_1, "--digest", digest_1,
    ]));
    assert_ok(&f.xtask(&[
        "promote", "--env", "prod", "--tag", "v0.1.0", "--digest", digest_1,
    ]));
    assert_ok(&f.xtask(&[
        "promote", "--env", "prod", "--tag", "v0.2.0", "--digest", digest_2,
    ]));

    // Back to the previous release, digest and all, as a new commit.
    let output = f.xtask(&["rollback", "--env", "prod"]);
    assert_ok(&output);
    let prod = f.remote_file("gitops/values/prod/service-demo.yaml");
    assert!(
        prod.contains("tag: v0.1.0 # written by release") && prod.contains(digest_1),
        "{prod}"
    );
    let subject = git(&f.remote, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "cd: rollback prod to v0.1.0 (from v0.2.0)");
    // Forward again by name; a tag prod never ran is refused.
    assert_ok(&f.xtask(&["rollback", "--env", "prod", "--to", "v0.2.0"]));
    assert!(
        f.remote_file("gitops/values/prod/service-demo.yaml")
            .contains(digest_2)
    );
    let output = f.xtask(&["rollback", "--env", "prod", "--to", "v9.9.9"]);
    assert!(
        !output.status.success() && stderr(&output).contains("never ran v9.9.9"),
        "{}",
        stderr(&output)
    );

    let output = f.xtask(&["status", "--json"]);
    assert_ok(&output);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let row = |env: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["env"] == env)
            .unwrap()
            .clone()
    };
    assert_eq!(row("prod")["tag"], "v0.2.0");
    assert_eq!(row("prod")["digest"], digest_2);
    assert_eq!(row("prod")["source_commit"], f.commits[1].as_str());
    assert_eq!(row("prod")["promoted_by"], f.remote_head().as_str());
    assert_eq!(row("preprod")["tag"], main_1.as_str());
    assert_eq!(row("preprod")["source_commit"], f.commits[0].as_str());
    assert_eq!(row("dev")["tag"], "v0.0.1");
    let table = stdout(&f.xtask(&["status"]));
    assert!(
        table.contains("| prod | v0.2.0 | sha256:222222222222 |"),
        "{table}"
    );

    // main-<sha1> and v0.1.0 are the same bits (same digest).
    let output = f.xtask(&["trace", &main_1]);
    assert_ok(&output);
    let out = stdout(&output);
    assert!(
        out.contains("same bits under tags: main-") && out.contains("v0.1.0"),
        "{out}"
    );
    assert!(
        out.contains(&format!("preprod ({main_1})")) && !out.contains("prod (v0.2.0)"),
        "{out}"
    );
}

#[test]
fn values_set_edits_a_local_file_in_place() {
    let f = Fixture::new(0);
    let file = f.work.join("gitops/values/preprod/service-demo.yaml");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["values", "set"])
        .arg(&file)
        .arg(".replicaCount = 3")
        .output()
        .unwrap();
    assert_ok(&output);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        PREPROD_VALUES.replace("replicaCount: 2", "replicaCount: 3")
    );
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["values", "set"])
        .arg(&file)
        .arg(".image.extra = 1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        PREPROD_VALUES.replace("replicaCount: 2", "replicaCount: 3")
    );
}

/// A separate GitOps repository (bare, beside the fixture's remote) with
/// the preprod values at its root.
fn separate_gitops_remote(f: &Fixture) -> PathBuf {
    let gitops_remote = f.dir.path().join("gitops.git");
    git(
        f.dir.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            gitops_remote.to_str().unwrap(),
        ],
    );
    let seed = f.dir.path().join("gitops-seed");
    git(
        f.dir.path(),
        &[
            "clone",
            "--quiet",
            gitops_remote.to_str().unwrap(),
            seed.to_str().unwrap(),
        ],
    );
    git(&seed, &["checkout", "--quiet", "-b", "main"]);
    std::fs::create_dir_all(seed.join("values/preprod")).unwrap();
    std::fs::write(
        seed.join("values/preprod/service-demo.yaml"),
        PREPROD_VALUES,
    )
    .unwrap();
    git(&seed, &["add", "--all"]);
    git(&seed, &["commit", "--quiet", "-m", "values"]);
    git(&seed, &["push", "--quiet", "origin", "main"]);
    gitops_remote
}

#[test]
fn gitops_files_can_live_in_another_repository() {
    let f = Fixture::new(1);
    let gitops_remote = separate_gitops_remote(&f);
    let service_head = f.remote_head();
    let tag = format!("main-{}", short(&f.commits[0]));
    let output = f.xtask(&[
        "promote",
        "--env",
        "preprod",
        "--tag",
        &tag,
        "--gitops-repo",
        gitops_remote.to_str().unwrap(),
    ]);
    assert_ok(&output);
    let values = git(
        &gitops_remote,
        &["show", "main:values/preprod/service-demo.yaml"],
    );
    assert!(values.contains(&format!("tag: \"{tag}\"")), "{values}");
    assert_eq!(
        f.remote_head(),
        service_head,
        "the service repository's remote is not touched"
    );
    assert!(git(&f.work, &["status", "--porcelain"]).is_empty());
}

const GITHUB_TOKEN: &str = "ghs_fake-token-for-tests";

/// The settings that point xtask at a fake GitHub API for acme/service-demo.
fn github_env(fake: &support::FakeHttp) -> Vec<(&'static str, String)> {
    vec![
        ("GITHUB_TOKEN", GITHUB_TOKEN.to_owned()),
        ("GITHUB_REPOSITORY", "acme/service-demo".to_owned()),
        ("GITHUB_API_URL", fake.url()),
    ]
}

impl Fixture {
    /// A preview values file `file`, committed (at `date` when given) and pushed.
    fn preview_file_dated(&self, file: &str, date: Option<&str>) {
        let path = self.work.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "image:\n  tag: old\n  digest: ''\n").unwrap();
        git(&self.work, &["add", "--all"]);
        let mut commit = Command::new("git");
        commit
            .args(["commit", "--quiet", "-m", &format!("preview {file}")])
            .current_dir(&self.work)
            .envs([("GIT_AUTHOR_NAME", "a"), ("GIT_AUTHOR_EMAIL", "a@b")])
            .envs([("GIT_COMMITTER_NAME", "a"), ("GIT_COMMITTER_EMAIL", "a@b")]);
        if let Some(date) = date {
            commit.envs([("GIT_AUTHOR_DATE", date), ("GIT_COMMITTER_DATE", date)]);
        }
        assert!(commit.output().unwrap().status.success());
        git(&self.work, &["push", "--quiet", "origin", "main"]);
    }

    /// `xtask` in the fixture's checkout, with extra environment.
    fn xtask_env<K: AsRef<std::ffi::OsStr>, V: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[&str],
        envs: &[(K, V)],
    ) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .arg("--repo")
            .arg(&self.work)
            .env_remove("IMAGE_REPOSITORY")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_ACTIONS")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }
}

#[test]
fn a_remote_or_branch_that_git_would_read_as_an_option_is_refused_and_runs_nothing() {
    let f = Fixture::new(1);
    let (before, head) = (f.local_state(), f.remote_head());
    let planted = f.dir.path().join("planted");
    let upload_pack = format!("--upload-pack=touch {}", planted.display());
    let tag = format!("main-{}", short(&f.commits[0]));
    let promote: &[&str] = &["promote", "--env", "preprod", "--tag", &tag];
    let elsewhere = f.dir.path().join("elsewhere.git");
    let status_elsewhere: &[&str] = &["status", "--gitops-repo", elsewhere.to_str().unwrap()];
    let cases: [(&[&str], &str, &str); 6] = [
        (&["status"], "GITOPS_REPO", &upload_pack),
        // Release and the gate notes fetch from the remote even then.
        (status_elsewhere, "GITOPS_REMOTE", &upload_pack),
        (promote, "GITOPS_REPO", &upload_pack),
        (&["status"], "GITOPS_REMOTE", &upload_pack),
        (promote, "GITOPS_REMOTE", &upload_pack),
        (promote, "GITOPS_BRANCH", "--output=planted"),
    ];
    for (args, variable, value) in cases {
        let output = f.xtask_env(args, &[(variable, value)]);
        let err = stderr(&output);
        assert!(!output.status.success(), "{args:?} {variable}: {err}");
        assert!(
            err.contains("begins with '-', which git would read as an option")
                && err.contains(variable),
            "{args:?} {variable}: {err}"
        );
        assert!(!planted.exists(), "{args:?} {variable}: git ran the option");
        assert!(!f.work.join(".git/xtask").exists(), "{args:?} {variable}");
        assert!(!f.work.join("planted").exists());
        assert_eq!(
            (f.local_state(), f.remote_head()),
            (before.clone(), head.clone())
        );
    }
}

/// Standard base64 (for an HTTP Basic header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bytes
        .chunks(3)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            (0..4).map(move |i| match i <= chunk.len() {
                true => ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char,
                false => '=',
            })
        })
        .collect()
}

/// Every path under `dir`, recursively.
fn all_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths
}

/// The git host is GitHub in production; this fake of its smart-HTTP endpoint
/// asks for credentials, records what it is sent, and refuses.
#[test]
fn a_token_in_the_gitops_url_reaches_git_only_as_a_credential_never_printed_or_in_a_path() {
    let f = Fixture::new(1);
    let token = "ghp_S3cretT0ken-do-not-print";
    // Git's smart HTTP, not GitHub's REST API: no description to check it against.
    let server = support::FakeHttp::start(|request, _| {
        if request.headers.contains_key("authorization") {
            (403, vec![], "{}".to_owned())
        } else {
            let challenge = (
                "WWW-Authenticate".to_owned(),
                "Basic realm=\"git\"".to_owned(),
            );
            (401, vec![challenge], "{}".to_owned())
        }
    });
    let url = format!("http://bot:{token}@{}/o/gitops.git", server.addr);
    // A cache an earlier version named after the URL, token and all, goes.
    let readable = url.replace(
        |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
        "_",
    );
    let tail = &readable[readable.len() - 60..];
    let leaked = f.work.join(".git/xtask").join(format!("gitops-{tail}"));
    std::fs::create_dir_all(&leaked).unwrap();
    let head = f.remote_head();
    let tag = format!("main-{}", short(&f.commits[0]));
    for args in [
        &["status"][..],
        &["promote", "--env", "preprod", "--tag", &tag],
    ] {
        let output = f.xtask_env(args, &[("GITOPS_REPO", &url)]);
        let message = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!output.status.success(), "{message}");
        assert!(!message.contains(token), "the token leaked: {message}");
        assert!(
            message.contains(&format!(
                "cannot fetch main from http://{}/o/gitops.git",
                server.addr
            )),
            "{message}"
        );
    }
    for path in all_paths(&f.work.join(".git")) {
        let path = path.display().to_string();
        assert!(!path.contains(token) && !path.contains("bot"), "{path}");
    }
    // git sent the credentials only in the Authorization header it was asked for.
    let requests = server.requests();
    let basic = format!("Basic {}", base64(format!("bot:{token}").as_bytes()));
    assert!(
        requests
            .iter()
            .any(|r| r.headers.get("authorization") == Some(&basic)),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.target.contains(token)),
        "{requests:?}"
    );
    assert_eq!(f.remote_head(), head);
}

#[test]
fn a_ref_locked_by_another_git_is_waited_out() {
    let f = Fixture::new(1);
    let tag = format!("main-{}", short(&f.commits[0]));
    // A git run by hand holds the lock of the ref promotions fetch into.
    let lock = f.work.join(".git/refs/xtask/gitops/main.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["promote", "--env", "preprod", "--tag", &tag, "--repo"])
        .arg(&f.work)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&lock).unwrap();
    let [(_, output)] = wait_all(vec![(0, child)], Duration::from_secs(60))
        .try_into()
        .unwrap();
    assert_ok(&output);
    assert!(
        f.remote_file("gitops/values/preprod/service-demo.yaml")
            .contains(&tag)
    );
}

#[test]
fn a_pull_request_build_never_reaches_preprod_or_prod_by_promote_or_rollback() {
    let f = Fixture::new(2);
    let pr = format!("pr-9-{}", short(&f.commits[1]));
    let head = f.remote_head();
    for env in ["preprod", "prod"] {
        for extra in [&[][..], &["--allow-rollback"][..]] {
            let mut args = vec!["promote", "--env", env, "--tag", &pr];
            args.extend_from_slice(extra);
            let output = f.xtask(&args);
            assert!(!output.status.success(), "{args:?} went through");
            let err = stderr(&output);
            assert!(
                err.contains(&format!("refusing to deploy {pr} to {env}"))
                    && err.contains("runs only reviewed code"),
                "{err}"
            );
        }
    }
    assert_eq!(f.remote_head(), head, "a refusal commits nothing");
    // dev may run it (the tutorial's "try it in dev" path).
    assert_ok(&f.xtask(&["promote", "--env", "dev", "--tag", &pr]));
}

#[test]
fn every_pipeline_commit_carries_a_record_of_what_it_moved() {
    let f = Fixture::new(2);
    let tag = format!("main-{}", short(&f.commits[1]));
    assert_ok(&f.xtask(&[
        "promote", "--env", "preprod", "--tag", &tag, "--digest", DIGEST,
    ]));
    assert_ok(&f.xtask(&[
        "preview",
        "deploy",
        "--pr",
        "4",
        "--sha",
        &f.commits[1],
        "--digest",
        DIGEST,
    ]));
    assert_ok(&f.xtask(&["preview", "cleanup", "--pr", "4"]));
    let messages = git(&f.remote, &["log", "--format=%B%x1e", "-3", "main"]);
    let records: Vec<&str> = messages
        .split('\x1e')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    assert_eq!(records.len(), 3, "{messages}");
    assert!(
        records[0].starts_with("ci: remove preview pr-4\n\nEnvironment: pr-4"),
        "{}",
        records[0]
    );
    assert!(
        records[1].starts_with("ci: deploy pr-4 (")
            && records[1].contains("\nEnvironment: pr-4\nImage-Tag: pr-4-")
            && records[1].contains(&format!("Image-Digest: {DIGEST}")),
        "{}",
        records[1]
    );
    assert!(
        records[2].starts_with(&format!("cd: promote {tag} to preprod\n\nEnvironment: preprod\nImage-Tag: {tag}\nImage-Digest: {DIGEST}\nSource-Commit: {}", f.commits[1])),
        "{}",
        records[2]
    );
}

/// As actions/checkout leaves a job with `ssh-key: secrets.GITOPS_DEPLOY_KEY`
/// and `persist-credentials: true`: origin is an ssh URL and `core.sshCommand`
/// names the key. promote fetches and pushes through that command (here a
/// stand-in for ssh that records its arguments and runs git's remote command
/// on the bare repository), with nothing else configured.
#[test]
fn promotion_pushes_over_an_ssh_origin_with_the_checkouts_ssh_command() {
    let f = Fixture::new(1);
    let (ssh, log) = (f.dir.path().join("fake-ssh"), f.dir.path().join("ssh.log"));
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nfor last; do :; done\nexec sh -c \"$last\"\n",
        log.display()
    );
    std::fs::write(&ssh, script).unwrap();
    make_executable(&ssh);
    let url = format!("ssh://git@github.com{}", f.remote.display());
    git(&f.work, &["remote", "set-url", "origin", &url]);
    let command = format!("{} -i /runner/temp/deploy_key", ssh.display());
    git(&f.work, &["config", "core.sshCommand", &command]);

    let tag = format!("main-{}", short(&f.commits[0]));
    let output = f.xtask(&[
        "promote", "--env", "preprod", "--tag", &tag, "--digest", DIGEST,
    ]);
    assert_ok(&output);
    assert!(
        f.remote_file("gitops/values/preprod/service-demo.yaml")
            .contains(&tag),
        "the promotion did not reach the remote"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let remote = f.remote.display();
    for expected in [
        format!("-i /runner/temp/deploy_key git@github.com git-upload-pack '{remote}'"),
        format!("-i /runner/temp/deploy_key git@github.com git-receive-pack '{remote}'"),
    ] {
        assert!(calls.contains(&expected), "no {expected:?} in:\n{calls}");
    }
}
