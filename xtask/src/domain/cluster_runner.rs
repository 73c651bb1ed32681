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
//! dropped), a read-only root, and a Docker network of its own
//! (`service-demo-runner`, bridge `sd-runner0`) that the host's firewall
//! confines ([`Firewall`]): kind's API server, the ingress controller and
//! Argo CD's NodePort on kind's node (looked up before each job and named
//! with `--add-host`), and the internet; nothing of the host (INPUT drops
//! the bridge), no private range, no other container. Before each job the
//! rules are put in place (idempotent), or no runner starts. After the job
//! the container is checked to be gone and removed if it is not.
//!
//! Only main's reviewed code runs on it. GitHub's runner groups restricted to
//! selected workflows would say so at GitHub's side, but they need an
//! organization and a fork is usually a user's. So: (1) `validate` refuses a
//! workflow job on the cluster runner outside the main-only environments
//! (`checks::workflows`); (2) this dispatcher starts runners only for queued jobs
//! of runs on main from the events CD, release and preview use; (3) GitHub
//! gives a just-in-time runner any queued job its labels match, so the
//! runner image's job-started hook (`terraform/runner/job-started.sh`,
//! ACTIONS_RUNNER_HOOK_JOB_STARTED) refuses a job whose GITHUB_REF, workflow
//! ref or event is not main's, whatever the dispatcher saw.

use std::path::{Path, PathBuf};
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
    /// The Docker network the container joins: the runner's own
    /// ([`RUNNER_NETWORK`]), confined by the host firewall; `none` for no network.
    pub network: String,
    /// The runner network's bridge and firewall chain ([`RUNNER_BRIDGE`], [`FIREWALL_CHAIN`]).
    pub bridge: String,
    pub chain: String,
    /// The Docker network kind's nodes are on (`kind`).
    pub kind_network: String,
    /// `host:port` on kind's network the runner may open (kind's API server,
    /// the ingress, Argo CD's NodePort); everything else private is dropped.
    pub reach: Vec<String>,
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
/// `hosts` (name, address) are kind's nodes as the runner names them.
pub fn docker_run_args(
    name: &str,
    settings: &RunnerSettings,
    hosts: &[(String, String)],
) -> Vec<String> {
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
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    for (host, address) in hosts {
        args.push(format!("--add-host={host}:{address}"));
    }
    args.push(settings.image.clone());
    args
}

/// The firewall of `settings`' runner network, kind's nodes at `allowed`.
pub fn firewall_of(settings: &RunnerSettings, allowed: Vec<(String, u16)>) -> Firewall {
    Firewall {
        network: settings.network.clone(),
        bridge: settings.bridge.clone(),
        chain: settings.chain.clone(),
        allowed,
    }
}

/// `host:port` split, the port checked.
fn host_port(target: &str) -> Result<(String, u16)> {
    target
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
        .filter(|(host, _)| !host.is_empty())
        .with_context(|| format!("{target:?} is not host:port"))
}

/// kind's nodes looked up now (a new cluster may have new addresses): the
/// (host, address) of every reach and forward target, and the reach targets
/// as (address, port) the firewall allows.
pub fn resolve_targets(settings: &RunnerSettings) -> Result<Hosts> {
    let forwards = settings.forwards.iter().filter(|f| !f.is_empty());
    let targets = forwards.map(|f| f.split_once('=').map_or(f.as_str(), |(_, t)| t));
    let mut hosts: Vec<(String, String)> = Vec::new();
    let mut allowed = Vec::new();
    let reach = settings.reach.iter().map(String::as_str);
    for (n, target) in reach.chain(targets).enumerate() {
        let (host, port) = host_port(target)?;
        let address = match hosts.iter().find(|(h, _)| *h == host) {
            Some((_, address)) => address.clone(),
            None => address_on(&settings.kind_network, &host)?,
        };
        if n < settings.reach.len() {
            allowed.push((address.clone(), port));
        }
        if !hosts.iter().any(|(h, _)| *h == host) {
            hosts.push((host, address));
        }
    }
    Ok((hosts, allowed))
}

/// (host, address) pairs for `--add-host`, and (address, port) pairs the firewall allows.
pub type Hosts = (Vec<(String, String)>, Vec<(String, u16)>);

/// The firewall as it should be now, kind's nodes looked up.
pub fn firewall_in_place(settings: &RunnerSettings) -> Result<Firewall> {
    Ok(firewall_of(settings, resolve_targets(settings)?.1))
}

/// Before each job: the runner network's firewall put in place for kind's
/// nodes as they are now, or no runner. Returns the `--add-host` entries.
pub fn prepare_network(settings: &RunnerSettings) -> Result<Vec<(String, String)>> {
    if settings.network == "none" {
        return Ok(Vec::new());
    }
    let (hosts, allowed) = resolve_targets(settings)?;
    let firewall = firewall_of(settings, allowed);
    let changes = install_firewall(&firewall, &Iptables::detect(&settings.image)?)
        .context("the runner's firewall is not in place, so no runner was started")?;
    let changed: Vec<&String> = changes
        .iter()
        .filter(|c| !c.ends_with(": unchanged") && !c.ends_with(": present"))
        .collect();
    if changed.is_empty() {
        println!("firewall of {}: in place", settings.network);
    }
    for change in changed {
        println!("firewall of {}: {change}", settings.network);
    }
    Ok(hosts)
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
pub fn run_container(
    name: &str,
    jit: &JitConfig,
    settings: &RunnerSettings,
    hosts: &[(String, String)],
) -> Result<Outcome> {
    let mut child = Command::new("docker")
        .args(docker_run_args(name, settings, hosts))
        .env(JIT_ENV, &jit.config)
        .stdin(Stdio::null())
        .spawn()
        .context("running docker (is the Docker engine up? DOCKER_HOST)")?;
    let exited = crate::plumbing::retry::wait_until(
        settings.job_timeout,
        std::time::Duration::from_millis(200),
        || !matches!(child.try_wait(), Ok(None)),
    );
    let (status, timed_out) = if exited {
        // The child is reaped: try_wait gives its status again (or the error it met).
        (child.try_wait()?, false)
    } else {
        remove_container(name)?;
        let _ = child.wait();
        (None, true)
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
        let hosts = prepare_network(settings)?;
        let jit = jit_config(github, &name, settings)?;
        let outcome = run_container(&name, &jit, settings, &hosts)?;
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

/// The runner's own Docker network (its containers join nothing else).
pub const RUNNER_NETWORK: &str = "service-demo-runner";
/// Its Linux bridge, named so the host's firewall rules can name it.
pub const RUNNER_BRIDGE: &str = "sd-runner0";
/// The iptables chain that holds the runner network's forwarding rules.
pub const FIREWALL_CHAIN: &str = "SERVICE-DEMO-RUNNER";
/// What the runner may not open besides kind's allowed ports: the private,
/// shared, link-local, loopback and multicast ranges (the host's LAN, other
/// Docker networks, cloud metadata). The internet stays open (GitHub, GHCR,
/// crates.io: what the jobs need).
pub const BLOCKED_RANGES: [&str; 8] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "0.0.0.0/8",
    "224.0.0.0/4",
];

/// The host firewall around the runner network, as data: Docker forwards
/// the runner's traffic through `DOCKER-USER` (first in FORWARD), where a
/// jump sends the runner bridge's packets to [`FIREWALL_CHAIN`]: replies to
/// the runner's own connections pass, nothing opens one to it, kind's nodes
/// are reachable on the allowed ports only (an ACCEPT there also passes
/// Docker's isolation between networks), the blocked ranges are dropped, and
/// the rest (the internet) goes on to Docker's rules. Traffic to the host's
/// own addresses (any of them: the bridge's gateway, docker0, the LAN) is
/// INPUT, not FORWARD: a rule there drops everything the runner bridge sends
/// to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Firewall {
    pub network: String,
    pub bridge: String,
    pub chain: String,
    /// (IPv4 address, TCP port) the runner may open on kind's network.
    pub allowed: Vec<(String, u16)>,
}

impl Firewall {
    /// The chain's rules, as `iptables-restore` reads them and `iptables -S`
    /// lists them (its order of options), so what is in place compares exactly.
    pub fn chain_rules(&self) -> Vec<String> {
        let (bridge, chain) = (&self.bridge, &self.chain);
        let mut rules = vec![
            format!("-A {chain} -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            format!("-A {chain} -o {bridge} -j DROP"),
        ];
        for (address, port) in &self.allowed {
            rules.push(format!(
                "-A {chain} -d {address}/32 -i {bridge} -p tcp -m tcp --dport {port} -j ACCEPT"
            ));
        }
        for range in BLOCKED_RANGES {
            rules.push(format!("-A {chain} -d {range} -i {bridge} -j DROP"));
        }
        rules
    }

    /// The rules in the built-in chains, each (chain, rule): the jumps into
    /// [`FIREWALL_CHAIN`] and the drop of everything sent to the host itself.
    pub fn hooks(&self) -> Vec<(&'static str, Vec<String>)> {
        let rule = |words: &[&str]| words.iter().map(|w| w.to_string()).collect();
        vec![
            (
                "DOCKER-USER",
                rule(&["-i", &self.bridge, "-j", &self.chain]),
            ),
            (
                "DOCKER-USER",
                rule(&["-o", &self.bridge, "-j", &self.chain]),
            ),
            ("INPUT", rule(&["-i", &self.bridge, "-j", "DROP"])),
        ]
    }

    /// `iptables-restore --noflush` input: the chain declared (which empties
    /// it) and filled in one transaction, so it is never half-written.
    pub fn restore_input(&self) -> String {
        let mut text = format!("*filter\n:{} - [0:0]\n", self.chain);
        for rule in self.chain_rules() {
            text += &rule;
            text.push('\n');
        }
        text + "COMMIT\n"
    }

    /// The plan's lines: the network, then every rule as iptables commands.
    pub fn render(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "docker network create --driver bridge --opt com.docker.network.bridge.name={} --opt com.docker.network.bridge.enable_icc=false --ipv6=false {}",
            self.bridge, self.network
        )];
        lines.extend(self.chain_rules().iter().map(|r| format!("iptables {r}")));
        for (chain, rule) in self.hooks() {
            lines.push(format!("iptables -I {chain} 1 {}", rule.join(" ")));
        }
        lines
    }
}

/// How iptables is run: directly when this process is root on Linux (or
/// `XTASK_IPTABLES` names the binary), else in a container of the runner
/// image on the host's network with only NET_ADMIN and NET_RAW (a user who
/// may run Docker may do this; no sudo, no password prompt). On macOS that
/// container reaches Docker Desktop's Linux VM, where the containers are.
#[derive(Clone, Debug)]
pub enum Iptables {
    /// The binary, and its `-restore` beside it.
    Host(String),
    /// The runner image and the backend (`iptables-nft` or `iptables-legacy`) Docker's rules are in.
    Container { image: String, binary: String },
}

impl Iptables {
    /// `XTASK_IPTABLES`: a binary to run directly, or `container` for the
    /// container even as root (tests of both paths).
    pub fn detect(image: &str) -> Result<Self> {
        let given = std::env::var("XTASK_IPTABLES").unwrap_or_default();
        if !given.is_empty() && given != "container" {
            return Ok(Self::Host(given));
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if cfg!(target_os = "linux") && root && given.is_empty() {
            return Ok(Self::Host("iptables".into()));
        }
        // Docker's rules are in one of the two backends: the one with DOCKER-USER.
        for binary in ["iptables-nft", "iptables-legacy"] {
            let candidate = Self::Container {
                image: image.to_owned(),
                binary: binary.to_owned(),
            };
            if candidate
                .run(false, &["-S", "DOCKER-USER"], b"")?
                .status
                .success()
            {
                return Ok(candidate);
            }
        }
        bail!(
            "neither iptables-nft nor iptables-legacy in {image} sees Docker's DOCKER-USER chain: \
             is Docker's iptables integration on (dockerd --iptables)? Build the image first (cargo xtask cluster up)"
        )
    }

    /// `iptables <args>` (or `iptables-restore` when `restore`), `stdin` fed.
    fn run(&self, restore: bool, args: &[&str], stdin: &[u8]) -> Result<std::process::Output> {
        let suffix = if restore { "-restore" } else { "" };
        let mut command = match self {
            Self::Host(binary) => Command::new(format!("{binary}{suffix}")),
            Self::Container { image, binary } => {
                let mut docker = Command::new("docker");
                docker.args([
                    "run",
                    "--rm",
                    "-i",
                    "--network",
                    "host",
                    "--user",
                    "0:0",
                    "--cap-drop",
                    "ALL",
                    "--cap-add",
                    "NET_ADMIN",
                    "--cap-add",
                    "NET_RAW",
                    "--read-only",
                    // iptables-legacy's lock file (/run/xtables.lock).
                    "--tmpfs",
                    "/run",
                    "--entrypoint",
                ]);
                docker.arg(format!("{binary}{suffix}")).arg(image);
                docker
            }
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {self:?} (iptables: the runner's firewall)"))?;
        std::io::Write::write_all(&mut child.stdin.take().context("iptables' stdin")?, stdin)?;
        Ok(child.wait_with_output()?)
    }

    /// Like `run`, failing with iptables' own words.
    fn must(&self, restore: bool, args: &[&str], stdin: &[u8]) -> Result<String> {
        let output = self.run(restore, args, stdin)?;
        if !output.status.success() {
            bail!(
                "iptables {} failed: {} (the runner's firewall needs root, or Docker to run the runner image with NET_ADMIN)",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether `rule` is in `chain` (`iptables -C`).
    fn has(&self, chain: &str, rule: &[String]) -> Result<bool> {
        let mut args = vec!["-C", chain];
        args.extend(rule.iter().map(String::as_str));
        Ok(self.run(false, &args, b"")?.status.success())
    }
}

/// The runner network: created if missing (its bridge named for the
/// rules); one of that name on another bridge is refused.
fn ensure_network(firewall: &Firewall) -> Result<&'static str> {
    let inspect = Command::new("docker")
        .args(["network", "inspect", "--format"])
        .arg("{{index .Options \"com.docker.network.bridge.name\"}}")
        .arg(&firewall.network)
        .output()
        .context("running docker network inspect")?;
    if inspect.status.success() {
        let bridge = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
        if bridge != firewall.bridge {
            bail!(
                "Docker network {} exists on bridge {bridge:?}, not {}: the firewall names the bridge; remove it (docker network rm {}) and run again",
                firewall.network,
                firewall.bridge,
                firewall.network
            );
        }
        return Ok("unchanged");
    }
    let created = Command::new("docker")
        .args([
            "network",
            "create",
            "--driver",
            "bridge",
            "--label",
            "service-demo.runner=1",
        ])
        .arg("--opt")
        .arg(format!(
            "com.docker.network.bridge.name={}",
            firewall.bridge
        ))
        .args([
            "--opt",
            "com.docker.network.bridge.enable_icc=false",
            "--ipv6=false",
        ])
        .arg(&firewall.network)
        .output()
        .context("running docker network create")?;
    if !created.status.success() {
        bail!(
            "docker network create {}: {}",
            firewall.network,
            String::from_utf8_lossy(&created.stderr).trim()
        );
    }
    Ok("created")
}

/// The network and the rules in place, idempotently; what changed, one line each.
pub fn install_firewall(firewall: &Firewall, iptables: &Iptables) -> Result<Vec<String>> {
    let mut changed = vec![format!(
        "network {} (bridge {}): {}",
        firewall.network,
        firewall.bridge,
        ensure_network(firewall)?
    )];
    let before = iptables.run(false, &["-S", &firewall.chain], b"")?;
    iptables.must(true, &["--noflush"], firewall.restore_input().as_bytes())?;
    let after = iptables.must(false, &["-S", &firewall.chain], b"")?;
    let same = before.status.success() && String::from_utf8_lossy(&before.stdout) == after;
    changed.push(format!(
        "chain {} ({} rules): {}",
        firewall.chain,
        firewall.chain_rules().len(),
        if same { "unchanged" } else { "written" }
    ));
    for (chain, rule) in firewall.hooks() {
        let state = if iptables.has(chain, &rule)? {
            "present"
        } else {
            let mut args = vec!["-I", chain, "1"];
            args.extend(rule.iter().map(String::as_str));
            iptables.must(false, &args, b"")?;
            "added"
        };
        changed.push(format!("{chain} {}: {state}", rule.join(" ")));
    }
    Ok(changed)
}

/// What is missing of the firewall (empty: all in place), for doctor and the dispatcher.
pub fn firewall_problems(firewall: &Firewall, iptables: &Iptables) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let listed = iptables.run(false, &["-S", &firewall.chain], b"")?;
    let listed = String::from_utf8_lossy(&listed.stdout);
    let rules: Vec<&str> = listed.lines().filter(|l| l.starts_with("-A ")).collect();
    let wanted = firewall.chain_rules();
    if !listed
        .lines()
        .any(|l| l == format!("-N {}", firewall.chain))
    {
        problems.push(format!("no iptables chain {}", firewall.chain));
    } else if rules != wanted {
        problems.push(format!(
            "chain {} holds {} rules that are not the {} wanted: {rules:?}",
            firewall.chain,
            rules.len(),
            wanted.len()
        ));
    }
    for (chain, rule) in firewall.hooks() {
        if !iptables.has(chain, &rule)? {
            problems.push(format!("no rule `{chain} {}`", rule.join(" ")));
        }
    }
    Ok(problems)
}

/// The rules and the network gone (each said); nothing there is not an error.
pub fn remove_firewall(firewall: &Firewall, iptables: &Iptables) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (chain, rule) in firewall.hooks() {
        while iptables.has(chain, &rule)? {
            let mut args = vec!["-D", chain];
            args.extend(rule.iter().map(String::as_str));
            iptables.must(false, &args, b"")?;
            removed.push(format!("{chain} {}: removed", rule.join(" ")));
        }
    }
    if iptables
        .run(false, &["-S", &firewall.chain], b"")?
        .status
        .success()
    {
        iptables.must(false, &["-F", &firewall.chain], b"")?;
        iptables.must(false, &["-X", &firewall.chain], b"")?;
        removed.push(format!("chain {}: removed", firewall.chain));
    }
    let network = Command::new("docker")
        .args(["network", "rm", &firewall.network])
        .output()
        .context("running docker network rm")?;
    if network.status.success() {
        removed.push(format!("network {}: removed", firewall.network));
    }
    Ok(removed)
}

/// The IPv4 address of container `host` on Docker network `network`.
pub fn address_on(network: &str, host: &str) -> Result<String> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks {network:?}}}}}{{{{.IPAddress}}}}{{{{end}}}}"
    );
    let output = Command::new("docker")
        .args(["container", "inspect", "--format", &format, host])
        .output()
        .context("running docker container inspect")?;
    let address = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || address.parse::<std::net::Ipv4Addr>().is_err() {
        bail!(
            "{host} has no address on Docker network {network}: is the cluster up? (cargo xtask cluster up; cargo xtask cluster status)"
        );
    }
    Ok(address)
}

// The runner as `cluster up` sets it up for this repository's kind cluster, and what `doctor`
// checks of it (its dispatcher running, its firewall in place), without `cluster_up`.

/// The runner image `cluster up` builds from `terraform/runner/`.
pub const RUNNER_IMAGE: &str = "service-demo-runner:local";
/// Argo CD's NodePort on kind's node (terraform/main.tf's local.argocd_node_port).
pub const ARGOCD_NODE_PORT: u16 = 30080;
/// What the runner may open on kind's control-plane node: the API server,
/// the ingress controller (80, 443) and Argo CD's NodePort.
pub fn reach(cluster_name: &str) -> Vec<String> {
    [6443, 80, 443, ARGOCD_NODE_PORT]
        .iter()
        .map(|port| format!("{cluster_name}-control-plane:{port}"))
        .collect()
}

/// The dispatcher's defaults for cluster `name`: the runner's own network,
/// kind's node reachable at [`reach`], `forwards` inside.
pub fn runner_settings(name: &str, forwards: Vec<String>) -> RunnerSettings {
    RunnerSettings {
        labels: DEFAULT_LABELS.map(str::to_owned).to_vec(),
        image: RUNNER_IMAGE.into(),
        network: RUNNER_NETWORK.into(),
        bridge: RUNNER_BRIDGE.into(),
        chain: FIREWALL_CHAIN.into(),
        kind_network: "kind".into(),
        reach: reach(name),
        runner_group_id: 1,
        home_size: "8g".into(),
        forwards,
        job_timeout: std::time::Duration::from_secs(3600),
    }
}

/// The `default` of a Terraform variable, as text.
pub fn terraform_default(dir: &Path, name: &str) -> Result<String> {
    let text = std::fs::read_to_string(dir.join("variables.tf"))
        .with_context(|| format!("reading {}/variables.tf", dir.display()))?;
    let body = hcl::parse(&text).context("terraform/variables.tf is not HCL")?;
    body.blocks()
        .filter(|b| b.identifier() == "variable")
        .filter(|b| b.labels().first().is_some_and(|l| l.as_str() == name))
        .find_map(|b| b.body().attributes().find(|a| a.key() == "default"))
        .and_then(|a| match a.expr() {
            hcl::Expression::String(s) => Some(s.clone()),
            hcl::Expression::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .with_context(|| {
            format!("terraform/variables.tf: variable {name:?} has no literal default")
        })
}

/// Where the background dispatcher's pid and log are (outside the work tree).
pub fn dispatcher_files() -> Result<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/service-demo");
    std::fs::create_dir_all(&dir)?;
    Ok((
        dir.join("cluster-runner.pid"),
        dir.join("cluster-runner.log"),
    ))
}

/// The pid of the runner dispatcher `cluster up` started on this machine, if it still runs.
pub fn dispatcher_running() -> Result<Option<u32>> {
    let (pid_file, _) = dispatcher_files()?;
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return Ok(None);
    };
    let pid: u32 = text.trim().parse().unwrap_or(0);
    Ok((pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid))
}

/// What is missing of the runner's firewall for kind's nodes as they are now.
pub fn firewall_problems_now(terraform_dir: &Path) -> Result<Vec<String>> {
    let name = terraform_default(terraform_dir, "cluster_name")?;
    let settings = runner_settings(&name, Vec::new());
    let iptables = Iptables::detect(&settings.image)?;
    let firewall = firewall_in_place(&settings)?;
    firewall_problems(&firewall, &iptables)
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
            network: RUNNER_NETWORK.into(),
            bridge: RUNNER_BRIDGE.into(),
            chain: FIREWALL_CHAIN.into(),
            kind_network: "kind".into(),
            reach: vec![],
            runner_group_id: 1,
            home_size: "8g".into(),
            forwards: vec![],
            job_timeout: std::time::Duration::from_secs(60),
        };
        let hosts = [("kind-node".to_owned(), "172.18.0.2".to_owned())];
        let args = docker_run_args("r-1", &settings, &hosts).join(" ");
        for wanted in [
            "--rm",
            "--read-only",
            "--cap-drop ALL",
            "no-new-privileges",
            "--network service-demo-runner",
            "--user 1001:1001",
            "--add-host=kind-node:172.18.0.2",
        ] {
            assert!(args.contains(wanted), "{wanted} missing from {args}");
        }
        assert!(args.contains(&format!("-e {JIT_ENV} --add-host")));
        assert!(args.ends_with(" service-demo-runner:local"));
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

    /// The rules as data: what the plan prints and `install_firewall` puts in place.
    #[test]
    fn the_firewall_lets_the_runner_reach_kinds_ports_and_the_internet_and_drops_the_host() {
        let firewall = Firewall {
            network: RUNNER_NETWORK.into(),
            bridge: RUNNER_BRIDGE.into(),
            chain: FIREWALL_CHAIN.into(),
            allowed: vec![("172.18.0.2".into(), 6443), ("172.18.0.2".into(), 30080)],
        };
        assert_eq!(
            firewall.chain_rules(),
            [
                "-A SERVICE-DEMO-RUNNER -o sd-runner0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A SERVICE-DEMO-RUNNER -o sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 172.18.0.2/32 -i sd-runner0 -p tcp -m tcp --dport 6443 -j ACCEPT",
                "-A SERVICE-DEMO-RUNNER -d 172.18.0.2/32 -i sd-runner0 -p tcp -m tcp --dport 30080 -j ACCEPT",
                "-A SERVICE-DEMO-RUNNER -d 10.0.0.0/8 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 172.16.0.0/12 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 192.168.0.0/16 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 100.64.0.0/10 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 169.254.0.0/16 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 127.0.0.0/8 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 0.0.0.0/8 -i sd-runner0 -j DROP",
                "-A SERVICE-DEMO-RUNNER -d 224.0.0.0/4 -i sd-runner0 -j DROP",
            ]
        );
        let render = firewall.render().join("\n");
        for line in [
            "iptables -I DOCKER-USER 1 -i sd-runner0 -j SERVICE-DEMO-RUNNER",
            "iptables -I DOCKER-USER 1 -o sd-runner0 -j SERVICE-DEMO-RUNNER",
            "iptables -I INPUT 1 -i sd-runner0 -j DROP",
            "com.docker.network.bridge.name=sd-runner0",
        ] {
            assert!(render.contains(line), "{line} missing:\n{render}");
        }
        let restore = firewall.restore_input();
        assert!(restore.starts_with("*filter\n:SERVICE-DEMO-RUNNER - [0:0]\n"));
        assert!(restore.ends_with("-j DROP\nCOMMIT\n"));
    }

    #[test]
    fn the_network_is_prepared_only_for_a_network() {
        let settings = RunnerSettings {
            labels: labels(&DEFAULT_LABELS),
            image: "i".into(),
            network: "none".into(),
            bridge: RUNNER_BRIDGE.into(),
            chain: FIREWALL_CHAIN.into(),
            kind_network: "kind".into(),
            reach: vec!["not a target".into()],
            runner_group_id: 1,
            home_size: "8g".into(),
            forwards: vec![],
            job_timeout: std::time::Duration::from_secs(60),
        };
        assert_eq!(prepare_network(&settings).unwrap(), Vec::new());
        assert!(host_port("node:6443").is_ok());
        assert!(host_port("node").is_err() && host_port(":80").is_err());
    }
}
