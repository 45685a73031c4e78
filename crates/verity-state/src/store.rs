//! Storage behind a trait: the state machine reads keys and commits whole batches atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use redb::{Database, ReadableDatabase, TableDefinition};
use thiserror::Error;

/// The tables the state machine owns. Each module keeps to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Meta,
    Accounts,
    Receipts,
    Blocks,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Meta, Table::Accounts, Table::Receipts, Table::Blocks];

    fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Accounts => "accounts",
            Table::Receipts => "receipts",
            Table::Blocks => "blocks",
        }
    }

    fn tag(self) -> u8 {
        self as u8
    }

    fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Key-value pairs ordered by table then key.
pub type Entries = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// Writes applied together or not at all. Sorted, so iteration order is deterministic.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub writes: Entries,
}

impl Batch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((table, key), value);
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Option<&Vec<u8>> {
        self.writes.get(&(table, key.to_vec()))
    }

    /// A canonical digest input: tag ‖ key len ‖ key ‖ value len ‖ value for each write, sorted.
    pub fn canonical_bytes(&self, include: impl Fn(Table) -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        for ((table, key), value) in &self.writes {
            if !include(*table) {
                continue;
            }
            out.push(table.tag());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
        out
    }
}

/// An embedded transactional key-value store.
pub trait Store: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every write of `batch` atomically and durably.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
}

/// redb on disk: ACID, crash-safe, pure Rust.
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        let tx = db.begin_write().map_err(backend)?;
        for table in Table::ALL {
            tx.open_table(table.definition()).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(Self { db })
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let t = tx.open_table(table.definition()).map_err(backend)?;
        Ok(t.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(backend)?;
        for table in Table::ALL {
            let mut t = tx.open_table(table.definition()).map_err(backend)?;
            for ((_, key), value) in batch.writes.iter().filter(|((t, _), _)| *t == table) {
                t.insert(key.as_slice(), value.as_slice())
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }
}

/// In memory, for tests and simulations.
#[derive(Default)]
pub struct MemStore {
    data: RwLock<Entries>,
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let data = self.data.read().map_err(backend)?;
        Ok(data.get(&(table, key.to_vec())).cloned())
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut data = self.data.write().map_err(backend)?;
        for (k, v) in &batch.writes {
            data.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
}
