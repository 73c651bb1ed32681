//! `cargo xtask validate` on a copy of this repository's deployment assets,
//! with Helm, kubernetes-validate, actionlint and Terraform's formatter for
//! real: the assets pass, and each kind of mistake is caught and named.

mod support;

use std::path::{Path, PathBuf};

use support::{TempDir, assert_fails, assert_ok, stdout, xtask};

/// The checkers `validate` runs (`support::validate_tools`).
fn tools() -> Option<()> {
    support::validate_tools()
}

/// A copy of what `validate` reads (`support::copy_workspace_assets`).
fn assets() -> (TempDir, PathBuf) {
    let dir = TempDir::new("validate");
    let root = dir.path().join("repo");
    support::copy_workspace_assets(&root);
    (dir, root)
}

fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn validate(root: &Path) -> std::process::Output {
    xtask(&["validate", "--root", root.to_str().unwrap()], &[])
}

#[test]
fn this_repositorys_assets_pass() {
    let Some(()) = tools() else { return };
    let out = xtask(&["validate"], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    for env in ["dev", "preprod", "prod", "pr-7"] {
        assert!(
            text.contains(&format!("✔ chart renders for {env}")),
            "{text}"
        );
    }
    assert!(!text.contains('✘'), "{text}");
}

#[test]
fn each_kind_of_mistake_is_caught_and_named() {
    let Some(()) = tools() else { return };
    // (file, from, to, what the output must say)
    let cases: &[(&str, &str, &str, &str)] = &[
        // values.schema.json: an unknown key (a typo) in an environment's values.
        (
            "gitops/values/prod/service-demo.yaml",
            "replicaCount: 3",
            "replicaCount: 3\nreplicas: 3",
            "additional properties 'replicas' not allowed",
        ),
        // A wrong type.
        (
            "gitops/values/preprod/service-demo.yaml",
            "replicaCount: 2",
            "replicaCount: \"2\"",
            "got string, want integer",
        ),
        // Kubernetes' strict schema: a misspelt field in a template.
        (
            "charts/service-demo/templates/service.yaml",
            "protocol: TCP",
            "protocoll: TCP",
            "protocoll",
        ),
        // The restricted Pod Security Standard.
        (
            "charts/service-demo/templates/_helpers.tpl",
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
            "allowPrivilegeEscalation must be false",
        ),
        // The kubelet would kill draining requests.
        (
            "gitops/values/prod/service-demo.yaml",
            "replicaCount: 3",
            "replicaCount: 3\nterminationGracePeriodSeconds: 5",
            "must be greater than shutdownDrainSeconds",
        ),
        // A request accepted at the end of the drain outlives the grace period.
        (
            "gitops/values/prod/service-demo.yaml",
            "replicaCount: 3",
            "replicaCount: 3\nrequestTimeoutSeconds: 40",
            "must be greater than shutdownDrainSeconds (5) + requestTimeoutSeconds (40)",
        ),
        // A readiness probe that gives up before /readyz's own bound.
        (
            "charts/service-demo/templates/deployment.yaml",
            "            periodSeconds: 2\n            timeoutSeconds: 2",
            "            periodSeconds: 2\n            timeoutSeconds: 1",
            "readinessProbe timeoutSeconds 1 must exceed 1 s",
        ),
        // More than one replica of the in-memory store.
        (
            "gitops/values/prod/service-demo.yaml",
            "  existingSecret: service-demo-db-app\n",
            "  existingSecret: \"\"\n",
            "replicaCount 3 needs database.existingSecret",
        ),
        // A database URL written into the manifests instead of read from a Secret.
        (
            "charts/service-demo/templates/_helpers.tpl",
            "  valueFrom:\n    secretKeyRef:\n      name: {{ . | quote }}\n      key: {{ $.Values.database.secretKey | quote }}",
            "  value: \"postgres://app:s3cret@db/items\"",
            "DATABASE_URL must come from a Secret",
        ),
        // The migration hook's kind, not whitelisted.
        (
            "gitops/argocd/project.yaml",
            "    - group: batch\n      kind: Job\n",
            "",
            "the chart renders Job (group \"batch\")",
        ),
        // The project would refuse to sync what the chart renders.
        (
            "gitops/argocd/project.yaml",
            "    - group: networking.k8s.io\n      kind: NetworkPolicy\n",
            "",
            "the chart renders NetworkPolicy (group \"networking.k8s.io\"), which project service-demo does not whitelist",
        ),
        // prod must not sync by itself.
        (
            "gitops/argocd/apps/services.yaml",
            "(service-demo-database-prod) is still starting.\n                  syncPolicy:\n",
            "(service-demo-database-prod) is still starting.\n                  syncPolicy:\n                    automated:\n                      prune: true\n",
            "generated Application service-demo-prod: dev and prod sync by hand",
        ),
        // Argo CD would read a values file the pipeline never writes.
        (
            "gitops/argocd/apps/services.yaml",
            "'../../gitops/values/{{.env}}/{{.valuesFile}}'",
            "'../../gitops/values/prod/{{.valuesFile}}'",
            "service-demo-preprod reads gitops/values/prod/service-demo.yaml",
        ),
        // `argocd wait --pr` would never find the preview.
        (
            "gitops/argocd/apps/previews.yaml",
            "service-demo/pull-request: '{{regexReplaceAll",
            "pull-request: '{{regexReplaceAll",
            "the template needs the label service-demo/pull-request",
        ),
        // Issue 15, fault 4: an ApplicationSet that makes an Application per pull request,
        // before (or without) its values file.
        (
            "gitops/argocd/apps/previews.yaml",
            "          - git:\n              repoURL: https://github.com/example/service-demo.git\n              revision: main\n              files:\n                - path: 'gitops/values/pr/pr-*/{{.valuesFile}}'\n",
            "          - pullRequest:\n              github:\n                owner: example\n                repo: service-demo\n",
            "previews must come from the services list × one git files generator over gitops/values/pr/pr-*/{{.valuesFile}}",
        ),
        // Pipeline logic in YAML, and an unpinned action.
        (
            ".github/workflows/cd.yml",
            "        run: cargo xtask promote",
            "        run: yq -i '.image.tag = \"x\"' gitops/values/preprod/service-demo.yaml && cargo xtask promote",
            "is pipeline logic in YAML",
        ),
        (
            ".github/workflows/ci.yml",
            "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
            "actions/checkout@v4",
            "must be pinned to a full commit sha",
        ),
        // Review finding 2: a GitOps push with GITHUB_TOKEN's persisted credentials (the github-actions app,
        // which every branch's workflow is) instead of the deploy key.
        (
            ".github/workflows/cd.yml",
            "          ssh-key: ${{ secrets.GITOPS_DEPLOY_KEY }}\n",
            "",
            "job preprod: pushes to the GitOps branch without the deploy key",
        ),
        // Review finding 1: a pull request's own code on the cluster's runner.
        (
            ".github/workflows/ci.yml",
            "    runs-on: ubuntu-24.04",
            "    runs-on: [self-hosted, kind]",
            "in a workflow `pull_request` triggers: the pull request's own code would run on the cluster's runner",
        ),
        // actionlint: an expression GitHub would reject.
        (
            ".github/workflows/release.yml",
            "inputs.version }}",
            "inputs.versoin }}",
            "actionlint failed",
        ),
        // terraform fmt.
        (
            "terraform/variables.tf",
            "  type        = string\n  default     = \"service-demo\"",
            "  type = string\n  default     = \"service-demo\"",
            "terraform fmt failed",
        ),
    ];
    // Each case is a whole `validate` (Python and Go libraries starting up):
    // four at a time, so one waits on its tools while another computes.
    let outputs: Vec<std::process::Output> = cases
        .chunks(4)
        .flat_map(|chunk| {
            std::thread::scope(|scope| {
                let runs: Vec<_> = chunk
                    .iter()
                    .map(|(file, from, to, _)| {
                        scope.spawn(move || {
                            let (_dir, root) = assets();
                            edit(&root, file, from, to);
                            validate(&root)
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|run| run.join().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for ((file, _, _, expected), out) in cases.iter().zip(&outputs) {
        let message = assert_fails(out);
        let text = format!("{}{message}", stdout(out));
        assert!(
            text.contains(expected),
            "{file}: expected {expected:?} in:\n{text}"
        );
        assert!(
            message.contains("problem(s) in the deployment assets"),
            "{message}"
        );
    }
}

#[test]
fn validate_paths_parses_any_files_strictly_and_names_each_mistake() {
    // Strict typed parsing needs no external tool.
    let dir = TempDir::new("validate-paths");
    let files = [
        (
            "deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: web:1\n          imagePullPolicyy: Always\n",
        ),
        (
            "app-wrong-version.yaml",
            "apiVersion: argoproj.io/v1beta1\nkind: Application\nmetadata: {name: web, namespace: argocd}\nspec: {project: default, destination: {namespace: web}}\n",
        ),
        (
            "app-not-in-crd.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web, namespace: argocd}\nspec:\n  project: default\n  source: {repoURL: https://example.com/r.git, path: chart}\n  destination: {namespace: web}\n  syncPolicy:\n    automated: {prune: true, selfheal: true}\n",
        ),
        (
            "project.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p, namespace: argocd}\nspec:\n  sourceRepo: [https://example.com/r.git]\n",
        ),
        (
            "fine.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = xtask(&["validate", dir.path().to_str().unwrap()], &[]);
    let message = assert_fails(&out);
    let report = stdout(&out).replace(dir.path().to_str().unwrap(), "<dir>");
    assert!(message.contains("4 problem(s) in 5 file(s)"), "{message}");
    insta::assert_snapshot!(report);
}

#[test]
fn every_mistake_of_a_document_is_named_in_one_pass() {
    // Both mistakes at once: before, only the apiVersion was named, and the
    // invented field appeared once the apiVersion was fixed.
    let dir = TempDir::new("validate-one-pass");
    let file = dir.path().join("app.yaml");
    std::fs::write(
        &file,
        "apiVersion: argoproj.io/v2\nkind: Application\nmetadata: {name: web, namespace: argocd}\nspec:\n  project: service-demo\n  source: {repoURL: https://example.com/r.git, path: chart}\n  destination: {namespace: web}\n  healthCheck: {timeoutSeconds: 30}\n",
    )
    .unwrap();
    let out = xtask(&["validate", file.to_str().unwrap()], &[]);
    let message = assert_fails(&out);
    let report = stdout(&out);
    assert!(
        report.contains("apiVersion must be argoproj.io/v1alpha1 for Application"),
        "{report}"
    );
    // Checked against Argo CD's own CRD (xtask/schemas/), as the apiVersion it serves.
    assert!(
        report.contains(".spec.healthCheck: unknown field `healthCheck`"),
        "{report}"
    );
    assert!(message.contains("2 problem(s) in 1 file(s)"), "{message}");
}

/// `validate` on a copy of the assets with one edit: fails and names `expected`.
fn caught(file: &str, from: &str, to: &str, expected: &str) {
    let (_dir, root) = assets();
    edit(&root, file, from, to);
    let out = validate(&root);
    let message = assert_fails(&out);
    let text = format!("{}{message}", stdout(&out));
    assert!(
        text.contains(expected),
        "{file}: expected {expected:?} in:\n{text}"
    );
}

// Issue 15's faults that live in the chart, gitops/, Terraform and the README
// (the workflow ones are tested with the workflow checks).

#[test]
fn fault_an_environment_without_an_ingress_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/values/preprod/service-demo.yaml",
        "replicaCount: 2",
        "replicaCount: 2\ningress:\n  enabled: false",
        "preprod: 0 Ingresses rendered, one expected",
    );
}

#[test]
fn fault_an_ingress_host_other_than_env_dot_domain_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/values/prod/service-demo.yaml",
        "replicaCount: 3",
        "replicaCount: 3\ningress:\n  host: service-demo.localhost",
        "prod: the Ingress host is \"service-demo.localhost\"",
    );
}

#[test]
fn fault_a_database_secret_nothing_produces_is_named() {
    let Some(()) = tools() else { return };
    // The Secret External Secrets would make, while the cluster runs CloudNativePG.
    caught(
        "gitops/values/preprod/service-demo.yaml",
        "existingSecret: service-demo-db-app",
        "existingSecret: service-demo-database",
        "preprod: the chart reads DATABASE_URL from Secret service-demo-database key uri, which nothing deployed to preprod produces",
    );
}

#[test]
fn fault_a_host_port_on_items_apis_8080_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "terraform/variables.tf",
        "default     = 8090",
        "default     = 8080",
        "kind maps host port 8080 (container port 30080), items-api's own port",
    );
    caught(
        "terraform/variables.tf",
        "default     = 8081",
        "default     = 8090",
        "host port 8090 is mapped twice",
    );
}

#[test]
fn fault_the_readme_curling_a_service_the_chart_does_not_render_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "README.md",
        "svc/service-demo-preprod",
        "svc/service-demo",
        "`svc/service-demo` is not a Service the chart renders",
    );
}

#[test]
fn argocd_ci_account_wider_than_the_project_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "terraform/main.tf",
        "p, role:ci, applications, sync, service-demo/*, allow",
        "p, role:ci, applications, *, */*, allow",
        "role:ci may * applications */*",
    );
}

#[test]
fn a_database_kind_the_project_does_not_whitelist_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/argocd/project.yaml",
        "    - group: postgresql.cnpg.io\n      kind: Cluster\n",
        "",
        "Cluster (group \"postgresql.cnpg.io\") is not whitelisted by project service-demo: Argo CD would refuse to sync service-demo-database-",
    );
}

#[test]
fn terraform_printing_another_domain_than_the_charts_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "terraform/variables.tf",
        "default     = \"localhost\"",
        "default     = \"localtest.me\"",
        "var.ingress_domain is Some(\"localtest.me\") but the chart's Ingress hosts end in \"localhost\"",
    );
}

#[test]
fn an_admission_policy_with_another_key_or_audit_only_is_named() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    edit(
        &root,
        "gitops/policy/image-signatures.yaml",
        "validationFailureAction: Enforce",
        "validationFailureAction: Audit",
    );
    // A rotated cosign.pub without the policy: the keys differ.
    let keys = root.join("keys");
    assert_ok(&xtask(
        &["gate", "keygen", "--out-dir", keys.to_str().unwrap()],
        &[],
    ));
    std::fs::copy(keys.join("gate.pub"), root.join("gitops/policy/cosign.pub")).unwrap();
    let error = assert_fails(&validate(&root));
    let printed = stdout(&validate(&root));
    for expected in [
        "spec.validationFailureAction is Some(\"Audit\"); set Enforce",
        "publicKeys is not the key in gitops/policy/cosign.pub",
    ] {
        assert!(printed.contains(expected), "{expected:?} in {printed}");
    }
    assert!(error.contains("problem(s)"), "{error}");
}

// Review finding 5: a file under gitops/values/pr/ must never make another
// environment's Application.

#[test]
fn a_file_under_the_previews_folder_other_than_pr_n_values_files_is_named() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    let pr = root.join("gitops/values/pr");
    let values = "namespace:\n  manage: true\n";
    for (file, text) in [
        // With a greedy glob, pr-*/service-demo.yaml matches it.
        ("pr-7/x/service-demo.yaml", values),
        // Named like another service, or another environment.
        ("pr-7/orders-api.yaml", values),
        ("pr-7/prod.yaml", values),
        // Digits 7 too: a second Application service-demo-pr-7.
        ("pr-7-prod/service-demo.yaml", values),
        ("pr-07/service-demo.yaml", values),
        ("pr-x/prod.yaml", values),
        // The layout before pull-request directories.
        ("pr-8.yaml", "image: {}\n"),
    ] {
        let path = pr.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let out = validate(&root);
    let message = assert_fails(&out);
    let text = format!("{}{message}", stdout(&out));
    for name in ["pr-7-prod", "pr-07", "pr-x", "pr-8.yaml"] {
        assert!(
            text.contains(&format!(
                "gitops/values/pr/{name}: only pr-<N>/ directories (written by `cargo xtask preview deploy`) and README.md belong here"
            )),
            "{name}:\n{text}"
        );
    }
    for file in ["x", "orders-api.yaml", "prod.yaml"] {
        assert!(
            text.contains(&format!(
                "gitops/values/pr/pr-7/{file}: a pull request's directory holds only the values files of the services list (service-demo.yaml)"
            )),
            "{file}:\n{text}"
        );
    }
    // Whatever the files are called, nothing but pr-<N> previews is made.
    assert!(!text.contains("Application service-demo-prod "), "{text}");
}

// Issue 20: the ApplicationSets are expanded, and every Application they make is checked.

/// Declares service orders-api in the copy: a workspace member with its
/// `service.toml` (chart charts/service-demo, values file orders-api.yaml).
fn declare_orders_api(root: &Path) {
    let dir = root.join("services/orders-api");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"orders-api\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        dir.join("service.toml"),
        "image = \"orders-api\"\nchart = \"charts/service-demo\"\nport = 8080\nhealth-path = \"/healthz\"\n\
         ready-path = \"/readyz\"\nvalues-file = \"orders-api.yaml\"\n",
    )
    .unwrap();
    edit(
        root,
        "Cargo.toml",
        "\"services/items-api\"",
        "\"services/items-api\", \"services/orders-api\"",
    );
}

/// orders-api's element in both services lists, and its values files in `envs`.
fn list_orders_api(root: &Path, envs: &[&str]) {
    for set in ["services", "previews"] {
        edit(
            root,
            &format!("gitops/argocd/apps/{set}.yaml"),
            "                  valuesFile: service-demo.yaml\n",
            "                  valuesFile: service-demo.yaml\n                - service: orders-api\n                  chart: charts/service-demo\n                  valuesFile: orders-api.yaml\n",
        );
    }
    for env in envs {
        let dir = root.join("gitops/values").join(env);
        std::fs::copy(dir.join("service-demo.yaml"), dir.join("orders-api.yaml")).unwrap();
    }
}

/// `validate` fails naming `expected`.
fn fails_naming(root: &Path, expected: &str) {
    let out = validate(root);
    let message = assert_fails(&out);
    let text = format!("{}{message}", stdout(&out));
    assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
}

#[test]
fn fault_a_service_missing_from_the_services_list_is_named() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    declare_orders_api(&root);
    fails_naming(
        &root,
        "gitops/argocd: no Application orders-api-dev for service orders-api in dev: add its element",
    );
}

#[test]
fn fault_an_element_without_a_values_file_in_an_environment_is_named() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    declare_orders_api(&root);
    list_orders_api(&root, &["dev", "preprod"]);
    fails_naming(
        &root,
        "generated Application orders-api-prod: helm value file gitops/values/prod/orders-api.yaml does not exist",
    );
}

#[test]
fn fault_an_element_naming_a_chart_that_does_not_exist_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/argocd/apps/services.yaml",
        "chart: charts/service-demo",
        "chart: charts/items-api",
        "generated Application service-demo-dev: source.path charts/items-api is not a directory of this repository",
    );
}

#[test]
fn fault_an_application_file_an_applicationset_would_take_over_is_named() {
    let Some(()) = tools() else { return };
    // As a service named service-demo-database would make of the database's Application.
    caught(
        "gitops/argocd/apps/database-prod.yaml",
        "name: service-demo-database-prod",
        "name: service-demo-prod",
        "Application service-demo-prod is also made by an ApplicationSet, which would take it over",
    );
}

#[test]
fn fault_an_environments_list_without_prod_is_named() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    let file = root.join("gitops/argocd/apps/services.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let (start, end) = (
        text.find("                - env: prod\n").unwrap(),
        text.find("  template:\n").unwrap(),
    );
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();
    fails_naming(
        &root,
        "gitops/argocd: no Application service-demo-prod for service items-api in prod",
    );
}

#[test]
fn fault_a_template_whose_name_does_not_end_in_the_environment_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/argocd/apps/services.yaml",
        "name: '{{trimSuffix \".yaml\" .valuesFile}}-{{.env}}'",
        "name: '{{trimSuffix \".yaml\" .valuesFile}}-{{.service}}'",
        "is named service-demo-items-api, but the Application of items-api in dev is service-demo-dev",
    );
}

#[test]
fn a_values_file_whose_applications_the_preview_token_could_sync_is_refused() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    declare_orders_api(&root);
    edit(
        &root,
        "services/orders-api/service.toml",
        "values-file = \"orders-api.yaml\"",
        "values-file = \"orders-pr.yaml\"",
    );
    fails_naming(
        &root,
        "services/orders-api/service.toml: values-file orders-pr.yaml makes Application orders-pr-prod, which the previews' token (`*-pr-*`",
    );
}

/// `cargo xtask new-service` adds the service to both services lists, and
/// validate then makes (and passes) its Application in every environment
/// and its preview. Its values files are written here as the pipeline would.
#[test]
fn a_scaffolded_service_is_among_the_applications_validate_checks() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    // --dry-run shows the entries and writes nothing.
    let set = std::fs::read_to_string(root.join("gitops/argocd/apps/services.yaml")).unwrap();
    let dry = support::xtask_in(&root, &["new-service", "orders-api", "--dry-run"], &[]);
    assert_ok(&dry);
    let shown = stdout(&dry);
    for expected in [
        "+++ b/gitops/argocd/apps/services.yaml",
        "+++ b/gitops/argocd/apps/previews.yaml",
        "+                - service: orders-api\n+                  chart: charts/service-demo\n+                  valuesFile: orders-api.yaml\n",
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("gitops/argocd/apps/services.yaml")).unwrap(),
        set
    );
    assert_ok(&support::xtask_in(
        &root,
        &["new-service", "orders-api"],
        &[],
    ));
    for set in ["services", "previews"] {
        let text =
            std::fs::read_to_string(root.join(format!("gitops/argocd/apps/{set}.yaml"))).unwrap();
        assert!(
            text.contains("                - service: orders-api\n                  chart: charts/service-demo\n                  valuesFile: orders-api.yaml\n"),
            "{set}.yaml:\n{text}"
        );
    }
    // Its own image repository, ghcr.io/<owner>/<image>, and its own host
    // (items-api's values have none: the chart's <env>.localhost is items-api's).
    for env in ["dev", "preprod", "prod"] {
        let dir = root.join("gitops/values").join(env);
        let text = std::fs::read_to_string(dir.join("service-demo.yaml")).unwrap();
        let text = text.replace(
            "repository: ghcr.io/example/service-demo",
            "repository: ghcr.io/example/orders-api",
        ) + &format!("ingress:\n  host: orders-api.{env}.localhost\n");
        std::fs::write(dir.join("orders-api.yaml"), text).unwrap();
    }
    let out = validate(&root);
    assert_ok(&out);
    let text = stdout(&out);
    for name in [
        "orders-api-dev",
        "orders-api-preprod",
        "orders-api-prod",
        "orders-api-pr-1",
        "service-demo-prod",
    ] {
        assert!(
            text.contains(&format!(" {name},")) || text.contains(&format!(" {name}\n")),
            "{name}:\n{text}"
        );
    }
    // Anyone else's repository is refused, for it as for items-api.
    edit(
        &root,
        "gitops/values/dev/orders-api.yaml",
        "repository: ghcr.io/example/orders-api",
        "repository: ghcr.io/attacker/orders-api",
    );
    fails_naming(
        &root,
        "gitops/values/dev/orders-api.yaml: image.repository is \"ghcr.io/attacker/orders-api\"; images come only from \"ghcr.io/example/orders-api\"",
    );
}

#[test]
fn argocd_without_path_aware_globbing_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "terraform/main.tf",
        "\"applicationsetcontroller.enable.new.git.file.globbing\" = \"true\"",
        "",
        "Argo CD's configs.params lacks \"applicationsetcontroller.enable.new.git.file.globbing\" = \"true\"",
    );
}

#[test]
fn a_preview_template_naming_the_application_after_the_whole_file_name_is_named() {
    let Some(()) = tools() else { return };
    // pr-7/prod.yaml (with the pattern pr-*/*.yaml) would give namespace prod.
    caught(
        "gitops/argocd/apps/previews.yaml",
        "namespace: 'pr-{{regexReplaceAll \"[^0-9]\" .path.basename \"\"}}'",
        "namespace: '{{trimSuffix \".yaml\" .path.filename}}'",
        "template expression in \"{{trimSuffix \\\".yaml\\\" .path.filename}}\" is not one of",
    );
}

// Review finding 6: a preview runs unreviewed code; its pods reach DNS and nothing else.

#[test]
fn pods_without_an_egress_policy_are_named() {
    let Some(()) = tools() else { return };
    caught(
        "charts/service-demo/values.yaml",
        "networkPolicy:\n  enabled: true",
        "networkPolicy:\n  enabled: false",
        "pr-7: no NetworkPolicy limits the egress of the pods labelled",
    );
    caught(
        "charts/service-demo/templates/networkpolicy.yaml",
        "policyTypes: [\"Ingress\", \"Egress\"]",
        "policyTypes: [\"Ingress\"]",
        "prod: no NetworkPolicy limits the egress of the pods labelled",
    );
}

#[test]
fn a_preview_reaching_argo_cd_or_anything_but_dns_is_named() {
    let Some(()) = tools() else { return };
    // argocd-repo-server answers on 8081 without authentication.
    caught(
        "charts/service-demo/templates/networkpolicy.yaml",
        "  egress:\n",
        "  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: argocd\n      ports:\n        - port: 8081\n",
        "pr-7: the NetworkPolicy lets the pods reach {\"ports\":[{\"port\":8081}],\"to\":[{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":\"argocd\"}}}]}; previews reach DNS only",
    );
    // Every destination (no `to`), on any port.
    caught(
        "charts/service-demo/templates/networkpolicy.yaml",
        "  egress:\n",
        "  egress:\n    - {}\n",
        "prod: the NetworkPolicy lets the pods reach {}; DNS, and the database",
    );
}

#[test]
fn a_database_egress_wider_than_a_24_is_refused() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/values/prod/service-demo.yaml",
        "    podLabels:\n      cnpg.io/cluster: service-demo-db\n",
        "    cidr: 0.0.0.0/0\n",
        "at '/networkPolicy/database/cidr': '0.0.0.0/0' does not match pattern",
    );
}

// Review finding 7: a values file chooses the image's tag through the pipeline, and little else.

/// `(file, from, to, what the output must say)`, each tried on its own copy.
fn each_caught(cases: &[(&str, &str, &str, &str)]) {
    for (file, from, to, expected) in cases {
        caught(file, from, to, expected);
    }
}

const PROD: &str = "gitops/values/prod/service-demo.yaml";
const PREPROD: &str = "gitops/values/preprod/service-demo.yaml";

#[test]
fn an_image_from_another_repository_is_refused() {
    let Some(()) = tools() else { return };
    each_caught(&[
        (
            PROD,
            "repository: ghcr.io/example/service-demo",
            "repository: ghcr.io/attacker/service-demo",
            "gitops/values/prod/service-demo.yaml: image.repository is \"ghcr.io/attacker/service-demo\"; images come only from \"ghcr.io/example/service-demo\"",
        ),
        (
            "charts/service-demo/values.yaml",
            "repository: ghcr.io/example/service-demo",
            "repository: docker.io/library/service-demo",
            "charts/service-demo/values.yaml: image.repository is \"docker.io/library/service-demo\"",
        ),
    ]);
    // A preview's values file (written by the pipeline, but a file in git all the same).
    let (_dir, root) = assets();
    std::fs::create_dir_all(root.join("gitops/values/pr/pr-3")).unwrap();
    std::fs::write(
        root.join("gitops/values/pr/pr-3/service-demo.yaml"),
        "image:\n  repository: evil.example/x\n  tag: pr-3-0123456\n",
    )
    .unwrap();
    let out = validate(&root);
    let text = format!("{}{}", stdout(&out), assert_fails(&out));
    assert!(
        text.contains(
            "gitops/values/pr/pr-3/service-demo.yaml: image.repository is \"evil.example/x\""
        ),
        "{text}"
    );
}

#[test]
fn a_values_file_opening_or_placing_the_environment_is_refused() {
    let Some(()) = tools() else { return };
    each_caught(&[
        (
            PROD,
            "networkPolicy:\n  database:",
            "networkPolicy:\n  enabled: false\n  database:",
            "prod: no NetworkPolicy rendered; networkPolicy.enabled must stay true",
        ),
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 3\nservice:\n  type: NodePort",
            "prod: Service type NodePort opens the environment outside the cluster",
        ),
        (
            PREPROD,
            "replicaCount: 2",
            "replicaCount: 2\nservice:\n  type: LoadBalancer",
            "preprod: Service type LoadBalancer opens the environment outside the cluster",
        ),
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 3\nnamespace:\n  manage: true",
            "prod: the chart renders the Namespace (namespace.manage: true)",
        ),
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 3\ntolerations:\n  - key: node-role.kubernetes.io/control-plane\n    operator: Exists\n    effect: NoSchedule",
            "prod: the pods set tolerations",
        ),
        (
            PREPROD,
            "replicaCount: 2",
            "replicaCount: 2\nnodeSelector:\n  kubernetes.io/hostname: service-demo-control-plane",
            "preprod: the pods set nodeSelector",
        ),
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 3\naffinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms:\n        - matchExpressions:\n            - {key: kubernetes.io/hostname, operator: In, values: [x]}",
            "prod: the pods set affinity",
        ),
    ]);
}

#[test]
fn replicas_and_resources_beyond_the_schemas_bounds_are_refused() {
    let Some(()) = tools() else { return };
    each_caught(&[
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 500",
            "at '/replicaCount'",
        ),
        (
            PROD,
            "replicaCount: 3",
            "replicaCount: 3\nautoscaling:\n  enabled: true\n  maxReplicas: 1000",
            "at '/autoscaling/maxReplicas'",
        ),
        (
            PROD,
            "    memory: 256Mi\n  limits:\n    memory: 256Mi",
            "    memory: 256Mi\n  limits:\n    memory: 1000Gi",
            "at '/resources/limits/memory'",
        ),
        (
            PROD,
            "cpu: 500m",
            "cpu: \"64\"",
            "at '/resources/requests/cpu'",
        ),
    ]);
}

#[test]
fn validate_path_checks_the_admission_policy_against_kyvernos_crd() {
    let dir = TempDir::new("validate-policy");
    let policy = std::fs::read_to_string(
        support::workspace_root().join("gitops/policy/image-signatures.yaml"),
    )
    .unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, &policy).unwrap();
    assert_ok(&xtask(&["validate", file.to_str().unwrap()], &[]));
    std::fs::write(
        &file,
        policy.replacen("spec:\n", "spec:\n  invented: true\n", 1),
    )
    .unwrap();
    let out = xtask(&["validate", file.to_str().unwrap()], &[]);
    assert_fails(&out);
    let report = stdout(&out);
    let expected = ".spec.invented: unknown field `invented`";
    assert!(report.contains(expected), "{expected:?} in {report}");
    assert!(report.contains("[objects.upstream-crd]"), "{report}");
    // A misspelt field of a rule, with its path and the field it meant.
    std::fs::write(
        &file,
        policy.replacen("mutateDigest: true", "mutateDigests: true", 1),
    )
    .unwrap();
    let out = xtask(&["validate", file.to_str().unwrap()], &[]);
    assert_fails(&out);
    let report = stdout(&out);
    let expected = ".spec.rules[2].verifyImages[0].mutateDigests: unknown field `mutateDigests` (did you mean `mutateDigest`?)";
    assert!(report.contains(expected), "{expected:?} in {report}");
}

// Every service's values are rendered, with its own chart, in every environment.

/// orders-api declared and listed, its values in every environment items-api's
/// at its own host; `fault` (from, to) applied to its preprod file.
fn orders_api_with(root: &Path, fault: Option<(&str, &str)>) {
    declare_orders_api(root);
    list_orders_api(root, &["dev", "preprod", "prod"]);
    for env in ["dev", "preprod", "prod"] {
        let file = root.join(format!("gitops/values/{env}/orders-api.yaml"));
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&format!("ingress:\n  host: orders-api.{env}.localhost\n"));
        std::fs::write(&file, text).unwrap();
    }
    if let Some((from, to)) = fault {
        edit(root, "gitops/values/preprod/orders-api.yaml", from, to);
    }
}

#[test]
fn a_second_services_values_are_rendered_in_every_environment() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    orders_api_with(&root, None);
    let out = validate(&root);
    assert_ok(&out);
    let text = stdout(&out);
    for (env, file) in [
        ("dev", "gitops/values/dev/orders-api.yaml"),
        ("preprod", "gitops/values/preprod/orders-api.yaml"),
        ("prod", "gitops/values/prod/orders-api.yaml"),
        (
            "pr-7",
            "a sample preview pr-7 from gitops/values/dev/orders-api.yaml",
        ),
    ] {
        assert!(
            text.contains(&format!("✔ orders-api renders for {env} ({file})")),
            "{env}:\n{text}"
        );
    }
}

#[test]
fn a_second_services_values_breaking_a_rendered_check_are_refused_naming_the_file() {
    let Some(()) = tools() else { return };
    let file = "gitops/values/preprod/orders-api.yaml";
    let cases = [
        // The cluster checks every render passes.
        (
            "replicaCount: 2",
            "replicaCount: 2\nservice:\n  type: NodePort",
            "preprod: Service type NodePort opens the environment outside the cluster",
        ),
        (
            "existingSecret: service-demo-db-app",
            "existingSecret: orders-api-database",
            "preprod: the chart reads DATABASE_URL from Secret orders-api-database key uri, which nothing deployed to preprod produces",
        ),
        // The chart's own refusal, from Helm.
        (
            "  existingSecret: service-demo-db-app\n",
            "  existingSecret: \"\"\n",
            "replicaCount 2 needs database.existingSecret",
        ),
    ];
    for (from, to, expected) in cases {
        let (_dir, root) = assets();
        orders_api_with(&root, Some((from, to)));
        let out = validate(&root);
        let message = assert_fails(&out);
        let text = format!("{}{message}", stdout(&out));
        assert!(
            text.contains(&format!("✘ orders-api renders for preprod ({file})")),
            "{text}"
        );
        let named = text
            .lines()
            .any(|l| l.contains(file) && l.contains(expected));
        assert!(named, "no line names {file} and {expected:?}:\n{text}");
    }
}

#[test]
fn a_second_service_at_items_apis_host_is_refused() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    orders_api_with(
        &root,
        Some((
            "host: orders-api.preprod.localhost",
            "host: preprod.localhost",
        )),
    );
    let out = validate(&root);
    let message = assert_fails(&out);
    let text = format!("{}{message}", stdout(&out));
    assert!(
        text.contains(
            "preprod: Ingress host preprod.localhost is both gitops/values/preprod/service-demo.yaml's and \
             gitops/values/preprod/orders-api.yaml's"
        ),
        "{text}"
    );
}

// The AppProject's role tokens reach the services' Applications of their environments only.

#[test]
fn a_release_token_reaching_the_prod_database_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/argocd/project.yaml",
        "        - p, proj:service-demo:release, applications, sync, service-demo/service-demo-database-*, deny\n",
        "",
        "gitops/argocd/project.yaml: role release may sync Application service-demo-database-prod, which no pipeline token needs",
    );
}

#[test]
fn a_role_missing_or_overreaching_its_environments_is_named() {
    let Some(()) = tools() else { return };
    caught(
        "gitops/argocd/project.yaml",
        "applications, get, service-demo/*-preprod, allow",
        "applications, get, service-demo/items-api-preprod, allow",
        "role preprod may not get Application service-demo-preprod, which its job needs",
    );
    caught(
        "gitops/argocd/project.yaml",
        "applications, sync, service-demo/*-dev, allow",
        "applications, sync, service-demo/*, allow",
        "role release may sync Application service-demo-preprod, outside its environments",
    );
}

// Issue 29, item 1 and 3: a committed preview's values are rendered and checked as an
// environment's (Argo CD syncs them; pr-* namespaces are outside admission), and no
// values file sets an annotation or label outside the allow-lists.

/// A preview values file of pull request 3 with `extra` appended to what
/// `preview deploy` writes.
fn preview_with(root: &Path, extra: &str) {
    let dir = root.join("gitops/values/pr/pr-3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("service-demo.yaml"),
        format!(
            "image:\n  repository: ghcr.io/example/service-demo\n  tag: pr-3-0123456789abcdef0123456789abcdef01234567\n  digest: \"\"\nenv:\n  ENV_NAME: \"pr-3\"\n  SERVICES_NAMESPACE: \"dev\"\n{extra}"
        ),
    )
    .unwrap();
}

#[test]
fn a_committed_preview_is_rendered_and_passes_as_preview_deploy_writes_it() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    preview_with(&root, "");
    let out = validate(&root);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("✔ chart renders for pr-3 (gitops/values/pr/pr-3/service-demo.yaml)"),
        "{text}"
    );
}

#[test]
fn a_committed_preview_opening_placing_or_taking_prods_traffic_is_refused() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    preview_with(
        &root,
        "networkPolicy:\n  enabled: false\nservice:\n  type: NodePort\ntolerations:\n  - key: node-role.kubernetes.io/control-plane\n    operator: Exists\nnodeSelector:\n  node-role.kubernetes.io/control-plane: \"\"\ningress:\n  host: prod.localhost\n  annotations:\n    nginx.ingress.kubernetes.io/canary: \"true\"\n    nginx.ingress.kubernetes.io/canary-weight: \"100\"\n    nginx.ingress.kubernetes.io/mirror-target: https://evil.example/\n    nginx.ingress.kubernetes.io/permanent-redirect: https://evil.example/\n",
    );
    let out = validate(&root);
    let text = format!("{}{}", stdout(&out), assert_fails(&out));
    for expected in [
        "✘ chart renders for pr-3 (gitops/values/pr/pr-3/service-demo.yaml)",
        "pr-3: no NetworkPolicy rendered; networkPolicy.enabled must stay true",
        "pr-3: Service type NodePort opens the environment outside the cluster",
        "pr-3: the pods set tolerations",
        "pr-3: the pods set nodeSelector",
        "pr-3: gitops/values/pr/pr-3/service-demo.yaml routes Ingress host prod.localhost, outside the preview's own",
        "annotation nginx.ingress.kubernetes.io/canary is not one ingress.annotations may set",
        "annotation nginx.ingress.kubernetes.io/canary-weight is not one",
        "annotation nginx.ingress.kubernetes.io/mirror-target is not one",
        "annotation nginx.ingress.kubernetes.io/permanent-redirect is not one",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
}

#[test]
fn a_committed_preview_at_another_previews_host_or_domain_is_refused() {
    let Some(()) = tools() else { return };
    for (extra, expected) in [
        (
            "ingress:\n  host: pr-4.localhost\n",
            "routes Ingress host pr-4.localhost",
        ),
        (
            "ingress:\n  domain: evil.example\n",
            "routes Ingress host pr-3.evil.example",
        ),
    ] {
        let (_dir, root) = assets();
        preview_with(&root, extra);
        let out = validate(&root);
        let text = format!("{}{}", stdout(&out), assert_fails(&out));
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
}

#[test]
fn pod_annotations_labels_and_ingress_annotations_outside_the_allow_lists_are_refused() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    edit(
        &root,
        PROD,
        "replicaCount: 3",
        "replicaCount: 3\npodAnnotations:\n  container.apparmor.security.beta.kubernetes.io/items-api: unconfined\n  prometheus.io/scrape: \"true\"\npodLabels:\n  cnpg.io/cluster: service-demo-db\n  cnpg.io/instanceRole: primary\n  team: payments\ningress:\n  annotations:\n    nginx.ingress.kubernetes.io/server-snippet: \"return 302 https://evil.example;\"\n    nginx.ingress.kubernetes.io/proxy-body-size: 1m",
    );
    let out = validate(&root);
    let text = format!("{}{}", stdout(&out), assert_fails(&out));
    for expected in [
        "prod: Deployment service-demo-prod: pod annotation container.apparmor.security.beta.kubernetes.io/items-api is not one podAnnotations may set",
        "prod: Deployment service-demo-prod: pod label cnpg.io/cluster=\"service-demo-db\" is not the chart's",
        "prod: Deployment service-demo-prod: pod label cnpg.io/instanceRole=\"primary\" is not the chart's",
        "prod: Ingress service-demo-prod: annotation nginx.ingress.kubernetes.io/server-snippet is not one",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
    // The allowed ones are not named.
    for allowed in [
        "prometheus.io/scrape",
        "pod label team",
        "annotation nginx.ingress.kubernetes.io/proxy-body-size",
    ] {
        assert!(
            !text.contains(&format!("{allowed} is not")),
            "{allowed} refused:\n{text}"
        );
    }
}

// Issue 29, item 2: one list of registries (gitops/policy/image-signatures.yaml), in every namespace.

#[test]
fn a_deployment_added_under_the_database_directory_is_refused() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    std::fs::write(
        root.join("gitops/database/prod/backup.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: backup\n  namespace: prod\nspec:\n  selector:\n    matchLabels: {app: backup}\n  template:\n    metadata:\n      labels: {app: backup}\n    spec:\n      containers:\n        - name: backup\n          image: docker.io/attacker/backup:1\n          envFrom:\n            - secretRef:\n                name: service-demo-db-app\n",
    )
    .unwrap();
    let out = validate(&root);
    let text = format!("{}{}", stdout(&out), assert_fails(&out));
    assert!(
        text.contains("gitops/database/prod/backup.yaml: Deployment under gitops/database/"),
        "{text}"
    );
}

/// Issue 29, item 1, for a second service: its committed preview is rendered with
/// its own chart and held to the same rules, its host under its own pr-<N>.
#[test]
fn a_second_services_committed_preview_is_rendered_and_refused_at_prods_host() {
    let Some(()) = tools() else { return };
    let (_dir, root) = assets();
    orders_api_with(&root, None);
    let dir = root.join("gitops/values/pr/pr-3");
    std::fs::create_dir_all(&dir).unwrap();
    let preview = "image:\n  repository: ghcr.io/example/orders-api\n  tag: pr-3-0123456789abcdef0123456789abcdef01234567\n  digest: \"\"\nenv:\n  ENV_NAME: \"pr-3\"\n  SERVICES_NAMESPACE: \"dev\"\n";
    std::fs::write(
        dir.join("orders-api.yaml"),
        format!("{preview}ingress:\n  host: orders-api.pr-3.localhost\n"),
    )
    .unwrap();
    let out = validate(&root);
    let text = stdout(&out);
    assert_ok(&out);
    assert!(
        text.contains("✔ orders-api renders for pr-3 (gitops/values/pr/pr-3/orders-api.yaml)"),
        "{text}"
    );
    std::fs::write(
        dir.join("orders-api.yaml"),
        format!(
            "{preview}ingress:\n  host: orders-api.prod.localhost\nservice:\n  type: NodePort\n"
        ),
    )
    .unwrap();
    let out = validate(&root);
    let text = format!("{}{}", stdout(&out), assert_fails(&out));
    for expected in [
        "pr-3: gitops/values/pr/pr-3/orders-api.yaml routes Ingress host orders-api.prod.localhost, outside the preview's own",
        "gitops/values/pr/pr-3/orders-api.yaml: pr-3: Service type NodePort opens the environment",
    ] {
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
    }
}

/// `validate --list` prints every rule once: its id, its target and why it
/// exists, one a line, and checks nothing.
#[test]
fn validate_list_prints_each_rule_with_its_target_and_why() {
    let out = xtask(&["validate", "--list"], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "an id twice:\n{text}");
    for (id, target) in [
        ("workflows.injection", "workflows"),
        ("argocd.project-roles", "argocd"),
        ("argocd.set-expansion", "argocd"),
        ("chart.pod-security", "chart"),
        ("terraform.no-inline-key", "terraform"),
        ("admission.signature-verified", "admission"),
        ("readme.services-exist", "readme"),
        ("objects.upstream-crd", "objects"),
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no {id} in:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], target, "{line}");
        assert!(fields.len() > 4, "{id} says not why: {line}");
    }
    assert!(!text.contains('✔'), "--list checks nothing:\n{text}");
}
