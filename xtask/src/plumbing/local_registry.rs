//! A real OCI registry on loopback: Debian's `docker-registry` (distribution
//! v2) with its own config and storage in a scratch directory, stopped and
//! removed when dropped.
//!

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

pub struct LocalRegistry {
    child: Child,
    /// Its config, storage and log; removed when dropped.
    dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl LocalRegistry {
    /// A registry without authentication.
    pub fn start() -> Result<Self> {
        Self::start_with_users("")
    }

    /// With `htpasswd` lines (bcrypt), basic auth is required; empty: none.
    pub fn start_with_users(htpasswd: &str) -> Result<Self> {
        if crate::plumbing::process::which("docker-registry").is_none() {
            bail!("docker-registry is not installed: apt-get install docker-registry");
        }
        let scratch = crate::plumbing::fs::temp_dir("xtask-registry-")?;
        let dir = scratch.path();
        let addr = format!("127.0.0.1:{}", free_port()?);
        std::fs::write(dir.join("config.yml"), config(dir, &addr, htpasswd)?)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self {
            child,
            dir: scratch,
            addr,
        };
        registry.wait_listening()?;
        Ok(registry)
    }

    fn wait_listening(&self) -> Result<()> {
        ensure!(
            crate::plumbing::process::wait_listening(&self.addr, Duration::from_secs(10)),
            "docker-registry did not listen on {} within 10 s; its log:\n{}",
            self.addr,
            self.log()
        );
        Ok(())
    }

    /// The registry's own log, access log included: every request it served.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests in the access log (`METHOD /path`), in order.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            // Access log lines look like `… "PUT /v2/service-demo/manifests/v1 HTTP/1.1" 201 …`.
            .filter_map(|line| {
                let rest = &line[line.find('"')? + 1..];
                let request = &rest[..rest.find(" HTTP/")?];
                request
                    .starts_with(['G', 'H', 'P', 'D'])
                    .then(|| request.to_owned())
            })
            .collect()
    }

    /// Stops the registry now (the scratch directory stays until drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(dir: &Path, addr: &str, htpasswd: &str) -> Result<String> {
    let auth = if htpasswd.is_empty() {
        String::new()
    } else {
        std::fs::write(dir.join("htpasswd"), htpasswd)?;
        format!(
            "auth: {{htpasswd: {{realm: local, path: {}}}}}\n",
            dir.join("htpasswd").display()
        )
    };
    Ok(format!(
        "version: 0.1\nlog: {{level: info, accesslog: {{disabled: false}}}}\n\
         storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
         http: {{addr: {addr}}}\n{auth}",
        dir.join("data").display()
    ))
}

/// A free loopback port (bound then released; the registry binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
