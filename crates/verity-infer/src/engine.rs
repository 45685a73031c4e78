//! Running a model: input checks, node-by-node execution, and the execution trace.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use verity_types::Hash;

use crate::error::InferError;
use crate::merkle::{self, MerkleProof};
use crate::model::{Dim, Model, Source};
use crate::ops::{Ctx, OpError};
use crate::tensor::Tensor;

/// The input tensors one node read (`None` for an omitted optional input).
/// The inputs a captured step read (`None` for an omitted input or a weight), by step.
pub(crate) type StepInputs = Vec<(usize, Vec<Option<Tensor>>)>;

/// Runs models with a fixed number of threads. Results never depend on that number.
pub struct Engine {
    pool: Option<rayon::ThreadPool>,
}

impl Engine {
    /// An engine that uses `threads` threads (1 runs everything on the caller's thread).
    pub fn new(threads: usize) -> Result<Engine, InferError> {
        if threads == 0 {
            return Err(InferError::Threads(
                "the thread count must be at least 1".into(),
            ));
        }
        let pool = if threads == 1 {
            None
        } else {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("verity-infer-{i}"))
                    .build()
                    .map_err(|e| InferError::Threads(e.to_string()))?,
            )
        };
        Ok(Engine { pool })
    }

    pub(crate) fn pool(&self) -> Option<&rayon::ThreadPool> {
        self.pool.as_ref()
    }

    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Runs `model` on `inputs` (one tensor per [`Model::inputs`], in order).
    pub fn run(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        with_trace: bool,
    ) -> Result<RunOutput, InferError> {
        self.execute(model, inputs, with_trace, &[], None)
            .map(|(out, _)| out)
    }

    /// Runs the model as a lying worker would: node `step`'s first output has its first element
    /// changed, so that step and everything after it differ from an honest run. Fault injection
    /// for testing disputes only (`verity worker --dishonest STEP`); never used to answer a task
    /// honestly.
    pub fn run_corrupted(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        step: usize,
    ) -> Result<RunOutput, InferError> {
        self.execute(model, inputs, true, &[], Some(step))
            .map(|(out, _)| out)
    }

    /// Runs the model, also returning clones of the inputs (weights left out) of the nodes at
    /// `capture`.
    pub(crate) fn execute(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        with_trace: bool,
        capture: &[usize],
        corrupt_step: Option<usize>,
    ) -> Result<(RunOutput, StepInputs), InferError> {
        self.execute_with(model, inputs, with_trace, capture, corrupt_step, None)
    }

    /// Runs the model, showing `observe` every value as it is set: initializers, inputs, then
    /// each node's outputs.
    pub(crate) fn execute_observed(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        observe: &mut Observer<'_>,
    ) -> Result<RunOutput, InferError> {
        self.execute_with(model, inputs, false, &[], None, Some(observe))
            .map(|(out, _)| out)
    }

    /// Runs the graph on one of the pool's threads when there is a pool: the operators that
    /// split their work then hand half to a thread of the same pool, which is still awake,
    /// rather than each waking the pool from outside and sleeping until it is done (on a
    /// decode step, 300 such round trips cost more than the halved products saved).
    fn execute_with(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        with_trace: bool,
        capture: &[usize],
        corrupt_step: Option<usize>,
        observe: Option<&mut Observer<'_>>,
    ) -> Result<(RunOutput, StepInputs), InferError> {
        let run = || self.run_nodes(model, inputs, with_trace, capture, corrupt_step, observe);
        match &self.pool {
            Some(pool) => pool.install(run),
            None => run(),
        }
    }

    fn run_nodes(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
        with_trace: bool,
        capture: &[usize],
        corrupt_step: Option<usize>,
        mut observe: Option<&mut Observer<'_>>,
    ) -> Result<(RunOutput, StepInputs), InferError> {
        check_inputs(model, &inputs)?;
        let mut values: Vec<Option<Arc<Tensor>>> = vec![None; model.values.len()];
        for (i, init) in model.initializers.iter().enumerate() {
            if let Some(observe) = observe.as_mut() {
                observe(&init.name, &init.tensor());
            }
            // A weight kept only packed is read by its products from their own copy.
            values[model.initializer_values[i]] = init.tensor.clone();
        }
        for (i, t) in inputs.into_iter().enumerate() {
            let v = model.input_values[i];
            let t = Arc::new(t);
            if let Some(observe) = observe.as_mut() {
                observe(&model.values[v], &t);
            }
            values[v] = Some(t);
        }
        let mut steps = Vec::with_capacity(if with_trace { model.nodes.len() } else { 0 });
        let mut captured = Vec::new();
        for (step, node) in model.nodes.iter().enumerate() {
            let fail = |reason: String| InferError::NodeFailed {
                node: node.display_name(&model.values),
                op: node.op_type.clone(),
                reason,
            };
            let unsupported = |e: &OpError| InferError::Unsupported {
                node: node.display_name(&model.values),
                op: node.op_type.clone(),
                reason: e.reason().to_string(),
            };
            let op = node.op.as_ref().map_err(unsupported)?;
            let ctx = Ctx {
                pool: self.pool.as_ref(),
                packed: node.packed.as_deref(),
            };
            let args: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| values[v].as_deref()))
                .collect();
            if capture.contains(&step) {
                let read = node.inputs.iter().zip(&args).map(|(v, t)| match v {
                    Some(v) if !matches!(model.sources[*v], Source::Initializer(_)) => t.cloned(),
                    _ => None,
                });
                captured.push((step, read.collect()));
            }
            let mut outs = op.run(ctx, &args).map_err(|e| match e {
                OpError::Invalid(r) => fail(r),
                OpError::Unsupported(_) => unsupported(&e),
            })?;
            if corrupt_step == Some(step) {
                if let Some(first) = outs.first_mut() {
                    *first = first.perturbed();
                }
            }
            if outs.len() < node.outputs.iter().filter(|o| o.is_some()).count() {
                return Err(fail(format!(
                    "produced {} outputs, the node declares {}",
                    outs.len(),
                    node.outputs.len()
                )));
            }
            let mut hashes = Vec::new();
            for (slot, t) in outs.into_iter().enumerate() {
                if let Some(Some(v)) = node.outputs.get(slot) {
                    if with_trace {
                        hashes.push(t.hash());
                    }
                    let t = Arc::new(t);
                    if let Some(observe) = observe.as_mut() {
                        observe(&model.values[*v], &t);
                    }
                    values[*v] = Some(t);
                }
            }
            if with_trace {
                steps.push(TraceStep {
                    op: node.op_type.clone(),
                    outputs: hashes,
                });
            }
            // Free what no later node reads.
            for &v in node.inputs.iter().flatten() {
                if model.last_use[v] == step {
                    values[v] = None;
                }
            }
        }
        let outputs = model
            .output_values
            .iter()
            .zip(&model.outputs)
            .map(|(&v, spec)| {
                let t = values[v]
                    .as_ref()
                    .expect("graph outputs are kept to the end");
                (spec.name.clone(), Tensor::clone(t))
            })
            .collect();
        Ok((
            RunOutput {
                outputs,
                trace: with_trace.then(|| Trace::new(steps)),
            },
            captured,
        ))
    }
}

fn check_inputs(model: &Model, inputs: &[Tensor]) -> Result<(), InferError> {
    if inputs.len() != model.inputs.len() {
        return Err(InferError::InputCount {
            expected: model.inputs.len(),
            actual: inputs.len(),
        });
    }
    for (spec, t) in model.inputs.iter().zip(inputs) {
        let bad = |reason: String| InferError::Input {
            name: spec.name.clone(),
            reason,
        };
        match &spec.dtype {
            Ok(dt) if *dt == t.dtype() => {}
            Ok(_) => {
                return Err(bad(format!(
                    "expected {}, got {} {:?}",
                    spec.describe(),
                    t.dtype(),
                    t.shape()
                )))
            }
            Err(ty) => {
                return Err(bad(format!(
                    "the model declares type {ty}, which is not supported"
                )))
            }
        }
        if let Some(dims) = &spec.dims {
            let fits = dims.len() == t.rank()
                && dims
                    .iter()
                    .zip(t.shape())
                    .all(|(d, &s)| matches!(d, Dim::Symbolic(_)) || *d == Dim::Fixed(s));
            if !fits {
                return Err(bad(format!(
                    "expected {}, got {} {:?}",
                    spec.describe(),
                    t.dtype(),
                    t.shape()
                )));
            }
        }
    }
    Ok(())
}

/// Shown each value of a run by name as it is set.
pub(crate) type Observer<'a> = dyn FnMut(&str, &Arc<Tensor>) + Send + 'a;

/// What a run produced.
pub struct RunOutput {
    /// Graph outputs, in declaration order.
    pub outputs: Vec<(String, Tensor)>,
    pub trace: Option<Trace>,
}

/// One executed node: its op type and the hash of each declared output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    pub op: String,
    pub outputs: Vec<Hash>,
}

/// The leaf of trace step `index` (`docs/protocol.md` §12):
/// `SHA-256(index as 8 bytes LE || op length as 4 bytes LE || op || output hashes)`.
pub fn step_leaf(index: usize, op: &str, outputs: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    h.update((index as u64).to_le_bytes());
    h.update((op.len() as u32).to_le_bytes());
    h.update(op.as_bytes());
    for o in outputs {
        h.update(o.0);
    }
    Hash(h.finalize().into())
}

/// An execution trace: the steps, their leaves and the Merkle root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    steps: Vec<TraceStep>,
    leaves: Vec<Hash>,
    root: Hash,
}

impl Trace {
    fn new(steps: Vec<TraceStep>) -> Trace {
        let leaves: Vec<Hash> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| step_leaf(i, &s.op, &s.outputs))
            .collect();
        let root = merkle::root(&leaves);
        Trace {
            steps,
            leaves,
            root,
        }
    }

    pub fn root(&self) -> Hash {
        self.root
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn steps(&self) -> &[TraceStep] {
        &self.steps
    }

    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// Inclusion proof of step `index`'s leaf.
    pub fn prove(&self, index: usize) -> Option<MerkleProof> {
        merkle::prove(&self.leaves, index)
    }
}
