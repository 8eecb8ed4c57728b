r"""Separate sequences (e.g. Moving MNIST): :class:`SequenceDataset` and its builder."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .builder import DatasetBuilder

__all__ = ["SequenceDataset", "SequenceBuilder"]


class SequenceDataset(Dataset):
    r"""Samples from a set of separate sequences (e.g. Moving MNIST): item ``i`` is
    ``x = seq[i, :in]``, ``y = seq[i, in + gap : in + gap + out]``, scaled with
    ``scaler.transform``. Sequences ``[start, stop)`` only.

    Shapes:
        - sequences: :math:`(N, T, H, W, C)`
        - item: ``x`` :math:`(T_{in}, H, W, C)`, ``y`` :math:`(T_{out}, H, W, C)`, float32.
    """

    def __init__(self, sequences: Any, input_steps: int, output_steps: int, *, start: int = 0,
                 stop: Optional[int] = None, gap: int = 0, scaler: Any = None) -> None:
        self.sequences = sequences
        self.input_steps, self.output_steps, self.gap = int(input_steps), int(output_steps), int(gap)
        self.start = int(start)
        self.stop = len(sequences) if stop is None else int(stop)
        self.scaler = scaler

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} sequences")
        seq = np.asarray(self.sequences[self.start + i])
        x = seq[:self.input_steps]
        y = seq[self.input_steps + self.gap:self.input_steps + self.gap + self.output_steps]
        if self.scaler is not None:
            x, y = self.scaler.transform(x), self.scaler.transform(y)
        return (torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
                torch.as_tensor(np.ascontiguousarray(y), dtype=torch.float32))


def split_sequences(n: int, split: Sequence[float]) -> Dict[str, Tuple[int, int]]:
    """The sequences ``[start, stop)`` of each part: the first ``split[0]`` of the ``n`` train,
    and so on; a part with a positive fraction must get one."""
    a = int(round(n * split[0]))
    b = n if split[2] == 0 else int(round(n * (split[0] + split[1])))
    if split[1] == 0:
        b = a
    parts = {"train": (0, a), "val": (a, b), "test": (b, n)}
    for name, (lo, hi), f in zip(("train", "val", "test"), parts.values(), split):
        if f > 0 and hi <= lo:
            raise ValueError(f"the {name} part of split={list(split)} gets no sequence of the "
                             f"{n}; use more sequences or a larger {name} fraction")
    return parts


class SequenceBuilder(DatasetBuilder):
    r"""Datasets of separate sequences: sample ``i`` of a part is the first window of its
    sequence ``i``; the sequences are split in order (:func:`split_sequences`). The scaler and the
    statistics see every frame of the training sequences.

    Shapes:
        - sequences: :math:`(N, T, H, W, C)`, with :math:`T \ge T_{in} + gap + T_{out}`
        - :meth:`training_frames`: :math:`(N_{train} T, H, W, C)`
    """

    def __init__(self, sequences: Any, input_steps: int, output_steps: int, *, gap: int,
                 split: Sequence[float]) -> None:
        self.sequences = sequences
        self.input_steps, self.output_steps, self.gap = int(input_steps), int(output_steps), int(gap)
        self.parts = split_sequences(int(sequences.shape[0]), split)

    def training_frames(self) -> Tuple[Any, int, int]:
        # frames of the training sequences, time first, so the scaler and the mean see every frame
        stop = self.parts["train"][1]
        frames = self.sequences[:stop].reshape((-1,) + tuple(self.sequences.shape[2:]))
        return frames, 0, int(frames.shape[0])

    def dataset(self, start: int, stop: int, scaler: Any) -> SequenceDataset:
        return SequenceDataset(self.sequences, self.input_steps, self.output_steps, start=start, stop=stop,
                               gap=self.gap, scaler=scaler)
