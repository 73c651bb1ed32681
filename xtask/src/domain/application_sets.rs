//! The ApplicationSets under `gitops/argocd/apps`, expanded as Argo CD's
//! ApplicationSet controller expands them, so `validate` checks every
//! Application they make as it checks an Application file.
//!
//! Upstream: Argo CD v2.13.2's ApplicationSet controller (the version
//! terraform/ pins), goTemplate mode; held to its documented List generator
//! example by `the_list_generator_example_of_argo_cds_docs_expands_as_documented`.
//!
//!
//! - generators: `list` (exactly), `matrix` of two children (the second may
//!   use the first one's parameters, as Argo CD allows with goTemplate), and
//!   git `files`, read from the repository with Argo CD's path-aware globbing
//!   (`*` stops at `/`) plus a sample pull request, [`SAMPLE_PR`], whose file
//!   need not exist;
//! - templates: Go template expressions of the forms this repository uses
//!   (`{{.a.b}}`, `{{trimSuffix "s" .a}}`, `{{regexReplaceAll "[^0-9]" .a ""}}`,
//!   `{{toJson .a}}`); another form is a problem naming it, since validate
//!   cannot tell what it gives;
//! - `templatePatch` (YAML): rendered, then merged over the template.
//!
//! And the services list `new-service` appends to (`services.yaml`).

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::promotion::Env;
use crate::domain::services::Service;
use crate::plumbing::yaml::{self, Segment, ValuePath};

/// The services × environments ApplicationSet, from the workspace root.
pub const SERVICES_SET: &str = "gitops/argocd/apps/services.yaml";
/// The services × pull requests ApplicationSet, from the workspace root.
pub const PREVIEWS_SET: &str = "gitops/argocd/apps/previews.yaml";
/// The pull request a git files generator is also expanded for (its `*` is `1`).
pub const SAMPLE_PR: u64 = 1;

/// One element of the services list: a service, its chart and its values
/// file, as its `services/<name>/service.toml` declares them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceElement {
    pub service: String,
    pub chart: String,
    pub values_file: String,
}

impl ServiceElement {
    pub fn of(service: &Service) -> Self {
        Self {
            service: service.name.clone(),
            chart: service.declaration.chart.clone(),
            values_file: service.declaration.values_file.clone(),
        }
    }

    /// `service-demo` for `service-demo.yaml`: the Applications' name prefix.
    pub fn stem(&self) -> &str {
        self.values_file
            .strip_suffix(".yaml")
            .unwrap_or(&self.values_file)
    }
}

/// An Application an ApplicationSet makes.
#[derive(Debug)]
pub struct Generated {
    /// As the controller creates it: apiVersion, kind, the set's namespace.
    pub application: Value,
    /// The environment its parameters name: `env` of an environments list,
    /// or `pr-<digits of the directory>` of a git file.
    pub env: Option<Env>,
    /// The services-list element it was made from, if any.
    pub element: Option<ServiceElement>,
    /// Made from the sample pull request, whose values file need not exist.
    pub sample: bool,
}

impl Generated {
    pub fn name(&self) -> &str {
        self.application["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }
}

/// One parameter set, and whether it comes from the sample pull request.
type Params = (Map<String, Value>, bool);

/// Every Application `set` makes for the repository at `root`, and every
/// problem met doing so (each names its generator or expression).
pub fn expand(root: &Path, set: &Value) -> (Vec<Generated>, Vec<String>) {
    let mut problems = Vec::new();
    if set["spec"]["goTemplate"] != true {
        problems.push("spec.goTemplate must be true: the template uses Go templates".to_owned());
    }
    let mut params = Vec::new();
    for generator in set["spec"]["generators"].as_array().into_iter().flatten() {
        match generator_params(root, generator, &Map::new()) {
            Ok(found) => params.extend(found),
            Err(problem) => problems.push(problem),
        }
    }
    let mut generated = Vec::new();
    for (params, sample) in params {
        match render(set, &params) {
            Ok(application) => generated.push(Generated {
                application,
                env: env_of(&params),
                element: serde_json::from_value(Value::Object(element_keys(&params))).ok(),
                sample,
            }),
            Err(problem) if !problems.contains(&problem) => problems.push(problem),
            Err(_) => {}
        }
    }
    (generated, problems)
}

/// The services list's keys of `params` (`service`, `chart`, `valuesFile`).
fn element_keys(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "service" | "chart" | "valuesFile"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `env` of an environments list, or the preview of a git file's directory.
fn env_of(params: &Map<String, Value>) -> Option<Env> {
    if let Some(env) = params.get("env").and_then(Value::as_str) {
        return env.parse().ok();
    }
    let directory = params.get("path")?["basename"].as_str()?;
    let digits: String = directory.chars().filter(char::is_ascii_digit).collect();
    Some(Env::Preview(digits.parse().ok()?))
}

/// The parameter sets of one generator; `inherited` are the first matrix
/// child's, which a second child's fields may use.
fn generator_params(
    root: &Path,
    generator: &Value,
    inherited: &Map<String, Value>,
) -> Result<Vec<Params>, String> {
    if let Some(list) = generator.get("list") {
        return list["elements"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|element| match element {
                Value::Object(fields) => Ok((fields.clone(), false)),
                other => Err(format!("list element {other} is not an object")),
            })
            .collect();
    }
    if let Some(git) = generator.get("git") {
        return git_file_params(root, git, inherited);
    }
    if let Some(matrix) = generator.get("matrix") {
        return matrix_params(root, matrix, inherited);
    }
    let kind = generator
        .as_object()
        .and_then(|g| g.keys().next().cloned())
        .unwrap_or_default();
    Err(format!(
        "generator {kind:?}: validate expands list, git files and matrix generators only, so it cannot check \
         the Applications this one makes"
    ))
}

/// Every combination of the two children, the first's parameters winning
/// (Argo CD merges the second's, then the first's over them).
fn matrix_params(
    root: &Path,
    matrix: &Value,
    inherited: &Map<String, Value>,
) -> Result<Vec<Params>, String> {
    let children = matrix["generators"].as_array().cloned().unwrap_or_default();
    let [first, second] = children.as_slice() else {
        return Err(format!(
            "a matrix generator has {} children; Argo CD combines exactly two",
            children.len()
        ));
    };
    let mut combined = Vec::new();
    for (a, a_sample) in generator_params(root, first, inherited)? {
        for (b, b_sample) in generator_params(root, second, &a)? {
            let mut merged = b;
            merged.extend(a.clone());
            combined.push((merged, a_sample || b_sample));
        }
    }
    Ok(combined)
}

/// A git files generator: one parameter set per file its patterns match
/// (path-aware), and one for the sample pull request's file.
fn git_file_params(
    root: &Path,
    git: &Value,
    inherited: &Map<String, Value>,
) -> Result<Vec<Params>, String> {
    if git.get("directories").is_some() {
        return Err("git directories generators are not expanded by validate".to_owned());
    }
    let mut found = Vec::new();
    for item in git["files"].as_array().into_iter().flatten() {
        let pattern = render_text(item["path"].as_str().unwrap_or_default(), inherited)?;
        let mut files = matching_files(root, &pattern);
        let sample = pattern.replace('*', &SAMPLE_PR.to_string());
        if !files.contains(&sample) {
            found.push((file_params(&sample), true));
        }
        files.sort();
        found.extend(files.iter().map(|file| (file_params(file), false)));
    }
    Ok(found)
}

/// What Argo CD's git files generator gives a file (goTemplate): `.path.*`.
fn file_params(file: &str) -> Map<String, Value> {
    let (dir, filename) = file.rsplit_once('/').unwrap_or(("", file));
    let basename = dir.rsplit('/').next().unwrap_or(dir);
    let normalized = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    let mut params = Map::new();
    params.insert(
        "path".to_owned(),
        serde_json::json!({
            "path": dir,
            "basename": basename,
            "filename": filename,
            "basenameNormalized": normalized(basename),
            "filenameNormalized": normalized(filename),
            "segments": dir.split('/').collect::<Vec<_>>(),
        }),
    );
    params
}

/// The files under `root` matching `pattern` segment by segment (`*` never
/// crosses `/`: Argo CD's path-aware globbing, which terraform/ turns on).
fn matching_files(root: &Path, pattern: &str) -> Vec<String> {
    let segments: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = segments
        .iter()
        .take_while(|s| !s.contains('*'))
        .copied()
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![literal.join("/")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path_matches(&segments, &path) {
                found.push(path);
            }
        }
    }
    found
}

fn path_matches(pattern: &[&str], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() == pattern.len()
        && pattern
            .iter()
            .zip(&parts)
            .all(|(p, s)| crate::plumbing::text::glob_match(p, s))
}

/// The Application `set`'s template makes for `params`: every string
/// rendered, the rendered `templatePatch` merged over it.
fn render(set: &Value, params: &Map<String, Value>) -> Result<Value, String> {
    let mut application = set["spec"]["template"].clone();
    render_strings(&mut application, params)?;
    if let Some(patch) = set["spec"]["templatePatch"].as_str() {
        let patch = render_text(patch, params)?;
        let patch: Value = yaml_serde::from_str(&patch)
            .map_err(|e| format!("templatePatch renders to YAML that does not parse: {e}"))?;
        merge(&mut application, patch);
    }
    let fields = application
        .as_object_mut()
        .ok_or("the template is not an object")?;
    fields.insert("apiVersion".into(), set["apiVersion"].clone());
    fields.insert("kind".into(), "Application".into());
    application["metadata"]["namespace"] = set["metadata"]["namespace"].clone();
    Ok(application)
}

/// A YAML merge patch: objects merge key by key, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

fn render_strings(value: &mut Value, params: &Map<String, Value>) -> Result<(), String> {
    match value {
        Value::String(text) => *text = render_text(text, params)?,
        Value::Array(items) => {
            for item in items {
                render_strings(item, params)?;
            }
        }
        Value::Object(fields) => {
            for item in fields.values_mut() {
                render_strings(item, params)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with each `{{…}}` evaluated against `params`.
pub fn render_text(text: &str, params: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed template expression in {text:?}"))?;
        let expression = &rest[start..start + end + 2];
        out.push_str(&evaluate(expression, params)?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The template expressions validate evaluates, as Argo CD's Go templates
/// (with Sprig) would.
fn evaluate(expression: &str, params: &Map<String, Value>) -> Result<String, String> {
    let inner = &expression[2..expression.len() - 2];
    let words = words(inner.trim());
    let unknown = || {
        format!(
            "template expression {expression} is not one validate evaluates ({{{{.a}}}}, {{{{trimSuffix \"s\" .a}}}}, \
             {{{{regexReplaceAll \"[^0-9]\" .a \"\"}}}}, {{{{toJson .a}}}})"
        )
    };
    let field = |name: &str| lookup(expression, name, params);
    let text = |value: Value| match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "{expression} gives {other}, not a string: use toJson"
        )),
    };
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [name] if name.starts_with('.') => text(field(name)?),
        ["trimSuffix", suffix, name] if name.starts_with('.') => {
            let suffix = unquote(suffix).ok_or_else(unknown)?;
            let value = text(field(name)?)?;
            Ok(value.strip_suffix(suffix).unwrap_or(&value).to_owned())
        }
        ["regexReplaceAll", r#""[^0-9]""#, name, r#""""#] if name.starts_with('.') => {
            Ok(text(field(name)?)?
                .chars()
                .filter(char::is_ascii_digit)
                .collect())
        }
        ["toJson", name] if name.starts_with('.') => Ok(field(name)?.to_string()),
        _ => Err(unknown()),
    }
}

/// `.a.b` in `params`; missing is an error (`missingkey=error`).
fn lookup(expression: &str, name: &str, params: &Map<String, Value>) -> Result<Value, String> {
    let mut value = &Value::Object(params.clone());
    for key in name.trim_start_matches('.').split('.') {
        value = value.get(key).ok_or_else(|| {
            format!("{expression}: no parameter {name} (the set has missingkey=error: Argo CD would fail)")
        })?;
    }
    Ok(value.clone())
}

/// The words of an expression, a quoted string being one word (quotes kept).
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn unquote(word: &str) -> Option<&str> {
    word.strip_prefix('"')?.strip_suffix('"')
}

/// The services list of the ApplicationSet `text` (the first list generator
/// whose elements name a `service`).
pub fn service_elements(text: &str) -> Result<Vec<ServiceElement>> {
    let (_, list) = services_list(text)?;
    list.iter()
        .map(|e| serde_json::from_value(e.clone()).with_context(|| format!("element {e}")))
        .collect()
}

/// Where the services list is in the ApplicationSet `text`, and its elements.
fn services_list(text: &str) -> Result<(ValuePath, Vec<Value>)> {
    let set: Value = yaml_serde::from_str(text).context("the ApplicationSet is not YAML")?;
    let mut lists = Vec::new();
    let at = ValuePath(vec![
        Segment::Key("spec".to_owned()),
        Segment::Key("generators".to_owned()),
    ]);
    collect_lists(&set["spec"]["generators"], &at, &mut lists);
    lists
        .into_iter()
        .find(|(_, elements)| elements.iter().any(|e| e.get("service").is_some()))
        .context("no list generator whose elements name a `service`")
}

/// Every list generator's elements under `generators` (at `at`), with their path.
fn collect_lists(generators: &Value, at: &ValuePath, lists: &mut Vec<(ValuePath, Vec<Value>)>) {
    let path = |i: usize, keys: &[&str]| {
        let mut path = at.clone();
        path.0.push(Segment::Index(i));
        path.0
            .extend(keys.iter().map(|k| Segment::Key((*k).to_owned())));
        path
    };
    for (i, generator) in generators.as_array().into_iter().flatten().enumerate() {
        if let Some(elements) = generator["list"]["elements"].as_array() {
            lists.push((path(i, &["list", "elements"]), elements.clone()));
        }
        collect_lists(
            &generator["matrix"]["generators"],
            &path(i, &["matrix", "generators"]),
            lists,
        );
    }
}

/// `text` (an ApplicationSet) with `element` appended to its services list
/// (through `plumbing::yaml`: after the last element, in its layout),
/// everything else byte for byte as it was; unchanged if the list has it.
pub fn add_service_element(text: &str, element: &ServiceElement) -> Result<String> {
    let before = service_elements(text)?;
    if before.contains(element) {
        return Ok(text.to_owned());
    }
    ensure!(
        !before.iter().any(|e| e.service == element.service),
        "the services list already has an element for {} with another chart or values file: fix it by hand",
        element.service
    );
    // The list's path is made of fixed keys and indices: a jq path as it prints.
    let (path, _) = services_list(text)?;
    let element = serde_json::to_value(element)?;
    let edited = yaml::jq::edit(text, &format!("{path} += [{element}]"))
        .with_context(|| format!("adding {} to the services list", element["service"]))?;
    Ok(edited.text)
}

/// Adds the workspace's service `name` (as its `service.toml` declares it)
/// to the services list of both ApplicationSets under `root` (environments
/// and previews): what `new-service` writes for Argo CD. Returns the files it
/// changed; a workspace without them (no Argo CD) gets none.
pub fn add_service(root: &Path, name: &str) -> Result<Vec<String>> {
    let services = crate::domain::services::load(root)?;
    let service = services
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("service {name} is not declared in this workspace"))?;
    let element = ServiceElement::of(service);
    let mut changed = Vec::new();
    for file in [SERVICES_SET, PREVIEWS_SET] {
        let path = root.join(file);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
        let new = add_service_element(&text, &element).context(file)?;
        if new != text {
            std::fs::write(&path, new).with_context(|| format!("writing {file}"))?;
            changed.push(file.to_owned());
        }
    }
    Ok(changed)
}

/// What [`add_service`] would change for the service among `files` (a
/// scaffold's new files: its `services/<name>/service.toml`), as unified
/// diffs, writing nothing: `new-service --dry-run`.
pub fn planned_diff(root: &Path, files: &[(String, String)]) -> Result<String> {
    let Some((path, text)) = files.iter().find(|(path, _)| {
        path.starts_with(&format!("{}/", crate::domain::services::SERVICES_DIR))
            && path.ends_with(&format!("/{}", crate::domain::services::DECLARATION_FILE))
    }) else {
        return Ok(String::new());
    };
    let declaration: crate::domain::services::Declaration =
        toml_edit::de::from_str(text).with_context(|| format!("reading the planned {path}"))?;
    let name = path.split('/').nth(1).unwrap_or_default();
    let element = ServiceElement {
        service: name.to_owned(),
        chart: declaration.chart,
        values_file: declaration.values_file,
    };
    let mut diff = String::new();
    for file in [SERVICES_SET, PREVIEWS_SET] {
        let Ok(before) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let after = add_service_element(&before, &element).context(file)?;
        diff.push_str(&crate::plumbing::text::unified_diff(file, &before, &after));
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = "spec:\n  generators:\n    - matrix:\n        generators:\n          - list:\n              elements:\n                # the services\n                - service: a\n                  chart: charts/x\n                  valuesFile: a.yaml\n\n          - list:\n              elements:\n                - env: dev\n";

    #[test]
    fn an_element_is_appended_after_the_last_keeping_everything_else() {
        let element = ServiceElement {
            service: "orders-api".into(),
            chart: "charts/x".into(),
            values_file: "orders-api.yaml".into(),
        };
        let out = add_service_element(SET, &element).unwrap();
        assert_eq!(
            out,
            SET.replace(
                "a.yaml\n\n",
                "a.yaml\n                - service: orders-api\n                  chart: charts/x\n                  valuesFile: orders-api.yaml\n\n"
            )
        );
        assert_eq!(add_service_element(&out, &element).unwrap(), out);
        // A services list written in flow style is refused, saying how to fix it.
        let flow = "spec:\n  generators:\n    - list:\n        elements: [{service: a, chart: c, valuesFile: a.yaml}]\n";
        let error = add_service_element(flow, &element).unwrap_err();
        assert!(format!("{error:#}").contains("flow style"), "{error:#}");
    }

    #[test]
    fn expressions_evaluate_as_go_templates_and_others_are_named() {
        let params: Map<String, Value> = serde_json::from_str(
            r#"{"valuesFile": "service-demo.yaml", "path": {"basename": "pr-7-prod"}, "p": {"a": 1}}"#,
        )
        .unwrap();
        let render = |t: &str| render_text(t, &params);
        assert_eq!(
            render(
                r#"{{trimSuffix ".yaml" .valuesFile}}-pr-{{regexReplaceAll "[^0-9]" .path.basename ""}}"#
            ),
            Ok("service-demo-pr-7".to_owned())
        );
        assert_eq!(render("x: {{toJson .p}}"), Ok(r#"x: {"a":1}"#.to_owned()));
        assert!(
            render("{{.missing}}")
                .unwrap_err()
                .contains("no parameter .missing")
        );
        assert!(
            render("{{ .p | toYaml }}")
                .unwrap_err()
                .contains("is not one validate evaluates")
        );
    }

    /// The three Application files the set replaced, as they were.
    const BEFORE: [(&str, &str); 3] = [
        (
            "dev",
            include_str!("../../tests/fixtures/argocd/before-applicationset/dev.yaml"),
        ),
        (
            "preprod",
            include_str!("../../tests/fixtures/argocd/before-applicationset/preprod.yaml"),
        ),
        (
            "prod",
            include_str!("../../tests/fixtures/argocd/before-applicationset/prod.yaml"),
        ),
    ];

    /// Argo CD v2.13.2's docs, operator-manual/applicationset/Generators-List.md:
    /// the example, and the Application the page says the controller makes from it.
    #[test]
    fn the_list_generator_example_of_argo_cds_docs_expands_as_documented() {
        let set: Value = yaml_serde::from_str(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: guestbook
  namespace: argocd
spec:
  goTemplate: true
  goTemplateOptions: ["missingkey=error"]
  generators:
  - list:
      elements:
      - cluster: engineering-dev
        url: https://kubernetes.default.svc
      # - cluster: engineering-prod
      #   url: https://kubernetes.default.svc
  template:
    metadata:
      name: '{{.cluster}}-guestbook'
    spec:
      project: "my-project"
      source:
        repoURL: https://github.com/argoproj/argo-cd.git
        targetRevision: HEAD
        path: applicationset/examples/list-generator/guestbook/{{.cluster}}
      destination:
        server: '{{.url}}'
        namespace: guestbook
"#,
        )
        .unwrap();
        let (generated, problems) = expand(Path::new("/nonexistent"), &set);
        assert_eq!(problems, Vec::<String>::new());
        let [app] = generated.as_slice() else {
            panic!("one Application, one per element: {generated:#?}")
        };
        assert_eq!(app.name(), "engineering-dev-guestbook");
        let spec = &app.application["spec"];
        assert_eq!(
            spec["source"]["path"],
            "applicationset/examples/list-generator/guestbook/engineering-dev"
        );
        assert_eq!(
            spec["destination"]["server"],
            "https://kubernetes.default.svc"
        );
        assert_eq!(spec["project"], "my-project");
        assert_eq!(app.application["kind"], "Application");
        assert_eq!(app.application["metadata"]["namespace"], "argocd");
    }

    #[test]
    fn the_services_set_makes_the_three_applications_it_replaced_exactly() {
        let set: Value =
            yaml_serde::from_str(include_str!("../../../gitops/argocd/apps/services.yaml"))
                .unwrap();
        let (generated, problems) = expand(Path::new("/nonexistent"), &set);
        assert_eq!(problems, Vec::<String>::new());
        for (env, before) in BEFORE {
            let mut expected: Value = yaml_serde::from_str(before).unwrap();
            // What the set adds: which service, for `status` and people; and the
            // repository a fork points at (`cargo xtask fork` rewrites the set).
            expected["metadata"]["labels"]["service-demo/service"] = "items-api".into();
            expected["spec"]["source"]["repoURL"] =
                set["spec"]["template"]["spec"]["source"]["repoURL"].clone();
            let name = format!("service-demo-{env}");
            let made = generated.iter().find(|g| g.name() == name).expect(&name);
            assert_eq!(made.application, expected, "{name}");
            assert_eq!(made.env, Some(env.parse().unwrap()));
        }
    }

    #[test]
    fn a_git_files_generator_reads_the_files_present_and_the_sample_pull_request() {
        let root = std::env::temp_dir().join(format!("application-sets-{}", std::process::id()));
        for file in ["pr-3/a.yaml", "pr-3/b.yaml", "pr-4/x/a.yaml", "pr-5.yaml"] {
            let path = root.join("gitops/values/pr").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "{}\n").unwrap();
        }
        let set = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "metadata": {"namespace": "argocd"},
            "spec": {"goTemplate": true,
            "generators": [{"matrix": {"generators": [
                {"list": {"elements": [{"service": "a", "chart": "c", "valuesFile": "a.yaml"}]}},
                {"git": {"repoURL": "r", "revision": "main", "files": [{"path": "gitops/values/pr/pr-*/{{.valuesFile}}"}]}}]}}],
            "template": {"metadata": {"name": "{{trimSuffix \".yaml\" .valuesFile}}-pr-{{regexReplaceAll \"[^0-9]\" .path.basename \"\"}}"},
                "spec": {"source": {"path": "{{.path.path}}/{{.path.filename}}"}}}}});
        let (generated, problems) = expand(&root, &set);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(problems, Vec::<String>::new());
        let made: Vec<_> = generated
            .iter()
            .map(|g| {
                (
                    g.name().to_owned(),
                    g.application["spec"]["source"]["path"].clone(),
                    g.sample,
                )
            })
            .collect();
        assert_eq!(
            made,
            [
                (
                    "a-pr-1".to_owned(),
                    "gitops/values/pr/pr-1/a.yaml".into(),
                    true
                ),
                (
                    "a-pr-3".to_owned(),
                    "gitops/values/pr/pr-3/a.yaml".into(),
                    false
                ),
            ]
        );
        assert_eq!(generated[1].env, Some(Env::Preview(3)));
    }

    #[test]
    fn globbing_is_path_aware() {
        assert!(path_matches(&["a", "pr-*", "x.yaml"], "a/pr-7/x.yaml"));
        assert!(!path_matches(&["a", "pr-*", "x.yaml"], "a/pr-7/b/x.yaml"));
        assert!(!path_matches(&["a", "pr-*", "x.yaml"], "a/pr-7/y.yaml"));
    }
}
