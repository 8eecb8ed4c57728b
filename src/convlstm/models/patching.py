r"""Space-to-depth and depth-to-space for channels-last tensors (TensorFlow's channel order)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .._checks import check_positive_int

__all__ = ["SpaceToDepth", "DepthToSpace", "space_to_depth", "depth_to_space"]


def space_to_depth(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """Functional form of :class:`SpaceToDepth`."""
    p = check_positive_int("block_size", block_size)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"space_to_depth expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(f"space_to_depth expects (..., rows, cols, channels), got shape {tuple(x.shape)}")
    *lead, h, w, c = x.shape
    if h % p or w % p:
        raise ValueError(f"space_to_depth: rows and cols ({h}, {w}) must be multiples of block_size={p}")
    x = x.reshape(*lead, h // p, p, w // p, p, c)
    n = len(lead)
    x = x.permute(*range(n), n, n + 2, n + 1, n + 3, n + 4)
    return x.reshape(*lead, h // p, w // p, p * p * c)


def depth_to_space(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """Functional form of :class:`DepthToSpace`."""
    p = check_positive_int("block_size", block_size)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"depth_to_space expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(f"depth_to_space expects (..., rows, cols, channels), got shape {tuple(x.shape)}")
    *lead, h, w, d = x.shape
    if d % (p * p):
        raise ValueError(f"depth_to_space: channels {d} must be a multiple of block_size**2 = {p * p}")
    c = d // (p * p)
    x = x.reshape(*lead, h, w, p, p, c)
    n = len(lead)
    x = x.permute(*range(n), n, n + 2, n + 1, n + 3, n + 4)
    return x.reshape(*lead, h * p, w * p, c)


class SpaceToDepth(nn.Module):
    r"""Cut each frame into ``block_size x block_size`` patches and stack each patch's pixels in the
    channel axis, as Shi et al. (2015) turn 64x64x1 frames into 16x16x16 (``tf.nn.space_to_depth``).

    Output channel :math:`(i \cdot p + j) \cdot C + c` at :math:`(r, s)` holds input channel
    :math:`c` at pixel :math:`(r p + i, s p + j)`.

    Shape:
        - Input: :math:`(*, H, W, C)` channels last (e.g. :math:`(B, T, H, W, C)`), :math:`H` and
          :math:`W` multiples of :math:`p`
        - Output: :math:`(*, H/p, W/p, p^2 C)`

    Example::

        >>> SpaceToDepth(4)(torch.rand(2, 10, 64, 64, 1)).shape
        torch.Size([2, 10, 16, 16, 16])
    """

    def __init__(self, block_size: int):
        super().__init__()
        self.block_size = check_positive_int("block_size", block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x, self.block_size)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}"


class DepthToSpace(nn.Module):
    r"""The inverse of :class:`SpaceToDepth` (``tf.nn.depth_to_space``).

    Shape:
        - Input: :math:`(*, H, W, p^2 C)`
        - Output: :math:`(*, H p, W p, C)`

    Example::

        >>> x = torch.rand(2, 10, 64, 64, 1)
        >>> torch.equal(DepthToSpace(4)(SpaceToDepth(4)(x)), x)
        True
    """

    def __init__(self, block_size: int):
        super().__init__()
        self.block_size = check_positive_int("block_size", block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(x, self.block_size)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}"
