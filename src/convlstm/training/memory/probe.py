r"""The peak memory of a training step, counted on fake tensors.

:class:`_PeakStorageCounter` is the dispatch mode that counts live storage bytes and their peak;
:class:`TrainingMemoryProbe` runs training steps of a fake copy of a model under it, one batch size
at a time; :class:`MemoryEstimate` holds what was probed and answers for any batch size;
:func:`estimate_training_memory` does both for a list of batch sizes. How and why the bytes are
counted as they are is in the docstring of :mod:`convlstm.training.memory`.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from ..._heap import keeps_freed_memory

__all__ = ["estimate_training_memory", "TrainingMemoryProbe", "MemoryEstimate", "HEAP_FACTOR", "MMAP_THRESHOLD_MAX"]

#: Weight of tensor storages under :data:`MMAP_THRESHOLD_MAX` (glibc heap blocks; see the
#: docstring of :mod:`convlstm.training.memory` for the measurements).
HEAP_FACTOR = 1.5
#: glibc's largest dynamic mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD_MAX = 32 * 2 ** 20


def heap_block_limit() -> float:
    """The storage size from which glibc maps a block on its own instead of serving it from the
    heap: :data:`MMAP_THRESHOLD_MAX`, or no limit (``inf``) once :func:`convlstm._heap.keep_freed_memory`
    keeps every block in the heap."""
    return math.inf if keeps_freed_memory() else float(MMAP_THRESHOLD_MAX)

PRECISIONS = ("32", "64", "bf16-mixed", "16-mixed")
_PRECISION_ALIASES = {"32-true": "32", "64-true": "64", "bf16": "bf16-mixed", "16": "16-mixed"}

_aten = torch.ops.aten
_UNINITIALIZED = (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)


# ------------------------------------------------------------------------- counting storages
class _PeakStorageCounter(torch.utils._python_dispatch.TorchDispatchMode):
    r"""Counts the bytes of the tensor storages live while it is active, and their peak.

    Every output of every operation is looked at; views share their storage, so a storage counts
    once. Freed storages are found through weak references. Two counts are kept:

    .. math::
        \text{raw} = \sum_{s \text{ live}} |s|, \qquad
        \text{weighted} = \sum_{s \text{ live},\ |s| \ge M} |s|
        + h \sum_{s \text{ live},\ |s| < M} |s|

    with :math:`M` = :data:`MMAP_THRESHOLD_MAX` and :math:`h` = :data:`HEAP_FACTOR`; ``peak_raw``
    and ``peak_weighted`` are their largest values, ``heap_bytes_at_peak`` the bytes under
    :math:`M` at the weighted peak. Storages given to :meth:`mark_preexisting` count zero (they
    existed before).

    Under fake tensors (``fake=True``) it also answers what fake tensors cannot: a scalar read
    that depends on data is read as zero (``data_dependent_reads`` counts them; the one in the
    library is the check that the initial state is zero, which it is), and NNPACK's convolution,
    which has no fake kernel, gets an empty output of its shape.

    Args:
        fake: whether it runs under a ``FakeTensorMode``.
    """

    def __init__(self, fake: bool):
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._weak_ref = StorageWeakRef
        self.fake = fake
        self.heap_limit = heap_block_limit()
        # storage key (StorageWeakRef.cdata) -> (weak reference, bytes, weighted bytes)
        self._live: Dict[int, Tuple[Any, int, float]] = {}
        self.raw = 0
        self.weighted = 0.0
        self.peak_raw = 0
        self.peak_weighted = 0.0
        self.heap_bytes_at_peak = 0  # storages under the threshold at the weighted peak
        self._heap_bytes = 0
        self.data_dependent_reads = 0

    def mark_preexisting(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage as zero bytes: it existed before the step."""
        ref = self._weak_ref(tensor.untyped_storage())
        self._uncount_if_freed(ref.cdata)
        self._live.setdefault(ref.cdata, (ref, 0, 0.0))

    def _uncount(self, key: int) -> None:
        _, n, w = self._live.pop(key)
        self.raw -= n
        self.weighted -= w
        if w != n:
            self._heap_bytes -= n

    def _uncount_if_freed(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is not None and entry[0].expired():  # a new storage at a freed one's address
            self._uncount(key)

    def _uncount_freed(self) -> None:
        for k in [k for k, (ref, _, _) in self._live.items() if ref.expired()]:
            self._uncount(k)

    def _count(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        ref = self._weak_ref(st)
        self._uncount_if_freed(ref.cdata)
        if ref.cdata in self._live:
            return
        n = int(st.nbytes())
        small = n < self.heap_limit
        w = n * HEAP_FACTOR if small else float(n)
        self._live[ref.cdata] = (ref, n, w)
        self.raw += n
        self.weighted += w
        if small:
            self._heap_bytes += n

    def _update_peaks(self) -> None:
        # frees are found lazily: the count with storages freed since the last look is an upper
        # bound, so only a count above a peak needs the (linear) look for freed storages
        if self.raw > self.peak_raw or self.weighted > self.peak_weighted:
            self._uncount_freed()
            if self.raw > self.peak_raw:
                self.peak_raw = self.raw
            if self.weighted > self.peak_weighted:
                self.peak_weighted = self.weighted
                self.heap_bytes_at_peak = self._heap_bytes

    def _read_as_zero(self, tensor: torch.Tensor) -> Union[bool, float, int]:
        """A data-dependent scalar read of ``tensor`` under fake tensors, answered as zero."""
        self.data_dependent_reads += 1
        dtype = tensor.dtype
        return False if dtype == torch.bool else (0.0 if dtype.is_floating_point else 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.fake and func is _aten._nnpack_spatial_convolution.default:
            out = _empty_nnpack_output(*args, **kwargs)
        else:
            try:
                out = func(*args, **kwargs)
            except DataDependentOutputException:
                if not (self.fake and func is _aten._local_scalar_dense.default):
                    raise
                return self._read_as_zero(args[0])
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._count(t)
        self._update_peaks()
        return out


def _empty_nnpack_output(input, weight, bias=None, padding=(0, 0), stride=(1, 1)):
    r"""An empty tensor of the shape ``aten._nnpack_spatial_convolution`` returns.

    Shape:
        - input: :math:`(N, C_{in}, H, W)`, weight: :math:`(C_{out}, C_{in}, k_H, k_W)`
        - output: :math:`(N, C_{out}, H_{out}, W_{out})` with
          :math:`H_{out} = \lfloor (H + 2 p_0 - k_H) / s_0 \rfloor + 1` and
          :math:`W_{out} = \lfloor (W + 2 p_1 - k_W) / s_1 \rfloor + 1`
          (:math:`p` = ``padding``, :math:`s` = ``stride``)
    """
    n, _, h, w = input.shape
    o, _, kh, kw = weight.shape
    rows = (h + 2 * padding[0] - kh) // stride[0] + 1
    cols = (w + 2 * padding[1] - kw) // stride[1] + 1
    return input.new_empty((n, o, rows, cols))


# ------------------------------------------------------------------------- argument checks
def _check_precision(precision: Any) -> str:
    """``precision`` as one of :data:`PRECISIONS` (Lightning's aliases such as ``"32-true"`` and
    ``16`` accepted); ``ValueError`` otherwise."""
    p = str(precision) if isinstance(precision, int) and not isinstance(precision, bool) else precision
    p = _PRECISION_ALIASES.get(p, p)
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return p


def _check_shape(shape: Any, name: str) -> Tuple[int, ...]:
    """``shape`` (one sample's, without the batch) as a tuple of positive ints; ``ValueError``
    naming ``name`` otherwise."""
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        out = ()
    if not out or any(s < 1 for s in out) or any(isinstance(s, bool) for s in shape):
        raise ValueError(f"{name} must be the shape of one sample without the batch, e.g. (6, 64, 64, 1) for "
                         f"(time, rows, cols, channels); got {shape!r}")
    return out


def _check_batch(b: Any, name: str = "batch_size") -> int:
    """``b`` if it is an int >= 1 (not a bool); ``ValueError`` naming ``name`` otherwise."""
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {b!r}")
    return int(b)


# ------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class MemoryEstimate:
    r"""Estimated memory that training adds to the process, by batch size.

    ``measured`` holds the batch sizes probed and their estimates (bytes); :meth:`total`
    returns those exactly and interpolates linearly between them (extrapolates from the two
    outermost beyond them): ``fixed_bytes + per_sample_bytes * batch_size`` fitted through the
    smallest and largest probed batch sizes. ``tensor_bytes`` are the raw peaks of live tensor
    bytes behind each estimate; ``method`` says how they were obtained.

    Attributes:
        measured: ``((batch_size, bytes), ...)``, the estimates probed.
        tensor_bytes: ``((batch_size, bytes), ...)``, the raw tensor peaks behind them.
        per_sample_bytes, fixed_bytes: the line :math:`e(B) = \text{fixed} + \text{per\_sample}
            \cdot B` through the smallest and largest probed batch sizes.
        precision, device, method: what was probed and how.
        seconds: the time the probes took.
        notes: anything the estimate assumed (e.g. data-dependent reads taken as zero).
    """

    measured: Tuple[Tuple[int, int], ...]
    tensor_bytes: Tuple[Tuple[int, int], ...]
    per_sample_bytes: int
    fixed_bytes: int
    precision: str
    device: str
    method: str
    seconds: float
    notes: Tuple[str, ...] = ()

    def total(self, batch_size: int) -> int:
        r"""Estimated peak memory (bytes) that training at ``batch_size`` adds.

        With probed points :math:`(b_i, e_i)`: :math:`e_i` at :math:`B = b_i`;
        :math:`e_0 B / b_0` when a single batch size was probed;
        :math:`e_i + (e_{i+1} - e_i)(B - b_i)/(b_{i+1} - b_i)` between two probed neighbours;
        :math:`\max(0,\ \text{fixed\_bytes} + \text{per\_sample\_bytes} \cdot B)` beyond them.
        """
        b = _check_batch(batch_size)
        pts = sorted(self.measured)
        exact = dict(pts)
        if b in exact:
            return exact[b]
        if len(pts) == 1:
            b0, e0 = pts[0]
            return int(round(e0 * b / b0))
        lo = [p for p in pts if p[0] < b]
        hi = [p for p in pts if p[0] > b]
        if lo and hi:
            (b0, e0), (b1, e1) = lo[-1], hi[0]
            return int(round(e0 + (e1 - e0) * (b - b0) / (b1 - b0)))
        return max(0, int(round(self.fixed_bytes + self.per_sample_bytes * b)))

    def to_dict(self) -> Dict[str, Any]:
        """The fields as JSON types (batch sizes as string keys), for ``memory.json``."""
        return {"measured": {str(b): e for b, e in self.measured},
                "tensor_bytes": {str(b): e for b, e in self.tensor_bytes},
                "per_sample_bytes": self.per_sample_bytes, "fixed_bytes": self.fixed_bytes,
                "precision": self.precision, "device": self.device, "method": self.method,
                "seconds": round(self.seconds, 3), "notes": list(self.notes)}


# ------------------------------------------------------------------------- the probe
class TrainingMemoryProbe:
    """Estimates the memory of a training step of ``model`` at any batch size, and remembers
    each one (see :mod:`convlstm.training.memory` for how). Calling it with a batch size returns
    the estimate in bytes; :meth:`estimate` gathers what was probed into a :class:`MemoryEstimate`.

    Args:
        model: an ``nn.Module`` (called as ``loss_fn(model(x), y)``) or a LightningModule with
            a ``training_step((x, y), batch_idx)`` (called as Lightning calls it; its
            ``self.log`` is a no-op without a trainer). It is not changed: the probe runs on a
            copy whose parameters are fake (no parameter, buffer, RNG state or workspace of
            ``model`` is touched).
        input_shape, target_shape: one sample's shapes without the batch, e.g.
            ``(T_in, H, W, C)`` and ``(T_out, H, W, C)``.
        loss_fn: ``loss_fn(prediction, target) -> scalar`` for a plain module (default: mean
            squared error).
        precision: ``"32"``, ``"64"``, ``"bf16-mixed"`` or ``"16-mixed"``.
        device: ``"cpu"`` (fake run), or a CUDA device (two real steps; untested).
        steps: training steps per probe (2: the second is the steady state).
        prefetched_batches: batches held besides the one trained on (1: Lightning's loop
            fetches the next batch before the step; 0 for a plain loop).

    Shape:
        - input_shape: :math:`(T_{in}, H, W, C)`, target_shape: :math:`(T_{out}, H, W, C)`; the
          probe's batches are ``(B, *input_shape)`` and ``(B, *target_shape)``.

    Example::

        >>> probe = TrainingMemoryProbe(model, (6, 64, 64, 1), (3, 64, 64, 1))
        >>> probe(8)                       # bytes a step at batch size 8 adds
        >>> probe.estimate().total(16)     # extrapolated from what was probed
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], target_shape: Sequence[int], *,
                 loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                 precision: Any = "32", device: Union[str, torch.device] = "cpu", steps: int = 2,
                 prefetched_batches: int = 1) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.input_shape = _check_shape(input_shape, "input_shape")
        self.target_shape = _check_shape(target_shape, "target_shape")
        self.loss_fn = loss_fn
        self.precision = _check_precision(precision)
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or a CUDA device; got {device!r}")
        self.steps = _check_batch(steps, "steps")
        if isinstance(prefetched_batches, bool) or not isinstance(prefetched_batches, int) or prefetched_batches < 0:
            raise ValueError(f"prefetched_batches must be an integer >= 0; got {prefetched_batches!r}")
        self.prefetched_batches = prefetched_batches
        # batch size -> (estimate in bytes, raw peak of live tensor bytes)
        self._peaks: Dict[int, Tuple[int, int]] = {}
        self._seconds = 0.0
        self._data_dependent_reads = 0

    # the numbers
    def __call__(self, batch_size: int) -> int:
        """The estimated bytes a training step at ``batch_size`` adds (probed once, then remembered)."""
        b = _check_batch(batch_size)
        if b not in self._peaks:
            t0 = time.perf_counter()
            self._peaks[b] = self._probe_cuda(b) if self.device.type == "cuda" else self._probe_fake(b)
            self._seconds += time.perf_counter() - t0
        return self._peaks[b][0]

    @property
    def seconds(self) -> float:
        """Time spent probing so far."""
        return self._seconds

    def estimate(self) -> MemoryEstimate:
        """A :class:`MemoryEstimate` from the batch sizes probed so far (at least one)."""
        if not self._peaks:
            raise ValueError("nothing was probed yet: call the probe with a batch size first")
        pts = sorted((b, r[0]) for b, r in self._peaks.items())
        (b0, e0), (b1, e1) = pts[0], pts[-1]
        per = (e1 - e0) / (b1 - b0) if b1 > b0 else e0 / b0
        fixed = e0 - per * b0 if b1 > b0 else 0.0
        notes = []
        if self._data_dependent_reads:
            notes.append(f"{self._data_dependent_reads} data-dependent scalar reads were taken as zero")
        raw = tuple(sorted((b, r[1]) for b, r in self._peaks.items()))
        return MemoryEstimate(measured=tuple(pts), tensor_bytes=raw,
                              per_sample_bytes=int(round(per)), fixed_bytes=int(round(fixed)),
                              precision=self.precision, device=str(self.device), method=self.method,
                              seconds=self._seconds, notes=tuple(notes))

    @property
    def method(self) -> str:
        """How the bytes are obtained, in words (recorded in :attr:`MemoryEstimate.method`)."""
        if self.device.type == "cuda":
            return (f"{self.steps} real training steps on {self.device} (AdamW), torch.cuda.max_memory_allocated "
                    f"(untested)")
        heap = ("every storage" if heap_block_limit() == math.inf
                else f"storages under {MMAP_THRESHOLD_MAX // 2 ** 20} MiB")
        return (f"{self.steps} training steps (AdamW) on fake tensors, live tensor bytes measured; {heap} "
                f"x {HEAP_FACTOR} for glibc's heap")

    # the training steps
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "64" else torch.float32

    def _autocast(self):
        """The autocast context of the precision (bfloat16 on CPU for both mixed precisions, as
        Lightning trains them), or a context that does nothing."""
        if self.precision not in ("bf16-mixed", "16-mixed"):
            return nullcontext()
        dtype = torch.float16 if (self.precision == "16-mixed" and self.device.type == "cuda") else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of one step: the module's own ``training_step`` when it has one and no
        ``loss_fn`` was given, else ``loss_fn(model(x), y)`` (mean squared error by default)."""
        step = getattr(model, "training_step", None)
        if self.loss_fn is None and callable(step):
            out = step((x, y), 0)
            return out["loss"] if isinstance(out, dict) else out
        loss_fn = self.loss_fn or torch.nn.functional.mse_loss
        return loss_fn(model(x), y)

    def _train_steps(self, model: nn.Module, x, y) -> None:
        """``self.steps`` steps of forward, loss, backward and AdamW on ``model``."""
        opt = None
        for _ in range(self.steps):
            for p in model.parameters():
                p.grad = None
            with self._autocast():
                loss = self._loss(model, x, y)
            loss.backward()
            del loss
            if opt is None:  # after the first step: lazily built parameters exist by then
                opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            opt.step()

    def _zero_batches(self, batch: int, dtype: torch.dtype,
                      device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor, List[Any]]:
        """The batch trained on (zeros of shapes ``(batch, *input_shape)`` and ``(batch, *target_shape)``)
        and the ``prefetched_batches`` that the loader has already fetched for the next steps."""
        x = torch.zeros((batch,) + self.input_shape, dtype=dtype, device=device)
        y = torch.zeros((batch,) + self.target_shape, dtype=dtype, device=device)
        prefetched = [(torch.zeros_like(x), torch.zeros_like(y)) for _ in range(self.prefetched_batches)]
        return x, y, prefetched

    # the probes
    def _fake_state(self, fake_mode: FakeTensorMode, dtype: torch.dtype) -> Tuple[Dict[int, Any], int]:
        """Fake copies of the model's parameters and buffers, keyed by the ``id`` of the real ones
        (a ``copy.deepcopy`` memo, so that the copied model holds them), and the bytes that
        converting the floating-point parameters to ``dtype`` adds (``precision="64"`` only)."""
        fakes: Dict[int, Any] = {}
        param_bytes = 0
        for p in self.model.parameters():
            if isinstance(p, nn.parameter.UninitializedParameter):
                continue
            fp = fake_mode.from_tensor(p.detach())
            if fp.is_floating_point() and fp.dtype != dtype and self.precision == "64":
                fp = fp.to(dtype)
                param_bytes += p.numel() * dtype.itemsize
            fakes[id(p)] = nn.Parameter(fp, requires_grad=p.requires_grad)
        for b in self.model.buffers():
            if isinstance(b, nn.parameter.UninitializedBuffer):
                continue
            fb = fake_mode.from_tensor(b)
            fakes[id(b)] = fb.to(dtype) if (fb.is_floating_point() and self.precision == "64") else fb
        return fakes, param_bytes

    def _probe_fake(self, batch: int) -> Tuple[int, int]:
        """(estimate, raw tensor peak) of ``self.steps`` steps at ``batch`` on a fake copy of the
        model, counted by :class:`_PeakStorageCounter`; the RNG state is restored."""
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True, allow_fallback_kernels=False)
        dtype = self._dtype()
        rng = torch.random.get_rng_state()
        try:
            fakes, param_bytes = self._fake_state(fake_mode, dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                twin = copy.deepcopy(self.model, fakes)
                counter = _PeakStorageCounter(fake=True)
                with fake_mode, counter:
                    for t in list(twin.parameters()) + list(twin.buffers()):
                        if not isinstance(t, _UNINITIALIZED):
                            counter.mark_preexisting(t)
                    twin.train()
                    x, y, prefetched = self._zero_batches(batch, dtype)
                    self._train_steps(twin, x, y)
                    del prefetched
            self._data_dependent_reads += counter.data_dependent_reads
            return int(round(counter.peak_weighted)) + param_bytes, counter.peak_raw + param_bytes
        finally:
            torch.random.set_rng_state(rng)

    def _probe_cuda(self, batch: int) -> Tuple[int, int]:  # pragma: no cover - no GPU where this was written
        """(peak, peak) of ``torch.cuda.max_memory_allocated`` over ``self.steps`` real steps at
        ``batch`` on a copy of the model on the device (``2 ** 62`` when they run out of memory);
        the RNG states are restored."""
        dev = self.device
        rng = torch.random.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(dev)
        twin = None
        try:
            torch.cuda.synchronize(dev)
            base = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                twin = copy.deepcopy(self.model).to(device=dev, dtype=self._dtype())
                twin.train()
                x, y, prefetched = self._zero_batches(batch, self._dtype(), dev)
                try:
                    self._train_steps(twin, x, y)
                except torch.cuda.OutOfMemoryError:
                    big = 2 ** 62
                    return big, big
                del prefetched
            torch.cuda.synchronize(dev)
            peak = int(torch.cuda.max_memory_allocated(dev) - base)
            return peak, peak
        finally:
            del twin
            torch.cuda.empty_cache()
            torch.random.set_rng_state(rng)
            torch.cuda.set_rng_state(cuda_rng, dev)


def estimate_training_memory(model: nn.Module, input_shape: Sequence[int], target_shape: Sequence[int],
                             batch_sizes: Sequence[int] = (1, 2), *,
                             loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
                             precision: Any = "32", device: Union[str, torch.device] = "cpu") -> MemoryEstimate:
    r"""Estimate the peak memory a training step of ``model`` adds to the process, at each of
    ``batch_sizes`` (probed) and, through :meth:`MemoryEstimate.total`, at any other.

    .. math::
        \text{estimate}(B) = \max_t \Big( \sum_{s \text{ live at } t,\ |s| \ge 32\,\text{MiB}} |s|
        + 1.5 \sum_{s \text{ live at } t,\ |s| < 32\,\text{MiB}} |s| \Big)

    over the tensor storages :math:`s` that two training steps at batch size :math:`B` create
    (run on fake tensors: nothing is allocated; see :mod:`convlstm.training.memory`).

    Args:
        model, input_shape, target_shape, loss_fn, precision, device: as
            :class:`TrainingMemoryProbe`.
        batch_sizes: the batch sizes to probe (each costs about a second on CPU).

    Shape:
        - input_shape: :math:`(T_{in}, H, W, C)`, target_shape: :math:`(T_{out}, H, W, C)` (any
          per-sample shapes the model and loss take).

    Example::

        >>> est = estimate_training_memory(model, (6, 64, 64, 1), (3, 64, 64, 1), batch_sizes=(1, 8))
        >>> est.total(8) == dict(est.measured)[8]
        True
    """
    probe = TrainingMemoryProbe(model, input_shape, target_shape, loss_fn=loss_fn, precision=precision, device=device)
    sizes = [_check_batch(b, "batch_sizes") for b in batch_sizes]
    if not sizes:
        raise ValueError("batch_sizes must hold at least one batch size, e.g. (1, 2)")
    for b in sizes:
        probe(b)
    return probe.estimate()
