"""What :func:`convlstm.training.fit` does before training: :func:`guard_training_memory` estimates a
step, chooses the batch size, prints one line, and raises :class:`MemoryBudgetError` when not even
batch size 1 fits."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn as nn

from .available import AvailableMemory, available_memory
from .batch_size import BatchChoice, choose_batch_size
from .probe import TrainingMemoryProbe
from .units import format_bytes, parse_memory_limit
from .workers import PREFETCH_FACTOR, LoaderWorkers

__all__ = ["guard_training_memory", "MemoryBudgetError"]


class MemoryBudgetError(ValueError):
    """A training step does not fit in the memory it may use, even at batch size 1."""


def _limit_just_above(n: float) -> str:
    """A limit just above ``n`` bytes, as a user would type it (``9.7GB``)."""
    return f"{math.ceil(n / 1e8) / 10:g}GB" if n >= 1e9 else f"{max(1, math.ceil(n / 1e6))}MB"


def _available_per_process(device: Union[str, torch.device], processes: int, batch_size: int,
                           log: Callable[[str], None]) -> Optional[AvailableMemory]:
    """The available memory on ``device``, shared among ``processes``; ``None`` (said through
    ``log``) when it is unknown."""
    available = available_memory(device)
    if available is None:
        log(f"convlstm fit: memory check skipped: the available memory is unknown on this system (no "
            f"/proc/meminfo, psutil not installed); give --memory-limit SIZE to check batch size {batch_size}")
        return None
    if processes > 1:
        available = AvailableMemory(available.bytes // processes,
                                    f"{available.source}, shared by {processes} training processes")
    return available


def _choose_or_say_why_not(probe: TrainingMemoryProbe, batch_size: int, available: Optional[AvailableMemory],
                           limit: Optional[int], log: Callable[[str], None],
                           workers: Optional[LoaderWorkers] = None) -> Optional[BatchChoice]:
    """:func:`choose_batch_size` with ``probe``; ``None`` (the reason said through ``log``) when
    the step cannot be estimated. Running out of memory and interrupts are raised."""
    try:
        return choose_batch_size(probe, batch_size, available, limit=limit, workers=workers)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an estimate that cannot be made is said, not fatal
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log(f"convlstm fit: memory check skipped: the training step could not be estimated "
            f"({type(exc).__name__}: {msg[:200]}); batch size {batch_size} is not checked; "
            f"--memory-limit off silences this")
        return None


def _budget_error(choice: BatchChoice, batch_size: int, processes: int, describe: str) -> MemoryBudgetError:
    """The error for a step that does not fit even at batch size 1: the estimate, the budget,
    and the flags that make a step smaller or allow more memory."""
    what = f" ({describe})" if describe else ""
    fewer = ""
    if choice.workers_bytes(1):
        fewer = (f", fewer --num-workers ({format_bytes(choice.workers_bytes(1))} of the estimate at batch size 1 is "
                 f"for {choice.workers.describe(1)})")
    return MemoryBudgetError(
        f"a training step{what} needs about {format_bytes(choice.estimate_chosen)} of memory even at batch size "
        f"1 (estimate; {format_bytes(choice.estimate_requested)} at the requested batch size {batch_size}), but "
        f"the budget is {format_bytes(choice.budget)} ({choice.budget_source}). Make a step smaller: "
        f"--batch-size cannot go below 1, so use smaller frames or a smaller model "
        f"(--model-option patch_size=4 for models that cut frames into patches, fewer --model-option filters, "
        f"fewer --input-steps / --output-steps){fewer}, or allow more memory with --memory-limit SIZE (e.g. "
        f"--memory-limit {_limit_just_above(choice.estimate_chosen * processes)}) or --memory-limit off, "
        f"at the risk of the process being killed")


def _note_limit_over_available(limit: int, processes: int, device: Union[str, torch.device],
                               log: Callable[[str], None]) -> None:
    """Say through ``log`` when a process's share of ``limit`` is more than the memory available."""
    avail = available_memory(device)
    if avail is not None and limit // processes > avail.bytes:
        log(f"convlstm fit: memory: note: --memory-limit {format_bytes(limit)} is more than the "
            f"{format_bytes(avail.bytes)} available ({avail.source})")


def guard_training_memory(model: nn.Module, input_shape: Sequence[int], target_shape: Sequence[int],
                          batch_size: int, *, precision: Any = "32", memory_limit: Any = None,
                          device: Union[str, torch.device] = "cpu", processes: int = 1, describe: str = "",
                          log: Callable[[str], None] = print, num_workers: int = 0,
                          prefetch_factor: int = PREFETCH_FACTOR, loaders: int = 1) -> Optional[BatchChoice]:
    """What :func:`convlstm.training.fit` does before training: estimate a step at
    ``batch_size``, compare it with the budget, and return the :class:`BatchChoice` (the batch
    size to use and why), printing one line through ``log``.

    The budget is ``memory_limit`` bytes when given (``"8GB"``, a number), else :data:`HEADROOM`
    of :func:`available_memory`, divided among ``processes`` training processes on the machine.
    Each process's ``num_workers`` ``DataLoader`` workers count against its share: with
    ``num_workers`` :math:`W > 0` the estimate at batch size :math:`B` is the step's plus
    :math:`L W (p B s + o)` (:class:`~convlstm.training.memory.workers.LoaderWorkers`: ``prefetch_factor``
    :math:`p` batches in flight per worker, :math:`s` the bytes of one float32 sample ``x`` and
    ``y``, :math:`o` a worker process's own memory, :math:`L` the ``loaders`` whose workers live
    at once), and the printed line gives that share.
    ``memory_limit="off"`` skips the guard (and says so); so does unknown available memory, or
    an estimate that fails (the reason is printed). Returns ``None`` when skipped.

    Args:
        model, input_shape, target_shape, precision, device: as :class:`TrainingMemoryProbe`.
        batch_size: the batch size asked for.
        memory_limit: ``None``/``"auto"``, ``"off"``, bytes or a size (:func:`parse_memory_limit`).
        processes: training processes that share the machine's memory.
        num_workers: ``DataLoader`` worker processes of each training process (0: none).
        prefetch_factor: batches each worker keeps in flight (torch's default, 2).
        loaders: loaders whose workers live at the same time (2 for persistent training and
            validation loaders).
        describe: words on the run, put into the error's message.
        log: where the one line goes.

    Raises:
        MemoryBudgetError: batch size 1 does not fit; the message gives the estimate, the budget
            and the flags to change (``--batch-size``, ``--model-option patch_size=...``,
            ``--memory-limit``).
    """
    limit = parse_memory_limit(memory_limit)
    if limit == "off":
        log("convlstm fit: memory check off (memory_limit=off); batch size "
            f"{batch_size} is not checked against the memory available")
        return None
    processes = max(1, int(processes))
    available = None
    if limit is None:
        available = _available_per_process(device, processes, batch_size, log)
        if available is None:
            return None
    workers = (LoaderWorkers.for_samples(num_workers, input_shape, target_shape, prefetch_factor, loaders=loaders)
               if num_workers else None)
    probe = TrainingMemoryProbe(model, input_shape, target_shape, precision=precision, device=device)
    choice = _choose_or_say_why_not(probe, batch_size, available, None if limit is None else limit // processes, log,
                                    workers)
    if choice is None:
        return None
    if choice.chosen is None:
        raise _budget_error(choice, batch_size, processes, describe)
    log(f"convlstm fit: memory: {choice.summary()}")
    if limit is not None and limit > 0:
        _note_limit_over_available(limit, processes, device, log)
    return choice
