#!/usr/bin/env python3
"""onnxruntime's side of verity-lm's SmolLM2 benchmark: a process that times one case at a time.

    python scripts/ort_bench.py MODEL_DIR THREADS

The benchmark (crates/verity-lm/benches/smollm2.rs) starts one per model and thread count and
writes a line per measurement, `CASE ITERATIONS`, where CASE is `prefill-N` (one pass over N
prompt tokens, no past) or `decode-N` (one token after a cache of N positions); this process
answers with the seconds those iterations took, so criterion times onnxruntime the way it
times the engine, in the same run. Inputs, and the cache a decode step starts from, are made
before the clock starts. onnxruntime runs with its default settings (all graph optimizations,
its fastest kernels) on THREADS intra-op threads.
"""
import os
import sys
import time

import numpy as np
import onnxruntime as ort


def session(model_dir, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])


def prompt(n):
    """The benchmark's token ids: the same formula as the Rust side's `prompt`."""
    return np.array([[(i * 7919 + 13) % 40000 + 100 for i in range(n)]], dtype=np.int64)


def feeds(sess, ids, past_len, past):
    """The graph's inputs for `ids` after `past_len` cached positions."""
    total = past_len + ids.shape[1]
    out = {}
    pasts = iter(past)
    for spec in sess.get_inputs():
        if spec.name == "input_ids":
            out[spec.name] = ids
        elif spec.name == "attention_mask":
            out[spec.name] = np.ones((1, total), dtype=np.int64)
        elif spec.name == "position_ids":
            out[spec.name] = np.arange(past_len, total, dtype=np.int64)[None, :]
        elif spec.name.startswith("past_key_values."):
            cached = next(pasts)
            out[spec.name] = cached if cached is not None else np.zeros((1, spec.shape[1], 0, spec.shape[3]), np.float32)
        else:
            raise SystemExit(f"ort_bench: unexpected input {spec.name}")
    return out


def prepare(sess, case):
    kind, n = case.split("-")
    n = int(n)
    cache_inputs = [s for s in sess.get_inputs() if s.name.startswith("past_key_values.")]
    outputs = [o.name for o in sess.get_outputs()]
    if kind == "prefill":
        return feeds(sess, prompt(n), 0, [None] * len(cache_inputs))
    if kind == "decode":
        ids = prompt(n + 1)
        first = sess.run(outputs, feeds(sess, ids[:, :n], 0, [None] * len(cache_inputs)))
        present = {name: value for name, value in zip(outputs, first)}
        past = [present[s.name.replace("past_key_values.", "present.")] for s in cache_inputs]
        return feeds(sess, ids[:, n:], n, past)
    raise SystemExit(f"ort_bench: unknown case {case}")


def main():
    model_dir, threads = sys.argv[1], int(sys.argv[2])
    sess = session(model_dir, threads)
    outputs = [o.name for o in sess.get_outputs()]
    prepared = {}
    print("ready", flush=True)
    for line in sys.stdin:
        case, iters = line.split()
        if case not in prepared:
            prepared[case] = prepare(sess, case)
        inputs = prepared[case]
        start = time.perf_counter()
        for _ in range(int(iters)):
            sess.run(outputs, inputs)
        print(f"{time.perf_counter() - start:.9f}", flush=True)


if __name__ == "__main__":
    main()
