//! Programs: whether one is installed, and arguments no program may read as options.

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::plumbing::retry::wait_until;
use crate::plumbing::text::redact_url;

/// Where `program` is on PATH, if it is installed.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Waits until something accepts a TCP connection at `addr` (a server
/// started a moment ago); `false` if nothing did within `timeout`.
pub fn wait_listening(addr: &str, timeout: Duration) -> bool {
    wait_until(timeout, Duration::from_millis(20), || {
        std::net::TcpStream::connect(addr).is_ok()
    })
}

/// Refuses a value git would read as an option (`--upload-pack=…`), whatever
/// the `--` before it: a remote, branch or revision never begins with `-`.
pub fn refuse_option_like(what: &str, value: &str, fix: &str) -> Result<()> {
    ensure!(
        !value.starts_with('-'),
        "the {what} {:?} begins with '-', which git would read as an option: fix {fix}",
        redact_url(value)
    );
    Ok(())
}
