//! `cargo xtask preview`: per-pull-request environments. A preview is a
//! values file `values/pr/pr-<N>.yaml`; Argo CD's ApplicationSet turns each
//! open pull request into a `pr-<N>` namespace that reads it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};

use crate::parts::Repos;
use crate::parts::gitops::{Decision, FileChange, GitopsOptions};
use crate::parts::promotion::{self, DeployedImage, Env, PREVIEW_DIR, Policy, Promotion, Record};
use crate::parts::tags::{self, ImageTag};

#[derive(clap::Subcommand)]
pub enum PreviewCommand {
    /// Write values/pr/pr-<N>.yaml for the pull request's image and commit it.
    Deploy(DeployArgs),
    /// Remove a pull request's preview (when it is closed or merged).
    Cleanup(CleanupArgs),
    /// Remove previews whose values file has not changed for longer than --max-age.
    Gc(GcArgs),
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Pull request number.
    #[arg(long)]
    pr: u64,
    /// The pull request's head commit (the image is pr-<N>-<sha>).
    #[arg(long)]
    sha: String,
    /// Image digest, when known.
    #[arg(long)]
    digest: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct CleanupArgs {
    #[arg(long)]
    pr: u64,
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// Age after which an unchanged preview is removed, e.g. 72h or 3d.
    #[arg(long, default_value = "72h", value_parser = humantime::parse_duration)]
    max_age: Duration,
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(command: PreviewCommand) -> Result<()> {
    match command {
        PreviewCommand::Deploy(args) => deploy(args),
        PreviewCommand::Cleanup(args) => cleanup(args),
        PreviewCommand::Gc(args) => gc(args),
    }
}

fn deploy(args: DeployArgs) -> Result<()> {
    ensure!(
        args.pr > 0,
        "--pr must be a pull request number (1 or more)"
    );
    ensure!(
        tags::is_sha(&args.sha),
        "--sha {:?} is not a commit SHA (7 to 40 lowercase hex digits)",
        args.sha
    );
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    let tag = ImageTag::Pr {
        number: args.pr,
        sha: args.sha.clone(),
    };
    let repos = Repos::open(&args.gitops)?;
    let env = Env::Preview(args.pr);
    let promotion = Promotion {
        subject: format!("ci: deploy {env} ({})", &args.sha[..7]),
        envs: vec![env],
        image: DeployedImage {
            tag: tag.to_string(),
            digest: args.digest.unwrap_or_default(),
        },
        // A pull request's head may be force-pushed to any commit: no order.
        source: None,
        policy: Policy::AllowOlder,
    };
    let what = format!("deploy {tag} to {env}");
    promotion::promote(&repos, args.dry_run, |_| Ok(promotion.clone()))?
        .outcome
        .report(&what);
    Ok(())
}

fn cleanup(args: CleanupArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let env = Env::Preview(args.pr);
    let path = env.values_path();
    let outcome = repos.gitops.update(args.dry_run, |snapshot| {
        if snapshot.read(&path)?.is_none() {
            return Ok(Decision::NoOp(format!("{env} has no preview")));
        }
        Ok(Decision::Commit {
            changes: vec![FileChange::Delete {
                path: repos.gitops.full_path(&path),
            }],
            message: removal(format!("ci: remove preview {env}"), vec![env]),
        })
    })?;
    outcome.report(&format!("remove preview {env}"));
    Ok(())
}

fn gc(args: GcArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let max_age = args.max_age.as_secs() as i64;
    let mut removed = Vec::new();
    let outcome = repos.gitops.update(args.dry_run, |snapshot| {
        removed.clear();
        let dir = repos.gitops.full_path(PREVIEW_DIR);
        for name in repos.gitops.list_dir(snapshot.tip, &dir)? {
            let Some(env) = Env::from_preview_file(&name) else {
                continue;
            };
            let path = format!("{dir}/{name}");
            let last_change = repos
                .gitops
                .history(snapshot.tip, &path)?
                .first()
                .map(|v| v.time)
                .unwrap_or(now);
            if now - last_change > max_age {
                removed.push((env, path));
            }
        }
        if removed.is_empty() {
            return Ok(Decision::NoOp(format!(
                "no preview is older than {}",
                humantime::format_duration(args.max_age)
            )));
        }
        let envs: Vec<Env> = removed.iter().map(|(env, _)| *env).collect();
        Ok(Decision::Commit {
            changes: removed
                .iter()
                .map(|(_, path)| FileChange::Delete { path: path.clone() })
                .collect(),
            message: removal(
                format!(
                    "ci: remove stale previews {} (unchanged for over {})",
                    names(&envs),
                    humantime::format_duration(args.max_age)
                ),
                envs,
            ),
        })
    })?;
    let envs: Vec<Env> = removed.iter().map(|(env, _)| *env).collect();
    outcome.report(&format!("remove stale previews {}", names(&envs)));
    Ok(())
}

/// The message of a commit that removes previews: a record with no image.
fn removal(subject: String, envs: Vec<Env>) -> String {
    Record {
        subject,
        envs,
        image: None,
        source: None,
    }
    .message()
}

fn names(envs: &[Env]) -> String {
    envs.iter()
        .map(Env::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
