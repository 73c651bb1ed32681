//! Storage behind a trait, so the HTTP layer does not know where items live.

mod batched_insert;
mod memory;
mod migrations;
mod postgres;
mod row_json;

pub use memory::{Capacity, MemoryStore};
pub use migrations::{MIGRATIONS, migrate};
pub use postgres::PostgresStore;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Item, NewItem};

/// Where a listing starts: strictly after the item with this id.
///
/// Ids are UUIDv7 and listings are ordered by id, so a cursor stays valid when
/// items are created or deleted between pages: nothing is skipped or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

/// One page of a listing, already rendered as the JSON array the API
/// returns, and where the next page starts, if there is more.
///
/// Stores write each item straight into one buffer ([`PageWriter`]): a page
/// of 1000 items is the heaviest answer this API gives, and building a
/// `Vec` of items first, then copying them into the body, costs an
/// allocation (PostgreSQL) or two reference counts (memory) per item.
#[derive(Debug, Clone)]
pub struct Page {
    pub json: bytes::Bytes,
    pub next: Option<Cursor>,
}

/// Writes a page from up to `limit + 1` items in id order: stores fetch one
/// more than asked, and that extra item only says that a next page exists.
pub struct PageWriter {
    json: Vec<u8>,
    limit: usize,
    written: usize,
    last: Option<Uuid>,
    more: bool,
}

impl PageWriter {
    /// `bytes`: the page's expected size (an exact figure saves regrowing it).
    pub fn new(limit: usize, bytes: usize) -> Self {
        let mut json = Vec::with_capacity(bytes + limit + 2);
        json.push(b'[');
        Self {
            json,
            limit,
            written: 0,
            last: None,
            more: false,
        }
    }

    /// Adds the item `id`, whose JSON object `render` appends to the buffer;
    /// past `limit` items it only notes that there is a next page.
    pub fn push(&mut self, id: Uuid, render: impl FnOnce(&mut Vec<u8>)) {
        if self.written == self.limit {
            self.more = true;
            return;
        }
        if self.written > 0 {
            self.json.push(b',');
        }
        render(&mut self.json);
        self.written += 1;
        self.last = Some(id);
    }

    pub fn finish(mut self) -> Page {
        self.json.push(b']');
        Page {
            json: self.json.into(),
            next: if self.more {
                self.last.map(Cursor)
            } else {
                None
            },
        }
    }
}

#[cfg(test)]
impl Page {
    /// The ids of the page's items, in order.
    pub fn ids(&self) -> Vec<Uuid> {
        let items: Vec<serde_json::Value> = serde_json::from_slice(&self.json).unwrap();
        items
            .iter()
            .map(|item| item["id"].as_str().unwrap().parse().unwrap())
            .collect()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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
    async fn create(&self, item: NewItem) -> Result<Item, StoreError>;
    async fn get(&self, id: Uuid) -> Result<Item, StoreError>;
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
    ) -> Result<Item, StoreError>;
    /// Deletes the item; with `expected`, only if it is still at that version.
    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError>;
    /// Whether the store can serve requests now (used by `/readyz`).
    async fn ready(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(ids: &[Uuid], limit: usize) -> Page {
        let mut writer = PageWriter::new(limit, 0);
        for id in ids {
            writer.push(*id, |json| {
                json.extend_from_slice(format!(r#"{{"id":"{id}"}}"#).as_bytes());
            });
        }
        writer.finish()
    }

    #[test]
    fn the_extra_item_only_says_a_next_page_exists() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let full = page_of(&ids, 2);
        assert_eq!(full.ids(), &ids[..2]);
        assert_eq!(full.next, Some(Cursor(ids[1])));
        let last = page_of(&ids[..2], 2);
        assert_eq!((last.ids(), last.next), (ids[..2].to_vec(), None));
        assert_eq!(
            (&*page_of(&[], 5).json, page_of(&[], 5).next),
            (&b"[]"[..], None)
        );
    }
}
