//! The repository, loaded once and checked by every target: what `cargo xtask
//! validate` runs and `cargo xtask ci`'s assets step runs in process.
//!
//! 1. the chart renders for dev, preprod, prod and a preview with Helm's Go SDK
//!    (`xtask/offline_checkers.py`), and every rendered object passes
//!    Kubernetes' own schema strictly (kubernetes-validate) and the chart's
//!    promises (`chart`); `helm lint --strict` passes;
//! 2. Argo CD's objects (`argocd`, `project_roles`) and the custom resources
//!    against their upstream CRDs;
//! 3. Terraform (`terraform`), the README (`readme`);
//! 4. workflows: actionlint, zizmor's medium- and high-severity audits, and
//!    `workflows`; 5. the admission policy for signed images (`admission`).
//!
//! Helm and Terraform run through their Python bindings only, even where a
//! binary is installed: the library versions are pinned in `xtask/tools.txt`,
//! a binary on PATH is whatever the machine has.
//!
//! Every chart render (items-api's and the other services'), kubernetes-validate
//! over them all and `helm lint` run in one Python process
//! (`offline_checkers.py batch`); Terraform's formatter, actionlint and zizmor
//! run in threads beside it from the start. The report keeps its order.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use xshell::{Shell, TempDir, cmd};

use crate::checks::chart::{self, Named, Rendered};
use crate::checks::{Finding, Rule, argocd, objects, rule, tag, workflows};
use crate::domain::promotion::{self, DeployedImage, Env, UNDECLARED_VALUES_FILE};
use crate::domain::services::Service;
use crate::plumbing::fs::relative;
use crate::plumbing::process::which;
use crate::plumbing::yaml::split_documents;
use crate::plumbing::{output_cache, tools, workspace, yaml};

/// This target's rules (`validate --list`).
pub const RULES: &[Rule] = &[rule(
    "repository.yaml",
    "repository",
    "every YAML file validate reads parses: the rules read what it holds",
)];

/// Kubernetes version the manifests are checked against (terraform/ runs kind 1.32).
const KUBE_VERSION: &str = "1.32.0";

/// A sample pull request the chart is rendered for, as a preview.
const SAMPLE_PR: u64 = 7;

/// Every check on the repository at `root`; fails listing every problem.
pub fn check_repository(root: &Path) -> Result<()> {
    let mut checks = Checks::new(root)?;
    let renders = checks.render()?;
    let (mut chart_kinds, rendered) =
        checks.chart(renders.items, &renders.validated, renders.lint)?;
    let others = checks.other_services(renders.others, &renders.validated, &mut chart_kinds)?;
    checks.argocd(&chart_kinds)?;
    checks.upstream_schemas();
    checks.cluster(&rendered);
    checks.hosts(&rendered, &others);
    checks.terraform();
    checks.workflows()?;
    checks.trust();
    checks.admission();
    checks.finish()
}

/// The `(group, kind)`s the chart renders, and its objects per environment.
type ChartRender = (BTreeSet<(String, String)>, Vec<Rendered>);

/// Every chart render of a run, made before any is checked: items-api's
/// targets and the other services' in one Helm process, then
/// kubernetes-validate once over them all (each problem names its file).
struct Renders {
    /// items-api's targets, each with its objects and the file kubernetes-validate
    /// read, or why it did not render.
    items: Vec<(ChartTarget, ChartRendered)>,
    /// The other services' renders (in `out`), or why they could not be listed.
    others: Result<OtherRenders>,
    /// kubernetes-validate's problems over every render, or why it did not run.
    validated: Result<Vec<String>, String>,
    /// `helm lint --strict` of items-api's chart with preprod's values.
    lint: Result<()>,
}

/// items-api's chart for one environment or preview: `(environment, values
/// file, what the report calls it)`.
type ChartTarget = (String, PathBuf, String);

/// What items-api's chart rendered for a target (its objects, and the file
/// kubernetes-validate read), or why it did not render.
type ChartRendered = Result<(Vec<Value>, PathBuf)>;

/// The other services' renders: each target, where Helm wrote them
/// (`<release>.yaml` or `<release>.error`), or why Helm did not run.
struct OtherRenders {
    targets: Vec<ServiceRender>,
    out: PathBuf,
    helm: Result<(), String>,
}

/// A run of the checks: where, and the problems found so far.
struct Checks {
    root: PathBuf,
    sh: Shell,
    /// Rendered manifests and the preview's values; removed when dropped.
    scratch: TempDir,
    /// The workflows, read once (every workflow rule reads these).
    workflows: Vec<(String, Value)>,
    /// Argo CD's objects under gitops/argocd, read once.
    argocd: Vec<(String, Value)>,
    /// The workspace's services (one `cargo metadata`), or why they are unreadable.
    services: Result<Vec<Service>>,
    /// The external checkers that read only the repository, running meanwhile.
    background: Background,
    problems: Vec<Finding>,
}

impl Checks {
    fn new(root: &Path) -> Result<Self> {
        let sh = Shell::new()?;
        sh.change_dir(root);
        let scratch = sh.create_temp_dir()?;
        let (workflows, unreadable) = workflows::load(root);
        // As the root sees them: the tools' messages name the files the same in every checkout.
        let files: Vec<PathBuf> = workflows
            .iter()
            .map(|(file, _)| PathBuf::from(file))
            .collect();
        let terraform = root.join("terraform");
        let background = Background {
            terraform_fmt: Pending::start(root, move |sh| terraform_fmt(sh, &terraform)),
            actionlint: Pending::start(root, {
                let files = files.clone();
                move |sh| actionlint(sh, &files)
            }),
            zizmor: Pending::start(root, move |sh| zizmor(sh, &files)),
        };
        Ok(Self {
            root: root.to_path_buf(),
            sh,
            scratch,
            workflows,
            background,
            argocd: argocd::load(root)?,
            services: crate::domain::services::load(root),
            problems: unreadable,
        })
    }

    fn report(&mut self, what: &str, found: Vec<Finding>) {
        print_report(what, &found);
        self.problems.extend(found);
    }

    /// Renders every chart target, items-api's and the other services', runs
    /// kubernetes-validate over every render and lints items-api's chart: one
    /// Python process (Helm's library loads once).
    fn render(&self) -> Result<Renders> {
        let chart = self.root.join("charts/service-demo");
        let items = self.chart_targets()?;
        let others = match &self.services {
            Ok(services) => self.other_service_targets(services),
            Err(_) => Ok(Vec::new()), // the Argo CD step names the error
        };
        let out = self.scratch.path().join("services");
        std::fs::create_dir_all(&out)?;
        let releases: Vec<String> = items
            .iter()
            .map(|(env, _, _)| format!("service-demo-{env}"))
            .collect();
        let mut render: Vec<&OsStr> = vec!["helm-render-each".as_ref(), out.as_os_str()];
        for ((env, values, _), release) in items.iter().zip(&releases) {
            render.extend([
                chart.as_os_str(),
                values.as_os_str(),
                release.as_ref(),
                env.as_ref(),
            ]);
        }
        render.extend(others.iter().flatten().flat_map(ServiceRender::helm_args));
        let validate = [
            "kubernetes-validate".as_ref(),
            KUBE_VERSION.as_ref(),
            out.as_os_str(),
        ];
        let lint_values = items
            .get(1)
            .context("items-api has no preprod")?
            .1
            .as_os_str();
        let lint = [
            "helm-lint".as_ref(),
            chart.as_os_str(),
            lint_values,
            KUBE_VERSION.as_ref(),
        ];
        let jobs = [&render[..], &validate, &lint];
        let [helm, validated, lint] = offline_checkers(&self.sh, self.scratch.path(), jobs);
        let helm = helm.and_then(|out| tool_output(out, "helm template").map(drop));
        let helm = helm.map_err(|e| format!("{e:#}"));
        let validated = validated.and_then(kubernetes_validate_problems);
        let items: Vec<_> = (items.into_iter().zip(&releases))
            .map(|(target, release)| {
                let render = chart_render(&out, release, &helm);
                (target, render)
            })
            .collect();
        Ok(Renders {
            items,
            others: others.map(|targets| OtherRenders { targets, out, helm }),
            validated: validated.map_err(|e| format!("{e:#}")),
            lint: lint.and_then(|out| tool_output(out, "helm lint").map(drop)),
        })
    }

    /// 1. The chart, per environment and for a preview (`items`, rendered):
    ///    the kinds it renders, and what it rendered per environment.
    fn chart(
        &mut self,
        items: Vec<(ChartTarget, ChartRendered)>,
        validated: &Result<Vec<String>, String>,
        lint: Result<()>,
    ) -> Result<ChartRender> {
        let chart = self.root.join("charts/service-demo");
        let mut kinds = BTreeSet::new();
        let mut rendered = Vec::new();
        for ((env, values_file, shown), render) in items {
            let what = format!("chart renders for {env} ({shown})");
            let checked = render.and_then(|(docs, file)| {
                let found =
                    Self::check_environment(&chart, &env, &values_file, validated, &docs, &file);
                kinds.extend(objects::kinds(&docs));
                found.map(|found| (found, docs))
            });
            let found = match checked {
                Ok((found, docs)) => {
                    rendered.push((env, docs));
                    found
                }
                Err(error) => vec![Finding::new("chart.renders", format!("{error:#}"))],
            };
            self.report(&what, found);
        }
        self.report("helm lint --strict", as_problems("chart.helm-lint", lint));
        Ok((kinds, rendered))
    }

    /// `(environment, values file, what the report calls it)` for every
    /// environment, the sample preview and every committed preview.
    fn chart_targets(&self) -> Result<Vec<(String, PathBuf, String)>> {
        let mut targets: Vec<(String, PathBuf, String)> = Env::LONG_LIVED
            .iter()
            .map(|env| {
                let shown = format!("gitops/{}", env.values_path(UNDECLARED_VALUES_FILE));
                (env.to_string(), self.root.join(&shown), shown)
            })
            .collect();
        let preview = self.scratch.path().join("preview.yaml");
        std::fs::write(&preview, sample_preview_values()?)?;
        let shown = relative(&self.root, &preview);
        targets.push((format!("pr-{SAMPLE_PR}"), preview, shown));
        for (pr, shown) in committed_previews(&self.root, UNDECLARED_VALUES_FILE) {
            let values = self.scratch.path().join(format!("values-pr-{pr}.yaml"));
            std::fs::write(&values, as_argocd_renders_preview(&self.root.join(&shown))?)?;
            targets.push((format!("pr-{pr}"), values, shown));
        }
        Ok(targets)
    }

    /// Checks every object the chart rendered for `env` (`docs`, in `file`):
    /// kubernetes-validate's problems with `file`, and the chart's promises.
    fn check_environment(
        chart: &Path,
        env: &str,
        values_file: &Path,
        validated: &Result<Vec<String>, String>,
        docs: &[Value],
        file: &Path,
    ) -> Result<Vec<Finding>> {
        let validated = validated.as_ref().map_err(|error| anyhow!("{error}"))?;
        let mut found = tag(
            "objects.kubernetes-validate",
            problems_of_file(validated, file),
        );
        let expected = expected_render(chart, env, &std::fs::read_to_string(values_file)?)?;
        found.extend(chart::check_rendered(docs, &expected));
        Ok(found)
    }

    /// 1b. Every other service's values file in each environment, and its
    ///     sample preview, rendered with its own chart (one Helm process) and
    ///     checked as items-api's: kubernetes-validate (one run), the chart's
    ///     promises, and the cluster checks that hold per render (its database
    ///     Secret produced, egress bounded, nothing opened or placed). A
    ///     missing values file is the Argo CD step's to name.
    ///     Returns each render that worked, named as the report names it.
    fn other_services(
        &mut self,
        others: Result<OtherRenders>,
        validated: &Result<Vec<String>, String>,
        kinds: &mut BTreeSet<(String, String)>,
    ) -> Result<Vec<Named>> {
        let OtherRenders { targets, out, helm } = others?;
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        helm.map_err(|error| anyhow!("{error}"))?;
        let validated = match out_files(&targets, &out).next() {
            None => &Vec::new(),
            Some(_) => validated.as_ref().map_err(|error| anyhow!("{error}"))?,
        };
        let mut renders = Vec::new();
        for target in &targets {
            let found = match self.check_service_render(target, &out, validated, kinds) {
                Ok((mut found, docs)) => {
                    let rendered = [(target.env.clone(), docs)];
                    found.extend(chart::service_problems(&self.root, &rendered, &self.argocd));
                    let [(env, docs)] = rendered;
                    renders.push((env, target.shown.clone(), docs));
                    found
                }
                Err(error) => vec![Finding::new("chart.renders", format!("{error:#}"))],
            };
            let what = format!(
                "{} renders for {} ({})",
                target.service, target.env, target.shown
            );
            let named = found.into_iter().map(|f| Finding {
                file: target.shown.clone(),
                message: format!("{}: {}", target.shown, f.message),
                ..f
            });
            self.report(&what, named.collect());
        }
        Ok(renders)
    }

    /// Each service but items-api (whose values file is
    /// [`UNDECLARED_VALUES_FILE`], rendered above) in each environment whose
    /// values file exists, and a sample preview from its dev values.
    fn other_service_targets(&self, services: &[Service]) -> Result<Vec<ServiceRender>> {
        let mut targets = Vec::new();
        for service in services {
            let declared = &service.declaration;
            if declared.values_file == UNDECLARED_VALUES_FILE {
                continue;
            }
            let stem = declared.values_file.trim_end_matches(".yaml");
            let target = |env: Env, values: PathBuf, shown: String| ServiceRender {
                service: service.name.clone(),
                chart: self.root.join(&declared.chart),
                env: env.to_string(),
                release: format!("{stem}-{env}"),
                values,
                shown,
            };
            for env in Env::LONG_LIVED {
                let shown = format!("gitops/{}", env.values_path(&declared.values_file));
                let values = self.root.join(&shown);
                if values.is_file() {
                    targets.push(target(env, values, shown));
                }
            }
            let dev = self
                .root
                .join("gitops")
                .join(Env::Dev.values_path(&declared.values_file));
            let preview = self.scratch.path().join(format!("{stem}-preview.yaml"));
            let dev_values = std::fs::read_to_string(&dev).unwrap_or_default();
            let sample = sample_preview_values_from(&dev_values)
                .with_context(|| format!("{}'s sample preview", service.name))?;
            std::fs::write(&preview, sample)?;
            let shown = format!(
                "a sample preview pr-{SAMPLE_PR} from {}",
                relative(&self.root, &dev)
            );
            targets.push(target(Env::Preview(SAMPLE_PR), preview, shown));
            for (pr, shown) in committed_previews(&self.root, &declared.values_file) {
                let values = self.scratch.path().join(format!("{stem}-pr-{pr}.yaml"));
                std::fs::write(&values, as_argocd_renders_preview(&self.root.join(&shown))?)?;
                targets.push(target(Env::Preview(pr), values, shown));
            }
        }
        Ok(targets)
    }

    /// One of [`Self::other_services`]' renders checked: its objects and problems.
    fn check_service_render(
        &self,
        target: &ServiceRender,
        out: &Path,
        validated: &[String],
        kinds: &mut BTreeSet<(String, String)>,
    ) -> Result<(Vec<Finding>, Vec<Value>)> {
        let file = out.join(format!("{}.yaml", target.release));
        let Ok(rendered) = std::fs::read_to_string(&file) else {
            let error = std::fs::read_to_string(out.join(format!("{}.error", target.release)));
            bail!("helm template failed: {}", error.unwrap_or_default());
        };
        let docs = split_documents(&rendered)?;
        kinds.extend(objects::kinds(&docs));
        let mut found = tag(
            "objects.kubernetes-validate",
            problems_of_file(validated, &file),
        );
        let values = std::fs::read_to_string(&target.values)?;
        let expected = expected_render(&target.chart, &target.env, &values)?;
        found.extend(chart::check_rendered(&docs, &expected));
        Ok((found, docs))
    }

    /// 2. The Argo CD objects under gitops/argocd.
    fn argocd(&mut self, chart_kinds: &BTreeSet<(String, String)>) -> Result<()> {
        let docs = &self.argocd;
        let (services, mut found) = match &self.services {
            Ok(services) => (services.clone(), Vec::new()),
            Err(error) => (
                Vec::new(),
                vec![Finding::new(
                    "argocd.services-readable",
                    format!("the workspace's services: {error:#}"),
                )],
            ),
        };
        let (problems, generated) = argocd::check_argocd(&self.root, docs, chart_kinds, &services);
        found.extend(problems);
        println!(
            "Applications the ApplicationSets make ({}): {}",
            generated.len(),
            generated.join(", ")
        );
        self.report(
            "Argo CD project, applications and every Application the ApplicationSets make (services × \
             environments, services × pull requests) agree with the services, the chart and the pipeline",
            found,
        );
        Ok(())
    }

    /// 2a. Every custom resource under gitops/ (and every generated
    ///     Application) against its upstream CRD, at the version Terraform pins.
    fn upstream_schemas(&mut self) {
        let (found, tally) = crate::domain::upstream_schemas::repository_problems(&self.root);
        let counted: Vec<String> = tally
            .kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        self.report(
            &format!(
                "custom resources against the upstream CRDs of Terraform's pinned charts, strictly ({})",
                counted.join(", ")
            ),
            tag("objects.upstream-crd", found),
        );
        for rule in &tally.cel_not_checked {
            println!("    not checked (a CEL rule; no CEL evaluator here): {rule}");
        }
    }

    /// 2c. No two services answer at one host of an environment: items-api's
    ///     renders (`rendered`) and the other services' (`others`).
    fn hosts(&mut self, rendered: &[Rendered], others: &[Named]) {
        let items_api = rendered.iter().map(|(env, docs)| {
            let shown = match env.parse::<Env>() {
                Ok(env @ Env::Preview(SAMPLE_PR)) => format!("the sample preview {env}"),
                Ok(env @ Env::Preview(_)) => {
                    format!("gitops/{}", env.values_path(UNDECLARED_VALUES_FILE))
                }
                Ok(env) => format!("gitops/{}", env.values_path(UNDECLARED_VALUES_FILE)),
                Err(_) => env.clone(),
            };
            (env.clone(), shown, docs.clone())
        });
        let all: Vec<Named> = items_api.chain(others.iter().cloned()).collect();
        let mut found = tag("chart.hosts-unique", chart::shared_hosts(&all));
        found.extend(tag("chart.preview-hosts", chart::preview_hosts(&all)));
        self.report(
            "every service has its own Ingress host in each environment and preview, a preview only under its own pr-<N>",
            found,
        );
    }

    /// 2b. What the fork-and-follow path relies on across files: the chart's
    ///     renders together, Terraform read as HCL, the README.
    fn cluster(&mut self, rendered: &[Rendered]) {
        let services = self.services.as_deref().unwrap_or_default();
        let mut found = chart::problems(&self.root, rendered, &self.argocd, services);
        found.extend(crate::checks::terraform::problems(&self.root, rendered));
        found.extend(crate::checks::readme::problems(&self.root, rendered));
        self.report(
            "cluster: an Ingress per environment, the database Secret each reads is produced, kind's ports, \
             pinned charts, Argo CD's ci account, the Services the README names",
            found,
        );
    }

    /// 3. Terraform.
    fn terraform(&mut self) {
        let fmt = self.background.terraform_fmt.wait();
        self.report("terraform fmt", as_problems("terraform.fmt", fmt));
        let keys = tag(
            "terraform.no-inline-key",
            crate::checks::terraform::inline_key_problems(&self.root),
        );
        self.report(
            "terraform carries no key inline (cluster up applies gitops/policy/ from the repository)",
            keys,
        );
    }

    /// 4. The workflows.
    fn workflows(&mut self) -> Result<()> {
        let mut found = as_problems("workflows.actionlint", self.background.actionlint.wait());
        found.extend(as_problems(
            "workflows.zizmor",
            self.background.zizmor.wait(),
        ));
        for (file, doc) in &self.workflows {
            found.extend(workflows::check_workflow(file, doc));
        }
        self.report(
            "workflows: actionlint, zizmor (medium+), thin (cargo xtask only), pinned, least privilege",
            found,
        );
        Ok(())
    }

    /// 5. Who can change the cluster and prod: projects, tokens, workflows, owners.
    fn trust(&mut self) {
        let mut found = argocd::trust_problems(&self.argocd);
        found.extend(workflows::problems(&self.root, &self.workflows));
        self.report(
            "trust: root app and projects bounded, prod credentials only where reviewed code runs, CODEOWNERS",
            found,
        );
    }

    /// 6. The admission policy for signed images, and its key.
    fn admission(&mut self) {
        let found = crate::checks::admission::problems(&self.root);
        self.report(
            "admission: dev, preprod and prod admit only images signed by gitops/policy/cosign.pub, enforced",
            found,
        );
    }

    fn finish(self) -> Result<()> {
        if !self.problems.is_empty() {
            bail!(
                "{} problem(s) in the deployment assets (listed above)",
                self.problems.len()
            );
        }
        Ok(())
    }
}

/// The external checkers that read only the repository's files (Terraform's
/// formatter, actionlint, zizmor): started with the run, each in a thread of
/// its own, so that they run while Helm renders and the rules read; their
/// reports keep their places.
struct Background {
    terraform_fmt: Pending,
    actionlint: Pending,
    zizmor: Pending,
}

/// A check running in a thread of its own, until its result is taken.
struct Pending(Option<std::thread::JoinHandle<Result<()>>>);

impl Pending {
    /// `check` in a new thread, with a shell in `root`.
    fn start(root: &Path, check: impl FnOnce(&Shell) -> Result<()> + Send + 'static) -> Self {
        let root = root.to_path_buf();
        Self(Some(std::thread::spawn(move || {
            let sh = Shell::new()?;
            sh.change_dir(root);
            check(&sh)
        })))
    }

    /// The check's result, once it has finished.
    fn wait(&mut self) -> Result<()> {
        match self.0.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the checker's thread panicked"),
            None => bail!("the checker's result was already taken"),
        }
    }
}

/// One render of another service's chart: the environment (its namespace),
/// the values file (and how the report names it), the Application's name.
struct ServiceRender {
    service: String,
    chart: PathBuf,
    env: String,
    values: PathBuf,
    shown: String,
    release: String,
}

impl ServiceRender {
    /// What `helm-render-each` takes for it: chart, values, release, namespace.
    fn helm_args(&self) -> [&OsStr; 4] {
        [
            self.chart.as_os_str(),
            self.values.as_os_str(),
            self.release.as_ref(),
            self.env.as_ref(),
        ]
    }
}

/// `out/<release>.yaml` of each of `targets` that rendered.
fn out_files<'a>(
    targets: &'a [ServiceRender],
    out: &'a Path,
) -> impl Iterator<Item = PathBuf> + 'a {
    targets
        .iter()
        .map(|t| out.join(format!("{}.yaml", t.release)))
        .filter(|file| file.is_file())
}

/// kubernetes-validate's problems (of a run over many files) with `file`.
fn problems_of_file(validated: &[String], file: &Path) -> Vec<String> {
    let head = format!("kubernetes-validate: ERROR {} ", file.display());
    validated
        .iter()
        .filter(|problem| problem.starts_with(&head))
        .cloned()
        .collect()
}

/// Every committed preview of the service whose values file is `values_file`:
/// `(pull request, gitops/values/pr/pr-<N>/<values_file>)`, sorted. Argo CD
/// syncs each, so each is rendered and checked as an environment's is.
fn committed_previews(root: &Path, values_file: &str) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String)> = std::fs::read_dir(root.join("gitops/values/pr"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(
            |entry| match Env::from_preview_dir(&entry.file_name().to_string_lossy()) {
                Some(env @ Env::Preview(pr)) => {
                    Some((pr, format!("gitops/{}", env.values_path(values_file))))
                }
                _ => None,
            },
        )
        .filter(|(_, shown)| root.join(shown).is_file())
        .collect();
    found.sort();
    found
}

/// A committed preview's values as Argo CD renders them: the previews'
/// ApplicationSet adds `namespace.manage: true` (its `valuesObject`).
fn as_argocd_renders_preview(file: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut values = yaml::parse(&text).with_context(|| format!("{}", file.display()))?;
    if !values.is_object() {
        values = json!({});
    }
    if !values["namespace"].is_object() {
        values["namespace"] = json!({});
    }
    values["namespace"]["manage"] = Value::from(true);
    Ok(yaml_serde::to_string(&values)?)
}

/// The values `preview deploy` writes for a service whose dev values are
/// `dev` (its image repository, port and Ingress), for the sample pull
/// request, with its tag and the namespace the previews' Application owns.
fn sample_preview_values_from(dev: &str) -> Result<String> {
    let dev = Some(dev).filter(|text| !text.trim().is_empty());
    let mut sample = yaml::parse(&promotion::preview_values(SAMPLE_PR, dev)?)?;
    let defaults = yaml::parse(&sample_preview_values()?)?;
    sample["image"]["tag"] = defaults["image"]["tag"].clone();
    sample["namespace"] = defaults["namespace"].clone();
    Ok(yaml_serde::to_string(&sample)?)
}

/// The values `preview deploy` writes, for the sample pull request.
fn sample_preview_values() -> Result<String> {
    let values = json!({
        "image": {
            "tag": format!("pr-{SAMPLE_PR}-0123456789abcdef0123456789abcdef01234567"),
            "digest": "",
        },
        "env": {"ENV_NAME": format!("pr-{SAMPLE_PR}"), "SERVICES_NAMESPACE": "dev"},
        "namespace": {"manage": true},
    });
    Ok(yaml_serde::to_string(&values)?)
}

/// What the chart must render for `env` with these values.
fn expected_render<'a>(
    chart: &Path,
    env: &'a str,
    values_text: &str,
) -> Result<chart::Expected<'a>> {
    let merged = values_with_defaults(chart, values_text)?;
    let image = DeployedImage::from_values(values_text)?;
    let repository = merged["image"]["repository"].as_str().unwrap_or_default();
    Ok(chart::Expected {
        env,
        image: if image.digest.is_empty() {
            format!("{repository}:{}", image.tag)
        } else {
            format!("{repository}@{}", image.digest)
        },
        replicas: merged["replicaCount"].as_i64().unwrap_or(1) as i32,
    })
}

/// items-api's render as `release`, which Helm wrote to `out` (unless it
/// could not run, `helm`): its objects, and the file kubernetes-validate read.
fn chart_render(out: &Path, release: &str, helm: &Result<(), String>) -> ChartRendered {
    if let Err(error) = helm {
        bail!("{error}");
    }
    let file = out.join(format!("{release}.yaml"));
    let Ok(rendered) = std::fs::read_to_string(&file) else {
        let error = std::fs::read_to_string(out.join(format!("{release}.error")));
        bail!(
            "helm template failed:\n{}",
            error.unwrap_or_default().trim()
        );
    };
    Ok((split_documents(&rendered)?, file))
}

/// `terraform fmt -check -recursive` through Terraform as a library.
fn terraform_fmt(sh: &Shell, dir: &Path) -> Result<()> {
    offline_checker(
        sh,
        "terraform fmt",
        &["terraform-fmt".as_ref(), dir.as_os_str()],
    )
    .map(drop)
}

/// `xtask/offline_checkers.py` with `args`; stdout, or the tool's message as the error.
fn offline_checker(sh: &Shell, tool: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    require("python3")?;
    let script = workspace::root().join("xtask/offline_checkers.py");
    let out = cmd!(sh, "python3 {script} {args...}")
        .quiet()
        .ignore_status()
        .output()?;
    tool_output(out, tool)
}

/// `xtask/offline_checkers.py batch`: each of `jobs` (its arguments) in
/// order in one process, so each library loads once; each job's output as if
/// it had run on its own (if the batch itself fails, that is each job's).
fn offline_checkers<const N: usize>(
    sh: &Shell,
    scratch: &Path,
    jobs: [&[&OsStr]; N],
) -> [Result<Output>; N] {
    // The outputs, and whether they may be kept: not if the batch itself failed.
    let run = || -> Result<(Vec<Output>, bool)> {
        require("python3")?;
        let script = workspace::root().join("xtask/offline_checkers.py");
        let results = scratch.join("offline-checkers.json");
        let jobs: Vec<Vec<&str>> = (jobs.iter())
            .map(|args| {
                args.iter()
                    .map(|a| a.to_str().context("a path that is not UTF-8"))
                    .collect()
            })
            .collect::<Result<_>>()?;
        let out = cmd!(sh, "python3 {script} batch {results}")
            .stdin(serde_json::to_string(&jobs)?)
            .quiet()
            .ignore_status()
            .output()?;
        if !out.status.success() {
            return Ok((vec![out; N], false));
        }
        let text = std::fs::read_to_string(&results)?;
        let results: Vec<JobOutput> = serde_json::from_str(&text)?;
        Ok((results.into_iter().map(Output::from).collect(), true))
    };
    let root = sh.current_dir();
    let places = output_cache::Places::new(scratch, &[&root]);
    let (key, written) = batch_key(&places, &jobs);
    match output_cache::outputs_and_files(key, &places, &written, run) {
        Ok(outputs) if outputs.len() == N => outputs.into_iter().map(Ok).collect::<Vec<_>>(),
        Ok(_) => (0..N)
            .map(|_| {
                Err(anyhow!(
                    "offline_checkers.py batch: a result per job expected"
                ))
            })
            .collect(),
        Err(error) => (0..N).map(|_| Err(anyhow!("{error:#}"))).collect(),
    }
    .try_into()
    .unwrap_or_else(|_| unreachable!("N results"))
}

/// What `offline_checkers.py batch` reads, as the key its outputs are kept
/// by (`plumbing::output_cache`): the script, Python and the pinned checkers,
/// each argument and the files it names; and the folders it writes in.
fn batch_key(
    places: &output_cache::Places,
    jobs: &[&[&OsStr]],
) -> (output_cache::Key, Vec<PathBuf>) {
    let mut key = output_cache::Key::new("offline_checkers.py batch");
    let root = workspace::root();
    key.program("python3")
        .file(&root, Path::new("xtask/offline_checkers.py"))
        .file(&root, Path::new("xtask/tools.txt"));
    if let Some(venv) = which("python3").and_then(|p| p.parent()?.parent().map(Path::to_path_buf)) {
        key.file(&venv, Path::new("tools.pins"));
    }
    let mut written = Vec::new();
    for args in jobs {
        key.bytes(b"job");
        for arg in args.iter() {
            key.path_arg(arg, places);
            let path = Path::new(arg);
            if path.is_dir() && path.starts_with(places.scratch()) {
                written.push(path.to_path_buf());
            }
        }
    }
    (key, written)
}

/// One job's output in `offline_checkers.py batch`'s results.
#[derive(serde::Deserialize)]
struct JobOutput {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<JobOutput> for Output {
    fn from(job: JobOutput) -> Self {
        Output {
            status: std::os::unix::process::ExitStatusExt::from_raw((job.code & 0xff) << 8),
            stdout: job.stdout.into_bytes(),
            stderr: job.stderr.into_bytes(),
        }
    }
}

/// kubernetes-validate's problems, each naming its file.
fn kubernetes_validate_problems(out: Output) -> Result<Vec<String>> {
    if out.status.success() {
        return Ok(Vec::new());
    }
    if out.status.code() == Some(127) {
        tool_output(out, "kubernetes-validate")?;
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.starts_with("ERROR"))
        .map(|l| format!("kubernetes-validate: {l}"))
        .collect())
}

/// actionlint on workflow files (paths as `sh`'s folder sees them). Its
/// output is kept by what it reads (`plumbing::output_cache`): actionlint and
/// the shellcheck it runs, its configuration, and each file's name and bytes.
pub fn actionlint(sh: &Shell, files: &[PathBuf]) -> Result<()> {
    require("actionlint")?;
    let dir = sh.current_dir();
    let mut key = output_cache::Key::new("actionlint -no-color");
    key.program("actionlint").program("shellcheck");
    for config in [".github/actionlint.yaml", ".github/actionlint.yml"] {
        key.file(&dir, Path::new(config));
    }
    for file in files {
        key.file(&dir, file);
    }
    let out = output_cache::output(key, || {
        Ok(cmd!(sh, "actionlint -no-color {files...}")
            .quiet()
            .ignore_status()
            .output()?)
    })?;
    tool_output(out, "actionlint").map(drop)
}

/// zizmor's security audits, offline; a medium or high finding fails (the
/// low ones are listed by `zizmor --offline .github/workflows`). An accepted
/// finding carries a `# zizmor: ignore[<audit>]` and its reason on its line.
pub fn zizmor(sh: &Shell, files: &[PathBuf]) -> Result<()> {
    require("zizmor")?;
    let out = cmd!(
        sh,
        "zizmor --offline --quiet --min-severity medium --color never {files...}"
    )
    .quiet()
    .ignore_status()
    .output()?;
    tool_output(out, "zizmor").map(drop)
}

/// stdout of a successful run; otherwise its messages as the error.
fn tool_output(out: Output, tool: &str) -> Result<String> {
    if out.status.code() == Some(127) {
        bail!(
            "{tool}: {} — {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            tools::pip_install_hint()
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

fn require(name: &str) -> Result<()> {
    if which(name).is_some() {
        Ok(())
    } else {
        bail!("`{name}` is not installed: {}", tools::pip_install_hint())
    }
}

/// The chart's values.yaml under an environment's file (a shallow merge is
/// enough for the top-level keys read here).
fn values_with_defaults(chart: &Path, env_values: &str) -> Result<Value> {
    let mut merged = yaml::parse(&std::fs::read_to_string(chart.join("values.yaml"))?)?;
    let env = yaml::parse(env_values)?;
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

/// `✔ what`, or `✘ what` and each problem under it.
pub fn print_report(what: &str, problems: &[Finding]) {
    if problems.is_empty() {
        println!("✔ {what}");
    } else {
        println!("✘ {what}");
        for p in problems {
            println!("    {p}");
        }
    }
}

/// A check that fails with one message, as a finding of `rule`.
pub fn as_problems(rule: &'static str, result: Result<()>) -> Vec<Finding> {
    result
        .err()
        .map(|e| vec![Finding::new(rule, format!("{e:#}"))])
        .unwrap_or_default()
}
