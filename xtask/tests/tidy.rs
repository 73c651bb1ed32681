//! Tidy tests: the layers' invariants (xtask/src/lib.rs, each layer's mod.rs,
//! ARCHITECTURE.md), held by
//! reading the source, as rust-analyzer's tidy tests hold theirs.

use std::path::{Path, PathBuf};

/// A function longer than this needs a `// long: <why>` comment in its first lines.
const MAX_FUNCTION_LINES: usize = 60;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `root`, relative to it, sorted.
fn rust_files(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The layers, lowest first: a module imports only from its own layer or lower ones.
const LAYERS: [&str; 4] = ["plumbing", "domain", "checks", "commands"];

/// The layer a file (`domain/gitops.rs`) belongs to, as its index in `LAYERS`.
fn layer_of(file: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|layer| file.starts_with(&format!("{layer}/")))
}

/// The part of a file before its `#[cfg(test)]` module.
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap()
}

/// Every `crate::<layer>::<module>` (or `crate::<layer>::{…}`) a text names:
/// `(layer index, module)`, the module empty for an item of the layer's `mod.rs`.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, layer) in LAYERS.iter().enumerate() {
        let prefix = format!("crate::{layer}::");
        for (at, _) in text.match_indices(&prefix) {
            let rest = &text[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let is_module = name.chars().next().is_some_and(|c| c.is_lowercase())
                && rest[name.len()..].starts_with("::")
                || rest[name.len()..].starts_with(';') && name.chars().all(|c| !c.is_uppercase());
            found.push((index, if is_module { name } else { String::new() }));
        }
    }
    found
}

#[test]
fn imports_only_go_down_the_layers() {
    let files = rust_files(&src());
    assert!(files.iter().filter(|(f, _)| layer_of(f) == Some(3)).count() > 10);
    let mut found = Vec::new();
    for (file, text) in &files {
        let Some(own) = layer_of(file) else { continue };
        for (layer, module) in uses(text) {
            if layer > own {
                found.push(format!("{file} uses crate::{}::{module}", LAYERS[layer]));
            }
        }
    }
    assert!(
        found.is_empty(),
        "plumbing < domain < checks < commands: a module uses only its own layer and those below \
         (move what both need down a layer):\n{}",
        found.join("\n")
    );
}

#[test]
fn commands_never_import_commands() {
    let mut found = Vec::new();
    for (file, text) in rust_files(&src()) {
        if layer_of(&file) != Some(3) {
            continue;
        }
        let sibling = non_test(&text)
            .lines()
            .any(|l| l.contains("super::") && !l.contains("super::*"));
        if text.contains("crate::commands::") || sibling {
            found.push(format!(
                "{file} uses another command (move what it needs down a layer)"
            ));
        }
    }
    assert!(
        found.is_empty(),
        "commands share the layers below, never each other:\n{}",
        found.join("\n")
    );
}

/// `module -> modules it uses` within one layer (`domain/gitops.rs` is `gitops`).
fn graph(layer: usize) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut graph = std::collections::BTreeMap::new();
    for (file, text) in rust_files(&src()) {
        if layer_of(&file) != Some(layer) || file.ends_with("mod.rs") {
            continue;
        }
        let name = file
            .split('/')
            .nth(1)
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let mut used: Vec<String> = uses(non_test(&text))
            .into_iter()
            .filter(|(l, m)| *l == layer && !m.is_empty() && *m != name)
            .map(|(_, m)| m)
            .collect();
        used.sort();
        used.dedup();
        graph.insert(name, used);
    }
    graph
}

/// A cycle in `graph`, as the modules on it, if there is one.
fn cycle(graph: &std::collections::BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &std::collections::BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_cycles_within_a_layer() {
    for (index, layer) in LAYERS.iter().enumerate() {
        let graph = graph(index);
        assert!(!graph.is_empty(), "{layer} has modules");
        if let Some(cycle) = cycle(&graph) {
            panic!(
                "{layer}: {} import each other in a cycle; move what they share into one of them or down a layer",
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn the_cycle_rule_sees_a_cycle() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().push(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])).is_some());
    assert!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_none());
    let text = "use crate::domain::gitops::Snapshot;\nuse crate::plumbing::{yaml, text};";
    assert_eq!(uses(text), [(0, String::new()), (1, "gitops".to_owned())]);
}

#[test]
fn tests_use_the_library_not_copies_of_its_files() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let found: Vec<String> = rust_files(&tests)
        .into_iter()
        .filter(|(_, text)| text.contains("#[path = \"../../src"))
        .map(|(file, _)| file)
        .collect();
    assert!(
        found.is_empty(),
        "use xtask::… instead of #[path] into src/: {found:?}"
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
    let mut found = only_in("yaml::set(", &["domain/promotion.rs"]);
    found.extend(only_in("Image-Tag", &["domain/promotion.rs"]));
    found.extend(only_in("Source-Commit", &["domain/promotion.rs"]));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn yaml_is_edited_only_through_plumbing_yaml() {
    // Splicing lines (a `publicKeys: |-` block, a list's last element) is how YAML got edited four
    // ways; plumbing::yaml rewrites values in place instead. The one line mapper left is for files
    // that are not YAML (CODEOWNERS), in plumbing/text.rs.
    let found = only_in("split_inclusive(", &["plumbing/text.rs"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_the_registry_part_speaks_oci() {
    let found = only_in("oci_client", &["domain/registry.rs", "domain/oci.rs"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn only_gitops_commits_to_the_gitops_branch() {
    // The branch is written by building commits from objects and pushing them;
    // both live in domain/gitops.rs (commands describe changes as `Decision`s).
    let mut found = only_in("write_object(", &["domain/gitops.rs"]);
    found.extend(only_in("write_blob(", &["domain/gitops.rs"]));
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
fn each_layers_code_map_names_every_module() {
    for layer in ["plumbing", "domain", "checks"] {
        let map = std::fs::read_to_string(src().join(layer).join("mod.rs")).unwrap();
        let doc: String = map
            .lines()
            .filter(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let missing: Vec<&str> = map
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
            .filter(|module| !doc.contains(&format!("`{module}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "{layer}/mod.rs's code map does not describe {missing:?}"
        );
    }
}

/// ARCHITECTURE.md names every module of every layer, so a reader finds a
/// feature's file from it, and it cannot fall behind the tree.
#[test]
fn the_architecture_document_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for (file, _) in rust_files(&src()) {
        let Some(layer) = layer_of(&file) else {
            continue;
        };
        if file.ends_with("mod.rs") || file.matches('/').count() > 1 {
            continue;
        }
        let module = file.split('/').nth(1).unwrap().trim_end_matches(".rs");
        if !doc.contains(&format!("`{module}`")) {
            missing.push(format!("{}/{module}", LAYERS[layer]));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name {missing:?}"
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

/// The line that leaves a module out of the cluster jobs' build (Cargo.toml's feature `full`, off
/// with `--no-default-features`), directly above its `pub mod` line.
const FULL_ONLY: &str = "#[cfg(feature = \"full\")]";

/// The modules the cluster jobs' build leaves out, as `layer/module`, or `layer` for a whole
/// layer (lib.rs): the `pub mod` lines with [`FULL_ONLY`] above them.
fn full_only_modules() -> std::collections::BTreeSet<String> {
    let mut gated = std::collections::BTreeSet::new();
    for (file, text) in rust_files(&src()) {
        let prefix = match file.strip_suffix("/mod.rs") {
            Some(layer) if LAYERS.contains(&layer) => format!("{layer}/"),
            _ if file == "lib.rs" => String::new(),
            _ => continue,
        };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            if pair[0].trim() == FULL_ONLY
                && let Some(module) = pair[1].strip_prefix("pub mod ")
            {
                gated.insert(format!("{prefix}{}", module.trim_end_matches(';')));
            }
        }
    }
    gated
}

/// Whether `layer/module` is left out of the cluster jobs' build, itself or its whole layer.
fn is_full_only(gated: &std::collections::BTreeSet<String>, layer: &str, module: &str) -> bool {
    gated.contains(layer) || gated.contains(&format!("{layer}/{module}"))
}

/// The cluster jobs' build leaves out whole modules, never part of one: the feature appears only
/// above a module's declaration (`pub mod x;` in a layer's mod.rs or lib.rs, `mod x;` for a child
/// such as `domain/github/secrets.rs`), and in main.rs (the subcommands and help).
#[test]
fn the_cluster_build_leaves_out_whole_modules_only() {
    let mut found = Vec::new();
    for (file, text) in rust_files(&src()) {
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let module_gate = line.trim() == FULL_ONLY
                && lines.get(at + 1).is_some_and(|l| {
                    (l.starts_with("pub mod ") || l.starts_with("mod ")) && l.ends_with(';')
                });
            let comment = line.trim_start().starts_with("//");
            if line.contains("feature = \"full\"") && !module_gate && !comment && file != "main.rs"
            {
                found.push(format!("{file}:{}: {}", at + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the feature `full` gates whole modules (`{FULL_ONLY}` above `pub mod` in the layer's \
         mod.rs, or above a child's `mod`), not code inside one; move that code into a module of its \
         own and gate it there:\n{}",
        found.join("\n")
    );
    assert!(
        full_only_modules().contains("checks"),
        "{:?}",
        full_only_modules()
    );
}

/// What the cluster jobs' build keeps never names a module it leaves out (`cargo clippy -p xtask
/// --no-default-features`, in `ci`, would fail; this names the module at once).
#[test]
fn the_cluster_build_uses_no_module_it_leaves_out() {
    let gated = full_only_modules();
    let mut found = Vec::new();
    for (file, text) in rust_files(&src()) {
        let Some(own) = layer_of(&file) else { continue };
        let module = file.split('/').nth(1).unwrap().trim_end_matches(".rs");
        if file.ends_with("mod.rs") && file.matches('/').count() == 1
            || is_full_only(&gated, LAYERS[own], module)
        {
            continue;
        }
        for (layer, used) in uses(non_test(&text)) {
            if !used.is_empty() && is_full_only(&gated, LAYERS[layer], &used) {
                found.push(format!("{file} uses crate::{}::{used}", LAYERS[layer]));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a module of the cluster jobs' build uses one only the full xtask has (keep that module \
         in the build: remove `{FULL_ONLY}` above it in its layer's mod.rs, or move what is used):\n{}",
        found.join("\n")
    );
}

/// ARCHITECTURE.md's paragraph on the cluster jobs' build names exactly its commands, ci lints that build,
/// and `full` is the default, so `cargo xtask` in a checkout has every command.
#[test]
fn the_cluster_build_is_documented_linted_and_not_the_default() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let (_, from) = doc.split_once("\n**The cluster jobs' build**").expect(
        "ARCHITECTURE.md has a paragraph starting **The cluster jobs' build** naming its commands",
    );
    let line = from.split("\n\n").next().unwrap();
    let gated = full_only_modules();
    let commands = std::fs::read_to_string(src().join("commands/mod.rs")).unwrap();
    let mut wrong = Vec::new();
    for module in commands.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let module = module.trim_end_matches(';');
        let named = line.contains(&format!("`{module}`"));
        if named == is_full_only(&gated, "commands", module) {
            wrong.push(format!("{module} (named: {named})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's **The cluster jobs' build** paragraph names the commands that build has, and \
         only those: {wrong:?}"
    );
    let ci = std::fs::read_to_string(src().join("commands/ci.rs")).unwrap();
    assert!(ci.contains("cargo clippy -p xtask --no-default-features --locked -- -D warnings"));
    let manifest = std::fs::read_to_string(src().join("../Cargo.toml")).unwrap();
    assert!(
        manifest.contains("\ndefault = [\"full\"]\n"),
        "xtask's default feature is `full`"
    );
}
