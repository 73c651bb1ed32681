//! Where things are in the workspace xtask acts on.
//!
//! That is the checkout it is run in, found from the working directory (or
//! `XTASK_WORKSPACE`), never the path it was compiled in: a binary built once
//! (by CI, from main) acts on whichever checkout runs it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// Names the workspace to act on, for a command run outside of it.
pub const WORKSPACE_VAR: &str = "XTASK_WORKSPACE";

/// The root of the workspace xtask acts on: `XTASK_WORKSPACE`, else the
/// nearest directory at or above the working directory that is one
/// ([`is_workspace`]). Found once per process. Outside of any, xtask stops
/// with a message that names both ways to give one (no command can act
/// without its files).
pub fn root() -> PathBuf {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = ROOT.get_or_init(|| {
        let cwd = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
        locate(
            std::env::var_os(WORKSPACE_VAR).as_deref().map(Path::new),
            &cwd,
        )
        .map_err(|e| format!("{e:#}"))
    });
    match found {
        Ok(root) => root.clone(),
        Err(message) => {
            eprintln!("Error: {message}");
            std::process::exit(2)
        }
    }
}

/// The workspace root for `explicit` (`XTASK_WORKSPACE`) or, without it, the
/// nearest workspace at or above `cwd`.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        let dir = cwd.join(dir);
        if !is_workspace(&dir) {
            bail!(
                "{WORKSPACE_VAR}={} is not a service-demo checkout (a Cargo.toml with [workspace] \
                 beside xtask/Cargo.toml): point it at your checkout's root, or unset it to act on \
                 the checkout you are in",
                dir.display()
            );
        }
        return dir
            .canonicalize()
            .with_context(|| format!("reading {}", dir.display()));
    }
    cwd.ancestors()
        .find(|dir| is_workspace(dir))
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{} is not inside a service-demo checkout (no Cargo.toml with [workspace] beside \
                 xtask/Cargo.toml at or above it): run xtask from your checkout, or set \
                 {WORKSPACE_VAR}=<checkout>",
                cwd.display()
            )
        })
}

/// A checkout of this project: a Cargo workspace manifest with xtask in it.
pub fn is_workspace(dir: &Path) -> bool {
    dir.join("xtask/Cargo.toml").is_file()
        && std::fs::read_to_string(dir.join("Cargo.toml"))
            .ok()
            .and_then(|text| text.parse::<toml_edit::DocumentMut>().ok())
            .is_some_and(|doc| doc.contains_key("workspace"))
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` (CI keeps it outside
/// the clone so builds stay warm between runs; a relative one is under the root).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
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

/// Whether `name` is one of the variables `cargo run` sets for xtask's own
/// package (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, …). A cargo that xtask runs
/// would inherit them, and build scripts that watch them (ring's, through cc)
/// would rebuild whenever a build started from a shell and one started from
/// xtask take turns, and in every clone at a new path: every build xtask runs
/// goes without them ([`without_secrets`] removes them too). `CARGO` stays.
pub fn is_cargo_run_var(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_MANIFEST_LINKS",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .contains(&name)
}

/// `command` (a cargo or a test that may run one) without this process's
/// [`is_cargo_run_var`] variables.
pub fn without_cargo_run_vars(command: &mut std::process::Command) -> &mut std::process::Command {
    for var in cargo_run_vars() {
        command.env_remove(var);
    }
    command
}

/// The names of this process's [`is_cargo_run_var`] variables.
fn cargo_run_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| is_cargo_run_var(name))
        .collect()
}

/// `command` without [`SECRET_VARS`] (and [`cargo_run_vars`]) in its
/// environment: for every process that runs code xtask did not write (cargo
/// builds, build scripts).
pub fn without_secrets(mut command: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    for var in SECRET_VARS
        .iter()
        .map(|v| v.to_string())
        .chain(cargo_run_vars())
    {
        command = command.env_remove(var);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), text).unwrap();
    }

    #[test]
    fn the_workspace_is_the_nearest_checkout_above_the_working_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        manifest(&outer, "[workspace]\nmembers = [\"xtask\"]\n");
        manifest(&outer.join("xtask"), "[package]\nname = \"xtask\"\n");
        // A member (no [workspace]) and a workspace without xtask are passed over.
        manifest(&outer.join("services/a"), "[package]\nname = \"a\"\n");
        let deep = outer.join("services/a/src");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(locate(None, &deep).unwrap(), outer);
        let other = tmp.path().join("other");
        manifest(&other, "[workspace]\nmembers = []\n");
        let error = locate(None, &other).unwrap_err().to_string();
        assert!(
            error.contains("not inside a service-demo checkout") && error.contains(WORKSPACE_VAR),
            "{error}"
        );
        // XTASK_WORKSPACE wins over the directory, and must name a checkout.
        let named = locate(Some(&outer), &other).unwrap();
        assert_eq!(named, outer.canonicalize().unwrap());
        let error = locate(Some(&other), &outer).unwrap_err().to_string();
        assert!(
            error.contains("XTASK_WORKSPACE=") && error.contains("unset it"),
            "{error}"
        );
    }

    #[test]
    fn a_build_gets_no_credential_of_the_step_that_runs_it() {
        let sh = xshell::Shell::new().unwrap();
        for var in SECRET_VARS {
            sh.set_var(var, "s3cret-value");
        }
        sh.set_var("HARMLESS", "kept");
        // xshell removes from its own environment, which starts as this process's.
        assert!(is_cargo_run_var("CARGO_PKG_NAME") && is_cargo_run_var("CARGO_MANIFEST_DIR"));
        assert!(!is_cargo_run_var("CARGO") && !is_cargo_run_var("CARGO_TARGET_DIR"));
        let env = without_secrets(xshell::cmd!(sh, "env")).read().unwrap();
        assert!(!env.contains("s3cret-value"), "{env}");
        assert!(
            !env.contains("/a/clone/xtask"),
            "nor the checkout's path: {env}"
        );
        assert!(env.contains("HARMLESS=kept"), "{env}");
    }
}
