//! The in-memory store: the embedded default for local runs and the demo.
//!
//! Each replica has its own copy and a restart loses everything, so the chart
//! allows it only with a single replica.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Cursor, ItemStore, Page, StoreError};
use crate::domain::{Item, NewItem, StoredItem};

#[derive(Debug, Default)]
pub struct MemoryStore {
    // A BTreeMap keyed by UUIDv7 keeps items in creation order, which makes
    // cursor pagination a range query. The lock is never held across an await.
    items: RwLock<BTreeMap<Uuid, StoredItem>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, StoredItem>> {
        // A poisoned lock means a panic mid-write; the map itself is still a
        // valid map (every write is a single insert/remove), so keep serving.
        self.items
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Uuid, StoredItem>> {
        self.items
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl ItemStore for MemoryStore {
    async fn create(&self, new: NewItem) -> Result<StoredItem, StoreError> {
        let now = OffsetDateTime::now_utc();
        let item = Item {
            id: Uuid::now_v7(),
            name: new.name.into_inner(),
            description: new.description.map(|d| d.into_inner()),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let item = StoredItem::new(item);
        self.write().insert(item.id, item.clone());
        Ok(item)
    }

    async fn get(&self, id: Uuid) -> Result<StoredItem, StoreError> {
        self.read()
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound(id))
    }

    async fn list(&self, after: Option<Cursor>, limit: usize) -> Result<Page, StoreError> {
        let items = self.read();
        let start = after.map_or(Bound::Unbounded, |Cursor(id)| Bound::Excluded(id));
        let page = items
            .range((start, Bound::Unbounded))
            .take(limit + 1)
            .map(|(_, item)| item.clone())
            .collect();
        Ok(Page::from_overfetched(page, limit))
    }

    async fn update(
        &self,
        id: Uuid,
        new: NewItem,
        expected: Option<u64>,
    ) -> Result<StoredItem, StoreError> {
        let mut items = self.write();
        let current = items.get(&id).ok_or(StoreError::NotFound(id))?;
        check_version(current, expected)?;
        // Stored items are immutable (their JSON is rendered): replace it.
        let item = StoredItem::new(Item {
            name: new.name.into_inner(),
            description: new.description.map(|d| d.into_inner()),
            version: current.version + 1,
            updated_at: OffsetDateTime::now_utc(),
            ..(**current).clone()
        });
        items.insert(id, item.clone());
        Ok(item)
    }

    async fn delete(&self, id: Uuid, expected: Option<u64>) -> Result<(), StoreError> {
        let mut items = self.write();
        let current = items.get(&id).ok_or(StoreError::NotFound(id))?;
        check_version(current, expected)?;
        items.remove(&id);
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The write's `If-Match` version, if any, against the item's.
fn check_version(current: &StoredItem, expected: Option<u64>) -> Result<(), StoreError> {
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
    use crate::domain::ItemName;

    fn new_item(name: &str) -> NewItem {
        NewItem {
            name: ItemName::parse(name).unwrap(),
            description: None,
        }
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
            seen.extend(page.items.iter().map(|i| i.id));
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
        assert_eq!(
            second.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            &ids[2..]
        );
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

    async fn create_items(store: &MemoryStore, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(store.create(new_item(&i.to_string())).await.unwrap().id);
        }
        ids
    }
}
