//! The rules a validator applies to a proposed block's header before voting for it, as pure
//! functions of the block, its parent, the validator's clock and its own state roots, so that
//! each rule is tested by a proposer that breaks it. `App::verify` applies them in order.

use verity_types::Hash;

use crate::block::{Block, Committed};

/// How far the committed state root may trail the block it is in.
pub const MAX_ROOT_LAG: u64 = 16;

/// How far ahead of our clock a proposer's timestamp may be before we wait for it.
pub const MAX_CLOCK_SKEW_MS: u64 = 500;

/// How far ahead of our clock a timestamp may be at all: waiting longer would let one proposer
/// hold every validator's vote past the view's timeout.
pub const MAX_FUTURE_MS: u64 = 10_000;

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("timestamp {block} ms is not after the parent's {parent} ms")]
    TimestampNotAfterParent { block: u64, parent: u64 },
    #[error("timestamp {block} ms is {ahead} ms ahead of our clock, more than {MAX_FUTURE_MS}")]
    TimestampTooFarAhead { block: u64, ahead: u64 },
    #[error("the committed root's height {committed} is not below the block's {block}")]
    CommittedNotBelow { committed: u64, block: u64 },
    #[error("the committed root's height {committed} is behind the parent's {parent}")]
    CommittedBehindParent { committed: u64, parent: u64 },
    #[error("the committed root trails the block by {lag} blocks, more than {MAX_ROOT_LAG}")]
    CommittedTooOld { lag: u64 },
    #[error("the committed root at height {height} is {proposed}; ours is {ours:?}")]
    RootMismatch {
        height: u64,
        proposed: Hash,
        ours: Option<Hash>,
    },
}

/// The timestamp must be after the parent's and not too far ahead of `now_ms`; returns how many
/// milliseconds to wait before voting, for a timestamp a little ahead (clock skew).
pub fn check_timestamp(block: &Block, parent: &Block, now_ms: u64) -> Result<u64, Refusal> {
    if block.timestamp_ms <= parent.timestamp_ms {
        return Err(Refusal::TimestampNotAfterParent {
            block: block.timestamp_ms,
            parent: parent.timestamp_ms,
        });
    }
    let ahead = block.timestamp_ms.saturating_sub(now_ms);
    if ahead > MAX_FUTURE_MS {
        return Err(Refusal::TimestampTooFarAhead {
            block: block.timestamp_ms,
            ahead,
        });
    }
    Ok(ahead.saturating_sub(MAX_CLOCK_SKEW_MS))
}

/// The committed root must be of an earlier height, never older than the parent's, and at most
/// [`MAX_ROOT_LAG`] behind.
pub fn check_commitment(block: &Block, parent: &Block) -> Result<(), Refusal> {
    let committed = block.committed;
    if committed.height >= block.height {
        return Err(Refusal::CommittedNotBelow {
            committed: committed.height,
            block: block.height,
        });
    }
    if committed.height < parent.committed.height {
        return Err(Refusal::CommittedBehindParent {
            committed: committed.height,
            parent: parent.committed.height,
        });
    }
    let lag = block.height - committed.height;
    if lag > MAX_ROOT_LAG {
        return Err(Refusal::CommittedTooOld { lag });
    }
    Ok(())
}

/// The committed root must equal the one we computed at its height (`ours`, none if we have no
/// root there).
pub fn check_root(committed: &Committed, ours: Option<Hash>) -> Result<(), Refusal> {
    if ours == Some(committed.root) {
        return Ok(());
    }
    Err(Refusal::RootMismatch {
        height: committed.height,
        proposed: committed.root,
        ours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::sha256::Digest;

    const NOW: u64 = 1_800_000_000_000;

    fn block(height: u64, timestamp_ms: u64, committed_height: u64) -> Block {
        Block::new(
            Digest::from([height as u8; 32]),
            height,
            timestamp_ms,
            None,
            [0; 32],
            Committed {
                height: committed_height,
                root: Hash([committed_height as u8; 32]),
            },
            Vec::new(),
        )
    }

    #[test]
    fn a_timestamp_not_after_the_parents_is_refused() {
        let parent = block(10, NOW, 9);
        for ts in [NOW - 1, NOW] {
            assert_eq!(
                check_timestamp(&block(11, ts, 10), &parent, NOW),
                Err(Refusal::TimestampNotAfterParent {
                    block: ts,
                    parent: NOW
                })
            );
        }
        assert_eq!(
            check_timestamp(&block(11, NOW + 1, 10), &parent, NOW),
            Ok(0)
        );
    }

    #[test]
    fn a_timestamp_ahead_of_our_clock_is_waited_for_then_refused() {
        let parent = block(10, NOW - 1_000, 9);
        let at = |ahead| check_timestamp(&block(11, NOW + ahead, 10), &parent, NOW);
        assert_eq!(at(MAX_CLOCK_SKEW_MS), Ok(0), "skew is not waited for");
        assert_eq!(at(MAX_CLOCK_SKEW_MS + 700), Ok(700));
        assert_eq!(at(MAX_FUTURE_MS), Ok(MAX_FUTURE_MS - MAX_CLOCK_SKEW_MS));
        assert_eq!(
            at(MAX_FUTURE_MS + 1),
            Err(Refusal::TimestampTooFarAhead {
                block: NOW + MAX_FUTURE_MS + 1,
                ahead: MAX_FUTURE_MS + 1
            })
        );
        assert!(check_timestamp(&block(11, u64::MAX, 10), &parent, NOW).is_err());
    }

    #[test]
    fn a_committed_root_must_be_earlier_no_older_than_the_parents_and_recent() {
        let parent = block(40, NOW, 30);
        assert_eq!(check_commitment(&block(41, NOW + 1, 30), &parent), Ok(()));
        assert_eq!(check_commitment(&block(41, NOW + 1, 40), &parent), Ok(()));
        assert_eq!(
            check_commitment(&block(41, NOW + 1, 41), &parent),
            Err(Refusal::CommittedNotBelow {
                committed: 41,
                block: 41
            })
        );
        assert_eq!(
            check_commitment(&block(41, NOW + 1, 29), &parent),
            Err(Refusal::CommittedBehindParent {
                committed: 29,
                parent: 30
            })
        );
        let parent = block(40, NOW, 20);
        assert_eq!(
            check_commitment(&block(41, NOW + 1, 41 - MAX_ROOT_LAG), &parent),
            Ok(())
        );
        assert_eq!(
            check_commitment(&block(41, NOW + 1, 40 - MAX_ROOT_LAG), &parent),
            Err(Refusal::CommittedTooOld {
                lag: MAX_ROOT_LAG + 1
            })
        );
    }

    #[test]
    fn a_committed_root_other_than_ours_is_refused() {
        let committed = Committed {
            height: 7,
            root: Hash([7; 32]),
        };
        assert_eq!(check_root(&committed, Some(Hash([7; 32]))), Ok(()));
        for ours in [Some(Hash([8; 32])), None] {
            assert_eq!(
                check_root(&committed, ours),
                Err(Refusal::RootMismatch {
                    height: 7,
                    proposed: Hash([7; 32]),
                    ours
                })
            );
        }
    }
}
