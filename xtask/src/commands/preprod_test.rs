//! `cargo xtask preprod-test`: the fuller suite against the service in
//! preprod (the smoke checks, `/version` naming the commit under test, every
//! service's metrics, items-api's API), recorded as the `preprod-tests` gate
//! bound to the commit and the tested digest.

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::json;

use crate::domain::attestation::{PreprodPredicate, Results, Signer};
use crate::domain::gate_store::{
    self, Conclusion, Gate, GateStore, PREPROD_GATE, SIGNED_IN_ACTIONS,
};
use crate::domain::gitops::GitopsOptions;
use crate::domain::service_suite::{ITEMS_API, Suite, smoke_checks};
use crate::domain::service_url::UrlOptions;
use crate::domain::services::{self, RepositoryOptions, Service, ServiceSelection};
use crate::domain::tags;

#[derive(clap::Args)]
pub struct PreprodTestArgs {
    /// Where the service answers in preprod: --url, or --env preprod through --ingress-url.
    #[command(flatten)]
    target: UrlOptions,
    /// The commit preprod should be running; /version must report it.
    #[arg(long)]
    sha: String,
    /// The image digest preprod runs (recorded with the gate).
    #[arg(long)]
    digest: String,
    /// Where the service's image repository is (--registry or --repository): with
    /// GATE_SIGNING_KEY set, the signed result is stored there beside the image (cosign's
    /// sha256-<hex>.att tag).
    #[command(flatten)]
    repositories: RepositoryOptions,
    #[command(flatten)]
    services: ServiceSelection,
    #[command(flatten)]
    gitops: GitopsOptions,
}

pub fn run(args: PreprodTestArgs) -> Result<()> {
    tags::validate_digest(&args.digest)?;
    let sha = gate_store::full_sha(&args.gitops, &args.sha)?;
    let all = services::load_current()?;
    let service = args.services.one(&all)?;
    let store = GateStore::local(&args.gitops)?;
    // Opened before the suite runs, so a missing repository fails first.
    let repository = args.repositories.for_service(&service, &all)?;
    let signer = Signer::from_env(repository.as_deref())?;
    if store.is_none() && signer.is_none() {
        bail!("{SIGNED_IN_ACTIONS}");
    }
    let mut suite = Suite::new(&args.target.resolve(&service, &args.gitops)?)?;
    let name = service.name.clone();
    suite.check("/version reports the service and the commit under test", |c| {
        let version = c.json("GET", "/version", None, StatusCode::OK)?;
        let running = version["gitCommit"].as_str().unwrap_or_default();
        if running != sha {
            bail!("preprod runs commit {running:?}, not {sha}: wait for the rollout, or test the right commit");
        }
        // Services built from one commit all report it: the URL must be this one's.
        let answered = version["service"].as_str().unwrap_or_default();
        if answered != name {
            bail!("{answered:?} answered, not {name}: the URL must be {name}'s preprod address");
        }
        Ok(())
    });
    smoke_checks(&mut suite, &service);
    preprod_checks(&mut suite, &service);
    let conclusion = if suite.failed == 0 {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    if let Some(store) = &store {
        let gate = Gate {
            conclusion,
            digest: args.digest.clone(),
        };
        store.record(&sha, PREPROD_GATE, &gate)?;
        println!(
            "recorded gate {PREPROD_GATE} = {conclusion:?} for {sha} (image {})",
            args.digest
        );
    }
    if let Some(signer) = &signer {
        let results = Results {
            passed: suite.passed,
            failed: suite.failed,
        };
        signer.attest_preprod(
            &args.digest,
            &PreprodPredicate::now(&sha, conclusion, results),
        )?;
    }
    suite.finish("preprod tests")
}

/// The fuller suite preprod runs before a release can be cut: every
/// service's metrics, then items-api's API.
fn preprod_checks(suite: &mut Suite, service: &Service) {
    suite.check("GET /metrics counts requests", |c| {
        let text = c.text("GET", "/metrics", StatusCode::OK)?;
        if !text.contains("http_requests_total") {
            bail!("no http_requests_total in /metrics");
        }
        Ok(())
    });
    if service.name == ITEMS_API {
        items_preprod_checks(suite);
    }
}

// long: a list of independent checks, each a few lines; read top to bottom.
fn items_preprod_checks(suite: &mut Suite) {
    suite.check("an invalid item is a 422 naming the field", |c| {
        let problem = c.json(
            "POST",
            "/api/v1/items",
            Some(json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        )?;
        if !problem.to_string().contains("name") {
            bail!("the problem does not name the field: {problem}");
        }
        Ok(())
    });
    suite.check("an unknown route is a JSON 404", |c| {
        c.json("GET", "/no-such-route", None, StatusCode::NOT_FOUND)
            .map(drop)
    });
    suite.check("update bumps the version", |c| {
        let created = c.json(
            "POST",
            "/api/v1/items",
            Some(json!({"name": "preprod"})),
            StatusCode::CREATED,
        )?;
        let id = created["id"].as_str().context("no id")?;
        let updated = c.json(
            "PUT",
            &format!("/api/v1/items/{id}"),
            Some(json!({"name": "preprod 2"})),
            StatusCode::OK,
        )?;
        let result = if updated["version"].as_u64() > created["version"].as_u64() {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "version did not increase: {created} → {updated}"
            ))
        };
        c.expect(
            "DELETE",
            &format!("/api/v1/items/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )?;
        result
    });
    suite.check("list pages with limit", |c| {
        let page = c.json("GET", "/api/v1/items?limit=1", None, StatusCode::OK)?;
        if page.as_array().is_none_or(|items| items.len() > 1) {
            bail!("limit=1 returned {page}");
        }
        Ok(())
    });
}
