//! A real OCI registry on loopback: Debian's `docker-registry` (distribution
//! v2) with its own config and storage in a scratch directory, stopped and
//! removed when dropped.
//!
//! Self-contained (std and anyhow only), so the integration tests can include
//! this file with `#[path]` and share the one launcher.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub struct LocalRegistry {
    child: Child,
    dir: PathBuf,
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
        if !on_path("docker-registry") {
            bail!("docker-registry is not installed: apt-get install docker-registry");
        }
        let dir = std::env::temp_dir().join(format!(
            "xtask-registry-{}-{:016x}",
            std::process::id(),
            random()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        std::fs::write(dir.join("config.yml"), config(&dir, &addr, htpasswd)?)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self { child, dir, addr };
        registry.wait_listening()?;
        Ok(registry)
    }

    fn wait_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            ensure!(
                Instant::now() < deadline,
                "docker-registry did not listen on {} within 10 s; its log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The registry's own log, access log included: every request it served.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
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
        let _ = std::fs::remove_dir_all(&self.dir);
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

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A free loopback port (bound then released; the registry binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A scratch-name suffix: distinct per call without a random-number crate.
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
