#!/usr/bin/env python3
"""Exports small GPT-2, LLaMA and Qwen2 models with torch.onnx.export, the ways users export
theirs, and writes what torch and onnxruntime compute on them, for verity-lm's tests.

    python scripts/torch_exports.py crates/verity-lm/tests/exports torch
    PYTHONPATH=TRANSFORMERS_4_57 python scripts/torch_exports.py crates/verity-lm/tests/exports optimum

Needs torch, onnxscript and transformers 5 for the torch.onnx.export kinds, and for optimum's
(optimum-onnx 0.1 does not load with transformers 5, whose masks TorchScript cannot trace with
transformers 4.57) transformers 4.57 in a directory of its own put first on PYTHONPATH; about
6 GB installed:

    pip install torch onnxscript transformers requests && pip install --no-deps optimum optimum-onnx
    pip install --target TRANSFORMERS_4_57 --no-deps transformers==4.57.6 huggingface-hub==0.36.2 tokenizers==0.22.1

so CI does not run it: its outputs are
committed (about 2 MB) and crates/verity-lm/tests/torch_exports.rs checks the engine against
them. Each model is a randomly initialised configuration of the real architecture (the
transformers class the hub's checkpoints load into), small enough to commit; what is under
test is the graph each exporter writes, which depends on the architecture and the exporter,
not on the size. For each architecture:

- `legacy`: the TorchScript exporter (`dynamo=False`, opset 17), no past key values;
- `dynamo`: the torch.export-based exporter (`dynamo=True`), opset 18 and opset 20;
- `legacy_past`: the TorchScript exporter with past key values as inputs and present ones as
  outputs, named as optimum names them (`past_key_values.{i}.key|value`, `present.{i}.key|value`);
- `optimum` and `optimum_past`: optimum's own decoder export (`optimum-cli export onnx --task
  text-generation` and `text-generation-with-past`: position_ids as an input too).

Each directory holds `model.onnx`, the model's `config.json` and `reference.json`: prompts, the
last position's logits from torch (float32) and from onnxruntime on the exported file, and
torch's greedy continuation (`model.generate`, its own KV cache).
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from transformers import (
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 256
PROMPTS = [[1, 5, 9, 33, 7, 100], [200, 3], [17, 17, 17, 17, 42, 250, 8, 64, 128, 1, 2, 3], [99]]
GREEDY_TOKENS = 16


def architectures():
    common = dict(vocab_size=VOCAB, initializer_range=0.2)
    yield "gpt2", GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **common)
    )
    yield "llama", LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
            bos_token_id=0, eos_token_id=0, **common,
        )
    )
    yield "qwen2", Qwen2ForCausalLM(
        Qwen2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
            bos_token_id=0, eos_token_id=0, **common,
        )
    )


class Logits(torch.nn.Module):
    """input_ids and attention_mask in, logits out: a plain export without a cache."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class WithPast(torch.nn.Module):
    """optimum's decoder interface: past keys and values in, logits and present ones out."""

    def __init__(self, model, layers):
        super().__init__()
        self.model = model
        self.layers = layers

    def forward(self, input_ids, attention_mask, *past):
        cache = DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        presents = []
        for layer in out.past_key_values.layers:
            presents += [layer.keys, layer.values]
        return (out.logits, *presents)


def kv_shape(model):
    c = model.config
    heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    return heads, c.hidden_size // c.num_attention_heads, c.num_hidden_layers


def export(model, kind, path):
    ids = torch.tensor([PROMPTS[0]])
    mask = torch.ones_like(ids)
    if kind == "legacy":
        torch.onnx.export(
            Logits(model).eval(), (ids, mask), path, dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch", 1: "sequence"}},
        )
    elif kind.startswith("dynamo"):
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        program = torch.onnx.export(
            # eval(): a module left in training mode exports random Dropout nodes.
            Logits(model).eval(), (ids, mask), dynamo=True, opset_version=int(kind.removeprefix("dynamo")),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        )
        program.save(path)
    elif kind == "legacy_past":
        heads, head_dim, layers = kv_shape(model)
        past_len = 3
        past = [torch.zeros(1, heads, past_len, head_dim) for _ in range(2 * layers)]
        mask = torch.ones(1, past_len + ids.shape[1], dtype=torch.int64)
        names = []
        for i in range(layers):
            names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        presents = [n.replace("past_key_values", "present") for n in names]
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total"},
                "logits": {0: "batch", 1: "sequence"}}
        for n in names:
            axes[n] = {0: "batch", 2: "past"}
        for n in presents:
            axes[n] = {0: "batch", 2: "total"}
        torch.onnx.export(
            WithPast(model, layers).eval(), (ids, mask, *past), path, dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask", *names], output_names=["logits", *presents],
            dynamic_axes=axes,
        )
    elif kind.startswith("optimum"):
        from optimum.exporters.onnx import main_export

        with tempfile.TemporaryDirectory() as saved, tempfile.TemporaryDirectory() as out:
            model.save_pretrained(saved)
            task = "text-generation-with-past" if kind == "optimum_past" else "text-generation"
            main_export(saved, out, task=task, no_post_process=True)
            os.replace(os.path.join(out, "model.onnx"), path)
    else:
        raise ValueError(kind)


def ort_last_logits(path, prompt, model):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.array([prompt], dtype=np.int64)}
    names = [i.name for i in session.get_inputs()]
    past_len = 0
    if any(n.startswith("past_key_values.") for n in names):
        heads, head_dim, _ = kv_shape(model)
        for n in names:
            if n.startswith("past_key_values."):
                feeds[n] = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
    feeds["attention_mask"] = np.ones((1, past_len + len(prompt)), dtype=np.int64)
    if "position_ids" in names:
        feeds["position_ids"] = np.arange(len(prompt), dtype=np.int64)[None]
    return session.run(["logits"], feeds)[0][0, -1]


KINDS = {
    "torch": ["legacy", "dynamo18", "dynamo20", "legacy_past"],
    "optimum": ["optimum", "optimum_past"],
}


def main(out_dir, exporter):
    torch.manual_seed(0)
    for arch, model in architectures():
        model.eval()
        for kind in KINDS[exporter]:
            directory = os.path.join(out_dir, f"{arch}_{kind}")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, "model.onnx")
            with torch.no_grad():
                export(model, kind, path)
            model.config.to_json_file(os.path.join(directory, "config.json"))
            cases = []
            for prompt in PROMPTS:
                ids = torch.tensor([prompt])
                with torch.no_grad():
                    theirs = model(input_ids=ids, use_cache=False).logits[0, -1].numpy()
                    greedy = model.generate(
                        ids, attention_mask=torch.ones_like(ids), max_new_tokens=GREEDY_TOKENS,
                        min_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=0,
                    )[0, len(prompt):].tolist()
                ort_logits = ort_last_logits(path, prompt, model)
                gap = np.sort(theirs)[-1] - np.sort(theirs)[-2]
                cases.append({
                    "ids": prompt,
                    "torch_last_logits": theirs.tolist(),
                    "onnxruntime_last_logits": ort_logits.tolist(),
                    "greedy": greedy,
                })
                print(f"{arch}_{kind} {prompt[:4]}: |torch - ort| = {np.abs(theirs - ort_logits).max():.2e}, top-2 gap {gap:.3f}")
            with open(os.path.join(directory, "reference.json"), "w") as f:
                json.dump({"torch": torch.__version__, "onnxruntime": ort.__version__, "prompts": cases}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
