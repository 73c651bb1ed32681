//! `cargo xtask ci`: the checks every pull request runs, with a summary table.
//!
//! Steps run in order and all of them run even after a failure, so one CI run
//! reports everything that is wrong. The table goes to the terminal and, in
//! GitHub Actions, to `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::checks::repository;
use crate::domain::service_repo::ServiceRepo;
use crate::domain::services;
use crate::domain::{advisories, affected_services};
use crate::plumbing::test_binaries;
use crate::plumbing::test_times::{self, TestTimes};
use crate::plumbing::tools;
use crate::plumbing::workspace;

#[derive(clap::Args)]
pub struct CiArgs {
    /// RustSec advisory database snapshot (a .tar.gz or a directory holding
    /// `advisory-db/`) for machines without internet. Without it, cargo-deny
    /// fetches the live database.
    #[arg(long, env = "ADVISORY_DB_SNAPSHOT", value_name = "PATH")]
    advisory_db: Option<PathBuf>,

    /// Skip a step (repeatable).
    #[arg(long, value_enum)]
    skip: Vec<Step>,

    /// Let tests whose engine, registry or PostgreSQL is missing skip instead of
    /// failing (SERVICE_DEMO_ALLOW_SKIP=1); they are counted in the summary.
    /// Refused under CI=true: CI never skips a test.
    #[arg(long)]
    allow_skip: bool,

    /// Test only the packages the commits since --base affect (`cargo test -p …` instead of
    /// --workspace): the affected services, the changed packages and everything depending on
    /// them, and xtask; the whole workspace when Cargo.lock, the toolchain or the like changed.
    #[arg(long, requires = "base")]
    affected_only: bool,
    /// Where the range of --affected-only starts (e.g. origin/main); compared as base...HEAD.
    #[arg(long, value_name = "REF")]
    base: Option<String>,

    /// How many test binaries run at once (default: the number of CPUs). Each
    /// runs its own tests in parallel too; 1 runs them one by one, as `cargo test` does.
    #[arg(long, value_name = "N")]
    test_jobs: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Step {
    Fmt,
    Clippy,
    Deny,
    /// `cargo xtask validate`: chart, Argo CD objects, Terraform, workflows.
    Assets,
    Test,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::Fmt,
        Step::Clippy,
        Step::Deny,
        Step::Assets,
        Step::Test,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Fmt => "fmt",
            Step::Clippy => "clippy",
            Step::Deny => "deny",
            Step::Assets => "assets",
            Step::Test => "test",
        }
    }
}

/// What one step ended with.
struct StepReport {
    step: Step,
    outcome: Outcome,
    duration: Duration,
}

enum Outcome {
    Passed(String),
    Failed(String),
    Skipped,
}

pub fn run(args: CiArgs) -> Result<()> {
    refuse_skips_in_ci(args.allow_skip, std::env::var("CI").ok().as_deref())?;
    let sh = Shell::new()?;
    sh.change_dir(workspace::root());
    let (mut reports, mut times) = (Vec::new(), TestTimes::default());
    for step in Step::ALL {
        if args.skip.contains(&step) {
            reports.push(StepReport {
                step,
                outcome: Outcome::Skipped,
                duration: Duration::ZERO,
            });
            continue;
        }
        eprintln!("\n==> ci: {}", step.name());
        let started = Instant::now();
        let result = match step {
            Step::Fmt => cmd!(sh, "cargo fmt --all -- --check")
                .run()
                .map(|()| String::new())
                .map_err(Into::into),
            Step::Clippy => clippy(&sh),
            Step::Deny => deny(&sh, args.advisory_db.as_deref()),
            // In process: the same checks as `cargo xtask validate`.
            Step::Assets => {
                repository::check_repository(&workspace::root()).map(|()| String::new())
            }
            Step::Test => test_step(&sh, &args, &mut times),
        };
        let outcome = match result {
            Ok(detail) => Outcome::Passed(detail),
            Err(err) => Outcome::Failed(format!("{err:#}")),
        };
        reports.push(StepReport {
            step,
            outcome,
            duration: started.elapsed(),
        });
    }

    let table = summary_table(&reports);
    eprint!("\n{table}\n{}", times.report());
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        append(Path::new(&path), &format!("## cargo xtask ci\n\n{table}\n"))?;
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .map(|r| r.step.name())
        .collect();
    ensure!(failed.is_empty(), "ci failed: {}", failed.join(", "));
    Ok(())
}

/// The workspace's lints, then xtask's cluster-jobs build (Cargo.toml's `full` off: the
/// binary `cargo xtask prebuilt` ships), which `--workspace` never compiles.
fn clippy(sh: &Shell) -> Result<String> {
    // Clippy runs the build scripts: no credential, and not the checkout's path (ring's rebuild).
    workspace::without_secrets(cmd!(
        sh,
        "cargo clippy --workspace --all-targets --locked -- -D warnings"
    ))
    .run()?;
    workspace::without_secrets(cmd!(
        sh,
        "cargo clippy -p xtask --no-default-features --locked -- -D warnings"
    ))
    .run()?;
    Ok(String::new())
}

/// cargo-deny: licences, bans, sources and advisories. With a snapshot, the
/// advisory DB is unpacked into a git repo (cargo-deny requires one) and
/// cargo-deny runs `--offline`.
fn deny(sh: &Shell, snapshot: Option<&Path>) -> Result<String> {
    if cmd!(sh, "cargo deny --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_err()
    {
        bail!(
            "cargo-deny is not installed: run `cargo install cargo-deny@{} --locked`",
            tools::version("cargo-deny")
        );
    }
    let checks = ["licenses", "bans", "sources", "advisories"];
    match snapshot {
        None => cmd!(sh, "cargo deny --locked check {checks...}").run()?,
        Some(snapshot) => {
            let db_root = workspace::target_dir().join("xtask/advisory-db");
            let snapshot_id = prepare_offline_db(sh, snapshot, &db_root)?;
            let config = db_root.join("deny.toml");
            let base = sh.read_file("deny.toml")?;
            sh.write_file(&config, with_db_path(&base, &db_root)?)?;
            // --offline also stops cargo from downloading crates, so fetch
            // them first (crates.io is reachable where the advisory DB is not).
            cmd!(sh, "cargo fetch --locked").quiet().run()?;
            cmd!(
                sh,
                "cargo deny --offline --config {config} check {checks...}"
            )
            .run()?;
            return Ok(format!("advisories from {snapshot_id}"));
        }
    }
    Ok("advisories from the live database".into())
}

/// The folder cargo-deny looks for under `db-path` for the default database
/// URL (https://github.com/rustsec/advisory-db): the name plus a hash of the URL,
/// as the cargo-deny pinned in xtask/tools.txt names it.
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

/// Unpacks `snapshot` to `db_root/ADVISORY_DB_DIR` as a one-commit git repo.
/// Returns the first line of the snapshot's SNAPSHOT file (what it is a copy of).
fn prepare_offline_db(sh: &Shell, snapshot: &Path, db_root: &Path) -> Result<String> {
    let target = db_root.join(ADVISORY_DB_DIR);
    if sh.path_exists(&target) {
        sh.remove_path(&target)?;
    }
    sh.create_dir(db_root)?;
    // The one unpacking of a snapshot (`scan` reads the same folder), copied
    // so cargo-deny's git repository leaves it as it was.
    let source = advisories::folder(snapshot)?;
    cmd!(sh, "cp -R {source} {target}").run()?;
    let _dir = sh.push_dir(&target);
    let _env = [
        sh.push_env("GIT_AUTHOR_NAME", "xtask"),
        sh.push_env("GIT_AUTHOR_EMAIL", "xtask@localhost"),
        sh.push_env("GIT_COMMITTER_NAME", "xtask"),
        sh.push_env("GIT_COMMITTER_EMAIL", "xtask@localhost"),
    ];
    cmd!(sh, "git init --quiet").run()?;
    cmd!(sh, "git add --all").run()?;
    cmd!(sh, "git commit --quiet --no-gpg-sign -m snapshot").run()?;
    let described = sh
        .read_file("SNAPSHOT")
        .unwrap_or_else(|_| "an unlabelled snapshot".into());
    Ok(described.lines().next().unwrap_or_default().to_owned())
}

/// deny.toml with `db-path` set in its `[advisories]` table.
fn with_db_path(deny_toml: &str, db_root: &Path) -> Result<String> {
    ensure!(
        !deny_toml.contains("db-path"),
        "deny.toml already sets db-path; remove it to use a snapshot"
    );
    let header = "[advisories]\n";
    let at = deny_toml
        .find(header)
        .context("deny.toml has no [advisories] table")?;
    let db_path = db_root.to_str().context("advisory DB path is not UTF-8")?;
    let mut out = deny_toml.to_owned();
    out.insert_str(
        at + header.len(),
        &format!("db-path = {}\n", toml_string(db_path)),
    );
    Ok(out)
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `CI=true` (GitHub Actions and this project's CI set it; `.ci/run` exports it)
/// means every test runs: `--allow-skip` is refused there.
fn refuse_skips_in_ci(allow_skip: bool, ci: Option<&str>) -> Result<()> {
    ensure!(
        !(allow_skip && ci == Some("true")),
        "--allow-skip is refused under CI=true: CI never skips a test (unset CI to skip on a laptop)"
    );
    Ok(())
}

/// Set to `1`, tests may skip when a dependency is missing (never under `CI=true`).
const ALLOW_SKIP_VAR: &str = "SERVICE_DEMO_ALLOW_SKIP";
/// A file every skipped test appends `skipped: <test>: <reason>` to.
const SKIP_LOG_VAR: &str = "SERVICE_DEMO_SKIP_LOG";

/// `--affected-only`: the packages to test (None: the whole workspace).
fn test_selection(args: &CiArgs) -> Result<Option<Vec<String>>> {
    let (true, Some(base)) = (args.affected_only, &args.base) else {
        return Ok(None);
    };
    let root = workspace::root();
    let repo = ServiceRepo::discover(&root)?;
    let base = repo
        .commit(base)
        .with_context(|| format!("--base {base}: pass the commit the range starts from"))?;
    let changed = affected_services::changed_files(&root, base, repo.commit("HEAD")?)?;
    let packages = services::packages(&root)?;
    let services = services::discover(&root, &packages)?;
    let selection = affected_services::packages_to_test(&services, &packages, &changed);
    match &selection {
        Some(names) => eprintln!(
            "ci: testing only {} (affected since {base})",
            names.join(", ")
        ),
        None => eprintln!("ci: a file every package is built from changed: testing the workspace"),
    }
    Ok(selection)
}

/// The test step: the selection `--affected-only` makes, `--test-jobs` at a time.
fn test_step(sh: &Shell, args: &CiArgs, times: &mut TestTimes) -> Result<String> {
    let selection = match test_selection(args)? {
        None => vec!["--workspace".to_owned()],
        Some(names) => names
            .iter()
            .flat_map(|name| ["--package".to_owned(), name.clone()])
            .collect(),
    };
    let parallel = args
        .test_jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    test(sh, args.allow_skip, &selection, parallel, times)
}

/// Builds the test binaries of `selection` (`--workspace` or `--package …`)
/// and runs them `parallel` at a time (`plumbing::test_binaries`), printing
/// each one's output when it ends and adding up libtest's `test result:`
/// lines; tests that skipped are read from the skip log (libtest counts them as
/// passed). Each binary's time goes to `times`, and each process's to the
/// target dir, which orders the next run slowest first.
// long: one build, one run, then the totals read top to bottom.
fn test(
    sh: &Shell,
    allow_skip: bool,
    selection: &[String],
    parallel: usize,
    times: &mut TestTimes,
) -> Result<String> {
    let scratch = crate::plumbing::fs::temp_dir("xtask-")?;
    let skip_log = scratch.path().join("skipped.log");
    std::fs::write(&skip_log, "")?;
    let mut jobs = test_binaries::build(&sh.current_dir(), selection)?;
    let times_file = workspace::target_dir().join("xtask/test-times.tsv");
    test_binaries::slowest_first(&mut jobs, &test_times::previous(&times_file));
    let allow = if allow_skip { Some("1".into()) } else { None };
    let envs = [
        (SKIP_LOG_VAR, Some(skip_log.clone().into_os_string())),
        (ALLOW_SKIP_VAR, allow),
    ];
    eprintln!("ci: {} test processes, {parallel} at a time", jobs.len());
    let (mut totals, mut failed, mut process_times) =
        (TestTotals::default(), Vec::new(), Vec::new());
    test_binaries::run(
        jobs,
        parallel,
        &envs,
        scratch.path(),
        |name| eprintln!("ci: started {name}"),
        |done| {
            print!("{}", done.output);
            for result in done.output.lines().filter_map(TestTotals::parse) {
                totals.add(result);
            }
            times.add_output(&done.output);
            process_times.push((done.name.clone(), done.duration));
            if !done.status.success() {
                failed.push(done.name.clone());
            }
        },
    )?;
    test_times::save(&times_file, &process_times)?;
    let skip_log = std::fs::read_to_string(&skip_log)?;
    let skipped = skipped_tests(&skip_log);
    totals.count_skipped(skipped.len() as u64);
    for line in &skipped {
        println!("{line}");
    }
    let summary = format!(
        "{} passed, {} failed, {} ignored, {} skipped",
        totals.passed, totals.failed, totals.ignored, totals.skipped
    );
    // The closing line CI runners look for.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.skipped
    );
    ensure!(
        failed.is_empty(),
        "tests failed in {} ({summary})",
        failed.join(", ")
    );
    ensure!(totals.passed > 0, "cargo test ran no test ({summary})");
    Ok(summary)
}

/// The `skipped: <test>: <reason>` lines of a skip log.
fn skipped_tests(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.starts_with("skipped: "))
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
    /// Tests that returned early for a missing dependency (libtest said `ok`).
    skipped: u64,
}

impl TestTotals {
    /// Parses `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; …`.
    fn parse(line: &str) -> Option<TestTotals> {
        let rest = line.trim().strip_prefix("test result: ")?;
        let counts = rest.split_once(". ")?.1;
        let mut totals = TestTotals::default();
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => totals.passed = n,
                "failed" => totals.failed = n,
                "ignored" => totals.ignored = n,
                _ => {}
            }
        }
        Some(totals)
    }

    fn add(&mut self, other: TestTotals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.skipped += other.skipped;
    }

    /// Moves `n` tests from passed to skipped.
    fn count_skipped(&mut self, n: u64) {
        self.passed = self.passed.saturating_sub(n);
        self.skipped += n;
    }
}

/// A Markdown table, readable in a terminal and rendered by GitHub.
fn summary_table(reports: &[StepReport]) -> String {
    let mut out = String::from("| step | result | time | detail |\n|---|---|---:|---|\n");
    for report in reports {
        let (result, detail) = match &report.outcome {
            Outcome::Passed(detail) => ("✅ passed", detail.as_str()),
            Outcome::Failed(detail) => ("❌ failed", detail.as_str()),
            Outcome::Skipped => ("⏭ skipped", ""),
        };
        let detail = detail.lines().next().unwrap_or("").replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} | {result} | {:.1}s | {detail} |",
            report.step.name(),
            report.duration.as_secs_f64()
        );
    }
    out
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_result_lines() {
        let line = "test result: ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.56s";
        assert_eq!(
            TestTotals::parse(line),
            Some(TestTotals {
                passed: 12,
                failed: 1,
                ignored: 3,
                skipped: 0
            })
        );
        assert_eq!(TestTotals::parse("test foo ... ok"), None);
    }

    #[test]
    fn skipped_tests_are_read_from_the_log_and_not_counted_as_passed() {
        let log = "skipped: image::push: docker-registry is missing\n\
                   noise\n\
                   skipped: api::postgres_store: PostgreSQL (initdb) is missing\n";
        let skipped = skipped_tests(log);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        let mut totals = TestTotals {
            passed: 10,
            ..TestTotals::default()
        };
        totals.count_skipped(skipped.len() as u64);
        assert_eq!((totals.passed, totals.skipped), (8, 2));
    }

    #[test]
    fn allow_skip_is_refused_under_ci_only() {
        let message = format!("{:#}", refuse_skips_in_ci(true, Some("true")).unwrap_err());
        assert!(message.contains("CI never skips a test"), "{message}");
        refuse_skips_in_ci(true, None).unwrap();
        refuse_skips_in_ci(true, Some("false")).unwrap();
        refuse_skips_in_ci(false, Some("true")).unwrap();
    }

    #[test]
    fn summary_table_lists_every_step_with_its_outcome() {
        let reports = [
            StepReport {
                step: Step::Fmt,
                outcome: Outcome::Passed(String::new()),
                duration: Duration::from_millis(1500),
            },
            StepReport {
                step: Step::Deny,
                outcome: Outcome::Failed("advisories | RUSTSEC-1\nmore".into()),
                duration: Duration::ZERO,
            },
            StepReport {
                step: Step::Test,
                outcome: Outcome::Skipped,
                duration: Duration::ZERO,
            },
        ];
        let table = summary_table(&reports);
        assert!(table.contains("| fmt | ✅ passed | 1.5s |  |"), "{table}");
        assert!(
            table.contains("| deny | ❌ failed | 0.0s | advisories \\| RUSTSEC-1 |"),
            "{table}"
        );
        assert!(table.contains("| test | ⏭ skipped |"), "{table}");
    }

    #[test]
    fn db_path_is_inserted_into_the_advisories_table() {
        let toml = "[graph]\n\n[advisories]\nignore = []\n";
        let out = with_db_path(toml, Path::new("/tmp/a \"b\"")).unwrap();
        assert_eq!(
            out,
            "[graph]\n\n[advisories]\ndb-path = \"/tmp/a \\\"b\\\"\"\nignore = []\n"
        );
        assert!(with_db_path("[bans]\n", Path::new("/x")).is_err());
    }

    /// A snapshot made here in the shared one's shape (so the test needs no
    /// file from outside the repository, on GitHub's runners too), prepared
    /// with real tar and git: a one-commit repo where cargo-deny expects it.
    #[test]
    fn offline_db_is_a_git_repo_in_the_expected_folder() {
        let sh = Shell::new().unwrap();
        let made = crate::plumbing::fs::temp_dir("xtask-").unwrap();
        let db = made.path().join("advisory-db");
        std::fs::create_dir_all(db.join("crates/demo")).unwrap();
        std::fs::write(
            db.join("SNAPSHOT"),
            "snapshot of rustsec/advisory-db at commit 0000000 (made by this test)\n",
        )
        .unwrap();
        std::fs::write(
            db.join("crates/demo/RUSTSEC-2099-0001.md"),
            "```toml\n```\n",
        )
        .unwrap();
        let snapshot = made.path().join("advisory-db.tar.gz");
        let dir = made.path();
        cmd!(sh, "tar -czf {snapshot} -C {dir} advisory-db")
            .run()
            .unwrap();
        let sh = Shell::new().unwrap();
        let root = crate::plumbing::fs::temp_dir("xtask-").unwrap();
        let described = prepare_offline_db(&sh, &snapshot, root.path()).unwrap();
        assert!(
            described.starts_with("snapshot of rustsec/advisory-db"),
            "{described}"
        );
        let repo = root.path().join(ADVISORY_DB_DIR);
        assert!(repo.join("crates").is_dir());
        let head = cmd!(sh, "git -C {repo} rev-list --count HEAD")
            .read()
            .unwrap();
        assert_eq!(head, "1");
        // Preparing again replaces it rather than failing.
        prepare_offline_db(&sh, &snapshot, root.path()).unwrap();
    }
}
