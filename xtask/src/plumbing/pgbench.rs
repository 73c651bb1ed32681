//! PostgreSQL's own limit for a statement: pgbench, with prepared statements,
//! running the statement a service sends.

use std::path::Path;

use anyhow::{Context, Result};
use reqwest::Url;
use xshell::{Shell, cmd};

/// One pgbench run of `sql` (`:name` placeholders filled from `vars`), with
/// `-M prepared` (parsed once per connection, as a statement cache does) and
/// `clients` connections, pinned to `cpu`. Returns transactions per second.
pub struct PgbenchRun<'a> {
    pub database_url: &'a str,
    pub sql: &'a str,
    pub vars: &'a [(&'a str, &'a str)],
    pub clients: usize,
    pub seconds: u64,
    pub cpu: usize,
}

impl PgbenchRun<'_> {
    pub fn tps(&self, sh: &Shell, scratch: &Path) -> Result<f64> {
        let script = scratch.join("statement.sql");
        std::fs::write(&script, format!("{};\n", self.sql))?;
        let defines: Vec<String> = self
            .vars
            .iter()
            .map(|(k, v)| format!("-D{k}={v}"))
            .collect();
        let (clients, seconds, cpu) = (
            self.clients.to_string(),
            self.seconds.to_string(),
            self.cpu.to_string(),
        );
        let threads = self.clients.min(2).to_string();
        let mut command = cmd!(
            sh,
            "taskset -c {cpu} pgbench -n -M prepared -c {clients} -j {threads} -T {seconds} {defines...} -f {script}"
        )
        .quiet();
        // The URL's parts go through libpq's environment: a password never
        // appears on a command line.
        for (key, value) in libpq_env(self.database_url)? {
            command = command.env(key, value);
        }
        let output = command.read().context("running pgbench")?;
        parse_tps(&output).with_context(|| format!("unexpected pgbench output:\n{output}"))
    }
}

/// `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` from a
/// `postgres://user:password@host:port/db` URL. A host that is a %-escaped
/// path (`%2Frun%2Fpostgresql`) is a Unix socket's directory, for libpq as
/// for tokio-postgres.
fn libpq_env(database_url: &str) -> Result<Vec<(&'static str, String)>> {
    let url = Url::parse(database_url).context("the database URL does not parse")?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .context("the database URL has a %-escape that is not UTF-8")
    };
    let mut env = vec![
        ("PGHOST", decode(url.host_str().unwrap_or("localhost"))?),
        ("PGPORT", url.port().unwrap_or(5432).to_string()),
        ("PGDATABASE", decode(url.path().trim_start_matches('/'))?),
    ];
    if !url.username().is_empty() {
        env.push(("PGUSER", decode(url.username())?));
    }
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD", decode(password)?));
    }
    Ok(env)
}

/// pgbench prints `tps = 53123.456789 (without initial connection time)`.
fn parse_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_from_pgbench_output() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 0.188 ms\n\
                      initial connection time = 12.3 ms\ntps = 53123.456789 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(53123.456789));
        assert_eq!(parse_tps("no figures"), None);
    }

    #[test]
    fn a_socket_directory_host_is_decoded_for_libpq() {
        let env = libpq_env("postgres://postgres@%2Frun%2Fpostgresql:5432/postgres").unwrap();
        assert_eq!(env[0], ("PGHOST", "/run/postgresql".to_owned()));
    }

    #[test]
    fn url_parts_become_libpq_environment() {
        let env = libpq_env("postgres://app:p%40ss@127.0.0.1:5433/items").unwrap();
        assert_eq!(
            env,
            [
                ("PGHOST", "127.0.0.1".to_owned()),
                ("PGPORT", "5433".to_owned()),
                ("PGDATABASE", "items".to_owned()),
                ("PGUSER", "app".to_owned()),
                ("PGPASSWORD", "p@ss".to_owned()),
            ]
        );
    }
}
