"""The command-line walk-throughs run as written: docs/own-data.md's and the README's.

Each page's shell commands (the lines of its ```bash blocks; continuation lines joined, comments
dropped, words split as a shell splits them) run one by one in an empty folder: ``convlstm ...``
through the command line (``convlstm.cli.main``), ``python ...`` with this Python. Each must exit
0 and leave the files the page says it writes.

docs/own-data.md trains on ``bikenyc.npz``, a file a reader brings: the test writes a small
synthetic one of the same layout and keys under the same name (``data``: (time, 2, 16, 8) int16
counts with a daily cycle; ``date``: DeepST's ``YYYYMMDDss`` stamps), so the commands themselves
are not changed; likewise for its archive of MeteoSwiss GIFs (``mch/<event>/AQC...gif``, three
small events of pysteps's ``mch_gif`` format). The README's example writes its own series with its first line.

One thing is appended, to keep the run short: ``--max-epochs 1`` to each ``fit`` (the pages train
for 40 and 5 epochs; the last value of a repeated flag wins).
"""
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from _helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
#: appended to every ``convlstm fit`` of a page
SHORT_FIT = ["--max-epochs", "1"]


def bash_blocks(page: Path) -> list:
    return BASH_BLOCK.findall(page.read_text(encoding="utf-8"))


def shell_commands(blocks: list) -> list:
    """The commands of bash ``blocks``, each as its list of words."""
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def write_bikenyc(path: Path, hours: int = 240) -> None:
    """A small stand-in for BikeNYC: in/out flow on a 16x8 grid, stored TCHW under ``data``,
    with DeepST's ``YYYYMMDDss`` time stamps (ss = hour slot 01..24) under ``date``."""
    rng = np.random.default_rng(0)
    hour = np.arange(hours) % 24
    rate = 5 + 20 * np.exp(-((hour - 8) ** 2) / 8) + 15 * np.exp(-((hour - 18) ** 2) / 8)
    cells = rng.gamma(2.0, 0.5, size=(1, 2, 16, 8))
    data = rng.poisson(rate[:, None, None, None] * cells).astype(np.int16)
    start = datetime(2014, 8, 5)
    stamps = [start + timedelta(hours=h) for h in range(hours)]
    date = np.array([f"{d:%Y%m%d}{d.hour + 1:02d}" for d in stamps])
    np.savez(path, data=data, date=date)


def write_mch_archive(folder: Path, frames: int = 12, size: int = 16) -> None:
    """A small stand-in for the MeteoSwiss example archive: three rain events, one folder each,
    one GIF of 8-bit AQC codes per 5 minutes named ``AQC<yy><day of year><HHMM>F_00005.801.gif``,
    as pysteps's ``mch_gif`` importer reads them (code 255: no data)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for start in (datetime(2015, 5, 15, 15, 45), datetime(2016, 7, 11, 20, 45), datetime(2017, 1, 31, 9, 45)):
        event = folder / "mch" / f"{start:%Y%m%d}"
        event.mkdir(parents=True)
        for k in range(frames):
            t = start + timedelta(minutes=5 * k)
            codes = rng.integers(0, 140, size=(size, size)).astype(np.uint8)
            codes[0, :3] = 255
            image = Image.fromarray(codes, mode="P")
            image.putpalette([v for i in range(256) for v in (i, i, i)])
            image.save(event / f"AQC{t:%y%j%H%M}F_00005.801.gif")


def _option(words: list, flag: str) -> str:
    return words[words.index(flag) + 1]


def expected_files(words: list) -> list:
    """The files a command of the pages writes, as the pages describe them."""
    command = words[1]
    if command == "fit":
        run = Path(_option(words, "--run-dir"))
        return [run / "checkpoints" / "last.ckpt", run / "config.yaml", run / "metrics.json"]
    if command == "evaluate":
        run = Path(words[2])
        return [run / name for name in ("metrics.json", "metrics_per_lead_time.csv", "forecast.png",
                                        "forecast.gif")]
    if command == "predict":
        return [Path(_option(words, "--out"))]
    raise AssertionError(f"no files are known for {shlex.join(words)}")


def run_commands(commands: list, folder: Path, page: Path) -> None:
    """Run ``page``'s ``commands`` in ``folder`` (the current directory)."""
    for words in commands:
        if words[0] == "python":
            subprocess.run([sys.executable, *words[1:]], cwd=folder, check=True, timeout=120)
            continue
        assert words[0] == "convlstm", f"{page.name}: a command the test does not know: {shlex.join(words)}"
        expected = expected_files(words)
        for f in expected:   # evaluate rewrites what fit wrote: what is there afterwards is its own
            f.unlink(missing_ok=True)
        args = words[1:] + (SHORT_FIT if words[1] == "fit" else [])
        code, _, err = run_cli(*args)
        assert code == 0, f"{page.name}: {shlex.join(words)} exited {code}:\n{err}"
        missing = [str(f) for f in expected if not f.is_file() or f.stat().st_size == 0]
        assert missing == [], f"{page.name}: {shlex.join(words)} did not write {missing}"


def test_own_data_walk_through_runs_as_written(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    write_bikenyc(tmp_path / "bikenyc.npz")
    write_mch_archive(tmp_path)
    page = ROOT / "docs" / "own-data.md"
    commands = shell_commands(bash_blocks(page))
    assert [w[:2] for w in commands] == [["convlstm", "fit"], ["convlstm", "evaluate"], ["convlstm", "predict"],
                                         ["convlstm", "fit"]]
    run_commands(commands, tmp_path, page)
    import h5netcdf

    with h5netcdf.File(tmp_path / "next_hour.nc", "r") as f:   # the next hour of both channels
        assert f.variables["forecast"].shape[-3:] == (16, 8, 2) and f.variables["forecast"].attrs["units"]


def test_readme_command_line_example_runs_as_written(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    page = ROOT / "README.md"
    # the block with a fit: the README's other bash blocks install the package or call make
    example = [b for b in bash_blocks(page) if "convlstm fit" in b]
    commands = shell_commands(example)
    assert len(example) == 1 and [w[:2] for w in commands] == [
        ["python", "-c"], ["convlstm", "fit"], ["convlstm", "evaluate"], ["convlstm", "predict"]]
    run_commands(commands, tmp_path, page)
    assert np.load(tmp_path / "waves.npy").shape == (600, 32, 32)
