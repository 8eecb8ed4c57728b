"""Inference speed of one ConvLSTM2D layer: torch eager vs the exported ONNX file in onnxruntime
and in OpenVINO (float32, and bfloat16 where the CPU has it), on the four configurations of
``bench.py`` (imported from there).

Each configuration's layer is exported once with :func:`convlstm.onnx.export` (time and batch
dynamic: one ``Scan`` per layer) and the same file is timed in each runtime on the same input;
the table also gives each runtime's largest difference from torch, relative to the output's
scale. OpenVINO is compiled for CPU with ``INFERENCE_PRECISION_HINT`` ``f32`` (and ``bf16``
when ``lscpu`` lists ``avx512_bf16`` or ``amx_bf16``). All runtimes use ``--threads`` threads
(default: every core). Inputs are float32 ``(B, T, rows, cols, Cin)``, ``padding='same'``,
``return_sequences=True``; the times are medians of calls after a warm-up call.

Usage (6 s of timed calls per runtime and configuration by default, plus exports and warm-ups)::

    python benchmarks/inference.py                    # markdown table to stdout
    python benchmarks/inference.py --configs 0 1 --budget 2 --json inference.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from bench import CONFIG_NAMES, CONFIGS, machine  # noqa: E402  (the configurations live there)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return set()
    for line in out.splitlines():
        if line.startswith("Flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def timed(fn, budget_s: float, max_reps: int = 50) -> float:
    """Median seconds of ``fn()`` after one warm-up call, repeated within ``budget_s`` (at least 3)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_config(ci: int, budget_s: float, bf16: bool, workdir: Path, threads: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    import openvino as ov
    import torch

    import convlstm
    import convlstm.onnx

    b, t, rows, cols, cin, f, k = CONFIGS[ci]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = convlstm.ConvLSTM2D(f, k, padding="same", return_sequences=True, in_channels=cin).eval()
    x = torch.randn(b, t, rows, cols, cin)
    path = convlstm.onnx.export(layer, workdir / f"config{ci}.onnx", x[:1, :2], input_names=["x"])
    with torch.no_grad():
        ref = layer(x).numpy()
    scale = float(np.abs(ref).max())
    feed = x.numpy()
    rows_out = {}

    def torch_call():
        with torch.no_grad():
            return layer(x)

    rows_out["torch eager"] = (timed(torch_call, budget_s), 0.0)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": feed})[0]
    rows_out["onnxruntime"] = (timed(lambda: sess.run(None, {"x": feed}), budget_s),
                               float(np.abs(got - ref).max()) / scale)
    core = ov.Core()
    for precision in (["f32", "bf16"] if bf16 else ["f32"]):
        compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                         "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        got = request.infer([feed])[compiled.outputs[0]]
        rows_out[f"OpenVINO {precision}"] = (timed(lambda: request.infer([feed]), budget_s),
                                             float(np.abs(got - ref).max()) / scale)
    return {"config": list(CONFIGS[ci]), "name": CONFIG_NAMES[ci],
            "rows": {k: {"ms": 1e3 * v[0], "max_rel_diff": v[1]} for k, v in rows_out.items()}}


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores ({result['threads']} threads), torch {m['torch']}, onnxruntime {result['onnxruntime']}, "
             f"OpenVINO {result['openvino']}; bf16 flags: {', '.join(result['bf16_flags']) or 'none'}; {m['date']}",
             f"Command: `{m['command']}`", "",
             "| configuration (B, T, rows, cols, Cin, F, k) | runtime | ms per call | vs torch eager | "
             "max diff / scale |", "|---|---|---:|---:|---:|"]
    for entry in result["configs"]:
        base = entry["rows"]["torch eager"]["ms"]
        for name, row in entry["rows"].items():
            lines.append(f"| {entry['name']} {tuple(entry['config'])} | {name} | {row['ms']:.1f} | "
                         f"{base / row['ms']:.2f}x | {row['max_rel_diff']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, nargs="+", default=list(range(len(CONFIGS))),
                   help="indices into bench.CONFIGS (default: all four)")
    p.add_argument("--budget", type=float, default=6.0, help="seconds of timed calls per runtime and configuration")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every runtime (default: all cores)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    import onnxruntime
    import openvino

    flags = sorted(cpu_flags() & set(BF16_FLAGS))
    result = {"machine": machine(), "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
              "bf16_flags": flags, "threads": args.threads, "configs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for ci in args.configs:
            result["configs"].append(run_config(ci, args.budget, bool(flags), Path(tmp), args.threads))
            print(f"config {ci + 1} done", file=sys.stderr, flush=True)
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
