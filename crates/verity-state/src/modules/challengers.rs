//! `challengers`: the Challenger Registry. A challenger bonds tokens to dispute OP results; each
//! open dispute locks `dispute_bond` of the bond, lost disputes are slashed from it, and unbonding
//! returns it after the unbonding delay (`docs/protocol.md` §12).

/// Reputation a challenger gains for a dispute won, and loses for one lost.
pub const DISPUTE_REPUTATION: i64 = 10;

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount};

use crate::modules::{accounts, schedule};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, StateError, TxFailure};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Challenger {
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub bond: Amount,
    /// Part of the bond that open disputes hold.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub locked: Amount,
    /// Bond on its way back to the balance.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub unbonding: Amount,
    pub open_disputes: u32,
    pub disputes_opened: u64,
    pub disputes_won: u64,
    pub disputes_lost: u64,
    /// +10 per dispute won, -10 per dispute lost.
    #[serde(default)]
    pub reputation: i64,
    /// Slashed stake and bonds this challenger won.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub rewards: Amount,
}

impl Challenger {
    /// The bond no open dispute holds. Slashes never take more than the dispute's own lock, so
    /// the bond always covers the locks; the subtraction saturates rather than trusting that.
    pub fn free(&self) -> Amount {
        self.bond.saturating_sub(self.locked)
    }
}

const PREFIX: &[u8] = b"c";

fn key(challenger: &Address) -> Vec<u8> {
    [PREFIX, &challenger.0].concat()
}

pub fn get(state: &Overlay<'_>, challenger: &Address) -> Result<Option<Challenger>, StateError> {
    state.get_json(Table::Staking, &key(challenger), "challenger")
}

pub fn put(state: &mut Overlay<'_>, challenger: &Address, record: &Challenger) {
    state.put_json(Table::Staking, key(challenger), record);
}

/// Up to `limit` challengers in address order, after `after` when given.
pub fn list(
    state: &Overlay<'_>,
    after: Option<&Address>,
    limit: usize,
) -> Result<Vec<(Address, Challenger)>, StateError> {
    let entries = match after {
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
        .map(|(key, value)| {
            let address = key[PREFIX.len()..]
                .try_into()
                .map(Address)
                .map_err(|_| StateError::Corrupt("challenger key"))?;
            let record =
                serde_json::from_slice(&value).map_err(|_| StateError::Corrupt("challenger"))?;
            Ok((address, record))
        })
        .collect()
}

/// RegisterChallenger: moves `amount` from the balance into the bond, which must reach the
/// chain's minimum.
pub fn register(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    challenger: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    if amount == 0 {
        return Err(TxFailure::Invalid {
            reason: "bond amount must be positive".into(),
        });
    }
    let mut record = get(state, challenger)?.unwrap_or_default();
    record.bond = record.bond.checked_add(amount).ok_or(TxFailure::Overflow)?;
    let minimum = ctx.genesis.params.tasks.min_challenger_bond;
    if record.bond < minimum {
        return Err(TxFailure::Invalid {
            reason: format!(
                "a challenger bonds at least {minimum} base units; this makes {}",
                record.bond
            ),
        });
    }
    accounts::debit(state, challenger, amount)?;
    put(state, challenger, &record);
    Ok(())
}

/// UnbondChallenger: `amount` of the free bond (not locked by an open dispute) stops counting at
/// once and returns to the balance after the unbonding delay; until then a dispute the
/// challenger loses may still slash it.
pub fn unbond(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    challenger: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let mut record = get(state, challenger)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("challenger {challenger}"),
    })?;
    let free = record.free();
    if amount == 0 || amount > free {
        return Err(TxFailure::Invalid {
            reason: format!(
                "can unbond 1 to {free} base units (open disputes lock {}), not {amount}",
                record.locked
            ),
        });
    }
    record.bond = record.bond.checked_sub(amount).ok_or(TxFailure::Overflow)?;
    record.unbonding = record
        .unbonding
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    put(state, challenger, &record);
    let due = ctx
        .height
        .saturating_add(ctx.genesis.params.tasks.unbonding_blocks);
    schedule::push_amount(
        state,
        schedule::Kind::ChallengerUnbond,
        due,
        challenger,
        amount,
    )
}

/// Returns unbonded bonds that are due at this height.
pub fn release_due(state: &mut Overlay<'_>, height: u64) -> Result<(), StateError> {
    for (challenger, amount) in
        schedule::take_amounts(state, schedule::Kind::ChallengerUnbond, height)?
    {
        let mut record =
            get(state, &challenger)?.ok_or(StateError::Corrupt("unbonding challenger"))?;
        // A lost dispute may have taken part of the unbonding bond: what is left is returned.
        let amount = amount.min(record.unbonding);
        record.unbonding -= amount;
        if accounts::credit(state, &challenger, amount).is_err() {
            record.unbonding = record.unbonding.saturating_add(amount);
        }
        put(state, &challenger, &record);
    }
    Ok(())
}
