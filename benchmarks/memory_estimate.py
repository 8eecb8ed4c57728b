"""The memory estimate of a training step (``convlstm.training.memory``) against the measured peak.

For each configuration: the estimate (fake-tensor run, as ``convlstm fit`` makes it before
training, with the time it took) and the measured peak, the growth of the peak resident set
size (``VmHWM``, reset through ``/proc/self/clear_refs``) over the resident size just before
training, in a fresh Python process per measurement (default ``malloc``, nothing preloaded),
``--repeats`` times (median, min and max: glibc's heap makes the peak vary from run to run).

Configurations:

- the four of ``benchmarks/bench.py`` (one ``ConvLSTM2D``, ``padding='same'``,
  ``return_sequences=True``, float32, CPU), trained as a fit trains: two steps of mean squared
  error against a target of the output's shape and AdamW;
- the default ``convlstm fit`` of the KNMI radar file
  (``convlstm fit knmi.npz --key precip_mm_x100 --layout THW``: the default model, 6 frames in,
  3 out, ``FitConfig``'s defaults), trained by Lightning for two steps (the next batch already
  fetched, as Lightning does). The default batch size 16 is estimated; it is measured only when
  its estimate is under ``MEASURE_LIMIT`` (5 GB: this machine's processes are kept under 6 GB);
  the measured runs are ``--knmi-runs`` (frame size of a centre crop, batch size).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/memory_estimate.py              # the table
    OMP_NUM_THREADS=1 python benchmarks/memory_estimate.py --repeats 1 --only -1 0 4   # -1: the issue's run
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
KNMI = "/work/shared/data/radar/knmi_20100826_0000-0735_5min_crop256.npz"
KNMI_KEY = "precip_mm_x100"
MEASURE_LIMIT = 5e9  # a configuration estimated above this is not run (the machine's 6 GB allowance)


def _bench_configs():
    sys.path.insert(0, str(HERE))
    from bench import CONFIG_NAMES, CONFIGS

    return list(zip(CONFIG_NAMES, CONFIGS))


# ----------------------------------------------------------------------------------- measuring
def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _layer(cfg):
    import torch
    import convlstm

    b, t, rows, cols, cin, f, k = cfg
    torch.manual_seed(0)
    model = convlstm.ConvLSTM2D(f, k, padding="same", return_sequences=True, in_channels=cin)
    return model, (t, rows, cols, cin), (t, rows, cols, f), b


def _default_model() -> str:
    from convlstm.training import FitConfig

    return FitConfig().model


def _crop_file(source: str, crop: int, folder: str) -> str:
    import numpy as np

    with np.load(source) as z:
        a = z[KNMI_KEY]
    r0 = (a.shape[1] - crop) // 2
    c0 = (a.shape[2] - crop) // 2
    path = os.path.join(folder, f"knmi_crop{crop}.npz")
    np.savez(path, **{KNMI_KEY: a[:, r0:r0 + crop, c0:c0 + crop]})
    return path


def _fit_parts(path: str, batch: int):
    """The datamodule and ForecastModule that `convlstm fit PATH --key ... --layout THW` builds."""
    from convlstm.training.fitting import datamodule_from_config
    from convlstm.training import FitConfig, ForecastModule
    import lightning.pytorch as pl

    cfg = FitConfig(data=path, key=KNMI_KEY, layout="THW", batch_size=batch)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodule_from_config(cfg)
    dm.setup("fit")
    module = ForecastModule(cfg.model, model_options=cfg.model_options, input_steps=dm.input_steps,
                            output_steps=dm.output_steps, frame_shape=dm.sample_shape, loss=cfg.loss,
                            loss_options=cfg.loss_options, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            scheduler=cfg.scheduler, scheduled_sampling=cfg.scheduled_sampling)
    rows, cols, ch = dm.sample_shape
    return cfg, dm, module, (dm.input_steps, rows, cols, ch), (dm.output_steps, rows, cols, ch)


def worker(spec: dict) -> dict:
    import torch

    if spec.get("keep_freed_memory"):
        from convlstm._heap import keep_freed_memory

        keep_freed_memory()

    if spec["kind"] == "layer":
        model, shape_in, shape_out, b = _layer(spec["cfg"])
        x = torch.rand((b,) + shape_in)
        y = torch.rand((b,) + shape_out)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        base = _rss()
        _reset_hwm()
        t0 = time.perf_counter()
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            del loss
            opt.step()
        return {"peak": _hwm() - base, "seconds": time.perf_counter() - t0}
    import lightning.pytorch as pl

    cfg, dm, module, _, _ = _fit_parts(spec["path"], spec["batch"])
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, precision=cfg.precision)
    base = _rss()
    _reset_hwm()
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return {"peak": _hwm() - base, "seconds": time.perf_counter() - t0}


def measure(spec: dict, repeats: int, timeout: float) -> list:
    out = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, env=dict(os.environ))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"worker failed ({spec}): {proc.stderr[-2000:]}")
        out.append(json.loads(lines[-1]))
    return out


# ----------------------------------------------------------------------------------- estimating
def estimate(spec: dict):
    from convlstm.training.memory import TrainingMemoryProbe

    if spec["kind"] == "layer":
        model, shape_in, shape_out, b = _layer(spec["cfg"])
    else:
        _, _, model, shape_in, shape_out = _fit_parts(spec["path"], spec["batch"])
        b = spec["batch"]
    # a plain loop holds one batch; Lightning's holds the next one too
    probe = TrainingMemoryProbe(model, shape_in, shape_out, prefetched_batches=0 if spec["kind"] == "layer" else 1)
    t0 = time.perf_counter()
    e = probe(b)
    secs = time.perf_counter() - t0
    raw = dict(probe.estimate().tensor_bytes)[b]
    return e, raw, secs, probe


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per measurement (default 3)")
    p.add_argument("--knmi", default=KNMI, help="the KNMI radar file")
    p.add_argument("--knmi-runs", nargs="+", default=["256:8", "256:2", "64:4"], metavar="SIZE:BATCH",
                   help="KNMI fits measured: centre crop size and batch size (default: 256:8 256:2 64:4)")
    p.add_argument("--only", type=int, nargs="+", default=None, help="row numbers to run")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="measure and estimate with every block in glibc's heap (convlstm._heap.keep_freed_memory, "
                        "as convlstm fit runs) instead of glibc's defaults")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.keep_freed_memory:
        from convlstm._heap import keep_freed_memory

        if not keep_freed_memory():
            p.error("--keep-freed-memory: this C library is not glibc, or CONVLSTM_KEEP_FREED_MEMORY=0 is set")
    tmp = tempfile.mkdtemp(prefix="convlstm-memory-")
    rows = [(f"bench {i}: {name} {cfg}", {"kind": "layer", "cfg": list(cfg)}) for i, (name, cfg) in
            enumerate(_bench_configs())]
    full = None
    if os.path.isfile(args.knmi):
        full = {"kind": "fit", "path": _crop_file(args.knmi, 256, tmp), "batch": 16}
        for run in args.knmi_runs:
            crop, batch = (int(v) for v in run.split(":"))
            what = "256x256 frames" if crop == 256 else f"centre {crop}x{crop} crop"
            rows.append((f"KNMI default fit ({_default_model()}), {what}",
                         {"kind": "fit", "path": _crop_file(args.knmi, crop, tmp), "batch": batch}))
    else:
        print(f"(no KNMI file at {args.knmi}: its rows are left out)")
    header = ("| # | configuration | batch | tensor peak MB | estimate MB | probe s | measured MB (median; min-max) "
              "| estimate / measured |")
    print(header)
    print("|" + "---|" * 8)
    if full is not None and (args.only is None or -1 in args.only):
        from convlstm.training.memory import format_bytes

        e16, raw16, s16, probe = estimate(full)
        e1 = probe(1)
        print(f"| - | KNMI default fit ({_default_model()}), 256x256 frames: the issue's run | 16 | {_mb(raw16)} | "
              f"{_mb(e16)} | {s16:.1f} | not run "
              f"(estimate over {format_bytes(MEASURE_LIMIT)}); batch 1: estimate {_mb(e1)} MB | - |",
              flush=True)
    for i, (name, spec) in enumerate(rows):
        if args.only is not None and i not in args.only:
            continue
        e, raw, secs, _ = estimate(spec)
        batch = spec["cfg"][0] if spec["kind"] == "layer" else spec["batch"]
        if e > MEASURE_LIMIT:
            print(f"| {i} | {name} | {batch} | {_mb(raw)} | {_mb(e)} | {secs:.1f} | not run (estimate over "
                  f"{MEASURE_LIMIT / 1e9:g} GB) | - |")
            continue
        got = measure(dict(spec, keep_freed_memory=args.keep_freed_memory), args.repeats, args.timeout)
        peaks = [g["peak"] for g in got]
        med = statistics.median(peaks)
        print(f"| {i} | {name} | {batch} | {_mb(raw)} | {_mb(e)} | {secs:.1f} | {_mb(med)} ({_mb(min(peaks))}-"
              f"{_mb(max(peaks))}) | {e / med:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
