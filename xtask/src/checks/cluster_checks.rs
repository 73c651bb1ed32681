//! What the fork-and-follow path relies on across files, which no single
//! tool's schema sees (issue 15's faults): every environment has an Ingress
//! at `<env>.<domain>` that the NetworkPolicy lets the controller reach; the
//! database Secret the chart reads is one that something deployed to that
//! namespace produces (CloudNativePG's `<cluster>-app`, an ExternalSecret, a
//! Secret); kind's host ports collide neither with each other nor with
//! items-api's 8080; Terraform pins the ingress controller and the operator
//! and gives Argo CD a `ci` account limited to the service-demo project; the
//! Services the README curls are the ones the chart renders. And what the
//! attacker review found (findings 5-7): nothing but `pr-<N>/<values-file>` under
//! gitops/values/pr/ and Argo CD's path-aware globbing; every pod under an
//! egress policy (previews: DNS only); images from the pipeline's repository
//! only; no values file opening (NodePort, no NetworkPolicy) or placing
//! (tolerations…) an environment, or making dev/preprod/prod own its namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hcl::{Block, Body, Expression, ObjectKey, TemplateExpr, TraversalOperator};
use serde_json::Value;

use crate::checks::cnpg_types;
use crate::checks::manifests;
use crate::checks::{Finding, Rule, rule, tag};
use crate::domain::application_sets;
use crate::domain::promotion::Env;
use crate::plumbing::yaml;

/// items-api's default `PORT` (`cargo run -p items-api`, the demo, the image).
const SERVICE_PORT: u64 = 8080;
/// The IngressClass terraform/ installs (`ingressClassResource.name`).
const INGRESS_CLASS: &str = "nginx";
/// Where terraform/ installs the ingress controller.
const INGRESS_NAMESPACE: &str = "ingress-nginx";
/// The Helm charts Terraform must install at a pinned version: (chart, what it is for).
const PINNED_CHARTS: [(&str, &str); 4] = [
    ("argo-cd", "Argo CD"),
    ("ingress-nginx", "the ingress controller"),
    ("cloudnative-pg", "the PostgreSQL operator"),
    ("kyverno", "the admission controller for image signatures"),
];

/// One environment's rendered chart: `(namespace, objects)`.
pub type Rendered = (String, Vec<Value>);
/// `(Secret, key)`s per namespace.
type SecretsByNamespace = BTreeMap<String, BTreeSet<(String, String)>>;

/// Every cross-file problem of the repository at `root`, given the chart
/// rendered per environment.
pub fn problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
    let mut found = tag("chart.ingress-per-environment", ingress_problems(rendered));
    found.extend(terraform_problems(root, rendered));
    found.extend(tag(
        "readme.services-exist",
        readme_problems(root, rendered),
    ));
    found.extend(tag("chart.preview-folder", preview_file_problems(root)));
    found.extend(tag(
        "chart.image-repository",
        image_repository_problems(root),
    ));
    found.extend(service_problems(root, rendered));
    found
}

/// The rules of this module.
pub const RULES: &[Rule] = &[
    rule(
        "chart.ingress-per-environment",
        "chart",
        "every environment answers at <env>.<domain>, one domain for all, through an Ingress the NetworkPolicy lets the controller reach: the README's URLs work",
    ),
    rule(
        "chart.database-secret-produced",
        "chart",
        "the Secret and key the chart reads DATABASE_URL from is produced in that namespace (CloudNativePG's <cluster>-app, an ExternalSecret, a Secret): otherwise pods never start",
    ),
    rule(
        "chart.egress-bounded",
        "chart",
        "every pod is under an egress policy: DNS, and outside previews the environment's database only; a preview runs a pull request's code",
    ),
    rule(
        "chart.placement",
        "chart",
        "no values file opens (NodePort, no NetworkPolicy) or places (tolerations, nodeSelector) an environment, nor makes dev/preprod/prod own its namespace",
    ),
    rule(
        "chart.preview-folder",
        "chart",
        "gitops/values/pr/ holds only pr-<N>/ directories of listed values files: any other file could become an Application (pr-x/prod.yaml once named service-demo-prod)",
    ),
    rule(
        "chart.image-repository",
        "chart",
        "every values file runs images of the pipeline's repository only: a values file changes the tag through the pipeline, never where the image comes from",
    ),
    rule(
        "terraform.parses",
        "terraform",
        "terraform/*.tf parse as HCL: the other Terraform rules read them",
    ),
    rule(
        "terraform.host-ports",
        "terraform",
        "kind's host ports are not items-api's 8080 nor each other's, and the ingress node maps port 80: `cluster up` would fail to bind",
    ),
    rule(
        "terraform.ingress-domain",
        "terraform",
        "var.ingress_domain is the domain the chart's Ingress hosts end in: the outputs would print URLs nothing answers",
    ),
    rule(
        "terraform.chart-pins",
        "terraform",
        "Argo CD, ingress-nginx, CloudNativePG and Kyverno come from charts at a pinned version: the schemas validate checks against are that version's",
    ),
    rule(
        "terraform.argocd-ci-account",
        "terraform",
        "Argo CD's ci account gets and syncs the service-demo project's applications only, ci-preview the previews only: a leaked token stays small",
    ),
    rule(
        "terraform.path-aware-globbing",
        "terraform",
        "Argo CD globs git files path by path: otherwise gitops/values/pr/pr-*/x.yaml also matches pr-7/y/x.yaml",
    ),
    rule(
        "readme.services-exist",
        "readme",
        "every `svc/<name>` the README names is a Service the chart renders: the tutorial's commands work",
    ),
];

/// The checks that hold for each render of a service other than items-api
/// (whose Ingress has its own host, and which the README does not name): the
/// database Secret it reads is produced in its namespace, its pods' egress is
/// bounded, and nothing opens or places the environment.
pub fn service_problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
    let mut found = database_problems(root, rendered);
    let egress = rendered.iter().flat_map(egress_problems).collect();
    found.extend(tag("chart.egress-bounded", egress));
    let placement = rendered.iter().flat_map(placement_problems).collect();
    found.extend(tag("chart.placement", placement));
    found
}

/// The one repository the pipeline pushes to, `ghcr.io/${{ github.repository }}`
/// in the workflows: the fork's, which `cargo xtask fork` writes into the
/// AppProject's `sourceRepos` (read here) and every values file.
fn pushed_repository(root: &Path) -> Result<String, String> {
    let file = "gitops/argocd/project.yaml";
    let project = std::fs::read_to_string(root.join(file))
        .map_err(|e| e.to_string())
        .and_then(|text| yaml::parse(&text).map_err(|e| format!("{e:#}")))
        .map_err(|e| format!("{file}: {e}"))?;
    let url = project["spec"]["sourceRepos"][0]
        .as_str()
        .unwrap_or_default();
    // A private fork's Argo CD objects name it over SSH (cluster up's read-only deploy key).
    url.strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))
        .map(|name| format!("ghcr.io/{}", name.trim_end_matches(".git").to_lowercase()))
        .ok_or_else(|| format!("{file}: sourceRepos[0] = {url:?} is not a GitHub repository URL"))
}

/// Every values file (the chart's defaults, each environment's, each
/// preview's) runs images of the pipeline's repository only: a values file
/// may change the tag through the pipeline, never where the image comes from.
fn image_repository_problems(root: &Path) -> Vec<String> {
    let expected = match pushed_repository(root) {
        Ok(repository) => repository,
        Err(problem) => return vec![problem],
    };
    let files = values_files(root);
    // Each service's images are at <registry>/<image> (ghcr.io/<owner>/<image>): its values files
    // (named by its values-file in every environment) may name its own repository too.
    let images: BTreeMap<String, String> = crate::domain::services::load(root)
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.declaration.values_file, s.declaration.image))
        .collect();
    let registry = expected
        .rsplit_once('/')
        .map_or("", |(registry, _)| registry);
    let mut found = Vec::new();
    for file in files {
        let values = std::fs::read_to_string(root.join(&file))
            .map_err(anyhow::Error::from)
            .and_then(|text| yaml::parse(&text));
        let repository = match &values {
            Ok(values) => &values["image"]["repository"],
            Err(e) => {
                found.push(format!("{}: {e:#}", file.display()));
                continue;
            }
        };
        let is_chart = file.starts_with("charts");
        let own = file
            .file_name()
            .and_then(|name| images.get(name.to_string_lossy().as_ref()))
            .filter(|_| !is_chart)
            .map(|image| format!("{registry}/{image}"));
        // The pipeline's repository (a workspace of one service, a fork), or the service's own.
        let wanted = own.unwrap_or_else(|| expected.clone());
        if (is_chart || !repository.is_null())
            && repository != wanted.as_str()
            && repository != expected.as_str()
        {
            found.push(format!(
                "{}: image.repository is {repository}; images come only from {wanted:?}, where the pipeline \
                 pushes what it built and scanned (`cargo xtask fork --github <owner>/<name>` sets it)",
                file.display()
            ));
        }
    }
    found
}

/// The chart's default values and every values file under gitops/values
/// (each environment's, each pull request's), from the repository root.
fn values_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![std::path::PathBuf::from("charts/service-demo/values.yaml")];
    let previews: Vec<_> = std::fs::read_dir(root.join("gitops/values/pr"))
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    let dirs = ["dev", "preprod", "prod", "pr"].map(|d| root.join("gitops/values").join(d));
    for dir in dirs.iter().chain(&previews) {
        let mut yaml: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|p| Some(p.strip_prefix(root).ok()?.to_path_buf()))
            .collect();
        yaml.sort();
        files.extend(yaml);
    }
    files
}

/// What a values file may not choose, whatever the environment: a Service
/// outside the cluster, the nodes its pods land on, no NetworkPolicy, and,
/// in dev, preprod and prod, owning (and deleting with the Application) the namespace.
fn placement_problems((env, docs): &Rendered) -> Vec<String> {
    let mut found = Vec::new();
    for service in of_kind(docs, "Service") {
        let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
        if kind != "ClusterIP" {
            found.push(format!(
                "{env}: Service type {kind} opens the environment outside the cluster; service.type must be \
                 ClusterIP (it is reached through the Ingress)"
            ));
        }
    }
    for pod in docs
        .iter()
        .filter(|d| pod_labels(d).is_some())
        .map(|d| &d["spec"]["template"]["spec"])
    {
        for key in ["nodeSelector", "tolerations", "affinity"] {
            if pod.get(key).is_some_and(|v| !v.is_null()) {
                found.push(format!(
                    "{env}: the pods set {key}; remove {key} from the values: where pods run is the cluster's \
                     choice, not a values file's (a toleration reaches the control-plane node)"
                ));
            }
        }
    }
    if of_kind(docs, "NetworkPolicy").next().is_none() {
        found.push(format!(
            "{env}: no NetworkPolicy rendered; networkPolicy.enabled must stay true"
        ));
    }
    let long_lived = env
        .parse::<Env>()
        .is_ok_and(|e| Env::LONG_LIVED.contains(&e));
    if long_lived && of_kind(docs, "Namespace").next().is_some() {
        found.push(format!(
            "{env}: the chart renders the Namespace (namespace.manage: true), so deleting the Application \
             would delete {env} and its database; only previews own their namespace"
        ));
    }
    found
}

/// Where the cluster's DNS runs, and its pods' label (CoreDNS, on kind too).
const DNS_NAMESPACE: &str = "kube-system";
const DNS_POD_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// Every pod the chart makes is under an egress policy, and every egress rule
/// of every policy is DNS (kube-dns on 53) or, outside previews, the
/// environment's database (its pods in the namespace or a /24 at most, one
/// TCP port). A preview runs a pull request's code: DNS only, so never Argo
/// CD, the Kubernetes API (the node's address), another namespace or the host.
fn egress_problems((env, docs): &Rendered) -> Vec<String> {
    let mut found = Vec::new();
    let policies: Vec<&Value> = of_kind(docs, "NetworkPolicy")
        .filter(|p| {
            p["spec"]["policyTypes"]
                .as_array()
                .is_some_and(|t| t.contains(&Value::from("Egress")))
        })
        .collect();
    for pod in docs.iter().filter_map(pod_labels) {
        let covered = policies.iter().any(|p| {
            p["spec"]["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|wanted| wanted.iter().all(|(k, v)| pod.get(k) == Some(v)))
        });
        if !covered {
            found.push(format!(
                "{env}: no NetworkPolicy limits the egress of the pods labelled {pod:?}: they could reach Argo CD, \
                 the Kubernetes API and the machine (networkPolicy.enabled: true, policyTypes with Egress)"
            ));
            break;
        }
    }
    let preview = env.starts_with("pr-");
    for rule in policies
        .iter()
        .flat_map(|p| p["spec"]["egress"].as_array().into_iter().flatten())
    {
        if !(is_dns_rule(rule) || (!preview && is_database_rule(rule))) {
            let allowed = if preview {
                "previews reach DNS only"
            } else {
                "DNS, and the database: its pods in this namespace or a /24 at most, on one TCP port"
            };
            found.push(format!(
                "{env}: the NetworkPolicy lets the pods reach {rule}; {allowed} (charts/service-demo/templates/networkpolicy.yaml)"
            ));
        }
    }
    found
}

/// The labels of the pods a Deployment or Job makes.
fn pod_labels(doc: &Value) -> Option<&serde_json::Map<String, Value>> {
    matches!(doc["kind"].as_str(), Some("Deployment" | "Job"))
        .then(|| doc["spec"]["template"]["metadata"]["labels"].as_object())
        .flatten()
}

/// The rule's ports: every one given, each a number with its protocol.
fn rule_ports(rule: &Value) -> Option<Vec<(u64, &str)>> {
    let ports = rule["ports"].as_array().filter(|p| !p.is_empty())?;
    ports
        .iter()
        .map(|p| Some((p["port"].as_u64()?, p["protocol"].as_str().unwrap_or("TCP"))))
        .collect()
}

/// To kube-dns pods in kube-system, on 53 only.
fn is_dns_rule(rule: &Value) -> bool {
    let to_dns = |peer: &Value| {
        peer.as_object().is_some_and(|p| p.len() == 2)
            && peer["namespaceSelector"]
                == serde_json::json!({"matchLabels": {"kubernetes.io/metadata.name": DNS_NAMESPACE}})
            && peer["podSelector"]
                == serde_json::json!({"matchLabels": {DNS_POD_LABEL.0: DNS_POD_LABEL.1}})
    };
    let peers = rule["to"].as_array().filter(|p| !p.is_empty());
    peers.is_some_and(|p| p.iter().all(to_dns))
        && rule_ports(rule).is_some_and(|ports| ports.iter().all(|(port, _)| *port == 53))
}

/// To labelled pods of the namespace itself, or a /24 at most, on one TCP port.
fn is_database_rule(rule: &Value) -> bool {
    let narrow = |peer: &Value| match peer.as_object() {
        Some(p) if p.len() == 1 && p.contains_key("podSelector") => {
            peer["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|labels| !labels.is_empty())
        }
        Some(p) if p.len() == 1 && p.contains_key("ipBlock") => {
            let block = &peer["ipBlock"];
            block.get("except").is_none()
                && block["cidr"]
                    .as_str()
                    .and_then(|c| c.split_once('/'))
                    .is_some_and(|(ip, bits)| {
                        ip.parse::<std::net::Ipv4Addr>().is_ok()
                            && bits.parse::<u8>().is_ok_and(|b| (24..=32).contains(&b))
                    })
        }
        _ => false,
    };
    let peers = rule["to"].as_array().filter(|p| !p.is_empty());
    peers.is_some_and(|p| p.iter().all(narrow))
        && rule_ports(rule).is_some_and(|ports| matches!(ports.as_slice(), [(_, "TCP")]))
}

/// Under gitops/values/pr/ only `pr-<N>/` directories (N a pull request's
/// number) holding the values files of the services list (what `preview
/// deploy` writes), and the README: any other file or folder is either
/// ignored or, with a greedy glob, an Application (pr-x/prod.yaml once named
/// service-demo-prod), or a second Application for pull request N
/// (`pr-7-prod/` has the digits 7 too).
fn preview_file_problems(root: &Path) -> Vec<String> {
    let dir = root.join("gitops/values/pr");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => return vec![format!("{}: {error}", dir.display())],
    };
    let values_files: BTreeSet<String> =
        std::fs::read_to_string(root.join(application_sets::PREVIEWS_SET))
            .ok()
            .and_then(|text| application_sets::service_elements(&text).ok())
            .into_iter()
            .flatten()
            .map(|e| e.values_file)
            .collect();
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let is_pr = Env::from_preview_dir(&name).is_some();
        if is_dir && is_pr {
            found.extend(preview_directory_problems(
                &entry.path(),
                &name,
                &values_files,
            ));
        } else if name != "README.md" || is_dir {
            found.push(format!(
                "gitops/values/pr/{name}: only pr-<N>/ directories (written by `cargo xtask preview deploy`) and \
                 README.md belong here; remove it (the previews' ApplicationSet reads this folder)"
            ));
        }
    }
    found.sort();
    found
}

/// A pull request's directory holds the values files of listed services only.
fn preview_directory_problems(
    dir: &Path,
    name: &str,
    values_files: &BTreeSet<String>,
) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !(is_file && values_files.contains(&file)) {
            found.push(format!(
                "gitops/values/pr/{name}/{file}: a pull request's directory holds only the values files of the \
                 services list ({}); remove it",
                values_files.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    found
}

/// The domain the rendered Ingresses' hosts end in (`<env>.<domain>`).
fn rendered_domain(rendered: &[Rendered]) -> Option<String> {
    rendered.iter().find_map(|(env, docs)| {
        let ingress = of_kind(docs, "Ingress").next()?;
        let host = ingress["spec"]["rules"][0]["host"].as_str()?;
        Some(host.strip_prefix(&format!("{env}."))?.to_owned())
    })
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// Each environment reachable at `<env>.<domain>`, one domain for all.
fn ingress_problems(rendered: &[Rendered]) -> Vec<String> {
    let mut found = Vec::new();
    let mut domains = BTreeSet::new();
    for (env, docs) in rendered {
        let ingresses: Vec<&Value> = of_kind(docs, "Ingress").collect();
        let [ingress] = ingresses.as_slice() else {
            found.push(format!(
                "{env}: {} Ingresses rendered, one expected: without it {env} is not reachable at http://{env}.<domain> \
                 (set ingress.enabled: true; charts/service-demo/values.yaml)",
                ingresses.len()
            ));
            continue;
        };
        let host = ingress["spec"]["rules"][0]["host"]
            .as_str()
            .unwrap_or_default();
        match host.strip_prefix(&format!("{env}.")) {
            Some(domain) if !domain.is_empty() => {
                domains.insert(domain.to_owned());
            }
            _ => found.push(format!(
                "{env}: the Ingress host is {host:?}; the workflows and the README reach {env} at {env}.<domain> \
                 (leave ingress.host empty, or set it to {env}.<domain>)"
            )),
        }
        if ingress["spec"]["ingressClassName"] != INGRESS_CLASS {
            found.push(format!(
                "{env}: ingressClassName {}; terraform/ installs the class {INGRESS_CLASS}",
                ingress["spec"]["ingressClassName"]
            ));
        }
        found.extend(backend_problems(env, ingress, docs));
    }
    if domains.len() > 1 {
        found.push(format!(
            "the environments' hosts end in different domains {domains:?}: terraform (var.ingress_domain) and the README assume one"
        ));
    }
    found
}

/// The Ingress sends to the chart's Service, which the NetworkPolicy lets the controller reach.
fn backend_problems(env: &str, ingress: &Value, docs: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let services: Vec<&Value> = of_kind(docs, "Service")
        .filter(|s| s["metadata"]["name"] == backend["name"])
        .collect();
    let port_named = |s: &&Value| {
        s["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == backend["port"]["name"] || p["port"] == backend["port"]["number"])
    };
    if !services.iter().any(port_named) {
        found.push(format!(
            "{env}: the Ingress sends to Service {} port {}, which the chart does not render",
            backend["name"], backend["port"]
        ));
    }
    let admits_controller = |policy: &Value| {
        policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["from"].as_array().into_iter().flatten())
            .any(|from| {
                from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    == INGRESS_NAMESPACE
            })
    };
    if of_kind(docs, "NetworkPolicy").any(|p| !admits_controller(p)) {
        found.push(format!(
            "{env}: the NetworkPolicy drops the ingress controller's requests; set \
             networkPolicy.ingressControllerNamespace: {INGRESS_NAMESPACE}"
        ));
    }
    found
}

/// `(Secret, key)` every pod of `docs` reads `DATABASE_URL` from.
fn database_secrets(docs: &[Value]) -> BTreeSet<(String, String)> {
    docs.iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .flat_map(|c| c["env"].as_array().into_iter().flatten())
        .filter(|e| e["name"] == "DATABASE_URL")
        .map(|e| &e["valueFrom"]["secretKeyRef"])
        .map(|r| {
            let field = |f: &str| r[f].as_str().unwrap_or_default().to_owned();
            (field("name"), field("key"))
        })
        .collect()
}

/// The database Secret each environment reads is produced in its namespace.
fn database_problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
    let mut found = Vec::new();
    let produced = match produced_secrets(root) {
        Ok(produced) => produced,
        Err(problems) => return problems,
    };
    for (env, docs) in rendered {
        let here = produced.get(env.as_str()).cloned().unwrap_or_default();
        for (secret, key) in database_secrets(docs) {
            if here.contains(&(secret.clone(), key.clone())) {
                continue;
            }
            let offered: Vec<String> = here.iter().map(|(s, k)| format!("{s}/{k}")).collect();
            found.push(Finding::new("chart.database-secret-produced", format!(
                "{env}: the chart reads DATABASE_URL from Secret {secret} key {key}, which nothing deployed to {env} \
                 produces (produced there: {offered:?}); set database.existingSecret and database.secretKey in \
                 gitops/values/{env}/service-demo.yaml to what gitops/database/{env}/ makes"
            )));
        }
    }
    found
}

/// `namespace → {(Secret, key)}` made by what the Applications under
/// `gitops/argocd/apps` deploy from plain directories of this repository;
/// or the problems of those documents (strict parse, kinds their project
/// does not whitelist).
fn produced_secrets(root: &Path) -> Result<SecretsByNamespace, Vec<Finding>> {
    let mut produced = SecretsByNamespace::new();
    let mut problems = Vec::new();
    let unreadable = |p| vec![Finding::new("repository.yaml", p)];
    let projects = read_yaml_dir(root, "gitops/argocd").map_err(unreadable)?;
    for (_, app) in read_yaml_dir(root, "gitops/argocd/apps").map_err(unreadable)? {
        let path = app["spec"]["source"]["path"].as_str().unwrap_or_default();
        let namespace = app["spec"]["destination"]["namespace"]
            .as_str()
            .unwrap_or_default();
        if app["kind"] != "Application" || path.is_empty() || path.starts_with("charts/") {
            continue;
        }
        let project = app["spec"]["project"].as_str().unwrap_or_default();
        let app_name = app["metadata"]["name"].as_str().unwrap_or_default();
        let allowed = projects
            .iter()
            .find(|(_, p)| p["kind"] == "AppProject" && p["metadata"]["name"] == project)
            .map(|(_, p)| manifests::whitelisted_kinds(p))
            .unwrap_or_default();
        for (file, doc) in read_yaml_dir(root, path).map_err(unreadable)? {
            problems.extend(manifests::check_document(&file, &doc));
            for (group, kind) in manifests::kinds(std::slice::from_ref(&doc)).difference(&allowed) {
                problems.push(Finding::new("argocd.project-allows", format!(
                    "{file}: {kind} (group {group:?}) is not whitelisted by project {project}: Argo CD would refuse \
                     to sync {app_name}"
                )));
            }
            let into = produced.entry(namespace.to_owned()).or_default();
            into.extend(secrets_made_by(&doc));
        }
    }
    if problems.is_empty() {
        Ok(produced)
    } else {
        Err(problems)
    }
}

/// The `(Secret, key)`s one object makes.
fn secrets_made_by(doc: &Value) -> Vec<(String, String)> {
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let keys_of = |secret: &str, keys: Vec<String>| -> Vec<(String, String)> {
        keys.into_iter().map(|k| (secret.to_owned(), k)).collect()
    };
    let object_keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect()
    };
    match doc["kind"].as_str().unwrap_or_default() {
        "Cluster" => keys_of(
            &format!("{name}{}", cnpg_types::APP_SECRET_SUFFIX),
            cnpg_types::APP_SECRET_KEYS.map(str::to_owned).to_vec(),
        ),
        "ExternalSecret" => keys_of(
            doc["spec"]["target"]["name"].as_str().unwrap_or(name),
            doc["spec"]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| Some(d["secretKey"].as_str()?.to_owned()))
                .collect(),
        ),
        "Secret" => keys_of(
            name,
            [object_keys(&doc["data"]), object_keys(&doc["stringData"])].concat(),
        ),
        _ => Vec::new(),
    }
}

/// `(relative file, document)` of the YAML files directly in `dir`.
fn read_yaml_dir(root: &Path, dir: &str) -> Result<Vec<(String, Value)>, String> {
    let mut docs = Vec::new();
    let files =
        crate::plumbing::fs::yaml_files(&root.join(dir)).map_err(|e| format!("{dir}: {e:#}"))?;
    for file in files.iter().filter(|f| f.parent() == Some(&root.join(dir))) {
        let name = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
        let parsed = crate::plumbing::yaml::split_documents(&text)
            .map_err(|e| format!("{name}: not YAML: {e:#}"))?;
        docs.extend(parsed.into_iter().map(|doc| (name.clone(), doc)));
    }
    Ok(docs)
}

/// Terraform's `.tf` files as one HCL body, or the problem.
fn terraform_body(root: &Path) -> Result<Body, String> {
    let mut structures = Vec::new();
    let dir = root.join("terraform");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("terraform/: {e}"))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let body = hcl::parse(&text).map_err(|e| {
            format!(
                "terraform/{}: not HCL: {e}",
                file.file_name().unwrap_or_default().display()
            )
        })?;
        structures.extend(body.into_inner());
    }
    Ok(Body(structures))
}

fn label(block: &Block, n: usize) -> &str {
    block.labels().get(n).map_or("", |l| l.as_str())
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// A number or string literal, `var.x` (its default) or `local.x`, as text.
fn resolve(body: &Body, expr: &Expression) -> Option<String> {
    match expr {
        Expression::Number(n) => Some(n.to_string()),
        Expression::String(s) => Some(s.clone()),
        Expression::Traversal(t) => {
            let Expression::Variable(scope) = &t.expr else {
                return None;
            };
            let [TraversalOperator::GetAttr(name)] = t.operators.as_slice() else {
                return None;
            };
            let value = match scope.as_str() {
                "var" => body
                    .blocks()
                    .filter(|b| b.identifier() == "variable" && label(b, 0) == name.as_str())
                    .find_map(|b| attribute(b.body(), "default"))?,
                "local" => body
                    .blocks()
                    .filter(|b| b.identifier() == "locals")
                    .find_map(|b| attribute(b.body(), name.as_str()))?,
                _ => return None,
            };
            resolve(body, value)
        }
        _ => None,
    }
}

fn terraform_problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
    let body = match terraform_body(root) {
        Ok(body) => body,
        Err(problem) => return vec![Finding::new("terraform.parses", problem)],
    };
    let mut found = tag("terraform.host-ports", port_problems(&body));
    let domain_var = Expression::from(
        hcl::Traversal::builder(hcl::Variable::unchecked("var"))
            .attr("ingress_domain")
            .build(),
    );
    let terraform_domain = resolve(&body, &domain_var);
    if let Some(chart_domain) = rendered_domain(rendered)
        && terraform_domain.as_deref() != Some(chart_domain.as_str())
    {
        found.push(Finding::new("terraform.ingress-domain", format!(
            "terraform: var.ingress_domain is {terraform_domain:?} but the chart's Ingress hosts end in {chart_domain:?} \
             (ingress.domain): the outputs would print URLs nothing answers"
        )));
    }
    found.extend(tag("terraform.chart-pins", chart_pin_problems(&body)));
    found.extend(tag(
        "terraform.argocd-ci-account",
        ci_account_problems(&body),
    ));
    found.extend(tag(
        "terraform.path-aware-globbing",
        globbing_problems(&body),
    ));
    found
}

/// The ApplicationSet controller's parameter that makes `*` in a git files
/// generator stop at `/` (its default glob crosses folders).
const PATH_AWARE_GLOBBING: &str = "applicationsetcontroller.enable.new.git.file.globbing";

/// Argo CD matches the previews' pattern path by path: without it,
/// gitops/values/pr/pr-*/service-demo.yaml matches gitops/values/pr/pr-7/x/service-demo.yaml too.
fn globbing_problems(body: &Body) -> Vec<String> {
    let Some(argocd) = helm_release(body, "argo-cd") else {
        return Vec::new();
    };
    let set = attribute(argocd.body(), "values")
        .map(object_entries)
        .unwrap_or_default()
        .into_iter()
        .any(|(key, value)| {
            key == PATH_AWARE_GLOBBING
                && (matches!(value, Expression::Bool(true)) || strings_in(value).concat() == "true")
        });
    if set {
        return Vec::new();
    }
    vec![format!(
        "terraform: Argo CD's configs.params lacks \"{PATH_AWARE_GLOBBING}\" = \"true\": its default glob lets `*` \
         cross `/`, so the previews' gitops/values/pr/pr-*/<values-file> would match pr-7/x/<values-file> too"
    )]
}

/// kind's host ports: none is items-api's 8080, no two the same, and the
/// ingress controller's node (`ingress-ready=true`) maps its port 80.
fn port_problems(body: &Body) -> Vec<String> {
    let mut found = Vec::new();
    let nodes: Vec<&Block> = body
        .blocks()
        .filter(|b| b.identifier() == "resource" && label(b, 0) == "kind_cluster")
        .flat_map(|b| {
            b.body()
                .blocks()
                .filter(|c| c.identifier() == "kind_config")
        })
        .flat_map(|c| c.body().blocks().filter(|n| n.identifier() == "node"))
        .collect();
    let mut seen = BTreeSet::new();
    let mut ingress_mapped = false;
    for node in nodes {
        let ingress_ready = attribute(node.body(), "kubeadm_config_patches").is_some_and(|p| {
            strings_in(p)
                .iter()
                .any(|s| s.contains("ingress-ready=true"))
        });
        for mapping in node
            .body()
            .blocks()
            .filter(|m| m.identifier() == "extra_port_mappings")
        {
            let port = |key: &str| attribute(mapping.body(), key).and_then(|e| resolve(body, e));
            let (Some(host), container) = (port("host_port"), port("container_port")) else {
                found.push(
                    "terraform: an extra_port_mappings without a host_port this check can read"
                        .into(),
                );
                continue;
            };
            if host == SERVICE_PORT.to_string() {
                found.push(format!(
                    "terraform: kind maps host port {host} (container port {}), items-api's own port \
                     (`cargo run -p items-api`, the demo): pick another (argocd_http_port 8090, ingress_http_port 8081)",
                    container.as_deref().unwrap_or_default()
                ));
            }
            if !seen.insert(host.clone()) {
                found.push(format!("terraform: host port {host} is mapped twice"));
            }
            ingress_mapped |= ingress_ready && container.as_deref() == Some("80");
        }
    }
    if !ingress_mapped {
        found.push(
            "terraform: no node labelled ingress-ready=true maps container port 80 to this machine: \
             the ingress controller (and every environment) would be unreachable"
                .into(),
        );
    }
    found
}

/// Every string literal or template inside `expr`.
fn strings_in(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::String(s) => vec![s.clone()],
        Expression::TemplateExpr(t) => vec![match t.as_ref() {
            TemplateExpr::QuotedString(s) => s.clone(),
            TemplateExpr::Heredoc(h) => h.template.clone(),
        }],
        Expression::Array(items) => items.iter().flat_map(strings_in).collect(),
        Expression::Object(object) => object.values().flat_map(strings_in).collect(),
        Expression::FuncCall(call) => call.args.iter().flat_map(strings_in).collect(),
        _ => Vec::new(),
    }
}

/// Every `key = value` of the objects inside `expr` (yamlencode's argument included).
fn object_entries(expr: &Expression) -> Vec<(String, &Expression)> {
    let mut entries = Vec::new();
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        match expr {
            Expression::Object(object) => {
                for (key, value) in object {
                    let key = match key {
                        ObjectKey::Identifier(id) => id.to_string(),
                        ObjectKey::Expression(e) => strings_in(e).concat(),
                        _ => continue,
                    };
                    entries.push((key, value));
                    stack.push(value);
                }
            }
            Expression::Array(items) => stack.extend(items),
            Expression::FuncCall(call) => stack.extend(&call.args),
            _ => {}
        }
    }
    entries
}

fn helm_release<'a>(body: &'a Body, chart: &str) -> Option<&'a Block> {
    body.blocks().find(|b| {
        b.identifier() == "resource"
            && label(b, 0) == "helm_release"
            && attribute(b.body(), "chart")
                .and_then(|e| resolve(body, e))
                .as_deref()
                == Some(chart)
    })
}

/// Argo CD, the ingress controller and the operator from charts at a pinned version.
fn chart_pin_problems(body: &Body) -> Vec<String> {
    let mut found = Vec::new();
    for (chart, what) in PINNED_CHARTS {
        let Some(release) = helm_release(body, chart) else {
            found.push(format!(
                "terraform: no helm_release installs {what} (chart {chart})"
            ));
            continue;
        };
        let version = attribute(release.body(), "version").and_then(|e| resolve(body, e));
        let pinned = version
            .as_deref()
            .is_some_and(|v| semver::Version::parse(v).is_ok());
        if !pinned {
            found.push(format!(
                "terraform: helm_release {} installs {chart} at version {version:?}; pin an exact version",
                label(release, 1)
            ));
        }
    }
    found
}

/// Argo CD's `ci` account: an API key, get and sync on the service-demo
/// project's applications only, and `ci-preview` on the previews only.
fn ci_account_problems(body: &Body) -> Vec<String> {
    let Some(argocd) = helm_release(body, "argo-cd") else {
        return Vec::new();
    };
    let entries: Vec<(String, &Expression)> = attribute(argocd.body(), "values")
        .map(object_entries)
        .unwrap_or_default();
    let value_of = |key: &str| -> String {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| strings_in(v))
            .collect::<Vec<_>>()
            .concat()
    };
    let mut found = Vec::new();
    for account in ["ci", "ci-preview"] {
        if value_of(&format!("accounts.{account}")) != "apiKey" {
            found.push(format!(
                "terraform: Argo CD has no API-key account {account}; set configs.cm.\"accounts.{account}\" = \"apiKey\" \
                 (the workflows' tokens: argocd account generate-token --account {account})"
            ));
        }
    }
    found.extend(policy_problems(&value_of("policy.csv")));
    found
}

/// The RBAC lines of `ci` and `ci-preview`: applications, get/sync, within their scope.
fn policy_problems(policy: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lines: Vec<Vec<&str>> = policy
        .lines()
        .map(|l| l.split(',').map(str::trim).collect())
        .filter(|f: &Vec<&str>| f.len() > 1)
        .collect();
    // ci-preview: `service-demo/<stem>-pr-*` or every service's previews, `service-demo/*-pr-*`.
    for (role, scope) in [
        ("role:ci", "service-demo/"),
        ("role:ci-preview", "service-demo/*-pr-"),
    ] {
        let account = role.trim_start_matches("role:");
        if !lines.iter().any(|f| f.as_slice() == ["g", account, role]) {
            found.push(format!("terraform: policy.csv does not give account {account} {role} (`g, {account}, {role}`)"));
        }
        for fields in lines
            .iter()
            .filter(|f| f[0] == "p" && f.get(1) == Some(&role))
        {
            let [_, _, resource, action, object, effect] = fields.as_slice() else {
                found.push(format!("terraform: policy.csv line {:?} is not `p, role, resource, action, object, effect`", fields.join(", ")));
                continue;
            };
            let narrow = *resource == "applications"
                && matches!(*action, "get" | "sync")
                && match scope.split_once('*') {
                    None => object.starts_with(scope),
                    Some((project, suffix)) => object.strip_prefix(project).is_some_and(|app| {
                        (app.ends_with(&format!("{suffix}*"))
                            && !app[..app.len() - suffix.len() - 1].contains('*'))
                            || app == format!("*{suffix}*")
                    }),
                }
                && *effect == "allow";
            if !narrow {
                found.push(format!(
                    "terraform: {role} may {action} {resource} {object}; CI needs get and sync on {scope}* applications only"
                ));
            }
        }
    }
    found
}

/// Every `svc/<name>` the README names is a Service the chart renders
/// (`<N>` standing for the sample pull request).
fn readme_problems(root: &Path, rendered: &[Rendered]) -> Vec<String> {
    let Ok(readme) = std::fs::read_to_string(root.join("README.md")) else {
        return vec!["README.md: missing (its commands are checked against the chart)".into()];
    };
    let services: BTreeSet<String> = rendered
        .iter()
        .flat_map(|(_, docs)| of_kind(docs, "Service"))
        .filter_map(|s| Some(s["metadata"]["name"].as_str()?.to_owned()))
        .collect();
    let sample = rendered
        .iter()
        .find_map(|(env, _)| env.strip_prefix("pr-"))
        .unwrap_or("7");
    let mut found = Vec::new();
    for (at, _) in readme.match_indices("svc/") {
        let name: String = readme[at + 4..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-<>".contains(*c))
            .collect();
        let name = name.replace("<N>", sample);
        if !name.is_empty() && !services.contains(&name) {
            found.push(format!(
                "README.md: `svc/{name}` is not a Service the chart renders ({services:?}): the Service is named after \
                 the Application, service-demo-<env>"
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dns() -> Value {
        json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]})
    }

    fn rendered_with(env: &str, egress: Vec<Value>) -> Rendered {
        let labels =
            json!({"app.kubernetes.io/name": "service-demo", "app.kubernetes.io/instance": "x"});
        let docs = vec![
            json!({"kind": "Deployment", "spec": {"template": {"metadata": {"labels": labels}}}}),
            json!({"kind": "NetworkPolicy", "spec": {"podSelector": {"matchLabels": labels},
                   "policyTypes": ["Ingress", "Egress"], "egress": egress}}),
        ];
        (env.to_owned(), docs)
    }

    #[test]
    fn previews_reach_dns_only_and_environments_their_database_too() {
        let database = json!({"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "db"}}}],
                              "ports": [{"port": 5432, "protocol": "TCP"}]});
        assert!(egress_problems(&rendered_with("prod", vec![dns(), database.clone()])).is_empty());
        assert!(egress_problems(&rendered_with("pr-7", vec![dns()])).is_empty());
        let escapes = [
            database,
            // Argo CD's namespace; the whole cluster's pods; everything; DNS from any pod of kube-system.
            json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argocd"}}}]}),
            json!({"to": [{"namespaceSelector": {}}], "ports": [{"port": 5432}]}),
            json!({}),
            json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                   "ports": [{"port": 53, "protocol": "UDP"}]}),
            json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 5432}]}),
        ];
        for escape in escapes {
            let found = egress_problems(&rendered_with("pr-7", vec![dns(), escape.clone()]));
            assert!(
                found[0].contains("previews reach DNS only"),
                "{escape}: {found:?}"
            );
        }
        let wide = json!({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 5432}]});
        assert!(!egress_problems(&rendered_with("prod", vec![dns(), wide])).is_empty());
        let (env, mut docs) = rendered_with("prod", vec![dns()]);
        docs[1]["spec"]["policyTypes"] = json!(["Ingress"]);
        assert!(egress_problems(&(env, docs))[0].contains("no NetworkPolicy limits the egress"));
    }

    #[test]
    fn argocd_must_glob_path_by_path() {
        let argocd = |params: &str| {
            hcl::parse(&format!(
                "resource \"helm_release\" \"argocd\" {{\n  chart = \"argo-cd\"\n  \
                 values = [yamlencode({{ configs = {{ params = {{ {params} }} }} }})]\n}}\n"
            ))
            .unwrap()
        };
        let set = argocd("\"applicationsetcontroller.enable.new.git.file.globbing\" = \"true\"");
        assert!(globbing_problems(&set).is_empty());
        let as_bool = argocd("\"applicationsetcontroller.enable.new.git.file.globbing\" = true");
        assert!(globbing_problems(&as_bool).is_empty());
        let off = argocd("\"applicationsetcontroller.enable.new.git.file.globbing\" = \"false\"");
        assert!(globbing_problems(&off)[0].contains("lacks"));
        assert!(globbing_problems(&argocd("\"server.insecure\" = true"))[0].contains("lacks"));
    }

    const NARROW: &str = "p, role:ci, applications, get, service-demo/*, allow\n\
        p, role:ci, applications, sync, service-demo/*, allow\ng, ci, role:ci\n\
        p, role:ci-preview, applications, get, service-demo/service-demo-pr-*, allow\ng, ci-preview, role:ci-preview\n";

    #[test]
    fn ci_policies_stay_within_their_applications() {
        assert_eq!(policy_problems(NARROW), Vec::<String>::new());
        let every_service = NARROW.replace("service-demo/service-demo-pr-*", "service-demo/*-pr-*");
        assert_eq!(policy_problems(&every_service), Vec::<String>::new());
        for wide in [
            "service-demo/*",
            "service-demo/*-pr*",
            "service-demo/*-prod*-pr-*",
        ] {
            let problems = policy_problems(&NARROW.replace("service-demo/service-demo-pr-*", wide));
            assert!(
                problems[0].contains(&format!("role:ci-preview may get applications {wide}")),
                "{problems:?}"
            );
        }
        let unbound = NARROW.replace("g, ci, role:ci\n", "");
        assert!(policy_problems(&unbound)[0].contains("does not give account ci role:ci"));
    }

    fn kind_cluster(node: &str) -> Body {
        let text = format!(
            "variable \"port\" {{\n  default = 8080\n}}\nlocals {{\n  node_port = 30080\n}}\n\
             resource \"kind_cluster\" \"this\" {{\n  kind_config {{\n    node {{\n{node}\n    }}\n  }}\n}}\n"
        );
        hcl::parse(&text).unwrap()
    }

    #[test]
    fn host_ports_resolve_through_variables_and_locals() {
        let colliding = kind_cluster(
            "      extra_port_mappings {\n        container_port = local.node_port\n        host_port = var.port\n      }",
        );
        let problems = port_problems(&colliding);
        assert!(
            problems[0].contains("host port 8080 (container port 30080)"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("no node labelled ingress-ready=true"),
            "{problems:?}"
        );
        let fine = kind_cluster(
            "      kubeadm_config_patches = [\"node-labels: \\\"ingress-ready=true\\\"\"]\n      \
             extra_port_mappings {\n        container_port = 80\n        host_port = 8081\n      }",
        );
        assert_eq!(port_problems(&fine), Vec::<String>::new());
    }

    #[test]
    fn a_cloudnative_pg_cluster_makes_its_app_secret() {
        let cluster = serde_json::json!({"kind": "Cluster", "metadata": {"name": "db"}});
        let made = secrets_made_by(&cluster);
        assert!(
            made.contains(&("db-app".to_owned(), "uri".to_owned())),
            "{made:?}"
        );
        let external = serde_json::json!({"kind": "ExternalSecret", "metadata": {"name": "x"},
            "spec": {"target": {"name": "service-demo-database"}, "data": [{"secretKey": "DATABASE_URL"}]}});
        assert_eq!(
            secrets_made_by(&external),
            [(
                "service-demo-database".to_owned(),
                "DATABASE_URL".to_owned()
            )]
        );
    }
}
