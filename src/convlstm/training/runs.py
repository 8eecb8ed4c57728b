"""Run folders and checkpoints: where a run lives, how it is found again, and how its model is
rebuilt.

A run folder (``runs/fit-YYYYMMDD-HHMMSS`` by default) holds ``config.yaml``,
``checkpoints/best.ckpt`` and ``last.ckpt``, ``history.json``, ``memory.json`` and, after
evaluation, the metrics and pictures. :func:`find_checkpoint` turns a run folder or a ``.ckpt``
file into the checkpoint to read; :func:`load_module` rebuilds the model from it (weights only:
nothing in the file is executed).
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn as nn

from .config import FitConfig, load_config
from .module import ForecastModule, load_checkpoint

__all__ = ["find_checkpoint", "load_module", "run_dir_of", "run_scoring_options", "resolve_run_dir", "env_rank",
           "torch_device", "trained_epochs", "is_run", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]
#: Environment variable through which DDP's re-launched processes learn the first one's run folder.
RUN_DIR_ENV = "CONVLSTM_RUN_DIR"


def env_rank() -> int:
    """This process's global rank as the launcher tells it (0 when not launched by DDP)."""
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    return int(os.environ.get("NODE_RANK", 0)) * 1000 + int(os.environ.get("LOCAL_RANK", 0))


def resolve_run_dir(cfg: FitConfig) -> Path:
    """The run folder of ``cfg``: its ``run_dir``, the first DDP process's (for the others), or a
    new ``runs/fit-YYYYMMDD-HHMMSS`` (``-2``, ``-3``... when that name is taken, so that two runs
    started in the same second get two folders; see :func:`reserve_new_folder`)."""
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    # DDP launchers re-run the command in each process; they inherit the first process's choice
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and env_rank() != 0:
        return Path(inherited)
    default = Path("runs") / _dt.datetime.now().strftime("fit-%Y%m%d-%H%M%S")
    return reserve_new_folder(default) if env_rank() == 0 else default


def reserve_new_folder(path: Path) -> Path:
    """Create ``path``, or ``path-2``, ``path-3``... whichever does not exist yet, and return it.
    ``mkdir`` without ``exist_ok`` is atomic: two processes never get the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name next to {str(path)!r}; give --run-dir")


class RunLock:
    """An exclusive lock on a run folder, held while ``fit`` trains and scores in it: a second
    ``fit`` on the same folder is refused at once instead of mixing its files with the first's.

    The lock is ``flock`` on ``FOLDER/.lock`` (which holds the owner's process id): the system
    releases it when the process ends, however it ends, so a crashed run leaves no stale lock.
    Where ``fcntl`` does not exist (Windows) no lock is taken.

    Example::

        >>> with RunLock(Path("runs/flow")):
        ...     train()
    """

    FILE = ".lock"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._fh: Any = None

    @property
    def path(self) -> Path:
        return self.folder / self.FILE

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            raise FileExistsError(f"run_dir {str(self.folder)!r} is in use by another convlstm fit (process "
                                  f"{owner}); wait for it to finish, or give another --run-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Unlock and remove the lock file (only the holder ever removes it)."""
        if self._fh is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        self._fh.close()
        self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


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


def is_run(path: PathLike) -> bool:
    """Whether ``path`` is what :func:`find_checkpoint` takes: a ``.ckpt`` file, or a run folder
    that holds a checkpoint."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() == ".ckpt"
    try:
        return p.is_dir() and find_checkpoint(p).is_file()
    except FileNotFoundError:
        return False


def run_dir_of(ckpt: Path) -> Path:
    """The run folder a checkpoint file belongs to."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def run_scoring_options(ckpt_path: Path) -> FitConfig:
    """The options of the run that holds ``ckpt_path`` (its ``config.yaml``: thresholds,
    baselines, FSS scales, extrapolation method as ``fit`` scored it), else
    :class:`FitConfig`'s defaults."""
    config = run_dir_of(ckpt_path) / "config.yaml"
    return load_config(config) if config.is_file() else FitConfig()


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


def trained_epochs(checkpoint: PathLike) -> int:
    """The epochs a Lightning checkpoint has completed (its fit loop's count; a checkpoint written
    at the end of epoch ``e``, counted from 0, has completed ``e + 1``)."""
    ckpt = load_checkpoint(checkpoint)
    progress = (((ckpt.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}).get("total") or {}
    return int(progress["processed"]) if "processed" in progress else int(ckpt.get("epoch", -1)) + 1


def data_state(ckpt: Dict[str, Any], ckpt_path: Path, what: str = "") -> Dict[str, Any]:
    """The checkpoint's data state (the :class:`GridDataModule`'s: scaler, split, units...);
    ``ValueError`` when it has none."""
    state = ckpt.get("GridDataModule") or {}
    if not state:
        raise ValueError(f"checkpoint {str(ckpt_path)!r} has no data state (GridDataModule){what}")
    return state


def torch_device(device: Optional[str]) -> torch.device:
    """``device``, or CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_nonnegative_option(nonnegative: Any) -> None:
    """``nonnegative`` of evaluate/predict: True, False or None."""
    if nonnegative is not None and not isinstance(nonnegative, bool):
        raise ValueError(f"nonnegative must be True, False or None (as in training), got {nonnegative!r}")
