//! A new service's files, its values in every long-lived environment, and its
//! line in the workspace's members: what `cargo xtask new-service` writes (or,
//! with `--dry-run`, shows).
//!
//! The crate answers the probes and pages of every service (health,
//! readiness, version, metrics) through the workspace's `service-kit`, has
//! one example route, and tests that start it over real TCP. Its values files
//! pin its own image repository (`<registry>/<name>`, the registry the other
//! services' values use), its port and no database. Writing is all or
//! nothing: a failure half-way removes what was written and restores what was
//! changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use xshell::{Shell, cmd};

use crate::domain::promotion::{DeployedImage, Env};
use crate::domain::services::{
    self, DECLARATION_FILE, Declaration, SERVICES_DIR, Service, VALUES_DIR,
};

/// The chart a new service is declared with: the workspace's one chart.
pub const DEFAULT_CHART: &str = "charts/service-demo";

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.txt");
const LIB_RS: &str = include_str!("scaffold/lib.rs.txt");
const MAIN_RS: &str = include_str!("scaffold/main.rs.txt");
const SERVICE_TEST_RS: &str = include_str!("scaffold/service_test.rs.txt");
const SERVICE_TOML: &str = include_str!("scaffold/service.toml.txt");
const VALUES_YAML: &str = include_str!("scaffold/values.yaml.txt");

/// Everything `new-service` would write, computed without writing. Another
/// part may add to it before it is written (the Argo CD entry).
pub struct Scaffold {
    /// `services/<name>`, from the workspace root.
    pub dir: String,
    /// Each new file, from the workspace root, with its text.
    pub files: Vec<(String, String)>,
    /// Each existing file changed, from the workspace root: `(path, before,
    /// after)`. The root Cargo.toml first.
    pub edits: Vec<(String, String, String)>,
}

/// The files of service `name` in the workspace at `root`, after checking
/// that the name is free: no directory, package, image or values file has it.
pub fn plan(root: &Path, name: &str, port: u16) -> Result<Scaffold> {
    let (declaration, taken) = check_free(root, name, port)?;
    let service = Service {
        name: name.to_owned(),
        dir: format!("{SERVICES_DIR}/{name}"),
        declaration,
    };
    let repository = services::image_repository(&image_registry(root, &taken)?, &service)?;
    let dir = &service.dir;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            // What `image build` sets to the commit it builds (image_build::commit_variable).
            .replace(
                "{{commit_variable}}",
                &format!("{}_GIT_COMMIT", name.to_uppercase().replace('-', "_")),
            )
            .replace("{{port}}", &port.to_string())
            .replace("{{image}}", &service.declaration.image)
            .replace("{{chart}}", &service.declaration.chart)
            .replace("{{values_file}}", &service.declaration.values_file)
            .replace("{{repository}}", &repository)
    };
    let mut files = vec![
        (format!("{dir}/Cargo.toml"), fill(CARGO_TOML)),
        (format!("{dir}/{DECLARATION_FILE}"), fill(SERVICE_TOML)),
    ];
    for (file, template) in [
        ("src/lib.rs", LIB_RS),
        ("src/main.rs", MAIN_RS),
        ("tests/service.rs", SERVICE_TEST_RS),
    ] {
        files.push((format!("{dir}/{file}"), rustfmt(root, &fill(template))?));
    }
    for env in Env::LONG_LIVED {
        let (tag, written_by) = placeholder(env);
        let text = fill(VALUES_YAML)
            .replace("{{env}}", &env.to_string())
            .replace("{{tag}}", tag)
            .replace("{{written_by}}", written_by);
        files.push((values_path(env, &service.declaration.values_file), text));
    }
    let manifest_path = root.join("Cargo.toml");
    let before = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let after = add_member(&before, dir)?;
    Ok(Scaffold {
        dir: service.dir,
        files,
        edits: vec![("Cargo.toml".to_owned(), before, after)],
    })
}

/// The tag an environment's values file starts with, and what writes it later.
fn placeholder(env: Env) -> (&'static str, &'static str) {
    match env {
        Env::Preprod => (
            DeployedImage::PLACEHOLDER_TAGS[1],
            "the CD pipeline (`cargo xtask promote --env preprod`)",
        ),
        _ => (
            DeployedImage::PLACEHOLDER_TAGS[0],
            "the release pipeline (`cargo xtask release`)",
        ),
    }
}

/// `text` as rustfmt lays it out (a name longer or shorter than the
/// templates' wraps lines differently), with the workspace's toolchain.
fn rustfmt(root: &Path, text: &str) -> Result<String> {
    let sh = Shell::new()?;
    sh.change_dir(root);
    cmd!(sh, "rustfmt --edition 2024")
        .quiet()
        .stdin(text)
        .read()
        .map(|formatted| formatted + "\n")
        .context(
            "formatting the new service's code: rustfmt failed (`rustup component add rustfmt`)",
        )
}

/// `gitops/values/<env>/<values_file>`, from the workspace root.
pub fn values_path(env: Env, values_file: &str) -> String {
    format!("{VALUES_DIR}/{env}/{values_file}")
}

/// The declaration of a new service `name`, once nothing in the workspace has
/// its name, image or values file; and the services there are.
fn check_free(root: &Path, name: &str, port: u16) -> Result<(Declaration, Vec<Service>)> {
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
    let taken = services::discover(root, &packages)?;
    for service in &taken {
        let other = &service.declaration;
        ensure!(
            other.image != declaration.image && other.values_file != declaration.values_file,
            "service {} already uses the image or values file {name:?}: choose another name",
            service.name
        );
    }
    for env in Env::LONG_LIVED {
        let path = values_path(env, &declaration.values_file);
        ensure!(
            !root.join(&path).exists(),
            "{path} already exists (no service declares it): choose another name, or remove {path} first"
        );
    }
    Ok((declaration, taken))
}

/// The registry every service's image repository is in (`ghcr.io/<owner>`):
/// where an existing service's values in the first environment say its image
/// is (`<registry>/<image>`; `cargo xtask fork` rewrites them for a fork),
/// else the parent of the chart's default repository.
fn image_registry(root: &Path, services: &[Service]) -> Result<String> {
    let first = Env::LONG_LIVED[0];
    let mut sources: Vec<(String, Option<&str>)> = services
        .iter()
        .map(|s| {
            let values = values_path(first, &s.declaration.values_file);
            (values, Some(s.declaration.image.as_str()))
        })
        .collect();
    sources.push((format!("{DEFAULT_CHART}/values.yaml"), None));
    for (file, image) in &sources {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let values =
            crate::plumbing::yaml::parse(&text).with_context(|| format!("reading {file}"))?;
        let Some(repository) = values["image"]["repository"].as_str() else {
            continue;
        };
        let registry = match image {
            Some(image) => repository.strip_suffix(&format!("/{image}")),
            None => repository.rsplit_once('/').map(|(registry, _)| registry),
        };
        if let Some(registry) = registry.filter(|r| !r.is_empty()) {
            return Ok(registry.to_owned());
        }
    }
    bail!(
        "cannot tell which registry the services' images are in: set image.repository to          <registry>/<image> in {}",
        sources[0].0
    )
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

/// Writes the scaffold, all or nothing: each new file (created, never
/// overwritten, so a race with another `new-service` fails), then each edit,
/// then the lock file gains the package (Cargo resolves offline: the crate's
/// dependencies are locked already). On any failure, what was written is
/// removed and what was changed, Cargo.lock included, restored.
pub fn write(root: &Path, scaffold: &Scaffold) -> Result<()> {
    let lock = root.join("Cargo.lock");
    let lock_before = std::fs::read(&lock).ok();
    let mut undo = Undo::default();
    let result = write_files(root, scaffold, &mut undo).and_then(|()| update_lock(root));
    if let Err(error) = result {
        undo.run();
        if let Some(bytes) = lock_before {
            let _ = std::fs::write(&lock, bytes);
        }
        return Err(error.context(
            "new-service stopped: every file it had written is removed and Cargo.toml is restored;              fix the cause above and run it again",
        ));
    }
    Ok(())
}

fn write_files(root: &Path, scaffold: &Scaffold, undo: &mut Undo) -> Result<()> {
    for (path, text) in &scaffold.files {
        let path = root.join(path);
        undo.create_parents(&path)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        undo.created.push(path.clone());
        std::io::Write::write_all(&mut file, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for (path, before, after) in &scaffold.edits {
        let path = root.join(path);
        let now = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            now == *before,
            "{} changed while new-service ran: run it again",
            path.display()
        );
        undo.changed.push((path.clone(), now));
        std::fs::write(&path, after).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn update_lock(root: &Path) -> Result<()> {
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

/// What a write did, to take back: files and directories created (in order),
/// and the previous text of files changed.
#[derive(Default)]
struct Undo {
    created: Vec<PathBuf>,
    changed: Vec<(PathBuf, String)>,
}

impl Undo {
    /// Creates the missing directories above `path`, noting each.
    fn create_parents(&mut self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| !d.exists()) {
            missing.push(d.to_path_buf());
            dir = d.parent();
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            self.created.push(dir);
        }
        Ok(())
    }

    /// Restores changed files, then removes created files and directories,
    /// newest first. Best effort: the error being reported is the first one.
    fn run(self) {
        for (path, text) in self.changed.iter().rev() {
            let _ = std::fs::write(path, text);
        }
        for path in self.created.iter().rev() {
            let _ = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

/// What a new service still needs outside what `new-service` writes.
pub fn remaining_steps(name: &str) -> Vec<String> {
    vec![
        format!(
            "gitops/argocd: an Application per environment for {name} (or its entry in an ApplicationSet over \
             services x environments)"
        ),
        format!(
            ".github/workflows and `cargo xtask image build`: build, scan and push {name}'s image (the \
             services `cargo xtask affected --json` lists)"
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
