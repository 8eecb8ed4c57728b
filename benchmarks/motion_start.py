"""The untrained ``convlstm-warp`` forecast (its block-matching extrapolation, the start a trained
model is blended back toward) beside pysteps's Lucas-Kanade extrapolation, on every window of a
radar file: MSE and CSI at 1 mm/h per lead time, for each block-matching rule
(``motion_rule`` 1: the last pair of input frames, radius 8, 64 x 64 cells; 2: every pair, the
automatic radius, 128 x 128 cells). No training: the numbers depend on the motion alone.

Windows: ``--input-steps`` frames in, ``--output-steps`` out, every start (stride 1), as
``convlstm evaluate --all-windows`` takes them. pysteps gets the same float32 frames.

Usage::

    python benchmarks/motion_start.py knmi.npz --key precip_mm_x100 --scale 0.12
    python benchmarks/motion_start.py fmi.npz --key dbz_code --scale 0.5 --offset -32 \\
        --transform reflectivity-to-rate
    python benchmarks/motion_start.py ../heldout/radar_mch_*.npz      # key rain_mm_h (mm/h)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from convlstm.data.units import UnitConversion
from convlstm.extrapolation import extrapolation_forecast
from convlstm.models.warp import MotionWarpForecaster


def windows(series: np.ndarray, input_steps: int, output_steps: int):
    """(T, H, W) -> inputs (N, T_in, H, W, 1) and truths (N, K, H, W, 1), every start."""
    n = len(series) - input_steps - output_steps + 1
    if n < 1:
        raise SystemExit(f"{len(series)} frames hold no window of {input_steps} + {output_steps}")
    x = np.stack([series[i:i + input_steps] for i in range(n)])[..., None]
    y = np.stack([series[i + input_steps:i + input_steps + output_steps] for i in range(n)])[..., None]
    return x, y


def per_lead(forecast: np.ndarray, truth: np.ndarray, threshold: float):
    """MSE and CSI at ``threshold`` per lead time over all windows and pixels (N, K, H, W, 1)."""
    axes = (0, 2, 3, 4)
    mse = ((forecast - truth) ** 2).mean(axis=axes)
    f, t = forecast >= threshold, truth >= threshold
    hits = (f & t).sum(axis=axes)
    misses_and_false = (f ^ t).sum(axis=axes)
    return mse, hits / np.maximum(hits + misses_and_false, 1)


def start_forecast(x: np.ndarray, rule: int, output_steps: int) -> np.ndarray:
    model = MotionWarpForecaster(channels=1, output_steps=output_steps, frame_size=x.shape[2:4]).eval()
    model.motion_rule = rule
    with torch.no_grad():
        return model.start_forecast(torch.from_numpy(x)).numpy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--key", default="rain_mm_h")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--offset", type=float, default=0.0)
    ap.add_argument("--transform", default="none")
    ap.add_argument("--input-steps", type=int, default=6)
    ap.add_argument("--output-steps", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=1.0, help="CSI threshold in mm/h (default 1)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    units = UnitConversion(scale=args.scale, offset=args.offset, transform=args.transform)

    def fmt(v):
        return " / ".join(f"{float(a):.3f}" for a in v)

    print("| file | windows | forecast | MSE per lead | CSI per lead | seconds |")
    print("|---|---|---|---|---|---|")
    for path in args.files:
        with np.load(path, allow_pickle=False) as data:
            series = units.apply(data[args.key]).astype(np.float32)
        x, y = windows(series, args.input_steps, args.output_steps)
        runs = [("pysteps Lucas-Kanade", lambda: extrapolation_forecast(x, args.output_steps))]
        runs += [(f"start, motion_rule {r}", lambda r=r: start_forecast(x, r, args.output_steps)) for r in (1, 2)]
        for name, make in runs:
            began = time.perf_counter()
            forecast = make()
            seconds = time.perf_counter() - began
            mse, csi = per_lead(forecast, y, args.threshold)
            print(f"| {path.stem} | {len(x)} | {name} | {fmt(mse)} | {fmt(csi)} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
