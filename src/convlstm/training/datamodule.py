"""The Lightning data module: a grid series (or a set of sequences) -> train/val/test loaders of
``(x, y)`` windows, scaled with a scaler fitted on the training part only.

:meth:`GridDataModule.setup` loads the data, checks it is finite, lets the data mode's dataset
builder (:mod:`convlstm.training.datasets`) split it, fits the scaler and the statistics on the
training part, builds the datasets and fits the hour-of-day climatology
(:mod:`convlstm.training.climatology`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import data as _data
from .._checks import check_fractions
from .._errors import ParameterError
from ..data.units import UnitConversion
from .climatology import hour_of_day_means, mean_frame, target_hours, unseen_hours
from .datasets import DatasetBuilder, MultiScaleBuilder, SequenceBuilder, SequenceDataset, WindowBuilder
from .multiscale import MultiScale, load_times

__all__ = ["GridDataModule", "SequenceDataset", "run_source_options"]




class GridDataModule(pl.LightningDataModule):
    r"""Train/validation/test loaders of ``(x, y)`` samples for forecasting.

    Give exactly one of:

    - ``series``: one long grid series ``(time, rows, cols, channels)`` (array, memmap,
      :class:`convlstm.data.LazyGrid`): samples are sliding windows, and the time axis is cut
      chronologically into train, validation and test parts (no window crosses a boundary);
    - ``path``: a grid file read with :func:`convlstm.data.load_grid` (``key``, ``layout``), or
      several (a list, a glob pattern, a folder) read as one archive by
      :func:`convlstm.data.open_archive` with ``reader`` (``"auto"``, ``"xarray"``,
      ``"pysteps:NAME"``) and ``time_from_name``: windows never cross from one event (a file of
      several frames, or a gap-free stretch of one-frame files) into the next;
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

    ``split_by``: ``"time"`` cuts the time axis at the ``split`` fractions; ``"event"`` moves each
    cut to the nearest boundary between events (:func:`convlstm.data.event_split`), so that the
    test part holds whole events the model never saw. A single file with gaps in its time stamps
    (missing steps) is cut into events the same way; :attr:`events` holds them (``None`` for one
    gap-free series).

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
                 multiscale: Optional[MultiScale] = None, timestamps: Any = None, reader: str = "auto",
                 time_from_name: Optional[str] = None, split_by: str = "time",
                 reader_options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if split_by not in ("time", "event"):
            raise ParameterError("split_by", f"split_by must be 'time' (cut at the split fractions of the time "
                                             f"axis) or 'event' (cut between events); got {split_by!r}")
        _check_options(series, path, sequences, scaler, nonnegative, units, input_steps=input_steps,
                       output_steps=output_steps, stride=stride, gap=gap, batch_size=batch_size,
                       num_workers=num_workers)
        self.conversion = _as_conversion(conversion)
        self.units = units
        self.nonnegative: Optional[bool] = nonnegative
        self.nonnegative_reason = "" if nonnegative is None else f"nonnegative={nonnegative} was given"
        self.series, self.path, self.key = series, path, key
        self.layout = layout.upper() if isinstance(layout, str) else layout  # load_grid checks it
        self.sequences = sequences
        self.input_steps, self.output_steps = int(input_steps), int(output_steps)
        self.stride, self.gap = int(stride), int(gap)
        self.split = check_fractions("split", split)
        self.scaler_name = scaler.lower()
        self.fill_nan = fill_nan
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.reader, self.time_from_name, self.split_by = reader, time_from_name, split_by
        self.reader_options = dict(reader_options or {})
        self.archive: Optional[_data.GridArchive] = None  # the files read as one series, when several
        self.events: Optional[np.ndarray] = None          # (E, 2) gap-free ranges; None: one series
        if source is None and path is not None and _data.archive.is_archive_input(path, reader, time_from_name):
            source = {"kind": "archive"}  # filled in by setup, with the files found
        if source is None:
            source = ({"kind": "file", "path": str(Path(path).resolve()), "key": key, "layout": self.layout}
                      if path is not None else {"kind": "sequences" if sequences is not None else "array"})
        self.source = dict(source)
        self.multiscale = multiscale if multiscale is not None else MultiScale(period=0, trend=0)
        if self.multiscale.requested and sequences is not None:
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
        self._builder: Optional[DatasetBuilder] = None    # the data mode's dataset builder, after setup
        self._restored_scaler: Optional[Dict[str, Any]] = None
        # one part, "all", of every sample, scored with a checkpoint's statistics (from_state(whole=True))
        self.whole = False
        self._ready = False

    # ------------------------------------------------------------------ building
    @property
    def mode(self) -> str:
        return "sequences" if self.sequences is not None else "series"

    def setup(self, stage: Optional[str] = None) -> None:
        """Read the data, split it, fit the scaler on the training part (or take the one restored
        by :meth:`load_state_dict`) and build the datasets. Runs once."""
        if self._ready:
            return
        self._load()
        self._check_finite()
        builder = self._choose_builder()
        self.parts, self.input_steps = builder.parts, builder.input_steps
        self._fit_scaler_and_statistics(*builder.training_frames())
        self.datasets = builder.build(self.scaler)
        if self.whole:  # split (1, 0, 0): the "train" part is every sample
            self.parts, self.datasets = {"all": self.parts["train"]}, {"all": self.datasets["train"]}
        self._builder = builder
        self._fit_climatology_by_hour()
        self._ready = True

    def _load(self) -> None:
        """Read the series (or take the sequences) in the layout ``(time, rows, cols, channels)``
        (``(N, time, rows, cols, channels)``), read through the unit conversion."""
        if self.mode == "sequences":
            self.sequences = self._loaded_sequences()
            return
        if self.path is not None and self.series is None:
            if self.source.get("kind") == "archive":
                self.archive = _data.open_archive(self.path, reader=self.reader, key=self.key, layout=self.layout,
                                                  time_from_name=self.time_from_name,
                                                  reader_options=self.reader_options)
                self.series, self.source = self.archive, self.archive.source()
                if not self.units and self.archive.units:
                    self.units = self.archive.units
            else:
                self.series = _data.load_grid(self.path, key=self.key, layout=self.layout)
        self.series = self.conversion.wrap(self.series)
        if np.ndim(self.series[:1]) != 4:
            raise ValueError(f"the series must have 4 axes (time, rows, cols, channels) after the layout "
                             f"{self.layout!r} is applied; got shape {tuple(self.series.shape)}; choose "
                             f"layout THW for (time, rows, cols) data")

    def _loaded_sequences(self) -> Any:
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
        return seq

    def _check_finite(self) -> None:
        """Refuse NaN and infinite values, or replace them with ``fill_nan``."""
        if self.mode == "series":
            self.series = _finite(self.series, self.fill_nan)
        elif np.asarray(self.sequences[:1]).dtype.kind == "f":
            self.sequences = _finite(self.sequences, self.fill_nan)

    def _choose_builder(self) -> DatasetBuilder:
        """The dataset builder of the data mode (its parts fixed): sequences, multi-scale samples
        when :attr:`multiscale` resolves on the series, else sliding windows."""
        if self.mode == "sequences":
            return SequenceBuilder(self.sequences, self.input_steps, self.output_steps, gap=self.gap,
                                   split=self.split)
        n = int(self.series.shape[0])
        self.times = self._series_times(n)
        self.events = self._find_events(n)
        train = (0, int(round(n * self.split[0])))
        if self.multiscale.resolve(n, self.times, self.input_steps, self.gap, train,
                                   None if self.archive is not None else self.path):
            if self.events is not None:
                raise ParameterError("period", f"closeness/period/trend samples and calendar or external features "
                                               f"need one series without gaps, and this data has "
                                               f"{len(self.events)} events (files or gaps in the time stamps); use "
                                               f"plain windows (--period 0 --trend 0 --no-calendar), or fill the "
                                               f"missing steps", also=("trend", "calendar", "external"))
            return MultiScaleBuilder(self.series, self.multiscale, self.output_steps, stride=self.stride,
                                     gap=self.gap, split=self.split)
        return WindowBuilder(self.series, self.input_steps, self.output_steps, stride=self.stride, gap=self.gap,
                             split=self.split, events=self.events, split_by=self.split_by)

    def _find_events(self, n: int) -> Optional[np.ndarray]:
        """The archive's events, or those cut by gaps in a single file's time stamps; ``None``
        when the series is one gap-free stretch."""
        if self.archive is not None:
            events = self.archive.events
        elif self.times is not None:
            try:
                events = _data.find_events(self.times, [n], join_files=True)[0]
            except ValueError as exc:
                raise ParameterError("data", f"{self.path}: {exc}") from None
        else:
            return None
        return events if len(events) > 1 else None

    def _series_times(self, n: int) -> Optional[np.ndarray]:
        """The time stamps given (``timestamps``) or read from the file(s), ``None`` when there are none."""
        if self.timestamps is not None:
            times = _data.parse_timestamps(self.timestamps)
        elif self.archive is not None:
            times = self.archive.times
        else:
            times = load_times(self.path, n)
        if times is not None and len(times) != n:
            raise ValueError(f"timestamps has {len(times)} values for a series of {n} steps")
        return times

    def _fit_scaler_and_statistics(self, frames: Any, start: int, stop: int) -> None:
        """Fit the scaler, the mean frame and the value range on ``frames[start:stop]`` (the
        training part), unless a checkpoint gave them; decide :attr:`nonnegative` when automatic."""
        if self._restored_scaler is not None:
            self.scaler = _data.scaler_from_state_dict(self._restored_scaler)
        else:
            self.scaler = _data.make_scaler(self.scaler_name)
            self.scaler.fit(frames, start=start, stop=stop)
        if self.climatology is None:
            mean, lo, hi = mean_frame(frames, start, stop)
            self.climatology = mean.astype(np.float32)
            self.value_range = (lo, hi)
        if self.nonnegative is None:
            self.nonnegative = bool(self.value_range[0] >= 0)
            self.nonnegative_reason = (f"nonnegative=auto: the training part's minimum is {self.value_range[0]:g}"
                                       f"{'' if self.nonnegative else ' (negative)'}")

    def _fit_climatology_by_hour(self) -> None:
        """From the series' time stamps and, unless a checkpoint gave them, average the training
        frames per cell and hour of the day: the climatology baseline for daily cycles."""
        if self.mode != "series" or self.times is None:
            return
        self.hours = _data.hours_of_day(self.times)
        if self.climatology_by_hour is None and not self.whole:  # never fitted on the data it scores
            self.climatology_by_hour, self.climatology_hour_counts = hour_of_day_means(
                self.series, self.hours, *self.parts["train"])

    @property
    def sample_shape(self) -> Tuple[int, int, int]:
        """``(rows, cols, channels)`` of a frame."""
        shape = self.series.shape if self.mode == "series" else self.sequences.shape[1:]
        return tuple(int(s) for s in shape[1:4])

    @property
    def streams(self) -> Optional[Tuple[int, int, int]]:
        """``(closeness, period, trend)`` of multi-scale samples; ``None`` for plain windows."""
        return None if self._builder is None else self._builder.streams

    @property
    def num_features(self) -> int:
        """Features per sample (calendar, external); batches are then ``(x, y, features)``."""
        return 0 if self._builder is None else self._builder.num_features

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
        """The loader of ``part`` (``"train"``, ``"val"`` or ``"test"``; ``"all"`` for a module
        built with ``from_state(whole=True)``), in order."""
        parts = ("all",) if self.whole else ("train", "val", "test")
        if part not in parts:
            raise ValueError(f"part must be {' or '.join(map(repr, parts))}, got {part!r}")
        return self._loader(part, False)

    # ------------------------------------------------------------------ units
    def inverse_transform(self, x: Any) -> Any:
        """Scaled values -> the data's own units."""
        return self.scaler.inverse_transform(x)

    # ------------------------------------------------------------------ climatology
    def unseen_target_hours(self, part: str) -> List[int]:
        """Hours of the day of ``part``'s target frames that no training frame fell on: their
        climatology forecast is the mean training frame. Empty without time stamps (or for a
        checkpoint written before the counts were kept)."""
        if (self.climatology_by_hour is None or self.hours is None or self.mode != "series"
                or self.climatology_hour_counts is None or part not in self.datasets):
            return []
        return unseen_hours(self.datasets[part], self.hours, self.climatology_hour_counts)

    def target_climatology(self, part: str, first: int, count: int) -> Optional[np.ndarray]:
        """The climatology forecast for samples ``first .. first + count - 1`` of ``part``:
        the training mean of each cell at the hour of each target frame, shaped
        ``(count, output_steps, rows, cols, channels)``; ``None`` without time stamps."""
        if self.climatology_by_hour is None or self.hours is None or self.mode != "series":
            return None
        return self.climatology_by_hour[target_hours(self.datasets[part], self.hours, first, count)]

    # ------------------------------------------------------------------ checkpoint state
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
            **({} if self.split_by == "time" else {"split_by": self.split_by}),
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
            **({"multiscale": self.multiscale.state_dict()} if self.streams is not None else {}),
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
    def from_state(cls, state: Dict[str, Any], *, series: Any = None, path: Any = None,
                   key: Optional[str] = None, layout: Optional[str] = None, sequences: Any = None,
                   batch_size: Optional[int] = None, whole: bool = False, reader: Optional[str] = None,
                   time_from_name: Optional[str] = None,
                   reader_options: Optional[Dict[str, Any]] = None) -> "GridDataModule":
        """Rebuild the data module a checkpoint was trained with (its file, unless another
        ``series``/``path``/``sequences`` is given), with the checkpoint's scaler, statistics, unit
        conversion and units. Another ``path`` is read with the run's ``key`` and ``layout`` unless
        they are given (:func:`run_source_options`).

        ``whole=True``: no split, one part ``"all"`` of every sample of the data (a file the model
        never saw), with the checkpoint's scaler and statistics; nothing is fitted on it.

        A run trained on an archive reads its files again (or the ``path`` given: a file, a list,
        a glob pattern or a folder) with its ``reader`` and ``time_from_name`` unless they are given."""
        src = state.get("source", {})
        if series is None and path is None and sequences is None and src.get("kind") == "moving_mnist":
            sequences = _data.moving_mnist(
                int(src["num_sequences"]), seq_len=int(src["seq_len"]), image_size=int(src["image_size"]),
                num_digits=int(src["num_digits"]), digit_size=int(src["digit_size"]), speed=tuple(src["speed"]),
                seed=int(src["seed"]))[..., None]
        if series is None and path is None and sequences is None:
            if src.get("kind") not in ("file", "archive"):
                raise ParameterError("data", f"the checkpoint was trained on in-memory data ({src.get('kind')}); "
                                             f"give the data to evaluate on (a file path: data=FILE)")
            path = src["path"] if src["kind"] == "file" else list(src["files"])
        if src.get("kind") == "archive":
            reader = src.get("reader", "auto") if reader is None else reader
            time_from_name = src.get("time_from_name") if time_from_name is None else time_from_name
            reader_options = src.get("reader_options") if reader_options is None else reader_options
        if path is not None:
            key, layout = run_source_options(state, path, key, layout)
        kw: Dict[str, Any] = dict(input_steps=state["input_steps"], output_steps=state["output_steps"],
                                  stride=state["stride"], gap=state["gap"],
                                  split=(1.0, 0.0, 0.0) if whole else state["split"],
                                  scaler=state["scaler_name"], fill_nan=state.get("fill_nan"),
                                  batch_size=batch_size or state.get("batch_size", 16),
                                  conversion=state.get("conversion"),
                                  multiscale=MultiScale.from_state(state.get("multiscale")),
                                  split_by=state.get("split_by", "time"))
        if sequences is not None or (series is None and path is None):
            dm = cls(sequences=sequences, **kw)
        elif series is not None:
            dm = cls(series, **kw)
        else:
            dm = cls(path=path, key=key, layout=layout, reader=reader or "auto", time_from_name=time_from_name,
                     reader_options=reader_options, **kw)
        dm.whole = bool(whole)
        dm.load_state_dict(state)
        return dm


def run_source_options(state: Dict[str, Any], path: Any, key: Optional[str] = None,
                       layout: Optional[str] = None) -> Tuple[Optional[str], str]:
    """``(key, layout)`` to read the grid file ``path`` with, for the run whose data state
    (:meth:`GridDataModule.state_dict`) is ``state``: those given, else the run's own (the key
    only where ``path`` can hold several arrays: not for a ``.npy`` file), else ``None`` and
    ``"THWC"``. The layout comes in capitals (``"thw"`` -> ``"THW"``)."""
    src = state.get("source") or {}
    if src.get("kind") in ("file", "archive"):
        if key is None and (isinstance(path, (list, tuple)) or Path(str(path)).suffix.lower() != ".npy"):
            key = src.get("key")
        if layout is None:
            layout = src.get("layout")
    layout = layout or "THWC"
    return key, layout.upper() if isinstance(layout, str) else layout


def _check_options(series: Any, path: Any, sequences: Any, scaler: Any, nonnegative: Any, units: Any,
                   **integers: Any) -> None:
    """Check :class:`GridDataModule`'s options: one data source, the integers (``gap`` and
    ``num_workers`` >= 0, the others >= 1), the scaler's name, ``nonnegative`` and ``units``."""
    given = [n for n, v in (("series", series), ("path", path), ("sequences", sequences)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"GridDataModule needs exactly one of series, path or sequences; got "
                         f"{', '.join(given) if given else 'none'}")
    for name, v in integers.items():
        lo = 0 if name in ("gap", "num_workers") else 1
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not isinstance(scaler, str) or scaler.lower() not in _data.SCALERS:
        raise ValueError(f"scaler must be one of {', '.join(_data.SCALERS)}, got {scaler!r}")
    if nonnegative is not None and not isinstance(nonnegative, bool):
        raise ValueError(f"nonnegative must be True, False or None (auto), got {nonnegative!r}")
    if not isinstance(units, str):
        raise ValueError(f"units must be a string (e.g. 'mm/h', or '' for none), got {units!r}")


def _as_conversion(conversion: Any) -> UnitConversion:
    """A :class:`~convlstm.data.UnitConversion` from one, its ``state_dict()`` or ``None`` (the identity)."""
    if conversion is None or isinstance(conversion, dict):
        conversion = UnitConversion.from_state_dict(conversion)
    if not isinstance(conversion, UnitConversion):
        raise TypeError(f"conversion must be a convlstm.data.UnitConversion, its state_dict() or None, got "
                        f"{type(conversion).__name__}")
    return conversion


def _finite(series: Any, fill_nan: Optional[float]) -> Any:
    """:func:`convlstm.data.check_finite` with ``fill=fill_nan``, its errors naming ``fill_nan``."""
    try:
        return _data.check_finite(series, fill=fill_nan,
                                  remedy="Give fill_nan=<number> to replace them (e.g. fill_nan=0)")
    except ValueError as exc:
        raise ParameterError("fill_nan", f"the data: {exc}") from None
