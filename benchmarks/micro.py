"""Micro-benchmarks behind the design choices of the training node and the automatic rule
(``RESULTS.md``, "What made training faster" and "Why 3x3 kernels stay at about 1.1x").

Usage (each prints median milliseconds of 7 calls after one warm-up, 2 threads)::

    python benchmarks/micro.py nnpack-batch   # NNPACK: one call per batch vs one per image, vs oneDNN
    python benchmarks/micro.py weight-split   # weight gradient over [x, h] vs its two parts
    python benchmarks/micro.py winograd       # Winograd F(4x4, 3x3) in torch matmuls vs oneDNN
    python benchmarks/micro.py omp-wait       # radar inference (nnpack) and config-1 training (concat)
                                              # with OpenMP's default spinning vs OMP_WAIT_POLICY=PASSIVE

Run by hand on a quiet machine; the figures quoted in RESULTS.md are from 2026-11-27.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

CL = torch.channels_last
CONV_BACKWARD = torch.ops.aten.convolution_backward


def median_ms(fn, reps: int = 7) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def nnpack_batch() -> None:
    """A stride-1 'same' 5x5 convolution through NNPACK with the whole batch in one call (its
    batched algorithm) and one call per image (its single-image algorithm), and through oneDNN
    (channels-last). Shapes: the radar configuration's forward (65 -> 256) and state gradient
    (256 -> 64) at 128x128, and smaller images."""
    torch._nnpack_available()  # initialises NNPACK
    nnpack = torch._nnpack_spatial_convolution
    for batch, cin, cout, size in [(2, 65, 256, 128), (2, 256, 64, 128), (4, 256, 64, 64), (4, 80, 256, 64),
                                   (8, 256, 64, 32), (8, 80, 256, 32), (16, 144, 512, 16)]:
        x = torch.randn(batch, cin, size, size)
        w = torch.randn(cout, cin, 5, 5)
        b = torch.zeros(cout)
        images = [xi.contiguous() for xi in x.split(1)]
        whole = median_ms(lambda: nnpack(x, w, b, [2, 2], [1, 1]))
        per_image = median_ms(lambda: [nnpack(xi, w, b, [2, 2], [1, 1]) for xi in images])
        xl, wl = x.contiguous(memory_format=CL), w.contiguous(memory_format=CL)
        onednn = median_ms(lambda: F.conv2d(xl, wl, None, 1, 2))
        print(f"{(batch, cin, cout, size, 5)}: NNPACK batch {whole:.1f}  NNPACK per image {per_image:.1f}  "
              f"oneDNN {onednn:.1f}")


def weight_split() -> None:
    """The weight gradient of the concatenated convolution over all T*B frames in one call, or
    split into the state part (F channels) and the input part (Cin channels), each copied to a
    dense channels-last tensor first (as the training node does)."""
    for batch, steps, size, cin, nf, k in [(4, 10, 64, 16, 32, 3), (16, 10, 16, 16, 128, 5), (8, 12, 32, 2, 64, 3),
                                           (2, 20, 128, 1, 64, 5)]:
        p = k // 2
        z = torch.randn(steps * batch, cin + nf, size, size).contiguous(memory_format=CL)
        g = torch.randn(steps * batch, 4 * nf, size, size).contiguous(memory_format=CL)
        w = (0.05 * torch.randn(4 * nf, cin + nf, k, k)).contiguous(memory_format=CL)

        def combined():
            CONV_BACKWARD(g, z, w, [4 * nf], [1, 1], [p, p], [1, 1], False, [0, 0], 1, [False, True, True])

        def split():
            states = z[:, cin:].contiguous(memory_format=CL)
            inputs = z[:, :cin].contiguous(memory_format=CL) if cin > 1 else z[:, :cin].contiguous()
            CONV_BACKWARD(g, states, w[:, cin:], [4 * nf], [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                          [False, True, True])
            CONV_BACKWARD(g, inputs, w[:, :cin], None, [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                          [False, True, False])

        print(f"{(batch, steps, size, size, cin, nf, k)}: one call {median_ms(combined, 3):.0f}  "
              f"split {median_ms(split, 3):.0f}")


def _winograd_matrices():
    """F(4x4, 3x3) (Lavin and Gray, 2016): input, kernel and output transforms as Kronecker
    products acting on flattened 6x6 / 3x3 tiles."""
    bt = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
    g = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
    at = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                      dtype=torch.float64)
    return torch.kron(bt, bt).float(), torch.kron(g, g).float(), torch.kron(at, at).float()


def winograd() -> None:
    """A 'same' 3x3 convolution by Winograd F(4x4, 3x3) written with torch matrix products (tile
    gather, 36x36 input transform, 36 batched GEMMs, 16x36 output transform) against oneDNN,
    time and error relative to a float64 convolution."""
    kb, kg, ka = _winograd_matrices()
    for batch, cin, cout, size in [(4, 48, 128, 64), (8, 66, 256, 32)]:
        x = torch.randn(batch, cin, size, size).contiguous(memory_format=CL)
        w = 0.1 * torch.randn(cout, cin, 3, 3)
        u = (w.reshape(cout * cin, 9) @ kg.T).T.reshape(36, cout, cin).transpose(1, 2).contiguous()
        tiles_per_side = size // 4

        def wino():
            xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()
            side = size + 2
            tiles = xp.as_strided((6, 6, batch, tiles_per_side, tiles_per_side, cin),
                                  (side * cin, cin, side * side * cin, 4 * side * cin, 4 * cin, 1)).reshape(36, -1)
            v = (kb @ tiles).view(36, -1, cin)
            out = (ka @ torch.bmm(v, u).view(36, -1)).view(4, 4, batch, tiles_per_side, tiles_per_side, cout)
            return out.permute(2, 3, 0, 4, 1, 5).reshape(batch, size, size, cout).permute(0, 3, 1, 2)

        wl = w.contiguous(memory_format=CL)
        exact = F.conv2d(x.double(), w.double(), padding=1)
        scale = float(exact.abs().max())
        err_w = float((wino() - exact).abs().max()) / scale
        err_d = float((F.conv2d(x, wl, padding=1) - exact).abs().max()) / scale
        print(f"{(batch, cin, cout, size, 3)}: oneDNN {median_ms(lambda: F.conv2d(x, wl, padding=1)):.2f} ms "
              f"(error {err_d:.1e})  Winograd {median_ms(wino):.2f} ms (error {err_w:.1e})")


def _omp_worker(which: str) -> None:
    """One timed model call, in a process whose OpenMP settings come from its environment."""
    import convlstm

    torch.set_num_threads(2)
    if which == "radar-infer":  # auto = nnpack here
        layer = convlstm.ConvLSTM2D(64, 5, padding="same", return_sequences=True, data_format="channels_first").eval()
        x = torch.randn(2, 20, 1, 128, 128)

        def call():
            with torch.no_grad():
                layer(x)
    else:  # configuration 1, a training step (auto = concat)
        layer = convlstm.ConvLSTM2D(32, 3, padding="same", return_sequences=True, data_format="channels_first")
        x = torch.randn(4, 10, 16, 64, 64)

        def call():
            layer(x).mean().backward()
    print(f"{median_ms(call, 5):.1f}")


def omp_wait() -> None:
    """NNPACK runs on its own thread pool: OpenMP's threads, which torch's other operations use,
    spin for a while after each parallel region and take the two cores from it. Each setting
    runs in its own process (the policy is read at start-up), alternated three times."""
    import os
    import subprocess
    import sys

    for which in ("radar-infer", "config1-train"):
        times = {"default": [], "OMP_WAIT_POLICY=PASSIVE": []}
        for _ in range(3):
            for setting in times:
                env = dict(os.environ)
                if setting != "default":
                    env["OMP_WAIT_POLICY"] = "PASSIVE"
                out = subprocess.run([sys.executable, __file__, "omp-worker", which], env=env, check=True,
                                     capture_output=True, text=True).stdout
                times[setting].append(float(out.split()[-1]))
        print(which + ": " + "  ".join(f"{k} {statistics.median(v):.1f} ms ({', '.join(f'{t:.0f}' for t in v)})"
                                       for k, v in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["nnpack-batch", "weight-split", "winograd", "omp-wait", "omp-worker"])
    parser.add_argument("worker_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.which == "omp-worker":
        _omp_worker(args.worker_args[0])
        return
    {"nnpack-batch": nnpack_batch, "weight-split": weight_split, "winograd": winograd, "omp-wait": omp_wait}[args.which]()


if __name__ == "__main__":
    main()
