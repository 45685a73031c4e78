//! Which tasks this worker has already submitted receipts for, and in which transaction, kept on
//! disk so that a restarted worker does not submit the same result twice.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use verity_types::Hash;

pub struct Journal {
    path: PathBuf,
    /// task id → the transaction carrying its receipt.
    entries: BTreeMap<Hash, Hash>,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Self> {
        let mut entries = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // A torn last line (crash mid-write) is dropped: that receipt is simply redone.
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                if let (Some(Ok(task)), Some(Ok(tx))) = (
                    parts.next().map(str::parse::<Hash>),
                    parts.next().map(str::parse::<Hash>),
                ) {
                    entries.insert(task, tx);
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn contains(&self, task: &Hash) -> bool {
        self.entries.contains_key(task)
    }

    /// Transactions still awaiting a verdict.
    pub fn transactions(&self) -> Vec<Hash> {
        let mut txs: Vec<Hash> = self.entries.values().copied().collect();
        txs.sort();
        txs.dedup();
        txs
    }

    /// Appends and syncs before the transaction is sent.
    pub fn record(&mut self, tasks: &[Hash], tx: Hash) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let mut text = String::new();
        for task in tasks {
            text.push_str(&format!("{task} {tx}\n"));
            self.entries.insert(*task, tx);
        }
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// Forgets every task carried by `tx` (settled, or lost and to be redone) and compacts.
    pub fn forget(&mut self, tx: &Hash) -> Result<()> {
        self.entries.retain(|_, t| t != tx);
        let text: String = self
            .entries
            .iter()
            .map(|(task, tx)| format!("{task} {tx}\n"))
            .collect();
        // Synced before the rename, and the directory after it: a crash leaves the old journal
        // or the new one, never an empty file in its place.
        let tmp = self.path.with_extension("tmp");
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", dir.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut j = Journal::open(&path).unwrap();
        j.record(&[Hash([1; 32]), Hash([2; 32])], Hash([9; 32]))
            .unwrap();
        j.record(&[Hash([3; 32])], Hash([8; 32])).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"0xdead")
            .unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert!(j.contains(&Hash([1; 32])) && j.contains(&Hash([3; 32])));
        assert_eq!(j.transactions().len(), 2);
        j.forget(&Hash([9; 32])).unwrap();
        let j = Journal::open(&path).unwrap();
        assert!(!j.contains(&Hash([1; 32])));
        assert!(j.contains(&Hash([3; 32])));
    }
}
