//! Pending writes over the store: a block's batch, with a nested scope per transaction so a
//! failed transaction's writes can be dropped while its fee stays charged.

use crate::store::{Batch, Entries, KeyValues, Store, Table};
use crate::StateError;

pub struct Overlay<'a> {
    store: &'a dyn Store,
    block: Batch,
    tx: Option<Entries>,
}

impl<'a> Overlay<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        Self {
            store,
            block: Batch::default(),
            tx: None,
        }
    }

    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let k = (table, key.to_vec());
        if let Some(v) = self.tx.as_ref().and_then(|tx| tx.get(&k)) {
            return Ok(v.clone());
        }
        if let Some(v) = self.block.writes.get(&k) {
            return Ok(v.clone());
        }
        Ok(self.store.get(table, key)?)
    }

    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.write(table, key, Some(value));
    }

    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.write(table, key, None);
    }

    fn write(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.tx.as_mut() {
            Some(tx) => {
                tx.insert((table, key), value);
            }
            None => {
                self.block.writes.insert((table, key), value);
            }
        }
    }

    /// Up to `limit` entries whose keys start with `prefix`, in key order, as this overlay sees
    /// them: the store's, with this block's pending writes and deletions applied.
    pub fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StateError> {
        self.scan_from(table, prefix, prefix, limit)
    }

    /// Like [`Overlay::scan_prefix`], from `start` (a key under `prefix`) on.
    pub fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StateError> {
        let within = |entries: &'_ Entries| {
            entries
                .range((table, start.to_vec())..)
                .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        // The open scope's writes come last, so they override the block's.
        let mut pending: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            within(&self.block.writes).into_iter().collect();
        if let Some(tx) = &self.tx {
            pending.extend(within(tx));
        }
        let deleted = pending.values().filter(|v| v.is_none()).count();
        let stored = self
            .store
            .scan(table, prefix, start, limit.saturating_add(deleted))?;
        let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for (key, value) in pending {
            match value {
                Some(v) => merged.insert(key, v),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    /// Reads a JSON record.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StateError> {
        self.get(table, key)?
            .map(|raw| serde_json::from_slice(&raw).map_err(|_| StateError::Corrupt(what)))
            .transpose()
    }

    /// Writes a JSON record.
    pub fn put_json<T: serde::Serialize>(&mut self, table: Table, key: Vec<u8>, value: &T) {
        self.put(
            table,
            key,
            serde_json::to_vec(value).expect("state records serialize"),
        );
    }

    /// Writes made in this block so far (the open scope excluded).
    pub fn block_writes(&self) -> &Batch {
        &self.block
    }

    /// Starts a scope whose writes can be dropped with [`Overlay::revert_scope`].
    pub fn begin_scope(&mut self) {
        debug_assert!(self.tx.is_none(), "scopes do not nest");
        self.tx = Some(Entries::new());
    }

    pub fn commit_scope(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.block.writes.extend(tx);
        }
    }

    pub fn revert_scope(&mut self) {
        self.tx = None;
    }

    pub fn into_batch(mut self) -> Batch {
        self.commit_scope();
        self.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn keys(entries: KeyValues) -> Vec<Vec<u8>> {
        entries.into_iter().map(|(k, _)| k).collect()
    }

    /// A scan sees the store with the block's and the open scope's writes applied, whatever
    /// other keys those writes hold, and pages on from a start key.
    #[test]
    fn scans_merge_pending_writes_and_page_from_a_start() {
        let store = MemStore::default();
        let mut batch = Batch::default();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            batch.put(Table::Tasks, k.to_vec(), vec![1]);
        }
        store.commit(&batch).unwrap();
        let mut state = Overlay::new(&store);
        state.delete(Table::Tasks, b"a2".to_vec());
        state.put(Table::Tasks, b"b0".to_vec(), vec![2]);
        state.begin_scope();
        state.put(Table::Tasks, b"a0".to_vec(), vec![3]);
        assert_eq!(
            keys(state.scan_prefix(Table::Tasks, b"a", 10).unwrap()),
            vec![b"a0".to_vec(), b"a1".to_vec(), b"a3".to_vec()]
        );
        assert_eq!(
            keys(state.scan_prefix(Table::Tasks, b"a", 2).unwrap()),
            vec![b"a0".to_vec(), b"a1".to_vec()]
        );
        assert_eq!(
            keys(state.scan_from(Table::Tasks, b"a", b"a10", 10).unwrap()),
            vec![b"a3".to_vec()]
        );
        state.revert_scope();
        assert_eq!(
            keys(state.scan_prefix(Table::Tasks, b"b", 10).unwrap()),
            vec![b"b0".to_vec(), b"b1".to_vec()]
        );
    }
}
