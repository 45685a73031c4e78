//! `accounts`: balances (u128 base units) and nonces of Ethereum-style accounts; Transfer.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount};

use crate::overlay::Overlay;
use crate::store::Table;
use crate::{StateError, TxFailure};

/// One account's on-chain record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(with = "verity_types::amount")]
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

impl Account {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.balance.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() != 24 {
            return Err(StateError::Corrupt("account record is not 24 bytes"));
        }
        let mut balance = [0u8; 16];
        balance.copy_from_slice(&bytes[..16]);
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[16..]);
        Ok(Account {
            balance: u128::from_le_bytes(balance),
            nonce: u64::from_le_bytes(nonce),
        })
    }
}

pub fn get(state: &Overlay<'_>, address: &Address) -> Result<Account, StateError> {
    match state.get(Table::Accounts, &address.0)? {
        Some(bytes) => Account::decode(&bytes),
        None => Ok(Account::default()),
    }
}

pub fn put(state: &mut Overlay<'_>, address: &Address, account: &Account) {
    state.put(Table::Accounts, address.0.to_vec(), account.encode());
}

/// Adds `amount` to `address`; fails on overflow without writing.
pub fn credit(state: &mut Overlay<'_>, address: &Address, amount: Amount) -> Result<(), TxFailure> {
    let mut account = get(state, address)?;
    account.balance = account
        .balance
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    put(state, address, &account);
    Ok(())
}

/// Removes `amount` from `address`; fails on overdraft without writing.
pub fn debit(state: &mut Overlay<'_>, address: &Address, amount: Amount) -> Result<(), TxFailure> {
    let mut account = get(state, address)?;
    account.balance =
        account
            .balance
            .checked_sub(amount)
            .ok_or(TxFailure::InsufficientBalance {
                needed: amount,
                available: account.balance,
            })?;
    put(state, address, &account);
    Ok(())
}

/// Transfer: checks the credit before the debit so that a failure writes nothing.
pub fn transfer(
    state: &mut Overlay<'_>,
    from: &Address,
    to: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let sender = get(state, from)?;
    if sender.balance < amount {
        return Err(TxFailure::InsufficientBalance {
            needed: amount,
            available: sender.balance,
        });
    }
    if from != to {
        let recipient = get(state, to)?;
        recipient
            .balance
            .checked_add(amount)
            .ok_or(TxFailure::Overflow)?;
    }
    debit(state, from, amount)?;
    credit(state, to, amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    #[test]
    fn credit_overflow_and_overdraft_write_nothing() {
        let store = MemStore::default();
        let mut state = Overlay::new(&store);
        let rich = Address([1; 20]);
        let poor = Address([2; 20]);
        credit(&mut state, &rich, u128::MAX).unwrap();
        credit(&mut state, &poor, 5).unwrap();
        assert_eq!(
            transfer(&mut state, &poor, &rich, 1),
            Err(TxFailure::Overflow)
        );
        assert!(matches!(
            transfer(&mut state, &poor, &rich, 6),
            Err(TxFailure::InsufficientBalance {
                needed: 6,
                available: 5
            })
        ));
        assert_eq!(get(&state, &poor).unwrap().balance, 5);
        assert_eq!(get(&state, &rich).unwrap().balance, u128::MAX);
        transfer(&mut state, &poor, &poor, 5).unwrap();
        assert_eq!(get(&state, &poor).unwrap().balance, 5);
    }
}
