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
//! runner sees them; 6. the runner image, built locally; 7. the runner's
//! network and the host firewall that confines it; 8. the dispatcher.
//! `--dry-run` prints the plan (every firewall rule included) and changes
//! nothing. `runner` is the dispatcher (`domain/cluster_runner.rs`): one
//! fresh container per job; `firewall` puts the rules in place, checks or
//! removes them on their own.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::domain::cluster_runner::{self, DEFAULT_LABELS, Iptables, RunnerSettings};
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
    /// The runner network and the host firewall that confines it: put in place (idempotent), --check, or --remove.
    Firewall(FirewallArgs),
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

/// Where the runner runs and what it may reach (the dispatcher's and the firewall's).
#[derive(clap::Args, Clone)]
pub struct NetworkArgs {
    /// The runner's own Docker network (`none`: no network and no firewall).
    #[arg(long, default_value = cluster_runner::RUNNER_NETWORK)]
    network: String,
    /// The runner network's Linux bridge, which the firewall names (at most 15 characters).
    #[arg(long, default_value = cluster_runner::RUNNER_BRIDGE)]
    bridge: String,
    /// The iptables chain of the runner network's rules.
    #[arg(long, default_value = cluster_runner::FIREWALL_CHAIN)]
    firewall_chain: String,
    /// The Docker network kind's nodes are on.
    #[arg(long, default_value = "kind")]
    kind_network: String,
    /// host:port on kind's network the runner may open: kind's API server, the ingress (80, 443), Argo CD's NodePort.
    #[arg(long, value_delimiter = ',', default_values_t = cluster_runner::reach("service-demo"))]
    reach: Vec<String>,
    /// Loopback ports the runner forwards to kind's node (port=host:port): Argo CD's NodePort and the ingress.
    #[arg(long, value_delimiter = ',', default_values_t = [
        "8090=service-demo-control-plane:30080".to_owned(),
        "8081=service-demo-control-plane:80".to_owned(),
    ])]
    forward: Vec<String>,
}

#[derive(clap::Args)]
pub struct FirewallArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The runner image (the firewall's iptables runs in it when this is not root).
    #[arg(long, default_value = cluster_runner::RUNNER_IMAGE)]
    image: String,
    /// Say what is missing and fail if anything is; change nothing.
    #[arg(long, conflicts_with = "remove")]
    check: bool,
    /// Remove the rules and the runner network.
    #[arg(long)]
    remove: bool,
}

#[derive(clap::Args)]
pub struct RunnerArgs {
    /// The labels the runner registers with (the workflows' CLUSTER_RUNNER, else self-hosted,kind).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_LABELS.map(String::from))]
    labels: Vec<String>,
    /// The runner image (`cluster up` builds it from terraform/runner/Dockerfile).
    #[arg(long, default_value = cluster_runner::RUNNER_IMAGE)]
    image: String,
    #[command(flatten)]
    network: NetworkArgs,
    /// Size of the runner home's tmpfs (checkouts, cargo's target dir; memory-backed).
    #[arg(long, default_value = "8g")]
    home_size: String,
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
        ClusterCommand::Firewall(args) => firewall(args),
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
    let settings = settings(args.labels, args.image, args.network, &args.home_size);
    let settings = RunnerSettings {
        job_timeout: std::time::Duration::from_secs(args.job_timeout),
        ..settings
    };
    println!(
        "dispatcher for {}: labels {:?}, image {}, network {}",
        github.repository(),
        settings.labels,
        settings.image,
        settings.network
    );
    // Not a wait for a condition (plumbing::retry::wait_until): the dispatcher serves until it is
    // stopped, and a failed poll is said and tried again at the next interval.
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

fn settings(labels: Vec<String>, image: String, net: NetworkArgs, home: &str) -> RunnerSettings {
    RunnerSettings {
        labels,
        image,
        network: net.network,
        bridge: net.bridge,
        chain: net.firewall_chain,
        kind_network: net.kind_network,
        reach: net.reach,
        runner_group_id: 1,
        home_size: home.to_owned(),
        forwards: net.forward,
        job_timeout: std::time::Duration::from_secs(3600),
    }
}

/// `cluster firewall`: the runner network's rules put in place (kind's nodes
/// looked up now), checked, or removed; each line says what it did.
fn firewall(args: FirewallArgs) -> Result<()> {
    let settings = settings(Vec::new(), args.image, args.network, "0");
    let iptables = Iptables::detect(&settings.image)?;
    if args.remove {
        let firewall = cluster_runner::firewall_of(&settings, Vec::new());
        let removed = cluster_runner::remove_firewall(&firewall, &iptables)?;
        if removed.is_empty() {
            println!("runner firewall: nothing to remove");
        }
        removed.iter().for_each(|line| println!("{line}"));
        return Ok(());
    }
    if args.check {
        let firewall = cluster_runner::firewall_in_place(&settings)?;
        let problems = cluster_runner::firewall_problems(&firewall, &iptables)?;
        if !problems.is_empty() {
            bail!(
                "the runner's firewall is not in place: {}; fix: cargo xtask cluster up (or cargo xtask cluster firewall)",
                problems.join("; ")
            );
        }
        println!("runner firewall of {}: in place", settings.network);
        return Ok(());
    }
    cluster_runner::prepare_network(&settings)?;
    Ok(())
}
