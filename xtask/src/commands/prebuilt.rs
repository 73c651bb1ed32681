//! `cargo xtask prebuilt --out DIR`: the binary the cluster jobs run, made
//! once per workflow run by a hosted job from main's commit (see
//! `plumbing::prebuilt`). That job's `CARGO_ALIAS_XTASK` builds this very
//! command with the cluster jobs' profile, target and features, so the binary
//! that runs here is the one shipped:
//!
//! 1. this executable is copied to `DIR/xtask` (whole or not at all);
//! 2. its sha256 is printed, and is the step's output `sha256`, which the
//!    cluster jobs check the downloaded artifact against before running it.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::domain::github;
use crate::plumbing::prebuilt;

#[derive(clap::Args)]
pub struct PrebuiltArgs {
    /// The folder to copy the binary into (as `xtask`), for the workflow's upload-artifact step.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: PrebuiltArgs) -> Result<()> {
    let this = std::env::current_exe().context("finding this xtask binary")?;
    let (copy, digest) = prebuilt::copy_with_digest(&this, &args.out)?;
    println!("{digest}  {}", copy.display());
    github::set_output("sha256", &digest)
}
