"""Convolution helpers shared by the cell and the layers: argument normalisation, TensorFlow's
``'same'`` padding and output sizes.

TensorFlow pads ``'same'`` per spatial axis by

.. math::
    \\text{total} = \\max\\big(0, (\\lceil n/s \\rceil - 1)\\,s + (k - 1)\\,d + 1 - n\\big),\\quad
    \\text{left} = \\lfloor \\text{total}/2 \\rfloor,\\quad \\text{right} = \\text{total} - \\text{left}

which torch's ``padding='same'`` matches only for stride 1 and odd effective kernels. We compute
the pads once per input size; symmetric pads go into the convolution itself, asymmetric ones into
one :func:`torch.nn.functional.pad`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves

from ._errors import ParameterTypeError

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def channels_last_format(rank: int) -> Optional[torch.memory_format]:
    """The channels-last memory format of ``(N, C, *S)`` tensors with ``rank`` spatial axes
    (``None`` for 1D, which has none)."""
    return {2: torch.channels_last, 3: torch.channels_last_3d}.get(rank)


def normalize_tuple(value, rank: int, name: str, *, minimum: int = 1) -> Tuple[int, ...]:
    """An int or a sequence of ``rank`` ints, each ``>= minimum``, as a tuple (Keras's rules)."""
    if isinstance(value, bool):
        raise ParameterTypeError(name, f"{name} must be an int or a tuple of {rank} ints, got {value!r}")
    if isinstance(value, int):
        values = (value,) * rank
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ParameterTypeError(name, f"{name} must be an int or a tuple of {rank} ints, "
                                           f"got {value!r}") from None
        if len(values) != rank:
            raise ValueError(f"{name} must be an int or a tuple of {rank} ints, got {value!r} "
                             f"({len(values)} values)")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ParameterTypeError(name, f"{name} must hold ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{name} values must be >= {minimum}, got {value!r}")
    return values


def output_size(n: int, k: int, s: int, d: int, padding: str) -> int:
    """Size along one axis of a convolution's output, as Keras computes it."""
    if padding == "same":
        return n if s == 1 else -(-n // s)  # (the same number; plain n keeps symbolic sizes simple)
    return (n - d * (k - 1) - 1) // s + 1


def same_pads(n: int, k: int, s: int, d: int) -> Tuple[int, int]:
    """TensorFlow's ``'same'`` (left, right) padding along one axis. With stride 1 the total is
    :math:`(k-1)d` whatever :math:`n`: written so, the pads stay plain ints when :math:`n` is a
    symbolic size (graph export)."""
    total = (k - 1) * d if s == 1 else max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
    return total // 2, total - total // 2


class ConvPlan:
    """A precomputed convolution: the F.pad needed (if any) and the symmetric conv padding.

    Built once per input spatial size; calling it runs the convolution with torch's layout.
    """

    __slots__ = ("conv", "pad", "conv_padding", "stride", "dilation", "groups")

    def __init__(self, rank: int, spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], padding: str, groups: int = 1):
        self.conv: Callable = CONV[rank]
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), groups
        if padding == "valid":
            pads: List[Tuple[int, int]] = [(0, 0)] * rank
        else:
            pads = [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)]
        symbolic = any(isinstance(p, torch.SymInt) for pair in pads for p in pair)  # graph export
        if not symbolic and all(left == right for left, right in pads):
            self.pad = None
            self.conv_padding = tuple(left for left, _ in pads)
        else:  # F.pad takes the last axis first
            self.pad = tuple(p for pair in reversed(pads) for p in pair)
            self.conv_padding = (0,) * rank

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.conv(x, weight, bias, self.stride, self.conv_padding, self.dilation, self.groups)


def cached_plan(cache: Dict[Any, ConvPlan], key: Any, make: Callable[[], ConvPlan]) -> ConvPlan:
    """``cache[key]``, made by ``make()`` on a miss. Keys holding symbolic sizes (graph export
    with dynamic axes: not hashable, and valid for one trace only) bypass the cache."""
    if any(isinstance(v, torch.SymInt) for v in tree_leaves(key)):
        return make()
    plan = cache.get(key)
    if plan is None:
        plan = cache[key] = make()
    return plan


def keras_to_torch_kernel(kernel: torch.Tensor, rank: int) -> torch.Tensor:
    """Keras ``kernel_size + (in, out)`` -> torch ``(out, in) + kernel_size``."""
    return kernel.permute(rank + 1, rank, *range(rank))


def torch_to_keras_kernel(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """torch ``(out, in) + kernel_size`` -> Keras ``kernel_size + (in, out)``."""
    return weight.permute(*range(2, rank + 2), 1, 0)


def prod(values) -> int:
    return math.prod(values)


def box_sum(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    r"""The sum of ``x`` :math:`(\ldots, H, W)` over the window of rows :math:`i - b \ldots i + a` and
    columns :math:`j - b \ldots j + a` at each pixel (:math:`b` = ``before``, :math:`a` = ``after``),
    zeros beyond the grid. One cumulative sum per axis, differenced before the next axis (small
    partial sums: exact for integers below :math:`2^{53}` in float64, and no 2D integral image's
    cancellation in float32); the cost does not grow with the window."""
    for dim in (x.dim() - 2, x.dim() - 1):
        n = x.shape[dim]
        pad = [0, 0] * (x.dim() - 1 - dim) + [before + 1, after]   # a leading zero, then the window's reach
        c = F.pad(x, pad).cumsum(dim)
        x = c.narrow(dim, before + after + 1, n) - c.narrow(dim, 0, n)
    return x


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_bf16_flags() -> List[str]:
    """Which of ``BF16_CPU_FLAGS`` this CPU reports in ``/proc/cpuinfo`` (bfloat16 dot products
    in AVX-512, AMX tiles): oneDNN's bfloat16 convolutions are fast only with them. Empty where
    ``/proc/cpuinfo`` cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return []
    return [f for f in BF16_CPU_FLAGS if f in flags]
