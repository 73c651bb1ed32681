//! The upstream contracts of `xtask/schemas/sources.toml`: Argo CD's REST
//! description and the CRDs of the custom resources this repository writes,
//! each at the release the Terraform-pinned chart installs. The files live
//! in a cache folder (`cargo xtask schemas refresh` installs them), each
//! checked against its sha256 before it is used.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::plumbing::json_schema::{Dialect, Validator, Violation};

/// `xtask/schemas/sources.toml`, compiled in.
pub const SOURCES: &str = include_str!("../../schemas/sources.toml");

/// One upstream file (the fields are explained in sources.toml's header).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub file: String,
    /// `swagger`, `crd` or `example`.
    pub role: String,
    /// `group/version Kind` of a CRD or an example.
    #[serde(default)]
    pub resource: Option<String>,
    pub repo: String,
    pub tag: String,
    pub path: String,
    pub licence: String,
    pub sha256: String,
    pub terraform_variable: String,
    pub chart_version: String,
    pub chart_repo: String,
    pub chart_tag: String,
    pub chart_path: String,
    pub tag_format: String,
}

impl Source {
    /// Where GitHub serves the file at its tag.
    pub fn url(&self) -> String {
        raw_url(&self.repo, &self.tag, &self.path)
    }

    /// Where GitHub serves the Chart.yaml of chart `version`.
    pub fn chart_url(&self, version: &str) -> String {
        let tag = self.chart_tag.replace("{chart}", version);
        raw_url(&self.chart_repo, &tag, &self.chart_path)
    }
}

pub fn raw_url(repo: &str, tag: &str, path: &str) -> String {
    format!("https://raw.githubusercontent.com/{repo}/{tag}/{path}")
}

/// Every source of `text` (sources.toml's format).
pub fn parse(text: &str) -> Result<Vec<Source>> {
    #[derive(Deserialize)]
    struct Sources {
        schema: Vec<Source>,
    }
    let sources: Sources = toml::from_str(text).context("xtask/schemas/sources.toml")?;
    Ok(sources.schema)
}

/// Every source of the compiled-in sources.toml.
pub fn sources() -> Vec<Source> {
    parse(SOURCES).expect("xtask/schemas/sources.toml parses (a test holds it)")
}

/// The folder the files are installed in.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SERVICE_DEMO_SCHEMAS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/service-demo/schemas")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::plumbing::text::hex(&Sha256::digest(bytes))
}

/// The installed file of `source`, checked against its sha256.
pub fn read(source: &Source) -> Result<String> {
    let path = dir().join(&source.file);
    let fix = "run `cargo xtask schemas refresh` (bash .ci/run does)";
    let Ok(bytes) = std::fs::read(&path) else {
        bail!(
            "{} ({} {} of {}) is not installed: {fix}",
            path.display(),
            source.role,
            source.tag,
            source.repo
        );
    };
    if sha256_hex(&bytes) != source.sha256 {
        bail!(
            "{} is not the file xtask/schemas/sources.toml names ({} {} {}, sha256 {}): {fix}",
            path.display(),
            source.repo,
            source.tag,
            source.path,
            source.sha256
        );
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The default of a variable in terraform/variables.tf (a string).
pub fn terraform_default(root: &std::path::Path, variable: &str) -> Result<Option<String>> {
    let text = std::fs::read_to_string(root.join("terraform/variables.tf"))
        .context("terraform/variables.tf")?;
    let body = hcl::parse(&text).context("terraform/variables.tf is not HCL")?;
    let default = body
        .blocks()
        .filter(|b| b.identifier() == "variable")
        .find(|b| b.labels().first().is_some_and(|l| l.as_str() == variable))
        .and_then(|b| b.body().attributes().find(|a| a.key() == "default"))
        .and_then(|a| match a.expr() {
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        });
    Ok(default)
}

/// Where a Terraform pin and the schemas' versions disagree; `pinned` gives
/// a variable's default in terraform/variables.tf.
pub fn pin_problems(pinned: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for source in sources() {
        if !seen.insert((
            source.terraform_variable.clone(),
            source.chart_version.clone(),
        )) {
            continue;
        }
        let actual = pinned(&source.terraform_variable);
        if actual.as_deref() != Some(source.chart_version.as_str()) {
            problems.push(format!(
                "terraform/variables.tf pins {} = {}, and xtask/schemas/sources.toml holds the schemas of chart {} \
                 ({} {}): run `cargo xtask schemas refresh --update`, then review the diff",
                source.terraform_variable,
                actual.as_deref().unwrap_or("nothing"),
                source.chart_version,
                source.repo,
                source.tag
            ));
        }
    }
    problems
}

/// One served version of a CRD: what `apiVersion` and `kind` it validates.
pub struct Crd {
    pub api_version: String,
    pub kind: String,
    pub schema: Value,
    pub source: Source,
}

/// Every served version of every CRD of sources.toml, read and checked.
pub fn crds() -> Result<Vec<Crd>> {
    let mut crds = Vec::new();
    for source in sources().into_iter().filter(|s| s.role == "crd") {
        let text = read(&source)?;
        let crd: Value =
            yaml_serde::from_str(&text).with_context(|| format!("{} is not a CRD", source.file))?;
        let (group, kind) = (&crd["spec"]["group"], &crd["spec"]["names"]["kind"]);
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if version["served"] != true {
                continue;
            }
            crds.push(Crd {
                api_version: format!(
                    "{}/{}",
                    group.as_str().unwrap_or(""),
                    version["name"].as_str().unwrap_or("")
                ),
                kind: kind.as_str().unwrap_or("").to_owned(),
                schema: version["schema"]["openAPIV3Schema"].clone(),
                source: source.clone(),
            });
        }
    }
    Ok(crds)
}

/// The fields of `metadata` the API server knows (ObjectMeta), which a
/// CRD's own schema leaves to it.
const OBJECT_META: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Every violation of `object` against `crd`, as the API server's strict
/// field validation finds them: the CRD's schema for everything but
/// `metadata`, which is ObjectMeta's.
pub fn check_object(crd: &Crd, object: &Value) -> Vec<Violation> {
    // The CRD's schema says only `metadata: {type: object}`: ObjectMeta is the API server's.
    let mut body = object.clone();
    let metadata = match body.as_object_mut() {
        Some(fields) if fields.contains_key("metadata") => {
            fields.insert("metadata".to_owned(), Value::Object(Default::default()))
        }
        _ => None,
    }
    .unwrap_or(Value::Null);
    let mut found =
        Validator::new(&crd.schema, Dialect::Kubernetes).validate(&crd.schema, &body, "");
    match &metadata {
        Value::Object(fields) => {
            for name in fields.keys().filter(|n| !OBJECT_META.contains(&n.as_str())) {
                found.push(Violation {
                    path: format!(".metadata.{name}"),
                    message: format!("unknown field `{name}` (ObjectMeta has no such field)"),
                });
            }
        }
        _ => found.push(Violation {
            path: ".metadata".to_owned(),
            message: "missing: every object has metadata (a name at least)".to_owned(),
        }),
    }
    found
}

/// Every problem of the repository at `root` against the upstream schemas:
/// Terraform pins the schemas do not follow, and every custom resource under
/// `gitops/` (and each Application its ApplicationSets make) against its CRD.
/// `kinds` counts what was checked, per `apiVersion Kind`.
pub fn repository_problems(root: &std::path::Path) -> (Vec<String>, Tally) {
    let pinned = |variable: &str| terraform_default(root, variable).ok().flatten();
    let mut problems = pin_problems(pinned);
    let mut checked = Tally::default();
    let files = match crate::plumbing::fs::yaml_files(&root.join("gitops")) {
        Ok(files) => files,
        Err(error) => return (vec![format!("{error:#}")], checked),
    };
    for file in files {
        let name = crate::plumbing::fs::relative(root, &file);
        let docs = std::fs::read_to_string(&file)
            .map_err(anyhow::Error::from)
            .and_then(|text| crate::plumbing::yaml::split_documents(&text));
        let docs = match docs {
            Ok(docs) => docs,
            Err(error) => {
                problems.push(format!("{name}: {error:#}"));
                continue;
            }
        };
        for doc in docs {
            let mut objects = vec![(name.clone(), doc.clone())];
            if doc["kind"] == "ApplicationSet" {
                let (generated, _) = crate::domain::application_sets::expand(root, &doc);
                objects.extend(
                    generated
                        .into_iter()
                        .map(|g| (format!("{name} (generated {})", g.name()), g.application)),
                );
            }
            for (place, object) in objects {
                problems.extend(check_custom_resource(&place, &object, &mut checked));
            }
        }
    }
    (problems, checked)
}

/// The CRDs, read once per process.
fn loaded() -> &'static Result<Vec<Crd>, String> {
    static CRDS: std::sync::OnceLock<Result<Vec<Crd>, String>> = std::sync::OnceLock::new();
    CRDS.get_or_init(|| crds().map_err(|error| format!("{error:#}")))
}

/// `object` checked against the CRD of its `apiVersion` and `kind` when its
/// API group is one the sources cover (an unknown kind of such a group is a
/// problem: its schema belongs in sources.toml); `checked` counts it.
pub fn check_custom_resource(place: &str, object: &Value, checked: &mut Tally) -> Vec<String> {
    let (api_version, kind) = (
        object["apiVersion"].as_str().unwrap_or(""),
        object["kind"].as_str().unwrap_or(""),
    );
    let group = api_version.split('/').next().unwrap_or("");
    let covered = sources()
        .into_iter()
        .filter_map(|s| s.resource)
        .any(|r| r.split('/').next() == Some(group) && api_version.contains('/'));
    if !covered {
        return Vec::new();
    }
    let crds = match loaded() {
        Ok(crds) => crds,
        Err(error) => return vec![format!("{place}: {kind}: {error}")],
    };
    // A version no CRD serves is named by `manifests` (the apiVersion rule);
    // the rest is still checked against the kind's own schema, in one pass.
    let exact = crds
        .iter()
        .find(|c| c.api_version == api_version && c.kind == kind);
    let same_kind = || {
        crds.iter()
            .find(|c| c.kind == kind && c.api_version.split('/').next() == Some(group))
    };
    let Some(crd) = exact.or_else(same_kind) else {
        return vec![format!(
            "{place}: {api_version} {kind} is not served by the CRDs of xtask/schemas/sources.toml: \
             a kind this repository writes needs its upstream CRD there"
        )];
    };
    let mut object = object.clone();
    object["apiVersion"] = Value::from(crd.api_version.as_str());
    let object = &object;
    *checked
        .kinds
        .entry(format!("{api_version} {kind}"))
        .or_default() += 1;
    let name = object["metadata"]["name"].as_str().unwrap_or("(no name)");
    for (path, rule) in crate::plumbing::json_schema::cel_rules(&crd.schema, "") {
        let pointer = path.replace('.', "/");
        if !path.contains(['[', '*']) && object.pointer(&pointer).is_some() {
            checked
                .cel_not_checked
                .push(format!("{place}: {kind} {name}: {path}: {rule}"));
        }
    }
    check_object(crd, object)
        .into_iter()
        .map(|v| {
            format!(
                "{place}: {kind} {name}: {v} (against {} {}'s CRD)",
                crd.source.repo, crd.source.tag
            )
        })
        .collect()
}

/// What the checks covered: objects per `apiVersion Kind`, and each CEL rule
/// (`x-kubernetes-validations`) on a field an object has, which no evaluator
/// here checks.
#[derive(Debug, Default)]
pub struct Tally {
    pub kinds: BTreeMap<String, usize>,
    pub cel_not_checked: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_follow_terraforms_chart_pins() {
        let sources = sources();
        assert!(sources.len() >= 6, "{sources:?}");
        for source in &sources {
            assert_eq!(source.sha256.len(), 64, "{source:?}");
            assert!(
                matches!(source.role.as_str(), "swagger" | "crd" | "example"),
                "{source:?}"
            );
            assert_eq!(
                source.role != "swagger",
                source.resource.is_some(),
                "{source:?}"
            );
        }
        let root = crate::plumbing::workspace::root();
        let problems = pin_problems(|v| terraform_default(&root, v).ok().flatten());
        assert!(problems.is_empty(), "{problems:?}");
        // A bump is named with the command that follows it.
        let bumped = pin_problems(|v| {
            Some(if v == "kyverno_chart_version" {
                "9.9.9".into()
            } else {
                terraform_default(&root, v)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            })
        });
        assert_eq!(bumped.len(), 1, "{bumped:?}");
        assert!(
            bumped[0].contains("kyverno_chart_version = 9.9.9"),
            "{bumped:?}"
        );
        assert!(
            bumped[0].contains("cargo xtask schemas refresh --update"),
            "{bumped:?}"
        );
    }

    #[test]
    fn raw_urls_name_the_tag_and_the_charts_tag() {
        let argo = sources()
            .into_iter()
            .find(|s| s.file == "argocd-swagger.json")
            .unwrap();
        assert_eq!(
            argo.url(),
            "https://raw.githubusercontent.com/argoproj/argo-cd/v2.13.2/assets/swagger.json"
        );
        assert_eq!(
            argo.chart_url("7.7.11"),
            "https://raw.githubusercontent.com/argoproj/argo-helm/argo-cd-7.7.11/charts/argo-cd/Chart.yaml"
        );
    }
}
