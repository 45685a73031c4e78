//! Binary Merkle trees over 32-byte leaves, shaped as in RFC 9162 (Certificate Transparency):
//! a tree of `n > 1` leaves splits at the largest power of two below `n`.
//!
//! Leaves are hashes already (trace steps, initializers); an interior node is
//! `SHA-256(0x01 || left || right)`. The root of zero leaves is `SHA-256("")`; the root of one
//! leaf is the leaf itself. A proof binds the leaf's index and the tree size, so a leaf cannot be
//! passed off as an interior node or moved to another position.

use sha2::{Digest, Sha256};
use verity_types::Hash;

const NODE_PREFIX: u8 = 0x01;

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Largest power of two strictly below `n` (n >= 2).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle root of `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => verity_types::sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// An inclusion proof: siblings from the leaf's level up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleProof {
    pub index: u64,
    pub leaf_count: u64,
    pub siblings: Vec<Hash>,
}

/// Proves that `leaves[index]` is in `root(leaves)`. `None` when `index` is out of range.
pub fn prove(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut siblings = Vec::new();
    path(leaves, index, &mut siblings);
    Some(MerkleProof {
        index: index as u64,
        leaf_count: leaves.len() as u64,
        siblings,
    })
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        path(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

impl MerkleProof {
    /// Whether `leaf` sits at `self.index` in a tree of `self.leaf_count` leaves with this `root`.
    /// (RFC 9162 §2.1.3.2.)
    pub fn verify(&self, leaf: &Hash, root: &Hash) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        let mut fnode = self.index;
        let mut snode = self.leaf_count - 1;
        let mut acc = *leaf;
        for sibling in &self.siblings {
            if snode == 0 {
                return false;
            }
            if fnode & 1 == 1 || fnode == snode {
                acc = node(sibling, &acc);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                acc = node(&acc, sibling);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        snode == 0 && acc == *root
    }
}

/// A node of the tree: the leaves `[start, start + len)`, as the split recursion from the root
/// produces them. Its hash is `root(&leaves[start..start + len])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u64,
    pub len: u64,
}

impl Span {
    /// The whole tree over `len` leaves.
    pub fn all(len: u64) -> Self {
        Span { start: 0, len }
    }

    /// The descendants `depth` binary levels below this node, left to right; a leaf on the way
    /// stands for itself. These are what a dissection move reveals: at most 2^depth of them.
    pub fn descendants(self, depth: u32) -> Vec<Span> {
        let mut out = Vec::new();
        self.collect(depth, &mut out);
        out
    }

    fn collect(self, depth: u32, out: &mut Vec<Span>) {
        if depth == 0 || self.len <= 1 {
            out.push(self);
            return;
        }
        let k = split_point(self.len as usize) as u64;
        Span {
            start: self.start,
            len: k,
        }
        .collect(depth - 1, out);
        Span {
            start: self.start + k,
            len: self.len - k,
        }
        .collect(depth - 1, out);
    }

    /// The hash of this node from the hashes of its [`Span::descendants`] at `depth`, or `None`
    /// when their number is wrong. A reveal is accepted only if this gives the hash its side
    /// committed for the node.
    pub fn fold(self, depth: u32, hashes: &[Hash]) -> Option<Hash> {
        let mut next = hashes.iter();
        let hash = self.fold_from(depth, &mut next)?;
        next.next().is_none().then_some(hash)
    }

    fn fold_from<'a>(self, depth: u32, next: &mut impl Iterator<Item = &'a Hash>) -> Option<Hash> {
        if depth == 0 || self.len <= 1 {
            return next.next().copied();
        }
        let k = split_point(self.len as usize) as u64;
        let left = Span {
            start: self.start,
            len: k,
        }
        .fold_from(depth - 1, next)?;
        let right = Span {
            start: self.start + k,
            len: self.len - k,
        }
        .fold_from(depth - 1, next)?;
        Some(node(&left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| verity_types::sha256(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn small_trees_have_the_documented_shape() {
        let l = leaves(3);
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node(&l[0], &l[1]));
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), verity_types::sha256(b""));
    }

    proptest! {
        #[test]
        fn descendants_fold_back_to_their_node(n in 1u64..300, depth in 0u32..6, path in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let l = leaves(n as usize);
            // Walk down from the root along random descendants; at every node, the hashes of
            // its descendants fold back to its hash, and any change or any count is refused.
            let mut span = Span::all(n);
            for pick in path {
                let parts = span.descendants(depth);
                prop_assert!(parts.len() <= 1 << depth);
                prop_assert_eq!(parts.iter().map(|p| p.len).sum::<u64>(), span.len);
                let hashes: Vec<Hash> = parts
                    .iter()
                    .map(|p| root(&l[p.start as usize..(p.start + p.len) as usize]))
                    .collect();
                let expected = root(&l[span.start as usize..(span.start + span.len) as usize]);
                prop_assert_eq!(span.fold(depth, &hashes), Some(expected));
                let mut bent = hashes.clone();
                let i = pick.index(bent.len());
                bent[i] = verity_types::sha256(b"bent");
                prop_assert_ne!(span.fold(depth, &bent), Some(expected));
                prop_assert_eq!(span.fold(depth, &hashes[1..]), None);
                let mut longer = hashes.clone();
                longer.push(expected);
                prop_assert_eq!(span.fold(depth, &longer), None);
                span = parts[i];
            }
        }

        #[test]
        fn every_leaf_proves_and_nothing_else_does(n in 1usize..70, pick in any::<prop::sample::Index>()) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick.index(n);
            let proof = prove(&l, i).unwrap();
            prop_assert!(proof.verify(&l[i], &r));
            // Another leaf, another position or a bent sibling all fail. (The size is not the
            // prover's to choose: verifiers take it from the committed trace length.)
            prop_assert!(!proof.verify(&verity_types::sha256(b"other"), &r));
            if n > 1 {
                let moved = MerkleProof { index: ((i + 1) % n) as u64, ..proof.clone() };
                prop_assert!(!moved.verify(&l[i], &r));
                let mut bent = proof.clone();
                bent.siblings[0].0[0] ^= 1;
                prop_assert!(!bent.verify(&l[i], &r));
            }
        }
    }

    #[test]
    fn out_of_range_index_has_no_proof() {
        assert!(prove(&leaves(4), 4).is_none());
        let bogus = MerkleProof {
            index: 5,
            leaf_count: 4,
            siblings: vec![],
        };
        assert!(!bogus.verify(&Hash::ZERO, &Hash::ZERO));
    }
}
