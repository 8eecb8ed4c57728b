r"""Keeping freed memory for the next allocation instead of handing it back to the system (glibc).

A training step allocates and frees the same large activations every step. glibc's ``malloc``
serves blocks above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps them on
``free``; every page of a fresh mapping is zeroed by the kernel on its first touch. On a 256 x 256
radar step at batch 16 that is about 10 million page faults per step, and more system time than
arithmetic: measured on a 2-core AMD EPYC, the default ``convlstm-warp`` step took 9.2 s with
glibc's defaults and 3.5 s with every block kept in the heap (the same numbers computed).

:func:`keep_freed_memory` sets two of glibc's ``mallopt`` parameters for this process:
``M_MMAP_MAX = 0`` (no block is mapped on its own: all come from the heap) and
``M_TRIM_THRESHOLD = -1`` (the heap's free top is never returned), so that a step reuses the
pages the previous one touched. The cost: freed memory stays with the process until
:func:`release_freed_memory` (``malloc_trim``), and the heap fragments, so the peak resident
memory of a step is higher than its live tensor bytes (the memory guard counts it:
:data:`convlstm.training.memory.HEAP_FACTOR`).

``convlstm fit``, ``evaluate``, ``predict`` and ``demo`` (and :func:`convlstm.training.fit`) call
it; the environment variable ``CONVLSTM_KEEP_FREED_MEMORY=0`` leaves glibc's defaults alone. On a
C library other than glibc (macOS, Windows, musl) it does nothing and returns ``False``.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

__all__ = ["keep_freed_memory", "keeps_freed_memory", "release_freed_memory", "ENV_VAR"]

#: ``CONVLSTM_KEEP_FREED_MEMORY=0`` (or ``false``, ``no``, ``off``) keeps glibc's defaults.
ENV_VAR = "CONVLSTM_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1   # glibc's malloc.h
_M_MMAP_MAX = -4

_state = {"keeping": False}


def _glibc() -> Optional[ctypes.CDLL]:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - a glibc system without its usual soname
        return None


def keep_freed_memory() -> bool:
    """Make this process's ``malloc`` keep freed blocks for reuse (see the module documentation).
    Idempotent; returns whether freed memory is kept (``False``: not glibc, or turned off by
    ``CONVLSTM_KEEP_FREED_MEMORY=0``)."""
    if _state["keeping"]:
        return True
    if os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; both or neither (a heap that still maps large blocks gains little)
    if libc.mallopt(ctypes.c_int(_M_MMAP_MAX), ctypes.c_int(0)) != 1:  # pragma: no cover - glibc accepts both
        return False
    libc.mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(-1))
    _state["keeping"] = True
    return True


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` is in effect in this process."""
    return _state["keeping"]


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (``malloc_trim(0)``), e.g. after training;
    returns whether glibc released any. Freed memory goes on being kept afterwards."""
    libc = _glibc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False
