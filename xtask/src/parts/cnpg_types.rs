//! CloudNativePG's `postgresql.cnpg.io/v1` `Cluster`, typed for `validate`
//! (the CRD in cloudnative-pg's `config/crd/bases/postgresql.cnpg.io_clusters.yaml`,
//! Go types in `api/v1/cluster_types.go`). Parsed with `manifests`' strict
//! parsing, a misspelt field is an error with its path. The fields modelled are
//! the ones this project uses and the usual neighbours; a valid field that is
//! not modelled is reported as unknown, which names it so it can be added here.
#![allow(
    dead_code,
    reason = "the fields are the schema: serde reads them to validate, the checks read the JSON"
)]

use serde::Deserialize;
use serde_json::Value;

use super::argocd_types::ObjectMeta;

/// The Secret CloudNativePG makes for the application's owner: `<cluster>-app`.
pub const APP_SECRET_SUFFIX: &str = "-app";
/// The keys of that Secret (`uri` is the whole connection URL).
pub const APP_SECRET_KEYS: [&str; 8] = [
    "uri", "jdbc-uri", "host", "port", "dbname", "user", "username", "password",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ClusterSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    pub description: Option<String>,
    pub instances: i64,
    pub image_name: Option<String>,
    pub image_pull_secrets: Option<Vec<Value>>,
    pub primary_update_strategy: Option<String>,
    pub primary_update_method: Option<String>,
    pub postgresql: Option<Value>,
    pub bootstrap: Option<Bootstrap>,
    pub storage: Option<Storage>,
    pub wal_storage: Option<Storage>,
    pub resources: Option<Value>,
    pub affinity: Option<Value>,
    pub monitoring: Option<Value>,
    pub backup: Option<Value>,
    pub inherited_metadata: Option<Value>,
    pub managed: Option<Value>,
    pub enable_superuser_access: Option<bool>,
    #[serde(rename = "enablePDB")]
    pub enable_pdb: Option<bool>,
    pub superuser_secret: Option<Value>,
    pub start_delay: Option<i64>,
    pub stop_delay: Option<i64>,
    pub smart_shutdown_timeout: Option<i64>,
    pub switchover_delay: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    pub initdb: Option<InitDb>,
    pub recovery: Option<Value>,
    pub pg_basebackup: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitDb {
    pub database: Option<String>,
    pub owner: Option<String>,
    pub secret: Option<Value>,
    pub encoding: Option<String>,
    pub locale_collate: Option<String>,
    pub locale_c_type: Option<String>,
    pub data_checksums: Option<bool>,
    #[serde(rename = "postInitSQL")]
    pub post_init_sql: Option<Vec<String>>,
    #[serde(rename = "postInitApplicationSQL")]
    pub post_init_application_sql: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    pub size: Option<String>,
    pub storage_class: Option<String>,
    pub resize_in_use_volumes: Option<bool>,
    pub pvc_template: Option<Value>,
}
