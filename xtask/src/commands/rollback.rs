//! `cargo xtask rollback`: return an environment to the image it ran before
//! (or `--to` a tag it ran), as a new commit on the GitOps branch.
//!
//! 1. on the GitOps tip, list the distinct images the service's environment
//!    ran, newest first;
//! 2. pick the previous one (or --to);
//! 3. promote to it, older builds allowed.

use anyhow::{Result, anyhow, bail};

use crate::domain::Repos;
use crate::domain::gitops::{GitopsOptions, Snapshot};
use crate::domain::promotion::{
    self, DeployedImage, Env, Move, Policy, Promotion, Target, read_deployed,
};
use crate::domain::services::ServiceSelection;
use crate::domain::tags::ImageTag;

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// Environment to roll back.
    #[arg(long)]
    env: Env,
    /// Tag to return to; default: the one the environment ran before the current one.
    #[arg(long)]
    to: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The service to roll back (one at a time).
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

/// The steps: the service; on the GitOps tip, the distinct images its
/// environment ran, newest first; the previous one (or --to); promote, older
/// builds allowed.
pub fn run(args: RollbackArgs) -> Result<()> {
    if let Some(to) = &args.to {
        ImageTag::parse(to)?;
    }
    let repos = Repos::open(&args.gitops)?;
    let all = promotion::workspace_services(&repos.service.root())?;
    let names = vec![args.services.one(&all)?.name];
    let target = &promotion::targets(&all, &ServiceSelection { names })?[0];
    let env = args.env;
    let promoted = promotion::promote(&repos, args.dry_run, |snapshot| {
        rollback_to(&repos, snapshot, target, env, args.to.as_deref())
    })?;
    let what = promoted.promotion.as_ref().map_or_else(
        || env.to_string(),
        |p| format!("roll {env} back to {}", p.moves[0].image),
    );
    promoted.outcome.report(&what);
    Ok(())
}

/// The promotion that rolls `target`'s `env` back, decided at `snapshot`.
fn rollback_to(
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    target: &Target,
    env: Env,
    to: Option<&str>,
) -> Result<Promotion> {
    let current = read_deployed(snapshot, target, env)?;
    let earlier = earlier_images(repos, snapshot, target, env, &current)?;
    let path = target.path(env);
    let image = match to {
        Some(to) if to == current.tag => current.clone(),
        Some(to) => earlier
            .iter()
            .find(|image| image.tag == to)
            .cloned()
            .ok_or_else(|| {
                let tags: Vec<&str> = earlier.iter().map(|i| i.tag.as_str()).collect();
                let tags = if tags.is_empty() {
                    "none".into()
                } else {
                    tags.join(", ")
                };
                anyhow!("{env} never ran {to} (in the history of {path}); earlier images: {tags}")
            })?,
        None => match earlier.first() {
            Some(previous) => previous.clone(),
            None => bail!(
                "{env} has no earlier image to roll back to in the history of {path}: {} is the first build it \
                 ran (before it, only the repository's placeholder); release a fixed version instead",
                current.tag
            ),
        },
    };
    let source = ImageTag::parse(&image.tag)
        .ok()
        .and_then(|t| repos.service.source_commit(&t).ok().flatten());
    let whose = if target.named {
        format!("{} ", target.name())
    } else {
        String::new()
    };
    Ok(Promotion {
        subject: format!(
            "cd: rollback {whose}{env} to {} (from {})",
            image.tag, current.tag
        ),
        moves: vec![Move {
            target: target.clone(),
            envs: vec![env],
            image,
            source,
        }],
        policy: Policy::AllowOlder,
    })
}

/// The distinct images `env` ran before `current`, newest first, from the
/// history of its values file; the placeholder a repository starts with is
/// not one (it never ran: rolling back to it would leave nothing running).
fn earlier_images(
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    target: &Target,
    env: Env,
    current: &DeployedImage,
) -> Result<Vec<DeployedImage>> {
    let history = repos
        .gitops
        .history(snapshot.tip, &repos.gitops.full_path(&target.path(env)))?;
    let mut ran: Vec<DeployedImage> = Vec::new();
    for version in &history {
        let Some(text) = &version.text else { continue };
        let image = DeployedImage::from_values(text)?;
        if ran.last() != Some(&image) && image.tag != current.tag && !image.is_placeholder() {
            ran.push(image);
        }
    }
    Ok(ran)
}
