//! Files: scratch directories, atomic writes, the YAML files of a folder and
//! every document they hold (one reader for every check that reads a folder).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::plumbing::yaml::split_documents;

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

/// `path` as a report names it: relative to `root` when it is inside it.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
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

/// How far below a folder [`yaml_documents`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The files directly in it.
    Folder,
    /// Every file below it.
    Tree,
}

/// A YAML file read whole: its path from the root, and every document it holds.
pub type YamlFile = (String, Vec<Value>);

/// Every document (empty ones skipped) of every `.yaml`/`.yml` file in `dir`
/// (a path from `root`), by file and sorted; and a problem naming each file
/// that cannot be read or is not YAML, or the folder if it is missing. A file
/// of several documents keeps them all: a caller that allows one per file says
/// so itself, so no document escapes its checks.
pub fn yaml_documents(root: &Path, dir: &str, depth: Depth) -> (Vec<YamlFile>, Vec<String>) {
    let folder = root.join(dir);
    if !folder.is_dir() {
        return (Vec::new(), vec![format!("{dir}: missing")]);
    }
    let files = match yaml_files(&folder) {
        Ok(files) => files,
        Err(error) => return (Vec::new(), vec![format!("{dir}: {error:#}")]),
    };
    let mut read = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        if depth == Depth::Folder && file.parent() != Some(folder.as_path()) {
            continue;
        }
        let name = relative(root, &file);
        let documents = std::fs::read_to_string(&file)
            .map_err(|e| format!("{name}: {e}"))
            .and_then(|text| {
                split_documents(&text).map_err(|e| format!("{name}: not valid YAML: {e:#}"))
            });
        match documents {
            Ok(documents) => read.push((name, documents)),
            Err(problem) => problems.push(problem),
        }
    }
    (read, problems)
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
    fn every_document_of_every_file_is_read_and_each_problem_named() {
        let root = temp_dir("xtask-fs-test-").unwrap();
        let dir = root.path().join("d");
        std::fs::create_dir_all(dir.join("below")).unwrap();
        std::fs::write(dir.join("two.yaml"), "a: 1\n---\nb: 2\n---\n").unwrap();
        std::fs::write(dir.join("bad.yml"), "a: [\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "a: 1\n").unwrap();
        std::fs::write(dir.join("below/deep.yaml"), "c: 3\n").unwrap();
        let (files, problems) = yaml_documents(root.path(), "d", Depth::Folder);
        assert_eq!(
            files,
            [(
                "d/two.yaml".to_owned(),
                vec![serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
            )]
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("d/bad.yml: not valid YAML"),
            "{problems:?}"
        );
        let (files, _) = yaml_documents(root.path(), "d", Depth::Tree);
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["d/below/deep.yaml", "d/two.yaml"]);
        let (files, problems) = yaml_documents(root.path(), "nowhere", Depth::Folder);
        assert!(files.is_empty());
        assert_eq!(problems, ["nowhere: missing"]);
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
