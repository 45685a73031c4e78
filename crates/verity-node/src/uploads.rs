//! Who may fill this validator's disk: blob uploads are charged to a funded account's quota over
//! a rolling window, so that blob traffic cannot crowd out the chain (see `docs/protocol.md`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount};

/// A node's blob-upload rules (`[uploads]` in `node.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadPolicy {
    /// Balance, in base units, an uploading account must hold.
    #[serde(with = "verity_types::amount")]
    pub min_balance: Amount,
    /// Bytes one account may upload per window.
    pub quota_bytes: u64,
    pub window_secs: u64,
    /// How many blocks old the height an upload signs may be.
    pub max_age_blocks: u64,
    /// Free disk, in bytes, that uploads never eat into.
    pub disk_floor_bytes: u64,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            min_balance: verity_types::ONE_TOKEN,
            quota_bytes: 1 << 30,
            window_secs: 3_600,
            max_age_blocks: 100,
            disk_floor_bytes: 256 << 20,
        }
    }
}

/// Bytes each account uploaded within the window.
#[derive(Debug, Default)]
pub struct Quotas {
    used: Mutex<HashMap<Address, VecDeque<(Instant, u64)>>>,
}

/// Over quota: the bytes used, and when enough of them age out of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub used: u64,
    pub retry_after: Duration,
}

impl Quotas {
    /// Charges `bytes` to `account` at `now` unless that takes it past `quota` within `window`.
    pub fn charge(
        &self,
        account: Address,
        bytes: u64,
        quota: u64,
        window: Duration,
        now: Instant,
    ) -> Result<(), OverQuota> {
        let mut used = self.used.lock().expect("quota lock");
        // Forget accounts whose window emptied, so the map stays as small as the active set.
        used.retain(|_, entries| {
            while entries
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) >= window)
            {
                entries.pop_front();
            }
            !entries.is_empty()
        });
        let entries = used.entry(account).or_default();
        let total: u64 = entries.iter().map(|(_, b)| b).sum();
        if total.saturating_add(bytes) > quota {
            let retry_after = entries
                .front()
                .map(|(at, _)| window.saturating_sub(now.duration_since(*at)))
                .unwrap_or(window);
            return Err(OverQuota {
                used: total,
                retry_after,
            });
        }
        entries.push_back((now, bytes));
        Ok(())
    }

    /// Gives back what a refused upload was charged up front, beyond what it actually stored.
    pub fn refund(&self, account: Address, bytes: u64) {
        let mut used = self.used.lock().expect("quota lock");
        if let Some(entries) = used.get_mut(&account) {
            let mut left = bytes;
            while left > 0 {
                let Some(last) = entries.back_mut() else {
                    break;
                };
                let take = last.1.min(left);
                last.1 -= take;
                left -= take;
                if last.1 == 0 {
                    entries.pop_back();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refuses_past_its_limit_and_frees_up_as_the_window_moves() {
        let quotas = Quotas::default();
        let a = Address([1; 20]);
        let b = Address([2; 20]);
        let window = Duration::from_secs(60);
        let t0 = Instant::now();
        quotas.charge(a, 60, 100, window, t0).unwrap();
        quotas
            .charge(a, 40, 100, window, t0 + Duration::from_secs(30))
            .unwrap();
        let over = quotas
            .charge(a, 1, 100, window, t0 + Duration::from_secs(31))
            .unwrap_err();
        assert_eq!(over.used, 100);
        assert_eq!(over.retry_after, Duration::from_secs(29));
        // Another account has its own quota.
        quotas.charge(b, 100, 100, window, t0).unwrap();
        // Once the first upload leaves the window, its bytes are free again.
        quotas
            .charge(a, 60, 100, window, t0 + Duration::from_secs(60))
            .unwrap();
        // A refund gives back what was charged and not stored.
        quotas.refund(a, 60);
        quotas
            .charge(a, 60, 100, window, t0 + Duration::from_secs(61))
            .unwrap();
    }
}
