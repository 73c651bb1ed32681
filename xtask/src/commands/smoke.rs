//! `cargo xtask smoke`: the smoke suite against a deployed service
//! (`--service NAME`; a workspace of one needs no flag), reporting each
//! check. Every service is probed where its declaration says (`health-path`,
//! `ready-path`) and asked for `/version`; items-api also gets a round trip
//! (`domain/service_suite.rs`).

use anyhow::Result;

use crate::domain::gitops::GitopsOptions;
use crate::domain::service_suite::{Suite, smoke_checks};
use crate::domain::service_url::UrlOptions;
use crate::domain::services::{self, ServiceSelection};

#[derive(clap::Args)]
pub struct SmokeArgs {
    /// Where the service answers: --url, or --env/--pr through --ingress-url.
    #[command(flatten)]
    target: UrlOptions,
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: SmokeArgs) -> Result<()> {
    let service = args.services.one(&services::load_current()?)?;
    let mut suite = Suite::new(&args.target.resolve(&service, &args.gitops)?)?;
    smoke_checks(&mut suite, &service);
    suite.finish(&format!("{} smoke", service.name))
}
