//! Work due at a height (first assignments, assignment timeouts, task deadlines, unbonding
//! releases), one entry per item under a (kind, height) prefix: scheduling is one write, and a
//! block reads exactly what is due and nothing else.

use serde::{de::DeserializeOwned, Serialize};
use verity_types::{sha256, Address, Amount};

use crate::overlay::Overlay;
use crate::store::Table;
use crate::{StateError, TxFailure};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A task submitted in the previous block, drawn with this block's seed.
    Assign,
    Timeout,
    Deadline,
    Unbond,
    /// A timeout penalty given back.
    Forgive,
    /// An OP result's challenge window has ended.
    Window,
    /// A dispute's clock may have run out.
    DisputeClock,
    /// A challenger's unbonded bond returns.
    ChallengerUnbond,
    /// A tolerant model's dispute opened in the previous block: its referee is drawn with this
    /// block's seed.
    RefereeDraw,
    /// A data proof job requested in the previous block, drawn with this block's seed.
    DataAssign,
    /// A data proof job's answer is due.
    DataExpiry,
    /// A registration commitment left unrevealed is pruned.
    CommitmentExpiry,
    /// A validator's unbonded stake returns.
    ValidatorUnbond,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Assign => b'a',
            Kind::Timeout => b't',
            Kind::Deadline => b'd',
            Kind::Unbond => b'u',
            Kind::Forgive => b'f',
            Kind::Window => b'w',
            Kind::DisputeClock => b'c',
            Kind::ChallengerUnbond => b'b',
            Kind::RefereeDraw => b'x',
            Kind::DataAssign => b'p',
            Kind::DataExpiry => b'e',
            Kind::CommitmentExpiry => b'r',
            Kind::ValidatorUnbond => b'v',
        }
    }
}

fn prefix(kind: Kind, height: u64) -> Vec<u8> {
    let mut key = vec![kind.tag()];
    key.extend_from_slice(&height.to_be_bytes());
    key
}

/// The key `item` is scheduled under at `height`, and its value.
pub(crate) fn entry<T: Serialize>(kind: Kind, height: u64, item: &T) -> (Vec<u8>, Vec<u8>) {
    let value = serde_json::to_vec(item).expect("schedule items serialize");
    let mut key = prefix(kind, height);
    key.extend_from_slice(&sha256(&value).0);
    (key, value)
}

/// The first key of `kind`'s items due at `height` or later, and the prefix all of them share.
pub(crate) fn from_height(kind: Kind, height: u64) -> (Vec<u8>, [u8; 1]) {
    (prefix(kind, height), [kind.tag()])
}

/// Schedules `item` at `height`: one write of its own, whatever else is due then. An item
/// scheduled twice for one height is due once.
pub fn push<T: Serialize>(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
    item: &T,
) -> Result<(), StateError> {
    let (key, value) = entry(kind, height, item);
    state.put(Table::Schedule, key, value);
    Ok(())
}

/// Adds `amount` to what `account` is owed at `height` (an unbonding release): one entry per
/// account and height holding the sum, so two equal amounts scheduled in one block are both
/// paid. [`take_amounts`] reads the entries back.
pub fn push_amount(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
    account: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let mut key = prefix(kind, height);
    key.extend_from_slice(&account.0);
    let owed: Amount = match state.get(Table::Schedule, &key)? {
        Some(raw) => {
            let (_, owed): (Address, String) =
                serde_json::from_slice(&raw).map_err(|_| StateError::Corrupt("schedule"))?;
            owed.parse()
                .map_err(|_| StateError::Corrupt("scheduled amount"))?
        }
        None => 0,
    };
    let total = owed.checked_add(amount).ok_or(TxFailure::Overflow)?;
    let value =
        serde_json::to_vec(&(account, total.to_string())).expect("schedule items serialize");
    state.put(Table::Schedule, key, value);
    Ok(())
}

/// Removes and returns the amounts [`push_amount`] scheduled at `height`, by account.
pub fn take_amounts(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
) -> Result<Vec<(Address, Amount)>, StateError> {
    take::<(Address, String)>(state, kind, height)?
        .into_iter()
        .map(|(account, amount)| {
            amount
                .parse()
                .map(|amount| (account, amount))
                .map_err(|_| StateError::Corrupt("scheduled amount"))
        })
        .collect()
}

/// Removes and returns what is due at `height`.
pub fn take<T: DeserializeOwned>(
    state: &mut Overlay<'_>,
    kind: Kind,
    height: u64,
) -> Result<Vec<T>, StateError> {
    let entries = state.scan_prefix(Table::Schedule, &prefix(kind, height), usize::MAX)?;
    let mut items = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        items.push(serde_json::from_slice(&value).map_err(|_| StateError::Corrupt("schedule"))?);
        state.delete(Table::Schedule, key);
    }
    Ok(items)
}
