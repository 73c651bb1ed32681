//! `cargo xtask affected`: which services a commit range affects, each with
//! its reasons, so CI tests, builds and deploys only those. The build graph is
//! the head commit's (`cargo metadata` over its tree), not the working tree's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::parts::affected::{self, Report};
use crate::parts::service::ServiceRepo;
use crate::parts::services;

#[derive(clap::Args)]
pub struct AffectedArgs {
    /// Where the range starts: the pull request's base branch, or the commit
    /// main was at before a push. Compared as `base...head` (from their merge base).
    #[arg(long, default_value = "origin/main")]
    base: String,
    /// Where the range ends.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// Print the report as JSON (`affected` lists the names, for a CI matrix).
    #[arg(long)]
    json: bool,
    /// The repository (default: the one around the current directory).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

pub fn run(args: AffectedArgs) -> Result<()> {
    // 1. The range, as commits of the repository.
    let repo = ServiceRepo::discover(&args.repo)?;
    let root = repo.root();
    let base = repo.commit(&args.base).with_context(|| {
        format!(
            "--base {}: pass the commit the range starts from (e.g. --base origin/main)",
            args.base
        )
    })?;
    let head = repo.commit(&args.head)?;

    // 2. The head commit's workspace: its packages and its services.
    let sh = Shell::new()?;
    let tree = sh.create_temp_dir()?;
    affected::write_tree(&root, head, tree.path())?;
    let packages = services::packages(tree.path())?;
    let services = services::discover(tree.path(), &packages)
        .with_context(|| format!("reading the services of {head}"))?;

    // 3. The changed files and the verdicts.
    let changed = affected::changed_files(&root, base, head)?;
    let mut report = affected::decide(&services, &packages, &changed);
    report.base = base.to_string();
    report.head = head.to_string();

    // 4. Printed for people, or as JSON for a workflow.
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, changed.len());
    }
    Ok(())
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
