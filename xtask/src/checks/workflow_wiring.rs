//! The workflows' wiring that a fork following the README relies on (issue
//! 15's faults, each refused by a test below), checked on the files:
//!
//! - a job that talks to Argo CD or a deployed URL (`ARGOCD_*`, `smoke`,
//!   `preprod-test`, `argocd`) runs on the cluster's runner, [`CLUSTER_RUNNER`];
//! - such a step is never skipped by an `if:` on a variable: without
//!   `INGRESS_URL` no gate would be recorded and every release refused;
//! - `preview deploy` runs only for pull requests of this repository (the
//!   job's `if:`) that carry a label (`--label`, checked with `GITHUB_TOKEN`);
//! - the preview deploy and cleanup share one concurrency group per pull
//!   request, `preview-<N>`;
//! - `rust-toolchain.toml` pins the toolchain, clippy, rustfmt and both musl
//!   targets, and every job that builds images installs them and musl-gcc;
//! - affected-only pipelines: a step that acts on one service
//!   ([`PER_SERVICE_COMMANDS`]) passes `--service "$SERVICE"`, its job's
//!   `SERVICE` is `${{ matrix.service }}` and its matrix is the `matrix` output
//!   of a job it needs that runs `cargo xtask affected`; that job holds no
//!   secret, no environment and no write permission;
//! - a job runs xtask built in the job itself (the workflow's `cargo run`
//!   alias) or the prebuilt binary of the same run (`plumbing::prebuilt`):
//!   downloaded from this run only, its sha256 checked against the output of
//!   the job it needs that built it (hosted, main's commit, no secret, no
//!   environment) before anything runs it; no job runs any other.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::plumbing::fs::yaml_in;
use crate::plumbing::prebuilt;

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
/// Commands that act on one service, once per affected service.
pub const PER_SERVICE_COMMANDS: [&str; 6] = [
    "cargo xtask image build",
    "cargo xtask scan",
    "cargo xtask smoke",
    "cargo xtask preprod-test",
    "cargo xtask promote",
    "cargo xtask preview deploy",
];
const AFFECTED: &str = "cargo xtask affected";
/// The one condition on a variable a job may carry: nothing runs before `cargo xtask setup` has set
/// `PIPELINE_READY` (its last write), and a job of the same workflow says so in the run's summary.
pub const SETUP_GUARD: &str = "vars.PIPELINE_READY == 'true'";
/// The condition of that job.
const SETUP_PENDING: &str = "vars.PIPELINE_READY != 'true'";
/// How a step names its service: the matrix's value, through `env:`.
const SERVICE_FLAG: &str = r#"--service "$SERVICE""#;
const SERVICE_ENV: &str = "${{ matrix.service }}";

/// Every wiring problem of the workflows and toolchain file under `root`.
pub fn problems(root: &Path) -> Vec<String> {
    let mut found = toolchain_problems(root);
    let mut preview_groups = BTreeMap::new();
    for (file, doc) in yaml_in(root, ".github/workflows", &mut found) {
        let jobs = doc["jobs"].as_object().cloned().unwrap_or_default();
        found.extend(setup_guard_problems(&file, &jobs));
        for (name, job) in &jobs {
            let at = format!("{file}: job {name}");
            found.extend(per_service_problems(&at, job, &jobs));
            found.extend(affected_job_problems(&at, job));
            found.extend(runner_problems(&at, job));
            found.extend(prebuilt_problems(&at, job, &jobs, &doc["env"]));
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

/// A step acting on one service names it, and its job runs once per service
/// `cargo xtask affected` chose.
fn per_service_problems(
    at: &str,
    job: &Value,
    jobs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut acts_on_services = false;
    for step in steps(job) {
        let run = run_of(&step);
        let Some(command) = PER_SERVICE_COMMANDS.iter().find(|c| run.contains(*c)) else {
            continue;
        };
        acts_on_services = true;
        if !run.contains(SERVICE_FLAG) {
            found.push(format!(
                "{at}, step {:?}: `{command}` without `{SERVICE_FLAG}`: with several services it fails (or acts on the wrong one); pass the matrix's service",
                step["name"].as_str().unwrap_or_default()
            ));
        }
        let env = |v: &Value| v["SERVICE"].as_str().map(without_spaces);
        if env(&step["env"]).or_else(|| env(&job["env"])) != Some(without_spaces(SERVICE_ENV)) {
            found.push(format!(
                "{at}, step {:?}: SERVICE is not `{SERVICE_ENV}`; set it in the job's `env:`",
                step["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if !acts_on_services {
        return found;
    }
    let matrix = without_spaces(job["strategy"]["matrix"].as_str().unwrap_or_default());
    let fed = needed_jobs(job).iter().any(|needed| {
        jobs.get(needed).is_some_and(|j| runs(j, AFFECTED))
            && matrix == format!("${{{{fromJSON(needs.{needed}.outputs.matrix)}}}}")
    });
    if !fed {
        found.push(format!(
            "{at}: acts on services without the matrix of `{AFFECTED}`; set `strategy.matrix: ${{{{ fromJSON(needs.<job>.outputs.matrix) }}}}` of a job it needs that runs `{AFFECTED}`, so only the affected services are built and deployed"
        ));
    }
    found
}

/// The jobs `job` needs (`needs:` is a name or a list).
fn needed_jobs(job: &Value) -> Vec<String> {
    match &job["needs"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The job deciding what is built reads the build graph and the diff, and
/// nothing more: in ci.yml it runs the pull request's own code.
fn affected_job_problems(at: &str, job: &Value) -> Vec<String> {
    if !runs(job, AFFECTED) {
        return Vec::new();
    }
    let mut found = Vec::new();
    if job.to_string().contains("secrets.") || !job["environment"].is_null() {
        found.push(format!(
            "{at}: runs `{AFFECTED}` with a secret or an environment; it needs neither: move them to the jobs that build or deploy"
        ));
    }
    let permissions = &job["permissions"];
    let writes = permissions == "write-all"
        || permissions
            .as_object()
            .is_some_and(|p| p.values().any(|v| v == "write"));
    if writes || permissions.is_null() {
        found.push(format!(
            "{at}: runs `{AFFECTED}` without `permissions: {{contents: read}}` of its own; it writes nothing"
        ));
    }
    found
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

const ALIAS: &str = "CARGO_ALIAS_XTASK";

fn on_cluster_runner(job: &Value) -> bool {
    let runs_on = job["runs-on"].to_string();
    ["self-hosted", "vars.", "fromJSON"]
        .iter()
        .any(|s| runs_on.contains(s))
}

/// Whether an alias builds xtask from the checkout (`cargo run … --package xtask`).
fn builds_xtask(alias: &str) -> bool {
    alias.starts_with("run ") && alias.contains("--locked") && alias.contains("--package xtask")
}

/// Which xtask a job runs: one it builds itself (the `cargo run` alias), or the prebuilt one of this run,
/// checked first; nothing else.
fn prebuilt_problems(
    at: &str,
    job: &Value,
    jobs: &serde_json::Map<String, Value>,
    workflow_env: &Value,
) -> Vec<String> {
    let mut found: Vec<String> = steps(job)
        .iter()
        .filter(|step| !step["env"][ALIAS].is_null())
        .map(|step| {
            format!(
                "{at}, step {:?}: sets {ALIAS} on a step; set it on the job, where the prebuilt xtask's rule sees it",
                step["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let alias = job["env"][ALIAS]
        .as_str()
        .or_else(|| workflow_env[ALIAS].as_str());
    match alias {
        Some(prebuilt::SUBCOMMAND) => found.extend(prebuilt_use_problems(at, job, jobs)),
        Some(other) if !builds_xtask(other) => found.push(format!(
            "{at}: runs xtask through `{ALIAS}: {other}`, neither built in the job nor this run's checked binary; \
             set `{ALIAS}: {}` with the download and check steps (cd.yml's preprod job), or remove it to build \
             xtask in the job",
            prebuilt::SUBCOMMAND
        )),
        _ => {}
    }
    found
}

/// The prebuilt xtask: this run's artifact, checked against the sha256 output of the job that built it
/// before any `cargo xtask` runs.
fn prebuilt_use_problems(
    at: &str,
    job: &Value,
    jobs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let steps = steps(job);
    let uses = |s: &Value, action: &str| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("actions/{action}@")))
    };
    let download = steps
        .iter()
        .position(|s| uses(s, "download-artifact") && s["with"]["name"] == prebuilt::ARTIFACT);
    let install = steps
        .iter()
        .position(|s| prebuilt::is_install_script(run_of(s)));
    let first_run = steps.iter().position(|s| run_of(s).contains("cargo xtask"));
    let (Some(download), Some(install)) = (download, install) else {
        return vec![format!(
            "{at}: runs the prebuilt xtask ({ALIAS}: {}) without downloading the artifact `{}` to {} and then a step \
             whose script is the check-and-install of plumbing::prebuilt (cd.yml's preprod job)",
            prebuilt::SUBCOMMAND,
            prebuilt::ARTIFACT,
            prebuilt::DOWNLOAD_PATH
        )];
    };
    let mut found = Vec::new();
    let with = &steps[download]["with"];
    if ["run-id", "github-token", "repository"]
        .iter()
        .any(|k| !with[*k].is_null())
        || with["path"] != prebuilt::DOWNLOAD_PATH
    {
        found.push(format!(
            "{at}: downloads the prebuilt xtask from another run or to another place than {}: only this run's \
             artifact, which no branch or pull request can write; remove `run-id`, `github-token` and `repository`",
            prebuilt::DOWNLOAD_PATH
        ));
    }
    if download > install || first_run != Some(install) {
        found.push(format!(
            "{at}: runs `cargo xtask` before the prebuilt binary is downloaded and its sha256 checked; download, \
             then check and install, then the rest"
        ));
    }
    found.extend(builder_problems(at, &steps[install], job, jobs));
    found
}

/// The sha256 the check compares with is the output of a job this one needs that builds xtask on a hosted
/// runner from the run's own commit, with no secret and no environment, and uploads that binary.
fn builder_problems(
    at: &str,
    install: &Value,
    job: &Value,
    jobs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let expected = without_spaces(
        install["env"][prebuilt::SHA256_VAR]
            .as_str()
            .unwrap_or_default(),
    );
    let builder = needed_jobs(job)
        .into_iter()
        .find(|needed| expected == format!("${{{{needs.{needed}.outputs.sha256}}}}"));
    let Some((name, builder)) = builder.and_then(|n| jobs.get(&n).map(|j| (n, j))) else {
        return vec![format!(
            "{at}: checks the prebuilt xtask against `{expected}`, not the sha256 output of a job it needs; set \
             `{}: ${{{{ needs.<job>.outputs.sha256 }}}}` of the job that built it",
            prebuilt::SHA256_VAR
        )];
    };
    let (outputs_it, trusted) = (outputs_and_uploads(builder), builds_trusted(builder));
    let mut found = Vec::new();
    if !outputs_it {
        found.push(format!(
            "{at}: its prebuilt xtask's job {name} does not output the sha256 of `cargo xtask prebuilt` (`outputs.sha256: \
             ${{{{ steps.<id>.outputs.sha256 }}}}`) and upload the artifact `{}`",
            prebuilt::ARTIFACT
        ));
    }
    if !trusted {
        found.push(format!(
            "{at}: its prebuilt xtask's job {name} must build it (`{ALIAS}: run --quiet --locked … --package xtask --`) \
             on a hosted runner from the run's commit (a checkout without `ref:` or `repository:`), with no secret and \
             no environment: whatever else it builds runs with this job's secrets"
        ));
    }
    found
}

/// Whether a job outputs the sha256 `cargo xtask prebuilt` printed and uploads the artifact.
fn outputs_and_uploads(builder: &Value) -> bool {
    let built_by = steps(builder)
        .iter()
        .find(|s| run_of(s).contains("cargo xtask prebuilt"))
        .and_then(|s| s["id"].as_str().map(str::to_owned));
    let outputs_it = built_by.is_some_and(|id| {
        without_spaces(builder["outputs"]["sha256"].as_str().unwrap_or_default())
            == format!("${{{{steps.{id}.outputs.sha256}}}}")
    });
    let uploads = steps(builder).iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
            && s["with"]["name"] == prebuilt::ARTIFACT
    });
    outputs_it && uploads
}

/// Whether a job builds xtask (its alias) on a hosted runner from the run's commit, with no secret and no
/// environment.
fn builds_trusted(builder: &Value) -> bool {
    let other_commit = steps(builder).iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))
            && (!s["with"]["ref"].is_null() || !s["with"]["repository"].is_null())
    });
    !on_cluster_runner(builder)
        && builder["environment"].is_null()
        && !builder.to_string().contains("secrets.")
        && !other_commit
        && builder["env"][ALIAS].as_str().is_some_and(builds_xtask)
}

/// A workflow whose jobs wait for setup has a job that says so; one that does not wait need not.
fn setup_guard_problems(file: &str, jobs: &serde_json::Map<String, Value>) -> Vec<String> {
    let condition = |job: &Value| job["if"].as_str().unwrap_or_default().to_owned();
    let guarded = jobs
        .values()
        .any(|job| condition(job).contains(SETUP_GUARD));
    let announced = jobs.values().any(|job| {
        without_spaces(&condition(job)) == without_spaces(SETUP_PENDING)
            && job.to_string().contains("GITHUB_STEP_SUMMARY")
    });
    if guarded && !announced {
        return vec![format!(
            "{file}: jobs wait for `{SETUP_GUARD}` but no job says so: add a job with `if: {SETUP_PENDING}` that \
             writes to $GITHUB_STEP_SUMMARY that `cargo xtask setup` has not run"
        )];
    }
    Vec::new()
}

fn silent_skip_problems(at: &str, job: &Value) -> Vec<String> {
    let mut found = Vec::new();
    // The setup guard skips loudly (a job says so); any other variable would skip the gate silently.
    let on_variable = |condition: &Value| {
        condition
            .as_str()
            .is_some_and(|c| c.replace(SETUP_GUARD, "").contains("vars."))
    };
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
    use crate::checks::trust_policy::tests::Copy;

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

    /// ci.yml and cd.yml build only what `affected` chose: its job computes the
    /// range from the pull request's base (the previous head of main for a
    /// push) and feeds the image jobs' matrix; every image step names its service.
    #[test]
    fn ci_and_cd_build_each_affected_service_and_only_those() {
        let root = crate::plumbing::workspace::root();
        for (file, base) in [
            ("ci.yml", "--base \"$BASE\""),
            ("cd.yml", "--since-deployed preprod"),
        ] {
            let text = std::fs::read_to_string(root.join(".github/workflows").join(file)).unwrap();
            let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
            let jobs = &doc["jobs"];
            let affected = super::steps(&jobs["affected"])
                .iter()
                .map(|s| super::run_of(s).to_owned())
                .find(|r| r.contains("cargo xtask affected"))
                .unwrap_or_else(|| panic!("{file}: no affected job"));
            assert!(affected.contains(base), "{file}: {affected}");
            assert_eq!(
                jobs["image"]["strategy"]["matrix"],
                "${{ fromJSON(needs.affected.outputs.matrix) }}",
                "{file}"
            );
            assert!(
                jobs["image"]["if"]
                    .as_str()
                    .unwrap()
                    .contains("needs.affected.outputs.services != '[]'"),
                "{file}: nothing affected, nothing built"
            );
            let image_steps: Vec<String> = super::steps(&jobs["image"])
                .iter()
                .map(|s| super::run_of(s).to_owned())
                .filter(|r| r.contains("cargo xtask image") || r.contains("cargo xtask scan"))
                .collect();
            assert_eq!(image_steps.len(), 2, "{file}: build and scan");
            for run in image_steps {
                assert!(run.contains("--service \"$SERVICE\""), "{file}: {run}");
            }
            assert_eq!(jobs["image"]["env"]["SERVICE"], "${{ matrix.service }}");
        }
    }

    #[test]
    fn a_step_acting_on_one_service_without_the_affected_matrix_is_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/ci.yml",
                "image build --service \"$SERVICE\" --tag",
                "image build --tag",
            )
            .refused("ci.yml: job image, step \"Build and push the image\": `cargo xtask image build` without `--service \"$SERVICE\"`");
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "    needs: affected\n    if: needs.affected.outputs.services != '[]'\n    strategy:\n      fail-fast: false\n      matrix: ${{ fromJSON(needs.affected.outputs.matrix) }}\n",
                "    strategy:\n      matrix:\n        service: [items-api]\n",
            )
            .refused("cd.yml: job image: acts on services without the matrix of `cargo xtask affected`");
        Copy::new("wiring")
            .edit(
                ".github/workflows/preview.yml",
                "    environment: preview\n    env:\n      SERVICE: ${{ matrix.service }}\n",
                "    environment: preview\n    env:\n      SERVICE: items-api\n",
            )
            .refused("preview.yml: job deploy, step \"Write gitops/values/pr/pr-<N>/<values-file>\": SERVICE is not `${{ matrix.service }}`");
    }

    #[test]
    fn the_affected_job_with_a_secret_or_write_permission_is_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/ci.yml",
                "          BASE: ${{ github.event.pull_request.base.sha }}\n",
                "          BASE: ${{ github.event.pull_request.base.sha }}\n          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n",
            )
            .refused("ci.yml: job affected: runs `cargo xtask affected` with a secret");
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "    # Reads the build graph and the diff: no secret, no write.\n    permissions:\n      contents: read\n",
                "    permissions:\n      contents: write\n",
            )
            .refused("cd.yml: job affected: runs `cargo xtask affected` without `permissions: {contents: read}`");
    }

    /// Every job on the cluster runner that runs xtask, the image signing job and the preview's deploy run
    /// this run's prebuilt binary, not a compile.
    #[test]
    fn the_cluster_jobs_and_the_signing_job_run_the_prebuilt_xtask() {
        let root = crate::plumbing::workspace::root();
        let mut prebuilt = Vec::new();
        for file in ["ci.yml", "cd.yml", "preview.yml", "release.yml"] {
            let text = std::fs::read_to_string(root.join(".github/workflows").join(file)).unwrap();
            let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
            for (name, job) in doc["jobs"].as_object().unwrap() {
                let runs_it = job["env"][super::ALIAS] == "xtask-prebuilt";
                if super::on_cluster_runner(job) && super::runs(job, "cargo xtask") {
                    assert!(
                        runs_it,
                        "{file}: {name} compiles xtask on the cluster runner"
                    );
                }
                if runs_it {
                    prebuilt.push(format!("{file}: {name}"));
                }
            }
        }
        assert_eq!(
            prebuilt,
            [
                "cd.yml: preprod",
                "cd.yml: sign",
                "preview.yml: deploy",
                "preview.yml: verify",
                "release.yml: release"
            ]
        );
    }

    const BUILDER_CHECKOUT: &str = "--package xtask --\n    outputs:\n      sha256: ${{ steps.build.outputs.sha256 }}\n    steps:\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n";

    /// The attacker's ways to a binary of their own on the cluster runner: another run's artifact, a sha256
    /// from elsewhere or none, a builder that checks out a pull request's commit or holds a secret, an alias
    /// to some other subcommand.
    #[test]
    fn a_cluster_job_running_an_unchecked_or_foreign_xtask_is_refused() {
        Copy::new("prebuilt-run-id")
            .edit(
                ".github/workflows/preview.yml",
                "          name: xtask\n          path: ${{ runner.temp }}/xtask\n",
                "          name: xtask\n          path: ${{ runner.temp }}/xtask\n          run-id: ${{ github.event.workflow_run.id }}\n          github-token: ${{ github.token }}\n",
            )
            .refused("preview.yml: job deploy: downloads the prebuilt xtask from another run");
        Copy::new("prebuilt-sha")
            .edit(
                ".github/workflows/cd.yml",
                "XTASK_SHA256: ${{ needs.xtask.outputs.sha256 }}",
                "XTASK_SHA256: ${{ needs.affected.outputs.sha256 }}",
            )
            .refused(
                "cd.yml: job sign: its prebuilt xtask's job affected does not output the sha256",
            );
        Copy::new("prebuilt-literal")
            .edit(
                ".github/workflows/cd.yml",
                "XTASK_SHA256: ${{ needs.xtask.outputs.sha256 }}",
                "XTASK_SHA256: 0000",
            )
            .refused("cd.yml: job sign: checks the prebuilt xtask against `0000`");
        Copy::new("prebuilt-unchecked")
            .edit(
                ".github/workflows/release.yml",
                "          echo \"$XTASK_SHA256  $RUNNER_TEMP/xtask/xtask\" | sha256sum --check --strict\n",
                "",
            )
            .refused("release.yml: job release: runs the prebuilt xtask (CARGO_ALIAS_XTASK: xtask-prebuilt) without");
        Copy::new("prebuilt-head")
            .edit(
                ".github/workflows/cd.yml",
                BUILDER_CHECKOUT,
                &format!("{BUILDER_CHECKOUT}          ref: refs/heads/topic\n"),
            )
            .refused("cd.yml: job preprod: its prebuilt xtask's job xtask must build it");
        Copy::new("prebuilt-secret")
            .edit(
                ".github/workflows/release.yml",
                "    name: Build xtask once for this run\n",
                "    name: Build xtask once for this run\n    environment: prod\n",
            )
            .refused("release.yml: job release: its prebuilt xtask's job xtask must build it");
        Copy::new("prebuilt-alias")
            .edit(
                ".github/workflows/cd.yml",
                "CARGO_ALIAS_XTASK: xtask-prebuilt",
                "CARGO_ALIAS_XTASK: xtask-mine",
            )
            .refused("cd.yml: job sign: runs xtask through `CARGO_ALIAS_XTASK: xtask-mine`");
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
            .refused("release.yml: job release: talks to Argo CD");
    }

    /// Before `cargo xtask setup` a workflow skips its jobs, and says so: a guard without the job that
    /// announces it is refused, and a guard that would skip the gate on any other variable still is.
    #[test]
    fn the_setup_guard_is_announced_and_the_only_variable_a_gate_waits_for() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "    if: vars.PIPELINE_READY != 'true'\n",
                "",
            )
            .refused("cd.yml: jobs wait for `vars.PIPELINE_READY == 'true'` but no job says so");
        Copy::new("wiring")
            .edit(
                ".github/workflows/release.yml",
                "vars.PIPELINE_READY == 'true'",
                "vars.PIPELINE_READY == 'true' && vars.ARGOCD_SERVER != ''",
            )
            .refused("release.yml: job release: skipped by `if:");
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
                "\n      && (github.event.workflow_run.head_repository.full_name == github.repository\n        || github.event.pull_request.head.repo.full_name == github.repository)",
                "",
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

    /// Fault 5: no INGRESS_URL, no gate, no release.
    #[test]
    fn a_gate_skipped_when_a_variable_is_unset_is_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "      - name: Preprod tests (records the preprod-tests gate for this commit and digest)\n",
                "      - name: Preprod tests (records the preprod-tests gate for this commit and digest)\n        if: vars.INGRESS_URL != ''\n",
            )
            .refused("cd.yml: job preprod, step \"Preprod tests (records the preprod-tests gate for this commit and digest)\": skipped by `if: vars.INGRESS_URL != ''`");
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
