//! Gates: "this commit's image passed this test suite", bound to the commit
//! **and** the digest that was tested, so a rebuilt or moved tag does not
//! inherit a pass.
//!
//! Two stores behind one interface:
//! - git notes (`refs/notes/gates` in the service repository, pushed to its
//!   remote): works with any git host, the local default;
//! - GitHub check runs (`CD / Preprod Tests`), used in Actions. Any workflow with
//!   a token can create a check run of the same name, so only runs created by
//!   the expected app count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xshell::{Shell, cmd};

use crate::domain::github::GitHub;
use crate::domain::gitops::{BotIdentity, GitopsOptions};
use crate::domain::service_repo::ServiceRepo;
use crate::plumbing::retry::{Attempt, retry};

const NOTES_REF: &str = "refs/notes/gates";

/// Gates are keyed by full SHAs, whatever abbreviation the caller used.
pub fn full_sha(gitops: &GitopsOptions, sha: &str) -> Result<String> {
    Ok(ServiceRepo::discover(&gitops.service_repo)?
        .commit(sha)?
        .to_string())
}

/// The gate `preprod-test` records and `release` checks.
pub const PREPROD_GATE: &str = "preprod-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    Success,
    Failure,
}

/// One recorded gate result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub conclusion: Conclusion,
    /// The image digest that was tested; empty when none was given.
    #[serde(default)]
    pub digest: String,
}

/// Which store, chosen by flag or environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Notes,
    Github,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GateStoreOptions {
    /// Where gates live: git notes on the service repository's remote, or GitHub check runs
    /// (needs GITHUB_TOKEN and GITHUB_REPOSITORY). Default: github inside Actions, notes elsewhere.
    #[arg(long, env = "GATE_STORE")]
    pub gate_store: Option<StoreKind>,
    /// The GitHub App whose check runs count (others with the same name are ignored).
    #[arg(long, env = "GATE_GITHUB_APP", default_value = "github-actions")]
    pub github_app: String,
}

pub enum GateStore {
    Notes {
        repo: PathBuf,
        remote: String,
        bot: BotIdentity,
    },
    GitHub {
        api: GitHub,
        app: String,
    },
}

impl GateStore {
    /// `gitops` supplies the service repository, its remote and the bot identity.
    pub fn open(options: &GateStoreOptions, gitops: &GitopsOptions) -> Result<Self> {
        let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        let kind = options.gate_store.unwrap_or(if in_actions {
            StoreKind::Github
        } else {
            StoreKind::Notes
        });
        Ok(match kind {
            StoreKind::Notes => Self::Notes {
                repo: ServiceRepo::discover(&gitops.service_repo)?.root(),
                remote: gitops.remote.clone(),
                bot: gitops.bot.clone(),
            },
            StoreKind::Github => Self::GitHub {
                api: GitHub::from_env()?.context(
                    "the github gate store needs GITHUB_TOKEN and GITHUB_REPOSITORY (Actions sets \
                     both); use --gate-store notes elsewhere",
                )?,
                app: options.github_app.clone(),
            },
        })
    }

    pub fn record(&self, sha: &str, name: &str, gate: &Gate) -> Result<()> {
        match self {
            Self::Notes { repo, remote, bot } => {
                let sh = shell(repo)?;
                // Notes are commits too: by the bot.
                for (var, value) in bot.git_env() {
                    sh.set_var(var, value);
                }
                notes_record(&sh, remote, sha, name, gate)
            }
            Self::GitHub { api, .. } => {
                api.post(
                    "/check-runs",
                    &json!({
                        "name": check_name(name),
                        "head_sha": sha,
                        "status": "completed",
                        "conclusion": gate.conclusion,
                        // The digest rides in external_id, where the check reads it back.
                        "external_id": gate.digest,
                        "output": {
                            "title": format!("{name}: {:?}", gate.conclusion).to_lowercase(),
                            "summary": format!("Tested image digest: `{}`", gate.digest),
                        },
                    }),
                )?;
                Ok(())
            }
        }
    }

    /// The latest result of gate `name` for `sha`, if any; with `digest`, the
    /// latest for that image when one was recorded (services built from one
    /// commit are different images, each with its own gate), else the latest.
    pub fn latest(&self, sha: &str, name: &str, digest: Option<&str>) -> Result<Option<Gate>> {
        match self {
            Self::Notes { repo, remote, .. } => {
                let sh = shell(repo)?;
                fetch_notes(&sh, remote)?;
                let mut gates = read_note(&sh, sha)?;
                let of_digest = digest.and_then(|d| gates.remove(&digest_key(name, d)));
                Ok(of_digest.or_else(|| gates.remove(name)))
            }
            Self::GitHub { api, app } => {
                let query = form_urlencoded(&check_name(name));
                let runs = api.get_all(
                    &format!(
                        "/commits/{sha}/check-runs?check_name={query}&filter=all&per_page=100"
                    ),
                    "check_runs",
                )?;
                let ours: Vec<&serde_json::Value> = runs
                    .iter()
                    .filter(|run| run["app"]["slug"] == app.as_str() && run["head_sha"] == sha)
                    .filter(|run| run["status"] == "completed")
                    .collect();
                let of_digest =
                    |run: &&&serde_json::Value| digest.is_none_or(|d| run["external_id"] == d);
                let candidates: Vec<&serde_json::Value> = match ours.iter().any(|r| of_digest(&r)) {
                    true => ours.into_iter().filter(|r| of_digest(&r)).collect(),
                    false => ours,
                };
                let latest = candidates.into_iter().max_by_key(|run| {
                    (
                        run["completed_at"].as_str().unwrap_or_default().to_owned(),
                        run["id"].as_u64(),
                    )
                });
                Ok(latest.map(|run| Gate {
                    conclusion: if run["conclusion"] == "success" {
                        Conclusion::Success
                    } else {
                        Conclusion::Failure
                    },
                    digest: run["external_id"].as_str().unwrap_or_default().to_owned(),
                }))
            }
        }
    }

    /// Passes when the latest result is a success for `expected_digest`;
    /// otherwise an error saying which gate is missing or failed and what to do.
    pub fn check(&self, sha: &str, name: &str, expected_digest: Option<&str>) -> Result<Gate> {
        let gate = self.latest(sha, name, expected_digest)?;
        evaluate(sha, name, gate, expected_digest)
    }
}

fn evaluate(
    sha: &str,
    name: &str,
    gate: Option<Gate>,
    expected_digest: Option<&str>,
) -> Result<Gate> {
    let Some(gate) = gate else {
        bail!(
            "gate {name} has no result for commit {sha}: run the suite against this commit's image \
             (cargo xtask preprod-test) before releasing it"
        );
    };
    if gate.conclusion != Conclusion::Success {
        bail!("gate {name} failed for commit {sha}: fix it, build a new commit and test that");
    }
    if let Some(expected) = expected_digest
        && gate.digest != expected
    {
        bail!(
            "gate {name} passed for commit {sha} but for image {} and main-<sha> is now {expected}: \
             the tag was rebuilt or moved since it was tested; test this image again",
            if gate.digest.is_empty() {
                "(no digest recorded)"
            } else {
                &gate.digest
            }
        );
    }
    Ok(gate)
}

/// `preprod-tests` → `CD / Preprod Tests`, the tutorial's check name.
pub fn check_name(gate: &str) -> String {
    let words: Vec<String> = gate
        .split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        })
        .collect();
    format!("CD / {}", words.join(" "))
}

fn form_urlencoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn shell(repo: &Path) -> Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(repo);
    Ok(sh)
}

/// Replace the local notes ref with the remote's (ours are re-applied on top).
fn fetch_notes(sh: &Shell, remote: &str) -> Result<()> {
    let out = cmd!(sh, "git fetch --quiet -- {remote} +{NOTES_REF}:{NOTES_REF}")
        .quiet()
        .ignore_status()
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // No gate was ever pushed: an empty store, not an error.
    if !out.status.success() && !stderr.contains("couldn't find remote ref") {
        bail!("fetching {NOTES_REF} from {remote}: {}", stderr.trim());
    }
    Ok(())
}

/// All gates recorded on `sha`: one JSON object per commit, keyed by gate name.
fn read_note(sh: &Shell, sha: &str) -> Result<BTreeMap<String, Gate>> {
    let out = cmd!(sh, "git notes --ref={NOTES_REF} show {sha}")
        .quiet()
        .ignore_status()
        .output()?;
    if !out.status.success() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!("the gate note on {sha} ({NOTES_REF}) is not the JSON xtask writes")
    })
}

/// The note's key of gate `name`'s latest result for one image: beside
/// `name` (the latest for the commit, whatever image), so a commit that
/// built several services keeps a result per image.
fn digest_key(name: &str, digest: &str) -> String {
    format!("{name}@{digest}")
}

fn notes_record(sh: &Shell, remote: &str, sha: &str, name: &str, gate: &Gate) -> Result<()> {
    let spec = format!("{sha}^{{commit}}");
    let sha = cmd!(sh, "git rev-parse --quiet --verify --end-of-options {spec}")
        .quiet()
        .ignore_stderr()
        .read()
        .with_context(|| {
            format!("commit {sha} is not in the service repository: fetch it first")
        })?;
    let pushed = retry(10, |_| {
        fetch_notes(sh, remote)?;
        let mut gates = read_note(sh, &sha)?;
        gates.insert(name.to_owned(), gate.clone());
        if !gate.digest.is_empty() {
            gates.insert(digest_key(name, &gate.digest), gate.clone());
        }
        let text = serde_json::to_string_pretty(&gates)?;
        cmd!(sh, "git notes --ref={NOTES_REF} add --force --file=- {sha}")
            .stdin(text)
            .quiet()
            .ignore_stdout()
            .run()?;
        let out = cmd!(
            sh,
            "git push --porcelain -- {remote} {NOTES_REF}:{NOTES_REF}"
        )
        .quiet()
        .ignore_status()
        .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            return Ok(Attempt::Done(()));
        }
        // Someone else recorded a gate first: refetch and re-apply ours.
        if stdout.contains("[rejected]") || stdout.contains("failed to update ref") {
            return Ok(Attempt::Again);
        }
        bail!(
            "pushing {NOTES_REF} to {remote} was refused: {}{}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    })?;
    ensure!(
        pushed.is_some(),
        "pushing {NOTES_REF} to {remote} kept losing races with other writers; rerun"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_follow_the_tutorial() {
        assert_eq!(check_name("preprod-tests"), "CD / Preprod Tests");
        assert_eq!(
            form_urlencoded("CD / Preprod Tests"),
            "CD%20%2F%20Preprod%20Tests"
        );
    }

    #[test]
    fn a_gate_passes_only_for_a_success_on_the_tested_digest() {
        let ok = Gate {
            conclusion: Conclusion::Success,
            digest: "sha256:aa".into(),
        };
        assert!(evaluate("s", "g", Some(ok.clone()), Some("sha256:aa")).is_ok());
        let moved = evaluate("s", "g", Some(ok.clone()), Some("sha256:bb"))
            .unwrap_err()
            .to_string();
        assert!(moved.contains("rebuilt or moved"), "{moved}");
        let failed = Gate {
            conclusion: Conclusion::Failure,
            ..ok
        };
        assert!(
            evaluate("s", "g", Some(failed), None)
                .unwrap_err()
                .to_string()
                .contains("failed")
        );
        assert!(
            evaluate("s", "g", None, None)
                .unwrap_err()
                .to_string()
                .contains("no result")
        );
    }
}
