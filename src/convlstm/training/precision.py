"""``precision="auto"``: the training precision a fit takes when none is named.

On a CPU with bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``) it is
``"bf16-mixed"`` (convolutions in bfloat16 under autocast; the ConvLSTM's gates, cell state,
losses and optimizer in float32), where it was measured to forecast as well as float32 and
faster; elsewhere on the CPU ``"32"`` (oneDNN emulates bfloat16 there, slower than float32).
On CUDA, ``"bf16-mixed"`` where the device supports bfloat16, else ``"16-mixed"``.

Measured on a 2-core AMD EPYC (``avx512_bf16``, no AMX), quiet, each pair run one after the other
(``benchmarks/RESULTS.md``):

=================================== =================== ========================= ===========
fit                                 ``32``              ``bf16-mixed``            time
=================================== =================== ========================= ===========
KNMI radar, defaults, 20 epochs     MSE 0.099/0.203/0.293 0.097/0.195/0.285       298 s -> 192 s
Moving MNIST demo, 10 epochs        test MSE 948        933                       (shared machine)
=================================== =================== ========================= ===========
"""
from __future__ import annotations

from typing import Tuple

from .._ops import cpu_bf16_flags

__all__ = ["resolve_precision", "BF16_NOTE"]

BF16_NOTE = "convolutions in bfloat16 under autocast, gates, cell state and optimizer in float32"


def resolve_precision(requested: str, accelerator: str = "cpu") -> Tuple[str, str]:
    """``(precision, why)``: ``requested`` itself unless it is ``"auto"``, which takes the rule of
    the module documentation for ``accelerator`` (``"auto"`` is the CPU unless CUDA is
    available); ``why`` is a note for the log (empty for a precision given by name other than
    ``bf16-mixed``)."""
    if requested != "auto":
        return requested, f" ({BF16_NOTE})" if requested == "bf16-mixed" else ""
    import torch

    if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():  # pragma: no cover - no GPU here
            return "bf16-mixed", f" (auto: this GPU supports bfloat16; {BF16_NOTE})"
        return "16-mixed", " (auto: a GPU without bfloat16)"  # pragma: no cover - no GPU here
    if accelerator not in ("cpu", "auto"):
        return "32", f" (auto: float32 on accelerator={accelerator})"
    flags = [f for f in cpu_bf16_flags() if f != "amx_tile"]
    if flags:
        return "bf16-mixed", (f" (auto: this CPU has {', '.join(flags)}, where bfloat16 trained as well as float32 "
                              f"and faster; {BF16_NOTE}; --precision 32 for float32)")
    return "32", " (auto: this CPU has no avx512_bf16 or amx_bf16, where bfloat16 would be slower than float32)"
