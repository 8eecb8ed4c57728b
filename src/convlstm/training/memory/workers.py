r"""The memory that ``DataLoader`` worker processes add to a training run: the batches they keep
in flight and each worker's own process (:class:`LoaderWorkers`).

With ``num_workers`` :math:`W > 0`, torch's ``DataLoader`` keeps up to :math:`W \cdot p` batches
in flight (``prefetch_factor`` :math:`p`, 2 by default): index batches handed to the workers,
batches being collated, and collated batches waiting in shared memory for the main process.
A sample is ``x`` :math:`(T_{in}, H, W, C)` and ``y`` :math:`(T_{out}, H, W, C)` in float32, so
with batch size :math:`B` the workers add

.. math::
    M_{\text{workers}}(B) = L \, W \left(p \, B \, s + o\right), \qquad
    s = 4 \, (T_{in} + T_{out}) \, H \, W \, C \ \text{bytes}

where :math:`o` (:data:`WORKER_OVERHEAD`) is one worker process's own memory and :math:`L` the
loaders whose workers live at once: :class:`~convlstm.training.GridDataModule` keeps its workers
between epochs (``persistent_workers``), so during a fit with a validation part the training
and the validation loaders each have :math:`W` workers (:math:`L = 2`), and a training loader
cut short by ``limit_train_batches`` still holds its prefetched batches while validation runs. The batch the
main process trains on and the one Lightning fetches ahead are already in the step's estimate
(:class:`~convlstm.training.memory.TrainingMemoryProbe`'s ``prefetched_batches``).

:math:`o` is stated, not probed. Workers are forked (torch's default on Linux), so they share
the main process's pages until they write to them. Measured with ``/proc/<pid>/smaps_rollup``
(private clean + private dirty pages) of the two workers of a :class:`GridDataModule` over a
``.npy`` memmap of 64x64 frames, after 20 to 120 batches of 1 to 64 samples: 9 to 29 MB each,
of which the batches in flight were up to 17 MB. :data:`WORKER_OVERHEAD` is 64 MiB, about
twice the largest, for the pages that copy-on-write adds over longer runs (Python's reference
counts write to the objects a worker touches). Workers started with *spawn* or *forkserver*
import torch again (about 300 MB each) and are not covered by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence

__all__ = ["LoaderWorkers", "PREFETCH_FACTOR", "WORKER_OVERHEAD"]

#: Batches each ``DataLoader`` worker keeps in flight (torch's default ``prefetch_factor``).
PREFETCH_FACTOR = 2
#: One forked worker process's own memory besides its batches, in bytes (see the module's text).
WORKER_OVERHEAD = 64 * 2 ** 20
#: Bytes of one value of a sample as the loaders yield it (float32).
SAMPLE_ITEMSIZE = 4


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LoaderWorkers:
    r"""The ``DataLoader`` workers of a run and the memory they hold at a batch size
    (:meth:`bytes`: :math:`L W (p B s + o)`, 0 without workers).

    Attributes:
        num_workers: :math:`W`, worker processes (0: the main process loads the data).
        sample_bytes: :math:`s`, bytes of one sample, ``x`` and ``y`` together.
        prefetch_factor: :math:`p`, batches each worker keeps in flight.
        overhead: :math:`o`, one worker process's own bytes.
        loaders: :math:`L`, loaders whose workers live at the same time (training and validation: 2).

    Example::

        >>> w = LoaderWorkers.for_samples(2, (6, 64, 64, 1), (3, 64, 64, 1))
        >>> w.sample_bytes, w.bytes(16) == 2 * (2 * 16 * w.sample_bytes + WORKER_OVERHEAD)
        (147456, True)
    """

    num_workers: int
    sample_bytes: int
    prefetch_factor: int = PREFETCH_FACTOR
    overhead: int = WORKER_OVERHEAD
    loaders: int = 1

    def __post_init__(self) -> None:
        _count("num_workers", self.num_workers, 0)
        _count("sample_bytes", self.sample_bytes, 0)
        _count("prefetch_factor", self.prefetch_factor, 1)
        _count("overhead", self.overhead, 0)
        _count("loaders", self.loaders, 1)

    @classmethod
    def for_samples(cls, num_workers: int, input_shape: Sequence[int], target_shape: Sequence[int],
                    prefetch_factor: int = PREFETCH_FACTOR, overhead: int = WORKER_OVERHEAD,
                    loaders: int = 1) -> "LoaderWorkers":
        """Workers loading samples ``x`` of ``input_shape`` and ``y`` of ``target_shape``
        (without the batch), in float32."""
        values = 0
        for shape in (input_shape, target_shape):
            n = 1
            for v in shape:
                n *= int(v)
            values += n
        return cls(num_workers, SAMPLE_ITEMSIZE * values, prefetch_factor, overhead, loaders)

    def batches_in_flight(self) -> int:
        """:math:`L W p`: batches the workers hold at once."""
        return self.loaders * self.num_workers * self.prefetch_factor

    def bytes(self, batch_size: int) -> int:
        """:math:`L W (p B s + o)`: what the workers hold at batch size :math:`B`."""
        return self.loaders * self.num_workers * (self.prefetch_factor * int(batch_size) * self.sample_bytes
                                                  + self.overhead)

    def describe(self, batch_size: int) -> str:
        """Words on :meth:`bytes`, e.g. ``2 DataLoader workers: 4 batches of 16 in flight + 67 MB per process``."""
        from .units import format_bytes

        n = self.loaders * self.num_workers
        each = f" ({self.num_workers} per loader x {self.loaders} loaders)" if self.loaders > 1 else ""
        return (f"{n} DataLoader worker{'s' * (n != 1)}{each}: "
                f"{self.batches_in_flight()} batches of {batch_size} in flight + {format_bytes(self.overhead)} "
                f"per process")

    def to_dict(self) -> Dict[str, int]:
        return {"num_workers": self.num_workers, "sample_bytes": self.sample_bytes,
                "prefetch_factor": self.prefetch_factor, "overhead_bytes": self.overhead, "loaders": self.loaders}
