//! `cargo xtask preview`: per-pull-request environments. A preview is a
//! folder `values/pr/pr-<N>/` holding one values file per previewed service
//! (`<values-file>` of its declaration); Argo CD's ApplicationSet turns each
//! such file into an Application in namespace `pr-<N>`.
//!
//! `deploy --label` writes it only for an open pull request of this repository
//! that carries the label and whose head is `--sha` (asked of GitHub), and
//! takes the digest from the registry; `cleanup` removes one; `gc` removes the
//! previews of closed pull requests (and, with `--max-age`, only those also
//! unchanged that long).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};

use crate::domain::Repos;
use crate::domain::github::{self, GitHub};
use crate::domain::gitops::{Decision, FileChange, GitopsOptions, Snapshot};
use crate::domain::promotion::{
    self, DeployedImage, Env, Move, PREVIEW_DIR, Policy, Promotion, Record, RecordedMove,
};
use crate::domain::registry::Repository;
use crate::domain::services::{RepositoryOptions, ServiceSelection};
use crate::domain::tags::{self, ImageTag};

#[derive(clap::Subcommand)]
pub enum PreviewCommand {
    /// Write values/pr/pr-<N>/<values-file> of each service for the pull request's images, in one commit.
    Deploy(DeployArgs),
    /// Remove a pull request's preview, every service's file (when it is closed or merged).
    Cleanup(CleanupArgs),
    /// Remove previews whose values file has not changed for longer than --max-age.
    Gc(GcArgs),
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Pull request number.
    #[arg(long)]
    pr: u64,
    /// The pull request's head commit (the image is pr-<N>-<sha>).
    #[arg(long)]
    sha: String,
    /// Image digest (one service only). Default: pr-<N>-<sha>'s digest in each service's image
    /// repository, when --registry or --repository is set.
    #[arg(long)]
    digest: Option<String>,
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    repositories: RepositoryOptions,
    /// Deploy only an open pull request of this repository that carries this label and whose
    /// head is --sha, as GitHub says (GITHUB_TOKEN, GITHUB_REPOSITORY; required in Actions).
    #[arg(long)]
    label: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct CleanupArgs {
    #[arg(long)]
    pr: u64,
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// Remove a closed pull request's preview only once it is also unchanged this long, e.g. 72h.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<Duration>,
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(command: PreviewCommand) -> Result<()> {
    match command {
        PreviewCommand::Deploy(args) => deploy(args),
        PreviewCommand::Cleanup(args) => cleanup(args),
        PreviewCommand::Gc(args) => gc(args),
    }
}

fn deploy(args: DeployArgs) -> Result<()> {
    check_deploy_args(&args)?;
    let tag = ImageTag::Pr {
        number: args.pr,
        sha: args.sha.clone(),
    };
    if let Some(label) = &args.label
        && let Some(reason) = refusal(args.pr, &args.sha, label)?
    {
        return not_deployed(args.pr, &reason);
    }
    let repos = Repos::open(&args.gitops)?;
    let all = promotion::workspace_services(&repos.service.root())?;
    let targets = promotion::targets(&all, &args.services)?;
    ensure!(
        args.digest.is_none() || targets.len() == 1,
        "--digest names one image, but {} services were named: let each digest come from its repository",
        targets.len()
    );
    let env = Env::Preview(args.pr);
    let (mut moves, mut pulled) = (Vec::new(), Vec::new());
    for target in targets {
        let repository = args.repositories.for_service(&target.service, &all)?;
        if let Some(repository) = &repository {
            pulled.push(format!("{repository}:{tag}"));
        }
        let digest = match (&args.digest, repository) {
            (Some(digest), _) => digest.clone(),
            (None, None) => String::new(),
            (None, Some(repository)) => match registry_digest(&repository, &tag.to_string())? {
                Some(digest) => digest,
                None => return not_pushed(args.pr, &tag, &repository),
            },
        };
        moves.push(Move {
            target,
            envs: vec![env],
            image: DeployedImage {
                tag: tag.to_string(),
                digest,
            },
            // A pull request's head may be force-pushed to any commit: no order.
            source: None,
        });
    }
    let promotion = Promotion {
        subject: format!("ci: deploy {env} ({})", &args.sha[..7]),
        moves,
        policy: Policy::AllowOlder,
    };
    let what = format!("deploy {tag} to {env}");
    promotion::promote(&repos, args.dry_run, |_| Ok(promotion.clone()))?
        .outcome
        .report(&what);
    // What the cluster pulls, for the workflow's next step: can kind pull it without credentials?
    if let [image] = pulled.as_slice() {
        github::set_output("image", image)?;
    }
    github::set_output("deployed", "true")
}

/// The pull request number, SHA and digest are well formed.
fn check_deploy_args(args: &DeployArgs) -> Result<()> {
    ensure!(
        args.pr > 0,
        "--pr must be a pull request number (1 or more)"
    );
    ensure!(
        tags::is_sha(&args.sha),
        "--sha {:?} is not a commit SHA (7 to 40 lowercase hex digits)",
        args.sha
    );
    if let Some(digest) = &args.digest {
        tags::validate_digest(digest)?;
    }
    Ok(())
}

/// No preview yet: a service's image is not pushed.
fn not_pushed(pr: u64, tag: &ImageTag, repository: &str) -> Result<()> {
    let reason =
        format!("{tag} is not in {repository} yet; CI pushes it, and its completion deploys it");
    not_deployed(pr, &reason)
}

/// Says why pull request `pr` gets no preview (and tells later steps): a success.
fn not_deployed(pr: u64, reason: &str) -> Result<()> {
    println!("no preview for pull request #{pr}: {reason}; nothing changed");
    github::set_output("deployed", "false")
}

/// Why pull request `pr` at `sha` must not get a preview, asked of GitHub:
/// closed, from another repository (a fork), without `label`, or moved on.
/// Outside Actions without a token, says what was not checked.
fn refusal(pr: u64, sha: &str, label: &str) -> Result<Option<String>> {
    let Some(github) = GitHub::from_env()? else {
        if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            bail!(
                "--label needs GITHUB_TOKEN and GITHUB_REPOSITORY to ask GitHub about pull request #{pr}: pass them in the step's env"
            );
        }
        println!(
            "GITHUB_TOKEN unset: not asking GitHub whether pull request #{pr} is open, from this repository and labelled {label:?}"
        );
        return Ok(None);
    };
    let pull = github.get(&format!("/pulls/{pr}"))?;
    let labelled = pull["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["name"] == label);
    let head_repo = pull["head"]["repo"]["full_name"]
        .as_str()
        .unwrap_or("(deleted)");
    let head = pull["head"]["sha"].as_str().unwrap_or_default();
    Ok(if pull["state"] != "open" {
        Some(format!("it is {}", pull["state"]))
    } else if head_repo != github.repository() {
        Some(format!(
            "it comes from {head_repo}, not {}",
            github.repository()
        ))
    } else if !labelled {
        Some(format!(
            "it has no {label:?} label (add it to get a preview)"
        ))
    } else if head != sha {
        Some(format!(
            "its head is now {head}, not {sha}; that commit's CI run deploys it"
        ))
    } else {
        None
    })
}

/// `tag`'s digest in the image repository `spec` (None when not pushed yet).
fn registry_digest(spec: &str, tag: &str) -> Result<Option<String>> {
    let resolved = Repository::open(spec)?
        .resolve(tag)
        .with_context(|| format!("resolving {tag} in {spec}"))?;
    Ok(resolved.map(|r| r.digest))
}

/// Removes every file of the pull request's preview folder (every service's),
/// and a preview file of the layout before services (`pr-<N>.yaml`), in one commit.
fn cleanup(args: CleanupArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let env = Env::Preview(args.pr);
    let outcome = repos.gitops.update(args.dry_run, |snapshot| {
        let changes: Vec<FileChange> = preview_files(&repos, snapshot, args.pr)?
            .into_iter()
            .map(|path| FileChange::Delete { path })
            .collect();
        if changes.is_empty() {
            return Ok(Decision::NoOp(format!("{env} has no preview")));
        }
        Ok(Decision::Commit {
            changes,
            message: removal(format!("ci: remove preview {env}"), vec![env]),
        })
    })?;
    outcome.report(&format!("remove preview {env}"));
    Ok(())
}

/// Every file of pull request `pr`'s preview at the snapshot (full paths).
fn preview_files(repos: &Repos, snapshot: &Snapshot, pr: u64) -> Result<Vec<String>> {
    let dir = repos.gitops.full_path(&format!("{PREVIEW_DIR}/pr-{pr}"));
    let mut files: Vec<String> = repos
        .gitops
        .list_dir(snapshot.tip, &dir)?
        .into_iter()
        .map(|name| format!("{dir}/{name}"))
        .collect();
    let old_layout = repos
        .gitops
        .full_path(&format!("{PREVIEW_DIR}/pr-{pr}.yaml"));
    if repos.gitops.read(snapshot.tip, &old_layout)?.is_some() {
        files.push(old_layout);
    }
    Ok(files)
}

fn gc(args: GcArgs) -> Result<()> {
    let github = GitHub::from_env()?.context(
        "preview gc asks GitHub which pull requests are closed: set GITHUB_TOKEN and GITHUB_REPOSITORY",
    )?;
    let repos = Repos::open(&args.gitops)?;
    let mut states = BTreeMap::new();
    let mut removed = Vec::new();
    let outcome = repos.gitops.update(args.dry_run, |snapshot| {
        removed = removable(&repos, snapshot, &github, &mut states, args.max_age)?;
        if removed.is_empty() {
            return Ok(Decision::NoOp(format!(
                "no preview {}",
                gc_rule(args.max_age)
            )));
        }
        let envs: Vec<Env> = removed.iter().map(|(env, _)| *env).collect();
        Ok(Decision::Commit {
            changes: removed
                .iter()
                .flat_map(|(_, files)| files.iter())
                .map(|path| FileChange::Delete { path: path.clone() })
                .collect(),
            message: removal(
                format!(
                    "ci: remove previews {} ({})",
                    names(&envs),
                    gc_rule(args.max_age)
                ),
                envs,
            ),
        })
    })?;
    let envs: Vec<Env> = removed.iter().map(|(env, _)| *env).collect();
    outcome.report(&format!("remove previews {}", names(&envs)));
    Ok(())
}

/// The previews at the snapshot (folders `pr-<N>/`, and files `pr-<N>.yaml`
/// of the layout before services) whose pull request is closed (asked of
/// GitHub once per pull request, kept in `states` across push retries) and,
/// with `max_age`, unchanged for longer: `(env, its files)`.
fn removable(
    repos: &Repos,
    snapshot: &Snapshot,
    github: &GitHub,
    states: &mut BTreeMap<u64, String>,
    max_age: Option<Duration>,
) -> Result<Vec<(Env, Vec<String>)>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let dir = repos.gitops.full_path(PREVIEW_DIR);
    let folders = repos.gitops.list_subdirs(snapshot.tip, &dir)?;
    let old_files = repos.gitops.list_dir(snapshot.tip, &dir)?;
    let mut previews: Vec<Env> = folders
        .iter()
        .filter_map(|name| Env::from_preview_dir(name))
        .chain(
            old_files
                .iter()
                .filter_map(|name| Env::from_preview_file(name)),
        )
        .collect();
    previews.sort();
    previews.dedup();
    let mut removable = Vec::new();
    for env in previews {
        let Env::Preview(pr) = env else { continue };
        if let std::collections::btree_map::Entry::Vacant(entry) = states.entry(pr) {
            let pull = github.get(&format!("/pulls/{pr}"))?;
            entry.insert(pull["state"].as_str().unwrap_or_default().to_owned());
        }
        if states[&pr] != "closed" {
            continue;
        }
        let files = preview_files(repos, snapshot, pr)?;
        if let Some(max_age) = max_age {
            let mut last_change = i64::MIN;
            for file in &files {
                let history = repos.gitops.history(snapshot.tip, file)?;
                last_change = last_change.max(history.first().map_or(now, |v| v.time));
            }
            if now - last_change <= max_age.as_secs() as i64 {
                continue;
            }
        }
        removable.push((env, files));
    }
    Ok(removable)
}

/// Which previews gc removes, in words.
fn gc_rule(max_age: Option<Duration>) -> String {
    match max_age {
        None => "of a closed pull request".into(),
        Some(age) => format!(
            "of a closed pull request and unchanged for over {}",
            humantime::format_duration(age)
        ),
    }
}

/// The message of a commit that removes previews: a record with no image.
fn removal(subject: String, envs: Vec<Env>) -> String {
    Record {
        subject,
        moves: vec![RecordedMove {
            envs,
            ..RecordedMove::default()
        }],
    }
    .message()
}

fn names(envs: &[Env]) -> String {
    envs.iter()
        .map(Env::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
