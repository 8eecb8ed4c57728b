"""After training: is the model ahead of every baseline on the validation part?

``fit`` scores the trained model (its best checkpoint) and the run's baselines on the validation
part with the scoring engine, and where a baseline is ahead of the model in MSE or MAE it says so
in one plain line, with the options that usually help, and records the comparison in
``metrics.json`` under ``"validation"``::

    "validation": {"part": "val", "samples": 48,
                   "model": {"mse": ..., "mae": ..., "rmse": ...},
                   "persistence": {...}, "climatology": {...},
                   "baselines_ahead": [{"baseline": "persistence", "metric": "mae",
                                        "model": 6.55, "baseline_value": 6.52}]}

The validation part is the one the checkpoint was chosen on, so a baseline ahead there is a
warning sign before the test scores are read.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch.nn as nn

from ..baselines import build_baselines
from ..ensemble_baselines import split_baselines
from ..scoring import MetricAccumulator
from .datamodule import GridDataModule
from .evaluation import _data_range, _score_part

__all__ = ["compare_on_validation", "baselines_ahead", "advice"]

#: the scores compared (lower is better for both)
COMPARED = ("mse", "mae")

_HINTS = {
    "mae": "MAE: an MSE loss favours the mean; --loss mae or --loss balanced trains for absolute errors",
    "persistence": "persistence: train longer (--max-epochs), give more input frames (--input-steps), or use a "
                   "model that starts from the last frame (--model convlstm-warp)",
    "climatology": "climatology: a daily cycle the model does not see; --period and --calendar with --model "
                   "st-convlstm give it the same hour of earlier days",
    "extrapolation": "extrapolation: train longer or on more events; --model convlstm-warp starts from moving the "
                     "last frame",
}


def compare_on_validation(module: nn.Module, dm: GridDataModule, baselines: Sequence[str], *,
                          extrapolation_method: str = "lucaskanade", clamp: bool = False) -> Optional[Dict[str, Any]]:
    """The model's and the ``baselines``' MSE, MAE and RMSE on ``dm``'s validation part, and the
    baselines ahead of the model (:func:`baselines_ahead`); ``None`` without a validation part."""
    baselines = split_baselines(baselines)[0]   # ensemble baselines are scored on the test part only
    if "val" not in dm.datasets or not baselines:
        return None
    forecasters = build_baselines(baselines, dm, "val", extrapolation_method=extrapolation_method)
    acc = MetricAccumulator(data_range=_data_range(dm))
    _score_part(module, dm, "val", forecasters, acc, None, clamp)
    results = acc.compute()
    summary: Dict[str, Any] = {"part": "val", "samples": len(dm.datasets["val"])}
    for name, scores in results.items():
        if "per_lead_time" in scores:
            summary[name] = {m: scores[m] for m in ("mse", "mae", "rmse")}
    summary["baselines_ahead"] = baselines_ahead(summary)
    return summary


def baselines_ahead(summary: Dict[str, Any], metrics: Sequence[str] = COMPARED) -> List[Dict[str, Any]]:
    """``[{"baseline", "metric", "model", "baseline_value"}]`` for every baseline whose ``metric``
    is below the model's in ``summary`` (``{"model": {...}, name: {...}}``)."""
    model = summary["model"]
    ahead = []
    for name, scores in summary.items():
        if name == "model" or not isinstance(scores, dict) or "mse" not in scores:
            continue
        for m in metrics:
            if scores[m] < model[m]:
                ahead.append({"baseline": name, "metric": m, "model": model[m], "baseline_value": scores[m]})
    return ahead


def advice(ahead: Sequence[Dict[str, Any]], units: Optional[str] = None) -> List[str]:
    """Plain lines for :func:`baselines_ahead`'s entries: which baseline is ahead in which score,
    by how much, and the options that usually help."""
    unit = f" {units}" if units else ""
    lines = []
    for entry in ahead:
        m = entry["metric"].upper()
        lines.append(f"on the validation part {entry['baseline']} is ahead of the model in {m}: "
                     f"{entry['baseline_value']:.4g} against {entry['model']:.4g}{unit if m == 'MAE' else ''}")
    keys = dict.fromkeys([e["baseline"] for e in ahead if e["metric"] == "mse"]
                         + (["mae"] if any(e["metric"] == "mae" for e in ahead) else []))
    hints = [_HINTS[k] for k in keys if k in _HINTS]
    if hints:
        lines.append("options that usually help: " + "; ".join(hints))
    return lines
