//! Argo CD's REST API: read an Application, ask it to sync, and judge whether
//! it runs a given GitOps commit.
//!
//! Where the fields come from: Argo CD's API reference (the swagger document
//! every server serves at `/swagger.json`, definitions `v1alpha1Application`,
//! `v1alpha1ApplicationStatus`, `v1alpha1SyncStatus`, `v1alpha1HealthStatus`,
//! `v1alpha1OperationState`, `v1alpha1SyncOperationResult`, and the
//! `ApplicationService` routes `GET /api/v1/applications/{name}` with its
//! `refresh` query parameter, `GET /api/v1/applications?selector=` and
//! `POST /api/v1/applications/{name}/sync`), which mirror the Go types in
//! `pkg/apis/application/v1alpha1/types.go`:
//!
//! - `status.sync.status` — `Synced` | `OutOfSync` | `Unknown`: the comparison
//!   of git and cluster, made at `status.reconciledAt`;
//! - `status.sync.revision` (`revisions` for multi-source apps) — the commit
//!   that comparison was made against;
//! - `status.health.status` — `Healthy` | `Progressing` | `Degraded` |
//!   `Suspended` | `Missing` | `Unknown`, and `status.health.message`;
//! - `status.operationState` — the current or last operation: `phase`
//!   (`Running` | `Succeeded` | `Failed` | `Error` | `Terminating`), `message`,
//!   `startedAt`, `finishedAt`, and for a sync `syncResult.revision(s)` (what
//!   was applied) or, while running, `operation.sync.revision(s)`;
//! - `status.reconciledAt` — when the controller last compared and assessed
//!   health. Health computed before the sync's `finishedAt` describes the old
//!   pods, which is how `argocd app wait` ends up trusting a stale Healthy.

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde::Deserialize;

use crate::domain::tags::short;
use crate::plumbing::http;

/// What the ApplicationSet puts on a preview Application (see
/// `gitops/argocd/apps/previews.yaml`): the pull request's number.
pub const PREVIEW_LABEL: &str = "service-demo/pull-request";
/// And the service it previews (`gitops/argocd/apps/previews.yaml`: one
/// Application per pull request and service).
pub const SERVICE_LABEL: &str = "service-demo/service";

pub struct ArgoCd {
    client: Client,
    server: String,
    token: String,
}

/// An Application, or why it could not be read yet.
pub enum Fetch {
    Found(Box<Application>),
    /// Not there (yet): an ApplicationSet creates preview apps on its own schedule.
    Missing(String),
    /// A failure worth retrying until the timeout (Argo CD restarting, a 5xx).
    Unavailable(String),
}

/// What a sync request did.
pub enum SyncStart {
    Started,
    /// An operation was already running (an automated sync, or another job's).
    AlreadyRunning(String),
}

impl ArgoCd {
    /// `server` as the Argo CD CLI takes it (`host[:port]`, https implied) or a
    /// URL. Plain HTTP is accepted only on loopback (a port-forward, the tests).
    pub fn new(server: &str, token: String, insecure: bool) -> Result<Self> {
        let server = server.trim_end_matches('/');
        let server = if server.contains("://") {
            server.to_owned()
        } else {
            format!("https://{server}")
        };
        let url = reqwest::Url::parse(&server)
            .with_context(|| format!("ARGOCD_SERVER={server:?} is not a host or URL"))?;
        let loopback = matches!(
            url.host_str(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        );
        if url.scheme() == "http" && !loopback {
            bail!(
                "ARGOCD_SERVER={server} is plain HTTP: the token would cross the network in clear. \
                 Use https:// (with --insecure for a self-signed certificate)"
            );
        }
        if token.trim().is_empty() {
            bail!(
                "ARGOCD_AUTH_TOKEN is empty: set it to an Argo CD API token \
                 (UI: Settings → Accounts → <account> → Generate New)"
            );
        }
        Ok(Self {
            client: http::builder(http::TIMEOUT)
                .danger_accept_invalid_certs(insecure)
                .build()?,
            server,
            token,
        })
    }

    pub fn from_env(server: Option<&str>, insecure: bool) -> Result<Self> {
        let server = match server.filter(|server| !server.is_empty()) {
            Some(server) => server.to_owned(),
            // Empty is what Actions passes for a repository variable that is not set.
            None => std::env::var("ARGOCD_SERVER")
                .ok()
                .filter(|server| !server.is_empty())
                .context("ARGOCD_SERVER is not set: give the Argo CD host (or --server); in Actions, the repository variable ARGOCD_SERVER (`cargo xtask doctor` lists what a fork is missing)")?,
        };
        let token = std::env::var("ARGOCD_AUTH_TOKEN").unwrap_or_default();
        Self::new(&server, token, insecure)
    }

    /// `GET /api/v1/applications/<name>`; with `refresh`, Argo CD first
    /// re-reads git instead of waiting for its next poll (3 minutes by default).
    pub fn application(&self, name: &str, refresh: bool) -> Result<Fetch> {
        let query = if refresh { "?refresh=normal" } else { "" };
        let url = format!("{}/api/v1/applications/{name}{query}", self.server);
        let Some(body) = self.get(&url)? else {
            return Ok(Fetch::Missing(format!(
                "application {name} not found (or not readable with this token)"
            )));
        };
        match body {
            Ok(text) => Ok(Fetch::Found(Box::new(parse(&text, &url)?))),
            Err(why) => Ok(Fetch::Unavailable(why)),
        }
    }

    /// The Application the ApplicationSet generated for pull request `pr`
    /// (and `service`, when several services are previewed), found by its
    /// labels rather than by a name template.
    pub fn preview(&self, pr: u64, service: Option<&str>) -> Result<Fetch> {
        let mut selector = format!("{PREVIEW_LABEL}%3D{pr}");
        let mut labels = format!("{PREVIEW_LABEL}={pr}");
        if let Some(service) = service {
            selector.push_str(&format!("%2C{SERVICE_LABEL}%3D{service}"));
            labels.push_str(&format!(",{SERVICE_LABEL}={service}"));
        }
        let url = format!("{}/api/v1/applications?selector={selector}", self.server);
        let missing = || Fetch::Missing(format!("no application labelled {labels}"));
        let Some(body) = self.get(&url)? else {
            return Ok(missing());
        };
        let text = match body {
            Ok(text) => text,
            Err(why) => return Ok(Fetch::Unavailable(why)),
        };
        #[derive(Deserialize)]
        struct List {
            // Argo CD sends `null`, not `[]`, when nothing matches.
            items: Option<Vec<Application>>,
        }
        let list: List = serde_json::from_str(&text)
            .with_context(|| format!("Argo CD's answer from {url} is not an application list"))?;
        let mut items = list.items.unwrap_or_default();
        match items.len() {
            0 => Ok(missing()),
            1 => Ok(Fetch::Found(Box::new(items.remove(0)))),
            n => bail!(
                "{n} applications carry {labels}: the ApplicationSet makes one per pull request and service; \
                 name the service with --service NAME"
            ),
        }
    }

    /// `GET /api/v1/applications?projects=<project>`: how many Applications
    /// of `project` this token sees (what `doctor` checks).
    pub fn project_applications(&self, project: &str) -> Result<usize> {
        let url = format!("{}/api/v1/applications?projects={project}", self.server);
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("could not reach Argo CD at {url}"))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        refused(status, &url)?;
        if !status.is_success() {
            bail!(
                "Argo CD answered {status} for {url}: {}",
                error_message(&text)
            );
        }
        let list: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("Argo CD's answer from {url} is not an application list"))?;
        Ok(list["items"].as_array().map_or(0, Vec::len))
    }

    /// `POST /api/v1/applications/<name>/sync` to `revision`, pruning what git no
    /// longer has (as the automated policy of preprod does).
    pub fn sync(&self, name: &str, revision: &str) -> Result<SyncStart> {
        let url = format!("{}/api/v1/applications/{name}/sync", self.server);
        let body = serde_json::json!({ "revision": revision, "prune": true });
        let response = self
            .client
            .post(&url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .with_context(|| format!("could not reach Argo CD at {url}"))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if status.is_success() {
            return Ok(SyncStart::Started);
        }
        let message = error_message(&text);
        if message.contains("another operation is already in progress") {
            return Ok(SyncStart::AlreadyRunning(message));
        }
        refused(status, &url)?;
        bail!("Argo CD answered {status} to the sync of {name}: {message}")
    }

    /// The body of a GET; `None` for an application that does not exist;
    /// `Err(why)` inside for a failure worth retrying.
    fn get(&self, url: &str) -> Result<Option<Result<String, String>>> {
        let response = match self.client.get(url).bearer_auth(&self.token).send() {
            Ok(response) => response,
            Err(error) => return Ok(Some(Err(format!("could not reach Argo CD: {error}")))),
        };
        let status = response.status();
        let text = response.text().unwrap_or_default();
        match status {
            s if s.is_success() => Ok(Some(Ok(text))),
            StatusCode::NOT_FOUND => Ok(None),
            // Argo CD answers 403 for an application that does not exist, so
            // that a token cannot probe for names; it is also the answer for a
            // token without `applications, get`. Both are "not visible yet".
            StatusCode::FORBIDDEN => Ok(None),
            s if s.is_server_error() => Ok(Some(Err(format!(
                "Argo CD answered {s}: {}",
                error_message(&text)
            )))),
            s => {
                refused(s, url)?;
                bail!("Argo CD answered {s} for {url}: {}", error_message(&text))
            }
        }
    }
}

/// Fails with a fix for an authentication failure.
fn refused(status: StatusCode, url: &str) -> Result<()> {
    if status == StatusCode::UNAUTHORIZED {
        bail!(
            "Argo CD refused the token (401 Unauthorized) for {url}: ARGOCD_AUTH_TOKEN is invalid or expired. \
             Generate a new one (UI: Settings → Accounts → <account> → Generate New) and update the secret"
        );
    }
    Ok(())
}

fn parse(text: &str, url: &str) -> Result<Application> {
    serde_json::from_str(text)
        .with_context(|| format!("Argo CD's answer from {url} is not an Application"))
}

/// The `message` of Argo CD's error body (`{"error":…,"code":…,"message":…}`).
fn error_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}

/// The parts of an Application this module reads. Every field defaults, since
/// a new Application has no status yet.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Application {
    pub metadata: Metadata,
    pub status: AppStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AppStatus {
    pub sync: SyncStatus,
    pub health: HealthStatus,
    pub operation_state: Option<OperationState>,
    pub reconciled_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    pub status: String,
    pub revision: String,
    /// Multi-source applications: one revision per source.
    pub revisions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthStatus {
    pub status: String,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OperationState {
    pub phase: String,
    pub message: String,
    pub finished_at: Option<String>,
    pub operation: Revisions,
    pub sync_result: Option<Revisions>,
}

/// `operation.sync.revision(s)` and `syncResult.revision(s)` share a shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Revisions {
    pub sync: Option<Box<Revisions>>,
    pub revision: String,
    pub revisions: Vec<String>,
}

impl Revisions {
    fn contains(&self, wanted: &str) -> bool {
        same_commit(&self.revision, wanted) || self.revisions.iter().any(|r| same_commit(r, wanted))
    }
}

/// A full sha and the (possibly abbreviated) one the user gave.
fn same_commit(reported: &str, wanted: &str) -> bool {
    !reported.is_empty() && reported.starts_with(wanted)
}

/// Where an application stands relative to the commit being waited for.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Synced to the commit by a finished operation, and healthy since.
    Done,
    /// Not yet; keep polling.
    Waiting,
    /// The sync of the commit failed: Argo CD's message.
    Failed(String),
    /// Degraded or Missing: tolerated for a grace period during a rollout.
    Unhealthy(String),
}

impl AppStatus {
    /// Whether the application runs `revision`, judged as the module docs say.
    pub fn verdict(&self, revision: &str) -> Verdict {
        let operation = self
            .operation_state
            .as_ref()
            .filter(|op| op.revisions().is_some_and(|r| r.contains(revision)));
        if let Some(op) = operation
            && matches!(op.phase.as_str(), "Failed" | "Error")
        {
            return Verdict::Failed(format!("sync {}: {}", op.phase.to_lowercase(), op.message));
        }
        if matches!(self.health.status.as_str(), "Degraded" | "Missing") {
            return Verdict::Unhealthy(format!("{}: {}", self.health.status, self.health.message));
        }
        let synced_to_revision = self.sync.status == "Synced"
            && (same_commit(&self.sync.revision, revision)
                || self.sync.revisions.iter().any(|r| same_commit(r, revision)));
        let finished = operation
            .filter(|op| op.phase == "Succeeded")
            .and_then(|op| op.finished_at.as_deref());
        // RFC 3339 UTC times (Kubernetes' metav1.Time): parsed, since a string
        // comparison breaks on fractional seconds.
        let assessed_after_sync = match (finished, self.reconciled_at.as_deref()) {
            (Some(finished), Some(reconciled)) => {
                match (
                    humantime::parse_rfc3339_weak(reconciled),
                    humantime::parse_rfc3339_weak(finished),
                ) {
                    (Ok(reconciled), Ok(finished)) => reconciled >= finished,
                    _ => false,
                }
            }
            _ => false,
        };
        if synced_to_revision && assessed_after_sync && self.health.status == "Healthy" {
            Verdict::Done
        } else {
            Verdict::Waiting
        }
    }

    /// One line describing the state, printed when it changes.
    pub fn summary(&self) -> String {
        let revision = match (self.sync.revision.as_str(), self.sync.revisions.as_slice()) {
            ("", []) => "none".to_owned(),
            ("", many) => many.iter().map(|r| short(r)).collect::<Vec<_>>().join(","),
            (one, _) => short(one).to_owned(),
        };
        let operation = match &self.operation_state {
            Some(op) => {
                let target = op
                    .revisions()
                    .map(|r| short(&r.revision).to_owned())
                    .unwrap_or_default();
                format!("{} {target}", op.phase).trim_end().to_owned()
            }
            None => "none".to_owned(),
        };
        format!(
            "sync {} at {revision} · health {} · operation {operation}",
            or_unknown(&self.sync.status),
            or_unknown(&self.health.status)
        )
    }
}

impl OperationState {
    /// What the operation applied, or while it runs, what it is applying.
    fn revisions(&self) -> Option<&Revisions> {
        self.sync_result
            .as_ref()
            .filter(|r| !r.revision.is_empty() || !r.revisions.is_empty())
            .or(self.operation.sync.as_deref())
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "Unknown" } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "1111111111111111111111111111111111111111";
    const OLD: &str = "2222222222222222222222222222222222222222";

    fn status(json: serde_json::Value) -> AppStatus {
        serde_json::from_value(json).unwrap()
    }

    fn synced(revision: &str, health: &str, finished: &str, reconciled: &str) -> AppStatus {
        status(serde_json::json!({
            "sync": {"status": "Synced", "revision": revision},
            "health": {"status": health, "message": "m"},
            "operationState": {
                "phase": "Succeeded", "message": "successfully synced (all tasks run)",
                "finishedAt": finished,
                "operation": {"sync": {"revision": revision}},
                "syncResult": {"revision": revision}
            },
            "reconciledAt": reconciled
        }))
    }

    #[test]
    fn done_needs_the_revision_a_finished_sync_and_health_assessed_after_it() {
        let t = "2026-11-23T10:00:05Z";
        assert_eq!(synced(NEW, "Healthy", t, t).verdict(NEW), Verdict::Done);
        // An abbreviated sha is the same commit.
        assert_eq!(
            synced(NEW, "Healthy", t, t).verdict(&NEW[..7]),
            Verdict::Done
        );
        // Healthy, but at the old commit.
        assert_eq!(synced(OLD, "Healthy", t, t).verdict(NEW), Verdict::Waiting);
        // Healthy as assessed before the sync finished.
        let early = synced(NEW, "Healthy", t, "2026-11-23T10:00:04Z");
        assert_eq!(early.verdict(NEW), Verdict::Waiting);
        // Fractions compare as times, not strings.
        let later = synced(NEW, "Healthy", t, "2026-11-23T10:00:05.25Z");
        assert_eq!(later.verdict(NEW), Verdict::Done);
        assert_eq!(
            synced(NEW, "Progressing", t, t).verdict(NEW),
            Verdict::Waiting
        );
        assert_eq!(
            synced(NEW, "Degraded", t, t).verdict(NEW),
            Verdict::Unhealthy("Degraded: m".into())
        );
    }

    #[test]
    fn a_failed_sync_of_the_revision_fails_but_an_old_failure_does_not() {
        let failed = |revision: &str| {
            status(serde_json::json!({
                "sync": {"status": "OutOfSync", "revision": revision},
                "health": {"status": "Healthy"},
                "operationState": {"phase": "Failed", "message": "one or more objects failed to apply",
                    "operation": {"sync": {"revision": revision}}}
            }))
        };
        assert_eq!(
            failed(NEW).verdict(NEW),
            Verdict::Failed("sync failed: one or more objects failed to apply".into())
        );
        assert_eq!(failed(OLD).verdict(NEW), Verdict::Waiting);
    }

    #[test]
    fn multi_source_revisions_count() {
        let t = "2026-11-23T10:00:05Z";
        let app = status(serde_json::json!({
            "sync": {"status": "Synced", "revisions": [OLD, NEW]},
            "health": {"status": "Healthy"},
            "operationState": {"phase": "Succeeded", "finishedAt": t,
                "syncResult": {"revisions": [OLD, NEW]}},
            "reconciledAt": t
        }));
        assert_eq!(app.verdict(NEW), Verdict::Done);
        assert!(
            app.summary().contains("at 2222222,1111111"),
            "{}",
            app.summary()
        );
    }

    #[test]
    fn an_application_without_status_waits() {
        assert_eq!(AppStatus::default().verdict(NEW), Verdict::Waiting);
        assert_eq!(
            AppStatus::default().summary(),
            "sync Unknown at none · health Unknown · operation none"
        );
    }

    #[test]
    fn servers_are_https_unless_loopback() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(ArgoCd::new("argocd.example.com", "t".into(), false).is_ok());
        let plain = ArgoCd::new("http://argocd.example.com", "t".into(), false);
        assert!(plain.err().unwrap().to_string().contains("plain HTTP"));
        assert!(ArgoCd::new("http://127.0.0.1:8080", "t".into(), false).is_ok());
        let empty = ArgoCd::new("argocd.example.com", " ".into(), false);
        assert!(
            empty
                .err()
                .unwrap()
                .to_string()
                .contains("ARGOCD_AUTH_TOKEN is empty")
        );
    }
}
