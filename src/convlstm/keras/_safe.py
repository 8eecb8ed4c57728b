"""Reading untrusted Keras files defensively: JSON with a nesting limit, ``.keras`` zip archives
checked for path traversal and zip bombs, HDF5 files opened with clear errors.

Nothing here executes anything a file says: configs are parsed as plain JSON (no pickle, no
``eval``), and only the few members a Keras archive is known to hold are read, into memory, with
their sizes checked against the archive's own size before and while they are read.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from typing import Any, Dict, Optional

__all__ = ["KerasFileError", "parse_json", "read_keras_archive", "open_h5", "MAX_JSON_DEPTH"]

#: The deepest nesting of ``[`` / ``{`` accepted in a config (real Keras configs stay under ~30).
MAX_JSON_DEPTH = 100
#: The largest config JSON accepted, in bytes.
MAX_JSON_BYTES = 64 * 2 ** 20
#: A member may be at most this many times larger than its compressed size (plus 1 MiB).
MAX_COMPRESSION_RATIO = 200
#: The largest uncompressed total accepted from one archive.
MAX_ARCHIVE_TOTAL = 32 * 2 ** 30


class KerasFileError(ValueError):
    """A Keras file that cannot be read safely or does not describe a supported model."""


def _check_depth(text: str, what: str, max_depth: int) -> None:
    """Reject JSON nested deeper than ``max_depth`` before ``json.loads`` recurses into it."""
    depth = 0
    in_string = False
    escape = False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise KerasFileError(f"{what}: the JSON nests deeper than {max_depth} levels; "
                                     "refusing it as malformed or hostile")
        elif ch in "]}":
            depth -= 1


def parse_json(data, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``data`` (str or bytes) as JSON with size and depth limits.

    Raises:
        KerasFileError: not UTF-8, too large, nested deeper than ``max_depth``, or not valid JSON.
    """
    if isinstance(data, (bytes, bytearray)):
        if len(data) > MAX_JSON_BYTES:
            raise KerasFileError(f"{what}: {len(data)} bytes of JSON is more than the {MAX_JSON_BYTES} accepted")
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise KerasFileError(f"{what}: not UTF-8 text ({err})") from None
    if not isinstance(data, str):
        raise KerasFileError(f"{what}: expected JSON text, got {type(data).__name__}")
    if len(data) > MAX_JSON_BYTES:
        raise KerasFileError(f"{what}: {len(data)} characters of JSON is more than the {MAX_JSON_BYTES} accepted")
    _check_depth(data, what, max_depth)

    def no_constants(name):
        raise KerasFileError(f"{what}: the JSON holds {name}, which is not valid JSON")

    try:
        return json.loads(data, parse_constant=no_constants)
    except json.JSONDecodeError as err:
        raise KerasFileError(f"{what}: malformed JSON ({err})") from None
    except RecursionError:
        raise KerasFileError(f"{what}: the JSON nests too deeply") from None


def _check_member_name(name: str, archive: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
            or "\x00" in name):
        raise KerasFileError(f"{archive}: the archive holds a member with an unsafe path {name!r} "
                             "(absolute, '..' or NUL); refusing to read it")


def read_keras_archive(path, *, needed=("config.json", "model.weights.h5"),
                       optional=("metadata.json",)) -> Dict[str, bytes]:
    """Read the members of a Keras 3 ``.keras`` zip archive into memory, after checks.

    Every member name is checked (no absolute paths, no ``..``); each member's declared size is
    checked against its compressed size and the archive's size (zip bombs), and the bytes actually
    read may not exceed the declared size.

    Returns:
        ``{member name: bytes}`` for the ``needed`` and present ``optional`` members.

    Raises:
        KerasFileError: not a zip, truncated, unsafe names, bomb-like sizes, missing members.
    """
    path = os.fspath(path)
    try:
        archive_size = os.path.getsize(path)
        zf = zipfile.ZipFile(path, "r")
    except zipfile.BadZipFile as err:
        raise KerasFileError(f"{path}: not a valid .keras (zip) archive, or a truncated one ({err})") from None
    except OSError as err:
        raise KerasFileError(f"{path}: cannot open ({err})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > 10000:
            raise KerasFileError(f"{path}: the archive lists {len(infos)} members; refusing it")
        total = 0
        for info in infos:
            _check_member_name(info.filename, path)
            total += info.file_size
            limit = info.compress_size * MAX_COMPRESSION_RATIO + 2 ** 20
            if info.file_size > limit or info.compress_size > archive_size:
                raise KerasFileError(
                    f"{path}: member {info.filename!r} declares {info.file_size} bytes from {info.compress_size} "
                    f"compressed bytes in a {archive_size}-byte archive; refusing it as a zip bomb or corrupt")
        if total > MAX_ARCHIVE_TOTAL:
            raise KerasFileError(f"{path}: the members declare {total} bytes in all; refusing it as a zip bomb")
        names = {info.filename: info for info in infos}
        out: Dict[str, bytes] = {}
        for name in tuple(needed) + tuple(optional):
            info = names.get(name)
            if info is None:
                if name in needed:
                    raise KerasFileError(f"{path}: the archive has no {name!r} (members: "
                                         f"{', '.join(sorted(names)) or 'none'}); is it a Keras 3 .keras file?")
                continue
            try:
                with zf.open(info) as fh:
                    data = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as err:
                raise KerasFileError(f"{path}: member {name!r} cannot be read: the archive is truncated or "
                                     f"corrupt ({err})") from None
            except Exception as err:  # zlib.error and friends
                raise KerasFileError(f"{path}: member {name!r} cannot be read ({type(err).__name__}: {err})") from None
            if len(data) != info.file_size:
                raise KerasFileError(f"{path}: member {name!r} holds {len(data)} bytes but declares "
                                     f"{info.file_size}; refusing it")
            out[name] = data
        return out


@contextlib.contextmanager
def reading(source, *, name=None, h5: bool = True):
    """Errors inside the block name the file: a :class:`KerasFileError` that does not mention
    ``name`` (default ``source``) gets ``source`` as a prefix; with ``h5``, any error a damaged HDF5
    file makes h5py raise while it is walked (``OSError``, ``KeyError``, ``RuntimeError``, ...)
    becomes a :class:`KerasFileError` naming ``source``."""
    caught = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError) if h5 else ()
    try:
        yield
    except KerasFileError as err:
        if str(name if name is not None else source) in str(err):
            raise
        raise KerasFileError(f"{source}: {err}") from None
    except caught as err:
        raise KerasFileError(f"{source}: cannot read it ({type(err).__name__}: {err}); the file may be truncated "
                             "or corrupt") from None


def open_h5(source, what: Optional[str] = None):
    """Open an HDF5 file (a path or bytes) read-only, with a clear error for anything else."""
    import h5py

    what = what or (os.fspath(source) if not isinstance(source, (bytes, bytearray)) else "HDF5 data")
    try:
        if isinstance(source, (bytes, bytearray)):
            return h5py.File(io.BytesIO(bytes(source)), "r")
        return h5py.File(os.fspath(source), "r")
    except (OSError, ValueError) as err:
        raise KerasFileError(f"{what}: not a readable HDF5 file, or a truncated one ({err})") from None
