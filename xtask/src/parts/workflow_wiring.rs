//! The workflows' wiring that a fork following the README relies on (issue
//! 15's faults, each refused by a test below), checked on the files:
//!
//! - a job that talks to Argo CD or a deployed URL (`ARGOCD_*`, `smoke`,
//!   `preprod-test`, `argocd`) runs on the cluster's runner, [`CLUSTER_RUNNER`];
//! - such a step is never skipped by an `if:` on a variable: without
//!   `PREPROD_URL` no gate would be recorded and every release refused;
//! - `preview deploy` runs only for pull requests of this repository (the
//!   job's `if:`) that carry a label (`--label`, checked with `GITHUB_TOKEN`);
//! - the preview deploy and cleanup share one concurrency group per pull
//!   request, `preview-<N>`;
//! - `rust-toolchain.toml` pins the toolchain, clippy, rustfmt and both musl
//!   targets, and every job that builds images installs them and musl-gcc.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::trust_policy::yaml_in;

/// Where cluster-facing jobs run: the tutorial's `[self-hosted, kind]`, or the
/// labels in the repository variable `CLUSTER_RUNNER` (a JSON array).
pub const CLUSTER_RUNNER: &str =
    r#"${{ fromJSON(vars.CLUSTER_RUNNER || '["self-hosted","kind"]') }}"#;
/// Commands that reach Argo CD or a deployed service.
const CLUSTER_COMMANDS: [&str; 3] = [
    "cargo xtask smoke",
    "cargo xtask preprod-test",
    "cargo xtask argocd",
];
/// The Rust targets of the images the README describes.
pub const IMAGE_TARGETS: [&str; 2] = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];
const TOOLCHAIN_FILE: &str = "rust-toolchain.toml";

/// Every wiring problem of the workflows and toolchain file under `root`.
pub fn problems(root: &Path) -> Vec<String> {
    let mut found = toolchain_problems(root);
    let mut preview_groups = BTreeMap::new();
    for (file, doc) in yaml_in(root, ".github/workflows", &mut found) {
        for (name, job) in doc["jobs"].as_object().into_iter().flatten() {
            let at = format!("{file}: job {name}");
            found.extend(runner_problems(&at, job));
            found.extend(silent_skip_problems(&at, job));
            found.extend(image_toolchain_problems(&at, job));
            found.extend(preview_filter_problems(&at, job));
            if runs(job, "cargo xtask preview ") {
                let group = job["concurrency"]["group"]
                    .as_str()
                    .or_else(|| doc["concurrency"]["group"].as_str())
                    .unwrap_or_default();
                preview_groups.insert(at, group.to_owned());
            }
        }
    }
    found.extend(concurrency_problems(&preview_groups));
    found
}

fn steps(job: &Value) -> Vec<Value> {
    job["steps"].as_array().cloned().unwrap_or_default()
}

fn run_of(step: &Value) -> &str {
    step["run"].as_str().unwrap_or_default()
}

/// Whether a step of `job` runs `command`.
fn runs(job: &Value, command: &str) -> bool {
    steps(job).iter().any(|s| run_of(s).contains(command))
}

fn without_spaces(text: &str) -> String {
    text.split_whitespace().collect()
}

fn runner_problems(at: &str, job: &Value) -> Vec<String> {
    let cluster =
        job.to_string().contains("ARGOCD_") || CLUSTER_COMMANDS.iter().any(|c| runs(job, c));
    let runs_on = match &job["runs-on"] {
        Value::String(label) => label.clone(),
        other => other.to_string(),
    };
    if !cluster || without_spaces(&runs_on) == without_spaces(CLUSTER_RUNNER) {
        return Vec::new();
    }
    vec![format!(
        "{at}: talks to Argo CD or a deployed URL but runs on {runs_on}, which cannot reach the kind cluster; set `runs-on: {CLUSTER_RUNNER}`"
    )]
}

fn silent_skip_problems(at: &str, job: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let on_variable = |condition: &Value| condition.as_str().is_some_and(|c| c.contains("vars."));
    let gate_job = ["cargo xtask preprod-test", "cargo xtask argocd"]
        .iter()
        .any(|c| runs(job, c));
    if gate_job && on_variable(&job["if"]) {
        found.push(format!(
            "{at}: skipped by `if: {}`: an unset variable then skips the preprod gate silently and every release is refused; remove it (the command names what is missing; `cargo xtask doctor` lists it)",
            job["if"].as_str().unwrap_or_default()
        ));
    }
    for step in steps(job) {
        let gate_step = ["cargo xtask preprod-test", "cargo xtask argocd"]
            .iter()
            .any(|c| run_of(&step).contains(c));
        if gate_step && on_variable(&step["if"]) {
            found.push(format!(
                "{at}, step {:?}: skipped by `if: {}`: without the variable no gate is recorded and every release is refused; remove the `if:` (the command names what is missing; `cargo xtask doctor` lists it)",
                step["name"].as_str().unwrap_or_default(),
                step["if"].as_str().unwrap_or_default()
            ));
        }
    }
    found
}

fn image_toolchain_problems(at: &str, job: &Value) -> Vec<String> {
    let steps = steps(job);
    let Some(build) = steps
        .iter()
        .position(|s| run_of(s).contains("cargo xtask image build"))
    else {
        return Vec::new();
    };
    let installs = steps[..build].iter().any(|s| {
        let run = run_of(s);
        run.contains("musl-tools")
            && run.contains("rustup target add")
            && IMAGE_TARGETS.iter().all(|t| run.contains(t))
    });
    if installs {
        return Vec::new();
    }
    vec![format!(
        "{at}: builds the image without installing musl-tools and the targets {} first, so Actions would ship static-glibc amd64 only; add a step `sudo apt-get install -y musl-tools gcc-aarch64-linux-gnu` and `rustup target add {}` before the build",
        IMAGE_TARGETS.join(", "),
        IMAGE_TARGETS.join(" ")
    )]
}

fn preview_filter_problems(at: &str, job: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for step in steps(job) {
        if !run_of(&step).contains("cargo xtask preview deploy") {
            continue;
        }
        if !run_of(&step).contains("--label") || step["env"]["GITHUB_TOKEN"].is_null() {
            found.push(format!(
                "{at}: `preview deploy` without `--label preview` and GITHUB_TOKEN in its env: every pull request would get a preview; pass both (deploy then asks GitHub for the label, the state and the head)"
            ));
        }
    }
    let from_here = job["if"]
        .as_str()
        .is_some_and(|c| without_spaces(c).contains("full_name==github.repository"));
    if runs(job, "cargo xtask preview deploy") && !from_here {
        found.push(format!(
            "{at}: deploys previews for forks' pull requests too; its `if:` must require the head repository's full_name == github.repository"
        ));
    }
    found
}

/// The preview deploy, cleanup and gc jobs share one group per pull request.
fn concurrency_problems(groups: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    for (at, group) in groups {
        if !group.starts_with("preview-") || !group.contains("pull_request.number") {
            found.push(format!(
                "{at}: concurrency group {group:?}; a preview's deploy and cleanup must share `preview-${{{{ github.event.pull_request.number || … }}}}`, or a deploy finishing after the close re-creates the values file"
            ));
        }
    }
    let distinct: std::collections::BTreeSet<&String> = groups.values().collect();
    if distinct.len() > 1 {
        found.push(format!(
            ".github/workflows: the preview jobs are in different concurrency groups ({groups:?}); give them one, `preview-<N>`"
        ));
    }
    found
}

fn toolchain_problems(root: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(root.join(TOOLCHAIN_FILE)) else {
        return vec![format!(
            "{TOOLCHAIN_FILE}: missing; pin `channel`, components clippy and rustfmt, and targets {}",
            IMAGE_TARGETS.join(", ")
        )];
    };
    let mut wanted = vec!["channel", "clippy", "rustfmt"];
    wanted.extend(IMAGE_TARGETS);
    wanted
        .into_iter()
        .filter(|w| !text.contains(w))
        .map(|w| format!("{TOOLCHAIN_FILE}: no {w}; the images and CI need it pinned"))
        .collect()
}

#[cfg(test)]
mod tests {
    /// A copy of the workflows and rust-toolchain.toml (trust_policy's); each
    /// test reintroduces one fault.
    use crate::parts::trust_policy::tests::Copy;

    trait Refused {
        fn refused(&self, expected: &str);
    }

    impl Refused for Copy {
        fn refused(&self, expected: &str) {
            let problems = super::problems(self.0.path());
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "no problem mentions {expected:?}: {problems:#?}"
            );
        }
    }

    #[test]
    fn this_repositorys_workflows_are_wired() {
        assert_eq!(
            super::problems(Copy::new("wiring").0.path()),
            Vec::<String>::new()
        );
    }

    /// Fault 1: the cluster jobs on a hosted runner that cannot reach kind.
    #[test]
    fn a_cluster_job_back_on_a_hosted_runner_is_named() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                super::CLUSTER_RUNNER,
                "ubuntu-24.04",
            )
            .refused(
                "cd.yml: job preprod: talks to Argo CD or a deployed URL but runs on ubuntu-24.04",
            );
        Copy::new("wiring")
            .edit(
                ".github/workflows/release.yml",
                super::CLUSTER_RUNNER,
                "[self-hosted, linux]",
            )
            .refused("release.yml: job sync: talks to Argo CD");
    }

    /// Fault 4: previews for every pull request, forks included.
    #[test]
    fn previews_for_unlabelled_or_forked_pull_requests_are_refused() {
        Copy::new("wiring")
            .edit(".github/workflows/preview.yml", " --label preview", "")
            .refused("preview.yml: job deploy: `preview deploy` without `--label preview`");
        Copy::new("wiring")
            .edit(
                ".github/workflows/preview.yml",
                "\n        && github.event.pull_request.head.repo.full_name == github.repository)",
                ")",
            )
            .edit(
                ".github/workflows/preview.yml",
                "\n        && github.event.workflow_run.head_repository.full_name == github.repository)",
                ")",
            )
            .refused("preview.yml: job deploy: deploys previews for forks' pull requests too");
    }

    /// Fault 4: deploy and cleanup in different concurrency groups.
    #[test]
    fn preview_jobs_outside_one_group_per_pull_request_are_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/preview.yml",
                "group: preview-",
                "group: ci-pr-",
            )
            .refused("preview.yml: job cleanup: concurrency group \"ci-pr-");
        let copy = Copy::new("wiring");
        let preview = copy.0.path().join(".github/workflows/preview.yml");
        let text = std::fs::read_to_string(&preview).unwrap();
        let cleanup = text.replace("group: preview-", "group: cleanup-");
        std::fs::write(copy.0.path().join(".github/workflows/cleanup.yml"), cleanup).unwrap();
        copy.refused("the preview jobs are in different concurrency groups");
    }

    /// Fault 5: no PREPROD_URL, no gate, no release.
    #[test]
    fn a_gate_skipped_when_a_variable_is_unset_is_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "      - name: Preprod tests (records the preprod-tests gate for this commit and digest)\n",
                "      - name: Preprod tests (records the preprod-tests gate for this commit and digest)\n        if: vars.PREPROD_URL != ''\n",
            )
            .refused("cd.yml: job preprod, step \"Preprod tests (records the preprod-tests gate for this commit and digest)\": skipped by `if: vars.PREPROD_URL != ''`");
    }

    /// Fault 6: Actions ships other images than the README describes.
    #[test]
    fn images_without_the_musl_targets_are_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/ci.yml",
                " aarch64-unknown-linux-musl\n",
                "\n",
            )
            .refused(
                "ci.yml: job image: builds the image without installing musl-tools and the targets",
            );
        let copy = Copy::new("wiring");
        std::fs::remove_file(copy.0.path().join(super::TOOLCHAIN_FILE)).unwrap();
        copy.refused("rust-toolchain.toml: missing");
        Copy::new("wiring")
            .edit(super::TOOLCHAIN_FILE, "\"aarch64-unknown-linux-musl\"", "")
            .refused("rust-toolchain.toml: no aarch64-unknown-linux-musl");
    }
}
