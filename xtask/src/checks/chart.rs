//! The chart and the values files: each environment's render (and each
//! service's, each preview's) keeps the restricted Pod Security Standard and
//! the chart's promises (the image and replicas asked for, probes, shutdown
//! timing, allow-listed metadata), an Ingress per environment on a host of its
//! own, a database Secret something produces, bounded egress, nothing opened or
//! placed; values files run the pipeline's images; `gitops/values/pr/` holds
//! previews only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use serde_json::Value;

use crate::checks::{Finding, Rule, argocd, objects, rule, tag};
use crate::domain::application_sets;
use crate::domain::promotion::Env;
use crate::domain::services::Service;
use crate::plumbing::fs::{Depth, yaml_documents};
use crate::plumbing::yaml;
use crate::plumbing::yaml::parse_strict;

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[
    rule(
        "chart.container-env",
        "chart",
        "DATABASE_URL comes from a Secret, never a value in git, and ENV_NAME, SERVICES_NAMESPACE and APP_VERSION are set",
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
        "chart.helm-lint",
        "chart",
        "`helm lint --strict` passes, values.schema.json included: a typo in a values file is refused before Argo CD sees it",
    ),
    rule(
        "chart.hosts-unique",
        "chart",
        "no two services answer at one host of an environment: the second service's requests would reach the first",
    ),
    rule(
        "chart.image-repository",
        "chart",
        "every values file runs images of the pipeline's repository only: a values file changes the tag through the pipeline, never where the image comes from",
    ),
    rule(
        "chart.ingress-per-environment",
        "chart",
        "every environment answers at <env>.<domain>, one domain for all, through an Ingress the NetworkPolicy lets the controller reach: the README's URLs work",
    ),
    rule(
        "chart.metadata-allow-lists",
        "chart",
        "values files set only inert pod labels and annotations and limiting Ingress annotations: others route traffic elsewhere or select the pods",
    ),
    rule(
        "chart.one-deployment",
        "chart",
        "the chart renders exactly one Deployment per environment: the other chart rules read it",
    ),
    rule(
        "chart.placement",
        "chart",
        "no values file opens (NodePort, no NetworkPolicy) or places (tolerations, nodeSelector) an environment, nor makes dev/preprod/prod own its namespace",
    ),
    rule(
        "chart.pod-security",
        "chart",
        "pods keep Kubernetes' restricted Pod Security Standard, a read-only root, no API token and spread over nodes",
    ),
    rule(
        "chart.preview-folder",
        "chart",
        "gitops/values/pr/ holds only pr-<N>/ directories of listed values files: any other file could become an Application (pr-x/prod.yaml once named service-demo-prod)",
    ),
    rule(
        "chart.preview-hosts",
        "chart",
        "a preview answers only under its own pr-<N>.<domain>: a pull request's values cannot take prod's (or another preview's) traffic",
    ),
    rule(
        "chart.probes-and-resources",
        "chart",
        "containers have requests and a memory limit and probe /healthz and /readyz, the endpoints the service answers",
    ),
    rule(
        "chart.renders",
        "chart",
        "the chart renders with Helm's SDK for dev, preprod, prod, a sample preview and every committed preview: Argo CD renders it so",
    ),
    rule(
        "chart.shutdown-timing",
        "chart",
        "the grace period exceeds the drain plus the longest request, the readiness timeout exceeds /readyz's bound: no request is cut, no busy pool turns every replica unready",
    ),
    rule(
        "chart.values-honoured",
        "chart",
        "the rendered replicas and image are what the values ask for: a promotion must deploy the image it wrote",
    ),
];

/// The IngressClass terraform/ installs (`ingressClassResource.name`).
const INGRESS_CLASS: &str = "nginx";

/// Where terraform/ installs the ingress controller.
const INGRESS_NAMESPACE: &str = "ingress-nginx";

/// One environment's rendered chart: `(namespace, objects)`.
pub type Rendered = (String, Vec<Value>);

/// `(Secret, key)`s per namespace.
type SecretsByNamespace = BTreeMap<String, BTreeSet<(String, String)>>;

/// Every cross-file problem of the repository at `root`, given the chart
/// rendered per environment.
pub fn problems(
    root: &Path,
    rendered: &[Rendered],
    argocd_docs: &[(String, Value)],
    services: &[Service],
) -> Vec<Finding> {
    let mut found = tag("chart.ingress-per-environment", ingress_problems(rendered));
    found.extend(tag("chart.preview-folder", preview_file_problems(root)));
    found.extend(tag(
        "chart.image-repository",
        image_repository_problems(root, services),
    ));
    found.extend(service_problems(root, rendered, argocd_docs));
    found
}

/// The checks that hold for each render of a service other than items-api
/// (whose Ingress has its own host, and which the README does not name): the
/// database Secret it reads is produced in its namespace, its pods' egress is
/// bounded, and nothing opens or places the environment.
pub fn service_problems(
    root: &Path,
    rendered: &[Rendered],
    argocd_docs: &[(String, Value)],
) -> Vec<Finding> {
    let mut found = database_problems(root, rendered, argocd_docs);
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
fn image_repository_problems(root: &Path, services: &[Service]) -> Vec<String> {
    let expected = match pushed_repository(root) {
        Ok(repository) => repository,
        Err(problem) => return vec![problem],
    };
    let files = values_files(root);
    // Each service's images are at <registry>/<image> (ghcr.io/<owner>/<image>): its values files
    // (named by its values-file in every environment) may name its own repository too.
    let images: BTreeMap<&str, &str> = services
        .iter()
        .map(|s| (&*s.declaration.values_file, &*s.declaration.image))
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
pub fn rendered_domain(rendered: &[Rendered]) -> Option<String> {
    rendered.iter().find_map(|(env, docs)| {
        let ingress = of_kind(docs, "Ingress").next()?;
        let host = ingress["spec"]["rules"][0]["host"].as_str()?;
        Some(host.strip_prefix(&format!("{env}."))?.to_owned())
    })
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
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
fn database_problems(
    root: &Path,
    rendered: &[Rendered],
    argocd_docs: &[(String, Value)],
) -> Vec<Finding> {
    let mut found = Vec::new();
    let produced = match produced_secrets(root, argocd_docs) {
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
fn produced_secrets(
    root: &Path,
    argocd_docs: &[(String, Value)],
) -> Result<SecretsByNamespace, Vec<Finding>> {
    let mut produced = SecretsByNamespace::new();
    let mut problems = Vec::new();
    let projects = argocd::in_dir(argocd_docs, "gitops/argocd");
    for (_, app) in argocd::in_dir(argocd_docs, "gitops/argocd/apps") {
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
            .map(|(_, p)| argocd::whitelisted_kinds(p))
            .unwrap_or_default();
        let (files, unreadable) = yaml_documents(root, path, Depth::Folder);
        if !unreadable.is_empty() {
            return Err(tag("repository.yaml", unreadable));
        }
        // Every document of a file is an object Argo CD applies: each is checked.
        let documents = files
            .into_iter()
            .flat_map(|(file, docs)| docs.into_iter().map(move |doc| (file.clone(), doc)));
        for (file, doc) in documents {
            problems.extend(objects::check_document(&file, &doc));
            for (group, kind) in objects::kinds(std::slice::from_ref(&doc)).difference(&allowed) {
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
            &format!("{name}{}", APP_SECRET_SUFFIX),
            APP_SECRET_KEYS.map(str::to_owned).to_vec(),
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

/// What the chart must render for an environment.
pub struct Expected<'a> {
    pub env: &'a str,
    /// `repository@digest` or `repository:tag`, as the values ask.
    pub image: String,
    pub replicas: i32,
}

/// The rendered chart of one environment: every object parses strictly, and
/// its one Deployment keeps the restricted Pod Security Standard and the chart's promises.
pub fn check_rendered(docs: &[Value], expected: &Expected) -> Vec<Finding> {
    let env = expected.env;
    let typed: Vec<Finding> = docs
        .iter()
        .enumerate()
        .flat_map(|(n, doc)| objects::check_document(&format!("{env} document {}", n + 1), doc))
        .collect();
    if !typed.is_empty() {
        return typed;
    }
    let deployment = match the_deployment(docs, env) {
        Ok(deployment) => deployment,
        Err(problem) => return vec![Finding::new("chart.one-deployment", problem)],
    };
    let spec = deployment.spec.unwrap_or_default();
    let mut values = Vec::new();
    if spec.replicas != Some(expected.replicas) {
        values.push(format!(
            "replicas {:?}, the values ask for {}",
            spec.replicas, expected.replicas
        ));
    }
    let pod = spec.template.spec.unwrap_or_default();
    let [mut security, mut shutdown, mut runtime, mut variables]: [Vec<String>; 4] =
        Default::default();
    check_pod_security(&pod, &mut |p| security.push(p));
    check_pod_shutdown(&pod, &mut |p| shutdown.push(p));
    for container in &pod.containers {
        let named = |p: String| format!("container {}: {p}", container.name);
        if container.image.as_deref() != Some(expected.image.as_str()) {
            let image = &container.image;
            values.push(named(format!(
                "image {image:?}, the values ask for {}",
                expected.image
            )));
        }
        check_container_security(container, &mut |p| security.push(named(p)));
        check_container_runtime(container, &mut |p| runtime.push(named(p)));
        check_container_env(container, &mut |p| variables.push(named(p)));
    }
    let by_rule: [(&'static str, Vec<String>); 5] = [
        ("chart.values-honoured", values),
        ("chart.pod-security", security),
        ("chart.shutdown-timing", shutdown),
        ("chart.probes-and-resources", runtime),
        ("chart.container-env", variables),
    ];
    let in_env = |(rule, found): (&'static str, Vec<String>)| {
        found
            .into_iter()
            .map(move |p| Finding::new(rule, format!("{env}: {p}")))
    };
    let mut found: Vec<Finding> = by_rule.into_iter().flat_map(in_env).collect();
    found.extend(tag(
        "chart.metadata-allow-lists",
        metadata_problems(docs, env),
    ));
    found
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

/// Bounded resources, and the probes the service answers.
fn check_container_runtime(container: &Container, problem: &mut impl FnMut(String)) {
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

/// A render: its environment, what the report calls it (its values file),
/// and its objects.
pub type Named = (String, String, Vec<Value>);

/// Every Ingress host two renders of one environment both route: the second
/// service's requests would reach the first (or ingress-nginx refuses one).
pub fn shared_hosts(renders: &[Named]) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<(&str, &str), &str> = Default::default();
    let mut found = Vec::new();
    for (env, shown, docs) in renders {
        let hosts = docs
            .iter()
            .filter(|doc| doc["kind"] == "Ingress")
            .flat_map(|doc| doc["spec"]["rules"].as_array().into_iter().flatten())
            .filter_map(|rule| rule["host"].as_str());
        for host in hosts {
            match seen.get(&(env.as_str(), host)) {
                Some(first) if first != shown => found.push(format!(
                    "{env}: Ingress host {host} is both {first}'s and {shown}'s: give one its own \
                     ingress.host (new-service names them <service>.<env>.<domain>)"
                )),
                Some(_) => {}
                None => {
                    seen.insert((env.as_str(), host), shown.as_str());
                }
            }
        }
    }
    found
}

/// Every Ingress host a preview routes outside its own `pr-<N>`: a preview's
/// host is `pr-<N>.<domain>` or `<name>.pr-<N>.<domain>`, the domain the
/// long-lived environments' hosts end in, so a pull request's values cannot
/// claim prod's (or another preview's) host and take its requests.
pub fn preview_hosts(renders: &[Named]) -> Vec<String> {
    let hosts = |docs: &[Value]| -> Vec<String> {
        let rules = docs.iter().filter(|doc| doc["kind"] == "Ingress");
        rules
            .flat_map(|doc| doc["spec"]["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|rule| rule["host"].as_str().map(str::to_owned))
            .collect()
    };
    let domains: BTreeSet<String> = renders
        .iter()
        .filter(|(env, _, _)| Env::LONG_LIVED.iter().any(|e| e.to_string() == *env))
        .flat_map(|(env, _, docs)| {
            let prefix = format!("{env}.");
            hosts(docs)
                .into_iter()
                .filter_map(move |host| Some(host.split_once(&prefix)?.1.to_owned()))
        })
        .collect();
    let mut found = Vec::new();
    for (env, shown, docs) in renders.iter().filter(|(env, _, _)| env.starts_with("pr-")) {
        for host in hosts(docs) {
            let own = domains.iter().any(|domain| {
                let at = format!("{env}.{domain}");
                host == at || host.ends_with(&format!(".{at}"))
            });
            if !own {
                found.push(format!(
                    "{env}: {shown} routes Ingress host {host}, outside the preview's own: a preview answers at \
                     {env}.<domain> or <service>.{env}.<domain> only (remove ingress.host and ingress.domain from \
                     the preview's values; `cargo xtask preview deploy` writes them)"
                ));
            }
        }
    }
    found
}

/// The Secret CloudNativePG makes for the application's owner: `<cluster>-app`.
pub const APP_SECRET_SUFFIX: &str = "-app";

/// The keys of that Secret (`uri` is the whole connection URL).
pub const APP_SECRET_KEYS: [&str; 8] = [
    "uri", "jdbc-uri", "host", "port", "dbname", "user", "username", "password",
];

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

    #[test]
    fn a_host_two_services_route_in_one_environment_is_named() {
        let ingress = |host: &str| json!({"kind": "Ingress", "spec": {"rules": [{"host": host}]}});
        let render = |env: &str, shown: &str, host: &str| {
            (
                env.to_owned(),
                shown.to_owned(),
                vec![ingress(host), json!({"kind": "Service"})],
            )
        };
        let renders = [
            render("preprod", "a.yaml", "preprod.localhost"),
            render("preprod", "b.yaml", "preprod.localhost"),
            // Another environment, another service's own host, one render's two Ingresses: fine.
            render("prod", "b.yaml", "preprod.localhost"),
            render("preprod", "c.yaml", "c.preprod.localhost"),
            (
                "dev".to_owned(),
                "a.yaml".to_owned(),
                vec![ingress("dev.localhost"), ingress("dev.localhost")],
            ),
        ];
        assert_eq!(
            shared_hosts(&renders),
            [
                "preprod: Ingress host preprod.localhost is both a.yaml's and b.yaml's: give one its own \
              ingress.host (new-service names them <service>.<env>.<domain>)"
            ]
        );
    }
}
