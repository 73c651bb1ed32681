//! `cargo xtask preview`: per-pull-request environments. A preview is a
//! values file `values/pr/pr-<N>.yaml`; Argo CD's ApplicationSet turns each
//! such file (a git files generator) into a `pr-<N>` namespace that reads it.
//!
//! `deploy --label` writes it only for an open pull request of this repository
//! that carries the label and whose head is `--sha` (asked of GitHub), and
//! takes the digest from the registry; `cleanup` removes one; `gc` removes the
//! previews of closed pull requests (and, with `--max-age`, only those also
//! unchanged that long).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};

use crate::parts::Repos;
use crate::parts::github::{self, GitHub};
use crate::parts::gitops::{Decision, FileChange, GitopsOptions, Snapshot};
use crate::parts::promotion::{self, DeployedImage, Env, PREVIEW_DIR, Policy, Promotion, Record};
use crate::parts::registry::Repository;
use crate::parts::tags::{self, ImageTag};

#[derive(clap::Subcommand)]
pub enum PreviewCommand {
    /// Write values/pr/pr-<N>.yaml for the pull request's image and commit it.
    Deploy(DeployArgs),
    /// Remove a pull request's preview (when it is closed or merged).
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
    /// Image digest. Default: pr-<N>-<sha>'s digest in IMAGE_REPOSITORY, when that is set.
    #[arg(long)]
    digest: Option<String>,
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
    let tag = ImageTag::Pr {
        number: args.pr,
        sha: args.sha.clone(),
    };
    if let Some(label) = &args.label
        && let Some(reason) = refusal(args.pr, &args.sha, label)?
    {
        return not_deployed(args.pr, &reason);
    }
    let digest = match args.digest {
        Some(digest) => digest,
        None => match registry_digest(&tag.to_string())? {
            Some(digest) => digest,
            None => {
                let reason = format!(
                    "{tag} is not in the registry yet; CI pushes it, and its completion deploys it"
                );
                return not_deployed(args.pr, &reason);
            }
        },
    };
    let repos = Repos::open(&args.gitops)?;
    let env = Env::Preview(args.pr);
    let promotion = Promotion {
        subject: format!("ci: deploy {env} ({})", &args.sha[..7]),
        envs: vec![env],
        image: DeployedImage {
            tag: tag.to_string(),
            digest,
        },
        // A pull request's head may be force-pushed to any commit: no order.
        source: None,
        policy: Policy::AllowOlder,
    };
    let what = format!("deploy {tag} to {env}");
    promotion::promote(&repos, args.dry_run, |_| Ok(promotion.clone()))?
        .outcome
        .report(&what);
    github::set_output("deployed", "true")
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

/// `tag`'s digest in IMAGE_REPOSITORY (None when not pushed yet); an empty
/// digest when no repository is set (the values then name the tag only).
fn registry_digest(tag: &str) -> Result<Option<String>> {
    let Ok(spec) = std::env::var("IMAGE_REPOSITORY") else {
        return Ok(Some(String::new()));
    };
    let resolved = Repository::open(&spec)?
        .resolve(tag)
        .with_context(|| format!("resolving {tag} in {spec}"))?;
    Ok(resolved.map(|r| r.digest))
}

fn cleanup(args: CleanupArgs) -> Result<()> {
    let repos = Repos::open(&args.gitops)?;
    let env = Env::Preview(args.pr);
    let path = env.values_path();
    let outcome = repos.gitops.update(args.dry_run, |snapshot| {
        if snapshot.read(&path)?.is_none() {
            return Ok(Decision::NoOp(format!("{env} has no preview")));
        }
        Ok(Decision::Commit {
            changes: vec![FileChange::Delete {
                path: repos.gitops.full_path(&path),
            }],
            message: removal(format!("ci: remove preview {env}"), vec![env]),
        })
    })?;
    outcome.report(&format!("remove preview {env}"));
    Ok(())
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
                .map(|(_, path)| FileChange::Delete { path: path.clone() })
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

/// The previews at the snapshot whose pull request is closed (asked of GitHub
/// once per pull request, kept in `states` across push retries) and, with
/// `max_age`, unchanged for longer: `(env, path)`.
fn removable(
    repos: &Repos,
    snapshot: &Snapshot,
    github: &GitHub,
    states: &mut BTreeMap<u64, String>,
    max_age: Option<Duration>,
) -> Result<Vec<(Env, String)>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let dir = repos.gitops.full_path(PREVIEW_DIR);
    let mut removable = Vec::new();
    for name in repos.gitops.list_dir(snapshot.tip, &dir)? {
        let Some(env @ Env::Preview(pr)) = Env::from_preview_file(&name) else {
            continue;
        };
        if let std::collections::btree_map::Entry::Vacant(entry) = states.entry(pr) {
            let pull = github.get(&format!("/pulls/{pr}"))?;
            entry.insert(pull["state"].as_str().unwrap_or_default().to_owned());
        }
        if states[&pr] != "closed" {
            continue;
        }
        let path = format!("{dir}/{name}");
        if let Some(max_age) = max_age {
            let history = repos.gitops.history(snapshot.tip, &path)?;
            let last_change = history.first().map(|v| v.time).unwrap_or(now);
            if now - last_change <= max_age.as_secs() as i64 {
                continue;
            }
        }
        removable.push((env, path));
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
        envs,
        image: None,
        source: None,
    }
    .message()
}

fn names(envs: &[Env]) -> String {
    envs.iter()
        .map(Env::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
