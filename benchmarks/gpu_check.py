"""Every compute path on one device against the CPU float64 reference, then a benchmark there.

Run by ``benchmarks/gpu_check.sh`` (which installs the package first); by hand::

    python benchmarks/gpu_check.py --out gpu_check.txt               # CUDA (the default device)
    python benchmarks/gpu_check.py --device cpu --quick --out dry.txt  # dry run of the same logic

Part 1, accuracy: for each path (``reference``, ``fused``, ``concat``, ``nnpack``, ``fft``,
``auto``) and precision (float32; bfloat16 and float16 autocast), forward and backward of a
ConvLSTM2D on the device against the reference path in float64 on the CPU: the largest error of
the output and of every gradient relative to its scale, the path that ran (``last_path``, and the
loop in ``last_path_detail``), and any warning (``nnpack`` is CPU float32 only, ``fft`` float32
or float64 only: where they cannot run they must say that ``concat`` ran). Bounds: float32 2e-4 (TF32 convolutions on Ampere and later
round to 10 bits; set ``--no-tf32`` for 1e-5), 16-bit formats 3e-2 (float16's 10-bit mantissa
is more precise than bfloat16's 7; both keep the cell state in float32).

Part 2, speed: ours (``auto``) against the plain conv-over-concat loop
(``plain_convlstm.py``: cuDNN convolutions on CUDA) and Keras 3 with the torch backend (when
installed), float32 and the 16-bit autocast formats, inference and a training step, on the
benchmark configurations of ``bench.py``; median of the repetitions with the device synchronised.

Every result goes to one text file; a failure in one case is written down and the rest go on.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("KERAS_BACKEND", "torch")

import torch  # noqa: E402

from bench import CONFIG_NAMES, CONFIGS, machine_line, machine  # noqa: E402  (one list of configurations)

PATHS = ["reference", "fused", "concat", "nnpack", "fft", "auto"]
TOL = {"float32": 2e-4, "bfloat16": 3e-2, "float16": 3e-2}


class Report:
    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, "w", buffering=1)
        self.failures = 0

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.fh.write(line + "\n")


def _autocast(device: str, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=getattr(torch, dtype))


def _precisions(device: str) -> list:
    out = ["float32", "bfloat16"]
    if device == "cuda" or _cpu_float16_autocast():
        out.append("float16")
    return out


def _cpu_float16_autocast() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1)).dtype == torch.float16
    except (RuntimeError, AssertionError):
        return False


def _loss(y: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, y.numel(), device=y.device, dtype=torch.float64).view(y.shape)
    return (y.double() * w).sum()


def accuracy(report: Report, device: str, quick: bool) -> None:
    import convlstm

    report("## Part 1: every path against the CPU float64 reference (max error / scale)")
    b, t, size, cin, nf = (2, 4, 8, 3, 8) if quick else (2, 8, 16, 4, 16)
    for kernel in ((3,) if quick else (3, 5)):
        torch.manual_seed(0)
        ref = convlstm.ConvLSTM2D(nf, kernel, padding="same", return_sequences=True, in_channels=cin,
                                  implementation="reference").double()
        with torch.no_grad():
            ref.cell.bias.copy_(torch.linspace(-0.5, 0.5, ref.cell.bias.numel()))
        x = torch.randn(b, t, size, size, cin, generator=torch.Generator().manual_seed(1))
        xr = x.double().requires_grad_()
        y_ref = ref(xr)
        _loss(y_ref).backward()
        g_ref = [xr.grad] + [p.grad for p in ref.parameters()]
        for precision in _precisions(device):
            for path in PATHS:
                name = f"k={kernel} {precision:8s} {path:9s}"
                try:
                    layer = convlstm.ConvLSTM2D(nf, kernel, padding="same", return_sequences=True, in_channels=cin,
                                                implementation=path)
                    layer.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
                    layer.to(device)
                    xd = x.to(device, copy=True).requires_grad_()  # a copy even on the CPU
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        with _autocast(device, precision):
                            y = layer(xd)
                        ran, detail = layer.last_path, dict(layer.last_path_detail)
                        _loss(y).backward()
                        with torch.no_grad(), _autocast(device, precision):
                            y_inf = layer(x.to(device))
                        inf_loop = layer.last_path_detail["loop"]
                    grads = [xd.grad] + [p.grad for p in layer.parameters()]
                    errs = [_rel(y, y_ref), _rel(y_inf, y_ref)] + [_rel(g, gr) for g, gr in zip(grads, g_ref)]
                    ok = max(errs) <= TOL[precision]
                    warned = [str(w.message) for w in caught if "cannot run here" in str(w.message)]
                    # NNPACK is CPU float32 only; the spectral path runs on any device, float32/64 only
                    expect_warning = ((path == "nnpack" and (device != "cpu" or precision != "float32"))
                                      or (path == "fft" and precision != "float32"))
                    ok = ok and (bool(warned) == expect_warning)
                    report(f"{'ok  ' if ok else 'FAIL'} {name} ran {ran:9s} train loop {detail['loop']:16s} "
                           f"infer loop {inf_loop:17s} conv {str(detail['compute_dtype']):15s} "
                           f"out {errs[0]:.1e} infer {errs[1]:.1e} grads max {max(errs[2:]):.1e} "
                           f"(tol {TOL[precision]:.0e})" + (f" warned: {warned[0][:120]}" if warned else ""))
                    report.failures += not ok
                except Exception:  # noqa: BLE001 - written down, the other cases go on
                    report.failures += 1
                    report(f"FAIL {name} raised: {traceback.format_exc().strip().splitlines()[-1]}")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _build(impl: str, cfg, device: str, precision: str):
    b, t, rows, cols, cin, f, k = cfg
    torch.manual_seed(0)
    if impl == "plain":
        from plain_convlstm import PlainConvLSTM

        model = PlainConvLSTM(cin, f, k).to(device)
        x = torch.randn(b, t, cin, rows, cols, device=device)
        return model, list(model.parameters()), x, lambda x, train: model(x)
    if impl == "keras-torch":
        import keras

        keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
        with torch.device(device):
            model = keras.layers.ConvLSTM2D(f, k, padding="same", return_sequences=True)
            x = torch.randn(b, t, rows, cols, cin, device=device)
            with torch.no_grad():
                model(x[:1, :1])
        return model, [w.value for w in model.trainable_weights], x, lambda x, train: model(x, training=train)
    import convlstm

    model = convlstm.ConvLSTM2D(f, k, padding="same", return_sequences=True, in_channels=cin).to(device)
    x = torch.randn(b, t, rows, cols, cin, device=device)
    return model, list(model.parameters()), x, lambda x, train: model(x)


def speed(report: Report, device: str, quick: bool, reps: int, budget: float,
          precisions: "list | None" = None) -> None:
    report("")
    report("## Part 2: speed, median ms (ours = implementation='auto'; plain = conv over [x, h] per step)")
    try:
        import keras  # noqa: F401

        impls = ["ours", "plain", "keras-torch"]
    except ImportError:
        impls = ["ours", "plain"]
        report("keras is not installed: no Keras column")
    configs = [(2, 4, 16, 16, 2, 8, 3)] if quick else CONFIGS
    names = ["dry-run tiny"] if quick else CONFIG_NAMES
    report("| config | mode | precision | " + " | ".join(f"{i} ms" for i in impls) + " | ours path | ours vs plain |")
    report("|---|---|---|" + "---|" * len(impls) + "---|---|")
    for cfg, cname in zip(configs, names):
        for mode in ("infer", "train"):
            for precision in [p for p in _precisions(device) if precisions is None or p in precisions]:
                row, ours_path = {}, "-"
                for impl in impls:
                    if impl == "keras-torch" and precision == "float16" and device == "cpu":
                        row[impl] = "-"
                        continue
                    try:
                        model, params, x, call = _build(impl, cfg, device, precision)
                        train = mode == "train"
                        autocast = _autocast(device, precision) if impl != "keras-torch" else contextlib.nullcontext()

                        def once():
                            if train:
                                for p in params:
                                    p.grad = None
                                with autocast:
                                    y = call(x, True)
                                (y.float().sum() / y.numel()).backward()
                            else:
                                with torch.no_grad(), autocast:
                                    call(x, False)

                        once()
                        times, deadline = [], time.perf_counter() + budget
                        while len(times) < reps and (len(times) < 3 or time.perf_counter() < deadline):
                            _sync(device)
                            t0 = time.perf_counter()
                            once()
                            _sync(device)
                            times.append(time.perf_counter() - t0)
                        row[impl] = statistics.median(times)
                        if impl == "ours":
                            ours_path = model.last_path
                        del model, params, x
                    except Exception:  # noqa: BLE001
                        row[impl] = "error: " + traceback.format_exc().strip().splitlines()[-1][:80]
                        report.failures += impl == "ours"
                    finally:
                        if impl == "keras-torch":
                            with contextlib.suppress(Exception):
                                import keras

                                keras.mixed_precision.set_global_policy("float32")
                        if device == "cuda":
                            torch.cuda.empty_cache()
                cells = [f"{v * 1e3:.2f}" if isinstance(v, float) else v for v in (row[i] for i in impls)]
                ratio = (f"{row['plain'] / row['ours']:.2f}x" if all(isinstance(row[i], float) for i in ("ours", "plain"))
                         else "-")
                report(f"| {cname} | {mode} | {precision} | " + " | ".join(cells) + f" | {ours_path} | {ratio} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", default="gpu_check.txt")
    p.add_argument("--quick", action="store_true", help="small sizes (a dry run of the logic, seconds)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--budget", type=float, default=10.0, help="seconds per case after the first 3 repetitions")
    p.add_argument("--no-tf32", action="store_true", help="float32 convolutions without TF32 (bound 1e-5)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-accuracy", action="store_true", help="part 2 only (the speed of the layer)")
    p.add_argument("--precisions", nargs="+", default=None, choices=("float32", "bfloat16", "float16"),
                   help="the precisions of part 2 (default: every one the device has)")
    args = p.parse_args(argv)
    report = Report(Path(args.out))
    m = machine()
    report(f"# convlstm device check, {m['date']}")
    report(machine_line(m) + f" Device: {args.device}.")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            report("FAIL: torch.cuda.is_available() is False (torch " + torch.__version__ + ")")
            return 2
        report(f"GPU: {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}, "
               f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; "
               f"bf16 supported: {torch.cuda.is_bf16_supported()}")
        torch.backends.cudnn.benchmark = True
        if args.no_tf32:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            TOL["float32"] = 1e-5
        report(f"TF32 convolutions: {torch.backends.cudnn.allow_tf32}")
    report(f"Python {platform.python_version()}; command: {' '.join(sys.argv)}")
    report("")
    if not args.skip_accuracy:
        accuracy(report, args.device, args.quick)
    if not args.skip_speed:
        speed(report, args.device, args.quick, args.reps, args.budget, args.precisions)
    report("")
    report(f"failures: {report.failures}")
    report(json.dumps({"failures": report.failures}))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
