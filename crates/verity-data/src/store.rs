//! Blobs on disk, one file per CID. A write goes to a temporary file while it is hashed and is
//! renamed into place only once complete and synced, so a crash never leaves a partial blob
//! under a CID.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use verity_types::Hash;

use crate::cid_of;

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob is over the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob content does not match the expected hash {expected}")]
    HashMismatch { expected: Hash },
    #[error("only {free} bytes of disk are free; this node keeps {floor} free for its chain")]
    DiskFull { free: u64, floor: u64 },
    #[error("reading the upload: {0}")]
    Upload(String),
    #[error("blob store at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a stored blob is called and how big it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub cid: String,
    pub hash: Hash,
    pub size: u64,
}

/// A directory of blobs named by CID.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    max_bytes: u64,
    /// Free disk, in bytes, that blobs never eat into: the chain's own storage shares the disk.
    disk_floor: u64,
}

impl BlobStore {
    /// Opens (creating) the store; blobs over `max_bytes` are refused.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, BlobError> {
        let io = |source| BlobError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir.join("tmp")).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            disk_floor: 0,
        })
    }

    /// Refuses uploads that would leave less than `bytes` free on the store's disk.
    pub fn with_disk_floor(mut self, bytes: u64) -> Self {
        self.disk_floor = bytes;
        self
    }

    /// Bytes free to unprivileged writers on the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64, BlobError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| BlobError::Io {
            path: self.dir.clone(),
            source: e.into(),
        })?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Whether `incoming` more bytes fit above the disk floor.
    pub fn check_space(&self, incoming: u64) -> Result<(), BlobError> {
        if self.disk_floor == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < self.disk_floor.saturating_add(incoming) {
            return Err(BlobError::DiskFull {
                free,
                floor: self.disk_floor,
            });
        }
        Ok(())
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path_of(&self, hash: &Hash) -> PathBuf {
        self.dir.join(cid_of(hash))
    }

    /// The file holding the blob with this hash, if stored.
    pub fn locate(&self, hash: &Hash) -> Option<PathBuf> {
        let path = self.path_of(hash);
        path.is_file().then_some(path)
    }

    pub async fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path_of(hash);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }

    pub async fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        let chunk = bytes::Bytes::copy_from_slice(bytes);
        self.put_stream(
            futures::stream::iter([Ok::<_, std::io::Error>(chunk)]),
            None,
        )
        .await
    }

    /// Streams an upload to disk, hashing as it goes; refuses it past the size limit, and when
    /// `expected` is given, unless its hash matches.
    pub async fn put_stream<S, E>(
        &self,
        mut body: S,
        expected: Option<Hash>,
    ) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.check_space(0)?;
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        let result = async {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Upload(e.to_string()))?;
                size += chunk.len() as u64;
                if size > self.max_bytes {
                    return Err(BlobError::TooLarge {
                        limit: self.max_bytes,
                    });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io(&tmp))?;
            }
            file.sync_all().await.map_err(io(&tmp))?;
            let hash = Hash(hasher.finalize().into());
            if let Some(expected) = expected {
                if expected != hash {
                    return Err(BlobError::HashMismatch { expected });
                }
            }
            Ok((hash, size))
        }
        .await;
        drop(file);
        match result {
            Ok((hash, size)) => {
                let path = self.path_of(&hash);
                tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
                Ok(StoredBlob {
                    cid: cid_of(&hash),
                    hash,
                    size,
                })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use verity_types::sha256;

    #[tokio::test]
    async fn put_get_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 10).unwrap();
        let blob = store.put(b"hello").await.unwrap();
        assert_eq!(blob.hash, sha256(b"hello"));
        assert_eq!(blob.size, 5);
        assert_eq!(store.get(&blob.hash).await.unwrap().unwrap(), b"hello");
        assert!(store.get(&sha256(b"other")).await.unwrap().is_none());
        // Storing the same bytes again is idempotent.
        assert_eq!(store.put(b"hello").await.unwrap(), blob);
        assert!(matches!(
            store.put(b"eleven bytes").await,
            Err(BlobError::TooLarge { limit: 10 })
        ));
        let stream =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"abc"))]);
        assert!(matches!(
            store.put_stream(stream, Some(sha256(b"abd"))).await,
            Err(BlobError::HashMismatch { .. })
        ));
        // Nothing is stored when the disk is below the floor.
        let floored = store.clone().with_disk_floor(u64::MAX);
        assert!(matches!(
            floored.put(b"x").await,
            Err(BlobError::DiskFull {
                floor: u64::MAX,
                ..
            })
        ));
        assert!(store.free_bytes().unwrap() > 0);
        // Refused uploads leave nothing behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
