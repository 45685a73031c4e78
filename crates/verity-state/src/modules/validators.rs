//! `validators`: bonded validator stake, epochs, the committee each epoch's snapshot chooses,
//! the proposals each member made, jailing for too few of them, and the fee pool's payout.
//!
//! Epoch `e` holds heights `e·B + 1 ..= (e + 1)·B` (`B` = `epoch_blocks`). At the end of its
//! midpoint block, `e·B + B/2`, the chain fixes the participants of epoch `e + 2`: the top
//! `max_validators` bonded validators by stake (ties by identity) at or above
//! `min_validator_stake`, none of them jailed. Two epochs ahead is what resharing needs: epoch
//! `e + 2`'s participants are announced at the end of epoch `e`, receive their shares in epoch
//! `e + 2`'s ceremony, and sign from epoch `e + 3`. So the committee that signs epoch `e` is the
//! participant set of epoch `e − 1` (the genesis validators sign epochs 0 to 2).
//!
//! When epoch `e` ends, each member of its signing committee that proposed fewer than
//! `min_proposals_bps` of its fair share of the epoch's blocks (blocks ÷ members) is jailed:
//! it is left out of the snapshots taken through epoch `e + jail_epochs`, and `jail_slash_bps`
//! of its bond is burned. Then the fee collector's balance (transaction fees and the
//! protocol's share of task fees) is paid to the members that were not jailed, pro rata to the
//! stake the snapshot recorded.
//!
//! Everything here runs only on chains whose genesis names validators. Until nodes reshare the
//! threshold key (`rotate_committees`), the genesis committee signs, is judged and is paid in
//! every epoch, and the snapshots only record whom stake elects.

use serde::{Deserialize, Serialize};
use verity_types::{Address, Amount, ValidatorIdentity};

use crate::modules::{accounts, data::mul_div, disputes::bps_of, schedule};
use crate::overlay::Overlay;
use crate::store::Table;
use crate::{BlockCtx, Genesis, StateError, TxFailure};

/// Parameters of validator staking and epochs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidatorParams {
    /// Blocks in one epoch.
    pub epoch_blocks: u64,
    /// Most members of one committee.
    pub max_validators: u32,
    /// Least bonded stake a validator needs to be chosen.
    #[serde(with = "verity_types::amount")]
    pub min_validator_stake: Amount,
    /// Epochs between UnbondValidator and the stake's return: at least 4. Stake unbonded in
    /// epoch `u` may still sit in the committee that signs epoch `u + 3` (chosen at `u`'s
    /// snapshot), which is judged when epoch `u + 4` begins, before the stake is returned.
    pub unbonding_epochs: u64,
    /// Epochs a jailed validator is left out of committee snapshots.
    pub jail_epochs: u64,
    /// Share of its fair share of an epoch's blocks that a member must propose, in basis points.
    pub min_proposals_bps: u32,
    /// Share of a jailed validator's bond that is burned, in basis points.
    pub jail_slash_bps: u32,
    /// Whether each epoch is signed by the committee elected for it. Taking over consensus
    /// needs the threshold key reshared to the new committee, which nodes of this release do
    /// not run yet (they refuse a genesis with it): without it the genesis committee signs
    /// every epoch, is judged and paid, and snapshots record whom stake would elect.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_committees: bool,
}

impl Default for ValidatorParams {
    fn default() -> Self {
        Self {
            epoch_blocks: 1_000,
            max_validators: 32,
            min_validator_stake: 1_000 * verity_types::ONE_TOKEN,
            unbonding_epochs: 4,
            jail_epochs: 1,
            min_proposals_bps: 2_500,
            jail_slash_bps: 100,
            rotate_committees: false,
        }
    }
}

/// Largest committee: the consensus layer's bound.
pub const MAX_COMMITTEE: u32 = 128;

impl ValidatorParams {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.epoch_blocks < 10 {
            return Err("validators.epoch_blocks must be at least 10".into());
        }
        if !(1..=MAX_COMMITTEE).contains(&self.max_validators) {
            return Err(format!(
                "validators.max_validators must be 1 to {MAX_COMMITTEE}"
            ));
        }
        if self.min_validator_stake == 0 {
            return Err("validators.min_validator_stake must be at least 1".into());
        }
        if self.unbonding_epochs < 4 {
            return Err("validators.unbonding_epochs must be at least 4".into());
        }
        if self.jail_epochs == 0 {
            return Err("validators.jail_epochs must be at least 1".into());
        }
        for (name, bps) in [
            ("min_proposals_bps", self.min_proposals_bps),
            ("jail_slash_bps", self.jail_slash_bps),
        ] {
            if bps > 10_000 {
                return Err(format!("validators.{name} must be at most 10000"));
            }
        }
        Ok(())
    }

    /// The epoch of `height` (block 0 counts as epoch 0).
    pub fn epoch_of(&self, height: u64) -> u64 {
        height.saturating_sub(1) / self.epoch_blocks
    }

    pub fn first_height(&self, epoch: u64) -> u64 {
        epoch.saturating_mul(self.epoch_blocks).saturating_add(1)
    }

    pub fn last_height(&self, epoch: u64) -> u64 {
        epoch.saturating_add(1).saturating_mul(self.epoch_blocks)
    }

    /// The block at whose end epoch `epoch`'s snapshot fixes the participants of `epoch + 2`.
    pub fn snapshot_height(&self, epoch: u64) -> u64 {
        epoch
            .saturating_mul(self.epoch_blocks)
            .saturating_add(self.epoch_blocks / 2)
    }
}

/// A validator named at genesis; its stake is bonded from the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    pub account: Address,
    pub identity: ValidatorIdentity,
    pub p2p: String,
    #[serde(with = "verity_types::amount")]
    pub stake: Amount,
}

/// A bonded validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validator {
    /// Bonds, is paid and is slashed.
    #[schema(value_type = String)]
    pub account: Address,
    pub identity: ValidatorIdentity,
    pub p2p: String,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub bonded: Amount,
    /// Stake on its way back to the account; still slashable.
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub unbonding: Amount,
    /// Left out of committee snapshots taken through this epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailed_through: Option<u64>,
}

/// One member of a committee, as its snapshot recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub identity: ValidatorIdentity,
    #[schema(value_type = String)]
    pub account: Address,
    pub p2p: String,
    #[serde(with = "verity_types::amount")]
    #[schema(schema_with = verity_types::schema::amount)]
    pub stake: Amount,
}

/// The participants of one epoch, in identity order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Committee {
    pub epoch: u64,
    /// The height whose end state chose it; 0 for genesis.
    pub snapshot_height: u64,
    pub members: Vec<Member>,
}

const VALIDATOR: &[u8] = b"v";
const IDENTITY: &[u8] = b"i";
const COMMITTEE: &[u8] = b"c";
const PROPOSALS: &[u8] = b"p";
const NAMED_BLOCKS: &[u8] = b"n";

fn validator_key(account: &Address) -> Vec<u8> {
    [VALIDATOR, &account.0].concat()
}

fn identity_key(identity: &ValidatorIdentity) -> Vec<u8> {
    [IDENTITY, &identity.0].concat()
}

fn committee_key(epoch: u64) -> Vec<u8> {
    [COMMITTEE, &epoch.to_be_bytes()[..]].concat()
}

fn proposals_key(epoch: u64, identity: &ValidatorIdentity) -> Vec<u8> {
    [PROPOSALS, &epoch.to_be_bytes()[..], &identity.0].concat()
}

fn named_blocks_key(epoch: u64) -> Vec<u8> {
    [NAMED_BLOCKS, &epoch.to_be_bytes()[..]].concat()
}

/// Whether this chain runs proof of stake: its genesis names validators.
pub fn enabled(genesis: &Genesis) -> bool {
    !genesis.validators.is_empty()
}

pub fn get(state: &Overlay<'_>, account: &Address) -> Result<Option<Validator>, StateError> {
    state.get_json(Table::Validators, &validator_key(account), "validator")
}

fn put(state: &mut Overlay<'_>, validator: &Validator) {
    state.put_json(
        Table::Validators,
        validator_key(&validator.account),
        validator,
    );
}

/// The account that bonded `identity`, if any.
pub fn account_of(
    state: &Overlay<'_>,
    identity: &ValidatorIdentity,
) -> Result<Option<Address>, StateError> {
    state
        .get(Table::Validators, &identity_key(identity))?
        .map(|bytes| {
            bytes
                .try_into()
                .map(Address)
                .map_err(|_| StateError::Corrupt("validator identity index"))
        })
        .transpose()
}

/// Every validator ever bonded, in account order.
pub fn all(state: &Overlay<'_>) -> Result<Vec<Validator>, StateError> {
    state
        .scan_prefix(Table::Validators, VALIDATOR, usize::MAX)?
        .into_iter()
        .map(|(_, bytes)| {
            serde_json::from_slice(&bytes).map_err(|_| StateError::Corrupt("validator record"))
        })
        .collect()
}

/// The participants of `epoch`, once chosen: genesis for epochs 0 and 1, a snapshot after.
pub fn participants(state: &Overlay<'_>, epoch: u64) -> Result<Option<Committee>, StateError> {
    state.get_json(Table::Validators, &committee_key(epoch), "committee")
}

/// The committee that signs `epoch`: the participants of the epoch before (genesis for 0), or
/// the genesis committee throughout when committees do not rotate.
pub fn signing(
    state: &Overlay<'_>,
    params: &ValidatorParams,
    epoch: u64,
) -> Result<Option<Committee>, StateError> {
    if params.rotate_committees {
        participants(state, epoch.saturating_sub(1))
    } else {
        participants(state, 0)
    }
}

/// Blocks `identity` proposed in `epoch`.
pub fn proposals(
    state: &Overlay<'_>,
    epoch: u64,
    identity: &ValidatorIdentity,
) -> Result<u64, StateError> {
    read_count(state, &proposals_key(epoch, identity))
}

fn read_count(state: &Overlay<'_>, key: &[u8]) -> Result<u64, StateError> {
    state
        .get(Table::Validators, key)?
        .map(|bytes| {
            bytes
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StateError::Corrupt("validator counter"))
        })
        .unwrap_or(Ok(0))
}

fn bump(state: &mut Overlay<'_>, key: Vec<u8>) -> Result<(), StateError> {
    let count = read_count(state, &key)?.saturating_add(1);
    state.put(Table::Validators, key, count.to_be_bytes().to_vec());
    Ok(())
}

/// Writes the genesis validators, their bonds and the participants of epochs 0 and 1.
pub fn init_genesis(state: &mut Overlay<'_>, genesis: &Genesis) -> Result<(), StateError> {
    let mut members = Vec::with_capacity(genesis.validators.len());
    for v in &genesis.validators {
        put(
            state,
            &Validator {
                account: v.account,
                identity: v.identity,
                p2p: v.p2p.clone(),
                bonded: v.stake,
                unbonding: 0,
                jailed_through: None,
            },
        );
        state.put(
            Table::Validators,
            identity_key(&v.identity),
            v.account.0.to_vec(),
        );
        members.push(Member {
            identity: v.identity,
            account: v.account,
            p2p: v.p2p.clone(),
            stake: v.stake,
        });
    }
    members.sort_by_key(|m| m.identity);
    for epoch in [0, 1] {
        state.put_json(
            Table::Validators,
            committee_key(epoch),
            &Committee {
                epoch,
                snapshot_height: 0,
                members: members.clone(),
            },
        );
    }
    Ok(())
}

/// Checks the genesis validators: distinct accounts and identities, valid addresses, stake
/// at or above the minimum, no more than a committee holds.
pub fn validate_genesis(genesis: &Genesis) -> Result<(), String> {
    let params = &genesis.params.validators;
    if genesis.validators.len() > params.max_validators as usize {
        return Err(format!(
            "genesis names {} validators; validators.max_validators is {}",
            genesis.validators.len(),
            params.max_validators
        ));
    }
    let mut accounts = std::collections::BTreeSet::new();
    let mut identities = std::collections::BTreeSet::new();
    for v in &genesis.validators {
        if !accounts.insert(v.account) || !identities.insert(v.identity) {
            return Err(format!(
                "validator {} (account {}) is listed twice",
                v.identity, v.account
            ));
        }
        verity_types::validator::check_p2p_address(&v.p2p)
            .map_err(|e| format!("validator {}: {e}", v.identity))?;
        if v.stake < params.min_validator_stake {
            return Err(format!(
                "validator {} bonds {} base units, below validators.min_validator_stake",
                v.identity, v.stake
            ));
        }
    }
    Ok(())
}

/// BondValidator: checks the identity's proof, then moves `amount` from the signer's balance
/// into its validator bond. An identity belongs to the first account that bonds it, and an
/// account keeps the identity it first bonded.
pub fn bond(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    account: &Address,
    identity: &ValidatorIdentity,
    p2p: &str,
    amount: Amount,
    proof: &[u8; 64],
) -> Result<(), TxFailure> {
    if !enabled(ctx.genesis) {
        return Err(TxFailure::Invalid {
            reason: "this chain's committee is fixed at genesis: it has no validator bonds".into(),
        });
    }
    if amount == 0 {
        return Err(TxFailure::Invalid {
            reason: "bond amount must be positive".into(),
        });
    }
    verity_types::validator::verify_bond(&ctx.genesis.chain_id, identity, account, p2p, proof)
        .map_err(|e| TxFailure::Invalid {
            reason: e.to_string(),
        })?;
    if let Some(owner) = account_of(state, identity)? {
        if owner != *account {
            return Err(TxFailure::Invalid {
                reason: format!("validator identity {identity} is bonded by another account"),
            });
        }
    }
    let mut validator = match get(state, account)? {
        Some(v) if v.identity != *identity => {
            return Err(TxFailure::Invalid {
                reason: format!(
                    "{account} already bonds validator {}; one account bonds one identity",
                    v.identity
                ),
            })
        }
        Some(v) => v,
        None => Validator {
            account: *account,
            identity: *identity,
            p2p: String::new(),
            bonded: 0,
            unbonding: 0,
            jailed_through: None,
        },
    };
    validator.bonded = validator
        .bonded
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    validator.p2p = p2p.to_string();
    accounts::debit(state, account, amount)?;
    put(state, &validator);
    state.put(
        Table::Validators,
        identity_key(identity),
        account.0.to_vec(),
    );
    Ok(())
}

/// UnbondValidator: `amount` stops counting for snapshots at once and returns to the balance
/// at the first block of the epoch `unbonding_epochs` after this one; until then it can still
/// be slashed.
pub fn unbond(
    state: &mut Overlay<'_>,
    ctx: &BlockCtx<'_>,
    account: &Address,
    amount: Amount,
) -> Result<(), TxFailure> {
    let mut validator = get(state, account)?.ok_or_else(|| TxFailure::NotFound {
        what: format!("validator bond of {account}"),
    })?;
    if amount == 0 || amount > validator.bonded {
        return Err(TxFailure::Invalid {
            reason: format!(
                "can unbond 1 to {} base units, not {amount}",
                validator.bonded
            ),
        });
    }
    validator.bonded -= amount;
    validator.unbonding = validator
        .unbonding
        .checked_add(amount)
        .ok_or(TxFailure::Overflow)?;
    put(state, &validator);
    let params = &ctx.genesis.params.validators;
    let due = params.first_height(
        params
            .epoch_of(ctx.height)
            .saturating_add(params.unbonding_epochs),
    );
    schedule::push_amount(state, schedule::Kind::ValidatorUnbond, due, account, amount)
}

/// Returns validator stake whose unbonding ends at this height.
fn release_due(state: &mut Overlay<'_>, height: u64) -> Result<(), StateError> {
    for (account, amount) in schedule::take_amounts(state, schedule::Kind::ValidatorUnbond, height)?
    {
        let mut validator =
            get(state, &account)?.ok_or(StateError::Corrupt("unbonding validator"))?;
        // A slash may have taken part of it: what is left is returned.
        let amount = amount.min(validator.unbonding);
        // A balance too large to take it back keeps the amount unbonding rather than lose it.
        if accounts::credit(state, &account, amount).is_ok() {
            validator.unbonding -= amount;
            put(state, &validator);
        }
    }
    Ok(())
}

/// Runs before a block's transactions: closes the epoch the previous block ended (before
/// anything is returned, so stake due now is still judged for that epoch), returns due
/// unbondings, takes the snapshot the previous block was due for, and counts the proposer.
pub fn begin_block(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>) -> Result<(), StateError> {
    if !enabled(ctx.genesis) {
        return Ok(());
    }
    let params = &ctx.genesis.params.validators;
    let previous = ctx.height.saturating_sub(1);
    if previous > 0 && previous == params.last_height(params.epoch_of(previous)) {
        close_epoch(state, ctx, params.epoch_of(previous))?;
    }
    release_due(state, ctx.height)?;
    let epoch_of_previous = params.epoch_of(previous);
    if previous > 0 && previous == params.snapshot_height(epoch_of_previous) {
        snapshot(state, params, previous, epoch_of_previous + 2)?;
    }
    if let Some(proposer) = &ctx.proposer {
        let epoch = params.epoch_of(ctx.height);
        bump(state, proposals_key(epoch, proposer))?;
        bump(state, named_blocks_key(epoch))?;
    }
    Ok(())
}

/// Chooses the participants of `epoch` from the state after block `height`.
fn snapshot(
    state: &mut Overlay<'_>,
    params: &ValidatorParams,
    height: u64,
    epoch: u64,
) -> Result<(), StateError> {
    let now = params.epoch_of(height);
    let mut eligible: Vec<Validator> = all(state)?
        .into_iter()
        .filter(|v| v.bonded >= params.min_validator_stake)
        .filter(|v| v.jailed_through.is_none_or(|through| through < now))
        .collect();
    eligible.sort_by(|a, b| b.bonded.cmp(&a.bonded).then(a.identity.cmp(&b.identity)));
    eligible.truncate(params.max_validators as usize);
    let mut members: Vec<Member> = eligible
        .into_iter()
        .map(|v| Member {
            identity: v.identity,
            account: v.account,
            p2p: v.p2p,
            stake: v.bonded,
        })
        .collect();
    if members.is_empty() {
        // A chain never elects an empty committee: the last one carries on.
        let previous = participants(state, epoch - 1)?
            .ok_or(StateError::Corrupt("the previous epoch has no committee"))?;
        members = previous.members;
    }
    members.sort_by_key(|m| m.identity);
    state.put_json(
        Table::Validators,
        committee_key(epoch),
        &Committee {
            epoch,
            snapshot_height: height,
            members,
        },
    );
    Ok(())
}

/// Jails the members of `epoch`'s signing committee that proposed too few of its blocks, then
/// pays out the fee pool to the others.
fn close_epoch(state: &mut Overlay<'_>, ctx: &BlockCtx<'_>, epoch: u64) -> Result<(), StateError> {
    let params = &ctx.genesis.params.validators;
    let committee = signing(state, params, epoch)?
        .ok_or(StateError::Corrupt("an epoch has no signing committee"))?;
    let mut paid = Vec::with_capacity(committee.members.len());
    // Only an epoch whose every block named its proposer is judged: a chain driven without
    // proposers (tests of other modules) jails no one.
    let judged = read_count(state, &named_blocks_key(epoch))? == params.epoch_blocks;
    let fair = params.epoch_blocks / committee.members.len() as u64;
    for member in &committee.members {
        let proposed = proposals(state, epoch, &member.identity)?;
        let too_few =
            u128::from(proposed) * 10_000 < u128::from(fair) * u128::from(params.min_proposals_bps);
        if judged && too_few {
            jail(state, params, &member.account, epoch)?;
        } else {
            paid.push(member);
        }
    }
    let pool = ctx.genesis.params.fee_collector;
    let total: Amount = paid.iter().map(|m| m.stake).sum();
    let available = accounts::get(state, &pool)?.balance;
    if total == 0 || available == 0 {
        return Ok(());
    }
    for member in paid {
        let share = mul_div(available, member.stake, total).unwrap_or(0);
        if share > 0 && accounts::credit(state, &member.account, share).is_ok() {
            accounts::debit(state, &pool, share)
                .map_err(|_| StateError::Corrupt("the fee pool paid out more than it held"))?;
        }
    }
    Ok(())
}

fn jail(
    state: &mut Overlay<'_>,
    params: &ValidatorParams,
    account: &Address,
    epoch: u64,
) -> Result<(), StateError> {
    let Some(mut validator) = get(state, account)? else {
        return Ok(());
    };
    let through = epoch.saturating_add(params.jail_epochs);
    validator.jailed_through = Some(validator.jailed_through.map_or(through, |t| t.max(through)));
    let at_stake = validator.bonded.saturating_add(validator.unbonding);
    let burned = bps_of(at_stake, params.jail_slash_bps);
    let from_bond = burned.min(validator.bonded);
    validator.bonded -= from_bond;
    validator.unbonding -= (burned - from_bond).min(validator.unbonding);
    put(state, &validator);
    Ok(())
}
