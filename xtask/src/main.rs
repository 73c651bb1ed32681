//! `cargo xtask`: every pipeline action of the service-demo project.
//!
//! This file only parses flags and dispatches; each command is a module of
//! `xtask::commands` with a `run` on its own flags struct (the rust-analyzer
//! xtask pattern), written over the library's layers (see `lib.rs`).

use clap::{Parser, Subcommand};
use xtask::commands::*;

/// What `--help` ends with: the commands that write the GitOps branch, and those that only read it.
#[cfg(feature = "full")]
const AFTER_HELP: &str = "promote, rollback and preview commit to the GitOps branch on the remote and push, retrying \
                          when others push first; they never touch your working tree, and --dry-run prints the diff \
                          instead. status and trace only read the GitOps branch.";
/// The same for the cluster jobs' build, which has neither rollback nor status and trace.
#[cfg(not(feature = "full"))]
const AFTER_HELP: &str = "promote and preview commit to the GitOps branch on the remote and push, retrying when \
                          others push first; they never touch your working tree, and --dry-run prints the diff \
                          instead.";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Pipeline actions for service-demo: the same commands run on a laptop and in GitHub Actions",
    after_help = AFTER_HELP
)]
// The cluster jobs' build (`--no-default-features`: Cargo.toml's `full` feature) says what it is.
#[cfg_attr(
    not(feature = "full"),
    command(
        before_help = "The cluster jobs' build of xtask (cargo xtask prebuilt, --no-default-features): only the \
                       commands they run; the full xtask (cargo xtask in a checkout) has validate, ci, setup and more."
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "full")]
    /// The whole pipeline end to end on throwaway state: PR, preview, preprod, gate, release, rollback, break it.
    Demo(demo::DemoArgs),
    /// Is this fork ready for the workflows? Variables, secrets, cluster runner, Argo CD, GHCR, branch protection.
    Doctor(doctor::DoctorArgs),
    #[cfg(feature = "full")]
    /// The GitHub side of your fork in one step: environments, keys, secrets, rulesets (--profile solo|team).
    Setup(setup::SetupArgs),
    #[cfg(feature = "full")]
    /// Point the Argo CD objects, image repository, chart and Terraform at your fork: --github <owner>/<name>.
    Fork(fork::ForkArgs),
    #[cfg(feature = "full")]
    /// Lint, dependency checks (licences, bans, sources, RustSec advisories) and tests, with a summary table.
    Ci(ci::CiArgs),
    #[cfg(feature = "full")]
    /// The cluster side in one command: `cluster up|down|status`, and `cluster runner` (one fresh container per job).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Argo CD over its REST API: `argocd wait` (until a GitOps commit runs, healthy), `argocd sync`.
    #[command(subcommand)]
    Argocd(argocd::ArgocdCommand),
    #[cfg(feature = "full")]
    /// Benchmarks that print numbers: `bench http` (items-api under wrk), `bench gitops` (promotion timings).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Images without a daemon: `image build`, `image retag`, `image inspect`.
    #[command(subcommand)]
    Image(image::ImageCommand),
    #[cfg(feature = "full")]
    /// Test results bound to a commit and image digest: `gate record`, `gate check`.
    #[command(subcommand)]
    Gate(gate::GateCommand),
    /// Smoke suite against a deployed service (health, readiness, version, CRUD round trip).
    Smoke(smoke::SmokeArgs),
    /// The fuller preprod suite; records the preprod-tests gate for the commit and digest.
    PreprodTest(preprod_test::PreprodTestArgs),
    /// Release main's tested image: check the gate, retag main-<sha> as v<X.Y.Z>, promote prod and dev.
    Release(release::ReleaseArgs),
    /// Move an environment to an image (refuses older builds unless --allow-rollback).
    Promote(promote::PromoteArgs),
    #[cfg(feature = "full")]
    /// Return an environment to the image it ran before (or --to a tag it ran), as a new commit.
    Rollback(rollback::RollbackArgs),
    /// Preview environments of pull requests.
    #[command(subcommand)]
    Preview(preview::PreviewCommand),
    /// Check an image's (or --binary's) embedded dependency list against RustSec, offline; --sbom writes CycloneDX.
    Scan(scan::ScanArgs),
    #[cfg(feature = "full")]
    /// The upstream contracts (Argo CD's API, the CRDs): `schemas refresh` installs them, checked by sha256.
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
    #[cfg(feature = "full")]
    /// Each environment's tag, digest, source commit, and the commit that promoted it.
    Status(status::StatusArgs),
    #[cfg(feature = "full")]
    /// Every environment and tag carrying the same bits as a tag or commit.
    Trace(trace::TraceArgs),
    #[cfg(feature = "full")]
    /// Offline validation of the chart, Argo CD objects, Terraform and workflows.
    Validate(validate::ValidateArgs),
    #[cfg(feature = "full")]
    /// The signed attestations on an image (cosign's sha256-<hex>.att), checked against --public-key.
    Verify(verify::VerifyArgs),
    #[cfg(feature = "full")]
    /// Which services a commit range affects, and why (--json for a CI matrix).
    Affected(affected::AffectedArgs),
    #[cfg(feature = "full")]
    /// Scaffold services/NAME (crate, service.toml) and add it to the workspace; --dry-run shows the files.
    NewService(new_service::NewServiceArgs),
    /// Copy this binary to --out DIR with its sha256: the xtask a workflow's cluster jobs run (built once per run).
    Prebuilt(prebuilt::PrebuiltArgs),
    #[cfg(feature = "full")]
    /// Format-preserving YAML edits.
    #[command(subcommand)]
    Values(values::ValuesCommand),
}

fn main() -> std::process::ExitCode {
    // The registry and GitHub clients use rustls, which needs one process-wide
    // crypto provider; ring avoids aws-lc's slow C build.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Installed as cargo's subcommand `cargo-xtask-prebuilt` (the cluster jobs), cargo passes its name first.
    let args = xtask::plumbing::prebuilt::cli_args(std::env::args_os());
    match run(Cli::parse_from(args).command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", report(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error as anyhow's `Debug` lays it out (`Error: …`, then `Caused by:`), but never with a
/// backtrace: a refusal is its message, whatever RUST_BACKTRACE says.
fn report(error: &anyhow::Error) -> String {
    let mut text = format!("Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    match causes.as_slice() {
        [] => {}
        [one] => text.push_str(&format!("\n\nCaused by:\n    {one}")),
        many => {
            text.push_str("\n\nCaused by:");
            for (i, cause) in many.iter().enumerate() {
                text.push_str(&format!("\n    {i}: {cause}"));
            }
        }
    }
    text
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "full")]
        Command::Ci(args) => ci::run(args),
        #[cfg(feature = "full")]
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        #[cfg(feature = "full")]
        Command::Fork(args) => fork::run(args),
        #[cfg(feature = "full")]
        Command::Setup(args) => setup::run(args),
        Command::Argocd(command) => argocd::run(command),
        #[cfg(feature = "full")]
        Command::Cluster(command) => cluster::run(command),
        #[cfg(feature = "full")]
        Command::Bench(command) => bench::run(command),
        Command::Image(command) => image::run(command),
        #[cfg(feature = "full")]
        Command::Gate(command) => gate::run(command),
        Command::Smoke(args) => smoke::run(args),
        Command::PreprodTest(args) => preprod_test::run(args),
        Command::Release(args) => release::run(args),
        Command::Promote(args) => promote::run(args),
        #[cfg(feature = "full")]
        Command::Rollback(args) => rollback::run(args),
        Command::Preview(command) => preview::run(command),
        Command::Scan(args) => scan::run(args),
        #[cfg(feature = "full")]
        Command::Schemas(command) => schemas::run(command),
        #[cfg(feature = "full")]
        Command::Status(args) => status::run(args),
        #[cfg(feature = "full")]
        Command::Trace(args) => trace::run(args),
        #[cfg(feature = "full")]
        Command::Validate(args) => validate::run(args),
        #[cfg(feature = "full")]
        Command::Values(command) => values::run(command),
        #[cfg(feature = "full")]
        Command::Verify(args) => verify::run(args),
        #[cfg(feature = "full")]
        Command::Affected(args) => affected::run(args),
        #[cfg(feature = "full")]
        Command::NewService(args) => new_service::run(args),
        Command::Prebuilt(args) => prebuilt::run(args),
    }
}

#[cfg(test)]
mod tests {
    /// What a refused command prints: anyhow's layout, causes and all, and no backtrace even
    /// when one was captured (RUST_BACKTRACE=1 in the environment).
    #[test]
    fn an_error_is_reported_without_a_backtrace() {
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(
            super::report(&error),
            "Error: outer\n\nCaused by:\n    inner"
        );
        let error = anyhow::anyhow!("a").context("b").context("c");
        assert_eq!(
            super::report(&error),
            "Error: c\n\nCaused by:\n    0: b\n    1: a"
        );
        assert!(!super::report(&error).contains("backtrace"));
    }

    /// clap's own consistency checks over every subcommand (duplicate names, bad defaults).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
