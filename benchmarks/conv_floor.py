"""The floor that the convolutions set: at most how much faster than plain PyTorch can a ConvLSTM
that runs ``"concat"``'s convolutions be, if everything else it does took no time?

For each configuration of ``bench.py`` and each mode, one process times, alternating repetition by
repetition (medians):

- ``plain``: ``bench.py``'s plain ConvLSTM step (``plain_convlstm.py``), under the precision asked;
- ``ours``: ``bench.py``'s ``ours:auto`` step, under the same precision;
- ``convs``: the convolutions alone that ``"concat"`` runs for that step, through the same
  :class:`convlstm._recurrence.StepConvolutions` calls, in the same precision and channels-last
  layout, on constant tensors of the step's shapes. Inference: the first step's input-only
  convolution (zero initial state) and ``T - 1`` convolutions over :math:`[x_t, h_{t-1}]`.
  Training adds ``T - 1`` state gradients and the weight gradients over the steps' frames in
  ``ConcatRecurrence``'s chunks.

``plain / convs`` is then the largest speed-up over plain that any implementation doing these
convolutions with torch's (oneDNN's) kernels could show; ``ours / convs`` how close ours is. A
target above the floor needs fewer or cheaper convolutions, not a better loop.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/conv_floor.py --precision bf16 --reps 7
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402

import bench  # noqa: E402
from convlstm._ops import channels_last_format  # noqa: E402
from convlstm._recurrence import WEIGHT_GRADIENT_CHUNKS, StepConvolutions  # noqa: E402


def concat_convolutions(cfg, mode: str, dtype: torch.dtype):
    """A function running the convolutions of one ``"concat"`` step of configuration ``cfg``."""
    b, t, rows, cols, cin, f, k = cfg
    fmt = channels_last_format(2)
    convs = StepConvolutions([k // 2, k // 2], 2)
    convs.zero_start = True

    def full(*shape, value=0.01):
        return torch.full(shape, value, dtype=dtype).contiguous(memory_format=fmt)

    z = full((t + 1) * b, cin + f, rows, cols).view(t + 1, b, cin + f, rows, cols)
    w_ih = convs.weight_layout(full(4 * f, cin, k, k))
    w_hh = convs.weight_layout(full(4 * f, f, k, k))
    w_cat = convs.weight_layout(torch.cat([w_ih, w_hh], dim=1))
    bias = torch.zeros(4 * f, dtype=dtype)
    grads = full(t * b, 4 * f, rows, cols).view(t, b, 4 * f, rows, cols)
    prepared = convs.prepare_backward(w_hh)
    chunk = max(1, math.ceil(t / WEIGHT_GRADIENT_CHUNKS))

    def run():
        convs.forward(z[0, :, :cin], w_ih, bias)
        for step in range(1, t):
            convs.forward(z[step], w_cat, bias)
        if mode == "train":
            for step in range(t - 1, 0, -1):
                convs.state_gradient(grads[step], z[step, :, cin:], prepared, step)
            for start in reversed(range(0, t, chunk)):
                stop = min(start + chunk, t)
                convs.weight_gradients(grads[start:stop], z[start:stop], start, w_ih, w_hh, w_cat, True, True,
                                       dtype == torch.float32)

    return run


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--configs", type=int, nargs="+", default=list(range(len(bench.CONFIGS))))
    p.add_argument("--modes", nargs="+", default=bench.MODES, choices=bench.MODES)
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args(argv)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    suffix = "@bf16" if args.precision == "bf16" else ""
    print(bench.machine_line(bench.machine()))
    print(f"Command: `{' '.join(['benchmarks/conv_floor.py'] + sys.argv[1:])}`; {torch.get_num_threads()} threads.\n")
    print("| configuration | mode | plain ms | ours ms | concat's convolutions alone ms | plain / convolutions "
          "(the floor's speed-up) | ours vs plain |")
    print("|---|---|---|---|---|---|---|")
    for ci in args.configs:
        cfg = bench.CONFIGS[ci]
        for mode in args.modes:
            runs = {"plain": bench._step_fn("plain" + suffix, cfg, mode),
                    "ours": bench._step_fn("ours:auto" + suffix, cfg, mode),
                    "convs": concat_convolutions(cfg, mode, dtype)}
            med = bench.alternate_medians_ms(runs, args.reps)
            print(f"| {bench.CONFIG_NAMES[ci]} {tuple(cfg)} | {mode} | {med['plain']:.1f} | {med['ours']:.1f} "
                  f"| {med['convs']:.1f} | {med['plain'] / med['convs']:.2f}x | {med['plain'] / med['ours']:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
