//! items-api entry point: configuration, logging, then serve.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use items_api::config::Config;
use items_api::store::{ItemStore, MemoryStore, PostgresStore};
use items_api::{AppState, healthcheck, logging, shutdown};

/// mimalloc instead of the libc allocator: the image's binary is static musl,
/// whose allocator maps and unmaps memory about 7 times per 1000-item list and
/// costs 2.5× the CPU there, about 10% on the small requests (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
items-api: the Items CRUD HTTP service

USAGE:
    items-api               serve HTTP on 0.0.0.0:$PORT
    items-api healthcheck   probe http://127.0.0.1:$PORT/healthz; exit 0 when it answers 200
    items-api migrate       apply the embedded database migrations to $DATABASE_URL (idempotent)
    items-api --version     print the version

ENVIRONMENT:
    PORT                    port to listen on (default 8080)
    ENV_NAME                environment name reported by /version (default local)
    SERVICES_NAMESPACE      namespace of the services this one talks to (default default)
    LOG_FORMAT              json (default) or text
    SHUTDOWN_DRAIN_SECONDS  seconds to keep serving after SIGTERM with /readyz at 503 (default 5)
    REQUEST_TIMEOUT_SECONDS a request unanswered this long is a 408 (default 20)
    MAX_CONNECTIONS         connections served at once; more are answered 503 (default 256)
    HEADER_READ_TIMEOUT_SECONDS  longest wait for a request's headers or an idle connection's next request (default 10)
    MEMORY_STORE_MAX_ITEMS  most items the in-memory store holds; more are a 507 (default 50000)
    MEMORY_STORE_MAX_BYTES  most bytes the in-memory store's items take (default 16777216)
    APP_VERSION, GIT_COMMIT override the version and commit reported by /version
    DATABASE_URL            PostgreSQL (postgres://user:password@host:5432/db); unset: in-memory store
    DATABASE_POOL_SIZE      most connections per replica (default 10)
    DATABASE_STATEMENT_TIMEOUT_MS  longest a statement may run (default 5000)
    RUST_LOG                log filter (default info)
";

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("items-api: {err}");
            return ExitCode::from(2);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve(config),
        ["healthcheck"] => match healthcheck::probe(config.port, Duration::from_secs(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("items-api healthcheck: {why}");
                ExitCode::FAILURE
            }
        },
        ["migrate"] => migrate(&config),
        ["--version" | "-V"] => {
            println!("items-api {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("items-api: unknown arguments {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    logging::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(%addr, error = %err, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().map_or(addr, |a| a);
        tracing::info!(
            addr = %local,
            port = local.port(),
            env_name = %config.env_name,
            version = %config.app_version,
            "listening"
        );
        let store: Arc<dyn ItemStore> = match &config.database {
            Some(database) => match PostgresStore::new(database) {
                Ok(store) => Arc::new(store),
                Err(err) => {
                    tracing::error!(error = %err, "cannot set up the database pool");
                    return ExitCode::FAILURE;
                }
            },
            None => Arc::new(MemoryStore::with_capacity(config.memory_store)),
        };
        let state = AppState::new(&config, store);
        match items_api::serve(
            listener,
            state,
            config.server,
            shutdown::termination_signal(),
        )
        .await
        {
            Ok(()) => {
                tracing::info!("stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = %err, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// `items-api migrate`: run once per release (a Kubernetes Job hook), not at
/// every start of every replica.
fn migrate(config: &Config) -> ExitCode {
    let Some(database) = &config.database else {
        eprintln!("items-api migrate: DATABASE_URL is not set: nothing to migrate");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("items-api migrate: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(items_api::store::migrate(database)) {
        Ok(applied) if applied.is_empty() => {
            println!("items-api migrate: the database is up to date");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            println!("items-api migrate: applied {}", applied.join(", "));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("items-api migrate: {err}");
            ExitCode::FAILURE
        }
    }
}
