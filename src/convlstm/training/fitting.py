"""``fit``: train a model as a :class:`FitConfig` says, then score it.

The steps of :func:`fit`, each a function below: check the run folder (a new run, or the one to
resume) -> build the data module -> build the model -> check the memory of a training step
(the batch size may be lowered) -> write ``config.yaml`` and ``memory.json`` -> train with
Lightning (checkpoints, history, early stopping, progress bar) -> evaluate on the test part
(:func:`~convlstm.training.evaluate`). A run that fails before its first checkpoint removes what
it wrote.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .. import data as _data
from .._errors import ParameterError
from .._heap import keep_freed_memory, release_freed_memory
from .._io import write_json
from ..scoring import write_metrics
from .config import FitConfig, load_config, save_config
from .datamodule import GridDataModule
from .distributed import ShareAcrossRanks
from .evaluation import evaluate
from .module import AtomicCheckpointIO, ForecastModule, HistoryCallback, RandomStateCallback
from .multiscale import MultiScale
from .precision import resolve_precision
from .runs import RUN_DIR_ENV, PathLike, RunLock, env_rank, resolve_run_dir, trained_epochs

__all__ = ["fit"]


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

    Speed: ``precision="auto"`` (the default) trains in ``bf16-mixed`` on a CPU with bfloat16
    instructions (:mod:`convlstm.training.precision`), and the process's ``malloc`` keeps freed
    memory for the next step (:func:`convlstm._heap.keep_freed_memory`; glibc only, handed back
    when ``fit`` returns; ``CONVLSTM_KEEP_FREED_MEMORY=0`` leaves glibc's defaults alone).

    Distributed (DDP: ``devices``, ``num_nodes``, ``strategy``; Lightning's launcher, ``torchrun``
    or SLURM): each rank runs the memory check on its own machine; once Lightning has formed the
    process group, rank 0 takes the smallest of the ranks' batch sizes and every rank uses it, and
    the ConvLSTM paths that ``implementation="auto"`` times are timed on rank 0 and shared
    (:mod:`convlstm.training.distributed`); each rank saves and restores its own random states.

    Example::

        >>> run_dir = fit(data="flow.npy", input_steps=6, output_steps=3, max_epochs=10)
    """
    run_dir, _ = _fit(_as_config(config, overrides), datamodule=datamodule, model=model, callbacks=callbacks)
    return run_dir


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


@dataclass
class _Run:
    """A run being made: its folder, this process's rank, and what it has written so far (removed
    again if it fails before its first checkpoint)."""
    cfg: FitConfig
    folder: Path
    rank: int
    written: List[Path] = field(default_factory=list)
    created: List[Path] = field(default_factory=list)
    memory: Any = None  # the memory check's BatchChoice (memory.json), None when unchecked
    lock: Optional[RunLock] = None

    def close(self) -> None:
        """Release the run folder's lock (rank 0 holds it while the run trains and scores)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.ckpt"

    def log(self, message: str) -> None:
        if self.rank == 0:
            print(message)


def _fit(cfg: FitConfig, *, datamodule: Optional[GridDataModule] = None, model: Optional[nn.Module] = None,
         callbacks: Sequence[Any] = ()) -> Tuple[Path, Optional[Dict[str, Any]]]:
    import lightning.pytorch as pl

    _quiet_lightning()
    keep_freed_memory()  # a step reuses the pages the last one touched (convlstm._heap)
    run = _open_run(cfg)
    try:
        run.cfg = _resolve_precision(run)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = _prepare_data(run, datamodule)
        module = _build_module(run.cfg, dm, model)
        run.cfg = _guard_memory(run, dm, module, model)
        _write_run_start(run)
        history = HistoryCallback(run.folder / "history.json")
        trainer = _train(run, dm, module, [*_callbacks(run, dm, history), *callbacks])
        results = None
        if trainer.is_global_zero and cfg.evaluate:
            results = _evaluate_after_fit(run, dm, model, history)
    except BaseException:
        run.close()
        if run.rank == 0 and not run.last.is_file():
            _remove_unstarted_run(run.written + [run.folder / "history.json"], run.created)
        raise
    finally:
        release_freed_memory()
    run.close()
    return run.folder, results


def _open_run(cfg: FitConfig) -> _Run:
    """The run folder, checked and locked: a new run must not land on another's checkpoints or on
    a folder another ``fit`` is using; a resumed run needs its ``last.ckpt`` and a schedule that
    can follow the new ``max_epochs``."""
    rank = env_rank()
    folder = Path(cfg.run_dir) if cfg.run_dir is not None else None
    # folders this run makes (the run folder, and any above it): removed again if it fails at once
    created = [] if folder is None else [d for d in (folder / "checkpoints", folder, *folder.parents)
                                         if not d.exists()]
    if folder is None:
        folder = resolve_run_dir(cfg)   # a new default folder, made here (or a DDP process's inherited one)
        created = [folder / "checkpoints", folder] if rank == 0 else []
    run = _Run(cfg, folder, rank, created=created)
    try:
        if rank == 0:
            run.lock = RunLock(folder).acquire()
        _check_run_folder(run)
    except BaseException:
        run.close()
        if rank == 0:
            _remove_unstarted_run([], run.created)
        raise
    return run


def _resolve_precision(run: _Run) -> FitConfig:
    """``precision="auto"`` made concrete (:func:`convlstm.training.precision.resolve_precision`),
    said in the log and written so into ``config.yaml``; a resumed run keeps its own."""
    cfg = run.cfg
    if cfg.precision != "auto":
        return cfg
    previous = run.folder / "config.yaml"
    if cfg.resume and previous.is_file():
        precision, why = load_config(previous).precision, " (the resumed run's own)"
    else:
        precision, why = resolve_precision("auto", cfg.accelerator)
    run.log(f"convlstm fit: precision {precision}{why}")
    return cfg.replace(precision=precision)


def _check_run_folder(run: _Run) -> None:
    cfg = run.cfg
    if cfg.resume and not run.last.is_file():
        raise FileNotFoundError(f"resume=True but {str(run.last)!r} does not exist; give the --run-dir of an earlier "
                                f"run, or drop --resume to start a new one")
    if not cfg.resume and run.last.is_file() and run.rank == 0:
        raise FileExistsError(f"run_dir {str(run.folder)!r} already holds a run ({run.last}); add --resume to "
                              f"continue it, or give another --run-dir")
    if cfg.resume:
        _check_unfinished(cfg, run)
        previous = run.folder / "config.yaml"
        if previous.is_file():
            old = load_config(previous)
            _check_resumable(cfg, old)
            _check_resumed_batch_size(cfg, old)


def _check_unfinished(cfg: FitConfig, run: _Run) -> None:
    """Refuse to resume a run that has trained its ``max_epochs`` already: Lightning would
    train nothing, and the evaluation would overwrite the run's metrics and pictures."""
    done = trained_epochs(run.last)
    if done < cfg.max_epochs:
        return
    than = "as many as" if done == cfg.max_epochs else "more than"
    raise ParameterError("max_epochs", f"run_dir {str(run.folder)!r} holds a finished run: it has trained {done} "
                                       f"epoch{'s' * (done != 1)}, {than} max_epochs={cfg.max_epochs}, and is left "
                                       f"as it is; to train it further, resume with a larger max_epochs, e.g. "
                                       f"max_epochs={done + cfg.max_epochs}", also=("run_dir",))


def _check_resumable(cfg: FitConfig, old: FitConfig) -> None:
    """Refuse a resume whose ``max_epochs`` the run's learning-rate schedule (``old``, the run's
    own config) cannot follow."""
    if cfg.scheduler == "onecycle" and old.scheduler == "onecycle" and old.max_epochs != cfg.max_epochs:
        raise ParameterError("max_epochs", f"max_epochs={cfg.max_epochs} differs from the run's {old.max_epochs}, "
                                           f"but its onecycle schedule laid out its warm-up and decay over the "
                                           f"steps of {old.max_epochs} epochs when it started and cannot be "
                                           f"stretched; resume with max_epochs={old.max_epochs}, or start a new "
                                           f"run (another run_dir)", also=("run_dir",))


def datamodule_from_config(cfg: FitConfig) -> GridDataModule:
    """The :class:`GridDataModule` of ``cfg`` (its data file, windows, split, scaler, units and
    multi-scale options)."""
    if cfg.data is None:
        raise ParameterError("data", "data is not set: give the grid file to train on (data=FILE, or `data:` in "
                                     "the config file)")
    return GridDataModule(path=cfg.data, key=cfg.key, layout=cfg.layout, reader=cfg.reader,
                          reader_options=cfg.reader_options,
                          time_from_name=cfg.time_from_name, split_by=cfg.split_by, input_steps=cfg.input_steps,
                          output_steps=cfg.output_steps, stride=cfg.stride, gap=cfg.gap, split=cfg.split,
                          scaler=cfg.scaler, fill_nan=cfg.fill_nan, batch_size=cfg.batch_size,
                          num_workers=cfg.num_workers, conversion=cfg.conversion(), nonnegative=cfg.nonnegative,
                          multiscale=MultiScale(cfg.closeness, cfg.period, cfg.trend, cfg.period_interval,
                                                cfg.trend_interval, cfg.steps_per_day, cfg.calendar, cfg.holidays,
                                                cfg.external, cfg.external_data,
                                                model_takes_streams=_takes_streams_and_features(cfg.model)))


def _takes_streams_and_features(model: str) -> bool:
    """Whether the registered ``model`` takes ``streams`` and ``num_features`` (``st-convlstm``):
    only then do ``period``/``trend``/``calendar`` left at ``None`` switch on by themselves."""
    from .module import _factory_params

    params = _factory_params(model)
    return params is not None and {"streams", "num_features"} <= params


def _prepare_data(run: _Run, datamodule: Optional[GridDataModule]) -> GridDataModule:
    """The data module, set up for fitting, and the lines that say how the data is read."""
    cfg = run.cfg
    dm = datamodule if datamodule is not None else datamodule_from_config(cfg)
    if cfg.units and not dm.units:
        dm.units = cfg.units  # kept in the checkpoint: `evaluate` labels the pictures the same
    dm.setup("fit")
    _say_how_the_file_is_read(run, dm)
    if not dm.conversion.is_identity:
        run.log(f"convlstm fit: data in physical units: {dm.conversion.describe()}")
    run.log(f"convlstm fit: forecasts {'are' if dm.nonnegative else 'are not'} clamped at 0 "
            f"({dm.nonnegative_reason})")
    if dm.streams is not None:
        run.log(f"convlstm fit: {dm.multiscale.describe(dm.datasets)}")
    return dm


def _say_how_the_file_is_read(run: _Run, dm: GridDataModule) -> None:
    """The shape read from the data file and what the layout makes of it; a warning when that is
    an unusual grid (:func:`~convlstm.data.readers.layout_doubt`), with a layout that reads it
    better."""
    from ..data.readers import LAYOUT_AXES, describe_layout, layout_doubt, stored_shape

    if dm.path is None or dm.mode != "series":
        return
    if dm.archive is not None or dm.events is not None:
        _say_what_the_events_are(run, dm)
    if dm.archive is not None:
        return
    stored = stored_shape(dm.series.shape, dm.layout)
    key = "" if dm.key is None else f" (key {dm.key})"
    run.log(f"convlstm fit: read {dm.path}{key}: {stored} as layout {dm.layout}: "
            f"{describe_layout(stored, dm.layout)}")
    why, better = layout_doubt(stored, dm.layout)
    if not why:
        return
    if better is not None:
        advice = (f"if the file is stored {LAYOUT_AXES[better]}, give --layout {better}, which reads "
                  f"{describe_layout(stored, better)}")
    else:
        advice = "check that --layout matches the file's axes: " + ", ".join(
            f"{name} {axes}" for name, axes in LAYOUT_AXES.items())
    run.log(f"convlstm fit: warning: --layout {dm.layout} reads {why}, an unusual grid; {advice}")


def _say_what_the_events_are(run: _Run, dm: GridDataModule) -> None:
    """How many files, frames, events and gaps the data has, and how many events and windows
    each part got."""
    what = dm.archive.describe() if dm.archive is not None else (
        f"{dm.path}: {dm.series.shape[0]} frames, {len(dm.events)} events cut by gaps in the time stamps")
    run.log(f"convlstm fit: read {what}")
    parts = []
    for name, (lo, hi) in dm.parts.items():
        if hi <= lo:
            continue
        events = len(_data.event_ranges(dm.events, int(dm.series.shape[0]), lo, hi))
        windows = len(dm.datasets[name]) if name in dm.datasets else 0
        parts.append(f"{name} {events} event{'s' * (events != 1)}, {windows} windows")
    run.log(f"convlstm fit: split by {dm.split_by}: {'; '.join(parts)}; no window crosses an event's edge")


def _build_module(cfg: FitConfig, dm: GridDataModule, model: Optional[nn.Module]) -> ForecastModule:
    return ForecastModule(model if model is not None else cfg.model, model_options=cfg.model_options,
                          input_steps=dm.input_steps, output_steps=dm.output_steps, frame_shape=dm.sample_shape,
                          loss=cfg.loss, loss_options=cfg.loss_options, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          scheduler=cfg.scheduler, scheduled_sampling=cfg.scheduled_sampling,
                          streams=dm.streams, num_features=dm.num_features,
                          start_from=cfg.start_from if model is None else "none", members=cfg.members,
                          member_options=cfg.member_options)


def _guard_memory(run: _Run, dm: GridDataModule, module: ForecastModule, model: Optional[nn.Module]) -> FitConfig:
    """Before any file is written: a batch size that does not fit is lowered (in ``dm`` and in the
    returned config, which ``config.yaml`` records), or the run stops. CPU runs only; others
    are said to be unchecked."""
    from .memory import guard_training_memory

    cfg = run.cfg
    gpu = torch.cuda.is_available() or bool(getattr(getattr(torch.backends, "mps", None), "is_available", bool)())
    unchecked = f"batch size {dm.batch_size} is not checked"
    if dm.num_features:
        run.log(f"convlstm fit: memory check skipped: it does not cover models fed calendar/external features; "
                f"{unchecked}")
        return cfg
    acc = cfg.accelerator
    if acc not in ("cpu", "auto") or (acc == "auto" and gpu):
        run.log(f"convlstm fit: memory check skipped: it covers CPU runs, and this one runs on accelerator={acc!r}"
                f"{' (a GPU is available)' if acc == 'auto' else ''}; {unchecked}")
        return cfg
    d = cfg.devices
    processes = (len(d) if isinstance(d, list) else d if isinstance(d, int) and d > 1 else 1)
    frame = tuple(int(v) for v in dm.sample_shape)
    name = cfg.model if model is None else type(model).__name__
    describe = (f"model {name}, {dm.input_steps} frames in and {dm.output_steps} out of "
                f"{'x'.join(map(str, frame))}, precision {cfg.precision}")
    run.memory = guard_training_memory(module, (dm.input_steps,) + frame, (dm.output_steps,) + frame,
                                       dm.batch_size, precision=cfg.precision, memory_limit=cfg.memory_limit,
                                       device="cpu", processes=processes, describe=describe, log=run.log,
                                       num_workers=dm.num_workers, loaders=2 if dm.has_val else 1)
    if run.memory is not None and run.memory.changed and cfg.resume:
        _refuse_smaller_batch_on_resume(run.memory)
    if run.memory is not None and run.memory.changed:
        dm.batch_size = run.memory.chosen
        return cfg.replace(batch_size=run.memory.chosen)
    return cfg


def _check_resumed_batch_size(cfg: FitConfig, old: FitConfig) -> None:
    """A resumed run keeps the batch size it trained with (``old``, the run's own config: its
    epochs, schedule and optimiser state were made with it): another one is refused."""
    if cfg.batch_size != old.batch_size:
        raise ParameterError("batch_size", f"batch_size={cfg.batch_size} differs from the run's {old.batch_size}: "
                                           f"a resumed run keeps the batch size it trained with; resume without "
                                           f"--batch-size, or start a new run (another --run-dir)")


def _refuse_smaller_batch_on_resume(memory: Any) -> None:
    from .memory import MemoryBudgetError, format_bytes

    raise MemoryBudgetError(
        f"the run trained with batch size {memory.requested}, but a training step at that size is now estimated "
        f"at {format_bytes(memory.estimate_requested)}, over the budget of {format_bytes(memory.budget)} "
        f"({memory.budget_source}); a resumed run keeps its batch size, so it stops here. Free some memory and "
        f"resume, resume with --memory-limit off to keep batch size {memory.requested} anyway, or start a new run "
        f"with --batch-size {memory.chosen}")


@dataclass
class _ShareBatchSize:
    """Under DDP, once the process group exists (:class:`~convlstm.training.distributed.ShareAcrossRanks`,
    Lightning's ``setup``), called on every rank with the batch size they share (``shared``, the
    smallest that the ranks' memory checks allow: ``per_rank``): a resumed run whose batch size
    would change stops on every rank; otherwise rank 0 records the shared batch size in
    ``config.yaml`` and ``memory.json``. Plain data, no open files: ``ddp_spawn`` pickles the
    callbacks into its processes."""
    cfg: FitConfig
    folder: Path
    memory: Any  # the memory check's BatchChoice, None when unchecked

    def __call__(self, shared: int, per_rank: List[int]) -> None:
        from .distributed import world
        from .memory import MemoryBudgetError

        cfg = self.cfg
        if shared != cfg.batch_size and cfg.resume:
            lowest = min(range(len(per_rank)), key=per_rank.__getitem__)
            raise MemoryBudgetError(
                f"the run trained with batch size {cfg.batch_size}, but the memory check of rank {lowest} allows "
                f"only {shared} (each rank's: {per_rank}); a resumed run keeps its batch size, so it stops here. "
                f"Free some memory on that machine and resume, resume with --memory-limit off to keep batch size "
                f"{cfg.batch_size} anyway, or start a new run with --batch-size {shared}")
        if world()[0] != 0:
            return
        if shared != cfg.batch_size:
            save_config(cfg.replace(run_dir=str(self.folder), batch_size=shared), self.folder / "config.yaml")
        if self.memory is not None:
            write_json(self.folder / "memory.json", dict(self.memory.to_dict(), batch_size=shared,
                                                         batch_size_per_rank=list(per_rank), ranks=len(per_rank)))


def _write_run_start(run: _Run) -> None:
    """``config.yaml`` and ``memory.json`` (rank 0)."""
    if run.rank != 0:
        return
    run.folder.mkdir(parents=True, exist_ok=True)
    run.written.append(save_config(run.cfg.replace(run_dir=str(run.folder)), run.folder / "config.yaml"))
    if run.memory is not None:
        write_json(run.folder / "memory.json", run.memory.to_dict())
        run.written.append(run.folder / "memory.json")


def _callbacks(run: _Run, dm: GridDataModule, history: HistoryCallback) -> List[Any]:
    """What the ranks of a distributed run share, checkpoints (best and last), the history, the random
    state, early stopping and the bar."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    cfg = run.cfg
    monitor = "val_loss" if dm.has_val else "train_loss_epoch"
    cbs = [ShareAcrossRanks(_ShareBatchSize(cfg, run.folder, run.memory)),
           ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor=monitor, mode="min", save_top_k=1,
                           save_last=True, auto_insert_metric_name=False, enable_version_counter=False),
           history, RandomStateCallback()]
    if cfg.patience is not None:
        cbs.append(EarlyStopping(monitor=monitor, mode="min", patience=cfg.patience))
    if cfg.progress:
        cbs.append(TQDMProgressBar(refresh_rate=1))
    return cbs


def _trainer(cfg: FitConfig, dm: GridDataModule, run_dir: Path, callbacks: List[Any]) -> Any:
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return pl.Trainer(
            max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
            strategy=cfg.strategy, precision=cfg.precision, deterministic=cfg.deterministic,
            gradient_clip_val=cfg.gradient_clip, logger=False, enable_progress_bar=cfg.progress,
            enable_model_summary=False, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run_dir), limit_train_batches=cfg.limit_train_batches,
            limit_val_batches=cfg.limit_val_batches if dm.has_val else 0, num_sanity_val_steps=0,
            log_every_n_steps=1)
    except MisconfigurationException as exc:
        raise ParameterError("accelerator", f"Lightning cannot run with accelerator={cfg.accelerator!r}, "
                                            f"devices={cfg.devices!r}, num_nodes={cfg.num_nodes}, "
                                            f"strategy={cfg.strategy!r}, precision={cfg.precision!r} here: "
                                            f"{exc}", also=("devices", "num_nodes", "strategy", "precision"))


def _train(run: _Run, dm: GridDataModule, module: ForecastModule, callbacks: List[Any]) -> Any:
    """Lightning's fit, with the run folder announced to DDP's other processes."""
    os.environ[RUN_DIR_ENV] = str(run.folder)
    try:
        trainer = _trainer(run.cfg, dm, run.folder, callbacks)
        trainer.fit(module, datamodule=dm, ckpt_path=str(run.last) if run.cfg.resume else None, weights_only=True)
    finally:
        if run.rank == 0:
            os.environ.pop(RUN_DIR_ENV, None)
    return trainer


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


def _evaluate_after_fit(run: _Run, dm: GridDataModule, model: Optional[nn.Module],
                        history: HistoryCallback) -> Optional[Dict[str, Any]]:
    """The validation check (is a baseline ahead of the model?), then the test scores and pictures;
    ``metrics.json`` holds both."""
    from .runs import find_checkpoint, load_module

    cfg = run.cfg
    dm.setup("test")
    best = find_checkpoint(run.folder)
    module, _ = load_module(best, model=model)    # the best model, blended, then checked on validation
    if not len(dm.datasets.get("val") or ()):
        print(f"convlstm fit: {_no_validation_line(dm, cfg.split, members=bool(getattr(module, 'members', 0)))}")
    blend = _calibrate_blend(run, dm, module, best)
    spread = _calibrate_spread(dm, module, best)
    check = _validation_check(run, dm, module)
    if dm.datasets.get("test") is None:
        print(f"convlstm: no test part (split={cfg.split}); skipping evaluation")
        return None
    results = evaluate(run.folder, datamodule=dm, model=model, thresholds=cfg.thresholds, units=cfg.units,
                       samples=cfg.samples, history=history.history, baselines=cfg.baselines,
                       fss_scales=cfg.fss_scales, extrapolation_method=cfg.extrapolation_method)
    if check is not None:
        results["validation"] = check
    if blend is not None:
        results["blend"] = blend
    if spread is not None:
        results["spread_calibration"] = spread
    if check is not None or blend is not None or spread is not None:
        write_metrics(results, run.folder)
    return results


def _no_validation_line(dm: GridDataModule, split: Any, members: bool = False) -> str:
    """What a run without validation windows goes without, and the frames a validation part needs
    to hold one window (``input_steps + gap + output_steps`` consecutive frames)."""
    need = dm.input_steps + dm.gap + dm.output_steps
    what = "not blended toward its start, not compared with the baselines"
    what += ", and the members' spread is not scaled" if members else ""
    return (f"no validation window (split={list(split) if split is not None else split}): the forecast is {what}; "
            f"a validation part of at least {need} consecutive frames (input_steps + gap + output_steps) holds "
            f"one window, and more make both steadier")


def _calibrate_blend(run: _Run, dm: GridDataModule, module: ForecastModule, path: Path) -> Optional[Dict[str, Any]]:
    """:func:`~convlstm.training.blend_calibration.calibrate_blend` on the best checkpoint's
    ``module`` (read from ``path``, which then keeps the weights); a line in the log says what they
    are and what they did."""
    from .blend_calibration import blend_summary_line, calibrate_blend, save_state

    if not run.cfg.calibrate_blend:
        return None
    summary = calibrate_blend(module, dm)
    if summary is None:
        return None
    if any(v != 1.0 for row in summary["weights"] for v in row):
        save_state(path, module)
    print(f"convlstm fit: {blend_summary_line(summary)}")
    return summary


def _calibrate_spread(dm: GridDataModule, module: ForecastModule, path: Path) -> Optional[Dict[str, Any]]:
    """:func:`~convlstm.training.spread_calibration.calibrate_spread` for a members run's best
    checkpoint (``path`` keeps the factors); a line in the log says what they are."""
    from .blend_calibration import save_state
    from .spread_calibration import calibrate_spread, spread_summary_line

    summary = calibrate_spread(module, dm)
    if summary is None:
        return None
    save_state(path, module)
    print(f"convlstm fit: {spread_summary_line(summary)}")
    return summary


def _validation_check(run: _Run, dm: GridDataModule, module: ForecastModule) -> Optional[Dict[str, Any]]:
    """:func:`~convlstm.training.validation_check.compare_on_validation` for the best checkpoint's
    ``module``; prints a line for each baseline ahead of the model, and the options that usually help."""
    from .validation_check import advice, compare_on_validation

    cfg = run.cfg
    check = compare_on_validation(module, dm, cfg.baselines, extrapolation_method=cfg.extrapolation_method,
                                  clamp=bool(dm.nonnegative))
    if check is None:
        return None
    lines = advice(check["baselines_ahead"], cfg.units or dm.units)
    for line in lines:
        print(f"convlstm fit: {line}")
    if not lines:
        from ..ensemble_baselines import split_baselines

        names = split_baselines(cfg.baselines)[0]   # the ones compared: ensembles are scored on the test part
        if not names:
            return check
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        print(f"convlstm fit: on the validation part the model is ahead of {listed} in MSE and MAE")
    return check


# ---------------------------------------------------------------------------------- Lightning's output
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
