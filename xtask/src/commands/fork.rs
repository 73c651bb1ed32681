//! `cargo xtask fork --github <owner>/<name>`: point the Argo CD objects, the
//! environments' image repositories (`ghcr.io/<owner>/<image>`), the chart, Terraform and the Cargo metadata
//! at your fork and its GHCR image, in one step (the tutorial's "try it").
//!
//! The current identity is read from the AppProject's `sourceRepos`, so running
//! it again with another name moves everything again.

use std::path::PathBuf;

use anyhow::Result;

use crate::domain::fork_files::{self, Edits};
use crate::plumbing::workspace;

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

/// The steps:
/// 1. read the current name and parse the new one;
/// 2. compute every file's new text;
/// 3. write them all (or print the diffs for --dry-run).
pub fn run(args: ForkArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace::root);
    let new = fork_files::parse_name(&args.github)?;
    let old = fork_files::current_name(&root)?;
    if old == new {
        println!(
            "nothing to do: this repository already points at github.com/{}/{}",
            new.0, new.1
        );
        return Ok(());
    }
    // Every new text first, then the writes: bad input changes nothing.
    let mut edits = Edits::new(&root);
    edits.point_at(&new)?;
    if args.dry_run {
        print!("{}", edits.diff());
        println!(
            "dry run: {} files would point at github.com/{}/{}; nothing was written",
            edits.changed().len(),
            new.0,
            new.1
        );
        return Ok(());
    }
    for name in edits.write()? {
        println!("updated {name}");
    }
    println!(
        "this repository now points at github.com/{0}/{1} and ghcr.io/{2}/<image>: commit, push, then `terraform apply` in terraform/",
        new.0,
        new.1,
        new.0.to_lowercase()
    );
    Ok(())
}
