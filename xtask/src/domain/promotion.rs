//! Promotion: moving environments to an image, as one GitOps commit that says
//! what it did. `promote`, `rollback`, `release` and `preview deploy` all go
//! through [`promote`]; nothing else writes an image into a values file.
//!
//! - [`Env`]: the environments (dev, preprod, prod, and pull-request previews),
//!   parsed once at the command line; a [`Target`] (a service) knows its
//!   values file in each (`values/<env>/<values-file>`,
//!   `values/pr/pr-<N>/<values-file>`).
//! - [`DeployedImage`]: what a values file deploys (`image.tag`, `image.digest`),
//!   read from the file and written back as two [`Edit`]s (data, not code).
//! - [`Policy`]: whether an older build may replace a newer one (the monotonic
//!   check, by git ancestry of the commits the images were built from).
//! - [`Record`]: the commit message, a subject plus trailers (`Environment:`,
//!   `Image-Tag:`, `Image-Digest:`, `Source-Commit:`; in a workspace of several
//!   services each service's group opens with `Service:`), written here and
//!   parsed back here (release notes tell the pipeline's commits from people's by it).
//! - [`Promotion`]: a set of [`Move`]s (service, environments, image), made in
//!   one commit only if every move passes its checks.
//!
//! The step that makes the change writes its message: a [`Promotion`] carries
//! its subject, and [`promote`] adds the trailers from what it actually moved.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use gix::ObjectId;
use p256::ecdsa::VerifyingKey;
use serde_json::Value;

use crate::domain::Repos;
use crate::domain::attestation;
use crate::domain::gitops::{Decision, FileChange, Outcome, Snapshot};
use crate::domain::registry::Repository;
use crate::domain::service_repo::ServiceRepo;
use crate::domain::services::{self, Declaration, Service, ServiceSelection};
use crate::domain::tags::{ImageTag, short, short_digest};
use crate::plumbing::yaml::{self, Edit};

/// An environment the pipeline deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Env {
    Dev,
    Preprod,
    Prod,
    /// The preview of pull request N (namespace `pr-N`).
    Preview(u64),
}

/// Folder of the preview environments' values, from the GitOps root: one
/// folder `pr-<N>` per pull request, one file per previewed service.
pub const PREVIEW_DIR: &str = "values/pr";

/// The values file of a repository that declares no service (no
/// `services/<name>/service.toml`): the layout of one service before services
/// were declared, which a GitOps-only checkout may still have.
pub const UNDECLARED_VALUES_FILE: &str = "service-demo.yaml";

impl Env {
    /// The long-lived environments, in promotion order.
    pub const LONG_LIVED: [Env; 3] = [Env::Dev, Env::Preprod, Env::Prod];

    /// A service's values file here, relative to the GitOps root:
    /// `values/<env>/<values_file>`, or `values/pr/pr-<N>/<values_file>`.
    pub fn values_path(self, values_file: &str) -> String {
        match self {
            Env::Preview(pr) => format!("{PREVIEW_DIR}/pr-{pr}/{values_file}"),
            env => format!("values/{env}/{values_file}"),
        }
    }

    /// The preview a file of the layout before services belongs to
    /// (`values/pr/pr-<N>.yaml`), which cleanup and gc still remove.
    pub fn from_preview_file(name: &str) -> Option<Env> {
        Env::from_preview_dir(name.strip_suffix(".yaml")?)
    }

    /// The preview a folder in [`PREVIEW_DIR`] belongs to (`pr-<N>`).
    pub fn from_preview_dir(name: &str) -> Option<Env> {
        match name.parse() {
            Ok(env @ Env::Preview(pr)) if name == format!("pr-{pr}") => Some(env),
            _ => None,
        }
    }

    /// Whether this environment may run `tag`: preprod and prod run only
    /// builds of main and releases, never a pull request's unreviewed code;
    /// prod runs only releases (what `release` made after the preprod gate).
    fn check_accepts(self, tag: &ImageTag) -> Result<()> {
        if matches!(self, Env::Preprod | Env::Prod) && matches!(tag, ImageTag::Pr { .. }) {
            bail!(
                "refusing to deploy {tag} to {self}: {self} runs only reviewed code (main-<sha> builds and \
                 v<X.Y.Z> releases); merge the pull request and promote its main-<sha> build"
            );
        }
        if self == Env::Prod && !matches!(tag, ImageTag::Release(_)) {
            bail!(
                "refusing to deploy {tag} to prod: prod runs only releases (v<X.Y.Z>), which cargo xtask \
                 release makes from a main-<sha> build that passed the preprod gate; release it"
            );
        }
        Ok(())
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Env::Dev => f.write_str("dev"),
            Env::Preprod => f.write_str("preprod"),
            Env::Prod => f.write_str("prod"),
            Env::Preview(pr) => write!(f, "pr-{pr}"),
        }
    }
}

impl FromStr for Env {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dev" => Ok(Env::Dev),
            "preprod" => Ok(Env::Preprod),
            "prod" => Ok(Env::Prod),
            _ => match s.strip_prefix("pr-").and_then(|n| n.parse().ok()) {
                Some(pr) if pr > 0 => Ok(Env::Preview(pr)),
                _ => bail!("unknown environment {s:?}: expected dev, preprod, prod or pr-<N>"),
            },
        }
    }
}

/// The image a values file deploys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeployedImage {
    pub tag: String,
    /// Empty when the chart deploys by tag.
    pub digest: String,
}

impl DeployedImage {
    /// The tags a new repository's values files start with (`new-service` writes them too), before any
    /// pipeline has deployed a build: prod and dev `v0.0.0`, preprod `main-0000000`.
    pub const PLACEHOLDER_TAGS: [&str; 2] = ["v0.0.0", "main-0000000"];

    /// A starting placeholder, never a build the pipeline deployed: one of [`Self::PLACEHOLDER_TAGS`]
    /// with no digest. Nothing rolls back to one.
    pub fn is_placeholder(&self) -> bool {
        self.digest.is_empty() && Self::PLACEHOLDER_TAGS.contains(&self.tag.as_str())
    }

    pub fn from_values(text: &str) -> Result<Self> {
        let doc = yaml::parse(text)?;
        let field = |name: &str| match &doc["image"][name] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            other => bail!("image.{name} is not a string: {other}"),
        };
        Ok(Self {
            tag: field("tag")?,
            digest: field("digest")?,
        })
    }

    /// The edits that set this image in a values file. An empty digest clears
    /// the old one, so the chart never deploys a new tag at an old digest.
    pub fn edits(&self) -> [Edit; 2] {
        [
            Edit::set(&["image", "tag"], self.tag.as_str()),
            Edit::set(&["image", "digest"], self.digest.as_str()),
        ]
    }
}

impl fmt::Display for DeployedImage {
    /// `tag@sha256:<12 hex>`, or the tag alone when deployed by tag.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digest.is_empty() {
            f.write_str(&self.tag)
        } else {
            write!(f, "{}@{}", self.tag, short_digest(&self.digest))
        }
    }
}

/// Whether a promotion may move an environment to an older build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse a build whose commit is an ancestor of the running one's: an
    /// older build finishing late must not overwrite a newer one.
    Monotonic,
    /// Allow it: a rollback, or a person who said so.
    AllowOlder,
}

/// One service's values in every environment: what a promotion moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: Service,
    /// Whether records name the service (`Service:`): in a workspace of
    /// several; a workspace of one writes its records as before.
    pub named: bool,
}

impl Target {
    /// Its values file in `env`, relative to the GitOps root.
    pub fn path(&self, env: Env) -> String {
        env.values_path(&self.service.declaration.values_file)
    }

    pub fn name(&self) -> &str {
        &self.service.name
    }
}

/// The services of the workspace at `root`, as [`services::load`] finds them;
/// a repository without a `services/` folder is the one-service layout of
/// before (its values file [`UNDECLARED_VALUES_FILE`]).
pub fn workspace_services(root: &Path) -> Result<Vec<Service>> {
    if root.join(services::SERVICES_DIR).is_dir() {
        return services::load(root);
    }
    Ok(vec![Service {
        name: "items-api".into(),
        dir: format!("{}/items-api", services::SERVICES_DIR),
        declaration: Declaration {
            image: "service-demo".into(),
            chart: "charts/service-demo".into(),
            port: 8080,
            health_path: "/healthz".into(),
            ready_path: "/readyz".into(),
            values_file: UNDECLARED_VALUES_FILE.into(),
        },
    }])
}

/// The targets `selection` names among `all` (the only service without a
/// name). A values file name is checked again here: it becomes a path.
pub fn targets(all: &[Service], selection: &ServiceSelection) -> Result<Vec<Target>> {
    let chosen = selection.resolve(all)?;
    for service in &chosen {
        let file = &service.declaration.values_file;
        ensure!(
            !file.is_empty() && !file.contains(['/', '\\']) && !file.starts_with('.'),
            "{}'s values-file {file:?} is not a plain file name: fix its service.toml",
            service.name
        );
    }
    Ok(chosen
        .into_iter()
        .map(|service| Target {
            service,
            named: all.len() > 1,
        })
        .collect())
}

/// The commit message of a GitOps change: a subject and the trailers that
/// record what was deployed where, one group per service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub subject: String,
    pub moves: Vec<RecordedMove>,
}

/// One service's part of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedMove {
    /// `Service:`, which opens the group; None in a workspace of one service
    /// (then the record has this one group, as records always had).
    pub service: Option<String>,
    pub envs: Vec<Env>,
    /// None for a change that removes environments (a preview's cleanup).
    pub image: Option<DeployedImage>,
    /// The commit the image was built from, when known.
    pub source: Option<ObjectId>,
}

impl Record {
    /// The message: subject, blank line, one trailer per line; each service's
    /// trailers follow its `Service:` line.
    pub fn message(&self) -> String {
        let mut message = format!("{}\n\n", self.subject);
        for moved in &self.moves {
            if let Some(service) = &moved.service {
                message.push_str(&format!("Service: {service}\n"));
            }
            for env in &moved.envs {
                message.push_str(&format!("Environment: {env}\n"));
            }
            if let Some(image) = &moved.image {
                message.push_str(&format!("Image-Tag: {}\n", image.tag));
                if !image.digest.is_empty() {
                    message.push_str(&format!("Image-Digest: {}\n", image.digest));
                }
            }
            if let Some(source) = moved.source {
                message.push_str(&format!("Source-Commit: {source}\n"));
            }
        }
        message
    }

    /// A message written by [`Record::message`], read back; None for any other
    /// commit (a person's), which carries no `Environment:` trailer.
    pub fn parse(message: &str) -> Option<Record> {
        let (subject, body) = message.split_once("\n\n")?;
        let mut moves: Vec<RecordedMove> = Vec::new();
        let trailers = body.trim_end().rsplit("\n\n").next()?;
        for line in trailers.lines() {
            let (key, value) = line.split_once(": ")?;
            let value = value.trim();
            if key == "Service" {
                // A package name: letters, digits, '-' and '_' (never a path).
                let name_like = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                if value.is_empty() || !value.chars().all(name_like) {
                    return None;
                }
                moves.push(RecordedMove {
                    service: Some(value.to_owned()),
                    ..RecordedMove::default()
                });
                continue;
            }
            if moves.is_empty() {
                moves.push(RecordedMove::default());
            }
            let moved = moves.last_mut()?;
            match key {
                "Environment" => moved.envs.push(value.parse().ok()?),
                "Image-Tag" => {
                    let image = moved.image.get_or_insert_with(|| DeployedImage {
                        tag: String::new(),
                        digest: String::new(),
                    });
                    image.tag = value.to_owned();
                }
                "Image-Digest" => moved.image.as_mut()?.digest = value.to_owned(),
                "Source-Commit" => moved.source = Some(value.parse().ok()?),
                _ => return None,
            }
        }
        // Unambiguous: one unnamed group, or every group named; none empty.
        let named = moves.iter().all(|m| m.service.is_some());
        let whole = moves.iter().all(|m| !m.envs.is_empty());
        (!moves.is_empty() && whole && (named || moves.len() == 1)).then(|| Record {
            subject: subject.trim().to_owned(),
            moves,
        })
    }
}

/// One service's part of a promotion: these environments at this image.
#[derive(Debug, Clone)]
pub struct Move {
    pub target: Target,
    pub envs: Vec<Env>,
    pub image: DeployedImage,
    /// The commit the image was built from; None when unknown (no monotonic check then).
    pub source: Option<ObjectId>,
}

/// What a command wants: every move, in one commit.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The commit subject, e.g. `cd: promote main-<sha> to preprod`.
    pub subject: String,
    pub moves: Vec<Move>,
    pub policy: Policy,
}

/// What [`promote`] did, and the promotion it decided on the tip it pushed to.
pub struct Promoted {
    pub outcome: Outcome,
    pub promotion: Option<Promotion>,
}

/// Moves services' environments to images in one commit on the GitOps branch.
///
/// `decide` is asked on the current tip, and again on the new tip whenever a
/// push loses a race, so a rollback's "previous image" is always read fresh.
/// Per service and environment: its values file is read (a missing preview
/// file is created), it is skipped if it already runs the image, the
/// environment must accept the tag, and the policy's monotonic check must
/// pass. Only when every move passes are the scalars rewritten, with a
/// [`Record`] as the message: one refused move changes nothing.
pub fn promote(
    repos: &Repos,
    dry_run: bool,
    mut decide: impl FnMut(&Snapshot<'_>) -> Result<Promotion>,
) -> Result<Promoted> {
    let mut decided = None;
    let outcome = repos.gitops.update(dry_run, |snapshot| {
        let promotion = decide(snapshot)?;
        let mut changes = Vec::new();
        let mut recorded = Vec::new();
        for moved in &promotion.moves {
            let before = changes.len();
            for &env in &moved.envs {
                changes.extend(change_for(repos, snapshot, moved, env, promotion.policy)?);
            }
            if changes.len() > before {
                recorded.push(RecordedMove {
                    service: moved.target.named.then(|| moved.target.name().to_owned()),
                    envs: moved.envs.clone(),
                    image: Some(moved.image.clone()),
                    source: moved.source,
                });
            }
        }
        let decision = if changes.is_empty() {
            Decision::NoOp(already_there(&promotion))
        } else {
            let record = Record {
                subject: promotion.subject.clone(),
                moves: recorded,
            };
            Decision::Commit {
                changes,
                message: record.message(),
            }
        };
        decided = Some(promotion);
        Ok(decision)
    })?;
    Ok(Promoted {
        outcome,
        promotion: decided,
    })
}

/// Why a promotion changes nothing, in words.
fn already_there(promotion: &Promotion) -> String {
    let said: Vec<String> = promotion
        .moves
        .iter()
        .map(|moved| {
            let envs: Vec<String> = moved.envs.iter().map(Env::to_string).collect();
            let verb = if envs.len() == 1 { "runs" } else { "run" };
            let whose = if moved.target.named {
                format!("{}: ", moved.target.name())
            } else {
                String::new()
            };
            format!(
                "{whose}{} already {verb} {}",
                envs.join(" and "),
                moved.image
            )
        })
        .collect();
    said.join("; ")
}

/// With a gate key configured, prod moves only to a release whose bits (the
/// digest its tag names in `registry`, which must be `image.digest` when one
/// is given) carry a passing preprod gate signed by `key` for the commit the
/// release was made from. Returns the digest to pin.
pub fn check_signed_gate(
    registry: &Repository,
    image: &DeployedImage,
    source: Option<ObjectId>,
    key: &VerifyingKey,
) -> Result<String> {
    // A main-<sha> or pr-* tag is refused before any registry read.
    Env::Prod.check_accepts(&ImageTag::parse(&image.tag)?)?;
    let resolved = registry
        .resolve(&image.tag)?
        .with_context(|| format!("{registry} has no {}: release it first", image.tag))?
        .digest;
    if !image.digest.is_empty() && image.digest != resolved {
        bail!(
            "{registry}:{} names {resolved}, not --digest {}: refusing to pin bits the gate was not \
             checked for",
            image.tag,
            image.digest
        );
    }
    let source = source.with_context(|| {
        format!(
            "no git tag {} says which commit it was built from, so its gate cannot be checked: release \
             it with cargo xtask release",
            image.tag
        )
    })?;
    attestation::check_preprod(registry, &resolved, &source.to_string(), key)?;
    Ok(resolved)
}

/// What an image built by `image build` says about itself: the service
/// (`org.opencontainers.image.title`) and the commit
/// (`org.opencontainers.image.revision`) it was built from. The labels are in
/// the image's config, so its digest covers them, and the image key signs
/// only what CD built.
pub const TITLE_LABEL: &str = "org.opencontainers.image.title";
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// Refuses `digest` in `registry` when its labels say it is another
/// service's image (its title names another of `services`) or was built
/// from another commit of `repo` than `sha` (full or abbreviated): a
/// `main-<sha>` tag moved to an older build, or another service's bits
/// copied in with their signature, is not what the tag names. Labels naming
/// no service or commit of this repository are not checked here: such an
/// image was not built and signed by CD (whose image job builds this
/// repository's services from main's commits), which the signature checks
/// of admission and release refuse.
pub fn check_built_from(
    repo: &ServiceRepo,
    services: &[Service],
    registry: &Repository,
    digest: &str,
    service: &str,
    sha: &str,
) -> Result<()> {
    let manifest = registry.platform_manifest(digest, crate::domain::oci::Arch::Amd64)?;
    let config: Value = serde_json::from_slice(&registry.blob(&manifest.config.digest)?)
        .with_context(|| format!("{registry}@{digest}: the image config is not JSON"))?;
    let label = |key: &str| {
        config["config"]["Labels"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (title, revision) = (label(TITLE_LABEL), label(REVISION_LABEL));
    let another = services.iter().any(|s| s.name == title) && title != service;
    ensure!(
        !another,
        "{registry}@{} is {title}'s image (its {TITLE_LABEL} label), not {service}'s: refusing bits the \
         tag does not name (an image copied from another service's repository)",
        short_digest(digest)
    );
    let known = !revision.is_empty() && repo.commit(&revision).is_ok();
    ensure!(
        !known || revision.starts_with(sha),
        "{registry}@{} was built from {} (its {REVISION_LABEL} label), not {sha}: refusing bits the tag \
         does not name (a tag moved to another build)",
        short_digest(digest),
        short(&revision)
    );
    Ok(())
}

/// Runs every check [`promote`] would on `snapshot` (the files exist, the
/// environments accept the tags, the policy's monotonic check), changing
/// nothing: for a command with a step to take first (release's retag) that
/// must not be taken for a promotion that would be refused.
pub fn check(repos: &Repos, snapshot: &Snapshot<'_>, promotion: &Promotion) -> Result<()> {
    for moved in &promotion.moves {
        for &env in &moved.envs {
            change_for(repos, snapshot, moved, env, promotion.policy)?;
        }
    }
    Ok(())
}

/// The change that moves one service's environment, or None if it already
/// runs the image. Errors name the service in a workspace of several.
fn change_for(
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    moved: &Move,
    env: Env,
    policy: Policy,
) -> Result<Option<FileChange>> {
    let named = |error: anyhow::Error| match moved.target.named {
        true => error.context(format!("{}: refused", moved.target.name())),
        false => error,
    };
    let target = &moved.image;
    let tag = ImageTag::parse(&target.tag).map_err(named)?;
    env.check_accepts(&tag).map_err(named)?;
    let path = moved.target.path(env);
    // A new preview starts from its template, whose empty tag no target equals.
    let (text, current) = match (deployed_at(snapshot, &path)?, env) {
        (Some(found), _) => found,
        (None, Env::Preview(pr)) => {
            let dev = deployed_at(snapshot, &moved.target.path(Env::Dev))?.map(|(text, _)| text);
            let text = preview_values(pr, dev.as_deref())?;
            let image = DeployedImage::from_values(&text)?;
            (text, image)
        }
        (None, _) => return Err(named(missing_values_file(snapshot, &path))),
    };
    if current == *target {
        return Ok(None);
    }
    if let (Policy::Monotonic, Some(source)) = (policy, moved.source) {
        check_monotonic(&repos.service, env, &current, &tag, source).map_err(named)?;
    }
    Ok(Some(FileChange::Write {
        path: repos.gitops.full_path(&path),
        text: yaml::set(&text, &target.edits())?.text,
    }))
}

/// A service's values file in `env` at this snapshot, and the image it deploys.
pub fn read_deployed(snapshot: &Snapshot<'_>, target: &Target, env: Env) -> Result<DeployedImage> {
    let path = target.path(env);
    match deployed_at(snapshot, &path)? {
        Some((_, image)) => Ok(image),
        None => Err(missing_values_file(snapshot, &path)),
    }
}

/// The values file at `path` and the image it deploys; None when it is missing.
fn deployed_at(snapshot: &Snapshot<'_>, path: &str) -> Result<Option<(String, DeployedImage)>> {
    let Some(text) = snapshot.read(path)? else {
        return Ok(None);
    };
    let image = DeployedImage::from_values(&text).with_context(|| snapshot.repo.full_path(path))?;
    Ok(Some((text, image)))
}

fn missing_values_file(snapshot: &Snapshot<'_>, path: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} does not exist on the GitOps branch: create the environment's values file first",
        snapshot.repo.full_path(path)
    )
}

/// Refuses to move `env` to `target` (built from `target_commit`) when that
/// commit is an ancestor of the running one's.
fn check_monotonic(
    service: &ServiceRepo,
    env: Env,
    current: &DeployedImage,
    target: &ImageTag,
    target_commit: ObjectId,
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

/// A new preview's values file, before its image is set. The pipeline owns
/// the whole file; `preview cleanup` removes it. The service's image
/// repository, port and Ingress come from its dev values (`dev`), so a second
/// service's preview pulls its own image and answers at its own host
/// ([`preview_host`]), or at none when dev has no Ingress. validate renders
/// the same file for every service's sample preview.
pub fn preview_values(pr: u64, dev: Option<&str>) -> Result<String> {
    let dev = dev.map(yaml::parse).transpose()?.unwrap_or_default();
    // JSON strings are YAML double-quoted scalars.
    let repository = match dev["image"]["repository"].as_str() {
        Some(repository) => format!("  repository: {}\n", Value::from(repository)),
        None => String::new(),
    };
    let port = match dev["containerPort"].as_u64() {
        Some(port) => format!("containerPort: {port}\n"),
        None => String::new(),
    };
    let ingress = if dev["ingress"]["enabled"] == false {
        "ingress:\n  enabled: false\n".to_owned()
    } else {
        match dev["ingress"]["host"].as_str().filter(|h| !h.is_empty()) {
            Some(host) => format!(
                "ingress:\n  host: {}\n",
                Value::from(preview_host(pr, host)?)
            ),
            None => String::new(),
        }
    };
    Ok(format!(
        "# Preview environment of pull request #{pr}, written by `cargo xtask preview deploy`.\n\
         # Argo CD's ApplicationSet deploys it to namespace pr-{pr}; `cargo xtask preview cleanup` removes it.\n\
         image:\n{repository}  tag: \"\"\n  digest: \"\"\n{port}{ingress}\
         env:\n  ENV_NAME: \"pr-{pr}\"\n  # Previews call the services of dev, which runs the latest release.\n  SERVICES_NAMESPACE: \"dev\"\n"
    ))
}

/// A preview's host from its service's own dev host: the last `dev` label
/// becomes `pr-<N>` (`orders-api.dev.localhost` → `orders-api.pr-7.localhost`,
/// as new-service names hosts). A dev host without one is refused: no other
/// rule keeps the preview off dev's, items-api's (`pr-<N>.<domain>`) and
/// another service's hosts. A service without a host of its own in dev
/// answers at the chart's `pr-<N>.<domain>`, as it does at `dev.<domain>`.
fn preview_host(pr: u64, dev_host: &str) -> Result<String> {
    let preview = format!("pr-{pr}");
    let mut labels: Vec<&str> = dev_host.split('.').collect();
    let Some(at) = labels.iter().rposition(|label| *label == "dev") else {
        bail!(
            "dev's ingress.host {dev_host:?} has no `dev` label for a preview to put pr-{pr} in: name it \
             <service>.dev.<domain> (as new-service does), so the preview answers at <service>.pr-{pr}.<domain>"
        );
    };
    labels[at] = &preview;
    Ok(labels.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_preview_pulls_its_services_own_image_on_its_port() {
        let dev =
            "image:\n  repository: ghcr.io/acme/orders-api\n  tag: v1.0.0\ncontainerPort: 8081\n";
        let text = preview_values(7, Some(dev)).unwrap();
        let doc = yaml::parse(&text).unwrap();
        assert_eq!(doc["image"]["repository"], "ghcr.io/acme/orders-api");
        assert_eq!(doc["containerPort"], 8081);
        assert_eq!(doc["image"]["tag"], "");
        assert_eq!(doc["env"]["ENV_NAME"], "pr-7");
        // Without a host of its own in dev, the chart's pr-7.<domain>.
        assert!(doc["ingress"].is_null());
        // Its own host in dev: its own in the preview, not items-api's pr-7.localhost.
        let with_ingress = |ingress: &str| {
            let dev = format!("image:\n  repository: ghcr.io/acme/orders-api\ningress:\n{ingress}");
            preview_values(7, Some(&dev)).map(|text| yaml::parse(&text).unwrap())
        };
        for (dev_host, preview) in [
            ("orders-api.dev.localhost", "orders-api.pr-7.localhost"),
            // The last `dev` label: a service named dev.
            ("dev.dev.example.com", "dev.pr-7.example.com"),
        ] {
            let doc = with_ingress(&format!("  host: {dev_host}\n")).unwrap();
            assert_eq!(doc["ingress"]["host"], preview);
        }
        // No `dev` label: refused, since pr-7.<dev host> could be items-api's pr-7.<domain>.
        let error = with_ingress("  host: example.com\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no `dev` label"), "{error}");
        // No Ingress in dev: none in the preview either.
        let doc = with_ingress("  enabled: false\n  host: x.dev.localhost\n").unwrap();
        assert_eq!(doc["ingress"]["enabled"], false);
        assert!(doc["ingress"]["host"].is_null());
        // Without dev values: the chart's defaults, as before.
        let bare = yaml::parse(&preview_values(7, None).unwrap()).unwrap();
        assert!(bare["image"]["repository"].is_null() && bare["containerPort"].is_null());
    }

    #[test]
    fn environments_parse_and_print_the_same_names() {
        for name in ["dev", "preprod", "prod", "pr-7"] {
            assert_eq!(name.parse::<Env>().unwrap().to_string(), name);
        }
        for bad in ["staging", "pr-0", "pr-x", "Prod", ""] {
            let error = bad.parse::<Env>().unwrap_err().to_string();
            assert!(
                error.contains("expected dev, preprod, prod or pr-<N>"),
                "{error}"
            );
        }
        assert_eq!(
            Env::Prod.values_path("orders-api.yaml"),
            "values/prod/orders-api.yaml"
        );
        assert_eq!(
            Env::Preview(7).values_path("orders-api.yaml"),
            "values/pr/pr-7/orders-api.yaml"
        );
        assert_eq!(Env::from_preview_dir("pr-7"), Some(Env::Preview(7)));
        assert_eq!(Env::from_preview_file("pr-7.yaml"), Some(Env::Preview(7)));
        for bad in ["README.md", "pr-07", "pr-0", "pr-7.yaml", "prod"] {
            assert_eq!(Env::from_preview_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn preprod_and_prod_refuse_pull_request_builds() {
        let pr = ImageTag::parse("pr-3-abc1234").unwrap();
        for env in [Env::Preprod, Env::Prod] {
            let error = env.check_accepts(&pr).unwrap_err().to_string();
            assert!(error.contains("runs only reviewed code"), "{error}");
        }
        assert!(Env::Dev.check_accepts(&pr).is_ok());
        assert!(Env::Preview(3).check_accepts(&pr).is_ok());
        let main = ImageTag::parse("main-abc1234").unwrap();
        assert!(Env::Preprod.check_accepts(&main).is_ok());
        let error = Env::Prod.check_accepts(&main).unwrap_err().to_string();
        assert!(error.contains("prod runs only releases"), "{error}");
        let release = ImageTag::parse("v1.2.3").unwrap();
        assert!(Env::Prod.check_accepts(&release).is_ok());
    }

    fn image(tag: &str, digest: char) -> Option<DeployedImage> {
        Some(DeployedImage {
            tag: tag.into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
        })
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let record = Record {
            subject: "release: v1.2.0".into(),
            moves: vec![RecordedMove {
                service: None,
                envs: vec![Env::Prod, Env::Dev],
                image: image("v1.2.0", 'a'),
                source: Some(ObjectId::from_hex(&[b'b'; 40]).unwrap()),
            }],
        };
        let message = record.message();
        // A workspace of one service writes exactly what records always were.
        assert_eq!(
            message,
            format!(
                "release: v1.2.0\n\nEnvironment: prod\nEnvironment: dev\nImage-Tag: v1.2.0\n\
                 Image-Digest: sha256:{}\nSource-Commit: {}\n",
                "a".repeat(64),
                "b".repeat(40)
            )
        );
        assert_eq!(Record::parse(&message), Some(record));
        let removal = Record {
            subject: "ci: remove preview pr-4".into(),
            moves: vec![RecordedMove {
                envs: vec![Env::Preview(4)],
                ..RecordedMove::default()
            }],
        };
        assert_eq!(Record::parse(&removal.message()), Some(removal));
    }

    #[test]
    fn a_record_of_several_services_groups_each_services_trailers() {
        let moved = |service: &str, tag: &str, digest: char| RecordedMove {
            service: Some(service.into()),
            envs: vec![Env::Preprod],
            image: image(tag, digest),
            source: Some(ObjectId::from_hex(&[b'c'; 40]).unwrap()),
        };
        let record = Record {
            subject: "cd: promote alpha, beta to main-ccccccc in preprod".into(),
            moves: vec![
                moved("alpha", "main-ccccccc", 'a'),
                moved("beta", "main-ccccccc", 'b'),
            ],
        };
        let message = record.message();
        let beta = message.find("Service: beta").unwrap();
        assert!(message[..beta].contains(&"a".repeat(64)));
        assert!(message[beta..].contains(&"b".repeat(64)));
        assert!(!message[beta..].contains(&"a".repeat(64)));
        assert_eq!(Record::parse(&message), Some(record));
        // Ambiguous: trailers before the first Service: in a record that names services.
        let mixed = "x\n\nEnvironment: dev\nImage-Tag: v1.0.0\nService: beta\nEnvironment: dev\n";
        assert_eq!(Record::parse(mixed), None);
        // A service with no environment, or a name that is not a service's.
        assert_eq!(Record::parse("x\n\nService: alpha\n"), None);
        assert_eq!(
            Record::parse("x\n\nService: ../prod\nEnvironment: dev\n"),
            None
        );
    }

    #[test]
    fn a_persons_commit_is_not_a_record() {
        for message in [
            "fix: handle empty names",
            "cd: promote main-abc1234 to preprod",
            "feat: x\n\nA body that mentions Environment: prod in prose.\n",
            "feat: y\n\nSigned-off-by: A <a@example.com>\n",
        ] {
            assert_eq!(Record::parse(message), None, "{message}");
        }
    }

    #[test]
    fn an_image_is_set_by_two_edits_and_an_empty_digest_clears_the_old_one() {
        let text = "image:\n  tag: \"main-aaaaaaa\" # by cd\n  digest: \"sha256:old\"\n";
        let image = DeployedImage {
            tag: "v1.0.0".into(),
            digest: String::new(),
        };
        let out = yaml::set(text, &image.edits()).unwrap().text;
        assert_eq!(out, "image:\n  tag: \"v1.0.0\" # by cd\n  digest: \"\"\n");
        assert_eq!(DeployedImage::from_values(&out).unwrap(), image);
        assert_eq!(image.to_string(), "v1.0.0");
    }
}
