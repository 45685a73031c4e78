//! One-step re-execution: what validators run at the end of an OP-mode dispute.
//!
//! The parties have bisected a trace down to one step `k`. The witness carries the tensors that
//! step `k` reads, each with evidence tying it to a commitment the chain already holds: a weight
//! proves itself against the model's weights root, a graph input against the task's input hash,
//! an earlier step's output against the trace root (through that step's leaf). The validators
//! check the evidence, run the single node and return its output hashes and leaf, to compare with
//! what each party claimed.

use verity_types::Hash;

use crate::engine::{step_leaf, Engine};
use crate::error::InferError;
use crate::merkle::MerkleProof;
use crate::model::{initializer_leaf, Model, Source};
use crate::ops::Ctx;
use crate::tensor::Tensor;

/// What the chain holds about one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitments {
    pub trace_root: Hash,
    pub trace_len: u64,
    pub weights_root: Hash,
    /// The hash of each graph input tensor, in [`Model::inputs`] order.
    pub input_hashes: Vec<Hash>,
}

/// Evidence for one input of the disputed step.
#[derive(Debug, Clone, PartialEq)]
pub enum InputProof {
    /// A graph input: its hash must equal the committed input hash.
    GraphInput,
    /// An initializer: inclusion of its leaf in the weights root.
    Initializer(MerkleProof),
    /// Output of an earlier step: that step's output hashes, and its leaf's inclusion proof.
    StepOutput {
        outputs: Vec<Hash>,
        proof: MerkleProof,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputWitness {
    pub tensor: Tensor,
    pub proof: InputProof,
}

/// Everything needed to re-execute step `step` alone.
#[derive(Debug, Clone, PartialEq)]
pub struct StepWitness {
    pub step: usize,
    /// One entry per node input; `None` for an omitted optional input.
    pub inputs: Vec<Option<InputWitness>>,
}

/// The result of re-executing one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub outputs: Vec<Hash>,
    pub leaf: Hash,
}

fn bad(msg: impl Into<String>) -> InferError {
    InferError::Witness(msg.into())
}

impl Model {
    /// Builds the witness for `step` by running the model on `inputs` (the prover's side).
    /// Returns it with the full trace, whose root the witness proves against.
    pub fn step_witness(
        &self,
        engine: &Engine,
        inputs: Vec<Tensor>,
        step: usize,
    ) -> Result<(StepWitness, crate::Trace), InferError> {
        let node = self.nodes.get(step).ok_or_else(|| {
            bad(format!(
                "step {step} is past the last step {}",
                self.nodes.len().saturating_sub(1)
            ))
        })?;
        let (run, captured) = engine.execute(self, inputs, true, Some(step))?;
        let trace = run.trace.expect("traced run");
        let captured = captured.expect("the step ran");
        let mut witness_inputs = Vec::with_capacity(node.inputs.len());
        for (value, tensor) in node.inputs.iter().zip(captured) {
            let (Some(v), Some(tensor)) = (value, tensor) else {
                witness_inputs.push(None);
                continue;
            };
            let proof = match self.sources[*v] {
                Source::GraphInput(_) => InputProof::GraphInput,
                Source::Initializer(i) => InputProof::Initializer(
                    crate::merkle::prove(&self.weights_leaves, i)
                        .expect("initializer index in range"),
                ),
                Source::Step { step: s, .. } => InputProof::StepOutput {
                    outputs: trace.steps()[s].outputs.clone(),
                    proof: trace.prove(s).expect("step index in range"),
                },
            };
            witness_inputs.push(Some(InputWitness { tensor, proof }));
        }
        Ok((
            StepWitness {
                step,
                inputs: witness_inputs,
            },
            trace,
        ))
    }

    /// Checks every input of the witness against `commitments`, then runs the one node.
    pub fn verify_step(
        &self,
        engine: &Engine,
        commitments: &Commitments,
        witness: &StepWitness,
    ) -> Result<StepOutcome, InferError> {
        if commitments.trace_len != self.nodes.len() as u64 {
            return Err(bad(format!(
                "the committed trace has {} steps; this model's traces have {}",
                commitments.trace_len,
                self.nodes.len()
            )));
        }
        if commitments.input_hashes.len() != self.inputs.len() {
            return Err(bad(format!(
                "{} input hashes committed; the model has {} inputs",
                commitments.input_hashes.len(),
                self.inputs.len()
            )));
        }
        let node = self
            .nodes
            .get(witness.step)
            .ok_or_else(|| bad(format!("step {} does not exist", witness.step)))?;
        if witness.inputs.len() != node.inputs.len() {
            return Err(bad(format!(
                "{} inputs supplied; step {} reads {}",
                witness.inputs.len(),
                witness.step,
                node.inputs.len()
            )));
        }
        for (slot, (value, w)) in node.inputs.iter().zip(&witness.inputs).enumerate() {
            let (value, w) = match (value, w) {
                (None, None) => continue,
                (Some(v), Some(w)) => (*v, w),
                _ => {
                    return Err(bad(format!(
                        "input {slot}: presence does not match the graph"
                    )))
                }
            };
            let name = &self.values[value];
            let hash = w.tensor.hash();
            match (self.sources[value], &w.proof) {
                (Source::GraphInput(i), InputProof::GraphInput) => {
                    if hash != commitments.input_hashes[i] {
                        return Err(bad(format!(
                            "input {slot} ({name:?}) does not hash to the committed input"
                        )));
                    }
                }
                (Source::Initializer(i), InputProof::Initializer(proof)) => {
                    let fixed = MerkleProof {
                        index: i as u64,
                        leaf_count: self.initializers.len() as u64,
                        siblings: proof.siblings.clone(),
                    };
                    if !fixed.verify(&initializer_leaf(name, &hash), &commitments.weights_root) {
                        return Err(bad(format!(
                            "input {slot} ({name:?}) is not in the weights root"
                        )));
                    }
                }
                (
                    Source::Step {
                        step,
                        slot: out_slot,
                    },
                    InputProof::StepOutput { outputs, proof },
                ) => {
                    let declared = self.nodes[step]
                        .outputs
                        .iter()
                        .filter(|o| o.is_some())
                        .count();
                    let position = self.nodes[step].outputs[..out_slot]
                        .iter()
                        .filter(|o| o.is_some())
                        .count();
                    if outputs.len() != declared || outputs[position] != hash {
                        return Err(bad(format!(
                            "input {slot} ({name:?}) does not match step {step}'s claimed outputs"
                        )));
                    }
                    let fixed = MerkleProof {
                        index: step as u64,
                        leaf_count: commitments.trace_len,
                        siblings: proof.siblings.clone(),
                    };
                    if !fixed.verify(
                        &step_leaf(step, &self.nodes[step].op_type, outputs),
                        &commitments.trace_root,
                    ) {
                        return Err(bad(format!(
                            "input {slot} ({name:?}): step {step} is not in the trace root"
                        )));
                    }
                }
                (source, _) => {
                    return Err(bad(format!(
                    "input {slot} ({name:?}) comes from {source:?}; the proof is of another kind"
                )))
                }
            }
        }
        let op = node
            .op
            .as_ref()
            .map_err(|e| bad(format!("step {} cannot run: {}", witness.step, e.reason())))?;
        let args: Vec<Option<&Tensor>> = witness
            .inputs
            .iter()
            .map(|w| w.as_ref().map(|w| &w.tensor))
            .collect();
        let outs = op
            .run(
                Ctx {
                    pool: engine.pool(),
                },
                &args,
            )
            .map_err(|e| {
                bad(format!(
                    "step {} failed on the supplied inputs: {}",
                    witness.step,
                    e.reason()
                ))
            })?;
        let outputs: Vec<Hash> = outs
            .iter()
            .enumerate()
            .filter(|(slot, _)| matches!(node.outputs.get(*slot), Some(Some(_))))
            .map(|(_, t)| t.hash())
            .collect();
        let leaf = step_leaf(witness.step, &node.op_type, &outputs);
        Ok(StepOutcome { outputs, leaf })
    }
}
