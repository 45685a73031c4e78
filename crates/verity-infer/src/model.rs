//! Loading an ONNX file into a validated, topologically ordered graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};
use verity_types::Hash;

use crate::error::InferError;
use crate::merkle;
use crate::ops::{Op, OpError};
use crate::packed::{PackedMatrix, Packer, Packing};
use crate::proto::{self, type_proto, ModelProto};
use crate::tensor::{DataType, Tensor};

/// One dimension of a declared input or output shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A named (or unnamed, `"?"`) dimension that any size satisfies.
    Symbolic(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// A graph input or output as declared in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSpec {
    pub name: String,
    /// The element type, or the ONNX name of a type the engine does not support.
    pub dtype: Result<DataType, String>,
    /// `None` when the file declares no shape.
    pub dims: Option<Vec<Dim>>,
}

impl ValueSpec {
    /// Human-readable type and shape, e.g. `float32[N, 64]`.
    pub fn describe(&self) -> String {
        let ty = match &self.dtype {
            Ok(t) => t.to_string(),
            Err(name) => name.clone(),
        };
        match &self.dims {
            None => format!("{ty}[?]"),
            Some(d) => format!(
                "{ty}[{}]",
                d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

pub(crate) struct Node {
    pub name: String,
    pub op_type: String,
    pub op: Result<Op, OpError>,
    /// Value ids; `None` for an omitted optional input or output.
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<Option<usize>>,
    /// Input 1 packed at load, when it is a float32 weight this product multiplies by.
    pub packed: Option<Arc<PackedMatrix>>,
}

impl Node {
    /// The node's name, or a stand-in naming its first output when the file gives none.
    pub fn display_name(&self, values: &[String]) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match self.outputs.iter().flatten().next() {
            Some(&v) => format!("<producing {}>", values[v]),
            None => "<unnamed>".to_string(),
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The i-th initializer in name order.
    Initializer(usize),
    /// The i-th graph input.
    GraphInput(usize),
    /// Output `slot` of the node at trace step `step`.
    Step { step: usize, slot: usize },
}

pub(crate) struct Initializer {
    pub name: String,
    pub hash: Hash,
    pub dtype: DataType,
    pub shape: Vec<usize>,
    /// The tensor as stored, unless every reader multiplies by `packed` instead (at least one
    /// of the two is kept: a model's weights are held once).
    pub tensor: Option<Arc<Tensor>>,
    pub packed: Option<Arc<PackedMatrix>>,
}

impl Initializer {
    /// The tensor as the file stores it, unpacked again when only its packed copy is kept.
    pub fn tensor(&self) -> Arc<Tensor> {
        match (&self.tensor, &self.packed) {
            (Some(tensor), _) => tensor.clone(),
            (None, Some(packed)) => Arc::new(packed.unpack()),
            (None, None) => unreachable!("an initializer keeps its tensor or its packed copy"),
        }
    }
}

/// What an op's input 1 is packed as, when it is a constant weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    /// float32: MatMul, or Gemm using A as given (`transposed`: its `transB`).
    Float { transposed: bool },
    /// uint8 or int8: MatMulInteger.
    Bytes,
}

/// How `op` would pack its input 1, if it is a product that reads a packed weight.
fn packs_input_1(op: &Result<Op, OpError>) -> Option<Operand> {
    match op {
        Ok(Op::MatMul) => Some(Operand::Float { transposed: false }),
        Ok(Op::Gemm(gemm)) => gemm
            .packs_b_transposed()
            .map(|transposed| Operand::Float { transposed }),
        Ok(Op::MatMulInteger) => Some(Operand::Bytes),
        _ => None,
    }
}

/// A loaded model: validated graph in execution order, with its identity and weights commitment.
pub struct Model {
    pub(crate) model_id: Hash,
    pub(crate) opset: i64,
    pub(crate) producer: String,
    pub(crate) ir_version: i64,
    pub(crate) values: Vec<String>,
    pub(crate) sources: Vec<Source>,
    pub(crate) inputs: Vec<ValueSpec>,
    pub(crate) input_values: Vec<usize>,
    pub(crate) outputs: Vec<ValueSpec>,
    pub(crate) output_values: Vec<usize>,
    /// Sorted by name; value id of initializer i is `initializer_values[i]`.
    pub(crate) initializers: Vec<Initializer>,
    pub(crate) initializer_values: Vec<usize>,
    pub(crate) weights_root: Hash,
    /// Execution (= trace) order.
    pub(crate) nodes: Vec<Node>,
    /// For each value, the last step that reads it (`usize::MAX` for graph outputs).
    pub(crate) last_use: Vec<usize>,
    /// The external data files its weights were read from, by the names the graph gives.
    pub(crate) external_files: Vec<String>,
}

/// `SHA-256(name length as 4 bytes LE || name || tensor hash)`: the leaf of one initializer in
/// the weights tree.
pub fn initializer_leaf(name: &str, tensor_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update((name.len() as u32).to_le_bytes());
    h.update(name.as_bytes());
    h.update(tensor_hash.0);
    Hash(h.finalize().into())
}

fn decode(bytes: &[u8]) -> Result<ModelProto, InferError> {
    ModelProto::decode(bytes).map_err(|e| InferError::Decode(e.to_string()))
}

fn invalid(msg: impl Into<String>) -> InferError {
    InferError::InvalidModel(msg.into())
}

fn value_spec(v: &proto::ValueInfoProto) -> ValueSpec {
    let (dtype, dims) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let dims = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(proto::tensor_shape_proto::dimension::Value::DimValue(v))
                            if *v >= 0 =>
                        {
                            Dim::Fixed(*v as usize)
                        }
                        Some(proto::tensor_shape_proto::dimension::Value::DimParam(p))
                            if !p.is_empty() =>
                        {
                            Dim::Symbolic(p.clone())
                        }
                        _ => Dim::Symbolic("?".into()),
                    })
                    .collect()
            });
            (DataType::from_onnx(t.elem_type), dims)
        }
        Some(type_proto::Value::SequenceType(_)) => (Err("sequence".into()), None),
        Some(type_proto::Value::MapType(_)) => (Err("map".into()), None),
        Some(type_proto::Value::SparseTensorType(_)) => (Err("sparse tensor".into()), None),
        Some(type_proto::Value::OptionalType(_)) => (Err("optional".into()), None),
        None => (Err("no type".into()), None),
    };
    ValueSpec {
        name: v.name.clone(),
        dtype,
        dims,
    }
}

impl Model {
    /// Loads a model, failing on anything the engine cannot run (naming the node and op).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, InferError> {
        Model::parse(bytes)?.runnable()
    }

    /// Loads a model file, with any external data (`model.onnx.data`) from its directory, read
    /// tensor by tensor. The model id is the SHA-256 of the graph file; the weights root
    /// covers every initializer, wherever it is stored.
    pub fn from_file(path: &std::path::Path) -> Result<Model, InferError> {
        Model::parse_file(path)?.runnable()
    }

    /// [`Model::parse`] for a model file, with its external data.
    pub fn parse_file(path: &std::path::Path) -> Result<Model, InferError> {
        let bytes = std::fs::read(path).map_err(|e| InferError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let model_id = verity_types::sha256(&bytes);
        let proto = decode(&bytes)?;
        // From here the decoded message is the only copy of embedded weights, and each
        // initializer's bytes are dropped as its tensor is made.
        drop(bytes);
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut external = crate::external::ExternalData::new(dir);
        let mut model = Model::build(model_id, proto, Some(&mut external))?;
        if external.used() {
            // The graph file alone does not fix the weights: the id binds them through the
            // weights root, whatever the data files' layout.
            model.model_id = external_model_id(&model_id, &model.weights_root);
            model.external_files = external.locations();
        }
        Ok(model)
    }

    /// This model, or the first reason it cannot run.
    fn runnable(self) -> Result<Model, InferError> {
        let model = self;
        for node in &model.nodes {
            if let Err(e) = &node.op {
                let node_name = node.display_name(&model.values);
                return Err(match e {
                    OpError::Unsupported(reason) => InferError::Unsupported {
                        node: node_name,
                        op: node.op_type.clone(),
                        reason: reason.clone(),
                    },
                    OpError::Invalid(reason) => {
                        invalid(format!("node {node_name:?} ({}): {reason}", node.op_type))
                    }
                });
            }
        }
        for spec in model.inputs.iter().chain(&model.outputs) {
            if let Err(ty) = &spec.dtype {
                return Err(InferError::Unsupported {
                    node: "<graph>".into(),
                    op: "-".into(),
                    reason: format!(
                        "graph value {:?} has type {ty}, which is not supported",
                        spec.name
                    ),
                });
            }
        }
        Ok(model)
    }

    /// Parses and validates the graph, keeping nodes whose op is unsupported (for inspection).
    pub fn parse(bytes: &[u8]) -> Result<Model, InferError> {
        Model::build(verity_types::sha256(bytes), decode(bytes)?, None)
    }

    fn build(
        model_id: Hash,
        proto: ModelProto,
        mut external: Option<&mut crate::external::ExternalData>,
    ) -> Result<Model, InferError> {
        let mut graph = proto.graph.ok_or_else(|| {
            InferError::Decode("the file has no graph (is it an ONNX model?)".into())
        })?;
        if proto.ir_version <= 0 {
            return Err(InferError::Decode(
                "missing ir_version (is it an ONNX model?)".into(),
            ));
        }
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| invalid("no opset is imported for the default ONNX domain"))?;
        if !graph.sparse_initializer.is_empty() {
            return Err(invalid("sparse initializers are not supported"));
        }

        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut values: Vec<String> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut define = |name: &str,
                          source: Source,
                          ids: &mut HashMap<String, usize>|
         -> Result<usize, InferError> {
            if ids.contains_key(name) {
                return Err(invalid(format!("value {name:?} is defined more than once")));
            }
            ids.insert(name.to_string(), values.len());
            values.push(name.to_string());
            sources.push(source);
            Ok(values.len() - 1)
        };

        // Which values are a product's constant right operand (packed at load, see
        // crate::packed), and which are also read some other way (then kept as stored too).
        let mut ops: Vec<Option<Result<Op, OpError>>> = graph
            .node
            .iter()
            .map(|p| Some(Op::parse(p, opset)))
            .collect();
        let mut packs: HashMap<String, Operand> = HashMap::new();
        let mut read_otherwise: BTreeSet<String> = BTreeSet::new();
        for (p, op) in graph.node.iter().zip(&ops) {
            let packing = op.as_ref().and_then(packs_input_1);
            for (slot, input) in p.input.iter().enumerate() {
                match packing {
                    Some(t) if slot == 1 && *packs.entry(input.clone()).or_insert(t) == t => {}
                    _ => {
                        read_otherwise.insert(input.clone());
                    }
                }
            }
        }
        read_otherwise.extend(graph.output.iter().map(|o| o.name.clone()));

        // Initializers, in name order (the weights tree's order).
        let mut inits: Vec<proto::TensorProto> = std::mem::take(&mut graph.initializer);
        inits.sort_by(|a, b| a.name.cmp(&b.name));
        let mut packer = Packer::new();
        let reserved: Vec<Option<usize>> = inits
            .iter()
            .map(|t| {
                let packing = match (*packs.get(&t.name)?, DataType::from_onnx(t.data_type)) {
                    (Operand::Float { transposed }, Ok(DataType::F32)) => {
                        Packing::Float { transposed }
                    }
                    (Operand::Bytes, Ok(DataType::U8)) => Packing::Bytes { signed: false },
                    (Operand::Bytes, Ok(DataType::I8)) => Packing::Bytes { signed: true },
                    _ => return None,
                };
                let [rows, cols] = <[i64; 2]>::try_from(t.dims.as_slice()).ok()?;
                let (rows, cols) = (usize::try_from(rows).ok()?, usize::try_from(cols).ok()?);
                match packing {
                    Packing::Float { transposed: true } => packer.reserve(cols, rows, packing),
                    _ => packer.reserve(rows, cols, packing),
                }
            })
            .collect();
        let mut initializers = Vec::with_capacity(inits.len());
        let mut initializer_values = Vec::with_capacity(inits.len());
        for (i, t) in inits.into_iter().enumerate() {
            if t.name.is_empty() {
                return Err(invalid("an initializer has no name"));
            }
            let tensor = match external.as_deref_mut() {
                Some(files) if t.data_location == 1 => files.tensor(&t),
                _ => Tensor::from_proto(&t),
            }
            .map_err(|source| InferError::Initializer {
                name: t.name.clone(),
                source,
            })?;
            if let Some(slot) = reserved[i] {
                packer
                    .pack(slot, &tensor)
                    .map_err(|e| invalid(format!("initializer {:?}: {e}", t.name)))?;
            }
            initializer_values.push(define(&t.name, Source::Initializer(i), &mut ids)?);
            let keep = reserved[i].is_none() || read_otherwise.contains(&t.name);
            initializers.push(Initializer {
                name: t.name.clone(),
                hash: tensor.hash(),
                dtype: tensor.dtype(),
                shape: tensor.shape().to_vec(),
                tensor: keep.then(|| Arc::new(tensor)),
                packed: None,
            });
        }
        let mut packed = packer.finish().into_iter();
        for (init, slot) in initializers.iter_mut().zip(&reserved) {
            if slot.is_some() {
                init.packed = packed.next();
            }
        }
        let weights_leaves: Vec<Hash> = initializers
            .iter()
            .map(|i| initializer_leaf(&i.name, &i.hash))
            .collect();
        let weights_root = merkle::root(&weights_leaves);

        // Graph inputs that are not initializers (older exporters list weights as inputs too).
        let mut inputs = Vec::new();
        let mut input_values = Vec::new();
        for v in &graph.input {
            if ids.contains_key(&v.name) {
                continue;
            }
            input_values.push(define(&v.name, Source::GraphInput(inputs.len()), &mut ids)?);
            inputs.push(value_spec(v));
        }

        // Node outputs; nodes get their step once ordered.
        let mut producer: HashMap<String, usize> = HashMap::new();
        for (n, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if ids.contains_key(out) || producer.insert(out.clone(), n).is_some() {
                    return Err(invalid(format!("value {out:?} is defined more than once")));
                }
            }
        }
        let order = topological_order(&graph.node, &ids, &producer)?;

        let mut nodes = Vec::with_capacity(order.len());
        for (step, &n) in order.iter().enumerate() {
            let p = &graph.node[n];
            let mut outputs = Vec::with_capacity(p.output.len());
            for (slot, out) in p.output.iter().enumerate() {
                outputs.push(if out.is_empty() {
                    None
                } else {
                    Some(define(out, Source::Step { step, slot }, &mut ids)?)
                });
            }
            let inputs = p
                .input
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        None
                    } else {
                        ids.get(i).copied()
                    }
                })
                .collect();
            let op = ops[n].take().unwrap_or_else(|| Op::parse(p, opset));
            let packed = packs_input_1(&op)
                .filter(|&t| p.input.get(1).and_then(|b| packs.get(b)) == Some(&t))
                .and_then(|_| {
                    let b = initializers
                        .binary_search_by(|i: &Initializer| i.name.as_str().cmp(&p.input[1]))
                        .ok()?;
                    initializers[b].packed.clone()
                });
            nodes.push(Node {
                name: p.name.clone(),
                op_type: p.op_type.clone(),
                op,
                inputs,
                outputs,
                packed,
            });
        }

        let mut outputs = Vec::new();
        let mut output_values = Vec::new();
        for v in &graph.output {
            let id = *ids
                .get(&v.name)
                .ok_or_else(|| invalid(format!("graph output {:?} is never produced", v.name)))?;
            output_values.push(id);
            outputs.push(value_spec(v));
        }

        let mut last_use = vec![0usize; values.len()];
        for (step, node) in nodes.iter().enumerate() {
            for &v in node.inputs.iter().flatten() {
                last_use[v] = step;
            }
        }
        for &v in &output_values {
            last_use[v] = usize::MAX;
        }

        Ok(Model {
            model_id,
            opset,
            producer: proto.producer_name,
            ir_version: proto.ir_version,
            values,
            sources,
            inputs,
            input_values,
            outputs,
            output_values,
            initializers,
            initializer_values,
            weights_root,
            nodes,
            last_use,
            external_files: Vec::new(),
        })
    }

    /// The external data files (names beside the graph file) its weights were read from.
    pub fn external_files(&self) -> &[String] {
        &self.external_files
    }

    /// SHA-256 of the ONNX file.
    pub fn model_id(&self) -> Hash {
        self.model_id
    }

    /// Merkle root over the initializers in name order (see [`initializer_leaf`]).
    pub fn weights_root(&self) -> Hash {
        self.weights_root
    }

    pub fn inputs(&self) -> &[ValueSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[ValueSpec] {
        &self.outputs
    }

    /// Number of nodes, which is the length of every trace of this model.
    pub fn step_count(&self) -> usize {
        self.nodes.len()
    }

    /// The op type run at `step`.
    pub fn step_op(&self, step: usize) -> Option<&str> {
        self.nodes.get(step).map(|n| n.op_type.as_str())
    }

    /// What a model is made of, for `verity infer inspect`.
    pub fn summary(&self) -> ModelSummary {
        let mut ops: BTreeMap<String, usize> = BTreeMap::new();
        let mut unsupported = Vec::new();
        for node in &self.nodes {
            *ops.entry(node.op_type.clone()).or_default() += 1;
            if let Err(e) = &node.op {
                unsupported.push(UnsupportedNode {
                    node: node.display_name(&self.values),
                    op: node.op_type.clone(),
                    reason: e.reason().to_string(),
                });
            }
        }
        ModelSummary {
            model_id: self.model_id,
            weights_root: self.weights_root,
            ir_version: self.ir_version,
            opset: self.opset,
            producer: self.producer.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            nodes: self.nodes.len(),
            ops,
            initializers: self
                .initializers
                .iter()
                .map(|i| (i.name.clone(), i.dtype, i.shape.clone()))
                .collect(),
            parameters: self
                .initializers
                .iter()
                .map(|i| i.shape.iter().product::<usize>() as u64)
                .sum(),
            unsupported,
        }
    }
}

/// Orders nodes so each runs after its inputs' producers; among ready nodes the earliest in the
/// file goes first, so the order (and so the trace) is a function of the file alone.
fn topological_order(
    nodes: &[proto::NodeProto],
    known: &HashMap<String, usize>,
    producer: &HashMap<String, usize>,
) -> Result<Vec<usize>, InferError> {
    let mut pending = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (n, node) in nodes.iter().enumerate() {
        let deps: BTreeSet<usize> = node
            .input
            .iter()
            .filter(|i| !i.is_empty() && !known.contains_key(*i))
            .map(|i| {
                producer.get(i).copied().ok_or_else(|| {
                    invalid(format!(
                        "node {:?} ({}) reads {i:?}, which no node, initializer or graph input provides",
                        node.name, node.op_type
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        pending[n] = deps.len();
        for d in deps {
            consumers[d].push(n);
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&n| pending[n] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(n) = ready.pop_first() {
        order.push(n);
        for &c in &consumers[n] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() != nodes.len() {
        return Err(invalid("the graph has a cycle"));
    }
    Ok(order)
}

/// A node the engine cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedNode {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// The contents of a model, as `verity infer inspect` shows them.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub model_id: Hash,
    pub weights_root: Hash,
    pub ir_version: i64,
    pub opset: i64,
    pub producer: String,
    pub inputs: Vec<ValueSpec>,
    pub outputs: Vec<ValueSpec>,
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub initializers: Vec<(String, DataType, Vec<usize>)>,
    pub parameters: u64,
    pub unsupported: Vec<UnsupportedNode>,
}
/// `model_id` of a model whose weights are external data: `SHA-256("verity/model/external/v1" ‖
/// SHA-256(graph file) ‖ weights_root)`.
pub fn external_model_id(graph_file_hash: &Hash, weights_root: &Hash) -> Hash {
    let mut bytes = Vec::with_capacity(24 + 64);
    bytes.extend_from_slice(b"verity/model/external/v1");
    bytes.extend_from_slice(&graph_file_hash.0);
    bytes.extend_from_slice(&weights_root.0);
    verity_types::sha256(&bytes)
}
