r"""Large buffers of the time loops, kept by a cell and reused by its later calls.

A training step of the ``concat`` node allocates a few buffers of tens to hundreds of MB (the
inputs of every step, the activated gates, the cell states, the gate gradients). Memory that
large comes straight from the operating system (glibc's ``malloc`` maps blocks over 32 MB
afresh), so every call paid a page fault and a zeroing per 4 kB page: on configuration 1 of
``benchmarks/`` a training step took 370 ms with the default allocator and 300 ms with one that
keeps such blocks (``MALLOC_MMAP_THRESHOLD_`` set high), about 20% of its time. A
:class:`Workspace` keeps those buffers between calls instead.

A buffer is handed out again only when nothing else uses its memory. Every use goes through a
*view* of the kept tensor (an output returned to the caller, a tensor saved for a backward, a
NumPy array made from it), and each view holds a reference to the tensor's storage; the pool's
own tensor is never handed out. A buffer whose storage has no reference beyond the pool's own
is free: the previous call's graph has been freed or differentiated, and its outputs dropped.
A training loop ``y = layer(x); loss(y).backward()`` therefore finds, on every call, the buffer
that the call before last used (``slots = 2`` per kind of buffer). A buffer still in use is
never touched: a new one is allocated (and kept, up to ``slots``).

Only CPU memory is kept: other devices have caching allocators of their own (CUDA's also
tracks streams, which a kept buffer would not).

Users: the training node of the ``concat``, ``nnpack`` and ``fft`` paths (the steps' inputs,
gates, cell states, gate gradients and the ``fft`` path's spectra) and the ``concat``/``nnpack``
inference loop (its input buffer, which holds the outputs).

The peak memory of a training step is unchanged: its peak falls in the backward, while these
buffers are in use anyway. What changes is that up to ``slots`` buffers of each kind stay
allocated between calls. Checkpointing through time, whose peak lies elsewhere, takes no buffers
from the workspace (kept buffers raised its peak at T = 64 from 338 to 452 MB).
:meth:`Workspace.clear` frees them; copies and pickles of a cell start with an empty workspace.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

import torch

__all__ = ["Workspace", "take"]

_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _storage_references(t: torch.Tensor) -> int:
    return _use_count(t.untyped_storage()._cdata)


class Workspace:
    """Named buffers reused across calls when free (see the module docstring).

    ``take(name, shape, like, memory_format)`` returns an uninitialised tensor of ``shape`` with
    ``like``'s dtype and device, as a view of a kept buffer that nothing else references, or of
    a new one. For tensors not on the CPU, or without torch's storage reference count (an
    internal function, checked at import), it allocates every time, as ``torch.empty`` would.
    """

    max_shapes = 3

    def __init__(self, slots: int = 2):
        self.slots = slots
        self._kept: Dict[Tuple, List[Tuple[torch.Tensor, int]]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return _use_count is not None

    def take(self, name: str, shape, like: torch.Tensor,
             memory_format: Optional[torch.memory_format] = None) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        fmt = memory_format or torch.contiguous_format
        if not self.enabled or like.device.type != "cpu":
            # other devices have caching allocators (CUDA's reuses memory already, and knows
            # about streams, which a kept buffer would not)
            return take(None, name, shape, like, fmt)
        # a buffer made under torch.inference_mode is an inference tensor, which may not be
        # written outside it (nor saved for a backward): the two modes keep separate buffers
        key = (name, shape, like.dtype, like.device, fmt, torch.is_inference_mode_enabled())
        with self._lock:
            kept = self._kept.get(key, [])
            for buffer, free_count in kept:
                if _storage_references(buffer) <= free_count:
                    self._kept[key] = self._kept.pop(key)  # most recently used last
                    return buffer.view(shape)
            buffer = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)
            if len(kept) < self.slots:
                kept.append((buffer, _storage_references(buffer)))
                self._kept.pop(key, None)
                self._kept[key] = kept
                self._forget_old_shapes(name, key)
            return buffer.view(shape)

    def _forget_old_shapes(self, name: str, newest: Tuple) -> None:
        """Keep the buffers of at most ``max_shapes`` shapes per name (a loop may alternate
        between a few: a last, smaller chunk or batch); the free buffers of the shapes used
        longest ago are dropped, so that the workspace does not grow with every new shape."""
        keys = [k for k in self._kept if k[0] == name]  # least recently used first
        for old in keys[: max(0, len(keys) - self.max_shapes)]:
            if old == newest:
                continue
            still_used = [(b, n) for b, n in self._kept[old] if _storage_references(b) > n]
            if still_used:
                self._kept[old] = still_used
            else:
                del self._kept[old]

    def clear(self) -> int:
        """Forget every kept buffer (their memory is freed once no view of them remains); returns
        the bytes they held."""
        with self._lock:
            held = self._held_bytes()
            self._kept.clear()
        return held

    def _held_bytes(self) -> int:
        return sum(b.untyped_storage().nbytes() for kept in self._kept.values() for b, _ in kept)

    def nbytes(self) -> int:
        """Bytes held by the kept buffers."""
        with self._lock:
            return self._held_bytes()

    # copies and pickles of a cell start empty: the buffers are scratch memory, not state
    def __deepcopy__(self, memo):
        return Workspace(self.slots)

    def __getstate__(self):
        return {"slots": self.slots}

    def __setstate__(self, state):
        self.__init__(state.get("slots", 2))

    def __repr__(self) -> str:
        return f"Workspace(buffers={sum(len(v) for v in self._kept.values())}, bytes={self.nbytes()})"


def take(workspace: Optional[Workspace], name: str, shape, like: torch.Tensor,
         memory_format: Optional[torch.memory_format] = None) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` (``like``'s dtype and device, ``memory_format``):
    from ``workspace`` when there is one, else newly allocated."""
    if workspace is not None:
        return workspace.take(name, shape, like, memory_format)
    return torch.empty(tuple(shape), dtype=like.dtype, device=like.device,
                       memory_format=memory_format or torch.contiguous_format)
