//! One-step re-execution: what validators run at the end of an OP-mode dispute.
//!
//! The parties have bisected a trace down to one step `k`. The witness carries the tensors that
//! step `k` reads, each with evidence tying it to a commitment the chain already holds: a graph
//! input against the task's input hash, an earlier step's output against the trace root (through
//! that step's leaf). A weight is not carried: every validator holds the registered model (its
//! file checked against the model id) and reads the weight from it, so a step's size is that of
//! its activations, whatever the model's (a carried weight, proven against the weights root, is
//! still accepted). The validators check the evidence, run the single node and return its output
//! hashes and leaf, to compare with what each party claimed.

use verity_types::codec::{DecodeError, Reader, Writer};
use verity_types::Hash;

use crate::engine::{step_leaf, Engine};
use crate::error::InferError;
use crate::merkle::MerkleProof;
use crate::model::{initializer_leaf, Model, Source};
use crate::ops::Ctx;
use crate::tensor::{decode_raw, element_count, DataType, Tensor};

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

/// One input of the disputed step.
#[derive(Debug, Clone, PartialEq)]
pub enum InputWitness {
    /// The tensor, with the evidence tying it to a commitment.
    Carried { tensor: Tensor, proof: InputProof },
    /// A weight of the model, read from the verifier's own copy.
    ModelWeight,
    /// The output of an earlier step of the same chain, which the verifier has just re-run
    /// ([`Model::chain_witness`]).
    Recomputed,
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
        let (mut chain, trace) = self.chain_witness(engine, inputs, step, usize::MAX)?;
        let witness = chain.pop().expect("a chain ends at its target");
        Ok((witness, trace))
    }

    /// Builds the witness for re-executing `target` together with the steps before it whose
    /// outputs it reads, directly or not, that hold more than `max_carried` elements: those are
    /// recomputed by the verifier rather than carried, so that a step reading a large
    /// activation (a language model's logits, computed from a small hidden state) still fits
    /// a transaction. The chain is in step order and ends at `target`.
    pub fn chain_witness(
        &self,
        engine: &Engine,
        inputs: Vec<Tensor>,
        target: usize,
        max_carried: usize,
    ) -> Result<(Vec<StepWitness>, crate::Trace), InferError> {
        if target >= self.nodes.len() {
            return Err(bad(format!(
                "step {target} is past the last step {}",
                self.nodes.len().saturating_sub(1)
            )));
        }
        let mut chain = vec![target];
        loop {
            let (run, captured) = engine.execute(self, inputs.clone(), true, &chain, None)?;
            let mut larger = Vec::new();
            for (step, read) in &captured {
                for (value, tensor) in self.nodes[*step].inputs.iter().zip(read) {
                    if let (Some(v), Some(t)) = (value, tensor) {
                        if let Source::Step { step: from, .. } = self.sources[*v] {
                            if t.len() > max_carried && !chain.contains(&from) {
                                larger.push(from);
                            }
                        }
                    }
                }
            }
            if !larger.is_empty() {
                chain.extend(larger);
                chain.sort_unstable();
                chain.dedup();
                if chain.len() > MAX_ITEMS {
                    return Err(bad(format!(
                        "step {target} reads activations of more than {max_carried} elements through more than {MAX_ITEMS} steps: its witness cannot be carried"
                    )));
                }
                continue;
            }
            let trace = run.trace.expect("traced run");
            let witnesses = captured
                .into_iter()
                .map(|(step, read)| self.witness_of(&trace, &chain, step, read))
                .collect();
            return Ok((witnesses, trace));
        }
    }

    /// The witness of `step`, whose inputs were `read`, in a chain of `chain`'s steps.
    fn witness_of(
        &self,
        trace: &crate::Trace,
        chain: &[usize],
        step: usize,
        read: Vec<Option<Tensor>>,
    ) -> StepWitness {
        let inputs = self.nodes[step]
            .inputs
            .iter()
            .zip(read)
            .map(|(value, tensor)| {
                let v = (*value)?;
                let carried = |proof| {
                    Some(InputWitness::Carried {
                        tensor: tensor.clone().expect("a read input was captured"),
                        proof,
                    })
                };
                match self.sources[v] {
                    Source::Initializer(_) => Some(InputWitness::ModelWeight),
                    Source::GraphInput(_) => carried(InputProof::GraphInput),
                    Source::Step { step: from, .. } if chain.contains(&from) => {
                        Some(InputWitness::Recomputed)
                    }
                    Source::Step { step: from, .. } => carried(InputProof::StepOutput {
                        outputs: trace.steps()[from].outputs.clone(),
                        proof: trace.prove(from).expect("step index in range"),
                    }),
                }
            })
            .collect();
        StepWitness { step, inputs }
    }

    /// Checks every input of the witness against `commitments`, then runs the one node.
    pub fn verify_step(
        &self,
        engine: &Engine,
        commitments: &Commitments,
        witness: &StepWitness,
    ) -> Result<StepOutcome, InferError> {
        self.verify_chain(engine, commitments, std::slice::from_ref(witness))
            .map(|(outcome, _)| outcome)
    }

    /// Checks and runs a chain of steps in order (see [`Model::chain_witness`]): each carried
    /// input against `commitments`, each recomputed one taken from an earlier step of the
    /// chain. Returns the last step's outcome and its output tensors.
    pub fn verify_chain(
        &self,
        engine: &Engine,
        commitments: &Commitments,
        chain: &[StepWitness],
    ) -> Result<(StepOutcome, Vec<Tensor>), InferError> {
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
        if chain.is_empty() {
            return Err(bad("the witness names no step"));
        }
        if chain.windows(2).any(|w| w[0].step >= w[1].step) {
            return Err(bad("a chain's steps must be in increasing order"));
        }
        let mut recomputed: Vec<(usize, Vec<Option<Tensor>>)> = Vec::new();
        for witness in chain {
            let outputs = self.run_step(engine, commitments, witness, &recomputed)?;
            recomputed.push((witness.step, outputs));
        }
        let (step, outputs) = recomputed.pop().expect("a chain has a step");
        let node = &self.nodes[step];
        let tensors: Vec<Tensor> = outputs
            .into_iter()
            .enumerate()
            .filter(|(slot, _)| matches!(node.outputs.get(*slot), Some(Some(_))))
            .filter_map(|(_, t)| t)
            .collect();
        let hashes: Vec<Hash> = tensors.iter().map(Tensor::hash).collect();
        let leaf = step_leaf(step, &node.op_type, &hashes);
        Ok((
            StepOutcome {
                outputs: hashes,
                leaf,
            },
            tensors,
        ))
    }

    /// Checks one step's inputs and runs it; returns its outputs by slot.
    fn run_step(
        &self,
        engine: &Engine,
        commitments: &Commitments,
        witness: &StepWitness,
        recomputed: &[(usize, Vec<Option<Tensor>>)],
    ) -> Result<Vec<Option<Tensor>>, InferError> {
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
        let mut args: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
        for (slot, (value, w)) in node.inputs.iter().zip(&witness.inputs).enumerate() {
            let (value, w) = match (value, w) {
                (None, None) => {
                    args.push(None);
                    continue;
                }
                (Some(v), Some(w)) => (*v, w),
                _ => {
                    return Err(bad(format!(
                        "input {slot}: presence does not match the graph"
                    )))
                }
            };
            let name = &self.values[value];
            let (tensor, proof) = match (w, self.sources[value]) {
                (InputWitness::ModelWeight, Source::Initializer(i)) => {
                    if self.weights_root != commitments.weights_root {
                        return Err(bad(format!(
                            "input {slot} ({name:?}) is read from this model, whose weights root is not the committed one"
                        )));
                    }
                    // A weight kept only packed is absent here: the op reads its packed copy.
                    args.push(self.initializers[i].tensor.as_deref());
                    continue;
                }
                (InputWitness::ModelWeight, source) => {
                    return Err(bad(format!(
                    "input {slot} ({name:?}) comes from {source:?}, not from the model's weights"
                )))
                }
                (InputWitness::Recomputed, Source::Step { step, slot: out }) => {
                    let tensor = recomputed
                        .iter()
                        .find(|(s, _)| *s == step)
                        .and_then(|(_, outs)| outs.get(out))
                        .and_then(Option::as_ref)
                        .ok_or_else(|| {
                            bad(format!(
                                "input {slot} ({name:?}) is step {step}'s output, which the chain did not recompute before it"
                            ))
                        })?;
                    args.push(Some(tensor));
                    continue;
                }
                (InputWitness::Recomputed, source) => {
                    return Err(bad(format!(
                        "input {slot} ({name:?}) comes from {source:?}, which cannot be recomputed"
                    )))
                }
                (InputWitness::Carried { tensor, proof }, _) => (tensor, proof),
            };
            let hash = tensor.hash();
            match (self.sources[value], proof) {
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
            args.push(Some(tensor));
        }
        let op = node
            .op
            .as_ref()
            .map_err(|e| bad(format!("step {} cannot run: {}", witness.step, e.reason())))?;
        let outs = op
            .run(
                Ctx {
                    pool: engine.pool(),
                    packed: node.packed.as_deref(),
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
        Ok(outs.into_iter().map(Some).collect())
    }
}

/// Most dimensions of a witness tensor and most elements in one, so that decoding bytes from the
/// network can never allocate past what a one-step could need.
const MAX_RANK: usize = 8;
const MAX_ELEMENTS: usize = 1 << 24;
/// Most node inputs and Merkle siblings in a witness.
const MAX_ITEMS: usize = 64;

fn write_tensor(w: &mut Writer, t: &Tensor) {
    w.u32(t.dtype().onnx_code() as u32)
        .u32(t.shape().len() as u32);
    for &d in t.shape() {
        w.u64(d as u64);
    }
    let mut raw = Vec::with_capacity(t.len() * t.dtype().size_of());
    t.data().write_le_bytes(&mut |b| raw.extend_from_slice(b));
    w.fixed(&raw);
}

fn read_tensor(r: &mut Reader<'_>) -> Result<Tensor, DecodeError> {
    let invalid = |reason| DecodeError::Invalid {
        what: "witness tensor",
        reason,
    };
    let dtype = DataType::from_onnx(r.u32("tensor dtype")? as i32)
        .map_err(|_| invalid("unsupported dtype"))?;
    let rank = r.u32("tensor rank")? as usize;
    if rank > MAX_RANK {
        return Err(invalid("too many dimensions"));
    }
    let mut shape = Vec::with_capacity(rank);
    for _ in 0..rank {
        shape.push(
            usize::try_from(r.u64("tensor dimension")?)
                .map_err(|_| invalid("dimension too large"))?,
        );
    }
    let count = element_count(&shape)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or(invalid("too many elements"))?;
    let raw = r.fixed("tensor data", count * dtype.size_of())?;
    let data = decode_raw(dtype, raw, count).map_err(|_| invalid("data does not fit the shape"))?;
    Tensor::new(shape, data).map_err(|_| invalid("data does not fit the shape"))
}

fn write_hashes(w: &mut Writer, hashes: &[Hash]) {
    w.u32(hashes.len() as u32);
    for h in hashes {
        w.fixed(&h.0);
    }
}

fn read_hashes(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Hash>, DecodeError> {
    let n = r.u32(what)? as usize;
    if n > MAX_ITEMS {
        return Err(DecodeError::TooLong {
            what,
            len: n,
            limit: MAX_ITEMS,
        });
    }
    (0..n).map(|_| Ok(Hash(r.array(what)?))).collect()
}

fn write_proof(w: &mut Writer, p: &MerkleProof) {
    w.u64(p.index).u64(p.leaf_count);
    write_hashes(w, &p.siblings);
}

fn read_proof(r: &mut Reader<'_>) -> Result<MerkleProof, DecodeError> {
    Ok(MerkleProof {
        index: r.u64("proof index")?,
        leaf_count: r.u64("proof size")?,
        siblings: read_hashes(r, "proof siblings")?,
    })
}

impl StepWitness {
    /// The canonical bytes of a witness, as a OneStep transaction carries them: per input a
    /// byte (0 absent, 1 carried, 2 a model weight, 3 recomputed in a chain), a carried tensor
    /// as its hash preimage (dtype, rank, dimensions, little-endian data) and its proof (kind,
    /// then index, tree size and siblings).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    /// A chain of witnesses ([`Model::chain_witness`]): their count, then each.
    pub fn encode_chain(chain: &[StepWitness]) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(chain.len() as u32);
        for witness in chain {
            witness.write(&mut w);
        }
        w.finish()
    }

    /// Decodes [`StepWitness::encode_chain`]'s bytes; anything else is refused.
    pub fn decode_chain(bytes: &[u8]) -> Result<Vec<StepWitness>, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u32("chain length")? as usize;
        if n == 0 || n > MAX_ITEMS {
            return Err(DecodeError::Invalid {
                what: "chain length",
                reason: "a chain has 1 to 64 steps",
            });
        }
        let chain = (0..n)
            .map(|_| StepWitness::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(chain)
    }

    fn write(&self, w: &mut Writer) {
        w.u64(self.step as u64).u32(self.inputs.len() as u32);
        for input in &self.inputs {
            let (tensor, proof) = match input {
                None => {
                    w.u8(0);
                    continue;
                }
                Some(InputWitness::ModelWeight) => {
                    w.u8(2);
                    continue;
                }
                Some(InputWitness::Recomputed) => {
                    w.u8(3);
                    continue;
                }
                Some(InputWitness::Carried { tensor, proof }) => (tensor, proof),
            };
            write_tensor(w.u8(1), tensor);
            match proof {
                InputProof::GraphInput => {
                    w.u8(0);
                }
                InputProof::Initializer(proof) => write_proof(w.u8(1), proof),
                InputProof::StepOutput { outputs, proof } => {
                    write_hashes(w.u8(2), outputs);
                    write_proof(w, proof);
                }
            }
        }
    }

    /// Decodes [`StepWitness::encode`]'s bytes; anything else is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let witness = StepWitness::read(&mut r)?;
        r.finish()?;
        Ok(witness)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let step = usize::try_from(r.u64("step")?).map_err(|_| DecodeError::Invalid {
            what: "step",
            reason: "too large",
        })?;
        let n = r.u32("input count")? as usize;
        if n > MAX_ITEMS {
            return Err(DecodeError::TooLong {
                what: "inputs",
                len: n,
                limit: MAX_ITEMS,
            });
        }
        let mut inputs = Vec::with_capacity(n);
        for _ in 0..n {
            match r.u8("input presence")? {
                0 => inputs.push(None),
                1 => {
                    let tensor = read_tensor(r)?;
                    let proof = match r.u8("proof kind")? {
                        0 => InputProof::GraphInput,
                        1 => InputProof::Initializer(read_proof(r)?),
                        2 => InputProof::StepOutput {
                            outputs: read_hashes(r, "step outputs")?,
                            proof: read_proof(r)?,
                        },
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "proof kind",
                                tag,
                            })
                        }
                    };
                    inputs.push(Some(InputWitness::Carried { tensor, proof }));
                }
                2 => inputs.push(Some(InputWitness::ModelWeight)),
                3 => inputs.push(Some(InputWitness::Recomputed)),
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "input presence",
                        tag,
                    })
                }
            }
        }
        Ok(StepWitness { step, inputs })
    }
}

impl Model {
    /// The graph inputs a task's input file gives. A task carries one input, read as JSON or
    /// `.npy` in the model's declared input type.
    pub fn task_inputs(&self, bytes: &[u8]) -> Result<Vec<Tensor>, InferError> {
        let [spec] = self.inputs() else {
            return Err(InferError::InputCount {
                expected: 1,
                actual: self.inputs().len(),
            });
        };
        let dtype = spec.dtype.clone().map_err(|t| InferError::Input {
            name: spec.name.clone(),
            reason: format!("unsupported type {t}"),
        })?;
        let tensor = crate::read_tensor(bytes, dtype).map_err(|e| InferError::Input {
            name: spec.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(vec![tensor])
    }
}

/// Evidence that a graph output of one run hashes to a value: the step that produced it, that
/// step's output hashes and its leaf's inclusion in the run's trace root. A language model's
/// next pass reads the previous pass's keys and values this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputProof {
    pub step: usize,
    pub outputs: Vec<Hash>,
    pub proof: MerkleProof,
}

impl OutputProof {
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.step as u64);
        write_hashes(w, &self.outputs);
        write_proof(w, &self.proof);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OutputProof {
            step: usize::try_from(r.u64("output step")?).map_err(|_| DecodeError::Invalid {
                what: "output step",
                reason: "too large",
            })?,
            outputs: read_hashes(r, "step outputs")?,
            proof: read_proof(r)?,
        })
    }
}

impl Model {
    /// The step that produces graph output `output`, and the output's position among that
    /// step's declared outputs; `None` when the output is not a node's (a graph input or a
    /// weight passed through).
    pub fn output_producer(&self, output: usize) -> Option<(usize, usize)> {
        let value = *self.output_values.get(output)?;
        match self.sources[value] {
            Source::Step { step, slot } => {
                let position = self.nodes[step].outputs[..slot]
                    .iter()
                    .filter(|o| o.is_some())
                    .count();
                Some((step, position))
            }
            _ => None,
        }
    }

    /// Proves graph output `output` of the run whose trace is `trace`.
    pub fn prove_output(&self, trace: &crate::Trace, output: usize) -> Option<OutputProof> {
        let (step, _) = self.output_producer(output)?;
        Some(OutputProof {
            step,
            outputs: trace.steps().get(step)?.outputs.clone(),
            proof: trace.prove(step)?,
        })
    }

    /// The hash of graph output `output` of the run whose trace root is `trace_root`, if
    /// `proof` shows it.
    pub fn verify_output(
        &self,
        proof: &OutputProof,
        output: usize,
        trace_root: &Hash,
    ) -> Result<Hash, InferError> {
        let name = self
            .outputs
            .get(output)
            .map_or("?", |spec| spec.name.as_str());
        let (step, position) = self
            .output_producer(output)
            .ok_or_else(|| bad(format!("output {name:?} is not produced by a step")))?;
        if proof.step != step {
            return Err(bad(format!(
                "output {name:?} is produced by step {step}, the proof is of step {}",
                proof.step
            )));
        }
        let declared = self.nodes[step].outputs.iter().flatten().count();
        if proof.outputs.len() != declared {
            return Err(bad(format!(
                "step {step} has {declared} outputs, the proof names {}",
                proof.outputs.len()
            )));
        }
        let fixed = MerkleProof {
            index: step as u64,
            leaf_count: self.nodes.len() as u64,
            siblings: proof.proof.siblings.clone(),
        };
        let leaf = step_leaf(step, &self.nodes[step].op_type, &proof.outputs);
        if !fixed.verify(&leaf, trace_root) {
            return Err(bad(format!(
                "step {step} with these outputs is not in the trace root"
            )));
        }
        Ok(proof.outputs[position])
    }
}
