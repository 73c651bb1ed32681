//! `cargo xtask status` and `cargo xtask trace`: what runs where, read from
//! the GitOps branch alone (the cluster only ever reflects it); with an image
//! repository, also whether each environment's image is signed (image key)
//! and carries a passing signed preprod gate (gate key). A workspace of
//! several services gets a service × environment matrix; `trace` answers per
//! service (each has its own image repository, so its own digests).

use anyhow::Result;
use p256::ecdsa::VerifyingKey;
use serde::Serialize;

use crate::domain::Repos;
use crate::domain::attestation::{self, PublicKeyOptions};
use crate::domain::gate_store::Conclusion;
use crate::domain::gitops::GitopsOptions;
use crate::domain::promotion::{self, DeployedImage, Env, PREVIEW_DIR, Target};
use crate::domain::registry::Repository;
use crate::domain::services::{RepositoryOptions, Service, ServiceSelection};
use crate::domain::signature::{self, ImageKeyOptions, Verdict};
use crate::domain::tags::{ImageTag, short, short_digest};
use crate::plumbing::text::rfc3339;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The services to show (repeatable). Default: every service.
    #[command(flatten)]
    services: ServiceSelection,
    /// Also resolve every image name of each running commit in each service's image
    /// repository, showing which names are the same bits.
    #[command(flatten)]
    repositories: RepositoryOptions,
    /// With --repository: check each environment's image signature with this key.
    #[command(flatten)]
    image_key: ImageKeyOptions,
    /// With --repository: check each environment's signed preprod gate with this key.
    #[command(flatten)]
    public_key: PublicKeyOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

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

/// One service's environment.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
    pub service: String,
    pub env: String,
    pub tag: String,
    pub digest: String,
    /// The commit the image was built from, when known.
    pub source_commit: Option<String>,
    /// The GitOps commit that last changed the image, and when (RFC 3339).
    pub promoted_by: Option<String>,
    pub promoted_at: Option<String>,
    /// The image's signature (✔/✘ and why), when an image repository is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The image's signed preprod gate (✔/✘ and why), when an image repository is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_attestation: Option<String>,
}

/// The steps: the services (all by default); every row at the GitOps tip;
/// with image repositories, each row's trust; the table (one service) or the
/// service × environment matrix, or JSON.
pub fn run(args: StatusArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let (all, targets) = chosen(&repos, &args.services)?;
    let mut rows = collect(&repos, repos.gitops.fetch_tip()?, &targets)?;
    let mut repositories = Vec::new();
    for target in &targets {
        if let Some(spec) = args.repositories.for_service(&target.service, &all)? {
            repositories.push((target.name().to_owned(), Repository::open(&spec)?));
        }
    }
    let keys = match repositories.is_empty() {
        true => (None, None),
        false => (args.image_key.load()?, args.public_key.load()?),
    };
    for (service, repository) in &repositories {
        let mine: Vec<&mut EnvStatus> = rows.iter_mut().filter(|r| r.service == *service).collect();
        check_trust(repository, mine, keys)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    match targets.as_slice() {
        [one] if !one.named => print_table(&rows),
        _ => print_matrix(&targets, &rows),
    }
    if repositories.is_empty() {
        println!(
            "\nsignatures and gate attestations: not checked: no image repository (--registry, --repository, \
             IMAGE_REGISTRY or IMAGE_REPOSITORY)"
        );
    }
    for (service, repository) in &repositories {
        let mine: Vec<&EnvStatus> = rows.iter().filter(|r| r.service == *service).collect();
        print_trust(repository, &mine);
        print_names(repository, &mine)?;
    }
    Ok(())
}

/// Every service, and the ones `selection` names (all when it names none).
fn chosen(repos: &Repos, selection: &ServiceSelection) -> Result<(Vec<Service>, Vec<Target>)> {
    let all = promotion::workspace_services(&repos.service.root())?;
    let selection = match selection.names.is_empty() {
        true => ServiceSelection {
            names: all.iter().map(|s| s.name.clone()).collect(),
        },
        false => selection.clone(),
    };
    let targets = promotion::targets(&all, &selection)?;
    Ok((all, targets))
}

/// One service's environments, as before services were declared.
fn print_table(rows: &[EnvStatus]) {
    println!(
        "| environment | tag | digest | source commit | promoted by | at |\n|---|---|---|---|---|---|"
    );
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.env,
            row.tag,
            if row.digest.is_empty() {
                "-"
            } else {
                short_digest(&row.digest)
            },
            row.source_commit.as_deref().map_or("-", short),
            row.promoted_by.as_deref().map_or("-", short),
            row.promoted_at.as_deref().unwrap_or("-"),
        );
    }
}

/// Rows services, columns the long-lived environments and the previews.
fn print_matrix(targets: &[Target], rows: &[EnvStatus]) {
    println!("| service | dev | preprod | prod | previews |\n|---|---|---|---|---|");
    for target in targets {
        let mine: Vec<&EnvStatus> = rows.iter().filter(|r| r.service == target.name()).collect();
        let cell = |env: Env| {
            mine.iter()
                .find(|r| r.env == env.to_string())
                .map_or("-".to_owned(), |r| match r.digest.is_empty() {
                    true => r.tag.clone(),
                    false => format!("{}@{}", r.tag, short_digest(&r.digest)),
                })
        };
        let previews: Vec<&str> = mine
            .iter()
            .filter(|r| {
                r.env
                    .parse::<Env>()
                    .is_ok_and(|e| matches!(e, Env::Preview(_)))
            })
            .map(|r| r.env.as_str())
            .collect();
        let previews = match previews.is_empty() {
            true => "0".to_owned(),
            false => format!("{} ({})", previews.len(), previews.join(", ")),
        };
        println!(
            "| {} | {} | {} | {} | {previews} |",
            target.name(),
            cell(Env::Dev),
            cell(Env::Preprod),
            cell(Env::Prod),
        );
    }
}

/// Each environment's image: signed by the image key? a passing preprod gate
/// signed by the gate key? Each "not checked" without its key.
fn check_trust(
    repository: &Repository,
    rows: Vec<&mut EnvStatus>,
    (image_key, gate_key): (Option<VerifyingKey>, Option<VerifyingKey>),
) -> Result<()> {
    const NO_KEY: &str = "not checked: no public key";
    for row in rows {
        let digest = if row.digest.is_empty() {
            repository.resolve(&row.tag)?.map(|r| r.digest)
        } else {
            Some(row.digest.clone())
        };
        let Some(digest) = digest else {
            row.signature = Some("✘ not in the registry".into());
            row.gate_attestation = row.signature.clone();
            continue;
        };
        row.signature = Some(match &image_key {
            None => format!("{NO_KEY} (--image-key or IMAGE_PUBLIC_KEY)"),
            Some(key) => match signature::check(repository, &digest, key)? {
                Verdict::Signed => "✔ signed".into(),
                verdict => format!("✘ {verdict}"),
            },
        });
        row.gate_attestation = Some(match &gate_key {
            None => format!("{NO_KEY} (--public-key or GATE_PUBLIC_KEY)"),
            Some(key) => match attestation::newest_preprod(repository, &digest, key)?.0 {
                Some(p) if p.conclusion == Conclusion::Success => {
                    format!(
                        "✔ {} passed (commit {}, {})",
                        p.suite,
                        short(&p.commit),
                        p.time
                    )
                }
                Some(p) => format!("✘ {} failed ({})", p.suite, p.time),
                None => "✘ no signed preprod-tests result".into(),
            },
        });
    }
    Ok(())
}

fn print_trust(repository: &Repository, rows: &[&EnvStatus]) {
    println!("\nsignature and gate attestation of each environment's image in {repository}:");
    for row in rows {
        println!(
            "  {:<8} {:<50} signature: {}; gate attestation: {}",
            row.env,
            row.tag,
            row.signature.as_deref().unwrap_or("-"),
            row.gate_attestation.as_deref().unwrap_or("-"),
        );
    }
}

/// For each commit something runs: every tag naming a build of it
/// (`pr-<N>-<sha>`, `main-<sha>`) or a release of it, with its digest and where
/// it runs: "three names for the same set of bits".
fn print_names(repository: &Repository, rows: &[&EnvStatus]) -> Result<()> {
    let tags = repository.tags()?;
    let mut commits: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.source_commit.as_deref())
        .collect();
    commits.sort_unstable();
    commits.dedup();
    println!("\nimage names in {repository}:");
    for sha in commits {
        let mut names: Vec<&str> = tags
            .iter()
            .map(String::as_str)
            .filter(|t| t.ends_with(&format!("-{sha}")))
            .collect();
        // Release tags carry no SHA: take the ones environments run from this commit.
        names.extend(
            rows.iter()
                .filter(|r| r.source_commit.as_deref() == Some(sha))
                .map(|r| r.tag.as_str()),
        );
        names.sort_unstable();
        names.dedup();
        let mut digests = Vec::new();
        for name in names {
            let digest = repository.resolve(name)?.map(|r| r.digest);
            let running: Vec<&str> = rows
                .iter()
                .filter(|r| r.tag == name)
                .map(|r| r.env.as_str())
                .collect();
            println!(
                "  {} {name:<50} {}{}",
                short(sha),
                digest
                    .as_deref()
                    .map_or("(not in the registry)", short_digest),
                if running.is_empty() {
                    String::new()
                } else {
                    format!("  runs in {}", running.join(", "))
                }
            );
            digests.push(digest);
        }
        digests.dedup();
        if digests.len() == 1 && digests[0].is_some() {
            println!("  {} → one digest under every name", short(sha));
        }
    }
    Ok(())
}

/// Every service's environments and previews at the GitOps commit `tip`.
pub fn collect(repos: &Repos, tip: gix::ObjectId, targets: &[Target]) -> Result<Vec<EnvStatus>> {
    let mut previews: Vec<Env> = repos
        .gitops
        .list_subdirs(tip, &repos.gitops.full_path(PREVIEW_DIR))?
        .iter()
        .filter_map(|name| Env::from_preview_dir(name))
        .collect();
    previews.sort();
    let envs: Vec<Env> = Env::LONG_LIVED.into_iter().chain(previews).collect();
    let mut rows = Vec::new();
    for target in targets {
        for &env in &envs {
            let full = repos.gitops.full_path(&target.path(env));
            let Some(text) = repos.gitops.read(tip, &full)? else {
                continue;
            };
            rows.push(env_status(repos, tip, target, env, &full, &text)?);
        }
    }
    Ok(rows)
}

/// One service's environment: its image, where it comes from, and the newest
/// GitOps commit whose version of the file carries it.
fn env_status(
    repos: &Repos,
    tip: gix::ObjectId,
    target: &Target,
    env: Env,
    full: &str,
    text: &str,
) -> Result<EnvStatus> {
    let image = DeployedImage::from_values(text)?;
    let source = ImageTag::parse(&image.tag)
        .ok()
        .and_then(|tag| repos.service.source_commit(&tag).ok().flatten())
        .map(|id| id.to_string());
    let history = repos.gitops.history(tip, full)?;
    let mut promoted = None;
    for (i, version) in history.iter().enumerate() {
        let previous = history
            .get(i + 1)
            .and_then(|v| v.text.as_deref())
            .map(DeployedImage::from_values);
        let changed_image = match previous {
            Some(Ok(previous)) => previous != image,
            _ => true,
        };
        if changed_image {
            promoted = Some(version);
            break;
        }
    }
    Ok(EnvStatus {
        service: target.name().to_owned(),
        env: env.to_string(),
        tag: image.tag,
        digest: image.digest,
        source_commit: source,
        promoted_by: promoted.map(|v| v.commit.to_string()),
        promoted_at: promoted.map(|v| rfc3339(v.time)),
        signature: None,
        gate_attestation: None,
    })
}

/// Per service: every environment, and every tag seen in GitOps history,
/// that carries the same bits as `target`: the same digest, or failing
/// digests, the same commit.
pub fn trace(args: TraceArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let tip = repos.gitops.fetch_tip()?;
    let (_, targets) = chosen(&repos, &args.services)?;
    let rows = collect(&repos, tip, &targets)?;
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
