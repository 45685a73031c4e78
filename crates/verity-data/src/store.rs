//! Blobs on disk, one file per CID. A write goes to a temporary file while it is hashed and is
//! renamed into place only once complete and synced, so a crash never leaves a partial blob
//! under a CID.
//!
//! Every blob also has the CID `ipfs add --cid-version 1 --raw-leaves` gives it
//! ([`crate::unixfs::file_cid`]): the raw CID for one block, a dag-pb root above. The store keeps
//! that name beside the blob (`ipfs/<that CID>` holds the SHA-256), so a blob can be fetched by
//! either. With an IPFS node ([`BlobStore::with_ipfs`]), every blob is added to it as it is stored,
//! and a blob missing here is fetched from it, checked against its SHA-256, and kept: the node's
//! directory is then a cache of what IPFS holds.

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
    #[error("the IPFS node: {0}")]
    Ipfs(#[from] crate::ipfs::IpfsError),
    #[error("the IPFS node served other bytes than blob {expected}")]
    IpfsMismatch { expected: Hash },
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
    /// CIDv1, raw, of its SHA-256: the name the chain's hashes map to.
    pub cid: String,
    /// The CID an IPFS node gives the same bytes (equal to `cid` for one block).
    pub ipfs_cid: String,
    pub hash: Hash,
    pub size: u64,
}

/// A directory of blobs named by CID.
#[derive(Clone)]
pub struct BlobStore {
    dir: PathBuf,
    max_bytes: u64,
    /// Free disk, in bytes, that blobs never eat into: the chain's own storage shares the disk.
    disk_floor: u64,
    /// Bytes promised to uploads under way: each is checked against the floor with the others,
    /// so concurrent uploads cannot each pass the check and together cross it.
    reserved: std::sync::Arc<std::sync::Mutex<u64>>,
    ipfs: Option<crate::ipfs::Ipfs>,
}

/// Space held for one upload until it ends (dropped).
#[must_use = "the space is released when this is dropped"]
pub struct SpaceReservation {
    reserved: std::sync::Arc<std::sync::Mutex<u64>>,
    bytes: u64,
}

impl Drop for SpaceReservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().expect("reservation lock");
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("dir", &self.dir)
            .field("ipfs", &self.ipfs.as_ref().map(|i| i.url().to_string()))
            .finish()
    }
}

impl BlobStore {
    /// Opens (creating) the store; blobs over `max_bytes` are refused.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, BlobError> {
        let io = |source| BlobError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir.join("tmp")).map_err(io)?;
        std::fs::create_dir_all(dir.join("ipfs")).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            disk_floor: 0,
            reserved: Default::default(),
            ipfs: None,
        })
    }

    /// Adds every blob stored from now on to `ipfs`, and fetches missing blobs from it.
    pub fn with_ipfs(mut self, ipfs: crate::ipfs::Ipfs) -> Self {
        self.ipfs = Some(ipfs);
        self
    }

    pub fn ipfs(&self) -> Option<&crate::ipfs::Ipfs> {
        self.ipfs.as_ref()
    }

    fn ipfs_entry(&self, ipfs_cid: &str) -> PathBuf {
        self.dir.join("ipfs").join(ipfs_cid)
    }

    /// The SHA-256 of the blob a CID names: a raw sha2-256 CID names it directly; an IPFS
    /// file CID (dag-pb) names a blob this store has seen under it.
    pub fn resolve(&self, cid: &str) -> Result<Option<Hash>, crate::CidError> {
        match crate::parse_cid(cid) {
            Ok(hash) => Ok(Some(hash)),
            Err(crate::CidError::Unsupported(_)) => {
                let parsed = cid::Cid::try_from(cid.trim())
                    .map_err(|e| crate::CidError::Parse(e.to_string()))?;
                let Ok(text) = std::fs::read_to_string(self.ipfs_entry(&parsed.to_string())) else {
                    return Ok(None);
                };
                Ok(text.trim().parse().ok())
            }
            Err(e) => Err(e),
        }
    }

    /// The IPFS file CID recorded for `hash`, when it differs from the raw CID.
    fn ipfs_cid_of(&self, hash: &Hash) -> Option<cid::Cid> {
        std::fs::read_to_string(self.dir.join("ipfs").join(format!("{}.cid", cid_of(hash))))
            .ok()
            .and_then(|text| cid::Cid::try_from(text.trim()).ok())
    }

    /// The file holding `hash`'s blob: this directory's, or fetched from the IPFS node and kept.
    /// `None` when neither has it.
    pub async fn fetch(&self, hash: &Hash) -> Result<Option<PathBuf>, BlobError> {
        if let Some(path) = self.locate(hash) {
            return Ok(Some(path));
        }
        let Some(ipfs) = &self.ipfs else {
            return Ok(None);
        };
        let cid = match self.ipfs_cid_of(hash) {
            Some(cid) => cid,
            None => cid::Cid::try_from(cid_of(hash).as_str()).expect("our CIDs parse"),
        };
        // An IPFS node may look for a block it lacks for a long time; past this, it has none.
        let bytes = match tokio::time::timeout(IPFS_FETCH_TIMEOUT, ipfs.cat(&cid)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(crate::ipfs::IpfsError::Refused { .. })) | Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(e.into()),
        };
        if verity_types::sha256(&bytes) != *hash {
            return Err(BlobError::IpfsMismatch { expected: *hash });
        }
        // Kept without adding it back: IPFS already holds it.
        let local = Self {
            ipfs: None,
            ..self.clone()
        };
        local.put(&bytes).await?;
        Ok(self.locate(hash))
    }

    /// Names the stored blob at `path` as IPFS does, records that name, and adds it to the IPFS
    /// node when there is one (which must name it alike).
    async fn name_for_ipfs(&self, path: &Path, hash: &Hash) -> Result<String, BlobError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| BlobError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let ipfs_cid = match &self.ipfs {
            Some(ipfs) => ipfs.add(bytes).await?.to_string(),
            None => tokio::task::spawn_blocking(move || crate::unixfs::file_cid(&bytes))
                .await
                .map_err(|e| BlobError::Upload(e.to_string()))?,
        };
        let raw = cid_of(hash);
        if ipfs_cid != raw {
            let io = |path: PathBuf| move |source| BlobError::Io { path, source };
            let entry = self.ipfs_entry(&ipfs_cid);
            tokio::fs::write(&entry, hash.to_string())
                .await
                .map_err(io(entry))?;
            let back = self.dir.join("ipfs").join(format!("{raw}.cid"));
            tokio::fs::write(&back, &ipfs_cid).await.map_err(io(back))?;
        }
        Ok(ipfs_cid)
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

    /// Whether `incoming` more bytes fit above the disk floor, besides the uploads under way.
    pub fn check_space(&self, incoming: u64) -> Result<(), BlobError> {
        let reserved = *self.reserved.lock().expect("reservation lock");
        self.fits(incoming.saturating_add(reserved))
    }

    fn fits(&self, bytes: u64) -> Result<(), BlobError> {
        if self.disk_floor == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        if free < self.disk_floor.saturating_add(bytes) {
            return Err(BlobError::DiskFull {
                free,
                floor: self.disk_floor,
            });
        }
        Ok(())
    }

    /// Holds `bytes` above the disk floor for an upload, counted with every other reservation,
    /// until the returned guard is dropped.
    pub fn reserve(&self, bytes: u64) -> Result<SpaceReservation, BlobError> {
        let mut reserved = self.reserved.lock().expect("reservation lock");
        self.fits(reserved.saturating_add(bytes))?;
        *reserved = reserved.saturating_add(bytes);
        Ok(SpaceReservation {
            reserved: self.reserved.clone(),
            bytes,
        })
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
                let ipfs_cid = self.name_for_ipfs(&path, &hash).await?;
                Ok(StoredBlob {
                    cid: cid_of(&hash),
                    ipfs_cid,
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

/// How long a fetch waits for the IPFS node.
const IPFS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use verity_types::sha256;

    /// Race (review): two uploads that each fit above the disk floor but not together both
    /// passed the check, since each was checked against the disk alone. A reservation counts the
    /// uploads under way.
    #[test]
    fn concurrent_uploads_cannot_together_cross_the_disk_floor() {
        const GIB: u64 = 1 << 30;
        let dir = tempfile::tempdir().unwrap();
        let plain = BlobStore::open(dir.path(), u64::MAX).unwrap();
        let free = plain.free_bytes().unwrap();
        assert!(free > 2 * GIB, "the test needs 2 GiB free, has {free}");
        // One GiB above the floor; each upload wants 0.6 of it.
        let store = plain.with_disk_floor(free - GIB);
        let upload = GIB / 10 * 6;
        let first = store.reserve(upload).unwrap();
        assert!(matches!(
            store.reserve(upload),
            Err(BlobError::DiskFull { .. })
        ));
        assert!(
            store.check_space(upload).is_err(),
            "the check counts it too"
        );
        drop(first);
        let second = store.reserve(upload).unwrap();
        drop(second);
        store.check_space(upload).unwrap();
    }

    #[tokio::test]
    async fn put_get_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 10).unwrap();
        let blob = store.put(b"hello").await.unwrap();
        assert_eq!(blob.hash, sha256(b"hello"));
        assert_eq!(blob.size, 5);
        assert_eq!(blob.ipfs_cid, blob.cid, "one block: the raw CID");
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

    #[tokio::test]
    async fn a_blob_over_one_block_is_found_by_its_ipfs_name_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let blob = store.put(&data).await.unwrap();
        assert_eq!(blob.ipfs_cid, crate::unixfs::file_cid(&data));
        assert_ne!(blob.ipfs_cid, blob.cid);
        assert_eq!(store.resolve(&blob.ipfs_cid).unwrap(), Some(blob.hash));
        assert_eq!(store.resolve(&blob.cid).unwrap(), Some(blob.hash));
        let unknown = crate::unixfs::file_cid(&vec![7u8; 300_000]);
        assert_eq!(store.resolve(&unknown).unwrap(), None);
        assert!(store.resolve("not a cid").is_err());
        // No IPFS node: a missing blob is missing.
        assert_eq!(store.fetch(&sha256(b"absent")).await.unwrap(), None);
    }
}
