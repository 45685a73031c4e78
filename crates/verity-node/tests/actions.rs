//! Every transaction kind through `POST /v1/txs` on a real validator: a valid one where a lone
//! node can apply it, and for every kind a bad one, refused for its own reason, at admission
//! (with its API error code) or in the block (with its receipt's failure). The valid receipts,
//! enclave registrations, disputes and zk receipts that need workers and enclaves go through the
//! same endpoint in `crates/verity/tests/tasks_e2e.rs`, from the worker and the challenger. Then
//! the mempool's own refusals: a duplicate, an underpriced replacement, a nonce too far ahead and
//! a sender over its pending limit.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use verity_client::api::TxStatus;
use verity_client::{Client, ClientError};
use verity_node::mempool::{MAX_NONCE_GAP, MAX_QUEUED_PER_SENDER};
use verity_state::{Genesis, GenesisAccount, Params, TxFailure};
use verity_types::{
    registration_commitment, AccountKey, Action, Address, Asset, DataRef, EnclaveKey,
    FailureReason, FailureReceipt, Hash, Mode, ModelSpec, SignedTx, TaskReceipt, TxBody, ZkReceipt,
    ONE_TOKEN,
};

const CHAIN_ID: &str = "verity-actions-test";
const FEE: u128 = 1_000;

/// What became of one transaction.
#[derive(Debug)]
enum Outcome {
    /// Refused at admission: the API's error code and message.
    Refused(String, String),
    Applied,
    Failed(TxFailure),
}

/// Every kind of action, as [`kind`] names it: the test must send each one.
const KINDS: [&str; 33] = [
    "transfer",
    "stake",
    "unstake",
    "serve_models",
    "register_model",
    "register_dataset",
    "transfer_ownership",
    "register_enclave",
    "set_attestation_policy",
    "submit_task",
    "submit_receipts",
    "cancel_task",
    "report_failures",
    "register_challenger",
    "unbond_challenger",
    "open_dispute",
    "reveal_children",
    "one_step",
    "reveal_output",
    "set_zk_keys",
    "submit_zk_receipt",
    "serve_data",
    "add_file",
    "add_permission",
    "request_proof",
    "add_proof",
    "request_reward",
    "transfer_dat",
    "claim_data_rewards",
    "commit_registration",
    "reveal_token",
    "bond_validator",
    "unbond_validator",
];

/// `Action::name`, through a match with no wildcard: a new action does not compile here until
/// it is listed, and then fails the test until a bad one is sent.
fn kind(action: &Action) -> &'static str {
    match action {
        Action::Transfer { .. }
        | Action::Stake { .. }
        | Action::Unstake { .. }
        | Action::ServeModels { .. }
        | Action::RegisterModel { .. }
        | Action::RegisterDataset { .. }
        | Action::CommitRegistration { .. }
        | Action::TransferOwnership { .. }
        | Action::RegisterEnclave { .. }
        | Action::SetAttestationPolicy { .. }
        | Action::SubmitTask { .. }
        | Action::SubmitReceipts { .. }
        | Action::CancelTask { .. }
        | Action::ReportFailures { .. }
        | Action::RegisterChallenger { .. }
        | Action::UnbondChallenger { .. }
        | Action::OpenDispute { .. }
        | Action::RevealChildren { .. }
        | Action::OneStep { .. }
        | Action::RevealOutput { .. }
        | Action::RevealToken { .. }
        | Action::SetZkKeys { .. }
        | Action::SubmitZkReceipt(_)
        | Action::ServeData { .. }
        | Action::AddFile { .. }
        | Action::AddPermission { .. }
        | Action::RequestProof { .. }
        | Action::AddProof(_)
        | Action::RequestReward { .. }
        | Action::TransferDat { .. }
        | Action::ClaimDataRewards { .. }
        | Action::BondValidator { .. }
        | Action::UnbondValidator { .. } => action.name(),
    }
}

/// The kinds sent so far that a block or the mempool refused.
static REFUSED_KINDS: Mutex<BTreeSet<&str>> = Mutex::new(BTreeSet::new());

struct Sender {
    key: AccountKey,
    nonce: u64,
}

impl Sender {
    fn sign(&self, action: Action) -> SignedTx {
        TxBody {
            chain_id: CHAIN_ID.into(),
            nonce: self.nonce,
            fee: FEE,
            action,
        }
        .sign(&self.key)
    }

    /// Submits `action` and waits for it to be final unless it was refused.
    async fn send(&mut self, client: &Client, action: Action) -> Outcome {
        let kind = kind(&action);
        let outcome = self.submit(client, action).await;
        if !matches!(outcome, Outcome::Applied) {
            REFUSED_KINDS.lock().unwrap().insert(kind);
        }
        outcome
    }

    async fn submit(&mut self, client: &Client, action: Action) -> Outcome {
        let tx = self.sign(action);
        match client.submit(&tx).await {
            Err(ClientError::Api {
                status,
                code,
                message,
            }) => {
                assert!((400..500).contains(&status), "{status} {message}");
                return Outcome::Refused(code.as_str().into(), message);
            }
            Err(other) => panic!("{other}"),
            Ok(_) => {}
        }
        self.nonce += 1;
        let receipt = client
            .wait_for_tx(&tx.hash(), Duration::from_secs(20))
            .await
            .expect("finalized");
        match receipt.status {
            TxStatus::Success => Outcome::Applied,
            TxStatus::Failed { error } => Outcome::Failed(error),
        }
    }

    async fn ok(&mut self, client: &Client, what: &str, action: Action) {
        let outcome = self.send(client, action).await;
        assert!(matches!(outcome, Outcome::Applied), "{what}: {outcome:?}");
    }
}

/// Asserts a failure in the block, by its receipt's code and a part of its reason.
fn failed(what: &str, outcome: Outcome, code: &str, reason: &str) {
    let Outcome::Failed(failure) = outcome else {
        panic!("{what}: expected a failed receipt, got {outcome:?}");
    };
    let json = serde_json::to_value(&failure).unwrap();
    assert_eq!(json["code"], code, "{what}: {failure}");
    assert!(
        failure.to_string().contains(reason),
        "{what}: {failure} does not say {reason:?}"
    );
}

fn refused(what: &str, outcome: Outcome, code: &str, message: &str) {
    let Outcome::Refused(got, text) = outcome else {
        panic!("{what}: expected a refusal at admission, got {outcome:?}");
    };
    assert_eq!(got, code, "{what}: {text}");
    assert!(
        text.contains(message),
        "{what}: {text} does not say {message:?}"
    );
}

fn model_spec(owner_salt: u8, tolerance_ppm: u32) -> ModelSpec {
    ModelSpec {
        model_id: Hash([owner_salt; 32]),
        name: "m".into(),
        version: "1".into(),
        weights_root: Hash([1; 32]),
        architecture: "mlp".into(),
        param_count: 10,
        size: 1_000,
        license: "MIT".into(),
        tee_required: true,
        allowed_modes: vec![Mode::Tee, Mode::Op],
        tolerance_ppm,
        language: None,
    }
}

/// A receipt `enclave` signs for `worker`: a valid signature, so the chain gets to judge the rest.
fn receipt(task_id: Hash, worker: Address, enclave: &EnclaveKey) -> TaskReceipt {
    let mut receipt = TaskReceipt {
        task_id,
        model_id: Hash([1; 32]),
        input_hash: Hash([2; 32]),
        output_hash: Hash([3; 32]),
        output_size: 10,
        trace_root: Hash([4; 32]),
        trace_len: 5,
        worker,
        enclave_key: enclave.public(),
        signature: [0; 64],
    };
    enclave.sign(CHAIN_ID, &mut receipt);
    receipt
}

#[test]
fn every_action_through_the_api_and_a_bad_one_of_each_fails_for_its_reason() {
    let alice = AccountKey::generate();
    let bob = AccountKey::generate();
    let genesis = Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        params: Params {
            min_fee: FEE,
            fee_collector: Address([0xfe; 20]),
            max_block_txs: 1_000,
            fee_per_weight: 0,
            max_block_weight: 2_000_000,
            governance: Some(alice.address()),
            tasks: Default::default(),
            data: Default::default(),
            validators: Default::default(),
        },
        accounts: [&alice, &bob]
            .iter()
            .map(|k| GenesisAccount {
                address: k.address(),
                balance: 10_000 * ONE_TOKEN,
            })
            .collect(),
        attestation_policy: Some(verity_tee::Policy::devnet()),
        validators: vec![],
    };
    common::with_node(
        genesis,
        |_| {},
        |node| async move {
            let client = node.client;
            let mut alice = Sender {
                key: alice,
                nonce: 0,
            };
            let mut bob = Sender { key: bob, nonce: 0 };
            let (a, b) = (alice.key.address(), bob.key.address());

            // Transfer.
            alice
                .ok(&client, "transfer", Action::Transfer { to: b, amount: 1 })
                .await;
            let outcome = alice
                .send(
                    &client,
                    Action::Transfer {
                        to: b,
                        amount: u128::MAX,
                    },
                )
                .await;
            refused("transfer of everything", outcome, "overflow", "overflows");

            // Stake, ServeModels, Unstake.
            alice
                .ok(
                    &client,
                    "stake",
                    Action::Stake {
                        amount: 20 * ONE_TOKEN,
                    },
                )
                .await;
            let outcome = bob
                .send(
                    &client,
                    Action::Stake {
                        amount: 1_000_000 * ONE_TOKEN,
                    },
                )
                .await;
            refused(
                "stake beyond the balance",
                outcome,
                "insufficient_balance",
                "insufficient balance",
            );
            alice
                .ok(
                    &client,
                    "serve every model",
                    Action::ServeModels { models: vec![] },
                )
                .await;
            let outcome = bob
                .send(
                    &client,
                    Action::ServeModels {
                        models: vec![Hash([0x77; 32])],
                    },
                )
                .await;
            failed(
                "serve models without a stake",
                outcome,
                "not_found",
                "stake before choosing models",
            );
            alice
                .ok(&client, "unstake", Action::Unstake { amount: ONE_TOKEN })
                .await;
            let outcome = bob
                .send(&client, Action::Unstake { amount: ONE_TOKEN })
                .await;
            failed(
                "unstake without a stake",
                outcome,
                "not_found",
                &format!("stake of {b}"),
            );

            // CommitRegistration, then RegisterModel, RegisterDataset, TransferOwnership.
            let spec = model_spec(0x11, 0);
            let model = spec.model_id;
            let salt = Hash([0x5a; 32]);
            let data = DataRef::of(b"a dataset");
            let commit = |asset, id: &Hash| Action::CommitRegistration {
                commitment: registration_commitment(asset, id, &a, &salt),
            };
            alice
                .ok(&client, "commit to a model", commit(Asset::Model, &model))
                .await;
            alice
                .ok(
                    &client,
                    "commit to a dataset",
                    commit(Asset::Dataset, &data.hash),
                )
                .await;
            let outcome = alice.send(&client, commit(Asset::Model, &model)).await;
            failed(
                "the same commitment twice",
                outcome,
                "invalid",
                "is already recorded",
            );
            alice
                .ok(
                    &client,
                    "register a model",
                    Action::RegisterModel {
                        spec: spec.clone(),
                        salt,
                        anchor: None,
                    },
                )
                .await;
            let outcome = bob
                .send(
                    &client,
                    Action::RegisterModel {
                        spec,
                        salt,
                        anchor: None,
                    },
                )
                .await;
            failed(
                "register a model twice",
                outcome,
                "invalid",
                "is already registered",
            );
            let outcome = bob
                .send(
                    &client,
                    Action::RegisterModel {
                        spec: model_spec(0x12, 1_000_001),
                        salt,
                        anchor: None,
                    },
                )
                .await;
            failed(
                "a tolerance over 100 %",
                outcome,
                "invalid",
                "1000001 ppm is over 100 %",
            );
            let dataset = Action::RegisterDataset {
                name: "d".into(),
                data,
                license: "CC-BY".into(),
                salt,
                anchor: None,
            };
            alice
                .ok(&client, "register a dataset", dataset.clone())
                .await;
            let outcome = bob.send(&client, dataset).await;
            failed(
                "register a dataset twice",
                outcome,
                "invalid",
                "is already registered",
            );
            let give = |to| Action::TransferOwnership {
                asset: Asset::Dataset,
                id: data.hash,
                to,
            };
            let outcome = bob.send(&client, give(b)).await;
            failed(
                "take someone else's dataset",
                outcome,
                "unauthorized",
                &format!("only the owner {a} may transfer"),
            );
            alice.ok(&client, "give the dataset away", give(b)).await;

            // SetAttestationPolicy: governance only, and only a policy that parses.
            let policy = serde_json::to_vec(&verity_tee::Policy::devnet()).unwrap();
            alice
                .ok(
                    &client,
                    "set the policy",
                    Action::SetAttestationPolicy {
                        policy: policy.clone(),
                    },
                )
                .await;
            let outcome = bob
                .send(&client, Action::SetAttestationPolicy { policy })
                .await;
            failed(
                "policy from a non-governor",
                outcome,
                "unauthorized",
                &format!("only the governance account {a}"),
            );
            let outcome = alice
                .send(
                    &client,
                    Action::SetAttestationPolicy {
                        policy: b"{".to_vec(),
                    },
                )
                .await;
            failed(
                "a policy that does not parse",
                outcome,
                "attestation",
                "the attestation policy does not parse",
            );

            // RegisterEnclave: dev evidence that does not parse.
            let nonce_height = client.status().await.unwrap().height;
            let outcome = alice
                .send(
                    &client,
                    Action::RegisterEnclave {
                        kind: "dev".into(),
                        enclave_key: [9; 32],
                        nonce_height,
                        report: b"not a report".to_vec(),
                        collateral: vec![],
                        certs: vec![],
                    },
                )
                .await;
            failed(
                "garbage evidence",
                outcome,
                "attestation",
                "malformed dev report",
            );

            // SubmitTask and CancelTask.
            let task = |mode, deadline_blocks| Action::SubmitTask {
                model_id: model,
                input: DataRef::of(b"input"),
                mode,
                max_fee: ONE_TOKEN,
                deadline_blocks,
                input_commitment: None,
                dataset: None,
                generation: None,
            };
            let submit = bob.sign(task(Mode::Tee, 100));
            let task_id = submit.hash();
            bob.ok(&client, "submit a task", task(Mode::Tee, 100)).await;
            let outcome = bob.send(&client, task(Mode::TeeZk, 100)).await;
            refused(
                "a mode the model does not allow",
                outcome,
                "invalid_action",
                "does not allow mode tee_zk",
            );
            let outcome = alice.send(&client, Action::CancelTask { task_id }).await;
            failed(
                "cancel someone else's task",
                outcome,
                "unauthorized",
                &format!("only the submitter {b} may cancel"),
            );
            bob.ok(&client, "cancel the task", Action::CancelTask { task_id })
                .await;

            // Worker results, validly signed by an enclave key that no worker registered.
            let enclave = EnclaveKey::generate();
            let outcome = alice
                .send(
                    &client,
                    Action::SubmitReceipts {
                        receipts: vec![receipt(task_id, a, &enclave)],
                    },
                )
                .await;
            failed(
                "a receipt from an unregistered enclave",
                outcome,
                "receipt_rejected",
                "receipt 0 rejected: the signing enclave key is not registered",
            );
            let mut failure = FailureReceipt {
                task_id,
                model_id: model,
                input_hash: Hash([2; 32]),
                worker: a,
                reason: FailureReason::InputUnavailable,
                enclave_key: enclave.public(),
                signature: [6; 64],
            };
            enclave.sign_failure(CHAIN_ID, &mut failure);
            let outcome = alice
                .send(
                    &client,
                    Action::ReportFailures {
                        failures: vec![failure],
                    },
                )
                .await;
            failed(
                "a failure report from an unregistered enclave",
                outcome,
                "receipt_rejected",
                "receipt 0 rejected: the signing enclave key is not registered",
            );
            let mut zk = ZkReceipt {
                receipt: receipt(task_id, a, &enclave),
                input_commitment: Hash([7; 32]),
                output_commitment: Hash([8; 32]),
                proof: vec![0; 128],
            };
            enclave.sign_zk(CHAIN_ID, &mut zk);
            let outcome = alice.send(&client, Action::SubmitZkReceipt(zk)).await;
            failed(
                "a zk receipt from an unregistered enclave",
                outcome,
                "receipt_rejected",
                "receipt 0 rejected: the signing enclave key is not registered",
            );
            let outcome = bob
                .send(
                    &client,
                    Action::SetZkKeys {
                        model_id: model,
                        verifying_key: vec![1; 360],
                        proving_key: Hash([3; 32]),
                    },
                )
                .await;
            failed(
                "zk keys for someone else's model",
                outcome,
                "unauthorized",
                &format!("only the owner {a} may set the keys"),
            );

            // Challengers and disputes.
            let outcome = bob
                .send(&client, Action::RegisterChallenger { amount: ONE_TOKEN })
                .await;
            failed(
                "a bond under the minimum",
                outcome,
                "invalid",
                "a challenger bonds at least",
            );
            bob.ok(
                &client,
                "register a challenger",
                Action::RegisterChallenger {
                    amount: 100 * ONE_TOKEN,
                },
            )
            .await;
            bob.ok(
                &client,
                "unbond",
                Action::UnbondChallenger { amount: ONE_TOKEN },
            )
            .await;
            let outcome = alice
                .send(&client, Action::UnbondChallenger { amount: ONE_TOKEN })
                .await;
            failed(
                "unbond without a bond",
                outcome,
                "not_found",
                &format!("challenger {a}"),
            );
            let outcome = bob
                .send(
                    &client,
                    Action::OpenDispute {
                        task_id,
                        trace_root: Hash([1; 32]),
                        trace_len: 5,
                    },
                )
                .await;
            failed(
                "dispute a task that has no OP result",
                outcome,
                "not_found",
                &format!("result of task {task_id}"),
            );
            let no_dispute = Hash([0x55; 32]);
            let outcome = bob
                .send(
                    &client,
                    Action::RevealChildren {
                        dispute_id: no_dispute,
                        hashes: vec![Hash([1; 32])],
                    },
                )
                .await;
            failed(
                "reveal in no dispute",
                outcome,
                "not_found",
                &format!("dispute {no_dispute}"),
            );
            let outcome = bob
                .send(
                    &client,
                    Action::OneStep {
                        dispute_id: no_dispute,
                        witness: vec![1],
                        input: vec![],
                    },
                )
                .await;
            failed(
                "one step in no dispute",
                outcome,
                "not_found",
                &format!("dispute {no_dispute}"),
            );
            let outcome = bob
                .send(
                    &client,
                    Action::RevealOutput {
                        dispute_id: no_dispute,
                        output: b"{}".to_vec(),
                    },
                )
                .await;
            failed(
                "an output in no dispute",
                outcome,
                "not_found",
                &format!("dispute {no_dispute}"),
            );
            let outcome = bob
                .send(
                    &client,
                    Action::RevealToken {
                        dispute_id: no_dispute,
                        output: b"{}".to_vec(),
                        prompt: b"{}".to_vec(),
                        forward_root: Hash([2; 32]),
                        token: 1,
                    },
                )
                .await;
            failed(
                "a token in no dispute",
                outcome,
                "not_found",
                &format!("dispute {no_dispute}"),
            );

            // Contributed data. The full flow with a verifier runs in `crates/verity/tests/data_e2e.rs`.
            let outcome = alice
                .send(
                    &client,
                    Action::ServeData {
                        rsa_public_key: vec![1; 294],
                        endpoint: "http://127.0.0.1:1".into(),
                        signature: [0; 64],
                    },
                )
                .await;
            failed(
                "serve data without an enclave",
                outcome,
                "unauthorized",
                &format!("{a} has no live attested enclave"),
            );
            let add_file = |encrypted| Action::AddFile {
                data: DataRef {
                    encrypted,
                    ..DataRef::of(b"ciphertext")
                },
                url: String::new(),
                plaintext_hash: Hash([5; 32]),
                evaluation: None,
            };
            alice.ok(&client, "add a file", add_file(true)).await;
            let outcome = alice.send(&client, add_file(false)).await;
            failed(
                "a plaintext file",
                outcome,
                "invalid",
                "a contributed file must be encrypted",
            );
            alice
                .ok(
                    &client,
                    "let bob use file 1",
                    Action::AddPermission {
                        file_id: 1,
                        grantee: b,
                    },
                )
                .await;
            let outcome = bob
                .send(
                    &client,
                    Action::AddPermission {
                        file_id: 1,
                        grantee: b,
                    },
                )
                .await;
            failed(
                "permission on someone else's file",
                outcome,
                "unauthorized",
                &format!("only the owner {a} may do this for file 1"),
            );
            let outcome = bob
                .send(
                    &client,
                    Action::RequestProof {
                        file_id: 1,
                        fee: ONE_TOKEN,
                    },
                )
                .await;
            failed(
                "a proof nobody can give",
                outcome,
                "invalid",
                "no attested worker serves data verification",
            );
            let mut proof = verity_types::DataProof {
                job_id: 1,
                file_id: 1,
                plaintext_hash: Hash([5; 32]),
                verdict: verity_types::DataVerdict::Scored { score: 10_000 },
                worker: a,
                enclave_key: [0; 32],
                signature: [0; 64],
            };
            enclave.sign_data_proof(CHAIN_ID, &mut proof);
            let outcome = alice.send(&client, Action::AddProof(proof)).await;
            failed("a proof of no job", outcome, "not_found", "data job 1");
            let outcome = alice
                .send(
                    &client,
                    Action::RequestReward {
                        file_id: 1,
                        job_id: 1,
                    },
                )
                .await;
            failed("a reward for no job", outcome, "not_found", "data job 1");
            alice
                .ok(
                    &client,
                    "transfer no DAT",
                    Action::TransferDat {
                        file_id: 1,
                        to: b,
                        amount: 0,
                    },
                )
                .await;
            let outcome = bob
                .send(
                    &client,
                    Action::TransferDat {
                        file_id: 1,
                        to: a,
                        amount: 1,
                    },
                )
                .await;
            failed(
                "DAT bob does not hold",
                outcome,
                "insufficient_balance",
                "needs 1, has 0",
            );
            let outcome = bob
                .send(&client, Action::ClaimDataRewards { file_id: 1 })
                .await;
            failed(
                "a claim with nothing earned",
                outcome,
                "invalid",
                &format!("{b} has nothing to claim from file 1"),
            );
            // This chain's committee is fixed at genesis (the validator bonds of a chain that
            // has them: crates/verity-state/tests/validators.rs and the devnet tests).
            let (identity, proof) =
                verity_types::validator::sign_bond(&[3; 32], CHAIN_ID, &b, "127.0.0.1:9000");
            let outcome = bob
                .send(
                    &client,
                    Action::BondValidator {
                        identity,
                        p2p: "127.0.0.1:9000".into(),
                        amount: ONE_TOKEN,
                        proof,
                    },
                )
                .await;
            failed(
                "a bond on a chain without bonds",
                outcome,
                "invalid",
                "fixed at genesis",
            );
            let outcome = bob
                .send(&client, Action::UnbondValidator { amount: 1 })
                .await;
            failed(
                "an unbond without a bond",
                outcome,
                "not_found",
                "validator bond of",
            );

            assert_eq!(
                *REFUSED_KINDS.lock().unwrap(),
                BTreeSet::from(KINDS),
                "a bad one of every kind"
            );

            // The mempool's own refusals. Bob skips a nonce, so his later ones wait in the pool.
            let later = |ahead: u64, amount| {
                TxBody {
                    chain_id: CHAIN_ID.into(),
                    nonce: bob.nonce + ahead,
                    fee: FEE,
                    action: Action::Transfer { to: a, amount },
                }
                .sign(&bob.key)
            };
            let waiting = later(1, 1);
            client.submit(&waiting).await.unwrap();
            api_refused(client.submit(&waiting).await, 409, "duplicate_transaction");
            api_refused(
                client.submit(&later(1, 2)).await,
                400,
                "replacement_underpriced",
            );
            api_refused(
                client.submit(&later(1 + MAX_NONCE_GAP, 1)).await,
                400,
                "nonce_too_far_ahead",
            );
            // Behind the gap at nonce 0, at most MAX_QUEUED_PER_SENDER wait.
            for ahead in 2..=MAX_QUEUED_PER_SENDER as u64 {
                client.submit(&later(ahead, 1)).await.unwrap();
            }
            api_refused(
                client
                    .submit(&later(MAX_QUEUED_PER_SENDER as u64 + 1, 1))
                    .await,
                400,
                "sender_pending_limit",
            );
        },
    );
}

fn api_refused<T: std::fmt::Debug>(result: Result<T, ClientError>, status: u16, code: &str) {
    match result {
        Err(ClientError::Api {
            status: got,
            code: got_code,
            message,
        }) => assert_eq!((got, got_code.as_str()), (status, code), "{message}"),
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}
