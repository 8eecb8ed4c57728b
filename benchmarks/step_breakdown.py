"""Where the time of a ``convlstm-warp`` training step, and of a whole ``fit``, goes.

Shapes (``--shapes``):

- ``knmi``: the KNMI radar crop, 92 frames of 256 x 256, 1 channel, 6 frames in, 3 out, batch 16
  (a synthetic series of that shape: smooth rain-like fields carried along a constant motion, or
  a real file with ``--data PATH --key K --layout L``);
- ``bikenyc``: 16 x 8 cells, 2 channels (inflow, outflow), 6 in, 3 out, batch 16 (synthetic,
  400 hourly frames with a daily cycle);
- ``mnist``: the demo's Moving MNIST (``convlstm.training.moving_mnist_demo.DEMO_SETTINGS``:
  32 x 32, 5 in, 3 out, batch 8, ``filters=[32], patch_size=2, correction=False``).

``--scale-down S`` divides rows and columns by ``S`` (at least 8 left) and the number of BikeNYC
frames and Moving MNIST sequences, for a smoke run of seconds; its figures describe nothing.

**Method, training step** (the default mode). The model is built as ``fit`` builds it
(:func:`convlstm.models.create` with the data's shape filled in), with the loss, the regularisation
term, AdamW and the constraints of :class:`convlstm.training.ForecastModule`, and the batches come
from the loader ``fit`` uses (:class:`convlstm.training.GridDataModule`'s training loader, shuffled;
without Lightning installed, a :class:`convlstm.data.WindowDataset` over the same series). After
``--warmup`` steps (the first calls choose the ConvLSTM's paths and fill caches) the script runs
``--steps`` steps without any timer (the plain step time), then ``--steps`` steps with timers:

- the phases of the step, each between two readings of :func:`time.perf_counter`: the data loader's
  ``next`` (data loading), ``.to(device)`` of the batch (batch to device), the forward, the loss
  (``loss_fn`` plus :func:`convlstm.regularization_loss`), ``backward``, the optimizer step
  (``step``, :func:`convlstm.apply_constraints`, ``zero_grad``);
- inside the forward, the model's own parts, timed by wrappers installed on the model instance
  and removed afterwards (nothing in the package is changed, the model computes what it computes
  in ``fit``): ``_encode`` (encoder, with the frame differences it reads), ``_observed_motion``
  (block matching), ``_rnn`` (the ConvLSTM stack), forward pre/post hooks on ``decoder`` and
  ``coarse_flow`` (the decoder and the motion head), and the module function ``warp_frame`` of
  :mod:`convlstm.models.warp` (every bilinear warp). A part called inside another one of the same
  name counts once. "forward, rest" is the forward's time outside those parts (padding,
  concatenations, the head's sums);
- the whole step is read by its own two clock readings; "unaccounted" is the step minus its
  phases (the loop's own Python), so that the rows add up to the measured step, and the
  tests check that this residue is small.

On CUDA every clock reading first calls :func:`torch.cuda.synchronize`, so a part's time is the
device's work on it; this removes the overlap of the host's launches with the device's work, which
the plain step (no timers, one synchronisation per step) keeps: the two totals are printed side
by side. On a CPU nothing is synchronised (every operation has returned when the clock is read).
Backward is one row: autograd runs the parts' gradients interleaved.

**Method, fit** (``--fit``): a real :func:`convlstm.training.fit` of ``--epochs`` epochs (the test
part scored beside persistence, climatology and, with pysteps installed, its optical-flow
extrapolation), with wrappers around the steps of ``convlstm.training.fitting`` (data setup, model
build, memory probe, final evaluation and its parts: blend calibration, the check on the
validation part, the test evaluation, the pictures, the extrapolation baseline's forecasts) and a
Lightning callback that reads the clock at the start and end of every training batch (the time
between a batch's end and the next one's start is the loader's), of every validation epoch and of
every checkpoint write. The rows are seconds per fit; "rest" is the fit's wall time minus them
(Lightning's setup and teardown, the run folder). ``--count-transfers N`` profiles ``N`` training
batches of the fit (``torch.profiler``, with CUDA activity on a GPU) and counts the copies between
host and device (``Memcpy HtoD``/``DtoH``) and the host's reads of device values
(``aten::_local_scalar_dense``, an ``.item()``) per step; the batch's own transfer is two copies
(``x`` and ``y``).

Usage::

    python benchmarks/step_breakdown.py                                  # the three shapes, table
    python benchmarks/step_breakdown.py --shapes knmi --steps 10 --json out.json
    python benchmarks/step_breakdown.py --shapes knmi --data knmi.npz --key precip_mm_x100 --layout THW
    python benchmarks/step_breakdown.py --fit --epochs 2 --shapes knmi
    python benchmarks/step_breakdown.py --steps 2 --warmup 1 --scale-down 4        # smoke run
    python benchmarks/step_breakdown.py --device cuda --precision bf16-mixed
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SHAPES = ("knmi", "bikenyc", "mnist")

#: the parts of the forward, in the order of the table
FORWARD_PARTS = ("encoder", "block matching", "ConvLSTM", "decoder", "flow head", "warp")
#: the phases of a training step, in the order of the table
STEP_PHASES = ("data loading", "batch to device", "forward", "loss", "backward", "optimizer step")


# ------------------------------------------------------------------------------------- shapes
@dataclass
class Shape:
    """One data shape and the training settings ``fit`` uses on it."""
    name: str
    rows: int
    cols: int
    channels: int
    input_steps: int
    output_steps: int
    batch_size: int
    frames: int = 0                 # a series of this many frames ...
    sequences: int = 0              # ... or this many separate sequences
    seq_len: int = 0
    lr: float = 1e-3
    model_options: Dict[str, Any] = field(default_factory=dict)
    scaler: str = "minmax"
    data: Optional[str] = None      # a real file instead of the synthetic series
    key: Optional[str] = None
    layout: str = "THWC"

    def describe(self) -> str:
        what = (f"{self.frames} frames" if self.sequences == 0 else f"{self.sequences} sequences of {self.seq_len}")
        source = f"file {self.data}" if self.data else "synthetic"
        return (f"{self.name}: {what} of {self.rows}x{self.cols}x{self.channels} ({source}), {self.input_steps} in, "
                f"{self.output_steps} out, batch {self.batch_size}, model_options {self.model_options or '{}'}")


def make_shape(name: str, scale_down: int = 1, data: Optional[str] = None, key: Optional[str] = None,
               layout: str = "THW") -> Shape:
    """The settings of shape ``name``; ``scale_down`` divides its rows, cols and length (a smoke run)."""
    s = max(1, int(scale_down))

    def px(n: int) -> int:
        return max(8, n // s) if s > 1 else n

    if name == "knmi":
        return Shape("knmi", px(256), px(256), 1, 6, 3, 16, frames=92,
                     data=data, key=key, layout=layout if data else "THWC")
    if name == "bikenyc":
        return Shape("bikenyc", px(16), px(8), 2, 6, 3, 16, frames=max(100, 400 // s))
    if name == "mnist":
        d = demo_settings()
        return Shape("mnist", px(int(d["image_size"])), px(int(d["image_size"])), 1, int(d["input_steps"]),
                     int(d["output_steps"]), int(d["batch_size"]), sequences=max(40, int(d["num_sequences"]) // s),
                     seq_len=int(d["seq_len"]), lr=float(d["lr"]), model_options=dict(d["model_options"]))
    raise ValueError(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")


def demo_settings() -> Dict[str, Any]:
    """The demo's settings (:data:`convlstm.training.moving_mnist_demo.DEMO_SETTINGS`); where
    Lightning is not installed (the package's training part does not import), the Moving MNIST
    entries of those settings as they read when this script was written."""
    try:
        from convlstm.training.moving_mnist_demo import DEMO_SETTINGS
    except ImportError:
        return {"num_sequences": 2000, "seq_len": 8, "image_size": 32, "digit_size": 14, "num_digits": 1,
                "speed": [2.0, 3.0], "input_steps": 5, "output_steps": 3, "batch_size": 8, "lr": 2e-3,
                "model_options": {"filters": [32], "patch_size": 2, "correction": False}}
    return dict(DEMO_SETTINGS)


def synthetic_series(shape: Shape, seed: int = 0) -> np.ndarray:
    """A ``(T, rows, cols, channels)`` float32 series: smooth nonnegative fields (rain-like cells
    for one channel, counts with a daily cycle for two) carried along a constant motion, so that
    block matching and optical flow find structure as on real data."""
    rng = np.random.default_rng(seed)
    t, h, w, c = shape.frames, shape.rows, shape.cols, shape.channels
    big_h, big_w = h + 4 * t, w + 4 * t
    noise = rng.standard_normal((big_h, big_w))
    ky = np.fft.fftfreq(big_h)[:, None]
    kx = np.fft.rfftfreq(big_w)[None, :]
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-(ky ** 2 + kx ** 2) * (big_h / 6.0) ** 2 * 0.5),
                           s=(big_h, big_w))
    smooth /= smooth.std() + 1e-12
    frames = np.stack([smooth[2 * i:2 * i + h, 3 * i:3 * i + w] for i in range(t)])   # 2 rows, 3 cols per step
    if c == 1:
        out = np.maximum(np.expm1(frames) - 0.5, 0.0)[..., None]
    else:
        daily = 1.5 + np.sin(2 * np.pi * np.arange(t) / 24.0)[:, None, None]
        base = np.exp(frames) * daily * 10
        out = np.stack([base, base * 0.9 + rng.random(base.shape)], axis=-1)
    return out.astype(np.float32)


def _load_series(shape: Shape) -> np.ndarray:
    if shape.data:
        from convlstm.data import load_grid

        series = np.asarray(load_grid(shape.data, key=shape.key, layout=shape.layout), dtype=np.float32)
        series = np.nan_to_num(series)
        shape.frames, shape.rows, shape.cols, shape.channels = (int(v) for v in series.shape)
        return series
    return synthetic_series(shape)


def _sequences(shape: Shape) -> np.ndarray:
    from convlstm import data as _data

    d = demo_settings()
    seqs = _data.moving_mnist(shape.sequences, seq_len=shape.seq_len, image_size=shape.rows,
                              num_digits=int(d["num_digits"]), digit_size=min(int(d["digit_size"]), shape.rows - 2),
                              speed=tuple(d["speed"]), seed=1)
    return seqs[..., None]


def _lightning() -> bool:
    try:
        import lightning  # noqa: F401
    except ImportError:
        return False
    return True


def make_datamodule(shape: Shape, num_workers: int = 0):
    """The :class:`GridDataModule` ``fit`` would build for ``shape`` (not yet set up)."""
    from convlstm.training import GridDataModule

    common = dict(input_steps=shape.input_steps, output_steps=shape.output_steps, batch_size=shape.batch_size,
                  scaler=shape.scaler, num_workers=num_workers)
    if shape.sequences:
        return GridDataModule(sequences=_sequences(shape), split=[0.85, 0.05, 0.10], **common)
    return GridDataModule(_load_series(shape), **common)


def training_loader(shape: Shape, num_workers: int = 0):
    """The shuffled training loader of ``shape`` (``fit``'s; a plain window dataset without Lightning)."""
    if _lightning():
        dm = make_datamodule(shape, num_workers)
        dm.setup("fit")
        return dm.train_dataloader()
    from torch.utils.data import DataLoader, TensorDataset

    from convlstm.data import WindowDataset, make_scaler

    if shape.sequences:
        seqs = _sequences(shape).astype(np.float32)
        scaler = make_scaler(shape.scaler).fit(seqs.reshape(-1, *seqs.shape[2:]))
        x = torch.from_numpy(np.asarray(scaler.transform(seqs[:, :shape.input_steps]), dtype=np.float32))
        y = torch.from_numpy(np.asarray(scaler.transform(
            seqs[:, shape.input_steps:shape.input_steps + shape.output_steps]), dtype=np.float32))
        ds = TensorDataset(x, y)
    else:
        series = _load_series(shape)
        stop = int(round(len(series) * 0.7))
        scaler = make_scaler(shape.scaler).fit(series, start=0, stop=stop)
        ds = WindowDataset(series, shape.input_steps, shape.output_steps, stop=stop, scaler=scaler)
    return DataLoader(ds, batch_size=shape.batch_size, shuffle=True, num_workers=num_workers)


# ------------------------------------------------------------------------------------- timers
class Clock:
    """Sums of named spans of wall time. On CUDA each reading synchronises the device first.

    ``span(name)`` is re-entrant per name: a span opened inside another of the same name adds
    nothing (its time is inside the outer one)."""

    def __init__(self, device: torch.device) -> None:
        self.sync = device.type == "cuda"
        self.totals: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._open: Dict[str, int] = defaultdict(int)

    def now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self, name: str) -> Optional[float]:
        self._open[name] += 1
        return self.now() if self._open[name] == 1 else None

    def stop(self, name: str, t0: Optional[float]) -> None:
        self._open[name] -= 1
        if t0 is not None:
            self.totals[name] += self.now() - t0
            self.calls[name] += 1

    @contextlib.contextmanager
    def span(self, name: str):
        t0 = self.start(name)
        try:
            yield
        finally:
            self.stop(name, t0)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


class ModelTimers:
    """Timers around a ``MotionWarpForecaster``'s parts (see the module docstring); ``remove()``
    takes them off again. Only this instance and, while installed, the module function
    ``convlstm.models.warp.warp_frame`` are wrapped."""

    def __init__(self, model: torch.nn.Module, clock: Clock) -> None:
        from convlstm.models import warp as warp_module

        self.model, self.clock, self._handles, self._methods = model, clock, [], []
        for method, label in (("_encode", "encoder"), ("_observed_motion", "block matching"), ("_rnn", "ConvLSTM")):
            if hasattr(model, method):
                setattr(model, method, self._timed(getattr(model, method), label))
                self._methods.append(method)
        for attr, label in (("decoder", "decoder"), ("coarse_flow", "flow head")):
            sub = getattr(model, attr, None)
            if isinstance(sub, torch.nn.Module):
                self._hook(sub, label)
        self._warp_module, self._warp_frame = warp_module, warp_module.warp_frame
        warp_module.warp_frame = self._timed(warp_module.warp_frame, "warp")

    def _timed(self, fn: Callable, label: str) -> Callable:
        clock = self.clock

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = clock.start(label)
            try:
                return fn(*args, **kwargs)
            finally:
                clock.stop(label, t0)
        return timed

    def _hook(self, module: torch.nn.Module, label: str) -> None:
        starts: List[Optional[float]] = []

        def pre(_module, _inputs):
            starts.append(self.clock.start(label))

        def post(_module, _inputs, _output):
            self.clock.stop(label, starts.pop())

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for method in self._methods:
            delattr(self.model, method)   # the class's method again
        self._warp_module.warp_frame = self._warp_frame
        self._handles, self._methods = [], []


# ------------------------------------------------------------------------------------- a training step
@dataclass
class Trainee:
    """The model, loss, optimiser and precision of a training step, as ``ForecastModule`` has them."""
    model: torch.nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: str

    def autocast(self):
        if self.precision == "bf16-mixed":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def build_trainee(shape: Shape, device: torch.device, precision: str = "32") -> Trainee:
    """``convlstm-warp`` for ``shape``, as ``fit`` builds it, with MSE, AdamW and the shape's rate."""
    from convlstm import losses, models

    torch.manual_seed(0)
    options = dict(shape.model_options)
    options.setdefault("in_channels", shape.channels)
    options.setdefault("frame_size", [shape.rows, shape.cols])
    options.setdefault("input_steps", shape.input_steps)
    options.setdefault("output_steps", shape.output_steps)
    model = models.create("convlstm-warp", **options).to(device)
    model.train()
    loss_fn = losses.get_loss("mse")
    return Trainee(model, loss_fn, torch.optim.AdamW(model.parameters(), lr=shape.lr), device, precision)


def _next_batch(loader, state: Dict[str, Any]):
    it = state.get("it")
    if it is None:
        it = state["it"] = iter(loader)
    try:
        return next(it)
    except StopIteration:
        state["it"] = iter(loader)
        return next(state["it"])


def training_step(t: Trainee, loader, state: Dict[str, Any], clock: Optional[Clock]) -> None:
    """One training step: the phases of the module docstring, each in a span of ``clock`` (none
    when ``clock`` is ``None``)."""
    from convlstm import layers

    span = clock.span if clock is not None else (lambda _name: contextlib.nullcontext())
    with span("data loading"):
        batch = _next_batch(loader, state)
    with span("batch to device"):
        x, y = batch[0].to(t.device, non_blocking=True), batch[1].to(t.device, non_blocking=True)
    with span("forward"), t.autocast():
        pred = t.model(x)
    with span("loss"), t.autocast():
        loss = t.loss_fn(pred, y)
        loss = loss + layers.regularization_loss(t.model).to(loss.dtype)
    with span("backward"):
        loss.backward()
    with span("optimizer step"):
        t.optimizer.step()
        layers.apply_constraints(t.model)
        t.optimizer.zero_grad(set_to_none=True)


def step_breakdown(shape: Shape, *, steps: int = 10, warmup: int = 2, device: str = "cpu",
                   precision: str = "32", num_workers: int = 0) -> Dict[str, Any]:
    """Time ``steps`` training steps of ``convlstm-warp`` on ``shape``, after ``warmup`` untimed
    ones: the plain step (no timers), then the instrumented steps' parts. Returns
    ``{"rows": [(component, ms per step, share of the total)], "total_ms", "plain_ms", ...}``;
    the rows are the step's phases, the forward's parts indented under it, and "unaccounted"."""
    dev = torch.device(device)
    loader = training_loader(shape, num_workers)
    t = build_trainee(shape, dev, precision)
    state: Dict[str, Any] = {}
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        training_step(t, loader, state, None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        training_step(t, loader, state, None)
    sync()
    plain = (time.perf_counter() - t0) / steps
    clock = Clock(dev)
    timers = ModelTimers(t.model, clock)
    step_total = 0.0
    try:
        for _ in range(steps):
            s0 = clock.now()
            training_step(t, loader, state, clock)
            step_total += clock.now() - s0
    finally:
        timers.remove()
    per = {k: v / steps for k, v in clock.totals.items()}
    total = step_total / steps
    rows = table_rows(per, total)
    return {"shape": shape.describe(), "device": str(dev), "precision": precision, "steps": steps,
            "warmup": warmup, "total_ms": total * 1e3, "plain_ms": plain * 1e3, "rows": rows,
            "calls_per_step": {k: v / steps for k, v in clock.calls.items()}}


def table_rows(per: Dict[str, float], total: float) -> List[Dict[str, Any]]:
    """Rows (component, ms, share) from seconds per step of every span and the measured step."""
    rows = []

    def add(name: str, seconds: float, level: int = 0) -> None:
        rows.append({"component": name, "ms": seconds * 1e3, "share": seconds / total if total > 0 else 0.0,
                     "level": level})

    for phase in STEP_PHASES:
        add(phase, per.get(phase, 0.0))
        if phase == "forward":
            inner = 0.0
            for part in FORWARD_PARTS:
                if part in per:
                    add(part, per[part], 1)
                    inner += per[part]
            add("forward, rest", per.get("forward", 0.0) - inner, 1)
    add("unaccounted", total - sum(per.get(p, 0.0) for p in STEP_PHASES))
    return rows


def _table(title: str, caption: str, rows: List[Dict[str, Any]], kind: str, unit: str, total: float) -> List[str]:
    """A breakdown as markdown: ``rows`` (component, level, ``unit``, share) under a title and a
    caption, nested rows indented, and the measured ``total`` of the ``kind`` (step or fit)."""
    first = "component" if kind == "step" else "phase"
    lines = [title, "", caption, "", f"| {first} | {unit} per {kind} | share of the {kind} |", "|---|---:|---:|"]
    for r in rows:
        name = ("&nbsp;&nbsp;" * r["level"] + ("of which " if r["level"] else "")) + r["component"]
        lines.append(f"| {name} | {r[unit]:.2f} | {100 * r['share']:.1f}% |")
    lines.append(f"| **total (measured {kind})** | **{total:.2f}** | 100% |")
    return lines


def markdown_step(result: Dict[str, Any]) -> str:
    caption = (f"{result['device']}, precision {result['precision']}, {result['steps']} steps after "
               f"{result['warmup']} untimed; step with timers {result['total_ms']:.1f} ms, without "
               f"{result['plain_ms']:.1f} ms")
    return "\n".join(_table(f"### {result['shape']}", caption, result["rows"], "step", "ms", result["total_ms"]))


# ------------------------------------------------------------------------------------- a whole fit
class _PhaseTimer:
    """Wrappers around functions of modules (restored by ``restore()``), adding their wall time to ``totals``."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self._undo = clock, []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        clock = self.clock

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = clock.start(label)
            try:
                return original(*args, **kwargs)
            finally:
                clock.stop(label, t0)

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo = []


def _loop_callback(clock: Clock, count_steps: int = 0, skip: int = 1):
    """A Lightning callback timing training batches, the waits between them (the loader),
    validation epochs and, with ``count_steps``, profiling that many batches for transfers."""
    import lightning.pytorch as pl

    class LoopTimer(pl.Callback):
        def __init__(self) -> None:
            self.batch_t0: Optional[float] = None
            self.batch_end: Optional[float] = None
            self.val_t0: Optional[float] = None
            self.batches = 0
            self.profile = None
            self.profiled = 0
            self.transfers: Optional[Dict[str, Any]] = None

        def on_train_epoch_start(self, trainer, module):
            self.batch_end = clock.now()   # the first batch's loading counts from here

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            now = clock.now()
            if self.batch_end is not None:
                clock.totals["data loading (training)"] += now - self.batch_end
            self.batch_t0 = now
            self._profile(batch_idx)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            now = clock.now()
            clock.totals["training steps"] += now - self.batch_t0
            self.batches += 1
            if self.profile is not None:
                self.profiled += 1
            self.batch_end = now

        def on_validation_epoch_start(self, trainer, module):
            self.batch_end = None
            self.val_t0 = clock.now()

        def on_validation_epoch_end(self, trainer, module):
            clock.totals["validation (per epoch, summed)"] += clock.now() - self.val_t0

        def on_train_epoch_end(self, trainer, module):
            self.batch_end = None
            self._stop_profile()

        def _profile(self, batch_idx: int) -> None:
            """Profile from the start of batch ``skip`` to the start of the batch ``count_steps``
            later: that many whole steps, with the transfers of their batches (Lightning moves a
            batch to the device before ``on_train_batch_start``)."""
            if not count_steps or self.transfers is not None:
                return
            if self.profile is None and batch_idx >= skip:
                self.profile = torch.profiler.profile(activities=_activities(module_device()))
                self.profile.__enter__()
                self.profiled = 0
            elif self.profile is not None and self.profiled >= count_steps:
                self._stop_profile()

        def _stop_profile(self) -> None:
            if self.profile is None:
                return
            self.profile.__exit__(None, None, None)
            if self.profiled:
                self.transfers = count_transfers(self.profile, self.profiled)
            self.profile = None

    device_holder: Dict[str, torch.device] = {}

    def module_device() -> torch.device:
        return device_holder.get("device", torch.device("cpu"))

    cb = LoopTimer()
    cb.device_holder = device_holder
    return cb


def _activities(device: torch.device) -> List[Any]:
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    return acts


def count_transfers(prof: Any, steps: int) -> Dict[str, Any]:
    """Copies between host and device and the host's reads of device values in a profile of
    ``steps`` training steps, per step: ``htod``, ``dtoh`` (CUDA ``Memcpy`` events), ``item``
    (``aten::_local_scalar_dense``) and ``to`` (``aten::to`` calls, casts included)."""
    counts = {"htod": 0, "dtoh": 0, "item": 0, "to": 0, "sync": 0}
    for e in prof.key_averages():
        key, n = e.key, int(e.count)
        if key.startswith("Memcpy HtoD"):
            counts["htod"] += n
        elif key.startswith("Memcpy DtoH"):
            counts["dtoh"] += n
        elif key == "aten::_local_scalar_dense":
            counts["item"] += n
        elif key == "aten::to":
            counts["to"] += n
        elif key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"):
            counts["sync"] += n
    per_step = {k: v / steps for k, v in counts.items()}
    return {"steps": steps, "per_step": per_step,
            "htod_beyond_batch": per_step["htod"] - 2 if any(counts[k] for k in ("htod", "dtoh")) else 0.0,
            "note": "the batch's own transfer is 2 HtoD copies per step (x and y); CUDA copies are only seen on CUDA"}


def transfer_check(shape: Shape, *, steps: int = 3, warmup: int = 2, device: str = "cpu",
                   precision: str = "32") -> Dict[str, Any]:
    """``steps`` training steps of the plain loop (no Lightning) under ``torch.profiler``: the
    model's own copies between host and device per step (:func:`count_transfers`)."""
    dev = torch.device(device)
    loader = training_loader(shape)
    t = build_trainee(shape, dev, precision)
    state: Dict[str, Any] = {}
    for _ in range(warmup):
        training_step(t, loader, state, None)
    with torch.profiler.profile(activities=_activities(dev)) as prof:
        for _ in range(steps):
            training_step(t, loader, state, None)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return count_transfers(prof, steps)


def fit_breakdown(shape: Shape, *, epochs: int = 2, device: str = "cpu", precision: str = "32",
                  limit_train_batches: Optional[int] = None, count_steps: int = 0,
                  num_workers: int = 0) -> Dict[str, Any]:
    """A real :func:`convlstm.training.fit` of ``epochs`` on ``shape`` (in a temporary run folder),
    timed by phases (see the module docstring). Returns ``{"rows": [(phase, s, share)],
    "total_s", ...}``."""
    from convlstm import baselines as _baselines
    from convlstm.training import evaluation as _evaluation
    from convlstm.training import fitting as _fitting
    from convlstm.training.config import FitConfig
    from convlstm.training.module import AtomicCheckpointIO

    dev = torch.device(device)
    clock = Clock(dev)
    phases = _PhaseTimer(clock)
    phases.wrap(_fitting, "_prepare_data", "data setup")
    phases.wrap(_fitting, "_build_module", "model build")
    phases.wrap(_fitting, "_guard_memory", "memory probe")
    phases.wrap(_fitting, "_write_run_start", "run folder")
    phases.wrap(_fitting, "_evaluate_after_fit", "final evaluation")
    phases.wrap(_fitting, "_calibrate_blend", "blend calibration")
    phases.wrap(_fitting, "_validation_check", "check on the validation part")
    phases.wrap(_fitting, "evaluate", "test evaluation")
    phases.wrap(_evaluation, "_draw", "pictures")
    phases.wrap(_baselines.Extrapolation, "forecast", "extrapolation baseline")
    phases.wrap(AtomicCheckpointIO, "save_checkpoint", "checkpoint writes")
    loop = _loop_callback(clock, count_steps)
    loop.device_holder["device"] = dev
    names = ["persistence", "climatology"]
    try:
        import pysteps  # noqa: F401

        names.append("extrapolation")
    except ImportError:
        pass
    dm = make_datamodule(shape, num_workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = FitConfig(model="convlstm-warp", model_options=dict(shape.model_options),
                            input_steps=shape.input_steps, output_steps=shape.output_steps,
                            batch_size=shape.batch_size, lr=shape.lr, max_epochs=int(epochs), baselines=names,
                            run_dir=str(Path(tmp) / "run"), progress=False, precision=precision,
                            accelerator="gpu" if dev.type == "cuda" else "cpu", devices=1, seed=1,
                            limit_train_batches=limit_train_batches, calibrate_blend=False)
            t0 = time.perf_counter()
            _fitting._fit(cfg, datamodule=dm, callbacks=[loop])
            total = time.perf_counter() - t0
    finally:
        phases.restore()
    c = dict(clock.totals)
    training = c.get("training steps", 0.0)
    loading = c.get("data loading (training)", 0.0)
    validation = c.get("validation (per epoch, summed)", 0.0)
    rows = []

    def add(name: str, seconds: float, level: int = 0) -> None:
        rows.append({"component": name, "s": seconds, "share": seconds / total if total > 0 else 0.0, "level": level})

    add("data setup", c.get("data setup", 0.0))
    add("model build", c.get("model build", 0.0))
    add("memory probe", c.get("memory probe", 0.0))
    add("run folder", c.get("run folder", 0.0))
    add("training steps", training)
    add("data loading (training)", loading)
    add("validation (per epoch, summed)", validation)
    add("checkpoint writes", c.get("checkpoint writes", 0.0))
    final = c.get("final evaluation", 0.0)
    add("final evaluation", final)
    for part in ("blend calibration", "check on the validation part", "test evaluation"):
        if part in c:
            add(part, c[part], 1)
    for part in ("pictures", "extrapolation baseline"):
        if part in c:
            add(part, c[part], 2 if part == "pictures" else 1)
    top = ("data setup", "model build", "memory probe", "run folder", "checkpoint writes", "final evaluation")
    add("rest (Lightning's setup and loop, outside the above)",
        total - sum(c.get(k, 0.0) for k in top) - training - loading - validation)
    return {"shape": shape.describe(), "device": str(dev), "precision": precision, "epochs": int(epochs),
            "train_batches": loop.batches, "total_s": total, "rows": rows, "transfers": loop.transfers,
            "step_ms_in_fit": 1e3 * training / max(1, loop.batches)}


def markdown_fit(result: Dict[str, Any]) -> str:
    caption = (f"{result['device']}, precision {result['precision']}, {result['epochs']} epochs, "
               f"{result['train_batches']} training batches ({result['step_ms_in_fit']:.1f} ms each in Lightning's "
               f"loop); fit {result['total_s']:.1f} s")
    lines = _table(f"### fit: {result['shape']}", caption, result["rows"], "fit", "s", result["total_s"])
    if result.get("transfers"):
        tr = result["transfers"]
        lines += ["", f"host-device traffic per training step (profile of {tr['steps']} steps of the fit): "
                      + ", ".join(f"{k} {v:g}" for k, v in tr["per_step"].items())
                      + f"; HtoD beyond the batch's 2: {tr['htod_beyond_batch']:g}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command line
def machine() -> Dict[str, Any]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    p.add_argument("--steps", type=int, default=10, help="timed training steps (each of the two passes)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--scale-down", type=int, default=1, metavar="S",
                   help="divide rows, cols and the data's length by S (a smoke run)")
    p.add_argument("--data", default=None, help="a real grid file for the knmi shape")
    p.add_argument("--key", default=None)
    p.add_argument("--layout", default="THW")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (fit's default: 0)")
    p.add_argument("--fit", action="store_true", help="time a short real fit instead of training steps")
    p.add_argument("--epochs", type=int, default=2, help="epochs of --fit")
    p.add_argument("--limit-train-batches", type=int, default=None, help="batches per epoch of --fit")
    p.add_argument("--count-transfers", type=int, default=0, metavar="N",
                   help="profile N training steps for host-device copies (of the fit with --fit)")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
    info = machine()
    print(f"# convlstm-warp time breakdown ({'fit' if args.fit else 'training step'}), {info['date']}")
    print(f"torch {info['torch']}, {info['threads']} threads of {info['cpus']} CPUs"
          + (f", GPU {info['gpu']}" if "gpu" in info else "") + f", device {args.device}, precision {args.precision}"
          + (f", load average {info['load_average'][0]:.1f}" if "load_average" in info else ""))
    results: Dict[str, Any] = {"machine": info, "args": vars(args), "shapes": {}}
    for name in args.shapes:
        shape = make_shape(name, args.scale_down, args.data if name == "knmi" else None, args.key, args.layout)
        print()
        if args.fit:
            r = fit_breakdown(shape, epochs=args.epochs, device=args.device, precision=args.precision,
                              limit_train_batches=args.limit_train_batches, count_steps=args.count_transfers,
                              num_workers=args.num_workers)
            print(markdown_fit(r))
        else:
            r = step_breakdown(shape, steps=args.steps, warmup=args.warmup, device=args.device,
                               precision=args.precision, num_workers=args.num_workers)
            print(markdown_step(r))
            if args.count_transfers:
                r["transfers"] = transfer_check(shape, steps=args.count_transfers, device=args.device,
                                                precision=args.precision)
                tr = r["transfers"]
                print("\nhost-device traffic per training step (plain loop): "
                      + ", ".join(f"{k} {v:g}" for k, v in tr["per_step"].items()))
        results["shapes"][name] = r
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"\nresults: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
