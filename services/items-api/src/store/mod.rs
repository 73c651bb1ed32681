//! Storage behind a trait, so the HTTP layer does not know where items live.

mod memory;
mod migrations;
mod postgres;

pub use memory::{Capacity, MemoryStore};
pub use migrations::{MIGRATIONS, migrate};
pub use postgres::PostgresStore;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{NewItem, StoredItem};

/// Where a listing starts: strictly after the item with this id.
///
/// Ids are UUIDv7 and listings are ordered by id, so a cursor stays valid when
/// items are created or deleted between pages: nothing is skipped or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

/// One page of a listing and where the next one starts, if there is more.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<StoredItem>,
    pub next: Option<Cursor>,
}

impl Page {
    /// A page from up to `limit + 1` items in id order: stores fetch one more
    /// than asked, and that extra item only says that a next page exists.
    pub fn from_overfetched(mut items: Vec<StoredItem>, limit: usize) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| Cursor(item.id))
        } else {
            None
        };
        Self { items, next }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("item {0} not found")]
    NotFound(Uuid),
    /// The write named a version (`If-Match`) the item no longer has.
    #[error("item {id} is at version {current}, not the version the write expected")]
    VersionMismatch { id: Uuid, current: u64 },
    /// The store holds all it may (the in-memory store's capacity); the
    /// write changed nothing. Says which bound was reached.
    #[error("storage is full: {0}")]
    Full(String),
    /// The backing store cannot be reached; the request may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait ItemStore: Send + Sync + 'static {
    async fn create(&self, item: NewItem) -> Result<StoredItem, StoreError>;
    async fn get(&self, id: Uuid) -> Result<StoredItem, StoreError>;
    /// Up to `limit` items with ids after `after`, in id order.
    async fn list(&self, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError>;
    /// Replaces name and description, bumping `version` and `updated_at`. With
    /// `expected`, only if the item is still at that version (optimistic
    /// concurrency: two clients cannot silently overwrite each other).
    async fn update(
        &self,
        id: Uuid,
        item: NewItem,
        expected: Option<u64>,
    ) -> Result<StoredItem, StoreError>;
    /// Deletes the item; with `expected`, only if it is still at that version.
    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError>;
    /// Whether the store can serve requests now (used by `/readyz`).
    async fn ready(&self) -> Result<(), StoreError>;
}
