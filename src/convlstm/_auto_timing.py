r"""``implementation="auto"``'s measured choice between a direct and a fast-transform convolution.

Where the rule of :func:`convlstm._paths.auto_path` sends a layer to a fast-transform path
(``"fft"``: whole-image transforms; ``"nnpack"``: NNPACK's FFT tiles), whether it pays depends on
the machine: on the CPU the thresholds were measured on (``benchmarks/RESULTS.md``, 2026-11-27)
``"fft"`` ran the Moving MNIST configuration 1.42x faster than plain PyTorch, on a later one
0.64x, because that CPU's direct (oneDNN) convolutions were twice as fast while its complex
matrix products were not. So the first call of a layer with a new shape times **one step's
convolution** :math:`[x_t, h_{t-1}] \to 4F` gates both ways and runs the faster path:

- ``"concat"``: torch's direct convolution (oneDNN on CPU), channels-last;
- the candidate: :class:`convlstm._recurrence.SpectralStepConvolutions` or
  :class:`convlstm._recurrence.NNPACKStepConvolutions`, as the path runs it (the kernel's
  transform made once, outside the timing, as the path makes it once per call).

Each is run once to warm up, then ``REPEATS`` times; the fastest of those counts. The inputs are
constant tensors of the layer's sizes (the timing does not depend on the values, and no random
number generator is touched). The result is kept for the process, per
``(device, batch, input channels, filters, frame size, kernel, candidate)``: a step's
forward convolution stands for the three convolutions of a training step (forward, state
gradient, weight gradient), which the paths run with the same algorithms. Measuring costs a few
step convolutions, once per shape (about 0.3 s for the Moving MNIST configuration on a 2-core
CPU).

The timing runs on real tensors even when the layer's call runs under a dispatch mode, such as
the fake tensors with which ``convlstm fit``'s memory guard (:mod:`convlstm.training.memory`)
runs a step first: a fake convolution takes no time, and its "timing" would otherwise be
remembered for the real run.

Under distributed training (DDP) the ranks must run the same path: a path that differs between
ranks makes their gradients round differently. While :func:`share_choices` is on (``convlstm fit``
turns it on around each training and validation step when a process group of several ranks is
initialised, and every rank then runs the same shapes in the same order), the timing of a new
shape is taken on rank 0 only and broadcast (``torch.distributed.broadcast_object_list``), so
every rank remembers rank 0's timings and runs rank 0's choice.

The measured choice is skipped, and the rule alone decides, when ``set_auto_policy("rule")``
was called, the environment variable ``CONVLSTM_AUTO`` is ``rule``, or
``torch.use_deterministic_algorithms(True)`` is on (a timing can differ between runs, and the two
paths round differently: about 1e-6 of the output's scale).
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Callable, ContextManager, Dict, Optional, Set, Tuple

import torch

from ._errors import ParameterError
from ._ops import channels_last_format
from ._recurrence import NNPACKStepConvolutions, SpectralStepConvolutions, StepConvolutions

__all__ = ["set_auto_policy", "auto_policy", "measured_choice", "clear_auto_timings", "share_choices",
           "forget_shared_choices", "REPEATS"]

POLICIES = ("measure", "rule")
REPEATS = 3

_policy: Optional[str] = None  # set_auto_policy's, else the environment's
_timings: Dict[tuple, Dict[str, float]] = {}
_sharing = False  # share_choices': rank 0's timings are broadcast to every rank
_agreed: Set[tuple] = set()  # the shapes whose timings came from rank 0 (the same set on every rank)


def set_auto_policy(policy: str) -> str:
    """How ``implementation="auto"`` chooses between a direct and a fast-transform convolution:
    ``"measure"`` (the default: time one step's convolution both ways, once per shape, and run the
    faster) or ``"rule"`` (the fixed thresholds of :func:`convlstm._paths.auto_path`, the same
    choice on every machine and in every run). Returns the policy that was in force. Setting a
    policy forgets the timings measured so far."""
    global _policy
    if not isinstance(policy, str) or policy.lower() not in POLICIES:
        raise ParameterError("policy", f"policy must be one of {', '.join(map(repr, POLICIES))}; got {policy!r}")
    previous = auto_policy()
    _policy = policy.lower()
    clear_auto_timings()
    return previous


def auto_policy() -> str:
    """The policy in force: :func:`set_auto_policy`'s, else ``CONVLSTM_AUTO`` (``measure`` or
    ``rule``), else ``"measure"``; ``"rule"`` while torch's deterministic algorithms are on."""
    if torch.are_deterministic_algorithms_enabled():
        return "rule"
    if _policy is not None:
        return _policy
    value = os.environ.get("CONVLSTM_AUTO", "measure").strip().lower()
    if value not in POLICIES:
        raise ParameterError("CONVLSTM_AUTO", "the environment variable CONVLSTM_AUTO must be one of "
                             f"{', '.join(map(repr, POLICIES))}; got {value!r}")
    return value


def clear_auto_timings() -> None:
    """Forget the timings measured so far (the next call of each shape measures again)."""
    _timings.clear()
    _agreed.clear()


def share_choices(on: bool) -> bool:
    """Whether the timings of new shapes are taken on rank 0 and broadcast to every rank of the
    initialised default process group (``torch.distributed``), so that all ranks run the same
    path. Returns the setting that was in force. Without a process group of more than one rank it
    changes nothing.

    Every rank must then call the layers with the same shapes in the same order (as the steps of
    distributed training do): each new shape is a collective call. ``convlstm fit`` turns it on
    around each training and validation step of a distributed run, and off after it.

    Args:
        on: ``True`` to share, ``False`` to measure on each process alone.
    """
    global _sharing
    if not isinstance(on, bool):
        raise ParameterError("on", f"on must be True or False; got {on!r}")
    previous, _sharing = _sharing, on
    return previous


def forget_shared_choices() -> None:
    """Forget which shapes' timings came from rank 0 (the next shared call of each asks again)."""
    _agreed.clear()


def _group_size() -> int:
    """The number of ranks of the initialised default process group (1 without one)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank0_timings(key: tuple, measure: Callable[[], Dict[str, float]]) -> Dict[str, float]:
    """Rank 0's timings of ``key`` (remembered, or measured there), broadcast to every rank."""
    dist = torch.distributed
    mine = None
    if dist.get_rank() == 0:
        mine = _timings.get(key)
        if mine is None:
            mine = measure()
    box = [mine]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _fastest(run: Callable[[], object]) -> float:
    """Seconds of the fastest of ``REPEATS`` calls of ``run``, after one to warm up."""
    run()
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _outside_dispatch_modes() -> ContextManager:
    """A context in which no torch dispatch mode (fake tensors, a memory probe) is active."""
    try:
        from torch.utils._python_dispatch import _disable_current_modes
    except ImportError:  # a torch without it: nothing to step out of (no such modes)
        return contextlib.nullcontext()
    return _disable_current_modes()


def _step_timings(batch: int, channels: int, filters: int, spatial: Tuple[int, int], kernel: Tuple[int, int],
                  candidate: str, device: torch.device) -> Dict[str, float]:
    """Seconds of one step's float32 convolution ``(batch, channels + filters, *spatial) -> 4 filters``
    with ``kernel`` ('same', stride 1), direct (``"concat"``) and through ``candidate``."""
    padding = [k // 2 for k in kernel]
    fmt = channels_last_format(2)
    with _outside_dispatch_modes(), torch.no_grad():
        z = torch.full((batch, channels + filters) + tuple(spatial), 0.5, device=device).contiguous(memory_format=fmt)
        weight = torch.full((4 * filters, channels + filters) + tuple(kernel), 0.01, device=device)
        bias = torch.zeros(4 * filters, device=device)
        direct = StepConvolutions(padding, 2)
        fast = SpectralStepConvolutions(padding, 2, kernel) if candidate == "fft" else NNPACKStepConvolutions(padding, 2)
        for convs in (direct, fast):
            convs.for_backward = False
        w_direct, w_fast = direct.weight_layout(weight), fast.weight_layout(weight)
        return {"concat": _fastest(lambda: direct.forward(z, w_direct, bias)),
                candidate: _fastest(lambda: fast.forward(z, w_fast, bias))}


def measured_choice(layer, x: torch.Tensor, spatial: Tuple[int, ...], candidate: str) -> Tuple[str, Dict[str, float]]:
    """``(path, timings)``: ``candidate`` (``"fft"`` or ``"nnpack"``, the rule's choice) or
    ``"concat"``, whichever convolved one step faster, and the seconds each took (measured on the
    first call of this shape, then remembered; on rank 0 only, and broadcast, while
    :func:`share_choices` is on)."""
    batch, channels = x.shape[0], x.shape[2]
    key = (str(x.device), batch, channels, layer.filters, tuple(spatial), tuple(layer.kernel_size), candidate)

    def measure() -> Dict[str, float]:
        return _step_timings(batch, channels, layer.filters, tuple(spatial), tuple(layer.kernel_size), candidate,
                             x.device)

    if _sharing and key not in _agreed and _group_size() > 1:
        _timings[key] = _rank0_timings(key, measure)  # remembered on every rank: asked once per shape
        _agreed.add(key)
    timings = _timings.get(key)
    if timings is None:
        timings = _timings[key] = measure()
    return min(timings, key=timings.get), dict(timings)
