"""ST-ResNet's protocol on the BikeNYC slice: closeness only vs closeness + period + trend vs
+ calendar, beside persistence and climatology, with the time each run took.

The protocol (Zhang, Zheng, Qi, "Deep Spatio-Temporal Residual Networks for Citywide Crowd Flows
Prediction", AAAI 2017, BikeNYC): forecast the next hour of in- and outflow on the 16x8 grid;
test = the last 240 hours (the last ten days); min-max scaling fitted on the training data; RMSE
in bikes per hour over both channels and every cell. Here the series is the last 1369 hours of
the standard one (``../shared/data/bikenyc``, see its README), so the training part is 7 weeks,
not ST-ResNet's four months; 10% of the series before the test part is the validation part
(the checkpoint with the best validation loss is scored). Every run has the same seed and the
same number of epochs (``--epochs``; the ``convlstm-warp`` pair ``--warp-epochs``), and every run
is scored on the same 240 test targets (the week-old trend lag reaches back into the validation
and training parts, never forward).

Each configuration runs in its own Python process (``convlstm.training.fit``, one thread),
``--jobs`` at a time; the script prints a markdown table and writes ``OUT/results.jsonl``.

Usage::

    python benchmarks/st_protocol.py                       # the default set (about 15 minutes on 2 cores)
    python benchmarks/st_protocol.py --configs all         # every configuration, as recorded in RESULTS.md
    python benchmarks/st_protocol.py --configs closeness "closeness+period+trend" --epochs 10
    python benchmarks/st_protocol.py --render runs/st/results.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from convlstm.metrics import deepst_rmse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIKENYC = "bikenyc/bikenyc_2014-08-04T23_2014-09-30T23_16x8.npz"
N_TIME, TEST_HOURS, VAL_FRACTION = 1369, 240, 0.1
#: published figure, ST-ResNet (L12-E, with external data), BikeNYC test RMSE, bikes per hour
ST_RESNET_RMSE = 6.33
#: DeepST's m_factor on BikeNYC: 81 of the 16 x 8 cells hold a station; ST-ResNet's RMSE is the
#: all-cell RMSE times sqrt(128 / 81) (convlstm.metrics.deepst_rmse)
BIKENYC_CELLS, BIKENYC_ACTIVE_CELLS = 128, 81

ST = "st-convlstm"
CONFIGS = {
    "closeness": dict(model=ST, closeness=3, period=0, trend=0, calendar=False),
    "closeness+period+trend": dict(model=ST, closeness=3, period=1, trend=1, calendar=False),
    "closeness+period+trend, stacked": dict(model=ST, closeness=3, period=1, trend=1, calendar=False,
                                            model_options={"fusion": "stacked"}),
    "closeness+period+trend+calendar": dict(model=ST, closeness=3, period=1, trend=1, calendar=True),
    "closeness+period+trend+calendar, stacked": dict(model=ST, closeness=3, period=1, trend=1, calendar=True,
                                                     model_options={"fusion": "stacked"}),
    # the default model, as `convlstm fit` runs it with and without the automatic period and trend
    "convlstm-warp, closeness 6": dict(model="convlstm-warp", closeness=6, period=0, trend=0, warp=True),
    "convlstm-warp, closeness 6+period+trend": dict(model="convlstm-warp", closeness=6, period=1, trend=1,
                                                    warp=True),
}

#: the default run (under 15 minutes on 2 cores); "all" adds the stacked fusion with the calendar
DEFAULT_CONFIGS = [c for c in CONFIGS if c != "closeness+period+trend+calendar, stacked"]


def split() -> list:
    test = TEST_HOURS / N_TIME
    return [1.0 - VAL_FRACTION - test, VAL_FRACTION, test]


def run_one(name: str, data_dir: Path, out: Path, epochs: int, warp_epochs: int, seed: int) -> dict:
    import torch

    from convlstm.training import fit

    torch.set_num_threads(1)
    spec = dict(CONFIGS[name])
    warp = spec.pop("warp", False)
    run_dir = out / f"{name.replace(' ', '_').replace(',', '').replace('+', '-')}-seed{seed}"
    t0 = time.time()
    fit(data=str(data_dir / BIKENYC), key="data", layout="TCHW", output_steps=1, split=split(), scaler="minmax",
        max_epochs=warp_epochs if warp else epochs, batch_size=32, lr=2e-3, scheduler="cosine", seed=seed,
        run_dir=str(run_dir), progress=False, accelerator="cpu", devices=1, units="bikes/hour", **spec)
    seconds = time.time() - t0
    with open(run_dir / "metrics.json", encoding="utf-8") as fh:
        m = json.load(fh)
    return {"config": name, "seed": seed, "epochs": warp_epochs if warp else epochs, "seconds": round(seconds, 1),
            "rmse": m["model"]["rmse"], "persistence": m["persistence"]["rmse"],
            "climatology": m["climatology"]["rmse"], "run_dir": str(run_dir)}


def render(rows: list) -> str:
    by = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    base = by.get("closeness")
    base_rmse = None if not base else sum(r["rmse"] for r in base) / len(base)
    lines = ["| configuration | epochs | RMSE (bikes/hour) | vs closeness only | time (s) |", "|---|---|---|---|---|"]
    for name in CONFIGS:
        if name not in by:
            continue
        rs = by[name]
        rmse = sum(r["rmse"] for r in rs) / len(rs)
        seeds = "" if len(rs) == 1 else " (mean of %d seeds: %s)" % (len(rs), ", ".join("%.3f" % r["rmse"] for r in rs))
        rel = "" if base_rmse is None or name.startswith("convlstm-warp") else f"{100 * (rmse / base_rmse - 1):+.1f}%"
        secs = sum(r["seconds"] for r in rs) / len(rs)
        lines.append(f"| {name} | {rs[0]['epochs']} | {rmse:.3f}{seeds} | {rel} | {secs:.0f} |")
    warp = [by.get(n) for n in CONFIGS if n.startswith("convlstm-warp")]
    if all(warp) and len(warp) == 2:
        a, b = (sum(r["rmse"] for r in w) / len(w) for w in warp)
        lines.append(f"| (convlstm-warp: period+trend vs closeness 6) | | | {100 * (b / a - 1):+.1f}% | |")
    r0 = rows[0]
    lines.append(f"| persistence | | {r0['persistence']:.3f} | | |")
    lines.append(f"| climatology (training mean per cell and hour of day) | | {r0['climatology']:.3f} | | |")
    lines.append(f"| ST-ResNet, published (AAAI 2017; 4 months of training data, external features), "
                 f"all-cell equivalent of its {ST_RESNET_RMSE} (DeepST's convention: x sqrt(128/81)) | | "
                 f"{ST_RESNET_RMSE / deepst_rmse(1.0, BIKENYC_ACTIVE_CELLS, BIKENYC_CELLS):.2f} | | |")
    cpt = [by[n] for n in CONFIGS if n.startswith("closeness+period") and n in by]
    if base_rmse is not None and cpt:
        best_name, best = min(((n, sum(r["rmse"] for r in by[n]) / len(by[n])) for n in CONFIGS
                               if n.startswith("closeness+period") and n in by), key=lambda v: v[1])
        gain = 100 * (1 - best / base_rmse)
        lines.append("")
        lines.append(f"best multi-scale configuration: {best_name}, RMSE {best:.3f}, {gain:.1f}% below closeness only "
                     f"({base_rmse:.3f}); target >= 5%: {'reached' if gain >= 5 else 'NOT reached'}")
        lines.append(f"in ST-ResNet's convention (DeepST's, x sqrt(128/81)): "
                     f"{deepst_rmse(best, BIKENYC_ACTIVE_CELLS, BIKENYC_CELLS):.2f} against its {ST_RESNET_RMSE}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/st"))
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS) + ["all"], metavar="NAME",
                    help=f"configurations to run (default: all but the stacked one with calendar); one of "
                         f"{', '.join(CONFIGS)}, or all")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of every st-convlstm run")
    ap.add_argument("--warp-epochs", type=int, default=20, help="epochs of the convlstm-warp pair (its default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--render", type=Path, default=None, help="print the table of a results.jsonl and exit")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.configs == ["all"]:
        args.configs = list(CONFIGS)
    if args.render:
        rows = [json.loads(line) for line in args.render.read_text().splitlines() if line.strip()]
        print(render(rows))
        return 0
    if args.one:
        print(json.dumps(run_one(args.one, args.data_dir, args.out, args.epochs, args.warp_epochs, args.seed)))
        return 0
    if not (args.data_dir / BIKENYC).is_file():
        print(f"st_protocol: {args.data_dir / BIKENYC} not found; give --data-dir", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    queue = [(c, s) for s in args.seeds for c in args.configs]
    running, rows, t0 = [], [], time.time()
    results = args.out / "results.jsonl"
    while queue or running:
        while queue and len(running) < args.jobs:
            c, s = queue.pop(0)
            cmd = [sys.executable, __file__, "--one", c, "--seed", str(s), "--data-dir", str(args.data_dir),
                   "--out", str(args.out), "--epochs", str(args.epochs), "--warp-epochs", str(args.warp_epochs)]
            running.append((c, s, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                   text=True)))
        time.sleep(1)
        for item in list(running):
            c, s, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out = proc.stdout.read().strip().splitlines()
            if proc.returncode != 0 or not out:
                print(f"st_protocol: {c} (seed {s}) failed with status {proc.returncode}", file=sys.stderr)
                continue
            row = json.loads(out[-1])
            rows.append(row)
            with open(results, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{c} (seed {s}): RMSE {row['rmse']:.3f} in {row['seconds']:.0f} s", flush=True)
    print()
    print(f"BikeNYC, ST-ResNet protocol (test = last {TEST_HOURS} hours), {platform.machine()}, "
          f"{os.cpu_count()} cores, wall time {time.time() - t0:.0f} s")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
