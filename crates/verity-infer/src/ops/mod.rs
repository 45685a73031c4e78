//! Operators: parsing a node's attributes once at load time, and running it.
//!
//! Every kernel fixes the order of its floating-point operations (documented beside it), so the
//! result does not depend on the thread count, the vector width or the machine.

mod attrs;
mod conv;
pub(crate) mod elementwise;
mod index;
mod logic;
mod matmul;
mod nn;
mod pool;
mod quant;
mod reduce;
mod shape;

use std::sync::Arc;

use crate::packed::PackedMatrix;
use crate::proto::NodeProto;
use crate::tensor::{Data, Tensor};
pub(crate) use attrs::Attrs;

/// Why an operator refused to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpError {
    /// A feature of the op (an attribute value, an element type) that the engine does not support.
    Unsupported(String),
    /// Inputs or attributes that break the op's contract.
    Invalid(String),
}

impl OpError {
    pub fn reason(&self) -> &str {
        match self {
            OpError::Unsupported(r) | OpError::Invalid(r) => r,
        }
    }
}

pub(crate) type OpResult<T> = Result<T, OpError>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::Invalid(msg.into()))
}

pub(crate) fn unsupported<T>(msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::Unsupported(msg.into()))
}

/// The length of a buffer of `dims` elements, refused past [`crate::tensor::MAX_ELEMENTS`]
/// before anything is allocated.
pub(crate) fn buffer_len(dims: &[usize]) -> OpResult<usize> {
    crate::tensor::element_count(dims).ok_or_else(|| {
        OpError::Invalid(format!(
            "a buffer of {} elements is over the engine's limit of {}",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" × "),
            crate::tensor::MAX_ELEMENTS
        ))
    })
}

/// What kernels may use while running: the thread pool, if the engine has one, and the node's
/// packed weight.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub pool: Option<&'a rayon::ThreadPool>,
    /// The node's constant right operand, packed when the model loaded (MatMul and Gemm): the
    /// op multiplies by it and ignores its input 1, which may then be absent.
    pub packed: Option<&'a PackedMatrix>,
}

impl<'a> Ctx<'a> {
    /// Runs `f` over every chunk, in parallel when a pool is present. Each chunk is processed by
    /// the same sequential code either way, so results are identical.
    pub fn for_each_chunk<T: Send>(
        &self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) + Sync,
    ) {
        let chunk_len = chunk_len.max(1);
        match self.pool {
            Some(pool) if data.len() > chunk_len => pool.install(|| {
                use rayon::prelude::*;
                data.par_chunks_mut(chunk_len)
                    .enumerate()
                    .for_each(|(i, c)| f(i, c))
            }),
            _ => data
                .chunks_mut(chunk_len)
                .enumerate()
                .for_each(|(i, c)| f(i, c)),
        }
    }

    /// A context with `pool` and no packed weight.
    #[cfg(test)]
    pub fn with_pool(pool: Option<&'a rayon::ThreadPool>) -> Ctx<'a> {
        Ctx { pool, packed: None }
    }

    pub fn threads(&self) -> usize {
        self.pool.map_or(1, |p| p.current_num_threads())
    }
}

/// Operator types this engine runs, in the default ONNX domain.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Cos",
    "CumSum",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "QLinearMatMul",
    "QuantizeLinear",
    "RMSNormalization",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// A parsed node operation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Binary(elementwise::BinaryOp),
    Unary(elementwise::UnaryOp),
    Clip(elementwise::Clip),
    Softmax(nn::Softmax),
    ArgMax(nn::ArgMax),
    BatchNorm(nn::BatchNorm),
    Reshape(shape::Reshape),
    Flatten(shape::Flatten),
    Transpose(shape::Transpose),
    Concat(shape::Concat),
    Squeeze(shape::Squeeze),
    Unsqueeze(shape::Unsqueeze),
    Cast(shape::Cast),
    Constant(Arc<Tensor>),
    MatMul,
    Gemm(matmul::Gemm),
    MatMulInteger,
    QLinearMatMul,
    Conv(conv::Conv),
    MaxPool(pool::Pool),
    AveragePool(pool::Pool),
    GlobalAveragePool,
    QuantizeLinear(quant::Quantize),
    DequantizeLinear(quant::Dequantize),
    Compare(logic::Compare),
    Logic(logic::Logic),
    Not,
    Where,
    FloatClass(logic::FloatClass),
    Extremum(elementwise::Extremum),
    Pow,
    Reduce(reduce::Reduce),
    CumSum(reduce::CumSum),
    Shape(index::Shape),
    Size,
    Gather(index::Gather),
    GatherNd(index::GatherNd),
    Dropout(nn::Dropout),
    Slice(index::Slice),
    Split(index::Split),
    Expand,
    Tile,
    ConstantOfShape(index::ConstantOfShape),
    Range,
    Trilu(index::Trilu),
    Normalization(nn::Normalization),
    Gelu(nn::Gelu),
    DynamicQuantizeLinear,
}

impl Op {
    /// Parses `node` for the default-domain opset version `opset`.
    pub fn parse(node: &NodeProto, opset: i64) -> OpResult<Op> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return unsupported(format!(
                "operator {}::{} is not supported (only the default ONNX domain is)",
                node.domain, node.op_type
            ));
        }
        let a = Attrs::new(node)?;
        use elementwise::{BinaryOp, UnaryOp};
        let op = match node.op_type.as_str() {
            "Add" => Op::Binary(BinaryOp::Add),
            "Sub" => Op::Binary(BinaryOp::Sub),
            "Mul" => Op::Binary(BinaryOp::Mul),
            "Div" => Op::Binary(BinaryOp::Div),
            "Relu" => Op::Unary(UnaryOp::Relu),
            "Sigmoid" => Op::Unary(UnaryOp::Sigmoid),
            "Tanh" => Op::Unary(UnaryOp::Tanh),
            "Identity" => Op::Unary(UnaryOp::Identity),
            "Neg" => Op::Unary(UnaryOp::Neg),
            "Abs" => Op::Unary(UnaryOp::Abs),
            "Exp" => Op::Unary(UnaryOp::Exp),
            "Log" => Op::Unary(UnaryOp::Log),
            "Sqrt" => Op::Unary(UnaryOp::Sqrt),
            "Reciprocal" => Op::Unary(UnaryOp::Reciprocal),
            "Sin" => Op::Unary(UnaryOp::Sin),
            "Cos" => Op::Unary(UnaryOp::Cos),
            "Floor" => Op::Unary(UnaryOp::Floor),
            "Ceil" => Op::Unary(UnaryOp::Ceil),
            "Clip" => Op::Clip(elementwise::Clip::parse(&a, opset)?),
            "Softmax" => Op::Softmax(nn::Softmax::parse(&a, opset, false)?),
            "LogSoftmax" => Op::Softmax(nn::Softmax::parse(&a, opset, true)?),
            "ArgMax" => Op::ArgMax(nn::ArgMax::parse(&a)?),
            "BatchNormalization" => Op::BatchNorm(nn::BatchNorm::parse(&a)?),
            "Reshape" => Op::Reshape(shape::Reshape::parse(&a)?),
            "Flatten" => Op::Flatten(shape::Flatten::parse(&a)?),
            "Transpose" => Op::Transpose(shape::Transpose::parse(&a)?),
            "Concat" => Op::Concat(shape::Concat::parse(&a)?),
            "Squeeze" => Op::Squeeze(shape::Squeeze::parse(&a, opset)?),
            "Unsqueeze" => Op::Unsqueeze(shape::Unsqueeze::parse(&a, opset)?),
            "Cast" => Op::Cast(shape::Cast::parse(&a)?),
            "Constant" => Op::Constant(Arc::new(shape::constant(&a)?)),
            "MatMul" => Op::MatMul,
            "Gemm" => Op::Gemm(matmul::Gemm::parse(&a)?),
            "MatMulInteger" => Op::MatMulInteger,
            "QLinearMatMul" => Op::QLinearMatMul,
            "Conv" => Op::Conv(conv::Conv::parse(&a)?),
            "MaxPool" => Op::MaxPool(pool::Pool::parse(&a, true)?),
            "AveragePool" => Op::AveragePool(pool::Pool::parse(&a, false)?),
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "QuantizeLinear" => Op::QuantizeLinear(quant::Quantize::parse(&a)?),
            "DequantizeLinear" => Op::DequantizeLinear(quant::Dequantize::parse(&a)?),
            "Erf" => Op::Unary(UnaryOp::Erf),
            "Equal" => Op::Compare(logic::Compare::Equal),
            "Less" => Op::Compare(logic::Compare::Less),
            "Greater" => Op::Compare(logic::Compare::Greater),
            "LessOrEqual" => Op::Compare(logic::Compare::LessOrEqual),
            "GreaterOrEqual" => Op::Compare(logic::Compare::GreaterOrEqual),
            "And" => Op::Logic(logic::Logic::And),
            "Or" => Op::Logic(logic::Logic::Or),
            "Xor" => Op::Logic(logic::Logic::Xor),
            "Not" => Op::Not,
            "Where" => Op::Where,
            "IsNaN" => Op::FloatClass(logic::FloatClass::is_nan()),
            "IsInf" => Op::FloatClass(logic::FloatClass::parse_is_inf(&a)?),
            "Max" => Op::Extremum(elementwise::Extremum::Max),
            "Min" => Op::Extremum(elementwise::Extremum::Min),
            "Pow" => Op::Pow,
            "ReduceSum" => Op::Reduce(reduce::Reduce::parse(&a, reduce::Reduction::Sum, opset)?),
            "ReduceMean" => Op::Reduce(reduce::Reduce::parse(&a, reduce::Reduction::Mean, opset)?),
            "ReduceMax" => Op::Reduce(reduce::Reduce::parse(&a, reduce::Reduction::Max, opset)?),
            "ReduceMin" => Op::Reduce(reduce::Reduce::parse(&a, reduce::Reduction::Min, opset)?),
            "ReduceProd" => Op::Reduce(reduce::Reduce::parse(&a, reduce::Reduction::Prod, opset)?),
            "CumSum" => Op::CumSum(reduce::CumSum::parse(&a)?),
            "Shape" => Op::Shape(index::Shape::parse(&a)?),
            "Size" => Op::Size,
            "Gather" => Op::Gather(index::Gather::parse(&a)?),
            "GatherND" => Op::GatherNd(index::GatherNd::parse(&a)?),
            "Dropout" => Op::Dropout(nn::Dropout::parse(&a)?),
            "Slice" => Op::Slice(index::Slice::parse(&a, opset)?),
            "Split" => Op::Split(index::Split::parse(&a, opset, node.output.len())?),
            "Expand" => Op::Expand,
            "Tile" => Op::Tile,
            "ConstantOfShape" => Op::ConstantOfShape(index::ConstantOfShape::parse(&a)?),
            "Range" => Op::Range,
            "Trilu" => Op::Trilu(index::Trilu::parse(&a)?),
            "LayerNormalization" => Op::Normalization(nn::Normalization::parse(&a, false)?),
            "RMSNormalization" => Op::Normalization(nn::Normalization::parse(&a, true)?),
            "Gelu" => Op::Gelu(nn::Gelu::parse(&a)?),
            "DynamicQuantizeLinear" => Op::DynamicQuantizeLinear,
            other => return unsupported(format!("operator {other} is not supported")),
        };
        a.check_all_read()?;
        Ok(op)
    }

    /// Runs the op. `inputs[i]` is `None` for an omitted optional input.
    pub fn run(&self, ctx: Ctx, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let one = |t: Tensor| Ok(vec![t]);
        match self {
            Op::Binary(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Unary(op) => one(op.run(req(inputs, 0)?)?),
            Op::Clip(op) => one(op.run(inputs)?),
            Op::Softmax(op) => one(op.run(req(inputs, 0)?)?),
            Op::ArgMax(op) => one(op.run(req(inputs, 0)?)?),
            Op::BatchNorm(op) => one(op.run(inputs)?),
            Op::Reshape(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Flatten(op) => one(op.run(req(inputs, 0)?)?),
            Op::Transpose(op) => one(op.run(req(inputs, 0)?)?),
            Op::Concat(op) => one(op.run(inputs)?),
            Op::Squeeze(op) => one(op.run(req(inputs, 0)?, opt(inputs, 1))?),
            Op::Unsqueeze(op) => one(op.run(req(inputs, 0)?, opt(inputs, 1))?),
            Op::Cast(op) => one(op.run(req(inputs, 0)?)?),
            Op::Constant(t) => one(Tensor::clone(t)),
            Op::MatMul => one(match ctx.packed {
                Some(b) => matmul::matmul_packed(ctx, req(inputs, 0)?, b)?,
                None => matmul::matmul(ctx, req(inputs, 0)?, req(inputs, 1)?)?,
            }),
            Op::Gemm(op) => one(op.run(ctx, inputs)?),
            Op::MatMulInteger => one(matmul::matmul_integer(ctx, inputs)?),
            Op::QLinearMatMul => one(matmul::qlinear_matmul(ctx, inputs)?),
            Op::Conv(op) => one(op.run(ctx, inputs)?),
            Op::MaxPool(op) => op.run(req(inputs, 0)?),
            Op::AveragePool(op) => op.run(req(inputs, 0)?),
            Op::GlobalAveragePool => one(pool::global_average(req(inputs, 0)?)?),
            Op::QuantizeLinear(op) => one(op.run(inputs)?),
            Op::DequantizeLinear(op) => one(op.run(inputs)?),
            Op::Compare(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Logic(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Not => one(logic::not(req(inputs, 0)?)?),
            Op::Where => one(logic::select(
                req(inputs, 0)?,
                req(inputs, 1)?,
                req(inputs, 2)?,
            )?),
            Op::FloatClass(op) => one(op.run(req(inputs, 0)?)?),
            Op::Extremum(op) => one(op.run(inputs)?),
            Op::Pow => one(elementwise::pow(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Reduce(op) => one(op.run(inputs)?),
            Op::CumSum(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Shape(op) => one(op.run(req(inputs, 0)?)?),
            Op::Size => one(index::size(req(inputs, 0)?)),
            Op::Gather(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::GatherNd(op) => one(op.run(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Dropout(op) => op.run(inputs),
            Op::Slice(op) => one(op.run(inputs)?),
            Op::Split(op) => op.run(inputs),
            Op::Expand => one(index::expand(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::Tile => one(index::tile(req(inputs, 0)?, req(inputs, 1)?)?),
            Op::ConstantOfShape(op) => one(op.run(req(inputs, 0)?)?),
            Op::Range => one(index::range(
                req(inputs, 0)?,
                req(inputs, 1)?,
                req(inputs, 2)?,
            )?),
            Op::Trilu(op) => one(op.run(req(inputs, 0)?, opt(inputs, 1))?),
            Op::Normalization(op) => op.run(inputs),
            Op::Gelu(op) => one(op.run(req(inputs, 0)?)?),
            Op::DynamicQuantizeLinear => quant::dynamic_quantize(req(inputs, 0)?),
        }
    }
}

/// The required input at `i`.
pub(crate) fn req<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> OpResult<&'a Tensor> {
    match inputs.get(i).copied().flatten() {
        Some(t) => Ok(t),
        None => invalid(format!("required input {i} is missing")),
    }
}

/// The optional input at `i`.
pub(crate) fn opt<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}

/// Normalizes a possibly negative `axis` against `rank` (valid range `-rank..rank`).
pub(crate) fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return invalid(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Reads a 1-D or scalar int64 tensor (shapes, axes).
pub(crate) fn i64_values(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    match t.data() {
        Data::I64(v) if t.rank() <= 1 => Ok(v.clone()),
        _ => invalid(format!(
            "{what} must be a 1-D int64 tensor, got {} {:?}",
            t.dtype(),
            t.shape()
        )),
    }
}

/// Reads a scalar (or one-element) float tensor.
pub(crate) fn f32_scalar(t: &Tensor, what: &str) -> OpResult<f32> {
    match t.data() {
        Data::F32(v) if v.len() == 1 => Ok(v[0]),
        _ => invalid(format!(
            "{what} must be a one-element float32 tensor, got {} {:?}",
            t.dtype(),
            t.shape()
        )),
    }
}
