//! `cargo xtask promote`: move an environment to an image by committing to
//! its values file. Argo CD does the rest.
//!
//! promote: 1. parse the tag and digest; 2. resolve the services (`--service`,
//! repeatable) and the commit the image was built from (an unknown commit is
//! bad input, refused before any fetch); 3. each service's digest (--digest,
//! or resolved in its repository with --registry); for prod with a gate key,
//! each release digest carries a passing signed preprod gate (and is pinned);
//! 4. one commit moving every service (monotonic unless --allow-rollback);
//! one refused move changes nothing.

use anyhow::{Context, Result, bail, ensure};

use crate::domain::Repos;
use crate::domain::attestation::PublicKeyOptions;
use crate::domain::gitops::GitopsOptions;
use crate::domain::promotion::{self, DeployedImage, Env, Move, Policy, Promotion};
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
