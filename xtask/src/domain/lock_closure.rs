//! What a change to `Cargo.lock` or the workspace `Cargo.toml` does to one
//! service: its resolved dependency closure (every package the lock file
//! reaches from it, with version, source and checksum), the workspace
//! dependencies its members inherit (versions and features), and the rest
//! of the workspace manifest every build reads (profiles, patches,
//! `[workspace.package]`, lints), compared between two commits.
//!
//! A new service, or a dependency only one service uses, changes the lock
//! file without changing what the other services are built from: they are
//! not affected. The members list is not compared (adding a member builds
//! nothing else), nor `[workspace.metadata]` (no build reads it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use anyhow::{Context, Result};
use gix::ObjectId;
use serde::Deserialize;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::domain::services::{Package, Service};

pub const LOCK_FILE: &str = "Cargo.lock";
pub const MANIFEST: &str = "Cargo.toml";

/// The workspace keys whose change is judged per service, or not at all.
const PER_SERVICE_KEYS: [&str; 5] = [
    "members",
    "exclude",
    "default-members",
    "dependencies",
    "metadata",
];

/// The lock file and workspace manifest at both ends of a range, and the
/// head's member manifests, read once for every service.
#[derive(Debug, Default)]
pub struct LockChange {
    base: Side,
    head: Side,
    /// `<dir>/Cargo.toml` of each package at head, by directory.
    members: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Side {
    lock: Option<String>,
    manifest: Option<String>,
}

/// One `[[package]]` of a lock file.
#[derive(Debug, Clone, Deserialize)]
struct Locked {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// A package as a build gets it: its dependency list is compared through
/// the closure's other members, not here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Built {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<Locked>,
}

impl LockChange {
    /// Reads both ends of `base...head` in the repository at `root` (the
    /// merge base's files, as the range is `base...head`), and the member
    /// manifests of `packages` at head.
    pub fn read(root: &Path, base: ObjectId, head: ObjectId, packages: &[Package]) -> Result<Self> {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let (b, h) = (base.to_string(), head.to_string());
        let merge_base = cmd!(sh, "git merge-base {b} {h}")
            .quiet()
            .read()
            .with_context(|| format!("the merge base of {b} and {h}"))?;
        let show = |rev: &str, path: &str| {
            let spec = format!("{rev}:{path}");
            cmd!(sh, "git show {spec}")
                .quiet()
                .ignore_stderr()
                .read()
                .ok()
        };
        let side = |rev: &str| Side {
            lock: show(rev, LOCK_FILE),
            manifest: show(rev, MANIFEST),
        };
        let members = packages
            .iter()
            .filter_map(|p| {
                let path = manifest_path(&p.dir);
                show(&h, &path).map(|text| (p.dir.clone(), text))
            })
            .collect();
        Ok(Self {
            base: side(&merge_base),
            head: side(&h),
            members,
        })
    }

    /// Why `service` is affected by the change of the lock file and the
    /// workspace manifest: empty when what it is built from is the same.
    pub fn reasons(&self, service: &Service, packages: &[Package]) -> Vec<String> {
        let mut reasons = self.manifest_reasons(service, packages);
        let Some(name) = packages
            .iter()
            .find(|p| p.dir == service.dir)
            .map(|p| p.name.as_str())
        else {
            return reasons;
        };
        let head = match closure(self.head.lock.as_deref(), name) {
            Ok(head) => head,
            Err(why) => {
                reasons.push(format!("{LOCK_FILE} changed, and {why}: built"));
                return reasons;
            }
        };
        let Ok(base) = closure(self.base.lock.as_deref(), name) else {
            reasons.push(format!("{LOCK_FILE} lists it for the first time"));
            return reasons;
        };
        reasons.extend(
            describe(&base, &head)
                .map(|what| format!("{LOCK_FILE} changed what it is built from: {what}")),
        );
        reasons
    }

    /// The workspace manifest: the keys every build reads, then the
    /// `[workspace.dependencies]` entries the service's members inherit.
    fn manifest_reasons(&self, service: &Service, packages: &[Package]) -> Vec<String> {
        let (base, head) = (
            parse_manifest(self.base.manifest.as_deref()),
            parse_manifest(self.head.manifest.as_deref()),
        );
        let mut reasons = Vec::new();
        let global: Vec<String> = global_keys(&base, &head);
        if !global.is_empty() {
            reasons.push(format!(
                "{MANIFEST} changed {} (every build reads it)",
                global.join(", ")
            ));
        }
        let inherited: Vec<String> = inherited_dependencies(&self.members, &service.dir, packages)
            .into_iter()
            .filter(|dep| workspace_dependency(&base, dep) != workspace_dependency(&head, dep))
            .collect();
        if !inherited.is_empty() {
            reasons.push(format!(
                "{MANIFEST} changed [workspace.dependencies] {}, which it inherits",
                inherited.join(", ")
            ));
        }
        reasons
    }
}

fn manifest_path(dir: &str) -> String {
    if dir.is_empty() {
        MANIFEST.to_owned()
    } else {
        format!("{dir}/{MANIFEST}")
    }
}

/// A manifest as plain data (comments and layout gone); Null when missing or not TOML.
fn parse_manifest(text: Option<&str>) -> Value {
    text.and_then(|t| toml_edit::de::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null)
}

/// The keys of the workspace manifest, other than the per-service ones,
/// whose value differs: `[profile]`, `[patch]`, `[workspace.package]`, ….
fn global_keys(base: &Value, head: &Value) -> Vec<String> {
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut differ = Vec::new();
    for key in keys(base).union(&keys(head)) {
        if key == "workspace" {
            let (b, h) = (&base[key], &head[key]);
            for sub in keys(b).union(&keys(h)) {
                if !PER_SERVICE_KEYS.contains(&sub.as_str()) && b[sub] != h[sub] {
                    differ.push(format!("[workspace.{sub}]"));
                }
            }
        } else if base[key] != head[key] {
            differ.push(format!("[{key}]"));
        }
    }
    differ
}

fn workspace_dependency<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    &manifest["workspace"]["dependencies"][name]
}

/// The dependency names `dir` and its path dependencies (transitively)
/// take from `[workspace.dependencies]` (`name = { workspace = true }`), in
/// every dependency table, target-specific ones included.
fn inherited_dependencies(
    manifests: &BTreeMap<String, String>,
    dir: &str,
    packages: &[Package],
) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([dir.to_owned()]);
    let mut queue = VecDeque::from([dir.to_owned()]);
    let mut names = BTreeSet::new();
    while let Some(current) = queue.pop_front() {
        let manifest = parse_manifest(manifests.get(&current).map(String::as_str));
        let targets = manifest["target"]
            .as_object()
            .into_iter()
            .flat_map(|t| t.values());
        for scope in std::iter::once(&manifest).chain(targets) {
            for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
                for (name, spec) in scope[table].as_object().into_iter().flatten() {
                    if spec["workspace"] == Value::Bool(true) {
                        names.insert(name.clone());
                    }
                }
            }
        }
        let deps = packages.iter().find(|p| p.dir == current);
        for dep in deps.into_iter().flat_map(|p| p.path_deps.iter()) {
            if seen.insert(dep.clone()) {
                queue.push_back(dep.clone());
            }
        }
    }
    names
}

/// Every package the lock file reaches from the workspace member `name`
/// (itself excluded), through dependencies of every kind.
fn closure(lock: Option<&str>, name: &str) -> Result<BTreeSet<Built>, String> {
    let lock = lock.ok_or_else(|| format!("there is no {LOCK_FILE}"))?;
    let lock: LockFile = toml_edit::de::from_str(lock)
        .map_err(|e| format!("{LOCK_FILE} is not a lock file ({})", e.message()))?;
    let root = lock
        .package
        .iter()
        .find(|p| p.name == name && p.source.is_none())
        .ok_or_else(|| format!("{LOCK_FILE} does not list {name}"))?;
    let built = |p: &Locked| Built {
        name: p.name.clone(),
        version: p.version.clone(),
        source: p.source.clone(),
        checksum: p.checksum.clone(),
    };
    let mut found: BTreeSet<Built> = BTreeSet::new();
    let mut queue = VecDeque::from([root]);
    while let Some(package) = queue.pop_front() {
        for spec in &package.dependencies {
            let dep = resolve(&lock.package, spec)
                .ok_or_else(|| format!("{LOCK_FILE} names {spec:?} but does not list it"))?;
            if !std::ptr::eq(dep, root) && found.insert(built(dep)) {
                queue.push_back(dep);
            }
        }
    }
    Ok(found)
}

/// A lock file's dependency entry (`name`, `name version` or
/// `name version (source)`) as the package it names.
fn resolve<'a>(packages: &'a [Locked], spec: &str) -> Option<&'a Locked> {
    let mut words = spec.splitn(3, ' ');
    let name = words.next()?;
    let version = words.next();
    let source = words
        .next()
        .map(|s| s.trim_start_matches('(').trim_end_matches(')'));
    packages.iter().find(|p| {
        p.name == name
            && version.is_none_or(|v| p.version == v)
            && source.is_none_or(|s| p.source.as_deref() == Some(s))
    })
}

/// What changed between two closures, by package name (`itoa 1.0.10 →
/// 1.0.11`, `+ serde 1.0.1`, `- libc 0.2.1`), the first few; None when equal.
fn describe(base: &BTreeSet<Built>, head: &BTreeSet<Built>) -> Option<String> {
    let by_name = |set: &BTreeSet<Built>, other: &BTreeSet<Built>| {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in set.difference(other) {
            let mut label = p.version.clone();
            if other
                .iter()
                .any(|o| o.name == p.name && o.version == p.version)
            {
                label.push_str(" (other source or checksum)");
            }
            map.entry(p.name.clone()).or_default().push(label);
        }
        map
    };
    let (gone, new) = (by_name(base, head), by_name(head, base));
    let names: BTreeSet<&String> = gone.keys().chain(new.keys()).collect();
    let changes: Vec<String> = names
        .into_iter()
        .map(|name| match (gone.get(name), new.get(name)) {
            (Some(old), Some(now)) => format!("{name} {} → {}", old.join("+"), now.join("+")),
            (None, Some(now)) => format!("+ {name} {}", now.join("+")),
            (Some(old), None) => format!("- {name} {}", old.join("+")),
            (None, None) => unreachable!("a name of one of the maps"),
        })
        .collect();
    match changes.len() {
        0 => None,
        n if n <= 3 => Some(changes.join(", ")),
        n => Some(format!("{}, and {} more", changes[..3].join(", "), n - 3)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This repository's own lock file: items-api's closure is the service's
    /// crates, and none that only the pipeline (xtask) uses.
    #[test]
    fn this_workspaces_lock_file_gives_items_api_its_own_closure() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let lock = std::fs::read_to_string(root.join(LOCK_FILE)).unwrap();
        let names = |member: &str| -> BTreeSet<String> {
            closure(Some(&lock), member)
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        let items = names("items-api");
        for expected in ["service-kit", "tokio", "axum", "tokio-postgres", "mimalloc"] {
            assert!(items.contains(expected), "{expected} in {items:?}");
        }
        for pipeline_only in ["gix", "k8s-openapi", "xshell", "xtask"] {
            assert!(
                !items.contains(pipeline_only),
                "{pipeline_only} in {items:?}"
            );
        }
        assert!(names("xtask").contains("gix"));
        assert!(closure(Some(&lock), "no-such-member").is_err());
    }

    #[test]
    fn a_dependency_entry_names_one_package_by_name_version_and_source() {
        let lock: LockFile = toml_edit::de::from_str(
            "version = 4\n\
             [[package]]\nname = \"a\"\nversion = \"0.1.0\"\ndependencies = [\"b 1.0.0\"]\n\
             [[package]]\nname = \"b\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\n\
             [[package]]\nname = \"b\"\nversion = \"2.0.0\"\nsource = \"registry+x\"\n",
        )
        .unwrap();
        assert_eq!(resolve(&lock.package, "b 2.0.0").unwrap().version, "2.0.0");
        assert_eq!(
            resolve(&lock.package, "b 1.0.0 (registry+x)")
                .unwrap()
                .version,
            "1.0.0"
        );
        assert!(resolve(&lock.package, "b 1.0.0 (git+y)").is_none());
        assert_eq!(resolve(&lock.package, "a").unwrap().name, "a");
    }
}
