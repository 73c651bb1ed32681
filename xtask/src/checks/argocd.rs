//! Argo CD's objects under `gitops/argocd`: in `argocd`, each Application (and
//! every one the ApplicationSets make, expanded as Argo CD would) in a project
//! that allows it, reading the chart and the values file the pipeline writes,
//! synced as the tutorial has it, named as the commands expect, one per service
//! and environment; and who can change the cluster through them (the root app's
//! project, the AppProjects' kinds). The project roles' reach is `project_roles`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, bail};

use serde_json::Value;

use crate::checks::{Finding, Rule, objects, rule, tag};
use crate::domain::application_sets::{self, Generated, ServiceElement};
use crate::domain::argocd_api;
use crate::domain::promotion::{Env, UNDECLARED_VALUES_FILE};
use crate::domain::services::Service;
use crate::plumbing::fs::{Depth, yaml_documents};
use crate::plumbing::text::glob_match;

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[
    rule(
        "argocd.application-shape",
        "argocd",
        "an Application has one `source` and no custom health checks: the checks (and `argocd sync`) read one source; health belongs in argocd-cm",
    ),
    rule(
        "argocd.apps-in-service-project",
        "argocd",
        "every Application and ApplicationSet under gitops/argocd/apps deploys through the service-demo project, whose whitelists bound it",
    ),
    rule(
        "argocd.bootstrap-project",
        "argocd",
        "the root app's project may create Applications and ApplicationSets in argocd and nothing else: any other kind would let a commit change the cluster's trust",
    ),
    rule(
        "argocd.default-project-empty",
        "argocd",
        "the built-in default project allows nothing: an Application pushed with `project: default` would get every kind",
    ),
    rule(
        "argocd.generated-name",
        "argocd",
        "a generated Application is <values-file stem>-<env> in namespace <env>, a preview labelled with its number: the names `argocd sync --app`, `argocd wait --pr` and the workflows use",
    ),
    rule(
        "argocd.namespace",
        "argocd",
        "Argo CD objects are Applications, ApplicationSets or AppProjects in namespace argocd, where Argo CD looks for them",
    ),
    rule(
        "argocd.preview-token-reach",
        "argocd",
        "no long-lived Application's name matches the previews' token glob `*-pr-*`: a pull request's token could sync it",
    ),
    rule(
        "argocd.project-allows",
        "argocd",
        "an Application's project exists and allows its repository, namespace and every kind the chart renders: Argo CD would refuse to sync",
    ),
    rule(
        "argocd.project-power-kinds",
        "argocd",
        "no other project whitelists an Argo CD, RBAC or admission kind or a wildcard: a commit could change who may do what",
    ),
    rule(
        "argocd.projects-defined",
        "argocd",
        "the bootstrap, default and service-demo AppProjects are defined beside root.yaml: Terraform applies them, the root app never does",
    ),
    rule(
        "argocd.root-app",
        "argocd",
        "the root app is in its own project, reads gitops/argocd/apps alone and deploys to argocd: a commit under gitops/ can then create Applications, never AppProjects or RBAC",
    ),
    rule(
        "argocd.services-listed",
        "argocd",
        "every service of the workspace has its Application in every environment and preview, each list element is a declared service with its chart and values file",
    ),
    rule(
        "argocd.services-readable",
        "argocd",
        "the workspace's services (services/*/service.toml) load: the Argo CD rules compare the ApplicationSets with them",
    ),
    rule(
        "argocd.set-expansion",
        "argocd",
        "each ApplicationSet expands as Argo CD's controller would (the generators and template forms validate understands): what it makes is then checked as an Application file",
    ),
    rule(
        "argocd.set-generators",
        "argocd",
        "previews come from the services list × one git files generator over gitops/values/pr/pr-*, using only listed template expressions: no file name can make an Application such as service-demo-prod",
    ),
    rule(
        "argocd.source-files",
        "argocd",
        "an Application reads the chart and the values file the pipeline writes for its environment: otherwise a promotion changes nothing",
    ),
    rule(
        "argocd.sync-policy",
        "argocd",
        "preprod and previews sync automatically with prune and selfHeal, dev and prod by hand, every app creates its namespace",
    ),
    rule(
        "argocd.unique-names",
        "argocd",
        "no two Applications share a name, and no ApplicationSet makes an Application a file defines: Argo CD refuses duplicates and a set takes over what it does not own",
    ),
];

/// The Argo CD objects under `gitops/argocd`, against the repository at `root`,
/// the kinds the chart renders and the workspace's services: every
/// Application file, and every Application each ApplicationSet makes.
/// Returns the problems, and the names of the Applications the sets make.
pub fn check_argocd(
    root: &Path,
    docs: &[(String, Value)],
    chart_kinds: &BTreeSet<(String, String)>,
    services: &[Service],
) -> (Vec<Finding>, Vec<String>) {
    let context = ArgoContext {
        root,
        projects: docs
            .iter()
            .filter(|(_, d)| d["kind"] == "AppProject")
            .map(|(_, d)| d)
            .collect(),
        chart_kinds,
    };
    let mut problems = Vec::new();
    let mut generated = Vec::new();
    for (file, doc) in docs {
        problems.extend(context.check_object(file, doc, &mut generated));
    }
    problems.extend(missing_argocd_objects(docs, &generated, services));
    problems.extend(crate::checks::project_roles::problems(docs, &generated));
    let mut unique = Vec::new();
    let mut names: Vec<String> = generated.iter().map(|g| g.name().to_owned()).collect();
    names.sort();
    let mut seen = BTreeSet::new();
    for name in &names {
        if !seen.insert(name) {
            unique.push(format!(
                "gitops/argocd: the ApplicationSets make Application {name} more than once: Argo CD refuses \
                 duplicate names (two directories with the same pull-request digits, or a name without the environment)"
            ));
        }
    }
    names.dedup();
    // An ApplicationSet takes over an Application of the same name that it
    // does not own (a service named service-demo-database would rewrite the
    // database's Application into the chart's).
    for (file, doc) in docs.iter().filter(|(_, d)| d["kind"] == "Application") {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        if names.iter().any(|n| n == name) {
            unique.push(format!(
                "{file}: Application {name} is also made by an ApplicationSet, which would take it over: \
                 rename the service (its values file) or this Application"
            ));
        }
    }
    problems.extend(tag("argocd.unique-names", unique));
    (problems, names)
}

/// What every Argo CD object is checked against.
struct ArgoContext<'a> {
    root: &'a Path,
    projects: Vec<&'a Value>,
    chart_kinds: &'a BTreeSet<(String, String)>,
}

/// What an Application is for, which decides its values file and sync policy.
struct Role<'a> {
    /// Its name, in problems.
    name: &'a str,
    /// The environment it deploys (a preview: `Env::Preview`).
    env: Option<Env>,
    /// The values file the pipeline writes for it, from the repository root.
    values: Option<std::path::PathBuf>,
    /// A sample pull request's: its values file need not exist.
    sample: bool,
}

impl ArgoContext<'_> {
    /// One object of `file`: parsed strictly, in Argo CD's namespace, and, for
    /// an Application (or each one an ApplicationSet makes, added to
    /// `generated`), consistent with the rest.
    fn check_object(
        &self,
        file: &str,
        doc: &Value,
        generated: &mut Vec<Generated>,
    ) -> Vec<Finding> {
        // The typed parse names the apiVersion and every unknown field; the
        // checks below read the JSON, so they run too: every mistake in one pass.
        let mut problems = objects::check_document(file, doc);
        let mut problem = |rule: &'static str, p: String| {
            problems.push(Finding::new(rule, format!("{file}: {p}")))
        };
        if doc["metadata"]["namespace"] != "argocd" {
            problem(
                "argocd.namespace",
                "metadata.namespace must be argocd, where Argo CD looks for its objects".into(),
            );
        }
        match doc["kind"].as_str().unwrap_or_default() {
            "AppProject" => {}
            "Application" => {
                let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                self.check_application(doc, &file_role(name), &mut problem);
            }
            "ApplicationSet" => generated.extend(self.check_set(doc, &mut problem)),
            other => problem("argocd.namespace", format!("unexpected kind {other}")),
        }
        problems
    }

    /// An ApplicationSet: what it is allowed to be, then every Application it
    /// makes, typed and checked as an Application file is.
    fn check_set(
        &self,
        set: &Value,
        problem: &mut impl FnMut(&'static str, String),
    ) -> Vec<Generated> {
        check_set_generators(set, &mut |p| problem("argocd.set-generators", p));
        let (generated, found) = application_sets::expand(self.root, set);
        found
            .into_iter()
            .for_each(|p| problem("argocd.set-expansion", p));
        for app in &generated {
            let name = app.name();
            for found in
                objects::check_document(&format!("generated Application {name}"), &app.application)
            {
                problem(found.rule, found.message);
            }
            let role = generated_role(app);
            let mut problem = |rule: &'static str, p: String| {
                problem(rule, format!("generated Application {name}: {p}"))
            };
            self.check_application(&app.application, &role, &mut problem);
            check_generated_name(app, &mut |p| problem("argocd.generated-name", p));
        }
        generated
    }

    /// An Application: one source, in a project that allows it, reading the
    /// files the pipeline writes, synced as the tutorial has it.
    fn check_application(
        &self,
        app: &Value,
        role: &Role,
        problem: &mut impl FnMut(&'static str, String),
    ) {
        let spec = &app["spec"];
        let shape = "argocd.application-shape";
        if spec.get("sources").is_some() {
            problem(
                shape,
                "multi-source apps are not used here: keep `source`".into(),
            );
        }
        for key in ["health", "ignoreDifferences"] {
            if spec.get(key).is_some() {
                problem(
                    shape,
                    format!(
                        "spec.{key}: custom health checks belong in argocd-cm (terraform/main.tf), not the Application"
                    ),
                );
            }
        }
        self.check_project(spec, &mut |p| problem("argocd.project-allows", p));
        let source = &spec["source"];
        self.check_source(source, role, &mut |p| problem("argocd.source-files", p));
        check_sync_policy(spec, role, &mut |p| problem("argocd.sync-policy", p));
    }

    /// The Application's project exists and allows its repository, namespace
    /// and every kind the chart renders.
    fn check_project(&self, spec: &Value, problem: &mut impl FnMut(String)) {
        let project_name = spec["project"].as_str().unwrap_or_default();
        if project_name == "default" {
            return;
        }
        let Some(project) = self
            .projects
            .iter()
            .find(|p| p["metadata"]["name"] == project_name)
        else {
            problem(format!(
                "project {project_name:?} is not defined under gitops/argocd"
            ));
            return;
        };
        let repos = project["spec"]["sourceRepos"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !repos.contains(&spec["source"]["repoURL"]) {
            problem(format!(
                "repoURL {} is not in project {project_name}'s sourceRepos",
                spec["source"]["repoURL"]
            ));
        }
        let namespace = spec["destination"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let allowed = project["spec"]["destinations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !allowed
            .iter()
            .any(|d| glob_match(d["namespace"].as_str().unwrap_or_default(), namespace))
        {
            problem(format!(
                "destination namespace {namespace} is not among project {project_name}'s destinations"
            ));
        }
        // Only what renders the chart must be allowed the chart's kinds (the
        // root app deploys Argo CD objects, under its own narrow project).
        let deploys_chart = spec["source"]["path"]
            .as_str()
            .is_some_and(|path| path.starts_with("charts/"));
        let allowed_kinds = whitelisted_kinds(project);
        for (group, kind) in self
            .chart_kinds
            .difference(&allowed_kinds)
            .filter(|_| deploys_chart)
        {
            problem(format!(
                "the chart renders {kind} (group {group:?}), which project {project_name} does not whitelist: Argo CD would refuse to sync it"
            ));
        }
    }

    /// The chart and its values files exist where the source points, and an
    /// environment reads the values file the pipeline writes.
    fn check_source(&self, source: &Value, role: &Role, problem: &mut impl FnMut(String)) {
        let path = source["path"].as_str().unwrap_or_default();
        if !self.root.join(path).is_dir() {
            problem(format!(
                "source.path {path} is not a directory of this repository"
            ));
        }
        let reads: Vec<_> = source["helm"]["valueFiles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| normalize(&Path::new(path).join(v.as_str().unwrap_or_default())))
            .collect();
        for file in &reads {
            if !self.root.join(file).is_file() && !role.sample {
                problem(format!("helm value file {} does not exist", file.display()));
            }
        }
        if let Some(expected) = &role.values
            && !reads.contains(expected)
        {
            let (name, written_by) = match role.env {
                Some(Env::Preview(_)) => ("previews", "`cargo xtask preview deploy`"),
                _ => (role.name, "the pipeline"),
            };
            let reads: Vec<_> = reads.iter().map(|r| r.display().to_string()).collect();
            problem(format!(
                "{name} reads {}, but {written_by} writes {}",
                reads.join(", "),
                expected.display()
            ));
        }
    }
}

/// An Application file's role, from its name: `service-demo-<env>` is an
/// environment's (a fork that kept its per-environment files).
fn file_role(name: &str) -> Role<'_> {
    let env = name
        .strip_prefix("service-demo-")
        .and_then(|env| env.parse::<Env>().ok())
        .filter(|env| Env::LONG_LIVED.contains(env));
    Role {
        name,
        env,
        values: env.map(|env| Path::new("gitops").join(env.values_path(UNDECLARED_VALUES_FILE))),
        sample: false,
    }
}

/// A generated Application's role: its environment, and the values file of
/// its service there (`values/<env>/<values-file>`, previews
/// `values/pr/pr-<N>/<values-file>`).
fn generated_role(app: &Generated) -> Role<'_> {
    let values = app
        .element
        .as_ref()
        .zip(app.env)
        .map(|(element, env)| Path::new("gitops").join(env.values_path(&element.values_file)));
    Role {
        name: app.name(),
        env: app.env,
        values,
        sample: app.sample,
    }
}

/// `<values-file stem>-<env>` (previews `<stem>-pr-<N>` in namespace
/// `pr-<N>`, labelled with N): the names `argocd sync --app`, `argocd wait
/// --pr` and the workflows use.
fn check_generated_name(app: &Generated, problem: &mut impl FnMut(String)) {
    let (Some(element), Some(env)) = (&app.element, app.env) else {
        problem(
            "its parameters name no service (service, chart, valuesFile) and environment (env, or a \
             gitops/values/pr/pr-<N>/ file): validate cannot tell what it deploys"
                .into(),
        );
        return;
    };
    let expected = format!("{}-{env}", element.stem());
    if app.name() != expected {
        problem(format!(
            "is named {}, but the Application of {} in {env} is {expected} (<values-file stem>-<env>: \
             `cargo xtask argocd sync --app` and the workflows use that name)",
            app.name(),
            element.service
        ));
    }
    let namespace = &app.application["spec"]["destination"]["namespace"];
    if namespace != env.to_string().as_str() {
        problem(format!(
            "deploys to namespace {namespace}, not {env}: an environment's Applications deploy to its namespace, \
             a preview's to pr-<N>, N the digits of its pull request's directory only ({PREVIEW_NUMBER})"
        ));
    }
    if let Env::Preview(pr) = env
        && app.application["metadata"]["labels"][argocd_api::PREVIEW_LABEL]
            != pr.to_string().as_str()
    {
        problem(format!(
            "the template needs the label {}: the pull request's number, which `cargo xtask argocd wait --pr` looks for",
            argocd_api::PREVIEW_LABEL
        ));
    }
}

/// The Applications the previews' tokens may get and sync: every service's
/// `<stem>-pr-<N>`, and no long-lived one.
const PREVIEWS_RBAC: &str = "*-pr-*";

/// The files the previews' generator reads, per service (`{{.valuesFile}}`
/// is the services list's).
const PREVIEW_FILES: &str = "gitops/values/pr/pr-*/{{.valuesFile}}";

/// The pull request's number: the digits of its directory's name, and
/// nothing else, so no file or directory name can make an Application or
/// namespace that is not `pr-<digits>`.
const PREVIEW_NUMBER: &str = r#"{{regexReplaceAll "[^0-9]" .path.basename ""}}"#;

/// The expressions a set reading git files may use. Any other is refused:
/// one giving a whole file or directory name (`{{trimSuffix ".yaml"
/// .path.filename}}`) would let a file prod.yaml name the Application
/// service-demo-prod in namespace prod.
const PREVIEW_EXPRESSIONS: [&str; 7] = [
    PREVIEW_NUMBER,
    "{{.path.path}}",
    "{{.path.filename}}",
    r#"{{trimSuffix ".yaml" .valuesFile}}"#,
    "{{.valuesFile}}",
    "{{.chart}}",
    "{{.service}}",
];

/// A set is either all lists (services × environments) or the previews':
/// the services list × one git files generator over [`PREVIEW_FILES`]
/// (never GitHub's pull requests, which would create an Application before,
/// or without, its values file), using only [`PREVIEW_EXPRESSIONS`].
fn check_set_generators(set: &Value, problem: &mut impl FnMut(String)) {
    let text = set["spec"].to_string();
    let reads_git = text.contains("\"git\":") || text.contains("\"pullRequest\":");
    if !reads_git {
        return;
    }
    let children = &set["spec"]["generators"][0]["matrix"]["generators"];
    let files = children[1]["git"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let one_matrix = set["spec"]["generators"]
        .as_array()
        .is_some_and(|g| g.len() == 1);
    let reads_values = one_matrix
        && children[0].get("list").is_some()
        && files.len() == 1
        && files[0]["path"] == PREVIEW_FILES;
    if !reads_values {
        problem(format!(
            "previews must come from the services list × one git files generator over {PREVIEW_FILES}, so no \
             Application exists without its values file (not a pullRequest generator)"
        ));
    }
    let mut template = set["spec"]["template"].clone();
    if let Some(patch) = set["spec"].get("templatePatch") {
        template["templatePatch"] = patch.clone();
    }
    unlisted_expressions(&template, problem);
}

/// Every template expression not in [`PREVIEW_EXPRESSIONS`] is a problem.
fn unlisted_expressions(value: &Value, problem: &mut impl FnMut(String)) {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let end = rest[start..]
                    .find("}}")
                    .map_or(rest.len(), |e| start + e + 2);
                if !PREVIEW_EXPRESSIONS.contains(&&rest[start..end]) {
                    problem(format!(
                        "template expression in {text:?} is not one of {PREVIEW_EXPRESSIONS:?}"
                    ));
                }
                rest = &rest[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| unlisted_expressions(v, problem)),
        Value::Object(fields) => fields
            .values()
            .for_each(|v| unlisted_expressions(v, problem)),
        _ => {}
    }
}

/// The `(group, kind)`s an AppProject allows, namespaced or cluster-wide.
pub fn whitelisted_kinds(project: &Value) -> BTreeSet<(String, String)> {
    ["namespaceResourceWhitelist", "clusterResourceWhitelist"]
        .into_iter()
        .flat_map(|list| project["spec"][list].as_array().into_iter().flatten())
        .map(|k| {
            (
                k["group"].as_str().unwrap_or_default().to_owned(),
                k["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Sync policy, as the tutorial has it: preprod and previews automated, dev
/// and prod by hand; every application creates its namespace.
fn check_sync_policy(spec: &Value, role: &Role, problem: &mut impl FnMut(String)) {
    let automated = &spec["syncPolicy"]["automated"];
    let automatic = matches!(role.env, Some(Env::Preprod | Env::Preview(_)));
    let manual = matches!(role.env, Some(Env::Dev | Env::Prod));
    if automatic && (automated["prune"] != true || automated["selfHeal"] != true) {
        problem("must sync automatically with prune and selfHeal".into());
    }
    if manual && !automated.is_null() {
        problem(
            "dev and prod sync by hand (`cargo xtask argocd sync`): remove syncPolicy.automated"
                .into(),
        );
    }
    let options = spec["syncPolicy"]["syncOptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if role.name != "service-demo-root" && !options.contains(&Value::from("CreateNamespace=true")) {
        problem("syncOptions needs CreateNamespace=true".into());
    }
}

/// Each service's Application in every environment and its preview (for the
/// sample pull request), made from an element that matches its
/// `service.toml`; no element for a service the workspace does not declare.
fn missing_argocd_objects(
    docs: &[(String, Value)],
    generated: &[Generated],
    services: &[Service],
) -> Vec<Finding> {
    let mut problems = Vec::new();
    let names: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "Application")
        .filter_map(|(_, d)| d["metadata"]["name"].as_str())
        .chain(generated.iter().map(Generated::name))
        .collect();
    for service in services {
        let element = ServiceElement::of(service);
        let sample = Env::Preview(application_sets::SAMPLE_PR);
        for env in Env::LONG_LIVED.into_iter().chain([sample]) {
            let name = format!("{}-{env}", element.stem());
            if !matches!(env, Env::Preview(_)) && glob_match(PREVIEWS_RBAC, &name) {
                problems.push(Finding::new("argocd.preview-token-reach", format!(
                    "services/{}/service.toml: values-file {} makes Application {name}, which the previews' \
                     token (`{PREVIEWS_RBAC}` in gitops/argocd/project.yaml and terraform/main.tf) could sync; \
                     choose a values-file whose stem neither contains nor ends in `-pr`",
                    service.name, element.values_file
                )));
            }
            if !names.contains(name.as_str()) {
                problems.push(Finding::new("argocd.services-listed", format!(
                    "gitops/argocd: no Application {name} for service {} in {env}: add its element \
                     (service: {}, chart: {}, valuesFile: {}) to the services lists of {} and {} \
                     (`cargo xtask new-service` writes it), and keep {env} in the environments list",
                    service.name,
                    element.service,
                    element.chart,
                    element.values_file,
                    application_sets::SERVICES_SET,
                    application_sets::PREVIEWS_SET,
                )));
            }
        }
    }
    problems.extend(tag(
        "argocd.services-listed",
        element_problems(generated, services),
    ));
    problems
}

/// Each services-list element is a declared service, with its chart and values file.
fn element_problems(generated: &[Generated], services: &[Service]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for element in generated.iter().filter_map(|g| g.element.as_ref()) {
        if !seen.insert(&element.service) {
            continue;
        }
        match services.iter().find(|s| s.name == element.service) {
            None => problems.push(format!(
                "gitops/argocd: an ApplicationSet element names service {}, but there is no services/{}/service.toml",
                element.service, element.service
            )),
            Some(service) if ServiceElement::of(service) != *element => problems.push(format!(
                "gitops/argocd: the element of {} names chart {} and values file {}, but services/{}/service.toml \
                 declares {} and {}",
                element.service,
                element.chart,
                element.values_file,
                element.service,
                service.declaration.chart,
                service.declaration.values_file
            )),
            Some(_) => {}
        }
    }
    problems
}

/// `charts/service-demo/../../gitops/x` → `gitops/x`.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

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

/// Argo CD's objects, read once: every document of every YAML file under
/// `gitops/argocd`, `(path from the repository root, document)`.
pub fn load(root: &Path) -> Result<Vec<(String, Value)>> {
    let (files, unreadable) = yaml_documents(root, "gitops/argocd", Depth::Tree);
    if !unreadable.is_empty() {
        bail!("{}", unreadable.join("; "));
    }
    Ok(files
        .into_iter()
        .flat_map(|(file, docs)| docs.into_iter().map(move |doc| (file.clone(), doc)))
        .collect())
}

/// The documents of `docs` in the files directly in `dir`.
pub fn in_dir(docs: &[(String, Value)], dir: &str) -> Vec<(String, Value)> {
    let dir = Path::new(dir);
    let direct = docs
        .iter()
        .filter(|(file, _)| Path::new(file).parent() == Some(dir));
    direct.cloned().collect()
}

/// Who can change the cluster through Argo CD's objects (`docs`, from
/// [`load`]): the root app, the AppProjects, the project every app under
/// `gitops/argocd/apps` names.
pub fn trust_problems(docs: &[(String, Value)]) -> Vec<Finding> {
    let (top, apps) = (in_dir(docs, "gitops/argocd"), in_dir(docs, APPS_DIR));
    let mut found = Vec::new();
    let projects: Vec<&(String, Value)> = top
        .iter()
        .filter(|(_, d)| d["kind"] == "AppProject")
        .collect();
    found.extend(tag(
        "argocd.root-app",
        match top.iter().find(|(_, d)| d["kind"] == "Application") {
            Some((file, app)) => root_app_problems(file, app),
            None => vec!["gitops/argocd: no root Application".into()],
        },
    ));
    for (file, project) in &projects {
        found.extend(match project["metadata"]["name"].as_str() {
            Some(BOOTSTRAP_PROJECT) => tag(
                "argocd.bootstrap-project",
                bootstrap_project_problems(file, project),
            ),
            Some("default") => tag(
                "argocd.default-project-empty",
                default_project_problems(file, project),
            ),
            _ => tag(
                "argocd.project-power-kinds",
                project_kind_problems(file, project),
            ),
        });
    }
    for name in [BOOTSTRAP_PROJECT, "default", APP_PROJECT] {
        if !projects.iter().any(|(_, p)| p["metadata"]["name"] == name) {
            found.push(Finding::new("argocd.projects-defined", format!(
                "gitops/argocd: no AppProject {name}; define it beside root.yaml (terraform applies it, the root app never does)"
            )));
        }
    }
    for (file, doc) in &apps {
        found.extend(tag(
            "argocd.apps-in-service-project",
            child_app_problems(file, doc),
        ));
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

#[cfg(test)]
mod tests {
    use crate::checks::workflows::tests::Copy;
    use crate::plumbing::text::glob_match;

    #[test]
    fn globs_match_like_argo_cd_destinations() {
        assert!(glob_match("pr-*", "pr-12"));
        assert!(glob_match("*", "prod"));
        assert!(!glob_match("pr-*", "prod"));
        assert!(glob_match("prod", "prod"));
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
}
