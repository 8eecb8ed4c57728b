"""MNIST digits bundled with the package, the Moving MNIST generator (Srivastava et al. 2015)
and a reader for the standard ``mnist_test_seq.npy``."""
from __future__ import annotations

import functools
import gzip
import math
import numbers
import os
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

from .._checks import check_int, check_number

__all__ = ["read_idx", "load_mnist_digits", "moving_mnist", "load_mnist_test_seq"]

_IMAGES = "t10k-images-idx3-ubyte.gz"
_LABELS = "t10k-labels-idx1-ubyte.gz"
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Any, expected_magic: Optional[int] = None) -> np.ndarray:
    """Read an array in LeCun's IDX format (``.gz`` compressed or not), as used by MNIST.

    The header is a big-endian 32-bit magic number (two zero bytes, a type code, the number
    of dimensions; MNIST images are 2051 = ``0x00000803``, labels 2049 = ``0x00000801``) and one
    big-endian 32-bit size per dimension, followed by the values.

    Raises:
        ValueError: if the file is truncated, too long, has a bad header, or (with
            ``expected_magic``) a different magic number.

    Example::

        >>> images = read_idx("t10k-images-idx3-ubyte.gz", expected_magic=2051)  # doctest: +SKIP
        >>> images.shape                                                          # doctest: +SKIP
        (10000, 28, 28)
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable (gzip) IDX file: {err}") from None
    if len(data) < 4:
        raise ValueError(f"{path} is corrupt: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path} has IDX magic number {magic}, expected {expected_magic}; "
                         f"the file is corrupt or not the one expected")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} has an invalid IDX magic number {magic} (0x{magic:08x})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is corrupt: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path} is corrupt: the header announces shape {shape} "
                         f"({expected} bytes of data) but the file holds {len(data) - header}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


@functools.lru_cache(maxsize=1)
def _bundled_digits() -> Tuple[np.ndarray, np.ndarray]:
    assets = resources.files("convlstm") / "assets"
    with resources.as_file(assets / _IMAGES) as p:
        images = read_idx(p, expected_magic=2051)
    with resources.as_file(assets / _LABELS) as p:
        labels = read_idx(p, expected_magic=2049)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"the bundled MNIST files disagree: images {images.shape}, "
                         f"labels {labels.shape}")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_mnist_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits bundled with the package (no network needed).

    MNIST is by Y. LeCun, C. Cortes and C. Burges, CC BY-SA 3.0 (see
    ``convlstm/assets/MNIST_LICENSE.txt``): data derived from it carry the same licence.

    Returns:
        ``(images, labels)``: uint8 arrays of shapes ``(10000, 28, 28)`` and ``(10000,)``
        (fresh copies, safe to modify).

    Example::

        >>> images, labels = load_mnist_digits()
        >>> images.shape, labels[:3].tolist()
        ((10000, 28, 28), [7, 2, 1])
    """
    images, labels = _bundled_digits()
    return images.copy(), labels.copy()


def _resize_digits(digits: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(K, h, w)`` uint8 digits to ``(K, size, size)``: area averaging to shrink,
    bilinear interpolation to enlarge."""
    if digits.shape[1:] == (size, size):
        return digits
    t = torch.from_numpy(np.ascontiguousarray(digits, dtype=np.float32))[:, None]
    if size <= min(digits.shape[1:]):
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="area")
    else:
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                            align_corners=False)
    return t[:, 0].round().clamp_(0, 255).to(torch.uint8).numpy()


def _bounce(pos: np.ndarray, vel: np.ndarray, limit: float) -> None:
    """Move ``pos`` by ``vel`` in place inside ``[0, limit]``, mirroring the position and
    flipping the velocity at each wall it crosses."""
    pos += vel
    if limit == 0:
        pos[...] = 0
        return
    while True:
        low, high = pos < 0, pos > limit
        if not (low.any() or high.any()):
            return
        pos[low] = -pos[low]
        pos[high] = 2 * limit - pos[high]
        vel[low | high] = -vel[low | high]


def moving_mnist(num_sequences: int, *, seq_len: int = 20, image_size: int = 64,
                 num_digits: int = 2, digit_size: int = 28,
                 speed: Union[float, Tuple[float, float]] = (2.0, 5.0), seed: Optional[int] = 0,
                 digits: Union[str, np.ndarray] = "test", return_positions: bool = False) -> Any:
    r"""Generate Moving MNIST sequences: MNIST digits bouncing inside a square frame
    (the construction of Srivastava, Mansimov and Salakhutdinov, "Unsupervised Learning of Video
    Representations using LSTMs", ICML 2015).

    For each sequence, ``num_digits`` digits are drawn at random from ``digits``, each with a
    random top-left position :math:`p_0` uniform in :math:`[0, L]^2`
    (:math:`L = \text{image\_size} - \text{digit\_size}`), a random direction
    :math:`\theta \sim U[0, 2\pi)` and a speed :math:`s` (pixels per frame; uniform in
    ``speed`` when it is a pair). Each frame the position moves by
    :math:`v = s(\sin\theta, \cos\theta)`; at a wall the position is mirrored back inside and
    that velocity component flips sign (an elastic bounce, so every digit always lies wholly
    inside the frame). Digits are drawn at the rounded position and overlaps combined with the
    pixel-wise maximum. The same ``seed`` gives the same sequences.

    Args:
        num_sequences: number of sequences (>= 1).
        seq_len: frames per sequence (>= 1); the standard set has 20 (10 in, 10 out).
        image_size: frame height and width in pixels (standard 64).
        num_digits: digits per sequence (>= 1; standard 2).
        digit_size: digit height and width; MNIST's 28 unless resized (area averaging when
            smaller), e.g. 14 for small 32 x 32 demos. Must be <= image_size.
        speed: pixels per frame, a number or a range ``(low, high)`` sampled per digit.
        seed: seed of the random generator (``None``: a fresh random one).
        digits: ``"test"`` for the 10,000 bundled MNIST test digits, or your own uint8 array of
            square images ``(K, h, h)``.
        return_positions: also return the digits' top-left positions (float, before rounding).

    Returns:
        uint8 frames of shape ``(num_sequences, seq_len, image_size, image_size)`` with values
        in [0, 255]; with ``return_positions`` also positions of shape
        ``(num_sequences, seq_len, num_digits, 2)`` as (row, col). Add a channel axis
        (``frames[..., None]``) for the ``(time, rows, cols, channels)`` layout.

    Example::

        >>> seqs = moving_mnist(8, seq_len=20, image_size=32, digit_size=14, num_digits=1)
        >>> seqs.shape, seqs.dtype
        ((8, 20, 32, 32), dtype('uint8'))
    """
    num_sequences = check_int("num_sequences", num_sequences, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    image_size = check_int("image_size", image_size, 1)
    num_digits = check_int("num_digits", num_digits, 1)
    digit_size = check_int("digit_size", digit_size, 1)
    if digit_size > image_size:
        raise ValueError(f"digit_size must be <= image_size = {image_size} (a digit must fit "
                         f"in the frame), got {digit_size}")
    if isinstance(speed, numbers.Real) and not isinstance(speed, bool):
        lo = hi = check_number("speed", speed)
    else:
        try:
            lo, hi = speed
        except (TypeError, ValueError):
            raise TypeError(f"speed must be a number or a pair (low, high), got {speed!r}") from None
        lo, hi = check_number("speed[0]", lo), check_number("speed[1]", hi)
    if lo < 0 or hi < lo:
        raise ValueError(f"speed must be >= 0 (a pair must have 0 <= low <= high), got {speed!r}")
    if seed is not None:
        seed = check_int("seed", seed, 0)
    if isinstance(digits, str):
        if digits != "test":
            raise ValueError(f"digits must be 'test' (the bundled MNIST test digits; the "
                             f"training digits are not bundled) or a uint8 array (K, h, h), "
                             f"got {digits!r}")
        pool = _bundled_digits()[0]
    else:
        pool = np.asarray(digits)
        if pool.ndim != 3 or pool.shape[1] != pool.shape[2] or pool.shape[0] == 0:
            raise ValueError(f"digits must be 'test' or an array of square images (K, h, h) "
                             f"with K >= 1, got shape {pool.shape}")
        if pool.dtype != np.uint8:
            raise TypeError(f"digits must have dtype uint8 (values 0..255), got {pool.dtype}")

    rng = np.random.default_rng(seed)
    limit = float(image_size - digit_size)
    choice = rng.integers(0, len(pool), size=(num_sequences, num_digits))
    pos = rng.uniform(0.0, limit, size=(num_sequences, num_digits, 2))
    theta = rng.uniform(0.0, 2 * math.pi, size=(num_sequences, num_digits))
    s = rng.uniform(lo, hi, size=(num_sequences, num_digits)) if hi > lo else np.full(
        (num_sequences, num_digits), lo)
    vel = s[..., None] * np.stack([np.sin(theta), np.cos(theta)], axis=-1)

    sprites = _resize_digits(pool[choice.ravel()], digit_size).reshape(
        num_sequences, num_digits, digit_size, digit_size)
    frames = np.zeros((num_sequences, seq_len, image_size, image_size), dtype=np.uint8)
    positions = np.empty((num_sequences, seq_len, num_digits, 2))
    for t in range(seq_len):
        positions[:, t] = pos
        _bounce(pos, vel, limit)
    corners = np.clip(np.rint(positions), 0, limit).astype(np.int64)
    # Draw a block of sequences at a time, so that the writes stay within a small,
    # cache-friendly part of the output.
    block = 256
    for b0 in range(0, num_sequences, block):
        b1 = min(num_sequences, b0 + block)
        out = frames[b0:b1]
        n_idx = np.arange(b1 - b0)[:, None]
        t_idx = np.arange(seq_len)[None, :]
        # windows[n, t, r, c] is the digit-sized patch of out[n, t] with top-left corner (r, c)
        windows = np.lib.stride_tricks.sliding_window_view(out, (digit_size, digit_size),
                                                           axis=(2, 3), writeable=True)
        for d in range(num_digits):
            r, c = corners[b0:b1, :, d, 0], corners[b0:b1, :, d, 1]
            sprite = sprites[b0:b1, d][:, None]
            windows[n_idx, t_idx, r, c] = np.maximum(windows[n_idx, t_idx, r, c], sprite)
    if return_positions:
        return frames, positions
    return frames


def load_mnist_test_seq(path: Any, *, mmap: bool = True) -> np.ndarray:
    """Read the standard Moving MNIST test set, ``mnist_test_seq.npy`` (Srivastava et al. 2015).

    The file stores ``(T=20, N=10000, 64, 64)`` uint8; this returns it as
    ``(N, T, 64, 64)``, a transposed view (of a memmap with ``mmap=True``: nothing is read
    until indexed).

    Shape:
        output: ``(N, T, H, W)`` uint8; add ``[..., None]`` for a channel axis.

    Example::

        >>> seqs = load_mnist_test_seq("mnist_test_seq.npy")   # doctest: +SKIP
        >>> seqs.shape                                         # doctest: +SKIP
        (10000, 20, 64, 64)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file (the standard file is "
                                f"mnist_test_seq.npy from the Moving MNIST page of "
                                f"Srivastava et al.)")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"path={str(path)!r} is not a readable .npy file: {err}") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"path={str(path)!r} must be a .npy array, got {type(arr).__name__}")
    if arr.ndim != 4 or arr.shape[2] != arr.shape[3]:
        raise ValueError(f"{path} must hold (time, sequences, height, width) frames with "
                         f"height == width, like mnist_test_seq.npy's (20, 10000, 64, 64); "
                         f"got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{path} must hold uint8 frames like mnist_test_seq.npy, got dtype "
                         f"{arr.dtype}")
    return arr.transpose(1, 0, 2, 3)
