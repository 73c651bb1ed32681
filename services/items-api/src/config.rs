//! Configuration from the environment, checked once at start.
//!
//! A bad value stops the process with a message naming the variable, instead
//! of a pod that starts and misbehaves.

use std::time::Duration;

use service_kit::config::{Build, Env, ServiceConfig};
pub use service_kit::config::{ConfigError, LogFormat};

use crate::store::Capacity;

/// What every service reads (service-kit's [`ServiceConfig`]: `PORT`,
/// `ENV_NAME`, timeouts and limits, version) and items-api's own store
/// settings. It derefs to the former, so `config.port` reads as it always did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `PORT`, `ENV_NAME`, `SERVICES_NAMESPACE`, `LOG_FORMAT`,
    /// `REQUEST_TIMEOUT_SECONDS`, `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_SECONDS`,
    /// `SHUTDOWN_DRAIN_SECONDS`, `APP_VERSION`, `GIT_COMMIT`.
    pub service: ServiceConfig,
    /// `MEMORY_STORE_MAX_ITEMS`, `MEMORY_STORE_MAX_BYTES`: the in-memory
    /// store's capacity (unused with `DATABASE_URL`).
    pub memory_store: Capacity,
    /// `DATABASE_URL` and its pool settings: PostgreSQL when set, else the
    /// in-memory store.
    pub database: Option<DatabaseConfig>,
}

impl std::ops::Deref for Config {
    type Target = ServiceConfig;

    fn deref(&self) -> &ServiceConfig {
        &self.service
    }
}

/// The default port, and `/version`'s defaults: this crate's version, and
/// the commit the image build bakes in.
const BUILD: Build = Build {
    service: env!("CARGO_PKG_NAME"),
    default_port: 8080,
    version: env!("CARGO_PKG_VERSION"),
    git_commit: option_env!("ITEMS_API_GIT_COMMIT"),
};

/// Where the PostgreSQL store connects. The URL holds a password, so Debug
/// never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    url: String,
    /// `DATABASE_POOL_SIZE`: most connections this replica opens (default 10).
    pub pool_size: usize,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: longest a statement may run (default 5000).
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    /// The parsed URL (checked when the configuration was read).
    pub fn postgres_config(&self) -> tokio_postgres::Config {
        self.url.parse().expect("DATABASE_URL was checked at start")
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pg = self.postgres_config();
        f.debug_struct("DatabaseConfig")
            .field("hosts", &pg.get_hosts())
            .field("dbname", &pg.get_dbname())
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        Ok(Self {
            service: ServiceConfig::read(&env, BUILD)?,
            memory_store: memory_capacity(&env)?,
            database: database(&env)?,
        })
    }
}

fn memory_capacity(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<Capacity, ConfigError> {
    let defaults = Capacity::default();
    Ok(Capacity {
        items: env.number(
            "MEMORY_STORE_MAX_ITEMS",
            defaults.items as u64,
            1,
            100_000_000,
        )? as usize,
        bytes: env.number("MEMORY_STORE_MAX_BYTES", defaults.bytes as u64, 1, 1 << 40)? as usize,
    })
}

/// `DATABASE_URL` and its pool settings; `None` (the in-memory store) when unset.
fn database(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<Option<DatabaseConfig>, ConfigError> {
    let url = env.text("DATABASE_URL", "");
    if url.is_empty() {
        return Ok(None);
    }
    if let Err(error) = url.parse::<tokio_postgres::Config>() {
        return Err(ConfigError {
            variable: "DATABASE_URL",
            // Never echo a URL that may hold a password.
            value: "<hidden>".into(),
            reason: format!(
                "must be a PostgreSQL URL (postgres://user:password@host:5432/db): {error}"
            ),
        });
    }
    Ok(Some(DatabaseConfig {
        url,
        pool_size: env.number("DATABASE_POOL_SIZE", 10, 1, 1000)? as usize,
        statement_timeout: Duration::from_millis(env.number(
            "DATABASE_STATEMENT_TIMEOUT_MS",
            5000,
            1,
            600_000,
        )?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerLimits;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn database_url_selects_postgres_and_is_never_echoed() {
        assert_eq!(config(&[]).unwrap().database, None);
        let db = config(&[
            ("DATABASE_URL", "postgres://app:s3cret@db:5432/items"),
            ("DATABASE_POOL_SIZE", "4"),
        ])
        .unwrap()
        .database
        .unwrap();
        assert_eq!(
            (db.pool_size, db.statement_timeout),
            (4, Duration::from_secs(5))
        );
        assert!(!format!("{db:?}").contains("s3cret"), "{db:?}");
        let error =
            config(&[("DATABASE_URL", "postgres://app:s3cret@db:notaport/items")]).unwrap_err();
        assert_eq!(error.variable, "DATABASE_URL");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = config(&[
            ("DATABASE_URL", "postgres://db/items"),
            ("DATABASE_POOL_SIZE", "0"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "DATABASE_POOL_SIZE");
    }

    #[test]
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.request_timeout, crate::REQUEST_TIMEOUT);
        assert_eq!(config.server, ServerLimits::default());
        assert_eq!(config.server.shutdown_drain, Duration::from_secs(5));
        assert_eq!(config.memory_store, Capacity::default());
        assert_eq!(config.env_name, "local");
        assert_eq!(config.app_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn reads_every_variable() {
        let config = config(&[
            ("PORT", "9000"),
            ("ENV_NAME", "preprod"),
            ("SERVICES_NAMESPACE", "preprod"),
            ("LOG_FORMAT", "text"),
            ("SHUTDOWN_DRAIN_SECONDS", "0"),
            ("MAX_CONNECTIONS", "10"),
            ("REQUEST_TIMEOUT_SECONDS", "12"),
            ("HEADER_READ_TIMEOUT_SECONDS", "3"),
            ("MEMORY_STORE_MAX_ITEMS", "7"),
            ("MEMORY_STORE_MAX_BYTES", "4096"),
            ("APP_VERSION", "1.2.3"),
            ("GIT_COMMIT", "abc1234"),
        ])
        .unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.env_name, "preprod");
        assert_eq!(config.services_namespace, "preprod");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.request_timeout, Duration::from_secs(12));
        assert_eq!(
            config.server,
            ServerLimits {
                max_connections: 10,
                header_read_timeout: Duration::from_secs(3),
                shutdown_drain: Duration::ZERO,
            }
        );
        assert_eq!(
            config.memory_store,
            Capacity {
                items: 7,
                bytes: 4096
            }
        );
        assert_eq!(
            (config.app_version.as_str(), config.git_commit.as_str()),
            ("1.2.3", "abc1234")
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("LOG_FORMAT", "xml"),
            ("SHUTDOWN_DRAIN_SECONDS", "-1"),
            ("SHUTDOWN_DRAIN_SECONDS", "301"),
            ("MAX_CONNECTIONS", "0"),
            ("REQUEST_TIMEOUT_SECONDS", "0"),
            ("HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("MEMORY_STORE_MAX_BYTES", "lots"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
