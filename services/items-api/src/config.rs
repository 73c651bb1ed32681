//! Configuration from the environment, checked once at start.
//!
//! A bad value stops the process with a message naming the variable, instead
//! of a pod that starts and misbehaves.

use std::time::Duration;

use crate::server::ServerLimits;
use crate::store::Capacity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `PORT`: TCP port to listen on, on all interfaces (default 8080).
    pub port: u16,
    /// `ENV_NAME`: which environment this is (`dev`, `preprod`, `prod`, `pr-7`…).
    pub env_name: String,
    /// `SERVICES_NAMESPACE`: the namespace of the services this one would call.
    pub services_namespace: String,
    /// `LOG_FORMAT`: `json` (default, for log collectors) or `text`.
    pub log_format: LogFormat,
    /// `REQUEST_TIMEOUT_SECONDS`: a request unanswered this long is answered
    /// 408 (default 20). Drain plus this must stay under the pod's grace period.
    pub request_timeout: Duration,
    /// `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_SECONDS`, `SHUTDOWN_DRAIN_SECONDS`.
    pub server: ServerLimits,
    /// `MEMORY_STORE_MAX_ITEMS`, `MEMORY_STORE_MAX_BYTES`: the in-memory
    /// store's capacity (unused with `DATABASE_URL`).
    pub memory_store: Capacity,
    /// `APP_VERSION`: the released version; defaults to the crate version.
    pub app_version: String,
    /// `GIT_COMMIT`: the source commit; defaults to the one baked in at build time.
    pub git_commit: String,
    /// `DATABASE_URL` and its pool settings: PostgreSQL when set, else the
    /// in-memory store.
    pub database: Option<DatabaseConfig>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
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
        let port = match env.raw("PORT") {
            None => 8080,
            Some(raw) => raw.trim().parse::<u16>().map_err(|_| ConfigError {
                variable: "PORT",
                value: raw.clone(),
                reason: "must be a port number from 0 to 65535".into(),
            })?,
        };
        let log_format = match env.raw("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT",
                    value: other.into(),
                    reason: "must be `json` or `text`".into(),
                });
            }
        };
        Ok(Self {
            port,
            env_name: env.text("ENV_NAME", "local"),
            services_namespace: env.text("SERVICES_NAMESPACE", "default"),
            log_format,
            request_timeout: env.seconds(
                "REQUEST_TIMEOUT_SECONDS",
                crate::REQUEST_TIMEOUT,
                1,
                3600,
            )?,
            server: server_limits(&env)?,
            memory_store: memory_capacity(&env)?,
            app_version: env.text("APP_VERSION", env!("CARGO_PKG_VERSION")),
            git_commit: env.text(
                "GIT_COMMIT",
                option_env!("ITEMS_API_GIT_COMMIT").unwrap_or("unknown"),
            ),
            database: database(&env)?,
        })
    }
}

/// The variables, read through a lookup function.
struct Env<L>(L);

impl<L: Fn(&str) -> Option<String>> Env<L> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// A trimmed value, or `default` when unset or blank.
    fn text(&self, name: &str, default: &str) -> String {
        self.raw(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    /// A whole number from `min` to `max`, or `default` when unset.
    fn number(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ConfigError {
                    variable: name,
                    value: raw.clone(),
                    reason: format!("must be a whole number from {min} to {max}"),
                }),
        }
    }

    fn seconds(
        &self,
        name: &'static str,
        default: Duration,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default.as_secs(), min, max)
            .map(Duration::from_secs)
    }
}

fn server_limits(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<ServerLimits, ConfigError> {
    let defaults = ServerLimits::default();
    Ok(ServerLimits {
        max_connections: env.number(
            "MAX_CONNECTIONS",
            defaults.max_connections as u64,
            1,
            100_000,
        )? as usize,
        header_read_timeout: env.seconds(
            "HEADER_READ_TIMEOUT_SECONDS",
            defaults.header_read_timeout,
            1,
            300,
        )?,
        shutdown_drain: env.seconds("SHUTDOWN_DRAIN_SECONDS", defaults.shutdown_drain, 0, 300)?,
    })
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
