#!/usr/bin/env bash
# Where the time of convlstm-warp goes on a CUDA GPU, in one call of at most ~8 minutes:
#   1. the device (torch, CUDA, the GPU; whether lightning and pysteps import);
#   2. the layer benchmark: gpu_check.py's speed part (ours vs the plain conv-over-concat loop, and
#      Keras where installed) on bench.py's four configurations, float32 and bfloat16, short budget;
#   3. the training-step breakdown of convlstm-warp (step_breakdown.py --device cuda) on the KNMI,
#      BikeNYC and Moving MNIST shapes, float32 and bf16-mixed, with the host-device copies of the
#      plain training loop counted under torch.profiler;
#   4. a short real fit (2 epochs of synthetic KNMI-shaped data, --accelerator gpu --precision
#      bf16-mixed) split into its phases, with the copies between host and device of a few steps of
#      its Lightning loop counted (the batch's own transfer is 2 HtoD copies per step: x and y).
# Every part is timed and written under $OUT (default ./gpu_out): its log, its JSON, and
# summary.md / summary.json at the end. A part that fails or runs out of time is written down
# and the others go on.
#
#   bash benchmarks/gpu_speed_check.sh                  # on the GPU machine
#   OUT=/tmp/smoke bash benchmarks/gpu_speed_check.sh --cpu-smoke   # the same logic on a CPU, tiny sizes
#
# PYTHON picks the interpreter (default python3); src/ goes on PYTHONPATH (nothing is installed).
# GPU_SPEED_LIMIT sets the whole run's limit in seconds (default 470).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
LIMIT="${GPU_SPEED_LIMIT:-470}"
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=PASSIVE KERAS_BACKEND=torch
START=$(date +%s)
DEADLINE=$((START + LIMIT))
STATUS="$OUT/parts.tsv"
: > "$STATUS"

# part NAME BUDGET_S COMMAND...: run COMMAND with at most BUDGET_S seconds (less when the whole run's
# limit is nearer), its output in $OUT/NAME.log, and a line "NAME <tab> exit status <tab> seconds" in parts.tsv
part() {
  local name=$1 budget=$2
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  [ "$budget" -gt "$left" ] && budget=$left
  if [ "$budget" -lt 10 ]; then
    printf '%s\tskipped (no time left)\t0\n' "$name" >> "$STATUS"
    echo "== $name: skipped, no time left"
    return
  fi
  echo "== $name (at most ${budget} s): $*"
  local t0 t1 rc
  t0=$(date +%s.%N)
  timeout "$budget" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  [ $rc -eq 124 ] && rc="124 (stopped after ${budget} s)"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >> "$STATUS"
  echo "   exit status $rc, ${secs} s; log $OUT/$name.log"
  tail -n 3 "$OUT/$name.log" | sed 's/^/   | /'
}

if [ $SMOKE = 1 ]; then
  DEV=cpu
  LAYER=(--device cpu --quick --reps 3 --budget 0.5)
  STEPS=(--device cpu --steps 2 --warmup 1 --scale-down 4 --threads 1 --count-transfers 1)
  FIT=(--device cpu --precision 32 --epochs 2 --limit-train-batches 3 --scale-down 4 --threads 1 --count-transfers 1)
else
  DEV=cuda
  LAYER=(--device cuda --reps 5 --budget 2)
  STEPS=(--device cuda --steps 10 --warmup 3 --count-transfers 3)
  FIT=(--device cuda --precision bf16-mixed --epochs 2 --count-transfers 5)
fi

part device 60 "$PY" - "$OUT/device.json" <<'EOF'
import json, platform, subprocess, sys
info = {"python": platform.python_version()}
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
except ImportError as exc:
    info["torch"] = f"not importable: {exc}"
for name in ("lightning", "pysteps", "keras"):
    try:
        info[name] = getattr(__import__(name), "__version__", "importable")
    except Exception as exc:  # noqa: BLE001 - written down
        info[name] = f"not importable: {type(exc).__name__}"
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                         "--format=csv,noheader"], capture_output=True, text=True,
                                        timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
print(json.dumps(info, indent=1))
open(sys.argv[1], "w").write(json.dumps(info, indent=1))
EOF
part layer_benchmark 150 "$PY" benchmarks/gpu_check.py "${LAYER[@]}" --skip-accuracy \
  --precisions float32 bfloat16 --out "$OUT/layer_benchmark.txt"
part step_breakdown_fp32 100 "$PY" benchmarks/step_breakdown.py "${STEPS[@]}" --precision 32 \
  --json "$OUT/step_breakdown_fp32.json"
part step_breakdown_bf16 100 "$PY" benchmarks/step_breakdown.py "${STEPS[@]}" --precision bf16-mixed \
  --json "$OUT/step_breakdown_bf16.json"
part fit_knmi 160 "$PY" benchmarks/step_breakdown.py --fit --shapes knmi "${FIT[@]}" --json "$OUT/fit_knmi.json"

# the summary: every part's status and time, the tables, and the copies per step
"$PY" - "$OUT" "$DEV" "$(( $(date +%s) - START ))" <<'EOF'
import json, sys
from pathlib import Path
out, device, wall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
parts = [line.rstrip("\n").split("\t") for line in (out / "parts.tsv").read_text().splitlines() if line.strip()]
summary = {"device": device, "wall_s": wall, "parts": [{"name": n, "status": s, "seconds": float(t)} for n, s, t in parts]}
md = [f"# convlstm speed check on {device}", ""]
info = out / "device.json"
if info.is_file():
    summary["machine"] = json.loads(info.read_text())
    md += ["```", json.dumps(summary["machine"], indent=1), "```", ""]
md += ["| part | exit status | seconds |", "|---|---|---:|"] + [f"| {n} | {s} | {t} |" for n, s, t in parts]
md += ["", f"whole run: {wall} s", ""]
layer = out / "layer_benchmark.txt"
if layer.is_file():
    md += ["## layer benchmark", ""] + [l for l in layer.read_text().splitlines() if l.startswith("|")] + [""]
sys.path.insert(0, str(Path.cwd() / "benchmarks"))
try:
    from step_breakdown import markdown_fit, markdown_step
except Exception as exc:  # noqa: BLE001 - the tables are then left out, the JSON files stay
    markdown_fit = markdown_step = None
    md += [f"(tables left out: step_breakdown does not import: {exc})", ""]
transfers = {}
for name in ("step_breakdown_fp32", "step_breakdown_bf16", "fit_knmi"):
    f = out / f"{name}.json"
    if not f.is_file():
        continue
    data = json.loads(f.read_text())
    md += [f"## {name}", ""]
    for shape, r in data["shapes"].items():
        if markdown_step is not None:
            md += [(markdown_fit(r) if name.startswith("fit") else markdown_step(r)), ""]
        if r.get("transfers"):
            transfers[f"{name}/{shape}"] = r["transfers"]
summary["transfers_per_step"] = transfers
md += ["## host-device traffic per training step", "",
       "| run | HtoD | HtoD beyond the batch's 2 | DtoH | .item() reads | syncs |", "|---|---:|---:|---:|---:|---:|"]
for k, tr in transfers.items():
    p = tr["per_step"]
    md.append(f"| {k} | {p['htod']:g} | {tr['htod_beyond_batch']:g} | {p['dtoh']:g} | {p['item']:g} | {p['sync']:g} |")
md += ["", "HtoD/DtoH: CUDA Memcpy events; syncs: cudaStreamSynchronize/cudaDeviceSynchronize calls; .item() reads: "
           "aten::_local_scalar_dense, of CPU tensors too (AdamW's step counts on the CPU), so only those that "
           "come with a DtoH copy or a sync wait for the GPU"]
if device == "cpu":
    md += ["", "(a CPU run: no copies between host and device exist)"]
(out / "summary.md").write_text("\n".join(md) + "\n")
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print("\n".join(md))
EOF
echo "results under $OUT (summary.md, summary.json, one log and JSON per part); $(( $(date +%s) - START )) s"
