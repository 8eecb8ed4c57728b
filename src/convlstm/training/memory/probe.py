"""The peak memory of a training step, counted on fake tensors: the dispatch mode that counts live
storage bytes, :class:`TrainingMemoryProbe` that runs the steps, :class:`MemoryEstimate` that holds
the result, and :func:`estimate_training_memory`."""
from __future__ import annotations

import copy
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

__all__ = ["estimate_training_memory", "TrainingMemoryProbe", "MemoryEstimate", "HEAP_FACTOR", "MMAP_THRESHOLD_MAX"]

#: Weight of tensor storages under :data:`MMAP_THRESHOLD_MAX` (glibc heap blocks; see the module
#: docstring for the measurements).
HEAP_FACTOR = 1.5
#: glibc's largest dynamic mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD_MAX = 32 * 2 ** 20

PRECISIONS = ("32", "64", "bf16-mixed", "16-mixed")
_PRECISION_ALIASES = {"32-true": "32", "64-true": "64", "bf16": "bf16-mixed", "16": "16-mixed"}

_aten = torch.ops.aten


class _PeakStorageCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Live bytes of the storages created while active (views share their storage): ``raw``
    and ``weighted`` (storages under :data:`MMAP_THRESHOLD_MAX` count :data:`HEAP_FACTOR`
    times), with their peaks. Storages registered with :meth:`mark_preexisting` count zero (they existed
    before). Under fake tensors it also answers what fake tensors cannot: a scalar read that
    depends on data is read as zero (``data_dependent_reads`` counts them; the one in the library is
    the check that the initial state is zero, which it is), and NNPACK's convolution, which has
    no fake kernel, gets an empty output of its shape."""

    def __init__(self, fake: bool):
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._weak_ref = StorageWeakRef
        self.fake = fake
        self._live: Dict[int, Tuple[Any, int, float]] = {}
        self.raw = 0
        self.weighted = 0.0
        self.peak_raw = 0
        self.peak_weighted = 0.0
        self.heap_bytes_at_peak = 0  # storages under the threshold at the weighted peak
        self._heap_bytes = 0
        self.data_dependent_reads = 0

    def mark_preexisting(self, tensor: torch.Tensor) -> None:
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
        small = n < MMAP_THRESHOLD_MAX
        w = n * HEAP_FACTOR if small else float(n)
        self._live[ref.cdata] = (ref, n, w)
        self.raw += n
        self.weighted += w
        if small:
            self._heap_bytes += n

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
                self.data_dependent_reads += 1
                dtype = args[0].dtype
                return False if dtype == torch.bool else (0.0 if dtype.is_floating_point else 0)
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._count(t)
        # frees are found lazily: the count with storages freed since the last look is an upper
        # bound, so only a count above a peak needs the (linear) look for freed storages
        if self.raw > self.peak_raw or self.weighted > self.peak_weighted:
            self._uncount_freed()
            if self.raw > self.peak_raw:
                self.peak_raw = self.raw
            if self.weighted > self.peak_weighted:
                self.peak_weighted = self.weighted
                self.heap_bytes_at_peak = self._heap_bytes
        return out


def _empty_nnpack_output(input, weight, bias=None, padding=(0, 0), stride=(1, 1)):
    n, _, h, w = input.shape
    o, _, kh, kw = weight.shape
    rows = (h + 2 * padding[0] - kh) // stride[0] + 1
    cols = (w + 2 * padding[1] - kw) // stride[1] + 1
    return input.new_empty((n, o, rows, cols))


def _check_precision(precision: Any) -> str:
    p = str(precision) if isinstance(precision, int) and not isinstance(precision, bool) else precision
    p = _PRECISION_ALIASES.get(p, p)
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return p


def _check_shape(shape: Any, name: str) -> Tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        out = ()
    if not out or any(s < 1 for s in out) or any(isinstance(s, bool) for s in shape):
        raise ValueError(f"{name} must be the shape of one sample without the batch, e.g. (6, 64, 64, 1) for "
                         f"(time, rows, cols, channels); got {shape!r}")
    return out


def _check_batch(b: Any, name: str = "batch_size") -> int:
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {b!r}")
    return int(b)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated memory that training adds to the process, by batch size.

    ``measured`` holds the batch sizes probed and their estimates (bytes); :meth:`total`
    returns those exactly and interpolates linearly between them (extrapolates from the two
    outermost beyond them): ``fixed_bytes + per_sample_bytes * batch_size`` fitted through the
    smallest and largest probed batch sizes. ``tensor_bytes`` are the raw peaks of live tensor
    bytes behind each estimate; ``method`` says how they were obtained."""

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
        """Estimated peak memory (bytes) that training at ``batch_size`` adds."""
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
        return {"measured": {str(b): e for b, e in self.measured},
                "tensor_bytes": {str(b): e for b, e in self.tensor_bytes},
                "per_sample_bytes": self.per_sample_bytes, "fixed_bytes": self.fixed_bytes,
                "precision": self.precision, "device": self.device, "method": self.method,
                "seconds": round(self.seconds, 3), "notes": list(self.notes)}


class TrainingMemoryProbe:
    """Estimates the memory of a training step of ``model`` at any batch size, and remembers
    each one (see the module docstring for how). Calling it with a batch size returns the
    estimate in bytes; :meth:`estimate` gathers what was probed into a :class:`MemoryEstimate`.

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
        self._peaks: Dict[int, Tuple[int, int]] = {}
        self._seconds = 0.0
        self._data_dependent_reads = 0

    # the numbers
    def __call__(self, batch_size: int) -> int:
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
        if self.device.type == "cuda":
            return (f"{self.steps} real training steps on {self.device} (AdamW), torch.cuda.max_memory_allocated "
                    f"(untested)")
        return (f"{self.steps} training steps (AdamW) on fake tensors, live tensor bytes measured; storages under "
                f"{MMAP_THRESHOLD_MAX // 2 ** 20} MiB x {HEAP_FACTOR} for glibc's heap")

    # the runs
    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "64" else torch.float32

    def _autocast(self):
        if self.precision not in ("bf16-mixed", "16-mixed"):
            return nullcontext()
        dtype = torch.float16 if (self.precision == "16-mixed" and self.device.type == "cuda") else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        step = getattr(model, "training_step", None)
        if self.loss_fn is None and callable(step):
            out = step((x, y), 0)
            return out["loss"] if isinstance(out, dict) else out
        loss_fn = self.loss_fn or torch.nn.functional.mse_loss
        return loss_fn(model(x), y)

    def _train_steps(self, model: nn.Module, x, y) -> None:
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

    def _probe_fake(self, batch: int) -> Tuple[int, int]:
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True, allow_fallback_kernels=False)
        dtype = self._dtype()
        rng = torch.random.get_rng_state()
        try:
            memo: Dict[int, Any] = {}
            param_bytes = 0
            for p in self.model.parameters():
                if isinstance(p, nn.parameter.UninitializedParameter):
                    continue
                fp = fake_mode.from_tensor(p.detach())
                if fp.is_floating_point() and fp.dtype != dtype and self.precision == "64":
                    fp = fp.to(dtype)
                    param_bytes += p.numel() * dtype.itemsize
                memo[id(p)] = nn.Parameter(fp, requires_grad=p.requires_grad)
            for b in self.model.buffers():
                if isinstance(b, nn.parameter.UninitializedBuffer):
                    continue
                fb = fake_mode.from_tensor(b)
                memo[id(b)] = fb.to(dtype) if (fb.is_floating_point() and self.precision == "64") else fb
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                twin = copy.deepcopy(self.model, memo)
                tracker = _PeakStorageCounter(fake=True)
                with fake_mode, tracker:
                    for t in list(twin.parameters()) + list(twin.buffers()):
                        if not isinstance(t, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)):
                            tracker.mark_preexisting(t)
                    twin.train()
                    x = torch.zeros((batch,) + self.input_shape, dtype=dtype)
                    y = torch.zeros((batch,) + self.target_shape, dtype=dtype)
                    # the batches the loader has already fetched for the next steps
                    nxt = [(torch.zeros_like(x), torch.zeros_like(y)) for _ in range(self.prefetched_batches)]
                    self._train_steps(twin, x, y)
                    del nxt
            self._data_dependent_reads += tracker.data_dependent_reads
            return int(round(tracker.peak_weighted)) + param_bytes, tracker.peak_raw + param_bytes
        finally:
            torch.random.set_rng_state(rng)

    def _probe_cuda(self, batch: int) -> Tuple[int, int]:  # pragma: no cover - no GPU where this was written
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
                x = torch.zeros((batch,) + self.input_shape, dtype=self._dtype(), device=dev)
                y = torch.zeros((batch,) + self.target_shape, dtype=self._dtype(), device=dev)
                nxt = [(torch.zeros_like(x), torch.zeros_like(y)) for _ in range(self.prefetched_batches)]
                try:
                    self._train_steps(twin, x, y)
                except torch.cuda.OutOfMemoryError:
                    big = 2 ** 62
                    return big, big
                del nxt
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
    (run on fake tensors: nothing is allocated; see the module docstring).

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
