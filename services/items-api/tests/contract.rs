//! The contract is what the server does: schemathesis, a property-based,
//! schema-driven fuzzer, reads the served `/openapi.json`, generates requests
//! from it (boundary values, random valid and invalid data, chains of calls
//! that follow the document's links) and sends them to the real server on
//! each store. It must find nothing: no 5xx, no status, content type, header
//! or body the document does not declare, no request the document calls valid
//! rejected (tests/schemathesis.toml says which answers to a valid
//! request are about state, and why), no request it calls invalid accepted.
//!
//! schemathesis is a Python tool, pinned to [`PIN`]. CI installs it in
//! `$HOME/.cache/service-demo/venv` and puts that venv's `bin` first on PATH;
//! without it these tests fail with the install command (or, with
//! `SERVICE_DEMO_ALLOW_SKIP=1`, are skipped and say so).

mod common {
    pub mod postgres;
}

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::PgServer;
use items_api::AppState;
use items_api::config::Config;
use items_api::store::{ItemStore, MemoryStore, PostgresStore, migrate};

/// The schemathesis release these tests are written against: its version, read from `xtask/tools.txt` (the one place a tool is pinned).
static PIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../../../xtask/tools.txt")
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("pip") && words.next() == Some("schemathesis"))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
        .expect("xtask/tools.txt pins schemathesis")
});
/// Test cases per operation and phase: bounded, so a run takes seconds.
const MAX_EXAMPLES: &str = "30";
/// A fixed seed: CI runs the same cases every time, so a failure reproduces.
const SEED: &str = "1";
/// A run that takes longer than this is stopped and fails.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_keeps_the_contract() {
    let Some(schemathesis) = schemathesis("contract::the_memory_store_keeps_the_contract") else {
        return;
    };
    fuzz(&schemathesis, Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_keeps_the_contract() {
    let test = "contract::the_postgres_store_keeps_the_contract";
    let Some(schemathesis) = schemathesis(test) else {
        return;
    };
    let Some(server) = PgServer::start(test) else {
        return;
    };
    let url = server.url();
    let database = Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))
        .unwrap()
        .database
        .unwrap();
    migrate(&database).await.unwrap();
    fuzz(
        &schemathesis,
        Arc::new(PostgresStore::new(&database).unwrap()),
    )
    .await;
}

/// The `schemathesis` on PATH, if it is the pinned release; else the test
/// fails (or is skipped) with the command that installs it.
fn schemathesis(test: &str) -> Option<String> {
    let install = format!(
        "python3 -m venv ~/.cache/service-demo/venv && ~/.cache/service-demo/venv/bin/pip install \
         schemathesis=={}, then put ~/.cache/service-demo/venv/bin first on PATH (bash .ci/run does both)",
        *PIN
    );
    let version = std::process::Command::new("schemathesis")
        .arg("--version")
        .output();
    let reason = match version {
        Err(_) => format!("schemathesis is not on PATH: {install}"),
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .trim_end()
                .ends_with(PIN.as_str()) =>
        {
            return Some("schemathesis".to_owned());
        }
        Ok(out) => format!(
            "schemathesis on PATH is {:?}, these tests pin {}: {install}",
            String::from_utf8_lossy(&out.stdout).trim(),
            *PIN
        ),
    };
    test_skip::skip_or_fail(test, &reason);
    None
}

/// Serves the app on `store` with the production `serve`, runs schemathesis
/// against it, and fails with schemathesis's report if it found anything.
async fn fuzz(schemathesis: &str, store: Arc<dyn ItemStore>) {
    let config = Config::from_lookup(|_| None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serve = items_api::serve(
        listener,
        AppState::new(&config, store),
        config.server,
        std::future::pending(),
    );
    tokio::spawn(async move { serve.await.unwrap() });

    // schemathesis may write caches where it runs: a scratch directory.
    let scratch = std::env::temp_dir().join(format!(
        "items-api-contract-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let settings = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let started = Instant::now();
    let run = tokio::process::Command::new(schemathesis)
        .arg("--config-file")
        .arg(settings)
        .args(["--no-color", "run", &format!("{base}/openapi.json")])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1", "--generation-database", "none"])
        .current_dir(&scratch)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {RUN_LIMIT:?}"))
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&scratch);
    let report = String::from_utf8_lossy(&output.stdout);
    let summary = report.lines().rev().find(|l| l.contains("generated"));
    println!(
        "schemathesis {}: {} in {:.1?}",
        *PIN,
        summary.map_or("(no summary)", str::trim),
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "schemathesis found requests where the server and its OpenAPI document disagree:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
