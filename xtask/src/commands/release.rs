//! `cargo xtask release --version X.Y.Z`: ship the bits preprod tested, of
//! one service (`--service X`, or the workspace's only one) or of every
//! service (`--train`), each at the `main-<sha>` build its preprod runs. Every
//! step below is taken for each released service, and the moves of all of
//! them are one GitOps commit and one git tag.
//!
//! 1. the version is semver;
//! 2. the commit to release is the one preprod runs (or `--sha`), and it is on
//!    the main branch of the service's remote: a branch's build never ships;
//! 3. `main-<sha>` is resolved to a digest **once**; everything below uses
//!    that digest;
//! 4. the version is newer than every release (git tags, prod);
//! 5. the `preprod-tests` gate passed for that commit and that digest: with a
//!    public key configured, a signed attestation on that digest decides (the
//!    gate store is display only); without one, the gate store, as before;
//!    with an image key, that digest also carries the pipeline's signature;
//! 6. `main-<sha>` still names that digest, and `v<X.Y.Z>` is made to name it
//!    (by digest: no rebuild, no blob upload, no window for other bits);
//! 7. prod and dev move to `v<X.Y.Z>` at that digest in one commit, monotonic
//!    (an older build under a newer version is refused unless --allow-older);
//! 8. the annotated git tag `vX.Y.Z` marks the released commit; release notes
//!    are written (and published as a GitHub release inside Actions).
//!
//! Every step checks whether it is already done, so rerunning the same command
//! after a failure finishes the release without doing anything twice.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use gix::ObjectId;
use xshell::{Shell, cmd};

use crate::domain::Repos;
use crate::domain::attestation::{self, PREPROD_PREDICATE, PublicKeyOptions};
use crate::domain::gate_store::{GateStore, PREPROD_GATE, SIGNED_IN_ACTIONS};
use crate::domain::github::{self, GitHub};
use crate::domain::gitops::{GitopsOptions, Outcome, Snapshot};
use crate::domain::promotion::{
    self, DeployedImage, Env, Move, Policy, Promotion, Record, Target, read_deployed,
};
use crate::domain::registry::{Repository, RetagOutcome};
use crate::domain::services::{self, RepositoryOptions, Service, ServiceSelection};
use crate::domain::signature::{self, ImageKeyOptions, Verdict};
use crate::domain::tags::{ImageTag, short};
use crate::plumbing::process::refuse_option_like;
use crate::plumbing::workspace;

/// Environments a release moves, in one commit.
const RELEASED_ENVS: [Env; 2] = [Env::Prod, Env::Dev];

#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// The version to release, X.Y.Z (a leading v is accepted).
    #[arg(long)]
    version: String,
    /// The commit to release. Default: the one preprod runs (from its main-<sha> tag).
    /// Either way it must be on the remote's main branch.
    #[arg(long)]
    sha: Option<String>,
    /// The service's main branch on its remote: only its commits are released.
    #[arg(long, env = "RELEASE_BRANCH", default_value = "main")]
    main_branch: String,
    /// Allow a version lower than an existing release (a hotfix line), and a
    /// build older than the one prod runs.
    #[arg(long)]
    allow_older: bool,
    /// Check everything and print what would change; change nothing. Also from
    /// RELEASE_DRY_RUN=true (a workflow's boolean input).
    #[arg(long, env = "RELEASE_DRY_RUN")]
    dry_run: bool,
    /// The service to release (repeatable). Default: the workspace's only one.
    #[command(flatten)]
    services: ServiceSelection,
    /// A release train: every service, each at the main-<sha> build its preprod runs, one gate
    /// per digest, one commit moving prod and dev of all of them, one git tag.
    #[arg(long, conflicts_with = "names")]
    train: bool,
    /// The image repositories: each service's at <registry>/<image> (or, for one service, --repository).
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    public_key: PublicKeyOptions,
    /// With an image key (gitops/policy/cosign.pub), the digest must also carry the pipeline's
    /// image signature, which the cluster's admission policy requires.
    #[command(flatten)]
    image_key: ImageKeyOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: ReleaseArgs) -> Result<()> {
    let version = parse_version(&args.version)?;
    let repos = Repos::open(&args.gitops)?;
    let sh = Shell::new()?;
    sh.change_dir(repos.service.root());
    // Steps 1–4: what to release, each service pinned to one digest, in version order.
    let release = Release::resolve(&args, &repos, &sh, version)?;
    let tag = &release.tag;
    // Step 5: the gate (and the image signature) of every digest, before anything changes.
    for service in &release.services {
        check_gate(&args, service)?;
        check_signature(&args, service)?;
    }
    // Steps 6–7: checked before any retag, so a refused promotion or a moved
    // tag leaves every registry as it was; then the retags, then one commit.
    promotion::check(&repos, &release.snapshot(&repos), &release.promotion)?;
    for service in &release.services {
        check_retag(service, tag)?;
    }
    for service in &release.services {
        tag_release(service, tag, args.dry_run)?;
    }
    let outcome = promotion::promote(&repos, args.dry_run, |_| Ok(release.promotion.clone()))
        .with_context(|| {
            format!("promoting prod and dev to {tag} failed; rerun the same command to finish the release")
        })?
        .outcome;
    outcome.report(&format!("promote prod and dev to {tag}"));
    let gitops_commit = match outcome {
        Outcome::DryRun { .. } => {
            println!(
                "dry run: would tag {} as {tag} and write release notes",
                short(&release.sha)
            );
            return Ok(());
        }
        Outcome::Pushed { commit, .. } => commit,
        // A rerun: prod and dev already run the release at the tip.
        Outcome::NoOp(_) => repos.gitops.fetch_tip()?,
    };
    // What `argocd sync --revision` syncs prod and dev to: the release's own
    // commit, not whatever the branch holds by the time the sync runs.
    github::set_output("gitops_commit", &gitops_commit.to_string())?;
    // The released services' Applications, which the release job then syncs: `<app>-prod,<app>-dev,…`.
    let apps: Vec<String> = release
        .services
        .iter()
        .flat_map(|r| {
            let app = services::application_prefix(&r.target.service.declaration);
            [format!("{app}-prod"), format!("{app}-dev")]
        })
        .collect();
    github::set_output("apps", &apps.join(","))?;
    // Step 8: the git tag, the notes, the GitHub release.
    tag_and_publish(&sh, &args, &release)
}

/// Step 8: the annotated git tag with the release notes (unless a previous
/// run made it), pushed; the notes written; the GitHub release inside Actions.
fn tag_and_publish(sh: &Shell, args: &ReleaseArgs, release: &Release) -> Result<()> {
    let (sha, tag) = (&release.sha, &release.tag);
    let notes = release_notes(
        sh,
        tag,
        release.previous.as_deref(),
        sha,
        &release.images(),
        &args.gitops.bot.email,
    )?;
    push_git_tag(sh, args, tag, sha, &notes, !release.git_tag_exists)?;
    let notes_path = workspace::target_dir().join(format!("xtask/release-notes-{tag}.md"));
    std::fs::create_dir_all(notes_path.parent().expect("has a parent"))?;
    std::fs::write(&notes_path, &notes)?;
    println!(
        "tagged {} as {tag}; release notes in {}",
        short(sha),
        notes_path.display()
    );
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
        && let Some(github) = GitHub::from_env()?
    {
        publish_release(&github, tag, &notes)?;
    }
    Ok(())
}

fn parse_version(version: &str) -> Result<semver::Version> {
    semver::Version::parse(version.trim_start_matches('v')).with_context(|| {
        format!("--version {version:?} is not a semantic version: use X.Y.Z, e.g. 1.4.0")
    })
}

/// Everything a release is decided on, resolved once.
struct Release {
    /// `v<X.Y.Z>`.
    tag: String,
    /// The commit the git tag marks: the newest of the released commits.
    sha: String,
    services: Vec<Released>,
    /// The newest release below this one, for the notes.
    previous: Option<String>,
    /// A previous run already made the git tag (on this commit).
    git_tag_exists: bool,
    gitops_tip: ObjectId,
    promotion: Promotion,
}

/// One released service: its tested build, resolved once.
struct Released {
    target: Target,
    sha: String,
    build_tag: String,
    /// What `main-<sha>` named when resolved: the only digest this release uses for it.
    digest: String,
    registry: Repository,
}

impl Release {
    /// The steps before anything changes:
    /// 1. the services, and for each the commit: `--sha`, or the one its preprod runs;
    /// 2. each is on main;
    /// 3. each `main-<sha>` resolved to its digest, once;
    /// 4. the version is new (or this release's own, resumed) and above every other release.
    fn resolve(
        args: &ReleaseArgs,
        repos: &Repos,
        sh: &Shell,
        version: semver::Version,
    ) -> Result<Self> {
        let tag = format!("v{version}");
        let all = promotion::workspace_services(&repos.service.root())?;
        let selection = match args.train {
            true => ServiceSelection {
                names: all.iter().map(|s| s.name.clone()).collect(),
            },
            false => args.services.clone(),
        };
        let targets = promotion::targets(&all, &selection)?;
        let main_tip = fetch_main_and_tags(sh, args)?;
        let gitops_tip = repos.gitops.fetch_tip()?;
        let snapshot = Snapshot {
            repo: &repos.gitops,
            tip: gitops_tip,
        };
        let services = resolve_services(args, repos, &snapshot, main_tip, (&all, targets))?;
        let tagged = newest(repos, &services)?;
        let (previous, git_tag_exists) = check_version(
            sh,
            &snapshot,
            &services,
            &version,
            &tagged,
            args.allow_older,
        )?;
        let promotion = Promotion {
            subject: release_subject(&tag, &services),
            moves: services.iter().map(|s| s.release_move(&tag)).collect(),
            policy: if args.allow_older {
                Policy::AllowOlder
            } else {
                Policy::Monotonic
            },
        };
        Ok(Self {
            previous,
            git_tag_exists,
            tag,
            sha: tagged,
            services,
            gitops_tip,
            promotion,
        })
    }

    fn snapshot<'a>(&self, repos: &'a Repos) -> Snapshot<'a> {
        Snapshot {
            repo: &repos.gitops,
            tip: self.gitops_tip,
        }
    }

    /// The released digests, for the notes: `Image: <digest>` for one service.
    fn images(&self) -> String {
        match self.services.as_slice() {
            [one] if !one.target.named => format!("Image: {}", one.digest),
            many => many
                .iter()
                .map(|s| {
                    format!(
                        "Image of {}: {} (commit {})",
                        s.target.name(),
                        s.digest,
                        s.sha
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl Released {
    /// Step 3 for one service: `main-<sha>` resolved to its digest, once.
    fn resolve(target: Target, commit: ObjectId, registry: Repository) -> Result<Self> {
        let sha = commit.to_string();
        let build_tag = format!("main-{sha}");
        let digest = registry
            .resolve(&build_tag)?
            .with_context(|| {
                format!("{registry} has no {build_tag}: the commit was never built on main")
            })?
            .digest;
        Ok(Self {
            target,
            sha,
            build_tag,
            digest,
            registry,
        })
    }

    /// Step 7 for one service: prod and dev at the release tag, at its digest.
    fn release_move(&self, tag: &str) -> Move {
        Move {
            target: self.target.clone(),
            envs: RELEASED_ENVS.to_vec(),
            image: DeployedImage {
                tag: tag.to_owned(),
                digest: self.digest.clone(),
            },
            source: self.sha.parse().ok(),
        }
    }
}

/// Steps 1–3 for each service: its commit (`--sha`, or its preprod's), on
/// main, and its `main-<sha>` resolved to a digest in its own repository.
fn resolve_services(
    args: &ReleaseArgs,
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    main_tip: ObjectId,
    (all, targets): (&[Service], Vec<Target>),
) -> Result<Vec<Released>> {
    let mut services = Vec::new();
    for target in targets {
        let (commit, pinned) = commit_to_release(repos, snapshot, &target, args.sha.as_deref())?;
        if !repos.service.is_ancestor(commit, main_tip)? {
            bail!(
                "commit {commit} is not on {}/{}: only commits of the main branch are released \
             (merge it first)",
                args.gitops.remote,
                args.main_branch
            );
        }
        let repository = args.repositories.require(&target.service, all)?;
        let released = Released::resolve(target, commit, Repository::open(&repository)?)?;
        // What preprod ran and tested is what ships: the tag must still name
        // the digest preprod pins, and the bits must be this service's build
        // of this commit.
        ensure!(
            pinned.is_empty() || pinned == released.digest,
            "{} now names {}, but preprod runs (and tested) {pinned}: the tag was moved after the \
             promotion; promote and test the build again",
            released.build_tag,
            released.digest
        );
        promotion::check_built_from(
            &repos.service,
            all,
            &released.registry,
            &released.digest,
            released.target.name(),
            &released.sha,
        )?;
        services.push(released);
    }
    Ok(services)
}

/// `release: v<X.Y.Z>`, naming the services in a workspace of several.
fn release_subject(tag: &str, services: &[Released]) -> String {
    let named: Vec<&str> = services
        .iter()
        .filter(|s| s.target.named)
        .map(|s| s.target.name())
        .collect();
    match named.is_empty() {
        true => format!("release: {tag}"),
        false => format!("release: {tag} ({})", named.join(", ")),
    }
}

/// The commit the one git tag marks: the released commit every other one is
/// an ancestor of (they are all on main, so one line unless merges split it).
fn newest(repos: &Repos, services: &[Released]) -> Result<String> {
    let mut newest = services
        .first()
        .context("no service to release")?
        .sha
        .clone();
    for service in &services[1..] {
        let (a, b) = (newest.parse()?, service.sha.parse()?);
        if repos.service.is_ancestor(a, b)? {
            newest = service.sha.clone();
        } else if !repos.service.is_ancestor(b, a)? {
            bail!(
                "{} and {} are on different lines of main's history: one git tag cannot mark both; \
                 release them separately, or pass --sha",
                short(&newest),
                short(&service.sha)
            );
        }
    }
    Ok(newest)
}

/// Step 5. With a public key, the authority is an attestation signed by it on
/// exactly the resolved digest, a success, for exactly this commit; the gate
/// store is not consulted. Without one, the local gate store decides (never
/// inside GitHub Actions).
fn check_gate(args: &ReleaseArgs, release: &Released) -> Result<()> {
    let (sha, digest) = (&release.sha, &release.digest);
    match args.public_key.load()? {
        Some(key) => {
            let passed = attestation::check_preprod(&release.registry, digest, sha, &key)?;
            println!(
                "gate {PREPROD_GATE} passed for {} at {digest}: signed attestation ({PREPROD_PREDICATE}, \
                 {} passed, tested {})",
                short(sha),
                passed.results.passed,
                passed.time
            );
        }
        None => {
            let store = GateStore::local(&args.gitops)?
                .with_context(|| format!("release inside GitHub Actions needs a signed gate: {SIGNED_IN_ACTIONS}, then test preprod again"))?;
            println!(
                "no GATE_PUBLIC_KEY or --public-key: the unsigned gate store decides (configure the key to \
                 require a signed attestation; inside GitHub Actions it is required)"
            );
            store.check(sha, PREPROD_GATE, Some(digest))?;
            println!("gate {PREPROD_GATE} passed for {} at {digest}", short(sha));
        }
    }
    Ok(())
}

/// Step 5, with an image key: the digest carries the pipeline's signature,
/// so the release is not refused by the cluster after the retag.
fn check_signature(args: &ReleaseArgs, release: &Released) -> Result<()> {
    let Some(key) = args.image_key.load()? else {
        return Ok(());
    };
    match signature::check(&release.registry, &release.digest, &key)? {
        Verdict::Signed => {
            println!("{} is signed by the image key", release.digest);
            Ok(())
        }
        verdict => bail!(
            "{}@{} is {verdict}: the cluster admits only images signed by the image key; sign main's build \
             (cargo xtask image sign with IMAGE_SIGNING_KEY) before releasing it",
            release.registry,
            release.digest
        ),
    }
}

/// Fetches the release tags others pushed and the remote's main branch;
/// returns main's tip.
fn fetch_main_and_tags(sh: &Shell, args: &ReleaseArgs) -> Result<ObjectId> {
    let remote = &args.gitops.remote;
    let branch = &args.main_branch;
    refuse_option_like("branch", branch, "--main-branch / RELEASE_BRANCH")?;
    cmd!(sh, "git check-ref-format refs/heads/{branch}")
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|_| {
            anyhow::anyhow!(
                "{branch:?} is not a branch name (no ':', '*', '..', spaces or control characters):                  fix --main-branch / RELEASE_BRANCH"
            )
        })?;
    let refspec = format!("+refs/heads/{branch}:refs/xtask/release/{branch}");
    cmd!(sh, "git fetch --quiet --tags -- {remote} {refspec}")
        .quiet()
        .run()
        .with_context(|| {
            format!(
                "fetching tags and {branch} from {remote}: the service repository's remote must be reachable"
            )
        })?;
    let spec = format!("refs/xtask/release/{branch}^{{commit}}");
    let tip = cmd!(sh, "git rev-parse --verify --end-of-options {spec}")
        .quiet()
        .read()?;
    Ok(tip.trim().parse()?)
}

/// `--sha`, or the commit whose `main-<sha>` build preprod runs, with the
/// digest preprod pins for it (empty with `--sha`, or when it pins none).
fn commit_to_release(
    repos: &Repos,
    snapshot: &Snapshot<'_>,
    target: &Target,
    sha: Option<&str>,
) -> Result<(ObjectId, String)> {
    if let Some(sha) = sha {
        return Ok((repos.service.commit(sha)?, String::new()));
    }
    let preprod = read_deployed(snapshot, target, Env::Preprod)?;
    let whose = match target.named {
        true => format!("{}'s ", target.name()),
        false => String::new(),
    };
    match ImageTag::parse(&preprod.tag) {
        Ok(ImageTag::Main { sha }) => Ok((repos.service.commit(&sha)?, preprod.digest)),
        _ => bail!(
            "{whose}preprod runs {:?}, not a main-<sha> build: promote one to preprod and test it, or \
             name the commit with --sha",
            preprod.tag
        ),
    }
}

/// Step 4: `version` is not taken by another commit, and is above every
/// other release (git tags, and what prod runs) unless `allow_older`. Returns
/// the newest release below it (for the notes), and whether this release's
/// git tag exists already (an interrupted run: a resume, not a conflict).
fn check_version(
    sh: &Shell,
    snapshot: &Snapshot<'_>,
    services: &[Released],
    version: &semver::Version,
    sha: &str,
    allow_older: bool,
) -> Result<(Option<String>, bool)> {
    let tag = format!("v{version}");
    let git_tag_commit = tag_commit(sh, &tag)?;
    if let Some(commit) = &git_tag_commit
        && commit != sha
    {
        bail!("{tag} is already released from commit {commit}: choose a new version");
    }
    let mut prods = Vec::new();
    for service in services {
        prods.push(read_deployed(snapshot, &service.target, Env::Prod)?.tag);
    }
    let mut existing = BTreeMap::new();
    for other in cmd!(sh, "git tag --list v*")
        .quiet()
        .read()?
        .lines()
        .chain(prods.iter().map(String::as_str))
    {
        if let Ok(ImageTag::Release(v)) = ImageTag::parse(other)
            && v != *version
        {
            existing.insert(v, other.to_owned());
        }
    }
    if let Some((newest, other)) = existing.last_key_value()
        && newest > version
        && !allow_older
    {
        bail!(
            "{tag} is not newer than the existing release {other}: choose a higher version, or pass --allow-older for a hotfix line"
        );
    }
    let previous = existing
        .range(..version.clone())
        .next_back()
        .map(|(_, t)| t.clone());
    Ok((previous, git_tag_commit.is_some()))
}

/// Step 6, checked for every service before any retag: `build_tag` still
/// names the tested digest, and the release tag names nothing else.
fn check_retag(service: &Released, release_tag: &str) -> Result<()> {
    let (registry, build_tag, digest) = (&service.registry, &service.build_tag, &service.digest);
    let now = registry.resolve(build_tag)?.map(|r| r.digest);
    if now.as_deref() != Some(digest.as_str()) {
        bail!(
            "{registry}:{build_tag} moved from {digest} to {} since the gate was checked: refusing to \
             release bits other than the tested ones; find out who pushed it",
            now.as_deref().unwrap_or("nothing")
        );
    }
    if let Some(existing) = registry.resolve(release_tag)?
        && existing.digest != *digest
    {
        bail!(
            "{registry}:{release_tag} already names {}: release tags are immutable",
            existing.digest
        );
    }
    Ok(())
}

/// Names the service's tested digest `release_tag`, by digest, so it can only
/// ever name the tested bits. A rerun finds it there.
fn tag_release(service: &Released, release_tag: &str, dry_run: bool) -> Result<()> {
    let (build_tag, digest) = (&service.build_tag, &service.digest);
    if dry_run {
        println!(
            "dry run: would retag {build_tag} → {release_tag} ({digest}) in {}",
            service.registry
        );
        return Ok(());
    }
    match service.registry.tag_digest(digest, release_tag)? {
        RetagOutcome::Created => println!(
            "retagged {build_tag} → {release_tag} in {}, no blob uploaded",
            service.registry
        ),
        RetagOutcome::AlreadyThere => println!("{release_tag} already names {build_tag}'s bits"),
    }
    Ok(())
}

/// Creates the annotated tag (unless a previous run did) and pushes it.
fn push_git_tag(
    sh: &Shell,
    args: &ReleaseArgs,
    release_tag: &str,
    sha: &str,
    notes: &str,
    create: bool,
) -> Result<()> {
    if create {
        // `whitespace`: the notes' markdown headings are not git comments.
        cmd!(
            sh,
            "git tag --annotate --cleanup=whitespace {release_tag} --file=- {sha}"
        )
        .stdin(notes)
        .envs(args.gitops.bot.git_env())
        .quiet()
        .run()?;
    }
    let remote = &args.gitops.remote;
    cmd!(sh, "git push --quiet -- {remote} refs/tags/{release_tag}")
        .quiet()
        .run()
        .with_context(|| {
            format!("pushing tag {release_tag}: rerun the same command to finish the release")
        })?;
    Ok(())
}

/// The commit a git tag points at, if the tag exists.
fn tag_commit(sh: &Shell, tag: &str) -> Result<Option<String>> {
    let spec = format!("refs/tags/{tag}^{{commit}}");
    let out = cmd!(sh, "git rev-parse --quiet --verify --end-of-options {spec}")
        .quiet()
        .ignore_status()
        .output()?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Subjects of the commits since the previous release, newest first.
fn release_notes(
    sh: &Shell,
    tag: &str,
    previous: Option<&str>,
    sha: &str,
    images: &str,
    bot_email: &str,
) -> Result<String> {
    let range = match previous.filter(|p| tag_commit(sh, p).ok().flatten().is_some()) {
        Some(previous) => format!("{previous}..{sha}"),
        None => sha.to_owned(),
    };
    // Commits end with NUL (-z); fields are split by US (0x1f).
    let format = "--format=%h%x1f%ae%x1f%B";
    let log = cmd!(
        sh,
        "git log -z --no-merges {format} --end-of-options {range}"
    )
    .quiet()
    .read()?;
    // The pipeline's own commits (by the bot, carrying a promotion record) are
    // not changes to the service; a person's commit is listed whatever its text.
    let changes: Vec<String> = log
        .split('\0')
        .filter_map(|entry| {
            let mut fields = entry.trim_start().splitn(3, '\x1f');
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .filter(|(_, author, message)| *author != bot_email || Record::parse(message).is_none())
        .map(|(hash, _, message)| format!("- {} ({hash})", message.lines().next().unwrap_or("")))
        .collect();
    Ok(format!(
        "{tag}\n\n{images}\nCommit: {sha}\n{}\n\n## Changes{}\n\n{}\n",
        previous
            .map(|p| format!("Previous release: {p}"))
            .unwrap_or_default(),
        previous.map(|p| format!(" since {p}")).unwrap_or_default(),
        if changes.is_empty() {
            "- (no changes)".to_owned()
        } else {
            changes.join("\n")
        }
    ))
}

fn publish_release(github: &GitHub, tag: &str, notes: &str) -> Result<()> {
    let body = serde_json::json!({ "tag_name": tag, "name": tag, "body": notes });
    match github.post("/releases", &body) {
        Ok(_) => {
            println!("published the GitHub release {tag}");
            Ok(())
        }
        // A rerun after publishing: GitHub answers 422 already_exists.
        Err(error) if error.to_string().contains("already_exists") => {
            println!("the GitHub release {tag} already exists");
            Ok(())
        }
        Err(error) => Err(error),
    }
}
