"""Export from files: a training run, a checkpoint or a Keras model file (``convlstm export``).

A run exports, by default, as ``convlstm predict`` runs it: the graph reads the input frames in
the data's units and writes the forecast in them (the run's scaler and its clamp at 0 are in the
graph, :class:`~convlstm.onnx.units.DataUnits`); ``units=False`` (CLI ``--scaled``) exports the
bare network, which reads and writes scaled values. The time axis follows the model: any
:math:`T` from the model's own minimum (``convlstm-warp``: 3), or fixed at the run's input steps
where the model reads its frames by position (``st-convlstm``, multi-scale runs). The file's
``metadata_props`` record the convention (``convlstm.units``, ``convlstm.input.x``,
``convlstm.output.forecast``, ``convlstm.scaler``...), which :func:`convlstm.onnx.describe` prints.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .._io import PathLike
from ._exporter import TraceError
from .sequence import DEFAULT_OPSET, export, fixed_time_model, model_min_time

__all__ = ["ExportPlan", "plan_export", "export_file"]

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass
class ExportPlan:
    """What :func:`export_file` passes to :func:`convlstm.onnx.export`: the module, its example
    inputs and names, the time axis (dynamic from ``min_time`` on, or fixed at the example's)
    and the file's metadata."""
    module: nn.Module
    example: tuple
    input_names: List[str]
    output_names: Optional[List[str]] = None
    dynamic_time: bool = True
    min_time: Optional[int] = None
    metadata: Dict[str, str] = field(default_factory=dict)


def plan_export(source: PathLike, *, units: bool = True, dynamic_time: bool = True,
                min_time: Optional[int] = None) -> ExportPlan:
    """The :class:`ExportPlan` of ``source``.

    - a Keras file (``.h5``, ``.keras``): :func:`convlstm.keras.load_model`; the example has the
      file's input shapes (inputs named as in Keras);
    - a run folder or a ``.ckpt``: the checkpoint's network (as ``convlstm predict`` loads it),
      in the data's units unless ``units=False`` (see the module's documentation); input ``x``
      (and ``features`` for a network that takes them), output ``forecast``.
    """
    path = Path(source)
    if path.suffix.lower() in KERAS_SUFFIXES or path.name.lower().endswith((".h5.gz", ".keras.gz")):
        from ..keras import load_model

        model = load_model(path)
        return ExportPlan(model, tuple(model.example_inputs(1)), [r[0] for r in model.input_refs],
                          dynamic_time=dynamic_time, min_time=min_time)
    return _run_plan(path, units, dynamic_time, min_time)


def _run_plan(path: Path, units: bool, dynamic_time: bool, min_time: Optional[int]) -> ExportPlan:
    from ..data import scaler_from_state_dict
    from ..training.runs import find_checkpoint, load_module

    ckpt_path = find_checkpoint(path)
    module, ckpt = load_module(ckpt_path)
    state = ckpt.get("GridDataModule") or {}
    if not all(k in state for k in ("input_steps", "sample_shape", "scaler")):
        raise ValueError(f"checkpoint {str(path)!r} has no data state (input_steps, sample_shape, scaler) to build "
                         "the graph's inputs from; export the model from Python with convlstm.onnx.export")
    network, steps = module.model, int(state["input_steps"])
    low, span, names = _features(state, int(module.hparams.get("num_features") or 0))
    dynamic, min_time, example_steps, time_text = _time_axis(network, steps, bool(state.get("multiscale")),
                                                             dynamic_time, min_time)
    x = torch.zeros((1, example_steps) + tuple(int(n) for n in state["sample_shape"]))
    example = (x,) if low is None else (x, torch.zeros(1, len(low)))
    if units:
        from .units import DataUnits

        network = DataUnits(network, scaler_from_state_dict(state["scaler"]),
                            nonnegative=bool(state.get("nonnegative")), feature_low=low, feature_span=span)
    meta = _run_metadata(state, module.hparams.get("model"), units, time_text, names)
    return ExportPlan(network, example, ["x"] if low is None else ["x", "features"], ["forecast"],
                      dynamic_time=dynamic, min_time=min_time, metadata=meta)


def _features(state: Dict[str, Any], num_features: int):
    """``(low, span, names)`` of the features a multi-scale run's network takes (see
    :meth:`~convlstm.training.multiscale.MultiScale.feature_scaling`); ``(None, None, [])``
    without features."""
    if not state.get("multiscale"):
        return None, None, []
    from ..training.multiscale import MultiScale

    low, span, names = MultiScale.from_state(state["multiscale"]).feature_scaling()
    if len(low) != num_features:
        raise ValueError(f"the run's data state describes {len(low)} features per sample, but its network takes "
                         f"{num_features}; the checkpoint is inconsistent")
    return (low, span, names) if num_features else (None, None, [])


def _time_axis(network: nn.Module, steps: int, multiscale: bool, dynamic_time: bool,
               min_time: Optional[int]) -> Tuple[bool, Optional[int], int, str]:
    """``(dynamic_time, min_time, example steps, what T the file takes)`` for a run trained on
    ``steps`` input steps."""
    model = fixed_time_model(network)
    fixed = ("the network reads a multi-scale run's stacked lags by position" if multiscale else
             f"{model} reads its input frames by position" if model else None)
    if fixed:
        if min_time is not None:
            raise ValueError(f"--min-time (min_time) does not apply to this run: {fixed}, so the file's time axis "
                             f"is fixed at T = {steps}; export without it")
        return False, None, steps, f"T = {steps} (fixed: {fixed})"
    if not dynamic_time:
        return False, None, steps, f"T = {steps} (fixed: --static-time)"
    if min_time is None:
        min_time = model_min_time(network)
        if steps < min_time:
            return False, None, steps, (f"T = {steps} (fixed: one graph of every T needs T >= {min_time} for this "
                                        f"model, and the run was trained on {steps})")
    return True, min_time, max(steps, min_time), f"any T >= {min_time} (trained on {steps})"


def _run_metadata(state: Dict[str, Any], model_name: Optional[str], units: bool, time_text: str,
                  feature_names: List[str]) -> Dict[str, str]:
    """The convention of a run's file, as ``metadata_props``."""
    from ..data.units import UnitConversion

    scaler, clamp = state["scaler"]["name"], bool(state.get("nonnegative"))
    k = int(state.get("output_steps") or 0)
    unit = f" ({state['units']})" if state.get("units") else ""
    if units:
        x_units = f"in the data's units{unit}; the run's {scaler} scaler is applied inside the graph"
        y_units = f"in the data's units{unit}" + (", clamped at 0" if clamp else "")
    else:
        x_units = f"scaled: apply the run's {scaler} scaler first (convlstm.scaler_state)"
        y_units = "scaled: apply the scaler's inverse_transform" + (", then clamp at 0" if clamp else "")
    frames = "input frames"
    meta = {"convlstm.source": "run", "convlstm.model": str(model_name),
            "convlstm.units": "data" if units else "scaled", "convlstm.scaler": scaler, "convlstm.scaler_state": json.dumps(state["scaler"]),
            "convlstm.nonnegative": str(clamp).lower(), "convlstm.input_steps": str(state["input_steps"]),
            "convlstm.output_steps": str(k), "convlstm.time_steps": time_text,
            "convlstm.output.forecast": f"the next {k} frame{'s' if k != 1 else ''} (batch, {k}, rows, cols, "
                                        f"channels), {y_units}"}
    if state.get("multiscale"):
        meta.update(_multiscale_metadata(state, units, feature_names))
        frames = f"the frames at offsets {meta['convlstm.lags']} from the first forecast step (oldest first)"
    meta["convlstm.input.x"] = f"{frames} (batch, T, rows, cols, channels), {time_text}, {x_units}"
    conversion = UnitConversion.from_state_dict(state.get("conversion"))
    if not conversion.is_identity:
        meta["convlstm.conversion"] = conversion.describe()
        meta["convlstm.input.x"] += f"; the data's units are after the run's conversion ({conversion.describe()})"
    if state.get("units"):
        meta["convlstm.data_units"] = str(state["units"])
    return meta


def _multiscale_metadata(state: Dict[str, Any], units: bool, feature_names: List[str]) -> Dict[str, str]:
    """The stacked lags of a multi-scale run's input and its features, as ``metadata_props``."""
    from ..training.multiscale import MultiScale

    lags = MultiScale.from_state(state["multiscale"]).lags(int(state.get("gap") or 0))
    meta = {"convlstm.lags": ",".join(str(int(v)) for v in lags)}
    if feature_names:
        meta["convlstm.features"] = ",".join(feature_names)
        meta["convlstm.input.features"] = (
            f"(batch, {len(feature_names)}) per sample: {', '.join(feature_names)}: the calendar features of the "
            "first forecast step (convlstm.data.calendar_features), then the external series at the last observed "
            "step, " + ("in their own units (min-max scaled inside the graph)" if units
                        else "min-max scaled with the training part's range"))
    return meta


def export_file(source: PathLike, out: PathLike, *, opset_version: int = DEFAULT_OPSET, dynamic_time: bool = True,
                min_time: Optional[int] = None, units: bool = True) -> Path:
    """Export the model in ``source`` (see :func:`plan_export`) to ``out`` with
    :func:`convlstm.onnx.export`: batch dynamic; time dynamic as the model allows unless
    ``dynamic_time=False``; ``min_time`` (``None``: the model's own minimum) as there. A model
    that torch.export cannot trace is refused with a one-line ``ValueError``."""
    plan = plan_export(source, units=units, dynamic_time=dynamic_time, min_time=min_time)
    try:
        return export(plan.module, out, plan.example, input_names=plan.input_names, output_names=plan.output_names,
                      opset_version=opset_version, dynamic_time=plan.dynamic_time, min_time=plan.min_time,
                      metadata=plan.metadata)
    except TraceError as err:
        cause = err.__cause__ or err
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        name = plan.metadata.get("convlstm.model") or type(plan.module).__name__
        raise ValueError(f"{str(source)!r}: model {name} cannot be exported: torch.export failed ({reason}); "
                         "try --static-time, or export it from Python with convlstm.onnx.export "
                         "(CONVLSTM_DEBUG=1 shows torch's full error)") from err
