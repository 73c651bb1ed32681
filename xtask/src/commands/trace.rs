//! `cargo xtask trace`: every environment, and every tag in the GitOps
//! history, carrying the same bits as a tag or a commit, per service (each
//! has its own image repository, so its own digests). Read from the GitOps
//! branch alone.

use anyhow::Result;

use crate::domain::Repos;
use crate::domain::deployments::{self, EnvStatus};
use crate::domain::gitops::GitopsOptions;
use crate::domain::promotion::{DeployedImage, Env, Target};
use crate::domain::services::ServiceSelection;
use crate::domain::tags::ImageTag;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// An image tag (main-<sha>, pr-<N>-<sha>, v<X.Y.Z>) or a commit SHA.
    target: String,
    /// The services to trace it in (repeatable). Default: every service.
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

/// Per service: every environment, and every tag seen in GitOps history,
/// that carries the same bits as `target`: the same digest, or failing
/// digests, the same commit.
pub fn run(args: TraceArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let tip = repos.gitops.fetch_tip()?;
    let (_, targets) = deployments::chosen(&repos, &args.services)?;
    let rows = deployments::collect(&repos, tip, &targets)?;
    for target in &targets {
        let mine: Vec<&EnvStatus> = rows.iter().filter(|r| r.service == target.name()).collect();
        let seen = images_ever_deployed(&repos, tip, target, &mine)?;
        let (what, tags, envs) = trace_one(&repos, &args.target, &seen, &mine)?;
        if target.named {
            println!("{} in {}: {what}", args.target, target.name());
        } else {
            println!("{}: {what}", args.target);
        }
        println!("  same bits under tags: {}", list_or(&tags, "none"));
        println!("  running in: {}", list_or(&envs, "no environment"));
    }
    Ok(())
}

/// What `wanted` is in one service (a digest it was deployed at, else the
/// commit it names), the tags with the same bits, and the environments running them.
fn trace_one(
    repos: &Repos,
    wanted: &str,
    seen: &[DeployedImage],
    rows: &[&EnvStatus],
) -> Result<(String, Vec<String>, Vec<String>)> {
    let source_of = |tag: &str| {
        ImageTag::parse(tag)
            .ok()
            .and_then(|t| repos.service.source_commit(&t).ok().flatten())
            .map(|id| id.to_string())
    };
    let wanted_digest = seen
        .iter()
        .find(|i| i.tag == wanted && !i.digest.is_empty())
        .map(|i| i.digest.clone());
    let wanted_commit = if crate::domain::tags::is_sha(wanted) {
        Some(repos.service.commit(wanted)?.to_string())
    } else {
        source_of(wanted)
    };
    let matches = |tag: &str, digest: &str| match &wanted_digest {
        Some(wanted) => digest == wanted,
        None => wanted_commit.is_some() && source_of(tag) == wanted_commit,
    };
    let mut tags: Vec<String> = seen
        .iter()
        .filter(|i| matches(&i.tag, &i.digest))
        .map(|i| i.tag.clone())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    let envs: Vec<String> = rows
        .iter()
        .filter(|r| matches(&r.tag, &r.digest))
        .map(|r| format!("{} ({})", r.env, r.tag))
        .collect();
    let what = match (&wanted_digest, &wanted_commit) {
        (Some(d), _) => format!("digest {d}"),
        (None, Some(c)) => format!("commit {c}"),
        (None, None) => "unknown to this repository and its GitOps history".into(),
    };
    Ok((what, tags, envs))
}

/// Every (tag, digest) ever written to `target`'s values of the environments in `rows`.
fn images_ever_deployed(
    repos: &Repos,
    tip: gix::ObjectId,
    target: &Target,
    rows: &[&EnvStatus],
) -> Result<Vec<DeployedImage>> {
    let mut seen: Vec<DeployedImage> = Vec::new();
    for row in rows {
        let path = target.path(row.env.parse::<Env>()?);
        for version in repos.gitops.history(tip, &repos.gitops.full_path(&path))? {
            if let Some(image) = version
                .text
                .as_deref()
                .and_then(|t| DeployedImage::from_values(t).ok())
                && !seen.contains(&image)
            {
                seen.push(image);
            }
        }
    }
    Ok(seen)
}

fn list_or(items: &[impl AsRef<str>], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
