#!/usr/bin/env python3
"""Writes ONNX Runtime's outputs for the bundled models on their sample inputs, as JSON.

    python scripts/ort_reference.py OUT.json

verity-infer's `onnxruntime_reference` test compares its own outputs with these (test-only;
onnxruntime comes from PyPI into the test virtualenv).
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")


def run(model, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(MODELS, model), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, feeds)
    return {n: {"shape": list(o.shape), "data": o.ravel().tolist()} for n, o in zip(names, outputs)}


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
    }
    with open(sys.argv[1], "w") as f:
        json.dump(reference, f)
    print(f"wrote ONNX Runtime {ort.__version__} reference outputs to {sys.argv[1]}")


if __name__ == "__main__":
    main()
