//! `cargo xtask status` and `cargo xtask trace`: what runs where, read from
//! the GitOps branch alone (the cluster only ever reflects it); with an image
//! repository, also whether each environment's image is signed (image key)
//! and carries a passing signed preprod gate (gate key).

use anyhow::Result;
use p256::ecdsa::VerifyingKey;
use serde::Serialize;

use crate::parts::attestation::{self, PublicKeyOptions};
use crate::parts::gates::Conclusion;
use crate::parts::gitops::GitopsOptions;
use crate::parts::promotion::{DeployedImage, Env, PREVIEW_DIR};
use crate::parts::registry::Repository;
use crate::parts::signature::{self, ImageKeyOptions, Verdict};
use crate::parts::tags::{ImageTag, short, short_digest};
use crate::parts::{Repos, rfc3339};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also resolve every image name of each running commit in this repository
    /// (<registry>/<path> or oci:<dir>), showing which names are the same bits.
    #[arg(long, env = "IMAGE_REPOSITORY")]
    repository: Option<String>,
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
    #[command(flatten)]
    gitops: GitopsOptions,
}

/// One environment's row.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
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

pub fn run(args: StatusArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let mut rows = collect(&repos, repos.gitops.fetch_tip()?)?;
    let repository = args
        .repository
        .as_deref()
        .map(Repository::open)
        .transpose()?;
    if let Some(repository) = &repository {
        let keys = (args.image_key.load()?, args.public_key.load()?);
        check_trust(repository, &mut rows, keys)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "| environment | tag | digest | source commit | promoted by | at |\n|---|---|---|---|---|---|"
    );
    for row in &rows {
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
    match &repository {
        Some(repository) => {
            print_trust(repository, &rows);
            print_names(repository, &rows)?;
        }
        None => println!(
            "\nsignatures and gate attestations: not checked: no image repository (--repository or \
             IMAGE_REPOSITORY)"
        ),
    }
    Ok(())
}

/// Each environment's image: signed by the image key? a passing preprod gate
/// signed by the gate key? Each "not checked" without its key.
fn check_trust(
    repository: &Repository,
    rows: &mut [EnvStatus],
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

fn print_trust(repository: &Repository, rows: &[EnvStatus]) {
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
fn print_names(repository: &Repository, rows: &[EnvStatus]) -> Result<()> {
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

/// Every environment and preview at the GitOps commit `tip`.
pub fn collect(repos: &Repos, tip: gix::ObjectId) -> Result<Vec<EnvStatus>> {
    let mut previews: Vec<Env> = repos
        .gitops
        .list_dir(tip, &repos.gitops.full_path(PREVIEW_DIR))?
        .iter()
        .filter_map(|name| Env::from_preview_file(name))
        .collect();
    previews.sort();
    let envs = Env::LONG_LIVED.into_iter().chain(previews);

    let mut rows = Vec::new();
    for env in envs {
        let full = repos.gitops.full_path(&env.values_path());
        let Some(text) = repos.gitops.read(tip, &full)? else {
            continue;
        };
        let image = DeployedImage::from_values(&text)?;
        let source = ImageTag::parse(&image.tag)
            .ok()
            .and_then(|tag| repos.service.source_commit(&tag).ok().flatten())
            .map(|id| id.to_string());
        // The newest commit whose version of the file carries this image.
        let history = repos.gitops.history(tip, &full)?;
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
        rows.push(EnvStatus {
            env: env.to_string(),
            tag: image.tag,
            digest: image.digest,
            source_commit: source,
            promoted_by: promoted.map(|v| v.commit.to_string()),
            promoted_at: promoted.map(|v| rfc3339(v.time)),
            signature: None,
            gate_attestation: None,
        });
    }
    Ok(rows)
}

/// Every environment, and every tag seen in GitOps history, that carries the
/// same bits as `target`: the same digest, or failing digests, the same commit.
///
/// The steps:
/// 1. every image any environment's values ever named;
/// 2. what `target` is: a digest it was deployed at, else the commit it names;
/// 3. the tags and the running environments with the same bits.
pub fn trace(args: TraceArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let tip = repos.gitops.fetch_tip()?;
    let rows = collect(&repos, tip)?;
    let seen = images_ever_deployed(&repos, tip, &rows)?;
    let source_of = |tag: &str| {
        ImageTag::parse(tag)
            .ok()
            .and_then(|t| repos.service.source_commit(&t).ok().flatten())
            .map(|id| id.to_string())
    };
    let wanted_digest = seen
        .iter()
        .find(|i| i.tag == args.target && !i.digest.is_empty())
        .map(|i| i.digest.clone());
    let wanted_commit = if crate::parts::tags::is_sha(&args.target) {
        Some(repos.service.commit(&args.target)?.to_string())
    } else {
        source_of(&args.target)
    };
    let matches = |tag: &str, digest: &str| match &wanted_digest {
        Some(wanted) => digest == wanted,
        None => wanted_commit.is_some() && source_of(tag) == wanted_commit,
    };
    let mut tags: Vec<&str> = seen
        .iter()
        .filter(|i| matches(&i.tag, &i.digest))
        .map(|i| i.tag.as_str())
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
    println!("{}: {what}", args.target);
    println!("  same bits under tags: {}", list_or(&tags, "none"));
    println!("  running in: {}", list_or(&envs, "no environment"));
    Ok(())
}

/// Every (tag, digest) ever written to the values of the environments in `rows`.
fn images_ever_deployed(
    repos: &Repos,
    tip: gix::ObjectId,
    rows: &[EnvStatus],
) -> Result<Vec<DeployedImage>> {
    let mut seen: Vec<DeployedImage> = Vec::new();
    for row in rows {
        let path = row.env.parse::<Env>()?.values_path();
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
