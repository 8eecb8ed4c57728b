r"""After training a members run: scale its spread, one factor per lead time and channel, so that
its members score best on the validation part.

A members model (:class:`convlstm.models.StochasticMembers`) learns its spread on the training
part, where its errors are smaller than on data it never saw: its members come out too close
together (spread-skill below 1). The factor :math:`c_{kc}` multiplies the spread
:math:`s_{kc}` at lead time :math:`k` and channel :math:`c`; it is chosen on the validation part,
in the data's units, with the members clamped as the run clamps its forecasts, as the one of a
grid :math:`c \in [1/8, 8]` (65 values, geometric) with the lowest CRPS of :math:`n` members:

.. math::
    c_{kc} = \arg\min_{c} \overline{\text{CRPS}}\big(\{ \hat y + c\, s \odot \varepsilon^{(m)} \}_{m=1}^{n}, y\big)_{kc}

(log-normal members: those of spread :math:`c\, s`, :meth:`~convlstm.models.StochasticMembers.members_from`),
with the same noise draws :math:`\varepsilon^{(m)}` for every :math:`c` (seeded), so the
comparison is between spreads, not between draws. The CRPS is the fair one, lowest for members
drawn from the true distribution whatever :math:`n` (the ensemble's own CRPS of :math:`n` members
is lowest for a spread narrower than that, by a factor that depends on :math:`n`). The factors are stored in the model
(``spread_scale``) and so in the best checkpoint, and returned for ``metrics.json``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from ..losses import EnsembleCRPS
from .datamodule import GridDataModule

__all__ = ["calibrate_spread", "SPREAD_FACTORS", "spread_summary_line"]

#: the factors tried, geometric from 1/8 to 8
SPREAD_FACTORS = np.geomspace(1 / 8, 8, 65)
#: below this many validation windows the log says the factors are rough
FEW_WINDOWS = 10


@torch.no_grad()
def calibrate_spread(module: torch.nn.Module, dm: GridDataModule, members: int = 16,
                     seed: int = 0) -> Optional[Dict[str, Any]]:
    """Choose and set ``module.model.spread_scale`` on ``dm``'s validation part (see the module).

    Returns ``None`` for a run without members or without a validation part, else ``{"factors":
    [[c_kc]], "val_crps": {"before", "after"}, "windows": n}`` (the validation's fair CRPS in data
    units, over lead times and channels, with the factors at 1 and as chosen; the number of
    validation windows they were chosen on)."""
    from ..models.members import StochasticMembers

    model = getattr(module, "model", None)
    if not isinstance(model, StochasticMembers) or "val" not in dm.datasets or not len(dm.datasets["val"]):
        return None
    module.eval()
    model.set_spread_scale(torch.ones_like(model.spread_scale))
    factors = torch.as_tensor(SPREAD_FACTORS, dtype=torch.float64)
    fair = EnsembleCRPS(alpha=1.0)   # the fair CRPS per value
    totals = None
    generator = torch.Generator().manual_seed(seed)
    for batch in dm.dataloader("val"):
        x = batch[0]
        features = batch[2] if len(batch) > 2 else None
        centre = module(x, features)
        centre, spread, eps = model.sample_parts(x, members, features, generator=generator, forecast=centre)
        y = dm.inverse_transform(batch[1]).double()
        sums = []
        for c in factors:
            draws = dm.inverse_transform(model.members_from(centre, float(c) * spread, eps).float()).double()
            if dm.nonnegative:
                draws = draws.clamp_min(0.0)
            sums.append(fair.score(draws, y).sum(dim=(0, 2, 3)))                           # (K, C)
        sums = torch.stack(sums)                                                       # (F, K, C)
        totals = sums if totals is None else totals + sums
    one = int(np.argmin(np.abs(SPREAD_FACTORS - 1.0)))
    best = totals.argmin(dim=0)                                                        # (K, C)
    chosen = factors[best].to(model.spread_scale.dtype)
    model.set_spread_scale(chosen)
    count = len(dm.datasets["val"]) * int(y.shape[2]) * int(y.shape[3])
    before = float(totals[one].sum()) / (count * totals.shape[1] * totals.shape[2])
    after = float(totals.gather(0, best.unsqueeze(0)).sum()) / (count * totals.shape[1] * totals.shape[2])
    return {"factors": chosen.tolist(), "val_crps": {"before": before, "after": after},
            "windows": len(dm.datasets["val"])}


def spread_summary_line(summary: Dict[str, Any]) -> str:
    """One line for the log: the factors by lead time and what they did to the validation CRPS."""
    per_lead = ", ".join(f"+{k + 1} " + "/".join(f"{v:.2f}" for v in row) for k, row in enumerate(summary["factors"]))
    crps = summary["val_crps"]
    n = summary.get("windows")
    line = (f"members' spread scaled on the validation part{'' if n is None else f' ({n} windows)'}: {per_lead}; "
            f"validation fair CRPS {crps['before']:.4g} -> {crps['after']:.4g}")
    if n is not None and n < FEW_WINDOWS:
        line += (f". {n} window{'s' * (n != 1)} make rough factors, and members calibrated on them may come out "
                 f"too narrow or too wide on new data; a larger validation part (--split) steadies them")
    return line
