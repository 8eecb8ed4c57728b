r"""Published results' metric conventions, computed the way each paper computes them, so that a
comparison with a published figure is made in that figure's own terms.

=============  ===========================================================================================
``st-resnet``  DeepST / ST-ResNet (Zhang et al., 2016, 2017) on crowd-flow grids: the RMSE over the
               **active cells** only, :math:`\sqrt{\sum_{\text{active}} (p - y)^2 / (N L A C)}` with
               :math:`A` active cells. On BikeNYC (81 of 16 x 8 cells hold a station) this equals their
               all-cell RMSE times DeepST's ``m_factor`` :math:`\sqrt{128/81}` when the inactive cells are
               forecast as 0 (:func:`convlstm.metrics.rmse_active`, :func:`~convlstm.metrics.deepst_rmse`).
               The active cells: those with any nonzero value anywhere in the series.
``st-ssl``     ST-SSL (Ji et al., AAAI 2023) on NYC taxi/bike flows: MAE and MAPE **per channel**
               (inflow, outflow), over the target values **above 5** only (``true > 5``, ST-SSL's
               ``mask_value``); MAPE in percent, :math:`100 \cdot \operatorname{mean} |p - y| / y`.
``openstl``    OpenSTL (Tan et al., NeurIPS 2023 benchmarks) on video: the squared (absolute) error
               **summed over each frame** and averaged over frames, on data scaled to [0, 1]: the
               toolkit's ``mse_frame_sum`` / ``mae_frame_sum`` divided by :math:`R^2` (:math:`R`) with
               :math:`R` the data's range (255 for bytes); SSIM and PSNR as the toolkit computes them.
=============  ===========================================================================================

:class:`ConventionScores` keeps the running sums of one forecast in one convention
(``accumulate``/``merge``/``compute``, like :class:`convlstm.scoring.ForecastScores`);
``MetricAccumulator(conventions=...)`` adds them to every forecast's results under
``results[name]["conventions"][convention]``, and :func:`format_convention` prints the table as
the paper lays it out.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np
import torch

__all__ = ["CONVENTIONS", "ConventionScores", "format_convention", "ST_SSL_MASK_VALUE"]

#: the conventions :func:`convlstm.training.evaluate` can report (``--convention``)
CONVENTIONS = ("st-resnet", "st-ssl", "openstl")
#: ST-SSL scores only the target values above this (its ``mask_value``)
ST_SSL_MASK_VALUE = 5.0


def check_convention(name: Any) -> str:
    if not isinstance(name, str) or name.lower() not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}, got {name!r}")
    return name.lower()


class ConventionScores:
    r"""Running sums of one forecast's scores in one published ``convention``.

    Args:
        convention: one of :data:`CONVENTIONS`.
        active: ``st-resnet``: the :math:`(H, W)` mask of the cells that count.
        data_range: ``openstl``: :math:`R`, the range that scales the data to [0, 1].

    Shape:
        - :meth:`accumulate`: forecast and truth :math:`(N, L, H, W, C)` float64 tensors.
    """

    def __init__(self, convention: str, *, active: Optional[Any] = None, data_range: float = 1.0) -> None:
        self.convention = check_convention(convention)
        self.active = None if active is None else torch.as_tensor(np.asarray(active)).bool()
        if self.convention == "st-resnet" and (self.active is None or self.active.dim() != 2 or not self.active.any()):
            raise ValueError("the st-resnet convention needs active: a (rows, cols) mask with at least one cell")
        self.data_range = float(data_range)
        self.sums: Dict[str, np.ndarray] = {}

    def _add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().cpu().double().numpy()
        self.sums[key] = v if key not in self.sums else self.sums[key] + v

    def accumulate(self, p: torch.Tensor, y: torch.Tensor) -> None:
        d = p - y
        if self.convention == "st-resnet":
            mask = self.active.to(p.device)[None, None, :, :, None].expand_as(d)
            self._add("sq", (d * d * mask).sum())
            self._add("count", mask.sum().double())
        elif self.convention == "st-ssl":
            above = y > ST_SSL_MASK_VALUE
            dims = (0, 1, 2, 3)
            self._add("abs", torch.where(above, d.abs(), torch.zeros_like(d)).sum(dims))
            ape = torch.where(above, d.abs() / torch.where(above, y, torch.ones_like(y)), torch.zeros_like(d))
            self._add("ape", ape.sum(dims))
            self._add("count", above.sum(dims).double())
        else:
            self._add("sq", (d * d).sum(dim=(2, 3, 4)).sum())
            self._add("abs", d.abs().sum(dim=(2, 3, 4)).sum())
            self._add("frames", torch.tensor(float(p.shape[0] * p.shape[1])))

    def merge(self, other: "ConventionScores") -> "ConventionScores":
        if other.convention != self.convention:
            raise ValueError("ConventionScores.merge: the two are of different conventions")
        for key, value in other.sums.items():
            self.sums[key] = value if key not in self.sums else self.sums[key] + value
        return self

    def compute(self) -> Dict[str, Any]:
        s = self.sums
        if not s:
            raise RuntimeError("ConventionScores.compute: nothing was accumulated")
        if self.convention == "st-resnet":
            return {"rmse": math.sqrt(float(s["sq"]) / float(s["count"])), "active_cells": int(self.active.sum())}
        if self.convention == "st-ssl":
            out: Dict[str, Any] = {}
            for c, n in enumerate(np.atleast_1d(s["count"])):
                out[f"mae@ch{c}"] = float(s["abs"][c] / n) if n else float("nan")
                out[f"mape_percent@ch{c}"] = float(100 * s["ape"][c] / n) if n else float("nan")
                out[f"values_above_{ST_SSL_MASK_VALUE:g}@ch{c}"] = int(n)
            return out
        frames, r = float(s["frames"]), self.data_range
        return {"mse": float(s["sq"]) / frames / r ** 2, "mae": float(s["abs"]) / frames / r, "data_range": r}


def _header(convention: str, scores: Dict[str, Any]) -> str:
    if convention == "st-resnet":
        return f"ST-ResNet's convention: RMSE over the {scores['active_cells']} active cells"
    if convention == "st-ssl":
        return f"ST-SSL's convention: MAE and MAPE (%) per channel over values above {ST_SSL_MASK_VALUE:g}"
    return f"OpenSTL's convention: per-frame sums on data scaled to [0, 1] (range {scores['data_range']:g})"


def format_convention(results: Dict[str, Any], convention: str, units: Optional[str] = None) -> str:
    """A table of ``results`` (``MetricAccumulator(conventions=...)``'s) in ``convention``, one row
    per forecast, as the paper reports it."""
    convention = check_convention(convention)
    names = [n for n, v in results.items() if isinstance(v, dict) and convention in v.get("conventions", {})]
    if not names:
        raise ValueError(f"results hold no {convention!r} scores: evaluate with convention={convention!r}")
    scores = results[names[0]]["conventions"][convention]
    extra = ("ssim", "psnr") if convention == "openstl" else ()   # the toolkit's own, as OpenSTL reports them
    keys: List[str] = [k for k in scores if not k.startswith(("active_cells", "values_above", "data_range"))]
    header = _header(convention, scores)
    if units and convention != "openstl":
        header += f", in {units}"
    cols = keys + list(extra)
    lines = [header, f"{'forecast':<14}" + "".join(f"{k:>18}" for k in cols)]
    for n in names:
        conv = results[n]["conventions"][convention]
        row = [conv[k] for k in keys] + [results[n].get(k) for k in extra]
        lines.append(f"{n:<14}" + "".join(f"{'-' if v is None else format(float(v), '.4g'):>18}" for v in row))
    return "\n".join(lines)
