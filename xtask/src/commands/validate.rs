//! `cargo xtask validate`: prove offline that what Argo CD, Kubernetes, Terraform
//! and GitHub Actions will read is valid, since none of them runs here.
//!
//! 1. Without paths: every check of `checks/` (`checks/repository.rs` runs them) on the
//!    repository (the chart rendered per environment and for a preview, the
//!    Argo CD objects, Terraform, the workflows).
//! 2. With paths: every document of every file, parsed strictly by its kind;
//!    workflows linted.
//! 3. With `--list`: every rule, its target and why it exists.
//!
//! Every problem is printed with its rule's id in brackets.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use xshell::Shell;

use crate::checks::repository::{actionlint, as_problems, check_repository, print_report};
use crate::checks::{self, Finding, objects, tag, workflows};
use crate::domain::upstream_schemas;
use crate::plumbing::fs::yaml_files;
use crate::plumbing::workspace;
use crate::plumbing::yaml::split_documents;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Repository to check (default: this one).
    #[arg(long, conflicts_with = "paths")]
    root: Option<PathBuf>,
    /// Print every rule (id, target, why it exists) and check nothing.
    #[arg(long, conflicts_with_all = ["paths", "root"])]
    list: bool,
    /// Check these files (or the YAML files in these folders) instead: Kubernetes
    /// and Argo CD objects parsed strictly by their types, workflows linted.
    paths: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> Result<()> {
    if args.list {
        list_rules();
        return Ok(());
    }
    if !args.paths.is_empty() {
        return check_files(&args.paths);
    }
    check_repository(&args.root.unwrap_or_else(workspace::root))
}

/// `validate --list`: one rule a line, `id  target  why`, by target.
fn list_rules() {
    let mut rules: Vec<_> = checks::rules().collect();
    rules.sort_by_key(|rule| (rule.target, rule.id));
    let width = rules.iter().map(|rule| rule.id.len()).max().unwrap_or(0);
    for rule in rules {
        println!("{:width$}  {:10}  {}", rule.id, rule.target, rule.why);
    }
}

/// `validate PATH…`: every document of every file, by its kind.
fn check_files(paths: &[PathBuf]) -> Result<()> {
    let sh = Shell::new()?;
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(yaml_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut problems = 0;
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        let found = match split_documents(&text) {
            Err(error) => vec![Finding::new(
                "repository.yaml",
                format!("{name}: not YAML: {error}"),
            )],
            Ok(docs) => check_file_documents(&sh, file, &name, &docs),
        };
        print_report(&name, &found);
        problems += found.len();
    }
    if problems > 0 {
        bail!(
            "{problems} problem(s) in {} file(s) (listed above)",
            files.len()
        );
    }
    Ok(())
}

/// A workflow is linted; any other document is parsed strictly by its kind.
fn check_file_documents(
    sh: &Shell,
    file: &PathBuf,
    name: &str,
    docs: &[serde_json::Value],
) -> Vec<Finding> {
    let mut found = Vec::new();
    for (n, doc) in docs.iter().enumerate() {
        if doc.get("jobs").is_some() && doc.get("on").is_some() {
            let lint = actionlint(sh, std::slice::from_ref(file));
            found.extend(as_problems("workflows.actionlint", lint));
            found.extend(workflows::check_workflow(name, doc));
        } else {
            let place = format!("{name} document {}", n + 1);
            found.extend(objects::check_document(&place, doc));
            // A custom resource, also against its upstream CRD (xtask/schemas/).
            let mut tally = upstream_schemas::Tally::default();
            let upstream = upstream_schemas::check_custom_resource(&place, doc, &mut tally);
            found.extend(tag("objects.upstream-crd", upstream));
            for rule in &tally.cel_not_checked {
                println!("{name}: not checked (a CEL rule; no CEL evaluator here): {rule}");
            }
        }
    }
    found
}
