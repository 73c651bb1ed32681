//! Promotion, rollback, previews, release and status over a workspace of
//! several services: a real git workspace (generated services with their
//! declarations) whose bare remote is the GitOps branch, OCI layout
//! directories as the image repositories, and the real `xtask` binary.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{TempDir, assert_fails, assert_ok, git, stdout, xtask_in};

const ENVS: [&str; 3] = ["dev", "preprod", "prod"];

/// A workspace of `count` services with values in every environment, pushed
/// to a bare remote, and a chain of service commits on main.
struct Workspace {
    dir: TempDir,
    remote: PathBuf,
    work: PathBuf,
    services: Vec<String>,
    /// Commits on main, oldest first.
    commits: Vec<String>,
}

fn values(service: &str, env: &str) -> String {
    format!(
        "# {service} in {env}\nimage:\n  repository: ghcr.io/example/{service}\n  tag: v0.1.0 # set by CD\n  \
         digest: \"\"\nenv:\n  ENV_NAME: {env}\n"
    )
}

impl Workspace {
    fn new(count: usize) -> Self {
        let dir = TempDir::new("promotion-sets");
        let (remote, work) = support::remote_and_clone(dir.path());
        let services = support::write_generated_services(&work, count, "charts/shared");
        for service in &services {
            for env in ENVS {
                let path = work.join(format!("gitops/values/{env}/{service}.yaml"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, values(service, env)).unwrap();
            }
        }
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "-m", "a workspace"]);
        git(&work, &["tag", "--annotate", "v0.1.0", "-m", "v0.1.0"]);
        let mut workspace = Self {
            dir,
            remote,
            work,
            services,
            commits: Vec::new(),
        };
        workspace.commit("feat: one");
        workspace.commit("feat: two");
        git(
            &workspace.work,
            &["push", "--quiet", "--follow-tags", "origin", "main"],
        );
        workspace
    }

    fn commit(&mut self, message: &str) -> String {
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        let sha = git(&self.work, &["rev-parse", "HEAD"]);
        self.commits.push(sha.clone());
        sha
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        xtask_in(&self.work, args, &[])
    }

    fn file(&self, path: &str) -> String {
        git(&self.remote, &["show", &format!("main:gitops/{path}")])
    }

    fn head(&self) -> String {
        git(&self.remote, &["rev-parse", "main"])
    }

    fn message(&self) -> String {
        git(&self.remote, &["log", "-1", "--format=%B", "main"])
    }

    /// Files the newest GitOps commit changed.
    fn changed(&self) -> Vec<String> {
        git(
            &self.remote,
            &["diff", "--name-only", "main~1", "main", "--", "gitops"],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn main_tag(&self, i: usize) -> String {
        format!("main-{}", &self.commits[i])
    }

    /// The OCI layout directory holding every service's image repository.
    fn registry(&self) -> String {
        format!("oci:{}", self.dir.path().join("images").display())
    }

    /// [`Self::push`], then `promote --env preprod` of that service to it
    /// (its digest resolved in the registry); returns the digest.
    fn ship_to_preprod(&self, service: &str, tag: &str) -> String {
        let digest = self.push(service, tag);
        let registry = self.registry();
        let promote = [
            "promote",
            "--env",
            "preprod",
            "--tag",
            tag,
            "--registry",
            &registry,
        ];
        assert_ok(&self.run(&args(&[service], &promote)));
        digest
    }

    /// Pushes a stand-in image of `service` as `tag`; returns its digest.
    fn push(&self, service: &str, tag: &str) -> String {
        let repository = format!("{}/{service}", self.registry());
        // `image build` tags only this workspace's HEAD; the build is then named `tag`.
        let built = format!("pr-{}-{}", fastrand::u32(1..), support::head());
        let content = format!("{service} {tag}");
        assert_ok(&support::push_stand_in(
            self.dir.path(),
            &repository,
            &content,
            &built,
            &[],
        ));
        let retag = ["image", "retag", &built, tag, "--repository", &repository];
        assert_ok(&support::xtask(&retag, &[]));
        support::image_digest(&repository, tag).unwrap()
    }
}

fn args<'a>(services: &'a [&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = rest.to_vec();
    for service in services {
        args.extend(["--service", service]);
    }
    args
}

#[test]
fn a_set_of_services_is_promoted_in_one_commit_and_dry_run_shows_every_file() {
    let ws = Workspace::new(3);
    let tag = ws.main_tag(1);
    let before = ws.head();
    let promote = args(
        &["svc-00", "svc-02"],
        &["promote", "--env", "preprod", "--tag", &tag],
    );
    let mut dry = promote.clone();
    dry.push("--dry-run");
    let out = stdout(&ws.run(&dry));
    for service in ["svc-00", "svc-02"] {
        assert!(
            out.contains(&format!("b/gitops/values/preprod/{service}.yaml"))
                && out.contains(&format!("+  tag: {tag} # set by CD")),
            "{out}"
        );
    }
    assert_eq!(ws.head(), before, "a dry run pushed");

    assert_ok(&ws.run(&promote));
    assert_eq!(git(&ws.remote, &["rev-parse", "main~1"]), before);
    assert_eq!(
        ws.changed(),
        [
            "gitops/values/preprod/svc-00.yaml",
            "gitops/values/preprod/svc-02.yaml"
        ]
    );
    for service in ["svc-00", "svc-02"] {
        let file = ws.file(&format!("values/preprod/{service}.yaml"));
        assert!(file.contains(&format!("tag: {tag} # set by CD")), "{file}");
    }
    assert!(
        ws.file("values/preprod/svc-01.yaml")
            .contains("tag: v0.1.0")
    );
    let message = ws.message();
    assert_eq!(
        message,
        format!(
            "cd: promote svc-00, svc-02 to {tag} in preprod\n\n\
             Service: svc-00\nEnvironment: preprod\nImage-Tag: {tag}\nSource-Commit: {sha}\n\
             Service: svc-02\nEnvironment: preprod\nImage-Tag: {tag}\nSource-Commit: {sha}",
            sha = ws.commits[1]
        )
    );
    // Again: every service already runs it, no commit.
    let again = ws.run(&promote);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(git(&ws.remote, &["rev-parse", "main~1"]), before);
}

#[test]
fn one_refused_move_in_a_set_changes_nothing_and_names_the_service() {
    let ws = Workspace::new(3);
    let (older, newer) = (ws.main_tag(0), ws.main_tag(1));
    assert_ok(&ws.run(&args(
        &["svc-01"],
        &["promote", "--env", "preprod", "--tag", &newer],
    )));
    let before = ws.head();
    // svc-00 could move, svc-01 would go back to an older build: neither moves.
    let error = assert_fails(&ws.run(&args(
        &["svc-00", "svc-01"],
        &["promote", "--env", "preprod", "--tag", &older],
    )));
    assert!(
        error.contains("svc-01: refused") && error.contains("an ancestor of"),
        "{error}"
    );
    assert_eq!(ws.head(), before);
    assert!(
        ws.file("values/preprod/svc-00.yaml")
            .contains("tag: v0.1.0")
    );
    // A pull request's build in preprod is refused for the set as well.
    let pr = format!("pr-3-{}", ws.commits[1]);
    let error = assert_fails(&ws.run(&args(
        &["svc-00", "svc-02"],
        &["promote", "--env", "preprod", "--tag", &pr],
    )));
    assert!(error.contains("runs only reviewed code"), "{error}");
    assert_eq!(ws.head(), before);
}

#[test]
fn unknown_services_unnamed_sets_and_escaping_values_files_are_refused() {
    let mut ws = Workspace::new(2);
    let tag = ws.main_tag(1);
    let before = ws.head();
    let error = assert_fails(&ws.run(&args(
        &["svc-00", "billing"],
        &["promote", "--env", "dev", "--tag", &tag],
    )));
    assert!(
        error.contains("no service \"billing\"") && error.contains("svc-00, svc-01"),
        "{error}"
    );
    let error = assert_fails(&ws.run(&["promote", "--env", "dev", "--tag", &tag]));
    assert!(
        error.contains("name the ones to act on with --service"),
        "{error}"
    );
    let error = assert_fails(&ws.run(&args(
        &["svc-00", "svc-01"],
        &[
            "promote",
            "--env",
            "dev",
            "--tag",
            &tag,
            "--digest",
            &format!("sha256:{}", "1".repeat(64)),
        ],
    )));
    assert!(error.contains("--digest names one image"), "{error}");
    // A declaration whose values file leaves its environment's folder.
    let declaration = ws.work.join("services/svc-01/service.toml");
    let text = std::fs::read_to_string(&declaration).unwrap();
    std::fs::write(
        &declaration,
        text.replace(
            "values-file = \"svc-01.yaml\"",
            "values-file = \"../prod/svc-01.yaml\"",
        ),
    )
    .unwrap();
    ws.commit("chore: a bad declaration");
    let error = assert_fails(&ws.run(&args(
        &["svc-01"],
        &["promote", "--env", "dev", "--tag", &tag],
    )));
    assert!(
        error.contains("values-file \"../prod/svc-01.yaml\" must be a file name"),
        "{error}"
    );
    assert_eq!(ws.head(), before, "a refused promotion changed the branch");
}

#[test]
fn rollback_moves_back_one_service_only() {
    let ws = Workspace::new(2);
    let (first, second) = (ws.main_tag(0), ws.main_tag(1));
    for tag in [&first, &second] {
        assert_ok(&ws.run(&args(
            &["svc-00", "svc-01"],
            &["promote", "--env", "preprod", "--tag", tag],
        )));
    }
    assert_ok(&ws.run(&args(&["svc-00"], &["rollback", "--env", "preprod"])));
    assert_eq!(ws.changed(), ["gitops/values/preprod/svc-00.yaml"]);
    assert!(ws.file("values/preprod/svc-00.yaml").contains(&first));
    assert!(ws.file("values/preprod/svc-01.yaml").contains(&second));
    let message = ws.message();
    assert!(
        message.starts_with(&format!(
            "cd: rollback svc-00 preprod to {first} (from {second})\n\nService: svc-00\n"
        )),
        "{message}"
    );
    let error = assert_fails(&ws.run(&args(
        &["svc-00", "svc-01"],
        &["rollback", "--env", "preprod"],
    )));
    assert!(error.contains("one service at a time"), "{error}");
}

#[test]
fn previews_are_a_folder_per_pull_request_removed_in_one_commit() {
    let ws = Workspace::new(3);
    let sha = &ws.commits[1];
    let deploy = args(
        &["svc-00", "svc-01"],
        &["preview", "deploy", "--pr", "7", "--sha", sha],
    );
    assert_ok(&ws.run(&deploy));
    assert_eq!(
        ws.changed(),
        [
            "gitops/values/pr/pr-7/svc-00.yaml",
            "gitops/values/pr/pr-7/svc-01.yaml"
        ]
    );
    let file = ws.file("values/pr/pr-7/svc-01.yaml");
    assert!(
        file.contains(&format!("tag: \"pr-7-{sha}\"")) && file.contains("ENV_NAME: \"pr-7\""),
        "{file}"
    );
    assert_ok(&ws.run(&args(
        &["svc-02"],
        &["preview", "deploy", "--pr", "8", "--sha", sha],
    )));
    let status = stdout(&ws.run(&["status"]));
    assert!(
        status.contains("| svc-00 | v0.1.0 | v0.1.0 | v0.1.0 | 1 (pr-7) |")
            && status.contains("| svc-02 | v0.1.0 | v0.1.0 | v0.1.0 | 1 (pr-8) |"),
        "{status}"
    );

    assert_ok(&ws.run(&["preview", "cleanup", "--pr", "7"]));
    assert_eq!(
        ws.changed(),
        [
            "gitops/values/pr/pr-7/svc-00.yaml",
            "gitops/values/pr/pr-7/svc-01.yaml"
        ]
    );
    let left = git(
        &ws.remote,
        &["ls-tree", "-r", "--name-only", "main", "gitops/values/pr/"],
    );
    assert_eq!(left, "gitops/values/pr/pr-8/svc-02.yaml");
    assert!(ws.message().contains("Environment: pr-7"));
    let again = ws.run(&["preview", "cleanup", "--pr", "7"]);
    assert!(
        stdout(&again).contains("has no preview"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn status_is_a_service_by_environment_matrix_and_trace_answers_per_service() {
    let ws = Workspace::new(2);
    let digest = ws.push("svc-00", &ws.main_tag(1));
    ws.push("svc-01", &ws.main_tag(1));
    let (registry, tag) = (ws.registry(), ws.main_tag(1));
    let promote = args(
        &["svc-00", "svc-01"],
        &[
            "promote",
            "--env",
            "preprod",
            "--tag",
            &tag,
            "--registry",
            &registry,
        ],
    );
    assert_ok(&ws.run(&promote));
    // Each service's digest, resolved in its own repository.
    assert!(ws.message().contains(&format!(
        "Service: svc-00\nEnvironment: preprod\nImage-Tag: {}\nImage-Digest: {digest}",
        ws.main_tag(1)
    )));
    let svc_01 = ws.file("values/preprod/svc-01.yaml");
    assert!(
        !svc_01.contains(&digest) && svc_01.contains("digest: \"sha256:"),
        "{svc_01}"
    );

    let table = stdout(&ws.run(&["status"]));
    let short = &digest[..19];
    assert!(
        table.contains("| service | dev | preprod | prod | previews |")
            && table.contains(&format!(
                "| svc-00 | v0.1.0 | {}@{short} | v0.1.0 | 0 |",
                ws.main_tag(1)
            )),
        "{table}"
    );
    let json = ws.run(&["status", "--json", "--service", "svc-01"]);
    assert_ok(&json);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["service"] == "svc-01"));
    let preprod = rows.iter().find(|r| r["env"] == "preprod").unwrap();
    assert_eq!(preprod["source_commit"], ws.commits[1].as_str());
    assert_eq!(preprod["promoted_by"], ws.head().as_str());

    let trace = stdout(&ws.run(&["trace", &ws.main_tag(1)]));
    assert!(
        trace.contains(&format!("{} in svc-00: digest {digest}", ws.main_tag(1)))
            && trace.contains(&format!("running in: preprod ({})", ws.main_tag(1))),
        "{trace}"
    );
    assert_eq!(trace.matches(" in svc-0").count(), 2, "{trace}");
}

/// A release train: every service at the build its preprod runs, one gate
/// per digest, one retag per repository, one commit, one git tag.
#[test]
fn a_release_train_ships_every_service_at_its_tested_digest() {
    let ws = Workspace::new(2);
    let registry = ws.registry();
    // svc-00's preprod runs the older build, svc-01's the newer one.
    let digests: Vec<String> = [(0, "svc-00"), (1, "svc-01")]
        .iter()
        .map(|(i, service)| ws.ship_to_preprod(service, &ws.main_tag(*i)))
        .collect();
    let gate = |i: usize, digest: &str| {
        assert_ok(&ws.run(&[
            "gate",
            "record",
            "--sha",
            &ws.commits[i],
            "--name",
            "preprod-tests",
            "--conclusion",
            "success",
            "--digest",
            digest,
        ]));
    };
    let release = [
        "release",
        "--version",
        "1.0.0",
        "--train",
        "--registry",
        &registry,
    ];
    let state = || {
        format!(
            "{}\n{:?}",
            git(
                &ws.remote,
                &[
                    "for-each-ref",
                    "--format=%(refname) %(objectname)",
                    "refs/heads",
                    "refs/tags"
                ]
            ),
            ["svc-00", "svc-01"]
                .map(|s| support::image_digest(&format!("{registry}/{s}"), "v1.0.0")),
        )
    };
    // Only svc-00's digest passed its gate: the train is refused, nothing changed.
    gate(0, &digests[0]);
    let before = state();
    let error = assert_fails(&ws.run(&release));
    assert!(
        error.contains(&ws.commits[1][..7]) || error.contains("preprod-tests"),
        "{error}"
    );
    assert_eq!(state(), before);

    gate(1, &digests[1]);
    // The GitOps push is refused after both retags: resumable, the same command finishes it.
    let hook = ws.remote.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'branch is frozen' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let error = assert_fails(&ws.run(&release));
    assert!(error.contains("rerun the same command"), "{error}");
    for (service, digest) in ["svc-00", "svc-01"].iter().zip(&digests) {
        assert_eq!(
            support::image_digest(&format!("{registry}/{service}"), "v1.0.0").as_deref(),
            Some(digest.as_str())
        );
        assert!(
            ws.file(&format!("values/prod/{service}.yaml"))
                .contains("tag: v0.1.0")
        );
    }
    assert_eq!(git(&ws.remote, &["tag", "--list", "v1.0.0"]), "");
    std::fs::remove_file(&hook).unwrap();
    let rerun = ws.run(&release);
    assert_ok(&rerun);
    assert_eq!(
        stdout(&rerun).matches("already names").count(),
        2,
        "{}",
        stdout(&rerun)
    );
    assert_eq!(
        ws.changed(),
        [
            "gitops/values/dev/svc-00.yaml",
            "gitops/values/dev/svc-01.yaml",
            "gitops/values/prod/svc-00.yaml",
            "gitops/values/prod/svc-01.yaml"
        ]
    );
    for (service, digest) in ["svc-00", "svc-01"].iter().zip(&digests) {
        assert_eq!(
            support::image_digest(&format!("{registry}/{service}"), "v1.0.0").as_deref(),
            Some(digest.as_str())
        );
        let prod = ws.file(&format!("values/prod/{service}.yaml"));
        assert!(
            prod.contains("tag: v1.0.0") && prod.contains(digest.as_str()),
            "{prod}"
        );
    }
    let message = ws.message();
    assert!(
        message.starts_with("release: v1.0.0 (svc-00, svc-01)\n\nService: svc-00\nEnvironment: prod\nEnvironment: dev\n")
            && message.contains(&format!("Service: svc-01\nEnvironment: prod\nEnvironment: dev\nImage-Tag: v1.0.0\nImage-Digest: {}\nSource-Commit: {}", digests[1], ws.commits[1])),
        "{message}"
    );
    // One git tag, on the newest released commit.
    assert_eq!(
        git(&ws.remote, &["rev-parse", "v1.0.0^{commit}"]),
        ws.commits[1]
    );
    // A rerun finds everything done.
    let head = ws.head();
    assert_ok(&ws.run(&release));
    assert_eq!(ws.head(), head);
}

/// Benchmark (prints, never asserts a time): a promotion of 20 services to
/// preprod in one commit (target < 2 s) and `status` of 20 services × 4
/// environments (target < 1 s), whole processes. `-- --nocapture` shows them.
#[test]
fn bench_promote_20_services_in_one_commit_and_status_20_by_4() {
    const SERVICES: usize = 20;
    let ws = Workspace::new(SERVICES);
    let names: Vec<&str> = ws.services.iter().map(String::as_str).collect();
    let sha = &ws.commits[1];
    assert_ok(&ws.run(&args(
        &names,
        &["preview", "deploy", "--pr", "5", "--sha", sha],
    )));
    let before = ws.head();
    let tag = ws.main_tag(1);
    let start = Instant::now();
    let promote = ws.run(&args(
        &names,
        &["promote", "--env", "preprod", "--tag", &tag],
    ));
    let promote_time = start.elapsed();
    assert_ok(&promote);
    assert_eq!(git(&ws.remote, &["rev-parse", "main~1"]), before);
    assert_eq!(ws.changed().len(), SERVICES);

    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let status = ws.run(&["status", "--json"]);
        times.push(start.elapsed());
        assert_ok(&status);
        let rows: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), SERVICES * 4);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "bench promote: {SERVICES} services to preprod in one commit (whole process: cargo metadata, \
         fetch, 20 files, push): {:.0} ms (target < 2000 ms)",
        ms(promote_time)
    );
    println!(
        "bench status: {SERVICES} services x 4 environments (3 long-lived + 1 preview), 3 runs: min {:.0} ms, \
         median {:.0} ms, max {:.0} ms (target < 1000 ms)",
        ms(times[0]),
        ms(times[1]),
        ms(times[2])
    );
}

/// Every retag's precondition is checked before any retag: a release tag
/// already on other bits in one repository leaves every repository, the
/// values and git as they were. One service then releases alone.
#[test]
fn a_train_refused_at_one_repository_retags_nothing_and_one_service_releases_alone() {
    let ws = Workspace::new(2);
    let registry = ws.registry();
    let mut digests = Vec::new();
    for service in ["svc-00", "svc-01"] {
        let digest = ws.ship_to_preprod(service, &ws.main_tag(0));
        assert_ok(&ws.run(&[
            "gate",
            "record",
            "--sha",
            &ws.commits[0],
            "--name",
            "preprod-tests",
            "--conclusion",
            "success",
            "--digest",
            &digest,
        ]));
        digests.push(digest);
    }
    // Someone pushed other bits as v1.0.0 to svc-01's repository.
    let squatter = ws.push("svc-01", "v1.0.0");
    let refs = || {
        git(
            &ws.remote,
            &["for-each-ref", "--format=%(refname) %(objectname)"],
        )
    };
    let before = refs();
    let train = [
        "release",
        "--version",
        "1.0.0",
        "--train",
        "--registry",
        &registry,
    ];
    let error = assert_fails(&ws.run(&train));
    assert!(error.contains("release tags are immutable"), "{error}");
    assert_eq!(refs(), before);
    assert_eq!(
        support::image_digest(&format!("{registry}/svc-00"), "v1.0.0"),
        None,
        "svc-00 was retagged before svc-01's refusal"
    );
    assert_eq!(
        support::image_digest(&format!("{registry}/svc-01"), "v1.0.0"),
        Some(squatter)
    );

    let one = [
        "release",
        "--version",
        "1.0.0",
        "--service",
        "svc-00",
        "--registry",
        &registry,
    ];
    assert_ok(&ws.run(&one));
    assert_eq!(
        ws.changed(),
        [
            "gitops/values/dev/svc-00.yaml",
            "gitops/values/prod/svc-00.yaml"
        ]
    );
    assert!(
        ws.message()
            .starts_with("release: v1.0.0 (svc-00)\n\nService: svc-00\n")
    );
    assert_eq!(
        support::image_digest(&format!("{registry}/svc-00"), "v1.0.0").as_deref(),
        Some(digests[0].as_str())
    );
    assert_eq!(
        git(&ws.remote, &["rev-parse", "v1.0.0^{commit}"]),
        ws.commits[0]
    );
    assert!(ws.file("values/prod/svc-01.yaml").contains("tag: v0.1.0"));
}
