//! The in-memory store: the embedded default for local runs and the demo.
//!
//! Each replica has its own copy and a restart loses everything, so the chart
//! allows it only with a single replica. It holds at most a [`Capacity`] of
//! items and bytes; a write past it is refused ([`StoreError::Full`], a 507),
//! so clients cannot grow the process until the kernel kills it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Cursor, ItemStore, Page, PageWriter, StoreError};
use crate::domain::{Item, NewItem};

/// How much the in-memory store holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `MEMORY_STORE_MAX_ITEMS` (default 50 000).
    pub items: usize,
    /// `MEMORY_STORE_MAX_BYTES`: the items' estimated memory, see [`footprint`]
    /// (default 16 MiB: with the server's own bounds this fits the chart's
    /// 64 Mi memory limit with room to spare).
    pub bytes: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Self {
            items: 50_000,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// What one stored item costs beyond its text: the `Item`, the map's share
/// of a B-tree node, the allocator's headers (measured: about 250 bytes for
/// an item with a short name).
const ITEM_OVERHEAD_BYTES: usize = 256;

/// An item and its JSON, which serde writes once when the item is written:
/// a list copies each item's JSON into the page. Reads far outnumber writes,
/// and serializing a page's items on every list costs 36× the instructions
/// of the copy (README, Benchmarks).
#[derive(Debug)]
struct Stored {
    item: Item,
    json: bytes::Bytes,
}

impl Stored {
    fn new(item: Item) -> Self {
        let json = serde_json::to_vec(&item).expect("an Item serializes");
        Self {
            item,
            json: json.into(),
        }
    }
}

/// The memory an item takes, as counted against [`Capacity::bytes`]: its
/// text (about as long as its JSON) and its JSON.
fn footprint(stored: &Stored) -> usize {
    ITEM_OVERHEAD_BYTES + 2 * stored.json.len()
}

#[derive(Debug, Default)]
struct Items {
    // A BTreeMap keyed by UUIDv7 keeps items in creation order, which makes
    // cursor pagination a range query.
    map: BTreeMap<Uuid, Stored>,
    /// The sum of the items' [`footprint`]s.
    bytes: usize,
}

impl Items {
    /// Inserts or replaces `item` if the store stays within `capacity`.
    fn put(&mut self, item: Item, capacity: Capacity) -> Result<(), StoreError> {
        let item = Stored::new(item);
        let replaced = self.map.get(&item.item.id).map_or(0, footprint);
        let count = self.map.len() + usize::from(replaced == 0);
        let bytes = self.bytes - replaced + footprint(&item);
        if count > capacity.items {
            return Err(StoreError::Full(format!(
                "the store holds its maximum of {} items",
                capacity.items
            )));
        }
        if bytes > capacity.bytes {
            return Err(StoreError::Full(format!(
                "the store holds its maximum of {} bytes",
                capacity.bytes
            )));
        }
        self.bytes = bytes;
        self.map.insert(item.item.id, item);
        Ok(())
    }

    fn remove(&mut self, id: &Uuid) {
        if let Some(item) = self.map.remove(id) {
            self.bytes -= footprint(&item);
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    // The lock is never held across an await.
    items: RwLock<Items>,
    capacity: Capacity,
}

impl MemoryStore {
    /// A store with the default [`Capacity`].
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: Capacity) -> Self {
        Self {
            items: RwLock::default(),
            capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Items> {
        // A poisoned lock means a panic mid-write; the map itself is still a
        // valid map (every write is a single insert/remove), so keep serving.
        self.items
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Items> {
        self.items
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl ItemStore for MemoryStore {
    async fn create(&self, new: NewItem) -> Result<Item, StoreError> {
        let item = Item::created(Uuid::now_v7(), new, OffsetDateTime::now_utc());
        self.write().put(item.clone(), self.capacity)?;
        Ok(item)
    }

    async fn get(&self, id: Uuid) -> Result<Item, StoreError> {
        let items = self.read();
        let stored = items.map.get(&id).ok_or(StoreError::NotFound(id))?;
        Ok(stored.item.clone())
    }

    async fn list(&self, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError> {
        let items = self.read();
        let start = after.map_or(Bound::Unbounded, |Cursor(id)| Bound::Excluded(id));
        let page = || items.map.range((start, Bound::Unbounded)).take(limit + 1);
        // Two passes under the read lock: the sizes, then one copy per item
        // into a buffer of exactly the page's size.
        let bytes = page().map(|(_, stored)| stored.json.len()).sum();
        let mut writer = PageWriter::new(limit, bytes);
        for (id, stored) in page() {
            writer.push(*id, |json| json.extend_from_slice(&stored.json));
        }
        Ok(writer.finish())
    }

    async fn update(
        &self,
        id: Uuid,
        new: NewItem,
        expected: Option<u64>,
    ) -> Result<Item, StoreError> {
        let mut items = self.write();
        let current = &items.map.get(&id).ok_or(StoreError::NotFound(id))?.item;
        check_version(current, expected)?;
        let item = current.clone().updated(new, OffsetDateTime::now_utc());
        items.put(item.clone(), self.capacity)?;
        Ok(item)
    }

    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError> {
        let mut items = self.write();
        let current = &items.map.get(&id).ok_or(StoreError::NotFound(id))?.item;
        check_version(current, expected)?;
        items.remove(&id);
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The write's `If-Match` version, if any, against the item's.
fn check_version(current: &Item, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(version) if version != current.version => Err(StoreError::VersionMismatch {
            id: current.id,
            current: current.version,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_item(name: &str) -> NewItem {
        NewItem::named(name).unwrap()
    }

    #[tokio::test]
    async fn pages_cover_every_item_once_in_creation_order() {
        let store = MemoryStore::new();
        let mut created = Vec::new();
        for i in 0..7 {
            created.push(
                store
                    .create(new_item(&format!("item {i}")))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list(cursor, 3).await.unwrap();
            seen.extend(page.ids());
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, created);
    }

    #[tokio::test]
    async fn cursor_survives_deleting_the_item_it_points_at() {
        let store = MemoryStore::new();
        let ids: Vec<_> = create_items(&store, 4).await;
        let first = store.list(None, 2).await.unwrap();
        store.delete(ids[1], None).await.unwrap();
        let second = store.list(first.next, 2).await.unwrap();
        assert_eq!(second.ids(), &ids[2..]);
        assert_eq!(second.next, None);
    }

    #[tokio::test]
    async fn update_bumps_version_and_missing_ids_are_not_found() {
        let store = MemoryStore::new();
        let item = store.create(new_item("a")).await.unwrap();
        // A write that expects another version changes nothing.
        assert!(matches!(
            store.update(item.id, new_item("x"), Some(2)).await,
            Err(StoreError::VersionMismatch { current: 1, .. })
        ));
        let updated = store.update(item.id, new_item("b"), Some(1)).await.unwrap();
        assert_eq!((updated.version, updated.name.as_str()), (2, "b"));
        assert!(updated.updated_at >= item.updated_at);
        store.delete(item.id, None).await.unwrap();
        assert!(matches!(
            store.get(item.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.delete(item.id, None).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_full_store_refuses_writes_and_takes_them_again_after_a_delete() {
        let one = footprint(&Stored::new(Item::created(
            Uuid::nil(),
            new_item("x"),
            OffsetDateTime::UNIX_EPOCH,
        )));
        // Room for three items by count, and for two and a half by bytes.
        let store = MemoryStore::with_capacity(Capacity {
            items: 3,
            bytes: one * 5 / 2,
        });
        let ids = create_items(&store, 2).await;
        assert!(matches!(
            store.create(new_item("3")).await,
            Err(StoreError::Full(why)) if why.contains("bytes")
        ));
        // A longer name is a bigger item: an update can be refused too.
        assert!(matches!(
            store.update(ids[0], new_item(&"y".repeat(200)), None).await,
            Err(StoreError::Full(_))
        ));
        assert_eq!(store.get(ids[0]).await.unwrap().name, "0");
        store.delete(ids[0], None).await.unwrap();
        store.create(new_item("3")).await.unwrap();

        let by_count = MemoryStore::with_capacity(Capacity {
            items: 2,
            bytes: usize::MAX,
        });
        create_items(&by_count, 2).await;
        assert!(matches!(
            by_count.create(new_item("3")).await,
            Err(StoreError::Full(why)) if why.contains("2 items")
        ));
    }

    async fn create_items(store: &MemoryStore, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(store.create(new_item(&i.to_string())).await.unwrap().id);
        }
        ids
    }
}
