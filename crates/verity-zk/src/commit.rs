//! The commitments a proof publishes: Poseidon (BN254, width 3, x⁵, 8 full and 57 partial
//! rounds, constants from the Grain LFSR as the Poseidon paper specifies) over a salt and the
//! tensors' values packed 248 bits to a field element. Poseidon rather than SHA-256 because it
//! commits to the digits model's 64 input bytes in 723 constraints where SHA-256 takes 74,270
//! (`commitment_costs`, `docs/protocol.md` §13); the enclave's signature covers the
//! commitments beside the SHA-256 hashes of the files, which ties the two.

use std::sync::OnceLock;

use ark_bn254::Fr;
use ark_crypto_primitives::sponge::constraints::CryptographicSpongeVar;
use ark_crypto_primitives::sponge::poseidon::constraints::PoseidonSpongeVar;
use ark_crypto_primitives::sponge::poseidon::{
    find_poseidon_ark_and_mds, PoseidonConfig, PoseidonSponge,
};
use ark_crypto_primitives::sponge::CryptographicSponge;
use ark_ff::{BigInteger, Field, PrimeField};
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::r1cs::{ConstraintSystemRef, SynthesisError};
use verity_types::Hash;

use crate::gadgets::{fr, Num};

/// Domain separators absorbed first: an input commitment can never equal an output one.
pub const INPUT_DOMAIN: u64 = 1;
pub const OUTPUT_DOMAIN: u64 = 2;
/// Bits packed into one field element (BN254's scalar field holds 253).
const PACK_BITS: u32 = 248;

pub fn poseidon_config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (full, partial, rate) = (8, 57, 2);
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            Fr::MODULUS_BIT_SIZE as u64,
            rate,
            full as u64,
            partial as u64,
            0,
        );
        PoseidonConfig::new(full, partial, 5, mds, ark, rate, 1)
    })
}

/// One packed word: values, each offset to be non-negative, `width` bits apart.
struct Packing {
    /// (value, offset, width) of each element, in order.
    widths: Vec<(usize, i128, u32)>,
}

/// The packing of `values` whose element `i` lies in `ranges[i]`: each is offset by its lower
/// bound and given the bits of its range, and consecutive elements share a field element while
/// they fit in 248 bits.
fn words<T>(items: &[T], range: impl Fn(&T) -> (i128, i128)) -> Vec<Packing> {
    let mut out = vec![];
    let mut current = Packing { widths: vec![] };
    let mut used = 0;
    for (i, item) in items.iter().enumerate() {
        let (lo, hi) = range(item);
        let width = crate::gadgets::bit_len((hi - lo) as u128).max(1) as u32;
        if used + width > PACK_BITS && !current.widths.is_empty() {
            out.push(std::mem::replace(&mut current, Packing { widths: vec![] }));
            used = 0;
        }
        current.widths.push((i, lo, width));
        used += width;
    }
    if !current.widths.is_empty() {
        out.push(current);
    }
    out
}

/// The commitment, natively, to values `values` with bounds `ranges` (the same as the circuit's).
pub fn commit_native(domain: u64, salt: Fr, values: &[(i128, i128, i128)]) -> Fr {
    let mut sponge = PoseidonSponge::new(poseidon_config());
    let mut input = vec![Fr::from(domain), salt];
    for word in words(values, |v| (v.1, v.2)) {
        let mut acc = Fr::from(0u64);
        let mut shift = Fr::from(1u64);
        for (i, lo, width) in word.widths {
            acc += fr(values[i].0 - lo) * shift;
            shift *= Fr::from(2u64).pow([u64::from(width)]);
        }
        input.push(acc);
    }
    sponge.absorb(&input);
    sponge.squeeze_field_elements::<Fr>(1)[0]
}

/// Poseidon inside the circuit over a domain, a salt and already packed `words`.
pub fn commit_words(
    cs: &ConstraintSystemRef<Fr>,
    domain: u64,
    salt: &FpVar<Fr>,
    words: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut input = vec![FpVar::Constant(Fr::from(domain)), salt.clone()];
    input.extend_from_slice(words);
    let mut sponge = PoseidonSpongeVar::new(cs.clone(), poseidon_config());
    sponge.absorb(&input)?;
    Ok(sponge.squeeze_field_elements(1)?.remove(0))
}

/// The commitment inside the circuit to `nums`, each within its bounds.
pub fn commit_circuit(
    cs: &ConstraintSystemRef<Fr>,
    domain: u64,
    salt: &FpVar<Fr>,
    nums: &[Num],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut packed = Vec::new();
    for word in words(nums, |n| (n.lo, n.hi)) {
        let mut acc = FpVar::Constant(Fr::from(0u64));
        let mut shift = Fr::from(1u64);
        for (i, lo, width) in word.widths {
            acc += (&nums[i].var - FpVar::Constant(fr(lo))) * FpVar::Constant(shift);
            shift *= Fr::from(2u64).pow([u64::from(width)]);
        }
        packed.push(acc);
    }
    commit_words(cs, domain, salt, &packed)
}

/// Domain tag of the commitments' salt.
pub const SALT_DOMAIN: &[u8] = b"verity/zk-salt/v1";

/// The salt of a task's commitments, from its input file: whoever has the file can compute
/// (and so check) the commitments, and they reveal nothing the file's SHA-256, already on
/// chain, does not.
pub fn salt_of(input_file: &[u8]) -> Fr {
    Fr::from_be_bytes_mod_order(&verity_types::sha256(&[SALT_DOMAIN, input_file].concat()).0)
}

/// A field element as 32 big-endian bytes.
pub fn to_hash(x: &Fr) -> Hash {
    let bytes = x.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Hash(out)
}

/// 32 big-endian bytes as a field element, if they are one (below the modulus).
pub fn from_hash(h: &Hash) -> Option<Fr> {
    let x = Fr::from_be_bytes_mod_order(&h.0);
    (to_hash(&x) == *h).then_some(x)
}

/// A model id as the public input that names the model: its first 31 bytes, big-endian.
pub fn model_input(model_id: &Hash) -> Fr {
    Fr::from_be_bytes_mod_order(&model_id.0[..31])
}
