"""convlstm._heap: keeping freed memory in glibc's heap. Each case runs in a fresh process (the
setting is process-wide), and what it checks is counted by the kernel: the minor page faults of
allocating, touching and freeing the same large block again and again, and the peak resident
memory the estimate stands for."""
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt: Linux with glibc only")


def _run(code: str, keep: str) -> dict:
    env = dict(os.environ, CONVLSTM_KEEP_FREED_MEMORY=keep, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


FAULTS = """
    import json, resource, torch
    from convlstm._heap import keep_freed_memory, keeps_freed_memory
    kept = keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):                 # the heap grows for the first few (measured: 7), then holds
        t = torch.ones(16 * 2 ** 20)
        del t
    before = faults()
    for _ in range(10):
        t = torch.ones(16 * 2 ** 20)    # 64 MiB: above glibc's largest mmap threshold
        del t
    print(json.dumps({"kept": kept, "keeps": keeps_freed_memory(), "faults": faults() - before}))
"""


def test_kept_memory_is_reused_without_page_faults():
    default = _run(FAULTS, "0")
    kept = _run(FAULTS, "1")
    assert default["kept"] is False and default["keeps"] is False
    assert kept["kept"] is True and kept["keeps"] is True
    pages = 10 * 64 * 2 ** 20 // 4096
    # glibc's default maps each 64 MiB block afresh: every page faults on its first touch
    assert default["faults"] > 0.9 * pages
    # kept in the heap, the same pages are reused: (almost) no faults
    assert kept["faults"] < 0.05 * pages


def test_environment_variable_turns_it_off_and_release_returns_pages():
    out = _run("""
        import json, torch
        from convlstm._heap import keep_freed_memory, release_freed_memory
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096
        assert keep_freed_memory()
        assert keep_freed_memory()     # idempotent
        t = torch.ones(64 * 2 ** 20); del t     # 256 MiB, freed: kept by the process
        held = rss()
        release_freed_memory()
        print(json.dumps({"held": held, "released": rss()}))
    """, "1")
    assert out["held"] - out["released"] > 200 * 2 ** 20
    off = _run("""
        import json
        from convlstm._heap import keep_freed_memory
        print(json.dumps({"kept": keep_freed_memory()}))
    """, "off")
    assert off["kept"] is False


def test_memory_estimate_counts_every_block_as_heap_when_kept():
    code = """
        import json, torch, convlstm
        from convlstm._heap import keep_freed_memory
        from convlstm.training.memory import HEAP_FACTOR, MMAP_THRESHOLD_MAX, TrainingMemoryProbe
        from convlstm.training.memory.probe import heap_block_limit
        keep_freed_memory()
        model = convlstm.ConvLSTM2D(32, 3, padding="same", return_sequences=True, in_channels=16)
        probe = TrainingMemoryProbe(model, (10, 64, 64, 16), (10, 64, 64, 32), prefetched_batches=0)
        est = probe(4)
        raw = dict(probe.estimate().tensor_bytes)[4]
        print(json.dumps({"limit": str(heap_block_limit()), "est": est, "raw": raw, "h": HEAP_FACTOR,
                          "method": probe.method}))
    """
    kept = _run(code, "1")
    default = _run(code, "0")
    assert kept["limit"] == "inf" and float(default["limit"]) == 32 * 2 ** 20
    # kept: every storage weighs HEAP_FACTOR, so the estimate is the raw peak times it
    assert kept["est"] == pytest.approx(kept["raw"] * kept["h"], rel=1e-6)
    assert kept["raw"] == default["raw"]
    assert default["est"] < kept["est"]
    assert "every storage" in kept["method"] and "under 32 MiB" in default["method"]


def test_fit_keeps_freed_memory_counts_it_and_hands_it_back(tmp_path):
    """A fit in a fresh process: its memory check counts every storage as a heap block, and the
    memory is handed back when fit returns; with CONVLSTM_KEEP_FREED_MEMORY=0 neither."""
    import numpy as np

    np.save(tmp_path / "grid.npy", np.random.default_rng(0).random((60, 12, 12, 1)).astype(np.float32))
    code = f"""
        import json
        import convlstm._heap as heap
        from convlstm.training import fit
        released = []
        original = heap.release_freed_memory
        def counted():
            released.append(True)
            return original()
        import convlstm.training.fitting as fitting
        fitting.release_freed_memory = counted
        run = fit(data={str(tmp_path / 'grid.npy')!r}, input_steps=3, output_steps=1, max_epochs=1, batch_size=4,
                  progress=False, evaluate=False, model="keras-nextframe",
                  model_options={{"filters": [4], "kernel_sizes": [3]}}, run_dir={str(tmp_path)!r} + "/run-SUFFIX",
                  precision="32")
        method = json.loads((run / "memory.json").read_text())["estimate"]["method"]
        print(json.dumps({{"keeps": heap.keeps_freed_memory(), "method": method, "released": bool(released)}}))
    """
    kept = _run(code.replace("SUFFIX", "kept"), "1")
    default = _run(code.replace("SUFFIX", "default"), "0")
    assert kept["keeps"] is True and "every storage" in kept["method"] and kept["released"]
    assert default["keeps"] is False and "under 32 MiB" in default["method"]
