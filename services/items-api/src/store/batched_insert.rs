//! Creates on PostgreSQL, batched: concurrent `POST`s become one INSERT and
//! one commit.
//!
//! A commit waits for its WAL to reach the disk, and that wait, not the
//! service's CPU, is what bounded POST on PostgreSQL: one statement, one round
//! trip and one commit per item. Here creates queue up, and a few writers each
//! take everything queued so far and insert it with one statement (`unnest`
//! of an array per column, `postgres::insert_many`): N items, one round trip, one commit. A create is still
//! answered only after its item is committed, so nothing acknowledged can be
//! lost. Alone, a create is a batch of one (it never waits for company); under
//! load a batch is what arrived while the previous ones were committing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::StoreError;
use super::postgres::{insert_many, unavailable};
use crate::domain::{Item, NewItem};

/// The most items one statement inserts (a batch of 256 names of 200
/// characters and descriptions of 2000 is about 2 MB).
const MAX_BATCH: usize = 256;
/// Creates queued for a writer at most; a create that finds the queue full
/// waits up to [`QUEUE_WAIT`], as a request waits for a pool connection.
const QUEUE_CAPACITY: usize = 4096;
const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// An item to insert, its id already chosen.
pub struct NewRow {
    pub id: Uuid,
    pub new: NewItem,
}

struct Queued {
    row: NewRow,
    reply: oneshot::Sender<Result<Item, StoreError>>,
}

pub struct BatchedInsert {
    pool: Pool,
    writers: usize,
    queue: OnceLock<mpsc::Sender<Queued>>,
}

impl BatchedInsert {
    /// `writers` batches in flight at most, each on a connection of `pool`
    /// for the time of its statement.
    pub fn new(pool: Pool, writers: usize) -> Self {
        Self {
            pool,
            writers: writers.max(1),
            queue: OnceLock::new(),
        }
    }

    /// Inserts `row` with whatever other creates are queued; returns it once committed.
    pub async fn insert(&self, row: NewRow) -> Result<Item, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue()
            .send_timeout(Queued { row, reply }, QUEUE_WAIT)
            .await
            .map_err(|_| unavailable("too many creates are waiting for the database"))?;
        answer
            .await
            .map_err(|_| unavailable("the writer of this create stopped"))?
    }

    /// The queue, its writers started on first use: inside the runtime that
    /// serves the requests (the store itself may be made outside one). They
    /// stop when the store, and so the queue's sender, is dropped.
    fn queue(&self) -> &mpsc::Sender<Queued> {
        self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
            let receiver = Arc::new(Mutex::new(receiver));
            for _ in 0..self.writers {
                tokio::spawn(write_batches(self.pool.clone(), receiver.clone()));
            }
            sender
        })
    }
}

/// One writer: takes everything queued (waiting for at least one), inserts
/// it, answers each create, and again. While it inserts, the next writer
/// takes what queues up meanwhile.
async fn write_batches(pool: Pool, queue: Arc<Mutex<mpsc::Receiver<Queued>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if queue.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let rows: Vec<&NewRow> = batch.iter().map(|queued| &queued.row).collect();
        let mut inserted = insert_many(&pool, &rows).await;
        for Queued { row, reply } in batch.drain(..) {
            let answer = match &mut inserted {
                Ok(items) => items
                    .remove(&row.id)
                    .ok_or_else(|| unavailable("the insert did not return the item")),
                Err(error) => Err(error.clone()),
            };
            // The create may have been given up (its request ended): nobody to tell.
            let _ = reply.send(answer);
        }
    }
}
