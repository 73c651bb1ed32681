//! Services discovered from `services/<name>/service.toml`, `cargo xtask
//! affected` over real git repositories holding small real workspaces, and
//! `cargo xtask new-service` scaffolding into a copy of this workspace.

mod support;

use std::path::Path;

use support::{TempDir, assert_fails, assert_ok, git, stdout, workspace_root, xtask_in};

/// `(path, text)` pairs written under `root`.
fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn library(name: &str, deps: &str) -> String {
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [dependencies]\n{deps}"
    )
}

fn declaration(image: &str, chart: &str) -> String {
    format!(
        "image = \"{image}\"\nchart = \"{chart}\"\nport = 8080\nhealth-path = \"/healthz\"\n\
         ready-path = \"/readyz\"\nvalues-file = \"{image}.yaml\"\n"
    )
}

/// A git repository holding a workspace of two services and three shared crates:
/// alpha → crates/common → crates/base; beta has crates/testkit as a dev-dependency;
/// xtask is the pipeline. Returns the directory and the first commit.
fn two_services() -> (TempDir, String) {
    let dir = TempDir::new("affected");
    let root = dir.path();
    let alpha = library("alpha", "common = { path = \"../../crates/common\" }\n");
    let beta = format!(
        "{}\n[dev-dependencies]\ntestkit = {{ path = \"../../crates/testkit\" }}\n",
        library("beta", "")
    );
    let (alpha_toml, beta_toml) = (
        declaration("alpha", "charts/alpha"),
        declaration("beta", "charts/beta"),
    );
    let common = library("common", "base = { path = \"../base\" }\n");
    write(
        root,
        &[
            (
                "Cargo.toml",
                "[workspace]\nresolver = \"3\"\nmembers = [\"xtask\", \"services/alpha\", \
                 \"services/beta\", \"crates/common\", \"crates/base\", \"crates/testkit\"]\n",
            ),
            ("Cargo.lock", "version = 4\n"),
            ("README.md", "# a workspace\n"),
            ("services/alpha/Cargo.toml", &alpha),
            ("services/alpha/service.toml", &alpha_toml),
            ("services/alpha/src/main.rs", "fn main() {}\n"),
            ("services/beta/Cargo.toml", &beta),
            ("services/beta/service.toml", &beta_toml),
            ("services/beta/src/main.rs", "fn main() {}\n"),
            ("crates/common/Cargo.toml", &common),
            ("crates/common/src/lib.rs", "\n"),
            ("crates/base/Cargo.toml", &library("base", "")),
            ("crates/base/src/lib.rs", "\n"),
            ("crates/testkit/Cargo.toml", &library("testkit", "")),
            ("crates/testkit/src/lib.rs", "\n"),
            ("xtask/Cargo.toml", &library("xtask", "")),
            ("xtask/src/main.rs", "fn main() {}\n"),
            ("charts/alpha/Chart.yaml", "name: alpha\n"),
            ("charts/beta/Chart.yaml", "name: beta\n"),
            ("gitops/values/prod/alpha.yaml", "image: {}\n"),
            ("gitops/values/prod/beta.yaml", "image: {}\n"),
        ],
    );
    git(root, &["init", "--quiet", "--initial-branch=main"]);
    git(root, &["add", "-A"]);
    git(root, &["commit", "--quiet", "-m", "a workspace"]);
    let base = git(root, &["rev-parse", "HEAD"]);
    (dir, base)
}

/// Commits `files` and runs `affected --base <base>` in `root`; its JSON report.
fn affected_after(root: &Path, base: &str, files: &[(&str, &str)]) -> serde_json::Value {
    write(root, files);
    git(root, &["add", "-A"]);
    git(root, &["commit", "--quiet", "-m", "a change"]);
    let output = xtask_in(root, &["affected", "--base", base, "--json"], &[]);
    assert_ok(&output);
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// Each service's reasons in a report (empty when not affected).
fn reasons(report: &serde_json::Value, service: &str) -> Vec<String> {
    let decision = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["service"] == service)
        .unwrap_or_else(|| panic!("{service} is not in {report:#}"));
    assert_eq!(
        decision["affected"],
        !decision["reasons"].as_array().unwrap().is_empty()
    );
    serde_json::from_value(decision["reasons"].clone()).unwrap()
}

#[test]
fn a_change_in_a_service_affects_that_service_only() {
    let (dir, base) = two_services();
    let report = affected_after(
        dir.path(),
        &base,
        &[("services/alpha/src/main.rs", "fn main() { }\n")],
    );
    assert_eq!(
        reasons(&report, "alpha"),
        ["services/alpha/src/main.rs changed"]
    );
    assert!(reasons(&report, "beta").is_empty());
    assert_eq!(report["affected"], serde_json::json!(["alpha"]));
}

#[test]
fn a_shared_crate_affects_its_dependents_directly_and_transitively() {
    let (dir, base) = two_services();
    let report = affected_after(dir.path(), &base, &[("crates/common/src/lib.rs", "// x\n")]);
    assert_eq!(
        reasons(&report, "alpha"),
        ["depends on crates/common (changed)"]
    );
    assert!(reasons(&report, "beta").is_empty());

    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    let report = affected_after(dir.path(), &base, &[("crates/base/src/lib.rs", "// y\n")]);
    assert_eq!(
        reasons(&report, "alpha"),
        ["depends on crates/base through crates/common (changed)"]
    );
    assert!(reasons(&report, "beta").is_empty());

    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    let report = affected_after(
        dir.path(),
        &base,
        &[("crates/testkit/src/lib.rs", "// z\n")],
    );
    assert_eq!(
        reasons(&report, "beta"),
        ["depends on crates/testkit (changed)"],
        "a dev-dependency changes the service's tests"
    );
    assert!(reasons(&report, "alpha").is_empty());
}

#[test]
fn the_lock_file_toolchain_and_cargo_config_affect_every_service() {
    for file in [
        "Cargo.lock",
        "rust-toolchain.toml",
        ".cargo/config.toml",
        "Dockerfile",
    ] {
        let (dir, base) = two_services();
        let report = affected_after(dir.path(), &base, &[(file, "# changed\n")]);
        let expected = [format!("{file} changed (every image is built from it)")];
        assert_eq!(reasons(&report, "alpha"), expected);
        assert_eq!(reasons(&report, "beta"), expected);
    }
}

#[test]
fn a_services_chart_or_values_affect_that_service() {
    let (dir, base) = two_services();
    let report = affected_after(
        dir.path(),
        &base,
        &[(
            "charts/beta/templates/deployment.yaml",
            "kind: Deployment\n",
        )],
    );
    assert_eq!(
        reasons(&report, "beta"),
        ["charts/beta/templates/deployment.yaml changed (how it is deployed)"]
    );
    assert!(reasons(&report, "alpha").is_empty());

    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    let report = affected_after(
        dir.path(),
        &base,
        &[("gitops/values/prod/alpha.yaml", "image: {tag: x}\n")],
    );
    assert_eq!(
        reasons(&report, "alpha"),
        ["gitops/values/prod/alpha.yaml changed (how it is deployed)"]
    );
    assert!(reasons(&report, "beta").is_empty());
}

#[test]
fn the_pipeline_and_docs_affect_no_service_and_are_listed() {
    let (dir, base) = two_services();
    let report = affected_after(
        dir.path(),
        &base,
        &[
            ("xtask/src/main.rs", "fn main() { }\n"),
            ("README.md", "# changed\n"),
        ],
    );
    assert_eq!(report["affected"], serde_json::json!([]));
    assert_eq!(report["pipeline"], serde_json::json!(["xtask/src/main.rs"]));
    assert_eq!(report["unclaimed"], serde_json::json!(["README.md"]));

    // The image-assembling parts of xtask are not just pipeline.
    let base = git(dir.path(), &["rev-parse", "HEAD"]);
    let report = affected_after(
        dir.path(),
        &base,
        &[("xtask/src/parts/oci.rs", "// layers\n")],
    );
    assert_eq!(report["affected"], serde_json::json!(["alpha", "beta"]));
}

#[test]
fn the_text_report_gives_each_decision_with_its_reason() {
    let (dir, base) = two_services();
    write(
        dir.path(),
        &[
            ("crates/common/src/lib.rs", "// x\n"),
            ("services/alpha/src/main.rs", "fn main() { }\n"),
        ],
    );
    git(dir.path(), &["commit", "--quiet", "-am", "two changes"]);
    let output = xtask_in(dir.path(), &["affected", "--base", &base], &[]);
    assert_ok(&output);
    let text = stdout(&output);
    assert!(
        text.contains("alpha: services/alpha/src/main.rs changed\n"),
        "{text}"
    );
    assert!(
        text.contains("also: depends on crates/common (changed)\n"),
        "{text}"
    );
    assert!(text.contains("beta: not affected\n"), "{text}");
    assert!(text.contains("1 of 2 services affected"), "{text}");
}

#[test]
fn the_build_graph_is_the_head_commits_not_the_working_trees() {
    let (dir, base) = two_services();
    // beta starts depending on common in the commit; the working tree then drops it again.
    let beta = library("beta", "common = { path = \"../../crates/common\" }\n");
    write(
        dir.path(),
        &[
            ("services/beta/Cargo.toml", &beta),
            ("crates/common/src/lib.rs", "// x\n"),
        ],
    );
    git(
        dir.path(),
        &["commit", "--quiet", "-am", "beta uses common"],
    );
    write(
        dir.path(),
        &[("services/beta/Cargo.toml", &library("beta", ""))],
    );
    let output = xtask_in(
        dir.path(),
        &["affected", "--base", &base, "--head", "HEAD", "--json"],
        &[],
    );
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        reasons(&report, "beta"),
        [
            "services/beta/Cargo.toml changed",
            "depends on crates/common (changed)"
        ]
    );
}

#[test]
fn bad_revisions_are_refused_with_the_fix() {
    let (dir, base) = two_services();
    let output = xtask_in(dir.path(), &["affected", "--base=--output=x"], &[]);
    let message = assert_fails(&output);
    assert!(message.contains("begins with '-'"), "{message}");
    assert!(!dir.path().join("x").exists());

    let output = xtask_in(dir.path(), &["affected", "--base", "no-such-branch"], &[]);
    let message = assert_fails(&output);
    assert!(
        message.contains("--base no-such-branch: pass the commit the range starts from"),
        "{message}"
    );

    let output = xtask_in(dir.path(), &["affected", "--base", &base, "--head=-x"], &[]);
    let message = assert_fails(&output);
    assert!(message.contains("begins with '-'"), "{message}");
}

#[test]
fn a_declaration_with_an_unknown_key_or_outside_the_workspace_is_refused() {
    let (dir, base) = two_services();
    let bad = format!(
        "{}healthpath = \"/h\"\n",
        declaration("alpha", "charts/alpha")
    );
    write(dir.path(), &[("services/alpha/service.toml", &bad)]);
    git(dir.path(), &["commit", "--quiet", "-am", "typo"]);
    let output = xtask_in(dir.path(), &["affected", "--base", &base], &[]);
    let message = assert_fails(&output);
    assert!(message.contains("services/alpha/service.toml"), "{message}");
    assert!(message.contains("healthpath"), "{message}");

    let (dir, base) = two_services();
    write(
        dir.path(),
        &[
            ("services/gamma/Cargo.toml", &library("gamma", "")),
            ("services/gamma/src/main.rs", "fn main() {}\n"),
            (
                "services/gamma/service.toml",
                &declaration("gamma", "charts/alpha"),
            ),
        ],
    );
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "--quiet", "-m", "not a member"]);
    let output = xtask_in(dir.path(), &["affected", "--base", &base], &[]);
    let message = assert_fails(&output);
    assert!(
        message.contains(
            "services/gamma is not a workspace member: add \"services/gamma\" to [workspace] members"
        ),
        "{message}"
    );
}

#[test]
fn this_workspace_declares_items_api_as_the_service_demo_image() {
    let output = xtask_in(
        &workspace_root(),
        &["affected", "--base", "HEAD", "--head", "HEAD", "--json"],
        &[],
    );
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["affected"], serde_json::json!([]));
    let services = report["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{report:#}");
    assert_eq!(services[0]["service"], "items-api");
    assert_eq!(services[0]["image"], "service-demo");
}
