//! `cargo xtask gate record|check`: test results bound to a commit and the
//! image digest that was tested (see `parts/gates.rs`).

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::parts::gates::{Conclusion, Gate, GateStore, GateStoreOptions};
use crate::parts::gitops::GitopsOptions;
use crate::parts::service::ServiceRepo;
use crate::parts::tags;

#[derive(Subcommand)]
pub enum GateCommand {
    /// Record a suite's result for a commit and the image digest it tested.
    Record(RecordArgs),
    /// Exit 0 only if the latest result for the commit passed (for --digest, if given).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct RecordArgs {
    /// The commit the tested image was built from.
    #[arg(long)]
    sha: String,
    /// Gate name, e.g. preprod-tests.
    #[arg(long = "name")]
    gate: String,
    #[arg(long, value_enum)]
    conclusion: Conclusion,
    /// The image digest that was tested (sha256:…).
    #[arg(long)]
    digest: Option<String>,
    #[command(flatten)]
    store: GateStoreOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The commit whose gate to check.
    #[arg(long)]
    sha: String,
    /// Gate name, e.g. preprod-tests.
    #[arg(long = "name")]
    gate: String,
    /// Require the pass to be for this image digest.
    #[arg(long)]
    digest: Option<String>,
    #[command(flatten)]
    store: GateStoreOptions,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(command: GateCommand) -> Result<()> {
    match command {
        GateCommand::Record(args) => {
            if let Some(digest) = &args.digest {
                tags::validate_digest(digest)?;
            }
            let sha = full_sha(&args.gitops, &args.sha)?;
            let store = GateStore::open(&args.store, &args.gitops)?;
            let gate = Gate {
                conclusion: args.conclusion,
                digest: args.digest.unwrap_or_default(),
            };
            store.record(&sha, &args.gate, &gate)?;
            println!(
                "recorded gate {} = {:?} for {sha}{}",
                args.gate,
                gate.conclusion,
                at(&gate.digest)
            );
            Ok(())
        }
        GateCommand::Check(args) => {
            let sha = full_sha(&args.gitops, &args.sha)?;
            let store = GateStore::open(&args.store, &args.gitops)?;
            let gate = store.check(&sha, &args.gate, args.digest.as_deref())?;
            println!("gate {} passed for {sha}{}", args.gate, at(&gate.digest));
            Ok(())
        }
    }
}

/// Gates are keyed by full SHAs, whatever abbreviation the caller used.
fn full_sha(gitops: &GitopsOptions, sha: &str) -> Result<String> {
    Ok(ServiceRepo::discover(&gitops.service_repo)?
        .commit(sha)?
        .to_string())
}

fn at(digest: &str) -> String {
    if digest.is_empty() {
        String::new()
    } else {
        format!(" (image {digest})")
    }
}
