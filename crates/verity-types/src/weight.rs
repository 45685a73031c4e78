//! What each transaction costs a validator, in weight units (about one microsecond of one core
//! on the reference machine, from the benchmarks named beside each figure). The fee must cover
//! weight × the genesis `fee_per_weight`, and a block holds at most `max_block_weight`.
//!
//! Clients compute the same weight to price their transactions, so this table lives with the
//! transaction types.

use crate::{Action, MAX_RECEIPTS_PER_TX, MAX_TX_BYTES};

/// Every transaction: decode, secp256k1 recovery, nonce and fee writes, the receipt.
pub const BASE: u64 = 100;
/// Hashing, storing and gossiping the bytes: one unit per this many bytes.
pub const BYTES_PER_UNIT: u64 = 64;
/// One receipt in a SubmitReceipts batch: its share of the batched ed25519 check, the task,
/// record, settlement and reputation writes.
pub const PER_RECEIPT: u64 = 60;

/// One failure report: its own ed25519 check, the refund and the task's close.
pub const PER_FAILURE: u64 = 100;

/// Re-executing one step of a dispute: checking its inputs' proofs and running one node. The
/// bundled models' largest step runs in well under this (`every_step_re_executes_to_its_leaf`);
/// the bytes are paid for apart.
pub const ONE_STEP: u64 = 5_000;

/// Verifying one Groth16 proof over BN254 with a prepared key: decoding, four pairings
/// (`cargo bench -p verity-zk --bench groth16`), rounded up.
pub const ZK_VERIFY: u64 = 3_000;

/// Parsing and comparing a revealed output document: one unit per this many bytes.
pub const PARSE_BYTES_PER_UNIT: u64 = 16;

/// Attestation verification by TEE kind (`cargo bench -p verity-tee --bench verify`: dev 205 µs,
/// tdx 640 µs, sgx 725 µs, snp 3.62 ms, nitro 4.22 ms), rounded up. Unknown kinds are refused
/// by the chain, but still pay for the lookup at the largest price.
pub fn attestation(kind: &str) -> u64 {
    match kind {
        "dev" => 250,
        "tdx" => 700,
        "sgx" => 800,
        "snp" => 3_700,
        _ => 4_300,
    }
}

/// The weight of `action` carried in a transaction of `tx_bytes` encoded bytes.
pub fn of(action: &Action, tx_bytes: usize) -> u64 {
    let action_weight = match action {
        Action::Transfer { .. } => 20,
        Action::Stake { .. } | Action::Unstake { .. } => 50,
        Action::ServeModels { models } => 50 + 10 * models.len() as u64,
        // An anchor costs one ed25519 check.
        Action::RegisterModel { anchor, .. } => 100 + if anchor.is_some() { 100 } else { 0 },
        Action::CommitRegistration { .. } => 30,
        Action::RegisterDataset { anchor, .. } => 50 + if anchor.is_some() { 100 } else { 0 },
        Action::TransferOwnership { .. } => 30,
        Action::RegisterEnclave { kind, .. } => attestation(kind),
        Action::SetAttestationPolicy { .. } => 200,
        // The draw among the model's eligible workers is logarithmic in their number.
        Action::SubmitTask { .. } => 100,
        Action::SubmitReceipts { receipts } => 30 + PER_RECEIPT * receipts.len() as u64,
        Action::CancelTask { .. } => 50,
        // One signature check and a refund each: failures are rare, so no batching.
        Action::ReportFailures { failures } => 30 + PER_FAILURE * failures.len() as u64,
        Action::RegisterChallenger { .. } | Action::UnbondChallenger { .. } => 50,
        Action::OpenDispute { .. } => 100,
        // Folding at most 16 hashes back to their node.
        Action::RevealChildren { .. } => 60,
        Action::OneStep { .. } => ONE_STEP,
        // Parsing the document and comparing it with the other side's, if that is in.
        Action::RevealOutput { output, .. } => {
            100 + (output.len() as u64).div_ceil(PARSE_BYTES_PER_UNIT)
        }
        // Parsing both documents and rendering the prompt with the model's tokenizer.
        Action::RevealToken { output, prompt, .. } => {
            300 + (output.len() as u64 + prompt.len() as u64).div_ceil(PARSE_BYTES_PER_UNIT)
        }
        // Decoding and checking the key's points once.
        Action::SetZkKeys { .. } => 2_000,
        Action::SubmitZkReceipt(_) => PER_RECEIPT + 100 + ZK_VERIFY,
        // One ed25519 check of the key's signature.
        Action::ServeData { .. } => 150,
        Action::AddFile { .. } | Action::AddPermission { .. } => 50,
        // The draw among data verifiers is logarithmic in their number.
        Action::RequestProof { .. } => 100,
        // One ed25519 check, the job's close and the fee's payment.
        Action::AddProof(_) => 150,
        Action::RequestReward { .. } | Action::TransferDat { .. } => 50,
        Action::ClaimDataRewards { .. } => 50,
        // One ed25519 check, as ServeData.
        Action::BondValidator { .. } => 150,
        Action::UnbondValidator { .. } => 50,
    };
    BASE + action_weight + (tx_bytes as u64).div_ceil(BYTES_PER_UNIT)
}

/// No transaction weighs more than this: a block limit below it could refuse a valid one.
pub const MAX_TX_WEIGHT: u64 =
    BASE + max(
        max(
            4_300 + 30 + PER_FAILURE * MAX_RECEIPTS_PER_TX as u64,
            ONE_STEP,
        ),
        300 + (MAX_TX_BYTES as u64).div_ceil(PARSE_BYTES_PER_UNIT),
    ) + (MAX_TX_BYTES as u64).div_ceil(BYTES_PER_UNIT);

const fn max(a: u64, b: u64) -> u64 {
    if a > b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Hash};

    #[test]
    fn weight_grows_with_work_and_bytes() {
        let transfer = Action::Transfer {
            to: Address([1; 20]),
            amount: 1,
        };
        assert_eq!(of(&transfer, 128), BASE + 20 + 2);
        assert!(of(&transfer, 1_000) > of(&transfer, 100));
        let enclave = |kind: &str| Action::RegisterEnclave {
            kind: kind.into(),
            enclave_key: [0; 32],
            nonce_height: 1,
            report: vec![],
            collateral: vec![],
            certs: vec![],
        };
        assert!(of(&enclave("snp"), 0) > of(&enclave("tdx"), 0));
        assert!(of(&enclave("tdx"), 0) > of(&enclave("dev"), 0));
        let cancel = Action::CancelTask {
            task_id: Hash::ZERO,
        };
        assert!(of(&cancel, MAX_TX_BYTES) <= MAX_TX_WEIGHT);
        let reveal = Action::RevealOutput {
            dispute_id: Hash::ZERO,
            output: vec![0; crate::MAX_REVEALED_OUTPUT_BYTES],
        };
        assert!(of(&reveal, MAX_TX_BYTES) <= MAX_TX_WEIGHT);
        let token = Action::RevealToken {
            dispute_id: Hash::ZERO,
            output: vec![0; crate::MAX_REVEALED_OUTPUT_BYTES],
            prompt: vec![0; crate::MAX_ONE_STEP_INPUT_BYTES],
            forward_root: Hash::ZERO,
            token: 0,
        };
        assert!(of(&token, MAX_TX_BYTES) <= MAX_TX_WEIGHT);
    }
}
