r"""After training: blend the forecast toward the model's starting forecast where that is better on
the validation part, one weight per lead time and channel (:mod:`convlstm.models.blending`).

The sums of :func:`convlstm.models.blending.blend_weights` are taken over every validation window,
cell and sample, in the units the model trains on (the scaled values its loss sees), in float64.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from .._io import atomic_path
from ..models.blending import BlendTowardStart, blend_weights
from .datamodule import GridDataModule

__all__ = ["calibrate_blend", "save_state", "blend_summary_line"]

def _blendable(model: torch.nn.Module) -> Optional[BlendTowardStart]:
    return model if isinstance(model, BlendTowardStart) and getattr(model, "starts_from", None) else None


@torch.no_grad()
def calibrate_blend(module: torch.nn.Module, dm: GridDataModule) -> Optional[Dict[str, Any]]:
    r"""Choose and set the blend weights of ``module.model`` (of the model inside it, for a
    members run: the members are its forecast plus noise, so they move with the blend) on ``dm``'s
    validation part.

    Returns ``None`` when the model has no start forecast or there is no validation part, else
    ``{"start": name, "weights": [[w_kc]], "val_mse": {"model", "start", "blend"}}`` (MSE in the
    model's units, over lead times and channels)."""
    from ..models.members import StochasticMembers

    inner = module.model.base if isinstance(module.model, StochasticMembers) else module.model
    model = _blendable(inner)   # members: their centre is blended, and they move with it
    if model is None or "val" not in dm.datasets or not len(dm.datasets["val"]):
        return None
    model.set_blend(torch.ones_like(model.blend))
    module.eval()
    totals, count = None, 0
    for batch in dm.dataloader("val"):
        x, y = batch[0], batch[1].double()
        forecast = module(x, batch[2] if len(batch) > 2 else None).double()
        start = model.start_forecast(x).double()
        change, error = forecast - start, y - start
        sums = [s.sum(dim=(0, 2, 3)) for s in (change * error, change ** 2, (y - forecast) ** 2, error ** 2)]
        totals = sums if totals is None else [a + b for a, b in zip(totals, sums)]     # each (K, C)
        count += y.shape[0] * y.shape[2] * y.shape[3]
    cross, squared, err_model, err_start = totals
    if model.blend.shape[0] == 1:   # one weight for every lead time
        cross, squared, err_start_w = cross.sum(0, keepdim=True), squared.sum(0, keepdim=True), err_start.sum(0)
    else:
        err_start_w = err_start
    w = blend_weights(cross, squared).to(model.blend.dtype)
    wd = w.double()
    # the blend's squared error from the same sums: |y - s - w (f - s)|^2 = E_s - 2 w X + w^2 S
    blend_sse = float((err_start_w - 2 * wd * cross + wd ** 2 * squared).sum())
    model.set_blend(w)
    values = count * err_start.shape[0] * err_start.shape[1]
    return {"start": model.start_name, "weights": w.tolist(),
            "val_mse": {"model": float(err_model.sum()) / values, "start": float(err_start.sum()) / values,
                        "blend": blend_sse / values}}


def save_state(checkpoint: Path, module: torch.nn.Module) -> None:
    """Write ``module``'s state (with what was chosen after training: its blend weights, a members
    run's spread factors) into ``checkpoint``, atomically."""
    from .runs import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    ckpt["state_dict"] = dict(module.state_dict())
    with atomic_path(checkpoint) as tmp:
        torch.save(ckpt, tmp)


def blend_summary_line(summary: Dict[str, Any]) -> str:
    """One line for the log: the weights by lead time and what they did to the validation MSE."""
    weights = summary["weights"]
    per_lead = ", ".join(f"+{k + 1} " + "/".join(f"{v:.2f}" for v in row) for k, row in enumerate(weights))
    mse = summary["val_mse"]
    if all(v == 1.0 for row in weights for v in row):
        return (f"the trained forecast is kept at every lead time (validation MSE {mse['model']:.4g}, its start "
                f"{summary['start']} {mse['start']:.4g})")
    return (f"forecast blended toward {summary['start']} by the weights chosen on the validation part "
            f"(1 = the trained model, 0 = its start): {per_lead}; validation MSE {mse['model']:.4g} -> "
            f"{mse['blend']:.4g} (start alone {mse['start']:.4g})")
