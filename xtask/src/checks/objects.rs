//! Every Kubernetes object this project writes, whoever reads it (the chart's
//! renders, Argo CD's objects, the databases' documents, `validate PATH`): a
//! kind it writes at its one apiVersion, parsed strictly as its k8s-openapi
//! type; the custom resources against their upstream CRDs (`upstream_schemas`).

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::checks::{Finding, Rule, rule, tag};

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[
    rule(
        "objects.known-kind",
        "objects",
        "every document is a kind this project writes, at its one apiVersion: anything else is a typo or an object nothing here checks",
    ),
    rule(
        "objects.kubernetes-validate",
        "objects",
        "every rendered object passes Kubernetes' own schema for the cluster's version, strictly (kubernetes-validate)",
    ),
    rule(
        "objects.strict",
        "objects",
        "every Kubernetes object parses strictly as its k8s-openapi type, unknown fields named with their paths: the API server drops or refuses them",
    ),
    rule(
        "objects.upstream-crd",
        "objects",
        "every custom resource passes its upstream CRD at the version Terraform pins, strictly: Argo CD, Kyverno and CloudNativePG read it so",
    ),
];

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
pub fn check_document(where_: &str, doc: &Value) -> Vec<Finding> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let what = format!("{where_}: {kind} {name} ({api_version})");
    let Some(known) = KNOWN_KINDS.iter().find(|k| k.kind == kind) else {
        let kinds: Vec<&str> = KNOWN_KINDS.iter().map(|k| k.kind).collect();
        return vec![Finding::new(
            "objects.known-kind",
            format!(
                "{what}: not a kind this project writes ({})",
                kinds.join(", ")
            ),
        )];
    };
    let mut problems = Vec::new();
    if api_version != known.api_version {
        problems.push(Finding::new(
            "objects.known-kind",
            format!(
                "{what}: apiVersion must be {} for {kind}",
                known.api_version
            ),
        ));
    }
    if let Some(check) = known.check {
        // Parsed as if the apiVersion were right, so the rest is checked too
        // (k8s-openapi's types would stop at the apiVersion).
        let mut corrected = doc.clone();
        corrected["apiVersion"] = Value::from(known.api_version);
        problems.extend(tag("objects.strict", check(&corrected, &what)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plumbing::yaml::parse_strict;

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
}
