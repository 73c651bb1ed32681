//! What a commit range affects: which services must be tested, built and
//! deployed, each with the reasons, from the changed files and the build graph.
//!
//! The rules, in the order reasons are given:
//! 1. A file every image is built from ([`EVERY_SERVICE`]: the toolchain,
//!    Cargo's config, the Dockerfile and the parts of xtask that assemble
//!    images) affects every service. The lock file and the workspace manifest
//!    ([`RESOLVED`]) affect a service when what it is built from changed
//!    there: its resolved dependency closure, the workspace dependencies it
//!    inherits, or the keys every build reads ([`LockChange`]); without the
//!    range's files to compare, every service.
//! 2. A file in a service's directory affects that service.
//! 3. A file in a service's chart, or its values file in any environment,
//!    affects that service (services sharing a chart are all affected).
//! 4. A file in a package a service depends on, directly or through other path
//!    dependencies (of any kind: a dev-dependency changes its tests), affects it.
//!
//! The rest of xtask is the pipeline, not an image: a change there runs
//! xtask's own tests (CI always does) but rebuilds nothing, since an image is
//! the service's code and the files of rule 1, and the tag it is built under
//! (`main-<sha>`) already names the commit. It is listed as `pipeline`.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use anyhow::{Context, Result, ensure};
use gix::ObjectId;
use serde::Serialize;
use xshell::{Shell, cmd};

use crate::domain::lock_closure::{self, LockChange};
use crate::domain::service_repo::ServiceRepo;
use crate::domain::services::{self, Declaration, Package, Service, VALUES_DIR};

/// Files (or folders, ending in `/`) every image is built from.
pub const EVERY_SERVICE: [&str; 7] = [
    "rust-toolchain.toml",
    "rust-toolchain",
    ".cargo/",
    "Dockerfile",
    ".dockerignore",
    "xtask/src/domain/oci.rs",
    "xtask/src/domain/image_build.rs",
];

/// Files every image is built from in part: each service's part is compared.
pub const RESOLVED: [&str; 2] = [lock_closure::LOCK_FILE, lock_closure::MANIFEST];

/// Folders of the pipeline itself: a change there affects no image.
pub const PIPELINE: [&str; 3] = ["xtask/", ".github/", ".ci/"];

/// One service's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub service: String,
    /// `services/<name>`.
    pub dir: String,
    /// Its `service.toml`: image, chart, port, probes, values file.
    #[serde(flatten)]
    pub declaration: Declaration,
    pub affected: bool,
    /// Why, strongest first; empty when not affected.
    pub reasons: Vec<String>,
}

/// Every service's verdict, and the changed files that affect none.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub base: String,
    pub head: String,
    /// The affected services' names, for a CI matrix.
    pub affected: Vec<String>,
    pub services: Vec<Decision>,
    /// Changed files of the pipeline (xtask, workflows): no image changes.
    pub pipeline: Vec<String>,
    /// Changed files no service is built or deployed from (docs, other crates).
    pub unclaimed: Vec<String>,
}

impl Report {
    /// The report of `services`' decisions, its `affected` list derived from them.
    fn new(services: Vec<Decision>, pipeline: Vec<String>, unclaimed: Vec<String>) -> Self {
        Self {
            base: String::new(),
            head: String::new(),
            affected: services
                .iter()
                .filter(|d| d.affected)
                .map(|d| d.service.clone())
                .collect(),
            services,
            pipeline,
            unclaimed,
        }
    }
}

fn matches_rule(file: &str, rule: &str) -> bool {
    match rule.strip_suffix('/') {
        Some(dir) => under(file, dir),
        None => file == rule,
    }
}

/// Whether `file` is `dir` or inside it (`dir` without a trailing `/`; `""` is the root).
fn under(file: &str, dir: &str) -> bool {
    dir.is_empty()
        || file
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The verdicts for `changed` files (from the workspace root) over the
/// services and packages of the head commit; `lock`, the range's lock file
/// and workspace manifest (None: a change to them affects every service).
pub fn decide(
    services: &[Service],
    packages: &[Package],
    changed: &[String],
    lock: Option<&LockChange>,
) -> Report {
    let resolved: Vec<&String> = changed
        .iter()
        .filter(|f| RESOLVED.contains(&f.as_str()))
        .collect();
    let global: Vec<&String> = changed
        .iter()
        .filter(|f| EVERY_SERVICE.iter().any(|r| matches_rule(f, r)))
        .chain(resolved.iter().copied().filter(|_| lock.is_none()))
        .collect();
    let graph = Graph::new(packages, changed);
    let mut claimed: BTreeSet<&String> = global.iter().chain(&resolved).copied().collect();
    let mut decisions = Vec::new();
    for service in services {
        let mut reasons: Vec<String> = global
            .iter()
            .map(|f| format!("{f} changed (every image is built from it)"))
            .collect();
        if let (Some(lock), false) = (lock, resolved.is_empty()) {
            reasons.extend(lock.reasons(service, packages));
        }
        let own = graph.changed_in(&service.dir);
        claimed.extend(own.iter().copied());
        reasons.extend(files_reason(&own, ""));
        let chart = &service.declaration.chart;
        let deployed: Vec<&String> = changed
            .iter()
            .filter(|f| under(f, chart) || is_values_of(f, &service.declaration.values_file))
            .collect();
        claimed.extend(deployed.iter().copied());
        reasons.extend(files_reason(&deployed, " (how it is deployed)"));
        for (dir, via) in graph.changed_dependencies(&service.dir) {
            claimed.extend(graph.changed_in(&dir));
            reasons.push(match via {
                None => format!("depends on {dir} (changed)"),
                Some(via) => format!("depends on {dir} through {via} (changed)"),
            });
        }
        decisions.push(Decision {
            service: service.name.clone(),
            dir: service.dir.clone(),
            declaration: service.declaration.clone(),
            affected: !reasons.is_empty(),
            reasons,
        });
    }
    let (pipeline, unclaimed) = changed
        .iter()
        .filter(|f| !claimed.contains(f))
        .cloned()
        .partition(|f| PIPELINE.iter().any(|r| matches_rule(f, r)));
    Report::new(decisions, pipeline, unclaimed)
}

/// Reads a file of the GitOps tree by its path there (`values/<env>/<file>`).
pub type ReadGitops = dyn Fn(&str) -> Result<Option<String>>;

/// Each service decided from its own base: the commit of the `main-<sha>`
/// build `env` runs for it, from its values file `values/<env>/<values-file>`
/// as `read` returns it (the GitOps tree). A push whose CD run was cancelled
/// or failed is then built by the next one, since what `env` runs is still
/// older than its changes. A service `env` runs no `main-<sha>` of (new, or a
/// build of a commit this repository lacks) is affected. Returns the report
/// and how many files changed over every base.
pub fn since_deployed(
    repo: &ServiceRepo,
    read: &ReadGitops,
    env: &str,
    (services, packages): (&[Service], &[Package]),
    head: ObjectId,
) -> Result<(Report, usize)> {
    let root = repo.root();
    let mut by_base: BTreeMap<ObjectId, (Report, Vec<String>)> = BTreeMap::new();
    let mut decisions = Vec::new();
    for service in services {
        let (tag, base) = deployed_build(repo, read, env, service)?;
        let Some(base) = base else {
            let file = format!("values/{env}/{}", service.declaration.values_file);
            let reason = format!("{env} runs no main-<sha> build of it ({file}: {tag:?}): built");
            decisions.extend(everything(std::slice::from_ref(service), &reason).services);
            continue;
        };
        let (report, _) = match by_base.entry(base) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                let changed = changes_to_build(&root, base, head)?;
                let lock = LockChange::read(&root, base, head, packages)?;
                new.insert((decide(services, packages, &changed, Some(&lock)), changed))
            }
        };
        let mut decision = report
            .services
            .iter()
            .find(|d| d.service == service.name)
            .cloned()
            .context("decided")?;
        if let Some(first) = decision.reasons.first_mut() {
            first.push_str(&format!(" (since {tag}, what {env} runs)"));
        }
        decisions.push(decision);
    }
    let changed: BTreeSet<String> = by_base
        .values()
        .flat_map(|(_, c)| c.iter().cloned())
        .collect();
    let changed: Vec<String> = changed.into_iter().collect();
    let all = decide(services, packages, &changed, Some(&LockChange::default()));
    let report = Report {
        base: format!("what {env} runs"),
        head: head.to_string(),
        ..Report::new(decisions, all.pipeline, all.unclaimed)
    };
    Ok((report, changed.len()))
}

/// The files changed over `base...head` that can change an image: values
/// files reach the cluster by Argo CD reading git, with no image to build,
/// and the range holds the pipeline's own promotion commits, which must not
/// count as changes.
fn changes_to_build(root: &Path, base: ObjectId, head: ObjectId) -> Result<Vec<String>> {
    let values = format!("{VALUES_DIR}/");
    Ok(changed_files(root, base, head)?
        .into_iter()
        .filter(|f| !f.starts_with(&values))
        .collect())
}

/// The tag `env` runs for `service` (its values file as `read` returns it),
/// and the commit of this repository it was built from when it is a
/// `main-<sha>` build.
fn deployed_build(
    repo: &ServiceRepo,
    read: &ReadGitops,
    env: &str,
    service: &Service,
) -> Result<(String, Option<ObjectId>)> {
    let file = format!("values/{env}/{}", service.declaration.values_file);
    let tag = read(&file)?
        .and_then(|text| crate::plumbing::yaml::parse(&text).ok())
        .and_then(|doc| doc["image"]["tag"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let base = tag
        .strip_prefix("main-")
        .and_then(|sha| repo.commit(sha).ok());
    Ok((tag, base))
}

/// Every service affected, for `reason`: when there is no range to compare
/// (a first push, or a force push whose old head is gone).
pub fn everything(services: &[Service], reason: &str) -> Report {
    let decisions: Vec<Decision> = services
        .iter()
        .map(|service| Decision {
            service: service.name.clone(),
            dir: service.dir.clone(),
            declaration: service.declaration.clone(),
            affected: true,
            reasons: vec![reason.to_owned()],
        })
        .collect();
    Report::new(decisions, Vec::new(), Vec::new())
}

/// The packages whose tests a range's changes can break, by name: the
/// affected services, every package with a changed file, every package
/// depending on one (transitively), and the pipeline's (xtask: CI always
/// tests it). None when a file of [`EVERY_SERVICE`] or [`RESOLVED`] changed:
/// test everything.
pub fn packages_to_test(
    services: &[Service],
    packages: &[Package],
    changed: &[String],
) -> Option<Vec<String>> {
    if changed
        .iter()
        .any(|f| RESOLVED.contains(&f.as_str()) || EVERY_SERVICE.iter().any(|r| matches_rule(f, r)))
    {
        return None;
    }
    let affected = decide(services, packages, changed, None).affected;
    let graph = Graph::new(packages, changed);
    let mut names: Vec<String> = packages
        .iter()
        .filter(|p| {
            affected.contains(&p.name)
                || !graph.changed_in(&p.dir).is_empty()
                || !graph.changed_dependencies(&p.dir).is_empty()
                || PIPELINE
                    .iter()
                    .any(|r| matches_rule(&format!("{}/", p.dir), r))
        })
        .map(|p| p.name.clone())
        .collect();
    names.sort();
    Some(names)
}

/// The affected services as a GitHub Actions job matrix: `{"include":
/// [{"service": NAME, "app": STEM}…]}`, STEM being the values file's name
/// without `.yaml` (the Argo CD Applications are `<STEM>-<env>`).
pub fn github_matrix(report: &Report) -> serde_json::Value {
    services::github_matrix(
        report
            .services
            .iter()
            .filter(|d| d.affected)
            .map(|d| (d.service.as_str(), &d.declaration)),
    )
}

/// `<first> changed` (and how many more), or nothing for no files.
fn files_reason(files: &[&String], what: &str) -> Option<String> {
    let first = files.first()?;
    Some(match files.len() {
        1 => format!("{first} changed{what}"),
        n => format!("{first} changed{what}, and {} more files", n - 1),
    })
}

/// `gitops/values/<env>/<values_file>`.
fn is_values_of(file: &str, values_file: &str) -> bool {
    file.strip_prefix(VALUES_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(env, name)| !env.is_empty() && name == values_file)
}

/// Package directories, their path dependencies, and which changed files each owns.
struct Graph<'a> {
    deps: BTreeMap<&'a str, &'a BTreeSet<String>>,
    /// Each known directory's changed files (a file belongs to the deepest one).
    changed: BTreeMap<String, Vec<&'a String>>,
}

impl<'a> Graph<'a> {
    fn new(packages: &'a [Package], changed: &'a [String]) -> Self {
        let mut dirs: BTreeSet<&str> = packages.iter().map(|p| p.dir.as_str()).collect();
        dirs.extend(
            packages
                .iter()
                .flat_map(|p| p.path_deps.iter().map(String::as_str)),
        );
        let mut owned: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for file in changed {
            if let Some(dir) = dirs
                .iter()
                .filter(|d| under(file, d))
                .max_by_key(|d| d.len())
            {
                owned.entry((*dir).to_owned()).or_default().push(file);
            }
        }
        Self {
            deps: packages
                .iter()
                .map(|p| (p.dir.as_str(), &p.path_deps))
                .collect(),
            changed: owned,
        }
    }

    fn changed_in(&self, dir: &str) -> Vec<&'a String> {
        self.changed.get(dir).cloned().unwrap_or_default()
    }

    /// The changed packages `dir` depends on, transitively, each with the
    /// direct dependency it is reached through (None when it is direct).
    fn changed_dependencies(&self, dir: &str) -> Vec<(String, Option<String>)> {
        let mut first_hop: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([dir]);
        while let Some(current) = queue.pop_front() {
            for dep in self.deps.get(current).into_iter().flat_map(|d| d.iter()) {
                if dep == dir || first_hop.contains_key(dep.as_str()) {
                    continue;
                }
                let hop = if current == dir {
                    dep
                } else {
                    first_hop[current]
                };
                first_hop.insert(dep, hop);
                queue.push_back(dep);
            }
        }
        first_hop
            .into_iter()
            .filter(|(dep, _)| self.changed.contains_key(*dep))
            .map(|(dep, hop)| (dep.to_owned(), (hop != dep).then(|| hop.to_owned())))
            .collect()
    }
}

/// The files changed on `head` since it left `base` (`base...head`: what a
/// pull request or a push adds), renames as a deletion and an addition so
/// both paths count.
pub fn changed_files(repo: &Path, base: ObjectId, head: ObjectId) -> Result<Vec<String>> {
    let sh = Shell::new()?;
    sh.change_dir(repo);
    let range = format!("{base}...{head}");
    let output = cmd!(sh, "git diff --name-only --no-renames -z {range} --")
        .quiet()
        .output()
        .with_context(|| format!("listing the files changed in {range}"))?;
    let text = String::from_utf8(output.stdout).context("a changed path is not UTF-8")?;
    Ok(text
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Writes the tree of commit `head` into the empty directory `into` (`git
/// archive`), so the build graph is the commit's and not the working tree's.
pub fn write_tree(repo: &Path, head: ObjectId, into: &Path) -> Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(repo);
    let head = head.to_string();
    let output = cmd!(sh, "git archive --format=tar {head}")
        .quiet()
        .output()?;
    ensure!(
        output.status.success(),
        "git archive {head} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    tar::Archive::new(output.stdout.as_slice())
        .unpack(into)
        .with_context(|| format!("unpacking {head} into {}", into.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule naming a moved file would silently stop rebuilding images when it changes.
    #[test]
    fn every_file_every_image_is_built_from_exists() {
        let root = crate::plumbing::workspace::root();
        for rule in EVERY_SERVICE.iter().filter(|r| r.starts_with("xtask/")) {
            assert!(root.join(rule).is_file(), "{rule} does not exist");
        }
    }

    #[test]
    fn rules_match_files_and_folders_by_whole_components() {
        assert!(matches_rule(".cargo/config.toml", ".cargo/"));
        assert!(!matches_rule(".cargo-other/x", ".cargo/"));
        assert!(matches_rule("Cargo.lock", "Cargo.lock"));
        assert!(!matches_rule("services/a/Cargo.lock", "Cargo.lock"));
        assert!(under("crates/common/src/lib.rs", "crates/common"));
        assert!(!under("crates/common2/src/lib.rs", "crates/common"));
    }

    fn package(name: &str, dir: &str, deps: &[&str]) -> Package {
        Package {
            name: name.into(),
            dir: dir.into(),
            path_deps: deps.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn the_tests_run_are_the_changed_packages_their_dependents_and_xtask() {
        let packages = [
            package("alpha", "services/alpha", &["crates/common"]),
            package("beta", "services/beta", &[]),
            package("common", "crates/common", &["crates/base"]),
            package("base", "crates/base", &[]),
            package("xtask", "xtask", &[]),
        ];
        let changed = |files: &[&str]| files.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
        let chosen = |files: &[&str]| packages_to_test(&[], &packages, &changed(files));
        assert_eq!(
            chosen(&["crates/base/src/lib.rs"]).unwrap(),
            ["alpha", "base", "common", "xtask"]
        );
        assert_eq!(
            chosen(&["services/beta/src/main.rs"]).unwrap(),
            ["beta", "xtask"]
        );
        assert_eq!(chosen(&["README.md"]).unwrap(), ["xtask"]);
        assert_eq!(chosen(&["Cargo.lock", "README.md"]), None);
        assert_eq!(chosen(&["rust-toolchain.toml"]), None);
    }

    #[test]
    fn values_files_are_matched_in_every_environment_only() {
        assert!(is_values_of("gitops/values/dev/a.yaml", "a.yaml"));
        assert!(is_values_of("gitops/values/prod/a.yaml", "a.yaml"));
        assert!(!is_values_of("gitops/values/a.yaml", "a.yaml"));
        assert!(!is_values_of("gitops/values/dev/b.yaml", "a.yaml"));
        assert!(!is_values_of("gitops/values/dev/x/a.yaml", "a.yaml"));
    }
}
