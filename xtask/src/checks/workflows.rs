//! The workflows (`.github/workflows/`) and CODEOWNERS: thin (every `run:`
//! line `cargo xtask …`), pinned, bounded; least power (secrets only in the
//! main-only environments that own them, no injection of untrusted text (see
//! `taint`), checkouts without the token, xtask built before any secret,
//! nothing of a pull request's run where this repository's tokens are); and
//! wired as a fork relies on (cluster jobs on the cluster runner, gates never
//! skipped, previews filtered and grouped per pull request, the pinned
//! toolchain and musl targets, affected-only matrices, xtask built in the job
//! or this run's prebuilt binary checked by its sha256). Each problem names the
//! file, the job and step where there is one, and the fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::plumbing::prebuilt;

use crate::checks::taint::{self, tainted_env};
use crate::checks::{Finding, Rule, rule, tag};
use crate::plumbing::fs::{Depth, yaml_documents};

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[
    rule(
        "workflows.actionlint",
        "workflows",
        "the workflows pass actionlint: GitHub would refuse or misread them",
    ),
    rule(
        "workflows.affected-job",
        "workflows",
        "the job running `cargo xtask affected` holds no secret, environment or write permission: in ci.yml it runs the pull request's own code",
    ),
    rule(
        "workflows.bounded",
        "workflows",
        "every workflow sets top-level permissions and a concurrency group, every job a timeout: the default token may write everything, and a hung job holds a runner",
    ),
    rule(
        "workflows.checkout-credentials",
        "workflows",
        "a checkout keeps no GITHUB_TOKEN credentials, only the GitOps deploy key: a later step's code could push with them",
    ),
    rule(
        "workflows.cluster-runner",
        "workflows",
        "a job talking to Argo CD or a deployed URL runs on the cluster's runner: a hosted runner cannot reach the kind cluster",
    ),
    rule(
        "workflows.prebuilt-xtask",
        "workflows",
        "a job runs xtask built in the job or this run's prebuilt binary, downloaded from this run only and its sha256 checked against the output of the hosted, secret-free job that built it from the run's commit (`--no-default-features`: the cluster jobs' build, only the commands they run): a branch or pull request cannot put its own binary beside the cluster's keys",
    ),
    rule(
        "workflows.cluster-runner-environment",
        "workflows",
        "a job on the cluster runner names a main-only environment: any branch's workflow could otherwise run there",
    ),
    rule(
        "workflows.codeowners",
        "workflows",
        "CODEOWNERS covers every path that changes what is built or deployed: review is required where power is",
    ),
    rule(
        "workflows.env-secret",
        "workflows",
        "no secret in a workflow's or job's `env:` and no `contents: write` at the top: every step (and every build script) would see or get it",
    ),
    rule(
        "workflows.gate-not-skipped",
        "workflows",
        "no gate step is skipped by an `if:` on a variable: without it no gate is recorded and every release is refused",
    ),
    rule(
        "workflows.image-toolchain",
        "workflows",
        "a job building images installs musl-tools and both musl targets first: otherwise Actions ships a static-glibc amd64 image only",
    ),
    rule(
        "workflows.injection",
        "workflows",
        "no `${{ }}` of an untrusted input inside `run:` or github-script's `script:`, directly or through `env:` (GitHub's script-injection hardening guide): it runs as code",
    ),
    rule(
        "workflows.per-service",
        "workflows",
        "a step acting on one service passes `--service \"$SERVICE\"` from the `affected` matrix: with several services it would act on the wrong one, or all",
    ),
    rule(
        "workflows.pinned-actions",
        "workflows",
        "every `uses:` is pinned to a full commit sha: a moved tag would run someone else's code with the job's token",
    ),
    rule(
        "workflows.pinned-installs",
        "workflows",
        "a `cargo install` is `--locked NAME@VERSION` at the pin of xtask/tools.txt: the version is written once and its dependencies do not float",
    ),
    rule(
        "workflows.preview-concurrency",
        "workflows",
        "a preview's deploy and cleanup share one concurrency group per pull request: a deploy finishing after the close re-creates the values file",
    ),
    rule(
        "workflows.preview-filter",
        "workflows",
        "`preview deploy` runs for labelled pull requests of this repository only: a fork's pull request would otherwise run in the cluster",
    ),
    rule(
        "workflows.privileged-checkout",
        "workflows",
        "a pull_request_target or workflow_run job checks out main only: it holds this repository's tokens",
    ),
    rule(
        "workflows.privileged-code",
        "workflows",
        "a pull_request_target or workflow_run job runs nothing the pull request chose (gh pr checkout, artifacts, chosen reusable workflows)",
    ),
    rule(
        "workflows.pull-request-job",
        "workflows",
        "a pull_request job neither writes contents nor runs on the cluster's runner: it runs the pull request's own code",
    ),
    rule(
        "workflows.push-with-deploy-key",
        "workflows",
        "a job pushing to the GitOps branch uses the deploy key in a main-only environment; `contents: write` only there",
    ),
    rule(
        "workflows.secret-scope",
        "workflows",
        "a secret only in a job of the main-only environment it belongs to, none in a pull_request workflow: otherwise a branch or a pull request's code reads it",
    ),
    rule(
        "workflows.setup-guard",
        "workflows",
        "jobs waiting for `cargo xtask setup` have a job saying so: otherwise a fork's first run is silently green and does nothing",
    ),
    rule(
        "workflows.signing-job-builds-nothing",
        "workflows",
        "a job holding a signing key builds nothing but xtask: a build script could leave a process that reads the key later",
    ),
    rule(
        "workflows.thin",
        "workflows",
        "every `run:` line is `cargo xtask …` (or set-up): the pipeline's logic lives in tested Rust, not YAML",
    ),
    rule(
        "workflows.toolchain-pinned",
        "workflows",
        "rust-toolchain.toml pins the toolchain, clippy, rustfmt and both musl targets: CI and the images build with the reviewed toolchain",
    ),
    rule(
        "workflows.xtask-built-first",
        "workflows",
        "xtask is built (`--locked`) in a step with no secret before any secret or push credential is present: build scripts run while building",
    ),
    rule(
        "workflows.zizmor",
        "workflows",
        "the workflows pass zizmor's medium- and high-severity audits, offline: known Actions pitfalls",
    ),
];

/// A workflow: thin (every command is `cargo xtask …` or `.ci/run`), pinned
/// actions, least privilege, bounded jobs.
pub fn check_workflow(file: &str, doc: &Value) -> Vec<Finding> {
    let mut problems = Vec::new();
    let mut problem =
        |rule: &'static str, p: String| problems.push(Finding::new(rule, format!("{file}: {p}")));
    if doc.get("permissions").is_none() {
        problem(
            "workflows.bounded",
            "no top-level `permissions`: the default token may write everything".into(),
        );
    }
    if doc.get("concurrency").is_none() {
        problem("workflows.bounded", "no `concurrency` group".into());
    }
    for (job_name, job) in doc["jobs"].as_object().into_iter().flatten() {
        if job.get("timeout-minutes").is_none() {
            problem(
                "workflows.bounded",
                format!("job {job_name} has no timeout-minutes"),
            );
        }
        for step in job["steps"].as_array().into_iter().flatten() {
            if let Some(uses) = step["uses"].as_str() {
                let pinned = uses.rsplit_once('@').is_some_and(|(_, r)| {
                    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !pinned {
                    problem(
                        "workflows.pinned-actions",
                        format!(
                            "job {job_name}: `uses: {uses}` must be pinned to a full commit sha"
                        ),
                    );
                }
            }
            // The prebuilt xtask's check and install: a fixed script (`prebuilt_problems` holds where it may run).
            let run = step["run"].as_str().unwrap_or_default();
            if crate::plumbing::prebuilt::is_install_script(run) {
                continue;
            }
            for (rule, p) in run_line_problems(run) {
                problem(rule, format!("job {job_name}: {p}"));
            }
        }
    }
    problems
}

/// Each line of a `run:` script that is not `cargo xtask …` or set-up
/// (pipeline logic in YAML), or installs a tool off its pin.
fn run_line_problems(run: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let lines = run.lines().map(str::trim);
    for line in lines.filter(|l| !l.is_empty() && !l.starts_with('#')) {
        // Installing the build's toolchain and C compilers is set-up, not pipeline logic.
        let setup = ["sudo apt-get ", "rustup "]
            .iter()
            .any(|p| line.starts_with(p));
        if let Some(wrong) = unpinned_cargo_install(line) {
            found.push(("workflows.pinned-installs", wrong));
            continue;
        }
        let pinned_install = line.starts_with("cargo install --locked ");
        if !(line.starts_with("cargo xtask ")
            || line == "bash .ci/run"
            || setup
            || pinned_install
            || is_summary_line(line))
        {
            found.push((
                "workflows.thin",
                format!("`{line}` is pipeline logic in YAML; make it a `cargo xtask` command"),
            ));
        }
    }
    found
}

/// A fixed sentence for the run's summary (the setup guard's "nothing ran"): `echo "<text>" >>
/// "$GITHUB_STEP_SUMMARY"`, the text free of anything the shell would expand or run.
fn is_summary_line(line: &str) -> bool {
    line.strip_prefix("echo \"")
        .and_then(|rest| rest.strip_suffix("\" >> \"$GITHUB_STEP_SUMMARY\""))
        .is_some_and(|text| !text.contains(['$', '`', '"', '\\', '!']))
}

/// A `cargo install` line must install one tool at exactly its pin in
/// `xtask/tools.txt` (`cargo install --locked NAME@VERSION`), so the version
/// is written once; None when `line` is no `cargo install` or is right.
fn unpinned_cargo_install(line: &str) -> Option<String> {
    let rest = line.strip_prefix("cargo install")?;
    let fix = |why: &str| {
        Some(format!(
            "`{line}`: {why}; write `cargo install --locked NAME@VERSION` with the pin of xtask/tools.txt"
        ))
    };
    let Some(spec) = rest.trim().strip_prefix("--locked ") else {
        return fix("without --locked the tool's dependencies float");
    };
    let Some((name, version)) = spec.trim().split_once('@') else {
        return fix("no version");
    };
    match crate::plumbing::tools::pins().find(|pin| pin.installer == "cargo" && pin.package == name)
    {
        Some(pin) if pin.version == version => None,
        Some(pin) => fix(&format!(
            "{name} is pinned at {} in xtask/tools.txt",
            pin.version
        )),
        None => fix(&format!("{name} is not pinned in xtask/tools.txt")),
    }
}

/// Secrets that only a job of one GitHub environment may read; `PROD_*` are prod's too.
const SCOPED_SECRETS: [(&str, &str); 6] = [
    ("ARGOCD_AUTH_TOKEN", "prod"),
    ("REGISTRY_PASSWORD", "prod"),
    ("ARGOCD_PREPROD_TOKEN", "preprod"),
    // Signs the preprod gate: whoever reads it can sign a pass.
    ("GATE_SIGNING_KEY", "preprod"),
    ("ARGOCD_PREVIEW_TOKEN", "preview"),
    // Signs main's images, what the cluster admits: only the main build's step.
    ("IMAGE_SIGNING_KEY", "image-signing"),
];

/// The environments `cargo xtask doctor` checks are limited to main: the only
/// places a secret other than GITHUB_TOKEN may be read.
const MAIN_ENVIRONMENTS: [&str; 4] = ["preview", "preprod", "prod", "image-signing"];

/// The GitOps deploy key: the one actor main's ruleset lets push.
const DEPLOY_KEY: &str = "GITOPS_DEPLOY_KEY";

/// What pushes to the GitOps branch (or tags it).
const PUSHING_COMMANDS: [&str; 7] = [
    "cargo xtask promote",
    "cargo xtask release",
    "cargo xtask rollback",
    "cargo xtask preview deploy",
    "cargo xtask preview cleanup",
    "cargo xtask preview gc",
    "git push",
];

/// The paths CODEOWNERS must give owners: what changes the cluster, and
/// every path that changes what is built (the code, its dependencies, the
/// toolchain, the build scripts the pipeline runs with its secrets near) or
/// deployed. A directory ends in `/`; the others are files at the root.
const OWNED_PATHS: [&str; 19] = [
    "gitops/argocd/",
    "gitops/policy/",
    "gitops/database/",
    "gitops/values/",
    "gitops/secrets/",
    ".github/",
    "charts/",
    "terraform/",
    "xtask/",
    "services/",
    "crates/",
    ".cargo/",
    ".ci/",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "deny.toml",
    "Dockerfile",
    ".dockerignore",
];

/// The workflows, each read once: `(path from the repository root, document)`.
pub type Workflows = [(String, Value)];

/// The workflows under `root` (`.github/workflows`), and a finding for each
/// file that is not YAML.
pub fn load(root: &Path) -> (Vec<(String, Value)>, Vec<Finding>) {
    let (files, mut unreadable) = yaml_documents(root, ".github/workflows", Depth::Folder);
    let mut workflows = Vec::new();
    for (file, documents) in files {
        // GitHub reads a workflow file as one document: a second one is a finding, never skipped unchecked.
        match <[Value; 1]>::try_from(documents) {
            Ok([workflow]) => workflows.push((file, workflow)),
            Err(documents) => unreadable.push(format!(
                "{file}: holds {} YAML documents, and GitHub reads a workflow file as one: keep one workflow per file",
                documents.len()
            )),
        }
    }
    (workflows, tag("repository.yaml", unreadable))
}

/// Every way the workflows and CODEOWNERS break the trust policy or the
/// wiring; empty when none. `check_workflow` runs per file besides.
pub fn problems(root: &Path, workflows: &Workflows) -> Vec<Finding> {
    let mut found = workflow_problems(workflows);
    found.extend(tag("workflows.codeowners", codeowners_problems(root)));
    found.extend(wiring_problems(root, workflows));
    found
}

/// What starts a workflow, as far as the policy cares.
struct Triggers {
    /// `pull_request`: the pull request's own files run.
    pull_request: bool,
    /// `pull_request` or `pull_request_target`.
    from_pull_requests: bool,
    /// `pull_request_target` or `workflow_run`: main's files with this repository's tokens.
    privileged: Option<&'static str>,
    /// `workflow_run`: after a run that may have been a pull request's code.
    workflow_run: bool,
    /// Only `push` to `main`.
    push_to_main_only: bool,
}

impl Triggers {
    fn of(doc: &Value) -> Self {
        // YAML 1.1 readers take the `on` key for `true`.
        let on = doc
            .get("on")
            .or_else(|| doc.get("true"))
            .unwrap_or(&Value::Null);
        let branches = &on["push"]["branches"];
        let only_push = on.as_object().is_some_and(|o| o.len() == 1);
        Self {
            pull_request: triggered_by(on, "pull_request"),
            from_pull_requests: ["pull_request", "pull_request_target"]
                .iter()
                .any(|event| triggered_by(on, event)),
            privileged: ["pull_request_target", "workflow_run"]
                .into_iter()
                .find(|event| triggered_by(on, event)),
            workflow_run: triggered_by(on, "workflow_run"),
            push_to_main_only: only_push
                && branches
                    .as_array()
                    .is_some_and(|b| b.len() == 1 && b[0] == "main")
                && on["push"]["tags"].is_null(),
        }
    }
}

fn workflow_problems(workflows: &Workflows) -> Vec<Finding> {
    let mut found = Vec::new();
    for (file, doc) in workflows {
        let triggers = Triggers::of(doc);
        let mut top = Vec::new();
        if secret_names(&doc["env"].to_string()).next().is_some() {
            top.push(format!(
                "{file}: the workflow's `env:` holds a secret, which every step (and every build script) sees; move it to the step that needs it"
            ));
        }
        if writes_contents(&doc["permissions"]) {
            top.push(format!(
                "{file}: `contents: write` at the top of the workflow gives it to every job; grant it in the one job of a main-only environment that needs it (release.yml's GitHub release)"
            ));
        }
        found.extend(tag("workflows.env-secret", top));
        let tainted = tainted_env(&doc["env"], &[]);
        for (name, job) in doc["jobs"].as_object().into_iter().flatten() {
            let at = format!("{file}: job {name}");
            found.extend(job_step_problems(&at, job, &tainted));
            let mut checks: Vec<(&'static str, Vec<String>)> = vec![
                (
                    "workflows.secret-scope",
                    job_secret_problems(&at, job, &triggers),
                ),
                (
                    "workflows.push-with-deploy-key",
                    job_push_problems(&at, job),
                ),
                (
                    "workflows.signing-job-builds-nothing",
                    signing_job_problems(&at, job),
                ),
                (
                    "workflows.pull-request-job",
                    pull_request_job_problems(&at, job, &triggers),
                ),
                (
                    "workflows.cluster-runner-environment",
                    cluster_runner_job_problems(&at, job),
                ),
            ];
            if let Some(event) = triggers.privileged {
                let run = triggers.workflow_run;
                checks.push((
                    "workflows.privileged-checkout",
                    privileged_checkout_problems(&at, event, job),
                ));
                checks.push((
                    "workflows.privileged-code",
                    privileged_code_problems(&at, event, job, run),
                ));
            }
            found.extend(checks.into_iter().flat_map(|(rule, f)| tag(rule, f)));
        }
    }
    found
}

/// The keys whose holder vouches for what the cluster runs.
const SIGNING_KEYS: [&str; 2] = ["IMAGE_SIGNING_KEY", "GATE_SIGNING_KEY"];

/// Steps that run a service's (or the whole workspace's) build scripts.
const BUILDING_COMMANDS: [&str; 6] = [
    "cargo xtask image build",
    "cargo xtask ci",
    "bash .ci/run",
    "cargo build",
    "cargo test",
    "cargo install",
];

/// A job that holds a signing key builds nothing but xtask: a build script
/// (items-api's build.rs, any dependency's) run in the same job can leave a
/// process behind that reads a later step's environment (`/proc/<pid>/environ`,
/// same user), so scrubbing the build's own environment is not enough.
fn signing_job_problems(at: &str, job: &Value) -> Vec<String> {
    let text = job.to_string();
    let Some(key) = SIGNING_KEYS
        .iter()
        .find(|key| text.contains(&format!("secrets.{key}")))
    else {
        return Vec::new();
    };
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    steps
        .iter()
        .filter_map(|step| step["run"].as_str())
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|line| BUILDING_COMMANDS.iter().any(|c| line.starts_with(c)))
        .map(|line| {
            format!(
                "{at}: holds {key} and runs `{line}`: a build script of this job can leave a process that \
                 reads the key from a later step's environment; build in another job and sign there the digest \
                 it wrote (cd.yml's image and sign jobs)"
            )
        })
        .collect()
}

/// A `pull_request` job runs the pull request's own code: no push, no cluster runner.
fn pull_request_job_problems(at: &str, job: &Value, triggers: &Triggers) -> Vec<String> {
    let mut found = Vec::new();
    if !triggers.pull_request {
        return found;
    }
    if writes_contents(&job["permissions"]) {
        found.push(format!(
            "{at}: `contents: write` in a workflow `pull_request` triggers: the pull request's own code (its xtask, its build scripts) would push to this repository; write from a workflow_run or pull_request_target workflow that runs main's code (preview.yml)"
        ));
    }
    let runs_on = job["runs-on"].to_string();
    if on_cluster_runner(job) {
        found.push(format!(
            "{at}: runs on {runs_on} in a workflow `pull_request` triggers: the pull request's own code would run on the cluster's runner (its Argo CD access, the next job's secrets); use `runs-on: ubuntu-24.04` and reach the cluster from preview.yml (main's code)"
        ));
    }
    found
}

/// The environments a job on the cluster runner must name: GitHub limits
/// them to main (doctor checks their branch policies), so a workflow on a
/// branch or a pull request's cannot get a job onto the runner. Not
/// `image-signing`: that build runs on a hosted runner.
const CLUSTER_RUNNER_ENVIRONMENTS: [&str; 3] = ["preview", "preprod", "prod"];

/// A job on the cluster (self-hosted) runner only in a main-only environment.
/// GitHub's own answer, a runner group limited to selected workflows on main,
/// needs an organization, and a fork is usually a user's; this, the
/// dispatcher's check of the run and the runner image's job-started hook
/// (terraform/runner/job-started.sh) stand in for it.
fn cluster_runner_job_problems(at: &str, job: &Value) -> Vec<String> {
    let runs_on = job["runs-on"].to_string();
    let environment = job_environment(job);
    if !on_cluster_runner(job) || CLUSTER_RUNNER_ENVIRONMENTS.contains(&environment) {
        return Vec::new();
    }
    vec![format!(
        "{at}: runs on {runs_on} (the cluster runner) outside the main-only environments {CLUSTER_RUNNER_ENVIRONMENTS:?} \
         (environment {environment:?}): any branch's workflow could run there and read the next job's secrets; \
         add `environment: preview|preprod|prod` (GitHub then refuses it to every branch but main) or use `runs-on: ubuntu-24.04`"
    )]
}

/// A job that pushes to the GitOps branch does it with the deploy key, in a
/// main-only environment; `contents: write` only in such a job.
fn job_push_problems(at: &str, job: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    let environment = job_environment(job);
    let main_only = MAIN_ENVIRONMENTS.contains(&environment);
    let pushes = steps.iter().any(|s| {
        let run = s["run"].as_str().unwrap_or_default();
        PUSHING_COMMANDS.iter().any(|c| run.contains(c))
    });
    let keyed = steps
        .iter()
        .any(|s| is_checkout(s) && persists(s) && deploy_keyed(s));
    if pushes && !keyed {
        found.push(format!(
            "{at}: pushes to the GitOps branch without the deploy key; after the build, a checkout with `ssh-key: ${{{{ secrets.{DEPLOY_KEY} }}}}` and `persist-credentials: true` (main's ruleset lets only the deploy key push)"
        ));
    }
    if (pushes || writes_contents(&job["permissions"])) && !main_only {
        found.push(format!(
            "{at}: pushes or holds `contents: write` outside a main-only environment; add `environment: <{}>` (deployment branches: main only)",
            MAIN_ENVIRONMENTS.join("|")
        ));
    }
    found
}

fn deploy_keyed(step: &Value) -> bool {
    step["with"]["ssh-key"]
        .as_str()
        .is_some_and(|k| secret_names(k).any(|s| s == DEPLOY_KEY))
}

/// In a `pull_request_target` or `workflow_run` job, nothing the pull request
/// chose runs: no `gh pr checkout` / `git fetch … pull/…`, no artifact of the
/// triggering run (an artifact of this run is main's code's), no reusable
/// workflow chosen by an expression.
fn privileged_code_problems(at: &str, event: &str, job: &Value, workflow_run: bool) -> Vec<String> {
    let mut found = Vec::new();
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    for step in &steps {
        let run = step["run"].as_str().unwrap_or_default();
        let fetches_head = run.contains("gh pr checkout")
            || (run.contains("git fetch") || run.contains("git pull"))
                && (run.contains("pull/") || run.contains("refs/pull"));
        if fetches_head {
            found.push(format!(
                "{at}: fetches the pull request's head in a `{event}` workflow, which runs with this repository's tokens: take the pull request's number and commit as data, never its code"
            ));
        }
        let uses = step["uses"].as_str().unwrap_or_default();
        // Without `run-id` (and a token to read another run), an artifact is this run's own, which main's
        // code made (the prebuilt xtask); with them, it can be the triggering run's.
        if workflow_run && uses.starts_with("actions/download-artifact@") && from_another_run(step)
        {
            found.push(format!(
                "{at}: downloads an artifact in a `workflow_run` workflow from another run: the triggering run (a pull request's code) made it; read the registry by digest instead"
            ));
        }
    }
    let called = job["uses"].as_str().unwrap_or_default();
    if called.contains("${{") || !called.is_empty() && !called.starts_with("./") {
        found.push(format!(
            "{at}: calls the workflow {called} in a `{event}` workflow; call only this repository's own (`./.github/workflows/…`), never one an expression chooses"
        ));
    }
    found
}

/// `contents: write` (or `write-all`) in a `permissions:` block.
fn writes_contents(permissions: &Value) -> bool {
    permissions == "write-all" || permissions["contents"] == "write"
}

/// A `pull_request_target` or `workflow_run` job holds this repository's
/// tokens: it may check out main only (no `ref:`, no `repository:`).
fn privileged_checkout_problems(at: &str, event: &str, job: &Value) -> Vec<String> {
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    steps
        .iter()
        .filter(|step| is_checkout(step))
        .filter_map(|step| {
            let with = &step["with"];
            let chosen = ["ref", "repository"].into_iter().find(|k| !with[*k].is_null())?;
            Some(format!(
                "{at}: checks out `{chosen}: {}` in a `{event}` workflow, which runs with this repository's tokens: the pull request's code must never be checked out here; remove `{chosen}:` (main is checked out) and take the pull request's number and commit as data",
                with[chosen].as_str().unwrap_or_default()
            ))
        })
        .collect()
}

fn triggered_by(on: &Value, event: &str) -> bool {
    match on {
        Value::String(s) => s == event,
        Value::Array(events) => events.iter().any(|e| e == event),
        Value::Object(events) => events.contains_key(event),
        _ => false,
    }
}

/// The names after `secrets.` in `text`.
/// The secrets an expression text names, upper-cased (GitHub's names are
/// case-insensitive): `secrets.X`, `secrets['X']` and `secrets["X"]`.
fn secret_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.match_indices("secrets")
        .filter_map(move |(at, found)| {
            let rest = &text[at + found.len()..];
            let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix('['))?;
            let rest = rest.trim_start_matches(['\'', '"', '\\']);
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| rest[..end].to_ascii_uppercase())
        })
}

/// The GitHub environment a secret is scoped to, if it is one.
fn scope_of(secret: &str) -> Option<&'static str> {
    if secret.starts_with("PROD_") {
        return Some("prod");
    }
    SCOPED_SECRETS
        .iter()
        .find(|(s, _)| *s == secret)
        .map(|(_, env)| *env)
}

fn job_environment(job: &Value) -> &str {
    job["environment"]
        .as_str()
        .or_else(|| job["environment"]["name"].as_str())
        .unwrap_or_default()
}

fn job_secret_problems(at: &str, job: &Value, triggers: &Triggers) -> Vec<String> {
    let mut found = Vec::new();
    let text = job.to_string();
    let environment = job_environment(job);
    let names: BTreeSet<String> = secret_names(&text).collect();
    for secret in names.iter().filter(|s| *s != "GITHUB_TOKEN") {
        found.extend(secret_problem(at, secret, environment, triggers));
    }
    if job["secrets"] == "inherit" {
        found.push(format!(
            "{at}: `secrets: inherit` hands every secret to the called workflow; pass the ones it needs by name"
        ));
    }
    if text.contains("toJSON(secrets)") {
        found.push(format!(
            "{at}: `toJSON(secrets)` hands every secret over; name the one the step needs"
        ));
    }
    if environment == "prod" {
        let guarded = job["if"]
            .as_str()
            .is_some_and(|c| c.contains("github.ref == 'refs/heads/main'"));
        if !guarded || triggers.from_pull_requests {
            found.push(format!(
                "{at}: a prod job must run from main only; add `if: github.ref == 'refs/heads/main'` (and the prod environment's deployment branch rule)"
            ));
        }
    }
    found
}

/// Why a job of `environment` may not read `secret`, if it may not.
fn secret_problem(
    at: &str,
    secret: &str,
    environment: &str,
    triggers: &Triggers,
) -> Option<String> {
    let scopes: Vec<&str> = match scope_of(secret) {
        Some(scope) => vec![scope],
        None if secret == DEPLOY_KEY => MAIN_ENVIRONMENTS.to_vec(),
        None => Vec::new(),
    };
    let release_power = scopes.iter().any(|s| *s == "prod" || *s == "preprod");
    if triggers.from_pull_requests && release_power && !scopes.contains(&"preview") {
        return Some(format!(
            "{at}: a workflow pull requests trigger reads secrets.{secret}; use ARGOCD_PREVIEW_TOKEN (a token for pr-* applications only), never a {} secret",
            scopes.join("/")
        ));
    }
    if triggers.pull_request {
        return Some(format!(
            "{at}: reads secrets.{secret} in a workflow `pull_request` triggers, which runs the pull request's own code; only GITHUB_TOKEN here, the rest in preview.yml (main's code)"
        ));
    }
    if secret == "GATE_SIGNING_KEY" && !triggers.push_to_main_only {
        return Some(format!(
            "{at}: reads secrets.GATE_SIGNING_KEY in a workflow not triggered only by a push to main; only CD's preprod job (`on: push: branches: [main]`) signs the gate"
        ));
    }
    if !MAIN_ENVIRONMENTS.contains(&environment) {
        return Some(format!(
            "{at}: reads secrets.{secret} in a job without a main-only environment: a repository secret is readable by every branch's workflows; make it a secret of environment `{}` and add `environment:` to the job",
            scopes.first().copied().unwrap_or("preview|preprod|prod")
        ));
    }
    (!scopes.is_empty() && !scopes.contains(&environment)).then(|| {
        format!(
            "{at}: reads secrets.{secret} outside the `{}` environment; add `environment: {}` and keep the secret in that environment",
            scopes.join("|"),
            scopes[0]
        )
    })
}

/// Whether a step hands a secret or push credentials to what it runs.
fn step_has_power(step: &Value) -> bool {
    secret_names(&step.to_string()).next().is_some() || is_checkout(step) && persists(step)
}

fn is_checkout(step: &Value) -> bool {
    step["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("actions/checkout@"))
}

fn persists(step: &Value) -> bool {
    step["with"]["persist-credentials"] != false
}

fn job_step_problems(at: &str, job: &Value, workflow_tainted: &[(String, String)]) -> Vec<Finding> {
    let mut found = Vec::new();
    let steps = job["steps"].as_array().cloned().unwrap_or_default();
    let mut tainted = workflow_tainted.to_vec();
    tainted.extend(tainted_env(&job["env"], workflow_tainted));
    let mut built = false;
    for (index, step) in steps.iter().enumerate() {
        let label = step["name"]
            .as_str()
            .map_or_else(|| format!("step {}", index + 1), |n| format!("step {n:?}"));
        if is_checkout(step) && persists(step) && !deploy_keyed(step) {
            found.push(Finding::new("workflows.checkout-credentials", format!(
                "{at}, {label}: the checkout keeps the token in .git/config (GITHUB_TOKEN's push credentials); add `persist-credentials: false`, and push with `ssh-key: ${{{{ secrets.{DEPLOY_KEY} }}}}`"
            )));
        }
        if !built && step_has_power(step) && job_runs_xtask(&steps) {
            found.push(Finding::new("workflows.xtask-built-first", format!(
                "{at}, {label}: a secret or push credential before xtask is built; first a step with no secrets runs `cargo xtask --help` (the build, --locked)"
            )));
            built = true;
        }
        let run = step["run"].as_str().unwrap_or_default();
        built |= run.contains("cargo xtask --help") || run.contains("cargo build --locked");
        let mut step_tainted = tainted.clone();
        step_tainted.extend(tainted_env(&step["env"], &tainted));
        let at = format!("{at}, {label}");
        found.extend(tag(
            "workflows.injection",
            taint::run_problems(&at, "run", run, &step_tainted),
        ));
        let uses = step["uses"].as_str().unwrap_or_default();
        if uses.starts_with("actions/github-script@") {
            let script = step["with"]["script"].as_str().unwrap_or_default();
            found.extend(tag(
                "workflows.injection",
                taint::run_problems(&at, "script", script, &step_tainted),
            ));
        }
    }
    if secret_names(&job["env"].to_string()).next().is_some() {
        found.push(Finding::new("workflows.env-secret", format!("{at}: the job's `env:` holds a secret every step sees; move it to the steps that need it")));
    }
    found
}

fn job_runs_xtask(steps: &[Value]) -> bool {
    steps
        .iter()
        .any(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo xtask")))
}

fn codeowners_problems(root: &Path) -> Vec<String> {
    let file = ".github/CODEOWNERS";
    let Ok(text) = std::fs::read_to_string(root.join(file)) else {
        return vec![format!(
            "{file}: missing; add owners for {}",
            OWNED_PATHS.join(", ")
        )];
    };
    let rules: Vec<(&str, usize)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.count()))
        })
        .collect();
    OWNED_PATHS
        .iter()
        .filter(|path| {
            // The last matching rule wins; a rule without owners leaves the path unowned.
            let last = rules.iter().rev().find(|(pattern, _)| covers(pattern, path));
            last.is_none_or(|(_, owners)| *owners == 0)
        })
        .map(|path| format!("{file}: no owner for /{path}; add `/{path} @<owner>` (branch protection then requires their review)"))
        .collect()
}

/// Whether a CODEOWNERS pattern covers `path`: a directory (`gitops/argocd/`,
/// everything under it) or a file at the root (`Cargo.lock`).
fn covers(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches('/');
    if pattern == "*" || pattern == "**" {
        return true;
    }
    if !path.ends_with('/') && pattern == path {
        return true;
    }
    let directory = pattern.trim_end_matches("/**").trim_end_matches('/');
    !directory.is_empty() && path.starts_with(&format!("{directory}/"))
}

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
fn wiring_problems(root: &Path, workflows: &Workflows) -> Vec<Finding> {
    let mut found = tag("workflows.toolchain-pinned", toolchain_problems(root));
    let mut preview_groups = BTreeMap::new();
    for (file, doc) in workflows {
        let jobs = doc["jobs"].as_object().cloned().unwrap_or_default();
        found.extend(tag(
            "workflows.setup-guard",
            setup_guard_problems(file, &jobs),
        ));
        for (name, job) in &jobs {
            let at = format!("{file}: job {name}");
            let checks: [(&'static str, Vec<String>); 7] = [
                (
                    "workflows.per-service",
                    per_service_problems(&at, job, &jobs),
                ),
                ("workflows.affected-job", affected_job_problems(&at, job)),
                ("workflows.cluster-runner", runner_problems(&at, job)),
                (
                    "workflows.prebuilt-xtask",
                    prebuilt_problems(&at, job, &jobs, &doc["env"]),
                ),
                ("workflows.gate-not-skipped", silent_skip_problems(&at, job)),
                (
                    "workflows.image-toolchain",
                    image_toolchain_problems(&at, job),
                ),
                (
                    "workflows.preview-filter",
                    preview_filter_problems(&at, job),
                ),
            ];
            found.extend(checks.into_iter().flat_map(|(rule, f)| tag(rule, f)));
            if runs(job, "cargo xtask preview ") {
                let group = job["concurrency"]["group"]
                    .as_str()
                    .or_else(|| doc["concurrency"]["group"].as_str())
                    .unwrap_or_default();
                preview_groups.insert(at, group.to_owned());
            }
        }
    }
    found.extend(tag(
        "workflows.preview-concurrency",
        concurrency_problems(&preview_groups),
    ));
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

/// Whether a `download-artifact` step may read another run's artifact (`run-id`, or the token and
/// repository another run's needs); without them it reads this run's own.
fn from_another_run(step: &Value) -> bool {
    ["run-id", "github-token", "repository"]
        .iter()
        .any(|k| !step["with"][*k].is_null())
}

/// Whether a job runs on the cluster's (self-hosted) runner: the tutorial's
/// labels, or the labels a repository variable chooses.
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
    if from_another_run(&steps[download])
        || steps[download]["with"]["path"] != prebuilt::DOWNLOAD_PATH
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
    let alias = builder["env"][ALIAS].as_str().unwrap_or_default();
    if !is_cluster_build(alias) {
        found.push(format!(
            "{at}: its prebuilt xtask's job {name} builds all of xtask (`{ALIAS}: {alias}`), the commands the cluster \
             jobs never run and their crates included (xtask/Cargo.toml's feature `full`); build it with `{}` and no \
             `--features`",
            prebuilt::BUILD_FLAG
        ));
    }
    found
}

/// Whether an alias builds the cluster jobs' xtask: without its default features, and none added back.
fn is_cluster_build(alias: &str) -> bool {
    let words: Vec<&str> = alias.split_whitespace().collect();
    words.contains(&prebuilt::BUILD_FLAG)
        && !words.iter().any(|w| {
            ["--features", "-F", "--all-features"].contains(w)
                || w.starts_with("--features=")
                || w.starts_with("-F")
        })
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
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_workflow_file_of_two_documents_is_a_finding_not_a_skipped_document() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".github/workflows");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("one.yaml"), "name: one\non: push\n").unwrap();
        std::fs::write(
            dir.join("two.yaml"),
            "name: two\non: push\n---\nname: hidden\non: pull_request_target\n",
        )
        .unwrap();
        let (workflows, found) = load(root.path());
        let names: Vec<&str> = workflows.iter().map(|(file, _)| file.as_str()).collect();
        assert_eq!(names, [".github/workflows/one.yaml"]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .contains(".github/workflows/two.yaml: holds 2 YAML documents"),
            "{found:?}"
        );
    }

    /// The setup guard's summary is a fixed sentence; anything the shell would expand or run in it is
    /// pipeline logic again.
    #[test]
    fn only_a_fixed_sentence_may_go_to_the_summary() {
        let line = |text: &str| format!("echo \"{text}\" >> \"$GITHUB_STEP_SUMMARY\"");
        assert!(is_summary_line(&line(
            "Not set up yet: run cargo xtask setup."
        )));
        for bad in [
            "$(curl x)",
            "`id`",
            "${{ github.head_ref }}",
            "a\" ; rm -rf / ; echo \"b",
            "\\x",
        ] {
            assert!(!is_summary_line(&line(bad)), "{bad}");
        }
        assert!(!is_summary_line("echo \"hi\" >> \"$GITHUB_ENV\""));
        assert!(!is_summary_line("echo \"hi\""));
    }

    #[test]
    fn workflows_must_be_thin_and_pinned() {
        let doc: Value = yaml_serde::from_str(
            "permissions: {contents: read}\nconcurrency: x\njobs:\n  a:\n    timeout-minutes: 5\n    steps:\n      - uses: actions/checkout@v4\n      - run: |\n          cargo xtask ci\n          yq -i '.image.tag = \"x\"' values.yaml\n",
        )
        .unwrap();
        let problems = check_workflow("w.yml", &doc);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("must be pinned"));
        assert!(problems[1].contains("`yq -i"));
    }

    #[test]
    fn a_cargo_install_in_a_workflow_is_the_pin_of_tools_txt() {
        let pin = crate::plumbing::tools::version("cargo-auditable");
        assert_eq!(
            unpinned_cargo_install(&format!("cargo install --locked cargo-auditable@{pin}")),
            None
        );
        for (line, why) in [
            ("cargo install --locked cargo-auditable@0.0.1", "pinned at"),
            ("cargo install cargo-auditable", "--locked"),
            ("cargo install --locked cargo-auditable", "no version"),
            ("cargo install --locked cargo-nextest@0.9.0", "not pinned"),
        ] {
            let problem = unpinned_cargo_install(line).expect(line);
            assert!(problem.contains(why), "{line}: {problem}");
        }
        assert_eq!(unpinned_cargo_install("cargo xtask ci"), None);
    }

    /// The workflows under `root` loaded and checked, as `validate` does.
    fn problems_at(root: &std::path::Path) -> Vec<crate::checks::Finding> {
        let (workflows, mut found) = super::load(root);
        found.extend(super::problems(root, &workflows));
        found
    }

    /// Argo CD's objects under `root` loaded and checked for trust, as `validate` does.
    fn argocd_trust_at(root: &std::path::Path) -> Vec<crate::checks::Finding> {
        crate::checks::argocd::trust_problems(&crate::checks::argocd::load(root).unwrap())
    }

    /// A copy of this repository's policy files (gitops/argocd, .github) in a fresh
    /// temporary directory; each test makes one attacker's edit to it (also
    /// the wiring tests and `argocd`'s).
    pub(crate) struct Copy(pub(crate) tempfile::TempDir);

    impl Copy {
        pub(crate) fn new(test: &str) -> Self {
            let real = crate::plumbing::workspace::root();
            let dir = tempfile::Builder::new()
                .prefix(&format!("trust-policy-{test}-"))
                .tempdir()
                .unwrap();
            let sh = xshell::Shell::new().unwrap();
            for sub in ["gitops/argocd", ".github"] {
                let (from, to) = (real.join(sub), dir.path().join(sub));
                sh.create_dir(&to).unwrap();
                xshell::cmd!(sh, "cp -R {from}/. {to}")
                    .quiet()
                    .run()
                    .unwrap();
            }
            // The toolchain file the wiring rules check beside the workflows.
            let toolchain = "rust-toolchain.toml";
            std::fs::copy(real.join(toolchain), dir.path().join(toolchain)).unwrap();
            Self(dir)
        }

        /// Replace `from` (which must be there) by `to` in `file`.
        pub(crate) fn edit(&self, file: &str, from: &str, to: &str) -> &Self {
            let path = self.0.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} has no {from:?}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
            self
        }

        /// Add `file` with `text`.
        fn write(&self, file: &str, text: &str) -> &Self {
            std::fs::write(self.0.path().join(file), text).unwrap();
            self
        }

        /// The problems, which must include one containing each of `expected`.
        pub(crate) fn refused(&self, expected: &[&str]) {
            let mut problems = problems_at(self.0.path());
            problems.extend(argocd_trust_at(self.0.path()));
            for needle in expected {
                assert!(
                    problems.iter().any(|p| p.message.contains(needle)),
                    "no problem mentions {needle:?}: {problems:#?}"
                );
            }
        }
    }

    /// GitHub's docs ("Security hardening for GitHub Actions"): the script
    /// injection example is refused, its "intermediate environment variable"
    /// fix passes, and the same variable pasted back as `${{ env.TITLE }}` is refused.
    #[test]
    fn githubs_documented_script_injection_is_refused_and_its_fix_passes() {
        let job = |step: &str| -> serde_json::Value {
            let steps = format!("steps:\n  - name: Check PR title\n{step}");
            yaml_serde::from_str(&steps).unwrap()
        };
        let check = "            echo \"PR title starts with 'octocat'\"\n            exit 0\n";
        let injected = job(&format!(
            "    run: |\n      title=\"${{{{ github.event.pull_request.title }}}}\"\n      if [[ $title =~ ^octocat ]]; then\n{check}      fi\n"
        ));
        let fixed = job(&format!(
            "    env:\n      TITLE: ${{{{ github.event.pull_request.title }}}}\n    run: |\n      if [[ \"$TITLE\" =~ ^octocat ]]; then\n{check}      fi\n"
        ));
        let pasted_back = job(&format!(
            "    env:\n      TITLE: ${{{{ github.event.pull_request.title }}}}\n    run: |\n      if [[ \"${{{{ env.TITLE }}}}\" =~ ^octocat ]]; then\n{check}      fi\n"
        ));
        let rules = |job: &serde_json::Value| -> Vec<&'static str> {
            let found = super::job_step_problems("w.yml: job j", job, &[]);
            found.iter().map(|f| f.rule).collect()
        };
        assert_eq!(rules(&injected), ["workflows.injection"]);
        assert_eq!(rules(&fixed), Vec::<&str>::new());
        assert_eq!(rules(&pasted_back), ["workflows.injection"]);
    }

    #[test]
    fn this_repositorys_files_pass() {
        let copy = Copy::new("real");
        assert_eq!(
            problems_at(copy.0.path()),
            Vec::<crate::checks::Finding>::new()
        );
        let argocd = argocd_trust_at(copy.0.path());
        assert_eq!(argocd, Vec::<crate::checks::Finding>::new());
        let real = problems_at(&crate::plumbing::workspace::root());
        assert_eq!(real, Vec::<crate::checks::Finding>::new());
    }

    #[test]
    fn preview_job_given_the_release_token_is_refused() {
        Copy::new("preview-token")
            .edit(".github/workflows/preview.yml", "secrets.ARGOCD_PREVIEW_TOKEN", "secrets.ARGOCD_AUTH_TOKEN")
            .refused(&["preview.yml: job verify: a workflow pull requests trigger reads secrets.ARGOCD_AUTH_TOKEN"]);
    }

    #[test]
    fn the_release_token_spelt_otherwise_is_still_seen() {
        for spelling in ["secrets.argocd_auth_token", "secrets['ARGOCD_AUTH_TOKEN']"] {
            Copy::new("preview-token-spelling")
                .edit(".github/workflows/preview.yml", "secrets.ARGOCD_PREVIEW_TOKEN", spelling)
                .refused(&["preview.yml: job verify: a workflow pull requests trigger reads secrets.ARGOCD_AUTH_TOKEN"]);
        }
    }

    #[test]
    fn the_gate_signing_key_outside_preprod_is_refused() {
        Copy::new("signing-key")
            .edit(".github/workflows/preview.yml", "secrets.ARGOCD_PREVIEW_TOKEN", "secrets.GATE_SIGNING_KEY")
            .refused(&["preview.yml: job verify: a workflow pull requests trigger reads secrets.GATE_SIGNING_KEY"]);
    }

    #[test]
    fn release_outside_the_prod_environment_is_refused() {
        Copy::new("release-env")
            .edit(
                ".github/workflows/release.yml",
                "    environment: prod\n",
                "",
            )
            .refused(&["release.yml: job release: reads secrets.ARGOCD_AUTH_TOKEN in a job without a main-only environment"]);
    }

    #[test]
    fn release_not_restricted_to_main_is_refused() {
        Copy::new("release-main")
            .edit(
                ".github/workflows/release.yml",
                "if: github.ref == 'refs/heads/main'",
                "if: always()",
            )
            .refused(&["release.yml: job release: a prod job must run from main only"]);
    }

    #[test]
    fn read_only_checkout_keeping_credentials_is_refused() {
        Copy::new("persist")
            .edit(
                ".github/workflows/ci.yml",
                "ref: ${{ env.SHA }}\n          persist-credentials: false",
                "ref: ${{ env.SHA }}",
            )
            .refused(&["ci.yml: job checks, step 1: the checkout keeps the token"]);
    }

    #[test]
    fn secret_before_the_build_is_refused() {
        Copy::new("build-order")
            .edit(".github/workflows/release.yml", "          clean: false\n          ssh-key: ${{ secrets.GITOPS_DEPLOY_KEY }}\n          persist-credentials: true\n", "          clean: false\n")
            .edit(".github/workflows/release.yml", "          fetch-depth: 0\n          persist-credentials: false\n", "          fetch-depth: 0\n")
            .refused(&["release.yml: job release, step 1: a secret or push credential before xtask is built"]);
    }

    #[test]
    fn pull_request_title_in_a_run_script_is_refused() {
        Copy::new("injection")
            .edit(
                ".github/workflows/preview.yml",
                "run: cargo xtask smoke --service \"$SERVICE\" --pr \"$PR\"",
                "run: cargo xtask smoke --service \"$SERVICE\" --pr \"$PR\" --url \"http://${{ github.event.pull_request.title }}\"",
            )
            .refused(&["job verify, step \"Smoke tests\": `${{ github.event.pull_request.title }}` inside `run:`"]);
    }

    /// Issue 29, item 5: the image signing key back in the job that builds the image is refused.
    #[test]
    fn a_signing_key_in_the_job_that_builds_the_image_is_refused() {
        Copy::new("signing-build")
            .edit(
                ".github/workflows/cd.yml",
                "          REGISTRY_PASSWORD: ${{ secrets.GITHUB_TOKEN }}\n        run: cargo xtask image build",
                "          REGISTRY_PASSWORD: ${{ secrets.GITHUB_TOKEN }}\n          IMAGE_SIGNING_KEY: ${{ secrets.IMAGE_SIGNING_KEY }}\n        run: cargo xtask image build",
            )
            .refused(&["job image: holds IMAGE_SIGNING_KEY and runs `cargo xtask image build"]);
    }

    /// Issue 29, item 5: what changes the build (a build script, a dependency, the
    /// toolchain) or the databases reaches main only through its owners' review.
    #[test]
    fn codeowners_without_the_paths_that_change_the_build_is_refused() {
        let copy = Copy::new("codeowners-build");
        for (line, named) in [
            ("/xtask/ @example\n", "no owner for /xtask/"),
            ("/services/ @example\n", "no owner for /services/"),
            ("/Cargo.lock @example\n", "no owner for /Cargo.lock"),
            (
                "/rust-toolchain.toml @example\n",
                "no owner for /rust-toolchain.toml",
            ),
            (
                "/gitops/database/ @example\n",
                "no owner for /gitops/database/",
            ),
            ("/.ci/ @example\n", "no owner for /.ci/"),
        ] {
            copy.edit(".github/CODEOWNERS", line, "").refused(&[named]);
            copy.edit(
                ".github/CODEOWNERS",
                "/charts/ @example\n",
                &format!("/charts/ @example\n{line}"),
            );
        }
        // A catch-all owner covers them all.
        let text = std::fs::read_to_string(copy.0.path().join(".github/CODEOWNERS")).unwrap();
        std::fs::write(copy.0.path().join(".github/CODEOWNERS"), "* @example\n").unwrap();
        assert!(
            !problems_at(copy.0.path())
                .iter()
                .any(|p| p.message.contains("CODEOWNERS")),
            "* @example owns everything"
        );
        std::fs::write(copy.0.path().join(".github/CODEOWNERS"), text).unwrap();
    }

    #[test]
    fn codeowners_without_github_is_refused() {
        let copy = Copy::new("codeowners");
        copy.edit(".github/CODEOWNERS", "/.github/ @example\n", "")
            .refused(&[".github/CODEOWNERS: no owner for /.github/"]);
        copy.edit(
            ".github/CODEOWNERS",
            "/charts/ @example",
            "/charts/ @example\n/charts/",
        )
        .refused(&["no owner for /charts/"]);
    }

    #[test]
    fn a_pull_request_workflow_that_pushes_is_refused() {
        Copy::new("pr-write")
            .edit(
                ".github/workflows/ci.yml",
                "    permissions:\n      contents: read\n      # Push the image",
                "    permissions:\n      contents: write\n      # Push the image",
            )
            .refused(&[
                "ci.yml: job image: `contents: write` in a workflow `pull_request` triggers",
            ]);
    }

    #[test]
    fn checking_out_the_pull_request_in_pull_request_target_is_refused() {
        Copy::new("prt-head")
            .edit(
                ".github/workflows/preview.yml",
                "      # main, not the pull request: no `ref:`.\n      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n",
                "      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n",
            )
            .refused(&["preview.yml: job deploy: checks out `ref: ${{ github.event.pull_request.head.sha }}` in a `pull_request_target` workflow"]);
    }

    const CHECKOUT: &str = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2";

    #[test]
    fn a_gitops_push_with_the_workflow_token_is_refused() {
        // The push credentials of GITHUB_TOKEN (the github-actions app, which any branch's workflow is) instead of
        // the deploy key.
        Copy::new("token-push")
            .edit(
                ".github/workflows/cd.yml",
                "          ssh-key: ${{ secrets.GITOPS_DEPLOY_KEY }}\n",
                "",
            )
            .refused(&[
                "cd.yml: job preprod, step \"Push credentials for the GitOps commit (deploy key)\": the checkout keeps the token in .git/config",
                "cd.yml: job preprod: pushes to the GitOps branch without the deploy key",
            ]);
    }

    #[test]
    fn the_deploy_key_or_contents_write_outside_a_main_only_environment_is_refused() {
        let cleanup = "    # Main-only: its deploy key pushes the commit that removes the values file.\n    environment: preview\n    permissions:\n      contents: read\n";
        Copy::new("key-no-env")
            .edit(".github/workflows/preview.yml", cleanup, "    permissions:\n      contents: write\n")
            .refused(&[
                "preview.yml: job cleanup: reads secrets.GITOPS_DEPLOY_KEY in a job without a main-only environment",
                "preview.yml: job cleanup: pushes or holds `contents: write` outside a main-only environment",
            ]);
        Copy::new("write-top")
            .edit(
                ".github/workflows/cd.yml",
                "permissions:\n  contents: read\n",
                "permissions:\n  contents: write\n",
            )
            .refused(&["cd.yml: `contents: write` at the top of the workflow"]);
    }

    #[test]
    fn the_preview_token_as_a_repository_secret_is_refused() {
        Copy::new("preview-repo-secret")
            .edit(
                ".github/workflows/preview.yml",
                "    # Main-only: ARGOCD_PREVIEW_TOKEN is this environment's secret.\n    environment: preview\n",
                "",
            )
            .refused(&["preview.yml: job verify: reads secrets.ARGOCD_PREVIEW_TOKEN in a job without a main-only environment"]);
    }

    #[test]
    fn a_pull_request_job_on_the_cluster_runner_is_refused() {
        let checks = "    if: vars.PIPELINE_READY == 'true'\n    runs-on: ubuntu-24.04\n    timeout-minutes: 60";
        Copy::new("pr-cluster-runner")
            .edit(
                ".github/workflows/ci.yml",
                checks,
                "    if: vars.PIPELINE_READY == 'true'\n    runs-on: ${{ fromJSON(vars.CLUSTER_RUNNER || '[\"self-hosted\",\"kind\"]') }}\n    timeout-minutes: 60",
            )
            .refused(&["ci.yml: job checks: runs on \"${{ fromJSON(vars.CLUSTER_RUNNER"]);
        Copy::new("pr-self-hosted")
            .edit(
                ".github/workflows/ci.yml",
                checks,
                "    if: vars.PIPELINE_READY == 'true'\n    runs-on: [self-hosted, kind]\n    timeout-minutes: 60",
            )
            .refused(&["ci.yml: job checks: runs on [\"self-hosted\",\"kind\"] in a workflow `pull_request` triggers"]);
    }

    #[test]
    fn a_workflow_on_a_branch_or_a_job_outside_the_main_only_environments_on_the_cluster_runner_is_refused()
     {
        Copy::new("branch-cluster-runner")
            .write(
                ".github/workflows/mine.yml",
                "name: Mine\non:\n  push:\n    branches: [feature]\npermissions: {}\njobs:\n  steal:\n    runs-on: [self-hosted, kind]\n    steps:\n      - run: sleep 100000 &\n",
            )
            .refused(&["mine.yml: job steal: runs on [\"self-hosted\",\"kind\"] (the cluster runner) outside the main-only environments"]);
        Copy::new("signing-env-cluster-runner")
            .edit(
                ".github/workflows/cd.yml",
                "    runs-on: ubuntu-24.04\n    timeout-minutes: 15\n    # Limited to main: the only place IMAGE_SIGNING_KEY",
                "    runs-on: [self-hosted, kind]\n    timeout-minutes: 15\n    # Limited to main: the only place IMAGE_SIGNING_KEY",
            )
            .refused(&["(the cluster runner) outside the main-only environments [\"preview\", \"preprod\", \"prod\"] (environment \"image-signing\")"]);
        Copy::new("cluster-runner-no-env")
            .edit(
                ".github/workflows/release.yml",
                "    timeout-minutes: 30\n    environment: prod\n",
                "    timeout-minutes: 30\n",
            )
            .refused(&["(the cluster runner) outside the main-only environments [\"preview\", \"preprod\", \"prod\"] (environment \"\")"]);
    }

    /// ci.yml's matrix is what the pull request's own `cargo xtask affected`
    /// printed: pasted into a script, a service named `$(…)` would run.
    #[test]
    fn a_matrix_value_or_a_jobs_output_pasted_into_a_script_is_refused() {
        Copy::new("matrix-in-run")
            .edit(
                ".github/workflows/ci.yml",
                r#"--service "$SERVICE" --tag"#,
                r#"--service "${{ matrix.service }}" --tag"#,
            )
            .refused(&[
                "ci.yml: job image, step \"Build and push the image\": `${{ matrix.service }}` inside `run:`",
            ]);
        Copy::new("needs-in-run")
            .edit(
                ".github/workflows/cd.yml",
                r#"--service "$SERVICE" --env preprod"#,
                r#"--service ${{ env.SERVICE }} --env preprod"#,
            )
            .refused(&["cd.yml: job preprod, step \"Promote main-<sha> to preprod\": `${{ env.SERVICE }}` (env.SERVICE is `${{ matrix.service }}`)"]);
    }

    #[test]
    fn untrusted_text_through_env_or_github_script_is_refused() {
        Copy::new("env-indirection")
            .edit(
                ".github/workflows/preview.yml",
                "env:\n  CARGO_TERM_COLOR: always\n",
                "env:\n  TITLE: ${{ github.event.pull_request.title }}\n  CARGO_TERM_COLOR: always\n",
            )
            .edit(
                ".github/workflows/preview.yml",
                "run: cargo xtask preview cleanup --pr \"$PR\"",
                "run: echo \"${{ env.TITLE }}\" && cargo xtask preview cleanup --pr \"$PR\"",
            )
            .refused(&["job cleanup, step \"Remove gitops/values/pr/pr-<N>/\": `${{ env.TITLE }}` (env.TITLE is `${{ github.event.pull_request.title }}`) inside `run:`"]);
        // Twice removed: a step's env entry that reads the workflow's.
        Copy::new("env-chain")
            .edit(
                ".github/workflows/preview.yml",
                "env:\n  CARGO_TERM_COLOR: always\n",
                "env:\n  TITLE: ${{ github.event.pull_request.title }}\n  CARGO_TERM_COLOR: always\n",
            )
            .edit(
                ".github/workflows/preview.yml",
                "        env:\n          INGRESS_URL: ${{ vars.INGRESS_URL }}\n        run: cargo xtask smoke --service \"$SERVICE\" --pr \"$PR\"",
                "        env:\n          HEADING: ${{ env.TITLE }}\n        run: echo '${{ env.HEADING }}' && cargo xtask smoke --service \"$SERVICE\" --pr \"$PR\"",
            )
            .refused(&["job verify, step \"Smoke tests\": `${{ env.HEADING }}` (env.HEADING is `${{ env.TITLE }}`) inside `run:`"]);
        let script = "      - name: Comment\n        uses: actions/github-script@60a0d83039c74a4aee543508d2ffcb1c3799cdea # v7.0.1\n        with:\n          script: console.log(\"${{ github.head_ref }}\")\n";
        Copy::new("github-script")
            .edit(
                ".github/workflows/preview.yml",
                "      - name: Remove the previews of closed pull requests\n",
                &format!("{script}      - name: Remove the previews of closed pull requests\n"),
            )
            .refused(&["job gc, step \"Comment\": `${{ github.head_ref }}` inside `script:`"]);
        Copy::new("ref-name")
            .edit(
                ".github/workflows/cd.yml",
                "run: cargo xtask promote --service",
                "run: echo ${{ github.ref_name }} && cargo xtask promote --service",
            )
            .refused(&["`${{ github.ref_name }}` inside `run:`"]);
    }

    #[test]
    fn the_pull_requests_code_in_a_privileged_workflow_is_refused() {
        let deploy = "run: cargo xtask preview deploy";
        for fetch in [
            "gh pr checkout \"$PR\"",
            "git fetch origin \"pull/$PR/head\" && git checkout FETCH_HEAD",
        ] {
            Copy::new("fetch-head")
                .edit(".github/workflows/preview.yml", deploy, &format!("run: {fetch} && cargo xtask preview deploy"))
                .refused(&["preview.yml: job deploy: fetches the pull request's head in a `pull_request_target` workflow"]);
        }
        let artifact = "      - uses: actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093 # v4.3.0\n        with:\n          run-id: ${{ github.event.workflow_run.id }}\n      - name: Remove the previews";
        Copy::new("artifact")
            .edit(
                ".github/workflows/preview.yml",
                "      - name: Remove the previews",
                artifact,
            )
            .refused(&["preview.yml: job gc: downloads an artifact in a `workflow_run` workflow"]);
        Copy::new("reusable")
            .edit(
                ".github/workflows/preview.yml",
                "jobs:\n",
                "jobs:\n  called:\n    uses: ${{ github.event.pull_request.head.repo.full_name }}/.github/workflows/x.yml@main\n",
            )
            .refused(&["preview.yml: job called: calls the workflow ${{ github.event.pull_request.head.repo.full_name }}"]);
    }

    #[test]
    fn the_gate_signing_key_off_a_push_to_main_is_refused() {
        let sign = format!(
            "name: Sign\non:\n  workflow_run:\n    workflows: [CI]\n    types: [completed]\npermissions:\n  contents: read\njobs:\n  sign:\n    runs-on: ubuntu-24.04\n    environment: preprod\n    steps:\n      - uses: {CHECKOUT}\n        with:\n          persist-credentials: false\n      - run: cargo xtask --help\n      - env:\n          GATE_SIGNING_KEY: ${{{{ secrets.GATE_SIGNING_KEY }}}}\n        run: cargo xtask gate sign\n"
        );
        Copy::new("sign-workflow-run")
            .write(".github/workflows/sign.yml", &sign)
            .refused(&["sign.yml: job sign: reads secrets.GATE_SIGNING_KEY in a workflow not triggered only by a push to main"]);
        Copy::new("sign-dispatch")
            .edit(".github/workflows/cd.yml", "on:\n  push:\n", "on:\n  workflow_dispatch: {}\n  push:\n")
            .refused(&["cd.yml: job preprod: reads secrets.GATE_SIGNING_KEY in a workflow not triggered only by a push to main"]);
    }

    #[test]
    fn this_repositorys_workflows_are_wired() {
        assert_eq!(
            {
                let copy = Copy::new("wiring");
                let (workflows, _) = super::load(copy.0.path());
                super::wiring_problems(copy.0.path(), &workflows)
            },
            Vec::<crate::checks::Finding>::new()
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
            .refused(&["ci.yml: job image, step \"Build and push the image\": `cargo xtask image build` without `--service \"$SERVICE\"`"]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "    needs: affected\n    if: needs.affected.outputs.services != '[]'\n    strategy:\n      fail-fast: false\n      matrix: ${{ fromJSON(needs.affected.outputs.matrix) }}\n",
                "    strategy:\n      matrix:\n        service: [items-api]\n",
            )
            .refused(&["cd.yml: job image: acts on services without the matrix of `cargo xtask affected`"]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/preview.yml",
                "    environment: preview\n    env:\n      SERVICE: ${{ matrix.service }}\n",
                "    environment: preview\n    env:\n      SERVICE: items-api\n",
            )
            .refused(&["preview.yml: job deploy, step \"Write gitops/values/pr/pr-<N>/<values-file>\": SERVICE is not `${{ matrix.service }}`"]);
    }

    #[test]
    fn the_affected_job_with_a_secret_or_write_permission_is_refused() {
        Copy::new("wiring")
            .edit(
                ".github/workflows/ci.yml",
                "          BASE: ${{ github.event.pull_request.base.sha }}\n",
                "          BASE: ${{ github.event.pull_request.base.sha }}\n          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n",
            )
            .refused(&["ci.yml: job affected: runs `cargo xtask affected` with a secret"]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/cd.yml",
                "    # Reads the build graph and the diff: no secret, no write.\n    permissions:\n      contents: read\n",
                "    permissions:\n      contents: write\n",
            )
            .refused(&["cd.yml: job affected: runs `cargo xtask affected` without `permissions: {contents: read}`"]);
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
            .refused(&["preview.yml: job deploy: downloads the prebuilt xtask from another run"]);
        Copy::new("prebuilt-sha")
            .edit(
                ".github/workflows/cd.yml",
                "XTASK_SHA256: ${{ needs.xtask.outputs.sha256 }}",
                "XTASK_SHA256: ${{ needs.affected.outputs.sha256 }}",
            )
            .refused(&[
                "cd.yml: job sign: its prebuilt xtask's job affected does not output the sha256",
            ]);
        Copy::new("prebuilt-literal")
            .edit(
                ".github/workflows/cd.yml",
                "XTASK_SHA256: ${{ needs.xtask.outputs.sha256 }}",
                "XTASK_SHA256: 0000",
            )
            .refused(&["cd.yml: job sign: checks the prebuilt xtask against `0000`"]);
        Copy::new("prebuilt-unchecked")
            .edit(
                ".github/workflows/release.yml",
                "          echo \"$XTASK_SHA256  $RUNNER_TEMP/xtask/xtask\" | sha256sum --check --strict\n",
                "",
            )
            .refused(&["release.yml: job release: runs the prebuilt xtask (CARGO_ALIAS_XTASK: xtask-prebuilt) without"]);
        Copy::new("prebuilt-head")
            .edit(
                ".github/workflows/cd.yml",
                BUILDER_CHECKOUT,
                &format!("{BUILDER_CHECKOUT}          ref: refs/heads/topic\n"),
            )
            .refused(&["cd.yml: job preprod: its prebuilt xtask's job xtask must build it"]);
        Copy::new("prebuilt-secret")
            .edit(
                ".github/workflows/release.yml",
                "    name: Build xtask once for this run\n",
                "    name: Build xtask once for this run\n    environment: prod\n",
            )
            .refused(&["release.yml: job release: its prebuilt xtask's job xtask must build it"]);
        Copy::new("prebuilt-alias")
            .edit(
                ".github/workflows/cd.yml",
                "CARGO_ALIAS_XTASK: xtask-prebuilt",
                "CARGO_ALIAS_XTASK: xtask-mine",
            )
            .refused(&["cd.yml: job sign: runs xtask through `CARGO_ALIAS_XTASK: xtask-mine`"]);
    }

    /// The cluster jobs run xtask's small build: a builder that drops `--no-default-features`, or adds the
    /// features back, is refused.
    #[test]
    fn a_prebuilt_xtask_with_its_default_features_is_refused() {
        const SLIM: &str =
            "--target x86_64-unknown-linux-musl --no-default-features --package xtask --";
        Copy::new("prebuilt-full")
            .edit(
                ".github/workflows/release.yml",
                SLIM,
                "--target x86_64-unknown-linux-musl --package xtask --",
            )
            .refused(&["release.yml: job release: its prebuilt xtask's job xtask builds all of xtask (`CARGO_ALIAS_XTASK: run --quiet --locked --profile prebuilt --target x86_64-unknown-linux-musl --package xtask --`)"]);
        Copy::new("prebuilt-features")
            .edit(
                ".github/workflows/cd.yml",
                SLIM,
                "--target x86_64-unknown-linux-musl --no-default-features --features full --package xtask --",
            )
            .refused(&["cd.yml: job sign: its prebuilt xtask's job xtask builds all of xtask"]);
        assert!(super::is_cluster_build(&format!(
            "run --quiet --locked {SLIM}"
        )));
        assert!(!super::is_cluster_build(&format!("run {SLIM} -Ffull")));
        assert!(!super::is_cluster_build(&format!(
            "run --all-features {SLIM}"
        )));
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
            .refused(&[
                "cd.yml: job preprod: talks to Argo CD or a deployed URL but runs on ubuntu-24.04",
            ]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/release.yml",
                super::CLUSTER_RUNNER,
                "[self-hosted, linux]",
            )
            .refused(&["release.yml: job release: talks to Argo CD"]);
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
            .refused(&["cd.yml: jobs wait for `vars.PIPELINE_READY == 'true'` but no job says so"]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/release.yml",
                "vars.PIPELINE_READY == 'true'",
                "vars.PIPELINE_READY == 'true' && vars.ARGOCD_SERVER != ''",
            )
            .refused(&["release.yml: job release: skipped by `if:"]);
    }

    /// Fault 4: previews for every pull request, forks included.
    #[test]
    fn previews_for_unlabelled_or_forked_pull_requests_are_refused() {
        Copy::new("wiring")
            .edit(".github/workflows/preview.yml", " --label preview", "")
            .refused(&["preview.yml: job deploy: `preview deploy` without `--label preview`"]);
        Copy::new("wiring")
            .edit(
                ".github/workflows/preview.yml",
                "\n      && (github.event.workflow_run.head_repository.full_name == github.repository\n        || github.event.pull_request.head.repo.full_name == github.repository)",
                "",
            )
            .refused(&["preview.yml: job deploy: deploys previews for forks' pull requests too"]);
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
            .refused(&["preview.yml: job cleanup: concurrency group \"ci-pr-"]);
        let copy = Copy::new("wiring");
        let preview = copy.0.path().join(".github/workflows/preview.yml");
        let text = std::fs::read_to_string(&preview).unwrap();
        let cleanup = text.replace("group: preview-", "group: cleanup-");
        std::fs::write(copy.0.path().join(".github/workflows/cleanup.yml"), cleanup).unwrap();
        copy.refused(&["the preview jobs are in different concurrency groups"]);
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
            .refused(&["cd.yml: job preprod, step \"Preprod tests (records the preprod-tests gate for this commit and digest)\": skipped by `if: vars.INGRESS_URL != ''`"]);
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
            .refused(&[
                "ci.yml: job image: builds the image without installing musl-tools and the targets",
            ]);
        let copy = Copy::new("wiring");
        std::fs::remove_file(copy.0.path().join(super::TOOLCHAIN_FILE)).unwrap();
        copy.refused(&["rust-toolchain.toml: missing"]);
        Copy::new("wiring")
            .edit(super::TOOLCHAIN_FILE, "\"aarch64-unknown-linux-musl\"", "")
            .refused(&["rust-toolchain.toml: no aarch64-unknown-linux-musl"]);
    }
}
