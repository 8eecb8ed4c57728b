"""Training on PyTorch Lightning: the :class:`ForecastModule` (model, loss, optimiser), the
:class:`GridDataModule` (windows, splits, scaler), and the functions behind the command line:
:func:`fit`, :func:`evaluate`, :func:`predict`, :func:`demo`.

Everything but the options (:class:`FitConfig`) needs the ``train`` extra
(:func:`convlstm._extras.install_hint`: Lightning, matplotlib, Pillow, PyYAML, h5netcdf); its names are
imported on first use, so that ``convlstm --help`` and the configs work without it, and a missing
package is reported as an ``ImportError`` that says what to install.

Example::

    >>> from convlstm.training import fit, evaluate, predict
    >>> run_dir = fit(data="flow.npy", layout="THWC", input_steps=6, output_steps=3, max_epochs=10)
    >>> metrics = evaluate(run_dir)                    # metrics.json, forecast.png, ...
    >>> predict(run_dir, "flow.npy", "forecast.nc")    # the next 3 frames after the series
"""
import importlib

from .._extras import install_hint
from .config import (FitConfig, ParameterError, bundled_configs, load_config, load_run_config,
                     read_bundled_config, save_config)

#: The modules the ``train`` extra installs (top-level import names).
TRAIN_EXTRA_MODULES = ("lightning", "lightning_fabric", "pytorch_lightning", "matplotlib", "PIL", "yaml",
                       "h5netcdf")
TRAIN_EXTRA_INSTALL = install_hint("train")

# name -> the submodule that defines it (imported on first use: they need the train extra)
_LAZY = {
    "GridDataModule": "datamodule", "SequenceDataset": "datamodule",
    "AtomicCheckpointIO": "module", "ForecastModule": "module", "HistoryCallback": "module",
    "build_model": "module", "load_checkpoint": "module",
    "DEMO_SETTINGS": "moving_mnist_demo", "demo": "moving_mnist_demo", "evaluate": "evaluation",
    "find_checkpoint": "runs", "fit": "fitting", "format_results": "evaluation", "load_module": "runs",
    "predict": "prediction",
    "MemoryBudgetError": "memory", "available_memory": "memory", "choose_batch_size": "memory",
    "estimate_training_memory": "memory",
}


def missing_train_extra(exc: ImportError, what: str) -> ImportError:
    """``exc`` (a failed import) as an ``ImportError`` that names the package missing and says
    how to install the train extra (:data:`TRAIN_EXTRA_INSTALL`) when that package belongs to the train extra; ``exc``
    itself otherwise."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in TRAIN_EXTRA_MODULES:
        return exc
    err = ImportError(f"{what} needs the train extra ({name} is not installed): {TRAIN_EXTRA_INSTALL}")
    err.name = exc.name
    return err


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name):
    submodule = _LAZY.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{submodule}")
    except ImportError as exc:
        raise missing_train_extra(exc, f"convlstm.training.{name}") from exc
    return getattr(module, name)


__all__ = [
    "FitConfig", "ParameterError", "load_config", "save_config", "load_run_config", "bundled_configs",
    "read_bundled_config", "GridDataModule", "SequenceDataset", "ForecastModule",
    "HistoryCallback", "AtomicCheckpointIO", "build_model", "load_checkpoint", "fit", "evaluate", "predict",
    "demo", "find_checkpoint", "load_module", "format_results", "DEMO_SETTINGS",
    "MemoryBudgetError", "estimate_training_memory", "choose_batch_size", "available_memory",
    "TRAIN_EXTRA_MODULES", "TRAIN_EXTRA_INSTALL",
]
