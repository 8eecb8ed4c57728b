"""``fit``, ``evaluate``, ``predict`` and ``demo``: the functions the command line calls."""
from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from .._errors import ParameterError
from .._io import atomic_path, atomic_write, write_json
from .config import FitConfig, load_config, save_config
from .datamodule import GridDataModule, run_source_options
from .module import AtomicCheckpointIO, ForecastModule, HistoryCallback, RandomStateCallback, load_checkpoint
from .multiscale import MultiScale

__all__ = ["fit", "evaluate", "predict", "demo", "find_checkpoint", "load_module", "DEMO_SETTINGS",
           "format_results"]

PathLike = Union[str, "os.PathLike[str]"]
_RUN_DIR_ENV = "CONVLSTM_RUN_DIR"


def _env_rank() -> int:
    """This process's global rank as the launcher tells it (0 when not launched by DDP)."""
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return int(os.environ.get("NODE_RANK", 0)) * 1000 + int(os.environ.get("LOCAL_RANK", 0))


def _as_config(config: Union[None, FitConfig, Mapping[str, Any], PathLike], overrides: Mapping[str, Any]) -> FitConfig:
    if config is None:
        cfg = FitConfig()
    elif isinstance(config, FitConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = FitConfig.from_dict(config)
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
    else:
        raise TypeError(f"config must be a FitConfig, a dict or a YAML file path; got {type(config).__name__}")
    return cfg.replace(**overrides) if overrides else cfg


def _resolve_run_dir(cfg: FitConfig) -> Path:
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    # DDP launchers re-run the command in each process; they inherit the first process's choice
    inherited = os.environ.get(_RUN_DIR_ENV)
    if inherited and _env_rank() != 0:
        return Path(inherited)
    return Path("runs") / _dt.datetime.now().strftime("fit-%Y%m%d-%H%M%S")


def _datamodule_from_config(cfg: FitConfig) -> GridDataModule:
    if cfg.data is None:
        raise ParameterError("data", "data is not set: give the grid file to train on (data=FILE, or `data:` in "
                                     "the config file)")
    return GridDataModule(path=cfg.data, key=cfg.key, layout=cfg.layout, input_steps=cfg.input_steps,
                          output_steps=cfg.output_steps, stride=cfg.stride, gap=cfg.gap, split=cfg.split,
                          scaler=cfg.scaler, fill_nan=cfg.fill_nan, batch_size=cfg.batch_size,
                          num_workers=cfg.num_workers, conversion=cfg.conversion(), nonnegative=cfg.nonnegative,
                          multiscale=MultiScale(cfg.closeness, cfg.period, cfg.trend, cfg.period_interval,
                                                cfg.trend_interval, cfg.steps_per_day, cfg.calendar, cfg.holidays,
                                                cfg.external, cfg.external_data,
                                                automatic=_takes_streams_and_features(cfg.model)))


def _takes_streams_and_features(model: str) -> bool:
    """Whether the registered ``model`` takes ``streams`` and ``num_features`` (``st-convlstm``):
    only then do ``period``/``trend``/``calendar`` left at ``None`` switch on by themselves."""
    from .module import _factory_params

    params = _factory_params(model)
    return params is not None and {"streams", "num_features"} <= params


def fit(config: Union[None, FitConfig, Mapping[str, Any], PathLike] = None, *,
        datamodule: Optional[GridDataModule] = None, model: Optional[nn.Module] = None,
        callbacks: Sequence[Any] = (), **overrides: Any) -> Path:
    """Train a model as ``config`` says, then (``evaluate=True``) score it on the test part and
    draw the pictures. Returns the run folder.

    Args:
        config: a :class:`FitConfig`, a dict of its fields, or a YAML file.
        datamodule: data to use instead of ``config.data`` (e.g. in-memory arrays).
        model: a ready ``nn.Module`` instead of ``config.model`` (its checkpoints then need the
            same module to be loaded: :func:`evaluate` ``(..., model=...)``).
        callbacks: extra Lightning callbacks.
        **overrides: fields of :class:`FitConfig` that replace the config's.

    The run folder holds ``config.yaml``, ``checkpoints/best.ckpt`` and ``last.ckpt``,
    ``history.json``, ``memory.json`` (the memory check: the estimate of a training step, the
    budget and the batch size used; see :mod:`convlstm.training.memory`) and, after evaluation,
    ``metrics.json``, ``metrics_per_lead_time.csv``, ``forecast.png``, ``forecast.gif`` and
    ``learning_curve.png``.

    Resuming (``resume=True``) continues ``run_dir/checkpoints/last.ckpt`` up to ``max_epochs``,
    which may differ from the run's: the ``cosine`` schedule is then stretched to it (from the
    resumed epoch on, the rate is that of a cosine over the new number of epochs, see
    :meth:`ForecastModule.on_train_start`), ``none`` and ``plateau`` do not depend on it, and
    ``onecycle``, whose phases are laid out over the steps planned at the start, refuses a change
    (``ValueError``). :func:`~convlstm.training.load_run_config` gives the run's own options.

    A run that fails before its first checkpoint is written removes what it wrote (``config.yaml``,
    ``memory.json``, and the run folder when it created it), so no half-made run is left behind.

    Before training (and before the run folder is written) a CPU run estimates a training step's
    peak memory; a ``batch_size`` over the budget (``memory_limit``) is lowered to the largest that
    fits, printed and written into ``config.yaml``; if batch size 1 does not fit,
    :class:`~convlstm.training.memory.MemoryBudgetError` (a ``ValueError``) says so.

    Example::

        >>> run_dir = fit(data="flow.npy", input_steps=6, output_steps=3, max_epochs=10)
    """
    run_dir, _ = _fit(_as_config(config, overrides), datamodule=datamodule, model=model, callbacks=callbacks)
    return run_dir


class _QuietLightning(logging.Filter):
    """Drop Lightning's advertising and chatter from the output; keep everything else."""

    _DROP = ("litlogger", "was configured so 100%", "LOCAL_RANK:", "GPU available:", "TPU available:",
             "HPU available:", "Seed set to")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(d in msg for d in self._DROP)


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _QuietLightning) for f in lg.filters):
            lg.addFilter(_QuietLightning())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")  # expected when resuming


def _memory_guard(cfg: FitConfig, dm: GridDataModule, module: ForecastModule, model: Optional[nn.Module],
                  rank: int) -> Any:
    """:func:`convlstm.training.memory.guard_training_memory` for this run (CPU runs; others are
    said to be unchecked). Returns its :class:`~convlstm.training.memory.BatchChoice` or None."""
    from .memory import guard_training_memory

    log = print if rank == 0 else (lambda _msg: None)
    acc = cfg.accelerator
    gpu = torch.cuda.is_available() or bool(getattr(getattr(torch.backends, "mps", None), "is_available", bool)())
    if dm.num_features:
        log(f"convlstm fit: memory check skipped: it does not cover models fed calendar/external features; batch "
            f"size {dm.batch_size} is not checked")
        return None
    if acc not in ("cpu", "auto") or (acc == "auto" and gpu):
        log(f"convlstm fit: memory check skipped: it covers CPU runs, and this one runs on accelerator={acc!r}"
            f"{' (a GPU is available)' if acc == 'auto' else ''}; batch size {dm.batch_size} is not checked")
        return None
    d = cfg.devices
    processes = (len(d) if isinstance(d, list) else d if isinstance(d, int) and d > 1 else 1)
    rows, cols, channels = (int(v) for v in dm.sample_shape)
    name = cfg.model if model is None else type(model).__name__
    describe = (f"model {name}, {dm.input_steps} frames in and {dm.output_steps} out of {rows}x{cols}x{channels}, "
                f"precision {cfg.precision}")
    frame = (rows, cols, channels)
    return guard_training_memory(module, (dm.input_steps,) + frame, (dm.output_steps,) + frame, dm.batch_size,
                                 precision=cfg.precision, memory_limit=cfg.memory_limit, device="cpu",
                                 processes=processes, describe=describe, log=log)


def _fit(cfg: FitConfig, *, datamodule: Optional[GridDataModule] = None, model: Optional[nn.Module] = None,
         callbacks: Sequence[Any] = ()) -> Tuple[Path, Optional[Dict[str, Any]]]:
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    _quiet_lightning()
    run_dir = _resolve_run_dir(cfg)
    rank = _env_rank()
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if cfg.resume and not last.is_file():
        raise FileNotFoundError(f"resume=True but {str(last)!r} does not exist; give the --run-dir of an earlier "
                                f"run, or drop --resume to start a new one")
    if not cfg.resume and last.is_file() and rank == 0:
        raise FileExistsError(f"run_dir {str(run_dir)!r} already holds a run ({last}); add --resume to continue "
                              f"it, or give another --run-dir")
    if cfg.resume:
        _check_resumable(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodule if datamodule is not None else _datamodule_from_config(cfg)
    if cfg.units and not dm.units:
        dm.units = cfg.units  # kept in the checkpoint: `evaluate` labels the pictures the same
    dm.setup("fit")
    if rank == 0:
        if not dm.conversion.is_identity:
            print(f"convlstm fit: data in physical units: {dm.conversion.describe()}")
        print(f"convlstm fit: forecasts {'are' if dm.nonnegative else 'are not'} clamped at 0 "
              f"({dm.nonnegative_reason})")
        if dm.streams is not None:
            print(f"convlstm fit: {dm.multiscale.describe(dm.datasets)}")
    module = ForecastModule(model if model is not None else cfg.model, model_options=cfg.model_options,
                            input_steps=dm.input_steps, output_steps=dm.output_steps, frame_shape=dm.sample_shape,
                            loss=cfg.loss, loss_options=cfg.loss_options, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            scheduler=cfg.scheduler, scheduled_sampling=cfg.scheduled_sampling,
                            streams=dm.streams, num_features=dm.num_features)
    # before any file is written: a batch size that does not fit is lowered, or the run stops
    memory = _memory_guard(cfg, dm, module, model, rank)
    if memory is not None and memory.changed:
        dm.batch_size = memory.chosen
        cfg = cfg.replace(batch_size=memory.chosen)
    # folders this run makes (the run folder, and any above it): removed again if it fails at once
    created = [d for d in (ckpt_dir, run_dir, *run_dir.parents) if not d.exists()]
    written = []
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        written.append(save_config(cfg.replace(run_dir=str(run_dir)), run_dir / "config.yaml"))
        if memory is not None:
            write_json(run_dir / "memory.json", memory.to_dict())
            written.append(run_dir / "memory.json")
    monitor = "val_loss" if dm.has_val else "train_loss_epoch"
    history = HistoryCallback(run_dir / "history.json")
    cbs = [ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode="min", save_top_k=1,
                           save_last=True, auto_insert_metric_name=False, enable_version_counter=False),
           history, RandomStateCallback()]
    if cfg.patience is not None:
        cbs.append(EarlyStopping(monitor=monitor, mode="min", patience=cfg.patience))
    if cfg.progress:
        cbs.append(TQDMProgressBar(refresh_rate=1))
    cbs.extend(callbacks)
    limit_val = 0 if not dm.has_val else cfg.limit_val_batches
    os.environ[_RUN_DIR_ENV] = str(run_dir)
    try:
        try:
            trainer = pl.Trainer(
                max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                strategy=cfg.strategy, precision=cfg.precision, deterministic=cfg.deterministic,
                gradient_clip_val=cfg.gradient_clip, logger=False, enable_progress_bar=cfg.progress,
                enable_model_summary=False, callbacks=cbs, plugins=[AtomicCheckpointIO()],
                default_root_dir=str(run_dir), limit_train_batches=cfg.limit_train_batches,
                limit_val_batches=limit_val, num_sanity_val_steps=0, log_every_n_steps=1)
        except MisconfigurationException as exc:
            raise ParameterError("accelerator", f"Lightning cannot run with accelerator={cfg.accelerator!r}, "
                                                f"devices={cfg.devices!r}, num_nodes={cfg.num_nodes}, "
                                                f"strategy={cfg.strategy!r}, precision={cfg.precision!r} here: "
                                                f"{exc}", also=("devices", "num_nodes", "strategy", "precision"))
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if cfg.resume else None, weights_only=True)
    except BaseException:
        if rank == 0 and not last.is_file():
            _remove_unstarted_run(written + [run_dir / "history.json"], created)
        raise
    finally:
        if rank == 0:
            os.environ.pop(_RUN_DIR_ENV, None)
    results = None
    if trainer.is_global_zero and cfg.evaluate:
        if dm.datasets.get("test") is None:
            print(f"convlstm: no test part (split={cfg.split}); skipping evaluation")
        else:
            results = evaluate(run_dir, datamodule=dm, model=model, thresholds=cfg.thresholds, units=cfg.units,
                               samples=cfg.samples, history=history.history, baselines=cfg.baselines,
                               fss_scales=cfg.fss_scales, extrapolation_method=cfg.extrapolation_method)
    return run_dir, results


def _check_resumable(cfg: FitConfig, run_dir: Path) -> None:
    """Refuse a resume whose ``max_epochs`` the run's learning-rate schedule cannot follow."""
    previous = run_dir / "config.yaml"
    if not previous.is_file():
        return
    old = load_config(previous)
    if cfg.scheduler == "onecycle" and old.scheduler == "onecycle" and old.max_epochs != cfg.max_epochs:
        raise ParameterError("max_epochs", f"max_epochs={cfg.max_epochs} differs from the run's {old.max_epochs}, "
                                           f"but its onecycle schedule laid out its warm-up and decay over the "
                                           f"steps of {old.max_epochs} epochs when it started and cannot be "
                                           f"stretched; resume with max_epochs={old.max_epochs}, or start a new "
                                           f"run (another run_dir)", also=("run_dir",))


def _remove_unstarted_run(files: Sequence[Path], created: Sequence[Path]) -> None:
    """Remove what a run that failed before its first checkpoint wrote: ``files``, then the
    folders of ``created`` (this run made them) where they are left empty."""
    for f in files:
        if f.is_file():
            f.unlink()
    for d in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()  # only when empty: nothing but what this run wrote is ever removed
        except OSError:
            pass


# ---------------------------------------------------------------------------------- loading
def find_checkpoint(source: PathLike, which: str = "best") -> Path:
    """The checkpoint file ``source`` names: a ``.ckpt`` file, or a run folder (its
    ``checkpoints/best.ckpt``, else ``last.ckpt``)."""
    p = Path(source)
    if p.is_file():
        return p
    if p.is_dir():
        for name in ((f"{which}.ckpt", "last.ckpt", "best.ckpt")):
            for cand in (p / "checkpoints" / name, p / name):
                if cand.is_file():
                    return cand
        raise FileNotFoundError(f"{str(p)!r} is a folder without checkpoints/best.ckpt or last.ckpt; give a run "
                                f"folder written by `convlstm fit` or a .ckpt file")
    raise FileNotFoundError(f"checkpoint or run folder {str(p)!r} does not exist")


def _run_dir_of(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def load_module(checkpoint: PathLike, *, model: Optional[nn.Module] = None) -> Tuple[ForecastModule, Dict[str, Any]]:
    """Rebuild the :class:`ForecastModule` of a checkpoint (read weights-only) and return it in
    eval mode with the checkpoint dict."""
    ckpt = load_checkpoint(find_checkpoint(checkpoint))
    hp = dict(ckpt.get("hyper_parameters") or {})
    if model is None and not hp.get("model"):
        raise ValueError(f"checkpoint {str(checkpoint)!r} holds a custom model (not a registered name); pass "
                         f"the same module as model=...")
    module = ForecastModule(model if model is not None else hp.pop("model"),
                            **{k: v for k, v in hp.items() if k != "model"})
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return module, ckpt


def _device(device: Optional[str]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------------- evaluate
def _finite_inputs(series: Any, windows: Sequence[np.ndarray], fill_nan: Any, name: str) -> Any:
    """The input frames of a forecast, with non-finite values handled as in training: filled
    as the run's ``fill_nan`` says (over the whole series, as ``fit`` filled it), or, when the
    run had none, refused if any frame the ``windows`` read holds one."""
    from .. import data as _data

    if fill_nan is not None:
        return _data.check_finite(series, fill=fill_nan)
    used = np.unique(np.concatenate([np.asarray(w) for w in windows]))
    try:
        _data.check_finite(np.asarray(series[used]))
    except ValueError as exc:
        raise ValueError(f"inputs {name!r}: the frames the forecast reads hold non-finite values, and the run "
                         f"was trained without --fill-nan, so nothing says how to fill them ({exc}). Fill the "
                         f"gaps in the file, or train with --fill-nan VALUE") from None
    return series


def _run_scoring(ckpt_path: Path) -> FitConfig:
    """The scoring options (thresholds, baselines, FSS scales, extrapolation method) of the run
    that holds ``ckpt_path``: its ``config.yaml`` when there is one, else :class:`FitConfig`'s
    defaults."""
    config = _run_dir_of(ckpt_path) / "config.yaml"
    return load_config(config) if config.is_file() else FitConfig()


def evaluate(source: PathLike, *, data: Optional[PathLike] = None, key: Optional[str] = None,
             layout: Optional[str] = None, datamodule: Optional[GridDataModule] = None,
             model: Optional[nn.Module] = None, part: str = "test", out_dir: Optional[PathLike] = None,
             thresholds: Optional[Sequence[float]] = None, units: Optional[str] = None, samples: int = 3,
             batch_size: Optional[int] = None,
             device: Optional[str] = None, plots: bool = True, history: Optional[Dict[str, Any]] = None,
             baselines: Optional[Sequence[str]] = None, fss_scales: Optional[Sequence[int]] = None,
             extrapolation_method: Optional[str] = None, nonnegative: Optional[bool] = None) -> Dict[str, Any]:
    """Score a trained model on the ``part`` (``"test"``) of its data, beside the ``baselines``,
    in the data's own (physical) units; write ``metrics.json``,
    ``metrics_per_lead_time.csv``, ``forecast.png``, ``forecast.gif`` and ``learning_curve.png``
    into ``out_dir`` (default: the run folder). Returns the metrics dict
    (:func:`convlstm.metrics.evaluate_forecast`'s).

    Args:
        source: a run folder or a ``.ckpt`` file.
        data, key, layout: another grid file to evaluate on (default: the file it was trained
            on); it is read, split and scaled as in training (same unit conversion), with the
            run's key and layout unless they are given (:func:`~convlstm.training.datamodule.run_source_options`).
        datamodule: a ready :class:`GridDataModule` instead.
        thresholds: CSI/POD/FAR/ETS (and FSS) thresholds in the data's units. This and
            ``baselines``, ``fss_scales``, ``extrapolation_method``: ``None`` takes the run's own
            (its ``config.yaml``, as ``fit`` scored it), else the defaults (no thresholds,
            persistence and climatology, no FSS scales, ``lucaskanade``).
        units: the units' name for the colour bars; ``None``: the run's (``units`` of its fit).
        baselines: any of ``persistence``, ``climatology``, ``extrapolation`` (pysteps's
            optical-flow extrapolation, ``pip install "convlstm[radar]"``), each a row in the
            metrics and in ``forecast.png`` (extrapolation).
        fss_scales: FSS window widths in pixels (FSS at every threshold and scale).
        extrapolation_method: pysteps's optical-flow method for the extrapolation baseline.
        nonnegative: clamp the model's forecasts at 0 (in data units); ``None``: as the
            checkpoint's data state says (decided at training, see :class:`GridDataModule`).
    """
    from .. import metrics as _metrics
    from .. import plots as _plots

    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
    ckpt_path = find_checkpoint(source)
    scoring = _run_scoring(ckpt_path)
    thresholds = scoring.thresholds if thresholds is None else thresholds
    baselines = scoring.baselines if baselines is None else baselines
    fss_scales = scoring.fss_scales if fss_scales is None else fss_scales
    extrapolation_method = scoring.extrapolation_method if extrapolation_method is None else extrapolation_method
    baselines = [baselines] if isinstance(baselines, str) else list(baselines)
    unknown = [b for b in baselines if b not in _metrics.BASELINES]
    if unknown:
        raise ValueError(f"baselines: unknown baseline(s) {unknown}; choose from {', '.join(_metrics.BASELINES)}")
    if nonnegative is not None and not isinstance(nonnegative, bool):
        raise ValueError(f"nonnegative must be True, False or None (as in training), got {nonnegative!r}")
    extrapolate = "extrapolation" in baselines
    if extrapolate:
        from ..extrapolation import _check_method, require_pysteps

        extrapolation_method = _check_method(extrapolation_method)
        require_pysteps()  # fail before any forecast is made
    module, ckpt = load_module(ckpt_path, model=model)
    state = ckpt.get("GridDataModule") or {}
    if datamodule is None:
        if not state:
            raise ValueError(f"checkpoint {str(ckpt_path)!r} has no data state (GridDataModule); pass datamodule=")
        datamodule = GridDataModule.from_state(state, path=None if data is None else str(data), key=key,
                                               layout=layout, batch_size=batch_size)
    elif state:
        datamodule.load_state_dict(state)
    dm = datamodule
    dm.setup("test")
    if part not in dm.datasets:
        raise ValueError(f"the {part} part of the data is empty (split={list(dm.split)})")
    if units is None:
        units = dm.units
    clamp = dm.nonnegative if nonnegative is None else nonnegative
    if clamp:
        print(f"convlstm evaluate: forecasts clamped at 0 "
              f"({dm.nonnegative_reason if nonnegative is None else 'nonnegative=True was given'})")
    dev = _device(device)
    module.to(dev)
    lo, hi = dm.value_range
    data_range = float(hi - lo) if hi > lo else 1.0
    rows, cols = dm.sample_shape[:2]
    ssim_window = getattr(_metrics, "_SSIM_WIN", 11)
    if min(rows, cols) < ssim_window:
        # convlstm.metrics refuses SSIM on frames smaller than its Gaussian window; score the rest
        acc: Any = _ErrorAccumulator(climatology=torch.as_tensor(dm.climatology))
        print(f"convlstm evaluate: frames of {rows}x{cols} are smaller than SSIM's {ssim_window}x{ssim_window} "
              f"window; reporting MSE, MAE and RMSE only")
    else:
        acc = _metrics.MetricAccumulator(data_range=data_range, thresholds=tuple(thresholds),
                                         climatology=torch.as_tensor(dm.climatology), scales=tuple(fss_scales))
    if dm.climatology_by_hour is not None and "climatology" in baselines:
        print("convlstm evaluate: climatology is the training mean of each cell at each hour of the day "
              "(from the file's time stamps)")
    unseen = dm.unseen_target_hours(part) if "climatology" in baselines else []
    if unseen:
        print(f"convlstm evaluate: hour(s) {unseen} of the {part} targets never occur in the training part; their "
              f"climatology is the mean training frame")
    if extrapolate:
        print(f"convlstm evaluate: extrapolation baseline: pysteps {extrapolation_method} motion from the "
              f"{dm.input_steps} input frames, semi-Lagrangian advection of the last one")
    keep_x, keep_y, keep_p, keep_e = [], [], [], []
    kept = seen = 0
    with torch.no_grad():
        for batch in dm.dataloader(part):
            x, y = batch[0].to(dev), batch[1]
            pred = module(x, batch[2].to(dev) if len(batch) > 2 else None).float()
            x_u = dm.inverse_transform(x.float()).cpu()
            y_u = dm.inverse_transform(y.float())
            p_u = dm.inverse_transform(pred).cpu()
            if clamp:
                p_u = p_u.clamp_min(0.0)
            ext = None
            if extrapolate:
                recent = x_u if dm.streams is None else x_u[:, -dm.streams[0]:]   # closeness frames only
                ext = torch.from_numpy(_metrics.extrapolation_forecast(recent, y_u.shape[1], method=extrapolation_method,
                                                                       gap=dm.gap))
            clim = dm.target_climatology(part, seen, x.shape[0])  # None: the mean training frame
            seen += x.shape[0]
            acc.update(p_u, y_u, x_u, climatology=None if clim is None else torch.from_numpy(clim),
                       extrapolation=ext)
            if kept < samples:
                n = min(samples - kept, x.shape[0])
                keep_x.append(x_u[:n].numpy()); keep_y.append(y_u[:n].numpy()); keep_p.append(p_u[:n].numpy())
                if ext is not None:
                    keep_e.append(ext[:n].numpy())
                kept += n
    results = acc.compute()
    for name in ("persistence", "climatology"):  # computed anyway (cheap); kept only when asked for
        if name not in baselines:
            results.pop(name, None)
            results.pop(f"skill_vs_{name}", None)
    if unseen and "climatology" in results:
        results["climatology"]["hours_without_training_data"] = unseen
    out = Path(out_dir) if out_dir is not None else _run_dir_of(ckpt_path)
    _metrics.write_metrics(results, out)
    if plots:
        xs, ys, ps = (np.concatenate(a) for a in (keep_x, keep_y, keep_p))
        rows_extra = {"extrapolation": np.concatenate(keep_e)} if keep_e else None
        labels = None
        if dm.streams is not None:   # trend, period, closeness frames: steps back from the newest input
            lags = dm.datasets[part].lags
            labels = [f"t-{int(lags.max() - o)}" if o != lags.max() else "t" for o in lags]
        _plots.plot_forecast(xs, ys, ps, out / "forecast.png", samples=min(samples, len(xs)), units=units,
                             baselines=rows_extra, input_labels=labels)
        _plots.animate_forecast(ys, ps, out / "forecast.gif", units=units)
        if history is None:
            history = (ckpt.get("callbacks") or {}).get("HistoryCallback")
        if history and history.get("train_loss"):
            _plots.plot_learning_curve(history, out / "learning_curve.png")
    return results


class _ErrorAccumulator:
    """MSE, MAE and RMSE (overall and per lead time) of the model, persistence, climatology (and
    extrapolation, when given), in the layout of :func:`convlstm.metrics.evaluate_forecast`: the
    fallback for frames too small for SSIM."""

    def __init__(self, climatology: torch.Tensor) -> None:
        self.climatology = climatology.double()
        self.sums: Dict[str, List[torch.Tensor]] = {}
        self.count = 0

    def update(self, pred: torch.Tensor, true: torch.Tensor, inputs: torch.Tensor,
               climatology: Optional[torch.Tensor] = None, extrapolation: Optional[torch.Tensor] = None) -> None:
        y = true.double()
        clim = self.climatology if climatology is None else climatology.double()
        forecasts = {"model": pred.double(), "persistence": inputs[:, -1:].double().expand_as(y),
                     "climatology": clim.expand_as(y)}
        if extrapolation is not None:
            forecasts["extrapolation"] = extrapolation.double()
        for name, f in forecasts.items():
            d = f - y
            sq, ab = (d * d).sum(dim=(0, 2, 3, 4)), d.abs().sum(dim=(0, 2, 3, 4))
            if name in self.sums:
                self.sums[name][0] += sq
                self.sums[name][1] += ab
            else:
                self.sums[name] = [sq, ab]
        self.count += int(y[:, 0].numel())

    def compute(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name, (sq, ab) in self.sums.items():
            mse_t, mae_t = (sq / self.count).tolist(), (ab / self.count).tolist()
            mse = float(sum(mse_t) / len(mse_t))
            out[name] = {"mse": mse, "mae": float(sum(mae_t) / len(mae_t)), "rmse": math.sqrt(mse),
                         "per_lead_time": {"mse": mse_t, "mae": mae_t, "rmse": [math.sqrt(v) for v in mse_t]}}
        for ref in ("persistence", "extrapolation"):
            if ref in out:
                out[f"skill_vs_{ref}"] = {
                    m: (1 - out["model"][m] / out[ref][m]) if out[ref][m] else float("nan")
                    for m in ("mse", "mae", "rmse")}
        return out


def format_results(results: Dict[str, Any], metrics: Sequence[str] = ("mse", "mae", "rmse", "ssim", "psnr")) -> str:
    """Small text tables: one row per forecast (model, persistence, climatology, extrapolation)
    with ``metrics``; then, when thresholds were scored, one row per event score (``csi@THR``,
    ``pod@THR``, ``far@THR``, ``ets@THR``, ``fss@THR/SCALE``, overall values) with one column
    per forecast; then the model's MSE relative to each baseline."""
    names = [n for n in ("model", "persistence", "climatology", "extrapolation") if n in results]
    cols = [m for m in metrics if m in results["model"]]
    lines = [f"{'forecast':<14}" + "".join(f"{m:>12}" for m in cols)]
    for n in names:
        lines.append(f"{n:<14}" + "".join(f"{_fmt(results[n].get(m)):>12}" for m in cols))
    scores = [k for k in results["model"] if "@" in k]
    if scores:
        width = max(14, max(len(k) for k in scores) + 2)
        lines.append("")
        lines.append(f"{'score':<{width}}" + "".join(f"{n:>14}" for n in names))
        for k in scores:
            lines.append(f"{k:<{width}}" + "".join(f"{_fmt(results[n].get(k)):>14}" for n in names))
    for n in names[1:]:
        ref = results[n].get("mse")
        if ref:
            gain = 100 * (1 - results["model"]["mse"] / ref)
            lines.append(f"model MSE is {abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'} than {n}'s")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


# ---------------------------------------------------------------------------------- predict
def predict(checkpoint: PathLike, inputs: PathLike, out: PathLike, *, key: Optional[str] = None,
            layout: Optional[str] = None, all_windows: bool = False, stride: int = 1, batch_size: int = 16,
            device: Optional[str] = None, model: Optional[nn.Module] = None,
            nonnegative: Optional[bool] = None) -> Path:
    """Forecast from the grid series in the file ``inputs`` and write the forecasts, in the data's
    units, to ``out`` (``.npy``, or ``.nc`` netCDF with a ``forecast`` variable).

    The file is read as in training: with the run's ``key`` and ``layout`` unless they are given
    (the key only where the file can hold several arrays, see
    :func:`~convlstm.training.datamodule.run_source_options`), the checkpoint's unit conversion (``scale``, ``offset``,
    ``transform``) turns its stored values into physical units, and the forecasts come out in
    those units, clamped at 0 when the checkpoint says ``nonnegative`` (or ``nonnegative=True``
    is given here; ``False`` turns it off).

    By default one forecast: the ``output_steps`` frames after the end of the series, from its
    last ``input_steps`` frames (shape ``(1, T_out, rows, cols, channels)``). With
    ``all_windows=True`` a forecast from every window of ``input_steps`` frames, starting every
    ``stride`` steps (shape ``(N, T_out, ...)``; in netCDF ``input_end`` gives the index of each
    window's last input frame).

    A checkpoint trained on closeness/period/trend samples forecasts the same way: its inputs are
    the stacked lags before the first target (which follows the series' end), with the calendar
    features of that target time (its time stamp continues the file's) and the external series at
    the last observed step; ``all_windows=True`` gives every target whose oldest lag is in the file.
    """
    from .. import data as _data

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".nc"):
        raise ParameterError("out", f"out must end in .npy or .nc (netCDF), got {str(out)!r}")
    ckpt_path = find_checkpoint(checkpoint)
    module, ckpt = load_module(ckpt_path, model=model)
    state = ckpt.get("GridDataModule") or {}
    if not state:
        raise ValueError(f"checkpoint {str(ckpt_path)!r} has no data state (GridDataModule) with its scaler")
    scaler = _data.scaler_from_state_dict(state["scaler"])
    t_in = int(state["input_steps"])
    if nonnegative is not None and not isinstance(nonnegative, bool):
        raise ValueError(f"nonnegative must be True, False or None (as in training), got {nonnegative!r}")
    clamp = bool(state.get("nonnegative")) if nonnegative is None else nonnegative
    from ..data.units import UnitConversion

    key, layout = run_source_options(state, inputs, key, layout)
    series = UnitConversion.from_state_dict(state.get("conversion")).wrap(
        _data.load_grid(inputs, key=key, layout=layout))
    n = int(series.shape[0])
    frame = list(state["sample_shape"])
    if list(series.shape[1:]) != frame:
        raise ParameterError("layout", f"inputs {str(inputs)!r} has frames of shape (rows, cols, channels) = "
                                       f"{tuple(series.shape[1:])} after layout={layout!r}, but the model was "
                                       f"trained on {tuple(frame)}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ParameterError("stride", f"stride must be an integer >= 1, got {stride!r}")
    features = None
    if state.get("multiscale"):
        # closeness/period/trend samples: the first target t follows the series (t = n + gap), or
        # every t whose oldest lag is in the file; calendar features of t, external series at t - gap - 1
        from .multiscale import load_times

        gap = int(state["gap"])
        ms = MultiScale.from_state(state["multiscale"])
        lags = ms.lags(gap)
        if n < -int(lags.min()):
            raise ValueError(f"inputs {str(inputs)!r} has {n} time steps; the model's oldest lag reaches "
                             f"{-int(lags.min())} steps back")
        targets = np.arange(-int(lags.min()), n + gap + 1, stride) if all_windows else np.array([n + gap])
        windows = [t + lags for t in targets]
        features, _ = ms.feature_rows(targets, load_times(str(inputs), n), n, gap, str(inputs))
    else:
        if n < t_in:
            raise ValueError(f"inputs {str(inputs)!r} has {n} time steps; the model needs input_steps={t_in}")
        starts = list(range(0, n - t_in + 1, stride)) if all_windows else [n - t_in]
        windows = [np.arange(s, s + t_in) for s in starts]
    series = _finite_inputs(series, windows, state.get("fill_nan"), str(inputs))
    dev = _device(device)
    module.to(dev)
    outs = []
    with torch.no_grad():
        for b in range(0, len(windows), batch_size):
            xb = np.stack([np.asarray(series[w]) for w in windows[b:b + batch_size]])
            x = scaler.transform(torch.as_tensor(xb, dtype=torch.float32)).to(dev)
            f = None if features is None else torch.from_numpy(features[b:b + batch_size]).to(dev)
            fc = scaler.inverse_transform(module(x, f).float())
            outs.append((fc.clamp_min(0.0) if clamp else fc).cpu().numpy())
    forecast = np.concatenate(outs).astype(np.float32)
    if suffix == ".npy":
        with atomic_write(out, "wb") as fh:
            np.save(fh, forecast, allow_pickle=False)
    else:
        import h5netcdf

        with atomic_path(out) as tmp:
            with h5netcdf.File(tmp, "w") as f:
                names = ("sample", "lead_time", "row", "col", "channel")
                f.dimensions = dict(zip(names, forecast.shape))
                v = f.create_variable("forecast", names, data=forecast)
                v.attrs["description"] = "ConvLSTM forecast in the data's units"
                if state.get("units"):
                    v.attrs["units"] = str(state["units"])
                v.attrs["checkpoint"] = str(ckpt_path)
                e = f.create_variable("input_end", ("sample",), data=np.array([int(w.max()) for w in windows]))
                e.attrs["description"] = "time index (in the input file) of each sample's last input frame"
                lt = f.create_variable("lead_time", ("lead_time",), data=np.arange(1, forecast.shape[1] + 1))
                lt.attrs["description"] = "steps after the last input frame"
    return out


# ---------------------------------------------------------------------------------- demo
#: The demo's settings (Moving MNIST). The model is ``convlstm-warp`` without its correction
#: term: it can only move the last frame (block-matching motion, refined by the ConvLSTM), so the
#: digit stays sharp at every lead time; chosen by the measurements of
#: ``benchmarks/forecast_skill.py`` (README, "Why forecasts blur, and what helps") so that the
#: whole demo takes under 5 minutes on 2 CPU cores.
DEMO_SETTINGS: Dict[str, Any] = {
    "num_sequences": 2000, "seq_len": 8, "image_size": 32, "digit_size": 14, "num_digits": 1,
    "speed": [2.0, 3.0], "input_steps": 5, "output_steps": 3, "split": [0.85, 0.05, 0.10],
    "model": "convlstm-warp", "model_options": {"filters": [32], "patch_size": 2, "correction": False},
    "loss": "mse", "lr": 2e-3, "batch_size": 8, "max_epochs": 10, "scheduler": "cosine", "seed": 1,
    "scheduled_sampling": 0.0, "precision": "auto",
}


def demo(run_dir: PathLike = "runs/demo", *, settings: Optional[Dict[str, Any]] = None, progress: bool = True,
         seed: Optional[int] = None, overwrite: bool = True, verbose: bool = True) -> Tuple[Path, Dict[str, Any]]:
    """Train a ConvLSTM on Moving MNIST (generated from the bundled MNIST digits), evaluate it on
    held-out sequences and write the run folder. Returns ``(run_dir, metrics)``.

    ``settings`` changes entries of :data:`DEMO_SETTINGS` (e.g. a tiny run for tests).
    """
    from .. import data as _data

    s = dict(DEMO_SETTINGS)
    if settings:
        unknown = sorted(set(settings) - set(s))
        if unknown:
            raise ValueError(f"unknown demo setting(s) {unknown}; known: {sorted(s)}")
        s.update(settings)
    seed = int(s["seed"]) if seed is None else int(seed)
    _avoid_oversubscription()
    run_dir = Path(run_dir)
    if overwrite and (run_dir / "checkpoints").is_dir():
        for f in (run_dir / "checkpoints").glob("*.ckpt"):
            f.unlink()
    t0 = time.time()
    seqs = _data.moving_mnist(int(s["num_sequences"]), seq_len=int(s["seq_len"]), image_size=int(s["image_size"]),
                              num_digits=int(s["num_digits"]), digit_size=int(s["digit_size"]),
                              speed=tuple(s["speed"]), seed=seed)
    if verbose:
        print(f"convlstm demo: {len(seqs)} Moving MNIST sequences of {s['seq_len']} frames "
              f"{s['image_size']}x{s['image_size']} ({s['num_digits']} digit(s)); {s['input_steps']} frames in, "
              f"{s['output_steps']} out; model {s['model']} {s['model_options']}")
    dm = GridDataModule(sequences=seqs[..., None], input_steps=int(s["input_steps"]),
                        output_steps=int(s["output_steps"]), split=s["split"], scaler="minmax",
                        batch_size=int(s["batch_size"]),
                        source={"kind": "moving_mnist", "seed": seed, **_plain_settings(s)})
    precision, why = _demo_precision(str(s["precision"]))
    cfg = FitConfig(model=s["model"], model_options=dict(s["model_options"]), input_steps=int(s["input_steps"]),
                    output_steps=int(s["output_steps"]), split=list(s["split"]), loss=s["loss"], lr=float(s["lr"]),
                    batch_size=int(s["batch_size"]), max_epochs=int(s["max_epochs"]), scheduler=s["scheduler"],
                    scheduled_sampling=float(s["scheduled_sampling"]),
                    seed=seed, run_dir=str(run_dir), accelerator="cpu", devices=1, progress=progress,
                    units="pixel value (0-255)", precision=precision)
    if verbose:
        print(f"precision: {cfg.precision}{why}")
    run_dir, results = _fit(cfg, datamodule=dm)
    if verbose and results is not None:
        print()
        print(f"Moving MNIST, {len(dm.datasets['test'])} held-out test sequences, MSE etc. in pixel units (0-255):")
        print(format_results(results))
        gains = [1 - results["model"]["mse"] / results[b]["mse"] for b in ("persistence", "climatology")
                 if results.get(b, {}).get("mse")]
        if len(gains) == 2:
            verdict = ("yes" if min(gains) >= 0.25 else
                       "no (a sharp digit a pixel off costs more MSE than a blur; 40 epochs reach 882, see the README)")
            print(f"MSE at least 25% below both persistence and climatology: {verdict}")
        m_ssim, p_ssim = results["model"].get("ssim"), results.get("persistence", {}).get("ssim")
        if m_ssim is not None and p_ssim is not None:
            print(f"SSIM above persistence's (the digit keeps its shape): {'yes' if m_ssim > p_ssim else 'no'} "
                  f"({m_ssim:.3f} vs {p_ssim:.3f}); look at forecast.png")
        print(f"\nrun folder: {run_dir.resolve()}")
        for name in ("metrics.json", "metrics_per_lead_time.csv", "forecast.png", "forecast.gif",
                     "learning_curve.png", "config.yaml", "checkpoints/best.ckpt"):
            print(f"  {run_dir / name}")
        print(f"total time {time.time() - t0:.0f} s")
    return run_dir, results


# The demo's settings trained on this project's 2-core AMD EPYC (avx512_bf16, no AMX), 2026-11-30,
# both runs side by side, seed 1 (docs/precision.md): test MSE 948.3 in float32, 933.3 with
# bf16-mixed (SSIM 0.728 and 0.732), 2070 s and 1925 s on a shared machine.
DEMO_BF16_EVIDENCE = "the demo measured test MSE 933 with bf16-mixed vs 948 in float32 on such a CPU"


def _demo_precision(requested: str) -> Tuple[str, str]:
    """The demo's precision and a note saying why: ``"auto"`` takes ``bf16-mixed`` on a CPU with
    bfloat16 instructions (``avx512_bf16`` or ``amx_bf16``), where it was measured to forecast as
    well as float32, and ``"32"`` elsewhere (oneDNN emulates bfloat16 there, slower than float32)."""
    from .._ops import cpu_bf16_flags

    bf16_note = " (convolutions in bfloat16 under autocast, gates and cell state in float32)"
    if requested != "auto":
        return requested, bf16_note if requested == "bf16-mixed" else ""
    flags = [f for f in cpu_bf16_flags() if f != "amx_tile"]
    if flags:
        return "bf16-mixed", f"{bf16_note}; chosen because this CPU has {', '.join(flags)} ({DEMO_BF16_EVIDENCE})"
    return "32", " (auto: this CPU has no avx512_bf16 or amx_bf16, where bfloat16 would be slower)"


def _avoid_oversubscription() -> None:
    """On a machine already busier than its cores, OpenMP threads that spin while they wait slow
    torch's small CPU operations down many times over; one thread is then much faster. (Setting
    ``OMP_WAIT_POLICY=PASSIVE`` before Python starts avoids the problem with any thread count.)"""
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" or torch.get_num_threads() <= 1:
        return
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return
    if load >= (os.cpu_count() or 1):
        torch.set_num_threads(1)


def _plain_settings(s: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items() if k not in ("model_options", "seed")}
