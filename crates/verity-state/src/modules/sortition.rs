//! Weighted draws among eligible workers whose cost does not grow with their number.
//!
//! Each pool (one per model, plus one for workers that serve every model) is a Fenwick tree of
//! draw weights (stake × reputation factor, zero when ineligible) over slots that workers take
//! on first use. A tree has a fixed capacity of 2^[`DEPTH`] slots, so updating a weight writes
//! at most [`DEPTH`] nodes and a draw reads at most [`DEPTH`] nodes per pool, whether ten or a
//! million workers have staked. Nodes that sum to zero are not stored.
//!
//! Weights are refreshed whenever what they depend on changes (stake, served models, enclave,
//! reputation). Enclave expiry depends on time alone, so a drawn worker is checked again in
//! full; one found ineligible is refreshed to zero and the draw retried.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Hash};

use crate::modules::tasks;
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError};

/// log2 of a tree's slot capacity.
const DEPTH: u32 = 32;
const CAPACITY: u64 = 1 << DEPTH;

/// Key prefixes under [`Table::Staking`].
const NODE: u8 = b'f';
const SLOT: u8 = b's';
const OWNER: u8 = b'o';
const SLOTS_USED: u8 = b'n';
const ENTRY: u8 = b'r';

/// A pool: the workers of one model, those serving every model, or data verifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pool {
    Model(Hash),
    Every,
    Data,
}

impl Pool {
    fn id(&self) -> [u8; 33] {
        let mut id = [0u8; 33];
        match self {
            Pool::Model(model) => {
                id[0] = b'm';
                id[1..].copy_from_slice(&model.0);
            }
            Pool::Every => id[0] = b'*',
            Pool::Data => id[0] = b'D',
        }
        id
    }
}

fn key(prefix: u8, pool: &Pool, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 33 + rest.len());
    key.push(prefix);
    key.extend_from_slice(&pool.id());
    key.extend_from_slice(rest);
    key
}

fn read_u128(state: &Overlay<'_>, key: &[u8]) -> Result<u128, StateError> {
    match state.get(Table::Staking, key)? {
        None => Ok(0),
        Some(raw) => Ok(u128::from_le_bytes(
            raw.try_into()
                .map_err(|_| StateError::Corrupt("sortition node"))?,
        )),
    }
}

fn read_u64(state: &Overlay<'_>, key: &[u8]) -> Result<Option<u64>, StateError> {
    state
        .get(Table::Staking, key)?
        .map(|raw| {
            raw.try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StateError::Corrupt("sortition slot"))
        })
        .transpose()
}

fn node_key(pool: &Pool, index: u64) -> Vec<u8> {
    key(NODE, pool, &index.to_be_bytes())
}

/// Adds `delta` (or subtracts, when `add` is false) at `slot`.
fn update(
    state: &mut Overlay<'_>,
    pool: &Pool,
    slot: u64,
    delta: u128,
    add: bool,
) -> Result<(), StateError> {
    let mut index = slot;
    while index <= CAPACITY {
        let node = node_key(pool, index);
        let value = read_u128(state, &node)?;
        let value = if add {
            value
                .checked_add(delta)
                .ok_or(StateError::Corrupt("sortition weights overflow"))?
        } else {
            value
                .checked_sub(delta)
                .ok_or(StateError::Corrupt("sortition weight below zero"))?
        };
        if value == 0 {
            state.delete(Table::Staking, node);
        } else {
            state.put(Table::Staking, node, value.to_le_bytes().to_vec());
        }
        index += index & index.wrapping_neg();
    }
    Ok(())
}

/// The sum of every weight in `pool`.
fn total(state: &Overlay<'_>, pool: &Pool) -> Result<u128, StateError> {
    read_u128(state, &node_key(pool, CAPACITY))
}

/// The worker whose weight interval holds `point` (< the pool's total).
fn find(state: &Overlay<'_>, pool: &Pool, mut point: u128) -> Result<Address, StateError> {
    let mut position = 0u64;
    for bit in (0..DEPTH).rev() {
        let next = position + (1u64 << bit);
        let value = read_u128(state, &node_key(pool, next))?;
        if value <= point {
            position = next;
            point -= value;
        }
    }
    let raw = state
        .get(
            Table::Staking,
            &key(OWNER, pool, &(position + 1).to_be_bytes()),
        )?
        .ok_or(StateError::Corrupt("sortition slot without owner"))?;
    Ok(Address(
        raw.try_into()
            .map_err(|_| StateError::Corrupt("sortition owner"))?,
    ))
}

/// Sets `worker`'s weight in `pool`, taking a slot on first use.
fn set(
    state: &mut Overlay<'_>,
    pool: &Pool,
    worker: &Address,
    old: u128,
    new: u128,
) -> Result<(), StateError> {
    if old == new {
        return Ok(());
    }
    let slot_key = key(SLOT, pool, &worker.0);
    let slot = match read_u64(state, &slot_key)? {
        Some(slot) => slot,
        None => {
            let used_key = key(SLOTS_USED, pool, &[]);
            let slot = read_u64(state, &used_key)?.unwrap_or(0) + 1;
            if slot > CAPACITY {
                return Err(StateError::Corrupt("sortition pool is full"));
            }
            state.put(Table::Staking, used_key, slot.to_be_bytes().to_vec());
            state.put(Table::Staking, slot_key, slot.to_be_bytes().to_vec());
            state.put(
                Table::Staking,
                key(OWNER, pool, &slot.to_be_bytes()),
                worker.0.to_vec(),
            );
            slot
        }
    };
    if new > old {
        update(state, pool, slot, new - old, true)
    } else {
        update(state, pool, slot, old - new, false)
    }
}

/// What a worker last contributed: its weight and the pools it is in.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    weight: u128,
    pools: Vec<Pool>,
}

fn entry_key(worker: &Address) -> Vec<u8> {
    let mut key = vec![ENTRY];
    key.extend_from_slice(&worker.0);
    key
}

/// Recomputes `worker`'s draw weight from its stake, models, enclave and reputation, and moves it
/// between pools when its served models changed.
pub fn refresh(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
) -> Result<(), StateError> {
    let Some(record) = crate::modules::staking::get(state, worker)? else {
        return Ok(());
    };
    let old: Entry = state
        .get_json(Table::Staking, &entry_key(worker), "sortition entry")?
        .unwrap_or_default();
    let weight = tasks::draw_weight(state, ctx, worker, &record)?.unwrap_or(0);
    let mut pools: Vec<Pool> = if record.models.is_empty() {
        vec![Pool::Every]
    } else {
        record.models.iter().map(|m| Pool::Model(*m)).collect()
    };
    if crate::modules::data::verifier(state, worker)?.is_some() {
        pools.push(Pool::Data);
    }
    for pool in &old.pools {
        if !pools.contains(pool) {
            set(state, pool, worker, old.weight, 0)?;
        }
    }
    for pool in &pools {
        let before = if old.pools.contains(pool) {
            old.weight
        } else {
            0
        };
        set(state, pool, worker, before, weight)?;
    }
    state.put_json(Table::Staking, entry_key(worker), &Entry { weight, pools });
    Ok(())
}

/// Whether any worker can be drawn for `model`.
pub fn has_weight(state: &Overlay<'_>, model: &Hash) -> Result<bool, StateError> {
    Ok(total(state, &Pool::Model(*model))? > 0 || total(state, &Pool::Every)? > 0)
}

/// Whether any data verifier can be drawn.
pub fn has_data_weight(state: &Overlay<'_>) -> Result<bool, StateError> {
    Ok(total(state, &Pool::Data)? > 0)
}

/// Draws a data verifier with probability proportional to its weight; None when none has any.
pub fn draw_data(state: &Overlay<'_>, entropy: &Hash) -> Result<Option<Address>, StateError> {
    draw_among(state, &[part(state, Pool::Data, &[])?], entropy)
}

/// Sum of the weights in slots `1..=slot` of `pool`.
fn prefix(state: &Overlay<'_>, pool: &Pool, slot: u64) -> Result<u128, StateError> {
    let mut sum = 0u128;
    let mut index = slot;
    while index > 0 {
        sum = sum
            .checked_add(read_u128(state, &node_key(pool, index))?)
            .ok_or(StateError::Corrupt("sortition weights overflow"))?;
        index -= index & index.wrapping_neg();
    }
    Ok(sum)
}

/// One pool as a draw sees it: the weight intervals of the excluded workers that hold weight
/// there (start in the full pool and weight, in slot order) and the weight left to draw from.
struct Part {
    pool: Pool,
    skipped: Vec<(u128, u128)>,
    kept: u128,
}

fn part(state: &Overlay<'_>, pool: Pool, excluded: &[Address]) -> Result<Part, StateError> {
    let mut skipped = std::collections::BTreeMap::new();
    for worker in excluded {
        let Some(slot) = read_u64(state, &key(SLOT, &pool, &worker.0))? else {
            continue;
        };
        let start = prefix(state, &pool, slot - 1)?;
        let weight = prefix(state, &pool, slot)?
            .checked_sub(start)
            .ok_or(StateError::Corrupt("sortition weight below zero"))?;
        if weight > 0 {
            skipped.insert(slot, (start, weight));
        }
    }
    let kept = skipped
        .values()
        .try_fold(total(state, &pool)?, |left, (_, weight)| {
            left.checked_sub(*weight)
        })
        .ok_or(StateError::Corrupt("sortition weight below zero"))?;
    Ok(Part {
        pool,
        skipped: skipped.into_values().collect(),
        kept,
    })
}

/// The worker at `point` of the pool with its skipped slots taken out (`point` < `kept`):
/// each skipped interval at or below the point moves it past that interval in the full tree.
fn locate(state: &Overlay<'_>, part: &Part, mut point: u128) -> Result<Address, StateError> {
    for (start, weight) in &part.skipped {
        if point < *start {
            break;
        }
        point += weight;
    }
    find(state, &part.pool, point)
}

/// The draw space for `model` without `excluded`: its own pool, then the every-model pool.
fn parts(state: &Overlay<'_>, model: &Hash, excluded: &[Address]) -> Result<[Part; 2], StateError> {
    Ok([
        part(state, Pool::Model(*model), excluded)?,
        part(state, Pool::Every, excluded)?,
    ])
}

fn pick(state: &Overlay<'_>, parts: &[Part], mut point: u128) -> Result<Address, StateError> {
    for part in parts {
        if point < part.kept {
            return locate(state, part, point);
        }
        point -= part.kept;
    }
    Err(StateError::Corrupt("sortition point beyond the pools"))
}

/// Draws a worker for `model` other than those in `excluded`, with probability proportional to
/// its weight, from `entropy`; None when no other worker has weight. Costs two tree walks per
/// excluded worker on top of the draw's own.
pub fn draw(
    state: &Overlay<'_>,
    model: &Hash,
    entropy: &Hash,
    excluded: &[Address],
) -> Result<Option<Address>, StateError> {
    draw_among(state, &parts(state, model, excluded)?, entropy)
}

/// Draws from `parts`, taken one after the other; None when they have no weight left.
fn draw_among(
    state: &Overlay<'_>,
    parts: &[Part],
    entropy: &Hash,
) -> Result<Option<Address>, StateError> {
    let Some(sum) = parts
        .iter()
        .try_fold(0u128, |sum, part| sum.checked_add(part.kept))
        .filter(|sum| *sum > 0)
    else {
        return Ok(None);
    };
    let point = u128::from_le_bytes(entropy.0[..16].try_into().expect("16 bytes")) % sum;
    pick(state, parts, point).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use proptest::prelude::*;
    use verity_types::sha256;

    fn counts(
        state: &Overlay<'_>,
        model: &Hash,
        draws: u32,
    ) -> std::collections::BTreeMap<Address, u32> {
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..draws {
            let worker = draw(state, model, &sha256(&i.to_le_bytes()), &[])
                .unwrap()
                .unwrap();
            *counts.entry(worker).or_default() += 1;
        }
        counts
    }

    #[test]
    fn draws_follow_weights_across_both_pools_and_zero_is_never_drawn() {
        let store = MemStore::default();
        let mut state = Overlay::new(&store);
        let model = Hash([7; 32]);
        let pool = Pool::Model(model);
        let (a, b, c, d) = (
            Address([1; 20]),
            Address([2; 20]),
            Address([3; 20]),
            Address([4; 20]),
        );
        assert_eq!(draw(&state, &model, &Hash::ZERO, &[]).unwrap(), None);
        set(&mut state, &pool, &a, 0, 100).unwrap();
        set(&mut state, &pool, &b, 0, 300).unwrap();
        set(&mut state, &Pool::Every, &c, 0, 600).unwrap();
        // Another model's workers never take this model's tasks.
        set(&mut state, &Pool::Model(Hash([8; 32])), &d, 0, 10_000).unwrap();
        let seen = counts(&state, &model, 10_000);
        assert!(!seen.contains_key(&d));
        let share = |w: &Address| f64::from(seen[w]) / 10_000.0;
        assert!((share(&a) - 0.1).abs() < 0.02, "{seen:?}");
        assert!((share(&b) - 0.3).abs() < 0.03, "{seen:?}");
        assert!((share(&c) - 0.6).abs() < 0.03, "{seen:?}");
        // Lowering a weight to zero takes the worker out; its slot stays for later.
        set(&mut state, &pool, &b, 300, 0).unwrap();
        let seen = counts(&state, &model, 2_000);
        assert!(!seen.contains_key(&b), "{seen:?}");
        set(&mut state, &pool, &b, 0, 50).unwrap();
        assert!(counts(&state, &model, 2_000).contains_key(&b));
        assert_eq!(total(&state, &pool).unwrap(), 150);
    }

    #[test]
    fn many_slots_still_find_the_right_owner() {
        let store = MemStore::default();
        let mut state = Overlay::new(&store);
        let pool = Pool::Every;
        for i in 0..1_000u32 {
            let mut worker = [0u8; 20];
            worker[..4].copy_from_slice(&i.to_be_bytes());
            set(&mut state, &pool, &Address(worker), 0, 1).unwrap();
        }
        for i in [0u32, 1, 511, 512, 999] {
            let owner = find(&state, &pool, u128::from(i)).unwrap();
            assert_eq!(owner.0[..4], i.to_be_bytes());
        }
    }

    proptest! {
        /// Every point of the space left after exclusion lands on a kept worker, and each kept
        /// worker owns exactly its weight's worth of points: excluded workers are never drawn
        /// and the others keep their odds.
        #[test]
        fn exclusion_leaves_exactly_the_other_weights(
            weights in proptest::collection::vec((0u128..20, any::<bool>()), 1..10),
            excluded in proptest::collection::vec(0usize..12, 0..8),
        ) {
            let store = MemStore::default();
            let mut state = Overlay::new(&store);
            let model = Hash([7; 32]);
            let worker = |i: usize| Address([i as u8 + 1; 20]);
            for (i, (weight, every)) in weights.iter().enumerate() {
                let pool = if *every { Pool::Every } else { Pool::Model(model) };
                set(&mut state, &pool, &worker(i), 0, *weight).unwrap();
            }
            let excluded: Vec<Address> = excluded.into_iter().map(worker).collect();
            let parts = parts(&state, &model, &excluded).unwrap();
            let sum = parts[0].kept + parts[1].kept;
            let mut seen = std::collections::BTreeMap::<Address, u128>::new();
            for point in 0..sum {
                *seen.entry(pick(&state, &parts, point).unwrap()).or_default() += 1;
            }
            for (i, (weight, _)) in weights.iter().enumerate() {
                let expected = if excluded.contains(&worker(i)) { 0 } else { *weight };
                prop_assert_eq!(seen.get(&worker(i)).copied().unwrap_or(0), expected);
            }
            let drawn = draw(&state, &model, &sha256(b"x"), &excluded).unwrap();
            prop_assert_eq!(drawn.is_some(), sum > 0);
        }
    }

    /// Counts the reads that reach the store: what a draw costs on a large state.
    #[derive(Default)]
    struct CountingStore {
        inner: MemStore,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl crate::store::Store for CountingStore {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, crate::StoreError> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get(table, key)
        }

        fn commit(&self, batch: &crate::store::Batch) -> Result<(), crate::StoreError> {
            self.inner.commit(batch)
        }

        fn scan(
            &self,
            table: Table,
            prefix: &[u8],
            start: &[u8],
            limit: usize,
        ) -> Result<crate::store::KeyValues, crate::StoreError> {
            self.inner.scan(table, prefix, start, limit)
        }
    }

    /// The most store reads one draw (and one weight change) made, over many, with `workers`
    /// weighted workers committed to the store.
    fn most_reads(workers: u32) -> (usize, usize) {
        use crate::store::Store as _;
        use std::sync::atomic::Ordering;
        let store = CountingStore::default();
        let model = Hash([7; 32]);
        let worker = |i: u32| {
            let mut address = [0u8; 20];
            address[..4].copy_from_slice(&i.to_be_bytes());
            Address(address)
        };
        let mut state = Overlay::new(&store);
        for i in 0..workers {
            let pool = if i % 2 == 0 {
                Pool::Every
            } else {
                Pool::Model(model)
            };
            set(&mut state, &pool, &worker(i), 0, u128::from(1 + i % 7)).unwrap();
        }
        store.commit(&state.into_batch()).unwrap();
        let (mut draw_reads, mut set_reads) = (0, 0);
        for i in 0..200u32 {
            // A fresh overlay each time: nothing cached from the last draw.
            let state = Overlay::new(&store);
            store.reads.store(0, Ordering::Relaxed);
            draw(&state, &model, &sha256(&i.to_le_bytes()), &[])
                .unwrap()
                .unwrap();
            draw_reads = draw_reads.max(store.reads.load(Ordering::Relaxed));
            let mut state = Overlay::new(&store);
            store.reads.store(0, Ordering::Relaxed);
            let weight = u128::from(1 + i % 7);
            set(
                &mut state,
                &Pool::Every,
                &worker(i * 2 % workers),
                weight,
                weight + 1,
            )
            .unwrap();
            set_reads = set_reads.max(store.reads.load(Ordering::Relaxed));
        }
        (draw_reads, set_reads)
    }

    /// "Bounded work per transaction": a draw reads a total and at most DEPTH tree nodes per
    /// pool, and a weight change at most DEPTH nodes, as many for 10,000 workers as for 10.
    #[test]
    fn a_draw_and_a_weight_change_read_as_much_for_ten_thousand_workers_as_for_ten() {
        let few = most_reads(10);
        let many = most_reads(10_000);
        assert_eq!(few, many, "reads grew with the number of workers");
        let (draw_reads, set_reads) = many;
        // Two pools (the model's, every model's): a total and DEPTH nodes each, one owner.
        assert!(
            draw_reads <= 2 * (DEPTH as usize + 1) + 1,
            "a draw read {draw_reads} entries"
        );
        assert!(
            set_reads <= DEPTH as usize + 4,
            "a weight change read {set_reads} entries"
        );
    }
}
