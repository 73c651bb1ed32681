//! Parts shared by the commands; commands never call each other's internals.

pub mod argocd;
pub mod argocd_types;
pub mod environments;
pub mod gates;
pub mod github;
pub mod gitops;
pub mod manifests;
pub mod oci;
pub mod registry;
pub mod service;
pub mod tags;
pub mod values;
pub mod workspace;

use anyhow::Result;

/// The two repositories a pipeline command works with.
pub struct Workspace {
    pub service: service::ServiceRepo,
    pub gitops: gitops::GitopsRepo,
}

impl Workspace {
    pub fn open(options: &gitops::GitopsOptions) -> Result<Self> {
        let service = service::ServiceRepo::discover(&options.service_repo)?;
        let gitops = gitops::GitopsRepo::open(&service.root(), options)?;
        Ok(Self { service, gitops })
    }
}
