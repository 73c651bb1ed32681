//! Programs: whether one is installed, and arguments no program may read as options.

use anyhow::{Result, ensure};

use crate::plumbing::text::redact_url;

/// Where `program` is on PATH, if it is installed.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
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
