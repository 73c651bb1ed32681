//! Tidy tests: the code map's invariants (xtask/src/parts/mod.rs), held by
//! reading the source, as rust-analyzer's tidy tests hold theirs.

use std::path::{Path, PathBuf};

/// A function longer than this needs a `// long: <why>` comment in its first lines.
const MAX_FUNCTION_LINES: usize = 60;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`, sorted.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(src()).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The command modules: `mod x;` in main.rs, except `parts`.
fn commands() -> Vec<String> {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    main.lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .filter(|m| *m != "parts")
        .map(str::to_owned)
        .collect()
}

/// The part of a file before its `#[cfg(test)]` module.
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap()
}

#[test]
fn commands_never_import_commands() {
    let commands = commands();
    assert!(
        commands.len() > 10,
        "main.rs lists its commands as `mod x;`: {commands:?}"
    );
    let mut found = Vec::new();
    for (file, text) in rust_files(&src()) {
        let this = file.trim_end_matches(".rs");
        for command in commands.iter().filter(|c| *c != this) {
            for pattern in [
                format!("crate::{command}::"),
                format!("crate::{command};"),
                format!("crate::{{{command}"),
            ] {
                if text.contains(&pattern) {
                    found.push(format!(
                        "{file} uses {pattern} (move what it needs to parts/)"
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "commands share parts, never each other:\n{}",
        found.join("\n")
    );
}

/// Files allowed to contain `needle`, and who else does.
fn only_in(needle: &str, allowed: &[&str]) -> Vec<String> {
    rust_files(&src())
        .into_iter()
        .filter(|(file, text)| non_test(text).contains(needle) && !allowed.contains(&file.as_str()))
        .map(|(file, _)| format!("{file} contains {needle:?}; only {allowed:?} may"))
        .collect()
}

#[test]
fn only_promotion_writes_an_image_into_values_or_a_promotion_record() {
    let mut found = only_in("values::set(", &["parts/promotion.rs"]);
    found.extend(only_in("Image-Tag", &["parts/promotion.rs"]));
    found.extend(only_in("Source-Commit", &["parts/promotion.rs"]));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_the_registry_part_speaks_oci() {
    let found = only_in("oci_client", &["parts/registry.rs", "parts/oci.rs"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_gitops_commits_to_the_gitops_branch() {
    // The branch is written by building commits from objects and pushing them;
    // both live in parts/gitops.rs (commands describe changes as `Decision`s).
    let mut found = only_in("write_object(", &["parts/gitops.rs"]);
    found.extend(only_in("write_blob(", &["parts/gitops.rs"]));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// `(file, fn line, length)` of every function over the limit with no reason.
fn long_functions(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, text) in files {
        let lines: Vec<&str> = non_test(text).lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let indent = &line[..line.len() - code.len()];
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "async fn ",
                "pub async fn ",
            ]
            .iter()
            .any(|p| code.starts_with(p));
            if !is_fn || code.ends_with(';') {
                continue;
            }
            // rustfmt puts a function's closing brace at its own indentation.
            let close = format!("{indent}}}");
            let Some(len) = lines[start..].iter().position(|l| *l == close) else {
                continue;
            };
            let reason = lines[start.saturating_sub(3)..(start + 4).min(lines.len())]
                .iter()
                .any(|l| l.trim_start().starts_with("// long:"));
            if len + 1 > MAX_FUNCTION_LINES && !reason {
                found.push(format!("{file}:{} {} ({} lines)", start + 1, code, len + 1));
            }
        }
    }
    found
}

#[test]
fn functions_are_short_or_say_why_not() {
    let found = long_functions(&rust_files(&src()));
    assert!(
        found.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: split them into steps, or write `// long: <why>` above:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_length_rule_sees_a_long_function_and_its_reason() {
    let body = "    let x = 1;\n".repeat(MAX_FUNCTION_LINES);
    let long = format!("fn f() {{\n{body}}}\n");
    let found = long_functions(&[("a.rs".into(), long.clone())]);
    assert_eq!(found.len(), 1, "{found:?}");
    let excused = format!("// long: one table, read top to bottom\n{long}");
    assert!(long_functions(&[("a.rs".into(), excused)]).is_empty());
    let short = format!("fn f() {{\n{}}}\n", "    let x = 1;\n".repeat(10));
    assert!(long_functions(&[("a.rs".into(), short)]).is_empty());
}

#[test]
fn the_code_map_names_every_part() {
    let map = std::fs::read_to_string(src().join("parts/mod.rs")).unwrap();
    let doc: String = map
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<&str> = map
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .filter(|part| !doc.contains(&format!("`{part}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "parts/mod.rs's code map does not describe {missing:?}"
    );
}

/// What `gate keygen` and Terraform leave in a checkout by hand (private keys, the cluster's state)
/// can never be committed by `git add --all`: git ignores every one of them.
#[test]
fn private_keys_and_terraform_state_are_ignored_by_git() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for path in [
        "keys/gate.key",
        "keys/gate.pub",
        "image-keys/gate.key",
        "gitops_key",
        "deploy.key",
        "terraform/terraform.tfstate",
        "terraform/terraform.tfstate.backup",
        "terraform/.terraform/providers/x",
    ] {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "--quiet", "--no-index", path])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(ignored.success(), "{path} is not ignored by .gitignore");
    }
}
