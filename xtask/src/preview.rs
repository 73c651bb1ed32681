//! `cargo xtask preview`: per-pull-request environments. A preview is a
//! values file `values/pr/pr-<N>.yaml`; Argo CD's ApplicationSet turns each
//! open pull request into a `pr-<N>` namespace that reads it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};

use crate::parts::Workspace;
use crate::parts::environments::{self, PREVIEW_DIR};
use crate::parts::gitops::{Decision, FileChange, GitopsOptions};
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
    let ws = Workspace::open(&args.gitops)?;
    let path = environments::preview_path(args.pr);
    let text = preview_values(args.pr, &tag, args.digest.as_deref().unwrap_or(""));
    let short = &args.sha[..7];
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        if snapshot.read(&path)?.as_deref() == Some(text.as_str()) {
            return Ok(Decision::NoOp(format!(
                "pr-{} already deploys {tag}",
                args.pr
            )));
        }
        Ok(Decision::Commit {
            changes: vec![FileChange::Write {
                path: ws.gitops.full_path(&path),
                text: text.clone(),
            }],
            message: format!(
                "ci: deploy pr-{} ({short})\n\nEnvironment: pr-{}\nImage-Tag: {tag}\n{}",
                args.pr,
                args.pr,
                args.digest
                    .as_ref()
                    .map(|d| format!("Image-Digest: {d}\n"))
                    .unwrap_or_default()
            ),
        })
    })?;
    outcome.report(&format!("deploy {tag} to pr-{}", args.pr));
    Ok(())
}

/// The whole values file of a preview. Written, not edited: it is the
/// pipeline's file from start to end.
fn preview_values(pr: u64, tag: &ImageTag, digest: &str) -> String {
    format!(
        "# Preview environment of pull request #{pr}, written by `cargo xtask preview deploy`.\n\
         # Argo CD's ApplicationSet deploys it to namespace pr-{pr}; `cargo xtask preview cleanup` removes it.\n\
         image:\n  tag: \"{tag}\"\n  digest: \"{digest}\"\n\
         env:\n  ENV_NAME: \"pr-{pr}\"\n  # Previews call the services of dev, which runs the latest release.\n  SERVICES_NAMESPACE: \"dev\"\n"
    )
}

fn cleanup(args: CleanupArgs) -> Result<()> {
    let ws = Workspace::open(&args.gitops)?;
    let path = environments::preview_path(args.pr);
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        if snapshot.read(&path)?.is_none() {
            return Ok(Decision::NoOp(format!("pr-{} has no preview", args.pr)));
        }
        Ok(Decision::Commit {
            changes: vec![FileChange::Delete {
                path: ws.gitops.full_path(&path),
            }],
            message: format!(
                "ci: remove preview pr-{}\n\nEnvironment: pr-{}\n",
                args.pr, args.pr
            ),
        })
    })?;
    outcome.report(&format!("remove preview pr-{}", args.pr));
    Ok(())
}

fn gc(args: GcArgs) -> Result<()> {
    let ws = Workspace::open(&args.gitops)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let max_age = args.max_age.as_secs() as i64;
    let mut removed = Vec::new();
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        removed.clear();
        let dir = ws.gitops.full_path(PREVIEW_DIR);
        for name in ws.gitops.list_dir(snapshot.tip, &dir)? {
            let Some(pr) = name
                .strip_prefix("pr-")
                .and_then(|n| n.strip_suffix(".yaml"))
            else {
                continue;
            };
            let path = format!("{dir}/{name}");
            let last_change = ws
                .gitops
                .history(snapshot.tip, &path)?
                .first()
                .map(|v| v.time)
                .unwrap_or(now);
            if now - last_change > max_age {
                removed.push((format!("pr-{pr}"), path));
            }
        }
        if removed.is_empty() {
            return Ok(Decision::NoOp(format!(
                "no preview is older than {}",
                humantime::format_duration(args.max_age)
            )));
        }
        let names: Vec<&str> = removed.iter().map(|(n, _)| n.as_str()).collect();
        Ok(Decision::Commit {
            changes: removed
                .iter()
                .map(|(_, path)| FileChange::Delete { path: path.clone() })
                .collect(),
            message: format!(
                "ci: remove stale previews {} (unchanged for over {})\n",
                names.join(", "),
                humantime::format_duration(args.max_age)
            ),
        })
    })?;
    let names: Vec<&str> = removed.iter().map(|(n, _)| n.as_str()).collect();
    outcome.report(&format!("remove stale previews {}", names.join(", ")));
    Ok(())
}
