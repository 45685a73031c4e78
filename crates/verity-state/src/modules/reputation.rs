//! `reputation`: a score per worker. +10 per verified result, penalties for timeouts; a worker
//! whose score reaches -100 is banned from assignment.

use serde::{Deserialize, Serialize};
use verity_types::Address;

use crate::overlay::Overlay;
use crate::store::Table;
use crate::StateError;

pub const SUCCESS_REWARD: i64 = 10;
pub const BAN_THRESHOLD: i64 = -100;
/// Scores are kept within these bounds so no history can make a worker unbannable.
const MAX_SCORE: i64 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reputation {
    pub score: i64,
    pub successes: u64,
    pub timeouts: u64,
    pub banned: bool,
}

impl Reputation {
    /// The weight multiplier in percent: 10 % at -90 and below, 100 % at 0, 200 % at +100 and
    /// above.
    pub fn factor_percent(&self) -> u128 {
        (100 + self.score.clamp(-90, 100)) as u128
    }
}

pub fn get(state: &Overlay<'_>, worker: &Address) -> Result<Reputation, StateError> {
    Ok(state
        .get_json(Table::Reputation, &worker.0, "reputation")?
        .unwrap_or_default())
}

fn put(state: &mut Overlay<'_>, worker: &Address, rep: &Reputation) {
    state.put_json(Table::Reputation, worker.0.to_vec(), rep);
}

pub fn record_success(state: &mut Overlay<'_>, worker: &Address) -> Result<(), StateError> {
    let mut rep = get(state, worker)?;
    rep.score = (rep.score + SUCCESS_REWARD).min(MAX_SCORE);
    rep.successes += 1;
    put(state, worker, &rep);
    Ok(())
}

pub fn record_timeout(
    state: &mut Overlay<'_>,
    worker: &Address,
    penalty: i64,
) -> Result<(), StateError> {
    let mut rep = get(state, worker)?;
    rep.score = rep.score.saturating_sub(penalty.max(0));
    rep.timeouts += 1;
    if rep.score <= BAN_THRESHOLD {
        rep.banned = true;
    }
    put(state, worker, &rep);
    Ok(())
}
