//! The GitOps deploy key: a new ed25519 key pair made by `ssh-keygen` in a
//! private (0700) directory outside the work tree, read into memory and
//! removed before this returns, so the private half exists only in memory
//! until it is sent, sealed, to GitHub's secrets.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// A deploy key pair: the private key (OpenSSH PEM) and the public key line.
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

/// A directory removed (with its contents) when dropped, even on error.
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new ed25519 key pair, commented `comment`.
pub fn generate(comment: &str) -> Result<KeyPair> {
    let dir = PrivateDir(std::env::temp_dir().join(format!(
        "xtask-deploy-key-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir.0)
        .with_context(|| format!("creating {}", dir.0.display()))?;
    let file = dir.0.join("key");
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .context(
            "ssh-keygen is not installed (apt-get install openssh-client, or your OS's OpenSSH)",
        )?;
    if !output.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let private = std::fs::read_to_string(&file).context("reading the new deploy key")?;
    let public = std::fs::read_to_string(file.with_extension("pub"))
        .context("reading the new deploy key's public half")?;
    drop(dir);
    Ok(KeyPair {
        private,
        public: public.trim().to_owned(),
    })
}

/// The key itself (`ssh-ed25519 AAAA…`) without its comment, as GitHub lists deploy keys.
pub fn key_only(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_new_key_leaves_nothing_on_disk() {
        let before: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("xtask-deploy-key-")
            })
            .map(|e| e.path())
            .collect();
        let pair = super::generate("gitops").unwrap();
        assert!(pair.private.contains("BEGIN OPENSSH PRIVATE KEY"));
        assert!(pair.public.starts_with("ssh-ed25519 "));
        assert_eq!(super::key_only(&pair.public).split(' ').count(), 2);
        let after: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("xtask-deploy-key-")
            })
            .map(|e| e.path())
            .collect();
        assert_eq!(before, after, "the key's directory is removed");
    }
}
