#!/usr/bin/env bash
# Run the `convlstm` command of a virtual environment where the built wheel is installed (with the
# train extra), in an empty folder outside the source tree, as a user of the wheel would:
#
#     tools/wheel_smoke.sh VENV VERSION
#
# --version, models, config (the configs shipped inside the wheel), fit --help, then a 1-epoch fit
# (with its evaluation and pictures) and a forecast on a small series written here. Exits non-zero
# at the first command that fails or a file that does not appear.
set -euo pipefail
venv="$(cd "$1" && pwd)"
version="$2"
bin="$venv/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
unset PYTHONPATH

step() { echo "wheel-check: $*" >&2; "$@"; }

# the package comes from the wheel in the environment, not from a source tree
"$bin/python" - "$venv" <<'EOF'
import pathlib, sys
import convlstm
where = pathlib.Path(convlstm.__file__).resolve()
assert pathlib.Path(sys.argv[1]).resolve() in where.parents, f"convlstm imported from {where}"
assert (where.parent / "assets" / "MNIST_LICENSE.txt").is_file(), "the wheel lacks the bundled MNIST assets"
EOF
test "$(step "$bin/convlstm" --version)" = "convlstm $version"
step "$bin/convlstm" models | grep convlstm-warp >/dev/null
step "$bin/convlstm" config | grep flow >/dev/null
step "$bin/convlstm" config flow | grep "^model:" >/dev/null
step "$bin/convlstm" fit --help | grep -- --max-epochs >/dev/null

# 120 frames of 12x12, a wave moving across the grid, stored (time, rows, cols)
"$bin/python" -c "
import numpy as np
t, r, c = np.ogrid[:120, :12, :12]
np.save('waves.npy', np.sin(0.5 * c + 0.3 * r - 0.4 * t).astype('float32'))"
step "$bin/convlstm" fit waves.npy --layout THW --max-epochs 1 --no-progress --run-dir runs/waves
for f in checkpoints/last.ckpt config.yaml metrics.json forecast.png forecast.gif learning_curve.png; do
    test -s "runs/waves/$f" || { echo "wheel-check: fit did not write runs/waves/$f"; exit 1; }
done
step "$bin/convlstm" predict runs/waves waves.npy --out next.npy
test -s next.npy
echo "wheel-check: the wheel's convlstm $version works"
