//! `cargo xtask promote` and `cargo xtask rollback`: move an environment to an
//! image by committing to its values file. Argo CD does the rest.
//!
//! promote: 1. parse the tag and digest; 2. resolve the services (`--service`,
//! repeatable) and the commit the image was built from (an unknown commit is
//! bad input, refused before any fetch); 3. each service's digest (--digest,
//! or resolved in its repository with --registry); for prod with a gate key,
//! each release digest carries a passing signed preprod gate (and is pinned);
//! 4. one commit moving every service (monotonic unless --allow-rollback);
//! one refused move changes nothing.
//!
//! rollback: 1. on the GitOps tip, list the distinct images the service's
//! environment ran, newest first; 2. pick the previous one (or --to);
//! 3. promote to it, older builds allowed.

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::domain::Repos;
use crate::domain::attestation::PublicKeyOptions;
use crate::domain::gitops::{GitopsOptions, Snapshot};
use crate::domain::promotion::{
    self, DeployedImage, Env, Move, Policy, Promotion, Target, read_deployed,
};
use crate::domain::registry::Repository;
use crate::domain::services::{RepositoryOptions, Service, ServiceSelection};
use crate::domain::signature::{self, ImageKeyOptions};
use crate::domain::tags::{self, ImageTag};

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// Environment to promote: dev, preprod or prod.
    #[arg(long)]
    env: Env,
    /// Image tag to deploy: main-<sha>, pr-<N>-<sha> (dev only) or v<X.Y.Z>; every named
    /// service moves to its own image of that tag (built from the same commit).
    #[arg(long)]
    tag: String,
    /// Image digest (sha256:…); when given the chart deploys repository@digest. One service only;
    /// with --registry each service's digest is resolved in its own repository.
    #[arg(long)]
    digest: Option<String>,
    /// Allow moving to a build older (by git ancestry) than the one running.
    #[arg(long)]
    allow_rollback: bool,
    /// Print the diff of every file and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    services: ServiceSelection,
    /// The image repositories: with --registry each service's digest is resolved there; with a
    /// gate key, prod moves only to a release whose digest carries a passing signed preprod gate.
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    public_key: PublicKeyOptions,
    /// With the image key, every digest promoted must carry the pipeline's signature by it
    /// (required inside GitHub Actions for preprod and prod).
    #[command(flatten)]
    image_key: ImageKeyOptions,
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
    /// The service to roll back (one at a time).
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

/// The steps: parse; the services and the commit; each service's digest
/// (--digest, its repository, or none; for prod with a gate key, the signed
/// gate of each digest); one promotion of every service.
pub fn run(args: PromoteArgs) -> Result<()> {
    let tag = ImageTag::parse(&args.tag)?;
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    let repos = Repos::open(&args.gitops)?;
    let all = promotion::workspace_services(&repos.service.root())?;
    let targets = promotion::targets(&all, &args.services)?;
    ensure!(
        args.digest.is_none() || targets.len() == 1,
        "--digest names one image, but {} services were named: give --registry (IMAGE_REGISTRY) so each \
         service's digest is resolved in its own repository",
        targets.len()
    );
    let source = repos.service.source_commit(&tag)?;
    let key = gate_key_for(&args)?;
    let image_key = image_key_for(&args)?;
    let mut moves = Vec::new();
    for target in targets {
        let needs_repository = key.is_some() || image_key.is_some();
        let repository = repository_for(&args, &target.service, &all, needs_repository)?;
        let mut image = image_for(&args, &tag, source, repository.as_ref(), key.as_ref())?;
        if let (Some(image_key), Some(repository)) = (&image_key, &repository) {
            require_signed_image(&mut image, repository, image_key)?;
        }
        // A build tag names one service's build of one commit: its bits must say so.
        if let (Some(repository), ImageTag::Main { sha } | ImageTag::Pr { sha, .. }) =
            (&repository, &tag)
            && !image.digest.is_empty()
        {
            let (name, digest) = (target.name(), &image.digest);
            promotion::check_built_from(&repos.service, &all, repository, digest, name, sha)?;
        }
        moves.push(Move {
            target,
            envs: vec![args.env],
            image,
            source,
        });
    }
    let promotion = Promotion {
        subject: subject(&tag, args.env, &moves),
        moves,
        policy: match args.allow_rollback {
            true => Policy::AllowOlder,
            false => Policy::Monotonic,
        },
    };
    let what = describe(&promotion, &tag, args.env);
    promotion::promote(&repos, args.dry_run, |_| Ok(promotion.clone()))?
        .outcome
        .report(&what);
    Ok(())
}

/// What a promotion did, for its report: the one image, or how many services.
fn describe(promotion: &Promotion, tag: &ImageTag, env: Env) -> String {
    match promotion.moves.as_slice() {
        [one] => format!("promote {} to {env}", one.image),
        many => format!("promote {} services to {tag} in {env}", many.len()),
    }
}

/// With the image key: the image's digest (resolved from its tag when not given) carries the
/// signature the cluster's admission policy checks, or nothing is promoted.
fn require_signed_image(
    image: &mut DeployedImage,
    repository: &Repository,
    image_key: &p256::ecdsa::VerifyingKey,
) -> Result<()> {
    if image.digest.is_empty() {
        image.digest = repository
            .resolve(&image.tag)?
            .with_context(|| format!("{repository} has no {}: build and push it first", image.tag))?
            .digest;
    }
    signature::require_signed(repository, &image.digest, image_key, "promote")
}

/// The image one service moves to: --digest; with a gate key, the release's
/// digest that carries a passing signed preprod gate; with a repository, the
/// tag's digest there; else the tag alone.
fn image_for(
    args: &PromoteArgs,
    tag: &ImageTag,
    source: Option<gix::ObjectId>,
    repository: Option<&Repository>,
    gate_key: Option<&p256::ecdsa::VerifyingKey>,
) -> Result<DeployedImage> {
    let mut image = DeployedImage {
        tag: tag.to_string(),
        digest: args.digest.clone().unwrap_or_default(),
    };
    match (repository, gate_key) {
        (Some(repository), Some(key)) => {
            let digest = promotion::check_signed_gate(repository, &image, source, key)?;
            println!("{tag} ({digest}) carries a passing preprod gate signed by the gate key");
            image.digest = digest;
        }
        (Some(repository), None) if image.digest.is_empty() => {
            image.digest = repository
                .resolve(&image.tag)?
                .with_context(|| format!("{repository} has no {tag}: build and push it first"))?
                .digest;
        }
        _ => {}
    }
    Ok(image)
}

/// The image key every promoted digest must be signed by: given, or, inside
/// GitHub Actions for preprod and prod, required.
fn image_key_for(args: &PromoteArgs) -> Result<Option<p256::ecdsa::VerifyingKey>> {
    let key = args.image_key.load()?;
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if key.is_none() && in_actions && matches!(args.env, Env::Preprod | Env::Prod) {
        bail!(
            "promote --env {} inside GitHub Actions checks the image's signature first: give the image public \
             key (IMAGE_KEY_FILE=gitops/policy/cosign.pub, or --image-key) and the image repository",
            args.env
        );
    }
    Ok(key)
}

/// The gate key prod's promotions need (none for other environments); the
/// refusal inside Actions only when there is none.
fn gate_key_for(args: &PromoteArgs) -> Result<Option<p256::ecdsa::VerifyingKey>> {
    match (args.env, args.public_key.load()?) {
        (Env::Prod, None) => refuse_unsigned_prod_in_actions(),
        (Env::Prod, key) => Ok(key),
        _ => Ok(None),
    }
}

/// Prod without a gate key: fine by hand (the unsigned tag is the
/// operator's call), refused inside GitHub Actions as release refuses it,
/// where any workflow with a token could have written the gate it skips.
fn refuse_unsigned_prod_in_actions() -> Result<Option<p256::ecdsa::VerifyingKey>> {
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        bail!(
            "promote --env prod inside GitHub Actions needs the gate's public key (GATE_PUBLIC_KEY or \
             --public-key) and the image repository: prod moves only to a release whose digest carries a \
             passing signed preprod gate, as release requires"
        );
    }
    Ok(None)
}

/// `service`'s image repository, opened, when promote needs one: with a gate
/// key for prod (then it is required), or with --registry (digests resolved).
fn repository_for(
    args: &PromoteArgs,
    service: &Service,
    all: &[Service],
    gate_key: bool,
) -> Result<Option<Repository>> {
    if gate_key {
        let repository = args.repositories.for_service(service, all)?.context(
            "with a gate key or an image key, promote checks the release's signed gate or the image's \
             signature in the image repository: name it with --registry (IMAGE_REGISTRY) or --repository \
             (IMAGE_REPOSITORY)",
        )?;
        return Ok(Some(Repository::open(&repository)?));
    }
    match &args.repositories.registry {
        Some(_) => Ok(Some(Repository::open(
            &args.repositories.require(service, all)?,
        )?)),
        None => Ok(None),
    }
}

/// `cd: promote <tag> to <env>`, naming the services in a workspace of several.
fn subject(tag: &ImageTag, env: Env, moves: &[Move]) -> String {
    let named: Vec<&str> = moves
        .iter()
        .filter(|m| m.target.named)
        .map(|m| m.target.name())
        .collect();
    if named.is_empty() {
        format!("cd: promote {tag} to {env}")
    } else {
        format!("cd: promote {} to {tag} in {env}", named.join(", "))
    }
}

/// The steps: the service; on the GitOps tip, the distinct images its
/// environment ran, newest first; the previous one (or --to); promote, older
/// builds allowed.
pub fn rollback(args: RollbackArgs) -> Result<()> {
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
