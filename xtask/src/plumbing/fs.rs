//! Files: the YAML files of a folder, and their documents.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

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
