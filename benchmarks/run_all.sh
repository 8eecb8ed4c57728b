#!/bin/sh
# The full benchmark as recorded in RESULTS.md (30-60 minutes on the 2-core machine):
# the checkpointing study at T=64, then every implementation on the four configurations.
# Run it in the background:  nohup sh benchmarks/run_all.sh > benchmarks/run_all.log 2>&1 &
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-.venv/bin/python}
$PY benchmarks/bench.py --reps 4 --budget 30 --out benchmarks/results.json
$PY benchmarks/bench.py --checkpoint --impls ours:auto ours:checkpoint ours:checkpoint4 --reps 3 --budget 5 \
    --out benchmarks/results_checkpoint.json
