//! The cluster's admission policy for signed images: a Kyverno `ClusterPolicy`
//! (`kyverno.io/v1`, `verifyImages`) in `gitops/policy/`, typed here after
//! Kyverno's CRD (`api/kyverno/v1`: `ClusterPolicy`, `Rule`, `ImageVerification`,
//! `AttestorSet`, `StaticKeyAttestor`) for the fields this project writes, and
//! parsed strictly (`manifests::parse_strict`): a field outside them is an error
//! with its path. Then the promises `validate` holds it to:
//!
//! - its key is `gitops/policy/cosign.pub`, the key `verify --image-key` uses;
//! - it matches Pods in dev, preprod and prod (never every namespace: previews
//!   run unsigned `pr-*` images);
//! - its image references cover each environment's `image.repository`;
//! - it is enforced (`Enforce`), `required`, pins digests (`mutateDigest`,
//!   `verifyDigest`), has a webhook timeout, and skips the public Rekor log a
//!   key-signed image is not in.
#![allow(
    dead_code,
    reason = "the fields are the schema: serde reads them to validate, the checks read some"
)]

use std::path::Path;

use serde::Deserialize;

use super::argocd_types::ObjectMeta;
use super::attestation::parse_public_key;
use super::manifests::parse_strict;
use super::promotion::{Env, UNDECLARED_VALUES_FILE};
use super::values;

pub const POLICY_FILE: &str = "gitops/policy/image-signatures.yaml";
pub const PUBLIC_KEY_FILE: &str = "gitops/policy/cosign.pub";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PolicySpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    pub validation_failure_action: Option<String>,
    pub webhook_timeout_seconds: Option<u32>,
    pub background: Option<bool>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    #[serde(rename = "match")]
    pub match_resources: MatchResources,
    #[serde(default)]
    pub verify_images: Vec<ImageVerification>,
}

#[derive(Debug, Deserialize)]
pub struct MatchResources {
    pub any: Option<Vec<ResourceFilter>>,
    pub all: Option<Vec<ResourceFilter>>,
}

#[derive(Debug, Deserialize)]
pub struct ResourceFilter {
    pub resources: ResourceDescription,
}

#[derive(Debug, Deserialize)]
pub struct ResourceDescription {
    pub kinds: Vec<String>,
    pub namespaces: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerification {
    pub image_references: Vec<String>,
    pub mutate_digest: Option<bool>,
    pub verify_digest: Option<bool>,
    pub required: Option<bool>,
    pub attestors: Vec<AttestorSet>,
}

#[derive(Debug, Deserialize)]
pub struct AttestorSet {
    pub count: Option<u32>,
    pub entries: Vec<Attestor>,
}

/// Only key attestors: keyless (Fulcio) and certificates are not what this pipeline signs with.
#[derive(Debug, Deserialize)]
pub struct Attestor {
    pub keys: StaticKeyAttestor,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticKeyAttestor {
    pub public_keys: String,
    pub rekor: Option<Rekor>,
    pub ctlog: Option<CtLog>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rekor {
    pub ignore_tlog: Option<bool>,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CtLog {
    #[serde(rename = "ignoreSCT")]
    pub ignore_sct: Option<bool>,
}

/// Every way the admission policy under `root` breaks its promises.
pub fn problems(root: &Path) -> Vec<String> {
    let read = |file: &str| {
        std::fs::read_to_string(root.join(file))
            .map_err(|e| format!("{file}: {e}: the signed-images admission policy needs it"))
    };
    let (policy, key) = match (read(POLICY_FILE), read(PUBLIC_KEY_FILE)) {
        (Ok(policy), Ok(key)) => (policy, key),
        (policy, key) => return [policy.err(), key.err()].into_iter().flatten().collect(),
    };
    let mut repositories = Vec::new();
    for env in Env::LONG_LIVED {
        let file = format!("gitops/{}", env.values_path(UNDECLARED_VALUES_FILE));
        let repository = read(&file)
            .and_then(|text| values::parse(&text).map_err(|e| format!("{file}: {e:#}")))
            .map(|doc| {
                doc["image"]["repository"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            });
        match repository {
            Ok(repository) => repositories.push((env.to_string(), repository)),
            Err(problem) => return vec![problem],
        }
    }
    check(&policy, &key, &repositories)
}

/// The checks on the policy's text, the public key's text and the
/// environments' `(name, image repository)`.
pub fn check(policy: &str, public_key: &str, repositories: &[(String, String)]) -> Vec<String> {
    let doc: serde_json::Value = match values::parse(policy) {
        Ok(doc) => doc,
        Err(error) => return vec![format!("{POLICY_FILE}: not YAML: {error:#}")],
    };
    let policy: ClusterPolicy = match parse_strict(&doc, POLICY_FILE) {
        Ok(policy) => policy,
        Err(error) => return vec![format!("{error:#}")],
    };
    let key = match parse_public_key(public_key, PUBLIC_KEY_FILE) {
        Ok(key) => key,
        Err(error) => return vec![format!("{error:#}")],
    };
    let mut found = policy_problems(&policy);
    let verifications: Vec<&ImageVerification> = policy
        .spec
        .rules
        .iter()
        .flat_map(|r| &r.verify_images)
        .collect();
    if verifications.is_empty() {
        found.push(format!(
            "{POLICY_FILE}: no rule has verifyImages: nothing checks a signature"
        ));
    }
    found.extend(namespace_problems(&policy.spec.rules));
    for verification in verifications {
        found.extend(verification_problems(verification, &key, repositories));
    }
    found
}

fn policy_problems(policy: &ClusterPolicy) -> Vec<String> {
    let mut found = Vec::new();
    if (policy.api_version.as_str(), policy.kind.as_str()) != ("kyverno.io/v1", "ClusterPolicy") {
        found.push(format!(
            "{POLICY_FILE}: is {} {}; write a kyverno.io/v1 ClusterPolicy",
            policy.api_version, policy.kind
        ));
    }
    if policy.spec.validation_failure_action.as_deref() != Some("Enforce") {
        found.push(format!(
            "{POLICY_FILE}: spec.validationFailureAction is {:?}; set Enforce (Audit only reports an \
             unsigned image, and runs it)",
            policy.spec.validation_failure_action
        ));
    }
    if !policy
        .spec
        .webhook_timeout_seconds
        .is_some_and(|s| (1..=30).contains(&s))
    {
        found.push(format!(
            "{POLICY_FILE}: spec.webhookTimeoutSeconds is {:?}; set 1 to 30 (fetching a signature takes \
             a registry round trip; the API server's limit is 30)",
            policy.spec.webhook_timeout_seconds
        ));
    }
    found
}

/// dev, preprod and prod are matched (Pods), and no rule matches every namespace.
fn namespace_problems(rules: &[Rule]) -> Vec<String> {
    let mut found = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    for rule in rules.iter().filter(|r| !r.verify_images.is_empty()) {
        let filters = [&rule.match_resources.any, &rule.match_resources.all];
        for resources in filters
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| &f.resources)
        {
            if !resources.kinds.iter().any(|k| k == "Pod") {
                continue;
            }
            match &resources.namespaces {
                Some(namespaces) => matched.extend(namespaces.iter().map(String::as_str)),
                None => found.push(format!(
                    "{POLICY_FILE}: rule {} matches Pods in every namespace, previews (pr-*) too, whose \
                     images are unsigned: list the namespaces dev, preprod and prod",
                    rule.name
                )),
            }
        }
    }
    for env in Env::LONG_LIVED {
        let namespace = env.to_string();
        if !matched.contains(&namespace.as_str()) {
            found.push(format!(
                "{POLICY_FILE}: no verifyImages rule matches Pods in namespace {namespace}: add it to \
                 match.any[].resources.namespaces"
            ));
        }
    }
    found
}

fn verification_problems(
    verification: &ImageVerification,
    key: &p256::ecdsa::VerifyingKey,
    repositories: &[(String, String)],
) -> Vec<String> {
    let mut found = Vec::new();
    for (field, value) in [
        ("required", verification.required),
        ("mutateDigest", verification.mutate_digest),
        ("verifyDigest", verification.verify_digest),
    ] {
        if value != Some(true) {
            found.push(format!(
                "{POLICY_FILE}: verifyImages {field} is {value:?}; set {field}: true (required: an \
                 unsigned image is refused; the digest forms: the Pod runs the bits that were verified)"
            ));
        }
    }
    for (env, repository) in repositories {
        let image = format!("{repository}:v1.0.0");
        if !verification
            .image_references
            .iter()
            .any(|p| wildcard_match(p, &image))
        {
            found.push(format!(
                "{POLICY_FILE}: imageReferences {:?} do not match {repository} (the image {env} runs): \
                 add \"{repository}*\"",
                verification.image_references
            ));
        }
    }
    let entries: Vec<&StaticKeyAttestor> = verification
        .attestors
        .iter()
        .flat_map(|a| &a.entries)
        .map(|e| &e.keys)
        .collect();
    if entries.is_empty() {
        found.push(format!("{POLICY_FILE}: verifyImages has no key attestor"));
    }
    for entry in entries {
        found.extend(key_problems(entry, key));
    }
    found
}

/// The attestor's key is `key`, and the public Rekor log is not consulted.
fn key_problems(entry: &StaticKeyAttestor, key: &p256::ecdsa::VerifyingKey) -> Vec<String> {
    let mut found = Vec::new();
    match parse_public_key(&entry.public_keys, "the policy's publicKeys") {
        Ok(policy_key) if policy_key == *key => {}
        Ok(_) => found.push(format!(
            "{POLICY_FILE}: publicKeys is not the key in {PUBLIC_KEY_FILE} (the one the pipeline \
             verifies with): paste {PUBLIC_KEY_FILE} into the policy, or rotate both together"
        )),
        Err(error) => found.push(format!("{POLICY_FILE}: {error:#}")),
    }
    if !entry
        .rekor
        .as_ref()
        .and_then(|r| r.ignore_tlog)
        .unwrap_or(false)
    {
        found.push(format!(
            "{POLICY_FILE}: keys.rekor.ignoreTlog is not true: Kyverno would look the signature up \
             in the public Rekor log, where key-signed images are not, and refuse every Pod"
        ));
    }
    found
}

/// Kyverno's image patterns: `*` any run of characters, `?` one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .any(|i| wildcard_match(&pattern[1..], &text[i..])),
        Some(c) => {
            let mut rest = text.chars();
            rest.next().is_some_and(|t| c == '?' || c == t)
                && wildcard_match(&pattern[c.len_utf8()..], rest.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    fn committed() -> (String, String) {
        let read = |f: &str| std::fs::read_to_string(root().join(f)).unwrap();
        (read(POLICY_FILE), read(PUBLIC_KEY_FILE))
    }

    fn repositories() -> Vec<(String, String)> {
        ["dev", "preprod", "prod"]
            .map(|env| (env.to_owned(), "ghcr.io/example/service-demo".to_owned()))
            .to_vec()
    }

    /// A copy of the committed policy with `from` replaced by `to` is refused naming `expected`.
    fn refused(from: &str, to: &str, expected: &str) {
        let (policy, key) = committed();
        assert!(policy.contains(from), "the policy no longer has {from:?}");
        let found = check(&policy.replacen(from, to, 1), &key, &repositories());
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {found:#?}"
        );
    }

    #[test]
    fn the_committed_policy_and_key_pass() {
        assert_eq!(problems(&root()), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_field_is_named_with_its_path() {
        refused(
            "mutateDigest: true",
            "mutateDigests: true",
            "spec.rules.0.verifyImages.0.mutateDigests",
        );
    }

    #[test]
    fn another_key_than_cosign_pub_is_refused() {
        let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            other.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap();
        let (policy, key) = committed();
        let indent = "\n                      ";
        let pasted = pem.trim().replace('\n', indent);
        let committed_key = key.trim().replace('\n', indent);
        let found = check(
            &policy.replace(&committed_key, &pasted),
            &key,
            &repositories(),
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("publicKeys is not the key in gitops/policy/cosign.pub")),
            "{found:#?}"
        );
    }

    #[test]
    fn prod_left_out_of_the_namespaces_is_refused() {
        refused(
            "                - prod\n",
            "",
            "no verifyImages rule matches Pods in namespace prod",
        );
    }

    #[test]
    fn preprod_left_out_of_the_namespaces_is_refused() {
        refused(
            "                - preprod\n",
            "",
            "matches Pods in namespace preprod",
        );
    }

    #[test]
    fn every_namespace_matched_previews_included_is_refused() {
        refused(
            "              namespaces:\n                - dev\n                - preprod\n                - prod\n",
            "",
            "matches Pods in every namespace, previews (pr-*) too",
        );
    }

    #[test]
    fn audit_instead_of_enforce_is_refused() {
        refused(
            "validationFailureAction: Enforce",
            "validationFailureAction: Audit",
            "set Enforce",
        );
    }

    #[test]
    fn not_required_is_refused() {
        refused(
            "required: true",
            "required: false",
            "verifyImages required is Some(false)",
        );
    }

    #[test]
    fn tags_not_pinned_to_digests_is_refused() {
        refused(
            "verifyDigest: true",
            "verifyDigest: false",
            "set verifyDigest: true",
        );
    }

    #[test]
    fn another_image_repository_is_refused() {
        refused(
            "ghcr.io/example/service-demo*",
            "ghcr.io/someone/service-demo*",
            "do not match ghcr.io/example/service-demo (the image dev runs)",
        );
    }

    #[test]
    fn no_webhook_timeout_is_refused() {
        refused("  webhookTimeoutSeconds: 30\n", "", "set 1 to 30");
    }

    #[test]
    fn looking_in_the_public_rekor_log_is_refused() {
        refused(
            "ignoreTlog: true",
            "ignoreTlog: false",
            "keys.rekor.ignoreTlog is not true",
        );
    }

    #[test]
    fn wildcards_match_as_kyverno_matches() {
        assert!(wildcard_match("ghcr.io/o/x*", "ghcr.io/o/x:v1.0.0"));
        assert!(wildcard_match("ghcr.io/o/x*", "ghcr.io/o/x@sha256:ab"));
        assert!(wildcard_match("ghcr.io/?/x:*", "ghcr.io/o/x:v1"));
        assert!(!wildcard_match("ghcr.io/o/x*", "ghcr.io/other/x:v1"));
        assert!(!wildcard_match("ghcr.io/o/x", "ghcr.io/o/x:v1"));
    }
}
