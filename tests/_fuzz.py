"""Seeded byte-mutation fuzzing of the library's file readers, shared by ``tests/test_fuzz_loaders.py``
(a bounded number of cases in CI) and ``tools/fuzz_loaders.py`` (a long run by hand).

Each case takes a real file (the Keras fixtures in ``tests/fixtures/keras``, the example configs in
``src/convlstm/configs/``, and small grid files written here with numpy, h5py, h5netcdf and scipy), mutates its
bytes with a seeded :class:`random.Random` (bit flips, special values, random spans, truncation,
deletion, duplication; for ``.keras`` archives also the JSON inside a well-formed zip), and hands
it to a reader. The outcome must be one of:

``loaded``
    the reader returned (and, for grids, every frame could be read);
``refused``
    the library's own error: raised by the library's code (the innermost frame is in the
    ``convlstm`` package), of the target's error class (:class:`convlstm.keras.KerasFileError`
    for Keras files, ``ValueError`` for grids and configs), with a message that names the file.

Anything else is a finding: ``foreign`` (another exception, or an unnamed file), ``crash`` (the
process died), ``hang`` (no answer within the time limit), ``wrote`` (a file appeared outside the
case's own file: in the case's folder, or in the worker's working, home or temporary folder).
Cases run in a worker process (:func:`run_campaign`) so that a crash or a hang is observed, not
suffered; before the cases, every unmutated seed file must load.
"""
from __future__ import annotations

import io
import json
import os
import random
import select
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
KERAS_FIXTURES = TESTS / "fixtures" / "keras"
BUNDLED_CONFIGS = ROOT / "src" / "convlstm" / "configs"

#: target -> (seed files, suffix of the case file, error class name); see :func:`loaders`
TARGETS = {
    "keras_h5_model": (["k2_convlstm_options.h5", "k2_functional_states.h5", "k2_layers2d.h5"], ".h5", "keras"),
    "keras_archive": (["k3_bidir_states.keras", "k3_channels_first.keras"], ".keras", "keras"),
    "keras_archive_json": (["k3_bidir_states.keras", "k3_channels_first.keras"], ".keras", "keras"),
    "keras_h5_weights": (["k2_weights_only.h5"], ".h5", "keras"),
    "keras3_weights": (["k3_weights_only.weights.h5"], ".weights.h5", "keras"),
    "grid_npy": (["grid.npy"], ".npy", "value"),
    "grid_npz": (["grid.npz", "grid_compressed.npz"], ".npz", "value"),
    "grid_hdf5": (["grid.h5"], ".h5", "value"),
    "grid_netcdf4": (["grid4.nc"], ".nc", "value"),
    "grid_netcdf3": (["grid3.nc"], ".nc", "value"),
    "config_yaml": (["demo.yaml", "flow.yaml", "radar.yaml"], ".yaml", "value"),
}

_SPECIAL = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x0A, 0x3A, 0x22, 0x7B, 0x5B]
_WIDE = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 1, 0xFFFF, 0x10000]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three seeded byte mutations of ``data``."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        n = len(b)
        if n == 0:
            b += bytes([rng.randrange(256)])
            continue
        op = rng.randrange(8)
        if op == 0:  # flip a few bits
            for _ in range(rng.randint(1, 16)):
                i = rng.randrange(n)
                b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # special byte values
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(n)] = rng.choice(_SPECIAL)
        elif op == 2:  # a random span
            i = rng.randrange(n)
            span = rng.randint(1, 64)
            b[i:i + span] = bytes(rng.randrange(256) for _ in range(min(span, n - i)))
        elif op == 3:  # truncate
            del b[rng.randrange(n):]
        elif op == 4:  # delete a span
            i = rng.randrange(n)
            del b[i:i + rng.randint(1, 256)]
        elif op == 5:  # duplicate a span somewhere else
            i = rng.randrange(n)
            chunk = b[i:i + rng.randint(1, 256)]
            j = rng.randrange(n)
            b[j:j] = chunk
        elif op == 6:  # a 4- or 8-byte little-endian field set to a boundary value
            width = rng.choice([4, 8])
            i = rng.randrange(max(1, n - width)) & ~(width - 1)
            b[i:i + width] = rng.choice(_WIDE).to_bytes(8, "little")[:width]
        else:  # a byte near a text separator (JSON, YAML, npy header)
            seps = [i for i, c in enumerate(b[:4096]) if c in b'{}[]:,"\n']
            if seps:
                i = rng.choice(seps)
                b[i] = rng.choice(_SPECIAL)
    return bytes(b)


def _mutate_archive_json(data: bytes, rng: random.Random) -> bytes:
    """A well-formed zip whose ``config.json`` (or ``metadata.json``) is mutated."""
    src = zipfile.ZipFile(io.BytesIO(data))
    member = rng.choice(["config.json", "config.json", "config.json", "metadata.json"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            dst.writestr(info.filename, mutate(content, rng) if info.filename == member else content)
    return out.getvalue()


def write_grid_seeds(folder: Path) -> None:
    """Small grid files of the four formats, written with numpy, h5py, h5netcdf and scipy."""
    import h5netcdf
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    grid = rng.normal(size=(6, 5, 4, 2)).astype(np.float32)
    np.save(folder / "grid.npy", grid)
    np.savez(folder / "grid.npz", data=grid, extra=grid[:, :, :, 0])
    np.savez_compressed(folder / "grid_compressed.npz", data=grid)
    with h5py.File(folder / "grid.h5", "w") as f:
        f.create_dataset("obs/rain", data=grid, chunks=(1, 5, 4, 2), compression="gzip")
        f.create_dataset("time", data=np.arange(6))
    with h5netcdf.File(folder / "grid4.nc", "w") as f:
        f.dimensions = {"time": 6, "y": 5, "x": 4, "c": 2}
        v = f.create_variable("rain", ("time", "y", "x", "c"), np.int16)
        v[...] = np.round(grid * 100).astype(np.int16)
        v.attrs["scale_factor"] = 0.01
        v.attrs["_FillValue"] = np.int16(-9999)
    from scipy.io import netcdf_file

    with netcdf_file(folder / "grid3.nc", "w") as f:
        for name, size in zip(("time", "y", "x", "c"), grid.shape):
            f.createDimension(name, size)
        v = f.createVariable("rain", "f4", ("time", "y", "x", "c"))
        v[:] = grid


def _seed_path(name: str, seeds: Path) -> Path:
    if (KERAS_FIXTURES / name).is_file():
        return KERAS_FIXTURES / name
    if (BUNDLED_CONFIGS / name).is_file():
        return BUNDLED_CONFIGS / name
    return seeds / name


def loaders() -> Dict[str, Callable[[Path], object]]:
    import numpy as np

    sys.path.insert(0, str(TESTS))
    import convlstm.keras as ck
    from convlstm.data import load_grid
    from convlstm.training import load_config
    from test_keras_weights import K2Net, K3Net  # the torch twins of the weights-only fixtures

    def grid(layout, key=None):
        def load(path):
            g = load_grid(path, key=key, layout=layout)
            return np.asarray(g[: g.shape[0]])  # every frame, through the reader
        return load

    return {
        "keras_h5_model": ck.load_model,
        "keras_archive": ck.load_model,
        "keras_archive_json": ck.load_model,
        "keras_h5_weights": lambda p: ck.load_weights(K2Net(), p),
        "keras3_weights": lambda p: ck.load_weights(K3Net(), p),
        "grid_npy": grid("THWC"),
        "grid_npz": grid("THWC", "data"),
        "grid_hdf5": grid("THWC", "obs/rain"),
        "grid_netcdf4": grid("THWC", "rain"),
        "grid_netcdf3": grid("THWC", "rain"),
        "config_yaml": load_config,
    }


def _classify(exc: BaseException, kind: str, path: Path) -> Tuple[str, str]:
    from convlstm.keras import KerasFileError

    frames = traceback.extract_tb(exc.__traceback__)
    import convlstm

    package = str(Path(convlstm.__file__).resolve().parent)
    own = bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(package)
    cls = KerasFileError if kind == "keras" else ValueError
    text = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}"
    if own and isinstance(exc, cls) and path.name in str(exc):
        return "refused", text
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    ours = [f for f in frames if str(Path(f.filename).resolve()).startswith(package)]
    if ours and not own:
        where += f" (from {Path(ours[-1].filename).name}:{ours[-1].lineno} {ours[-1].line})"
    return "foreign", text + where


def make_case(target: str, seed: int, seeds: Path) -> bytes:
    """The bytes of case ``seed`` of ``target``: a seed file chosen and mutated by
    ``random.Random(f"{target}:{seed}")`` (the same bytes on every machine for the Keras fixtures
    and configs; grid seed files are written by the installed numpy/h5py/h5netcdf/scipy)."""
    names = TARGETS[target][0]
    rng = random.Random(f"{target}:{seed}")
    data = _seed_path(rng.choice(names), seeds).read_bytes()
    return _mutate_archive_json(data, rng) if target == "keras_archive_json" else mutate(data, rng)


def run_case(table: Dict[str, Callable[[Path], object]], target: str, path: Path) -> Tuple[str, str]:
    """``("loaded", "")`` or ``_classify``'s verdict on the exception."""
    try:
        table[target](path)
        return "loaded", ""
    except Exception as exc:  # noqa: BLE001 - classifying every exception is the point
        return _classify(exc, TARGETS[target][2], path)


def worker(cases: Sequence[Tuple[str, int]], workdir: Path) -> None:
    """Run ``cases`` (target, seed) one by one, printing ``BEGIN`` and ``RESULT`` lines."""
    seeds = workdir / "seeds"
    seeds.mkdir(exist_ok=True)
    write_grid_seeds(seeds)
    loaders_ = loaders()
    cases_dir = workdir / "cases"
    cases_dir.mkdir(exist_ok=True)
    for stale in cases_dir.iterdir():  # a case file left by a worker killed for a hang
        stale.unlink()
    for target in sorted({t for t, _ in cases}):  # every unmutated seed file loads (and imports are done)
        for name in TARGETS[target][0]:
            loaders_[target](_seed_path(name, seeds))
    watched = [Path.cwd(), Path(os.environ["HOME"]), Path(os.environ["TMPDIR"])]

    def files() -> set:
        return {p for d in watched for p in d.rglob("*")}

    baseline = files()
    print("READY", flush=True)
    for target, seed in cases:
        print(f"BEGIN {target} {seed}", flush=True)
        path = cases_dir / f"case{TARGETS[target][1]}"
        path.write_bytes(make_case(target, seed, seeds))
        outcome, detail = run_case(loaders_, target, path)
        others = sorted(p.name for p in cases_dir.iterdir() if p != path) + sorted(map(str, files() - baseline))
        if others:
            outcome, detail = "wrote", f"files written: {others[:10]}"
        path.unlink()
        print("RESULT " + json.dumps({"target": target, "seed": seed, "outcome": outcome, "detail": detail}),
              flush=True)


class _Lines:
    """Lines from a pipe, each awaited until a deadline (``select`` on the raw descriptor and a
    buffer of our own: a buffered reader could hold a line that ``select`` does not see)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def next(self, deadline: float):
        """The next line without its newline; ``""`` at the end; ``None`` past the deadline."""
        while b"\n" not in self.buffer:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return ""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


def _library_root() -> str:
    """The folder the parent process imports ``convlstm`` from: the worker tests the same code."""
    import convlstm

    return str(Path(convlstm.__file__).resolve().parents[1])


def run_campaign(cases: Sequence[Tuple[str, int]], workdir: Path, *, case_timeout: float = 30.0,
                 startup_timeout: float = 120.0) -> List[dict]:
    """Run ``cases`` in worker processes; a worker that dies or stops answering is recorded as a
    ``crash`` or ``hang`` for its current case and replaced. Returns one result per case."""
    workdir = Path(workdir)
    for sub in ("cwd", "home", "tmp"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp"), MPLCONFIGDIR=str(workdir / "tmp"),
               PYTHONPATH=os.pathsep.join([_library_root(), str(TESTS)] +
                                          [p for p in [os.environ.get("PYTHONPATH")] if p]),
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("KERAS_HOME", None)
    results: List[dict] = []
    todo = [tuple(c) for c in cases]
    while todo:
        job = workdir / "job.json"
        job.write_text(json.dumps({"cases": todo, "workdir": str(workdir)}))
        log = workdir / "worker.stderr"
        with open(log, "wb") as err:  # a file, not a pipe: a chatty worker must not block on it
            proc = subprocess.Popen([sys.executable, "-c", "import sys, _fuzz; _fuzz._worker_main(sys.argv[1])",
                                     str(job)], cwd=workdir / "cwd", env=env, stdout=subprocess.PIPE, stderr=err)
        lines = _Lines(proc.stdout.fileno())
        current = None
        deadline = time.monotonic() + startup_timeout
        try:
            while True:
                line = lines.next(deadline)
                if line is None:  # no answer in time: a hang (or a stuck start)
                    proc.kill()
                    proc.wait()
                    if current is None:
                        raise RuntimeError("the fuzz worker did not start: " + log.read_text(errors="replace")[-2000:])
                    results.append({"target": current[0], "seed": current[1], "outcome": "hang",
                                    "detail": f"no answer in {case_timeout} s"})
                    todo = todo[todo.index(current) + 1:]
                    break
                if line == "":  # the worker exited
                    proc.wait()
                    if current is not None:
                        results.append({"target": current[0], "seed": current[1], "outcome": "crash",
                                        "detail": f"exit status {proc.returncode}: "
                                                  f"{log.read_text(errors='replace')[-500:]}"})
                        todo = todo[todo.index(current) + 1:]
                    elif todo and proc.returncode != 0:
                        raise RuntimeError("the fuzz worker failed: " + log.read_text(errors="replace")[-2000:])
                    else:
                        todo = []
                    break
                if line == "READY":
                    deadline = time.monotonic() + case_timeout
                elif line.startswith("BEGIN "):
                    _, target, seed = line.split()
                    current = (target, int(seed))
                    deadline = time.monotonic() + case_timeout
                elif line.startswith("RESULT "):
                    results.append(json.loads(line[7:]))
                    todo = todo[todo.index(current) + 1:]
                    current = None
                    deadline = time.monotonic() + case_timeout
                    if not todo:
                        proc.wait(timeout=60)
                        break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
    return results


def _worker_main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    worker([tuple(c) for c in job["cases"]], Path(job["workdir"]))


def summary(results: Sequence[dict]) -> Dict[str, Dict[str, int]]:
    """``{target: {outcome: count}}``."""
    out: Dict[str, Dict[str, int]] = {}
    for r in results:
        counts = out.setdefault(r["target"], {})
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    return out
