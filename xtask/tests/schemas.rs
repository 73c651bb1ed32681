//! The upstream CRDs (xtask/schemas/sources.toml) against this repository's
//! own objects: a mutation corpus (for each schema, an unknown field, a wrong
//! type, a bad enum value and a missing required field in a real object of
//! this repository, each caught by `validate` with its path), the upstream's
//! own example documents passing, a Terraform bump without schemas failing,
//! and `schemas refresh`'s plan and offline install.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{TempDir, assert_fails, assert_ok, stdout, workspace_root, xtask};

/// The folder `schemas refresh` installs into (as domain/upstream_schemas.rs finds it).
fn schema_dir() -> PathBuf {
    match std::env::var_os("SERVICE_DEMO_SCHEMAS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/service-demo/schemas"),
    }
}

/// sources.toml's entries.
fn sources() -> Vec<Value> {
    let text =
        std::fs::read_to_string(workspace_root().join("xtask/schemas/sources.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    serde_json::to_value(&parsed["schema"])
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Some when every file of sources.toml is installed; else the test fails
/// (CI) or is counted as skipped.
fn installed() -> Option<()> {
    let missing: Vec<String> = sources()
        .iter()
        .map(|s| s["file"].as_str().unwrap().to_owned())
        .filter(|file| !schema_dir().join(file).is_file())
        .collect();
    support::require(
        missing.is_empty(),
        &format!(
            "the upstream schemas in {} (`cargo xtask schemas refresh`; .ci/run does it): {missing:?}",
            schema_dir().display()
        ),
    )
}

fn read_yaml(path: &Path) -> Value {
    yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The object at `pointer` (JSON pointer) of `doc`, for editing.
fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    doc.pointer_mut(pointer).unwrap_or_else(|| {
        panic!("{pointer} is not in the repository's object: the corpus needs updating")
    })
}

enum Mutation {
    /// Adds a field the schema does not have at this pointer.
    Unknown(&'static str),
    /// Sets the value at the pointer (which the object has).
    Set(&'static str, Value),
    /// Adds a field the schema has, with this value.
    Add(&'static str, Value),
    /// Removes the field at the pointer.
    Remove(&'static str),
}

fn apply(doc: &Value, mutation: &Mutation) -> Value {
    let mut doc = doc.clone();
    match mutation {
        Mutation::Unknown(pointer)
        | Mutation::Set(pointer, _)
        | Mutation::Add(pointer, _)
        | Mutation::Remove(pointer) => {
            let (parent, name) = pointer.rsplit_once('/').unwrap();
            let parent = at(&mut doc, parent).as_object_mut().unwrap();
            match mutation {
                Mutation::Unknown(_) => {
                    parent.insert(name.to_owned(), json!("typo"));
                }
                Mutation::Set(_, value) => {
                    assert!(parent.contains_key(name), "{pointer}: not in the object");
                    parent.insert(name.to_owned(), value.clone());
                }
                Mutation::Add(_, value) => {
                    assert!(!parent.contains_key(name), "{pointer}: already there");
                    parent.insert(name.to_owned(), value.clone());
                }
                Mutation::Remove(_) => {
                    assert!(
                        parent.remove(name).is_some(),
                        "{pointer}: not in the object"
                    );
                }
            }
        }
    }
    doc
}

/// `validate FILE` on `doc`; its output.
fn validate(dir: &Path, doc: &Value) -> (bool, String) {
    let file = dir.join(format!("object-{}.yaml", fastrand::u64(..)));
    std::fs::write(&file, doc.to_string()).unwrap(); // JSON is YAML
    let output = xtask(&["validate", file.to_str().unwrap()], &[]);
    let text = format!("{}{}", stdout(&output), support::stderr(&output));
    (output.status.success(), text)
}

/// (file of this repository, mutation, the violation's path and what it says).
type Case = (&'static str, Mutation, &'static str);

fn corpus() -> Vec<Case> {
    use Mutation::*;
    vec![
        // Argo CD Application (its CRD has no enum: no bad-enum case exists for it).
        (
            "gitops/argocd/root.yaml",
            Unknown("/spec/destination/nameSpace"),
            ".spec.destination.nameSpace: unknown field",
        ),
        (
            "gitops/argocd/root.yaml",
            Set("/spec/project", json!(5)),
            ".spec.project: a number (5) where the schema wants string",
        ),
        (
            "gitops/argocd/root.yaml",
            Remove("/spec/project"),
            ".spec: missing required field `project`",
        ),
        // AppProject (no enum in its CRD either).
        (
            "gitops/argocd/project.yaml",
            Unknown("/spec/sourceRepo"),
            ".spec.sourceRepo: unknown field",
        ),
        (
            "gitops/argocd/project.yaml",
            Set("/spec/sourceRepos", json!("https://x")),
            ".spec.sourceRepos: a string (\"https://x\") where the schema wants array",
        ),
        (
            "gitops/argocd/project.yaml",
            Remove("/spec/roles/0/name"),
            ".spec.roles[0]: missing required field `name`",
        ),
        // ApplicationSet.
        (
            "gitops/argocd/apps/services.yaml",
            Unknown("/spec/template/spec/destination/nameSpace"),
            ".spec.template.spec.destination.nameSpace: unknown field",
        ),
        (
            "gitops/argocd/apps/services.yaml",
            Set("/spec/goTemplate", json!("true")),
            ".spec.goTemplate: a string (\"true\") where the schema wants boolean",
        ),
        (
            "gitops/argocd/apps/services.yaml",
            Add(
                "/spec/syncPolicy",
                json!({"applicationsSync": "create-everything"}),
            ),
            ".spec.syncPolicy.applicationsSync: \"create-everything\" is not one of",
        ),
        (
            "gitops/argocd/apps/services.yaml",
            Remove("/spec/template/spec/project"),
            ".spec.template.spec: missing required field `project`",
        ),
        // Kyverno ClusterPolicy.
        (
            "gitops/policy/image-signatures.yaml",
            Unknown("/spec/rules/2/verifyImages/0/imageReference"),
            ".spec.rules[2].verifyImages[0].imageReference: unknown field",
        ),
        (
            "gitops/policy/image-signatures.yaml",
            Set("/spec/background", json!("no")),
            ".spec.background: a string (\"no\") where the schema wants boolean",
        ),
        (
            "gitops/policy/image-signatures.yaml",
            Set("/spec/validationFailureAction", json!("Block")),
            ".spec.validationFailureAction: \"Block\" is not one of",
        ),
        (
            "gitops/policy/image-signatures.yaml",
            Remove("/spec/rules/0/name"),
            ".spec.rules[0]: missing required field `name`",
        ),
        // CloudNativePG Cluster.
        (
            "gitops/database/prod/cluster.yaml",
            Unknown("/spec/storage/sizee"),
            ".spec.storage.sizee: unknown field",
        ),
        (
            "gitops/database/prod/cluster.yaml",
            Set("/spec/instances", json!("one")),
            ".spec.instances: a string (\"one\") where the schema wants integer",
        ),
        (
            "gitops/database/prod/cluster.yaml",
            Add("/spec/primaryUpdateStrategy", json!("automatic")),
            ".spec.primaryUpdateStrategy: \"automatic\" is not one of",
        ),
        (
            "gitops/database/prod/cluster.yaml",
            Remove("/spec/instances"),
            ".spec: missing required field `instances`",
        ),
    ]
}

#[test]
fn every_mutation_of_a_real_object_is_caught_with_its_path() {
    let Some(()) = installed() else { return };
    let dir = TempDir::new("schemas-corpus");
    let (mut missed, mut passed) = (Vec::new(), std::collections::BTreeSet::new());
    for (file, mutation, expected) in corpus() {
        let doc = read_yaml(&workspace_root().join(file));
        if passed.insert(file) {
            let (ok, text) = validate(dir.path(), &doc);
            assert!(ok, "{file} as it is must pass:\n{text}");
        }
        let (ok, text) = validate(dir.path(), &apply(&doc, &mutation));
        let against_crd = text
            .lines()
            .any(|l| l.contains(expected) && l.contains("'s CRD)"));
        if ok || !against_crd {
            missed.push(format!(
                "{file}: expected `{expected}` from the CRD check, got:\n{text}"
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "{} mutation(s) not caught:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

/// The upstream's own example of each kind passes its CRD (a check that
/// refused it would be stricter than the API server).
#[test]
fn the_upstream_examples_pass_their_crds() {
    let Some(()) = installed() else { return };
    let dir = TempDir::new("schemas-examples");
    let examples: Vec<Value> = sources()
        .into_iter()
        .filter(|s| s["role"] == "example")
        .collect();
    assert_eq!(examples.len(), 5, "one example per kind");
    for example in examples {
        let file = schema_dir().join(example["file"].as_str().unwrap());
        let docs = std::fs::read_to_string(&file).unwrap();
        let mut kinds = 0;
        for doc in yaml_serde::Deserializer::from_str(&docs) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            if doc.is_null() {
                continue;
            }
            kinds += 1;
            let (_, text) = validate(dir.path(), &doc);
            let refused: Vec<&str> = text.lines().filter(|l| l.contains("'s CRD)")).collect();
            assert!(refused.is_empty(), "{}: {refused:#?}", file.display());
        }
        assert!(kinds > 0, "{} has no document", file.display());
    }
}

#[test]
fn a_terraform_chart_bump_without_its_schemas_fails_validate() {
    let Some(()) = installed() else { return };
    let Some(()) = support::validate_tools() else {
        return;
    };
    let dir = TempDir::new("schemas-bump");
    support::copy_workspace_assets(dir.path());
    let variables = dir.path().join("terraform/variables.tf");
    let text = std::fs::read_to_string(&variables).unwrap();
    std::fs::write(&variables, text.replace("\"3.5.2\"", "\"3.6.0\"")).unwrap();
    let message = assert_fails(&xtask(
        &["validate", "--root", dir.path().to_str().unwrap()],
        &[],
    ));
    assert!(
        message.contains("pins kyverno_chart_version = 3.6.0, and xtask/schemas/sources.toml holds the schemas of chart 3.5.2 (kyverno/kyverno v1.15.2)"),
        "{message}"
    );
    assert!(
        message.contains("cargo xtask schemas refresh --update"),
        "{message}"
    );
}

#[test]
fn refresh_dry_run_prints_the_plan_and_writes_nothing() {
    let dir = TempDir::new("schemas-plan");
    let target = dir.path().join("cache");
    let env = [("SERVICE_DEMO_SCHEMAS", target.to_str().unwrap())];
    let out = xtask(&["schemas", "refresh", "--dry-run"], &env);
    assert_ok(&out);
    let text = stdout(&out);
    for line in [
        "argocd-swagger.json",
        "https://raw.githubusercontent.com/argoproj/argo-cd/v2.13.2/assets/swagger.json",
        "https://raw.githubusercontent.com/kyverno/kyverno/v1.15.2/config/crds/kyverno/kyverno.io_clusterpolicies.yaml",
        "https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/v1.25.1/config/crd/bases/postgresql.cnpg.io_clusters.yaml",
        "Apache-2.0",
        "dry run: nothing fetched or written",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(!target.exists(), "a dry run wrote {}", target.display());

    let update = stdout(&xtask(
        &["schemas", "refresh", "--update", "--dry-run"],
        &env,
    ));
    assert!(
        update.contains("appVersion of https://raw.githubusercontent.com/argoproj/argo-helm/argo-cd-7.7.11/charts/argo-cd/Chart.yaml"),
        "{update}"
    );
}

#[test]
fn refresh_from_a_folder_installs_checked_files_and_refuses_a_changed_one() {
    let Some(()) = installed() else { return };
    let dir = TempDir::new("schemas-from");
    let (from, target) = (dir.path().join("from"), dir.path().join("cache"));
    support::copy_dir(&schema_dir(), &from);
    let env = [("SERVICE_DEMO_SCHEMAS", target.to_str().unwrap())];
    let refresh = ["schemas", "refresh", "--from", from.to_str().unwrap()];
    assert_ok(&xtask(&refresh, &env));
    for source in sources() {
        assert!(target.join(source["file"].as_str().unwrap()).is_file());
    }
    // Installed already, each with its sha256: a second refresh reads nothing (from an empty
    // folder, or offline), and a cached file that differs is installed again.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let again = ["schemas", "refresh", "--from", empty.to_str().unwrap()];
    let output = xtask(&again, &env);
    assert_ok(&output);
    assert!(
        stdout(&output).contains("(installed already)"),
        "{}",
        stdout(&output)
    );
    std::fs::write(target.join("cnpg-clusters-crd.yaml"), "tampered").unwrap();
    assert!(assert_fails(&xtask(&again, &env)).contains("cnpg-clusters-crd.yaml is missing"));
    assert_ok(&xtask(&refresh, &env));

    let changed = from.join("cnpg-clusters-crd.yaml");
    let text = std::fs::read_to_string(&changed).unwrap();
    std::fs::write(&changed, text.replace("instances", "replicas")).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    let message = assert_fails(&xtask(&refresh, &env));
    assert!(
        message.contains("cnpg-clusters-crd.yaml (cloudnative-pg/cloudnative-pg v1.25.1 config/crd/bases/postgresql.cnpg.io_clusters.yaml) has sha256"),
        "{message}"
    );
    assert!(
        !target.join("cnpg-clusters-crd.yaml").exists(),
        "the changed file was installed"
    );
}
