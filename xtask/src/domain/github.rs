//! The GitHub REST calls the pipeline makes (releases, pull
//! requests' state for previews, a fork's settings for `doctor`, and the
//! writes `setup` makes: secrets, variables, environments, rulesets).
//!
//! Settings are the ones Actions provides: `GITHUB_API_URL`, `GITHUB_REPOSITORY`
//! and a token (`GITHUB_TOKEN`); on a laptop, [`GitHub::for_fork`] reads the
//! repository from `origin` and the token from `gh auth token`. The token is
//! sent only as a header and never printed.
//!
//! Every write (PUT, PATCH, POST, DELETE) goes through one function, which
//! records it with secret values masked as `***`; in dry-run mode it only
//! records, so `--dry-run` prints exactly what a real run would send.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::plumbing::http;

// Writing a secret (sealed with libsodium's box, what GitHub decrypts): `setup` and `cluster up`
// only, so not in the cluster jobs' build (Cargo.toml's feature `full`) nor its crypto_box.
#[cfg(feature = "full")]
mod secrets;

pub struct GitHub {
    client: Client,
    api: String,
    repository: String,
    token: String,
    /// Writes are recorded and not sent.
    dry_run: bool,
    /// Every write made (or, in dry-run mode, that would be made), secrets masked.
    writes: Mutex<Vec<Write>>,
}

/// One write request, as `--dry-run` prints it: secret values are `***`.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub method: String,
    /// The API path (`/repos/{owner}/{repo}/…`).
    pub path: String,
    pub body: Option<Value>,
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(body) = &self.body {
            write!(f, " {body}")?;
        }
        Ok(())
    }
}

/// Where a secret or variable lives: the repository or one of its environments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    Repository,
    Environment(&'a str),
}

impl Scope<'_> {
    /// The path below `/repos/{owner}/{repo}` that holds `kind` (`secrets` or `variables`).
    fn base(&self, kind: &str) -> String {
        match self {
            Scope::Repository => format!("/actions/{kind}"),
            Scope::Environment(name) => format!("/environments/{name}/{kind}"),
        }
    }
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Repository => write!(f, "repository"),
            Scope::Environment(name) => write!(f, "environment {name}"),
        }
    }
}

/// What a create-or-update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl GitHub {
    /// From the environment Actions sets; None when there is no token or repository.
    pub fn from_env() -> Result<Option<Self>> {
        let (Ok(token), Ok(repository)) = (
            std::env::var("GITHUB_TOKEN"),
            std::env::var("GITHUB_REPOSITORY"),
        ) else {
            return Ok(None);
        };
        let api =
            std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
        Self::new(&api, &repository, token).map(Some)
    }

    pub fn new(api: &str, repository: &str, token: String) -> Result<Self> {
        if repository.split('/').count() != 2 {
            bail!("GITHUB_REPOSITORY={repository:?} should be <owner>/<name>");
        }
        Ok(Self {
            client: http::client(http::TIMEOUT)?,
            api: api.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            token,
            dry_run: false,
            writes: Mutex::new(Vec::new()),
        })
    }

    /// A fork as a person at its clone sees it: the repository from the
    /// clone's `origin` (GITHUB_REPOSITORY, when set, wins), the token from
    /// GITHUB_TOKEN or else `gh auth token`, the API from GITHUB_API_URL.
    pub fn for_fork(clone: &Path) -> Result<Self> {
        let repository = match std::env::var("GITHUB_REPOSITORY") {
            Ok(repository) if !repository.is_empty() => repository,
            _ => {
                let (owner, name) = origin_repository(clone)?;
                format!("{owner}/{name}")
            }
        };
        let api =
            std::env::var("GITHUB_API_URL").unwrap_or_else(|_| "https://api.github.com".into());
        Self::new(&api, &repository, token()?)
    }

    /// Dry-run mode: writes are recorded (see [`GitHub::writes`]) and not sent; reads still are.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Every write made so far (in dry-run mode: that would have been made), secrets masked.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("writes lock").clone()
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        self.client
            .request(method, url)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .bearer_auth(&self.token)
    }

    /// `owner/name` of the repository the calls are about.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// GET `/repos/<owner>/<name><path>`.
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}/repos/{}{path}", self.api, self.repository);
        self.get_url(&url)
    }

    /// GET `<api><path>` (a path outside the repository, e.g. `/users/<owner>/packages/…`);
    /// None when GitHub answers 404.
    pub fn get_optional(&self, path: &str) -> Result<Option<Value>> {
        let url = format!("{}{path}", self.api);
        let response = self
            .request(reqwest::Method::GET, &url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        json(response, &url).map(Some)
    }

    fn get_url(&self, url: &str) -> Result<Value> {
        let response = self
            .request(reqwest::Method::GET, url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        json(response, url)
    }

    /// POST a JSON body to `/repos/<owner>/<name><path>`.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/repos/{}{path}", self.api, self.repository);
        let response = self
            .request(reqwest::Method::POST, &url)
            .json(body)
            .send()
            .with_context(|| format!("POST {url}"))?;
        json(response, &url)
    }

    /// GET every page of `/repos/<owner>/<name><path>`, following `Link: rel="next"`,
    /// and return the items under `key` of each page.
    pub fn get_all(&self, path: &str, key: &str) -> Result<Vec<Value>> {
        let mut url = format!("{}/repos/{}{path}", self.api, self.repository);
        let mut items = Vec::new();
        loop {
            let response = self
                .request(reqwest::Method::GET, &url)
                .send()
                .with_context(|| format!("GET {url}"))?;
            let next = next_link(response.headers());
            let page = json(response, &url)?;
            items.extend(page[key].as_array().cloned().unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
    }
}

impl GitHub {
    /// `/repos/{owner}/{repo}<suffix>`, the path of something of this repository.
    pub fn repo_path(&self, suffix: &str) -> String {
        format!("/repos/{}{suffix}", self.repository)
    }

    /// PUT a JSON body to the API path `path` (e.g. `/repos/{owner}/{repo}/…`).
    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.write(Method::PUT, path, Some(body), Some(body))
    }

    /// PATCH a JSON body to the API path `path`.
    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.write(Method::PATCH, path, Some(body), Some(body))
    }

    /// POST a JSON body to the API path `path` (unlike [`GitHub::post`], not below the repository).
    pub fn post_to(&self, path: &str, body: &Value) -> Result<Value> {
        self.write(Method::POST, path, Some(body), Some(body))
    }

    /// DELETE the API path `path`.
    pub fn delete(&self, path: &str) -> Result<Value> {
        self.write(Method::DELETE, path, None, None)
    }

    /// The one function every write goes through: records it (`shown`, the body
    /// with secrets masked), then sends `body` unless in dry-run mode. An empty
    /// answer (204) is `null`; in dry-run mode the answer is `null`.
    fn write(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        shown: Option<&Value>,
    ) -> Result<Value> {
        self.writes.lock().expect("writes lock").push(Write {
            method: method.to_string(),
            path: path.to_owned(),
            body: shown.cloned(),
        });
        if self.dry_run {
            return Ok(Value::Null);
        }
        let url = format!("{}{path}", self.api);
        let mut request = self.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().with_context(|| format!("{method} {url}"))?;
        json(response, &format!("{method} {url}"))
    }

    /// Whether the secret `name` exists in `scope` (GitHub never returns a secret's value).
    pub fn secret_exists(&self, scope: Scope, name: &str) -> Result<bool> {
        let path = self.repo_path(&format!("{}/{name}", scope.base("secrets")));
        Ok(self.get_optional(&path)?.is_some())
    }

    /// The value of the variable `name` in `scope`, None when it does not exist.
    pub fn variable(&self, scope: Scope, name: &str) -> Result<Option<String>> {
        let path = self.repo_path(&format!("{}/{name}", scope.base("variables")));
        Ok(self
            .get_optional(&path)?
            .map(|v| v["value"].as_str().unwrap_or_default().to_owned()))
    }

    /// Create the variable `name` in `scope`, or update it when its value
    /// differs; sends nothing when it already holds `value`.
    pub fn set_variable(&self, scope: Scope, name: &str, value: &str) -> Result<Change> {
        let base = self.repo_path(&scope.base("variables"));
        let body = json!({"name": name, "value": value});
        Ok(match self.variable(scope, name)? {
            None => {
                self.post_to(&base, &body)?;
                Change::Created
            }
            Some(current) if current == value => Change::Unchanged,
            Some(_) => {
                self.patch(&format!("{base}/{name}"), &body)?;
                Change::Updated
            }
        })
    }
}

/// The token: GITHUB_TOKEN, else `gh auth token` (captured, never printed).
pub fn token() -> Result<String> {
    if let Ok(token) = std::env::var("GITHUB_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_owned());
    }
    let fix = "log in with `gh auth login` (or export GITHUB_TOKEN, a token of the fork's admin)";
    let output = std::process::Command::new("gh")
        .args(["auth", "token"])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("no GITHUB_TOKEN and `gh` is not installed: {fix}"))?;
    let token = String::from_utf8(output.stdout).unwrap_or_default();
    if !output.status.success() || token.trim().is_empty() {
        bail!("no GITHUB_TOKEN and `gh auth token` gave none: {fix}");
    }
    Ok(token.trim().to_owned())
}

/// `(owner, name)` of the GitHub repository a clone's `origin` names, as
/// configured (`remote.origin.url`, before any `insteadOf` rewrite).
pub fn origin_repository(clone: &Path) -> Result<(String, String)> {
    let output = std::process::Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(clone)
        .output()
        .context("running git")?;
    let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || url.is_empty() {
        bail!(
            "{} has no remote `origin`: clone your fork (gh repo clone <you>/service-demo), or              `git remote add origin https://github.com/<you>/service-demo.git`",
            clone.display()
        );
    }
    parse_github_url(&url)
}

/// `(owner, name)` of a GitHub repository URL: `https://github.com/o/r(.git)`,
/// `git@github.com:o/r(.git)` or `ssh://git@github.com/o/r(.git)`.
pub fn parse_github_url(url: &str) -> Result<(String, String)> {
    let rest = [
        "https://github.com/",
        "git@github.com:",
        "ssh://git@github.com/",
    ]
    .iter()
    .find_map(|prefix| url.strip_prefix(prefix));
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let parsed = rest.and_then(|rest| {
        let rest = rest.trim_end_matches('/');
        let rest = rest.strip_suffix(".git").unwrap_or(rest);
        let (owner, name) = rest.split_once('/')?;
        (valid(owner) && valid(name)).then(|| (owner.to_owned(), name.to_owned()))
    });
    parsed.with_context(|| {
        format!(
            "origin is {url:?}, not a GitHub repository: point it at your fork with              `git remote set-url origin https://github.com/<you>/service-demo.git`              (or git@github.com:<you>/service-demo.git)"
        )
    })
}

/// Appends `name=value` to `$GITHUB_OUTPUT` inside a GitHub Actions step, so
/// later steps read it without parsing logs; does nothing elsewhere.
pub fn set_output(name: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .with_context(|| format!("opening GITHUB_OUTPUT {}", path.to_string_lossy()))?;
    writeln!(file, "{name}={value}")?;
    Ok(())
}

fn json(response: Response, url: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text()?;
    if status.is_success() && text.trim().is_empty() {
        return Ok(Value::Null);
    }
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 => " (the token is invalid or expired)",
            403 | 404 => " (the token lacks the permission, e.g. checks: write or contents: write)",
            _ => "",
        };
        bail!("GitHub answered {status}{hint} for {url}: {}", text.trim());
    }
    serde_json::from_str(&text).with_context(|| format!("GitHub's answer from {url} is not JSON"))
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_urls_name_owner_and_repository() {
        for url in [
            "https://github.com/Acme/service-demo.git",
            "https://github.com/Acme/service-demo",
            "git@github.com:Acme/service-demo.git",
            "ssh://git@github.com/Acme/service-demo.git",
        ] {
            let parsed = parse_github_url(url).unwrap();
            assert_eq!(parsed, ("Acme".into(), "service-demo".into()), "{url}");
        }
        for url in [
            "https://gitlab.com/acme/service-demo.git",
            "/tmp/remote.git",
            "https://github.com/acme",
            "https://github.com/acme/a b",
        ] {
            let error = parse_github_url(url).unwrap_err().to_string();
            assert!(
                error.contains("git remote set-url origin"),
                "{url}: {error}"
            );
        }
    }
}
