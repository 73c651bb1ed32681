//! The few GitHub REST calls the pipeline makes (check runs, releases, pull
//! requests' state for previews, a fork's settings for `doctor`).
//!
//! Settings are the ones Actions provides: `GITHUB_API_URL`, `GITHUB_REPOSITORY`
//! and a token (`GITHUB_TOKEN`). The token is sent only as a header and never
//! printed.

use anyhow::{Context, Result, bail};
use reqwest::blocking::{Client, Response};
use serde_json::Value;

pub struct GitHub {
    client: Client,
    api: String,
    repository: String,
    token: String,
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
            client: Client::builder()
                .user_agent("service-demo-xtask")
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            api: api.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            token,
        })
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
