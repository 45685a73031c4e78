"""ezkl on a Verity model, for the comparison in `scripts/zk-bench` (test-only; ezkl is a PyPI
package installed by that script, never needed to build or run Verity).

Runs ezkl's whole pipeline on one ONNX model and one input, each step in its own process so that
each peak memory is its own: settings calibrated for "resources", the circuit compiled, a KZG
SRS generated locally (nothing can be downloaded), keys, a witness, a proof and its check.
Prints one JSON object: seconds per step, peak resident memory per step, sizes in bytes.

    python scripts/ezkl_bench.py MODEL.onnx INPUT.json WORKDIR
"""
import json
import os
import subprocess
import sys
import time


def step(name, workdir):
    """Runs one step in a child process under GNU time; returns (seconds, peak RSS in bytes)."""
    peak_file = os.path.join(workdir, f"{name}.peak")
    started = time.perf_counter()
    child = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", peak_file, sys.executable, __file__, "--step", name, workdir],
        check=False,
    )
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"ezkl step {name} failed ({child.returncode})")
    peak_kib = int(open(peak_file).read().split()[-1])
    return elapsed, peak_kib * 1024


def run_step(name, w):
    import asyncio

    import ezkl

    p = lambda f: os.path.join(w, f)
    if name == "settings":
        args = ezkl.PyRunArgs()
        args.input_visibility = "private"
        args.output_visibility = "public"
        args.param_visibility = "fixed"
        assert ezkl.gen_settings(p("model.onnx"), p("settings.json"), py_run_args=args)
        ezkl.calibrate_settings(p("input.json"), p("model.onnx"), p("settings.json"), "resources")
    elif name == "compile":
        assert ezkl.compile_circuit(p("model.onnx"), p("model.compiled"), p("settings.json"))
    elif name == "srs":
        logrows = json.load(open(p("settings.json")))["run_args"]["logrows"]
        ezkl.gen_srs(p("kzg.srs"), logrows)
    elif name == "setup":
        assert ezkl.setup(p("model.compiled"), p("vk.key"), p("pk.key"), p("kzg.srs"))
    elif name == "witness":
        r = ezkl.gen_witness(p("input.json"), p("model.compiled"), p("witness.json"))
        if asyncio.iscoroutine(r):
            asyncio.run(r)
    elif name == "prove":
        ezkl.prove(p("witness.json"), p("model.compiled"), p("pk.key"), p("proof.json"), p("kzg.srs"))
    elif name == "verify":
        assert ezkl.verify(p("proof.json"), p("settings.json"), p("vk.key"), p("kzg.srs"))
    else:
        raise SystemExit(f"unknown step {name}")


def main():
    if sys.argv[1] == "--step":
        run_step(sys.argv[2], sys.argv[3])
        return
    model, input_file, workdir = sys.argv[1:4]
    os.makedirs(workdir, exist_ok=True)
    # ezkl needs fixed shapes: one sample, as Verity's circuit is.
    import onnx

    graph_model = onnx.load(model)
    for value in list(graph_model.graph.input) + list(graph_model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_value = 1
    onnx.save(graph_model, os.path.join(workdir, "model.onnx"))
    pixels = json.load(open(input_file))
    flat = [v for row in pixels for v in row]
    json.dump({"input_data": [flat]}, open(os.path.join(workdir, "input.json"), "w"))
    result = {"seconds": {}, "peak_rss_bytes": {}}
    for name in ["settings", "compile", "srs", "setup", "witness", "prove", "verify"]:
        seconds, peak = step(name, workdir)
        result["seconds"][name] = round(seconds, 3)
        result["peak_rss_bytes"][name] = peak
    size = lambda f: os.path.getsize(os.path.join(workdir, f))
    proof = json.load(open(os.path.join(workdir, "proof.json")))
    result["proof_bytes"] = len(bytes.fromhex(proof["proof"].removeprefix("0x"))) if isinstance(proof.get("proof"), str) else size("proof.json")
    result["proving_key_bytes"] = size("pk.key")
    result["verifying_key_bytes"] = size("vk.key")
    result["logrows"] = json.load(open(os.path.join(workdir, "settings.json")))["run_args"]["logrows"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
