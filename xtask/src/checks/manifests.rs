//! Checks on what Argo CD, Kubernetes and GitHub Actions read, for what their
//! own schema validators do not catch: the `restricted` Pod Security Standard
//! and the chart's promises (rendered manifests), the consistency of the Argo CD
//! objects with the project, the repository and the chart, and "no pipeline
//! logic in YAML" for the workflows. Each check returns every problem found,
//! each naming the file and the fix.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use serde_json::Value;

use crate::domain::application_sets::{self, Generated, ServiceElement};
use crate::domain::argocd_api;
use crate::domain::promotion::{Env, UNDECLARED_VALUES_FILE};
use crate::domain::services::Service;
use crate::plumbing::text::glob_match;
use crate::plumbing::yaml::parse_strict;

/// A kind this project writes: its one apiVersion and its strict parser.
struct KnownKind {
    api_version: &'static str,
    kind: &'static str,
    /// Every mistake of a document of this kind (`what` names it); `None`
    /// when its schema is not here (another operator's resource).
    check: Option<fn(&Value, &str) -> Vec<String>>,
}

const fn known<T: serde::de::DeserializeOwned>(
    api_version: &'static str,
    kind: &'static str,
) -> KnownKind {
    KnownKind {
        api_version,
        kind,
        check: Some(strict_problems::<T>),
    }
}

/// A custom resource checked against its upstream CRD
/// (`schemas::check_custom_resource`), not here.
const fn upstream(api_version: &'static str, kind: &'static str) -> KnownKind {
    KnownKind {
        api_version,
        kind,
        check: None,
    }
}

/// Every kind this project writes, Kubernetes objects as k8s-openapi types;
/// the custom resources (Argo CD's, CloudNativePG's `Cluster`, Kyverno's
/// `ClusterPolicy`) against their upstream CRDs instead, by `schemas`.
const KNOWN_KINDS: [KnownKind; 17] = {
    use k8s_openapi::api::{autoscaling, batch, core, networking, policy};
    [
        known::<Deployment>("apps/v1", "Deployment"),
        known::<batch::v1::Job>("batch/v1", "Job"),
        known::<core::v1::Service>("v1", "Service"),
        known::<core::v1::ServiceAccount>("v1", "ServiceAccount"),
        known::<core::v1::Namespace>("v1", "Namespace"),
        known::<core::v1::Secret>("v1", "Secret"),
        known::<policy::v1::PodDisruptionBudget>("policy/v1", "PodDisruptionBudget"),
        known::<networking::v1::NetworkPolicy>("networking.k8s.io/v1", "NetworkPolicy"),
        known::<networking::v1::Ingress>("networking.k8s.io/v1", "Ingress"),
        known::<autoscaling::v2::HorizontalPodAutoscaler>(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
        ),
        upstream("argoproj.io/v1alpha1", "Application"),
        upstream("argoproj.io/v1alpha1", "ApplicationSet"),
        upstream("argoproj.io/v1alpha1", "AppProject"),
        upstream("postgresql.cnpg.io/v1", "Cluster"),
        upstream("kyverno.io/v1", "ClusterPolicy"),
        // Custom resources of other operators: their schemas are not here.
        KnownKind {
            api_version: "monitoring.coreos.com/v1",
            kind: "ServiceMonitor",
            check: None,
        },
        KnownKind {
            api_version: "external-secrets.io/v1beta1",
            kind: "ExternalSecret",
            check: None,
        },
    ]
};

/// One document of any kind this project writes, parsed strictly by its type.
/// Every mistake is named in one pass: a wrong apiVersion, the fields the
/// schema does not have, and what does not parse. `where_` names the file and document.
pub fn check_document(where_: &str, doc: &Value) -> Vec<String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let what = format!("{where_}: {kind} {name} ({api_version})");
    let Some(known) = KNOWN_KINDS.iter().find(|k| k.kind == kind) else {
        let kinds: Vec<&str> = KNOWN_KINDS.iter().map(|k| k.kind).collect();
        return vec![format!(
            "{what}: not a kind this project writes ({})",
            kinds.join(", ")
        )];
    };
    let mut problems = Vec::new();
    if api_version != known.api_version {
        problems.push(format!(
            "{what}: apiVersion must be {} for {kind}",
            known.api_version
        ));
    }
    if let Some(check) = known.check {
        // Parsed as if the apiVersion were right, so the rest is checked too
        // (k8s-openapi's types would stop at the apiVersion).
        let mut corrected = doc.clone();
        corrected["apiVersion"] = Value::from(known.api_version);
        problems.extend(check(&corrected, &what));
    }
    problems
}

/// Every mistake `parse_strict` finds: the unknown fields (all of them, with
/// their paths) and, when the document does not parse, why.
fn strict_problems<T: serde::de::DeserializeOwned>(doc: &Value, what: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let parsed: Result<T, _> =
        serde_ignored::deserialize(doc, |path| unknown.push(path.to_string().replace(".?", "")));
    let mut problems = Vec::new();
    if !unknown.is_empty() {
        problems.push(format!(
            "{what} has fields its schema does not have: {}",
            unknown.join(", ")
        ));
    }
    if let Err(error) = parsed {
        problems.push(format!(
            "{what} does not parse as its Kubernetes type: {error}"
        ));
    }
    problems
}

/// What the chart must render for an environment.
pub struct Expected<'a> {
    pub env: &'a str,
    /// `repository@digest` or `repository:tag`, as the values ask.
    pub image: String,
    pub replicas: i32,
}

/// The rendered chart of one environment: every object parses strictly, and
/// its one Deployment keeps the restricted Pod Security Standard and the chart's promises.
pub fn check_rendered(docs: &[Value], expected: &Expected) -> Vec<String> {
    let env = expected.env;
    let typed: Vec<String> = docs
        .iter()
        .enumerate()
        .flat_map(|(n, doc)| check_document(&format!("{env} document {}", n + 1), doc))
        .collect();
    if !typed.is_empty() {
        return typed;
    }
    let deployment = match the_deployment(docs, env) {
        Ok(deployment) => deployment,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("{env}: {p}"));
    let spec = deployment.spec.unwrap_or_default();
    if spec.replicas != Some(expected.replicas) {
        problem(format!(
            "replicas {:?}, the values ask for {}",
            spec.replicas, expected.replicas
        ));
    }
    let pod = spec.template.spec.unwrap_or_default();
    check_pod_security(&pod, &mut problem);
    check_pod_shutdown(&pod, &mut problem);
    for container in &pod.containers {
        let mut problem = |p: String| problem(format!("container {}: {p}", container.name));
        check_container_security(container, &mut problem);
        check_container_runtime(container, &expected.image, &mut problem);
        check_container_env(container, &mut problem);
    }
    problems.extend(metadata_problems(docs, env));
    problems
}

/// The Ingress annotations a values file may set (`ingress.annotations`):
/// limits on its own requests. ingress-nginx's others route traffic (canary,
/// `mirror-target`, `permanent-redirect`, `server-snippet`…): a reviewed
/// change to this list, never a values file, adds one.
pub const INGRESS_ANNOTATIONS: [&str; 7] = [
    "nginx.ingress.kubernetes.io/proxy-body-size",
    "nginx.ingress.kubernetes.io/proxy-connect-timeout",
    "nginx.ingress.kubernetes.io/proxy-read-timeout",
    "nginx.ingress.kubernetes.io/proxy-send-timeout",
    "nginx.ingress.kubernetes.io/limit-connections",
    "nginx.ingress.kubernetes.io/limit-rps",
    "nginx.ingress.kubernetes.io/limit-rpm",
];
/// The pod annotations a values file may set (`podAnnotations`): none that
/// loosens the pod (AppArmor `unconfined`) or asks another controller for
/// something (a sidecar, a mesh).
pub const POD_ANNOTATIONS: [&str; 4] = [
    "prometheus.io/scrape",
    "prometheus.io/port",
    "prometheus.io/path",
    "kubectl.kubernetes.io/default-container",
];
/// The pod labels a values file may add (`podLabels`) to the chart's own:
/// labels select pods (a Service's `cnpg.io/cluster` + `cnpg.io/instanceRole:
/// primary` would send the database's clients to this pod, a NetworkPolicy's
/// would open it), so only these inert ones.
pub const POD_LABELS: [&str; 2] = ["team", "tier"];

/// Annotations and labels outside the allow-lists: the Ingress's, and the
/// pod templates' (each chart label as its object has it, plus [`POD_LABELS`]).
pub fn metadata_problems(docs: &[Value], env: &str) -> Vec<String> {
    let mut found = Vec::new();
    let keys = |value: &Value| -> Vec<(String, Value)> {
        let map = value.as_object().cloned().unwrap_or_default();
        map.into_iter().collect()
    };
    for doc in docs {
        let what = format!(
            "{env}: {} {}",
            doc["kind"].as_str().unwrap_or_default(),
            doc["metadata"]["name"].as_str().unwrap_or_default()
        );
        if doc["kind"] == "Ingress" {
            for (key, _) in keys(&doc["metadata"]["annotations"]) {
                if !INGRESS_ANNOTATIONS.contains(&key.as_str()) {
                    found.push(format!(
                        "{what}: annotation {key} is not one ingress.annotations may set ({}): ingress-nginx's \
                         canary, mirror, redirect and snippet annotations send requests elsewhere; remove it",
                        INGRESS_ANNOTATIONS.join(", ")
                    ));
                }
            }
        }
        if !matches!(doc["kind"].as_str(), Some("Deployment" | "Job")) {
            continue;
        }
        let template = &doc["spec"]["template"]["metadata"];
        for (key, _) in keys(&template["annotations"]) {
            if !POD_ANNOTATIONS.contains(&key.as_str()) {
                found.push(format!(
                    "{what}: pod annotation {key} is not one podAnnotations may set ({}); remove it",
                    POD_ANNOTATIONS.join(", ")
                ));
            }
        }
        let own = &doc["metadata"]["labels"];
        for (key, value) in keys(&template["labels"]) {
            let chart_label = own.get(&key) == Some(&value);
            if !(chart_label || POD_LABELS.contains(&key.as_str())) {
                found.push(format!(
                    "{what}: pod label {key}={value} is not the chart's nor one podLabels may add ({}): \
                     labels select pods for Services and NetworkPolicies; remove it",
                    POD_LABELS.join(", ")
                ));
            }
        }
    }
    found
}

/// The one Deployment among `docs`, parsed strictly; else the problem.
fn the_deployment(docs: &[Value], env: &str) -> Result<Deployment, String> {
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    let [deployment] = deployments.as_slice() else {
        return Err(format!(
            "{env}: expected one Deployment, the chart rendered {}",
            deployments.len()
        ));
    };
    parse_strict(deployment, &format!("{env}: the Deployment")).map_err(|e| format!("{e:#}"))
}

/// The pod-level rules of the restricted Pod Security Standard
/// (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted)
/// and the chart's own: no API token, replicas spread over nodes.
fn check_pod_security(pod: &PodSpec, problem: &mut impl FnMut(String)) {
    let pod_security = pod.security_context.clone().unwrap_or_default();
    if pod_security.run_as_non_root != Some(true) {
        problem("pod securityContext.runAsNonRoot must be true (restricted PSS)".into());
    }
    if pod_security.run_as_user != Some(65532) {
        problem("pod securityContext.runAsUser must be 65532, the image's nonroot user".into());
    }
    if pod_security
        .seccomp_profile
        .as_ref()
        .map(|s| s.type_.as_str())
        != Some("RuntimeDefault")
    {
        problem("pod seccompProfile must be RuntimeDefault (restricted PSS)".into());
    }
    if pod.automount_service_account_token != Some(false) {
        problem(
            "automountServiceAccountToken must be false: the service never calls the API".into(),
        );
    }
    if pod
        .topology_spread_constraints
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        problem("no topologySpreadConstraints: replicas could all land on one node".into());
    }
}

/// The service's own bound on `/readyz` (at most 1 s waiting for a pool
/// connection, `items-api`'s `READY_WAIT`): a probe must wait longer.
const READY_BOUND_SECONDS: i32 = 1;
/// items-api's default `REQUEST_TIMEOUT_SECONDS`, when the env does not set it.
const DEFAULT_REQUEST_TIMEOUT_SECONDS: i64 = 20;

/// The timings that must agree with the service's: Kubernetes waits longer
/// than the drain plus the longest request before it kills the pod, and the
/// readiness probe waits longer than `/readyz` can take.
fn check_pod_shutdown(pod: &PodSpec, problem: &mut impl FnMut(String)) {
    let container = pod.containers.first();
    let env_seconds = |name: &str| {
        container
            .and_then(|c| c.env.as_ref())
            .and_then(|env| env.iter().find(|e| e.name == name))
            .and_then(|e| e.value.as_deref()?.parse::<i64>().ok())
    };
    let drain = env_seconds("SHUTDOWN_DRAIN_SECONDS");
    let request = env_seconds("REQUEST_TIMEOUT_SECONDS").unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECONDS);
    match (pod.termination_grace_period_seconds, drain) {
        (Some(grace), Some(drain)) if grace > drain + request => {}
        (grace, drain) => problem(format!(
            "terminationGracePeriodSeconds {grace:?} must exceed SHUTDOWN_DRAIN_SECONDS {drain:?} + \
             REQUEST_TIMEOUT_SECONDS {request}: a request accepted at the end of the drain may run that long"
        )),
    }
    let readiness_timeout = container
        .and_then(|c| c.readiness_probe.as_ref())
        .map(|p| p.timeout_seconds.unwrap_or(1));
    if let Some(timeout) = readiness_timeout
        && timeout <= READY_BOUND_SECONDS
    {
        problem(format!(
            "readinessProbe timeoutSeconds {timeout} must exceed {READY_BOUND_SECONDS} s, the longest /readyz \
             waits for a database connection: a busy pool would turn every replica unready at once"
        ));
    }
}

/// The container-level rules of the restricted Pod Security Standard, and a read-only root.
fn check_container_security(container: &Container, problem: &mut impl FnMut(String)) {
    let security = container.security_context.clone().unwrap_or_default();
    if security.allow_privilege_escalation != Some(false) {
        problem("allowPrivilegeEscalation must be false (restricted PSS)".into());
    }
    if security.read_only_root_filesystem != Some(true) {
        problem("readOnlyRootFilesystem must be true".into());
    }
    let dropped = security
        .capabilities
        .and_then(|c| c.drop)
        .unwrap_or_default();
    if !dropped.iter().any(|c| c == "ALL") {
        problem("capabilities must drop ALL (restricted PSS)".into());
    }
}

/// The image the values ask for, bounded resources, and the probes the service answers.
fn check_container_runtime(container: &Container, image: &str, problem: &mut impl FnMut(String)) {
    if container.image.as_deref() != Some(image) {
        problem(format!(
            "image {:?}, the values ask for {image}",
            container.image
        ));
    }
    let resources = container.resources.clone().unwrap_or_default();
    if resources.requests.is_none()
        || resources
            .limits
            .as_ref()
            .is_none_or(|l| !l.contains_key("memory"))
    {
        problem("resources need requests and a memory limit".into());
    }
    let probe_path = |probe: &Option<Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    if probe_path(&container.liveness_probe).as_deref() != Some("/healthz") {
        problem("livenessProbe must GET /healthz (it does not depend on the store)".into());
    }
    if probe_path(&container.readiness_probe).as_deref() != Some("/readyz") {
        problem("readinessProbe must GET /readyz (it turns 503 on shutdown)".into());
    }
}

/// The environment the service reads: no secret in git, the names it reports set.
fn check_container_env(container: &Container, problem: &mut impl FnMut(String)) {
    let env = container.env.as_deref().unwrap_or_default();
    let literal_url = env
        .iter()
        .find(|e| e.name == "DATABASE_URL")
        .is_some_and(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_none()
        });
    if literal_url {
        problem("DATABASE_URL must come from a Secret (secretKeyRef), never a value in git".into());
    }
    for var in ["ENV_NAME", "SERVICES_NAMESPACE", "APP_VERSION"] {
        let value = env
            .iter()
            .find(|e| e.name == var)
            .and_then(|e| e.value.as_deref());
        if value.is_none_or(str::is_empty) {
            problem(format!("{var} is not set"));
        }
    }
}

/// Every `(group, kind)` a set of rendered objects uses, for the AppProject's whitelists.
pub fn kinds(docs: &[Value]) -> BTreeSet<(String, String)> {
    docs.iter()
        .map(|d| {
            let api_version = d["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            (
                group.to_owned(),
                d["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The Argo CD objects under `gitops/argocd`, against the repository at `root`,
/// the kinds the chart renders and the workspace's services: every
/// Application file, and every Application each ApplicationSet makes.
/// Returns the problems, and the names of the Applications the sets make.
pub fn check_argocd(
    root: &Path,
    docs: &[(String, Value)],
    chart_kinds: &BTreeSet<(String, String)>,
    services: &[Service],
) -> (Vec<String>, Vec<String>) {
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
    let mut names: Vec<String> = generated.iter().map(|g| g.name().to_owned()).collect();
    names.sort();
    let mut seen = BTreeSet::new();
    for name in &names {
        if !seen.insert(name) {
            problems.push(format!(
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
            problems.push(format!(
                "{file}: Application {name} is also made by an ApplicationSet, which would take it over: \
                 rename the service (its values file) or this Application"
            ));
        }
    }
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
    fn check_object(&self, file: &str, doc: &Value, generated: &mut Vec<Generated>) -> Vec<String> {
        // The typed parse names the apiVersion and every unknown field; the
        // checks below read the JSON, so they run too: every mistake in one pass.
        let mut problems = check_document(file, doc);
        let mut problem = |p: String| problems.push(format!("{file}: {p}"));
        if doc["metadata"]["namespace"] != "argocd" {
            problem(
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
            other => problem(format!("unexpected kind {other}")),
        }
        problems
    }

    /// An ApplicationSet: what it is allowed to be, then every Application it
    /// makes, typed and checked as an Application file is.
    fn check_set(&self, set: &Value, problem: &mut impl FnMut(String)) -> Vec<Generated> {
        check_set_generators(set, problem);
        let (generated, found) = application_sets::expand(self.root, set);
        found.into_iter().for_each(&mut *problem);
        for app in &generated {
            let name = app.name();
            for found in check_document(&format!("generated Application {name}"), &app.application)
            {
                problem(found);
            }
            let role = generated_role(app);
            let mut problem = |p: String| problem(format!("generated Application {name}: {p}"));
            self.check_application(&app.application, &role, &mut problem);
            check_generated_name(app, &mut problem);
        }
        generated
    }

    /// An Application: one source, in a project that allows it, reading the
    /// files the pipeline writes, synced as the tutorial has it.
    fn check_application(&self, app: &Value, role: &Role, problem: &mut impl FnMut(String)) {
        let spec = &app["spec"];
        if spec.get("sources").is_some() {
            problem("multi-source apps are not used here: keep `source`".into());
        }
        for key in ["health", "ignoreDifferences"] {
            if spec.get(key).is_some() {
                problem(format!(
                    "spec.{key}: custom health checks belong in argocd-cm (terraform/main.tf), not the Application"
                ));
            }
        }
        self.check_project(spec, problem);
        self.check_source(&spec["source"], role, problem);
        check_sync_policy(spec, role, problem);
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
) -> Vec<String> {
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
                problems.push(format!(
                    "services/{}/service.toml: values-file {} makes Application {name}, which the previews' \
                     token (`{PREVIEWS_RBAC}` in gitops/argocd/project.yaml and terraform/main.tf) could sync; \
                     choose a values-file whose stem neither contains nor ends in `-pr`",
                    service.name, element.values_file
                ));
            }
            if !names.contains(name.as_str()) {
                problems.push(format!(
                    "gitops/argocd: no Application {name} for service {} in {env}: add its element \
                     (service: {}, chart: {}, valuesFile: {}) to the services lists of {} and {} \
                     (`cargo xtask new-service` writes it), and keep {env} in the environments list",
                    service.name,
                    element.service,
                    element.chart,
                    element.values_file,
                    application_sets::SERVICES_SET,
                    application_sets::PREVIEWS_SET,
                ));
            }
        }
    }
    problems.extend(element_problems(generated, services));
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

/// A workflow: thin (every command is `cargo xtask …` or `.ci/run`, or the
/// prebuilt xtask's fixed check-and-install script), pinned
/// actions, least privilege, bounded jobs.
pub fn check_workflow(file: &str, doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("{file}: {p}"));
    if doc.get("permissions").is_none() {
        problem("no top-level `permissions`: the default token may write everything".into());
    }
    if doc.get("concurrency").is_none() {
        problem("no `concurrency` group".into());
    }
    for (job_name, job) in doc["jobs"].as_object().into_iter().flatten() {
        if job.get("timeout-minutes").is_none() {
            problem(format!("job {job_name} has no timeout-minutes"));
        }
        for step in job["steps"].as_array().into_iter().flatten() {
            if let Some(uses) = step["uses"].as_str() {
                let pinned = uses.rsplit_once('@').is_some_and(|(_, r)| {
                    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !pinned {
                    problem(format!(
                        "job {job_name}: `uses: {uses}` must be pinned to a full commit sha"
                    ));
                }
            }
            // The prebuilt xtask's check and install: a fixed script (workflow_wiring holds where it may run).
            let prebuilt = step["run"]
                .as_str()
                .is_some_and(crate::plumbing::prebuilt::is_install_script);
            if let Some(run) = step["run"].as_str().filter(|_| !prebuilt) {
                for line in run
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    // Installing the build's toolchain and C compilers is set-up, not pipeline logic.
                    let setup = ["sudo apt-get ", "rustup "]
                        .iter()
                        .any(|p| line.starts_with(p));
                    if let Some(wrong) = unpinned_cargo_install(line) {
                        problem(format!("job {job_name}: {wrong}"));
                        continue;
                    }
                    let pinned_install = line.starts_with("cargo install --locked ");
                    if !(line.starts_with("cargo xtask ")
                        || line == "bash .ci/run"
                        || setup
                        || pinned_install
                        || is_summary_line(line))
                    {
                        problem(format!(
                            "job {job_name}: `{line}` is pipeline logic in YAML; make it a `cargo xtask` command"
                        ));
                    }
                }
            }
        }
    }
    problems
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn globs_match_like_argo_cd_destinations() {
        assert!(glob_match("pr-*", "pr-12"));
        assert!(glob_match("*", "prod"));
        assert!(!glob_match("pr-*", "prod"));
        assert!(glob_match("prod", "prod"));
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let doc = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "imagePullPolicyy": "Always"}]}}}});
        let error = parse_strict::<Deployment>(&doc, "the Deployment")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("spec.template.spec.containers.0.imagePullPolicyy"),
            "{error}"
        );
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
}
