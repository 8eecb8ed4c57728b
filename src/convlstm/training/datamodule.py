"""The Lightning data module: a grid series (or a set of sequences) -> train/val/test loaders of
``(x, y)`` windows, scaled with a scaler fitted on the training part only."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import data as _data
from .._checks import check_fractions
from .._errors import ParameterError
from .multiscale import MultiScale, load_times

__all__ = ["GridDataModule", "SequenceDataset", "run_source_options"]

_CHUNK_BYTES = 32 * 2 ** 20


class SequenceDataset(Dataset):
    r"""Samples from a set of separate sequences ``(N, T, rows, cols, channels)`` (e.g. Moving
    MNIST): item ``i`` is ``x = seq[i, :in]``, ``y = seq[i, in + gap : in + gap + out]``, scaled
    with ``scaler.transform``. Sequences ``[start, stop)`` only."""

    def __init__(self, sequences: Any, input_steps: int, output_steps: int, *, start: int = 0,
                 stop: Optional[int] = None, gap: int = 0, scaler: Any = None) -> None:
        self.sequences = sequences
        self.input_steps, self.output_steps, self.gap = int(input_steps), int(output_steps), int(gap)
        self.start = int(start)
        self.stop = len(sequences) if stop is None else int(stop)
        self.scaler = scaler

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} sequences")
        seq = np.asarray(self.sequences[self.start + i])
        x = seq[:self.input_steps]
        y = seq[self.input_steps + self.gap:self.input_steps + self.gap + self.output_steps]
        if self.scaler is not None:
            x, y = self.scaler.transform(x), self.scaler.transform(y)
        return (torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
                torch.as_tensor(np.ascontiguousarray(y), dtype=torch.float32))


def _frame_stats(series: Any, start: int, stop: int) -> Tuple[np.ndarray, float, float]:
    """Mean frame (float64, data units), min and max of ``series[start:stop]``, read in chunks."""
    frame = series[start:start + 1]
    frame_values = int(np.prod(np.shape(frame)[1:]))
    chunk = max(1, _CHUNK_BYTES // (8 * max(1, frame_values)))
    total = None
    lo, hi = math.inf, -math.inf
    for t0 in range(start, stop, chunk):
        block = np.asarray(series[t0:min(stop, t0 + chunk)], dtype=np.float64)
        s = block.sum(axis=0)
        total = s if total is None else total + s
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return total / max(1, stop - start), lo, hi


class GridDataModule(pl.LightningDataModule):
    r"""Train/validation/test loaders of ``(x, y)`` samples for forecasting.

    Give exactly one of:

    - ``series``: one long grid series ``(time, rows, cols, channels)`` (array, memmap,
      :class:`convlstm.data.LazyGrid`): samples are sliding windows, and the time axis is cut
      chronologically into train, validation and test parts (no window crosses a boundary);
    - ``path``: a grid file read with :func:`convlstm.data.load_grid` (``key``, ``layout``);
    - ``sequences``: separate sequences ``(N, time, rows, cols, channels)`` (or ``(N, time,
      rows, cols)``): sample ``i`` is the first window of sequence ``i``, and the sequences are
      split in order (the first ``split[0]`` of them train, and so on).

    Values are read through ``conversion`` (a :class:`convlstm.data.UnitConversion`: ``stored *
    scale + offset``, then e.g. reflectivity -> rain rate) so that everything after, the scaler,
    the statistics, the metrics and the forecasts, is in physical units. The scaler
    (``"minmax"``, ``"standard"``, ``"log1p"``, ``"db"``, ``"none"``) is fitted on the training
    part only. :meth:`state_dict` (saved in Lightning checkpoints) holds the conversion, the
    scaler's state, the mean training frame (the climatology baseline), the training value range,
    whether forecasts are clamped at 0 (:attr:`nonnegative`) and the data options, as plain
    Python values and tensors only.

    ``units``: the name of the data's (physical) units, for colour bars and forecast files
    (``"mm/h"``); kept in the checkpoint so that evaluating the run later labels them the same.

    ``nonnegative``: ``True`` clamps forecasts in data units at 0 (counts, rain), ``False`` does
    not, ``None`` (auto) decides at :meth:`setup`: on when the training part has no negative
    value; :attr:`nonnegative_reason` says why (for the log).

    ``multiscale`` (a :class:`~convlstm.training.multiscale.MultiScale`) asks for closeness,
    period and trend samples (:class:`convlstm.data.MultiScaleWindowDataset`: a sample belongs to
    the part of its target, its inputs may reach back into earlier parts) and calendar / external
    features; ``timestamps`` gives an in-memory ``series`` its time stamps (a file's are read from
    it). :attr:`streams` and :attr:`num_features` say what was built.

    Shapes: ``x`` :math:`(B, T_{in}, H, W, C)`, ``y`` :math:`(B, T_{out}, H, W, C)`, in scaled units;
    with features, batches are ``(x, y, f)`` with ``f`` :math:`(B, F)`. For multi-scale samples
    :math:`T_{in} = l_q + l_p + l_c` (trend, period, closeness frames, in that order).

    Example::

        >>> dm = GridDataModule(np.random.rand(200, 16, 16, 2), input_steps=6, output_steps=3)
        >>> dm.setup()
        >>> x, y = next(iter(dm.train_dataloader()))
    """

    def __init__(self, series: Any = None, *, path: Optional[str] = None, key: Optional[str] = None,
                 layout: str = "THWC", sequences: Any = None, input_steps: int = 6, output_steps: int = 3,
                 stride: int = 1, gap: int = 0, split: Sequence[float] = (0.7, 0.1, 0.2),
                 scaler: str = "minmax", fill_nan: Optional[float] = None, batch_size: int = 16,
                 num_workers: int = 0, source: Optional[Dict[str, Any]] = None, conversion: Any = None,
                 nonnegative: Optional[bool] = None, units: str = "",
                 multiscale: Optional[MultiScale] = None, timestamps: Any = None) -> None:
        super().__init__()
        given = [n for n, v in (("series", series), ("path", path), ("sequences", sequences)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"GridDataModule needs exactly one of series, path or sequences; got "
                             f"{', '.join(given) if given else 'none'}")
        for name, v, lo in (("input_steps", input_steps, 1), ("output_steps", output_steps, 1),
                            ("stride", stride, 1), ("gap", gap, 0), ("batch_size", batch_size, 1),
                            ("num_workers", num_workers, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(scaler, str) or scaler.lower() not in _data.SCALERS:
            raise ValueError(f"scaler must be one of {', '.join(_data.SCALERS)}, got {scaler!r}")
        from ..data.units import UnitConversion

        if conversion is None or isinstance(conversion, dict):
            conversion = UnitConversion.from_state_dict(conversion)
        if not isinstance(conversion, UnitConversion):
            raise TypeError(f"conversion must be a convlstm.data.UnitConversion, its state_dict() or None, got "
                            f"{type(conversion).__name__}")
        if nonnegative is not None and not isinstance(nonnegative, bool):
            raise ValueError(f"nonnegative must be True, False or None (auto), got {nonnegative!r}")
        if not isinstance(units, str):
            raise ValueError(f"units must be a string (e.g. 'mm/h', or '' for none), got {units!r}")
        self.conversion = conversion
        self.units = units
        self.nonnegative: Optional[bool] = nonnegative
        self.nonnegative_reason = "" if nonnegative is None else f"nonnegative={nonnegative} was given"
        self.series, self.path, self.key, self.layout = series, path, key, layout
        self.sequences = sequences
        self.input_steps, self.output_steps = int(input_steps), int(output_steps)
        self.stride, self.gap = int(stride), int(gap)
        self.split = check_fractions("split", split)
        self.scaler_name = scaler.lower()
        self.fill_nan = fill_nan
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        if source is None:
            source = ({"kind": "file", "path": str(Path(path).resolve()), "key": key, "layout": layout}
                      if path is not None else {"kind": "sequences" if sequences is not None else "array"})
        self.source = dict(source)
        self.multiscale = multiscale if multiscale is not None else MultiScale(period=0, trend=0)
        if self.multiscale.explicit and sequences is not None:
            raise ValueError("closeness/period/trend, calendar and external features need one long series (a file "
                             "or series=), not separate sequences")
        self.timestamps = timestamps
        self.times: Optional[np.ndarray] = None            # the series' time stamps, datetime64[m]
        self.scaler: Any = None
        self.climatology: Optional[np.ndarray] = None    # mean training frame, data units
        # per-cell means for each hour of the day (24, rows, cols, channels), when the file has time stamps
        self.climatology_by_hour: Optional[np.ndarray] = None
        self.climatology_hour_counts: Optional[np.ndarray] = None  # training frames per hour (0: fallback)
        self.hours: Optional[np.ndarray] = None           # hour of the day of every frame of the series
        self.value_range: Optional[Tuple[float, float]] = None
        self.parts: Dict[str, Tuple[int, int]] = {}
        self.datasets: Dict[str, Dataset] = {}
        self._restored_scaler: Optional[Dict[str, Any]] = None
        self._ready = False

    # ------------------------------------------------------------------ building
    @property
    def mode(self) -> str:
        return "sequences" if self.sequences is not None else "series"

    def _load(self) -> None:
        if self.path is not None and self.series is None:
            self.series = _data.load_grid(self.path, key=self.key, layout=self.layout)
        if self.series is not None:
            self.series = _check_finite(self.conversion.wrap(self.series), self.fill_nan)
            if np.ndim(self.series[:1]) != 4:
                raise ValueError(f"the series must have 4 axes (time, rows, cols, channels) after the layout "
                                 f"{self.layout!r} is applied; got shape {tuple(self.series.shape)}; choose "
                                 f"layout THW for (time, rows, cols) data")
        else:
            seq = self.sequences
            if not hasattr(seq, "shape"):
                seq = np.asarray(seq)
            if len(seq.shape) == 4:
                seq = seq[..., None]
            seq = self.conversion.wrap(seq)
            if len(seq.shape) != 5:
                raise ValueError(f"sequences must be (N, time, rows, cols[, channels]); got shape {tuple(seq.shape)}")
            need = self.input_steps + self.gap + self.output_steps
            if seq.shape[1] < need:
                raise ValueError(f"sequences have {seq.shape[1]} frames, but a sample needs input_steps + gap + "
                                 f"output_steps = {need}")
            self.sequences = _check_finite(seq, self.fill_nan) if np.asarray(seq[:1]).dtype.kind == "f" else seq

    def setup(self, stage: Optional[str] = None) -> None:
        """Read the data, split it, fit the scaler on the training part (or take the one restored
        by :meth:`load_state_dict`) and build the datasets. Runs once."""
        if self._ready:
            return
        self._load()
        scaler = _data.make_scaler(self.scaler_name)
        if self.mode == "series":
            n = int(self.series.shape[0])
            self.times = (load_times(self.path, n) if self.timestamps is None
                          else _data.parse_timestamps(self.timestamps))
            if self.times is not None and len(self.times) != n:
                raise ValueError(f"timestamps has {len(self.times)} values for a series of {n} steps")
            multiscale = self.multiscale.resolve(n, self.times, self.input_steps, self.gap,
                                                 (0, int(round(n * self.split[0]))), self.path)
            if multiscale:
                self.input_steps = sum(self.multiscale.streams)
            try:
                if multiscale:  # a part needs room for one target only: its inputs may reach back into earlier parts
                    self.parts = _data.chronological_split(n, 1, self.output_steps, fractions=self.split)
                else:
                    self.parts = _data.chronological_split(n, self.input_steps, self.output_steps,
                                                           fractions=self.split, gap=self.gap)
            except ValueError as exc:
                raise ParameterError("split", f"split={list(self.split)}: {exc}",
                                     also=("input_steps", "gap", "output_steps")) from None
            a, b = self.parts["train"]
            fit_series, fit_range = self.series, (a, b)
        else:
            n = int(self.sequences.shape[0])
            a = int(round(n * self.split[0]))
            b = n if self.split[2] == 0 else int(round(n * (self.split[0] + self.split[1])))
            if self.split[1] == 0:
                b = a
            self.parts = {"train": (0, a), "val": (a, b), "test": (b, n)}
            for name, (lo, hi), f in zip(("train", "val", "test"), self.parts.values(), self.split):
                if f > 0 and hi <= lo:
                    raise ValueError(f"the {name} part of split={list(self.split)} gets no sequence of the "
                                     f"{n}; use more sequences or a larger {name} fraction")
            # frames of the training sequences, time first, so the scaler and the mean see every frame
            fit_series = self.sequences[:a].reshape((-1,) + tuple(self.sequences.shape[2:]))
            fit_range = (0, fit_series.shape[0])
        if self._restored_scaler is not None:
            scaler = _data.scaler_from_state_dict(self._restored_scaler)
        else:
            scaler.fit(fit_series, start=fit_range[0], stop=fit_range[1])
        self.scaler = scaler
        if self.climatology is None:
            mean, lo, hi = _frame_stats(fit_series, *fit_range)
            self.climatology = mean.astype(np.float32)
            self.value_range = (lo, hi)
        if self.nonnegative is None:
            self.nonnegative = bool(self.value_range[0] >= 0)
            self.nonnegative_reason = (f"nonnegative=auto: the training part's minimum is {self.value_range[0]:g}"
                                       f"{'' if self.nonnegative else ' (negative)'}")
        if self.mode == "series" and self.times is not None:
            self._fit_climatology_by_hour(*fit_range)
        for name, (lo, hi) in self.parts.items():
            if hi <= lo:
                continue
            if self.multiscale.active:
                self.datasets[name] = self.multiscale.dataset(self.series, self.output_steps, lo, hi, self.stride,
                                                              self.gap, scaler)
            elif self.mode == "series":
                self.datasets[name] = _data.WindowDataset(self.series, self.input_steps, self.output_steps,
                                                          start=lo, stop=hi, stride=self.stride, gap=self.gap,
                                                          scaler=scaler)
            else:
                self.datasets[name] = SequenceDataset(self.sequences, self.input_steps, self.output_steps,
                                                      start=lo, stop=hi, gap=self.gap, scaler=scaler)
        if self.multiscale.active and len(self.datasets["train"]) == 0:
            c, p, t = self.multiscale.streams
            raise ValueError(f"no training sample: with closeness {c}, period {p} x {self.multiscale.period_interval} "
                             f"and trend {t} x {self.multiscale.trend_interval} steps every lag of the training part's "
                             f"{self.parts['train'][1]} steps reaches before the series' start; use a smaller "
                             f"--period/--trend, or a longer series")
        self._ready = True

    @property
    def sample_shape(self) -> Tuple[int, int, int]:
        """``(rows, cols, channels)`` of a frame."""
        shape = self.series.shape if self.mode == "series" else self.sequences.shape[1:]
        return tuple(int(s) for s in shape[1:4])

    @property
    def streams(self) -> Optional[Tuple[int, int, int]]:
        """``(closeness, period, trend)`` of multi-scale samples; ``None`` for plain windows."""
        return self.multiscale.streams if self.multiscale.active else None

    @property
    def num_features(self) -> int:
        """Features per sample (calendar, external); batches are then ``(x, y, features)``."""
        return self.multiscale.num_features if self.multiscale.active else 0

    @property
    def has_val(self) -> bool:
        return "val" in self.datasets and len(self.datasets["val"]) > 0

    # ------------------------------------------------------------------ loaders
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        if not self._ready:
            self.setup()
        if name not in self.datasets:
            raise ValueError(f"the {name} part is empty (split={list(self.split)})")
        return DataLoader(self.datasets[name], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False) if self.has_val else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def dataloader(self, part: str) -> DataLoader:
        """The loader of ``part`` (``"train"``, ``"val"`` or ``"test"``), in order."""
        if part not in ("train", "val", "test"):
            raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
        return self._loader(part, False)

    # ------------------------------------------------------------------ units
    def inverse_transform(self, x: Any) -> Any:
        """Scaled values -> the data's own units."""
        return self.scaler.inverse_transform(x)

    # ------------------------------------------------------------------ checkpoint state
    def _fit_climatology_by_hour(self, start: int, stop: int) -> None:
        """From the series' time stamps and, unless a checkpoint gave them, average the training
        frames per cell and hour of the day: the climatology baseline for daily cycles."""
        hours = _data.hours_of_day(self.times)
        self.hours = hours
        if self.climatology_by_hour is None:
            from ..metrics import ClimatologyByTimeOfDay

            clim = ClimatologyByTimeOfDay(24).fit(np.asarray(self.series[start:stop], dtype=np.float64),
                                                  hours[start:stop])
            self.climatology_by_hour = clim.means.astype(np.float32)
            self.climatology_hour_counts = clim.counts.astype(np.int64)

    def unseen_target_hours(self, part: str) -> List[int]:
        """Hours of the day of ``part``'s target frames that no training frame fell on: their
        climatology forecast is the mean training frame. Empty without time stamps (or for a
        checkpoint written before the counts were kept)."""
        if (self.climatology_by_hour is None or self.hours is None or self.mode != "series"
                or self.climatology_hour_counts is None or part not in self.datasets):
            return []
        ds = self.datasets[part]
        target_hours = {int(h) for i in range(len(ds)) for h in self.hours[ds.window_times(i)[1]]}
        return sorted(h for h in target_hours if self.climatology_hour_counts[h] == 0)

    def target_climatology(self, part: str, first: int, count: int) -> Optional[np.ndarray]:
        """The climatology forecast for samples ``first .. first + count - 1`` of ``part``:
        the training mean of each cell at the hour of each target frame, shaped
        ``(count, output_steps, rows, cols, channels)``; ``None`` without time stamps."""
        if self.climatology_by_hour is None or self.hours is None or self.mode != "series":
            return None
        ds = self.datasets[part]
        slots = np.stack([self.hours[ds.window_times(i)[1]] for i in range(first, first + count)])
        return self.climatology_by_hour[slots]

    def state_dict(self) -> Dict[str, Any]:
        """Plain data for checkpoints (``torch.load(weights_only=True)`` reads it)."""
        if not self._ready:
            return {}
        return {
            "format": 1,
            "source": dict(self.source),
            "mode": self.mode,
            "input_steps": self.input_steps, "output_steps": self.output_steps,
            "stride": self.stride, "gap": self.gap, "split": list(self.split),
            "scaler": self.scaler.state_dict(), "scaler_name": self.scaler_name,
            "fill_nan": self.fill_nan, "batch_size": self.batch_size,
            "sample_shape": list(self.sample_shape),
            "climatology": torch.from_numpy(np.ascontiguousarray(self.climatology, dtype=np.float32)),
            "value_range": [float(v) for v in self.value_range],
            "parts": {k: [int(v[0]), int(v[1])] for k, v in self.parts.items()},
            **({} if self.climatology_by_hour is None else
               {"climatology_by_hour": torch.from_numpy(np.ascontiguousarray(self.climatology_by_hour))}),
            **({} if self.climatology_hour_counts is None else
               {"climatology_hour_counts": [int(c) for c in self.climatology_hour_counts]}),
            "conversion": self.conversion.state_dict(),
            "nonnegative": self.nonnegative,
            "units": self.units,
            **({"multiscale": self.multiscale.state_dict()} if self.multiscale.active else {}),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Take the fitted scaler and statistics from a checkpoint (no refit on resume)."""
        if not state:
            return
        self._restored_scaler = dict(state["scaler"])
        self.climatology = np.asarray(torch.as_tensor(state["climatology"]).numpy(), dtype=np.float32)
        self.value_range = tuple(float(v) for v in state["value_range"])
        if "climatology_by_hour" in state:
            self.climatology_by_hour = np.asarray(torch.as_tensor(state["climatology_by_hour"]).numpy(),
                                                  dtype=np.float32)
        if "climatology_hour_counts" in state:
            self.climatology_hour_counts = np.asarray(state["climatology_hour_counts"], dtype=np.int64)
        if not self.units and state.get("units"):
            self.units = str(state["units"])
        if self.nonnegative is None and state.get("nonnegative") is not None:
            self.nonnegative = bool(state["nonnegative"])
            self.nonnegative_reason = f"nonnegative={self.nonnegative}, as in training"
        if self._ready:
            self.scaler = _data.scaler_from_state_dict(self._restored_scaler)
            for ds in self.datasets.values():
                ds.scaler = self.scaler

    @classmethod
    def from_state(cls, state: Dict[str, Any], *, series: Any = None, path: Optional[str] = None,
                   key: Optional[str] = None, layout: Optional[str] = None, sequences: Any = None,
                   batch_size: Optional[int] = None) -> "GridDataModule":
        """Rebuild the data module a checkpoint was trained with (its file, unless another
        ``series``/``path``/``sequences`` is given), with the checkpoint's scaler, statistics, unit
        conversion and units. Another ``path`` is read with the run's ``key`` and ``layout`` unless
        they are given (:func:`run_source_options`)."""
        src = state.get("source", {})
        if series is None and path is None and sequences is None and src.get("kind") == "moving_mnist":
            sequences = _data.moving_mnist(
                int(src["num_sequences"]), seq_len=int(src["seq_len"]), image_size=int(src["image_size"]),
                num_digits=int(src["num_digits"]), digit_size=int(src["digit_size"]), speed=tuple(src["speed"]),
                seed=int(src["seed"]))[..., None]
        if series is None and path is None and sequences is None:
            if src.get("kind") != "file":
                raise ParameterError("data", f"the checkpoint was trained on in-memory data ({src.get('kind')}); "
                                             f"give the data to evaluate on (a file path: data=FILE)")
            path = src["path"]
        if path is not None:
            key, layout = run_source_options(state, path, key, layout)
        kw: Dict[str, Any] = dict(input_steps=state["input_steps"], output_steps=state["output_steps"],
                                  stride=state["stride"], gap=state["gap"], split=state["split"],
                                  scaler=state["scaler_name"], fill_nan=state.get("fill_nan"),
                                  batch_size=batch_size or state.get("batch_size", 16),
                                  conversion=state.get("conversion"),
                                  multiscale=MultiScale.from_state(state.get("multiscale")))
        if sequences is not None or (series is None and path is None):
            dm = cls(sequences=sequences, **kw)
        elif series is not None:
            dm = cls(series, **kw)
        else:
            dm = cls(path=path, key=key, layout=layout, **kw)
        dm.load_state_dict(state)
        return dm


def run_source_options(state: Dict[str, Any], path: Any, key: Optional[str] = None,
                       layout: Optional[str] = None) -> Tuple[Optional[str], str]:
    """``(key, layout)`` to read the grid file ``path`` with, for the run whose data state
    (:meth:`GridDataModule.state_dict`) is ``state``: those given, else the run's own (the key
    only where ``path`` can hold several arrays: not for a ``.npy`` file), else ``None`` and
    ``"THWC"``."""
    src = state.get("source") or {}
    if src.get("kind") == "file":
        if key is None and Path(str(path)).suffix.lower() != ".npy":
            key = src.get("key")
        if layout is None:
            layout = src.get("layout")
    return key, layout or "THWC"


def _check_finite(series: Any, fill_nan: Optional[float]) -> Any:
    """:func:`convlstm.data.check_finite` with ``fill=fill_nan``, its errors naming ``fill_nan``."""
    try:
        return _data.check_finite(series, fill=fill_nan,
                                  remedy="Give fill_nan=<number> to replace them (e.g. fill_nan=0)")
    except ValueError as exc:
        raise ParameterError("fill_nan", f"the data: {exc}") from None
