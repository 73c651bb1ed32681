//! `cargo xtask fork --github <owner>/<name>`: point the Argo CD objects, the
//! environments' image repositories (`ghcr.io/<owner>/<image>`), the chart, Terraform and the Cargo metadata
//! at your fork and its GHCR image, in one step (the tutorial's "try it").
//!
//! The current identity is read from the AppProject's `sourceRepos`, so running
//! it again with another name moves everything again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::parts::{unified_diff, values, workspace, yaml_files};

#[derive(clap::Args)]
pub struct ForkArgs {
    /// Your fork on GitHub, as <owner>/<name> (each service's image becomes ghcr.io/<owner>/<image>).
    #[arg(long, value_name = "OWNER/NAME")]
    github: String,
    /// Print the diff and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Repository to edit (default: this one).
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Where the repository is named, besides the YAML under gitops/argocd and gitops/values.
const FILES: [&str; 5] = [
    "Cargo.toml",
    "Dockerfile",
    "charts/service-demo/Chart.yaml",
    "charts/service-demo/values.yaml",
    "terraform/variables.tf",
];

/// The steps:
/// 1. read the current name and parse the new one;
/// 2. compute every file's new text;
/// 3. write them all (or print the diffs for --dry-run).
pub fn run(args: ForkArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace::root);
    let new = parse_name(&args.github)?;
    let old = current_name(&root)?;
    if old == new {
        println!(
            "nothing to do: this repository already points at github.com/{}/{}",
            new.0, new.1
        );
        return Ok(());
    }
    // Every new text first, then the writes: bad input changes nothing.
    let edits = edits(&root, &replacements(&old, &new))?;
    for (file, text, edited) in &edits {
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        if args.dry_run {
            print!("{}", unified_diff(&name, text, edited));
        } else {
            std::fs::write(file, edited).with_context(|| format!("writing {name}"))?;
            println!("updated {name}");
        }
    }
    if args.dry_run {
        println!(
            "dry run: {} files would point at github.com/{}/{}; nothing was written",
            edits.len(),
            new.0,
            new.1
        );
    } else {
        println!(
            "this repository now points at github.com/{0}/{1} and ghcr.io/{2}/<image>: commit, push, then `terraform apply` in terraform/",
            new.0,
            new.1,
            new.0.to_lowercase()
        );
    }
    Ok(())
}

/// What changes from `old` to `new` (owner, name), as (from, to) texts.
fn replacements(old: &(String, String), new: &(String, String)) -> [(String, String); 2] {
    [
        (
            format!("github.com/{}/{}", old.0, old.1),
            format!("github.com/{}/{}", new.0, new.1),
        ),
        // Each service's images are ghcr.io/<owner>/<image> (its declared
        // image name), whatever the repository is called: the owner moves.
        (
            format!("ghcr.io/{}/", old.0).to_lowercase(),
            format!("ghcr.io/{}/", new.0).to_lowercase(),
        ),
    ]
}

/// Every file that changes: (path, old text, new text).
fn edits(root: &Path, replacements: &[(String, String)]) -> Result<Vec<(PathBuf, String, String)>> {
    let mut files: Vec<PathBuf> = FILES.iter().map(|f| root.join(f)).collect();
    for dir in [
        "gitops/argocd",
        "gitops/values/dev",
        "gitops/values/preprod",
        "gitops/values/prod",
        // The admission policy names the image repository.
        "gitops/policy",
    ] {
        files.extend(yaml_files(&root.join(dir))?);
    }
    let mut edits = Vec::new();
    for file in files.into_iter().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file)?;
        let edited = replacements
            .iter()
            .fold(text.clone(), |t, (from, to)| t.replace(from, to));
        if edited != text {
            edits.push((file, text, edited));
        }
    }
    Ok(edits)
}

fn parse_name(name: &str) -> Result<(String, String)> {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match name.trim_end_matches(".git").split_once('/') {
        Some((owner, repo)) if valid(owner) && valid(repo) => {
            Ok((owner.to_owned(), repo.to_owned()))
        }
        _ => {
            bail!("--github {name:?} should be <owner>/<name>, e.g. --github octocat/service-demo")
        }
    }
}

/// The repository the AppProject trusts now.
fn current_name(root: &Path) -> Result<(String, String)> {
    let path = root.join("gitops/argocd/project.yaml");
    let project = values::parse(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let url = project["spec"]["sourceRepos"][0]
        .as_str()
        .unwrap_or_default();
    url.strip_prefix("https://github.com/")
        .and_then(|rest| parse_name(rest).ok())
        .with_context(|| {
            format!(
                "{}: sourceRepos[0] = {url:?} is not a GitHub repository URL",
                path.display()
            )
        })
}
