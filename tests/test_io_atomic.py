"""Atomic writes (:mod:`convlstm._io`) under failure: a writer that raises, a disk sync or a rename
that fails, and a writer process killed with SIGKILL in the middle of a large file.

The truth each test checks is the file system itself: the previous file's bytes, and the list of
files in the folder.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convlstm import _io

SRC = Path(__file__).resolve().parents[1] / "src"
OLD = b"the previous, complete file\n" * 100


def _folder(tmp_path):
    target = tmp_path / "out" / "data.bin"
    target.parent.mkdir()
    target.write_bytes(OLD)
    return target


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_an_exception_inside_the_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = _folder(tmp_path)
    with pytest.raises(RuntimeError, match="injected"):
        with _io.atomic_write(target, "wb") as fh:
            fh.write(b"\0" * 2**20)  # a megabyte of the new content is already on disk
            fh.flush()
            assert len(_temps(target.parent)) == 1  # it went to a temporary file beside the target
            raise RuntimeError("injected")
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_a_library_writer_failing_half_way_keeps_the_previous_file(tmp_path):
    """``write_json`` meets an object json cannot encode after it has written part of the file."""
    target = tmp_path / "metrics.json"
    target.write_text('{"mse": 1.0}\n')
    with pytest.raises(TypeError, match="not JSON serializable"):
        _io.write_json(target, {"mse": 2.0, "bad": object()})
    assert json.loads(target.read_text()) == {"mse": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failing_sync_or_rename_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch, failing):
    target = _folder(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(_io.os, failing, fail)
    with pytest.raises(OSError, match="injected"):
        with _io.atomic_write(target, "wb") as fh:
            fh.write(b"new content")
    monkeypatch.undo()
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_an_error_writing_the_temporary_file_names_the_file_asked_for(tmp_path, monkeypatch):
    """A full disk (a write that names no file) or a folder that is not writable (the temporary
    file cannot be made) is reported about the target, the path the caller knows."""
    target = _folder(tmp_path)
    with pytest.raises(OSError) as info:
        with _io.atomic_write(target, "wb"):
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)

    def refuse(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied (injected)", os.path.join(dir, prefix + suffix))

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        _io.write_text(target, "new")
    assert info.value.filename == str(target) and "injected" in str(info.value)
    monkeypatch.undo()
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


_KILLED_WRITER = r"""
import sys, time
from convlstm._io import atomic_write
target, marker = sys.argv[1], sys.argv[2]
chunk = b"\xab" * 2**20
with atomic_write(target, "wb") as fh:
    for i in range(64):                      # at most 64 MiB, slowly, so the kill lands mid-write
        fh.write(chunk)
        fh.flush()
        if i == 3:
            open(marker, "w").close()        # 4 MiB of the new file written: kill me now
        time.sleep(0.05)
    time.sleep(60)                           # never reached in the test: it is killed first
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_a_writer_killed_mid_write_leaves_the_previous_file_intact(tmp_path):
    """SIGKILL runs no cleanup: the target keeps its previous bytes, and the temporary file, a
    hidden ``.<name>.<random>.tmp`` beside it, is left behind with the partial content (the library
    does not remove other processes' temporary files: one may be a live writer's). A later write
    succeeds beside it and leaves it alone."""
    target = _folder(tmp_path)
    marker = tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, f"the writer exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == OLD
    stale = _temps(target.parent)
    assert len(stale) == 1 and stale[0].startswith(".data.bin.")
    size = (target.parent / stale[0]).stat().st_size
    assert 4 * 2**20 <= size < 64 * 2**20  # killed part way through, after the marker
    _io.write_text(target, "after the crash\n")
    assert target.read_text() == "after the crash\n"
    assert _temps(target.parent) == stale
