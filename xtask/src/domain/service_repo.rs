//! The service repository: where image tags' commits live, and their order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use gix::ObjectId;

use crate::domain::tags::ImageTag;

pub struct ServiceRepo {
    repo: gix::Repository,
}

impl ServiceRepo {
    /// Finds the repository containing `dir`.
    pub fn discover(dir: &Path) -> Result<Self> {
        let repo = gix::discover(dir)
            .with_context(|| format!("{} is not inside a git repository", dir.display()))?;
        Ok(Self { repo })
    }

    /// The top of the working tree (or the git dir of a bare repository).
    pub fn root(&self) -> PathBuf {
        self.repo
            .workdir()
            .unwrap_or_else(|| self.repo.git_dir())
            .to_path_buf()
    }

    /// Resolves a full or abbreviated SHA to a commit of this repository.
    pub fn commit(&self, sha: &str) -> Result<ObjectId> {
        crate::plumbing::process::refuse_option_like(
            "revision",
            sha,
            "the commit or tag you passed",
        )?;
        let id = self
            .repo
            .rev_parse_single(format!("{sha}^{{commit}}").as_str())
            .with_context(|| format!("commit {sha} is not in this repository: fetch it (`git fetch`) or check the tag"))?;
        Ok(id.detach())
    }

    /// The commit an image tag was built from: the SHA in a build tag, or the
    /// commit of the git tag `v<X.Y.Z>` for a release. None when unknown.
    pub fn source_commit(&self, tag: &ImageTag) -> Result<Option<ObjectId>> {
        match tag {
            ImageTag::Main { sha } | ImageTag::Pr { sha, .. } => self.commit(sha).map(Some),
            ImageTag::Release(version) => {
                let name = format!("refs/tags/v{version}");
                match self.repo.try_find_reference(name.as_str())? {
                    Some(reference) => Ok(Some(reference.into_fully_peeled_id()?.detach())),
                    None => Ok(None),
                }
            }
        }
    }

    /// Whether `ancestor` is reachable from `descendant` (or equal to it).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        if ancestor == descendant {
            return Ok(true);
        }
        let base = self.repo.merge_base(ancestor, descendant);
        Ok(matches!(base, Ok(Some(base)) if base.detach() == ancestor))
    }
}
