"""The batch size a training run uses: the largest up to the requested one whose estimated step fits
in the budget (:func:`choose_batch_size`), and the record of that choice (:class:`BatchChoice`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .available import AvailableMemory
from .probe import MemoryEstimate, TrainingMemoryProbe, _check_batch
from .units import format_bytes
from .workers import LoaderWorkers

__all__ = ["choose_batch_size", "BatchChoice", "HEADROOM"]

#: Share of the available memory a fit may plan to use (the rest for what the estimate does not
#: count: kernels' own buffers, Python, other processes starting meanwhile; and for its spread).
HEADROOM = 0.8


@dataclass(frozen=True)
class BatchChoice:
    """The batch size a fit uses and why: ``chosen`` (``None`` when not even 1 fits), the
    ``requested`` one, their estimates, the ``budget`` (bytes a step may use) and where it
    comes from (``budget_source``), and the :class:`MemoryEstimate` behind it.

    Attributes:
        requested, chosen: the batch size asked for and the one to use (``None``: not even 1 fits).
        estimate_requested, estimate_chosen: their estimated bytes, the ``DataLoader`` workers'
            share included (``estimate_chosen`` is batch size 1's when nothing fits).
        budget, budget_source: the bytes a step may use, and where that number comes from.
        available: the available memory the budget was taken from (``None`` with a limit).
        estimate: the :class:`MemoryEstimate` of the batch sizes probed.
        workers: the :class:`~convlstm.training.memory.workers.LoaderWorkers` counted (``None``:
            none were).
    """

    requested: int
    chosen: Optional[int]
    estimate_requested: int
    estimate_chosen: Optional[int]
    budget: int
    budget_source: str
    available: Optional[AvailableMemory]
    estimate: MemoryEstimate
    workers: Optional[LoaderWorkers] = None

    def workers_bytes(self, batch_size: Optional[int] = None) -> int:
        """The workers' share of the estimate at ``batch_size`` (default: the chosen one, or 1
        when nothing fits); 0 without workers."""
        if self.workers is None:
            return 0
        return self.workers.bytes(batch_size or self.chosen or 1)

    def _workers_note(self, batch_size: int) -> str:
        share = self.workers_bytes(batch_size)
        return f" ({format_bytes(share)} of it for {self.workers.describe(batch_size)})" if share else ""

    @property
    def changed(self) -> bool:
        """Whether a batch size other than the requested one was chosen."""
        return self.chosen is not None and self.chosen != self.requested

    def summary(self) -> str:
        """One line: what was chosen, the estimates and the budget."""
        t = f"estimated in {self.estimate.seconds:.1f} s"
        if self.chosen is None:
            need = self.estimate_chosen or self.estimate.total(1)
            return (f"a training step needs about {format_bytes(need)}{self._workers_note(1)} even at batch size 1, "
                    f"over the budget of {format_bytes(self.budget)} ({self.budget_source}); {t}")
        if not self.changed:
            return (f"batch size {self.requested} needs about {format_bytes(self.estimate_requested)} per training "
                    f"step{self._workers_note(self.requested)}, within the budget of {format_bytes(self.budget)} "
                    f"({self.budget_source}); {t}")
        return (f"batch size {self.requested} would need about {format_bytes(self.estimate_requested)} per training "
                f"step{self._workers_note(self.requested)}, over the budget of {format_bytes(self.budget)} "
                f"({self.budget_source}); using batch size {self.chosen} (about "
                f"{format_bytes(self.estimate_chosen)}{self._workers_note(self.chosen)}), the largest that fits; {t}")

    def to_dict(self) -> Dict[str, Any]:
        """The choice as JSON types, as ``convlstm fit`` writes it to ``memory.json``."""
        return {"requested_batch_size": self.requested, "batch_size": self.chosen,
                "estimate_requested_bytes": self.estimate_requested, "estimate_bytes": self.estimate_chosen,
                "budget_bytes": self.budget, "budget_source": self.budget_source,
                "available_bytes": None if self.available is None else self.available.bytes,
                "available_source": None if self.available is None else self.available.source,
                "estimate": self.estimate.to_dict(), "summary": self.summary(),
                **({} if self.workers is None else
                   {"workers": {**self.workers.to_dict(), "bytes": self.workers_bytes()}})}


def _as_available(available: Union[None, int, AvailableMemory]) -> Optional[AvailableMemory]:
    """``available`` as an :class:`AvailableMemory` (a plain number of bytes is ``"given"``)."""
    if isinstance(available, AvailableMemory) or available is None:
        return available
    return AvailableMemory(int(available), "given")


def _budget(available: Union[None, int, AvailableMemory], headroom: float,
            limit: Union[None, int]) -> Tuple[int, str]:
    """The bytes a step may use, and where that number comes from: ``limit`` when given, else
    ``headroom`` x ``available``."""
    if limit is not None:
        return int(limit), f"memory_limit {format_bytes(limit)}"
    if available is None:
        raise ValueError("available memory is unknown: give available= (bytes) or a memory limit")
    avail = _as_available(available)
    return int(avail.bytes * headroom), f"{headroom:.0%} of {format_bytes(avail.bytes)} available: {avail.source}"


def _bytes_at(estimate: Union[MemoryEstimate, TrainingMemoryProbe]) -> Callable[[int], int]:
    """The function batch size -> estimated bytes: the probe itself (which probes each new batch
    size) or :meth:`MemoryEstimate.total`."""
    if isinstance(estimate, TrainingMemoryProbe):
        return estimate
    if isinstance(estimate, MemoryEstimate):
        return estimate.total
    raise TypeError(f"estimate must be a MemoryEstimate or a TrainingMemoryProbe; got {type(estimate).__name__}")


def _largest_that_fits(total: Callable[[int], int], requested: int, budget: int) -> Optional[int]:
    r"""The largest batch size below ``requested`` (which does not fit) whose ``total`` fits in
    ``budget``; ``None`` when not even 1 does.

    An interpolation search of at most 8 steps keeps :math:`b_{lo}` (fits) and :math:`b_{hi}`
    (does not) and tries the batch size that the line through them puts at the budget,

    .. math::
        b = b_{lo} + \left\lfloor \frac{(\text{budget} - e(b_{lo}))(b_{hi} - b_{lo})}
        {\max(1,\ e(b_{hi}) - e(b_{lo}))} \right\rfloor

    clipped to :math:`[b_{lo} + 1, b_{hi} - 1]`, until :math:`b_{hi} - b_{lo} \le 1`.
    """
    if requested <= 1 or total(1) > budget:
        return None
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
    return lo


def choose_batch_size(estimate: Union[MemoryEstimate, TrainingMemoryProbe], requested: int,
                      available: Union[None, int, AvailableMemory] = None, *, headroom: float = HEADROOM,
                      limit: Optional[int] = None, workers: Optional[LoaderWorkers] = None) -> BatchChoice:
    r"""The largest batch size up to ``requested`` whose estimate fits in the budget:
    ``headroom`` x ``available`` bytes, or ``limit`` bytes when given. With ``workers`` the
    estimate at batch size :math:`B` is the step's plus the ``DataLoader`` workers'
    (:meth:`LoaderWorkers.bytes`: :math:`W (p B s + o)`).

    With a :class:`TrainingMemoryProbe` every candidate is probed (the path a ConvLSTM layer
    takes, and so its memory, can change with the batch size): ``requested`` first; if it does
    not fit, batch size 1, then the candidate that the line through the probed points puts at
    the budget, stepping down until a probed candidate fits (a few probes of about a second on
    CPU). With a :class:`MemoryEstimate`, :meth:`MemoryEstimate.total` decides.
    ``chosen`` is ``None`` when batch size 1 does not fit.

    Args:
        estimate: a :class:`MemoryEstimate`, or a :class:`TrainingMemoryProbe` to probe with.
        requested: the batch size asked for (an int >= 1).
        available: the available memory (bytes, or an :class:`AvailableMemory`); may be
            ``None`` when ``limit`` is given.
        headroom: the share of ``available`` a step may use, in (0, 1].
        limit: the bytes a step may use; replaces ``headroom`` x ``available``.
        workers: the run's ``DataLoader`` workers (``None``: none counted).

    Returns:
        a :class:`BatchChoice`.

    Example::

        >>> est = estimate_training_memory(model, (6, 64, 64, 1), (3, 64, 64, 1), batch_sizes=(1, 16))
        >>> choose_batch_size(est, requested=16, available=available_memory()).chosen
    """
    requested = _check_batch(requested, "requested")
    if not (isinstance(headroom, (int, float)) and 0 < headroom <= 1):
        raise ValueError(f"headroom must be a fraction in (0, 1]; got {headroom!r}")
    budget, source = _budget(available, headroom, limit)
    avail = _as_available(available)
    step = _bytes_at(estimate)
    if workers is not None and not isinstance(workers, LoaderWorkers):
        raise TypeError(f"workers must be a LoaderWorkers or None; got {type(workers).__name__}")
    total = step if workers is None else (lambda b: step(b) + workers.bytes(b))
    need_requested = total(requested)
    chosen: Optional[int] = requested
    if need_requested > budget:
        chosen = _largest_that_fits(total, requested, budget)
    est = estimate.estimate() if isinstance(estimate, TrainingMemoryProbe) else estimate
    return BatchChoice(requested=requested, chosen=chosen, estimate_requested=need_requested,
                       estimate_chosen=total(chosen) if chosen is not None else total(1), budget=budget,
                       budget_source=source, available=avail, estimate=est, workers=workers)
