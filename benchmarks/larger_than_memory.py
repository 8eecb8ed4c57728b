r"""Training on a grid series larger than the memory of the process: ``convlstm fit`` on a
float32 ``.npy`` file ``--factor`` (3) times the memory the process may use.

The machine's own memory is larger than its free disk, so the memory is limited instead: the fit
runs in a child memory cgroup (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``, ``--limit``,
default 3 GiB) created under this process's own, which :func:`convlstm.training.memory.available_memory`
reads, and the file is ``factor x limit`` bytes (9 GiB by default). Needs permission to create a
cgroup (root in a container usually has it); without it the script says so and stops.

What it does:

1. writes the series with :func:`numpy.lib.format.open_memmap`, ``--chunk-frames`` frames at a
   time (a pattern drifting one column per frame plus noise; never held whole), then drops the
   file's pages from the page cache (``posix_fadvise(DONTNEED)``);
2. in the cgroup, prints :func:`available_memory` as a process there sees it;
3. in the cgroup, runs ``python -m convlstm fit FILE --max-epochs 1 ...`` (a small
   ``keras-nextframe``, ``--limit-train-batches`` batches so that the epoch takes minutes on a
   CPU; the NaN check, the scaler and the mean frame still stream through the whole file),
   sampling every 0.5 s the resident memory (``/proc/<pid>/status``) of the fit, the
   proportional set size (``Pss``: shared pages counted once) of the fit and its ``DataLoader``
   workers together, each worker's private pages, and the cgroup's peak usage;
4. prints the figures: available memory, file size, frames, windows, setup time (the streaming
   statistics) and epoch time, peak RSS (``VmHWM`` of the fit, ``ru_maxrss`` of every child),
   peak anonymous memory, and whether the peak RSS stayed under ``--max-rss`` (4 GB);
5. removes the file (``--keep`` keeps it) and the cgroup.

Example (about 10 minutes on a 2-core machine)::

    sudo python benchmarks/larger_than_memory.py --dir /tmp
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

GiB = 2 ** 30
ROOT = Path(__file__).resolve().parents[1]


def _size(text: str) -> int:
    units = {"k": 2 ** 10, "m": 2 ** 20, "g": GiB}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t))


# ------------------------------------------------------------------------------ the cgroup
def make_cgroup(limit: int) -> Tuple[Path, Path, str, str]:
    """A child memory cgroup of this process's own with ``limit`` bytes: ``(folder, file the
    peak usage is read from, file to write a pid into, version)``."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    name = f"convlstm-bench-{os.getpid()}"
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            d = Path("/sys/fs/cgroup/memory") / rel.lstrip("/") / name
            d.mkdir()
            (d / "memory.limit_in_bytes").write_text(str(limit))
            return d, d / "memory.max_usage_in_bytes", d / "cgroup.procs", "v1"
    for line in lines:
        if line.startswith("0::"):  # v2: the memory controller must be delegated to the children
            parent = Path("/sys/fs/cgroup") / line[3:].strip().lstrip("/")
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                (parent / "cgroup.subtree_control").write_text("+memory")
            d = parent / name
            d.mkdir()
            (d / "memory.max").write_text(str(limit))
            (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
            return d, d / "memory.peak", d / "cgroup.procs", "v2"
    raise RuntimeError("no memory cgroup found in /proc/self/cgroup")


def remove_cgroup(d: Path) -> None:
    for _ in range(50):  # the last process may take a moment to leave
        try:
            d.rmdir()
            return
        except OSError:
            time.sleep(0.1)
    print(f"note: could not remove the cgroup {d}")


# ------------------------------------------------------------------------------ the file
def write_series(path: Path, frames: int, size: int, chunk: int, seed: int = 0) -> None:
    """A float32 ``(frames, size, size, 1)`` series written ``chunk`` frames at a time: a field
    that drifts one column per frame, plus noise."""
    rng = np.random.default_rng(seed)
    base = rng.random((size, size)).astype(np.float32)
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, -1, 0)) / 4
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(frames, size, size, 1))
    fd = os.open(path, os.O_RDONLY)
    cols = np.arange(size)
    try:
        for t0 in range(0, frames, chunk):
            t = np.arange(t0, min(frames, t0 + chunk))
            block = base[:, (cols[None, :] + t[:, None]) % size]  # (size, n, size)
            block = block.transpose(1, 0, 2) + 0.05 * rng.random((len(t), size, size), dtype=np.float32)
            out[t0:t0 + len(t), ..., 0] = block
            out.flush()
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # written pages leave the page cache
        del out
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ sampling
def _status(pid: int) -> Dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _rollup(pid: int) -> Dict[str, int]:
    """``Pss`` (shared pages divided among the processes that map them) and ``Private`` (clean +
    dirty pages no other process maps) of ``/proc/<pid>/smaps_rollup``, in bytes."""
    out = {"Pss": 0, "Private": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            k, _, v = line.partition(":")
            if k == "Pss":
                out["Pss"] = int(v.split()[0]) * 1024
            elif k in ("Private_Clean", "Private_Dirty"):
                out["Private"] += int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> List[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Every ``every`` seconds: the fit's status, its workers' and the cgroup's peak usage."""

    def __init__(self, pid: int, peak_file: Path, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_file, self.every = pid, peak_file, every
        self.peak: Dict[str, int] = {}
        self.max_workers = 0
        self.stop = threading.Event()

    def _bump(self, key: str, value: int) -> None:
        self.peak[key] = max(self.peak.get(key, 0), value)

    def run(self) -> None:
        while not self.stop.is_set():
            main = _status(self.pid)
            kids = [_status(c) for c in _children(self.pid)]
            if main:
                for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    self._bump(f"fit {k}", main.get(k, 0))
                rolls = [_rollup(c) for c in _children(self.pid)]
                self._bump("fit + workers Pss", _rollup(self.pid)["Pss"] + sum(r["Pss"] for r in rolls))
                self._bump("worker Private", max([r["Private"] for r in rolls] or [0]))
                self._bump("worker VmHWM", max([s.get("VmHWM", 0) for s in kids] or [0]))
                self.max_workers = max(self.max_workers, len(kids))
            try:
                self._bump("cgroup peak usage", int(self.peak_file.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
            self.stop.wait(self.every)


def run_in_cgroup(cmd: List[str], procs: Path, env: Dict[str, str]) -> subprocess.Popen:
    def enter() -> None:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))

    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=enter,
                            env=env, bufsize=1)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limit", type=_size, default=3 * GiB, help="memory limit of the cgroup (default 3GiB)")
    ap.add_argument("--factor", type=float, default=3.0, help="file size / limit (default 3)")
    ap.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    ap.add_argument("--dir", default="/tmp", help="folder of the file and the run (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the file (and reuse one of the same size)")
    ap.add_argument("--chunk-frames", type=int, default=4096, help="frames written at a time")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--train-batches", type=int, default=40, help="--limit-train-batches of the epoch")
    ap.add_argument("--val-batches", type=int, default=5, help="--limit-val-batches")
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--input-steps", type=int, default=4)
    ap.add_argument("--output-steps", type=int, default=2)
    ap.add_argument("--max-rss", type=_size, default=4 * 10 ** 9, help="the peak RSS must stay under this (4e9)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    frame_bytes = args.size * args.size * 4
    frames = int(args.factor * args.limit) // frame_bytes
    folder = Path(args.dir)
    path = folder / f"convlstm-larger-than-memory-{frames}x{args.size}.npy"
    run_dir = folder / f"convlstm-larger-than-memory-run-{os.getpid()}"
    try:
        cg, peak_file, procs, version = make_cgroup(args.limit)
    except OSError as exc:
        print(f"cannot create a memory cgroup ({exc}); run as root on a machine with cgroup v1 or v2 delegated")
        return 2
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    figures: Dict[str, object] = {"cgroup": f"{version} {cg}", "limit_bytes": args.limit}
    try:
        if not (args.keep and path.exists() and path.stat().st_size >= frames * frame_bytes):
            t = time.time()
            write_series(path, frames, args.size, args.chunk_frames)
            figures["write_s"] = round(time.time() - t, 1)
        figures["file_bytes"] = path.stat().st_size
        figures["frames"] = frames

        probe = run_in_cgroup([sys.executable, "-c", "from convlstm.training.memory import available_memory; "
                               "print(available_memory())"], procs, env)
        figures["available_in_cgroup"] = probe.communicate()[0].strip()

        from convlstm.data import chronological_split, num_windows
        parts = chronological_split(frames, args.input_steps, args.output_steps)
        figures["windows"] = {k: num_windows(b - a, args.input_steps, args.output_steps) for k, (a, b) in parts.items()}
        figures["windows_trained_on"] = args.train_batches * args.batch_size

        cmd = [sys.executable, "-m", "convlstm", "fit", str(path), "--max-epochs", "1",
               "--limit-train-batches", str(args.train_batches), "--limit-val-batches", str(args.val_batches),
               "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers),
               "--input-steps", str(args.input_steps), "--output-steps", str(args.output_steps),
               "--model", "keras-nextframe", "--model-option", "filters=[8]", "--model-option", "kernel_sizes=[3]",
               "--no-evaluate", "--no-progress", "--run-dir", str(run_dir)]
        figures["command"] = " ".join(cmd[1:])
        t0 = time.time()
        child = run_in_cgroup(cmd, procs, env)
        sampler = Sampler(child.pid, peak_file)
        sampler.start()
        stamps: Dict[str, float] = {}
        log: List[str] = []
        for line in child.stdout:
            now = time.time() - t0
            log.append(line.rstrip())
            print(f"[{now:7.1f} s] {line.rstrip()}", flush=True)
            if line.startswith("convlstm fit: memory:"):
                stamps["memory"] = now
            if "`Trainer.fit` stopped" in line:
                stamps["stopped"] = now
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop.set()
        sampler.join()
        wall = time.time() - t0
        figures.update({
            "fit_exit_code": child.returncode, "fit_wall_s": round(wall, 1),
            "setup_s (read, NaN check, scaler, mean frame, memory probe)": round(stamps.get("memory", float("nan")), 1),
            "epoch_s (train + validation batches)": round(stamps.get("stopped", float("nan"))
                                                          - stamps.get("memory", float("nan")), 1),
            "ru_maxrss_fit_bytes": usage.ru_maxrss * 1024,
            "ru_maxrss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "workers_seen": sampler.max_workers,
            **{f"peak {k} bytes": v for k, v in sampler.peak.items()},
            "memory_line": next((ln for ln in log if ln.startswith("convlstm fit: memory:")), ""),
        })
        peak_rss = max(figures["ru_maxrss_fit_bytes"], sampler.peak.get("fit VmHWM", 0))
        figures["peak_rss_bytes"] = peak_rss
        figures["under_max_rss"] = bool(peak_rss < args.max_rss and child.returncode == 0)
    finally:
        if not args.keep and path.exists():
            path.unlink()
        remove_cgroup(cg)
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
    print()
    for k, v in figures.items():
        if isinstance(v, int) and k.endswith("bytes") and v > 10 ** 6:
            v = f"{v} ({v / GiB:.2f} GiB)"
        print(f"{k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0 if figures.get("under_max_rss") else 1


if __name__ == "__main__":
    sys.exit(main())
