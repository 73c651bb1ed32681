//! `metadata` as the typed checks read it (`admission_policy`). Argo CD's
//! objects themselves are checked against Argo CD's own CRDs (`schemas`), no
//! longer restated here.
#![allow(
    dead_code,
    reason = "the fields are the schema: serde reads them to validate, the checks read the JSON"
)]

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of any object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub finalizers: Vec<String>,
}
