"""One rank of tests/test_ddp_agreement.py: run as a script with torchrun's environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RUN_ID), it trains three
small distributed fits on CPU (gloo) and writes what this rank saw to ``OUT/rank{RANK}.json``.

1. ``batch``: the memory check sees ``available[rank]`` bytes (simulated), 1 epoch; the last
   checkpoint and ``memory.json`` are copied to ``epoch1.ckpt`` and ``epoch1-memory.json``; every training step draws from torch, numpy and
   ``random`` as many times as the rank's number + 1 (so the ranks' states part).
2. ``resume``: the same run resumed to 2 epochs; the first draws after the random states are
   restored are recorded.
3. ``auto``: 5x5 kernels on which the rule picks ``"fft"``; the step timings are faked so that
   rank 0 finds ``"fft"`` faster and rank 1 ``"concat"``.
"""
import json
import os
import random
import shutil
import sys

import lightning.pytorch as pl
import numpy as np
import torch

import convlstm._auto_timing as auto_timing
import convlstm._paths as paths
from convlstm.training import fit, load_config
from convlstm.training.memory import AvailableMemory
from convlstm.training.memory import guard

RANK = int(os.environ["RANK"])


def _rng_state():
    """This process's generators' states as JSON lists."""
    _, keys, pos, _, _ = np.random.get_state()
    return {"torch": torch.get_rng_state().tolist(), "numpy_keys": [int(k) for k in keys], "numpy_pos": int(pos),
            "python": list(random.getstate()[1])}


def _draws():
    return {"torch": torch.rand(4).tolist(), "numpy": np.random.rand(4).tolist(),
            "python": [random.random() for _ in range(4)]}


class Record(pl.Callback):
    """What this rank trains with, and its random states when checkpoints are made."""

    def __init__(self, draw=False):
        self.seen = {"batch_sizes": set(), "saved_states": []}
        self.draw = draw

    def state_dict(self):
        return {"kept": 1}   # so that load_state_dict is called on resume

    def load_state_dict(self, state_dict):
        # called after RandomStateCallback's (Lightning restores the callbacks in their order)
        self.seen["draws_after_restore"] = _draws()

    def on_train_start(self, trainer, pl_module):
        self.seen["datamodule_batch_size"] = trainer.datamodule.batch_size

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["batch_sizes"].add(int(batch[0].shape[0]))
        if self.draw:
            for _ in range(RANK + 1):
                torch.rand(1), np.random.rand(), random.random()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.seen["saved_states"].append(_rng_state())

    def result(self):
        return dict(self.seen, batch_sizes=sorted(self.seen["batch_sizes"]))


def _paths_ran(module):
    return {name: [m.last_path, m.last_path_detail.get("auto_timings")] for name, m in module.named_modules()
            if getattr(m, "last_path", None) is not None}


def main(out, spec):
    common = dict(data=spec["data"], input_steps=4, output_steps=2, max_epochs=1, progress=False, evaluate=False,
                  model="keras-nextframe", accelerator="cpu", devices=2, strategy="ddp", limit_train_batches=2,
                  limit_val_batches=1, precision="32")  # float32: the auto paths measured (fft) are float32's
    result = {"rank": RANK}

    # 1. the batch size: rank 1 sees less memory than rank 0
    available = spec["available"][RANK]
    guard.available_memory = lambda device="cpu": AvailableMemory(available, f"simulated for rank {RANK}")
    run_a = os.path.join(out, "batch")
    record = Record(draw=True)
    fit(common, run_dir=run_a, batch_size=spec["batch_size"], model_options={"filters": [4], "kernel_sizes": [3]},
        callbacks=[record])
    result["batch"] = record.result()
    result["world_size"] = torch.distributed.get_world_size()
    if RANK == 0:
        shutil.copy(os.path.join(run_a, "checkpoints", "last.ckpt"), os.path.join(out, "epoch1.ckpt"))
        shutil.copy(os.path.join(run_a, "memory.json"), os.path.join(out, "epoch1-memory.json"))
    torch.distributed.barrier()

    # 2. resume: each rank restores its own random states
    record = Record()
    fit(common, run_dir=run_a, resume=True, max_epochs=2, batch_size=load_config(
        os.path.join(run_a, "config.yaml")).batch_size, model_options={"filters": [4], "kernel_sizes": [3]},
        callbacks=[record])
    result["resume"] = record.result()

    # 3. the paths of implementation="auto": the faked timings would send the ranks different ways
    measured = []
    fast = {0: {"concat": 2.0, "fft": 1.0}, 1: {"concat": 1.0, "fft": 2.0}}[RANK]

    def fake_timings(batch, channels, filters, spatial, kernel, candidate, device):
        measured.append(batch)
        return {"concat": fast["concat"], candidate: fast["fft"]}

    auto_timing._step_timings = fake_timings
    paths.AUTO_FAST_CONV_MIN_FLOPS = 0      # the rule sends even this small layer to "fft"
    auto_timing.clear_auto_timings()

    class PathsRan(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            result.setdefault("auto_train", []).append(_paths_ran(pl_module))

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            result.setdefault("auto_val", []).append(_paths_ran(pl_module))

    fit(common, run_dir=os.path.join(out, "auto"), batch_size=2, memory_limit="off",
        model_options={"filters": [4], "kernel_sizes": [5], "activation": "tanh"}, callbacks=[PathsRan()])
    result["auto_measured"] = measured
    with open(os.path.join(out, f"rank{RANK}.json"), "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
