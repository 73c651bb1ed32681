//! The environments and where their values live in the GitOps tree.

use anyhow::{Result, bail};
use serde_json::Value;

use super::values;

/// The long-lived environments, in promotion order.
pub const ENVIRONMENTS: [&str; 3] = ["dev", "preprod", "prod"];

/// Checks an environment name, naming the valid ones.
pub fn check(env: &str) -> Result<()> {
    if ENVIRONMENTS.contains(&env) {
        Ok(())
    } else {
        bail!(
            "unknown environment {env:?}: expected one of {}",
            ENVIRONMENTS.join(", ")
        )
    }
}

/// `values/<env>/service-demo.yaml`, relative to the GitOps root.
pub fn values_path(env: &str) -> String {
    format!("values/{env}/service-demo.yaml")
}

/// Folder of the preview environments' values files.
pub const PREVIEW_DIR: &str = "values/pr";

pub fn preview_path(pr: u64) -> String {
    format!("{PREVIEW_DIR}/pr-{pr}.yaml")
}

/// The image a values file deploys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeployedImage {
    pub tag: String,
    /// Empty when the chart deploys by tag.
    pub digest: String,
}

impl DeployedImage {
    pub fn from_values(text: &str) -> Result<Self> {
        let doc = values::parse(text)?;
        let field = |name: &str| match &doc["image"][name] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            other => bail!("image.{name} is not a string: {other}"),
        };
        Ok(Self {
            tag: field("tag")?,
            digest: field("digest")?,
        })
    }

    /// The jq expression that sets this image in a values file. An empty digest
    /// clears the old one, so the chart never deploys a new tag at an old digest.
    pub fn jq_set(&self) -> String {
        format!(
            ".image.tag = {} | .image.digest = {}",
            values::jq_string(&self.tag),
            values::jq_string(&self.digest)
        )
    }
}
