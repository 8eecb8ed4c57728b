"""The run folder: one fit at a time (a lock), default names that never collide, a resumed run
that keeps its batch size, and a demo that never deletes another run's checkpoints."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convlstm.training import FitConfig, demo, fit, load_config
from convlstm.training.memory import MemoryBudgetError
from convlstm.training.runs import RunLock, resolve_run_dir

pytestmark = pytest.mark.usefixtures("one_thread")


def series(n=40, size=12):
    rng = np.random.default_rng(0)
    return (rng.random((n, size, size, 1)) * 10).astype(np.float32)


def tiny(tmp, **kw):
    base = dict(data=str(tmp / "grid.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
                progress=False, accelerator="cpu", devices=1, split=[0.6, 0.2, 0.2], evaluate=False,
                model="keras-nextframe", model_options={"filters": [2], "kernel_sizes": [3]})
    base.update(kw)
    return FitConfig(**base)


def test_a_second_fit_on_a_locked_folder_is_refused_at_once(tmp_path):
    np.save(tmp_path / "grid.npy", series())
    folder = tmp_path / "run"
    with RunLock(folder):            # another fit training in this folder
        (folder / "config.yaml").write_text("the other run's file\n")
        t0 = time.perf_counter()
        with pytest.raises(FileExistsError, match=r"is in use by another convlstm fit \(process \d+\)"):
            fit(tiny(tmp_path, run_dir=str(folder)))
        assert time.perf_counter() - t0 < 1.0
        assert (folder / "config.yaml").read_text() == "the other run's file\n"   # nothing of the other's touched
        assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.yaml"]
    assert not (folder / ".lock").exists()


def test_the_cli_refuses_a_folder_locked_by_another_process(tmp_path):
    """The lock is held by this test process; ``convlstm fit`` in a second process exits 2 with one line."""
    np.save(tmp_path / "grid.npy", series())
    folder = tmp_path / "run"
    with RunLock(folder):
        cmd = [sys.executable, "-m", "convlstm.cli", "fit", str(tmp_path / "grid.npy"), "--input-steps", "3",
               "--output-steps", "2", "--max-epochs", "1", "--run-dir", str(folder), "--no-progress"]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"is in use by another convlstm fit (process {os.getpid()})" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (folder / "checkpoints").exists()


def test_a_finished_fit_releases_its_folder(tmp_path):
    np.save(tmp_path / "grid.npy", series())
    run = fit(tiny(tmp_path, run_dir=str(tmp_path / "run")))
    assert not (run / ".lock").exists()
    with RunLock(run):               # free again
        pass


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    """Two runs started in the same second get two folders (the name is reserved with mkdir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVLSTM_RUN_DIR", raising=False)
    first, second = resolve_run_dir(FitConfig()), resolve_run_dir(FitConfig())
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.startswith(first.name)


def test_resume_keeps_the_batch_size_or_stops(tmp_path, capsys):
    """A memory limit that now binds must not shrink a resumed run's batch size behind its back."""
    np.save(tmp_path / "grid.npy", series())
    run = fit(tiny(tmp_path, run_dir=str(tmp_path / "run")))
    memory = json.loads((run / "memory.json").read_text())
    est = memory["estimate"]
    limit = int(est["fixed_bytes"] + est["per_sample_bytes"] * 5)     # batch 4 fits, 8 does not
    config_before = (run / "config.yaml").read_text()
    with pytest.raises(MemoryBudgetError, match="trained with batch size 8.*keeps its batch size"):
        fit(tiny(tmp_path, run_dir=str(run), resume=True, max_epochs=2, memory_limit=limit))
    assert (run / "config.yaml").read_text() == config_before
    with pytest.raises(ValueError, match="batch_size=4 differs from the run's 8"):
        fit(tiny(tmp_path, run_dir=str(run), resume=True, max_epochs=2, batch_size=4))
    assert load_config(run / "config.yaml").batch_size == 8


def test_demo_refuses_a_folder_holding_another_run(tmp_path):
    np.save(tmp_path / "grid.npy", series())
    run = fit(tiny(tmp_path, run_dir=str(tmp_path / "run")))
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    with pytest.raises(FileExistsError, match="holds a run that `convlstm demo` did not make"):
        demo(run, settings={"num_sequences": 20, "max_epochs": 1}, progress=False, verbose=False)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ckpts
