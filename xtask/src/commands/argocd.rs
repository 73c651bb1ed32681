//! `cargo xtask argocd wait|sync`: wait until Argo CD runs a GitOps commit,
//! healthy, before tests go near it; start the sync of a manual-sync app.
//!
//! Polls Argo CD's REST API (no Argo CD CLI). See `domain/argocd_api.rs` for what
//! "runs the commit" means and where the status fields come from.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};

use crate::domain::Repos;
use crate::domain::argocd_api::{Application, ArgoCd, Fetch, SyncStart, Verdict};
use crate::domain::gitops::GitopsOptions;
use crate::domain::tags::short;
use crate::plumbing::retry::try_wait_until;

#[derive(clap::Subcommand)]
pub enum ArgocdCommand {
    /// Wait until an application runs a GitOps commit: synced to it by a
    /// finished operation, and healthy as assessed after that sync.
    Wait(WaitArgs),
    /// Sync an application with manual sync (dev, prod) to a commit, then wait for it.
    Sync(SyncArgs),
}

/// Which application, how to reach Argo CD, and how long to wait.
#[derive(clap::Args)]
struct WaitOptions {
    /// The GitOps commit to wait for. Default: the tip of the GitOps branch now
    /// (right after a promotion, the commit it pushed).
    #[arg(long)]
    revision: Option<String>,
    /// Give up after this long, saying what state the application was last in.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How long a Degraded or Missing health is tolerated (pods being replaced
    /// during a rollout) before the wait fails.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    degraded_grace: Duration,
    /// Time between two reads of the application.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Do not ask Argo CD to re-read git first (it then notices the commit at its
    /// next poll, 3 minutes by default).
    #[arg(long)]
    no_refresh: bool,
    /// Argo CD server, `host[:port]` (HTTPS) or a URL; the token is read from
    /// ARGOCD_AUTH_TOKEN only, so that it never shows in a process list.
    #[arg(long, env = "ARGOCD_SERVER")]
    server: Option<String>,
    /// Accept a self-signed certificate (a local kind cluster).
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct WaitArgs {
    /// Application name (e.g. service-demo-preprod).
    #[arg(long, required_unless_present = "pr", conflicts_with = "pr")]
    app: Option<String>,
    /// A pull request's preview: the Application its ApplicationSet made, which
    /// may not exist yet when the wait starts.
    #[arg(long)]
    pr: Option<u64>,
    /// With --pr, in a workspace of several services: the service whose preview to wait for.
    #[arg(long, requires = "pr", value_name = "NAME")]
    service: Option<String>,
    #[command(flatten)]
    options: WaitOptions,
}

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Application name (e.g. service-demo-prod); several, comma-separated or repeated, are synced
    /// one after the other to the same revision (release's `apps` output).
    #[arg(long, required = true, value_delimiter = ',')]
    app: Vec<String>,
    #[command(flatten)]
    options: WaitOptions,
}

pub fn run(command: ArgocdCommand) -> Result<()> {
    match command {
        ArgocdCommand::Wait(args) => {
            let target = match (args.app, args.pr) {
                (Some(app), _) => Target::App(app),
                (None, Some(pr)) => Target::Preview(pr, args.service),
                (None, None) => unreachable!("clap requires --app or --pr"),
            };
            wait(&target, &args.options)
        }
        ArgocdCommand::Sync(args) => {
            let (argocd, revision) = connect(&args.options)?;
            for app in args.app.into_iter().filter(|app| !app.is_empty()) {
                sync(&argocd, app, &revision, &args.options)?;
            }
            Ok(())
        }
    }
}

/// Starts the sync of `app` to `revision` (or joins the one running), then waits for it.
fn sync(argocd: &ArgoCd, app: String, revision: &str, options: &WaitOptions) -> Result<()> {
    match argocd.sync(&app, revision)? {
        SyncStart::Started => println!("argocd: sync of {app} to {} started", short(revision)),
        SyncStart::AlreadyRunning(message) => {
            println!("argocd: {app} is already syncing ({message}); waiting for it")
        }
    }
    wait_for(argocd, &Target::App(app), revision, options)
}

enum Target {
    App(String),
    Preview(u64, Option<String>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::App(name) => write!(f, "{name}"),
            Target::Preview(pr, None) => write!(f, "the preview of pull request {pr}"),
            Target::Preview(pr, Some(service)) => {
                write!(f, "the preview of {service} for pull request {pr}")
            }
        }
    }
}

fn connect(options: &WaitOptions) -> Result<(ArgoCd, String)> {
    let argocd = ArgoCd::from_env(options.server.as_deref(), options.insecure)?;
    let revision = match &options.revision {
        Some(revision)
            if revision.len() >= 7 && revision.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            revision.to_ascii_lowercase()
        }
        Some(revision) => bail!(
            "--revision {revision:?} is not a commit sha: give the GitOps commit (7 to 40 hex digits), as Argo CD reports full shas"
        ),
        None => Repos::open(&options.gitops)?
            .gitops
            .fetch_tip()?
            .to_string(),
    };
    Ok((argocd, revision))
}

fn wait(target: &Target, options: &WaitOptions) -> Result<()> {
    let (argocd, revision) = connect(options)?;
    wait_for(&argocd, target, &revision, options)
}

/// Polls until the target runs `revision` healthy; a line per change of state.
fn wait_for(argocd: &ArgoCd, target: &Target, revision: &str, options: &WaitOptions) -> Result<()> {
    println!(
        "argocd: waiting up to {} for {target} to run {}",
        humantime::format_duration(options.timeout),
        short(revision)
    );
    let start = Instant::now();
    let mut refresh = !options.no_refresh;
    let mut last_line = String::new();
    let mut unhealthy_since: Option<Instant> = None;
    let done = try_wait_until(options.timeout, options.poll_interval, || {
        let fetched = fetch(argocd, target, refresh)?;
        let line = match &fetched {
            Fetch::Found(app) => format!("{} · {}", app.metadata.name, app.status.summary()),
            Fetch::Missing(why) | Fetch::Unavailable(why) => why.clone(),
        };
        if line != last_line {
            println!("argocd: {line}");
            last_line = line;
        }
        match &fetched {
            Fetch::Found(app) => {
                // One refresh per wait: on the first read that reached the app.
                refresh = false;
                judge(app, revision, start, &mut unhealthy_since, options)
            }
            Fetch::Missing(_) | Fetch::Unavailable(_) => {
                unhealthy_since = None;
                Ok(false)
            }
        }
    })?;
    ensure!(
        done,
        "argocd: timed out after {} waiting for {target} to run {}; last seen: {last_line}",
        humantime::format_duration(options.timeout),
        short(revision)
    );
    Ok(())
}

/// The target's Application (a preview is found by label, then read by name
/// so that a refresh can be asked for).
fn fetch(argocd: &ArgoCd, target: &Target, refresh: bool) -> Result<Fetch> {
    Ok(match target {
        Target::App(name) => argocd.application(name, refresh)?,
        Target::Preview(pr, service) => match argocd.preview(*pr, service.as_deref())? {
            Fetch::Found(app) => argocd.application(&app.metadata.name, refresh)?,
            other => other,
        },
    })
}

/// Whether `app` is done: Ok(true) when it runs `revision` healthy, an error
/// when its sync failed or it stayed unhealthy past the grace period.
fn judge(
    app: &Application,
    revision: &str,
    start: Instant,
    unhealthy_since: &mut Option<Instant>,
    options: &WaitOptions,
) -> Result<bool> {
    let name = &app.metadata.name;
    match app.status.verdict(revision) {
        Verdict::Done => {
            let took = start.elapsed();
            println!(
                "argocd: {name} runs {} and is healthy ({took:.0?})",
                short(revision)
            );
            return Ok(true);
        }
        Verdict::Failed(message) => {
            bail!("argocd: {name} did not sync {}: {message}", short(revision))
        }
        Verdict::Unhealthy(message) => {
            let since = *unhealthy_since.get_or_insert_with(Instant::now);
            if since.elapsed() > options.degraded_grace {
                bail!(
                    "argocd: {name} has been unhealthy for longer than {} ({message})",
                    humantime::format_duration(options.degraded_grace)
                );
            }
        }
        Verdict::Waiting => *unhealthy_since = None,
    }
    Ok(false)
}
