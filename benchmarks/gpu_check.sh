#!/usr/bin/env bash
# The device check of issue 14: every compute path on CUDA against the CPU float64 reference
# (float32, bfloat16 and float16 autocast, forward and backward), then ours vs the plain
# conv-over-concat loop (cuDNN) vs Keras 3 (torch backend) on bench.py's configurations.
# All results go to one file: $1, else $OUT/gpu_check.txt, else ./gpu_check.txt.
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine (at most ~8 minutes)
#   bash benchmarks/gpu_check.sh /tmp/dry.txt --device cpu --quick   # dry run of the logic on a CPU
#
# It uses the python that has torch (PYTHON, else python3), installs this checkout into it
# without touching its torch (pip install -e . --no-deps; if that cannot run, or with
# GPU_CHECK_NO_INSTALL=1, src/ on PYTHONPATH),
# and never stops at the first failure: each case is written down as ok or FAIL.
set -u
cd "$(dirname "$0")/.."
RESULT="${1:-${OUT:-.}/gpu_check.txt}"
[ $# -gt 0 ] && shift
mkdir -p "$(dirname "$RESULT")"
PY="${PYTHON:-python3}"
{
  echo "# gpu_check.sh $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" \
    || { echo "FAIL: $PY has no torch"; exit 2; }
} > "$RESULT.head" 2>&1
cat "$RESULT.head"
# the package without its dependencies (torch as installed there); numpy is torch's own dependency
if [ "${GPU_CHECK_NO_INSTALL:-0}" = 1 ]; then
  echo "GPU_CHECK_NO_INSTALL=1: not installed, src/ on PYTHONPATH" >> "$RESULT.head"
elif "$PY" -m pip install -q --no-deps --no-build-isolation -e . >> "$RESULT.head" 2>&1; then
  echo "installed: pip install -e . --no-deps" >> "$RESULT.head"
else
  echo "pip install -e . failed (see above): using src/ on PYTHONPATH" >> "$RESULT.head"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=torch OMP_WAIT_POLICY=PASSIVE
timeout 460 "$PY" benchmarks/gpu_check.py --out "$RESULT.body" "$@"
status=$?
[ $status -eq 124 ] && echo "FAIL: gpu_check.py stopped after 460 s (partial results above)" >> "$RESULT.body"
cat "$RESULT.head" "$RESULT.body" > "$RESULT" 2>/dev/null
rm -f "$RESULT.head" "$RESULT.body"
echo "exit status $status; results in $RESULT"
exit $status
