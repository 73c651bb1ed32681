//! A checker's output kept by the hash of everything it reads, in the user's
//! cache (`~/.cache/service-demo/tool-outputs/`): the same tool run again on
//! the same bytes answers from there instead of running. A linter is a pure
//! function of its binary, its arguments and the files it reads, so the key is
//! all of them (the binary by path, size and modification time); whatever is
//! not in the key must not change the output. `SERVICE_DEMO_NO_TOOL_CACHE=1`
//! runs every tool. Nothing is kept for a tool that could not start.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Set to `1`: no output is read from or written to the cache.
pub const DISABLE_VAR: &str = "SERVICE_DEMO_NO_TOOL_CACHE";

/// What a cached output depends on, added piece by piece.
pub struct Key(Sha256);

impl Key {
    /// A key for `tool`'s output (its name, and the cache's format version).
    pub fn new(tool: &str) -> Self {
        let mut key = Key(Sha256::new());
        key.bytes(b"output-cache v1").bytes(tool.as_bytes());
        key
    }

    /// Adds bytes (length-prefixed: two pieces never read as one).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds the file `path` (in `dir`) as the tool is given it: its name and
    /// its bytes, or that it is missing.
    pub fn file(&mut self, dir: &Path, path: &Path) -> &mut Self {
        self.bytes(path.as_os_str().as_encoded_bytes());
        match std::fs::read(dir.join(path)) {
            Ok(bytes) => self.bytes(b"file").bytes(&bytes),
            Err(_) => self.bytes(b"missing"),
        }
    }

    /// Adds the executable `program` resolves to on PATH: its path, size and
    /// modification time (another version of the tool is another key).
    pub fn program(&mut self, program: &str) -> &mut Self {
        self.bytes(program.as_bytes());
        match crate::plumbing::process::which(program).map(|p| (std::fs::metadata(&p), p)) {
            Some((Ok(meta), path)) => self
                .bytes(path.as_os_str().as_encoded_bytes())
                .bytes(&meta.len().to_le_bytes())
                .bytes(&meta.mtime().to_le_bytes())
                .bytes(&meta.mtime_nsec().to_le_bytes()),
            _ => self.bytes(b"not on PATH"),
        }
    }

    fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A kept output.
#[derive(Serialize, Deserialize)]
struct Kept {
    status: i32,
    stdout: String,
    stderr: String,
}

/// The output kept under `key`, or `run`'s, which is then kept (unless the
/// tool could not start: exit status 126 or 127, or no status at all).
pub fn output(key: Key, run: impl FnOnce() -> Result<Output>) -> Result<Output> {
    let Some(file) = cache_file(key) else {
        return run();
    };
    if let Some(kept) = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).ok())
    {
        return Ok(Output {
            status: ExitStatus::from_raw(kept.status),
            stdout: kept.stdout.into_bytes(),
            stderr: kept.stderr.into_bytes(),
        });
    }
    let out = run()?;
    let started = out.status.code().is_some_and(|c| c != 126 && c != 127);
    let kept = Kept {
        status: out.status.into_raw(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if started && let Some(dir) = file.parent() {
        // A cache that cannot be written is no cache: the output stands.
        let _ = std::fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| serde_json::to_vec(&kept).map_err(Into::into))
            .and_then(|bytes| crate::plumbing::fs::write_atomic(&file, &bytes));
    }
    Ok(out)
}

/// Where `key`'s output is kept; `None` when the cache is off or there is no home.
fn cache_file(key: Key) -> Option<PathBuf> {
    if std::env::var(DISABLE_VAR).is_ok_and(|v| v == "1") {
        return None;
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".cache"),
    };
    let hex = key.hex();
    Some(
        base.join("service-demo/tool-outputs")
            .join(&hex[..2])
            .join(format!("{hex}.json")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_changes_with_every_piece_and_pieces_never_run_together() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "on: push\n").unwrap();
        let key = |f: &dyn Fn(&mut Key)| {
            let mut key = Key::new("actionlint");
            f(&mut key);
            key.hex()
        };
        let base = key(&|k| {
            k.file(dir.path(), Path::new("a.yml"));
        });
        assert_eq!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("a.yml"));
            })
        );
        assert_ne!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("b.yml"));
            }),
            "a missing file is not the file"
        );
        assert_ne!(
            key(&|k| {
                k.bytes(b"ab").bytes(b"c");
            }),
            key(&|k| {
                k.bytes(b"a").bytes(b"bc");
            })
        );
        std::fs::write(dir.path().join("a.yml"), "on: pull_request\n").unwrap();
        assert_ne!(
            base,
            key(&|k| {
                k.file(dir.path(), Path::new("a.yml"));
            }),
            "other bytes, another key"
        );
    }
}
