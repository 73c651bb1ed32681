//! The prebuilt xtask the cluster jobs run instead of compiling it.
//!
//! In each workflow run, a job on a GitHub-hosted runner, checked out at main's
//! commit and holding no secret, builds xtask once (`cargo xtask prebuilt`,
//! [`BUILD_FLAG`]: the cluster jobs' build, without the commands they never run),
//! uploads it as an artifact of that run ([`ARTIFACT`]) and gives its sha256 as
//! a job output. A cluster job downloads that artifact (same run only: no other
//! run, and so no branch or pull request, can write it), checks the sha256
//! against the output and installs it as cargo's external subcommand
//! `cargo-`[`SUBCOMMAND`] ([`INSTALL_SCRIPT`]); its `CARGO_ALIAS_XTASK` names
//! that subcommand, so every `cargo xtask …` line of the job runs the checked
//! binary, in the checkout (its working directory), without compiling.
//! `checks::workflows` (rule `workflows.prebuilt-xtask`) holds the workflows to exactly this.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The cargo subcommand the prebuilt binary is installed as (`cargo-xtask-prebuilt`),
/// and a cluster job's `CARGO_ALIAS_XTASK`.
pub const SUBCOMMAND: &str = "xtask-prebuilt";
/// The artifact's name, and the binary's file name in it.
pub const ARTIFACT: &str = "xtask";
/// Where a cluster job downloads the artifact to (download-artifact's `path:`).
pub const DOWNLOAD_PATH: &str = "${{ runner.temp }}/xtask";
/// The step of a cluster job that checks the downloaded binary against the
/// sha256 its builder output (`XTASK_SHA256`) and only then installs it for
/// cargo (`$CARGO_HOME/bin` is the first place cargo looks for a subcommand),
/// then runs its first command.
pub const INSTALL_SCRIPT: &str = r#"echo "$XTASK_SHA256  $RUNNER_TEMP/xtask/xtask" | sha256sum --check --strict
install -D -m 0755 "$RUNNER_TEMP/xtask/xtask" "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-xtask-prebuilt"
cargo xtask --help"#;
/// How the building job's `CARGO_ALIAS_XTASK` builds it: xtask without its default feature `full`, the
/// cluster jobs' build (only the commands they run; see xtask/Cargo.toml).
pub const BUILD_FLAG: &str = "--no-default-features";
/// The environment variable of [`INSTALL_SCRIPT`] that holds the expected sha256.
pub const SHA256_VAR: &str = "XTASK_SHA256";

/// Whether a step's `run:` is [`INSTALL_SCRIPT`] (line by line, indentation aside).
pub fn is_install_script(run: &str) -> bool {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    lines(run) == lines(INSTALL_SCRIPT)
}

/// The arguments for clap: cargo runs an external subcommand `cargo-NAME` as
/// `cargo-NAME NAME ARGS…`, so NAME ([`SUBCOMMAND`]) is dropped when it comes first.
pub fn cli_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == SUBCOMMAND) {
        args.remove(1);
    }
    args
}

/// The sha256 of a file, in lowercase hex (what `sha256sum` prints).
pub fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::plumbing::text::hex(&Sha256::digest(bytes)))
}

/// Copies `binary` to `dir/`[`ARTIFACT`] (through a temporary file renamed
/// over it, so a failure leaves no half-written binary) and returns the copy's
/// path and sha256.
pub fn copy_with_digest(binary: &Path, dir: &Path) -> Result<(PathBuf, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(ARTIFACT);
    let partial = dir.join(format!(".{ARTIFACT}.partial"));
    std::fs::copy(binary, &partial)
        .with_context(|| format!("copying {} to {}", binary.display(), partial.display()))?;
    let digest = sha256_of(&partial)?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    Ok((target, digest))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// Run by cargo as a subcommand, the subcommand's name is dropped; run directly, nothing is.
    #[test]
    fn the_subcommand_name_cargo_passes_is_dropped() {
        assert_eq!(
            super::cli_args(args(&[
                "cargo-xtask-prebuilt",
                "xtask-prebuilt",
                "promote",
                "-h"
            ])),
            args(&["cargo-xtask-prebuilt", "promote", "-h"])
        );
        assert_eq!(
            super::cli_args(args(&["xtask", "promote", "xtask-prebuilt"])),
            args(&["xtask", "promote", "xtask-prebuilt"])
        );
    }

    /// The digest is sha256sum's, of the copy; the copy is whole and alone in its folder.
    #[test]
    fn a_copy_carries_the_sha256_that_sha256sum_prints() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("bin");
        std::fs::write(&source, b"abc").unwrap();
        let (copy, digest) = super::copy_with_digest(&source, &dir.path().join("out")).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&copy).unwrap(), b"abc");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsString::from("xtask")]);
    }
}
