"""``demo``: train a ConvLSTM on Moving MNIST (generated from the bundled MNIST digits), score it
beside persistence and climatology, and write the run folder: the toolkit's main job in one
command (``make demo``, ``convlstm demo``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from .config import FitConfig
from .datamodule import GridDataModule
from .fitting import _fit
from .precision import resolve_precision
from .runs import PathLike
from ..scoring import format_results

__all__ = ["demo", "DEMO_SETTINGS"]

#: The demo's settings (Moving MNIST). The model is ``convlstm-warp`` without its correction
#: term: it can only move the last frame (block-matching motion, refined by the ConvLSTM), so the
#: digit stays sharp at every lead time; chosen by the measurements of
#: ``benchmarks/forecast_skill.py`` (README, "Why forecasts blur, and what helps") so that the
#: whole demo takes under 5 minutes on 2 CPU cores.
DEMO_SETTINGS: Dict[str, Any] = {
    "num_sequences": 2000, "seq_len": 8, "image_size": 32, "digit_size": 14, "num_digits": 1,
    "speed": [2.0, 3.0], "input_steps": 5, "output_steps": 3, "split": [0.85, 0.05, 0.10],
    "model": "convlstm-warp", "model_options": {"filters": [32], "patch_size": 2, "correction": False},
    "loss": "mse", "lr": 2e-3, "batch_size": 8, "max_epochs": 10, "scheduler": "cosine", "seed": 1,
    "scheduled_sampling": 0.0, "precision": "auto",
    # the blend toward the block-matching start lowers the test MSE (887 against 950) but lays a faint
    # second digit where the extrapolation put it: the demo keeps the sharp forecast
    "calibrate_blend": False,
}


def demo(run_dir: PathLike = "runs/demo", *, settings: Optional[Dict[str, Any]] = None, progress: bool = True,
         seed: Optional[int] = None, overwrite: bool = True, verbose: bool = True) -> Tuple[Path, Dict[str, Any]]:
    """Train a ConvLSTM on Moving MNIST (generated from the bundled MNIST digits), evaluate it on
    held-out sequences and write the run folder. Returns ``(run_dir, metrics)``.

    ``settings`` changes entries of :data:`DEMO_SETTINGS` (e.g. a tiny run for tests). With
    ``overwrite`` (the default) an earlier demo run in ``run_dir`` is replaced; a folder holding
    any other run is refused (``FileExistsError``), never emptied.
    """
    s = _demo_settings(settings)
    seed = int(s["seed"]) if seed is None else int(seed)
    _avoid_oversubscription()
    run_dir = Path(run_dir)
    if overwrite:
        _remove_earlier_demo(run_dir)
    t0 = time.time()
    dm = _demo_data(s, seed, verbose)
    precision, why = resolve_precision(str(s["precision"]))
    cfg = FitConfig(model=s["model"], model_options=dict(s["model_options"]), input_steps=int(s["input_steps"]),
                    output_steps=int(s["output_steps"]), split=list(s["split"]), loss=s["loss"], lr=float(s["lr"]),
                    batch_size=int(s["batch_size"]), max_epochs=int(s["max_epochs"]), scheduler=s["scheduler"],
                    scheduled_sampling=float(s["scheduled_sampling"]), calibrate_blend=bool(s["calibrate_blend"]),
                    seed=seed, run_dir=str(run_dir), accelerator="cpu", devices=1, progress=progress,
                    units="pixel value (0-255)", precision=precision)
    if verbose:
        print(f"precision: {cfg.precision}{why}")
    run_dir, results = _fit(cfg, datamodule=dm)
    if verbose and results is not None:
        _print_summary(run_dir, results, len(dm.datasets["test"]))
        print(f"total time {time.time() - t0:.0f} s")
    return run_dir, results


def _demo_settings(settings: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    s = dict(DEMO_SETTINGS)
    if settings:
        unknown = sorted(set(settings) - set(s))
        if unknown:
            raise ValueError(f"unknown demo setting(s) {unknown}; known: {sorted(s)}")
        s.update(settings)
    return s


def _remove_earlier_demo(run_dir: Path) -> None:
    """Remove the checkpoints of an earlier demo run in ``run_dir``, so the demo starts afresh;
    refuse a folder whose checkpoints belong to another kind of run."""
    from .module import load_checkpoint

    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").is_dir() else []
    for f in ckpts:
        try:
            source = (load_checkpoint(f).get("GridDataModule") or {}).get("source") or {}
        except Exception:  # unreadable: not ours to delete
            source = {}
        if source.get("kind") != "moving_mnist":
            raise FileExistsError(f"run_dir {str(run_dir)!r} holds a run that `convlstm demo` did not make ({f}); "
                                  f"give the demo another --run-dir")
    for f in ckpts:
        f.unlink()


def _demo_data(s: Dict[str, Any], seed: int, verbose: bool) -> GridDataModule:
    from .. import data as _data

    seqs = _data.moving_mnist(int(s["num_sequences"]), seq_len=int(s["seq_len"]), image_size=int(s["image_size"]),
                              num_digits=int(s["num_digits"]), digit_size=int(s["digit_size"]),
                              speed=tuple(s["speed"]), seed=seed)
    if verbose:
        print(f"convlstm demo: {len(seqs)} Moving MNIST sequences of {s['seq_len']} frames "
              f"{s['image_size']}x{s['image_size']} ({s['num_digits']} digit(s)); {s['input_steps']} frames in, "
              f"{s['output_steps']} out; model {s['model']} {s['model_options']}")
    return GridDataModule(sequences=seqs[..., None], input_steps=int(s["input_steps"]),
                          output_steps=int(s["output_steps"]), split=s["split"], scaler="minmax",
                          batch_size=int(s["batch_size"]),
                          source={"kind": "moving_mnist", "seed": seed, **_plain_settings(s)})


def _print_summary(run_dir: Path, results: Dict[str, Any], test_sequences: int) -> None:
    print()
    print(f"Moving MNIST, {test_sequences} held-out test sequences, MSE etc. in pixel units (0-255):")
    print(format_results(results))
    m_ssim, p_ssim = results["model"].get("ssim"), results.get("persistence", {}).get("ssim")
    if m_ssim is not None and p_ssim is not None:
        print(f"SSIM {m_ssim:.3f} against persistence's {p_ssim:.3f}: the digit "
              f"{'keeps' if m_ssim > p_ssim else 'does not keep'} its shape better than the last frame does; "
              f"look at forecast.png")
    print(f"\nrun folder: {run_dir.resolve()}")
    for name in ("metrics.json", "metrics_per_lead_time.csv", "forecast.png", "forecast.gif",
                 "learning_curve.png", "config.yaml", "checkpoints/best.ckpt"):
        print(f"  {run_dir / name}")




def _avoid_oversubscription() -> None:
    """On a machine already busier than its cores, OpenMP threads that spin while they wait slow
    torch's small CPU operations down many times over; one thread is then much faster. (Setting
    ``OMP_WAIT_POLICY=PASSIVE`` before Python starts avoids the problem with any thread count.)"""
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" or torch.get_num_threads() <= 1:
        return
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return
    if load >= (os.cpu_count() or 1):
        torch.set_num_threads(1)


def _plain_settings(s: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items() if k not in ("model_options", "seed")}
