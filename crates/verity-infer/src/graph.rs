//! A read-only view of a model's graph for programs that compile it rather than run it (the
//! Groth16 circuit of `verity-zk`): each node in execution order with its op and the
//! attributes the engine parsed, and the initializers by name. [`Engine::run_values`] gives
//! every intermediate value of a run, to check such a compilation against the engine.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::Engine;
use crate::ops::elementwise::{BinaryOp, UnaryOp};
use crate::ops::Op;
use crate::{DataType, InferError, Model, Tensor};

/// What a node computes, for the ops a compiler needs to tell apart; [`NodeOp::Other`] for the
/// rest (the engine may still run them).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOp {
    Add,
    Sub,
    Mul,
    Div,
    Relu,
    Identity,
    /// Bounds are inputs 1 and 2 (opset 11 and later).
    Clip,
    Cast {
        to: DataType,
    },
    ArgMax {
        axis: i64,
        keepdims: bool,
        select_last_index: bool,
    },
    MatMulInteger,
    QuantizeLinear,
    DequantizeLinear,
    Other,
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// The node's name, or a stand-in naming its first output.
    pub name: String,
    pub op_type: String,
    pub op: NodeOp,
    /// Value names; `None` for an omitted optional input or output.
    pub inputs: Vec<Option<String>>,
    pub outputs: Vec<Option<String>>,
}

impl Model {
    /// The graph's nodes in execution order (the order of the trace).
    pub fn graph(&self) -> Vec<GraphNode> {
        let name = |v: &Option<usize>| v.map(|v| self.values[v].clone());
        self.nodes
            .iter()
            .map(|node| GraphNode {
                name: node.display_name(&self.values),
                op_type: node.op_type.clone(),
                op: match &node.op {
                    Ok(Op::Binary(BinaryOp::Add)) => NodeOp::Add,
                    Ok(Op::Binary(BinaryOp::Sub)) => NodeOp::Sub,
                    Ok(Op::Binary(BinaryOp::Mul)) => NodeOp::Mul,
                    Ok(Op::Binary(BinaryOp::Div)) => NodeOp::Div,
                    Ok(Op::Unary(UnaryOp::Relu)) => NodeOp::Relu,
                    Ok(Op::Unary(UnaryOp::Identity)) => NodeOp::Identity,
                    Ok(Op::Clip(clip)) if clip.legacy.is_none() => NodeOp::Clip,
                    Ok(Op::Cast(cast)) => NodeOp::Cast { to: cast.to },
                    Ok(Op::ArgMax(a)) => NodeOp::ArgMax {
                        axis: a.axis,
                        keepdims: a.keepdims,
                        select_last_index: a.select_last,
                    },
                    Ok(Op::MatMulInteger) => NodeOp::MatMulInteger,
                    Ok(Op::QuantizeLinear(_)) => NodeOp::QuantizeLinear,
                    Ok(Op::DequantizeLinear(_)) => NodeOp::DequantizeLinear,
                    _ => NodeOp::Other,
                },
                inputs: node.inputs.iter().map(name).collect(),
                outputs: node.outputs.iter().map(name).collect(),
            })
            .collect()
    }

    /// The initializer (weight) called `name`, as the file stores it.
    pub fn initializer(&self, name: &str) -> Option<Arc<Tensor>> {
        self.initializers
            .binary_search_by(|i| i.name.as_str().cmp(name))
            .ok()
            .map(|i| self.initializers[i].tensor())
    }
}

impl Engine {
    /// Runs `model` on `inputs` and returns every value of the run by name: the inputs, the
    /// initializers and each node's outputs.
    pub fn run_values(
        &self,
        model: &Model,
        inputs: Vec<Tensor>,
    ) -> Result<HashMap<String, Arc<Tensor>>, InferError> {
        let mut all = HashMap::new();
        self.execute_observed(model, inputs, &mut |name, tensor| {
            all.insert(name.to_string(), tensor.clone());
        })?;
        Ok(all)
    }
}
