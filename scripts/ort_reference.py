#!/usr/bin/env python3
"""Writes ONNX Runtime's outputs for the bundled models on their sample inputs, as JSON.

    python scripts/ort_reference.py OUT.json

verity-infer's `onnxruntime_reference` test compares its own outputs with these (test-only;
onnxruntime comes from PyPI into the test virtualenv). For the bundled language model
(models/tiny_lm) it also writes, for verity-lm's tests: the Python `tokenizers` package's ids
for over a megabyte of text (the whole of Moby-Dick and a generated sample of many scripts),
and onnxruntime's last-position logits and greedy continuations of a few prompts; the same for
SmolLM2-135M-Instruct (fp32 and int8) when VERITY_SMOLLM2 names the directory scripts/smollm2.py
wrote.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
sys.path.insert(0, MODELS)
import tiny_lm  # noqa: E402  (the book as the bundled model was trained on it)


def session_options():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    # x86 CPUs without VNNI multiply uint8 by int8 in pairs summed into int16 with saturation
    # (vpmaddubsw): MatMulInteger's int32 results come out wrong wherever a pair exceeds 32767.
    # This makes onnxruntime use exact kernels there; on VNNI CPUs it changes nothing.
    opts.add_session_config_entry("session.x64quantprecision", "1")
    return opts


def run(model, feeds):
    opts = session_options()
    session = ort.InferenceSession(os.path.join(MODELS, model), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, feeds)
    return {n: {"shape": list(o.shape), "data": o.ravel().tolist()} for n, o in zip(names, outputs)}


LM_DIR = os.path.join(MODELS, "tiny_lm")
MOBY_DICK = os.path.join(ROOT, "scripts", "npm", "node_modules", "@stdlib", "datasets-moby-dick", "data")
PROMPTS = [
    "Call me Ishmael.",
    "The whale",
    "It was the captain of the ship, and he said",
    "Queequeg",
    "Upon the sea there was nothing but",
]
GREEDY_TOKENS = 32


def unicode_sample(seed=7, words=6000):
    """Words drawn from many scripts, accents, emoji and symbols: what English text alone does
    not exercise in a byte-level tokenizer."""
    rng = np.random.default_rng(seed)
    ranges = [
        (0x0041, 0x007A), (0x00C0, 0x00FF), (0x0100, 0x017F), (0x0370, 0x03FF), (0x0400, 0x04FF),
        (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x3040, 0x30FF),
        (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x1F300, 0x1F64F), (0x2000, 0x206F), (0x2190, 0x21FF),
    ]
    out = []
    for _ in range(words):
        lo, hi = ranges[rng.integers(len(ranges))]
        word = "".join(chr(int(c)) for c in rng.integers(lo, hi + 1, rng.integers(1, 8)))
        out.append(word + [" ", " ", " ", "\n", "\t", ", ", ". ", "  "][rng.integers(8)])
    return "".join(out)


def chatml(question):
    """SmolLM2's chat template, rendered for one user message (what its tokenizer's template does)."""
    return (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )


SMOLLM2_PROMPTS = [
    chatml("What is 2+2?"),
    chatml("What is the capital of France?"),
    chatml("Write a sentence about the sea."),
    "The quick brown fox",
    "def fibonacci(n):",
]


def float64_session(model_dir):
    """The same graph with every float32 tensor in float64: the exact answer both engines'
    float32 arithmetic approximates (to judge which of two float32 results is nearer)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    for i, t in enumerate(model.graph.initializer):
        if t.data_type == TensorProto.FLOAT:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for node in model.graph.node:
        for a in node.attribute:
            if a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
    for v in list(model.graph.input) + list(model.graph.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def lm_reference(model_dir, prompts, eos=None, float64=False, tokenizer_corpus=True):
    """The Python `tokenizers` package's ids for the corpus, and onnxruntime's last-position
    logits and greedy continuations (with the cache, as optimum's exports are driven)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    texts = ["".join(tiny_lm.chapters(MOBY_DICK)), unicode_sample()] if tokenizer_corpus else []
    tokenizer = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]

    opts = session_options()
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    past = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    presents = [o.name.replace("past_key_values.", "present.") for o in past]

    def feeds_for(ids, start, caches):
        feeds = {"input_ids": np.array([ids], np.int64)}
        if "attention_mask" in inputs:
            feeds["attention_mask"] = np.ones((1, start + len(ids)), np.int64)
        if "position_ids" in inputs:
            feeds["position_ids"] = np.arange(start, start + len(ids), dtype=np.int64)[None]
        for p, cache in zip(past, caches):
            feeds[p.name] = cache if cache is not None else np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32)
        return feeds

    exact = float64_session(model_dir) if float64 else None
    prompts_out = []
    for text in prompts:
        ids = tok.encode(text, add_special_tokens=False).ids
        outputs = session.run(["logits"] + presents, feeds_for(ids, 0, [None] * len(past)))
        last_logits = outputs[0][0, -1].tolist()
        greedy = []
        while True:
            token = int(np.argmax(outputs[0][0, -1]))
            greedy.append(token)
            if len(greedy) == GREEDY_TOKENS or token == eos:
                break
            outputs = session.run(["logits"] + presents, feeds_for([token], len(ids) + len(greedy) - 1, outputs[1:]))
        case = {"text": text, "ids": ids, "last_logits": last_logits, "greedy": greedy}
        if exact is not None:
            feeds = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds_for(ids, 0, [None] * len(past)).items()}
            case["float64_last_logits"] = exact.run(["logits"], feeds)[0][0, -1].tolist()
        prompts_out.append(case)
    return {"tokenizer": tokenizer, "prompts": prompts_out}


def main():
    with open(os.path.join(MODELS, "samples", "digits_test.json")) as f:
        digits = np.array(json.load(f)["pixels"], dtype=np.float32)
    with open(os.path.join(MODELS, "samples", "conv_image.json")) as f:
        image = np.array(json.load(f), dtype=np.float32)
    reference = {
        "onnxruntime": ort.__version__,
        "digits_mlp.onnx": run("digits_mlp.onnx", {"pixels": digits}),
        "digits_mlp_int8.onnx": run("digits_mlp_int8.onnx", {"pixels": digits}),
        "conv_random.onnx": run("conv_random.onnx", {"image": image}),
        "tiny_lm": lm_reference(LM_DIR, PROMPTS),
    }
    # SmolLM2-135M-Instruct, fp32 and int8, as scripts/smollm2.py builds it (scripts/test sets this).
    smollm2 = os.environ.get("VERITY_SMOLLM2")
    if smollm2:
        reference["smollm2"] = lm_reference(smollm2, SMOLLM2_PROMPTS, eos=2, float64=True)
        # The int8 directory holds a copy of the same tokenizer: its ids are not written twice.
        reference["smollm2_int8"] = lm_reference(os.path.join(smollm2, "int8"), SMOLLM2_PROMPTS, eos=2, tokenizer_corpus=False)
    with open(sys.argv[1], "w") as f:
        json.dump(reference, f)
    print(f"wrote ONNX Runtime {ort.__version__} reference outputs to {sys.argv[1]}")


if __name__ == "__main__":
    main()
