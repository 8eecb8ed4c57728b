"""Pictures of forecasts: PNG grids of inputs, truth and forecast, GIF animations, learning curves,
and the rank histogram and reliability diagram of an ensemble forecast.

matplotlib is imported inside the functions (``import convlstm`` stays light) and used through its
object API on an Agg canvas, so no display is needed and the user's pyplot backend is left alone.
Every file is written atomically (:func:`convlstm._io.atomic_path`). Arrays may be numpy or torch,
channels last: inputs ``(samples, time, rows, cols, channels)``, truth and forecast
``(samples, lead_time, rows, cols, channels)``.

Example::

    >>> plot_forecast(x, y, model(x), "runs/demo/forecast.png", samples=2, units="mm/h")
    >>> animate_forecast(y, model(x), "runs/demo/forecast.gif", sample=0)
    >>> plot_learning_curve({"train_loss": [0.9, 0.5], "val_loss": [1.0, 0.7]}, "runs/demo/loss.png")
    >>> from convlstm.ensemble_scores import evaluate_ensemble
    >>> results = evaluate_ensemble(members, truth, thresholds=(1.0,))   # members (M, N, L, H, W, C)
    >>> plot_rank_histogram(results["rank_histogram"], "runs/demo/rank_histogram.png")
    >>> plot_reliability(results, "runs/demo/reliability.png")   # every reliability@THR entry
    >>> plot_probability(truth[0], {"steps": (members[:, 0] >= 1.0).mean(0)}, "runs/demo/probability.png",
    ...                  threshold=1.0)
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ._io import atomic_path

__all__ = ["plot_forecast", "animate_forecast", "plot_learning_curve", "plot_rank_histogram", "plot_reliability",
           "plot_probability"]

PathLike = Union[str, "os.PathLike[str]"]
_STATIC_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def _array(x: Any, name: str) -> np.ndarray:
    try:
        import torch
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().float().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.ndim != 5:
        raise ValueError(f"{name} must be 5D (samples, time, rows, cols, channels), got shape {x.shape}")
    return x.astype(np.float64, copy=False)


def _path(path: Any, allowed: Dict[str, str], name: str = "path") -> tuple:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    fmt = allowed.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{name}={str(path)!r}: the file name must end in one of {', '.join(sorted(allowed))}")
    return p, fmt


def _channel(channel: Any, channels: int) -> int:
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be an int, got {channel!r}")
    if not -channels <= channel < channels:
        raise ValueError(f"channel={channel} is out of range for data with {channels} channel(s)")
    return int(channel) % channels


def _sample_indices(samples: Any, n: int) -> list:
    if isinstance(samples, bool):
        raise TypeError(f"samples must be an int or a sequence of sample indices, got {samples!r}")
    if isinstance(samples, (int, np.integer)):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        return list(range(min(int(samples), n)))
    try:
        idx = [int(i) for i in samples]
    except (TypeError, ValueError):
        raise TypeError(f"samples must be an int or a sequence of sample indices, got {samples!r}") from None
    if not idx:
        raise ValueError("samples is an empty sequence; give at least one sample index")
    bad = [i for i in idx if not -n <= i < n]
    if bad:
        raise ValueError(f"samples holds indices {bad} out of range for {n} sample(s)")
    return [i % n for i in idx]


def _figure(width: float, height: float, layout: Optional[str] = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _finite_range(*arrays: np.ndarray) -> tuple:
    lo, hi = math.inf, -math.inf
    for a in arrays:
        finite = a[np.isfinite(a)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not math.isfinite(lo):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _channels(channel: Any, channels: int) -> List[int]:
    """``channel`` (``None``: all, an int, or a sequence of ints) -> the channel indices drawn."""
    if channel is None:
        return list(range(channels))
    if isinstance(channel, (list, tuple, np.ndarray)):
        if len(channel) == 0:
            raise ValueError("channel is an empty sequence; give at least one channel index, or None for all")
        return [_channel(c, channels) for c in channel]
    return [_channel(channel, channels)]


def _names(names: Any, count: int, what: str) -> Optional[List[str]]:
    """``names``: ``None`` or one str per item (``count`` of them)."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != count:
        raise ValueError(f"{what} must hold {count} name(s), one per {what.split('_')[0]}, got {names!r}")
    return [str(n) for n in names]


def _channel_label(channel: int, channels: int, names: Optional[Sequence[str]] = None) -> str:
    """How a picture names one channel of data with ``channels`` of them: ``"channel 1 of 2"``,
    or ``"outflow (channel 1 of 2)"`` with ``names``."""
    where = f"channel {channel} of {channels}"
    return f"{names[channel]} ({where})" if names else where


def _save(fig: Any, out: Path, fmt: str) -> Path:
    """Write ``fig`` to ``out`` in format ``fmt``, atomically; returns ``out``."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt)
    return out


def _forecast_arrays(inputs: Any, true: Any, pred: Any, baselines: Any) -> tuple:
    """The arrays of :func:`plot_forecast`, checked: ``x, y, p`` and ``{name: forecast}``."""
    x, y, p = _array(inputs, "inputs"), _array(true, "true"), _array(pred, "pred")
    if y.shape != p.shape:
        raise ValueError(f"true and pred must have the same shape, got {y.shape} and {p.shape}")
    if baselines is not None and not isinstance(baselines, Mapping):
        raise TypeError(f"baselines must be a dict {{name: forecast}}, got {type(baselines).__name__}")
    extra = {}
    for name, forecast in (baselines or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"baselines keys must be names (str), got {name!r}")
        extra[name] = _array(forecast, f"baselines[{name!r}]")
        if extra[name].shape != p.shape:
            raise ValueError(f"baselines[{name!r}] must be shaped like pred {p.shape}, got {extra[name].shape}")
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"inputs {x.shape} and true {y.shape} must agree in samples, rows, cols and channels")
    return x, y, p, extra


def _step_title(c: int, count: int, is_input: bool, input_labels: Optional[Sequence[str]]) -> str:
    if not is_input:
        return f"+{c + 1}"
    if input_labels is not None:
        return str(input_labels[c])
    back = count - 1 - c
    return f"t-{back}" if back else "t"


def _draw_channel(fig: Any, frames: Sequence[np.ndarray], extra: Mapping[str, np.ndarray],
                  sample_labels: Sequence[str], input_labels: Optional[Sequence[str]], cmap: str,
                  units: str) -> None:
    """One channel's rows (inputs, truth, forecast, each baseline; per sample) on one colour
    scale with its colour bar, into ``fig`` (a figure or subfigure)."""
    x, y, p = frames
    vmin, vmax = _finite_range(x, y, p, *extra.values())
    cols, per_sample = max(x.shape[1], y.shape[1]), 3 + len(extra)
    axes = fig.subplots(per_sample * len(sample_labels), cols, squeeze=False)
    image = None
    for k, sample in enumerate(sample_labels):
        panels = [("inputs", x[k], True), ("truth", y[k], False), ("forecast", p[k], False)]
        panels += [(name, e[k], False) for name, e in extra.items()]
        for r, (label, seq, is_input) in enumerate(panels):
            for c, ax in enumerate(axes[per_sample * k + r]):
                ax.set_xticks([])
                ax.set_yticks([])
                if c >= seq.shape[0]:
                    ax.set_axis_off()
                    continue
                image = ax.imshow(seq[c], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
                ax.set_title(_step_title(c, seq.shape[0], is_input, input_labels), fontsize=7)
                if c == 0:
                    ax.set_ylabel(f"{sample}\n{label}", fontsize=8)
    cbar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, aspect=40)
    if units:
        cbar.set_label(units)


def plot_forecast(inputs: Any, true: Any, pred: Any, path: PathLike, *, samples: Union[int, Sequence[int]] = 3,
                  units: str = "", channel: Union[None, int, Sequence[int]] = None, title: Optional[str] = None,
                  cmap: str = "viridis", baselines: Optional[Mapping[str, Any]] = None,
                  input_labels: Optional[Sequence[str]] = None, sample_labels: Optional[Sequence[str]] = None,
                  channel_names: Optional[Sequence[str]] = None) -> Path:
    r"""Save a PNG grid comparing forecasts with the truth.

    For each chosen sample three rows: the input frames, the true frames and the forecast frames
    (one column per time step / lead time), then one row per entry of ``baselines`` (e.g. the
    extrapolation nowcast). Each channel drawn is a block of columns on its own colour scale (the
    finite min and max of everything shown of it) with its own colour bar labelled ``units``; data
    with several channels name the channel above its block ("channel 1 of 2").

    Args:
        inputs: :math:`(N, T_{in}, H, W, C)`.
        true, pred: :math:`(N, L, H, W, C)`.
        path: the file (``.png``; ``.pdf`` and ``.svg`` work too).
        samples: how many samples from the first (at most N), or a list of sample indices.
        units: label of the colour bars (e.g. ``"mm/h"``).
        channel: the channel drawn, a list of them, or ``None``: every channel.
        title: figure title.
        cmap: matplotlib colour map name.
        baselines: ``{name: forecast}`` with forecasts shaped like ``pred``, drawn as extra rows
            labelled ``name`` below the model's forecast.
        input_labels: one title per input frame (default ``t-{T_in-1}`` ... ``t``: consecutive
            steps); e.g. ``["t-167", "t-23", "t-2", "t-1", "t"]`` for trend, period and closeness.
        sample_labels: one row label per sample drawn (default ``#i``, the index in ``inputs``),
            e.g. the samples' indices in the data they come from.
        channel_names: one name per channel of the data (e.g. ``["inflow", "outflow"]``).

    Returns:
        The path written.
    """
    x, y, p, extra = _forecast_arrays(inputs, true, pred, baselines)
    if not isinstance(units, str):
        raise TypeError(f"units must be a str, got {units!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {title!r}")
    if input_labels is not None and (isinstance(input_labels, str) or len(input_labels) != x.shape[1]):
        raise ValueError(f"input_labels must hold one title per input frame ({x.shape[1]}), got {input_labels!r}")
    out, fmt = _path(path, _STATIC_FORMATS)
    n_channels = y.shape[-1]
    chs, names = _channels(channel, n_channels), _names(channel_names, n_channels, "channel_names")
    idx = _sample_indices(samples, y.shape[0])
    rows_of = _names(sample_labels, len(idx), "sample_labels") or [f"#{s}" for s in idx]
    cols, rows = max(x.shape[1], y.shape[1]), (3 + len(extra)) * len(idx)
    block_width = 1.4 * cols * y.shape[3] / y.shape[2] + 1.4
    fig = _figure(block_width * len(chs), 1.4 * rows + 0.3 + (0.5 if title else 0) + (0.3 if n_channels > 1 else 0),
                  layout="constrained")
    for sub, ch in zip(fig.subfigures(1, len(chs), squeeze=False).ravel(), chs):
        frames = [a[idx, ..., ch] for a in (x, y, p)]
        _draw_channel(sub, frames, {n: e[idx, ..., ch] for n, e in extra.items()}, rows_of, input_labels,
                      cmap, units)
        if n_channels > 1:
            sub.suptitle(_channel_label(ch, n_channels, names), fontsize=10)
    if title:
        fig.suptitle(title)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt)
    return out


def _check_gif_options(sample: Any, samples: int, fps: Any, title: Any) -> None:
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise TypeError(f"sample must be an int, got {sample!r}")
    if not -samples <= sample < samples:
        raise ValueError(f"sample={sample} is out of range for {samples} sample(s)")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise TypeError(f"fps must be a positive number, got {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {title!r}")


def animate_forecast(true: Any, pred: Any, path: PathLike, *, sample: int = 0, channel: int = 0, fps: float = 4,
                     cmap: str = "viridis", units: str = "", title: Optional[str] = None,
                     channel_names: Optional[Sequence[str]] = None) -> Path:
    r"""Save a GIF with the truth beside the forecast, one GIF frame per lead time (looping).

    Args:
        true, pred: :math:`(N, L, H, W, C)`.
        path: the ``.gif`` file.
        sample: the sample shown.
        channel: the channel shown.
        fps: frames per second (> 0).
        cmap: matplotlib colour map name; both panels share one colour scale.
        units: label of the colour bar.
        title: a line above the panels (e.g. which sample it is); data with several channels
            also name the channel drawn ("channel 0 of 2").
        channel_names: one name per channel of the data.

    Returns:
        The path written. The GIF has :math:`L` frames.
    """
    y, p = _array(true, "true"), _array(pred, "pred")
    if y.shape != p.shape:
        raise ValueError(f"true and pred must have the same shape, got {y.shape} and {p.shape}")
    out, _ = _path(path, {".gif": "gif"})
    _check_gif_options(sample, y.shape[0], fps, title)
    ch, names = _channel(channel, y.shape[-1]), _names(channel_names, y.shape[-1], "channel_names")
    heading = [title] if title else []
    if y.shape[-1] > 1:
        heading.append(_channel_label(ch, y.shape[-1], names))
    y, p = y[sample, ..., ch], p[sample, ..., ch]
    vmin, vmax = _finite_range(y, p)
    from PIL import Image

    aspect = y.shape[2] / y.shape[1]
    fig = _figure(2 * 2.4 * aspect + 0.9, 2.6 + 0.3 * len(heading))
    ax_t, ax_p = fig.subplots(1, 2)
    if heading:
        fig.suptitle(", ".join(heading), fontsize=10)
    im_t = ax_t.imshow(y[0], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    im_p = ax_p.imshow(p[0], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    for ax in (ax_t, ax_p):
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(im_p, ax=[ax_t, ax_p], shrink=0.8)
    if units:
        cbar.set_label(units)
    frames = []
    for t in range(y.shape[0]):
        im_t.set_data(y[t])
        im_p.set_data(p[t])
        ax_t.set_title(f"truth +{t + 1}", fontsize=9)
        ax_p.set_title(f"forecast +{t + 1}", fontsize=9)
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        frames.append(Image.fromarray(rgb).quantize(colors=255, method=Image.Quantize.MEDIANCUT))
    duration = max(1, int(round(1000.0 / fps)))
    with atomic_path(out) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=duration,
                       loop=0, disposal=1)
    return out


def plot_learning_curve(history: Dict[str, Sequence[float]], path: PathLike, *, title: Optional[str] = None) -> Path:
    """Save the training and validation loss per epoch.

    Args:
        history: ``{"train_loss": [...], "val_loss": [...]}``, one value per epoch (epoch 1 first);
            either may be missing or shorter (validation every few epochs is plotted against the
            first epochs; give ``None``/``nan`` for epochs without a value). Other keys are ignored.
        path: the file (``.png``, ``.pdf`` or ``.svg``).
        title: figure title.

    The y axis is logarithmic when every plotted value is positive. Returns the path written.
    """
    if not isinstance(history, dict):
        raise TypeError(f"history must be a dict like {{'train_loss': [...], 'val_loss': [...]}}, "
                        f"got {type(history).__name__}")
    out, fmt = _path(path, _STATIC_FORMATS)
    curves = {}
    for key in ("train_loss", "val_loss"):
        if key not in history or history[key] is None:
            continue
        values = history[key]
        if isinstance(values, (str, bytes)):
            raise TypeError(f"history[{key!r}] must be a sequence of numbers, got {values!r}")
        try:
            arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"history[{key!r}] must be a sequence of numbers, got {values!r}") from None
        curves[key] = arr
    if not curves or all(a.size == 0 for a in curves.values()):
        raise ValueError(f"history has no 'train_loss' or 'val_loss' values (keys: {sorted(history)})")
    from matplotlib.ticker import MaxNLocator

    fig = _figure(6, 4, layout="constrained")   # the layout keeps the tick labels and axis labels inside
    ax = fig.add_subplot(1, 1, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = np.concatenate([a[np.isfinite(a)] for a in curves.values()])
    for key, arr in curves.items():
        epochs = np.arange(1, arr.size + 1)
        ok = np.isfinite(arr)
        ax.plot(epochs[ok], arr[ok], marker="o", markersize=3, label=key.replace("_", " "))
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, out, fmt)


def _title(title: Any) -> Optional[str]:
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {title!r}")
    return title


def _rank_counts(hist: Any, name: str) -> np.ndarray:
    try:
        counts = np.asarray(hist, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of counts, one per rank, got {hist!r}") from None
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"{name} must hold M + 1 >= 2 counts, one per rank (1D), got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(f"{name} must hold finite counts >= 0, not all 0, got {counts.tolist()}")
    return counts


def plot_rank_histogram(hist: Union[Sequence[float], Mapping[str, Sequence[float]]], path: PathLike, *,
                        title: Optional[str] = None) -> Path:
    r"""Save the rank histogram of an ensemble forecast as bars of relative frequency (or of
    several forecasts, a panel each, side by side).

    Bar :math:`r` is the share of points whose truth has rank :math:`r` among the :math:`M`
    members (0: below every member, :math:`M`: above every one); the dashed line at
    :math:`1/(M+1)` is the flat histogram of an ensemble whose members and truth are drawn
    alike. A U shape says the ensemble is too narrow, a dome too wide, a slope biased.

    Args:
        hist: the :math:`M+1` counts (``rank_histogram`` of
            :meth:`convlstm.ensemble_scores.EnsembleScores.compute`), or frequencies; or
            ``{forecast name: counts}``, a panel per forecast (each with its own :math:`M`).
        path: the file (``.png``; ``.pdf`` and ``.svg`` work too).
        title: figure title.

    Returns:
        The path written.
    """
    if isinstance(hist, Mapping):
        if not hist:
            raise ValueError("hist is an empty dict; give {forecast name: counts} with at least one forecast")
        panels = {str(k): _rank_counts(v, f"hist[{k!r}]") for k, v in hist.items()}
    else:
        panels = {"ensemble": _rank_counts(hist, "hist")}
    out, fmt = _path(path, _STATIC_FORMATS)
    title = _title(title)
    from matplotlib.ticker import MaxNLocator

    fig = _figure(1 + 5 * len(panels), 4, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for i, (ax, (label, counts)) in enumerate(zip(axes, panels.items())):
        ranks = np.arange(counts.size)
        ax.bar(ranks, counts / counts.sum(), width=0.9, color=f"C{i % 10}", label=label)
        ax.axhline(1.0 / counts.size, color="black", linestyle="--", linewidth=1,
                   label="flat (consistent ensemble)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.6, counts.size - 0.4)
        ax.set_xlabel(f"rank of the truth among the {counts.size - 1} members")
        ax.legend(fontsize=8)
        if len(panels) > 1:
            ax.set_title(label)
    axes[0].set_ylabel("relative frequency")
    if title:
        fig.suptitle(title) if len(panels) > 1 else axes[0].set_title(title)
    return _save(fig, out, fmt)


def _reliability_curves(rel_by_threshold: Any) -> Dict[str, Mapping[str, Any]]:
    """``{label: reliability entry}`` from a ``{threshold: entry}`` mapping or a results dict."""
    if not isinstance(rel_by_threshold, Mapping):
        raise TypeError(f"rel_by_threshold must be a dict {{threshold: reliability}} or the results of "
                        f"EnsembleScores.compute, got {type(rel_by_threshold).__name__}")
    entries = {str(k)[len("reliability@"):]: v for k, v in rel_by_threshold.items()
               if str(k).startswith("reliability@")} or {str(k): v for k, v in rel_by_threshold.items()}
    if not entries:
        raise ValueError("rel_by_threshold is empty: score the ensemble with thresholds to get reliability@THR")
    for label, entry in entries.items():
        needed = ("forecast_probability", "observed_frequency", "counts")
        if not isinstance(entry, Mapping) or any(k not in entry for k in needed):
            raise ValueError(f"rel_by_threshold[{label!r}] must be a reliability entry with keys {list(needed)}, "
                             f"got {entry!r}")
    return entries


def _is_by_forecast(rel: Any) -> bool:
    """Whether ``rel`` is ``{forecast name: results}`` (results holding ``reliability@THR`` entries)."""
    return (isinstance(rel, Mapping) and bool(rel) and not any(str(k).startswith("reliability@") for k in rel)
            and all(isinstance(v, Mapping) and any(str(k).startswith("reliability@") for k in v)
                    for v in rel.values()))


def plot_reliability(rel_by_threshold: Mapping[str, Any], path: PathLike, *, title: Optional[str] = None) -> Path:
    r"""Save the reliability diagram of an ensemble forecast, one curve per event threshold (or
    of several forecasts, a panel each, side by side).

    Above: the observed frequency of the event against the mean forecast probability of each
    bin (bins with too few points are left out), with the diagonal of perfect reliability and,
    dotted, each threshold's base rate (the frequency of the event over all points). Below: the
    points per bin (the forecast's sharpness), on a log scale.

    Args:
        rel_by_threshold: ``{threshold: entry}`` with the ``reliability@THR`` entries of
            :meth:`convlstm.ensemble_scores.EnsembleScores.compute` (keys
            ``forecast_probability``, ``observed_frequency``, ``counts``, and optionally
            ``bin_centres`` and ``base_rate``), or those results themselves; or ``{forecast
            name: results}``, a panel per forecast.
        path: the file (``.png``; ``.pdf`` and ``.svg`` work too).
        title: figure title.

    Returns:
        The path written.
    """
    if _is_by_forecast(rel_by_threshold):
        panels = {str(k): _reliability_curves(v) for k, v in rel_by_threshold.items()}
    else:
        panels = {"": _reliability_curves(rel_by_threshold)}
    out, fmt = _path(path, _STATIC_FORMATS)
    title = _title(title)
    fig = _figure(0.5 + 5.5 * len(panels), 6.5, layout="constrained")
    grid = fig.subplots(2, len(panels), gridspec_kw={"height_ratios": [3, 1]}, sharex=True, squeeze=False)
    for col, (name, entries) in enumerate(panels.items()):
        ax, ax_n = grid[0, col], grid[1, col]
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect reliability")
        for i, (label, entry) in enumerate(entries.items()):
            colour = f"C{i % 10}"
            p = np.asarray(entry["forecast_probability"], dtype=np.float64)
            f = np.asarray(entry["observed_frequency"], dtype=np.float64)
            ok = np.isfinite(p) & np.isfinite(f)
            ax.plot(p[ok], f[ok], marker="o", color=colour, label=f">= {label}")
            if entry.get("base_rate") is not None and np.isfinite(entry["base_rate"]):
                ax.axhline(entry["base_rate"], color=colour, linestyle=":", linewidth=1)
            counts = np.asarray(entry["counts"], dtype=np.float64)
            centres = np.asarray(entry.get("bin_centres", (np.arange(counts.size) + 0.5) / counts.size))
            ax_n.plot(centres, np.where(counts > 0, counts, np.nan), marker="o", color=colour)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax_n.set_yscale("log")
        ax_n.set(xlabel="forecast probability")
        ax_n.grid(True, alpha=0.3)
        if name:
            ax.set_title(name)
    grid[0, 0].set_ylabel("observed relative frequency")
    grid[1, 0].set_ylabel("points per bin")
    if title:
        fig.suptitle(title) if len(panels) > 1 or panels.get("") is None else grid[0, 0].set_title(title)
    return _save(fig, out, fmt)


def plot_probability(truth: Any, probabilities: Mapping[str, Any], path: PathLike, *, threshold: float,
                     channel: int = 0, units: Optional[str] = None, cmap: str = "viridis",
                     title: Optional[str] = None) -> Path:
    r"""Save the exceedance probability maps of ensemble forecasts beside the truth: one column per
    lead time; the first row the truth (with the event's edge, :math:`x = T`, drawn in white), then
    a row per forecast with its probability :math:`P(x \ge T)`, the share of its members at or
    above the threshold, on a 0-1 scale (the truth's event area outlined in red on each).

    Args:
        truth: :math:`(L, H, W, C)` (or :math:`(L, H, W)`) one sample's targets.
        probabilities: ``{forecast name: P}``, each :math:`P` shaped like ``truth``, in [0, 1]
            (e.g. ``(members >= T).mean(0)`` of members :math:`(M, L, H, W, C)`).
        path: the file (``.png``; ``.pdf`` and ``.svg`` work too).
        threshold: :math:`T`, in the truth's units.
        channel: the channel drawn.
        units: the truth's units, for its colour bar and the title.
        cmap: the truth's colour map.
        title: figure title.

    Returns:
        The path written.
    """
    def frames(a: Any, name: str) -> np.ndarray:
        try:
            import torch
            if isinstance(a, torch.Tensor):
                a = a.detach().cpu().float().numpy()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 3:
            a = a[..., None]
        if a.ndim != 4:
            raise ValueError(f"{name} must be (lead_time, rows, cols[, channels]), got shape {a.shape}")
        return a

    y = frames(truth, "truth")
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise ValueError("probabilities must be a non-empty dict {forecast name: probability (lead_time, rows, cols"
                         "[, channels])}")
    probs = {str(k): frames(v, f"probabilities[{k!r}]") for k, v in probabilities.items()}
    for k, v in probs.items():
        if v.shape != y.shape:
            raise ValueError(f"probabilities[{k!r}] must be shaped like truth {y.shape}, got {v.shape}")
        if np.any((v < 0) | (v > 1)):
            raise ValueError(f"probabilities[{k!r}] must lie in [0, 1]")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    c = _channel(channel, y.shape[-1])
    out, fmt = _path(path, _STATIC_FORMATS)
    title = _title(title)
    leads, rows = y.shape[0], 1 + len(probs)
    fig = _figure(1.2 + 1.8 * leads, 0.6 + 1.8 * rows, layout="constrained")
    axes = fig.subplots(rows, leads, squeeze=False)
    vmin, vmax = _finite_range(y[..., c])
    event = y[..., c] >= threshold
    truth_image = prob_image = None
    for t in range(leads):
        truth_image = axes[0, t].imshow(y[t, :, :, c], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
        axes[0, t].set_title(f"+{t + 1}", fontsize=8)
        for r, (name, p) in enumerate(probs.items(), start=1):
            prob_image = axes[r, t].imshow(p[t, :, :, c], vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
            if event[t].any() and not event[t].all():
                axes[r, t].contour(event[t].astype(float), levels=[0.5], colors="red", linewidths=0.8)
                axes[0, t].contour(event[t].astype(float), levels=[0.5], colors="white", linewidths=0.8)
    for r, name in enumerate(["truth"] + list(probs)):
        axes[r, 0].set_ylabel(name if r == 0 else f"{name}\nP(x >= {threshold:g})", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(truth_image, ax=axes[0].tolist(), shrink=0.9)
    bar.set_label(units or "truth")
    bar = fig.colorbar(prob_image, ax=axes[1:].ravel().tolist(), shrink=0.9)
    bar.set_label("probability")
    label = f" ({_channel_label(c, y.shape[-1])})" if y.shape[-1] > 1 else ""
    fig.suptitle((title or f"probability of x >= {threshold:g}") + label
                 + "\nred: where the truth is >= the threshold", fontsize=9)
    return _save(fig, out, fmt)
