"""The held-out skill suite: every data set the project holds and the public sets of
``benchmarks/HELDOUT.md`` that it never tuned on, each run with the defaults (``convlstm fit FILE``
and only the flags the file needs: key, layout, units, the source's split), scored against its
baselines, with the verdict of each target.

Crowd flow (``flow``): the model's RMSE and MAE against persistence's (targets: RMSE at least 10%
below, MAE at or below) and climatology's; BikeNYC also in ST-ResNet's convention (DeepST's
all-cell RMSE x sqrt(128/81) equivalent: the RMSE over the cells that ever carry flow).

Radar (``radar``): MSE and CSI at 1 mm/h per lead time against pysteps's Lucas-Kanade
extrapolation (target: at or better at every lead time) and persistence. The shared KNMI and FMI
files are fitted as the docs show; the held-out radars are scored with the KNMI run's model
(``convlstm evaluate RUN --data FILE``, every window of the file: a model trained on one
afternoon in the Netherlands, used on another radar), their rain rates stored as KNMI's.

Every command runs as a user would type it (``python -m convlstm ...``), one after the other;
results go to ``OUT/results.jsonl`` and the markdown tables to stdout.

Usage::

    python benchmarks/skill_suite.py --list
    python benchmarks/skill_suite.py --only bikenyc nyctaxi           # the crowd-flow rows
    python benchmarks/skill_suite.py --render runs/suite/results.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
HELDOUT = ROOT.parent / "heldout"
KNMI_SCALE = 0.12   # the KNMI file stores mm per 5 minutes x 100; x 0.12 = mm/h

BIKENYC = dict(file="{shared}/bikenyc/bikenyc_2014-08-04T23_2014-09-30T23_16x8.npz",
               args=["--key", "data", "--layout", "TCHW", "--units", "bikes/hour",
                     "--split", "0.7247", "0.1", "0.1753"])
RADAR_ARGS = ["--units", "mm/h", "--thresholds", "1", "5", "--fss-scales", "10",
              "--baselines", "persistence", "climatology", "extrapolation"]

#: name -> what it is, how it is run. kind: flow | radar; how: fit (with args) | transfer (KNMI's model)
SUITE: Dict[str, dict] = {
    "bikenyc": dict(kind="flow", how="fit", held_out=False, **BIKENYC,
                    protocol="ST-ResNet's test period (the last 240 hours), next hour"),
    "bikenyc st-convlstm": dict(kind="flow", how="fit", held_out=False, file=BIKENYC["file"],
                                args=BIKENYC["args"] + ["--model", "st-convlstm", "--output-steps", "1"],
                                protocol="as bikenyc, the crowd-flow model with its automatic streams"),
    "bikenyc one week": dict(kind="flow", how="fit", held_out=False, file="derived:bikenyc-week",
                             args=["--key", "data", "--layout", "TCHW", "--units", "bikes/hour",
                                   "--split", str(168 / 432), str(24 / 432), str(240 / 432)],
                             protocol="the same 240 test hours, trained on the 7 days before them (1 day validation)"),
    "nyctaxi": dict(kind="flow", how="fit", held_out=True, file="{heldout}/flow_nyctaxi_10x20_30min.npz",
                    args=["--key", "data", "--layout", "TCHW", "--units", "pickups/30 min",
                          "--split", str(1071 / 1488), str(119 / 1488), str(298 / 1488)],
                    protocol="the source's test part (the last 298 half-hours), its last 119 training "
                             "half-hours as validation"),
    "nyctaxi st-convlstm": dict(kind="flow", how="fit", held_out=True, file="{heldout}/flow_nyctaxi_10x20_30min.npz",
                                args=["--key", "data", "--layout", "TCHW", "--units", "pickups/30 min",
                                      "--split", str(1071 / 1488), str(119 / 1488), str(298 / 1488),
                                      "--model", "st-convlstm", "--output-steps", "1"],
                                protocol="as nyctaxi, the crowd-flow model with its automatic streams"),
    "knmi": dict(kind="radar", how="fit", held_out=False,
                 file="{shared}/radar/knmi_20100826_0000-0735_5min_crop256.npz",
                 args=["--key", "precip_mm_x100", "--layout", "THW", "--scale", str(KNMI_SCALE)] + RADAR_ARGS,
                 protocol="the last 20% of 92 frames (10 windows), +5/+10/+15 min"),
    "fmi": dict(kind="radar", how="fit", held_out=False,
                file="{shared}/radar/fmi_20170509_1045-1400_5min_crop256.npz",
                args=["--key", "dbz_code", "--layout", "THW", "--scale", "0.5", "--offset", "-32",
                      "--transform", "reflectivity-to-rate", "--split", "0.75", "0", "0.25"] + RADAR_ARGS,
                protocol="the last 25% of 40 frames (2 windows), no validation part"),
}
for _name in ("mch_20150515_1545-1900_5min", "mch_20160711_2045-20160712_0000_5min", "mch_20170131_0945-1300_5min",
              "bom2_20180616_1000-1600_6min", "bom66_20201031_0000-2350_10min", "rmi_20210704_1550-1900_5min",
              "opera_20180824_1800-2345_15min", "mrms_20190610_0000-0110_2min"):
    SUITE[_name.split("_")[0] + " " + _name.split("_")[1]] = dict(
        kind="radar", how="transfer", held_out=True, file=f"derived:radar_{_name}_crop256",
        protocol=f"every window of the file ({_name.split('_')[-1]} steps), KNMI's model")


def _derive(name: str, out: Path, shared: Path, heldout: Path) -> Path:
    """Files the suite builds from others: BikeNYC's last 432 hours; a held-out radar's rain rate
    stored as KNMI's (``precip_mm_x100``, mm/h = value x 0.12)."""
    path = out / "data" / f"{name}.npz"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "bikenyc-week":
        src = np.load(Path(BIKENYC["file"].format(shared=shared)))
        np.savez(path, data=src["data"][-432:], date=src["date"][-432:])
    else:
        src = np.load(heldout / f"{name}.npz")
        stored = np.clip(np.rint(src["rain_mm_h"] / KNMI_SCALE), 0, 65535).astype(np.uint16)
        np.savez(path, precip_mm_x100=stored, time=src["time"])
    return path


def _convlstm(*args: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "convlstm", *args]
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")


def run_one(name: str, out: Path, shared: Path, heldout: Path, reuse: bool = False) -> dict:
    spec = SUITE[name]
    file = spec["file"]
    data = _derive(file.split(":", 1)[1], out, shared, heldout) if file.startswith("derived:") else \
        Path(file.format(shared=shared, heldout=heldout))
    run_dir = out / "runs" / name.replace(" ", "-")
    t0 = time.time()
    if spec["how"] == "fit" and reuse and (run_dir / "metrics.json").is_file():
        pass                                  # scored before: its metrics as they are
    elif spec["how"] == "fit":
        if run_dir.exists():
            shutil.rmtree(run_dir)           # the suite's own folder, fitted again
        _convlstm("fit", str(data), *spec["args"], "--run-dir", str(run_dir), "--no-progress",
                  log=out / f"{name.replace(' ', '-')}.log")
        if name.startswith("bikenyc"):   # the published comparison, in the paper's convention
            _convlstm("evaluate", str(run_dir), "--convention", "st-resnet", "--out-dir", str(run_dir / "st-resnet"),
                      log=out / f"{name.replace(' ', '-')}-convention.log")
    else:
        knmi = out / "runs" / "knmi"
        if not (knmi / "checkpoints").is_dir():
            raise RuntimeError(f"{name} is scored with the KNMI run's model: run --only knmi first")
        run_dir = out / "transfer" / name.replace(" ", "-")
        _convlstm("evaluate", str(knmi), "--data", str(data), "--key", "precip_mm_x100", "--layout", "THW",
                  "--baselines", "persistence", "extrapolation", "--thresholds", "1", "5", "--out-dir", str(run_dir),
                  log=out / f"{name.replace(' ', '-')}.log")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"name": name, "kind": spec["kind"], "held_out": spec["held_out"], "protocol": spec["protocol"],
           "seconds": round(time.time() - t0), "blend": metrics.get("blend")}
    for forecast in ("model", "persistence", "climatology", "extrapolation"):
        m = metrics.get(forecast)
        if not m:
            continue
        per = m.get("per_lead_time") or {}
        row[forecast] = {k: m.get(k) for k in ("mse", "mae", "rmse") if m.get(k) is not None}
        row[forecast]["per_lead_mse"] = per.get("mse")
        row[forecast]["per_lead_csi1"] = per.get("csi@1") or per.get("csi@1.0")
    conv = run_dir / "st-resnet" / "metrics.json"
    if conv.is_file():
        c = json.loads(conv.read_text())
        row["st_resnet"] = {f: (c.get(f) or {}).get("conventions", {}).get("st-resnet") for f in ("model", "persistence")}
    return row


def _pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / b:+.1f}%"


def flow_table(rows: List[dict]) -> str:
    lines = ["| data | held out | model RMSE / MAE | persistence RMSE / MAE | vs persistence | climatology RMSE / MAE "
             "| RMSE -10% and MAE <= | time |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, p, c = r["model"], r["persistence"], r.get("climatology", {})
        ok = m["rmse"] <= 0.9 * p["rmse"] and m["mae"] <= p["mae"]
        lines.append(f"| {r['name']} | {'yes' if r['held_out'] else 'no'} | {m['rmse']:.3f} / {m['mae']:.3f} | "
                     f"{p['rmse']:.3f} / {p['mae']:.3f} | {_pct(m['rmse'], p['rmse'])} / {_pct(m['mae'], p['mae'])} | "
                     f"{c.get('rmse', float('nan')):.3f} / {c.get('mae', float('nan')):.3f} | "
                     f"{'met' if ok else '**not met**'} | {r['seconds']} s |")
    return "\n".join(lines)


def _leads(values: Optional[list], fmt: str = "{:.3f}") -> str:
    return " / ".join(fmt.format(v) for v in values) if values else "-"


def radar_table(rows: List[dict]) -> str:
    lines = ["| data | held out | MSE model | MSE extrapolation | MSE persistence | CSI@1 model | CSI@1 extrapolation "
             "| ahead of extrapolation at every lead (MSE, CSI@1) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, e, p = r["model"], r.get("extrapolation", {}), r.get("persistence", {})
        mse_ok = all(a <= b for a, b in zip(m["per_lead_mse"] or [], e.get("per_lead_mse") or []))
        csi_ok = all(a >= b for a, b in zip(m["per_lead_csi1"] or [], e.get("per_lead_csi1") or []))
        lines.append(f"| {r['name']} | {'yes' if r['held_out'] else 'no'} | {_leads(m['per_lead_mse'])} | "
                     f"{_leads(e.get('per_lead_mse'))} | {_leads(p.get('per_lead_mse'))} | "
                     f"{_leads(m['per_lead_csi1'])} | {_leads(e.get('per_lead_csi1'))} | "
                     f"{'yes' if mse_ok else 'no'}, {'yes' if csi_ok else 'no'} |")
    return "\n".join(lines)


def render(rows: List[dict]) -> str:
    parts = []
    flows = [r for r in rows if r["kind"] == "flow"]
    radars = [r for r in rows if r["kind"] == "radar"]
    if flows:
        parts.append(flow_table(flows))
        for r in flows:
            if r.get("st_resnet") and r["st_resnet"].get("model"):
                parts.append(f"{r['name']}: ST-ResNet's convention (active cells): model "
                             f"{r['st_resnet']['model']}, persistence {r['st_resnet']['persistence']}")
    if radars:
        parts.append(radar_table(radars))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(SUITE), metavar="NAME", help="these rows (default: all)")
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder (default: %(default)s)")
    ap.add_argument("--heldout", default=str(HELDOUT),
                    help="the folder benchmarks/heldout_data.py wrote (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "suite"))
    ap.add_argument("--render", metavar="JSONL", help="only print the tables of an earlier run")
    ap.add_argument("--list", action="store_true", help="list the rows and their protocols")
    ap.add_argument("--reuse", action="store_true",
                    help="rows whose run folder under OUT/runs holds metrics.json are read, not fitted again")
    args = ap.parse_args(argv)
    if args.list:
        for name, spec in SUITE.items():
            print(f"{name:<22} {spec['kind']:<6} {'held out' if spec['held_out'] else 'shared':<9} {spec['protocol']}")
        return 0
    if args.render:
        print(render([json.loads(line) for line in Path(args.render).read_text().splitlines() if line.strip()]))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for name in args.only or list(SUITE):
        try:
            row = run_one(name, out, Path(args.shared), Path(args.heldout), args.reuse)
        except (RuntimeError, FileNotFoundError) as exc:
            print(f"{name}: {exc}", flush=True)
            continue
        rows.append(row)
        with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{name}: done in {row['seconds']} s", flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
