//! The trust policy: the cluster changes only through reviewed paths, and each
//! workflow holds the least power its job needs. Checked on the files:
//!
//! - **Argo CD**: the root app is in its own project (never `default`), reads
//!   `gitops/argocd/apps` alone (not recursively), and that project may create
//!   Applications and ApplicationSets in `argocd` and nothing else; every other
//!   project whitelists no Argo CD, RBAC or admission kind and no wildcard; the
//!   built-in `default` project is emptied; every Application under `apps/`
//!   names the `service-demo` project.
//! - **Workflows**: a secret other than GITHUB_TOKEN only in a job of a
//!   main-only environment (`preview`, `preprod`, `prod`; doctor checks their
//!   deployment-branch rule), an environment-scoped one only in its own, none
//!   in a `pull_request` workflow and no prod/preprod one in any workflow pull
//!   requests trigger; GATE_SIGNING_KEY only where the sole trigger is a push
//!   to main; a `prod` job only on `main`; xtask built (`--locked`) before any
//!   secret or push credential is present; a checkout keeps credentials only
//!   with the GitOps deploy key (`ssh-key: secrets.GITOPS_DEPLOY_KEY`), never
//!   GITHUB_TOKEN's, and a job that pushes has one; `contents: write` only in
//!   a job of a main-only environment; no `${{ }}` of an untrusted input
//!   (a matrix value or a job's output included) inside `run:` or
//!   github-script's `script:`, directly or through an `env:` entry; a `pull_request` job neither writes contents nor runs on the
//!   cluster's (self-hosted) runner; in a `pull_request_target` or
//!   `workflow_run` workflow (they hold this repository's tokens) no checkout
//!   of anything but main, no `gh pr checkout` / `git fetch … pull/…`, no
//!   artifact of another run, no reusable workflow an expression chooses.
//! - The workflows' wiring (cluster runner, previews, gates, toolchain) is
//!   `workflow_wiring`'s, run from here.
//! - **CODEOWNERS** covers `gitops/argocd/`, `.github/`, `charts/`, `terraform/`, and every path
//!   that changes what is built or deployed (`OWNED_PATHS`: `xtask/`, `services/`, `crates/`,
//!   `.cargo/`, `.ci/`, `gitops/database/`, Cargo.toml, Cargo.lock, rust-toolchain.toml, …).
//!
//! Each problem names the file, the job and step where there is one, and the fix.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::plumbing::fs::yaml_in;

/// The project of the root app, which the AppProjects under `gitops/argocd` define.
const BOOTSTRAP_PROJECT: &str = "service-demo-bootstrap";
/// The only directory the root app reads.
const APPS_DIR: &str = "gitops/argocd/apps";
/// The project every environment and preview deploys through.
const APP_PROJECT: &str = "service-demo";
/// What the bootstrap project may create.
const BOOTSTRAP_KINDS: [(&str, &str); 2] = [
    ("argoproj.io", "Application"),
    ("argoproj.io", "ApplicationSet"),
];
/// API groups whose kinds change who may do what in the cluster.
const POWER_GROUPS: [&str; 6] = [
    "argoproj.io",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    // Kyverno's policies: admission (gitops/policy/, applied by terraform/), and generate/mutate rules act
    // with Kyverno's own rights.
    "kyverno.io",
];
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
/// Expressions that carry text someone outside the repository's owners chose
/// (a matrix or a job's outputs may be computed by a pull request's own code:
/// ci.yml's matrix is its `cargo xtask affected`).
const UNTRUSTED: [&str; 7] = [
    "github.event.",
    "inputs.",
    "github.head_ref",
    "github.ref_name",
    "vars.",
    "matrix.",
    "needs.",
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

/// Every way the files under `root` break the trust policy; empty when none.
pub fn problems(root: &Path) -> Vec<String> {
    let mut found = argocd_problems(root);
    found.extend(workflow_problems(root));
    found.extend(codeowners_problems(root));
    found.extend(crate::checks::workflow_wiring::problems(root));
    found
}

fn argocd_problems(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let top = yaml_in(root, "gitops/argocd", &mut found);
    let apps = yaml_in(root, APPS_DIR, &mut found);
    let projects: Vec<&(String, Value)> = top
        .iter()
        .filter(|(_, d)| d["kind"] == "AppProject")
        .collect();
    match top.iter().find(|(_, d)| d["kind"] == "Application") {
        Some((file, app)) => found.extend(root_app_problems(file, app)),
        None => found.push("gitops/argocd: no root Application".into()),
    }
    for (file, project) in &projects {
        found.extend(match project["metadata"]["name"].as_str() {
            Some(BOOTSTRAP_PROJECT) => bootstrap_project_problems(file, project),
            Some("default") => default_project_problems(file, project),
            _ => project_kind_problems(file, project),
        });
    }
    for name in [BOOTSTRAP_PROJECT, "default", APP_PROJECT] {
        if !projects.iter().any(|(_, p)| p["metadata"]["name"] == name) {
            found.push(format!(
                "gitops/argocd: no AppProject {name}; define it beside root.yaml (terraform applies it, the root app never does)"
            ));
        }
    }
    for (file, doc) in &apps {
        found.extend(child_app_problems(file, doc));
    }
    found
}

fn root_app_problems(file: &str, app: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let spec = &app["spec"];
    if spec["project"] != BOOTSTRAP_PROJECT {
        found.push(format!(
            "{file}: the root app is in project {}; set `spec.project: {BOOTSTRAP_PROJECT}` (the `default` project may create anything, RBAC included)",
            spec["project"]
        ));
    }
    if spec["source"]["path"] != APPS_DIR {
        found.push(format!(
            "{file}: the root app reads {}; set `spec.source.path: {APPS_DIR}`, so the AppProjects beside it are not synced from git",
            spec["source"]["path"]
        ));
    }
    if spec["source"]["directory"]["recurse"] == true {
        found.push(format!(
            "{file}: the root app reads {APPS_DIR} recursively; set `directory.recurse: false`"
        ));
    }
    if spec["destination"]["namespace"] != "argocd" {
        found.push(format!(
            "{file}: the root app deploys to {}; set `spec.destination.namespace: argocd`",
            spec["destination"]["namespace"]
        ));
    }
    found
}

/// `(group, kind)` of a project's whitelist (`clusterResourceWhitelist`, …).
fn kinds(project: &Value, list: &str) -> Vec<(String, String)> {
    project["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            let field = |f: &str| k[f].as_str().unwrap_or_default().to_owned();
            (field("group"), field("kind"))
        })
        .collect()
}

fn bootstrap_project_problems(file: &str, project: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (group, kind) in kinds(project, "clusterResourceWhitelist") {
        found.push(format!(
            "{file}: {BOOTSTRAP_PROJECT} whitelists the cluster-scoped {kind} ({group:?}); remove it: the root app creates Argo CD objects in argocd only"
        ));
    }
    let namespaced = kinds(project, "namespaceResourceWhitelist");
    if namespaced.is_empty() {
        found.push(format!(
            "{file}: {BOOTSTRAP_PROJECT} has no namespaceResourceWhitelist, which Argo CD reads as every kind; list argoproj.io Application and ApplicationSet"
        ));
    }
    for (group, kind) in namespaced {
        if !BOOTSTRAP_KINDS.contains(&(group.as_str(), kind.as_str())) {
            found.push(format!(
                "{file}: {BOOTSTRAP_PROJECT} whitelists {kind} ({group:?}); it may create argoproj.io Application and ApplicationSet only"
            ));
        }
    }
    for destination in project["spec"]["destinations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if destination["namespace"] != "argocd" {
            found.push(format!(
                "{file}: {BOOTSTRAP_PROJECT} may deploy to namespace {}; its only destination is argocd",
                destination["namespace"]
            ));
        }
    }
    found
}

fn default_project_problems(file: &str, project: &Value) -> Vec<String> {
    ["sourceRepos", "destinations"]
        .into_iter()
        .filter(|list| project["spec"][*list].as_array().is_none_or(|l| !l.is_empty()))
        .map(|list| {
            format!(
                "{file}: the default project must allow nothing; set `spec.{list}: []` (an Application pushed with `project: default` would get it)"
            )
        })
        .collect()
}

fn project_kind_problems(file: &str, project: &Value) -> Vec<String> {
    let name = project["metadata"]["name"].as_str().unwrap_or_default();
    let mut found = Vec::new();
    if kinds(project, "namespaceResourceWhitelist").is_empty() {
        found.push(format!(
            "{file}: project {name} has no namespaceResourceWhitelist, which Argo CD reads as every kind; list the kinds the chart renders"
        ));
    }
    for list in ["clusterResourceWhitelist", "namespaceResourceWhitelist"] {
        for (group, kind) in kinds(project, list) {
            let power = POWER_GROUPS.contains(&group.as_str()) || group == "*" || kind == "*";
            if power {
                found.push(format!(
                    "{file}: project {name} {list} has {kind} (group {group:?}), which lets a commit change who may do what (Argo CD projects, RBAC, admission); remove it"
                ));
            }
        }
    }
    found
}

fn child_app_problems(file: &str, doc: &Value) -> Vec<String> {
    let project = match doc["kind"].as_str() {
        Some("Application") => &doc["spec"]["project"],
        Some("ApplicationSet") => &doc["spec"]["template"]["spec"]["project"],
        other => {
            return vec![format!(
                "{file}: kind {other:?} under {APPS_DIR}; only Applications and ApplicationSets belong there"
            )];
        }
    };
    if project == APP_PROJECT {
        return Vec::new();
    }
    vec![format!(
        "{file}: deploys through project {project}; set `project: {APP_PROJECT}`"
    )]
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

fn workflow_problems(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (file, doc) in yaml_in(root, ".github/workflows", &mut found) {
        let triggers = Triggers::of(&doc);
        if secret_names(&doc["env"].to_string()).next().is_some() {
            found.push(format!(
                "{file}: the workflow's `env:` holds a secret, which every step (and every build script) sees; move it to the step that needs it"
            ));
        }
        if writes_contents(&doc["permissions"]) {
            found.push(format!(
                "{file}: `contents: write` at the top of the workflow gives it to every job; grant it in the one job of a main-only environment that needs it (release.yml's GitHub release)"
            ));
        }
        let tainted = tainted_env(&doc["env"], &[]);
        for (name, job) in doc["jobs"].as_object().into_iter().flatten() {
            let at = format!("{file}: job {name}");
            found.extend(job_secret_problems(&at, job, &triggers));
            found.extend(job_step_problems(&at, job, &tainted));
            found.extend(job_push_problems(&at, job));
            found.extend(signing_job_problems(&at, job));
            found.extend(pull_request_job_problems(&at, job, &triggers));
            found.extend(cluster_runner_job_problems(&at, job));
            if let Some(event) = triggers.privileged {
                found.extend(privileged_checkout_problems(&at, event, job));
                found.extend(privileged_code_problems(
                    &at,
                    event,
                    job,
                    triggers.workflow_run,
                ));
            }
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
    if ["self-hosted", "vars.", "fromJSON"]
        .iter()
        .any(|s| runs_on.contains(s))
    {
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
    let on_cluster_runner = ["self-hosted", "vars.", "fromJSON"]
        .iter()
        .any(|s| runs_on.contains(s));
    let environment = job_environment(job);
    if !on_cluster_runner || CLUSTER_RUNNER_ENVIRONMENTS.contains(&environment) {
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
        let other_run = ["run-id", "github-token", "repository"]
            .iter()
            .any(|k| !step["with"][*k].is_null());
        if workflow_run && uses.starts_with("actions/download-artifact@") && other_run {
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

fn job_step_problems(at: &str, job: &Value, workflow_tainted: &[(String, String)]) -> Vec<String> {
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
            found.push(format!(
                "{at}, {label}: the checkout keeps the token in .git/config (GITHUB_TOKEN's push credentials); add `persist-credentials: false`, and push with `ssh-key: ${{{{ secrets.{DEPLOY_KEY} }}}}`"
            ));
        }
        if !built && step_has_power(step) && job_runs_xtask(&steps) {
            found.push(format!(
                "{at}, {label}: a secret or push credential before xtask is built; first a step with no secrets runs `cargo xtask --help` (the build, --locked)"
            ));
            built = true;
        }
        let run = step["run"].as_str().unwrap_or_default();
        built |= run.contains("cargo xtask --help") || run.contains("cargo build --locked");
        let mut step_tainted = tainted.clone();
        step_tainted.extend(tainted_env(&step["env"], &tainted));
        let at = format!("{at}, {label}");
        found.extend(run_problems(&at, "run", run, &step_tainted));
        let uses = step["uses"].as_str().unwrap_or_default();
        if uses.starts_with("actions/github-script@") {
            let script = step["with"]["script"].as_str().unwrap_or_default();
            found.extend(run_problems(&at, "script", script, &step_tainted));
        }
    }
    if secret_names(&job["env"].to_string()).next().is_some() {
        found.push(format!("{at}: the job's `env:` holds a secret every step sees; move it to the steps that need it"));
    }
    found
}

/// `(name, value)` of the `env:` entries whose value holds an untrusted
/// expression, or an `env.X` of an entry in `outer` (or earlier here) that does.
fn tainted_env(env: &Value, outer: &[(String, String)]) -> Vec<(String, String)> {
    let mut tainted: Vec<(String, String)> = Vec::new();
    for (name, value) in env.as_object().into_iter().flatten() {
        let Some(value) = value.as_str() else {
            continue;
        };
        let through = outer
            .iter()
            .chain(&tainted)
            .any(|(n, _)| names_env(value, n));
        if through || UNTRUSTED.iter().any(|u| value.contains(u)) {
            tainted.push((name.clone(), value.to_owned()));
        }
    }
    tainted
}

fn job_runs_xtask(steps: &[Value]) -> bool {
    steps
        .iter()
        .any(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo xtask")))
}

/// `${{ }}` of untrusted input inside a `run:` script or a github-script
/// `script:` (an injection), directly or through an `env:` entry holding it.
fn run_problems(at: &str, key: &str, run: &str, tainted: &[(String, String)]) -> Vec<String> {
    run.match_indices("${{")
        .filter_map(|(start, _)| {
            let rest = &run[start..];
            let expression = &rest[..rest.find("}}").map_or(rest.len(), |end| end + 2)];
            let through = tainted
                .iter()
                .find(|(name, _)| names_env(expression, name))
                .map(|(name, value)| format!(" (env.{name} is `{value}`)"));
            let direct = UNTRUSTED.iter().any(|u| expression.contains(u));
            (direct || through.is_some()).then(|| {
                format!(
                    "{at}: `{expression}`{} inside `{key}:` is pasted into the script before it runs; pass it through the step's `env:` and use \"$NAME\" (process.env.NAME in a script)",
                    through.unwrap_or_default()
                )
            })
        })
        .collect()
}

/// Whether `expression` reads `env.<name>` (the whole name).
fn names_env(expression: &str, name: &str) -> bool {
    let needle = format!("env.{name}");
    expression.match_indices(&needle).any(|(at, _)| {
        let after = expression[at + needle.len()..].chars().next();
        let before = expression[..at].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
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

#[cfg(test)]
pub(crate) mod tests {
    /// A copy of this repository's policy files (gitops/argocd, .github) in a fresh
    /// temporary directory; each test makes one attacker's edit to it (also
    /// `workflow_wiring`'s tests).
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
            // The toolchain file `workflow_wiring` checks beside the workflows.
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
        fn refused(&self, expected: &[&str]) {
            let problems = super::problems(self.0.path());
            for needle in expected {
                assert!(
                    problems.iter().any(|p| p.contains(needle)),
                    "no problem mentions {needle:?}: {problems:#?}"
                );
            }
        }
    }

    #[test]
    fn this_repositorys_files_pass() {
        let copy = Copy::new("real");
        assert_eq!(super::problems(copy.0.path()), Vec::<String>::new());
        let real = super::problems(&crate::plumbing::workspace::root());
        assert_eq!(real, Vec::<String>::new());
    }

    #[test]
    fn root_app_back_in_default_is_refused() {
        Copy::new("root-default")
            .edit(
                "gitops/argocd/root.yaml",
                "project: service-demo-bootstrap",
                "project: default",
            )
            .refused(&["gitops/argocd/root.yaml: the root app is in project \"default\""]);
    }

    #[test]
    fn root_app_reading_the_projects_is_refused() {
        Copy::new("root-recursive")
            .edit(
                "gitops/argocd/root.yaml",
                "path: gitops/argocd/apps",
                "path: gitops/argocd",
            )
            .edit("gitops/argocd/root.yaml", "recurse: false", "recurse: true")
            .refused(&["set `spec.source.path: gitops/argocd/apps`", "recursively"]);
    }

    #[test]
    fn cluster_role_binding_whitelisted_in_a_project_is_refused() {
        let binding = "- group: rbac.authorization.k8s.io\n      kind: ClusterRoleBinding\n    - group: \"\"\n      kind: Namespace";
        let copy = Copy::new("crb");
        copy.edit(
            "gitops/argocd/project.yaml",
            "- group: \"\"\n      kind: Namespace",
            binding,
        )
        .refused(&["project service-demo clusterResourceWhitelist has ClusterRoleBinding"]);
        copy.edit("gitops/argocd/bootstrap-project.yaml", "clusterResourceWhitelist: []", "clusterResourceWhitelist:\n    - group: rbac.authorization.k8s.io\n      kind: ClusterRoleBinding")
            .refused(&["service-demo-bootstrap whitelists the cluster-scoped ClusterRoleBinding"]);
    }

    #[test]
    fn app_project_whitelisted_in_service_demo_is_refused() {
        Copy::new("appproject")
            .edit(
                "gitops/argocd/project.yaml",
                "    - group: apps\n      kind: Deployment",
                "    - group: argoproj.io\n      kind: AppProject\n    - group: apps\n      kind: Deployment",
            )
            .refused(&["project service-demo namespaceResourceWhitelist has AppProject (group \"argoproj.io\")"]);
    }

    #[test]
    fn cluster_policy_whitelisted_in_service_demo_is_refused() {
        Copy::new("clusterpolicy")
            .edit(
                "gitops/argocd/project.yaml",
                "- group: \"\"\n      kind: Namespace",
                "- group: kyverno.io\n      kind: ClusterPolicy\n    - group: \"\"\n      kind: Namespace",
            )
            .refused(&["project service-demo clusterResourceWhitelist has ClusterPolicy (group \"kyverno.io\")"]);
    }

    #[test]
    fn an_application_pushed_into_the_default_project_is_refused() {
        let copy = Copy::new("default-open");
        copy.edit(
            "gitops/argocd/apps/services.yaml",
            "project: service-demo",
            "project: default",
        )
        .refused(&["apps/services.yaml: deploys through project \"default\""]);
        copy.edit(
            "gitops/argocd/default-project.yaml",
            "sourceRepos: []",
            "sourceRepos: [\"*\"]",
        )
        .refused(&["the default project must allow nothing; set `spec.sourceRepos: []`"]);
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
            !super::problems(copy.0.path())
                .iter()
                .any(|p| p.contains("CODEOWNERS")),
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
}
