//! The CID IPFS gives a file: Kubo's `ipfs add --cid-version 1 --raw-leaves` (and js-ipfs's
//! `add` with the same options). A file of one chunk (256 KiB or less) is a raw block, its CID
//! the raw CID of its bytes. A longer file is cut into 256 KiB raw leaves, and the leaves are
//! gathered into a balanced tree of dag-pb UnixFS `File` nodes of at most 174 links each, level
//! by level, left to right; the file's CID is the root's (CIDv1, dag-pb, sha2-256).

use cid::multihash::Multihash;
use cid::Cid;
use sha2::{Digest, Sha256};

/// Kubo's default chunker: `size-262144`.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Kubo's default balanced-layout width.
pub const MAX_LINKS: usize = 174;

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const SHA2_256: u64 = 0x12;
/// UnixFS `Data.DataType.File`.
const UNIXFS_FILE: u64 = 2;

/// One node of the tree as its parent links it.
struct Child {
    cid: Cid,
    /// File bytes under it.
    file_size: u64,
    /// Bytes of every block under it, itself included (dag-pb's `Tsize`).
    tree_size: u64,
}

/// The blocks of `data` as IPFS stores them, each with its CID, root last, and the root's CID.
pub fn blocks(data: &[u8]) -> (Cid, Vec<(Cid, Vec<u8>)>) {
    let mut blocks = Vec::new();
    let mut level: Vec<Child> = if data.is_empty() {
        vec![leaf(&[], &mut blocks)]
    } else {
        data.chunks(CHUNK_SIZE)
            .map(|chunk| leaf(chunk, &mut blocks))
            .collect()
    };
    while level.len() > 1 {
        level = level
            .chunks(MAX_LINKS)
            .map(|children| node(children, &mut blocks))
            .collect();
    }
    let root = level.pop().expect("one node").cid;
    (root, blocks)
}

/// The CID of `data` as a file, in base32 (`bafkrei…` for one block, `bafybei…` above).
pub fn file_cid(data: &[u8]) -> String {
    blocks(data).0.to_string()
}

fn cid(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    Cid::new_v1(
        codec,
        Multihash::<64>::wrap(SHA2_256, &digest).expect("32 bytes fit in 64"),
    )
}

fn leaf(chunk: &[u8], blocks: &mut Vec<(Cid, Vec<u8>)>) -> Child {
    let cid = cid(RAW, chunk);
    blocks.push((cid, chunk.to_vec()));
    Child {
        cid,
        file_size: chunk.len() as u64,
        tree_size: chunk.len() as u64,
    }
}

/// A dag-pb node linking `children`: PBNode { Links (field 2) first, then Data (field 1) }, the
/// canonical order of the dag-pb spec; Data is UnixFS { Type = File, filesize, blocksizes }.
fn node(children: &[Child], blocks: &mut Vec<(Cid, Vec<u8>)>) -> Child {
    let file_size: u64 = children.iter().map(|c| c.file_size).sum();
    let mut unixfs = Vec::new();
    varint_field(&mut unixfs, 1, UNIXFS_FILE);
    varint_field(&mut unixfs, 3, file_size);
    for child in children {
        varint_field(&mut unixfs, 4, child.file_size);
    }
    let mut encoded = Vec::new();
    for child in children {
        let mut link = Vec::new();
        bytes_field(&mut link, 1, &child.cid.to_bytes());
        bytes_field(&mut link, 2, b"");
        varint_field(&mut link, 3, child.tree_size);
        bytes_field(&mut encoded, 2, &link);
    }
    bytes_field(&mut encoded, 1, &unixfs);
    let cid = cid(DAG_PB, &encoded);
    let tree_size = encoded.len() as u64 + children.iter().map(|c| c.tree_size).sum::<u64>();
    blocks.push((cid, encoded));
    Child {
        cid,
        file_size,
        tree_size,
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    varint(out, field << 3);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test files: a 64-bit LCG's high words, little-endian, from `seed` (the same generator
    /// made the files js-ipfs 0.66.1 added to get the CIDs below).
    fn file(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut out = Vec::with_capacity(len + 4);
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(&((x >> 32) as u32).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// `POST /api/v0/add?cid-version=1&raw-leaves=true` on a js-ipfs 0.66.1 daemon.
    #[test]
    fn cids_equal_an_ipfs_daemons() {
        for (data, expected) in [
            (
                b"hello".to_vec(),
                "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
            ),
            (
                file(CHUNK_SIZE, 3),
                "bafkreial4ki5zxcrexwlo6r4qbufnxrc5i2evyij7345i2bbm7urjh6z4a",
            ),
            (
                file(CHUNK_SIZE + 1, 4),
                "bafybeidd6ursxr4mitj5ndcweqop5dskj2queom3lhcvq3dadx7jdd7awi",
            ),
            (
                file(1 << 20, 1),
                "bafybeigw5vpf75rsz23blegkbky3r7sejbuhkw6w7ujeolyrmyjhehtfnu",
            ),
            (
                file(10 << 20, 2),
                "bafybeihphhxn3hkfw4bipu2qhakf2lkcrjmxp7ofsx4vl3puvtyrvs2f4e",
            ),
            // 181 leaves: two levels, the second root over 174 + 7.
            (
                file(45 * (1 << 20) + 7, 5),
                "bafybeih37hy7w6mdj4ugl4crt6jeyusij6doqhwnpu7voj7s7ots4y3ef4",
            ),
        ] {
            assert_eq!(file_cid(&data), expected, "{} bytes", data.len());
        }
    }

    #[test]
    fn one_block_files_keep_the_raw_cid_of_their_bytes() {
        let data = b"id,label\n1,0\n";
        let hash = verity_types::sha256(data);
        assert_eq!(file_cid(data), crate::cid_of(&hash));
        let (root, blocks) = blocks(&file(3 * CHUNK_SIZE, 9));
        assert_eq!(blocks.len(), 4, "three leaves and their parent");
        assert_eq!(blocks.last().unwrap().0, root);
    }
}
