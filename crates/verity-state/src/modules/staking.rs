//! `staking`: worker stakes, the models each worker serves, and the unbonding queue.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount, Hash};

use crate::modules::{accounts, schedule};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

/// A worker's stake record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Worker {
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub stake: Amount,
    /// Stake on its way back to the worker's balance.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub unbonding: Amount,
    /// Models served; empty means every model.
    pub models: Vec<Hash>,
}

impl Worker {
    pub fn serves(&self, model: &Hash) -> bool {
        self.models.is_empty() || self.models.binary_search(model).is_ok()
    }
}

const PREFIX: &[u8] = b"w";

fn key(worker: &Address) -> Vec<u8> {
    [PREFIX, &worker.0].concat()
}

pub fn get(state: &Overlay<'_>, worker: &Address) -> Result<Option<Worker>, StateError> {
    state.get_json(Table::Staking, &key(worker), "worker stake")
}

/// Up to `limit` workers in address order, after `after` when given.
pub fn workers(
    state: &Overlay<'_>,
    after: Option<&Address>,
    limit: usize,
) -> Result<Vec<Address>, StateError> {
    let entries = match after {
        // The smallest key above `after`'s own.
        Some(after) => state.scan_from(
            Table::Staking,
            PREFIX,
            &[key(after), vec![0]].concat(),
            limit,
        )?,
        None => state.scan_prefix(Table::Staking, PREFIX, limit)?,
    };
    entries
        .into_iter()
        .map(|(key, _)| {
            key[PREFIX.len()..]
                .try_into()
                .map(Address)
                .map_err(|_| StateError::Corrupt("worker key"))
        })
        .collect()
}

fn put(state: &mut Overlay<'_>, worker: &Address, record: &Worker) -> Result<(), StateError> {
    state.put_json(Table::Staking, key(worker), record);
    Ok(())
}

/// Stake: moves `amount` from the balance into the worker's stake.
pub fn stake(state: &mut Overlay<'_>, worker: &Address, amount: Amount) -> Result<(), TxFailure> {
    if amount == 0 {
        return Err(TxFailure::Invalid {
            reason: "stake amount must be positive".into(),
        });
    }
    let mut record = get(state, worker)?.unwrap_or_default();
    record.stake = record
        .stake
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    accounts::debit(state, worker, amount)?;
    put(state, worker, &record)?;
    Ok(())
}

/// Unstake: `amount` stops counting at once and returns to the balance after the delay.
pub fn unstake(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    worker: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let mut record = get(state, worker)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("stake of {worker}"),
    })?;
    if amount == 0 || amount > record.stake {
        return Err(TxFailure::Invalid {
            reason: format!("can unstake 1 to {} base units, not {amount}", record.stake),
        });
    }
    if crate::modules::disputes::has_open_against(state, worker)? {
        return Err(TxFailure::Invalid {
            reason: format!("a dispute against {worker} is open; its stake stays until it ends"),
        });
    }
    record.stake = record
        .stake
        .checked_sub(amount)
        .ok_or(TxFailure::Overflow)?;
    record.unbonding = record
        .unbonding
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    put(state, worker, &record)?;
    let due = ctx
        .height
        .saturating_add(ctx.genesis.params.tasks.unbonding_blocks);
    schedule::push_amount(state, schedule::Kind::Unbond, due, worker, amount)
}

pub fn serve_models(
    state: &mut Overlay<'_>,
    worker: &Address,
    mut models: Vec<Hash>,
) -> Result<(), TxFailure> {
    models.sort();
    models.dedup();
    let mut record = get(state, worker)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("stake of {worker}; stake before choosing models"),
    })?;
    record.models = models;
    put(state, worker, &record)?;
    Ok(())
}

/// Takes `bps` of a worker's stake for a disproven result, counting stake on its way out:
/// unstaking does not escape a result still open to dispute, since unbonding outlasts any
/// dispute (`Params::validate`). The stake goes first, then the unbonding amount. Returns what
/// it took.
pub fn slash(state: &mut Overlay<'_>, worker: &Address, bps: u32) -> Result<Amount, StateError> {
    let Some(mut record) = get(state, worker)? else {
        return Ok(0);
    };
    let at_stake = record.stake.saturating_add(record.unbonding);
    let slashed = crate::modules::disputes::bps_of(at_stake, bps);
    let from_stake = slashed.min(record.stake);
    record.stake -= from_stake;
    record.unbonding -= slashed - from_stake;
    put(state, worker, &record)?;
    Ok(slashed)
}

/// Returns unbonded stake that is due at this height.
pub fn release_due(state: &mut Overlay<'_>, height: u64) -> Result<(), StateError> {
    for (worker, amount) in schedule::take_amounts(state, schedule::Kind::Unbond, height)? {
        let mut record = get(state, &worker)?.ok_or(StateError::Corrupt("unbonding worker"))?;
        // A slash may have taken part of the unbonding stake: what is left is returned.
        let amount = amount.min(record.unbonding);
        record.unbonding -= amount;
        put(state, &worker, &record)?;
        // A balance too large to take it back keeps the amount unbonding rather than lose it.
        if accounts::credit(state, &worker, amount).is_err() {
            record.unbonding = record.unbonding.saturating_add(amount);
            put(state, &worker, &record)?;
        }
    }
    Ok(())
}
