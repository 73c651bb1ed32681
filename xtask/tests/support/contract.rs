//! The upstream contracts the fakes are checked against: GitHub's OpenAPI
//! description (npm `@octokit/openapi`, pinned in xtask/tools.txt, unpacked by
//! `.ci/run`) and Argo CD's swagger (vendored in xtask/schemas/).
//!
//! `Api::check_request` matches a request (method, path and query) to one
//! operation of the description, checks its path and query parameters and its
//! JSON body against the operation's schema, strictly (a field the schema does
//! not declare is refused: that is how a typo shows); `Api::check_response`
//! checks an answer against the schema of its status. `FakeHttp::start_checked`
//! runs both on every exchange and fails the test on any violation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use sha2::Digest as _;
pub use xtask::plumbing::json_schema::{Dialect, Validator, Violation};

/// One upstream API description, loaded once per test process.
#[derive(Clone)]
pub struct Api(Arc<Description>);

struct Description {
    /// e.g. "GitHub's OpenAPI description (@octokit/openapi 23.0.2)".
    name: String,
    doc: Value,
    dialect: Dialect,
    /// A path prefix every operation has (Swagger 2.0's `basePath`).
    base: String,
    /// What any operation may answer with a 4xx or 5xx status it does not
    /// list (GitHub's `basic-error`: GitHub answers 401 to any endpoint).
    error_schema: Option<Value>,
}

/// GitHub's description, or the visible skip (`support::require`) when it is
/// missing: a test that cannot check its fake against it fails under CI.
pub fn require_github() -> Option<Api> {
    let api = github();
    super::require(api.is_some(), &github_missing())?;
    api
}

/// A fake GitHub's answer: `patch` completed to what GitHub's description
/// requires for this request and status (`Api::answer`); `patch` as it is
/// when the description is missing (the fake's test then fails or is counted
/// as skipped, through `FakeHttp::start_github`).
pub fn github_answer(method: &str, target: &str, status: u16, patch: Value) -> String {
    match github() {
        Some(api) => api.answer(method, target, status, patch),
        None => patch.to_string(),
    }
}

/// GitHub's REST description, where `.ci/run` unpacked it (`GITHUB_OPENAPI`,
/// else its default path); None when it is not there: the caller then calls
/// `support::require`, so CI fails and a local run counts the test as skipped.
pub fn github() -> Option<Api> {
    static GITHUB: OnceLock<Option<Api>> = OnceLock::new();
    GITHUB
        .get_or_init(|| {
            let path = github_description_path();
            path.is_file().then(|| {
                let name = format!(
                    "GitHub's OpenAPI description (@octokit/openapi {})",
                    github_pin()
                );
                Api::load(&path, Dialect::OpenApi3, &name)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            })
        })
        .clone()
}

/// What to install when `github()` is None, for `support::require`.
pub fn github_missing() -> String {
    format!(
        "GitHub's OpenAPI description at {} (`bash .ci/run` unpacks npm @octokit/openapi {}; \
         GITHUB_OPENAPI names another path)",
        github_description_path().display(),
        github_pin()
    )
}

/// The pinned version of `@octokit/openapi` (xtask/tools.txt).
pub fn github_pin() -> &'static str {
    include_str!("../../tools.txt")
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() >= 3 && words[0] == "npm" && words[1] == "@octokit/openapi")
                .then(|| words[2])
        })
        .expect("xtask/tools.txt pins npm @octokit/openapi")
}

fn github_description_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GITHUB_OPENAPI") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home)
        .join(".cache/service-demo/github-openapi")
        .join(github_pin())
        .join("api.github.com.json")
}

/// Argo CD's REST description (its swagger at the release Terraform's chart
/// installs), where `cargo xtask schemas refresh` installed it, checked
/// against the sha256 of xtask/schemas/sources.toml; None when it is not
/// there (see `github()`).
pub fn argocd() -> Option<Api> {
    static ARGOCD: OnceLock<Option<Api>> = OnceLock::new();
    ARGOCD
        .get_or_init(|| {
            let (path, sha256, tag) = argocd_description();
            let bytes = std::fs::read(&path).ok()?;
            let digest: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                digest,
                sha256,
                "{} is not the file xtask/schemas/sources.toml names: run `cargo xtask schemas refresh`",
                path.display()
            );
            let doc = serde_json::from_slice(&bytes).expect("Argo CD's swagger is JSON");
            let name = format!("Argo CD's REST description (argoproj/argo-cd {tag} assets/swagger.json)");
            Some(Api::from_value(doc, Dialect::Swagger2, &name))
        })
        .clone()
}

/// Argo CD's description, or the visible skip (see `require_github`).
pub fn require_argocd() -> Option<Api> {
    let api = argocd();
    let (path, ..) = argocd_description();
    let what = format!(
        "Argo CD's REST description at {} (`cargo xtask schemas refresh`; .ci/run does it)",
        path.display()
    );
    super::require(api.is_some(), &what)?;
    api
}

/// A fake Argo CD's answer, completed to what Argo CD's description requires
/// (see `github_answer`).
pub fn argocd_answer(method: &str, target: &str, status: u16, patch: Value) -> String {
    match argocd() {
        Some(api) => api.answer(method, target, status, patch),
        None => patch.to_string(),
    }
}

/// Where Argo CD's swagger is installed, its sha256 and its tag (sources.toml).
fn argocd_description() -> (PathBuf, String, String) {
    let sources: Value = toml::from_str::<toml::Value>(include_str!("../../schemas/sources.toml"))
        .ok()
        .and_then(|t| serde_json::to_value(t).ok())
        .expect("xtask/schemas/sources.toml parses");
    let entry = sources["schema"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["file"] == "argocd-swagger.json")
        .expect("sources.toml names argocd-swagger.json");
    let dir = match std::env::var_os("SERVICE_DEMO_SCHEMAS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/service-demo/schemas"),
    };
    let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
    (dir.join("argocd-swagger.json"), text("sha256"), text("tag"))
}

/// The operation a request matched, with its path parameters.
struct Operation<'a> {
    template: &'a str,
    item: &'a Value,
    op: &'a Value,
    captured: Vec<(String, String)>,
}

impl Operation<'_> {
    fn id(&self) -> &str {
        self.op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or(self.template)
    }
}

impl Api {
    /// An OpenAPI 3 or Swagger 2.0 description from a JSON file.
    pub fn load(path: &Path, dialect: Dialect, name: &str) -> Result<Api, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        Ok(Self::from_value(doc, dialect, name))
    }

    pub fn from_value(doc: Value, dialect: Dialect, name: &str) -> Api {
        let base = doc
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        let error_schema = doc
            .pointer("/components/schemas/basic-error")
            .map(|_| serde_json::json!({"$ref": "#/components/schemas/basic-error"}));
        Api(Arc::new(Description {
            name: name.to_owned(),
            doc,
            dialect,
            base,
            error_schema,
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn validator(&self) -> Validator<'_> {
        Validator::new(&self.0.doc, self.0.dialect)
    }

    /// Whether the description has this request: method, path, parameters
    /// and JSON body, strictly.
    pub fn check_request(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> Result<(), String> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let operation = self.operation(method, path)?;
        let mut problems = self.check_parameters(&operation, query);
        problems.extend(self.check_body(&operation, body));
        self.verdict(method, target, &operation, "request", problems)
    }

    /// Whether `body` (Null for an empty body) is an answer the description
    /// gives to this request with `status`.
    pub fn check_response(
        &self,
        method: &str,
        target: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let operation = self.operation(method, path)?;
        let problems = match self.response_schema(&operation, status) {
            Err(problem) => vec![problem],
            Ok(None) if body.is_null() => vec![],
            Ok(None) => vec![format!(
                "answer: status {status} has no body here, and the fake sent one"
            )],
            Ok(Some(schema)) => {
                let violations = self.validator().validate(&schema, body, "answer");
                violations.iter().map(Violation::to_string).collect()
            }
        };
        self.verdict(
            method,
            target,
            &operation,
            &format!("answer {status}"),
            problems,
        )
    }

    fn verdict(
        &self,
        method: &str,
        target: &str,
        operation: &Operation,
        what: &str,
        problems: Vec<String>,
    ) -> Result<(), String> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{method} {target} (operation {} at {}): the {what} breaks {}:\n  {}",
            operation.id(),
            operation.template,
            self.0.name,
            problems.join("\n  ")
        ))
    }

    /// The operation `method path` is, or why there is none.
    fn operation(&self, method: &str, path: &str) -> Result<Operation<'_>, String> {
        let Some(relative) = path.strip_prefix(&self.0.base) else {
            return Err(format!(
                "{method} {path}: outside {} (its paths start with {})",
                self.0.name, self.0.base
            ));
        };
        let paths = self.0.doc["paths"]
            .as_object()
            .ok_or("the description has no paths")?;
        let best = paths
            .iter()
            .filter_map(|(template, item)| {
                let (score, captured) = match_template(template, relative)?;
                Some((score, template, item, captured))
            })
            .max_by_key(|(score, ..)| *score);
        let Some((_, template, item, captured)) = best else {
            return Err(format!(
                "{method} {path}: no path of {} matches it (a wrong path, or an endpoint that does not exist)",
                self.0.name
            ));
        };
        let Some(op) = item.get(method.to_lowercase()) else {
            let methods: Vec<String> = ["get", "put", "post", "delete", "patch", "head"]
                .into_iter()
                .filter(|m| item.get(m).is_some())
                .map(str::to_uppercase)
                .collect();
            return Err(format!(
                "{method} {path}: {} has no {method} on {template} (it has {})",
                self.0.name,
                methods.join(", ")
            ));
        };
        Ok(Operation {
            template,
            item,
            op,
            captured,
        })
    }

    /// The operation's parameters (the path item's, overridden by its own).
    fn parameters(&self, operation: &Operation) -> Vec<Value> {
        let validator = self.validator();
        let mut by_key: BTreeMap<(String, String), Value> = BTreeMap::new();
        for list in [&operation.item["parameters"], &operation.op["parameters"]] {
            for parameter in list.as_array().into_iter().flatten() {
                let parameter = validator.resolve(parameter).clone();
                let key = (
                    parameter["in"].as_str().unwrap_or("").to_owned(),
                    parameter["name"].as_str().unwrap_or("").to_owned(),
                );
                by_key.insert(key, parameter);
            }
        }
        by_key.into_values().collect()
    }

    /// A parameter's schema: `schema` (OpenAPI 3), or the parameter itself
    /// (Swagger 2.0's non-body parameters).
    fn parameter_schema(&self, parameter: &Value) -> Value {
        match parameter.get("schema") {
            Some(schema) => schema.clone(),
            None => {
                let mut schema = parameter.as_object().cloned().unwrap_or_default();
                for key in ["name", "in", "required", "description", "collectionFormat"] {
                    schema.remove(key);
                }
                Value::Object(schema)
            }
        }
    }

    fn check_parameters(&self, operation: &Operation, query: &str) -> Vec<String> {
        let parameters = self.parameters(operation);
        let find = |place: &str, name: &str| {
            parameters
                .iter()
                .find(|p| p["in"] == place && p["name"] == name)
        };
        let mut problems = Vec::new();
        for (name, raw) in &operation.captured {
            if let Some(parameter) = find("path", name) {
                problems.extend(self.check_value(
                    parameter,
                    std::slice::from_ref(raw),
                    "path parameter",
                ));
            }
        }
        let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            given.entry(decode(name)).or_default().push(decode(value));
        }
        for (name, values) in &given {
            match find("query", name) {
                Some(parameter) => {
                    problems.extend(self.check_value(parameter, values, "query parameter"))
                }
                None => {
                    let declared: Vec<&str> = parameters
                        .iter()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str())
                        .collect();
                    problems.push(format!(
                        "query parameter `{name}` is not declared (the operation takes: {})",
                        if declared.is_empty() {
                            "none".to_owned()
                        } else {
                            declared.join(", ")
                        }
                    ));
                }
            }
        }
        for parameter in parameters
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
        {
            let name = parameter["name"].as_str().unwrap_or("");
            if !given.contains_key(name) {
                problems.push(format!("missing required query parameter `{name}`"));
            }
        }
        problems
    }

    /// A parameter's values (strings off the wire) read as its schema's type.
    fn check_value(&self, parameter: &Value, raw: &[String], what: &str) -> Vec<String> {
        let validator = self.validator();
        let schema = self.parameter_schema(parameter);
        let resolved = validator.resolve(&schema).clone();
        let name = parameter["name"].as_str().unwrap_or("");
        let value = if resolved["type"] == "array" {
            let item = validator.resolve(&resolved["items"]).clone();
            Value::Array(
                raw.iter()
                    .flat_map(|r| r.split(','))
                    .map(|r| typed(&item, r))
                    .collect(),
            )
        } else if raw.len() > 1 {
            return vec![format!("{what} `{name}` is given {} times", raw.len())];
        } else {
            typed(&resolved, &raw[0])
        };
        validator
            .validate(&schema, &value, &format!("{what} {name}"))
            .iter()
            .map(Violation::to_string)
            .collect()
    }

    /// The JSON body's schema and whether a body is required.
    fn body_schema(&self, operation: &Operation) -> Option<(Value, bool)> {
        let validator = self.validator();
        if let Some(body) = operation.op.get("requestBody") {
            let body = validator.resolve(body);
            let schema = json_content(&body["content"])?.get("schema")?.clone();
            return Some((schema, body["required"] == true));
        }
        self.parameters(operation)
            .into_iter()
            .find(|p| p["in"] == "body")
            .map(|p| (p["schema"].clone(), p["required"] == true))
    }

    fn check_body(&self, operation: &Operation, body: Option<&Value>) -> Vec<String> {
        match (self.body_schema(operation), body) {
            (None, None) => vec![],
            (None, Some(_)) => {
                vec!["the operation takes no request body, and one was sent".to_owned()]
            }
            (Some((_, true)), None) => {
                vec!["the operation requires a JSON body, and none was sent".to_owned()]
            }
            (Some(_), None) => vec![],
            (Some((schema, _)), Some(body)) => self
                .validator()
                .validate(&schema, body, "body")
                .iter()
                .map(Violation::to_string)
                .collect(),
        }
    }

    /// The schema of the answer with `status` (None: no body), or why the
    /// description has no such answer.
    fn response_schema(&self, operation: &Operation, status: u16) -> Result<Option<Value>, String> {
        let responses = operation.op["responses"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let range = format!("{}XX", status / 100);
        let found = [status.to_string(), range, "default".to_owned()]
            .into_iter()
            .find_map(|key| responses.get(&key));
        let Some(response) = found else {
            if let (Some(schema), true) = (&self.0.error_schema, status >= 400) {
                return Ok(Some(schema.clone()));
            }
            let listed: Vec<&String> = responses.keys().collect();
            return Err(format!(
                "answer: status {status} is not one the operation gives (it lists {listed:?})"
            ));
        };
        let validator = self.validator();
        let response = validator.resolve(response);
        Ok(match self.0.dialect {
            Dialect::Swagger2 => response.get("schema").cloned(),
            _ => json_content(&response["content"]).and_then(|c| c.get("schema").cloned()),
        })
    }

    /// A minimal answer the description allows (its required fields, each
    /// with a plain value), with `patch` merged over it: a fake's answer that
    /// is complete by construction and says only what its test is about.
    pub fn answer(&self, method: &str, target: &str, status: u16, patch: Value) -> String {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let operation = self
            .operation(method, path)
            .unwrap_or_else(|problem| panic!("{problem}"));
        let schema = self
            .response_schema(&operation, status)
            .unwrap_or_else(|problem| panic!("{method} {target}: {problem}"))
            .unwrap_or(Value::Null);
        if schema.is_null() {
            return if patch.is_null() {
                String::new()
            } else {
                patch.to_string()
            };
        }
        self.complete(&schema, patch).to_string()
    }

    /// `patch` with what `schema` requires filled in around it, in every
    /// object it holds (list items included); a `oneOf`/`anyOf` branch is the
    /// first one the completed value satisfies.
    pub fn complete(&self, schema: &Value, patch: Value) -> Value {
        let validator = self.validator();
        let schema = validator.resolve(schema);
        match patch {
            Value::Object(fields) => {
                let branches = schema["oneOf"].as_array().or(schema["anyOf"].as_array());
                if let Some(branches) = branches {
                    let patch = Value::Object(fields);
                    let candidates = branches
                        .iter()
                        .map(|b| (b, self.complete(b, patch.clone())));
                    let mut candidates: Vec<(&Value, Value)> = candidates.collect();
                    let valid = candidates
                        .iter()
                        .position(|(b, c)| validator.validate(b, c, "").is_empty());
                    return candidates.swap_remove(valid.unwrap_or(0)).1;
                }
                let mut base = match self.example(schema, 0) {
                    Value::Object(base) => base,
                    _ => Map::new(),
                };
                for (key, value) in fields {
                    let filled = match property_schema(&validator, schema, &key) {
                        Some(property) if !value.is_null() => self.complete(property, value),
                        _ => value,
                    };
                    base.insert(key, filled);
                }
                Value::Object(base)
            }
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|item| self.complete(&schema["items"], item))
                    .collect(),
            ),
            other => other,
        }
    }

    /// A minimal instance of `schema` for an answer: required fields only.
    pub fn example(&self, schema: &Value, depth: usize) -> Value {
        let validator = self.validator();
        let schema = validator.resolve(schema);
        if depth > 30 || schema.is_null() {
            return Value::Null;
        }
        if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
            return first.clone();
        }
        if let Some(branches) = schema["allOf"].as_array() {
            let mut merged = Value::Object(Map::new());
            for branch in branches {
                merge(&mut merged, self.example(branch, depth + 1));
            }
            return merged;
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(first) = schema[keyword].as_array().and_then(|b| b.first()) {
                return self.example(first, depth + 1);
            }
        }
        match schema["type"].as_str().unwrap_or("object") {
            "string" => Value::from(match schema["format"].as_str() {
                Some("date-time") => "2026-01-01T00:00:00Z",
                Some("date") => "2026-01-01",
                Some("uri") => "https://example.com/",
                Some("email") => "dev@example.com",
                _ => "",
            }),
            "integer" | "number" => {
                Value::from(schema["minimum"].as_i64().unwrap_or(0).max(0) as u64)
            }
            "boolean" => Value::Bool(false),
            "array" if schema["minItems"].as_u64().unwrap_or(0) > 0 => {
                Value::Array(vec![self.example(&schema["items"], depth + 1)])
            }
            "array" => Value::Array(vec![]),
            _ => {
                let mut object = Map::new();
                for name in schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let property = &schema["properties"][name];
                    let nullable = validator.resolve(property)["nullable"] == true;
                    let value = if nullable {
                        Value::Null
                    } else {
                        self.example(property, depth + 1)
                    };
                    object.insert(name.to_owned(), value);
                }
                Value::Object(object)
            }
        }
    }

    /// Every violation of one exchange a fake saw (bodies as sent; an empty
    /// body is none).
    pub fn check_exchange(
        &self,
        method: &str,
        target: &str,
        request_body: &str,
        status: u16,
        answer_body: &str,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let request_json = match request_body.trim() {
            "" => None,
            text => match serde_json::from_str::<Value>(text) {
                Ok(value) => Some(value),
                Err(e) => {
                    problems.push(format!(
                        "{method} {target}: the request body is not JSON: {e}"
                    ));
                    return problems;
                }
            },
        };
        problems.extend(
            self.check_request(method, target, request_json.as_ref())
                .err(),
        );
        let answer = match answer_body.trim() {
            "" => Value::Null,
            text => serde_json::from_str(text).unwrap_or_else(|e| {
                problems.push(format!(
                    "{method} {target}: the fake's answer is not JSON: {e}"
                ));
                Value::Null
            }),
        };
        if problems.is_empty() {
            problems.extend(self.check_response(method, target, status, &answer).err());
        }
        problems
    }
}

/// Last path parameters that hold slashes as sent: GitHub's `{path}` (a file
/// in contents) and `{ref}` (`heads/main` in the git refs API), as its docs'
/// examples send them.
const SLASHED: &[&str] = &["path", "ref"];

/// The schema of property `name` of an object schema (its own, an `allOf`
/// branch's, or `additionalProperties`).
fn property_schema<'s>(
    validator: &'s Validator,
    schema: &'s Value,
    name: &str,
) -> Option<&'s Value> {
    let schema = validator.resolve(schema);
    if let Some(property) = schema["properties"].get(name) {
        return Some(property);
    }
    let from_branches = schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|branch| property_schema(validator, branch, name));
    from_branches.or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Literal segments matched, and whether no parameter took several segments.
type Score = (usize, bool);

/// How well `template` matches `path`: (literal segments, no greedy tail),
/// and the path parameters, decoded.
fn match_template(template: &str, path: &str) -> Option<(Score, Vec<(String, String)>)> {
    let wanted: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let given: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut captured = Vec::new();
    let mut literals = 0;
    for (index, segment) in wanted.iter().enumerate() {
        let last = index + 1 == wanted.len();
        let parameter = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        match parameter {
            Some(name) if last && given.len() > wanted.len() && SLASHED.contains(&name) => {
                captured.push((name.to_owned(), decode(&given[index..].join("/"))));
                return Some(((literals, false), captured));
            }
            Some(name) => {
                let value = given.get(index).filter(|v| !v.is_empty())?;
                captured.push((name.to_owned(), decode(value)));
            }
            None if given.get(index) == Some(segment) => literals += 1,
            None => return None,
        }
    }
    (given.len() == wanted.len()).then_some(((literals, true), captured))
}

fn json_content(content: &Value) -> Option<&Value> {
    let content = content.as_object()?;
    content.get("application/json").or_else(|| {
        content
            .iter()
            .find(|(kind, _)| kind.contains("json"))
            .map(|(_, v)| v)
    })
}

/// A wire string as the schema's scalar type (left a string when it is not one).
fn typed(schema: &Value, raw: &str) -> Value {
    match schema["type"].as_str() {
        Some("integer") => raw
            .parse::<i64>()
            .map_or_else(|_| Value::from(raw), Value::from),
        Some("number") => raw
            .parse::<f64>()
            .map_or_else(|_| Value::from(raw), Value::from),
        Some("boolean") => raw
            .parse::<bool>()
            .map_or_else(|_| Value::from(raw), Value::from),
        _ => Value::from(raw),
    }
}

/// Percent-decoding (and `+` as a space, as in a query).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len()
                && hex(bytes[index + 1]).is_some()
                && hex(bytes[index + 2]).is_some() =>
            {
                out.push(hex(bytes[index + 1]).unwrap() * 16 + hex(bytes[index + 2]).unwrap());
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// `patch` over `base`: objects merged key by key, anything else replaced.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}
