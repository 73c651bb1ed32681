//! `cargo xtask promote` and `cargo xtask rollback`: move an environment to an
//! image by committing to its values file. Argo CD does the rest.

use anyhow::{Result, bail};

use crate::parts::environments::{self, DeployedImage};
use crate::parts::gitops::{Decision, FileChange, GitopsOptions, Snapshot};
use crate::parts::service::ServiceRepo;
use crate::parts::tags::{self, ImageTag, short, short_digest};
use crate::parts::{Workspace, values};

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// Environment to promote: dev, preprod or prod.
    #[arg(long)]
    env: String,
    /// Image tag to deploy: main-<sha>, pr-<N>-<sha> or v<X.Y.Z>.
    #[arg(long)]
    tag: String,
    /// Image digest (sha256:…); when given the chart deploys repository@digest.
    #[arg(long)]
    digest: Option<String>,
    /// Allow moving to a build older (by git ancestry) than the one running.
    #[arg(long)]
    allow_rollback: bool,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// Environment to roll back.
    #[arg(long)]
    env: String,
    /// Tag to return to; default: the one the environment ran before the current one.
    #[arg(long)]
    to: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: PromoteArgs) -> Result<()> {
    environments::check(&args.env)?;
    let tag = ImageTag::parse(&args.tag)?;
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    let ws = Workspace::open(&args.gitops)?;
    let target = DeployedImage {
        tag: tag.to_string(),
        digest: args.digest.clone().unwrap_or_default(),
    };
    let path = environments::values_path(&args.env);
    // Resolved once, before any fetch: an unknown commit is bad input.
    let source = ws.service.source_commit(&tag)?;
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        let (text, current) = read_deployed(snapshot, &path)?;
        if current == target {
            return Ok(Decision::NoOp(format!(
                "{} already runs {}",
                args.env,
                describe(&target)
            )));
        }
        if !args.allow_rollback
            && let Some(source) = source
        {
            check_monotonic(&ws.service, &args.env, &current, &tag, source)?;
        }
        Ok(Decision::Commit {
            changes: vec![image_change(&ws, &path, &text, &target)?],
            message: commit_message(
                &format!("cd: promote {tag} to {}", args.env),
                &[&args.env],
                &target,
                source,
            ),
        })
    })?;
    outcome.report(&format!("promote {} to {}", describe(&target), args.env));
    Ok(())
}

pub fn rollback(args: RollbackArgs) -> Result<()> {
    environments::check(&args.env)?;
    if let Some(to) = &args.to {
        ImageTag::parse(to)?;
    }
    let ws = Workspace::open(&args.gitops)?;
    let path = environments::values_path(&args.env);
    let mut chosen = None;
    let outcome = ws.gitops.update(args.dry_run, |snapshot| {
        let (text, current) = read_deployed(snapshot, &path)?;
        let history = ws
            .gitops
            .history(snapshot.tip, &ws.gitops.full_path(&path))?;
        // Distinct images the environment ran, newest first, from git history.
        let mut ran: Vec<DeployedImage> = Vec::new();
        for version in &history {
            let Some(text) = &version.text else { continue };
            let image = DeployedImage::from_values(text)?;
            if ran.last() != Some(&image) && image.tag != current.tag {
                ran.push(image);
            }
        }
        let target = match &args.to {
            Some(to) if *to == current.tag => {
                return Ok(Decision::NoOp(format!("{} already runs {to}", args.env)));
            }
            Some(to) => ran
                .iter()
                .find(|image| image.tag == *to)
                .cloned()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} never ran {to} (in the history of {path}); earlier images: {}",
                        args.env,
                        list_tags(&ran)
                    )
                })?,
            None => match ran.first() {
                Some(previous) => previous.clone(),
                None => bail!(
                    "{} has no earlier image to roll back to in the history of {path}",
                    args.env
                ),
            },
        };
        let source = ImageTag::parse(&target.tag)
            .ok()
            .and_then(|t| ws.service.source_commit(&t).ok().flatten());
        chosen = Some(target.clone());
        Ok(Decision::Commit {
            changes: vec![image_change(&ws, &path, &text, &target)?],
            message: commit_message(
                &format!(
                    "cd: rollback {} to {} (from {})",
                    args.env, target.tag, current.tag
                ),
                &[&args.env],
                &target,
                source,
            ),
        })
    })?;
    let what = chosen.map_or_else(
        || args.env.clone(),
        |t| format!("roll {} back to {}", args.env, describe(&t)),
    );
    outcome.report(&what);
    Ok(())
}

/// An environment's values file at this snapshot, and the image it deploys.
pub fn read_deployed(snapshot: &Snapshot<'_>, path: &str) -> Result<(String, DeployedImage)> {
    match snapshot.read(path)? {
        Some(text) => {
            let image = DeployedImage::from_values(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", snapshot.repo.full_path(path)))?;
            Ok((text, image))
        }
        None => bail!(
            "{} does not exist on the GitOps branch: create the environment's values file first",
            snapshot.repo.full_path(path)
        ),
    }
}

/// The values file `text` at `path` with its image set to `image`.
pub fn image_change(
    ws: &Workspace,
    path: &str,
    text: &str,
    image: &DeployedImage,
) -> Result<FileChange> {
    Ok(FileChange::Write {
        path: ws.gitops.full_path(path),
        text: values::edit(text, &image.jq_set())?.text,
    })
}

/// Refuses to move `env` to `target` (built from `target_commit`) when that
/// commit is an ancestor of the running one's: an older build finishing late
/// must not overwrite a newer one.
pub fn check_monotonic(
    service: &ServiceRepo,
    env: &str,
    current: &DeployedImage,
    target: &ImageTag,
    target_commit: gix::ObjectId,
) -> Result<()> {
    let Ok(current_tag) = ImageTag::parse(&current.tag) else {
        return Ok(()); // A placeholder such as "latest": nothing to compare with.
    };
    // The running image's commit may be unknown here (a placeholder, or
    // another repository's history): then there is nothing to compare.
    let Ok(Some(current_commit)) = service.source_commit(&current_tag) else {
        return Ok(());
    };
    if target_commit != current_commit && service.is_ancestor(target_commit, current_commit)? {
        bail!(
            "refusing to move {env} from {current_tag} to {target}: {target} was built from {}, an ancestor of {} \
             (an older build); pass --allow-rollback to do it anyway, or use `cargo xtask rollback`",
            short(&target_commit.to_string()),
            short(&current_commit.to_string())
        );
    }
    Ok(())
}

/// The conventional subject plus trailers that record what was deployed
/// (one `Environment:` trailer per environment the commit moves).
pub fn commit_message(
    subject: &str,
    envs: &[&str],
    image: &DeployedImage,
    source: Option<gix::ObjectId>,
) -> String {
    let mut message = format!("{subject}\n\n");
    for env in envs {
        message.push_str(&format!("Environment: {env}\n"));
    }
    message.push_str(&format!("Image-Tag: {}\n", image.tag));
    if !image.digest.is_empty() {
        message.push_str(&format!("Image-Digest: {}\n", image.digest));
    }
    if let Some(source) = source {
        message.push_str(&format!("Source-Commit: {source}\n"));
    }
    message
}

pub fn describe(image: &DeployedImage) -> String {
    if image.digest.is_empty() {
        image.tag.clone()
    } else {
        format!("{}@{}", image.tag, short_digest(&image.digest))
    }
}

fn list_tags(images: &[DeployedImage]) -> String {
    if images.is_empty() {
        return "none".into();
    }
    images
        .iter()
        .map(|i| i.tag.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
