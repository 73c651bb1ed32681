//! `cargo xtask affected`: which services a commit range affects, each with
//! its reasons, so CI tests, builds and deploys only those. The build graph is
//! the head commit's (`cargo metadata` over its tree), not the working tree's.

use std::path::Path;

use anyhow::{Context, Result};

use crate::domain::affected_services::{self, ReadGitops, Report};
use crate::domain::github;
use crate::domain::gitops::{GitopsOptions, GitopsRepo};
use crate::domain::lock_closure::LockChange;
use crate::domain::promotion::Env;
use crate::domain::service_repo::ServiceRepo;
use crate::domain::services;
use crate::domain::services::{Package, Service};

#[derive(clap::Args)]
pub struct AffectedArgs {
    /// Where the range starts: the pull request's base branch, or the commit
    /// main was at before a push. Compared as `base...head` (from their merge base).
    #[arg(long, default_value = "origin/main")]
    base: String,
    /// Where the range ends.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// Print the report as JSON. The shape is stable (workflows read it):
    /// {"base": SHA, "head": SHA, "affected": [NAME…], "services": [{"service": NAME, "dir":
    /// "services/NAME", "image", "chart", "port", "health-path", "ready-path", "values-file",
    /// "affected": BOOL, "reasons": [TEXT…]}…], "pipeline": [FILE…], "unclaimed": [FILE…]}.
    /// "affected" lists the affected services' names, sorted. In GitHub Actions (GITHUB_OUTPUT
    /// set), with or without --json, the step has two outputs, each one line of JSON:
    /// `services`, that list ([] when nothing is affected), and `matrix`, a job matrix
    /// {"include": [{"service": NAME, "app": STEM}…]} where STEM-<env> names the service's
    /// Argo CD Applications (its values file without .yaml).
    #[arg(long, verbatim_doc_comment)]
    json: bool,
    /// When --base is not a commit here (a first push gives 000…0; after a force push the old
    /// head is gone), report every service affected rather than fail. For CD's pushes; a
    /// mistyped --base on a laptop still fails without it.
    #[arg(long)]
    all_if_base_unknown: bool,
    /// CD: decide each service from the commit of the main-<sha> build ENV runs for it (its
    /// values file in the head commit's gitops/values/ENV/), instead of --base: the changes of a
    /// push whose run was cancelled or failed are then built by the next push. A service ENV runs
    /// no main-<sha> of (a new one) is affected.
    #[arg(long, value_name = "ENV", conflicts_with_all = ["base", "all_if_base_unknown"])]
    since_deployed: Option<String>,
    /// The repository (--repo, default: the one around the current directory), and, for
    /// --since-deployed, where the GitOps files are: --gitops-repo (read at its tip), else this
    /// repository's gitops/ in the head commit.
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: AffectedArgs) -> Result<()> {
    // 1. The range, as commits of the repository (per service with --since-deployed).
    let repo = ServiceRepo::discover(&args.gitops.service_repo)?;
    let root = repo.root();
    let base = match repo.commit(&args.base) {
        _ if args.since_deployed.is_some() => None,
        Ok(base) => Some(base),
        Err(_) if args.all_if_base_unknown => None,
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "--base {}: pass the commit the range starts from (e.g. --base origin/main)",
                    args.base
                )
            });
        }
    };
    let head = repo.commit(&args.head)?;

    // 2. The head commit's workspace: its packages and its services.
    let tree = crate::plumbing::fs::temp_dir("xtask-")?;
    affected_services::write_tree(&root, head, tree.path())?;
    let packages = services::packages(tree.path())?;
    let services = services::discover(tree.path(), &packages)
        .with_context(|| format!("reading the services of {head}"))?;

    // 3. The changed files and the verdicts (everything, without a base).
    let graph = (services.as_slice(), packages.as_slice());
    let (mut report, changed) = match (&args.since_deployed, base) {
        (Some(env), _) => {
            let env: Env = env.parse()?;
            let read = gitops_reader(&args.gitops, &root, tree.path())?;
            affected_services::since_deployed(&repo, &*read, &env.to_string(), graph, head)?
        }
        (None, base) => decide_range(&args.base, &root, base, head, graph)?,
    };
    report.head = head.to_string();

    // 4. Printed for people, or as JSON for a workflow; the matrix as the step's output.
    github::set_output("services", &serde_json::to_string(&report.affected)?)?;
    github::set_output(
        "matrix",
        &affected_services::github_matrix(&report).to_string(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, changed);
    }
    Ok(())
}

/// The verdicts over `base...head`; every service affected without a base
/// (`given` was not a commit here: a first push, or a force push).
fn decide_range(
    given: &str,
    root: &Path,
    base: Option<gix::ObjectId>,
    head: gix::ObjectId,
    (services, packages): (&[Service], &[Package]),
) -> Result<(Report, usize)> {
    let Some(base) = base else {
        let reason = format!(
            "--base {given} is not a commit here (a first push, or a force push): every service is built"
        );
        return Ok((affected_services::everything(services, &reason), 0));
    };
    let changed = affected_services::changed_files(root, base, head)?;
    let lock = LockChange::read(root, base, head, packages)?;
    let mut report = affected_services::decide(services, packages, &changed, Some(&lock));
    report.base = base.to_string();
    Ok((report, changed.len()))
}

/// Reads a file of the GitOps tree (`values/<env>/<file>`): from
/// --gitops-repo at its tip when one is given, else from this repository's
/// `gitops/` in the head commit (`tree`), which a push to main carries; no
/// fetch, so the affected job needs no credentials.
fn gitops_reader(options: &GitopsOptions, root: &Path, tree: &Path) -> Result<Box<ReadGitops>> {
    if options.gitops_repo.is_none() {
        let tree = tree.join("gitops");
        return Ok(Box::new(move |path| {
            Ok(std::fs::read_to_string(tree.join(path)).ok())
        }));
    }
    let gitops = GitopsRepo::open(root, options)?;
    let tip = gitops.fetch_tip()?;
    Ok(Box::new(move |path| {
        gitops.read(tip, &gitops.full_path(path))
    }))
}

fn print_report(report: &Report, changed: usize) {
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
    println!(
        "{}...{}: {changed} files changed, {} of {} services affected",
        short(&report.base),
        short(&report.head),
        report.affected.len(),
        report.services.len()
    );
    if report.services.is_empty() {
        println!(
            "no services declared: a service is a workspace member services/<name> with a {}",
            services::DECLARATION_FILE
        );
    }
    for decision in &report.services {
        match decision.reasons.split_first() {
            None => println!("{}: not affected", decision.service),
            Some((first, rest)) => {
                println!("{}: {first}", decision.service);
                for reason in rest {
                    println!("{}  also: {reason}", " ".repeat(decision.service.len()));
                }
            }
        }
    }
    if !report.pipeline.is_empty() {
        println!(
            "pipeline changed (xtask's tests run; no image is built from it): {}",
            report.pipeline.join(", ")
        );
    }
    if !report.unclaimed.is_empty() {
        println!(
            "no service is built or deployed from: {}",
            report.unclaimed.join(", ")
        );
    }
}
