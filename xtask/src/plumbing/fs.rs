//! Files: scratch directories, atomic writes, the YAML files of a folder and
//! their documents.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// A fresh directory inside `parent` (created if missing), named `prefix`
/// and a random tail so no two processes share one; removed when dropped.
/// Built there, a result is moved into place with one rename.
pub fn temp_dir_in(parent: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch directory in {}", parent.display()))
}

/// A fresh directory in the system's temporary folder, removed when dropped.
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    temp_dir_in(&std::env::temp_dir(), prefix)
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into
/// place: a reader sees the old file or the new one, never half of it, and a
/// failure leaves no temporary file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".xtask-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temporary file beside {}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// The `.yaml`/`.yml` files under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// The YAML documents of one file, as JSON values.
pub fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    yaml_serde::from_str(&text).map_err(|e| format!("{}: not valid YAML: {e}", path.display()))
}

/// `(relative path, document)` of the YAML files directly in `dir` (not below it).
pub fn yaml_in(root: &Path, dir: &str, found: &mut Vec<String>) -> Vec<(String, Value)> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        found.push(format!("{dir}: missing"));
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    let mut docs = Vec::new();
    for name in names {
        let file = format!("{dir}/{name}");
        match read_yaml(&root.join(&file)) {
            Ok(doc) => docs.push((file, doc)),
            Err(problem) => found.push(problem),
        }
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_nothing_beside_it() {
        let dir = temp_dir("xtask-fs-test-").unwrap();
        let path = dir.path().join("index.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["index.json"]);
        let missing = dir.path().join("no/such/dir/file");
        assert!(write_atomic(&missing, b"x").is_err());
    }

    #[test]
    fn temp_dirs_are_distinct_and_removed_when_dropped() {
        let parent = temp_dir("xtask-fs-test-").unwrap();
        let nested = parent.path().join("made/here");
        let (a, b) = (
            temp_dir_in(&nested, "scratch-").unwrap(),
            temp_dir_in(&nested, "scratch-").unwrap(),
        );
        assert_ne!(a.path(), b.path());
        assert!(
            a.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("scratch-")
        );
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
    }
}
