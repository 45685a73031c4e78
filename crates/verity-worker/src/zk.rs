//! `tee_zk` tasks: the model's circuit and proving key, loaded once per model, and a result
//! proven after it is computed (`docs/protocol.md` §13). Proving uses every core (rayon) and
//! runs off the async loop with the rest of the computation.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;
use verity_infer::{Engine, Model};
use verity_zk::{ProvingKey, ZkModel};

use crate::service::{compute_with, Computed};

/// What proving one model's results needs.
pub struct Prover {
    pub circuit: ZkModel,
    pub key: ProvingKey,
}

impl Prover {
    /// Compiles `model`'s circuit and decodes its proving key (`key_bytes`, already checked
    /// against the hash the chain holds).
    pub fn load(model: &Model, key_bytes: &[u8]) -> Result<Prover> {
        let circuit =
            ZkModel::compile(model, &Engine::new(1)?).context("compiling the model's circuit")?;
        let key = ProvingKey::from_bytes(key_bytes).context("decoding the proving key")?;
        Ok(Prover { circuit, key })
    }
}

/// What a proven result adds to a receipt.
pub struct Proven {
    pub computed: Computed,
    pub input_commitment: verity_types::Hash,
    pub output_commitment: verity_types::Hash,
    pub proof: Vec<u8>,
}

/// Computes a task as [`crate::compute`] does, and proves its integer part. The output document
/// gains a `zk` section: the commitments and the proof (the salt follows from the input file).
pub fn compute_and_prove(
    engine: &Engine,
    model: &Model,
    prover: &Arc<Prover>,
    input: &[u8],
    corrupt: Option<usize>,
) -> Result<Proven> {
    let inputs = model
        .task_inputs(input)
        .context("decoding the task input")?;
    let quantized = prover
        .circuit
        .quantized_inputs(model, engine, inputs)
        .context("a tee_zk task proves one sample")?;
    let salt = verity_zk::commit::salt_of(input);
    let (proof, _, public) = verity_zk::prove(&prover.circuit, &prover.key, quantized, salt)?;
    let computed = compute_with(engine, model, input, corrupt, |doc| {
        doc["zk"] = json!({
            "input_commitment": public.input_commitment,
            "output_commitment": public.output_commitment,
            "proof": hex::encode(proof.to_bytes()),
        });
        Ok(())
    })?;
    Ok(Proven {
        computed,
        input_commitment: public.input_commitment,
        output_commitment: public.output_commitment,
        proof: proof.to_bytes(),
    })
}
