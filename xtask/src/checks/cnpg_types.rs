//! What this project relies on of CloudNativePG beyond its `Cluster` CRD
//! (which `schemas` checks objects against): the Secret it makes for the
//! application's owner, which the chart reads.

/// The Secret CloudNativePG makes for the application's owner: `<cluster>-app`.
pub const APP_SECRET_SUFFIX: &str = "-app";
/// The keys of that Secret (`uri` is the whole connection URL).
pub const APP_SECRET_KEYS: [&str; 8] = [
    "uri", "jdbc-uri", "host", "port", "dbname", "user", "username", "password",
];
