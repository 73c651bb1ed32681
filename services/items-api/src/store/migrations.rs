//! The schema's migration runner: `items-api migrate` (a Kubernetes Job before
//! each rollout) applies the embedded migrations a database has not seen.

use tokio_postgres::NoTls;

use super::StoreError;
use crate::config::DatabaseConfig;

/// The migrations, in order, embedded in the binary: every
/// `migrations/*.sql`, by file name (build.rs lists them).
pub const MIGRATIONS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Serializes concurrent `migrate` runs (two Jobs, a retried hook).
const MIGRATION_LOCK: i64 = 0x6974_656d_7361_7069; // "itemsapi"

/// Applies the migrations `config`'s database has not seen, in one transaction
/// under an advisory lock; returns their names. Running it again applies nothing.
pub async fn migrate(config: &DatabaseConfig) -> Result<Vec<&'static str>, StoreError> {
    let (mut client, connection) = config
        .postgres_config()
        .connect(NoTls)
        .await
        .map_err(unavailable)?;
    // The connection does the I/O; it ends when the client is dropped.
    let connection = tokio::spawn(connection);
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(unavailable)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(unavailable)?;
    let mut applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        let seen = tx
            .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
            .await
            .map_err(unavailable)?;
        if seen.is_none() {
            tx.batch_execute(sql).await.map_err(unavailable)?;
            tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
                .await
                .map_err(unavailable)?;
            applied.push(*name);
        }
    }
    tx.commit().await.map_err(unavailable)?;
    drop(client);
    let _ = connection.await;
    Ok(applied)
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
