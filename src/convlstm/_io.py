"""Writing files so that a crash never leaves a half-written file behind.

Every file the library writes (checkpoints, metrics, pictures, forecasts, converted models) goes
through :func:`atomic_write` / :func:`atomic_path`: the content is written to a temporary file in
the same folder, flushed to disk, then renamed over the target in one step (``os.replace``).
If the writer raises, or the sync or the rename fails, the temporary file is removed and the
target keeps its previous content. A process killed outright (SIGKILL, power loss) runs no cleanup:
the target is still intact, and a hidden ``.<name>.<random>.tmp`` may remain beside it; it is not
removed automatically (it could belong to a live writer) and may be deleted by hand
(``tests/test_io_atomic.py``).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["atomic_path", "atomic_write", "write_json", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _about(path: Path, exc: OSError) -> OSError:
    """``exc`` (an error writing the temporary file of ``path``, or writing without naming a
    file, as on a full disk) as the same error about ``path``, the file the caller asked for."""
    return OSError(exc.errno, exc.strerror, str(path))  # of the errno's subclass: PermissionError, ...


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    Use it for writers that want a file name (``np.save``, ``fig.savefig``, ``h5py.File``)::

        with atomic_path("out/forecast.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # the folder is not writable, the disk is full, ...
        if exc.errno is None:
            raise
        raise _about(path, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno is None or exc.filename not in (None, str(tmp_path)):  # another file the writer used
            raise
        raise _about(path, exc) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **kwargs: Any):
    """``open()`` for writing, atomically: yields a file object; the target appears complete or
    not at all."""
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_write is for writing a whole file, not mode {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh


def write_json(path: PathLike, obj: Any, **kwargs: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, **kwargs)
        fh.write("\n")


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` atomically (UTF-8)."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
