//! Configuration from the environment, checked once at start.
//!
//! A bad value stops the process with a message naming the variable, instead
//! of a pod that starts and misbehaves.

use std::time::Duration;

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
    /// `SHUTDOWN_DRAIN_SECONDS`: how long to keep serving after SIGTERM while
    /// `/readyz` says 503, so load balancers stop routing here first (default 5).
    pub shutdown_drain: Duration,
    /// `APP_VERSION`: the released version; defaults to the crate version.
    pub app_version: String,
    /// `GIT_COMMIT`: the source commit; defaults to the one baked in at build time.
    pub git_commit: String,
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
        let port = match lookup("PORT") {
            None => 8080,
            Some(raw) => raw.trim().parse::<u16>().map_err(|_| ConfigError {
                variable: "PORT",
                value: raw.clone(),
                reason: "must be a port number from 0 to 65535".into(),
            })?,
        };
        let log_format = match lookup("LOG_FORMAT").as_deref().map(str::trim) {
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
        let shutdown_drain = match lookup("SHUTDOWN_DRAIN_SECONDS") {
            None => Duration::from_secs(5),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| *secs <= 300)
                .map(Duration::from_secs)
                .ok_or_else(|| ConfigError {
                    variable: "SHUTDOWN_DRAIN_SECONDS",
                    value: raw.clone(),
                    reason: "must be a whole number of seconds from 0 to 300".into(),
                })?,
        };
        let non_empty = |name: &str, default: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Ok(Self {
            port,
            env_name: non_empty("ENV_NAME", "local"),
            services_namespace: non_empty("SERVICES_NAMESPACE", "default"),
            log_format,
            shutdown_drain,
            app_version: non_empty("APP_VERSION", env!("CARGO_PKG_VERSION")),
            git_commit: non_empty(
                "GIT_COMMIT",
                option_env!("ITEMS_API_GIT_COMMIT").unwrap_or("unknown"),
            ),
        })
    }
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
    fn defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.shutdown_drain, Duration::from_secs(5));
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
            ("APP_VERSION", "1.2.3"),
            ("GIT_COMMIT", "abc1234"),
        ])
        .unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.env_name, "preprod");
        assert_eq!(config.services_namespace, "preprod");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.shutdown_drain, Duration::ZERO);
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
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
