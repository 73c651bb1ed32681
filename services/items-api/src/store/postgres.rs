//! The PostgreSQL store: the production path when `DATABASE_URL` is set.
//!
//! tokio-postgres with a deadpool pool: plain SQL that reads like the
//! migration beside it, no compile-time database, and a bounded pool whose
//! waits time out, so a database outage turns into quick 503s rather than
//! requests piling up. Every statement is bounded by `statement_timeout`, set
//! on each connection.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::{Cursor, ItemStore, Page, StoreError};
use crate::config::DatabaseConfig;
use crate::domain::{Item, NewItem, StoredItem};

/// The migrations, in order, embedded in the binary: `items-api migrate` runs
/// the ones a database has not seen.
pub const MIGRATIONS: &[(&str, &str)] = &[(
    "0001_create_items",
    include_str!("../../migrations/0001_create_items.sql"),
)];

/// Serializes concurrent `migrate` runs (two Jobs, a retried hook).
const MIGRATION_LOCK: i64 = 0x6974_656d_7361_7069; // "itemsapi"

/// The longest `/readyz` waits for a connection (requests wait 3 s).
const READY_WAIT: Duration = Duration::from_secs(1);

const COLUMNS: &str = "id, name, description, version, created_at, updated_at";

pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// A pool of at most `pool_size` connections; none is opened until needed,
    /// so the service starts (and reports not ready) while the database is down.
    pub fn new(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let mut pg = config.postgres_config();
        pg.options(format!(
            "-c statement_timeout={}",
            config.statement_timeout.as_millis()
        ));
        pg.connect_timeout(Duration::from_secs(3));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(3)))
            .create_timeout(Some(Duration::from_secs(3)))
            .recycle_timeout(Some(Duration::from_secs(3)))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }
}

/// Why a conditional write touched no row: the item is missing, or its version
/// moved. Asked on the connection the write used: taking a second one from the
/// pool while holding the first deadlocks a busy pool.
async fn conflict(client: &deadpool_postgres::Object, id: Uuid) -> Result<StoreError, StoreError> {
    let row = client
        .query_opt("SELECT version FROM items WHERE id = $1", &[&id])
        .await
        .map_err(unavailable)?;
    Ok(match row {
        Some(row) => StoreError::VersionMismatch {
            id,
            current: version(&row),
        },
        None => StoreError::NotFound(id),
    })
}

#[async_trait]
impl ItemStore for PostgresStore {
    async fn create(&self, new: NewItem) -> Result<StoredItem, StoreError> {
        let client = self.client().await?;
        let (id, name) = (Uuid::now_v7(), new.name.into_inner());
        let description = new.description.map(|d| d.into_inner());
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO items ({COLUMNS}) VALUES ($1, $2, $3, 1, now(), now()) RETURNING {COLUMNS}"
                ),
                &[&id, &name, &description],
            )
            .await
            .map_err(unavailable)?;
        Ok(item(&row))
    }

    async fn get(&self, id: Uuid) -> Result<StoredItem, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM items WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(unavailable)?;
        row.map(|row| item(&row)).ok_or(StoreError::NotFound(id))
    }

    async fn list(&self, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError> {
        let client = self.client().await?;
        let after = after.map(|Cursor(id)| id);
        // One more than asked (see Page::from_overfetched).
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM items WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &(limit as i64 + 1)],
            )
            .await
            .map_err(unavailable)?;
        Ok(Page::from_overfetched(
            rows.iter().map(item).collect(),
            limit,
        ))
    }

    async fn update(
        &self,
        id: Uuid,
        new: NewItem,
        expected: Option<u64>,
    ) -> Result<StoredItem, StoreError> {
        let client = self.client().await?;
        let (name, description) = (
            new.name.into_inner(),
            new.description.map(|d| d.into_inner()),
        );
        let expected = expected.map(|v| v as i64);
        // The version check and the write are one statement: no lost update.
        let row = client
            .query_opt(
                &format!(
                    "UPDATE items SET name = $2, description = $3, version = version + 1, updated_at = now() \
                     WHERE id = $1 AND ($4::bigint IS NULL OR version = $4) RETURNING {COLUMNS}"
                ),
                &[&id, &name, &description, &expected],
            )
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => Ok(item(&row)),
            None => Err(conflict(&client, id).await?),
        }
    }

    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let expected = expected.map(|v| v as i64);
        let deleted = client
            .execute(
                "DELETE FROM items WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)",
                &[&id, &expected],
            )
            .await
            .map_err(unavailable)?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(conflict(&client, id).await?)
        }
    }

    /// Answers within about [`READY_WAIT`], under the readiness probe's 2 s:
    /// a probe that times out makes the pod unready, and a busy pool is load,
    /// not an outage, so it must not turn every replica unready at once.
    async fn ready(&self) -> Result<(), StoreError> {
        let status = self.pool.status();
        if status.size == status.max_size && status.available == 0 {
            // Every connection is open and in use: the database answers.
            return Ok(());
        }
        let timeouts = deadpool_postgres::Timeouts {
            wait: Some(READY_WAIT),
            create: Some(READY_WAIT),
            recycle: Some(READY_WAIT),
        };
        let client = self
            .pool
            .timeout_get(&timeouts)
            .await
            .map_err(unavailable)?;
        client.simple_query("SELECT 1").await.map_err(unavailable)?;
        Ok(())
    }
}

/// Applies the migrations `url`'s database has not seen, in one transaction
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

fn item(row: &Row) -> StoredItem {
    StoredItem::new(Item {
        id: row.get("id"),
        name: row.get("name"),
        description: row.get("description"),
        version: version(row),
        created_at: row.get::<_, OffsetDateTime>("created_at"),
        updated_at: row.get::<_, OffsetDateTime>("updated_at"),
    })
}

fn version(row: &Row) -> u64 {
    row.get::<_, i64>("version") as u64
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
