r"""How much memory a training step will take, known before it runs, and the guard that
:func:`convlstm.training.fit` applies with it.

How the estimate is made
------------------------
1. **The step is run, on fake tensors.** A copy of the model whose parameters and buffers are
   :class:`torch._subclasses.fake_tensor.FakeTensorMode` tensors runs two real training steps:
   forward, the loss (the :class:`~convlstm.training.ForecastModule`'s own ``training_step``,
   regularization included), backward and an AdamW step. Every operation computes the shapes,
   strides and dtypes of its outputs and nothing else: no memory is allocated and no arithmetic
   is done, so the probe costs about a second whatever the batch size and cannot itself run out
   of memory. A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every storage the
   step creates and, through weak references, when it is freed: the peak of the live tensor
   bytes is *measured*, not modelled, for the actual model, loss, ConvLSTM compute paths (which
   change with the batch size, see :mod:`convlstm._paths`), autocast casts, workspace buffers
   (:mod:`convlstm._workspace`), gradients, optimizer state and the batch (with the next batch
   that Lightning's loader already holds). The second step is the steady state: it holds the
   optimizer state and reuses the workspaces as every later step does.
2. **Resident memory is more than tensor bytes.** glibc's ``malloc`` serves blocks under its
   mmap threshold (which rises with use up to 32 MiB) from its heap, where freed blocks stay
   resident and fragment; blocks over it are mapped and unmapped, exactly. The estimate counts
   every tensor storage under 32 MiB :data:`HEAP_FACTOR` (1.5) times and larger ones once. The
   factor is the median of the ratio (peak resident memory - tensor bytes above 32 MiB) /
   (tensor bytes under 32 MiB) measured over 12 configurations (bench.py's four, keras-nextframe,
   shi2015 and convlstm-warp variants; peaks of 0.23 to 1.85 GB, medians of 3 fresh processes):
   1.14 to 2.2, median 1.5 (a 38 MB run had 3.1). With glibc's threshold fixed low
   (``MALLOC_MMAP_THRESHOLD_=65536``, every block mapped) the peaks were -6% to +9% of the tensor
   bytes, except shi2015-1x256 (+27%: 70 MB that kernels take outside torch's allocator), so the
   tensor bytes themselves are right; the spread of the factor is the estimate's main error.
3. **Not counted:** memory that kernels take outside torch's allocator (oneDNN scratchpads,
   NNPACK's workspace, FFT buffers: 10 to 70 MB measured), Python objects, DataLoader worker
   processes, and the model's parameters and buffers themselves, which the process already holds
   (the estimate is what training *adds*; with ``precision="64"`` the float64 copy of the
   parameters is added).

The result is checked against the peak resident set size (``VmHWM``) a fresh process adds while
it runs the same training steps: ``benchmarks/memory_estimate.py`` and ``tests/test_memory.py``;
the table is in ``benchmarks/RESULTS.md``.

What is measured and what is assumed, by precision:

================ =============================================================================
``"32"``         measured (float32 parameters and batch)
``"64"``         measured (float64 parameters and batch) + the float64 parameters (assumed
                 replacing the float32 ones, as Lightning converts the module)
``"bf16-mixed"`` measured under ``torch.autocast(dtype=torch.bfloat16)`` (the casts and the
                 bfloat16 activations are seen; paths that autocast turns off are followed)
``"16-mixed"``   on CPU as ``"bf16-mixed"`` (Lightning trains it so); on CUDA under float16
                 autocast
================ =============================================================================

What is compared with it: :func:`available_memory` (``MemAvailable`` of ``/proc/meminfo``, or a
cgroup's limit minus its usage when that is smaller; psutil elsewhere), of which a fit may use
:data:`HEADROOM` (80%), or an explicit ``memory_limit``.

CUDA (**untested: no GPU was available when this was written**): the fake run follows CPU
paths, so on a CUDA device :class:`TrainingMemoryProbe` runs two real steps on a copy of the
model on that device and reads ``torch.cuda.max_memory_allocated``; :func:`available_memory`
reads ``torch.cuda.mem_get_info``. :func:`convlstm.training.fit` applies the guard to CPU runs
only and says so for others.

Example::

    >>> from convlstm.training.memory import (available_memory, choose_batch_size,
    ...                                       estimate_training_memory, format_bytes)
    >>> model = convlstm.models.create("keras-nextframe", output_steps=3)
    >>> est = estimate_training_memory(model, (6, 128, 128, 1), (3, 128, 128, 1), batch_sizes=(1, 4))
    >>> print(format_bytes(est.total(4)), format_bytes(est.per_sample_bytes))
    >>> choice = choose_batch_size(est, requested=16, available=available_memory())
    >>> choice.chosen, choice.summary()
"""
from __future__ import annotations

import copy
import math
import re
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from .._errors import ParameterError

__all__ = ["estimate_training_memory", "TrainingMemoryProbe", "MemoryEstimate", "choose_batch_size", "BatchChoice",
           "available_memory", "AvailableMemory", "parse_memory_limit", "format_bytes", "MemoryBudgetError",
           "guard_training_memory", "HEADROOM", "HEAP_FACTOR", "MMAP_THRESHOLD_MAX"]

#: Share of the available memory a fit may plan to use (the rest for what the estimate does not
#: count: kernels' own buffers, Python, other processes starting meanwhile; and for its spread).
HEADROOM = 0.8
#: Weight of tensor storages under :data:`MMAP_THRESHOLD_MAX` (glibc heap blocks; see the module
#: docstring for the measurements).
HEAP_FACTOR = 1.5
#: glibc's largest dynamic mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD_MAX = 32 * 2 ** 20

PRECISIONS = ("32", "64", "bf16-mixed", "16-mixed")
_PRECISION_ALIASES = {"32-true": "32", "64-true": "64", "bf16": "bf16-mixed", "16": "16-mixed"}

_aten = torch.ops.aten


class MemoryBudgetError(ValueError):
    """A training step does not fit in the memory it may use, even at batch size 1."""


# ------------------------------------------------------------------------------------ units
_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6, "g": 10 ** 9, "gb": 10 ** 9,
          "t": 10 ** 12, "tb": 10 ** 12, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def format_bytes(n: Optional[float]) -> str:
    """``9.62 GB``, ``512 MB``, ``3.4 MB``, ``12 kB``, ``1.5 kB``, ``800 B`` (decimal units)."""
    if n is None:
        return "unknown"
    n = float(n)
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if abs(n) >= 1e7:
        return f"{n / 1e6:.0f} MB"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.0f} kB"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def parse_memory_limit(value: Any, name: str = "memory_limit") -> Union[None, str, int]:
    """Read a memory limit: ``None`` or ``"auto"`` (-> ``None``: use :data:`HEADROOM` of the
    available memory), ``"off"`` (no guard), a number of bytes, or a size with a unit:
    ``"8GB"``, ``"512 MB"``, ``"1.5G"`` (decimal: k, M, G, T with or without B) or ``"8GiB"``
    (binary: KiB, MiB, GiB, TiB). Returns ``None``, ``"off"`` or the bytes as an int."""
    allowed = ParameterError(name, f"{name} must be 'auto', 'off', a number of bytes or a size such as '8GB', "
                                   f"'512MB' or '16GiB'; got {value!r}")
    if value is None:
        return None
    if isinstance(value, bool):
        raise allowed
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)) or value < 1:
            raise allowed
        return int(value)
    if not isinstance(value, str):
        raise allowed
    text = value.strip().lower()
    if text in ("auto", ""):
        return None
    if text == "off":
        return "off"
    m = _SIZE.match(text)
    if m is None or m.group(2) not in _UNITS:
        raise allowed
    size = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(size) or size < 1:
        raise allowed
    return int(size)


# ------------------------------------------------------------------------------ available
@dataclass(frozen=True)
class AvailableMemory:
    """Memory a process may still take (``bytes``) and where the number comes from."""

    bytes: int
    source: str

    def __str__(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.source})"


def _meminfo_available(path: str = "/proc/meminfo") -> Optional[int]:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key and v.strip().isdigit():
                return int(v)
    except OSError:
        pass
    return 0


def _cgroup_available(root: str = "/sys/fs/cgroup",
                      proc_cgroup: str = "/proc/self/cgroup") -> Optional[AvailableMemory]:
    """The tightest memory limit of this process's cgroup and its ancestors, minus their usage
    (less inactive page cache, which the kernel reclaims first). cgroup v2 (``memory.max``,
    ``memory.current``) or v1 (``memory.limit_in_bytes``, ``memory.usage_in_bytes``).
    ``None`` when no limit is set or the files are not readable."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    base = Path(root)
    best: Optional[AvailableMemory] = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, rel = parts[1], parts[2].lstrip("/")
        if controllers == "":  # v2
            version, top = 2, base
            limit_name, usage_name, stat_key = "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):
            version, top = 1, base / "memory"
            limit_name, usage_name, stat_key = "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        here = top / rel if rel else top
        dirs = [here] + [p for p in here.parents if top in p.parents or p == top]
        for d in dirs:
            limit = _read_int(d / limit_name)  # "max" (v2, no limit) reads as None
            if limit is None or limit >= 2 ** 60:  # v1 writes a huge number for "no limit"
                continue
            usage = _read_int(d / usage_name)
            if usage is None:
                continue
            usage = max(0, usage - _stat_value(d / "memory.stat", stat_key))
            avail = max(0, limit - usage)
            where = "/" + str(d.relative_to(top)) if d != top else "/"
            cand = AvailableMemory(avail, f"cgroup v{version} {where}: limit {format_bytes(limit)} minus "
                                          f"{format_bytes(usage)} in use")
            if best is None or cand.bytes < best.bytes:
                best = cand
    return best


def available_memory(device: Union[str, torch.device] = "cpu") -> Optional[AvailableMemory]:
    """The memory a new allocation may still take on ``device``, or ``None`` when unknown.

    CPU: the smaller of ``MemAvailable`` in ``/proc/meminfo`` (free memory plus reclaimable
    caches, the kernel's own estimate) and the limit of the process's cgroup minus its usage;
    elsewhere ``psutil.virtual_memory().available`` if psutil is installed, else ``None``.
    CUDA (untested here): ``torch.cuda.mem_get_info`` (free bytes on the device)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        return AvailableMemory(int(free), f"torch.cuda.mem_get_info({dev}): free of {format_bytes(total)}")
    if dev.type != "cpu":
        return None
    found: List[AvailableMemory] = []
    mem = _meminfo_available()
    if mem is not None:
        found.append(AvailableMemory(mem, "MemAvailable in /proc/meminfo"))
    cg = _cgroup_available()
    if cg is not None:
        found.append(cg)
    if not found:
        try:
            import psutil
        except ImportError:
            return None
        found.append(AvailableMemory(int(psutil.virtual_memory().available), "psutil.virtual_memory().available"))
    return min(found, key=lambda a: a.bytes)


# ------------------------------------------------------------------------------ the probe
class _StorageBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Live bytes of the storages created while active (views share their storage): ``raw``
    and ``weighted`` (storages under :data:`MMAP_THRESHOLD_MAX` count :data:`HEAP_FACTOR`
    times), with their peaks. Storages registered with :meth:`known` count zero (they existed
    before). Under fake tensors it also answers what fake tensors cannot: a scalar read that
    depends on data is read as zero (``unknown_reads`` counts them; the one in the library is
    the check that the initial state is zero, which it is), and NNPACK's convolution, which has
    no fake kernel, gets an empty output of its shape."""

    def __init__(self, fake: bool):
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._ref = StorageWeakRef
        self.fake = fake
        self._live: Dict[int, Tuple[Any, int, float]] = {}
        self.raw = 0
        self.weighted = 0.0
        self.peak_raw = 0
        self.peak_weighted = 0.0
        self.peak_heap = 0  # storages under the threshold at the weighted peak
        self._heap = 0
        self.unknown_reads = 0

    def known(self, tensor: torch.Tensor) -> None:
        ref = self._ref(tensor.untyped_storage())
        self._forget_if_dead(ref.cdata)
        self._live.setdefault(ref.cdata, (ref, 0, 0.0))

    def _drop(self, key: int) -> None:
        _, n, w = self._live.pop(key)
        self.raw -= n
        self.weighted -= w
        if w != n:
            self._heap -= n

    def _forget_if_dead(self, key: int) -> None:
        entry = self._live.get(key)
        if entry is not None and entry[0].expired():  # a new storage at a freed one's address
            self._drop(key)

    def _purge(self) -> None:
        for k in [k for k, (ref, _, _) in self._live.items() if ref.expired()]:
            self._drop(k)

    def _add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        ref = self._ref(st)
        self._forget_if_dead(ref.cdata)
        if ref.cdata in self._live:
            return
        n = int(st.nbytes())
        small = n < MMAP_THRESHOLD_MAX
        w = n * HEAP_FACTOR if small else float(n)
        self._live[ref.cdata] = (ref, n, w)
        self.raw += n
        self.weighted += w
        if small:
            self._heap += n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.fake and func is _aten._nnpack_spatial_convolution.default:
            out = _nnpack_shape(*args, **kwargs)
        else:
            try:
                out = func(*args, **kwargs)
            except DataDependentOutputException:
                if not (self.fake and func is _aten._local_scalar_dense.default):
                    raise
                self.unknown_reads += 1
                dtype = args[0].dtype
                return False if dtype == torch.bool else (0.0 if dtype.is_floating_point else 0)
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        # frees are found lazily: the count with storages freed since the last look is an upper
        # bound, so only a count above a peak needs the (linear) look for freed storages
        if self.raw > self.peak_raw or self.weighted > self.peak_weighted:
            self._purge()
            if self.raw > self.peak_raw:
                self.peak_raw = self.raw
            if self.weighted > self.peak_weighted:
                self.peak_weighted = self.weighted
                self.peak_heap = self._heap
        return out


def _nnpack_shape(input, weight, bias=None, padding=(0, 0), stride=(1, 1)):
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
        self._results: Dict[int, Tuple[int, int]] = {}
        self._seconds = 0.0
        self._unknown_reads = 0

    # the numbers
    def __call__(self, batch_size: int) -> int:
        b = _check_batch(batch_size)
        if b not in self._results:
            t0 = time.perf_counter()
            self._results[b] = self._probe_cuda(b) if self.device.type == "cuda" else self._probe_fake(b)
            self._seconds += time.perf_counter() - t0
        return self._results[b][0]

    @property
    def seconds(self) -> float:
        """Time spent probing so far."""
        return self._seconds

    def estimate(self) -> MemoryEstimate:
        """A :class:`MemoryEstimate` from the batch sizes probed so far (at least one)."""
        if not self._results:
            raise ValueError("nothing was probed yet: call the probe with a batch size first")
        pts = sorted((b, r[0]) for b, r in self._results.items())
        (b0, e0), (b1, e1) = pts[0], pts[-1]
        per = (e1 - e0) / (b1 - b0) if b1 > b0 else e0 / b0
        fixed = e0 - per * b0 if b1 > b0 else 0.0
        notes = []
        if self._unknown_reads:
            notes.append(f"{self._unknown_reads} data-dependent scalar reads were taken as zero")
        raw = tuple(sorted((b, r[1]) for b, r in self._results.items()))
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

    def _steps(self, model: nn.Module, x, y) -> None:
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
                tracker = _StorageBytes(fake=True)
                with fake_mode, tracker:
                    for t in list(twin.parameters()) + list(twin.buffers()):
                        if not isinstance(t, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer)):
                            tracker.known(t)
                    twin.train()
                    x = torch.zeros((batch,) + self.input_shape, dtype=dtype)
                    y = torch.zeros((batch,) + self.target_shape, dtype=dtype)
                    # the batches the loader has already fetched for the next steps
                    nxt = [(torch.zeros_like(x), torch.zeros_like(y)) for _ in range(self.prefetched_batches)]
                    self._steps(twin, x, y)
                    del nxt
            self._unknown_reads += tracker.unknown_reads
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
                    self._steps(twin, x, y)
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


# ------------------------------------------------------------------------------ the choice
@dataclass(frozen=True)
class BatchChoice:
    """The batch size a fit uses and why: ``chosen`` (``None`` when not even 1 fits), the
    ``requested`` one, their estimates, the ``budget`` (bytes a step may use) and where it
    comes from (``budget_source``), and the :class:`MemoryEstimate` behind it."""

    requested: int
    chosen: Optional[int]
    estimate_requested: int
    estimate_chosen: Optional[int]
    budget: int
    budget_source: str
    available: Optional[AvailableMemory]
    estimate: MemoryEstimate

    @property
    def changed(self) -> bool:
        return self.chosen is not None and self.chosen != self.requested

    def summary(self) -> str:
        """One line: what was chosen, the estimates and the budget."""
        t = f"estimated in {self.estimate.seconds:.1f} s"
        if self.chosen is None:
            need = self.estimate_chosen or self.estimate.total(1)
            return (f"a training step needs about {format_bytes(need)} even at batch size 1, over the budget of "
                    f"{format_bytes(self.budget)} ({self.budget_source}); {t}")
        if not self.changed:
            return (f"batch size {self.requested} needs about {format_bytes(self.estimate_requested)} per training "
                    f"step, within the budget of {format_bytes(self.budget)} ({self.budget_source}); {t}")
        return (f"batch size {self.requested} would need about {format_bytes(self.estimate_requested)} per training "
                f"step, over the budget of {format_bytes(self.budget)} ({self.budget_source}); using batch size "
                f"{self.chosen} (about {format_bytes(self.estimate_chosen)}), the largest that fits; {t}")

    def to_dict(self) -> Dict[str, Any]:
        return {"requested_batch_size": self.requested, "batch_size": self.chosen,
                "estimate_requested_bytes": self.estimate_requested, "estimate_bytes": self.estimate_chosen,
                "budget_bytes": self.budget, "budget_source": self.budget_source,
                "available_bytes": None if self.available is None else self.available.bytes,
                "available_source": None if self.available is None else self.available.source,
                "estimate": self.estimate.to_dict(), "summary": self.summary()}


def _budget(available: Union[None, int, AvailableMemory], headroom: float,
            limit: Union[None, int]) -> Tuple[int, str]:
    if limit is not None:
        return int(limit), f"memory_limit {format_bytes(limit)}"
    if available is None:
        raise ValueError("available memory is unknown: give available= (bytes) or a memory limit")
    avail = available if isinstance(available, AvailableMemory) else AvailableMemory(int(available), "given")
    return int(avail.bytes * headroom), f"{headroom:.0%} of {format_bytes(avail.bytes)} available: {avail.source}"


def choose_batch_size(estimate: Union[MemoryEstimate, TrainingMemoryProbe], requested: int,
                      available: Union[None, int, AvailableMemory] = None, *, headroom: float = HEADROOM,
                      limit: Optional[int] = None) -> BatchChoice:
    """The largest batch size up to ``requested`` whose estimate fits in the budget:
    ``headroom`` x ``available`` bytes, or ``limit`` bytes when given.

    With a :class:`TrainingMemoryProbe` every candidate is probed (the path a ConvLSTM layer
    takes, and so its memory, can change with the batch size): ``requested`` first; if it does
    not fit, batch size 1, then the candidate that the line through the probed points puts at
    the budget, stepping down until a probed candidate fits (a few probes of about a second on
    CPU). With a :class:`MemoryEstimate`, :meth:`MemoryEstimate.total` decides.
    ``chosen`` is ``None`` when batch size 1 does not fit.
    """
    requested = _check_batch(requested, "requested")
    if not (isinstance(headroom, (int, float)) and 0 < headroom <= 1):
        raise ValueError(f"headroom must be a fraction in (0, 1]; got {headroom!r}")
    budget, source = _budget(available, headroom, limit)
    avail = (available if isinstance(available, AvailableMemory) or available is None
             else AvailableMemory(int(available), "given"))
    if isinstance(estimate, TrainingMemoryProbe):
        total: Callable[[int], int] = estimate
    elif isinstance(estimate, MemoryEstimate):
        total = estimate.total
    else:
        raise TypeError(f"estimate must be a MemoryEstimate or a TrainingMemoryProbe; got {type(estimate).__name__}")
    e_req = total(requested)
    chosen: Optional[int] = requested
    if e_req > budget:
        chosen = None
        if requested > 1 and total(1) <= budget:
            lo, hi = 1, requested  # total(lo) fits, total(hi) does not
            for _ in range(8):  # interpolation search: a few probes
                if hi - lo <= 1:
                    break
                e_lo, e_hi = total(lo), total(hi)
                guess = lo + int((budget - e_lo) * (hi - lo) // max(1, e_hi - e_lo))
                guess = min(hi - 1, max(lo + 1, guess))
                if total(guess) <= budget:
                    lo = guess
                else:
                    hi = guess
            chosen = lo
    est = estimate.estimate() if isinstance(estimate, TrainingMemoryProbe) else estimate
    return BatchChoice(requested=requested, chosen=chosen, estimate_requested=e_req,
                       estimate_chosen=total(chosen) if chosen is not None else total(1), budget=budget,
                       budget_source=source, available=avail, estimate=est)


# ------------------------------------------------------------------------------ the guard
def _suggest(n: float) -> str:
    """A limit just above ``n`` bytes, as a user would type it (``9.7GB``)."""
    return f"{math.ceil(n / 1e8) / 10:g}GB" if n >= 1e9 else f"{max(1, math.ceil(n / 1e6))}MB"


def guard_training_memory(model: nn.Module, input_shape: Sequence[int], target_shape: Sequence[int],
                          batch_size: int, *, precision: Any = "32", memory_limit: Any = None,
                          device: Union[str, torch.device] = "cpu", processes: int = 1, describe: str = "",
                          log: Callable[[str], None] = print) -> Optional[BatchChoice]:
    """What :func:`convlstm.training.fit` does before training: estimate a step at
    ``batch_size``, compare it with the budget, and return the :class:`BatchChoice` (the batch
    size to use and why), printing one line through ``log``.

    The budget is ``memory_limit`` bytes when given (``"8GB"``, a number), else :data:`HEADROOM`
    of :func:`available_memory`, divided among ``processes`` training processes on the machine.
    ``memory_limit="off"`` skips the guard (and says so); so does unknown available memory, or
    an estimate that fails (the reason is printed). Returns ``None`` when skipped.

    Raises:
        MemoryBudgetError: batch size 1 does not fit; the message gives the estimate, the budget
            and the flags to change (``--batch-size``, ``--model-option patch_size=...``,
            ``--memory-limit``).
    """
    limit = parse_memory_limit(memory_limit)
    if limit == "off":
        log("convlstm fit: memory check off (memory_limit=off); batch size "
            f"{batch_size} is not checked against the memory available")
        return None
    processes = max(1, int(processes))
    available = None
    if limit is None:
        available = available_memory(device)
        if available is None:
            log(f"convlstm fit: memory check skipped: the available memory is unknown on this system (no "
                f"/proc/meminfo, psutil not installed); give --memory-limit SIZE to check batch size {batch_size}")
            return None
        if processes > 1:
            available = AvailableMemory(available.bytes // processes,
                                        f"{available.source}, shared by {processes} training processes")
    probe = TrainingMemoryProbe(model, input_shape, target_shape, precision=precision, device=device)
    try:
        choice = choose_batch_size(probe, batch_size, available, limit=None if limit is None else limit // processes)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an estimate that cannot be made is said, not fatal
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log(f"convlstm fit: memory check skipped: the training step could not be estimated "
            f"({type(exc).__name__}: {msg[:200]}); batch size {batch_size} is not checked; "
            f"--memory-limit off silences this")
        return None
    if choice.chosen is None:
        what = f" ({describe})" if describe else ""
        raise MemoryBudgetError(
            f"a training step{what} needs about {format_bytes(choice.estimate_chosen)} of memory even at batch size "
            f"1 (estimate; {format_bytes(choice.estimate_requested)} at the requested batch size {batch_size}), but "
            f"the budget is {format_bytes(choice.budget)} ({choice.budget_source}). Make a step smaller: "
            f"--batch-size cannot go below 1, so use smaller frames or a smaller model "
            f"(--model-option patch_size=4 for models that cut frames into patches, fewer --model-option filters, "
            f"fewer --input-steps / --output-steps), or allow more memory with --memory-limit SIZE (e.g. "
            f"--memory-limit {_suggest(choice.estimate_chosen * processes)}) or --memory-limit off, "
            f"at the risk of the process being killed")
    log(f"convlstm fit: memory: {choice.summary()}")
    if limit is not None and limit > 0:
        avail = available_memory(device)
        if avail is not None and limit // processes > avail.bytes:
            log(f"convlstm fit: memory: note: --memory-limit {format_bytes(limit)} is more than the "
                f"{format_bytes(avail.bytes)} available ({avail.source})")
    return choice
