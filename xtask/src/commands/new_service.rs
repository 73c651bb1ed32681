//! `cargo xtask new-service NAME`: scaffolds `services/NAME` (a crate on
//! service-kit with health, readiness, version, metrics and an example
//! route, its tests, its `service.toml`), its values in every long-lived
//! environment (`gitops/values/<env>/NAME.yaml`), and adds it to the
//! workspace. `--dry-run` shows each file as a diff and writes nothing; a
//! failure half-way leaves nothing written.

use std::path::PathBuf;

use anyhow::Result;

use crate::domain::application_sets;
use crate::domain::scaffold;
use crate::domain::services;
use crate::plumbing::text::unified_diff;

#[derive(clap::Args)]
pub struct NewServiceArgs {
    /// The service's name: its crate, image and Kubernetes objects (e.g. orders-api).
    name: String,
    /// Print every file it would write or change, as a diff; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The port it listens on.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// The workspace to add it to (default: the one around the current directory).
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
}

pub fn run(args: NewServiceArgs) -> Result<()> {
    // 1. The workspace, and everything that would be written (checked first: a
    //    bad or taken name writes nothing).
    let root = services::workspace_around(&args.workspace)?;
    let plan = scaffold::plan(&root, &args.name, args.port)?;

    // 2. Shown, or written (all or nothing).
    if args.dry_run {
        for (path, text) in &plan.files {
            print!("new file {path}\n{}", unified_diff(path, "", text));
        }
        for (path, before, after) in &plan.edits {
            print!("changed {path}\n{}", unified_diff(path, before, after));
        }
        print!("{}", application_sets::planned_diff(&root, &plan.files)?);
        println!(
            "(dry run: nothing written; Cargo.lock would gain the package {})",
            args.name
        );
    } else {
        scaffold::write(&root, &plan)?;
        for (path, _) in &plan.files {
            println!("created {path}");
        }
        println!(
            "added {} to [workspace] members in Cargo.toml; Cargo.lock updated",
            plan.dir
        );
        for file in application_sets::add_service(&root, &args.name)? {
            println!("added {} to the services list of {file}", args.name);
        }
    }

    // 3. What it does not write.
    println!("\nnot written by new-service:");
    for step in scaffold::remaining_steps(&args.name) {
        println!("  - {step}");
    }
    Ok(())
}
