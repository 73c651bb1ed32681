//! Configuration every service reads from its environment, checked once at
//! start: a bad value stops the process with a message naming the variable,
//! instead of a pod that starts and misbehaves. A service reads its own
//! variables through the same [`Env`].

use std::time::Duration;

use crate::routes::VersionInfo;
use crate::server::ServerLimits;

/// What the binary knows about itself at build time: its default port and
/// `/version`'s defaults.
#[derive(Debug, Clone, Copy)]
pub struct Build {
    /// The service's name (`env!("CARGO_PKG_NAME")` in its crate), which
    /// `/version` reports so a test knows it reached the service it tests.
    pub service: &'static str,
    /// `PORT` when unset (its service.toml's `port`; the chart always sets it).
    pub default_port: u16,
    /// The crate version: `env!("CARGO_PKG_VERSION")` in the service's crate.
    pub version: &'static str,
    /// The commit baked in by the image build, if any (`option_env!`).
    pub git_commit: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// `PORT`: TCP port to listen on, on all interfaces (default: the build's).
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
    /// The service's name (its build's).
    pub service: &'static str,
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

impl ServiceConfig {
    /// Reads the process environment.
    pub fn from_env(build: Build) -> Result<Self, ConfigError> {
        Self::read(&Env(|name: &str| std::env::var(name).ok()), build)
    }

    /// Reads the variables through `env`, so tests need not touch the process
    /// environment and a service can read its own from the same lookup.
    pub fn read(
        env: &Env<impl Fn(&str) -> Option<String>>,
        build: Build,
    ) -> Result<Self, ConfigError> {
        let port = match env.raw("PORT") {
            None => build.default_port,
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
            server: server_limits(env)?,
            service: build.service,
            app_version: env.text("APP_VERSION", build.version),
            git_commit: env.text("GIT_COMMIT", build.git_commit.unwrap_or("unknown")),
        })
    }

    /// What `/version` reports.
    pub fn version_info(&self) -> VersionInfo {
        VersionInfo {
            service: self.service.to_owned(),
            version: self.app_version.clone(),
            git_commit: self.git_commit.clone(),
            env_name: self.env_name.clone(),
            services_namespace: self.services_namespace.clone(),
        }
    }
}

/// The variables, read through a lookup function.
pub struct Env<L>(pub L);

impl<L: Fn(&str) -> Option<String>> Env<L> {
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// A trimmed value, or `default` when unset or blank.
    pub fn text(&self, name: &str, default: &str) -> String {
        self.raw(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    /// A whole number from `min` to `max`, or `default` when unset.
    pub fn number(
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

    pub fn seconds(
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

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: Build = Build {
        service: "kit-test",
        default_port: 9090,
        version: "9.9.9",
        git_commit: Some("baked"),
    };

    fn config(vars: &[(&str, &str)]) -> Result<ServiceConfig, ConfigError> {
        let env = Env(|name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        ServiceConfig::read(&env, BUILD)
    }

    #[test]
    fn the_build_gives_the_port_and_version_defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(
            (config.app_version.as_str(), config.git_commit.as_str()),
            ("9.9.9", "baked")
        );
        let info = config.version_info();
        assert_eq!(
            (info.env_name.as_str(), info.services_namespace.as_str()),
            ("local", "default")
        );
        assert_eq!(info.service, "kit-test");
        let unknown = ServiceConfig::read(
            &Env(|_: &str| None),
            Build {
                git_commit: None,
                ..BUILD
            },
        )
        .unwrap();
        assert_eq!(unknown.git_commit, "unknown");
    }
}
