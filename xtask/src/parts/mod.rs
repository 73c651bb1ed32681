//! Parts shared by the commands; commands never call each other's internals.

pub mod argocd;
pub mod argocd_types;
pub mod environments;
pub mod gates;
pub mod github;
pub mod gitops;
pub mod manifests;
pub mod oci;
pub mod registry;
pub mod repository_checks;
pub mod service;
pub mod tags;
pub mod tools;
pub mod values;
pub mod workspace;

use anyhow::{Context, Result};

/// The two repositories a pipeline command works with.
pub struct Workspace {
    pub service: service::ServiceRepo,
    pub gitops: gitops::GitopsRepo,
}

impl Workspace {
    pub fn open(options: &gitops::GitopsOptions) -> Result<Self> {
        let service = service::ServiceRepo::discover(&options.service_repo)?;
        let gitops = gitops::GitopsRepo::open(&service.root(), options)?;
        Ok(Self { service, gitops })
    }
}

/// A unified diff of one file, `a/<path>` → `b/<path>`, as `--dry-run`s print.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

/// The `.yaml`/`.yml` files under `dir`, recursively, sorted.
pub fn yaml_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Where `program` is on PATH, if it is installed.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
