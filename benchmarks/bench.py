"""Side-by-side ConvLSTM benchmark: this library (each path and the automatic choice), a plain
PyTorch ConvLSTM (``plain_convlstm.py``), Keras 3 with the torch backend and, with
``--keras-tf-python``, Keras 3 on TensorFlow (``keras-tf``).

``keras-tf`` runs in the Python given by ``--keras-tf-python`` (an environment with the
``bench-tf`` extra, ``tensorflow-cpu`` and ``keras``, and ``torch==2.13.0`` for the harness), each
step as a ``tf.function`` (graph mode, no XLA: what ``model.fit`` / ``model.predict`` run); a
training step is ``tf.GradientTape``, the same loss and ``keras.optimizers.SGD``.

Every (implementation, configuration, mode) runs in its own Python process so that imports,
allocator state and peak memory do not leak between them. The dense-matmul rate of the machine
is measured in its own process at the start of the run and used as the practical limit.

Usage::

    python benchmarks/bench.py                        # everything, table to stdout + results JSON
    python benchmarks/bench.py --configs 0 --impls plain ours:auto --modes infer
    python benchmarks/bench.py --render results.json  # only print the markdown table again
    python benchmarks/bench.py --checkpoint           # checkpointing through time at T=64
    python benchmarks/bench.py --precision-study      # float32 vs bfloat16 autocast (see below)
    python benchmarks/bench.py --impls ours:auto base:auto --baseline-src /old/checkout/src  # before/after

An implementation name may end in ``@bf16``: the step then runs under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (ours and plain), or, for ``keras-torch``, with
``keras.mixed_precision.set_global_policy("mixed_bfloat16")``. ``base:<path>`` is ``ours:<path>``
imported from ``--baseline-src`` (another checkout's ``src``), for before/after comparisons in
one interleaved run. Every table is printed with the CPU model and its bfloat16 capabilities
(the ``avx512_bf16`` and ``amx_bf16`` flags of ``/proc/cpuinfo``).

Configurations are (B, T, rows, cols, Cin, F, k), ``padding='same'``, ``return_sequences=True``,
float32 on CPU. Modes: ``infer`` (eval, ``torch.no_grad``) and ``train`` (forward, the mean of
the outputs as loss, backward, one SGD step; a loss whose backward allocates nothing, so that
the peak memory is the layer's own and not, say, three output-sized temporaries of a squared
loss).

FLOP count (convolutions only, multiply and add counted as two)::

    forward = 2 * B * T * rows * cols * 4F * k^2 * (Cin + F);   train step = 3 * forward

(backward costs two convolutions per forward convolution: gradient of the input and of the
weight). Peak memory is the growth of the process's peak resident set size over its size just
before the first call (``ru_maxrss`` minus the resident size after building the model and the
input), so it counts activations, gradients and workspace, not the Python/torch runtime. It is
taken from a second, untimed process run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed
tensors leave the resident set at once (with glibc's defaults the resident size also holds freed,
cached heap memory, which the timed process's ``peak_mb_rss`` shows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CONFIGS = [
    (4, 10, 64, 64, 16, 32, 3),
    (16, 10, 16, 16, 16, 128, 5),
    (8, 12, 32, 32, 2, 64, 3),
    (2, 20, 128, 128, 1, 64, 5),
]
KERAS_TF_PYTHON = None  # --keras-tf-python: the interpreter that runs the "keras-tf" implementation
CONFIG_NAMES = ["video 64x64", "Moving MNIST 16x16 (4x4 patches)", "TaxiBJ-like 32x32", "radar 128x128"]

DEFAULT_IMPLS = ["ours:auto", "ours:reference", "ours:fused", "ours:concat", "ours:nnpack", "ours:fft", "plain",
                 "keras-torch"]
MODES = ["infer", "train"]

# (implementation, configuration index) pairs not run, with the reason shown in the table
SKIPPED = {
    ("ours:fft", 3): "not run (whole-image transforms at 132x132: a 1.2 GB kernel spectrum; "
                     "'auto' sends this configuration to nnpack)",
}


def conv_flops(cfg) -> float:
    b, t, rows, cols, cin, f, k = cfg
    return 2.0 * b * t * rows * cols * 4 * f * k * k * (cin + f)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------------------- workers
def _build(impl: str, cfg, seq_len=None):
    """Return (model, params, make_input, call) for one implementation (``@bf16``: under bfloat16
    autocast, or Keras's ``mixed_bfloat16`` policy)."""
    import contextlib

    import torch

    impl, _, precision = impl.partition("@")
    if precision not in ("", "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r} in {impl}@{precision} (allowed: fp32, bf16)")
    if precision == "bf16" and impl == "keras-torch":
        os.environ["KERAS_BACKEND"] = "torch"
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model, params, x, call = _build_fp32(impl, cfg, seq_len)
    if precision != "bf16" or impl == "keras-torch":
        return model, params, x, call

    def autocast_call(m, x, train):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return call(m, x, train)

    return model, params, x, autocast_call


def _build_fp32(impl: str, cfg, seq_len=None):
    import torch

    b, t, rows, cols, cin, f, k = cfg
    if seq_len is not None:
        t = seq_len
    torch.manual_seed(0)
    if impl == "plain":
        sys.path.insert(0, str(HERE))
        from plain_convlstm import PlainConvLSTM

        model = PlainConvLSTM(cin, f, k)
        x = torch.randn(b, t, cin, rows, cols)
        return model, list(model.parameters()), x, lambda m, x, train: m(x)
    if impl == "keras-torch":
        os.environ["KERAS_BACKEND"] = "torch"
        import keras

        model = keras.layers.ConvLSTM2D(f, k, padding="same", return_sequences=True)
        x = torch.randn(b, t, rows, cols, cin)
        with torch.no_grad():
            model(x[:1, :1])  # build
        params = [w.value for w in model.trainable_weights]
        return model, params, x, lambda m, x, train: m(x, training=train)
    if impl.startswith("ours") or impl.startswith("base"):  # base: imported from --baseline-src
        import convlstm

        path = impl.split(":", 1)[1] if ":" in impl else "auto"
        kwargs = {}
        if path.startswith("checkpoint"):  # "checkpoint" or "checkpoint8" (chunk length)
            chunk = path[len("checkpoint"):]
            kwargs["checkpoint_chunk"] = int(chunk) if chunk else True
            path = "auto"
        model = convlstm.ConvLSTM2D(f, k, padding="same", return_sequences=True, in_channels=cin,
                                    implementation=path, **kwargs)
        x = torch.randn(b, t, rows, cols, cin)
        return model, list(model.parameters()), x, lambda m, x, train: m(x)
    raise ValueError(f"unknown implementation {impl!r}")


def _keras_tf_step(cfg, mode: str, seq_len=None):
    """Keras 3 on TensorFlow: one ``tf.function`` step (inference, or forward + backward + SGD)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import tensorflow as tf

    b, t, rows, cols, cin, f, k = cfg
    t = seq_len or t
    keras.utils.set_random_seed(0)
    model = keras.layers.ConvLSTM2D(f, k, padding="same", return_sequences=True)
    x = tf.random.normal((b, t, rows, cols, cin))
    model(x[:1, :1])  # build
    opt = keras.optimizers.SGD(1e-3)

    @tf.function
    def infer():
        return model(x, training=False)

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_sum(y) / tf.cast(tf.size(y), y.dtype)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        return loss

    step = train if mode == "train" else infer

    def once():
        step().numpy()  # .numpy(): wait for the result

    once.model = model
    return once


def _step_fn(impl: str, cfg, mode: str, seq_len=None):
    """Build one implementation and return the function that runs one measured step: inference
    under no_grad, or forward + backward + SGD step."""
    if impl == "keras-tf":
        return _keras_tf_step(cfg, mode, seq_len)
    import torch

    model, params, x, call = _build(impl, cfg, seq_len)
    train = mode == "train"
    if hasattr(model, "train"):
        model.train(train)
    opt = torch.optim.SGD(params, lr=1e-3) if train else None

    def once():
        if train:
            for p in params:
                p.grad = None
            y = call(model, x, True)
            loss = y.float().sum() / y.numel()  # its backward allocates nothing: the peak is the layer's own
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                call(model, x, False)

    once.model = model  # for the path that ran (ours: ``last_path``)
    return once


def worker(impl: str, cfg, mode: str, reps: int, budget_s: float, seq_len=None) -> dict:
    import torch

    train = mode == "train"
    once = _step_fn(impl, cfg, mode, seq_len)
    base = _rss_bytes()
    t0 = time.perf_counter()
    once()  # warm-up (also builds plans / compiles)
    first = time.perf_counter() - t0
    if impl.endswith(":compiled") or "compile" in impl:
        once()
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < reps and (len(times) < min(3, reps) or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    peak = _peak_rss_bytes() - base
    if not times:  # memory-only run
        return {"impl": impl, "peak_mb": peak / 2**20, "first_s": first}
    flops = conv_flops(cfg if seq_len is None else cfg[:1] + (seq_len,) + cfg[2:]) * (3 if train else 1)
    med = statistics.median(times)
    return {"impl": impl, "config": list(cfg), "seq_len": seq_len, "mode": mode, "median_s": med,
            "min_s": min(times), "times": times, "first_s": first, "gflops": flops / med / 1e9,
            "peak_mb": peak / 2**20, "threads": torch.get_num_threads()}


def serve_worker(impl: str, ci: int, mode: str, seq_len=None) -> None:
    """A persistent worker: builds one implementation, then runs one step per ``run`` line read
    from stdin and answers the elapsed seconds (the driver alternates the workers)."""
    once = _step_fn(impl, CONFIGS[ci], mode, seq_len)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        once()
        print(json.dumps({"s": time.perf_counter() - t0, "path": getattr(once.model, "last_path", None)}), flush=True)


def matmul_worker(n: int = 2048, reps: int = 15) -> dict:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    rates = sorted(2 * n**3 / t / 1e9 for t in times)
    return {"impl": "matmul", "n": n, "gflops_median": statistics.median(rates), "gflops_max": rates[-1],
            "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------- driver
def _spawn(args: list, timeout: float, exact_memory: bool = False) -> dict:
    env = _env(args[1] if len(args) > 1 and args[0] == "run" else "")
    if exact_memory:
        # every allocation above 64 KiB is its own mmap, returned to the system when freed, so the
        # resident size follows the live tensors (glibc otherwise keeps freed heap memory)
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [_python(args[1] if len(args) > 1 and args[0] == "run" else ""), str(Path(__file__).resolve()),
           "--worker"] + args
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(lines[-1])


def cpu_bf16_flags() -> list:
    """The CPU's bfloat16 flags (avx512_bf16, amx_bf16, amx_tile), by the library's own reader."""
    sys.path.insert(0, str(ROOT / "src"))
    from convlstm._ops import cpu_bf16_flags as flags

    return flags()


def machine() -> dict:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "bf16_flags": cpu_bf16_flags(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv)}


def machine_line(m: dict) -> str:
    """The CPU, its bfloat16 capabilities and the software, for the line beside every table."""
    flags = m.get("bf16_flags")
    caps = "bf16 flags: " + (", ".join(flags) if flags else "none (no avx512_bf16, no amx_bf16)") \
        if flags is not None else "bf16 flags: not recorded"
    return f"Machine: {m['cpu']}, {m['cores']} cores ({caps}); torch {m['torch']}, Python {m['python']}; {m['date']}."


BASELINE_SRC = None  # --baseline-src: where the "base:" implementations import convlstm from


def _env(impl: str = "") -> dict:
    src = BASELINE_SRC if impl.startswith("base") else str(ROOT / "src")
    if impl.startswith("base") and not src:
        raise ValueError(f"{impl} needs --baseline-src")
    backend = "tensorflow" if impl == "keras-tf" else "torch"
    return dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _python(impl: str) -> str:
    """The interpreter of ``impl``'s worker: ``--keras-tf-python`` for ``keras-tf``."""
    if impl != "keras-tf":
        return sys.executable
    if not KERAS_TF_PYTHON:
        raise ValueError("keras-tf needs --keras-tf-python: a Python with tensorflow-cpu and keras (the bench-tf "
                         "extra) and torch==2.13.0")
    return KERAS_TF_PYTHON


def run_interleaved(impls, ci: int, mode: str, reps: int, budget: float, paths: Optional[dict] = None) -> dict:
    """Time ``impls`` on one configuration, each in its own persistent process, one repetition
    of each in turn (after one warm-up each), so that other jobs on a shared machine slow them
    alike. Returns ``{impl: [seconds, ...]}`` (or ``{"error": ...}`` per failed impl); ``paths``,
    when given, receives the path each of ours ran (``last_path``)."""
    procs = {}
    for impl in impls:
        cmd = [_python(impl), str(Path(__file__).resolve()), "--worker", "serve", impl, str(ci), mode]
        procs[impl] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=_env(impl))
    times = {impl: [] for impl in impls}
    errors = {}

    def step(impl):
        p = procs[impl]
        try:
            p.stdin.write("run\n")
            p.stdin.flush()
            while True:
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError((p.stderr.read().strip().splitlines() or ["died"])[-1][:300])
                if line.startswith("{"):
                    answer = json.loads(line)
                    if paths is not None and answer.get("path"):
                        paths[impl] = answer["path"]
                    return answer["s"]
        except (OSError, RuntimeError, ValueError) as err:
            errors[impl] = str(err)
            return None

    for impl in impls:  # wait until built, then warm up
        p = procs[impl]
        while True:
            line = p.stdout.readline()
            if not line or line.startswith("ready"):
                break
        if step(impl) is None:
            continue
        if impl.endswith("compile"):
            step(impl)
    deadline = time.perf_counter() + budget
    for r in range(reps):
        if r >= 3 and time.perf_counter() > deadline:
            break
        for impl in impls:
            if impl in errors:
                continue
            t = step(impl)
            if t is not None:
                times[impl].append(t)
    for impl, p in procs.items():
        try:
            p.stdin.close()
        except OSError:
            pass
        p.wait(timeout=60)
    return {impl: ({"error": errors[impl]} if impl in errors else times[impl]) for impl in impls}


def run_all(args) -> dict:
    result = {"machine": machine(), "matmul": None, "runs": []}
    result["matmul"] = _spawn(["matmul"], 300)
    print(f"# matmul: {result['matmul']}", flush=True)
    for ci in args.configs:
        cfg = CONFIGS[ci]
        for mode in args.modes:
            impls = [impl for impl in args.impls if (impl, ci) not in SKIPPED]
            timed = run_interleaved(impls, ci, mode, args.reps, args.budget)
            timed.update({impl: {"error": SKIPPED[(impl, ci)]} for impl in args.impls if (impl, ci) in SKIPPED})
            for impl in args.impls:
                t = timed[impl]
                if isinstance(t, dict):
                    r = dict(t)
                else:
                    flops = conv_flops(cfg) * (3 if mode == "train" else 1)
                    med = statistics.median(t)
                    r = {"median_s": med, "min_s": min(t), "times": t, "gflops": flops / med / 1e9}
                    if not args.no_memory_pass:
                        m = _spawn(["run", impl, str(ci), mode, "0", "0"], args.timeout, exact_memory=True)
                        r["peak_mb"] = m.get("peak_mb", float("nan"))
                r.update({"impl": impl, "config": list(cfg), "mode": mode, "config_index": ci})
                result["runs"].append(r)
                msg = r.get("error") or (f"{r['median_s'] * 1e3:9.1f} ms (min {r['min_s'] * 1e3:9.1f}) "
                                         f"{r['gflops']:6.1f} GF/s {r.get('peak_mb', float('nan')):7.1f} MB")
                print(f"{ci} {mode:5s} {impl:18s} {msg}", flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(result, indent=1))
    result["matmul_end"] = _spawn(["matmul"], 300)
    print(f"# matmul at the end: {result['matmul_end']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def alternate_medians_ms(runs: dict, reps: int) -> dict:
    """Run each of ``runs`` (name -> function) once to warm up, then ``reps`` times in turn, one
    call of each per round (so that a busy machine slows them alike); median milliseconds per name."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) * 1e3 for name, v in times.items()}


def interleaved_worker(impls, ci: int, mode: str, reps: int, seq_len=None) -> dict:
    """Time several implementations in one process, alternating them repetition by repetition,
    so that a machine shared with other jobs slows them alike (for time ratios, not memory)."""
    import torch

    built = {impl: _build(impl, CONFIGS[ci], seq_len) for impl in impls}
    train = mode == "train"

    def once(impl):
        model, params, x, call = built[impl]
        if train:
            for p in params:
                p.grad = None
            y = call(model, x, True)
            (y.sum() / y.numel()).backward()
        else:
            with torch.no_grad():
                call(model, x, False)

    for impl in impls:
        once(impl)
    times = {impl: [] for impl in impls}
    for _ in range(reps):
        for impl in impls:
            t0 = time.perf_counter()
            once(impl)
            times[impl].append(time.perf_counter() - t0)
    return {"impls": impls, "config_index": ci, "mode": mode, "seq_len": seq_len, "times": times,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "min_s": {k: min(v) for k, v in times.items()}}


def checkpoint_study(args) -> dict:
    """Peak memory and time of a training step at T=64 (first configuration's sizes)."""
    result = {"machine": machine(), "seq_len": args.seq_len, "runs": []}
    for impl in args.impls:
        r = _spawn(["run", impl, "0", "train", str(args.reps), str(args.budget), str(args.seq_len)], args.timeout)
        if "error" not in r and not args.no_memory_pass:
            m = _spawn(["run", impl, "0", "train", "0", "0", str(args.seq_len)], args.timeout, exact_memory=True)
            r["peak_mb_rss"], r["peak_mb"] = r["peak_mb"], m.get("peak_mb", float("nan"))
        r.update({"impl": impl})
        result["runs"].append(r)
        msg = r.get("error") or f"{r['median_s'] * 1e3:9.1f} ms {r['peak_mb']:8.1f} MB"
        print(f"T={args.seq_len} train {impl:22s} {msg}", flush=True)
    # time ratio from one process, the implementations alternating
    r = _spawn(["interleaved", str(args.seq_len), str(args.reps)] + list(args.impls), args.timeout * 2)
    result["interleaved"] = r
    if "error" not in r:
        base = args.impls[0]
        for impl in args.impls:
            print(f"interleaved T={args.seq_len} train {impl:22s} median {r['median_s'][impl] * 1e3:9.1f} ms "
                  f"min {r['min_s'][impl] * 1e3:9.1f} ms  time ratio to {base}: "
                  f"{r['median_s'][impl] / r['median_s'][base]:.2f} (median) "
                  f"{r['min_s'][impl] / r['min_s'][base]:.2f} (min)", flush=True)
    else:
        print(f"interleaved: {r['error']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


PRECISION_IMPLS = ["ours:auto", "plain", "keras-torch"]


def precision_study(args) -> dict:
    """Each configuration and mode: ours, plain PyTorch and Keras 3 (torch backend), each in float32
    and in bfloat16 (autocast; Keras's ``mixed_bfloat16`` policy), the six alternating repetition
    by repetition in their own processes (:func:`run_interleaved`); medians."""
    impls = [f"{impl}@{p}" for impl in (args.impls or PRECISION_IMPLS) for p in ("fp32", "bf16")]
    result = {"machine": machine(), "study": "precision", "impls": impls, "runs": []}
    print(machine_line(result["machine"]), flush=True)
    for ci in args.configs:
        for mode in args.modes:
            paths = {}
            timed = run_interleaved(impls, ci, mode, args.reps, args.budget, paths)
            for impl in impls:
                t = timed[impl]
                r = dict(t) if isinstance(t, dict) else {"median_s": statistics.median(t), "min_s": min(t), "times": t}
                r.update({"impl": impl, "config": list(CONFIGS[ci]), "mode": mode, "config_index": ci,
                          "path": paths.get(impl)})
                result["runs"].append(r)
                msg = r.get("error") or (f"{r['median_s'] * 1e3:9.1f} ms (min {r['min_s'] * 1e3:9.1f}, {len(t)} reps)"
                                         + (f" ran {r['path']}" if r["path"] else ""))
                print(f"{ci} {mode:5s} {impl:18s} {msg}", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def render_precision(result: dict) -> str:
    """One table per configuration: median ms per implementation and precision, and the ratios the
    targets name (ours vs plain and vs Keras under the same precision; ours bf16 vs ours float32)."""
    m = result["machine"]
    lines = [machine_line(m), f"Command: `{m['command']}`; {m.get('threads', '?')} threads.", ""]
    by = {(r["config_index"], r["mode"], r["impl"]): r for r in result["runs"]}

    def med(ci, mode, impl):
        r = by.get((ci, mode, impl), {})
        return r.get("median_s")

    for ci in sorted({r["config_index"] for r in result["runs"]}):
        lines.append(f"### Config {ci + 1}: {tuple(CONFIGS[ci])} - {CONFIG_NAMES[ci]}")
        lines.append(machine_line(m))
        lines.append("")
        lines.append("| mode | precision | ours ms | plain ms | keras-torch ms | ours vs plain | ours vs keras "
                     "| ours bf16 vs ours fp32 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for mode in MODES:
            for p in ("fp32", "bf16"):
                names = [f"{i}@{p}" for i in PRECISION_IMPLS]
                if not any((ci, mode, n) in by for n in names):
                    continue
                ours, plain, keras = (med(ci, mode, n) for n in names)
                cells = [f"{v * 1e3:.1f}" if v else by.get((ci, mode, n), {}).get("error", "-")[:60]
                         for v, n in zip((ours, plain, keras), names)]
                ran = by.get((ci, mode, names[0]), {}).get("path")
                if ours and ran:  # the path "auto" chose
                    cells[0] += f" ({ran})"

                def ratio(a, b):
                    return f"{b / a:.2f}x" if a and b else "-"

                speedup = ratio(ours, med(ci, mode, "ours:auto@fp32")) if p == "bf16" else ""
                lines.append(f"| {mode} | {p} | {' | '.join(cells)} | {ratio(ours, plain)} "
                             f"| {ratio(ours, keras)} | {speedup} |")
        lines.append("")
    return "\n".join(lines)


def render(result: dict) -> str:
    if result.get("study") == "precision":
        return render_precision(result)
    mm = result.get("matmul") or {}
    peak = mm.get("gflops_median")
    lines = []
    m = result["machine"]
    lines.append(machine_line(m))
    lines.append(f"Command: `{m['command']}`. Dense matmul (2048^2 float32, median): "
                 f"{peak:.1f} GFLOP/s." if peak else "")
    lines.append("")
    by_cfg = {}
    for r in result["runs"]:
        by_cfg.setdefault(r["config_index"], []).append(r)
    for ci, runs in sorted(by_cfg.items()):
        cfg = CONFIGS[ci]
        lines.append(f"### Config {ci + 1}: (B, T, rows, cols, Cin, F, k) = {cfg} - {CONFIG_NAMES[ci]}")
        lines.append(machine_line(m))
        lines.append(f"Forward conv FLOPs: {conv_flops(cfg) / 1e9:.2f} G (train step: 3x).")
        lines.append("")
        lines.append("| implementation | inference ms | train-step ms | infer GFLOP/s | infer % matmul | train GFLOP/s "
                     "| train % matmul | infer peak MB | train peak MB | infer speed-up vs fastest other | "
                     "train speed-up vs fastest other |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        table = {}
        for r in runs:
            table.setdefault(r["impl"], {})[r["mode"]] = r
        others = {mode: min((v[mode]["median_s"] for k, v in table.items()
                             if not k.startswith("ours") and mode in v and "median_s" in v[mode]), default=None)
                  for mode in MODES}
        for impl, modes in table.items():
            cells = [impl]
            for key in ("ms", "gf", "pct", "mb"):
                pass
            inf, tr = modes.get("infer", {}), modes.get("train", {})

            def ms(r):
                return f"{r['median_s'] * 1e3:.1f}" if "median_s" in r else r.get("error", "-")

            def gf(r):
                return f"{r['gflops']:.1f}" if "gflops" in r else "-"

            def pct(r):
                return f"{100 * r['gflops'] / peak:.0f}%" if "gflops" in r and peak else "-"

            def mb(r):
                return f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"

            def ratio(r, mode):
                if "median_s" not in r or not others[mode]:
                    return "-"
                return f"{others[mode] / r['median_s']:.2f}x"

            cells += [ms(inf), ms(tr), gf(inf), pct(inf), gf(tr), pct(tr), mb(inf), mb(tr),
                      ratio(inf, "infer"), ratio(tr, "train")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--configs", type=int, nargs="+", default=list(range(len(CONFIGS))))
    p.add_argument("--impls", nargs="+", default=None)
    p.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    p.add_argument("--reps", type=int, default=7, help="timed repetitions (at least 3)")
    p.add_argument("--budget", type=float, default=20.0, help="seconds after which to stop adding repetitions")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker process")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--render", default=None, help="print the markdown table of a results JSON")
    p.add_argument("--checkpoint", action="store_true", help="checkpointing-through-time study")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--precision-study", action="store_true",
                   help="float32 and bfloat16 autocast: ours, plain and keras-torch interleaved, per configuration")
    p.add_argument("--baseline-src", default=None,
                   help="another checkout's src folder, imported by the 'base:<path>' implementations")
    p.add_argument("--keras-tf-python", default=None, metavar="PYTHON",
                   help="a Python with tensorflow-cpu and keras (and torch==2.13.0): adds Keras 3 on TensorFlow "
                        "(keras-tf) to the default implementations")
    p.add_argument("--no-memory-pass", action="store_true",
                   help="skip the second, memory-only process per run (peak from the timed process)")
    args = p.parse_args(argv)
    global BASELINE_SRC, KERAS_TF_PYTHON
    BASELINE_SRC = str(Path(args.baseline_src).resolve()) if args.baseline_src else None
    KERAS_TF_PYTHON = args.keras_tf_python

    if args.worker:
        w = args.worker
        if w[0] == "matmul":
            print(json.dumps(matmul_worker()))
        elif w[0] == "serve":
            _, impl, ci, mode, *rest = w
            serve_worker(impl, int(ci), mode, int(rest[0]) if rest else None)
        elif w[0] == "interleaved":
            _, seq_len, reps, *impls = w
            print(json.dumps(interleaved_worker(impls, 0, "train", int(reps), int(seq_len))))
        else:
            _, impl, ci, mode, reps, budget, *rest = w
            seq_len = int(rest[0]) if rest else None
            print(json.dumps(worker(impl, CONFIGS[int(ci)], mode, int(reps), float(budget), seq_len)))
        return
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return
    if args.checkpoint:
        args.impls = args.impls or ["ours:auto", "ours:checkpoint"]
        checkpoint_study(args)
        return
    if args.precision_study:
        result = precision_study(args)
        print()
        print(render_precision(result))
        return
    args.impls = args.impls or DEFAULT_IMPLS + (["keras-tf"] if KERAS_TF_PYTHON else [])
    result = run_all(args)
    print()
    print(render(result))


if __name__ == "__main__":
    main()
