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
    Staking,
    Registry,
    Enclaves,
    Tasks,
    Records,
    Reputation,
    /// Work due at a height: assignment timeouts, deadlines, unbonding releases.
    Schedule,
    /// OP-mode disputes and their indexes.
    Disputes,
    /// Contributed files, proof jobs, data verifiers and DAT balances.
    Data,
    /// Validator bonds, committees and proposal counts.
    Validators,
}

impl Table {
    pub const ALL: [Table; 14] = [
        Table::Meta,
        Table::Accounts,
        Table::Receipts,
        Table::Blocks,
        Table::Staking,
        Table::Registry,
        Table::Enclaves,
        Table::Tasks,
        Table::Records,
        Table::Reputation,
        Table::Schedule,
        Table::Disputes,
        Table::Data,
        Table::Validators,
    ];

    fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Accounts => "accounts",
            Table::Receipts => "receipts",
            Table::Blocks => "blocks",
            Table::Staking => "staking",
            Table::Registry => "registry",
            Table::Enclaves => "enclaves",
            Table::Tasks => "tasks",
            Table::Records => "records",
            Table::Reputation => "reputation",
            Table::Schedule => "schedule",
            Table::Disputes => "disputes",
            Table::Data => "data",
            Table::Validators => "validators",
        }
    }

    /// Whether the table is state (in the state root) rather than bookkeeping.
    pub fn is_state(self) -> bool {
        !matches!(self, Table::Meta | Table::Blocks)
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

/// Committed key-value pairs, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes ordered by table then key; `None` deletes the key.
pub type Entries = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Writes applied together or not at all. Sorted, so iteration order is deterministic.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub writes: Entries,
}

impl Batch {
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((table, key), Some(value));
    }

    /// The pending write of a key: `Some(None)` when it is deleted.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(&(table, key.to_vec()))
    }

    /// A canonical digest input: tag ‖ key len ‖ key ‖ value len ‖ value for each write, sorted;
    /// a deletion has the length 0xFFFFFFFF and no value.
    pub fn canonical_bytes(&self, include: impl Fn(Table) -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        for ((table, key), value) in &self.writes {
            if !include(*table) {
                continue;
            }
            out.push(table.tag());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            match value {
                Some(value) => {
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
        out
    }
}

/// An embedded transactional key-value store.
pub trait Store: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every write of `batch` atomically and durably.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Up to `limit` committed entries whose keys start with `prefix`, in key order, from the
    /// first key at or after `start` (which must itself start with `prefix`). For queries only:
    /// the state machine never iterates.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError>;
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
                match value {
                    Some(value) => {
                        t.insert(key.as_slice(), value.as_slice())
                            .map_err(backend)?;
                    }
                    None => {
                        t.remove(key.as_slice()).map_err(backend)?;
                    }
                }
            }
        }
        tx.commit().map_err(backend)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let t = tx.open_table(table.definition()).map_err(backend)?;
        let mut out = Vec::new();
        for entry in t.range(start..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

/// In memory, for tests and simulations.
#[derive(Default)]
pub struct MemStore {
    data: RwLock<Committed>,
}

type Committed = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

impl MemStore {
    /// An independent copy: two chains from one state, to compare what different blocks do.
    pub fn fork(&self) -> Result<MemStore, StoreError> {
        let data = self.data.read().map_err(backend)?.clone();
        Ok(MemStore {
            data: RwLock::new(data),
        })
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let data = self.data.read().map_err(backend)?;
        Ok(data.get(&(table, key.to_vec())).cloned())
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut data = self.data.write().map_err(backend)?;
        for (k, v) in &batch.writes {
            match v {
                Some(v) => data.insert(k.clone(), v.clone()),
                None => data.remove(k),
            };
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        let data = self.data.read().map_err(backend)?;
        Ok(data
            .range((table, start.to_vec())..)
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StoreError> {
        (**self).scan(table, prefix, start, limit)
    }
}
