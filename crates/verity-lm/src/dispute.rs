//! What a dispute over a generation needs from the model (`docs/protocol.md` §16). The game
//! has found the first token `i` whose leaf differs; what is judged is pass `i` of the worker's
//! own generation: its graph inputs are the prompt and the tokens before `i` (which both sides
//! agree on) and, for an export with a key/value cache, the previous pass's `present.*` outputs,
//! proven against that pass's forward root. Then either one op of pass `i` is re-executed (the
//! forward roots differ and the ops game found the step), or the logits are recomputed from
//! the small hidden state before them and the token sampled again (the roots agree, the tokens
//! do not).

use verity_infer::{
    Commitments, Engine, InferError, OutputProof, StepOutcome, StepWitness, Tensor, Trace,
};
use verity_types::codec::{DecodeError, Reader, Writer};
use verity_types::Hash;

use crate::generate::{last_row, GenerateError, LanguageModel};
use crate::sampling::{choose, Choice, SamplingParams};

/// Most elements of an activation a witness carries (128 KiB of float32); larger ones (a
/// prompt's logits) are recomputed by the validators from the step that made them. A prompt's
/// last hidden state must fit: SmolLM2's width of 576 carries prompts of up to 56 tokens.
pub const MAX_CARRIED_ELEMENTS: usize = 32 * 1024;

/// Most cache tensors one witness proves.
const MAX_PREVIOUS: usize = 256;

/// Stands for a graph input the witness does not prove: no tensor hashes to it, so a step
/// that reads such an input is refused.
const UNPROVEN: Hash = Hash([0xff; 32]);

/// What is re-executed in pass `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassTarget {
    /// One op, found by the game over the pass's steps.
    Step(usize),
    /// The token choice: the logits recomputed, then sampled.
    Sampling,
}

/// A pass's one-step: a chain of its steps ending at the target, and the previous pass's cache
/// outputs that the chain reads, each as (graph input index, proof against the previous
/// forward root).
#[derive(Debug, Clone, PartialEq)]
pub struct PassWitness {
    pub chain: Vec<StepWitness>,
    pub previous: Vec<(u32, OutputProof)>,
}

impl PassWitness {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(&StepWitness::encode_chain(&self.chain));
        w.u32(self.previous.len() as u32);
        for (input, proof) in &self.previous {
            w.u32(*input);
            proof.write(&mut w);
        }
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let chain = StepWitness::decode_chain(r.bytes("step chain", bytes.len())?)?;
        let n = r.u32("cache proofs")? as usize;
        if n > MAX_PREVIOUS {
            return Err(DecodeError::TooLong {
                what: "cache proofs",
                len: n,
                limit: MAX_PREVIOUS,
            });
        }
        let previous = (0..n)
            .map(|_| Ok((r.u32("graph input")?, OutputProof::read(&mut r)?)))
            .collect::<Result<_, DecodeError>>()?;
        r.finish()?;
        Ok(PassWitness { chain, previous })
    }
}

/// What the validators got from re-executing a pass's target.
#[derive(Debug, Clone, PartialEq)]
pub enum PassOutcome {
    Step(StepOutcome),
    Token(Choice),
}

/// Pass `i` of a generation rebuilt by its prover: the graph inputs, and the previous pass's
/// trace (for proving the cache it hands on).
pub struct Replayed {
    pub inputs: Vec<Tensor>,
    pub previous: Option<Trace>,
}

fn bad(why: impl Into<String>) -> GenerateError {
    GenerateError::Engine(InferError::Witness(why.into()))
}

impl LanguageModel {
    /// Rebuilds pass `tokens.len()` of a generation from `prompt` that chose `tokens`: the
    /// passes before it are run again with those tokens (nothing is sampled).
    pub fn replay(
        &self,
        engine: &Engine,
        prompt: &[u32],
        tokens: &[u32],
    ) -> Result<Replayed, GenerateError> {
        let mut sequence = prompt.to_vec();
        if !self.has_cache() {
            sequence.extend_from_slice(tokens);
            return Ok(Replayed {
                inputs: self.inputs(&sequence, 0, Vec::new()),
                previous: None,
            });
        }
        let mut cache = self.empty_cache();
        let mut previous = None;
        for (j, &token) in tokens.iter().enumerate() {
            let last = j + 1 == tokens.len();
            let run = engine.run(
                self.model(),
                self.inputs(&sequence, cache.positions, cache.tensors),
                last,
            )?;
            let mut outputs: Vec<Option<Tensor>> =
                run.outputs.into_iter().map(|(_, t)| Some(t)).collect();
            cache.tensors = self
                .cache
                .iter()
                .map(|slot| outputs[slot.output].take().expect("each output taken once"))
                .collect();
            sequence.push(token);
            cache.positions = sequence.len() - 1;
            if last {
                previous = run.trace;
            }
        }
        Ok(Replayed {
            inputs: self.inputs(&sequence, cache.positions, cache.tensors),
            previous,
        })
    }

    /// The prover's witness for `target` in the pass rebuilt as `replayed`.
    pub fn pass_witness(
        &self,
        engine: &Engine,
        replayed: &Replayed,
        target: PassTarget,
    ) -> Result<PassWitness, GenerateError> {
        let step = match target {
            PassTarget::Step(step) => step,
            PassTarget::Sampling => self.logits_step()?,
        };
        let max_carried = match target {
            PassTarget::Step(_) => usize::MAX,
            PassTarget::Sampling => MAX_CARRIED_ELEMENTS,
        };
        let (chain, _) =
            self.model()
                .chain_witness(engine, replayed.inputs.clone(), step, max_carried)?;
        let mut previous = Vec::new();
        if let Some(trace) = &replayed.previous {
            // Every cache tensor, whichever the chain reads: a few hundred bytes each.
            for slot in &self.cache {
                let proof = self
                    .model()
                    .prove_output(trace, slot.output)
                    .ok_or_else(|| {
                        bad("a present output is not produced by a step: it cannot be proven")
                    })?;
                previous.push((slot.input as u32, proof));
            }
        }
        Ok(PassWitness { chain, previous })
    }

    /// The step whose output is the logits.
    fn logits_step(&self) -> Result<usize, GenerateError> {
        self.model()
            .output_producer(self.logits)
            .map(|(step, _)| step)
            .ok_or_else(|| bad("the logits are not produced by a step"))
    }

    /// The validators' check of pass `sequence.len() - prompt_len` of a generation: the chain
    /// in `witness`, its carried inputs proven against `forward_roots` (either: before the
    /// disputed step both sides' traces agree), its graph inputs computed from `sequence` (the
    /// prompt and the tokens before the pass) and, after the first pass, the cache proven
    /// against `previous_root`. For [`PassTarget::Sampling`] the chain must end at the logits,
    /// and the token is chosen from their last row with `sampling` at the sequence's length.
    #[allow(clippy::too_many_arguments)]
    pub fn check_pass(
        &self,
        engine: &Engine,
        prompt_len: usize,
        sequence: &[u32],
        previous_root: Option<&Hash>,
        forward_roots: [&Hash; 2],
        witness: &PassWitness,
        target: PassTarget,
        sampling: &SamplingParams,
    ) -> Result<PassOutcome, GenerateError> {
        let first = sequence.len() == prompt_len;
        let last = witness.chain.last().map(|w| w.step);
        let wanted = match target {
            PassTarget::Step(step) => step,
            PassTarget::Sampling => self.logits_step()?,
        };
        if last != Some(wanted) {
            return Err(bad(format!(
                "the witness ends at step {last:?}; the dispute is about step {wanted}"
            )));
        }
        let mut hashes: Vec<Hash> = self
            .inputs(
                sequence,
                if self.has_cache() && !first {
                    sequence.len() - 1
                } else {
                    0
                },
                self.empty_cache().tensors,
            )
            .iter()
            .map(Tensor::hash)
            .collect();
        if self.has_cache() && !first {
            let root = previous_root.ok_or_else(|| bad("no previous forward root"))?;
            for slot in &self.cache {
                hashes[slot.input] = UNPROVEN;
            }
            for (input, proof) in &witness.previous {
                let slot = self
                    .cache
                    .iter()
                    .find(|s| s.input == *input as usize)
                    .ok_or_else(|| bad(format!("graph input {input} is not a cache input")))?;
                hashes[slot.input] = self.model().verify_output(proof, slot.output, root)?;
            }
        }
        let commitments = |trace_root: &Hash| Commitments {
            trace_root: *trace_root,
            trace_len: self.model().step_count() as u64,
            weights_root: self.model().weights_root(),
            input_hashes: hashes.clone(),
        };
        let (outcome, tensors) = self
            .model()
            .verify_chain(engine, &commitments(forward_roots[0]), &witness.chain)
            .or_else(|_| {
                self.model()
                    .verify_chain(engine, &commitments(forward_roots[1]), &witness.chain)
            })?;
        match target {
            PassTarget::Step(_) => Ok(PassOutcome::Step(outcome)),
            PassTarget::Sampling => {
                let (_, position) = self
                    .model()
                    .output_producer(self.logits)
                    .expect("the logits step was found above");
                let logits = tensors
                    .get(position)
                    .ok_or_else(|| bad("the logits step produced no logits"))?;
                let choice = choose(last_row(logits)?, sampling, sequence.len() as u64)?;
                Ok(PassOutcome::Token(choice))
            }
        }
    }
}
