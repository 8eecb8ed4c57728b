"""What the processes of a distributed fit (DDP: several devices, several nodes) decide once and
share, and what each keeps.

Shared (decided on rank 0, the same on every rank):

- **the batch size.** Each rank runs the memory check of :func:`convlstm.training.fit` on its own
  machine (its free memory can differ from the others'); then, once Lightning has initialised the
  process group, every rank's batch size is gathered, rank 0 takes the smallest and broadcasts it
  (:func:`agree_on_batch_size`). The smallest, not rank 0's own: a batch size that fits on rank 0
  could run another rank out of memory, and the smallest fits on every rank (the estimate grows
  with the batch size). The same batch size on every rank keeps DDP's gradient average an
  average over equal shares.
- **the ConvLSTM paths of** ``implementation="auto"``: the timings behind the choice are taken on
  rank 0 and broadcast (:func:`convlstm._auto_timing.share_choices`), so every rank runs the same
  path and rounds the same way.

Kept per rank: the random number generators' states (torch, CUDA, numpy, Python's ``random``),
saved in the checkpoint as a list indexed by rank and restored by each rank from its own entry
(:class:`convlstm.training.module.RandomStateCallback`).

Both decisions are taken inside Lightning's ``setup`` hook (:class:`ShareAcrossRanks`), because
that is the first point at which the process group exists in every way of launching: Lightning's
own launcher (``strategy="ddp"``: the first process starts the others inside ``Trainer.fit``),
``torchrun`` and SLURM's ``srun`` (every process is started outside, and Lightning initialises
the group from ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` or ``SLURM_*``), and ``ddp_spawn``. The
data loaders are made after ``setup``, so they take the shared batch size.

Without an initialised process group of more than one rank every function here returns its
input unchanged (a single-process fit is not affected).
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch

import lightning.pytorch as pl

from .._auto_timing import forget_shared_choices, share_choices

__all__ = ["world", "gather_from_all", "from_rank0", "agree_on_batch_size", "ShareAcrossRanks"]


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` in the initialised default process group of ``torch.distributed``;
    ``(0, 1)`` when there is none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_from_all(value: Any) -> List[Any]:
    """Every rank's ``value`` (a picklable object), as a list indexed by rank, on every rank;
    ``[value]`` without a process group. A collective call: every rank must make it."""
    _, size = world()
    if size == 1:
        return [value]
    out: List[Any] = [None] * size
    torch.distributed.all_gather_object(out, value)
    return out


def from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` (a picklable object) on every rank; ``value`` itself without a process
    group. A collective call: every rank must make it."""
    rank, size = world()
    if size == 1:
        return value
    box = [value if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def agree_on_batch_size(local: int) -> Tuple[int, List[int]]:
    """The batch size every rank uses, and each rank's own (``local``, what its memory check
    allows): rank 0 takes the smallest of them and broadcasts it. A collective call.

    Args:
        local: this rank's batch size, an int >= 1.

    Returns:
        ``(shared, per_rank)``: ``per_rank`` indexed by rank.

    Example::

        >>> shared, per_rank = agree_on_batch_size(dm.batch_size)   # e.g. (3, [16, 3])
    """
    if isinstance(local, bool) or not isinstance(local, int) or local < 1:
        raise ValueError(f"local must be a batch size, an int >= 1; got {local!r}")
    per_rank = [int(b) for b in gather_from_all(int(local))]
    return int(from_rank0(min(per_rank))), per_rank


class ShareAcrossRanks(pl.Callback):
    """The Lightning callback through which a distributed :func:`~convlstm.training.fit` decides
    once and shares (see the module's text): in ``setup`` the batch size
    (:func:`agree_on_batch_size`, then ``datamodule.batch_size`` is set to it and
    ``on_batch_size(shared, per_rank)`` is called on every rank), and around each training and
    validation step the ConvLSTM paths of ``implementation="auto"``
    (:func:`convlstm._auto_timing.share_choices`). Rank 0 prints one line on what is shared. Does
    nothing without a process group of more than one rank.

    Args:
        on_batch_size: called on every rank with the shared batch size and the list of each
            rank's own, before the data loaders are made (``fit`` records the choice there, or
            stops a resumed run whose batch size would change); a picklable object, as
            ``ddp_spawn`` pickles the callbacks.
    """

    def __init__(self, on_batch_size: Optional[Callable[[int, List[int]], None]] = None) -> None:
        if on_batch_size is not None and not callable(on_batch_size):
            raise TypeError(f"on_batch_size must be callable or None; got {type(on_batch_size).__name__}")
        self.on_batch_size = on_batch_size
        self.ranks = 1

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        rank, self.ranks = world()
        if self.ranks == 1 or stage != "fit":
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "batch_size"):
            raise ValueError("a distributed fit shares its batch size through the datamodule's batch_size; "
                             "train through a GridDataModule (fit(datamodule=...))")
        shared, per_rank = agree_on_batch_size(int(dm.batch_size))
        dm.batch_size = shared
        share_choices(False)
        forget_shared_choices()  # a new fit: no shape is agreed on yet
        if rank == 0:
            own = ", ".join(f"rank {r}: {b}" for r, b in enumerate(per_rank))
            how = ("the same on every rank" if len(set(per_rank)) == 1 else
                   "the smallest that the ranks' memory checks allow, so that no rank runs out of memory")
            print(f"convlstm fit: batch size {shared} and the ConvLSTM paths of implementation='auto' are "
                  f"decided on rank 0 and shared by {self.ranks} ranks (batch size {how}; {own})")
        if self.on_batch_size is not None:
            self.on_batch_size(shared, per_rank)

    # the paths of implementation="auto": shared while every rank runs the same step
    def _share(self, on: bool) -> None:
        if self.ranks > 1:
            share_choices(on)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._share(True)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._share(False)

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._share(True)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._share(False)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._share(False)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._share(False)
