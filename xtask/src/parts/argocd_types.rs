//! Argo CD's `argoproj.io/v1alpha1` objects as typed definitions, following
//! the CRDs (Application, ApplicationSet, AppProject in Argo CD's
//! `manifests/crds/`; Go types in `pkg/apis/application/v1alpha1/types.go`,
//! `app_project_types.go`, `applicationset_types.go`). Parsed with
//! `manifests::parse_strict`, a field the CRD does not have is an error with its
//! path, as Argo CD's API server would reject it. Only the generators this
//! project uses are modelled; another one is reported as unknown, which names it.
#![allow(
    dead_code,
    reason = "the fields are the schema: serde reads them to validate, the checks read the JSON"
)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `metadata` of any object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub finalizers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ApplicationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    pub project: String,
    pub source: Option<ApplicationSource>,
    pub sources: Option<Vec<ApplicationSource>>,
    pub destination: Destination,
    pub sync_policy: Option<SyncPolicy>,
    pub revision_history_limit: Option<i64>,
    pub ignore_differences: Option<Vec<Value>>,
    pub info: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub target_revision: Option<String>,
    pub path: Option<String>,
    pub chart: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub helm: Option<HelmSource>,
    pub directory: Option<DirectorySource>,
    pub kustomize: Option<Value>,
    pub plugin: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    #[serde(default)]
    pub value_files: Vec<String>,
    pub values: Option<String>,
    pub values_object: Option<Value>,
    pub parameters: Option<Vec<Value>>,
    pub release_name: Option<String>,
    pub ignore_missing_value_files: Option<bool>,
    pub pass_credentials: Option<bool>,
    pub skip_crds: Option<bool>,
    pub version: Option<String>,
    pub namespace: Option<String>,
    pub kube_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySource {
    pub recurse: Option<bool>,
    pub exclude: Option<String>,
    pub include: Option<String>,
    pub jsonnet: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub server: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    pub automated: Option<Automated>,
    #[serde(default)]
    pub sync_options: Vec<String>,
    pub managed_namespace_metadata: Option<ManagedNamespaceMetadata>,
    pub retry: Option<Retry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Automated {
    pub prune: Option<bool>,
    pub self_heal: Option<bool>,
    pub allow_empty: Option<bool>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ManagedNamespaceMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Retry {
    pub limit: Option<i64>,
    pub backoff: Option<Backoff>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub duration: Option<String>,
    pub factor: Option<i64>,
    pub max_duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSet {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ApplicationSetSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    pub go_template: Option<bool>,
    #[serde(default)]
    pub go_template_options: Vec<String>,
    pub generators: Vec<Generator>,
    pub template: ApplicationTemplate,
    pub sync_policy: Option<Value>,
    pub strategy: Option<Value>,
    pub template_patch: Option<String>,
    pub preserved_fields: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    pub pull_request: Option<PullRequestGenerator>,
    pub list: Option<ListGenerator>,
    pub git: Option<GitGenerator>,
    pub matrix: Option<MatrixGenerator>,
    pub clusters: Option<Value>,
    pub selector: Option<Value>,
}

/// Every combination of its two children's parameters; with goTemplate, the
/// second child may use the first one's (`path: pr-*/{{.valuesFile}}`).
#[derive(Debug, Deserialize)]
pub struct MatrixGenerator {
    pub generators: Vec<Generator>,
    pub template: Option<Value>,
}

/// A literal list of parameter sets (objects, nested with goTemplate).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListGenerator {
    #[serde(default)]
    pub elements: Vec<Value>,
    pub elements_yaml: Option<String>,
    pub template: Option<Value>,
}

/// Files (or directories) of a git repository, one parameter set each.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitGenerator {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub revision: String,
    #[serde(default)]
    pub files: Vec<GitPathItem>,
    #[serde(default)]
    pub directories: Vec<GitPathItem>,
    pub requeue_after_seconds: Option<i64>,
    pub path_param_prefix: Option<String>,
    pub template: Option<Value>,
    pub values: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct GitPathItem {
    pub path: String,
    pub exclude: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGenerator {
    pub github: Option<GithubPullRequests>,
    pub requeue_after_seconds: Option<i64>,
    pub filters: Option<Vec<Value>>,
    pub template: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GithubPullRequests {
    pub owner: String,
    pub repo: String,
    pub api: Option<String>,
    pub token_ref: Option<SecretRef>,
    pub app_secret_name: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub secret_name: String,
    pub key: String,
}

/// An Application as an ApplicationSet templates it (no apiVersion/kind).
#[derive(Debug, Deserialize)]
pub struct ApplicationTemplate {
    pub metadata: ObjectMeta,
    pub spec: ApplicationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: AppProjectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    pub description: Option<String>,
    #[serde(default)]
    pub source_repos: Vec<String>,
    #[serde(default)]
    pub destinations: Vec<Destination>,
    #[serde(default)]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    #[serde(default)]
    pub cluster_resource_blacklist: Vec<GroupKind>,
    #[serde(default)]
    pub namespace_resource_whitelist: Vec<GroupKind>,
    #[serde(default)]
    pub namespace_resource_blacklist: Vec<GroupKind>,
    pub orphaned_resources: Option<OrphanedResources>,
    pub roles: Option<Vec<Value>>,
    pub sync_windows: Option<Vec<Value>>,
    pub source_namespaces: Option<Vec<String>>,
    pub signature_keys: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Debug, Deserialize)]
pub struct OrphanedResources {
    pub warn: Option<bool>,
    pub ignore: Option<Vec<Value>>,
}
