//! TEE-mode tasks end to end: `verity devnet` (4 validators, 2 in-process workers) plus a third
//! worker as its own `verity worker` process. 100 tasks with real digit images; the third worker
//! is killed with SIGKILL after the first 10, so the tasks drawn for it time out, are reassigned
//! and finish. Every output must equal `verity infer run` on the same input, balances must have
//! moved exactly per the fee split, and reputation must show the successes and the timeouts.

mod common;

use common::devnet::{model_id, spawn, start_devnet, wait_for};

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use verity_client::api::{TaskStatus, TaskView, TxFailure, TxStatus};
use verity_client::Client;
use verity_types::{
    sha256, weight, AccountKey, Action, Address, DataRef, EnclaveKey, FailureReason, Hash, Mode,
    SignedTx, TaskReceipt, TxBody, ONE_TOKEN,
};

const TASKS: usize = 100;
const MAX_FEE: u128 = 1_000_000;
const TX_FEE: u128 = 1_000_000_000;

async fn balance(client: &Client, a: &Address) -> u128 {
    client.account(a).await.unwrap().balance
}

async fn nonce(client: &Client, a: &Address) -> u64 {
    client.nonce(a).await.unwrap()
}

/// Runs the CLI to completion; fails the test with its stderr unless it succeeds.
fn verity_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verity {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sign(key: &AccountKey, nonce: u64, action: Action) -> SignedTx {
    TxBody {
        chain_id: "verity-devnet".into(),
        nonce,
        fee: TX_FEE,
        action,
    }
    .sign(key)
}

/// The views of `ids` once every one is finalized.
async fn all_finalized(client: &Client, ids: &[Hash], what: &str, secs: u64) -> Vec<TaskView> {
    wait_for(what, secs, async || {
        let mut views = Vec::new();
        for id in ids {
            let view = client.task(id).await.ok()??;
            if view.task.status != TaskStatus::Finalized {
                return None;
            }
            views.push(view);
        }
        Some(views)
    })
    .await
}

/// The workers with a registered enclave, once there are `n`.
async fn workers_with_enclaves(client: &Client, n: usize) -> Vec<Address> {
    wait_for("workers with enclaves", 120, async || {
        let list = client.workers(&Default::default()).await.ok()?;
        let ready: Vec<Address> = list
            .workers
            .iter()
            .filter(|w| w.enclave.is_some())
            .map(|w| w.address)
            .collect();
        (ready.len() == n).then_some(ready)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tasks_with_a_killed_worker() {
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(home.path(), 1, 2, &[]).await;
    let (client, model, devnet_home, api) = (
        devnet.client.clone(),
        devnet.model,
        devnet.home.clone(),
        devnet.api,
    );
    let dev = AccountKey::from_hex(
        &std::fs::read_to_string(devnet_home.join("dev-account.key")).unwrap(),
    )
    .unwrap();

    // A user and a third worker, funded by the dev account (which owns the model).
    let user = AccountKey::generate();
    let third = AccountKey::generate();
    let third_key = home.path().join("third.key");
    std::fs::write(&third_key, third.secret_hex()).unwrap();
    let n = nonce(&client, &dev.address()).await;
    let funding = [
        sign(
            &dev,
            n,
            Action::Transfer {
                to: user.address(),
                amount: 1_000 * ONE_TOKEN,
            },
        ),
        sign(
            &dev,
            n + 1,
            Action::Transfer {
                to: third.address(),
                amount: 10_000 * ONE_TOKEN,
            },
        ),
    ];
    for tx in &funding {
        client.submit(tx).await.unwrap();
    }
    client
        .wait_for_tx(&funding[1].hash(), Duration::from_secs(60))
        .await
        .unwrap();
    let third_worker = spawn(
        &[
            "worker",
            "--key",
            third_key.to_str().unwrap(),
            "--home",
            home.path().join("third").to_str().unwrap(),
            "--node",
            &format!("127.0.0.1:{}", api + 1),
        ],
        &home.path().join("third.log"),
    );
    let workers = workers_with_enclaves(&client, 3).await;
    assert!(workers.contains(&third.address()));

    // Balances and nonces before the tasks.
    let owner = dev.address();
    let mut before = BTreeMap::new();
    let collector = Address([0xfe; 20]);
    for a in workers.iter().chain([&owner, &user.address(), &collector]) {
        before.insert(*a, (balance(&client, a).await, nonce(&client, a).await));
    }

    // 100 real digit images; the third worker dies after the first 10 submissions.
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/samples/digits_test.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut inputs = Vec::new();
    let mut ids = Vec::new();
    let mut third_worker = Some(third_worker);
    for (i, pixels) in samples["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .take(TASKS)
        .enumerate()
    {
        let bytes = serde_json::to_vec(&serde_json::json!([pixels])).unwrap();
        client.put_blob(bytes.clone(), &user).await.unwrap();
        let tx = sign(
            &user,
            i as u64,
            Action::SubmitTask {
                model_id: model,
                input: DataRef::of(&bytes),
                mode: Mode::Tee,
                max_fee: MAX_FEE,
                deadline_blocks: 2_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        );
        client.submit(&tx).await.unwrap();
        ids.push(tx.hash());
        inputs.push(bytes);
        if i == 9 {
            drop(third_worker.take());
        }
    }

    // All reach Finalized.
    let started = Instant::now();
    let views: Vec<TaskView> = wait_for("all tasks finalized", 240, async || {
        let mut views = Vec::new();
        for id in &ids {
            let view = client.task(id).await.ok()??;
            if view.task.status != TaskStatus::Finalized {
                return None;
            }
            views.push(view);
        }
        Some(views)
    })
    .await;
    eprintln!(
        "100 tasks finalized {:.1}s after the last submission",
        started.elapsed().as_secs_f64()
    );

    // Reassignment: tasks drawn for the dead worker timed out and were finished by others.
    let reassigned = views
        .iter()
        .filter(|v| v.task.timed_out.contains(&third.address()))
        .count();
    assert!(
        reassigned > 0,
        "some tasks were drawn for the killed worker"
    );

    // Every output equals `verity infer run` on the same input.
    let dir = home.path().join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let model_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/digits_mlp.onnx");
    for (i, (view, input)) in views.iter().zip(&inputs).enumerate() {
        let record = view.record.as_ref().expect("a finalized task has a record");
        assert_eq!(
            view.attestation.as_deref(),
            Some("dev TEE, not hardware-backed")
        );
        let output = client
            .get_blob(view.output_cid.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sha256(&output), record.output_hash);
        let output: Value = serde_json::from_slice(&output).unwrap();
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, input).unwrap();
        let local = Command::new(env!("CARGO_BIN_EXE_verity"))
            .args([
                "infer",
                "run",
                "--model",
                model_file,
                "--input",
                path.to_str().unwrap(),
                "--json",
                "--trace",
            ])
            .output()
            .unwrap();
        assert!(local.status.success());
        let local: Value = serde_json::from_slice(&local.stdout).unwrap();
        assert_eq!(
            output, local,
            "task {i}: the worker's output differs from verity infer run"
        );
        assert_eq!(serde_json::json!(record.trace_root), local["trace"]["root"]);
    }

    // Balances moved exactly per the fee split (70 % worker, 20 % owner, 10 % protocol).
    let mut earned: BTreeMap<Address, u128> = BTreeMap::new();
    for view in &views {
        let split = &view.record.as_ref().unwrap().settlement;
        assert_eq!(split.worker, MAX_FEE * 7 / 10);
        assert_eq!(split.owner, MAX_FEE * 2 / 10);
        assert_eq!(split.protocol, MAX_FEE / 10);
        let worker = view.task.worker.unwrap();
        *earned.entry(worker).or_default() += MAX_FEE * 7 / 10;
    }
    let (user_before, _) = before[&user.address()];
    assert_eq!(
        balance(&client, &user.address()).await,
        user_before - TASKS as u128 * (MAX_FEE + TX_FEE)
    );
    let (owner_before, _) = before[&owner];
    assert_eq!(
        balance(&client, &owner).await,
        owner_before + TASKS as u128 * MAX_FEE * 2 / 10
    );
    // Workers pay each transaction's weight at the chain's price: at least a one-receipt
    // batch's, at most the heaviest transaction's. The fee collector, which also takes the
    // protocol share, received exactly what everyone paid.
    let prices = client.fee_schedule().await.unwrap();
    let mut worker_fees = 0;
    for w in &workers {
        let (b, n) = before[w];
        let txs = (nonce(&client, w).await - n) as u128;
        let paid = b + earned.get(w).copied().unwrap_or(0) - balance(&client, w).await;
        let lightest = u128::from(weight::BASE + weight::PER_RECEIPT) * prices.fee_per_weight;
        let heaviest = u128::from(weight::MAX_TX_WEIGHT) * prices.fee_per_weight;
        assert!(
            txs * lightest <= paid && paid <= txs * heaviest,
            "worker {w}: {txs} transactions paid {paid}"
        );
        worker_fees += paid;
    }
    let (collector_before, _) = before[&collector];
    assert_eq!(
        balance(&client, &collector).await - collector_before,
        TASKS as u128 * (TX_FEE + MAX_FEE / 10) + worker_fees
    );

    // Reputation: +10 per result, -20 per timeout.
    let mut total_successes = 0;
    for w in &workers {
        let view = client.worker(w).await.unwrap();
        let rep = &view.reputation;
        let (score, successes, timeouts) = (rep.score, rep.successes, rep.timeouts);
        assert_eq!(
            score,
            10 * successes as i64 - 20 * timeouts as i64,
            "{view:?}"
        );
        total_successes += successes;
        if *w == third.address() {
            assert!(timeouts as usize >= reassigned);
        }
    }
    assert_eq!(total_successes, TASKS as u64);

    // A receipt from an unregistered enclave is rejected and records nothing.
    let rogue = EnclaveKey::generate();
    let id = ids[0];
    let mut receipt = TaskReceipt {
        task_id: id,
        model_id: model,
        input_hash: sha256(&inputs[0]),
        output_hash: Hash([7; 32]),
        output_size: 1,
        trace_root: Hash([7; 32]),
        trace_len: 1,
        worker: user.address(),
        enclave_key: [0; 32],
        signature: [0; 64],
    };
    rogue.sign("verity-devnet", &mut receipt);
    let tx = sign(
        &user,
        TASKS as u64,
        Action::SubmitReceipts {
            receipts: vec![receipt],
        },
    );
    client.submit(&tx).await.unwrap();
    let verdict = client
        .wait_for_tx(&tx.hash(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(
            verdict.status,
            TxStatus::Failed {
                error: TxFailure::ReceiptRejected { .. }
            }
        ),
        "{verdict:?}"
    );
    let after = client.task(&id).await.unwrap().unwrap();
    assert_eq!(after.record, views[0].record);
}

/// Tasks naming an input blob that was never uploaded, with the longest deadline: the workers'
/// enclaves report them, they fail at once, the submitter gets the escrow back less the worker
/// fee, no worker loses reputation, and a good task after them still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_cannot_run_fail_without_punishing_workers() {
    const FAILING: u64 = 5;
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(home.path(), 11, 2, &[]).await;
    let (client, model, devnet_home) = (devnet.client.clone(), devnet.model, devnet.home.clone());
    let workers = workers_with_enclaves(&client, 2).await;
    let dev = AccountKey::from_hex(
        &std::fs::read_to_string(devnet_home.join("dev-account.key")).unwrap(),
    )
    .unwrap();
    let user = AccountKey::generate();
    let fund = sign(
        &dev,
        client.pending_nonce(&dev.address()).await.unwrap(),
        Action::Transfer {
            to: user.address(),
            amount: 1_000 * ONE_TOKEN,
        },
    );
    client.submit(&fund).await.unwrap();
    client
        .wait_for_tx(&fund.hash(), Duration::from_secs(60))
        .await
        .unwrap();
    let user_before = balance(&client, &user.address()).await;

    let mut ids = Vec::new();
    for i in 0..FAILING {
        let never_uploaded = format!("an input nobody uploaded, #{i}");
        let tx = sign(
            &user,
            i,
            Action::SubmitTask {
                model_id: model,
                input: DataRef::of(never_uploaded.as_bytes()),
                mode: Mode::Tee,
                max_fee: MAX_FEE,
                deadline_blocks: 100_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
        );
        client.submit(&tx).await.unwrap();
        ids.push(tx.hash());
    }
    for id in &ids {
        let view = wait_for("the task to fail", 120, async || {
            let view = client.task(id).await.ok()??;
            (view.task.status == TaskStatus::Failed).then_some(view)
        })
        .await;
        assert_eq!(
            view.task.failure,
            Some(FailureReason::InputUnavailable),
            "{view:?}"
        );
    }
    let worker_fee = MAX_FEE * 500 / 10_000;
    assert_eq!(
        balance(&client, &user.address()).await,
        user_before - FAILING as u128 * (TX_FEE + worker_fee)
    );
    for w in &workers {
        let rep = client.worker(w).await.unwrap().reputation;
        assert_eq!(
            (rep.score, rep.timeouts, rep.banned),
            (0, 0, false),
            "{rep:?}"
        );
    }

    // The same workers still run a task whose input exists.
    let input = serde_json::to_vec(&serde_json::json!([vec![0.0f32; 64]])).unwrap();
    client.put_blob(input.clone(), &user).await.unwrap();
    let good = sign(
        &user,
        FAILING,
        Action::SubmitTask {
            model_id: model,
            input: DataRef::of(&input),
            mode: Mode::Tee,
            max_fee: MAX_FEE,
            deadline_blocks: 100,
            input_commitment: None,
            dataset: None,
            generation: None,
        },
    );
    client.submit(&good).await.unwrap();
    let id = good.hash();
    wait_for("the good task to finalize", 120, async || {
        let view = client.task(&id).await.ok()??;
        (view.task.status == TaskStatus::Finalized).then_some(())
    })
    .await;
}

/// OP mode on a 4-validator devnet with 3 workers, one of them dishonest (it lies about graph
/// node 1 of every task), and one challenger: 50 OP tasks on the digits MLP and 20 on the CNN.
/// Every dishonest result is disputed and lost (its stake down exactly 5 % each time,
/// reputation −50), its task runs again and finalizes with the honest output; honest results
/// finalize when their window ends. Then a frivolous challenger disputes honest results and
/// loses its bond share each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_results_are_disputed_by_a_challenger_and_liars_lose() {
    const MLP_TASKS: usize = 50;
    const CNN_TASKS: usize = 20;
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        21,
        3,
        &["--dishonest-workers", "1", "--challengers", "1"],
    )
    .await;
    let (client, mlp, devnet_home) = (devnet.client.clone(), devnet.model, devnet.home.clone());
    workers_with_enclaves(&client, 3).await;
    // Results submitted before the challenger bonds would go unwatched.
    wait_for("the challenger to bond", 120, async || {
        let list = client.challengers(&Default::default()).await.ok()?;
        (!list.challengers.is_empty()).then_some(())
    })
    .await;
    let dev_key = devnet_home.join("dev-account.key");
    let liar = AccountKey::from_hex(
        &std::fs::read_to_string(devnet_home.join("worker-0").join("account.key")).unwrap(),
    )
    .unwrap()
    .address();
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let models_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let cnn: Hash = verity_ok(&[
        "model",
        "register",
        &format!("{models_dir}/conv_random.onnx"),
        "--from",
        dev_key.to_str().unwrap(),
        "--modes",
        "tee,op",
        "--node",
        &node,
    ])
    .trim()
    .parse()
    .unwrap();
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&dev_key).unwrap()).unwrap();

    // Inputs: real digit images, and the CNN's image with one pixel varied per task.
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{models_dir}/samples/digits_test.json")).unwrap(),
    )
    .unwrap();
    let mut jobs: Vec<(Hash, Vec<u8>)> = samples["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .take(MLP_TASKS)
        .map(|pixels| {
            (
                mlp,
                serde_json::to_vec(&serde_json::json!([pixels])).unwrap(),
            )
        })
        .collect();
    let image: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{models_dir}/samples/conv_image.json")).unwrap(),
    )
    .unwrap();
    // The CNN's tasks first: the liar is banned for fraud after two lost disputes, and it should
    // be caught on both models before that.
    for i in 0..CNN_TASKS {
        let mut image = image.clone();
        image[0][0][0][0] = serde_json::json!(i as f64 / 10.0);
        jobs.insert(i, (cnn, serde_json::to_vec(&image).unwrap()));
    }
    let blobs: Vec<Vec<u8>> = jobs.iter().map(|(_, input)| input.clone()).collect();
    client.put_blobs(blobs, &dev).await.unwrap();
    let mut ids = Vec::new();
    for (model, input) in &jobs {
        let tx = client
            .submit_action(
                &dev,
                Action::SubmitTask {
                    model_id: *model,
                    input: DataRef::of(input),
                    mode: Mode::Op,
                    max_fee: MAX_FEE,
                    deadline_blocks: 2_000,
                    input_commitment: None,
                    dataset: None,
                    generation: None,
                },
                0,
            )
            .await
            .unwrap();
        ids.push(tx.hash());
    }
    let started = Instant::now();
    let views: Vec<TaskView> = all_finalized(&client, &ids, "every OP task to finalize", 300).await;
    eprintln!(
        "{} OP tasks finalized {:.1} s after the last submission",
        ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Every result is the honest one: the output document `verity infer run` gives.
    let engine = verity_infer::Engine::new(1).unwrap();
    let parsed = |file: &str| {
        verity_infer::Model::from_bytes(&std::fs::read(format!("{models_dir}/{file}")).unwrap())
            .unwrap()
    };
    let (mlp_model, cnn_model) = (parsed("digits_mlp.onnx"), parsed("conv_random.onnx"));
    let mut disputes_lost = 0;
    for (view, (model, input)) in views.iter().zip(&jobs) {
        let local = if *model == mlp {
            &mlp_model
        } else {
            &cnn_model
        };
        let honest = verity_worker::compute(&engine, local, input, None).unwrap();
        let record = view.record.as_ref().unwrap();
        assert_eq!(
            record.output_hash,
            sha256(&honest.output),
            "task {} by {:?} (liar {liar}), disputes {:?}",
            view.task.task_id,
            view.task.worker,
            view.disputes
        );
        assert_eq!(record.trace_root, honest.trace_root);
        assert_ne!(view.task.worker, Some(liar));
        // Each disproven result was the liar's, lost by it in a dispute.
        assert_eq!(
            view.task.disproven.len(),
            view.disputes
                .iter()
                .filter(|d| d.status == verity_client::api::DisputeStatus::ChallengerWon)
                .count()
        );
        for d in &view.disputes {
            assert_eq!(d.worker, liar, "only the liar's results are disputed");
            assert_eq!(d.status, verity_client::api::DisputeStatus::ChallengerWon);
            disputes_lost += 1;
        }
    }
    assert!(disputes_lost > 0, "the liar was drawn for some task");
    for (name, model) in [("digits MLP", mlp), ("CNN", cnn)] {
        let games: Vec<_> = views
            .iter()
            .filter(|v| v.task.model_id == model)
            .flat_map(|v| &v.disputes)
            .collect();
        if let (Some(max_moves), Some(max_blocks)) = (
            games
                .iter()
                .filter_map(|d| Some(d.game.as_ref()?.moves))
                .max(),
            games
                .iter()
                .filter_map(|d| Some(d.resolved_height? - d.opened_height))
                .max(),
        ) {
            eprintln!(
                "{name}: {} disputes, at most {max_moves} moves and {max_blocks} blocks from opening to verdict",
                games.len()
            );
        }
    }
    // Its stake fell by exactly 5 % per lost dispute; its reputation by 50 each.
    let mut stake = 1_000 * ONE_TOKEN;
    for _ in 0..disputes_lost {
        stake -= stake / 10_000 * 500 + stake % 10_000 * 500 / 10_000;
    }
    let liar_view = client.worker(&liar).await.unwrap();
    assert_eq!(liar_view.stake.unwrap().stake, stake);
    assert_eq!(liar_view.reputation.frauds, disputes_lost as u64);
    assert_eq!(liar_view.reputation.score, -50 * disputes_lost as i64);
    // Below the ban line, banned for fraud: never drawn again, never forgiven.
    assert_eq!(liar_view.reputation.banned_for_fraud, disputes_lost >= 2);
    eprintln!("the dishonest worker lost {disputes_lost} disputes");

    // A frivolous challenger disputes honest results with a made-up trace, and loses.
    let frivolous = AccountKey::generate();
    let key_file = home.path().join("frivolous.key");
    verity_types::write_secret(&key_file, frivolous.secret_hex().as_bytes()).unwrap();
    let fund = client
        .submit_action(
            &dev,
            Action::Transfer {
                to: frivolous.address(),
                amount: 1_000 * ONE_TOKEN,
            },
            0,
        )
        .await
        .unwrap();
    client
        .wait_for_tx(&fund.hash(), Duration::from_secs(60))
        .await
        .unwrap();
    let _challenger = spawn(
        &[
            "challenger",
            "--key",
            key_file.to_str().unwrap(),
            "--frivolous",
            "--node",
            &node,
        ],
        &home.path().join("frivolous.log"),
    );
    wait_for("the frivolous challenger to bond", 60, async || {
        client
            .challenger(&frivolous.address())
            .await
            .ok()?
            .challenger
            .map(|_| ())
    })
    .await;
    let (model, input) = &jobs[0];
    let tx = client
        .submit_action(
            &dev,
            Action::SubmitTask {
                model_id: *model,
                input: DataRef::of(input),
                mode: Mode::Op,
                max_fee: MAX_FEE,
                deadline_blocks: 2_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
            0,
        )
        .await
        .unwrap();
    let view = wait_for("the disputed task to finalize", 120, async || {
        let view = client.task(&tx.hash()).await.ok()??;
        (view.task.status == TaskStatus::Finalized).then_some(view)
    })
    .await;
    let record = client
        .challenger(&frivolous.address())
        .await
        .unwrap()
        .challenger
        .unwrap();
    let lost = view
        .disputes
        .iter()
        .find(|d| d.challenger == frivolous.address())
        .expect("the frivolous challenger disputed the result");
    if view.task.disproven.is_empty() {
        // An honest worker's result: the frivolous challenger lost 5 % of its bond.
        assert_eq!(lost.status, verity_client::api::DisputeStatus::WorkerWon);
        assert_eq!(record.disputes_lost, 1);
        let bond = verity_state::TaskParams::default().min_challenger_bond;
        assert_eq!(record.bond, bond - bond / 20);
        assert_eq!(lost.slashed, bond / 20);
    }
}

/// A tolerant model (`--tolerance-ppm`) in OP mode on a devnet with 3 workers, one of them
/// dishonest, and one challenger: the challenger compares outputs within the tolerance, every
/// dishonest result is disputed and settled by a third worker's run (never the liar's), the
/// liar is slashed, and every task finalizes with the honest output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tolerant_models_disputes_are_settled_by_a_referee() {
    const TOLERANCE_PPM: u32 = 1_000;
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        41,
        3,
        &["--dishonest-workers", "1", "--challengers", "1"],
    )
    .await;
    let (client, devnet_home) = (devnet.client.clone(), devnet.home.clone());
    workers_with_enclaves(&client, 3).await;
    let dev_key = devnet_home.join("dev-account.key");
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&dev_key).unwrap()).unwrap();
    let liar = AccountKey::from_hex(
        &std::fs::read_to_string(devnet_home.join("worker-0").join("account.key")).unwrap(),
    )
    .unwrap()
    .address();
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let models_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let cnn: Hash = verity_ok(&[
        "model",
        "register",
        &format!("{models_dir}/conv_random.onnx"),
        "--from",
        dev_key.to_str().unwrap(),
        "--modes",
        "op",
        "--tolerance-ppm",
        &TOLERANCE_PPM.to_string(),
        "--node",
        &node,
    ])
    .trim()
    .parse()
    .unwrap();
    assert_eq!(
        client
            .model(&cnn)
            .await
            .unwrap()
            .unwrap()
            .spec
            .tolerance_ppm,
        TOLERANCE_PPM
    );
    let image: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{models_dir}/samples/conv_image.json")).unwrap(),
    )
    .unwrap();
    let local = verity_infer::Model::from_bytes(
        &std::fs::read(format!("{models_dir}/conv_random.onnx")).unwrap(),
    )
    .unwrap();
    let engine = verity_infer::Engine::new(1).unwrap();
    // Batches of tasks until the liar has been drawn for one (each draw is one in three).
    let mut disputed = Vec::new();
    for batch in 0..5 {
        let mut jobs = Vec::new();
        for i in 0..6 {
            let mut image = image.clone();
            image[0][0][0][0] = serde_json::json!((batch * 6 + i) as f64 / 10.0);
            jobs.push(serde_json::to_vec(&image).unwrap());
        }
        client.put_blobs(jobs.clone(), &dev).await.unwrap();
        let mut ids = Vec::new();
        for input in &jobs {
            let tx = client
                .submit_action(
                    &dev,
                    Action::SubmitTask {
                        model_id: cnn,
                        input: DataRef::of(input),
                        mode: Mode::Op,
                        max_fee: MAX_FEE,
                        deadline_blocks: 2_000,
                        input_commitment: None,
                        dataset: None,
                        generation: None,
                    },
                    0,
                )
                .await
                .unwrap();
            ids.push(tx.hash());
        }
        let views: Vec<TaskView> =
            all_finalized(&client, &ids, "every tolerant OP task to finalize", 400).await;
        for (view, input) in views.iter().zip(&jobs) {
            let honest = verity_worker::compute(&engine, &local, input, None).unwrap();
            let record = view.record.as_ref().unwrap();
            assert_eq!(record.output_hash, sha256(&honest.output), "{view:?}");
            assert_ne!(record.worker, liar);
            for d in &view.disputes {
                assert_eq!(d.worker, liar, "only the liar's results are disputed");
                assert_eq!(
                    d.status,
                    verity_client::api::DisputeStatus::ChallengerWon,
                    "{d:?}"
                );
                assert!(d.game.is_none());
                let check = d
                    .referee
                    .as_ref()
                    .expect("a tolerant dispute has a referee");
                assert_ne!(check.referee, liar);
                assert!(check.worker_output.is_some() && check.referee_output.is_some());
                assert!(
                    d.verdict.as_deref().unwrap_or_default().contains("differs"),
                    "{d:?}"
                );
                disputed.push(d.clone());
            }
        }
        if !disputed.is_empty() {
            break;
        }
    }
    assert!(!disputed.is_empty(), "the liar was never drawn in 30 tasks");
    let blocks = disputed
        .iter()
        .filter_map(|d| Some(d.resolved_height? - d.opened_height))
        .max()
        .unwrap();
    eprintln!(
        "{} tolerant disputes settled by a referee, at most {blocks} blocks from opening to verdict",
        disputed.len()
    );
    let liar_view = client.worker(&liar).await.unwrap();
    assert_eq!(liar_view.reputation.frauds, disputed.len() as u64);
}

/// A challenger killed (SIGKILL) right after it opened a dispute, and started again, finds the
/// dispute on the chain, recomputes its run and plays the game to the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_challenger_finishes_its_dispute() {
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(
        home.path(),
        31,
        1,
        &["--dishonest-workers", "1", "--challengers", "0"],
    )
    .await;
    let (client, mlp, devnet_home) = (devnet.client.clone(), devnet.model, devnet.home.clone());
    workers_with_enclaves(&client, 1).await;
    let dev = AccountKey::from_hex(
        &std::fs::read_to_string(devnet_home.join("dev-account.key")).unwrap(),
    )
    .unwrap();
    let challenger = AccountKey::generate();
    let key_file = home.path().join("challenger.key");
    verity_types::write_secret(&key_file, challenger.secret_hex().as_bytes()).unwrap();
    let fund = client
        .submit_action(
            &dev,
            Action::Transfer {
                to: challenger.address(),
                amount: 1_000 * ONE_TOKEN,
            },
            0,
        )
        .await
        .unwrap();
    client
        .wait_for_tx(&fund.hash(), Duration::from_secs(60))
        .await
        .unwrap();
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let args = [
        "challenger",
        "--key",
        key_file.to_str().unwrap(),
        "--node",
        &node,
    ];
    let first = spawn(&args, &home.path().join("challenger-1.log"));
    let input = serde_json::to_vec(&serde_json::json!([vec![3.0f32; 64]])).unwrap();
    client.put_blob(input.clone(), &dev).await.unwrap();
    let task = client
        .submit_action(
            &dev,
            Action::SubmitTask {
                model_id: mlp,
                input: DataRef::of(&input),
                mode: Mode::Op,
                max_fee: MAX_FEE,
                deadline_blocks: 2_000,
                input_commitment: None,
                dataset: None,
                generation: None,
            },
            0,
        )
        .await
        .unwrap()
        .hash();
    let id = wait_for("the dispute to open", 300, async || {
        let view = client.task(&task).await.ok()??;
        let worker = view.record?.worker;
        let id = verity_client::api::dispute_id(&task, &worker, &challenger.address());
        client.dispute(&id).await.ok()?.map(|_| id)
    })
    .await;
    drop(first);
    let _second = spawn(&args, &home.path().join("challenger-2.log"));
    let dispute = wait_for("the verdict", 300, async || {
        let d = client.dispute(&id).await.ok()??;
        (d.status != verity_client::api::DisputeStatus::Open).then_some(d)
    })
    .await;
    assert_eq!(
        dispute.status,
        verity_client::api::DisputeStatus::ChallengerWon,
        "{dispute:?}"
    );
    assert!(
        !dispute
            .verdict
            .as_deref()
            .unwrap_or_default()
            .contains("clock"),
        "{dispute:?}"
    );
    // Half the bond starts back to the balance.
    verity_ok(&[
        "challenger",
        "--key",
        key_file.to_str().unwrap(),
        "--unbond",
        "50",
        "--node",
        &node,
    ]);
    let record = client
        .challenger(&challenger.address())
        .await
        .unwrap()
        .challenger
        .unwrap();
    assert_eq!(
        (record.bond, record.unbonding),
        (50 * ONE_TOKEN, 50 * ONE_TOKEN)
    );
}

/// snarkjs, from `VERITY_SNARKJS`.
fn snarkjs() -> std::path::PathBuf {
    std::env::var_os("VERITY_SNARKJS")
        .expect("VERITY_SNARKJS is not set: scripts/test installs snarkjs and sets it")
        .into()
}

/// `tee_zk` on the devnet: 20 tasks on the bundled int8 model, submitted with the CLI, finalize
/// with verified proofs and outputs equal to `verity infer run`; `verity zk export` writes one
/// task's proof, which snarkjs and `verity zk verify` accept and refuse once tampered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs VERITY_SNARKJS; scripts/test runs it"]
async fn tee_zk_tasks_finalize_with_proofs_snarkjs_accepts() {
    let tool = snarkjs();
    const ZK_TASKS: usize = 20;
    let home = tempfile::tempdir().unwrap();
    let devnet = start_devnet(home.path(), 61, 2, &["--challengers", "0"]).await;
    let (client, devnet_home) = (devnet.client.clone(), devnet.home.clone());
    workers_with_enclaves(&client, 2).await;
    let model = model_id("digits_mlp_int8.onnx");
    assert!(client.model(&model).await.unwrap().unwrap().zk.is_some());
    let node = format!("http://127.0.0.1:{}", devnet.api);
    let key = devnet_home.join("dev-account.key");
    let models_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models");
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{models_dir}/samples/digits_test.json")).unwrap(),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..ZK_TASKS {
        let input = home.path().join(format!("digit-{i}.json"));
        std::fs::write(
            &input,
            serde_json::to_vec(&serde_json::json!([samples["pixels"][i]])).unwrap(),
        )
        .unwrap();
        let out = verity_ok(&[
            "task",
            "submit",
            "--model",
            &model.to_string(),
            "--input",
            input.to_str().unwrap(),
            "--mode",
            "tee-zk",
            "--from",
            key.to_str().unwrap(),
            "--node",
            &node,
        ]);
        let id: Hash = out
            .lines()
            .find_map(|l| l.strip_prefix("task "))
            .and_then(|id| id.trim().parse().ok())
            .unwrap_or_else(|| panic!("no task id in {out}"));
        tasks.push((id, input));
    }
    let started = Instant::now();
    let views: Vec<TaskView> = all_finalized(
        &client,
        &tasks.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "every tee_zk task to finalize",
        300,
    )
    .await;
    eprintln!(
        "{ZK_TASKS} tee_zk tasks finalized {:.1} s after the last submission",
        started.elapsed().as_secs_f64()
    );
    let local = verity_infer::Model::from_bytes(
        &std::fs::read(format!("{models_dir}/digits_mlp_int8.onnx")).unwrap(),
    )
    .unwrap();
    let engine = verity_infer::Engine::new(1).unwrap();
    for (view, (_, input)) in views.iter().zip(&tasks) {
        let record = view.record.as_ref().unwrap();
        assert!(record.zk.is_some(), "{view:?}");
        // The output is `verity infer run`'s, plus the proof's section.
        let stored = client
            .get_blob(&verity_data::cid_of(&record.output_hash))
            .await
            .unwrap()
            .unwrap();
        let doc: Value = serde_json::from_slice(&stored).unwrap();
        let bytes = std::fs::read(input).unwrap();
        let run = engine
            .run(&local, local.task_inputs(&bytes).unwrap(), true)
            .unwrap();
        // Through bytes as the worker wrote it, so floats print the same way.
        let expected: Value = serde_json::from_slice(
            &serde_json::to_vec(&verity_infer::output::document(&local, &run)).unwrap(),
        )
        .unwrap();
        assert_eq!(doc["outputs"], expected["outputs"]);
        assert_eq!(
            doc["zk"]["output_commitment"],
            serde_json::json!(record.zk.as_ref().unwrap().output_commitment)
        );
    }
    // `verity task show` says so.
    let shown = verity_ok(&["task", "show", &tasks[0].0.to_string(), "--node", &node]);
    assert!(shown.contains("zk proof     verified"), "{shown}");

    // The proof, exported, checked independently.
    let exported = home.path().join("export");
    verity_ok(&[
        "zk",
        "export",
        "--task",
        &tasks[0].0.to_string(),
        "--out",
        exported.to_str().unwrap(),
        "--node",
        &node,
    ]);
    let file = |name: &str| exported.join(name).to_str().unwrap().to_string();
    let ours = |proof: &str| {
        Command::new(env!("CARGO_BIN_EXE_verity"))
            .args([
                "zk",
                "verify",
                "--vk",
                &file("verification_key.json"),
                "--proof",
                proof,
            ])
            .args(["--public", &file("public.json")])
            .output()
            .unwrap()
    };
    assert!(ours(&file("proof.json")).status.success());
    // Tampered: pi_a replaced by pi_c, a valid point that is not the proof's.
    let mut proof: Value =
        serde_json::from_slice(&std::fs::read(file("proof.json")).unwrap()).unwrap();
    proof["pi_a"] = proof["pi_c"].clone();
    let tampered = home.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&proof).unwrap()).unwrap();
    let refused = ours(tampered.to_str().unwrap());
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
    let snarkjs_verify = |proof: &str| {
        let out = Command::new(&tool)
            .args([
                "groth16",
                "verify",
                &file("verification_key.json"),
                &file("public.json"),
                proof,
            ])
            .output()
            .unwrap();
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK")
    };
    assert!(snarkjs_verify(&file("proof.json")));
    assert!(!snarkjs_verify(tampered.to_str().unwrap()));

    // A griefing submitter (review): a tee_zk task whose input commitment is not its input's.
    // No proof of it can verify, so honest workers used to let it time out and lose
    // reputation; they report it and it fails at once, naming the reason.
    let dev = AccountKey::from_hex(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let input = std::fs::read(&tasks[0].1).unwrap();
    client.put_blob(input.clone(), &dev).await.unwrap();
    let mut bogus = [0u8; 32];
    bogus[31] = 1;
    let griefing = client
        .submit_action(
            &dev,
            Action::SubmitTask {
                model_id: model,
                input: DataRef::of(&input),
                mode: Mode::TeeZk,
                max_fee: MAX_FEE,
                deadline_blocks: 2_000,
                input_commitment: Some(Hash(bogus)),
                dataset: None,
                generation: None,
            },
            0,
        )
        .await
        .unwrap()
        .hash();
    let failed = wait_for("the griefing task to fail", 120, async || {
        let view = client.task(&griefing).await.ok()??;
        (view.task.status == TaskStatus::Failed).then_some(view)
    })
    .await;
    assert_eq!(
        failed.task.failure,
        Some(FailureReason::InputCommitmentMismatch),
        "{failed:?}"
    );
    assert!(failed.task.timed_out.is_empty(), "{failed:?}");
}
