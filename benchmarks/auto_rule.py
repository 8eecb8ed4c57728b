"""``fused`` against ``concat`` on layers of every rank and size, the measurement behind rule 4 of
``implementation="auto"`` (``convlstm._paths.auto_path``): where ``concat`` applies, it runs.

Each layer (``padding='same'``, ``return_sequences=True``) runs in one process with both paths
alternating repetition by repetition (medians), in float32 and under bfloat16 autocast, inference
(``torch.no_grad``) and a training step (forward, the mean of the outputs as loss, backward).
The last column is ``concat``'s time over ``fused``'s (below 1: ``concat`` is faster).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/auto_rule.py --reps 9
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402

import bench  # noqa: E402
import convlstm  # noqa: E402

# (rank, batch, steps, frame size, input channels, filters, kernel)
LAYERS = [
    (2, 4, 5, (16, 16), 16, 32, 3),
    (2, 8, 10, (32, 32), 8, 32, 3),
    (2, 16, 8, (8, 8), 64, 64, 3),
    (2, 4, 10, (64, 64), 16, 32, 3),
    (2, 1, 10, (16, 16), 64, 16, 3),
    (2, 2, 20, (32, 32), 32, 8, 3),
    (2, 32, 6, (8, 8), 4, 16, 3),
    (1, 8, 20, (64,), 16, 32, 3),
    (3, 2, 6, (8, 16, 16), 4, 16, 3),
    (2, 4, 10, (24, 24), 8, 16, 5),
    (2, 1, 10, (16, 16), 32, 16, 3),
    (2, 4, 10, (16, 16), 48, 16, 3),
    (2, 4, 10, (32, 32), 64, 16, 3),
    (2, 8, 10, (16, 16), 64, 16, 3),
]
LAYER_CLASSES = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}


def step(path: str, layer_spec, mode: str, precision: str):
    rank, batch, steps, spatial, cin, filters, kernel = layer_spec
    torch.manual_seed(0)
    layer = LAYER_CLASSES[rank](filters, kernel, padding="same", return_sequences=True, in_channels=cin,
                                implementation=path)
    x = torch.randn((batch, steps) + tuple(spatial) + (cin,))
    params = list(layer.parameters())

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if mode == "train":
                for p in params:
                    p.grad = None
                y = layer(x)
                (y.float().sum() / y.numel()).backward()
            else:
                with torch.no_grad():
                    layer(x)
        assert layer.last_path == path, (layer.last_path, path)

    return once


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=9)
    args = p.parse_args(argv)
    print(bench.machine_line(bench.machine()))
    print(f"Command: `{' '.join(['benchmarks/auto_rule.py'] + sys.argv[1:])}`; {torch.get_num_threads()} threads.\n")
    print("| rank, B, T, frame, Cin, F, k | precision | mode | fused ms | concat ms | concat / fused |")
    print("|---|---|---|---|---|---|---|")
    faster = total = 0
    for spec in LAYERS:
        for precision in ("fp32", "bf16"):
            for mode in bench.MODES:
                runs = {path: step(path, spec, mode, precision) for path in ("fused", "concat")}
                med = bench.alternate_medians_ms(runs, args.reps)
                ratio = med["concat"] / med["fused"]
                faster += ratio < 1
                total += 1
                print(f"| {spec} | {precision} | {mode} | {med['fused']:.2f} | {med['concat']:.2f} | {ratio:.2f} |",
                      flush=True)
    print(f"\nconcat faster in {faster} of {total}")


if __name__ == "__main__":
    main()
