//! `cargo xtask`: every pipeline action of the service-demo project.
//!
//! This file only parses flags and dispatches; each command is a module with a
//! `run` on its own flags struct (the rust-analyzer xtask pattern).

mod bench;
mod ci;
mod parts;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Pipeline actions for service-demo: the same commands run on a laptop and in GitHub Actions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint, dependency checks (licences, bans, sources, RustSec advisories) and tests, with a summary table.
    Ci(ci::CiArgs),
    /// Load-test the release binary of items-api with wrk and print throughput, latency and memory.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ci(args) => ci::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
