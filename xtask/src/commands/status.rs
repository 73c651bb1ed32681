//! `cargo xtask status`: what runs where, read from
//! the GitOps branch alone (the cluster only ever reflects it); with an image
//! repository, also whether each environment's image is signed (image key)
//! and carries a passing signed preprod gate (gate key). A workspace of
//! several services gets a service × environment matrix.

use anyhow::Result;
use p256::ecdsa::VerifyingKey;

use crate::domain::Repos;
use crate::domain::attestation::{self, PublicKeyOptions};
use crate::domain::deployments::{self, EnvStatus};
use crate::domain::gate_store::Conclusion;
use crate::domain::gitops::GitopsOptions;
use crate::domain::promotion::{Env, Target};
use crate::domain::registry::Repository;
use crate::domain::services::{RepositoryOptions, ServiceSelection};
use crate::domain::signature::{self, ImageKeyOptions, Verdict};
use crate::domain::tags::{short, short_digest};

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

/// The steps: the services (all by default); every row at the GitOps tip;
/// with image repositories, each row's trust; the table (one service) or the
/// service × environment matrix, or JSON.
pub fn run(args: StatusArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let (all, targets) = deployments::chosen(&repos, &args.services)?;
    let mut rows = deployments::collect(&repos, repos.gitops.fetch_tip()?, &targets)?;
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
