//! `cargo xtask cluster up|down|status|runner`: the cluster side of the fork
//! in one command.
//!
//! `up`: 1. Terraform (kind, Argo CD, ingress-nginx, CloudNativePG, Kyverno,
//! the AppProjects and the root app); 2. the admission policy read from the
//! fork's `gitops/policy/` now (never inline in Terraform), checked to carry
//! `cosign.pub`, applied through kubectl's stdin; 3. Argo CD's repository
//! credentials when the fork is private (a read-only deploy key); 4. the
//! Argo CD project-role tokens the workflows need, written straight to the
//! fork's environment secrets; 5. ARGOCD_SERVER and INGRESS_URL as the
//! runner sees them; 6. the runner image, built locally. `--dry-run` prints
//! the plan and changes nothing. `runner` is the dispatcher
//! (`domain/cluster_runner.rs`): one fresh container per job.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::domain::cluster_runner::{self, DEFAULT_LABELS, RunnerSettings};
use crate::domain::cluster_up::{self, Fork, Plan};
use crate::domain::github::GitHub;
use crate::plumbing::workspace;

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Bring the cluster up (idempotent): Terraform, the fork's admission policy, Argo CD's tokens as the fork's secrets, the runner image.
    Up(UpArgs),
    /// Destroy the cluster (terraform destroy); the fork's secrets stay (they name a cluster that is gone).
    Down(DownArgs),
    /// What is up: the kind cluster, Argo CD, the policy's key, runner containers.
    Status(StatusArgs),
    /// The dispatcher: a fresh runner container per queued job of main (foreground; --once for one poll).
    Runner(RunnerArgs),
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Print the plan (Terraform variables, the policy key file and its sha256, the secrets and variables) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The fork, <owner>/<name> (default: GITHUB_REPOSITORY, else the `origin` remote).
    #[arg(long, env = "GITHUB_REPOSITORY")]
    github: Option<String>,
    /// Repository to read terraform/ and gitops/policy/ from (default: this one).
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Print what would be destroyed and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    root: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunnerArgs {
    /// The labels the runner registers with (the workflows' CLUSTER_RUNNER, else self-hosted,kind).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_LABELS.map(String::from))]
    labels: Vec<String>,
    /// The runner image (`cluster up` builds it from terraform/runner/Dockerfile).
    #[arg(long, default_value = cluster_up::RUNNER_IMAGE)]
    image: String,
    /// The Docker network the runner joins: kind's, where the API server, Argo CD and the ingress answer.
    #[arg(long, default_value = "kind")]
    network: String,
    /// Size of the runner home's tmpfs (checkouts, cargo's target dir; memory-backed).
    #[arg(long, default_value = "8g")]
    home_size: String,
    /// Loopback ports the runner forwards to kind's node (port=host:port): Argo CD's NodePort and the ingress.
    #[arg(long, value_delimiter = ',', default_values_t = [
        "8090=service-demo-control-plane:30080".to_owned(),
        "8081=service-demo-control-plane:80".to_owned(),
    ])]
    forward: Vec<String>,
    /// Seconds a runner container may run; past them it is killed and its runner deregistered.
    #[arg(long, default_value_t = 3600)]
    job_timeout: u64,
    /// Poll once, run the runners it finds work for, then exit.
    #[arg(long)]
    once: bool,
    /// Seconds between polls.
    #[arg(long, default_value_t = 15)]
    interval: u64,
}

pub fn run(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Up(args) => up(args),
        ClusterCommand::Down(args) => down(args),
        ClusterCommand::Status(args) => {
            cluster_up::status(&args.root.unwrap_or_else(workspace::root))
        }
        ClusterCommand::Runner(args) => runner(args),
    }
}

fn up(args: UpArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace::root);
    let fork = Fork::resolve(args.github.as_deref(), &root)?;
    // 1. The plan, from the repository as it is now (the policy and its key included).
    let plan = Plan::read(&root, &fork)?;
    print!("{}", plan.render());
    if args.dry_run {
        println!("--dry-run: nothing changed");
        return Ok(());
    }
    let github = github_for(&fork)?;
    cluster_up::apply(&root, &plan, &github)
}

fn down(args: DownArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace::root);
    cluster_up::down(&root, args.dry_run)
}

fn runner(args: RunnerArgs) -> Result<()> {
    let Some(github) = GitHub::from_env()? else {
        bail!(
            "the dispatcher asks GitHub for queued jobs and just-in-time runners: set GITHUB_REPOSITORY=<owner>/<name> \
             and GITHUB_TOKEN (a token with the repository's Administration: write and Actions: read, e.g. GITHUB_TOKEN=$(gh auth token))"
        );
    };
    let settings = RunnerSettings {
        labels: args.labels,
        image: args.image,
        network: args.network,
        runner_group_id: 1,
        home_size: args.home_size,
        forwards: args.forward,
        job_timeout: std::time::Duration::from_secs(args.job_timeout),
    };
    println!(
        "dispatcher for {}: labels {:?}, image {}, network {}",
        github.repository(),
        settings.labels,
        settings.image,
        settings.network
    );
    loop {
        let poll = cluster_runner::dispatch_once(&github, &settings);
        match (poll, args.once) {
            (Ok(outcomes), true) => {
                println!("--once: {} runner(s) ran", outcomes.len());
                return Ok(());
            }
            (Err(error), true) => return Err(error.context("one poll of the dispatcher")),
            // In the background a failed poll (GitHub unreachable a moment) is said and retried.
            (Err(error), false) => {
                eprintln!("a poll failed, retrying in {}s: {error:#}", args.interval)
            }
            (Ok(_), false) => {}
        }
        std::thread::sleep(std::time::Duration::from_secs(args.interval));
    }
}

/// The shared GitHub client for the fork: GITHUB_TOKEN, else `gh auth token`.
fn github_for(fork: &Fork) -> Result<GitHub> {
    let token = crate::domain::github::token().with_context(|| {
        format!(
            "cluster up writes Argo CD's tokens to {}'s secrets; nothing was changed",
            fork.repository
        )
    })?;
    let api = std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
    GitHub::new(&api, &fork.repository, token)
}
