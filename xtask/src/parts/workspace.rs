//! Where things are in this workspace.

use std::path::{Path, PathBuf};

/// The workspace root: xtask lives one level below it.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` (CI keeps it outside
/// the clone so builds stay warm between runs).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// The variables that carry a credential in the workflows. A build of the
/// service (`cargo build` runs every dependency's build script) gets none of
/// them, whatever the step that runs xtask had in its environment.
pub const SECRET_VARS: [&str; 10] = [
    "REGISTRY_PASSWORD",
    "REGISTRY_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ARGOCD_AUTH_TOKEN",
    "GATE_SIGNING_KEY",
    "IMAGE_SIGNING_KEY",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
];

/// `command` without [`SECRET_VARS`] in its environment: for every process
/// that runs code xtask did not write (cargo builds, build scripts).
pub fn without_secrets(mut command: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    for var in SECRET_VARS {
        command = command.env_remove(var);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_gets_no_credential_of_the_step_that_runs_it() {
        let sh = xshell::Shell::new().unwrap();
        for var in SECRET_VARS {
            sh.set_var(var, "s3cret-value");
        }
        sh.set_var("HARMLESS", "kept");
        let env = without_secrets(xshell::cmd!(sh, "env")).read().unwrap();
        assert!(!env.contains("s3cret-value"), "{env}");
        assert!(env.contains("HARMLESS=kept"), "{env}");
    }
}
