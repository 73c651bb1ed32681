//! `cargo xtask values set FILE EXPR`: a yq-style edit that keeps the file's
//! comments, order, quoting and line endings (see `plumbing::yaml`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::plumbing::yaml;

#[derive(clap::Subcommand)]
pub enum ValuesCommand {
    /// Apply a jq expression, e.g. '.image.tag = "main-abc1234"', writing back only the changed values.
    Set(SetArgs),
}

#[derive(clap::Args)]
pub struct SetArgs {
    /// The YAML file to edit.
    file: PathBuf,
    /// The jq expression (jaq dialect).
    expr: String,
    /// Print the diff and leave the file alone.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(command: ValuesCommand) -> Result<()> {
    let ValuesCommand::Set(args) = command;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let edited =
        yaml::jq::edit(&text, &args.expr).with_context(|| format!("{}", args.file.display()))?;
    if edited.changes.is_empty() {
        println!(
            "nothing to do: {} already has those values",
            args.file.display()
        );
        return Ok(());
    }
    let name = args.file.display().to_string();
    print!(
        "{}",
        crate::plumbing::text::unified_diff(&name, &text, &edited.text)
    );
    if args.dry_run {
        println!("dry run: {name} was not written");
        return Ok(());
    }
    // Write beside the file and rename over it, so a crash never leaves half a file.
    let tmp = args.file.with_extension("xtask-tmp");
    std::fs::write(&tmp, &edited.text)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.file)
        .with_context(|| format!("cannot replace {}", args.file.display()))?;
    Ok(())
}
