"""Held-out evaluation data built from public archives that the project never trains on.

Radar: the pysteps example data (a git repository, ``--mirror``), read with pysteps's own
importers (``pysteps.io.get_method(name, "importer")``) and converted to rain rate in mm/h with
``pysteps.utils.conversion.to_rainrate`` from each file's metadata. KNMI and FMI are left out:
the project already uses them. For every event of every source below the script

* extracts the event's files from the repository at the recorded commit (``git archive``),
* keeps the longest run of consecutive time steps at the source's interval (a gap is printed),
* replaces NaN / no-data with 0 (the mask is kept as ``nodata``),
* picks the 256 x 256 window with the most rain summed over the run (the full extent along a
  dimension smaller than 256), and
* writes ``OUT/radar_<source>_<YYYYMMDD_HHMM>-<HHMM>_<N>min_crop256.npz``.

Keys of a radar file: ``rain_mm_h`` float32 (T, H, W); ``time`` str (T,) 'YYYYMMDDHHMM' (UTC, as
in the file names); ``interval_minutes`` int; ``source`` str; ``crop_row_col`` int (2,) (top-left
corner of the window in the full grid, rows counted from the top); ``full_shape`` int (2,);
``nodata`` bool (T, H, W) (pixels that were NaN / no coverage before being set to 0);
``pixel_size`` float and ``cartesian_unit`` str; ``source_path``, ``source_commit`` str.

Crowd flow (``--flow-mirror``): a New York City taxi-pickup grid, 10 x 20 cells, 30-minute
steps, January 2015, derived from the NYC TLC yellow-taxi trip records by the public repository
named in ``FLOW_SOURCES`` (read from a git copy of it at a pinned commit and checked against
recorded sha256 sums). Written as ``OUT/flow_<name>_<H>x<W>_<N>min.npz`` with ``data`` int32
(T, C, H, W), ``time`` 'YYYYMMDDHHMM' (start of each slot, local New York time), ``interval_minutes``,
``channels``, ``split_names`` / ``split_sizes`` (the source's own train / test files, in time
order), ``axes`` and the source's repository, commit and paths.

Usage::

    python benchmarks/heldout_data.py --mirror /path/to/pysteps-data.git --out /work/heldout
    python benchmarks/heldout_data.py ... --sources mch rmi --png      # some sources, with pictures
    python benchmarks/heldout_data.py ... --flow-mirror /path/to/CS5834-Project.git   # and the taxi grid
    python benchmarks/heldout_data.py --list

Needs pysteps, h5py and pillow; BoM also needs netCDF4 and MRMS pygrib (a source whose importer
lacks its package is skipped with a message); ``--png`` needs matplotlib.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CROP = 256

# name -> where the event's files are in pysteps-data, how their names carry the time, and how
# pysteps reads them (importer and kwargs as in pysteps's pystepsrc, unless noted)
RADAR_SOURCES = {
    "mch": dict(
        desc="MeteoSwiss AQC radar composite (5-min accumulation, GIF), Switzerland, 1 km",
        paths=["radar/mch"], glob="*/AQC*_00005.801.gif",
        time_re=r"AQC(\d{9})", time_fmt="%y%j%H%M",
        importer="mch_gif", kwargs=dict(product="AQC", unit="mm", accutime=5), interval=5),
    "bom2": dict(
        desc="BoM Rainfields3 prcp-cscn, radar 2 (Melbourne), 6-min accumulation, 0.5 km",
        paths=["radar/bom/prcp-cscn/2"], glob="*/*/*/2_*.prcp-cscn.nc",
        time_re=r"_(\d{8}_\d{4})00\.", time_fmt="%Y%m%d_%H%M",
        # pystepsrc says gzipped=True, but the repository's files are plain netCDF4
        importer="bom_rf3", kwargs={}, interval=6),
    "bom66": dict(
        desc="BoM Rainfields3 prcp-c10, radar 66 (Mt Stapylton, Brisbane), 10-min accumulation, 0.5 km",
        paths=["radar/bom/prcp-c10/66"], glob="*/*/*/66_*.prcp-c10.nc",
        time_re=r"_(\d{8}_\d{4})00\.", time_fmt="%Y%m%d_%H%M",
        importer="bom_rf3", kwargs={}, interval=10),
    "rmi": dict(
        desc="RMI radar QPE composite with mean-field bias correction (rate), Belgium, 1 km",
        paths=["radar/rmi/radqpe"], glob="*/*.rad.best.comp.rate.qpe.hdf",
        time_re=r"(\d{12})00\.rad", time_fmt="%Y%m%d%H%M",
        importer="odim_hdf5", kwargs=dict(accutime=5.0), interval=5),
    "opera": dict(
        desc="EUMETNET OPERA (Odyssey) pan-European rain-rate composite, 2 km",
        paths=["radar/OPERA/20180824"], glob="T_PAAH21_C_EUOC_*.hdf",
        time_re=r"EUOC_(\d{12})00\.", time_fmt="%Y%m%d%H%M",
        importer="opera_hdf5", kwargs={}, interval=15),
    "mrms": dict(
        desc="NOAA/NSSL MRMS PrecipRate mosaic, contiguous US, 0.01 deg",
        paths=["mrms"], glob="*/*/*/PrecipRate_00.00_*.grib2",
        time_re=r"_(\d{8}-\d{4})00\.", time_fmt="%Y%m%d-%H%M",
        # native 0.01 deg grid (pystepsrc's default window_size=4 would average to 0.04 deg)
        importer="mrms_grib", kwargs=dict(window_size=1), interval=2),
}

# name -> a crowd-flow grid kept as .npz files in a public repository
FLOW_SOURCES = {
    "nyctaxi": dict(
        desc="NYC yellow-taxi pickups per 30 min on a 10 x 20 grid (lon -74.05..-73.75, lat 40.63..40.85), "
             "January 2015",
        repo="Rajahn/CS5834-Project",
        commit="9a45f7d506cbbeb71332c7b41d88ed618ef948e4",  # the commit that added the files
        files=[("train", "data/volume_train.npz",
                "ebbbeaf522d2999fcccfd59fc5bda4137bbefa06669433fcd6707dd4111649a1"),
               ("test", "data/volume_test.npz",
                "039c49026ea6456127d109a62fa56f4dedaac71e8bff8cde1c31e62aba673b51")],
        key="volume", start="2015-01-01 00:00", interval=30, channels=["pickups"],
        # the source's array is (T, lon bin, lat bin, channel): lon bin 0 = west, lat bin 0 = south
        axes="data[t, c, i, j]: i = longitude bin (0 = west, 0.03 deg), j = latitude bin (0 = south, 0.011 deg)"),
}

CACHE_BYTES = 1_500_000_000  # frames of one event kept in memory up to this; otherwise read twice


def git(mirror, *args, **kw):
    return subprocess.run(["git", f"--git-dir={mirror}", *args], check=True, capture_output=True, **kw)


def extract(mirror, commit, paths, dest):
    """Write the files under ``paths`` at ``commit`` into ``dest`` (git archive | tar)."""
    for p in paths:
        arch = git(mirror, "archive", "--format=tar", commit, p).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)


def longest_run(times, interval):
    """Index range [i0, i1) of the longest run of steps exactly ``interval`` minutes apart."""
    step = dt.timedelta(minutes=interval)
    best, start = (0, 1), 0
    for i in range(1, len(times) + 1):
        if i == len(times) or times[i] - times[i - 1] != step:
            if i - start > best[1] - best[0]:
                best = (start, i)
            if i < len(times):
                print(f"    gap: {times[i - 1]:%Y-%m-%d %H:%M} -> {times[i]:%Y-%m-%d %H:%M}")
            start = i
    return best


def best_window(total, size=CROP):
    """Top-left (row, col) of the size x size window with the largest sum of ``total``."""
    h, w = min(size, total.shape[0]), min(size, total.shape[1])
    c = np.zeros((total.shape[0] + 1, total.shape[1] + 1))
    c[1:, 1:] = total.cumsum(0).cumsum(1)
    s = c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]
    r, q = np.unravel_index(np.argmax(s), s.shape)
    return int(r), int(q), h, w


def read_rain(importer, path, kwargs):
    """One file as (rain rate mm/h float32 with NaN -> 0, no-data mask, metadata)."""
    from pysteps.utils.conversion import to_rainrate

    r, _, md = importer(str(path), **kwargs)
    r = np.ma.filled(r.astype(np.float64), np.nan) if np.ma.isMaskedArray(r) else np.asarray(r, np.float64)
    rr, md = to_rainrate(r, md)
    if md["unit"] != "mm/h":
        raise ValueError(f"{path}: to_rainrate gave unit {md['unit']!r}")
    nodata = ~np.isfinite(rr)
    rr = np.where(nodata, 0.0, rr)
    if (rr < 0).any():
        print(f"    {path.name}: {int((rr < 0).sum())} negative values set to 0")
        rr = np.maximum(rr, 0.0)
    return rr.astype(np.float32), nodata, md


def build_radar(name, spec, mirror, commit, out, workdir, png=False):
    from pysteps import io as psio
    from pysteps.exceptions import MissingOptionalDependency

    importer = psio.get_method(spec["importer"], "importer")
    root = Path(workdir) / name
    root.mkdir(parents=True, exist_ok=True)
    extract(mirror, commit, spec["paths"], root)
    files = sorted(root.glob(f"{spec['paths'][0]}/{spec['glob']}"))
    events = {}
    for f in files:
        m = re.search(spec["time_re"], f.name)
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), spec["time_fmt"])
        events.setdefault(f.parent, {})[t] = f
    written = []
    for folder, by_time in sorted(events.items()):
        times = sorted(by_time)
        print(f"  {name} {folder.relative_to(root)}: {len(times)} files "
              f"{times[0]:%Y-%m-%d %H:%M} .. {times[-1]:%H:%M}")
        i0, i1 = longest_run(times, spec["interval"])
        if i1 - i0 < len(times):
            print(f"    kept the longest consecutive run: {times[i0]:%Y-%m-%d %H:%M} .. "
                  f"{times[i1 - 1]:%Y-%m-%d %H:%M} ({i1 - i0} of {len(times)} steps)")
        times = times[i0:i1]
        try:
            first, nd0, md = read_rain(importer, by_time[times[0]], spec["kwargs"])
        except MissingOptionalDependency as e:
            print(f"  {name}: skipped ({e})")
            return written
        shape = first.shape
        # frames kept in memory (rain, no-data mask) when they fit, otherwise read a second time
        cache = [(first, nd0)] if first.nbytes * 1.25 * len(times) <= CACHE_BYTES else None
        total = first.astype(np.float64)
        for t in times[1:]:
            rr, nd, _ = read_rain(importer, by_time[t], spec["kwargs"])
            if rr.shape != shape:
                raise ValueError(f"{by_time[t]}: grid {rr.shape} differs from {shape}")
            total += rr
            if cache is not None:
                cache.append((rr, nd))
        r0, c0, h, w = best_window(total)
        rain = np.empty((len(times), h, w), np.float32)
        nodata = np.empty((len(times), h, w), bool)
        for k, t in enumerate(times):
            rr, nd = cache[k] if cache is not None else read_rain(importer, by_time[t], spec["kwargs"])[:2]
            rain[k] = rr[r0:r0 + h, c0:c0 + w]
            nodata[k] = nd[r0:r0 + h, c0:c0 + w]
        del cache
        t0, t1 = times[0], times[-1]
        end = f"{t1:%H%M}" if t1.date() == t0.date() else f"{t1:%Y%m%d_%H%M}"
        crop = f"crop{CROP}" if (h, w) == (CROP, CROP) else f"crop{h}x{w}"
        fname = f"radar_{name}_{t0:%Y%m%d_%H%M}-{end}_{spec['interval']}min_{crop}.npz"
        src_path = str(folder.relative_to(root))
        np.savez_compressed(
            out / fname, rain_mm_h=rain, time=np.array([f"{t:%Y%m%d%H%M}" for t in times]),
            interval_minutes=np.int64(spec["interval"]), source=np.str_(name),
            crop_row_col=np.array([r0, c0], np.int64), full_shape=np.array(shape, np.int64),
            nodata=nodata, pixel_size=np.float64(md.get("xpixelsize", np.nan)),
            cartesian_unit=np.str_(md.get("cartesian_unit", "")),
            source_path=np.str_(src_path), source_commit=np.str_(commit))
        print(f"    -> {fname}: shape {rain.shape}, {spec['interval']} min, crop at (row {r0}, col {c0}) "
              f"of {shape}, mean {rain.mean():.3f} mm/h, frac >= 1 mm/h {(rain >= 1).mean():.3f}, "
              f"max {rain.max():.1f} mm/h, no-data {nodata.mean():.3f}")
        if png:
            save_png(out / fname.replace(".npz", ".png"), rain, times, name)
        written.append(out / fname)
    return written


def build_flow(name, spec, mirror, out):
    import hashlib
    import io

    parts, names, sizes = [], [], []
    for split, path, sha in spec["files"]:
        blob = git(mirror, "show", f"{spec['commit']}:{path}").stdout
        got = hashlib.sha256(blob).hexdigest()
        if got != sha:
            raise ValueError(f"{spec['repo']}@{spec['commit'][:12]}:{path}: sha256 {got}, expected {sha}")
        a = np.load(io.BytesIO(blob))[spec["key"]]
        if not np.array_equal(a, np.round(a)) or a.min() < 0:
            raise ValueError(f"{path}: expected non-negative counts")
        parts.append(a.astype(np.int32).transpose(0, 3, 1, 2))  # (T, X, Y, C) -> (T, C, X, Y)
        names.append(split)
        sizes.append(len(a))
    data = np.concatenate(parts)
    t0 = dt.datetime.strptime(spec["start"], "%Y-%m-%d %H:%M")
    step = dt.timedelta(minutes=spec["interval"])
    times = np.array([f"{t0 + k * step:%Y%m%d%H%M}" for k in range(len(data))])
    h, w = data.shape[2:]
    fname = f"flow_{name}_{h}x{w}_{spec['interval']}min.npz"
    np.savez_compressed(
        out / fname, data=data, time=times, interval_minutes=np.int64(spec["interval"]),
        channels=np.array(spec["channels"]), split_names=np.array(names), split_sizes=np.array(sizes, np.int64),
        axes=np.str_(spec["axes"]), source=np.str_(name), source_repo=np.str_(spec["repo"]),
        source_commit=np.str_(spec["commit"]), source_paths=np.array([p for _, p, _ in spec["files"]]))
    per_step = data.reshape(len(data), -1).sum(1)
    print(f"    -> {fname}: data {data.shape} {data.dtype}, {spec['interval']} min, {times[0]} .. {times[-1]}, "
          f"splits {dict(zip(names, sizes))}, mean {data.mean():.1f} per cell, max {data.max()}, "
          f"trips per step {per_step.min()}..{per_step.max()}")
    return out / fname


def save_png(path, rain, times, title, n=6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    idx = np.linspace(0, len(times) - 1, min(n, len(times))).round().astype(int)
    fig, axes = plt.subplots(1, len(idx), figsize=(3 * len(idx), 3.3), constrained_layout=True)
    for ax, k in zip(np.atleast_1d(axes), idx):
        im = ax.imshow(np.where(rain[k] >= 0.1, rain[k], np.nan), norm=LogNorm(0.1, 100), cmap="turbo")
        ax.set_facecolor("0.85")
        ax.set_title(f"{title} {times[k]:%Y-%m-%d %H:%M}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="mm/h")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", help="the pysteps-data git repository (bare or not)")
    ap.add_argument("--commit", default="HEAD", help="commit of pysteps-data to read (default HEAD)")
    ap.add_argument("--out", type=Path, default=Path("heldout"))
    ap.add_argument("--flow-mirror", help="git repository of the crowd-flow source (see --list); "
                                          "without it the flow set is skipped")
    ap.add_argument("--sources", nargs="+", choices=sorted({**RADAR_SOURCES, **FLOW_SOURCES}),
                    default=[*RADAR_SOURCES, *FLOW_SOURCES])
    ap.add_argument("--png", action="store_true", help="also save a few frames of each set as OUT/NAME.png")
    ap.add_argument("--workdir", help="where to extract the archive's files (default: a temporary folder)")
    ap.add_argument("--list", action="store_true", help="list the sources and exit")
    a = ap.parse_args(argv)
    if a.list:
        for k, v in RADAR_SOURCES.items():
            print(f"{k:8s} {v['desc']} ({', '.join(v['paths'])}, importer {v['importer']})")
        for k, v in FLOW_SOURCES.items():
            print(f"{k:8s} {v['desc']} ({v['repo']} at {v['commit'][:12]})")
        return 0
    radar = [n for n in a.sources if n in RADAR_SOURCES]
    if radar and not a.mirror:
        ap.error("--mirror is required for the radar sources")
    a.out.mkdir(parents=True, exist_ok=True)
    if radar:
        commit = git(a.mirror, "rev-parse", f"{a.commit}^{{commit}}", text=True).stdout.strip()
        print(f"pysteps-data at {commit}")
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(a.workdir) if a.workdir else Path(tmp)
            for name in radar:
                print(f"{name}: {RADAR_SOURCES[name]['desc']}")
                build_radar(name, RADAR_SOURCES[name], a.mirror, commit, a.out, workdir, png=a.png)
    for name in [n for n in a.sources if n in FLOW_SOURCES]:
        print(f"{name}: {FLOW_SOURCES[name]['desc']}")
        if not a.flow_mirror:
            print(f"  skipped: give --flow-mirror (a git copy of {FLOW_SOURCES[name]['repo']})")
            continue
        build_flow(name, FLOW_SOURCES[name], a.flow_mirror, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
