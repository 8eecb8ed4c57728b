"""The batch size a training run uses: the largest up to the requested one whose estimated step fits
in the budget (:func:`choose_batch_size`), and the record of that choice (:class:`BatchChoice`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .available import AvailableMemory
from .probe import MemoryEstimate, TrainingMemoryProbe, _check_batch
from .units import format_bytes

__all__ = ["choose_batch_size", "BatchChoice", "HEADROOM"]

#: Share of the available memory a fit may plan to use (the rest for what the estimate does not
#: count: kernels' own buffers, Python, other processes starting meanwhile; and for its spread).
HEADROOM = 0.8


@dataclass(frozen=True)
class BatchChoice:
    """The batch size a fit uses and why: ``chosen`` (``None`` when not even 1 fits), the
    ``requested`` one, their estimates, the ``budget`` (bytes a step may use) and where it
    comes from (``budget_source``), and the :class:`MemoryEstimate` behind it."""

    requested: int
    chosen: Optional[int]
    estimate_requested: int
    estimate_chosen: Optional[int]
    budget: int
    budget_source: str
    available: Optional[AvailableMemory]
    estimate: MemoryEstimate

    @property
    def changed(self) -> bool:
        return self.chosen is not None and self.chosen != self.requested

    def summary(self) -> str:
        """One line: what was chosen, the estimates and the budget."""
        t = f"estimated in {self.estimate.seconds:.1f} s"
        if self.chosen is None:
            need = self.estimate_chosen or self.estimate.total(1)
            return (f"a training step needs about {format_bytes(need)} even at batch size 1, over the budget of "
                    f"{format_bytes(self.budget)} ({self.budget_source}); {t}")
        if not self.changed:
            return (f"batch size {self.requested} needs about {format_bytes(self.estimate_requested)} per training "
                    f"step, within the budget of {format_bytes(self.budget)} ({self.budget_source}); {t}")
        return (f"batch size {self.requested} would need about {format_bytes(self.estimate_requested)} per training "
                f"step, over the budget of {format_bytes(self.budget)} ({self.budget_source}); using batch size "
                f"{self.chosen} (about {format_bytes(self.estimate_chosen)}), the largest that fits; {t}")

    def to_dict(self) -> Dict[str, Any]:
        return {"requested_batch_size": self.requested, "batch_size": self.chosen,
                "estimate_requested_bytes": self.estimate_requested, "estimate_bytes": self.estimate_chosen,
                "budget_bytes": self.budget, "budget_source": self.budget_source,
                "available_bytes": None if self.available is None else self.available.bytes,
                "available_source": None if self.available is None else self.available.source,
                "estimate": self.estimate.to_dict(), "summary": self.summary()}


def _budget(available: Union[None, int, AvailableMemory], headroom: float,
            limit: Union[None, int]) -> Tuple[int, str]:
    if limit is not None:
        return int(limit), f"memory_limit {format_bytes(limit)}"
    if available is None:
        raise ValueError("available memory is unknown: give available= (bytes) or a memory limit")
    avail = available if isinstance(available, AvailableMemory) else AvailableMemory(int(available), "given")
    return int(avail.bytes * headroom), f"{headroom:.0%} of {format_bytes(avail.bytes)} available: {avail.source}"


def choose_batch_size(estimate: Union[MemoryEstimate, TrainingMemoryProbe], requested: int,
                      available: Union[None, int, AvailableMemory] = None, *, headroom: float = HEADROOM,
                      limit: Optional[int] = None) -> BatchChoice:
    """The largest batch size up to ``requested`` whose estimate fits in the budget:
    ``headroom`` x ``available`` bytes, or ``limit`` bytes when given.

    With a :class:`TrainingMemoryProbe` every candidate is probed (the path a ConvLSTM layer
    takes, and so its memory, can change with the batch size): ``requested`` first; if it does
    not fit, batch size 1, then the candidate that the line through the probed points puts at
    the budget, stepping down until a probed candidate fits (a few probes of about a second on
    CPU). With a :class:`MemoryEstimate`, :meth:`MemoryEstimate.total` decides.
    ``chosen`` is ``None`` when batch size 1 does not fit.
    """
    requested = _check_batch(requested, "requested")
    if not (isinstance(headroom, (int, float)) and 0 < headroom <= 1):
        raise ValueError(f"headroom must be a fraction in (0, 1]; got {headroom!r}")
    budget, source = _budget(available, headroom, limit)
    avail = (available if isinstance(available, AvailableMemory) or available is None
             else AvailableMemory(int(available), "given"))
    if isinstance(estimate, TrainingMemoryProbe):
        total: Callable[[int], int] = estimate
    elif isinstance(estimate, MemoryEstimate):
        total = estimate.total
    else:
        raise TypeError(f"estimate must be a MemoryEstimate or a TrainingMemoryProbe; got {type(estimate).__name__}")
    e_req = total(requested)
    chosen: Optional[int] = requested
    if e_req > budget:
        chosen = None
        if requested > 1 and total(1) <= budget:
            lo, hi = 1, requested  # total(lo) fits, total(hi) does not
            for _ in range(8):  # interpolation search: a few probes
                if hi - lo <= 1:
                    break
                e_lo, e_hi = total(lo), total(hi)
                guess = lo + int((budget - e_lo) * (hi - lo) // max(1, e_hi - e_lo))
                guess = min(hi - 1, max(lo + 1, guess))
                if total(guess) <= budget:
                    lo = guess
                else:
                    hi = guess
            chosen = lo
    est = estimate.estimate() if isinstance(estimate, TrainingMemoryProbe) else estimate
    return BatchChoice(requested=requested, chosen=chosen, estimate_requested=e_req,
                       estimate_chosen=total(chosen) if chosen is not None else total(1), budget=budget,
                       budget_source=source, available=avail, estimate=est)
