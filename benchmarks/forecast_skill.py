"""Forecast skill of the toolkit's recipes (model head x loss x training option) on Moving MNIST
(the demo's data), BikeNYC and the KNMI radar sequence: the table of the README's section "Why
forecasts blur, and what helps", and its pictures.

Every (data set, recipe) runs in its own Python process (``convlstm.training.demo`` for Moving
MNIST, ``convlstm.training.fit`` on the files of ``../shared/data`` for the others), writes its run
folder under ``--out`` (``runs/skill`` by default: metrics.json, forecast.png, ...) and one line
of JSON; the script then prints the markdown table (MSE, MAE, SSIM where frames allow it, the
baselines, time) and copies each run's ``forecast.png`` to ``OUT/pictures/DATASET-RECIPE.png``.

Usage::

    python benchmarks/forecast_skill.py                                  # everything (hours on 2 cores)
    python benchmarks/forecast_skill.py --datasets mnist --jobs 2        # two runs at a time, one thread each
    python benchmarks/forecast_skill.py --datasets mnist --recipes direct "warp, block matching (the demo)"
    python benchmarks/forecast_skill.py --render runs/skill/results.jsonl   # the table again
    python benchmarks/forecast_skill.py --list                           # the recipes

BikeNYC and KNMI are evaluation data (see ../shared/data/README.md): they are read from
``--data-dir`` and never copied into the package.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WARP = "convlstm-warp"
# the demo's data and training budget; each recipe changes the model, loss or training option
MNIST_RECIPES = {
    # the demo before this change: Shi et al.'s patches, painted back by a 1x1 convolution
    "shi2015-4x4-patches": dict(model="shi2015-2x128", model_options={"filters": [32, 32], "kernel_size": 3,
                                                                      "patch_size": 4}, loss="bce", lr=5e-3),
    # convlstm-warp's heads, ConvLSTM at 16x16 (2x2 patches), 32 filters
    "direct": dict(model=WARP, model_options={"filters": [32], "patch_size": 2, "head": "direct"}),
    "residual": dict(model=WARP, model_options={"filters": [32], "patch_size": 2, "head": "residual"}),
    "warp, learned motion + correction": dict(model=WARP, model_options={"filters": [32], "patch_size": 2,
                                                                         "motion": "learned"}),
    "warp, block matching (the demo)": dict(model=WARP, model_options={"filters": [32], "patch_size": 2,
                                                                       "correction": False}),
    "warp, block matching, mse+ssim": dict(model=WARP, model_options={"filters": [32], "patch_size": 2,
                                                                      "correction": False}, loss="mse+ssim"),
    "warp, block matching, scheduled sampling": dict(model=WARP, model_options={"filters": [32], "patch_size": 2,
                                                                                "correction": False},
                                                     scheduled_sampling=0.5),
}
for _spec in list(MNIST_RECIPES.values())[1:]:
    _spec.setdefault("loss", "mse")
    _spec.setdefault("lr", 2e-3)
# the data sets' files and units; "default" recipes add nothing: `convlstm fit FILE --key K --layout L`
BIKENYC = dict(data="bikenyc/bikenyc_2014-08-04T23_2014-09-30T23_16x8.npz", key="data", layout="TCHW",
               units="bikes/hour")
BIKENYC_RECIPES = {
    "default": dict(),
    "keras-nextframe (README 2026-11-27)": dict(
        model="keras-nextframe", model_options={"filters": [32, 32], "kernel_sizes": [3, 3], "activation": "tanh",
                                                "output_activation": None},
        input_steps=6, output_steps=1, max_epochs=40, scheduler="cosine", lr=2e-3, batch_size=32),
    "residual": dict(model=WARP, model_options={"head": "residual"}),
}
KNMI = dict(data="radar/knmi_20100826_0000-0735_5min_crop256.npz", key="precip_mm_x100", layout="THW",
            scale=0.12, units="mm/h", thresholds=[1.0, 5.0])
KNMI_RECIPES = {
    "default": dict(),
    "balanced": dict(loss="balanced"),
    "residual": dict(model=WARP, model_options={"head": "residual"}),
}
DATASETS = {"mnist": MNIST_RECIPES, "bikenyc": BIKENYC_RECIPES, "knmi": KNMI_RECIPES}


def slug(name: str) -> str:
    """A file name for a run: letters, digits, '+', '.' and single dashes."""
    return "-".join("".join(c if c.isalnum() or c in "+." else " " for c in name).split())


def _run_one(dataset: str, recipe: str, out: Path, data_dir: Path) -> dict:
    """In the child process: train, evaluate, return the figures."""
    from convlstm.training import demo, fit

    run_dir = out / slug(f"{dataset}-{recipe}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    spec = dict(DATASETS[dataset][recipe])
    t0 = time.time()
    if dataset == "mnist":
        _, res = demo(run_dir, settings=spec, progress=False, verbose=False)
    else:
        base = dict(BIKENYC if dataset == "bikenyc" else KNMI)
        base["data"] = str(data_dir / base["data"])
        base.update(spec)
        fit(run_dir=str(run_dir), progress=False, **base)
        res = json.loads((run_dir / "metrics.json").read_text())
    seconds = time.time() - t0
    row = {"dataset": dataset, "recipe": recipe, "seconds": round(seconds), "spec": spec}
    for name in ("model", "persistence", "climatology"):
        r = res.get(name) or {}
        row[name] = {k: r.get(k) for k in ("mse", "mae", "rmse", "ssim") if r.get(k) is not None}
        row[name]["per_lead_mse"] = (r.get("per_lead_time") or {}).get("mse")
    row["model"].update({k: v for k, v in res["model"].items() if k.startswith(("csi@", "fss@"))})
    _save_samples(run_dir)
    pictures = out / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    if (run_dir / "forecast.png").is_file():
        shutil.copyfile(run_dir / "forecast.png", pictures / f"{slug(dataset + '-' + recipe)}.png")
    return row


SAMPLE = 0   # the test sample drawn in the row pictures


def _save_samples(run_dir: Path) -> None:
    """The run's forecast of the first test samples, in data units, for the row pictures."""
    import numpy as np
    import torch

    from convlstm.training import GridDataModule
    from convlstm.training.runs import load_module

    module, ckpt = load_module(run_dir)
    dm = GridDataModule.from_state(ckpt["GridDataModule"])
    dm.setup("test")
    x, y = next(iter(dm.dataloader("test")))
    with torch.no_grad():
        pred = module(x[:4]).float()
    units = [dm.inverse_transform(t).numpy() for t in (x[:4], y[:4], pred)]
    np.savez_compressed(run_dir / "samples.npz", inputs=units[0], truth=units[1], forecast=units[2])


def _row_picture(rows: list, dataset: str, out: Path) -> None:
    """One figure per data set: the last input, the truth, then each recipe's forecast of the same
    test sample, lead times in columns."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [r for r in rows if r["dataset"] == dataset and (out / slug(f"{dataset}-{r['recipe']}") / "samples.npz").is_file()]
    if not runs:
        return
    first = np.load(out / slug(f"{dataset}-{runs[0]['recipe']}") / "samples.npz")
    truth, last = first["truth"][SAMPLE, ..., 0], first["inputs"][SAMPLE, -1, ..., 0]
    lead = truth.shape[0]
    vmax = float(max(truth.max(), last.max()))
    ncols = lead + 2                       # a column of names, the last input, the lead times
    fig, axes = plt.subplots(len(runs) + 1, ncols, figsize=(1.3 * (lead + 1) + 2.4, 1.3 * (len(runs) + 1)),
                             squeeze=False, gridspec_kw={"width_ratios": [2.2] + [1] * (lead + 1)})
    panels = [("truth", [last] + list(truth))]
    for r in runs:
        f = np.load(out / slug(f"{dataset}-{r['recipe']}") / "samples.npz")["forecast"][SAMPLE, ..., 0]
        panels.append((r["recipe"], [None] + list(f)))
    for i, (name, frames) in enumerate(panels):
        axes[i, 0].axis("off")
        axes[i, 0].text(1.0, 0.5, name, ha="right", va="center", fontsize=7, wrap=True,
                        transform=axes[i, 0].transAxes)
        for j, frame in enumerate(frames, start=1):
            ax = axes[i, j]
            ax.set_xticks([]); ax.set_yticks([])
            if frame is None:
                ax.axis("off")
                continue
            ax.imshow(frame, vmin=0, vmax=vmax, cmap="viridis")
            if i == 0:
                ax.set_title("last input" if j == 1 else f"+{j - 1}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pictures" / f"{dataset}-row.png", dpi=90)
    plt.close(fig)


def _table(rows: list) -> str:
    lines = ["| data | recipe | MSE | MAE | SSIM | persistence MSE / SSIM | climatology MSE | time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, p, c = r["model"], r["persistence"], r["climatology"]
        ssim = f"{m['ssim']:.3f}" if "ssim" in m else "-"
        pss = f" / {p['ssim']:.3f}" if "ssim" in p else ""
        lines.append(f"| {r['dataset']} | {r['recipe']} | {m['mse']:.4g} | {m['mae']:.4g} | {ssim} | "
                     f"{p['mse']:.4g}{pss} | {c['mse']:.4g} | {r['seconds']} s |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--recipes", nargs="+", default=None, help="recipe names (default: all of each data set)")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "skill"))
    ap.add_argument("--render", metavar="JSONL", help="only print the table of an earlier run")
    ap.add_argument("--list", action="store_true", help="list the recipes")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at once (each then on one thread: OMP_NUM_THREADS=1); times are then not "
                         "comparable with a quiet one-job run")
    ap.add_argument("--child", nargs=2, metavar=("DATASET", "RECIPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.list:
        for ds, recipes in DATASETS.items():
            for name, spec in recipes.items():
                print(f"{ds:<8} {name:<28} {json.dumps(spec)}")
        return 0
    if args.child:
        print("RESULT " + json.dumps(_run_one(args.child[0], args.child[1], out, Path(args.data_dir))))
        return 0
    if args.render:
        rows = [json.loads(line) for line in Path(args.render).read_text().splitlines() if line.strip()]
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            _row_picture(rows, ds, Path(args.render).parent)
        print(_table(rows))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}", flush=True)
    rows = []
    log = out / "results.jsonl"
    todo = [(ds, r) for ds in args.datasets for r in DATASETS[ds] if not args.recipes or r in args.recipes]
    env = dict(os.environ, OMP_NUM_THREADS="1") if args.jobs > 1 else None
    running = []
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            ds, recipe = todo.pop(0)
            proc = subprocess.Popen([sys.executable, __file__, "--child", ds, recipe, "--out", str(out),
                                     "--data-dir", args.data_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
            running.append((ds, recipe, proc))
        ds, recipe, proc = running.pop(0)
        stdout, stderr = proc.communicate()
        found = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not found:
            print(f"{ds} {recipe}: failed (exit {proc.returncode})\n{stderr[-3000:]}", flush=True)
            continue
        row = json.loads(found[-1][len("RESULT "):])
        rows.append(row)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{ds} {recipe}: MSE {row['model']['mse']:.4g}, SSIM {row['model'].get('ssim', float('nan')):.3f}, "
              f"{row['seconds']} s", flush=True)
    for ds in args.datasets:
        _row_picture(rows, ds, out)
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
