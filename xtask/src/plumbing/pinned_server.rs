//! An HTTP server binary under test, started pinned to one CPU and stopped
//! when dropped: the service, or a reference implementation beside it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::plumbing::retry::wait_until;

/// How to start a server: the binary, its CPU, its port, its environment.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub binary: PathBuf,
    pub cpu: usize,
    pub port: u16,
    /// Besides `PORT`, which every server is given.
    pub env: Vec<(String, String)>,
}

pub struct PinnedServer {
    child: Child,
    pub base_url: String,
}

impl PinnedServer {
    /// Starts the server under `taskset` (which execs it: same pid) and waits
    /// for its first 200 on `/healthz`.
    pub fn start(spec: &ServerSpec) -> Result<Self> {
        let child = Command::new("taskset")
            .arg("-c")
            .arg(spec.cpu.to_string())
            .arg(&spec.binary)
            .env("PORT", spec.port.to_string())
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let server = Self {
            child,
            base_url: format!("http://127.0.0.1:{}", spec.port),
        };
        server.wait_healthy(&spec.binary)?;
        Ok(server)
    }

    fn wait_healthy(&self, binary: &Path) -> Result<()> {
        let client = crate::plumbing::http::client(Duration::from_secs(1))?;
        let url = format!("{}/healthz", self.base_url);
        let healthy = || {
            client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        };
        ensure!(
            wait_until(Duration::from_secs(10), Duration::from_millis(1), healthy),
            "{} did not answer 200 on {url} within 10 s",
            binary.display()
        );
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time from spawning the process to its first 200 on /healthz, best of 5.
    pub fn startup_ms(spec: &ServerSpec) -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let server = Self::start(spec)?;
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            drop(server);
        }
        Ok(best)
    }
}

impl Drop for PinnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
