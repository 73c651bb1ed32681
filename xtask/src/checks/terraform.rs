//! Terraform (`terraform/`): formatted, read as HCL (hcl-rs) for what the rest
//! of the repository relies on (kind's host ports, the ingress domain, pinned
//! charts, Argo CD's `ci` accounts and path-aware globbing), and no key inline.

use std::collections::BTreeSet;
use std::path::Path;

use hcl::{Block, Body, Expression, ObjectKey, TemplateExpr, TraversalOperator};

use crate::checks::chart::{self, Rendered};
use crate::checks::{Finding, Rule, rule, tag};

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[
    rule(
        "terraform.argocd-ci-account",
        "terraform",
        "Argo CD's ci account gets and syncs the service-demo project's applications only, ci-preview the previews only: a leaked token stays small",
    ),
    rule(
        "terraform.chart-pins",
        "terraform",
        "Argo CD, ingress-nginx, CloudNativePG and Kyverno come from charts at a pinned version: the schemas validate checks against are that version's",
    ),
    rule(
        "terraform.fmt",
        "terraform",
        "terraform/ is `terraform fmt`-clean (Terraform as a library, the pinned version)",
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
        "terraform.no-inline-key",
        "terraform",
        "no .tf file carries a key inline: `cluster up` applies the fork's key from gitops/policy/, so a fork needs no Terraform edit",
    ),
    rule(
        "terraform.parses",
        "terraform",
        "terraform/*.tf parse as HCL: the other Terraform rules read them",
    ),
    rule(
        "terraform.path-aware-globbing",
        "terraform",
        "Argo CD globs git files path by path: otherwise gitops/values/pr/pr-*/x.yaml also matches pr-7/y/x.yaml",
    ),
];

/// items-api's default `PORT` (`cargo run -p items-api`, the demo, the image).
const SERVICE_PORT: u64 = 8080;

/// The Helm charts Terraform must install at a pinned version: (chart, what it is for).
const PINNED_CHARTS: [(&str, &str); 4] = [
    ("argo-cd", "Argo CD"),
    ("ingress-nginx", "the ingress controller"),
    ("cloudnative-pg", "the PostgreSQL operator"),
    ("kyverno", "the admission controller for image signatures"),
];

/// Every Terraform rule read from the HCL, given the chart rendered per environment.
pub fn problems(root: &Path, rendered: &[Rendered]) -> Vec<Finding> {
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
    if let Some(chart_domain) = chart::rendered_domain(rendered)
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

/// What a key looks like in text: PEM armour, OpenSSH public keys, and the
/// base64 of a P-256 public key's DER without armour (cosign's keys).
const KEY_MARKERS: [&str; 6] = [
    "-----BEGIN ",
    "ssh-ed25519 AAAA",
    "ssh-rsa AAAA",
    "ecdsa-sha2-nistp",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "publicKeys",
];

/// `validate`'s rule: no Terraform file under `terraform/` carries a key
/// inline. Keys (the admission policy's) are read from the fork's
/// repository when `cluster up` runs, so a fork's key needs no Terraform edit.
pub fn inline_key_problems(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("terraform")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            found.push(format!("{}: cannot be read", dir.display()));
            continue;
        };
        for path in entries.filter_map(|e| Some(e.ok()?.path())) {
            let name = crate::plumbing::fs::relative(root, &path);
            if path.is_dir() && !name.ends_with(".terraform") {
                stack.push(path);
                continue;
            }
            let tf = path.extension().is_some_and(|e| e == "tf" || e == "tfvars");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for (n, line) in text.lines().enumerate().filter(|_| tf) {
                if let Some(marker) = KEY_MARKERS.iter().find(|m| line.contains(*m)) {
                    found.push(format!(
                        "{name}:{}: a key inline ({marker:?}): keys live in the repository (gitops/policy/cosign.pub and the policy beside it) and `cargo xtask cluster up` applies them from there; remove it from Terraform",
                        n + 1
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::POLICY_PUBLIC_KEY_FILE;

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

    fn terraform_copy(test: &str) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cluster-up-{test}-"))
            .tempdir()
            .unwrap();
        let to = dir.path().join("terraform");
        std::fs::create_dir(&to).unwrap();
        let from = crate::plumbing::workspace::root().join("terraform");
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
        dir
    }

    #[test]
    fn terraform_as_it_is_carries_no_key() {
        assert_eq!(
            inline_key_problems(&crate::plumbing::workspace::root()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_terraform_file_carrying_a_key_inline_is_refused() {
        let key = std::fs::read_to_string(
            crate::plumbing::workspace::root().join(POLICY_PUBLIC_KEY_FILE),
        )
        .unwrap();
        for (test, text) in [
            ("pem", format!("locals {{\n  key = <<-EOT\n{key}EOT\n}}\n")),
            (
                "bare",
                format!(
                    "locals {{\n  key = \"{}\"\n}}\n",
                    key.lines().nth(1).unwrap()
                ),
            ),
            (
                "policy",
                "resource \"x\" \"y\" {\n  values = [yamlencode({ publicKeys = var.k })]\n}\n"
                    .to_owned(),
            ),
        ] {
            let dir = terraform_copy(test);
            std::fs::write(dir.path().join("terraform/policy.tf"), text).unwrap();
            let found = inline_key_problems(dir.path());
            assert!(!found.is_empty(), "{test}: nothing found");
            for problem in &found {
                assert!(
                    problem.starts_with("terraform/policy.tf:"),
                    "{test}: {found:?}"
                );
                assert!(problem.contains("a key inline"), "{test}: {found:?}");
            }
        }
    }
}
