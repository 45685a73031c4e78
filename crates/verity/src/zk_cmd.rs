//! `verity zk`: Groth16 keys, proofs and their independent check (`docs/protocol.md` §13).
//! Files are snarkjs's JSON, so `snarkjs groth16 verify` reads what these commands write.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use verity_client::Client;
use verity_infer::{Engine, Model};
use verity_types::Hash;
use verity_zk::{ProvingKey, VerifyingKey, ZkModel};

use crate::shared::{runtime, DEFAULT_NODE};

/// File names in a keys directory.
pub const PROVING_KEY: &str = "proving.key";
pub const VERIFYING_KEY: &str = "verifying.key";

#[derive(Subcommand)]
pub enum ZkCommand {
    /// Compile a quantized model's integer part to a circuit and make its keys with a local
    /// random setup (whoever ran it could forge proofs: fine for a devnet, not for a network).
    Setup {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Prove one run of a model on an input file; writes proof.json and public.json.
    Prove {
        #[arg(long)]
        model: PathBuf,
        /// The directory `zk setup` wrote.
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof (snarkjs JSON files): exit 0 if it verifies, 1 with the reason otherwise.
    Verify {
        #[arg(long)]
        vk: PathBuf,
        #[arg(long)]
        proof: PathBuf,
        #[arg(long)]
        public: PathBuf,
    },
    /// Write a task's verifying key, proof and public signals for an independent check.
    Export {
        #[arg(long)]
        task: Hash,
        #[arg(long, value_enum, default_value_t = Format::Snarkjs)]
        format: Format,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, env = "VERITY_NODE", default_value = DEFAULT_NODE)]
        node: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Snarkjs,
}

fn read_model(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Model::from_bytes(&bytes).with_context(|| format!("loading {}", path.display()))
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

/// Compiles `model` and makes its keys in `out`: the proving key, the verifying key (both
/// arkworks' compressed bytes) and `verification_key.json`. Returns the circuit.
pub fn setup_keys(model: &Model, out: &Path) -> Result<(ZkModel, ProvingKey)> {
    let circuit = ZkModel::compile(model, &Engine::new(1)?)?;
    let key = verity_zk::setup(&circuit)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(PROVING_KEY), key.to_bytes())?;
    std::fs::write(out.join(VERIFYING_KEY), key.verifying_key().to_bytes())?;
    write_json(
        out,
        "verification_key.json",
        &key.verifying_key().to_snarkjs(),
    )?;
    Ok((circuit, key))
}

/// The keys in a directory `zk setup` wrote: the proving key's bytes and the verifying key's.
pub fn read_keys(dir: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!(
                "reading {} (made by `verity zk setup`)",
                dir.join(name).display()
            )
        })
    };
    Ok((read(PROVING_KEY)?, read(VERIFYING_KEY)?))
}

pub fn run(cmd: ZkCommand) -> Result<()> {
    match cmd {
        ZkCommand::Setup { model, out } => {
            let model = read_model(&model)?;
            let started = Instant::now();
            let (circuit, key) = setup_keys(&model, &out)?;
            outln!("model        {}", model.model_id());
            outln!(
                "circuit      {} constraints; in {}; out {}",
                circuit.constraints,
                circuit.inputs.iter().map(|s| format!("{} {:?}", s.name, s.shape)).collect::<Vec<_>>().join(", "),
                circuit.outputs.iter().map(|s| format!("{} {:?}", s.name, s.shape)).collect::<Vec<_>>().join(", ")
            );
            outln!(
                "keys         {} ({} bytes), {} ({} bytes), verification_key.json",
                out.join(PROVING_KEY).display(),
                key.to_bytes().len(),
                out.join(VERIFYING_KEY).display(),
                key.verifying_key().to_bytes().len()
            );
            outln!("setup        {:.2} s (a local random setup: for a devnet only)", started.elapsed().as_secs_f64());
        }
        ZkCommand::Prove {
            model,
            keys,
            input,
            out,
        } => {
            let model = read_model(&model)?;
            let engine = Engine::new(1)?;
            let circuit = ZkModel::compile(&model, &engine)?;
            let (pk, _) = read_keys(&keys)?;
            let key = ProvingKey::from_bytes(&pk)?;
            let bytes = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let inputs = model.task_inputs(&bytes)?;
            let quantized = circuit.quantized_inputs(&model, &engine, inputs)?;
            let started = Instant::now();
            let (proof, statement, public) =
                verity_zk::prove(
                    &circuit,
                    &key,
                    quantized,
                    verity_zk::commit::salt_of(&bytes),
                )?;
            let elapsed = started.elapsed();
            std::fs::create_dir_all(&out)?;
            write_json(&out, "proof.json", &proof.to_snarkjs())?;
            write_json(
                &out,
                "public.json",
                &verity_zk::snarkjs::public_to_snarkjs(&public.elements()?),
            )?;
            for (spec, t) in circuit.outputs.iter().zip(&statement.outputs) {
                outln!("{:<12} {:?}", spec.name, t.data());
            }
            outln!("proof        {} ({} bytes) in {:.0} ms", out.join("proof.json").display(), proof.to_bytes().len(), elapsed.as_secs_f64() * 1e3);
            outln!("public       model, input commitment {}, output commitment {}", public.input_commitment, public.output_commitment);
        }
        ZkCommand::Verify { vk, proof, public } => {
            let key = VerifyingKey::from_snarkjs(&read_json(&vk)?)?;
            let proof = verity_zk::Proof::from_snarkjs(&read_json(&proof)?)?;
            let signals = verity_zk::snarkjs::public_from_snarkjs(&read_json(&public)?)?;
            verity_zk::snarkjs::verify_signals(&key.prepare(), &signals, &proof)
                .context("the proof does not verify")?;
            outln!("proof verified");
        }
        ZkCommand::Export {
            task,
            format: Format::Snarkjs,
            out,
            node,
        } => runtime()?.block_on(async {
            let client = Client::new(&node);
            let view = client
                .task(&task)
                .await?
                .with_context(|| format!("no task {task} on {node}"))?;
            let Some(zk) = view.record.and_then(|r| r.zk) else {
                bail!("task {task} has no verified zk proof (is it a tee_zk task, and done?)");
            };
            let model = client
                .model(&view.task.model_id)
                .await?
                .context("the task's model")?;
            let keys = model.zk.context("the model has no zk keys")?;
            let vk = VerifyingKey::from_bytes(&keys.verifying_key)?;
            let proof = verity_zk::Proof::from_bytes(&zk.proof)?;
            let public = verity_zk::PublicInputs {
                model_id: view.task.model_id,
                input_commitment: zk.input_commitment,
                output_commitment: zk.output_commitment,
            };
            std::fs::create_dir_all(&out)?;
            write_json(&out, "verification_key.json", &vk.to_snarkjs())?;
            write_json(&out, "proof.json", &proof.to_snarkjs())?;
            write_json(
                &out,
                "public.json",
                &verity_zk::snarkjs::public_to_snarkjs(&public.elements()?),
            )?;
            outln!(
                "wrote verification_key.json, proof.json, public.json to {}; check with: snarkjs groth16 verify {0}/verification_key.json {0}/public.json {0}/proof.json",
                out.display()
            );
            Ok(())
        })?,
    }
    Ok(())
}
