//! `settlement`: a finalized task's escrow split between worker, model owner, the DAT holders of
//! the dataset it ran on (if it named one) and protocol, in the proportions fixed at genesis.
//! The protocol share takes the rounding, so nothing is lost.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount};

use crate::modules::accounts;
use crate::overlay::Overlay;
use crate::TxFailure;

/// Basis points (1/10,000) of each task fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSplit {
    pub worker_bps: u32,
    pub owner_bps: u32,
    /// Of a task that names a dataset: its DAT holders' share, out of what the protocol would get.
    #[serde(default = "default_data_bps")]
    pub data_bps: u32,
}

fn default_data_bps() -> u32 {
    500
}

impl Default for FeeSplit {
    fn default() -> Self {
        Self {
            worker_bps: 7_000,
            owner_bps: 2_000,
            data_bps: default_data_bps(),
        }
    }
}

impl FeeSplit {
    pub fn validate(&self) -> Result<(), String> {
        if u64::from(self.worker_bps) + u64::from(self.owner_bps) + u64::from(self.data_bps)
            > 10_000
        {
            return Err("worker_bps + owner_bps + data_bps must not exceed 10000".into());
        }
        Ok(())
    }

    /// Splits `fee`, with a data share when the task named a dataset; the parts always sum to
    /// `fee`.
    pub fn split(&self, fee: Amount, with_dataset: bool) -> Split {
        let share = |bps: u32| match fee.checked_mul(bps as u128) {
            Some(p) => p / 10_000,
            None => fee / 10_000 * bps as u128,
        };
        let worker = share(self.worker_bps);
        let owner = share(self.owner_bps);
        let data = if with_dataset {
            share(self.data_bps)
        } else {
            0
        };
        Split {
            worker,
            owner,
            data,
            protocol: fee - worker - owner - data,
            refund: 0,
        }
    }
}

/// Where one task's fee went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Split {
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub worker: Amount,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub owner: Amount,
    /// To the DAT holders of the dataset the task named; zero when it named none.
    #[serde(with = "verity_types::amount", default)]
    #[schema(schema_with = verity_types::schema::amount)]
    pub data: Amount,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub protocol: Amount,
    /// Escrow returned to the submitter, not part of the fee: a generation's reserve for the
    /// tokens it did not generate.
    #[serde(with = "verity_types::amount", default)]
    #[schema(schema_with = verity_types::schema::amount)]
    pub refund: Amount,
}

/// Pays out an escrowed fee.
pub fn pay(
    state: &mut Overlay<'_>,
    split: &Split,
    worker: &Address,
    owner: &Address,
    protocol: &Address,
) -> Result<(), TxFailure> {
    accounts::credit(state, worker, split.worker)?;
    accounts::credit(state, owner, split.owner)?;
    accounts::credit(state, protocol, split.protocol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Worker, owner and data shares that sum to at most 10,000 bp.
    fn shares() -> impl Strategy<Value = (u32, u32, u32)> {
        (0u32..=10_000)
            .prop_flat_map(|w| (Just(w), 0..=10_000 - w))
            .prop_flat_map(|(w, o)| (Just(w), Just(o), 0..=10_000 - w - o))
    }

    proptest! {
        #[test]
        fn parts_sum_to_the_fee(fee in any::<u128>(), (w, o, d) in shares(), with_dataset: bool) {
            let split = FeeSplit { worker_bps: w, owner_bps: o, data_bps: d }.split(fee, with_dataset);
            prop_assert_eq!(split.worker + split.owner + split.data + split.protocol, fee);
            prop_assert!(with_dataset || split.data == 0);
        }
    }

    #[test]
    fn default_split_is_exact() {
        let split = FeeSplit::default().split(1_000, false);
        assert_eq!(
            (split.worker, split.owner, split.data, split.protocol),
            (700, 200, 0, 100)
        );
        let split = FeeSplit::default().split(1_000, true);
        assert_eq!(
            (split.worker, split.owner, split.data, split.protocol),
            (700, 200, 50, 50)
        );
    }
}
