//! A new service's files, and its line in the workspace's members: what
//! `cargo xtask new-service` writes (or, with `--dry-run`, shows).
//!
//! The crate is a minimal axum service with the probes and pages of every
//! service (health, readiness, version, metrics), written out in its
//! `main.rs` rather than taken from a shared crate: items-api's are not a
//! crate of their own yet.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use super::services::{self, DECLARATION_FILE, Declaration, SERVICES_DIR};

/// The chart a new service is declared with: the workspace's one chart.
pub const DEFAULT_CHART: &str = "charts/service-demo";

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.txt");
const MAIN_RS: &str = include_str!("scaffold/main.rs.txt");
const SERVICE_TOML: &str = include_str!("scaffold/service.toml.txt");

/// Everything `new-service` would write, computed without writing.
pub struct Scaffold {
    /// `services/<name>`, from the workspace root.
    pub dir: String,
    /// Each new file, from the workspace root, with its text.
    pub files: Vec<(String, String)>,
    /// The root Cargo.toml before and after the member is added.
    pub manifest: (String, String),
}

/// The files of service `name` in the workspace at `root`, after checking
/// that the name is free: no directory, package, image or values file has it.
pub fn plan(root: &Path, name: &str, port: u16) -> Result<Scaffold> {
    services::check_name(name)?;
    let dir = format!("{SERVICES_DIR}/{name}");
    ensure!(
        !root.join(&dir).exists(),
        "{dir} already exists: choose another name, or remove {dir} first"
    );
    let packages = services::packages(root)?;
    ensure!(
        !packages.iter().any(|p| p.name == name),
        "the workspace already has a package named {name:?}: choose another name"
    );
    let declaration = Declaration {
        image: name.to_owned(),
        chart: DEFAULT_CHART.to_owned(),
        port,
        health_path: "/healthz".to_owned(),
        ready_path: "/readyz".to_owned(),
        values_file: format!("{name}.yaml"),
    };
    declaration.check(root)?;
    for service in services::discover(root, &packages)? {
        let taken = &service.declaration;
        ensure!(
            taken.image != declaration.image && taken.values_file != declaration.values_file,
            "service {} already uses the image or values file {name:?}: choose another name",
            service.name
        );
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{port}}", &port.to_string())
            .replace("{{image}}", &declaration.image)
            .replace("{{chart}}", &declaration.chart)
            .replace("{{values_file}}", &declaration.values_file)
    };
    let manifest_path = root.join("Cargo.toml");
    let before = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let after = add_member(&before, &dir)?;
    Ok(Scaffold {
        files: vec![
            (format!("{dir}/Cargo.toml"), fill(CARGO_TOML)),
            (format!("{dir}/{DECLARATION_FILE}"), fill(SERVICE_TOML)),
            (format!("{dir}/src/main.rs"), fill(MAIN_RS)),
        ],
        dir,
        manifest: (before, after),
    })
}

/// `manifest` with `dir` in `[workspace] members`, its comments and layout
/// kept; unchanged when a member (or a `<folder>/*` glob) already covers it.
pub fn add_member(manifest: &str, dir: &str) -> Result<String> {
    let mut document: toml_edit::DocumentMut = manifest
        .parse()
        .context("the root Cargo.toml is not valid TOML")?;
    let Some(members) = document
        .get_mut("workspace")
        .and_then(|w| w.get_mut("members"))
        .and_then(|m| m.as_array_mut())
    else {
        bail!("the root Cargo.toml has no [workspace] members list: add `members = [\"xtask\"]`")
    };
    let (folder, _) = dir.rsplit_once('/').unwrap_or(("", dir));
    let covered = members.iter().filter_map(|m| m.as_str()).any(|member| {
        member == dir || member.strip_suffix("/*").is_some_and(|glob| glob == folder)
    });
    if !covered {
        members.push(dir);
    }
    Ok(document.to_string())
}

/// Writes the scaffold: the new directory first (created, so a race with
/// another one fails), then the manifest, then the lock file gains the
/// package (Cargo resolves offline: the crate's dependencies are locked already).
pub fn write(root: &Path, scaffold: &Scaffold) -> Result<()> {
    let dir = root.join(&scaffold.dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, text) in &scaffold.files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(root.join("Cargo.toml"), &scaffold.manifest.1)
        .context("writing the root Cargo.toml")?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let cargo = services::cargo();
    cmd!(sh, "{cargo} metadata --format-version 1 --offline")
        .quiet()
        .ignore_stdout()
        .run()
        .context("updating Cargo.lock for the new package (offline)")?;
    Ok(())
}

/// What a new service still needs outside its crate, which `new-service`
/// does not write yet (the chart, GitOps values, Argo CD and workflows are
/// single-service today).
pub fn remaining_steps(name: &str) -> Vec<String> {
    vec![
        format!(
            "gitops/values/{{dev,preprod,prod}}/{name}.yaml: the image each environment runs \
             (promotion writes one values file per environment today)"
        ),
        format!(
            "{DEFAULT_CHART}: take the service's name, image repository and port from its values \
             (the chart names service-demo today)"
        ),
        format!(
            "gitops/argocd: an Application per environment for {name} (or one ApplicationSet over \
             services x environments)"
        ),
        format!(
            ".github/workflows: build, preview and promote the services `cargo xtask affected \
             --json` lists, {name} among them"
        ),
        format!(
            "cargo xtask image build: it builds items-api only today; {name} needs its own image"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_added_keeping_comments_and_layout() {
        let before = "# top\n[workspace]\nresolver = \"3\"\nmembers = [\"xtask\", \"services/items-api\"] # the crates\n\n[profile.release]\nlto = true\n";
        let after = add_member(before, "services/orders-api").unwrap();
        assert_eq!(
            after,
            "# top\n[workspace]\nresolver = \"3\"\nmembers = [\"xtask\", \"services/items-api\", \"services/orders-api\"] # the crates\n\n[profile.release]\nlto = true\n"
        );
    }

    #[test]
    fn a_member_a_glob_covers_is_not_added_twice() {
        let glob = "[workspace]\nmembers = [\"xtask\", \"services/*\"]\n";
        assert_eq!(add_member(glob, "services/orders-api").unwrap(), glob);
        let listed = "[workspace]\nmembers = [\"services/orders-api\"]\n";
        assert_eq!(add_member(listed, "services/orders-api").unwrap(), listed);
    }

    #[test]
    fn a_manifest_without_members_is_refused_with_the_fix() {
        let error = add_member("[package]\nname = \"x\"\n", "services/a").unwrap_err();
        assert!(error.to_string().contains("[workspace] members"), "{error}");
    }
}
