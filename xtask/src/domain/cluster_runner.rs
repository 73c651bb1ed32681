//! The cluster runner: one GitHub Actions job per runner, in a fresh
//! container that is gone after the job.
//!
//! A dispatcher (`cargo xtask cluster runner`) polls the fork for queued jobs
//! that ask for the cluster runner's labels, asks GitHub for a just-in-time
//! runner configuration per job (`POST …/actions/runners/generate-jitconfig`:
//! a runner registered for one job, which deregisters itself after it), and
//! runs `docker run --rm` of the runner image with that configuration. The
//! configuration reaches the container through the docker CLI's environment
//! (`-e ACTIONS_RUNNER_INPUT_JITCONFIG` with no value), never its argv.
//!
//! What the container gets: no Docker socket, nothing of the host mounted
//! (only two fresh tmpfs: /tmp and the runner's home), a uid of the image's
//! own (no host account, no sudo: `no-new-privileges`, every capability
//! dropped), a read-only root, and kind's Docker network, where kind's API
//! server, Argo CD's NodePort and the ingress controller answer. After the
//! job the container is checked to be gone and removed if it is not.
//!
//! Only main's reviewed code runs on it. GitHub's runner groups restricted to
//! selected workflows would say so at GitHub's side, but they need an
//! organization and a fork is usually a user's. So: (1) `validate` refuses a
//! workflow job on the cluster runner outside the main-only environments
//! (`trust_policy`); (2) this dispatcher starts runners only for queued jobs
//! of runs on main from the events CD, release and preview use; (3) GitHub
//! gives a just-in-time runner any queued job its labels match, so the
//! runner image's job-started hook (`terraform/runner/job-started.sh`,
//! ACTIONS_RUNNER_HOOK_JOB_STARTED) refuses a job whose GITHUB_REF, workflow
//! ref or event is not main's, whatever the dispatcher saw.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::domain::github::GitHub;

/// The events of the workflows that use the cluster runner: CD (push to
/// main), release (workflow_dispatch), preview (workflow_run,
/// pull_request_target, schedule, workflow_dispatch). The hook has the same list.
pub const ALLOWED_EVENTS: [&str; 5] = [
    "push",
    "workflow_dispatch",
    "workflow_run",
    "pull_request_target",
    "schedule",
];
/// The labels the workflows' cluster jobs ask for when CLUSTER_RUNNER is unset.
pub const DEFAULT_LABELS: [&str; 2] = ["self-hosted", "kind"];
/// The environment variable the Actions runner reads its `--jitconfig` from.
pub const JIT_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// Every container this dispatcher starts is named `<prefix>-<job id>-<n>`.
pub const NAME_PREFIX: &str = "service-demo-runner";

/// How runner containers are started.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// The labels the runner registers with (a job's labels must all be among them).
    pub labels: Vec<String>,
    /// The runner image (`cluster up` builds `service-demo-runner:local`).
    pub image: String,
    /// The Docker network the container joins (`kind`, where the cluster is).
    pub network: String,
    /// The runner group id (1: the repository's default group).
    pub runner_group_id: u64,
    /// Size of the runner's home tmpfs (its work folder: checkouts, cargo's target).
    pub home_size: String,
    /// `port=host:port` loopback forwards the entrypoint starts (Argo CD's and
    /// the ingress's addresses on kind's node), so ARGOCD_SERVER and
    /// INGRESS_URL read the same inside as on the laptop.
    pub forwards: Vec<String>,
    /// A container running longer is killed (and its runner deregistered).
    pub job_timeout: std::time::Duration,
}

/// A queued job the cluster runner may take.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: u64,
    pub run_id: u64,
    pub name: String,
    pub workflow: String,
}

/// Why a queued run's jobs are left alone, or None when the dispatcher may serve it.
pub fn skip_reason(run: &Value) -> Option<String> {
    let event = run["event"].as_str().unwrap_or_default();
    let branch = run["head_branch"].as_str().unwrap_or_default();
    if !ALLOWED_EVENTS.contains(&event) {
        return Some(format!(
            "event {event:?} is not one CD, release or preview use"
        ));
    }
    // A pull_request_target or workflow_run run executes the default branch's
    // workflow while head_branch names the pull request's or the triggering
    // run's branch; the hook checks their GITHUB_REF, which is main's.
    let runs_main = matches!(event, "pull_request_target" | "workflow_run") || branch == "main";
    (!runs_main).then(|| format!("branch {branch:?} is not main"))
}

/// Does a job asking for `wanted` labels fit a runner with `labels`?
pub fn labels_fit(wanted: &[String], labels: &[String]) -> bool {
    !wanted.is_empty()
        && wanted.iter().any(|l| l == "self-hosted")
        && wanted
            .iter()
            .all(|w| labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
}

/// The queued jobs of the fork's queued runs that ask for the cluster
/// runner's labels, skipping (and saying so) runs that are not main's.
pub fn queued_jobs(github: &GitHub, labels: &[String]) -> Result<Vec<QueuedJob>> {
    // A run whose first jobs ran already (CD's build on a hosted runner) is
    // in_progress while its cluster job waits in the queue.
    let mut runs = Vec::new();
    for status in ["queued", "in_progress"] {
        let path = format!("/actions/runs?status={status}&per_page=100");
        runs.extend(github.get_all(&path, "workflow_runs")?);
    }
    let mut jobs = Vec::new();
    for run in runs {
        let run_id = run["id"].as_u64().context("a workflow run without an id")?;
        let workflow = run["path"].as_str().unwrap_or_default().to_owned();
        if let Some(reason) = skip_reason(&run) {
            println!("skipped run {run_id} ({workflow}): {reason}");
            continue;
        }
        let path = format!("/actions/runs/{run_id}/jobs?filter=latest&per_page=100");
        for job in github.get_all(&path, "jobs")? {
            let wanted: Vec<String> = job["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect();
            if job["status"] == "queued" && labels_fit(&wanted, labels) {
                jobs.push(QueuedJob {
                    id: job["id"].as_u64().context("a job without an id")?,
                    run_id,
                    name: job["name"].as_str().unwrap_or_default().to_owned(),
                    workflow: workflow.clone(),
                });
            }
        }
    }
    Ok(jobs)
}

/// A just-in-time runner configuration: a secret (it registers a runner), so
/// it has no Debug or Display and is only ever put in a child's environment.
pub struct JitConfig {
    config: String,
    /// The runner GitHub registered (removed if its container had to be killed).
    pub runner_id: Option<u64>,
}

/// Registers a one-job runner named `name` and returns its configuration.
pub fn jit_config(github: &GitHub, name: &str, settings: &RunnerSettings) -> Result<JitConfig> {
    let body = json!({
        "name": name,
        "runner_group_id": settings.runner_group_id,
        "labels": settings.labels,
        "work_folder": "_work",
    });
    let answer = github.post("/actions/runners/generate-jitconfig", &body)?;
    match answer["encoded_jit_config"].as_str() {
        Some(config) if !config.is_empty() => Ok(JitConfig {
            config: config.to_owned(),
            runner_id: answer["runner"]["id"].as_u64(),
        }),
        _ => bail!("GitHub's generate-jitconfig answer has no encoded_jit_config"),
    }
}

/// The `docker run` arguments of one runner container: no secret in them.
pub fn docker_run_args(name: &str, settings: &RunnerSettings) -> Vec<String> {
    let home = format!(
        "/home/runner:rw,exec,nosuid,nodev,size={},uid=1001,gid=1001,mode=0700",
        settings.home_size
    );
    let forwards = format!("RUNNER_FORWARDS={}", settings.forwards.join(","));
    let args = [
        "run",
        "--rm",
        "--name",
        name,
        "--label",
        "service-demo.runner=1",
        "--network",
        &settings.network,
        // The image's own unprivileged uid: no host account, and nothing can gain privileges (no sudo).
        "--user",
        "1001:1001",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,nodev,size=1g,mode=1777",
        "--tmpfs",
        &home,
        "--pids-limit",
        "4096",
        "-e",
        &forwards,
        "-e",
        // The name only: docker reads the value from its own environment.
        JIT_ENV,
        &settings.image,
    ];
    args.iter().map(|s| s.to_string()).collect()
}

/// What became of one runner container.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub exit_code: Option<i32>,
    /// The container was still there after `docker run --rm` returned, and was removed.
    pub removed_after: bool,
    /// Killed at the job timeout (its runner registration is then deleted).
    pub timed_out: bool,
}

/// Runs one runner container to its end (its output goes to ours), killing
/// it past `settings.job_timeout` (a runner whose job was cancelled waits for
/// one forever), then makes sure it is gone.
pub fn run_container(name: &str, jit: &JitConfig, settings: &RunnerSettings) -> Result<Outcome> {
    let mut child = Command::new("docker")
        .args(docker_run_args(name, settings))
        .env(JIT_ENV, &jit.config)
        .stdin(Stdio::null())
        .spawn()
        .context("running docker (is the Docker engine up? DOCKER_HOST)")?;
    let deadline = std::time::Instant::now() + settings.job_timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if std::time::Instant::now() > deadline {
            remove_container(name)?;
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let removed_after = container_exists(name)?;
    if removed_after {
        remove_container(name)?;
    }
    Ok(Outcome {
        name: name.to_owned(),
        exit_code: status.and_then(|s| s.code()),
        removed_after,
        timed_out,
    })
}

/// `docker rm -f`, checked.
fn remove_container(name: &str) -> Result<()> {
    let _ = Command::new("docker")
        .args(["rm", "--force", "--volumes", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if container_exists(name)? {
        bail!("runner container {name} is still there after `docker rm -f`: remove it by hand");
    }
    Ok(())
}

/// Whether a container of that name exists (running or not).
pub fn container_exists(name: &str) -> Result<bool> {
    let output = Command::new("docker")
        .args(["container", "inspect", "--format", "{{.Id}}", name])
        .output()
        .context("running docker container inspect")?;
    Ok(output.status.success())
}

/// One poll: a fresh runner for each eligible queued job, one after the
/// other. Returns what became of each.
pub fn dispatch_once(github: &GitHub, settings: &RunnerSettings) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for job in queued_jobs(github, &settings.labels)? {
        let name = format!("{NAME_PREFIX}-{}-{}", job.id, fastrand::u32(..));
        println!(
            "job {} ({} in {}, run {}): runner {name}",
            job.id, job.name, job.workflow, job.run_id
        );
        let jit = jit_config(github, &name, settings)?;
        let outcome = run_container(&name, &jit, settings)?;
        let ended = match (outcome.timed_out, outcome.exit_code) {
            (true, _) => format!("killed after {}s", settings.job_timeout.as_secs()),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "killed by a signal".into(),
        };
        let removed = if outcome.removed_after {
            " (removed after --rm left it)"
        } else {
            ""
        };
        println!(
            "runner {} ended ({ended}); its container is gone{removed}",
            outcome.name
        );
        if let (true, Some(id)) = (outcome.timed_out, jit.runner_id) {
            // The runner never finished a job, so it never deregistered itself.
            github.delete(&github.repo_path(&format!("/actions/runners/{id}")))?;
            println!("runner {} (id {id}): registration deleted", outcome.name);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_main_runs_of_the_pipelines_events_are_served() {
        let run = |event: &str, branch: &str| json!({"event": event, "head_branch": branch});
        assert_eq!(skip_reason(&run("push", "main")), None);
        assert_eq!(skip_reason(&run("workflow_dispatch", "main")), None);
        assert_eq!(skip_reason(&run("pull_request_target", "feature")), None);
        assert!(
            skip_reason(&run("push", "feature"))
                .unwrap()
                .contains("not main")
        );
        assert!(skip_reason(&run("workflow_dispatch", "topic")).is_some());
        assert!(
            skip_reason(&run("pull_request", "main"))
                .unwrap()
                .contains("event")
        );
        assert!(skip_reason(&run("issue_comment", "main")).is_some());
    }

    #[test]
    fn a_job_fits_when_all_its_labels_are_the_runners() {
        let runner = labels(&DEFAULT_LABELS);
        assert!(labels_fit(&labels(&["self-hosted", "kind"]), &runner));
        assert!(labels_fit(&labels(&["self-hosted", "KIND"]), &runner));
        assert!(!labels_fit(
            &labels(&["self-hosted", "kind", "gpu"]),
            &runner
        ));
        assert!(!labels_fit(&labels(&["ubuntu-24.04"]), &runner));
        assert!(!labels_fit(&labels(&[]), &runner));
    }

    #[test]
    fn the_container_gets_no_socket_no_host_path_and_no_secret_in_argv() {
        let settings = RunnerSettings {
            labels: labels(&DEFAULT_LABELS),
            image: "service-demo-runner:local".into(),
            network: "kind".into(),
            runner_group_id: 1,
            home_size: "8g".into(),
            forwards: vec![],
            job_timeout: std::time::Duration::from_secs(60),
        };
        let args = docker_run_args("r-1", &settings).join(" ");
        for wanted in [
            "--rm",
            "--read-only",
            "--cap-drop ALL",
            "no-new-privileges",
            "--network kind",
            "--user 1001:1001",
        ] {
            assert!(args.contains(wanted), "{wanted} missing from {args}");
        }
        assert!(args.contains(&format!("-e {JIT_ENV} service-demo-runner:local")));
        for forbidden in [
            "-v",
            "--volume",
            "--mount",
            "--privileged",
            "--pid",
            "--ipc",
        ] {
            assert!(
                !args.split(' ').any(|a| a == forbidden),
                "{forbidden} in {args}"
            );
        }
        assert!(!args.contains("docker.sock") && !args.contains(&format!("{JIT_ENV}=")));
    }
}
