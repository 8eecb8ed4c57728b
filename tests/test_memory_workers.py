"""The memory guard counts DataLoader workers: W (p B s + o) beside the training step, against a
hand formula."""
import json
import math

import numpy as np
import pytest

from convlstm.training import FitConfig, ForecastModule, fit
from convlstm.training import memory as mem
from convlstm.training.memory.workers import LoaderWorkers

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_estimate(fixed, per_sample, largest=64):
    return mem.MemoryEstimate(measured=((1, fixed + per_sample), (largest, fixed + per_sample * largest)),
                              tensor_bytes=((1, 0), (largest, 0)), per_sample_bytes=per_sample, fixed_bytes=fixed,
                              precision="32", device="cpu", method="test", seconds=0.0)


def test_worker_bytes_follow_the_formula():
    w = LoaderWorkers.for_samples(3, (6, 20, 30, 2), (4, 20, 30, 2), prefetch_factor=5, overhead=1234)
    s = 4 * (6 + 4) * 20 * 30 * 2  # float32 x and y
    assert w.sample_bytes == s
    for b in (1, 7, 64):
        assert w.bytes(b) == 3 * (5 * b * s + 1234)
    assert LoaderWorkers.for_samples(0, (6, 20, 30, 2), (4, 20, 30, 2)).bytes(64) == 0
    two = LoaderWorkers.for_samples(3, (6, 20, 30, 2), (4, 20, 30, 2), prefetch_factor=5, overhead=1234, loaders=2)
    assert two.bytes(7) == 2 * 3 * (5 * 7 * s + 1234) and two.batches_in_flight() == 30
    assert (mem.PREFETCH_FACTOR, mem.WORKER_OVERHEAD) == (2, 64 * 2 ** 20)
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0"):
        LoaderWorkers(-1, 10)
    with pytest.raises(ValueError, match="prefetch_factor must be an integer >= 1"):
        LoaderWorkers(2, 10, prefetch_factor=0)


@pytest.mark.parametrize("workers, prefetch, loaders", [(1, 2, 1), (3, 2, 1), (4, 3, 1), (2, 2, 2)])
def test_workers_shrink_the_batch_size_to_the_hand_formula(workers, prefetch, loaders):
    fixed, per, s, o = 41_000_003, 1_700_001, 390_017, 9_000_011
    budget = 200_000_000
    est = _linear_estimate(fixed, per)
    w = LoaderWorkers(workers, s, prefetch_factor=prefetch, overhead=o, loaders=loaders)
    alone = mem.choose_batch_size(est, 64, None, limit=budget)
    both = mem.choose_batch_size(est, 64, None, limit=budget, workers=w)
    # fixed + per B + L W (p B s + o) <= budget
    n = loaders * workers
    hand = math.floor((budget - fixed - n * o) / (per + n * prefetch * s))
    assert both.chosen == min(64, hand) < alone.chosen == min(64, (budget - fixed) // per)
    assert both.estimate_chosen == fixed + per * hand + n * (prefetch * hand * s + o) <= budget
    assert both.workers_bytes() == n * (prefetch * hand * s + o)
    assert f"{n} DataLoader worker" in both.summary() and "DataLoader" not in alone.summary()
    assert both.to_dict()["workers"]["bytes"] == both.workers_bytes()


def test_the_guard_counts_workers_of_a_real_model():
    from convlstm.training.module import build_model

    model = build_model("keras-nextframe", {"filters": [8], "kernel_sizes": [3]}, output_steps=2,
                        frame_shape=[32, 32, 1])
    shapes = ((4, 32, 32, 1), (2, 32, 32, 1))
    probe = mem.TrainingMemoryProbe(model, *shapes)
    lines = []
    s = 4 * (4 + 2) * 32 * 32
    w, p, o = 2, mem.PREFETCH_FACTOR, mem.WORKER_OVERHEAD
    limit = probe(12) + w * o  # room for the workers' processes, not for their batches
    alone = mem.guard_training_memory(model, *shapes, 16, memory_limit=limit, log=lines.append)
    chosen = mem.guard_training_memory(model, *shapes, 16, memory_limit=limit, log=lines.append, num_workers=w)
    assert alone.chosen == 16 and chosen.chosen < 12
    b = chosen.chosen
    assert probe(b) + w * (p * b * s + o) <= limit < probe(b + 1) + w * (p * (b + 1) * s + o)
    assert "DataLoader" not in lines[0]
    assert f"of it for 2 DataLoader workers: 4 batches of {b} in flight" in lines[1]
    with pytest.raises(mem.MemoryBudgetError, match=r"fewer --num-workers \(134 MB of the estimate"):
        mem.guard_training_memory(model, *shapes, 16, memory_limit=w * o, log=lines.append, num_workers=w)


def test_fit_passes_its_workers_to_the_guard(tmp_path, capsys):
    path = tmp_path / "grid.npy"
    np.save(path, np.random.default_rng(0).random((80, 16, 16, 1)).astype(np.float32))
    cfg = FitConfig(data=str(path), input_steps=4, output_steps=2, max_epochs=1, progress=False, evaluate=False,
                    model="keras-nextframe", model_options={"filters": [8], "kernel_sizes": [3]}, batch_size=4,
                    limit_train_batches=2, limit_val_batches=1, num_workers=1)
    run_dir = fit(cfg, run_dir=str(tmp_path / "run"))
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("convlstm fit: memory:")]
    # training and validation loaders, each with one persistent worker
    assert len(line) == 1
    assert "of it for 2 DataLoader workers (1 per loader x 2 loaders): 4 batches of 4 in flight" in line[0]
    record = json.loads((run_dir / "memory.json").read_text())
    assert record["workers"]["num_workers"] == 1 and record["workers"]["loaders"] == 2
    assert record["workers"]["bytes"] == 2 * (2 * 4 * (4 * 6 * 16 * 16) + mem.WORKER_OVERHEAD)
