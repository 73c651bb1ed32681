//! What runs where: every service's environments (the long-lived ones and
//! the previews) at a GitOps commit, each with its image, the commit it was
//! built from and the GitOps commit that put it there. `status` prints it,
//! `trace` searches it.

use anyhow::Result;
use serde::Serialize;

use crate::domain::Repos;
use crate::domain::promotion::{self, DeployedImage, Env, PREVIEW_DIR, Target};
use crate::domain::services::{Service, ServiceSelection};
use crate::domain::tags::ImageTag;
use crate::plumbing::text::rfc3339;

/// One service's environment.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
    pub service: String,
    pub env: String,
    pub tag: String,
    pub digest: String,
    /// The commit the image was built from, when known.
    pub source_commit: Option<String>,
    /// The GitOps commit that last changed the image, and when (RFC 3339).
    pub promoted_by: Option<String>,
    pub promoted_at: Option<String>,
    /// The image's signature (✔/✘ and why), when an image repository is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The image's signed preprod gate (✔/✘ and why), when an image repository is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate_attestation: Option<String>,
}

/// Every service, and the ones `selection` names (all when it names none).
pub fn chosen(repos: &Repos, selection: &ServiceSelection) -> Result<(Vec<Service>, Vec<Target>)> {
    let all = promotion::workspace_services(&repos.service.root())?;
    let selection = match selection.names.is_empty() {
        true => ServiceSelection {
            names: all.iter().map(|s| s.name.clone()).collect(),
        },
        false => selection.clone(),
    };
    let targets = promotion::targets(&all, &selection)?;
    Ok((all, targets))
}

/// Every service's environments and previews at the GitOps commit `tip`.
pub fn collect(repos: &Repos, tip: gix::ObjectId, targets: &[Target]) -> Result<Vec<EnvStatus>> {
    let mut previews: Vec<Env> = repos
        .gitops
        .list_subdirs(tip, &repos.gitops.full_path(PREVIEW_DIR))?
        .iter()
        .filter_map(|name| Env::from_preview_dir(name))
        .collect();
    previews.sort();
    let envs: Vec<Env> = Env::LONG_LIVED.into_iter().chain(previews).collect();
    let mut rows = Vec::new();
    for target in targets {
        for &env in &envs {
            let full = repos.gitops.full_path(&target.path(env));
            let Some(text) = repos.gitops.read(tip, &full)? else {
                continue;
            };
            rows.push(env_status(repos, tip, target, env, &full, &text)?);
        }
    }
    Ok(rows)
}

/// One service's environment: its image, where it comes from, and the newest
/// GitOps commit whose version of the file carries it.
fn env_status(
    repos: &Repos,
    tip: gix::ObjectId,
    target: &Target,
    env: Env,
    full: &str,
    text: &str,
) -> Result<EnvStatus> {
    let image = DeployedImage::from_values(text)?;
    let source = ImageTag::parse(&image.tag)
        .ok()
        .and_then(|tag| repos.service.source_commit(&tag).ok().flatten())
        .map(|id| id.to_string());
    let history = repos.gitops.history(tip, full)?;
    let mut promoted = None;
    for (i, version) in history.iter().enumerate() {
        let previous = history
            .get(i + 1)
            .and_then(|v| v.text.as_deref())
            .map(DeployedImage::from_values);
        let changed_image = match previous {
            Some(Ok(previous)) => previous != image,
            _ => true,
        };
        if changed_image {
            promoted = Some(version);
            break;
        }
    }
    Ok(EnvStatus {
        service: target.name().to_owned(),
        env: env.to_string(),
        tag: image.tag,
        digest: image.digest,
        source_commit: source,
        promoted_by: promoted.map(|v| v.commit.to_string()),
        promoted_at: promoted.map(|v| rfc3339(v.time)),
        signature: None,
        gate_attestation: None,
    })
}
