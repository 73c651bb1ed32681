//! The test binaries of a `cargo test`, run a few at a time.
//!
//! `cargo test` runs its binaries one after another: on a 2-core machine one
//! core idles while a binary waits for a container, a registry or a database.
//! Here cargo builds them once (`cargo test --no-run`, whose JSON messages name
//! each executable), then they run `jobs` at a time, each as cargo would run it
//! (in its package's folder), the slowest of the
//! previous run first. Each binary's output is printed whole when it ends,
//! under cargo's own `Running …` line, so the log reads as cargo's would.
//! Doc-tests stay cargo's (`cargo test --doc`), as one more job.
//!
//! Not cargo-nextest: it runs a process per test, and the tests here share
//! what one process holds (a PostgreSQL server, a build) across their tests.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

use crate::plumbing::workspace::without_cargo_run_vars;

/// A test process to run: a test binary, or cargo's doc-tests.
#[derive(Debug)]
pub struct TestJob {
    /// As cargo names it: `tests/demo.rs`, `xtask src/main.rs (unit tests)`, `doc-tests`.
    pub name: String,
    /// The line cargo prints before the job's output (`     Running …`).
    header: String,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

/// A job that ended: its status, how long it took, and what it printed.
pub struct Finished {
    pub name: String,
    pub status: ExitStatus,
    pub duration: Duration,
    /// cargo's `Running …` line, then the job's stdout and stderr as written.
    pub output: String,
}

/// `cargo test --no-run` in `dir` with `selection` (`--workspace` or
/// `--package …`): builds the test binaries, and returns one job for each and
/// one for the doc-tests. cargo's progress and diagnostics go to stderr.
pub fn build(dir: &Path, selection: &[String]) -> Result<Vec<TestJob>> {
    let output = without_cargo_run_vars(&mut Command::new("cargo"))
        .args([
            "test",
            "--no-run",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .args(selection)
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo test --no-run")?;
    ensure!(
        output.status.success(),
        "cargo test --no-run failed (see its messages above)"
    );
    let mut jobs = jobs_from_messages(&String::from_utf8_lossy(&output.stdout))?;
    jobs.push(TestJob {
        name: "doc-tests".to_owned(),
        header: String::new(),
        program: "cargo".into(),
        args: ["test", "--doc", "--locked"]
            .into_iter()
            .map(str::to_owned)
            .chain(selection.iter().cloned())
            .collect(),
        dir: dir.to_owned(),
    });
    Ok(jobs)
}

/// The fields of cargo's `compiler-artifact` message a test binary needs.
#[derive(Deserialize)]
struct Artifact {
    reason: String,
    #[serde(default)]
    manifest_path: PathBuf,
    target: Option<ArtifactTarget>,
    profile: Option<ArtifactProfile>,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
    src_path: PathBuf,
}

#[derive(Deserialize)]
struct ArtifactProfile {
    test: bool,
}

/// One job per test executable in cargo's JSON messages (one per line).
fn jobs_from_messages(messages: &str) -> Result<Vec<TestJob>> {
    let mut jobs = Vec::new();
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let artifact: Artifact = serde_json::from_str(line)
            .with_context(|| format!("reading cargo's message {line}"))?;
        let (Some(target), Some(profile), Some(executable)) =
            (artifact.target, artifact.profile, artifact.executable)
        else {
            continue;
        };
        if artifact.reason != "compiler-artifact" || !profile.test {
            continue;
        }
        let package_dir = artifact
            .manifest_path
            .parent()
            .context("a manifest path has a folder")?
            .to_owned();
        let source = crate::plumbing::fs::relative(&package_dir, &target.src_path);
        let integration = target.kind.iter().any(|k| k == "test");
        let (name, header) = if integration {
            (
                source.clone(),
                format!("Running {source} ({})", executable.display()),
            )
        } else {
            (
                format!("{} {source} (unit tests)", target.name.replace('-', "_")),
                format!("Running unittests {source} ({})", executable.display()),
            )
        };
        jobs.push(TestJob {
            name,
            header: format!("     {header}"),
            program: executable,
            args: Vec::new(),
            dir: package_dir,
        });
    }
    Ok(jobs)
}

/// Orders `jobs` slowest first by `previous` times (seconds by name); a job
/// without one (new) goes first, as it may be slow.
pub fn slowest_first(jobs: &mut [TestJob], previous: &HashMap<String, f64>) {
    jobs.sort_by(|a, b| {
        let time = |job: &TestJob| previous.get(&job.name).copied().unwrap_or(f64::INFINITY);
        time(b).total_cmp(&time(a))
    });
}

/// Variables set (`Some`) or removed (`None`) in every job's environment.
pub type Envs<'a> = [(&'a str, Option<OsString>)];

/// Runs `jobs`, at most `parallel` at once, in their order, each with `envs`;
/// `started` and `finished` are called on this thread as jobs start and end.
/// Every job runs, whatever the others' outcome.
pub fn run(
    jobs: Vec<TestJob>,
    parallel: usize,
    envs: &Envs,
    scratch: &Path,
    mut started: impl FnMut(&str),
    mut finished: impl FnMut(&Finished),
) -> Result<()> {
    enum Event {
        Started(String),
        Finished(Result<Finished>),
    }
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let (events, received) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            let events = events.clone();
            let queue = &queue;
            scope.spawn(move || {
                while let Some((i, job)) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let _ = events.send(Event::Started(job.name.clone()));
                    let log = scratch.join(format!("job-{i}.log"));
                    let _ = events.send(Event::Finished(run_one(job, envs, &log)));
                }
            });
        }
        drop(events);
        for event in received {
            match event {
                Event::Started(name) => started(&name),
                Event::Finished(result) => finished(&result?),
            }
        }
        Ok(())
    })
}

/// Runs one job with stdout and stderr into one file at `log`, then reads it.
fn run_one(job: TestJob, envs: &Envs, log: &Path) -> Result<Finished> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(&job.program);
    // Not the variables `cargo run` set for xtask (nor those cargo would set for
    // a test): the builds a test runs would inherit them (`workspace::is_cargo_run_var`).
    without_cargo_run_vars(&mut command)
        .args(&job.args)
        .current_dir(&job.dir);
    for (name, value) in envs {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let begun = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("starting {}", job.program.display()))?;
    let duration = begun.elapsed();
    let mut output = job.header.clone();
    if !output.is_empty() {
        output.push_str("\n\n");
    }
    // Lossy: a test may print any bytes, and its output still counts.
    output.push_str(&String::from_utf8_lossy(&std::fs::read(log)?));
    Ok(Finished {
        name: job.name,
        status,
        duration,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargos_messages_become_one_job_per_test_executable_named_as_cargo_names_them() {
        let messages = r#"
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"name":"xtask","kind":["lib"],"src_path":"/w/xtask/src/lib.rs"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"name":"xtask","kind":["bin"],"src_path":"/w/xtask/src/main.rs"},"profile":{"test":true},"executable":"/t/debug/deps/xtask-01"}
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"name":"xtask","kind":["bin"],"src_path":"/w/xtask/src/main.rs"},"profile":{"test":false},"executable":"/t/debug/xtask"}
{"reason":"compiler-artifact","package_id":"path+file:///w/services/api#items-api@0.1.0","manifest_path":"/w/services/api/Cargo.toml","target":{"name":"items-api","kind":["lib"],"src_path":"/w/services/api/src/lib.rs"},"profile":{"test":true},"executable":"/t/debug/deps/items_api-02"}
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"name":"demo","kind":["test"],"src_path":"/w/xtask/tests/demo.rs"},"profile":{"test":true},"executable":"/t/debug/deps/demo-03"}
{"reason":"build-finished","success":true}
"#;
        let jobs = jobs_from_messages(messages).unwrap();
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "xtask src/main.rs (unit tests)",
                "items_api src/lib.rs (unit tests)",
                "tests/demo.rs"
            ]
        );
        let demo = &jobs[2];
        assert_eq!(
            demo.header,
            "     Running tests/demo.rs (/t/debug/deps/demo-03)"
        );
        assert_eq!(
            demo.dir,
            Path::new("/w/xtask"),
            "cargo runs a test in its package's folder"
        );
        assert_eq!(
            jobs[0].header,
            "     Running unittests src/main.rs (/t/debug/deps/xtask-01)"
        );
    }

    #[test]
    fn the_slowest_of_the_last_run_go_first_and_new_ones_before_them() {
        let job = |name: &str| TestJob {
            name: name.into(),
            header: String::new(),
            program: "true".into(),
            args: Vec::new(),
            dir: ".".into(),
        };
        let mut jobs = vec![job("quick"), job("slow"), job("new"), job("middle")];
        let previous = HashMap::from([
            ("quick".into(), 1.0),
            ("slow".into(), 70.0),
            ("middle".into(), 9.0),
        ]);
        slowest_first(&mut jobs, &previous);
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["new", "slow", "middle", "quick"]);
    }
}
