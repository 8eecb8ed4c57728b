"""Training on PyTorch Lightning: the :class:`ForecastModule` (model, loss, optimiser), the
:class:`GridDataModule` (windows, splits, scaler), and the functions behind the command line:
:func:`fit`, :func:`evaluate`, :func:`predict`, :func:`demo`.

Example::

    >>> from convlstm.training import fit, evaluate, predict
    >>> run_dir = fit(data="flow.npy", layout="THWC", input_steps=6, output_steps=3, max_epochs=10)
    >>> metrics = evaluate(run_dir)                    # metrics.json, forecast.png, ...
    >>> predict(run_dir, "flow.npy", "forecast.nc")    # the next 3 frames after the series
"""
from .config import FitConfig, load_config, save_config
from .datamodule import GridDataModule, SequenceDataset
from .module import AtomicCheckpointIO, ForecastModule, HistoryCallback, build_model, load_checkpoint
from .api import DEMO_SETTINGS, demo, evaluate, find_checkpoint, fit, format_results, load_module, predict
from .memory import MemoryBudgetError, available_memory, choose_batch_size, estimate_training_memory

__all__ = [
    "FitConfig", "load_config", "save_config", "GridDataModule", "SequenceDataset", "ForecastModule",
    "HistoryCallback", "AtomicCheckpointIO", "build_model", "load_checkpoint", "fit", "evaluate", "predict",
    "demo", "find_checkpoint", "load_module", "format_results", "DEMO_SETTINGS",
    "MemoryBudgetError", "estimate_training_memory", "choose_batch_size", "available_memory",
]
