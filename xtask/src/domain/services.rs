//! The services of this workspace, discovered rather than named in code: a
//! service is a workspace member under `services/` with a `service.toml`
//! beside its `Cargo.toml`, declaring how it ships (image, chart, port, probe
//! paths, values file). Everything else in the workspace (xtask, shared
//! crates) is a package but not a service.
//!
//! The workspace's packages and their path dependencies come from
//! `cargo metadata --no-deps` (no resolution, no network): that is the build
//! graph `affected` walks.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

/// Where services live, from the workspace root.
pub const SERVICES_DIR: &str = "services";
/// A service's declaration, in its directory.
pub const DECLARATION_FILE: &str = "service.toml";
/// Each environment's values files, from the workspace root:
/// `gitops/values/<env>/<values-file>`.
pub const VALUES_DIR: &str = "gitops/values";

/// `services/<name>/service.toml`. Unknown keys are refused, so a typo is an
/// error rather than a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Declaration {
    /// The image repository's last path segment (`ghcr.io/<owner>/<image>`).
    pub image: String,
    /// The Helm chart that deploys it, from the workspace root.
    pub chart: String,
    /// The port it listens on (its `PORT`).
    pub port: u16,
    /// Liveness probe path.
    pub health_path: String,
    /// Readiness probe path.
    pub ready_path: String,
    /// Its values file in each environment: `gitops/values/<env>/<values-file>`.
    pub values_file: String,
}

/// A discovered service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Its package name, which is also its directory's name.
    pub name: String,
    /// `services/<name>`, from the workspace root.
    pub dir: String,
    #[serde(flatten)]
    pub declaration: Declaration,
}

/// A workspace package, as the build graph sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// Its directory from the workspace root (`""` for a root package).
    pub dir: String,
    /// The directories of its path dependencies (every kind: normal, build,
    /// dev), from the workspace root.
    pub path_deps: BTreeSet<String>,
}

/// The workspace's packages, from `cargo metadata --no-deps` on `root`'s
/// manifest. Cargo is the one `cargo xtask` runs under (`$CARGO`), so a
/// `rust-toolchain.toml` in `root` never makes rustup fetch another one, and it
/// runs in an empty directory of its own: cargo looks for `.cargo/config.toml`
/// from its working directory up, so the config of the tree read (a pull
/// request's head commit, for `affected`) is never honoured.
pub fn packages(root: &Path) -> Result<Vec<Package>> {
    let sh = Shell::new()?;
    let neutral = crate::plumbing::fs::temp_dir("xtask-")?;
    sh.change_dir(neutral.path());
    let cargo = cargo();
    let manifest = std::path::absolute(root.join("Cargo.toml"))?;
    let output = cmd!(
        sh,
        "{cargo} metadata --no-deps --format-version 1 --offline --manifest-path {manifest}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    ensure!(
        output.status.success(),
        "cargo metadata failed in {}: {}",
        root.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    let root = std::path::absolute(root)?;
    let relative = |path: &Path| -> Result<String> {
        let dir = path.strip_prefix(&root).with_context(|| {
            format!(
                "{} is outside the workspace {}",
                path.display(),
                root.display()
            )
        })?;
        Ok(slash_path(dir))
    };
    metadata
        .packages
        .iter()
        .map(|package| {
            let manifest = Path::new(&package.manifest_path);
            Ok(Package {
                name: package.name.clone(),
                dir: relative(manifest.parent().context("a manifest has a directory")?)?,
                path_deps: package
                    .dependencies
                    .iter()
                    .filter_map(|d| d.path.as_deref())
                    .map(|p| relative(Path::new(p)))
                    .collect::<Result<_>>()?,
            })
        })
        .collect()
}

/// The services of the workspace at `root` (its `cargo metadata` and every
/// `services/*/service.toml`), sorted by name.
pub fn load(root: &Path) -> Result<Vec<Service>> {
    discover(root, &packages(root)?)
}

/// The root of the Cargo workspace around `dir` (`cargo locate-project`).
pub fn workspace_around(dir: &Path) -> Result<std::path::PathBuf> {
    let sh = Shell::new()?;
    sh.change_dir(dir);
    let cargo = cargo();
    let manifest = cmd!(
        sh,
        "{cargo} locate-project --workspace --message-format plain"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .with_context(|| format!("{} is not inside a Cargo workspace", dir.display()))?;
    Ok(Path::new(&manifest)
        .parent()
        .context("a manifest has a directory")?
        .to_path_buf())
}

/// The services of the workspace around the current directory (where a
/// command runs: a fork's checkout, the demo's clone), else those of
/// [`crate::plumbing::workspace::root`] (`XTASK_WORKSPACE` for a command run outside
/// any workspace; never the checkout xtask was compiled in).
pub fn load_current() -> Result<Vec<Service>> {
    match workspace_around(Path::new(".")) {
        Ok(root) => load(&root),
        Err(_) => load(&crate::plumbing::workspace::root()),
    }
}

/// `--service NAME`, repeatable: which services a command acts on. A
/// workspace of one service needs no flag, so a fork that never adds a second
/// one runs every command as it always did.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceSelection {
    /// A service to act on: its directory under services/ (repeat for several). Default: the
    /// workspace's only service; with several services, name them.
    #[arg(long = "service", value_name = "NAME")]
    pub names: Vec<String>,
}

impl ServiceSelection {
    /// The named services in the order given (each once), or the only one.
    pub fn resolve(&self, all: &[Service]) -> Result<Vec<Service>> {
        if self.names.is_empty() {
            return match all {
                [only] => Ok(vec![only.clone()]),
                [] => bail!(
                    "this workspace declares no service (no {SERVICES_DIR}/<name>/{DECLARATION_FILE})"
                ),
                _ => bail!(
                    "this workspace has {} services ({}): name the ones to act on with --service NAME",
                    all.len(),
                    names_of(all)
                ),
            };
        }
        let mut chosen: Vec<Service> = Vec::new();
        for name in &self.names {
            let service = all.iter().find(|s| s.name == *name).with_context(|| {
                format!(
                    "no service {name:?} in this workspace: the services are {}",
                    names_of(all)
                )
            })?;
            if !chosen.contains(service) {
                chosen.push(service.clone());
            }
        }
        Ok(chosen)
    }

    /// Exactly one service: for commands that act on one at a time.
    pub fn one(&self, all: &[Service]) -> Result<Service> {
        let mut chosen = self.resolve(all)?;
        ensure!(
            chosen.len() == 1,
            "this command acts on one service at a time; --service was given {} times",
            chosen.len()
        );
        Ok(chosen.remove(0))
    }
}

fn names_of(services: &[Service]) -> String {
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Where a service's images live. Every service has its own image
/// repository, `<registry>/<image>` (`IMAGE_REGISTRY`: `ghcr.io/<owner>`, or
/// `oci:<dir>` for OCI layout directories). `IMAGE_REPOSITORY` names one
/// repository outright, which a workspace of one service may keep using.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RepositoryOptions {
    /// The registry holding every service's image repository, each at <registry>/<image>:
    /// <host>/<path> (ghcr.io/<owner>) or oci:<dir>. Takes precedence over --repository.
    #[arg(long, env = "IMAGE_REGISTRY", value_name = "REGISTRY", value_parser = image_location)]
    pub registry: Option<String>,
    /// One image repository (<registry>/<path> or oci:<dir>), for a workspace of one service.
    #[arg(long, env = "IMAGE_REPOSITORY", value_name = "REPOSITORY", value_parser = image_location)]
    pub repository: Option<String>,
}

impl RepositoryOptions {
    /// The image repository of `service`, one of `all`; None when neither
    /// option is set (the caller says whether it needs one).
    pub fn for_service(&self, service: &Service, all: &[Service]) -> Result<Option<String>> {
        if let Some(registry) = &self.registry {
            return Ok(Some(image_repository(registry, service)?));
        }
        match &self.repository {
            None => Ok(None),
            Some(repository) if all.len() <= 1 => Ok(Some(repository.clone())),
            Some(_) => bail!(
                "--repository (IMAGE_REPOSITORY) names one image repository, but this workspace has {}                  services ({}): set --registry (IMAGE_REGISTRY) to the registry that holds them all, each at                  <registry>/<image>",
                all.len(),
                names_of(all)
            ),
        }
    }

    /// [`for_service`](Self::for_service), required.
    pub fn require(&self, service: &Service, all: &[Service]) -> Result<String> {
        self.for_service(service, all)?.with_context(|| {
            format!(
                "no image repository for {}: set --registry (IMAGE_REGISTRY, e.g. ghcr.io/<owner>) or, in a \
                 workspace of one service, --repository (IMAGE_REPOSITORY)",
                service.name
            )
        })
    }
}

/// An image registry or repository as given on the command line or in the environment: `oci:<dir>`
/// as it is (a path), `<host>/<path>` in lower case. Image names are lower case, and GitHub owners
/// need not be: the workflows' `ghcr.io/${{ github.repository_owner }}` is `ghcr.io/Acme` for Acme.
pub fn image_location(text: &str) -> Result<String> {
    Ok(if text.starts_with("oci:") {
        text.to_owned()
    } else {
        text.to_ascii_lowercase()
    })
}

/// `<registry>/<image>`: the image repository of `service` in `registry`.
pub fn image_repository(registry: &str, service: &Service) -> Result<String> {
    let registry = registry.trim_end_matches('/');
    ensure!(
        !registry.is_empty() && registry != "oci:",
        "the image registry is empty: give <host>/<path> (e.g. ghcr.io/<owner>) or oci:<dir>"
    );
    Ok(format!(
        "{}/{}",
        image_location(registry)?,
        service.declaration.image
    ))
}

/// A GitHub Actions job matrix over services, `{"include": [{"service":
/// NAME, "app": STEM}…]}`, where `STEM-<env>` names the service's Argo CD
/// Application (its values file without `.yaml`): what `affected` and
/// `release` output for the jobs that act on each service.
pub fn github_matrix<'a>(
    services: impl IntoIterator<Item = (&'a str, &'a Declaration)>,
) -> serde_json::Value {
    let include: Vec<serde_json::Value> = services
        .into_iter()
        .map(|(name, declaration)| {
            serde_json::json!({
                "service": name,
                "app": application_prefix(declaration),
            })
        })
        .collect();
    serde_json::json!({ "include": include })
}

/// What a service's Argo CD Applications are named after: its values file's stem
/// (`service-demo.yaml` → `service-demo-prod`, `service-demo-pr-7`).
pub fn application_prefix(declaration: &Declaration) -> &str {
    let values = &declaration.values_file;
    values.strip_suffix(".yaml").unwrap_or(values)
}

/// The cargo `cargo xtask` runs under (`$CARGO`), else the one on the PATH.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetadataPackage>,
}

#[derive(Deserialize)]
struct MetadataPackage {
    name: String,
    manifest_path: String,
    dependencies: Vec<MetadataDependency>,
}

#[derive(Deserialize)]
struct MetadataDependency {
    path: Option<String>,
}

/// `a/b/c` with forward slashes, whatever the platform.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The services of the workspace at `root`, sorted by name: every
/// `services/<name>/service.toml`, each of which must belong to a workspace
/// member named `<name>`. A workspace without any declares no services.
pub fn discover(root: &Path, packages: &[Package]) -> Result<Vec<Service>> {
    let mut services = Vec::new();
    let dir = root.join(SERVICES_DIR);
    if !dir.is_dir() {
        return Ok(services);
    }
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let declaration_path = entry.path().join(DECLARATION_FILE);
        if !declaration_path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let service_dir = format!("{SERVICES_DIR}/{name}");
        let shown = format!("{service_dir}/{DECLARATION_FILE}");
        // Hand-written declarations get new-service's rules: the name becomes
        // a crate, an image, Kubernetes objects and URL path segments.
        check_name(&name)
            .with_context(|| format!("{shown} declares a service in {service_dir}"))?;
        let Some(package) = packages.iter().find(|p| p.dir == service_dir) else {
            bail!(
                "{shown} declares a service, but {service_dir} is not a workspace member: \
                 add \"{service_dir}\" to [workspace] members in Cargo.toml, or remove {shown}"
            );
        };
        ensure!(
            package.name == name,
            "{service_dir}/Cargo.toml names its package {:?}: a service's package and directory \
             share one name (rename one of them to match the other)",
            package.name
        );
        let declaration = read_declaration(root, &declaration_path, &shown)?;
        services.push(Service {
            name,
            dir: service_dir,
            declaration,
        });
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    check_distinct(&services)?;
    Ok(services)
}

/// Reads and checks one declaration; `shown` names it in errors.
fn read_declaration(root: &Path, path: &Path, shown: &str) -> Result<Declaration> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
    let declaration: Declaration = toml_edit::de::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{shown}: {}\nthe keys are image, chart, port, health-path, ready-path, values-file",
            e.to_string().trim()
        )
    })?;
    declaration
        .check(root)
        .with_context(|| format!("{shown} is not valid"))?;
    Ok(declaration)
}

impl Declaration {
    /// The checks serde cannot make: names that become paths and image names.
    pub fn check(&self, root: &Path) -> Result<()> {
        ensure!(
            is_image_name(&self.image),
            "image {:?} is not an image repository name: lowercase letters, digits, and . _ - \
             between them (e.g. \"items-api\")",
            self.image
        );
        ensure!(
            self.port != 0,
            "port 0 is not a port: give the one the service listens on"
        );
        for (key, path) in [
            ("health-path", &self.health_path),
            ("ready-path", &self.ready_path),
        ] {
            ensure!(
                path.starts_with('/'),
                "{key} {path:?} must start with '/' (e.g. \"/healthz\")"
            );
        }
        ensure!(
            is_plain_file_name(&self.values_file) && self.values_file.ends_with(".yaml"),
            "values-file {:?} must be a file name ending in .yaml, without a folder \
             (it is looked up in {VALUES_DIR}/<env>/)",
            self.values_file
        );
        // The stem names the service's Argo CD Applications (`<stem>-<env>`),
        // which reach Argo CD's API in URL paths: a service name's rules.
        let stem = self.values_file.trim_end_matches(".yaml");
        ensure!(
            check_name(stem).is_ok(),
            "values-file {:?}: its name without .yaml names the service's Argo CD Applications \
             (<stem>-<env>): lowercase letters, digits and single '-', starting with a letter",
            self.values_file
        );
        ensure!(
            !self.chart.starts_with('/') && !self.chart.split('/').any(|c| c == ".."),
            "chart {:?} must be a path inside the workspace (e.g. \"charts/service-demo\")",
            self.chart
        );
        ensure!(
            root.join(&self.chart).join("Chart.yaml").is_file(),
            "chart {} has no Chart.yaml: fix the path or create the chart",
            self.chart
        );
        Ok(())
    }
}

/// Two services may share a chart, never an image or a values file.
fn check_distinct(services: &[Service]) -> Result<()> {
    for (i, a) in services.iter().enumerate() {
        for b in &services[i + 1..] {
            let (x, y) = (&a.declaration, &b.declaration);
            ensure!(
                x.image != y.image,
                "{} and {} both declare image {:?}: each service has its own image repository",
                a.name,
                b.name,
                x.image
            );
            ensure!(
                x.values_file != y.values_file,
                "{} and {} both declare values-file {:?}: each service has its own values",
                a.name,
                b.name,
                x.values_file
            );
        }
    }
    Ok(())
}

/// A name of a distribution repository path component.
fn is_image_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let separator = |b: &u8| matches!(b, b'.' | b'_' | b'-');
    !name.is_empty()
        && name.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || separator(b))
        && !bytes.first().is_some_and(separator)
        && !bytes.last().is_some_and(separator)
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\\') && !name.starts_with('.')
}

/// Longest service name: Argo CD and Helm names add `-preprod`, `-pr-<N>` and
/// Kubernetes suffixes to it, within a 63-character DNS label.
pub const MAX_NAME_LEN: usize = 40;

/// Whether `name` can be a service: a DNS label (it names Kubernetes objects,
/// an image and a crate), not a name Cargo reserves, at most [`MAX_NAME_LEN`].
pub fn check_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-')
        && !name.contains("--");
    ensure!(
        ok,
        "{name:?} is not a service name: lowercase letters, digits and single '-', starting \
         with a letter, at most {MAX_NAME_LEN} characters (e.g. orders-api); it names a crate, \
         an image and Kubernetes objects"
    );
    const RESERVED: [&str; 8] = [
        "test",
        "core",
        "std",
        "alloc",
        "proc-macro",
        "self",
        "crate",
        "xtask",
    ];
    ensure!(
        !RESERVED.contains(&name),
        "{name:?} is a name Cargo or this workspace reserves: choose another"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, image: &str) -> Service {
        Service {
            name: name.into(),
            dir: format!("services/{name}"),
            declaration: Declaration {
                image: image.into(),
                chart: "charts/service-demo".into(),
                port: 8080,
                health_path: "/healthz".into(),
                ready_path: "/readyz".into(),
                values_file: format!("{image}.yaml"),
            },
        }
    }

    /// A GitHub owner with capitals (`ghcr.io/${{ github.repository_owner }}` in the workflows) still
    /// names valid, lower-case images; an OCI layout's directory keeps its case.
    #[test]
    fn a_registry_with_capitals_names_lower_case_images() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            repositories: RepositoryOptions,
        }
        let all = [service("items-api", "service-demo")];
        let parsed = Cli::try_parse_from(["x", "--registry", "ghcr.io/Acme-Labs"]).unwrap();
        let repository = parsed.repositories.require(&all[0], &all).unwrap();
        assert_eq!(repository, "ghcr.io/acme-labs/service-demo");
        let parsed =
            Cli::try_parse_from(["x", "--repository", "GHCR.io/Acme/Service-Demo"]).unwrap();
        assert_eq!(
            parsed.repositories.require(&all[0], &all).unwrap(),
            "ghcr.io/acme/service-demo"
        );
        let parsed = Cli::try_parse_from(["x", "--registry", "oci:/tmp/My Images"]).unwrap();
        assert_eq!(
            parsed.repositories.require(&all[0], &all).unwrap(),
            "oci:/tmp/My Images/service-demo"
        );
    }

    #[test]
    fn a_values_file_whose_stem_is_not_a_name_is_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut declaration = service("orders-api", "orders-api").declaration;
        assert!(declaration.check(root).is_ok());
        for bad in [
            "a%2fb.yaml",
            "x?y.yaml",
            "Orders.yaml",
            "-x.yaml",
            "a--b.yaml",
        ] {
            declaration.values_file = bad.into();
            let error = declaration.check(root).unwrap_err().to_string();
            assert!(
                error.contains("names the service's Argo CD Applications"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn one_service_needs_no_flag_and_several_must_be_named() {
        let items = service("items-api", "service-demo");
        let orders = service("orders-api", "orders-api");
        let none = ServiceSelection::default();
        assert_eq!(
            none.resolve(std::slice::from_ref(&items)).unwrap(),
            vec![items.clone()]
        );
        let two = [items.clone(), orders.clone()];
        let error = none.resolve(&two).unwrap_err().to_string();
        assert!(
            error.contains("has 2 services (items-api, orders-api): name the ones"),
            "{error}"
        );
        let named = ServiceSelection {
            names: vec!["orders-api".into(), "items-api".into(), "orders-api".into()],
        };
        assert_eq!(
            named.resolve(&two).unwrap(),
            vec![orders.clone(), items.clone()]
        );
        assert!(
            named
                .one(&two)
                .unwrap_err()
                .to_string()
                .contains("one service at a time")
        );
        let unknown = ServiceSelection {
            names: vec!["billing".into()],
        };
        let error = unknown.resolve(&two).unwrap_err().to_string();
        assert!(
            error.contains("no service \"billing\"") && error.contains("items-api, orders-api"),
            "{error}"
        );
    }

    #[test]
    fn each_service_has_its_own_repository_in_the_registry() {
        let items = service("items-api", "service-demo");
        let orders = service("orders-api", "orders-api");
        let two = [items.clone(), orders.clone()];
        let registry = RepositoryOptions {
            registry: Some("ghcr.io/acme/".into()),
            repository: Some("ghcr.io/acme/ignored".into()),
        };
        assert_eq!(
            registry.require(&orders, &two).unwrap(),
            "ghcr.io/acme/orders-api"
        );
        let layout = RepositoryOptions {
            registry: Some("oci:/tmp/images".into()),
            repository: None,
        };
        assert_eq!(
            layout.require(&items, &two).unwrap(),
            "oci:/tmp/images/service-demo"
        );
        let single = RepositoryOptions {
            registry: None,
            repository: Some("ghcr.io/acme/service-demo".into()),
        };
        assert_eq!(
            single
                .require(&items, std::slice::from_ref(&items))
                .unwrap(),
            "ghcr.io/acme/service-demo"
        );
        let error = single.require(&items, &two).unwrap_err().to_string();
        assert!(error.contains("set --registry (IMAGE_REGISTRY)"), "{error}");
        let error = RepositoryOptions::default()
            .require(&items, &two)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no image repository for items-api"),
            "{error}"
        );
        assert!(image_repository("oci:", &items).is_err());
    }

    #[test]
    fn service_names_are_dns_labels_and_crate_names() {
        for good in ["orders-api", "a", "billing2", "a-b-c"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "Orders",
            "orders_api",
            "-x",
            "x-",
            "a--b",
            "1abc",
            "test",
            "xtask",
            "a.b",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn image_names_follow_the_distribution_grammar() {
        assert!(is_image_name("service-demo"));
        assert!(is_image_name("a.b_c"));
        for bad in ["", "Service", "-a", "a-", "a/b", "a b"] {
            assert!(!is_image_name(bad), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_unknown_key_in_a_declaration_is_refused() {
        let text = "image = \"x\"\nchart = \"c\"\nport = 1\nhealth-path = \"/h\"\n\
                    ready-path = \"/r\"\nvalues-file = \"x.yaml\"\nhealthpath = \"/h\"\n";
        let error = toml_edit::de::from_str::<Declaration>(text).unwrap_err();
        assert!(error.to_string().contains("healthpath"), "{error}");
    }
}
