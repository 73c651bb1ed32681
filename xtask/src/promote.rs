//! `cargo xtask promote` and `cargo xtask rollback`: move an environment to an
//! image by committing to its values file. Argo CD does the rest.
//!
//! promote: 1. parse the tag and digest; 2. resolve the commit the image was
//! built from (an unknown commit is bad input, refused before any fetch);
//! 3. for prod with a gate key: the release's digest carries a passing signed
//!    preprod gate (and is pinned); 4. promote (monotonic unless --allow-rollback).
//!
//! rollback: 1. on the GitOps tip, list the distinct images the environment
//! ran, newest first; 2. pick the previous one (or --to); 3. promote to it,
//! older builds allowed.

use anyhow::{Context, Result, anyhow, bail};

use crate::parts::Repos;
use crate::parts::attestation::PublicKeyOptions;
use crate::parts::gitops::{GitopsOptions, Snapshot};
use crate::parts::promotion::{self, DeployedImage, Env, Policy, Promotion, read_deployed};
use crate::parts::registry::Repository;
use crate::parts::tags::{self, ImageTag};

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// Environment to promote: dev, preprod or prod.
    #[arg(long)]
    env: Env,
    /// Image tag to deploy: main-<sha>, pr-<N>-<sha> (dev only) or v<X.Y.Z>.
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
    /// With a gate key: prod moves only to a release whose digest carries a passing preprod gate
    /// signed by it, read from this image repository (<registry>/<path> or oci:<dir>).
    #[arg(long, env = "IMAGE_REPOSITORY")]
    repository: Option<String>,
    #[command(flatten)]
    public_key: PublicKeyOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

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
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: PromoteArgs) -> Result<()> {
    let tag = ImageTag::parse(&args.tag)?;
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    let repos = Repos::open(&args.gitops)?;
    let mut promotion = Promotion {
        subject: format!("cd: promote {tag} to {}", args.env),
        envs: vec![args.env],
        image: DeployedImage {
            tag: tag.to_string(),
            digest: args.digest.unwrap_or_default(),
        },
        source: repos.service.source_commit(&tag)?,
        policy: if args.allow_rollback {
            Policy::AllowOlder
        } else {
            Policy::Monotonic
        },
    };
    if args.env == Env::Prod
        && let Some(key) = args.public_key.load()?
    {
        let repository = args.repository.as_deref().context(
            "with a gate key, promoting prod checks the release's signed gate in the image repository: \
             name it with --repository or IMAGE_REPOSITORY",
        )?;
        let registry = Repository::open(repository)?;
        let digest =
            promotion::check_signed_gate(&registry, &promotion.image, promotion.source, &key)?;
        println!("{tag} ({digest}) carries a passing preprod gate signed by the gate key");
        promotion.image.digest = digest;
    }
    let what = format!("promote {} to {}", promotion.image, args.env);
    promotion::promote(&repos, args.dry_run, |_| Ok(promotion.clone()))?
        .outcome
        .report(&what);
    Ok(())
}

pub fn rollback(args: RollbackArgs) -> Result<()> {
    if let Some(to) = &args.to {
        ImageTag::parse(to)?;
    }
    let repos = Repos::open(&args.gitops)?;
    let env = args.env;
    let promoted = promotion::promote(&repos, args.dry_run, |snapshot| {
        let current = read_deployed(snapshot, env)?;
        let earlier = earlier_images(&repos, snapshot, env, &current)?;
        let target = match &args.to {
            Some(to) if *to == current.tag => current.clone(),
            Some(to) => earlier
                .iter()
                .find(|image| image.tag == *to)
                .cloned()
                .ok_or_else(|| {
                    let tags: Vec<&str> = earlier.iter().map(|i| i.tag.as_str()).collect();
                    anyhow!(
                        "{env} never ran {to} (in the history of {}); earlier images: {}",
                        env.values_path(),
                        if tags.is_empty() {
                            "none".into()
                        } else {
                            tags.join(", ")
                        }
                    )
                })?,
            None => match earlier.first() {
                Some(previous) => previous.clone(),
                None => bail!(
                    "{env} has no earlier image to roll back to in the history of {}",
                    env.values_path()
                ),
            },
        };
        let source = ImageTag::parse(&target.tag)
            .ok()
            .and_then(|t| repos.service.source_commit(&t).ok().flatten());
        Ok(Promotion {
            subject: format!(
                "cd: rollback {env} to {} (from {})",
                target.tag, current.tag
            ),
            envs: vec![env],
            image: target,
            source,
            policy: Policy::AllowOlder,
        })
    })?;
    let what = promoted.promotion.as_ref().map_or_else(
        || env.to_string(),
        |p| format!("roll {env} back to {}", p.image),
    );
    promoted.outcome.report(&what);
    Ok(())
}

/// The distinct images `env` ran before `current`, newest first, from the
/// history of its values file.
fn earlier_images(
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    env: Env,
    current: &DeployedImage,
) -> Result<Vec<DeployedImage>> {
    let history = repos
        .gitops
        .history(snapshot.tip, &repos.gitops.full_path(&env.values_path()))?;
    let mut ran: Vec<DeployedImage> = Vec::new();
    for version in &history {
        let Some(text) = &version.text else { continue };
        let image = DeployedImage::from_values(text)?;
        if ran.last() != Some(&image) && image.tag != current.tag {
            ran.push(image);
        }
    }
    Ok(ran)
}
