//! A stateful fake of GitHub's REST API over real TCP (on [`FakeHttp`]), for
//! `setup` and `doctor`: what one writes the other reads back. It enforces
//! what bit real forks:
//!
//! - secrets are write-only: listing gives names; a value is stored sealed,
//!   and only the test can open it ([`FakeGitHub::secret`], with the fake's
//!   own private key), so a test asserts the stored value is the right key;
//! - an author cannot approve their own pull request ([`FakeGitHub::approve`]);
//! - a ruleset refuses pushes except from its bypass actors ([`FakeGitHub::push`]),
//!   and a merge needs what the main ruleset asks ([`FakeGitHub::merge`]);
//! - an environment refuses jobs from branches its policy does not allow
//!   ([`FakeGitHub::run_job`]).
//!
//! Every request and every answer goes through one function, `exchange`:
//! its 2xx answers are completed from GitHub's OpenAPI description
//! (`contract::github_answer`), and the server is `FakeHttp::start_github`,
//! which checks every request and answer against that description and fails
//! the test on a violation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Answer, FakeHttp, Request, contract};

/// The app behind every workflow's GITHUB_TOKEN.
pub const GITHUB_ACTIONS_APP_ID: i64 = 15368;

/// Who pushes.
pub enum Actor<'a> {
    User(&'a str),
    /// A deploy key, by its public key line.
    DeployKey(&'a str),
    GitHubActions,
}

/// The fork's state, as GitHub holds it.
pub struct State {
    pub owner: String,
    pub name: String,
    pub owner_type: String,
    /// The repository's visibility (a new fork of a public repository is public).
    pub private: bool,
    pub user: (String, i64),
    pub token: String,
    pub actions_enabled: bool,
    pub fork_approval: Option<String>,
    pub environments: BTreeMap<String, Value>,
    /// Per environment: (id, name, type).
    pub branch_policies: BTreeMap<String, Vec<(i64, String, String)>>,
    /// (scope, name) → sealed value; scope `repo` or `env:<name>`.
    pub secrets: BTreeMap<(String, String), Vec<u8>>,
    pub variables: BTreeMap<(String, String), String>,
    pub labels: Vec<String>,
    pub keys: Vec<Value>,
    pub rulesets: Vec<Value>,
    pub runners: Vec<Value>,
    /// image → visibility
    pub packages: BTreeMap<String, String>,
    /// Answer 500 to every request whose "METHOD path" starts with this.
    pub fail: Option<String>,
    /// Answer 403 to every request whose "METHOD path" starts with this.
    pub forbid: Option<String>,
    next_id: i64,
}

pub struct FakeGitHub {
    pub http: FakeHttp,
    pub state: Arc<Mutex<State>>,
    secret_key: Arc<crypto_box::SecretKey>,
}

impl FakeGitHub {
    /// A new fork `owner/name` of a user `owner` (id 1001), nothing set up:
    /// Actions off, as GitHub leaves a new fork.
    pub fn start(owner: &str, name: &str, token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            owner: owner.into(),
            name: name.into(),
            owner_type: "User".into(),
            private: false,
            user: (owner.into(), 1001),
            token: token.into(),
            actions_enabled: false,
            fork_approval: Some("first_time_contributors".into()),
            environments: BTreeMap::new(),
            branch_policies: BTreeMap::new(),
            secrets: BTreeMap::new(),
            variables: BTreeMap::new(),
            labels: vec!["bug".into()],
            keys: Vec::new(),
            rulesets: Vec::new(),
            runners: Vec::new(),
            packages: BTreeMap::new(),
            fail: None,
            forbid: None,
            next_id: 100,
        }));
        let secret_key = Arc::new(crypto_box::SecretKey::generate(
            &mut crypto_box::aead::OsRng,
        ));
        let (shared, key) = (state.clone(), secret_key.clone());
        let http = FakeHttp::start_github(move |request, _| {
            exchange(&mut shared.lock().unwrap(), &key, request)
        });
        Self {
            http,
            state,
            secret_key,
        }
    }

    pub fn url(&self) -> String {
        self.http.url()
    }

    /// "METHOD target" of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.http
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }

    /// The requests that were not reads.
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| !r.starts_with("GET "))
            .collect()
    }

    /// A secret's value, opened with the fake's private key (GitHub's API never returns it).
    pub fn secret(&self, scope: &str, name: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        let sealed = state.secrets.get(&(scope.to_owned(), name.to_owned()))?;
        let opened = self
            .secret_key
            .unseal(sealed)
            .expect("sealed to the fake's key");
        Some(String::from_utf8(opened).unwrap())
    }

    pub fn variable(&self, scope: &str, name: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        state
            .variables
            .get(&(scope.to_owned(), name.to_owned()))
            .cloned()
    }

    /// What `cargo xtask cluster up` writes, and a runner and public package: the rest of a ready fork.
    pub fn cluster_up(&self, argocd_server: &str) {
        let mut state = self.state.lock().unwrap();
        let repo = |n: &str| ("repo".to_owned(), n.to_owned());
        state
            .variables
            .insert(repo("ARGOCD_SERVER"), argocd_server.into());
        state
            .variables
            .insert(repo("INGRESS_URL"), "http://127.0.0.1:8081".into());
        for (env, name) in [
            ("preview", "ARGOCD_PREVIEW_TOKEN"),
            ("preprod", "ARGOCD_PREPROD_TOKEN"),
            ("prod", "ARGOCD_AUTH_TOKEN"),
        ] {
            state.secrets.insert(
                (format!("env:{env}"), name.into()),
                b"sealed elsewhere".to_vec(),
            );
        }
        state.runners = vec![json!({
            "id": 1, "name": "laptop", "os": "linux", "status": "online", "busy": false,
            "ephemeral": true,
            "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}, {"id": 2, "name": "kind", "type": "custom"}]
        })];
        state
            .packages
            .insert("service-demo".into(), "public".into());
    }

    /// A push of `reference` by `actor`: refused by an active ruleset covering
    /// it unless the actor is one of its bypass actors.
    pub fn push(&self, actor: Actor, reference: &str) -> Result<(), String> {
        let state = self.state.lock().unwrap();
        for ruleset in state
            .rulesets
            .iter()
            .filter(|r| r["enforcement"] == "active")
        {
            if !covers(ruleset, reference) || bypasses(&state, ruleset, &actor) {
                continue;
            }
            return Err(format!(
                "refused by ruleset {}: {reference} is protected",
                ruleset["name"]
            ));
        }
        Ok(())
    }

    /// A review approving `author`'s pull request by `reviewer`.
    pub fn approve(&self, author: &str, reviewer: &str) -> Result<(), String> {
        if author == reviewer {
            return Err("Can not approve your own pull request".into());
        }
        Ok(())
    }

    /// Merging a pull request into main: what main's rulesets ask (approvals by others, checks).
    pub fn merge(&self, approvals: usize, passed_checks: &[&str]) -> Result<(), String> {
        let state = self.state.lock().unwrap();
        for ruleset in state
            .rulesets
            .iter()
            .filter(|r| covers(r, "refs/heads/main"))
        {
            for rule in ruleset["rules"].as_array().into_iter().flatten() {
                let parameters = &rule["parameters"];
                if rule["type"] == "pull_request" {
                    let wanted = parameters["required_approving_review_count"]
                        .as_u64()
                        .unwrap_or(0) as usize;
                    if approvals < wanted {
                        return Err(format!("{wanted} approving review(s) required"));
                    }
                }
                if rule["type"] == "required_status_checks" {
                    for check in parameters["required_status_checks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let context = check["context"].as_str().unwrap_or_default();
                        if !passed_checks.contains(&context) {
                            return Err(format!(
                                "required status check {context:?} has not passed"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A job of `branch`'s workflow that names `environment`.
    pub fn run_job(&self, environment: &str, branch: &str) -> Result<(), String> {
        let state = self.state.lock().unwrap();
        let Some(found) = state.environments.get(environment) else {
            // GitHub makes a missing environment on first use, open to every branch.
            return Ok(());
        };
        if found["deployment_branch_policy"]["custom_branch_policies"] != true {
            return Ok(());
        }
        let allowed = state
            .branch_policies
            .get(environment)
            .into_iter()
            .flatten()
            .any(|(_, name, kind)| kind == "branch" && name == branch);
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "Branch \"{branch}\" is not allowed to deploy to {environment} due to environment protection rules."
            ))
        }
    }
}

/// Whether an active ruleset's conditions include `reference`.
fn covers(ruleset: &Value, reference: &str) -> bool {
    let includes = ruleset["conditions"]["ref_name"]["include"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ruleset["enforcement"] == "active"
        && includes.iter().filter_map(Value::as_str).any(|pattern| {
            pattern == reference
                || (pattern == "~DEFAULT_BRANCH" && reference == "refs/heads/main")
                || pattern == "~ALL"
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| reference.starts_with(prefix))
        })
}

fn bypasses(state: &State, ruleset: &Value, actor: &Actor) -> bool {
    ruleset["bypass_actors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|bypass| match actor {
            Actor::DeployKey(key) => {
                bypass["actor_type"] == "DeployKey"
                    && state.keys.iter().any(|k| {
                        k["read_only"] == false
                            && k["key"].as_str().is_some_and(|k| key.starts_with(k))
                    })
            }
            Actor::GitHubActions => {
                bypass["actor_type"] == "Integration" && bypass["actor_id"] == GITHUB_ACTIONS_APP_ID
            }
            Actor::User(_) => false,
        })
}

/// The one function every request and answer passes through: a success's
/// answer is what the test's state says, completed to what GitHub's
/// description requires (the server checks both against it).
fn exchange(state: &mut State, key: &crypto_box::SecretKey, request: &Request) -> Answer {
    let (status, headers, body) = answer(state, key, request);
    if !(200..300).contains(&status) {
        return (status, headers, body);
    }
    let patch: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let body = contract::github_answer(&request.method, &request.target, status, patch);
    (status, headers, body)
}

fn reply(status: u16, body: Value) -> Answer {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    (status, vec![], text)
}

fn not_found() -> Answer {
    reply(
        404,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

// long: one match arm per endpoint the fake serves, as GitHub routes them.
fn answer(state: &mut State, key: &crypto_box::SecretKey, request: &Request) -> Answer {
    if request.headers.get("authorization") != Some(&format!("Bearer {}", state.token)) {
        return reply(401, json!({"message": "Bad credentials"}));
    }
    let path = request
        .target
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let line = format!("{} {path}", request.method);
    if state
        .fail
        .as_ref()
        .is_some_and(|f| line.starts_with(f.as_str()))
    {
        return reply(500, json!({"message": "Server Error"}));
    }
    if state
        .forbid
        .as_ref()
        .is_some_and(|f| line.starts_with(f.as_str()))
    {
        return reply(
            403,
            json!({"message": "Resource not accessible by personal access token"}),
        );
    }
    let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
    let method = request.method.as_str();
    if path == "/user" && method == "GET" {
        return reply(
            200,
            json!({"login": state.user.0, "id": state.user.1, "type": "User"}),
        );
    }
    let user_packages = format!("/users/{}/packages/container/", state.owner);
    if let Some(image) = path.strip_prefix(&user_packages) {
        return match state.packages.get(image) {
            Some(visibility) => reply(
                200,
                json!({"id": 1, "name": image, "package_type": "container", "visibility": visibility}),
            ),
            None => not_found(),
        };
    }
    let prefix = format!("/repos/{}/{}", state.owner, state.name);
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found();
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", []) => reply(
            200,
            json!({
                "id": 1, "name": state.name, "full_name": format!("{}/{}", state.owner, state.name),
                "private": state.private, "owner": {"login": state.owner, "type": state.owner_type},
                "permissions": {"admin": true, "push": true, "pull": true}
            }),
        ),
        ("GET", ["actions", "permissions"]) => reply(
            200,
            json!({"enabled": state.actions_enabled, "allowed_actions": "all"}),
        ),
        ("PUT", ["actions", "permissions"]) => {
            state.actions_enabled = body["enabled"] == true;
            reply(204, Value::Null)
        }
        ("GET", ["actions", "permissions", "fork-pr-contributor-approval"]) => {
            match &state.fork_approval {
                Some(policy) => reply(200, json!({"approval_policy": policy})),
                None => not_found(),
            }
        }
        ("PUT", ["actions", "permissions", "fork-pr-contributor-approval"]) => {
            state.fork_approval = body["approval_policy"].as_str().map(str::to_owned);
            reply(204, Value::Null)
        }
        ("GET", ["actions", "runners"]) => reply(
            200,
            json!({"total_count": state.runners.len(), "runners": state.runners}),
        ),
        ("GET", ["branches", _, "protection"]) => not_found(),
        (_, ["actions", kind @ ("secrets" | "variables"), tail @ ..]) => {
            store(state, key, method, "repo".into(), kind, tail, &body)
        }
        (
            _,
            [
                "environments",
                env,
                kind @ ("secrets" | "variables"),
                tail @ ..,
            ],
        ) => {
            if !state.environments.contains_key(*env) {
                return not_found();
            }
            store(state, key, method, format!("env:{env}"), kind, tail, &body)
        }
        (_, ["environments", env, "deployment-branch-policies", tail @ ..]) => {
            branch_policy(state, method, env, tail, &body)
        }
        ("GET", ["environments", env]) => match state.environments.get(*env) {
            Some(found) => reply(200, found.clone()),
            None => not_found(),
        },
        ("PUT", ["environments", env]) => {
            let environment = environment(state, env, &body);
            state
                .environments
                .insert(env.to_string(), environment.clone());
            reply(200, environment)
        }
        ("GET", ["labels", name]) => match state.labels.iter().any(|l| l == name) {
            true => reply(
                200,
                json!({"id": 1, "name": name, "color": "1d76db", "default": false}),
            ),
            false => not_found(),
        },
        ("POST", ["labels"]) => {
            state
                .labels
                .push(body["name"].as_str().unwrap_or_default().to_owned());
            reply(
                201,
                json!({"id": 2, "name": body["name"], "color": body["color"], "default": false}),
            )
        }
        ("GET", ["keys"]) => reply(200, Value::from(state.keys.clone())),
        ("POST", ["keys"]) => {
            let key_only: Vec<&str> = body["key"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .take(2)
                .collect();
            state.next_id += 1;
            let created = json!({"id": state.next_id, "key": key_only.join(" "), "title": body["title"],
                "read_only": body["read_only"] == true, "verified": true});
            state.keys.push(created.clone());
            reply(201, created)
        }
        ("DELETE", ["keys", id]) => {
            state
                .keys
                .retain(|k| k["id"].as_i64().map(|i| i.to_string()).as_deref() != Some(*id));
            reply(204, Value::Null)
        }
        (_, ["rulesets", tail @ ..]) => rulesets(state, method, tail, &body),
        _ => not_found(),
    }
}

/// An environment as GitHub answers it, from a PUT's body.
fn environment(state: &mut State, name: &str, body: &Value) -> Value {
    state.next_id += 1;
    let mut rules = Vec::new();
    if let Some(reviewers) = body["reviewers"].as_array().filter(|r| !r.is_empty()) {
        let listed: Vec<Value> = reviewers
            .iter()
            .map(|r| json!({"type": "User", "reviewer": {"login": state.user.0, "id": r["id"]}}))
            .collect();
        rules.push(json!({"id": 1, "type": "required_reviewers",
            "prevent_self_review": body["prevent_self_review"] == true, "reviewers": listed}));
    }
    if !body["deployment_branch_policy"].is_null() {
        rules.push(json!({"id": 2, "type": "branch_policy"}));
    }
    json!({"id": state.next_id, "name": name, "deployment_branch_policy": body["deployment_branch_policy"],
        "protection_rules": rules})
}

/// Secrets (write-only) and variables of one scope.
fn store(
    state: &mut State,
    key: &crypto_box::SecretKey,
    method: &str,
    scope: String,
    kind: &str,
    tail: &[&str],
    body: &Value,
) -> Answer {
    let listed = |state: &State| -> Vec<Value> {
        if kind == "secrets" {
            state.secrets.keys().filter(|(s, _)| *s == scope)
                .map(|(_, n)| json!({"name": n, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}))
                .collect()
        } else {
            state.variables.iter().filter(|((s, _), _)| *s == scope)
                .map(|((_, n), v)| json!({"name": n, "value": v, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}))
                .collect()
        }
    };
    match (method, kind, tail) {
        ("GET", _, []) => {
            let items = listed(state);
            reply(200, json!({"total_count": items.len(), kind: items}))
        }
        ("GET", "secrets", ["public-key"]) => {
            let public =
                base64::engine::general_purpose::STANDARD.encode(key.public_key().as_bytes());
            reply(
                200,
                json!({"key_id": format!("{scope}-key"), "key": public}),
            )
        }
        ("PUT", "secrets", [name]) => {
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(body["encrypted_value"].as_str().unwrap_or_default());
            let opens = sealed.as_ref().is_ok_and(|s| key.unseal(s).is_ok());
            if !opens || body["key_id"] != format!("{scope}-key") {
                return reply(
                    422,
                    json!({"message": "Bad request: the value is not sealed to this key"}),
                );
            }
            let new = state
                .secrets
                .insert((scope, name.to_string()), sealed.unwrap())
                .is_none();
            reply(
                if new { 201 } else { 204 },
                if new { json!({}) } else { Value::Null },
            )
        }
        ("GET", _, [name]) => {
            let item = listed(state).into_iter().find(|i| i["name"] == *name);
            item.map_or_else(not_found, |i| reply(200, i))
        }
        ("POST", "variables", []) => {
            let name = body["name"].as_str().unwrap_or_default().to_owned();
            if state.variables.contains_key(&(scope.clone(), name.clone())) {
                return reply(409, json!({"message": "Already exists"}));
            }
            state.variables.insert(
                (scope, name),
                body["value"].as_str().unwrap_or_default().into(),
            );
            reply(201, json!({}))
        }
        ("PATCH", "variables", [name]) => {
            let slot = (scope, name.to_string());
            if !state.variables.contains_key(&slot) {
                return not_found();
            }
            state
                .variables
                .insert(slot, body["value"].as_str().unwrap_or_default().into());
            reply(204, Value::Null)
        }
        _ => not_found(),
    }
}

fn branch_policy(
    state: &mut State,
    method: &str,
    env: &str,
    tail: &[&str],
    body: &Value,
) -> Answer {
    if !state.environments.contains_key(env) {
        return not_found();
    }
    let policies = state.branch_policies.entry(env.to_owned()).or_default();
    match (method, tail) {
        ("GET", []) => {
            let listed: Vec<Value> = policies
                .iter()
                .map(|(id, name, kind)| json!({"id": id, "name": name, "type": kind}))
                .collect();
            reply(
                200,
                json!({"total_count": listed.len(), "branch_policies": listed}),
            )
        }
        ("POST", []) => {
            state.next_id += 1;
            let id = state.next_id;
            let (name, kind) = (
                body["name"].as_str().unwrap_or_default(),
                body["type"].as_str().unwrap_or("branch"),
            );
            state
                .branch_policies
                .get_mut(env)
                .unwrap()
                .push((id, name.into(), kind.into()));
            reply(200, json!({"id": id, "name": name, "type": kind}))
        }
        ("DELETE", [id]) => {
            policies.retain(|(i, _, _)| i.to_string() != *id);
            reply(204, Value::Null)
        }
        _ => not_found(),
    }
}

fn rulesets(state: &mut State, method: &str, tail: &[&str], body: &Value) -> Answer {
    let full = |ruleset: &Value, state: &State| {
        let mut ruleset = ruleset.clone();
        ruleset["source_type"] = json!("Repository");
        ruleset["source"] = json!(format!("{}/{}", state.owner, state.name));
        ruleset
    };
    match (method, tail) {
        ("GET", []) => {
            let listed: Vec<Value> = state.rulesets.iter().map(|r| json!({
                "id": r["id"], "name": r["name"], "target": r["target"], "enforcement": r["enforcement"],
                "source_type": "Repository", "source": format!("{}/{}", state.owner, state.name)
            })).collect();
            reply(200, Value::from(listed))
        }
        ("POST", []) => {
            if state.rulesets.iter().any(|r| r["name"] == body["name"]) {
                return reply(422, json!({"message": "Name must be unique"}));
            }
            state.next_id += 1;
            let mut created = body.clone();
            created["id"] = json!(state.next_id);
            state.rulesets.push(created.clone());
            reply(201, full(&created, state))
        }
        ("GET", [id]) => match state
            .rulesets
            .iter()
            .find(|r| r["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(*id))
        {
            Some(found) => reply(200, full(found, state)),
            None => not_found(),
        },
        ("PUT", [id]) => {
            let Some(found) = state
                .rulesets
                .iter_mut()
                .find(|r| r["id"].as_i64().map(|i| i.to_string()).as_deref() == Some(*id))
            else {
                return not_found();
            };
            let id = found["id"].clone();
            *found = body.clone();
            found["id"] = id;
            let updated = found.clone();
            reply(200, full(&updated, state))
        }
        _ => not_found(),
    }
}
