//! Gates: "this commit's image passed this test suite", bound to the commit
//! **and** the digest that was tested, so a rebuilt or moved tag does not
//! inherit a pass.
//!
//! Two records, one per purpose:
//! - the signed attestation beside the image (`domain/attestation.rs`):
//!   what release verifies with a public key, and the only record inside
//!   GitHub Actions;
//! - this local store, git notes (`refs/notes/gates` in the service
//!   repository, pushed to its remote): for the demo and a laptop without
//!   keys. Any workflow with a token could push a note, so inside Actions it
//!   is neither written nor read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

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

/// The local store: git notes on the service repository's remote.
pub struct GateStore {
    repo: PathBuf,
    remote: String,
    bot: BotIdentity,
}

/// Whether this runs inside GitHub Actions, where only signed gates count.
pub fn in_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Why a gate inside Actions must be signed, and how to set the key up.
pub const SIGNED_IN_ACTIONS: &str = "inside GitHub Actions a gate is a signed attestation only (any workflow \
     with a token could write an unsigned record): run `cargo xtask gate keygen --out-dir keys`, store \
     keys/gate.key as the preprod environment's GATE_SIGNING_KEY secret and keys/gate.pub as the prod \
     environment's GATE_PUBLIC_KEY variable";

impl GateStore {
    /// The local store of the service repository `gitops` names (its remote
    /// and the bot identity), or `None` inside GitHub Actions.
    pub fn local(gitops: &GitopsOptions) -> Result<Option<Self>> {
        if in_actions() {
            return Ok(None);
        }
        Ok(Some(Self {
            repo: ServiceRepo::discover(&gitops.service_repo)?.root(),
            remote: gitops.remote.clone(),
            bot: gitops.bot.clone(),
        }))
    }

    pub fn record(&self, sha: &str, name: &str, gate: &Gate) -> Result<()> {
        let sh = shell(&self.repo)?;
        // Notes are commits too: by the bot.
        for (var, value) in self.bot.git_env() {
            sh.set_var(var, value);
        }
        notes_record(&sh, &self.remote, sha, name, gate)
    }

    /// The latest result of gate `name` for `sha`, if any; with `digest`, the
    /// latest for that image when one was recorded (services built from one
    /// commit are different images, each with its own gate), else the latest.
    pub fn latest(&self, sha: &str, name: &str, digest: Option<&str>) -> Result<Option<Gate>> {
        let sh = shell(&self.repo)?;
        fetch_notes(&sh, &self.remote)?;
        let mut gates = read_note(&sh, sha)?;
        let of_digest = digest.and_then(|d| gates.remove(&digest_key(name, d)));
        Ok(of_digest.or_else(|| gates.remove(name)))
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
