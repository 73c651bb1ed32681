//! The PostgreSQL store: the production path when `DATABASE_URL` is set.
//! (The schema's migrations are in `migrations.rs`.)
//!
//! tokio-postgres with a deadpool pool: plain SQL that reads like the
//! migration beside it, no compile-time database, and a bounded pool whose
//! waits time out, so a database outage turns into quick 503s rather than
//! requests piling up. Every statement is bounded by `statement_timeout`, set
//! on each connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt as _;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};
use uuid::Uuid;

use super::batched_insert::{BatchedInsert, NewRow};
use super::row_json::RowJson;
use super::{Cursor, ItemStore, Page, PageWriter, StoreError};
use crate::config::DatabaseConfig;
use crate::domain::{Item, NewItem};

/// Bytes of a listed item's JSON, about, to size a page's buffer once.
const ITEM_JSON_BYTES: usize = 200;

/// The longest `/readyz` waits for a connection (requests wait 3 s).
const READY_WAIT: Duration = Duration::from_secs(1);

// Every statement is a constant, prepared once per connection and then cached
// by deadpool (`prepare_cached`): a request is one round trip (Bind/Execute),
// not two (Parse/Describe first), and PostgreSQL plans it once.

/// The columns an item is read from, in `Item`'s field order: read by name in
/// `Item::try_from`, written under their names into a list's page by
/// `RowJson`. Named, not `*`: a running replica's cached statements keep
/// working while a migration adds a column for the next release.
macro_rules! item_columns {
    () => {
        "id, name, description, version, created_at, updated_at"
    };
}

const GET: &str = concat!("SELECT ", item_columns!(), " FROM items WHERE id = $1");
// The first page and the pages after a cursor are two statements: one
// `$1 IS NULL OR id > $1` statement gets one generic plan, which cannot start
// its index scan at the cursor.
const LIST_FIRST: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items ORDER BY id LIMIT $1"
);
const LIST_AFTER: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM items WHERE id > $1 ORDER BY id LIMIT $2"
);
/// Many new items in one statement (see `BatchedInsert`): one array per column.
const INSERT_MANY: &str = concat!(
    "INSERT INTO items (id, name, description, version, created_at, updated_at) \
     SELECT id, name, description, 1, now(), now() \
     FROM unnest($1::uuid[], $2::text[], $3::text[]) AS new (id, name, description) \
     RETURNING ",
    item_columns!()
);
// The version check and the write are one statement: no lost update.
const UPDATE: &str = concat!(
    "UPDATE items SET name = $2, description = $3, version = version + 1, updated_at = now() \
     WHERE id = $1 AND ($4::bigint IS NULL OR version = $4) \
     RETURNING ",
    item_columns!()
);
const DELETE: &str = "DELETE FROM items WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)";
const VERSION: &str = "SELECT version FROM items WHERE id = $1";

pub struct PostgresStore {
    pool: Pool,
    /// Connections that point lookups share (see [`PostgresStore::shared_client`]).
    shared: Vec<Mutex<Option<Arc<Object>>>>,
    next_shared: AtomicUsize,
    /// Creates, inserted in batches (see [`BatchedInsert`]).
    creates: BatchedInsert,
}

/// How many of the pool's connections point lookups share: a quarter of the
/// pool, at most two, none for a pool under four (writes keep the rest).
fn shared_connections(pool_size: usize) -> usize {
    (pool_size / 4).min(2)
}

/// How many batches of creates may be in flight, each holding a connection
/// while it runs: half the pool, so reads and updates keep the other half.
fn create_writers(pool_size: usize) -> usize {
    (pool_size / 2).max(1)
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
        let shared = (0..shared_connections(config.pool_size))
            .map(|_| Mutex::default())
            .collect();
        Ok(Self {
            creates: BatchedInsert::new(pool.clone(), create_writers(config.pool_size)),
            pool,
            shared,
            next_shared: AtomicUsize::new(0),
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// A connection for a point lookup, shared with concurrent lookups
    /// instead of taken from the pool for each. tokio-postgres pipelines
    /// queries sent on one connection at once: under load, many lookups go
    /// out in one write and their answers come back in one read, where each
    /// would cost a write, a read and a wake-up on a connection of its own.
    /// Only short reads are shared: a long list would hold up the lookups
    /// queued behind it, and writes on one connection commit one at a time
    /// (PostgreSQL groups the commits of concurrent connections).
    /// A connection found closed is replaced by a fresh one from the pool.
    async fn shared_client(&self) -> Result<Arc<Object>, StoreError> {
        if self.shared.is_empty() {
            return self.client().await.map(Arc::new);
        }
        let slot =
            &self.shared[self.next_shared.fetch_add(1, Ordering::Relaxed) % self.shared.len()];
        let open = |slot: &Option<Arc<Object>>| slot.as_ref().filter(|c| !c.is_closed()).cloned();
        if let Some(client) = open(&lock(slot)) {
            return Ok(client);
        }
        let fresh = Arc::new(self.client().await?);
        let mut slot = lock(slot);
        // Another lookup may have filled the slot meanwhile: use its
        // connection, and `fresh` goes back to the pool.
        Ok(open(&slot).unwrap_or_else(|| slot.insert(fresh).clone()))
    }
}

/// `sql` prepared on this connection: parsed the first time, then from its cache.
async fn prepared(client: &Object, sql: &str) -> Result<Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(unavailable)
}

/// Why a conditional write touched no row: the item is missing, or its version
/// moved. Asked on the connection the write used: taking a second one from the
/// pool while holding the first deadlocks a busy pool.
async fn conflict(client: &Object, id: Uuid) -> Result<StoreError, StoreError> {
    let row = client
        .query_opt(&prepared(client, VERSION).await?, &[&id])
        .await
        .map_err(unavailable)?;
    Ok(match row {
        Some(row) => StoreError::VersionMismatch {
            id,
            current: row.get::<_, i64>(0) as u64,
        },
        None => StoreError::NotFound(id),
    })
}

#[async_trait]
impl ItemStore for PostgresStore {
    async fn create(&self, new: NewItem) -> Result<Item, StoreError> {
        self.creates
            .insert(NewRow {
                id: Uuid::now_v7(),
                new,
            })
            .await
    }

    async fn get(&self, id: Uuid) -> Result<Item, StoreError> {
        let client = self.shared_client().await?;
        let row = client
            .query_opt(&prepared(&client, GET).await?, &[&id])
            .await
            .map_err(unavailable)?;
        item(&row.ok_or(StoreError::NotFound(id))?)
    }

    async fn list(&self, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError> {
        let client = self.client().await?;
        // One more than asked (see PageWriter).
        let overfetch = limit as i64 + 1;
        let (statement, rows) = match &after {
            None => {
                let statement = prepared(&client, LIST_FIRST).await?;
                let rows = client.query_raw(&statement, params(&[&overfetch])).await;
                (statement, rows)
            }
            Some(Cursor(id)) => {
                let statement = prepared(&client, LIST_AFTER).await?;
                let rows = client
                    .query_raw(&statement, params(&[id, &overfetch]))
                    .await;
                (statement, rows)
            }
        };
        // Each row's JSON straight into the page as it arrives, its text
        // borrowed from the row: no Vec of 1001 rows, no Item per row.
        // Sized for a full page: regrowing 200 KB a few times costs more
        // than the room a short page leaves unused until it is sent.
        let writer = RowJson::new(statement.columns())?;
        let mut page = PageWriter::new(limit, (limit + 1) * ITEM_JSON_BYTES);
        let mut rows = std::pin::pin!(rows.map_err(unavailable)?);
        while let Some(row) = rows.next().await {
            let row = row.map_err(unavailable)?;
            let mut written = Ok(());
            page.push(writer.id(&row).map_err(unavailable)?, |json| {
                written = writer.write(&row, json);
            });
            written.map_err(unavailable)?;
        }
        Ok(page.finish())
    }

    async fn update(
        &self,
        id: Uuid,
        new: NewItem,
        expected: Option<u64>,
    ) -> Result<Item, StoreError> {
        let client = self.client().await?;
        let (name, description) = (
            new.name.as_str(),
            new.description.as_ref().map(|d| d.as_str()),
        );
        let expected = expected.map(|v| v as i64);
        let row = client
            .query_opt(
                &prepared(&client, UPDATE).await?,
                &[&id, &name, &description, &expected],
            )
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => item(&row),
            None => Err(conflict(&client, id).await?),
        }
    }

    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let expected = expected.map(|v| v as i64);
        let deleted = client
            .execute(&prepared(&client, DELETE).await?, &[&id, &expected])
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

/// An item from a row of the `items` table, its columns read by name.
impl TryFrom<&Row> for Item {
    type Error = tokio_postgres::Error;

    fn try_from(row: &Row) -> Result<Self, Self::Error> {
        Ok(Item {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            version: row.try_get::<_, i64>("version")? as u64,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

fn item(row: &Row) -> Result<Item, StoreError> {
    Item::try_from(row).map_err(unavailable)
}

/// Inserts `rows` with one statement (`BatchedInsert` batches them); the
/// stored items by id.
pub(super) async fn insert_many(
    pool: &Pool,
    rows: &[&NewRow],
) -> Result<HashMap<Uuid, Item>, StoreError> {
    let client = pool.get().await.map_err(unavailable)?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let names: Vec<&str> = rows.iter().map(|row| row.new.name.as_str()).collect();
    let descriptions: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.new.description.as_ref().map(|d| d.as_str()))
        .collect();
    let inserted = client
        .query(
            &prepared(&client, INSERT_MANY).await?,
            &[&ids, &names, &descriptions],
        )
        .await
        .map_err(unavailable)?;
    inserted
        .iter()
        .map(|row| item(row).map(|item| (item.id, item)))
        .collect()
}

/// Statement parameters as `query_raw` takes them.
fn params<'a>(
    values: &'a [&'a (dyn ToSql + Sync)],
) -> impl ExactSizeIterator<Item = &'a (dyn ToSql + Sync)> {
    values.iter().copied()
}

/// The slot's lock: nothing panics while holding it, and its value is valid
/// whatever happened.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

pub(super) fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
