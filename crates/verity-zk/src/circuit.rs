//! The circuit of a model's integer part (`docs/protocol.md` §13). A quantized model runs in
//! three parts: a float prologue that quantizes the graph input (QuantizeLinear), an integer
//! core, and a float epilogue (DequantizeLinear, Softmax). The circuit is the core, node by
//! node with verity-infer's integer semantics: its inputs are the quantized tensors, range
//! checked to their type; its outputs are the integer tensors the epilogue reads and the
//! integer graph outputs. Weights are constants of the circuit, so the verifying key is the
//! model's own; its public inputs are the model id, a commitment to the inputs and one to the
//! outputs.

use std::collections::{HashMap, HashSet};

use ark_bn254::Fr;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::r1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, SynthesisError,
};
use verity_infer::{Data, DataType, Engine, GraphNode, Model, NodeOp, Tensor};
use verity_types::Hash;

use crate::commit::{commit_circuit, commit_native, model_input, INPUT_DOMAIN, OUTPUT_DOMAIN};
use crate::gadgets::{self, fr, Bit, Num};
use crate::ZkError;

/// A tensor at the circuit's edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<usize>,
}

/// A model compiled to a circuit: the integer nodes in order, the tensors at its edges, and
/// the constants it reads. Shapes are those of one sample (every symbolic dimension 1).
#[derive(Debug, Clone)]
pub struct ZkModel {
    pub model_id: Hash,
    nodes: Vec<GraphNode>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    constants: HashMap<String, Tensor>,
    /// R1CS size, from the compilation's own synthesis.
    pub constraints: usize,
    pub witnesses: usize,
}

/// What one proof is about: the quantized inputs (the witness), the salt of the commitments,
/// and, once computed, the integer outputs and both commitments.
#[derive(Debug, Clone)]
pub struct Statement {
    pub inputs: Vec<Tensor>,
    pub salt: Fr,
    pub outputs: Vec<Tensor>,
    pub input_commitment: Fr,
    pub output_commitment: Fr,
}

impl Statement {
    /// The statement about `inputs` (quantized) without a proof: its outputs and commitments,
    /// under salt 0. For checking the circuit against the engine.
    pub fn of(model: &ZkModel, inputs: Vec<Tensor>) -> Result<Statement, ZkError> {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let statement = model.synthesize(&cs, inputs, Fr::from(0u64))?;
        if !cs.is_satisfied()? {
            return Err(ZkError::Unsatisfied);
        }
        Ok(statement)
    }
}

fn dtype_range(dtype: DataType) -> Option<(i128, i128)> {
    Some(match dtype {
        DataType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::U8 => (0, u8::MAX.into()),
        DataType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::U16 => (0, u16::MAX.into()),
        DataType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::U32 => (0, u32::MAX.into()),
        DataType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::U64 => (0, u64::MAX.into()),
        DataType::F32 | DataType::F64 | DataType::Bool => return None,
    })
}

/// A tensor's integers, or None for floats and booleans.
fn integers(t: &Tensor) -> Option<Vec<i128>> {
    Some(match t.data() {
        Data::I8(v) => v.iter().map(|&x| x.into()).collect(),
        Data::U8(v) => v.iter().map(|&x| x.into()).collect(),
        Data::I16(v) => v.iter().map(|&x| x.into()).collect(),
        Data::U16(v) => v.iter().map(|&x| x.into()).collect(),
        Data::I32(v) => v.iter().map(|&x| x.into()).collect(),
        Data::U32(v) => v.iter().map(|&x| x.into()).collect(),
        Data::I64(v) => v.iter().map(|&x| x.into()).collect(),
        Data::U64(v) => v.iter().map(|&x| x.into()).collect(),
        Data::F32(_) | Data::F64(_) | Data::Bool(_) => return None,
    })
}

/// Integers as a tensor of `dtype`.
fn tensor_of(dtype: DataType, shape: Vec<usize>, values: &[i128]) -> Tensor {
    // Every value was range-checked to `dtype` by the circuit's bounds.
    let data = match dtype {
        DataType::I8 => Data::I8(values.iter().map(|&v| v as i8).collect()),
        DataType::U8 => Data::U8(values.iter().map(|&v| v as u8).collect()),
        DataType::I16 => Data::I16(values.iter().map(|&v| v as i16).collect()),
        DataType::U16 => Data::U16(values.iter().map(|&v| v as u16).collect()),
        DataType::I32 => Data::I32(values.iter().map(|&v| v as i32).collect()),
        DataType::U32 => Data::U32(values.iter().map(|&v| v as u32).collect()),
        DataType::I64 => Data::I64(values.iter().map(|&v| v as i64).collect()),
        DataType::U64 => Data::U64(values.iter().map(|&v| v as u64).collect()),
        DataType::F32 | DataType::F64 | DataType::Bool => unreachable!("integer types only"),
    };
    Tensor::new(shape, data).expect("shape and values agree")
}

/// A zero tensor of a graph input's type, every symbolic dimension 1.
fn zeros(dtype: DataType, shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    let data = match dtype {
        DataType::F32 => Data::F32(vec![0.0; n]),
        DataType::F64 => Data::F64(vec![0.0; n]),
        DataType::Bool => Data::Bool(vec![false; n]),
        other => return tensor_of(other, shape, &vec![0; n]),
    };
    Tensor::new(shape, data).expect("shape and values agree")
}

/// A tensor inside the circuit.
#[derive(Clone)]
struct ZTensor {
    dtype: DataType,
    shape: Vec<usize>,
    nums: Vec<Num>,
}

/// Numpy broadcasting of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let y = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            match (x, y) {
                _ if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// The flat index into `shape` (broadcast to `out`) of the element at flat index `i` of `out`.
fn broadcast_index(i: usize, out: &[usize], shape: &[usize]) -> usize {
    let mut rest = i;
    let mut index = 0;
    let mut stride = 1;
    for d in (0..out.len()).rev() {
        let coord = rest % out[d];
        rest /= out[d];
        let offset = out.len() - shape.len();
        if d >= offset {
            let size = shape[d - offset];
            if size != 1 {
                index += coord * stride;
            }
            stride *= size;
        }
    }
    index
}

struct Builder<'a> {
    cs: ConstraintSystemRef<Fr>,
    node: &'a GraphNode,
}

impl Builder<'_> {
    fn unsupported(&self, reason: impl Into<String>) -> ZkError {
        ZkError::Unsupported {
            node: self.node.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    fn elementwise(
        &self,
        a: &ZTensor,
        b: &ZTensor,
        mut f: impl FnMut(&Num, &Num) -> Result<Num, ZkError>,
    ) -> Result<ZTensor, ZkError> {
        let shape = broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
            self.unsupported(format!(
                "shapes {:?} and {:?} do not broadcast",
                a.shape, b.shape
            ))
        })?;
        let n = shape.iter().product();
        let nums = (0..n)
            .map(|i| {
                f(
                    &a.nums[broadcast_index(i, &shape, &a.shape)],
                    &b.nums[broadcast_index(i, &shape, &b.shape)],
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(ZTensor {
            dtype: a.dtype,
            shape,
            nums,
        })
    }

    fn constant_scalars(&self, t: &ZTensor, what: &str) -> Result<Vec<i128>, ZkError> {
        t.nums
            .iter()
            .map(|n| {
                n.is_constant().then_some(n.value).ok_or_else(|| {
                    self.unsupported(format!("{what} must be a constant (a weight)"))
                })
            })
            .collect()
    }

    fn matmul_integer(&self, args: &[Option<&ZTensor>]) -> Result<ZTensor, ZkError> {
        let (Some(a), Some(b)) = (args[0], args.get(1).copied().flatten()) else {
            return Err(self.unsupported("MatMulInteger needs two inputs"));
        };
        let zero = |i: usize| -> Result<i128, ZkError> {
            match args.get(i).copied().flatten() {
                None => Ok(0),
                Some(z) => match self.constant_scalars(z, "a zero point")?.as_slice() {
                    [z] => Ok(*z),
                    _ => Err(self.unsupported("only scalar zero points are supported")),
                },
            }
        };
        let (za, zb) = (zero(2)?, zero(3)?);
        let ([m, k], [k2, n]) = (a.shape.as_slice(), b.shape.as_slice()) else {
            return Err(self.unsupported(format!(
                "only 2-D operands are supported, not {:?} × {:?}",
                a.shape, b.shape
            )));
        };
        if k != k2 {
            return Err(self.unsupported(format!("inner dimensions {k} and {k2} differ")));
        }
        let (m, k, n) = (*m, *k, *n);
        let mut nums = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = Num::constant(0);
                for t in 0..k {
                    let x = a.nums[i * k + t].sub(&Num::constant(za));
                    let y = b.nums[t * n + j].sub(&Num::constant(zb));
                    acc = acc.add(&x.mul(&y));
                }
                nums.push(acc);
            }
        }
        Ok(ZTensor {
            dtype: DataType::I32,
            shape: vec![m, n],
            nums,
        })
    }

    fn argmax(
        &self,
        x: &ZTensor,
        axis: i64,
        keepdims: bool,
        last: bool,
    ) -> Result<ZTensor, ZkError> {
        let rank = x.shape.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(self.unsupported(format!("axis {axis} of a rank-{rank} tensor")));
        }
        let axis = axis as usize;
        let len = x.shape[axis];
        let inner: usize = x.shape[axis + 1..].iter().product();
        let outer: usize = x.shape[..axis].iter().product();
        let mut nums = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| &x.nums[(o * len + j) * inner + i];
                let mut best = at(0).clone();
                let mut index = Num::constant(0);
                for j in 1..len {
                    let candidate = at(j);
                    // First maximum: replace only on a strictly larger value; last: on equal too.
                    let diff = if last {
                        best.sub(candidate).sub(&Num::constant(1))
                    } else {
                        best.sub(candidate)
                    };
                    let take: Bit = gadgets::negative(&self.cs, &diff)?;
                    best = gadgets::select(&take, candidate, &best)?;
                    index = gadgets::select(&take, &Num::constant(j as i128), &index)?;
                }
                nums.push(Num {
                    lo: 0,
                    hi: len as i128 - 1,
                    ..index
                });
            }
        }
        let mut shape = x.shape.clone();
        if keepdims {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        Ok(ZTensor {
            dtype: DataType::I64,
            shape,
            nums,
        })
    }

    fn run(&self, args: &[Option<&ZTensor>]) -> Result<ZTensor, ZkError> {
        let arg = |i: usize| -> Result<&ZTensor, ZkError> {
            args.get(i)
                .copied()
                .flatten()
                .ok_or_else(|| self.unsupported(format!("input {i} is missing")))
        };
        let cs = &self.cs;
        let out = match &self.node.op {
            NodeOp::Add => self.elementwise(arg(0)?, arg(1)?, |x, y| Ok(x.add(y)))?,
            NodeOp::Sub => self.elementwise(arg(0)?, arg(1)?, |x, y| Ok(x.sub(y)))?,
            NodeOp::Mul => self.elementwise(arg(0)?, arg(1)?, |x, y| Ok(x.mul(y)))?,
            NodeOp::Div => self.elementwise(arg(0)?, arg(1)?, |x, d| {
                if !d.is_constant() {
                    return Err(self.unsupported("the divisor must be a constant"));
                }
                if d.value == 0 {
                    return Err(self.unsupported("division by zero"));
                }
                Ok(gadgets::div_const(cs, x, d.value)?)
            })?,
            NodeOp::Relu => {
                let x = arg(0)?;
                ZTensor {
                    nums: x
                        .nums
                        .iter()
                        .map(|n| gadgets::max_const(cs, n, 0))
                        .collect::<Result<_, _>>()?,
                    ..x.clone()
                }
            }
            NodeOp::Identity => arg(0)?.clone(),
            NodeOp::Clip => {
                let x = arg(0)?;
                let bound = |i: usize| -> Result<Option<i128>, ZkError> {
                    match args.get(i).copied().flatten() {
                        None => Ok(None),
                        Some(t) => match self.constant_scalars(t, "a clip bound")?.as_slice() {
                            [v] => Ok(Some(*v)),
                            _ => Err(self.unsupported("clip bounds must be scalars")),
                        },
                    }
                };
                let (lo, hi) = (bound(1)?, bound(2)?);
                let nums = x
                    .nums
                    .iter()
                    .map(|n| {
                        let n = match lo {
                            Some(lo) => gadgets::max_const(cs, n, lo)?,
                            None => n.clone(),
                        };
                        match hi {
                            Some(hi) => gadgets::min_const(cs, &n, hi),
                            None => Ok(n),
                        }
                    })
                    .collect::<Result<_, _>>()?;
                ZTensor { nums, ..x.clone() }
            }
            NodeOp::Cast { to } => {
                let x = arg(0)?;
                if dtype_range(*to).is_none() {
                    return Err(self.unsupported(format!("a cast to {to} leaves the integers")));
                }
                ZTensor {
                    dtype: *to,
                    ..x.clone()
                }
            }
            NodeOp::ArgMax {
                axis,
                keepdims,
                select_last_index,
            } => self.argmax(arg(0)?, *axis, *keepdims, *select_last_index)?,
            NodeOp::MatMulInteger => self.matmul_integer(args)?,
            _ => return Err(self.unsupported("this op has no circuit")),
        };
        // Integer ops wrap around in verity-infer; the circuit proves exact arithmetic, so it
        // must be sure no admissible input reaches the wrap.
        let (lo, hi) =
            dtype_range(out.dtype).ok_or_else(|| self.unsupported("a non-integer result"))?;
        if out.nums.iter().any(|n| n.lo < lo || n.hi > hi) {
            return Err(self.unsupported(format!(
                "its results may leave {}'s range, where verity-infer wraps around",
                out.dtype
            )));
        }
        Ok(out)
    }
}

impl ZkModel {
    /// Compiles `model`'s integer part, checking on one zero input that the circuit is
    /// satisfiable and computes what the engine computes.
    pub fn compile(model: &Model, engine: &Engine) -> Result<ZkModel, ZkError> {
        let graph = model.graph();
        let sample: Vec<Tensor> = model
            .inputs()
            .iter()
            .map(|spec| {
                let dtype = spec.dtype.clone().map_err(ZkError::Model)?;
                let shape = spec
                    .dims
                    .as_ref()
                    .map(|d| {
                        d.iter()
                            .map(|d| match d {
                                verity_infer::Dim::Fixed(n) => *n,
                                verity_infer::Dim::Symbolic(_) => 1,
                            })
                            .collect()
                    })
                    .ok_or_else(|| ZkError::Model(format!("input {:?} has no shape", spec.name)))?;
                Ok(zeros(dtype, shape))
            })
            .collect::<Result<_, ZkError>>()?;
        let values = engine
            .run_values(model, sample)
            .map_err(|e| ZkError::Model(e.to_string()))?;
        let integer = |name: &str| {
            values
                .get(name)
                .is_some_and(|t| dtype_range(t.dtype()).is_some())
        };
        let graph_inputs: HashSet<&str> = model.inputs().iter().map(|s| s.name.as_str()).collect();
        let graph_outputs: Vec<&str> = model.outputs().iter().map(|s| s.name.as_str()).collect();

        let mut inside: HashSet<String> = HashSet::new();
        let mut inputs = Vec::new();
        let mut nodes = Vec::new();
        let mut constants = HashMap::new();
        let mut outputs: Vec<String> = Vec::new();
        // Values computed outside the circuit from its outputs: the epilogue.
        let mut after: HashSet<String> = HashSet::new();
        let spec = |name: &str| TensorSpec {
            name: name.to_string(),
            dtype: values[name].dtype(),
            shape: values[name].shape().to_vec(),
        };
        for name in model.inputs().iter().map(|s| &s.name) {
            if integer(name) {
                inside.insert(name.clone());
                inputs.push(spec(name));
            }
        }
        for node in &graph {
            let args: Vec<&str> = node.inputs.iter().flatten().map(String::as_str).collect();
            let outs: Vec<&str> = node.outputs.iter().flatten().map(String::as_str).collect();
            let reads_inside = args.iter().any(|a| inside.contains(*a));
            let reads_after = args.iter().any(|a| after.contains(*a));
            if node.op == NodeOp::QuantizeLinear && !reads_inside {
                if reads_after || !nodes.is_empty() {
                    return Err(ZkError::Unsupported {
                        node: node.name.clone(),
                        op: node.op_type.clone(),
                        reason: "the model quantizes again after its integer part; only one integer part can be proven".into(),
                    });
                }
                for out in outs {
                    inside.insert(out.to_string());
                    inputs.push(spec(out));
                }
                continue;
            }
            let integer_out = !outs.is_empty() && outs.iter().all(|o| integer(o));
            if reads_inside && integer_out && !reads_after {
                for a in &args {
                    if !inside.contains(*a) {
                        match model.initializer(a) {
                            Some(t) if integer(a) => {
                                constants.insert(a.to_string(), Tensor::clone(&t));
                            }
                            _ => {
                                return Err(ZkError::Unsupported {
                                    node: node.name.clone(),
                                    op: node.op_type.clone(),
                                    reason: format!("input {a:?} is neither an integer weight nor computed by the circuit"),
                                })
                            }
                        }
                    }
                }
                nodes.push(node.clone());
                inside.extend(outs.iter().map(|o| o.to_string()));
                continue;
            }
            // Outside: its integer inputs computed by the circuit become circuit outputs.
            for a in &args {
                if inside.contains(*a) && !outputs.iter().any(|o| o == a) {
                    outputs.push(a.to_string());
                }
            }
            if reads_inside || reads_after {
                after.extend(outs.iter().map(|o| o.to_string()));
            } else if args.iter().any(|a| graph_inputs.contains(a)) && !nodes.is_empty() {
                return Err(ZkError::Unsupported {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    reason: "float work on the input after the integer part began".into(),
                });
            }
        }
        for name in graph_outputs {
            if inside.contains(name) && !outputs.iter().any(|o| o == name) {
                outputs.push(name.to_string());
            }
        }
        if nodes.is_empty() || inputs.is_empty() {
            return Err(ZkError::NoIntegerPart);
        }
        let mut compiled = ZkModel {
            model_id: model.model_id(),
            nodes,
            inputs,
            outputs: outputs.iter().map(|o| spec(o)).collect(),
            constants,
            constraints: 0,
            witnesses: 0,
        };
        let cs = ConstraintSystem::<Fr>::new_ref();
        let quantized: Vec<Tensor> = compiled
            .inputs
            .iter()
            .map(|s| (*values[&s.name]).clone())
            .collect();
        let statement = compiled.synthesize(&cs, quantized, Fr::from(0u64))?;
        for (spec, got) in compiled.outputs.iter().zip(&statement.outputs) {
            if *got != *values[&spec.name] {
                return Err(ZkError::Mismatch(spec.name.clone()));
            }
        }
        if !cs.is_satisfied()? {
            return Err(ZkError::Unsatisfied);
        }
        compiled.constraints = cs.num_constraints();
        compiled.witnesses = cs.num_witness_variables();
        Ok(compiled)
    }

    /// The quantized inputs of a run of `model` on `inputs` (the graph's inputs, one sample).
    pub fn quantized_inputs(
        &self,
        model: &Model,
        engine: &Engine,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, ZkError> {
        if model.model_id() != self.model_id {
            return Err(ZkError::Model(
                "the circuit was compiled from another model".into(),
            ));
        }
        let values = engine
            .run_values(model, inputs)
            .map_err(|e| ZkError::Model(e.to_string()))?;
        self.inputs
            .iter()
            .map(|spec| {
                let t = &values[&spec.name];
                if t.shape() != spec.shape.as_slice() {
                    return Err(ZkError::Shape {
                        name: spec.name.clone(),
                        expected: spec.shape.clone(),
                        actual: t.shape().to_vec(),
                    });
                }
                Ok((**t).clone())
            })
            .collect()
    }

    /// Builds the constraints for `inputs` (quantized, one per [`ZkModel::inputs`]) into `cs`,
    /// allocating the public inputs (model, input commitment, output commitment) last.
    pub(crate) fn synthesize(
        &self,
        cs: &ConstraintSystemRef<Fr>,
        inputs: Vec<Tensor>,
        salt: Fr,
    ) -> Result<Statement, ZkError> {
        let mut tensors: HashMap<String, ZTensor> = HashMap::new();
        let mut input_nums = Vec::new();
        for (spec, t) in self.inputs.iter().zip(&inputs) {
            let values = integers(t)
                .filter(|_| t.dtype() == spec.dtype && t.shape() == spec.shape.as_slice());
            let Some(values) = values else {
                return Err(ZkError::Shape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    actual: t.shape().to_vec(),
                });
            };
            let (lo, hi) = dtype_range(spec.dtype).expect("circuit inputs are integers");
            let nums = values
                .iter()
                .map(|&v| {
                    let var = FpVar::new_witness(cs.clone(), || Ok(fr(v)))?;
                    let wide = Num {
                        var,
                        value: v,
                        lo: i128::MIN / 4,
                        hi: i128::MAX / 4,
                    };
                    gadgets::range(cs, &wide, lo, hi)
                })
                .collect::<Result<Vec<_>, _>>()?;
            input_nums.extend(nums.iter().cloned());
            tensors.insert(
                spec.name.clone(),
                ZTensor {
                    dtype: spec.dtype,
                    shape: spec.shape.clone(),
                    nums,
                },
            );
        }
        for (name, t) in &self.constants {
            let values = integers(t).expect("constants are integers");
            tensors.insert(
                name.clone(),
                ZTensor {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    nums: values.into_iter().map(Num::constant).collect(),
                },
            );
        }
        for node in &self.nodes {
            let args: Vec<Option<&ZTensor>> = node
                .inputs
                .iter()
                .map(|a| a.as_ref().and_then(|a| tensors.get(a)))
                .collect();
            let out = Builder {
                cs: cs.clone(),
                node,
            }
            .run(&args)?;
            if let Some(Some(name)) = node.outputs.first() {
                tensors.insert(name.clone(), out);
            }
        }
        let mut output_nums = Vec::new();
        let mut outputs = Vec::new();
        for spec in &self.outputs {
            let t = &tensors[&spec.name];
            output_nums.extend(t.nums.iter().cloned());
            let values: Vec<i128> = t.nums.iter().map(|n| n.value).collect();
            outputs.push(tensor_of(spec.dtype, spec.shape.clone(), &values));
        }
        let salt_var = FpVar::new_witness(cs.clone(), || Ok(salt))?;
        let range_of = |n: &Num| (n.value, n.lo, n.hi);
        let input_commitment = commit_native(
            INPUT_DOMAIN,
            salt,
            &input_nums.iter().map(range_of).collect::<Vec<_>>(),
        );
        let output_commitment = commit_native(
            OUTPUT_DOMAIN,
            salt,
            &output_nums.iter().map(range_of).collect::<Vec<_>>(),
        );
        let input_var = commit_circuit(cs, INPUT_DOMAIN, &salt_var, &input_nums)?;
        let output_var = commit_circuit(cs, OUTPUT_DOMAIN, &salt_var, &output_nums)?;
        let model = model_input(&self.model_id);
        FpVar::new_input(cs.clone(), || Ok(model))?.enforce_equal(&FpVar::Constant(model))?;
        FpVar::new_input(cs.clone(), || Ok(input_commitment))?.enforce_equal(&input_var)?;
        FpVar::new_input(cs.clone(), || Ok(output_commitment))?.enforce_equal(&output_var)?;
        Ok(Statement {
            inputs,
            salt,
            outputs,
            input_commitment,
            output_commitment,
        })
    }

    /// The commitment to a run's quantized inputs under `salt`, as the circuit computes it.
    pub fn input_commitment(&self, inputs: &[Tensor], salt: Fr) -> Result<Hash, ZkError> {
        let mut values = Vec::new();
        for (spec, t) in self.inputs.iter().zip(inputs) {
            let ints = integers(t)
                .filter(|_| t.dtype() == spec.dtype && t.shape() == spec.shape.as_slice())
                .ok_or_else(|| ZkError::Shape {
                    name: spec.name.clone(),
                    expected: spec.shape.clone(),
                    actual: t.shape().to_vec(),
                })?;
            let (lo, hi) = dtype_range(spec.dtype).expect("circuit inputs are integers");
            values.extend(ints.into_iter().map(|v| (v, lo, hi)));
        }
        Ok(crate::commit::to_hash(&commit_native(
            INPUT_DOMAIN,
            salt,
            &values,
        )))
    }

    /// A zero input of the circuit's shape (what the setup synthesizes with).
    pub(crate) fn zero_inputs(&self) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|s| zeros(s.dtype, s.shape.clone()))
            .collect()
    }
}

/// The circuit for one statement, as ark-groth16 takes it.
pub(crate) struct InferenceCircuit<'a> {
    pub model: &'a ZkModel,
    pub inputs: Vec<Tensor>,
    pub salt: Fr,
}

impl ConstraintSynthesizer<Fr> for InferenceCircuit<'_> {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        self.model
            .synthesize(&cs, self.inputs, self.salt)
            .map(|_| ())
            .map_err(|e| match e {
                ZkError::Synthesis(e) => e,
                _ => SynthesisError::Unsatisfiable,
            })
    }
}

#[cfg(test)]
mod soundness {
    use super::*;
    use ark_relations::r1cs::ConstraintSystem;

    fn bundled(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../models/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Forgery: a prover changes one value of an honest witness (an activation, a requantization
    /// remainder, a range-check bit, an output, a commitment's sponge state) and keeps the rest.
    /// Every one of them, tried alone, leaves some constraint unsatisfied: no witness value is
    /// free, so no proof exists for a run other than the model's.
    #[test]
    fn changing_any_one_witness_value_leaves_the_constraints_unsatisfied() {
        let model = Model::from_bytes(&bundled("digits_mlp_int8.onnx")).unwrap();
        let engine = Engine::new(1).unwrap();
        let zk = ZkModel::compile(&model, &engine).unwrap();
        let input = model
            .task_inputs(&bundled("samples/digit_0_label_7.json"))
            .unwrap();
        let quantized = zk.quantized_inputs(&model, &engine, input).unwrap();
        let cs = ConstraintSystem::<Fr>::new_ref();
        zk.synthesize(&cs, quantized, Fr::from(7u64)).unwrap();
        assert!(cs.is_satisfied().unwrap(), "the honest witness satisfies");
        // A control: a variable no constraint reads, which the check must find free.
        cs.new_witness_variable(|| Ok(Fr::from(3u64))).unwrap();
        let control = cs.num_instance_variables() + cs.num_witness_variables() - 1;
        // The constraints as matrices over z = (1, public inputs, witness), evaluated here: the
        // constraint system caches what it evaluated once, so it cannot be asked again.
        cs.finalize();
        let matrices = cs.to_matrices().unwrap();
        let z: Vec<Fr> = {
            let inner = cs.borrow().unwrap();
            inner
                .instance_assignment
                .iter()
                .chain(&inner.witness_assignment)
                .copied()
                .collect()
        };
        let dot =
            |row: &[(Fr, usize)], z: &[Fr]| -> Fr { row.iter().map(|(c, i)| *c * z[*i]).sum() };
        let holds = |k: usize, z: &[Fr]| {
            dot(&matrices.a[k], z) * dot(&matrices.b[k], z) == dot(&matrices.c[k], z)
        };
        let rows = matrices.a.len();
        assert!(
            (0..rows).all(|k| holds(k, &z)),
            "the honest witness satisfies"
        );
        let mut rows_of = vec![Vec::new(); z.len()];
        for k in 0..rows {
            for (_, i) in matrices.a[k]
                .iter()
                .chain(&matrices.b[k])
                .chain(&matrices.c[k])
            {
                rows_of[*i].push(k);
            }
        }
        // Every witness value and every public input (the commitments), changed alone.
        let mut free = Vec::new();
        let mut forged = z.clone();
        for i in 1..z.len() {
            forged[i] = z[i] + Fr::from(1u64);
            if rows_of[i].iter().all(|&k| holds(k, &forged)) {
                free.push(i);
            }
            forged[i] = z[i];
        }
        assert!(
            free == [control],
            "{} of {} values of z can change alone: {free:?}",
            free.len(),
            z.len() - 1
        );
    }
}
