//! `reputation`: a score per worker. +10 per verified result, penalties for timeouts that are
//! forgiven after a period; a worker whose score reaches -100 is banned from assignment until
//! enough of its penalties are forgiven.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Hash};

use crate::modules::schedule;
use crate::overlay::Overlay;
use crate::store::Table;
use crate::StateError;

pub const SUCCESS_REWARD: i64 = 10;
pub const BAN_THRESHOLD: i64 = -100;
/// Scores are kept within these bounds so no history can make a worker unbannable.
const MAX_SCORE: i64 = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reputation {
    pub score: i64,
    pub successes: u64,
    pub timeouts: u64,
    pub banned: bool,
    /// Results disproven in a dispute. A ban that fraud brought is never lifted.
    #[serde(default)]
    pub frauds: u64,
    #[serde(default)]
    pub banned_for_fraud: bool,
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

/// A disproven result costs `penalty` for good; below the ban line the worker is banned for
/// fraud, which no forgiveness lifts.
pub fn record_fraud(
    state: &mut Overlay<'_>,
    worker: &Address,
    penalty: i64,
) -> Result<(), StateError> {
    let mut rep = get(state, worker)?;
    rep.score = rep.score.saturating_sub(penalty.max(0));
    rep.frauds += 1;
    if rep.score <= BAN_THRESHOLD {
        rep.banned = true;
        rep.banned_for_fraud = true;
    }
    put(state, worker, &rep);
    Ok(())
}

/// A timeout costs `penalty` now and is forgiven `forgive_after` blocks later: a worker that
/// went offline for a while recovers, and a ban it earned that way lifts once enough penalties
/// are forgiven. `cause` (the task or dispute) keeps two timeouts in one block apart, so that
/// each is forgiven.
pub fn record_timeout(
    state: &mut Overlay<'_>,
    worker: &Address,
    cause: &Hash,
    penalty: i64,
    height: u64,
    forgive_after: u64,
) -> Result<(), StateError> {
    let penalty = penalty.max(0);
    let mut rep = get(state, worker)?;
    rep.score = rep.score.saturating_sub(penalty);
    rep.timeouts += 1;
    if rep.score <= BAN_THRESHOLD {
        rep.banned = true;
    }
    put(state, worker, &rep);
    schedule::push(
        state,
        schedule::Kind::Forgive,
        height.saturating_add(forgive_after),
        &(*worker, penalty, *cause),
    )
}

/// Gives back the timeout penalties due at `height`; returns the workers whose score changed.
pub fn forgive_due(state: &mut Overlay<'_>, height: u64) -> Result<Vec<Address>, StateError> {
    let due: Vec<(Address, i64, Hash)> = schedule::take(state, schedule::Kind::Forgive, height)?;
    let mut forgiven = Vec::with_capacity(due.len());
    for (worker, penalty, _) in due {
        let mut rep = get(state, &worker)?;
        rep.score = rep.score.saturating_add(penalty).min(MAX_SCORE);
        if rep.banned && !rep.banned_for_fraud && rep.score > BAN_THRESHOLD {
            rep.banned = false;
        }
        put(state, &worker, &rep);
        forgiven.push(worker);
    }
    Ok(forgiven)
}
