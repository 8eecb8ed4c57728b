"""Distributed fits agree: two CPU processes (gloo), started as torchrun starts them, train with
one batch size and one ConvLSTM path decided on rank 0, and each restores its own random states
on resume (convlstm.training.distributed, RandomStateCallback)."""
import json
import math
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm.training import ForecastModule
from convlstm.training import memory as mem
from convlstm.training.distributed import agree_on_batch_size, from_rank0, gather_from_all, world

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch built without torch.distributed's gloo backend")

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BATCH = 16
FRAME = (16, 16, 1)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe():
    """The training step's estimate as fit's memory check makes it for the batch run's model."""
    module = ForecastModule("keras-nextframe", model_options={"filters": [4], "kernel_sizes": [3]}, input_steps=4,
                            output_steps=2, frame_shape=list(FRAME))
    return mem.TrainingMemoryProbe(module, (4,) + FRAME, (2,) + FRAME)


def _budget(available):
    """A rank's budget by hand: its available memory shared by the node's 2 processes, times HEADROOM."""
    return int((available // 2) * mem.HEADROOM)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Run tests/_ddp_worker.py as ranks 0 and 1; their records, the expected batch size and the
    run's folder."""
    out = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    np.save(out / "grid.npy", rng.random((60,) + FRAME).astype(np.float32))
    probe = _probe()
    # rank 0 has room for the requested batch; rank 1's budget falls between batch sizes 3 and 4
    at3, at4, at16 = probe(3), probe(4), probe(BATCH)
    assert at3 < at4 < at16
    available = [4 * math.ceil(at16 / mem.HEADROOM), 2 * math.ceil((at3 + at4) / 2 / mem.HEADROOM)]
    budgets = [_budget(a) for a in available]
    own = [BATCH if at16 <= budgets[0] else None, 3 if at3 <= budgets[1] < at4 else None]
    assert own == [BATCH, 3]  # by hand: what each rank alone would take
    spec = {"data": str(out / "grid.npy"), "available": available, "batch_size": BATCH}
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_RUN_ID="ddp-test",
                   OMP_NUM_THREADS="1", CONVLSTM_AUTO="measure",
                   PYTHONPATH=os.pathsep.join([str(SRC)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        env.pop("CONVLSTM_RUN_DIR", None)
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_ddp_worker.py"), str(out), json.dumps(spec)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=400)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two ranks did not finish in 400 s:\n" + "\n".join(logs)[-4000:])
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{log[-6000:]}"
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return {"records": records, "expected_batch": min(own), "out": out, "logs": logs}


def test_ranks_share_the_smallest_batch_size(ddp):
    expected = ddp["expected_batch"]
    for rec in ddp["records"]:
        assert rec["world_size"] == 2
        assert rec["batch"]["datamodule_batch_size"] == expected
        assert rec["batch"]["batch_sizes"] == [expected]      # the loaders made batches of that size
        assert rec["resume"]["batch_sizes"] == [expected]
    run = ddp["out"] / "batch"
    record = json.loads((ddp["out"] / "epoch1-memory.json").read_text())  # the first run's memory check
    assert record["batch_size"] == expected and record["batch_size_per_rank"] == [BATCH, expected]
    assert record["ranks"] == 2 and record["requested_batch_size"] == BATCH
    resumed = json.loads((run / "memory.json").read_text())           # resumed: both ranks allow it now
    assert resumed["batch_size"] == expected and resumed["batch_size_per_rank"] == [expected, expected]
    from convlstm.training import load_config
    assert load_config(run / "config.yaml").batch_size == expected
    line = [ln for ln in ddp["logs"][0].splitlines() if "shared by 2 ranks" in ln]
    assert len(line) == 3 and f"batch size {expected} " in line[0] and "decided on rank 0" in line[0]
    assert not any("shared by" in ln for ln in ddp["logs"][1].splitlines())   # rank 0 says it, once


def test_ranks_run_rank_0s_auto_path(ddp):
    r0, r1 = ddp["records"]
    assert r0["auto_train"] and r0["auto_val"]
    assert r0["auto_train"] == r1["auto_train"] and r0["auto_val"] == r1["auto_val"]
    for step in r0["auto_train"] + r0["auto_val"]:
        for path, timings in step.values():
            if timings is not None:          # a layer whose path was measured: rank 0 found "fft" faster
                assert path == "fft" and timings == {"concat": 2.0, "fft": 1.0}
    assert any(t is not None for step in r0["auto_train"] for _, t in step.values())
    assert r0["auto_measured"] and r1["auto_measured"] == []  # only rank 0 timed anything


def _draws_from(state):
    """Draws from torch, numpy and random after setting them to a saved per-rank ``state``."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    return {"torch": torch.rand(4).tolist(), "numpy": np.random.rand(4).tolist(),
            "python": [random.random() for _ in range(4)]}


def test_each_rank_restores_its_own_random_state(ddp):
    ckpt = torch.load(ddp["out"] / "epoch1.ckpt", weights_only=True)
    per_rank = ckpt["callbacks"]["RandomStateCallback"]["per_rank"]
    assert len(per_rank) == 2
    saved_torch, saved_numpy = torch.get_rng_state(), np.random.get_state()
    saved_python = random.getstate()
    try:
        for rank, rec in enumerate(ddp["records"]):
            state = per_rank[rank]
            at_save = rec["batch"]["saved_states"][-1]      # the rank's own states when last.ckpt was made
            assert state["torch"].tolist() == at_save["torch"]
            assert state["numpy"]["keys"].tolist() == at_save["numpy_keys"]
            assert state["numpy"]["pos"] == at_save["numpy_pos"]
            assert list(state["python"][1]) == at_save["python"]
            assert rec["resume"]["draws_after_restore"] == _draws_from(state)
    finally:
        torch.set_rng_state(saved_torch)
        np.random.set_state(saved_numpy)
        random.setstate(saved_python)
    d0, d1 = (rec["resume"]["draws_after_restore"] for rec in ddp["records"])
    assert all(d0[k] != d1[k] for k in d0)                   # the ranks' streams differ
    assert ckpt["callbacks"]["RandomStateCallback"]["torch"].equal(per_rank[0]["torch"])  # top level: rank 0's


def test_without_a_process_group_nothing_is_shared():
    assert world() == (0, 1)
    assert gather_from_all({"a": 1}) == [{"a": 1}] and from_rank0(7) == 7
    assert agree_on_batch_size(5) == (5, [5])
    with pytest.raises(ValueError, match="local must be a batch size"):
        agree_on_batch_size(0)
