"""The ``convlstm`` command line: ``demo``, ``fit``, ``evaluate``, ``predict``, ``convert``,
``export``, ``models``, ``config``. It only parses arguments and calls the library (:mod:`convlstm.training`,
:mod:`convlstm.keras`); ``convlstm COMMAND --help`` shows each command's options and examples."""
from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from ._extras import install_hint

if TYPE_CHECKING:
    from .training.config import FitConfig

__all__ = ["main", "build_parser"]

# The user's mistakes (exit status 2, one line naming the flag): a value the library refuses (a
# ValueError; ParameterError and ParameterTypeError name the parameter, as the flag that set it) and
# a path that does not exist, already exists, or is a file where a folder is needed or the reverse.
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)

MAIN_EPILOG = """\
examples:
  convlstm demo                      start here: train and evaluate on Moving MNIST (minutes on a CPU)

  # your own grid series, e.g. hourly in/out flow on a city grid, shape (time, rows, cols, 2)
  convlstm fit flow.npy --input-steps 6 --output-steps 3 --max-epochs 30 --run-dir runs/flow
  convlstm evaluate runs/flow        # metrics.json, forecast.png, forecast.gif in runs/flow
  convlstm predict runs/flow flow.npy --out next3h.nc

every command has its own help: convlstm fit --help
"""

FIT_EPILOG = """\
examples:
  # a (time, rows, cols, channels) .npy file; 6 steps in, 3 out; 70/10/20 chronological split
  convlstm fit flow.npy --layout THWC --input-steps 6 --output-steps 3 --split 0.7 0.1 0.2 \\
      --scaler minmax --model keras-nextframe --model-option filters=[32,32] --max-epochs 30 \\
      --run-dir runs/flow

  # a variable of a netCDF file stored (time, rows, cols); radar rainfall in mm/h
  convlstm fit radar.nc --key rain --layout THW --scaler log1p --thresholds 0.5 2 5 --units mm/h

  # radar stored as integers (mm per 5 minutes x 100) -> mm/h; CSI/ETS at 1 and 5 mm/h, FSS over
  # 10 pixels, beside pysteps's optical-flow extrapolation (the radar extra: see --baselines)
  convlstm fit knmi.npz --key precip_mm_x100 --layout THW --scale 0.01 --transform accumulation-to-rate \\
      --interval-minutes 5 --scaler db --thresholds 1 5 --fss-scales 10 --units mm/h \\
      --baselines persistence climatology extrapolation

  # sharper forecasts: MSE + 0.5 (1 - SSIM); or radar rain weighted by intensity (mm/h thresholds)
  convlstm fit flow.npy --loss mse+ssim --loss-option ssim_weight=0.5
  convlstm fit radar.nc --key rain --layout THW --scaler log1p --loss balanced \\
      --loss-option thresholds=[2,5,10,30] --loss-option weights=[1,2,5,10,30]

  # options from a YAML file (keys = the flags' long names with underscores); flags override it;
  # `convlstm config` lists the bundled examples (flow, radar, ...), `convlstm config flow` prints one
  convlstm fit --config flow --lr 3e-4
  convlstm fit flow.npy --input-steps 12 --save-config run.yaml   # write the config, do not train

  # continue an interrupted run from its last completed epoch, with its data and options
  # (a different --max-epochs is honoured: the cosine schedule is stretched to it, see --scheduler)
  convlstm fit --resume --run-dir runs/flow --max-epochs 60

  # 4 GPUs on each of 2 nodes (run the same command on every node, with the same --run-dir)
  convlstm fit flow.npy --accelerator gpu --devices 4 --num-nodes 2 --strategy ddp \\
      --precision bf16-mixed --run-dir /shared/runs/flow

the run folder gets config.yaml, checkpoints/best.ckpt and last.ckpt, history.json and, after
training, metrics.json, metrics_per_lead_time.csv, forecast.png, forecast.gif, learning_curve.png
(metrics and pictures in the data's own units).
"""


def _devices(text: str) -> Any:
    t = text.strip()
    if t == "auto":
        return t
    try:
        if "," in t:
            return [int(v) for v in t.split(",") if v.strip()]
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid devices {text!r}: give 'auto', a count (2), -1 for all, or device indices (0,1)") from None


def _number_or_int(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give a fraction (0.25) or a number "
                                             f"of batches (10)") from None


def _name_value(text: str, what: str, example: str) -> Any:
    """``NAME=VALUE`` -> ``(NAME, VALUE)``, the value read as YAML (a number, a word, a list)."""
    try:
        import yaml
    except ImportError:
        raise argparse.ArgumentTypeError(f"reading {what} {text!r} needs PyYAML, part of the train extra: "
                                         f"{install_hint('train')}") from None
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: write NAME=VALUE, e.g. {example}")
    name, value = text.split("=", 1)
    try:
        return name.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"invalid value in {what} {text!r}: write a number, a word or "
                                         f"a list like [32,32]") from None


def _model_option(text: str) -> Any:
    return _name_value(text, "model option", "filters=[32,32]")


def _member_option(text: str) -> Any:
    return _name_value(text, "member option", "noise_length=8")


def _reader_option(text: str) -> Any:
    return _name_value(text, "reader option", "product=AQC")


def _loss_option(text: str) -> Any:
    return _name_value(text, "loss option", "ssim_weight=0.5")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; adds "(default: X)" where a default says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("default" in text or d is None or isinstance(d, bool) or d in ((), "") or d is argparse.SUPPRESS
                or action.option_strings == [] or isinstance(action, argparse._HelpAction)):
            return text
        return f"{text} (default: {d})"


def _option(group: Any, *flags: str, default: Any = None, **kw: Any) -> None:
    """Add a ``convlstm fit`` option to ``group``. Only the options given are parsed
    (``argparse.SUPPRESS``), so that only they override the config file; ``default``, the
    :class:`~convlstm.training.FitConfig` default, is shown in the help."""
    if "help" in kw and default is not None and not kw.get("action"):
        kw["help"] += f" (default: {default})"
    group.add_argument(*flags, default=argparse.SUPPRESS, **kw)


def _add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """``convlstm fit``'s arguments: DATA, ``--config``, ``--save-config``, then one flag per
    :class:`~convlstm.training.FitConfig` field, by group."""
    from .training.config import FitConfig

    defaults = FitConfig()
    p.add_argument("data", nargs="*", default=argparse.SUPPRESS, metavar="DATA",
                   help="the grid file: .npy, .npz, .h5/.hdf5, .nc or .zarr, with time first; or several files, a "
                        "glob pattern ('radar/*.h5', quoted) or a folder, read as one archive of events")
    p.add_argument("--config", default=None, metavar="YAML|NAME",
                   help="read options from this YAML file, or a bundled config's name (`convlstm config` lists "
                        "them); flags given here override it")
    p.add_argument("--save-config", default=None, metavar="YAML",
                   help="write the resulting options to this YAML file and exit without training")
    _add_fit_data_options(p, defaults)
    _add_fit_multiscale_options(p)
    _add_fit_unit_options(p, defaults)
    _add_fit_model_options(p, defaults)
    _add_fit_optimisation_options(p, defaults)
    _add_fit_hardware_options(p, defaults)
    _add_fit_output_options(p, defaults)


def _add_fit_data_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """The data file's key and layout, the samples' windows and split, scaling, loading."""
    from .training.config import LAYOUTS, SCALER_NAMES

    g = p.add_argument_group("data")
    _option(g, "--key", metavar="NAME", help="array (.npz), dataset path (.h5) or variable (.nc) in the file")
    _option(g, "--layout", type=str.upper, choices=LAYOUTS, default=defaults.layout,
            help="how the file's axes are stored (any case): THWC time, rows, cols, channels / TCHW time, "
                 "channels, rows, cols / THW time, rows, cols (one channel); fit prints how it reads the file")
    _option(g, "--reader", metavar="NAME", default=defaults.reader,
            help="auto (by the file's suffix), xarray (netCDF, zarr, GRIB with cfgrib: CF time and coordinates) or "
                 "pysteps:IMPORTER (pysteps's importer, e.g. pysteps:odim_hdf5, pysteps:mch_gif, pysteps:bom_rf3, "
                 "one file per time step, in mm/h)")
    p.add_argument("--reader-option", dest="reader_option", action="append", type=_reader_option,
                   default=argparse.SUPPRESS, metavar="NAME=VALUE",
                   help="an argument of the reader, repeatable: pysteps's importer arguments (mch_gif: "
                        "--reader-option product=AQC --reader-option unit=mm --reader-option accutime=5), or "
                        "xarray's engine=NAME")
    _option(g, "--time-from-name", metavar="PATTERN",
            help="read each file's time from its name with this strftime pattern, e.g. %%Y%%m%%d%%H%%M (files of "
                 "one frame each)")
    _option(g, "--split-by", choices=("time", "event"), default=defaults.split_by,
            help="time: cut at the --split fractions; event: cut between events (files, or gaps in the time "
                 "stamps), so the test part holds whole events the model never saw")
    _option(g, "--input-steps", type=int, metavar="N", default=defaults.input_steps, help="frames the model sees")
    _option(g, "--output-steps", type=int, metavar="N", default=defaults.output_steps, help="frames it forecasts")
    _option(g, "--stride", type=int, metavar="N", default=defaults.stride,
            help="steps between the starts of samples")
    _option(g, "--gap", type=int, metavar="N", default=defaults.gap,
            help="steps skipped between the last input and the first forecast frame")
    _option(g, "--split", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
            default=" ".join(map(str, defaults.split)),
            help="chronological fractions of the time axis; no sample crosses a boundary")
    _option(g, "--scaler", choices=SCALER_NAMES, default=defaults.scaler,
            help="per-channel scaling fitted on the training part only (log1p for counts and rain; db: pysteps's "
                 "decibel transform with a no-rain threshold, for rain rates)")
    _option(g, "--fill-nan", type=float, metavar="VALUE",
            help="replace NaN/inf by VALUE (otherwise they are an error)")
    _option(g, "--batch-size", type=int, metavar="N", default=defaults.batch_size,
            help="samples per batch (per device)")
    _option(g, "--num-workers", type=int, metavar="N", default=defaults.num_workers,
            help="data loader worker processes")


def _add_fit_multiscale_options(p: argparse.ArgumentParser) -> None:
    """Closeness, period and trend samples, calendar and external features."""
    g = p.add_argument_group("multi-scale samples and features (crowd flow; docs/crowd-flow.md)")
    _option(g, "--closeness", type=int, metavar="N",
            help="the last N frames (default: --input-steps); any option of this group switches to multi-scale "
                 "samples: a sample belongs to the part of its target, its inputs may reach back into earlier parts")
    _option(g, "--period", type=int, metavar="N",
            help="frames at the target's time on the N previous days (default with --model st-convlstm: 1, with "
                 "--calendar, when the file's time stamps give the day and training holds a week; else 0)")
    _option(g, "--trend", type=int, metavar="N",
            help="frames at the target's time in the N previous weeks (default with --model st-convlstm: 1 when "
                 "training holds four weeks of a known day; else 0)")
    _option(g, "--period-interval", type=int, metavar="STEPS",
            help="steps between period frames (default: one day)")
    _option(g, "--trend-interval", type=int, metavar="STEPS", help="steps between trend frames (default: one week)")
    _option(g, "--steps-per-day", type=int, metavar="N", help="steps in a day, for files without time stamps")
    _option(g, "--calendar", action=argparse.BooleanOptionalAction,
            help="hour of day and day of week (sin/cos), weekend and holiday of the target time as features (needs "
                 "time stamps and --model st-convlstm; default: as --period)")
    _option(g, "--holidays", metavar="FILE",
            help="text file of holiday dates, one per line (YYYY-MM-DD); implies --calendar")
    _option(g, "--external", nargs="+", metavar="KEY",
            help="external series (T,) or (T, F) in the data file (or --external-data), e.g. temperature")
    _option(g, "--external-data", metavar="FILE", help="the file that holds the --external series")


def _add_fit_unit_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """The physical units of the data: scale, offset and transform."""
    from .data.units import TRANSFORMS

    g = p.add_argument_group("physical units (value = stored * scale + offset, then --transform; thresholds, "
                             "metrics, pictures and forecasts are in these units)")
    _option(g, "--scale", type=float, metavar="S", default=defaults.scale,
            help="multiply the stored values by S")
    _option(g, "--offset", type=float, metavar="O", default=defaults.offset, help="then add O")
    _option(g, "--transform", choices=TRANSFORMS, default=defaults.transform,
            help="then convert: dBZ <-> rain rate in mm/h through Z = a R^b, or an accumulation per interval "
                 "<-> mm/h")
    _option(g, "--zr-a", type=float, metavar="A", default=defaults.zr_a,
            help="a of Z = a R^b (Marshall-Palmer)")
    _option(g, "--zr-b", type=float, metavar="B", default=defaults.zr_b,
            help="b of Z = a R^b (Marshall-Palmer)")
    _option(g, "--interval-minutes", type=float, metavar="MIN",
            help="the accumulation interval, for accumulation-to-rate and rate-to-accumulation")
    _option(g, "--nonnegative", action=argparse.BooleanOptionalAction,
            help="clamp forecasts at 0 in data units, or not (default: on when the training part has no negative "
                 "value, as counts and rain; the log says which)")


def _add_fit_model_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """The model and its options."""
    from .models.baseline_start import STARTS

    g = p.add_argument_group("model")
    _option(g, "--model", metavar="NAME", default=defaults.model,
            help="a model name; `convlstm models` lists them")
    _option(g, "--start-from", metavar="BASELINE", default=defaults.start_from, choices=STARTS,
            help="the baseline the model corrects, so the untrained model forecasts exactly it: auto (persistence "
                 "for models without one of their own; convlstm-warp starts from block-matching extrapolation), "
                 "persistence, seasonal (same time one period before; st-convlstm with a period stream) or none")
    _option(g, "--calibrate-blend", action=argparse.BooleanOptionalAction,
            help="after training, blend the forecast toward the model's start (its baseline) at the lead times "
                 "where that is better on the validation part; --no-calibrate-blend keeps the trained forecast "
                 "(default: on)")
    p.add_argument("--model-option", dest="model_option", action="append", type=_model_option,
                   default=argparse.SUPPRESS, metavar="NAME=VALUE",
                   help="an option of the model, repeatable: --model-option filters=[32,32] "
                        "--model-option kernel_sizes=[3,3]")
    _option(g, "--members", type=int, metavar="M", default=defaults.members,
            help="0: one forecast; M >= 2: an ensemble, M members per training sample around the model's forecast "
                 "(correlated noise with a learned spread), trained with the almost fair CRPS; predict and evaluate "
                 "--members N draw any number")
    p.add_argument("--member-option", dest="member_option", action="append", type=_member_option,
                   default=argparse.SUPPRESS, metavar="NAME=VALUE",
                   help="an option of the members, repeatable: noise_length (pixels, 4), spread_width (16), "
                        "initial_spread (0.02; 0.2 log-normal), noise (additive, log-normal or laplace; "
                        "default additive; log-normal suits counts), noise_offset (0.05), alpha (0.95), "
                        "spatial_weight (0), spatial_pool (4), centre (mse: the forecast trains as without members, "
                        "the spread on the CRPS; crps: both on the CRPS)")


def _add_fit_optimisation_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """The loss, the optimiser and its schedule, the length of the training."""
    from .training.config import LOSSES, SCHEDULERS

    g = p.add_argument_group("optimisation")
    _option(g, "--loss", choices=LOSSES, default=defaults.loss,
            help="training loss: mse, mae, bce (for data in [0, 1] after scaling), mse+ssim (MSE + w(1 - SSIM), "
                 "sharper; frames of 11x11 or more), balanced (Shi et al. 2017's weighted MSE + MAE for rare heavy "
                 "values); formulas in convlstm.losses")
    g.add_argument("--loss-option", dest="loss_option", action="append", type=_loss_option,
                   default=argparse.SUPPRESS, metavar="NAME=VALUE",
                   help="an option of the loss, repeatable: mse+ssim takes ssim_weight (1.0) and data_range (1.0, "
                        "scaled units); balanced takes thresholds ([2,5,10,30], the data's units) and weights "
                        "([1,2,5,10,30]): --loss balanced --loss-option thresholds=[0.5,2,5] "
                        "--loss-option weights=[1,2,5,10]")
    _option(g, "--lr", type=float, metavar="RATE", default=defaults.lr, help="AdamW learning rate")
    _option(g, "--weight-decay", type=float, metavar="W", default=defaults.weight_decay,
            help="AdamW weight decay")
    _option(g, "--scheduler", choices=SCHEDULERS, default=defaults.scheduler,
            help="learning-rate schedule")
    _option(g, "--scheduled-sampling", type=float, metavar="S", default=defaults.scheduled_sampling,
            help="scheduled sampling: over the first fraction S of training, the chance of feeding the model the "
                 "true frame instead of its own forecast falls from 1 to 0 (0 = off; models that feed back their "
                 "forecasts, e.g. convlstm-warp)")
    _option(g, "--max-epochs", type=int, metavar="N", default=defaults.max_epochs,
            help="epochs to train")
    _option(g, "--patience", type=int, metavar="N",
            help="stop early after N epochs without a better validation loss (default: off)")
    _option(g, "--gradient-clip", type=float, metavar="NORM", help="clip the gradient norm (default: off)")
    _option(g, "--limit-train-batches", type=_number_or_int, metavar="N|F",
            help="batches per epoch: a count or a fraction (for quick tries)")
    _option(g, "--limit-val-batches", type=_number_or_int, metavar="N|F", help="validation batches per epoch")


def _add_fit_hardware_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """Precision, seed, accelerator, devices, nodes, strategy and memory limit."""
    from .training.config import ACCELERATORS, PRECISIONS

    g = p.add_argument_group("hardware and reproducibility")
    _option(g, "--precision", choices=PRECISIONS, default=defaults.precision,
            help="auto (default: bf16-mixed on a CPU with avx512_bf16 or amx_bf16 and on a GPU with bfloat16, "
                 "float32 on other CPUs), 32 (float32), 16-mixed (GPU), bf16-mixed (recent GPUs and CPUs), 64")
    _option(g, "--seed", type=int, metavar="N", default=defaults.seed,
            help="random seed (data order, initial weights)")
    _option(g, "--deterministic", action="store_true", help="use deterministic algorithms only (slower on GPU)")
    _option(g, "--accelerator", choices=ACCELERATORS, default=defaults.accelerator, help="hardware to train on")
    _option(g, "--devices", type=_devices, metavar="N|IDS", default=defaults.devices,
            help="devices per node: a count, -1 for all, or indices like 0,1")
    _option(g, "--num-nodes", type=int, metavar="N", default=defaults.num_nodes,
            help="machines (run the command on each)")
    _option(g, "--strategy", metavar="NAME", default=defaults.strategy,
            help="Lightning strategy: auto, ddp, ddp_spawn, fsdp, ...")
    _option(g, "--memory-limit", metavar="SIZE",
            help="memory a CPU training step may use: a size such as 8GB, 512MB or 16GiB, or 'off' for no check "
                 "(default: auto, 80%% of the memory available). Before training, a step's peak is estimated "
                 "(about a second); a --batch-size over the limit is lowered to the largest that fits, and a run "
                 "whose batch size 1 does not fit stops with the estimate")


def _add_fit_output_options(p: argparse.ArgumentParser, defaults: "FitConfig") -> None:
    """The run folder, resuming, and what the test part is scored with and drawn."""
    from .baselines import baseline_names
    from .extrapolation import MOTION_METHODS

    known_baselines = baseline_names()
    g = p.add_argument_group("outputs")
    _option(g, "--run-dir", metavar="DIR", help="the run folder (default: runs/fit-DATE-TIME)")
    _option(g, "--resume", action="store_true",
            help="continue the run in --run-dir from checkpoints/last.ckpt, with the data and options of its "
                 "config.yaml (flags given here override them; a new --max-epochs is honoured)")
    _option(g, "--no-evaluate", dest="evaluate", action="store_false",
            help="do not score the test part nor draw pictures after training")
    _option(g, "--thresholds", type=float, nargs="+", metavar="T",
            help="event thresholds (data units) for CSI, POD, FAR, ETS and FSS (an event is a value >= T)")
    _option(g, "--fss-scales", type=int, nargs="+", metavar="PIXELS",
            help="window widths in pixels for the fractions skill score at each threshold")
    _option(g, "--baselines", nargs="+", choices=known_baselines, metavar="NAME", default=" ".join(defaults.baselines),
            help=f"forecasts scored beside the model: {', '.join(known_baselines)} (extrapolation: pysteps's "
                 f"optical-flow nowcast, steps: pysteps's STEPS ensemble, both need the radar extra: "
                 f"{install_hint('radar')}; dressed: the model's forecast plus its own validation errors, an "
                 f"ensemble)")
    _option(g, "--extrapolation-method", choices=MOTION_METHODS, metavar="METHOD",
            default=defaults.extrapolation_method,
            help=f"pysteps's motion method for the extrapolation baseline: {', '.join(MOTION_METHODS)}")
    _option(g, "--units", metavar="TEXT", help="units of the data, for the colour bars (e.g. mm/h)")
    _option(g, "--samples", type=int, metavar="N", default=defaults.samples,
            help="samples drawn in forecast.png")
    _option(g, "--no-progress", dest="progress", action="store_false", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``convlstm`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="convlstm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ConvLSTM forecasting for grid time series: train, evaluate and forecast from the shell.",
        epilog=MAIN_EPILOG, allow_abbrev=False)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"convlstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add_command in (_add_demo_command, _add_fit_command, _add_evaluate_command, _add_predict_command,
                        _add_convert_command, _add_export_command, _add_models_command, _add_config_command):
        add_command(sub)
    # room for more commands (e.g. `bench`): an _add_..._command function and a _cmd_ function that calls the library
    for p in sub.choices.values():
        p.set_defaults(flag_names=_flag_names(p))  # how each command spells the parameters its errors name
        p.allow_abbrev = False  # a flag is given whole: no prefix of one is taken for it (--lr, --lr-...)
    return parser


def _parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, but an unknown flag is reported by its command (its usage, exit
    status 2) with the command's flag closest to it."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
        command = commands.choices[args.command]
        command.error(_unrecognized(extra, command))
    return args


# other tools' names for flags (underscores read as dashes)
_ALSO_CALLED = {"--learning-rate": "--lr", "--epochs": "--max-epochs", "--num-epochs": "--max-epochs"}


def _unrecognized(extra: Sequence[str], command: argparse.ArgumentParser) -> str:
    """What to say of the arguments ``command`` did not recognise: the flags among them, each with
    the flags of ``command`` closest to it (``--lr-rate``: did you mean ``--lr``?), else all of them."""
    unknown = [token.split("=", 1)[0] for token in extra if token.startswith("-") and token != "-"]
    if not unknown:
        return f"unrecognized argument{'s' * (len(extra) > 1)}: {' '.join(extra)}"
    flags = [o for a in command._actions for o in a.option_strings]  # noqa: SLF001
    said = []
    for flag in unknown:
        close = _closest(flag, flags)
        said.append(flag + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return f"unrecognized flag{'s' * (len(said) > 1)} {', '.join(said)}; `{command.prog} --help` lists them all"


def _closest(flag: str, flags: Sequence[str]) -> list:
    """The flags (at most 3) that ``flag`` was likely meant to be: another tool's name for one, a
    flag it starts with (``--lr-rate``: ``--lr``) or that starts with it (``--input-step``), else
    the most similar (:func:`difflib.get_close_matches`)."""
    name = flag.replace("_", "-")
    if _ALSO_CALLED.get(name) in flags:
        return [_ALSO_CALLED[name]]
    related = [f for f in flags if f.startswith("--") and (name.startswith(f + "-") or f.startswith(name))]
    return related[:3] or difflib.get_close_matches(name, flags, n=1)


def _add_demo_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm demo``: train and evaluate on Moving MNIST."""
    p = sub.add_parser("demo", formatter_class=_Formatter, help="train and evaluate on Moving MNIST",
                       description="Generate Moving MNIST from the bundled MNIST digits, train a small ConvLSTM "
                                   "encoder-forecaster, evaluate it on held-out sequences against persistence "
                                   "and climatology, and write the run folder (metrics, pictures, checkpoints).",
                       epilog="example:\n  convlstm demo\n  convlstm demo --run-dir runs/my-demo --no-progress")
    p.add_argument("--run-dir", default="runs/demo", metavar="DIR",
                   help="the run folder (its checkpoints from an earlier demo are replaced)")
    p.add_argument("--seed", type=int, default=None, help="seed of the data and the training (default: the demo's, 1)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs (default: the demo's setting)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long smoke run on a few sequences (checks the set-up; not a real forecast)")
    p.add_argument("--precision", choices=("auto", "32", "bf16-mixed"), default=None,
                   help="training precision (default: auto); bf16-mixed runs the convolutions "
                        "in bfloat16 under autocast, the gates and cell state in float32; auto takes bf16-mixed "
                        "on a CPU with avx512_bf16 or amx_bf16, else 32")
    p.set_defaults(func=_cmd_demo)


def _add_fit_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm fit``: train a model on a grid file."""
    p = sub.add_parser("fit", formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="train a model on a grid file",
                       description="Train a ConvLSTM forecaster on a grid time series (time first), with "
                                   "chronological train/val/test parts, then evaluate it on the test part.",
                       epilog=FIT_EPILOG)
    _add_fit_arguments(p)
    p.set_defaults(func=_cmd_fit)


def _add_evaluate_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm evaluate``: score a trained model against baselines."""
    from .baselines import baseline_names
    from .conventions import CONVENTIONS
    from .extrapolation import MOTION_METHODS
    from .training.config import LAYOUTS

    known_baselines = baseline_names()

    p = sub.add_parser("evaluate", formatter_class=_Formatter, help="score a trained model against baselines",
                       description="Score a trained model on the test part of its data (or all of another file) beside "
                                   "persistence and climatology, in the data's units; write metrics.json, "
                                   "metrics_per_lead_time.csv, forecast.png, forecast.gif.",
                       epilog="examples:\n  convlstm evaluate runs/flow\n"
                              "  convlstm evaluate runs/flow/checkpoints/last.ckpt --data flow2025.npy "
                              "--out-dir runs/flow/2025\n  convlstm evaluate runs/radar --thresholds 0.5 2 5 "
                              "--units mm/h")
    p.add_argument("checkpoint", metavar="RUN|CKPT", help="a run folder (uses checkpoints/best.ckpt) or a .ckpt file")
    p.add_argument("--data", default=None, nargs="+", metavar="FILE",
                   help="evaluate on this grid file instead of the training file (or several files, a glob pattern "
                        "or a folder: an archive of events)")
    p.add_argument("--reader", default=None, metavar="NAME",
                   help="how to read --data: auto, xarray or pysteps:IMPORTER (default: the run's)")
    p.add_argument("--time-from-name", default=None, metavar="PATTERN",
                   help="strftime pattern of the time in --data's file names (default: the run's)")
    p.add_argument("--key", default=None, help="array / dataset / variable in --data (default: the run's, unless "
                                                "--data is a .npy file)")
    p.add_argument("--layout", default=None, type=str.upper, choices=LAYOUTS,
                   help="layout of --data (default: the run's)")
    p.add_argument("--part", default=None, choices=("all", "train", "val", "test"),
                   help="what to score: all, every window of the file, not split (the default with --data: a file "
                        "the model never saw), or the train, val or test part of the run's split (the default "
                        "without --data: test)")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="where to write (default: the run folder)")
    p.add_argument("--thresholds", type=float, nargs="+", default=None, metavar="T",
                   help="event thresholds (data units) for CSI, POD, FAR, ETS and FSS (an event is a value >= T) "
                        "(default: the run's, as fit scored it)")
    p.add_argument("--fss-scales", type=int, nargs="+", default=None, metavar="PIXELS",
                   help="window widths in pixels for the fractions skill score at each threshold (default: the "
                        "run's)")
    p.add_argument("--baselines", nargs="+", choices=known_baselines, default=None,
                   metavar="NAME", help=f"forecasts scored beside the model: {', '.join(known_baselines)} "
                                        f"(extrapolation: pysteps's optical-flow nowcast, steps: pysteps's STEPS "
                                        f"ensemble, both need the radar extra: {install_hint('radar')}; dressed: "
                                        f"the model's forecast plus its own validation errors, an ensemble) "
                                        f"(default: the run's; persistence climatology)")
    p.add_argument("--members", type=int, default=None, metavar="N",
                   help="members of every ensemble scored (steps, dressed, a model trained with members): CRPS, "
                        "Brier score, ROC area, reliability, rank histogram, spread-skill (default: the model's "
                        "own when it is an ensemble, else 20)")
    p.add_argument("--probability-threshold", type=float, default=None, metavar="T",
                   help="the event threshold of probability.png, the ensembles' P(x >= T) (default: the first of "
                        "--thresholds)")
    p.add_argument("--rank-min", type=float, default=None, metavar="T",
                   help="pysteps's X_min of the rank histograms, in data units: points where the truth and every "
                        "member are below T are not ranked, values below T tie (pysteps's example: 0.1 mm/h) "
                        "(default: every point ranked)")
    p.add_argument("--extrapolation-method", choices=MOTION_METHODS, default=None, metavar="METHOD",
                   help=f"pysteps's motion method for the extrapolation baseline: {', '.join(MOTION_METHODS)} "
                        f"(default: the run's; lucaskanade)")
    p.add_argument("--nonnegative", action=argparse.BooleanOptionalAction, default=None,
                   help="clamp the forecasts at 0, or not (default: as decided in training)")
    p.add_argument("--units", default=None, help="units for the colour bars (default: the run's --units)")
    p.add_argument("--convention", default=None, type=str.lower, choices=CONVENTIONS,
                   help="also print the scores in a published paper's convention: st-resnet (RMSE over the active "
                        "cells, DeepST's), st-ssl (MAE/MAPE per channel over values above 5), openstl (per-frame "
                        "sums on [0, 1] data)")
    p.add_argument("--samples", type=int, default=3, help="samples drawn in forecast.png")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (default: training's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.set_defaults(func=_cmd_evaluate)


def _add_predict_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm predict``: forecast from a grid file."""
    from .training.config import LAYOUTS

    p = sub.add_parser("predict", formatter_class=_Formatter, help="forecast from a grid file",
                       description="Forecast the frames after the end of a grid series (or after every window "
                                   "with --all-windows) and write them in the data's units to .npy, shaped "
                                   "(samples, lead_time, rows, cols, channels), or to a CF-1.8 netCDF (.nc) or "
                                   "Zarr (.zarr) dataset with reference times, lead times, valid times and the "
                                   "input's coordinates.",
                       epilog="examples:\n  convlstm predict runs/flow latest.npy --out next3h.npy\n"
                              "  convlstm predict runs/radar/checkpoints/best.ckpt radar.nc --key rain --layout THW "
                              "--all-windows --out nowcasts.nc")
    p.add_argument("checkpoint", metavar="RUN|CKPT", help="a run folder or a .ckpt file")
    p.add_argument("inputs", metavar="FILE", nargs="+",
                   help="grid series to forecast from (at least input_steps frames); or several files, a glob "
                        "pattern or a folder, read as one archive of events")
    p.add_argument("--reader", default=None, metavar="NAME",
                   help="how to read FILE: auto, xarray or pysteps:IMPORTER (default: the run's)")
    p.add_argument("--time-from-name", default=None, metavar="PATTERN",
                   help="strftime pattern of the time in the file names (default: the run's)")
    p.add_argument("--out", required=True, metavar="FILE", help="output file, .npy, .nc or .zarr")
    p.add_argument("--key", default=None, help="array / dataset / variable in FILE (default: the run's, unless "
                                                "FILE is a .npy file)")
    p.add_argument("--layout", default=None, type=str.upper, choices=LAYOUTS,
                   help="layout of FILE (default: the run's)")
    p.add_argument("--all-windows", action="store_true", help="a forecast from every window, not only the last")
    p.add_argument("--stride", type=int, default=1, help="steps between windows with --all-windows")
    p.add_argument("--batch-size", type=int, default=16, help="samples per batch")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--nonnegative", action=argparse.BooleanOptionalAction, default=None,
                   help="clamp the forecasts at 0, or not (default: as decided in training)")
    g = p.add_argument_group("ensembles (a run trained with --members)")
    g.add_argument("--members", type=int, default=None, metavar="N",
                   help="members to draw (default: the run's); .npy holds them, .nc/.zarr their mean as forecast, "
                        "the members, quantiles and probabilities")
    g.add_argument("--quantiles", type=float, nargs="+", default=None, metavar="Q",
                   help="quantile levels of the members written to .nc/.zarr, e.g. 0.1 0.5 0.9")
    g.add_argument("--thresholds", type=float, nargs="+", default=None, metavar="T",
                   help="exceedance probabilities P(x >= T) written to .nc/.zarr (default: the run's --thresholds)")
    g.add_argument("--seed", type=int, default=0, help="seed of the members' draw")
    p.set_defaults(func=_cmd_predict)


def _add_convert_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm convert``: convert a Keras model file."""
    p = sub.add_parser("convert", formatter_class=_Formatter, help="convert a Keras model file",
                       description="Convert a Keras .h5 / .keras model holding ConvLSTM layers to PyTorch "
                                   "(no TensorFlow needed); see convlstm.keras.convert.",
                       epilog="examples:\n  convlstm convert model.keras converted/\n"
                              "  convlstm convert weather.h5 -o converted/   # model.safetensors + config.json")
    p.add_argument("model", metavar="MODEL", help="the Keras file (.h5 or .keras)")
    p.add_argument("out_dir", metavar="OUT_DIR", nargs="?", default=None, help="folder for the converted model")
    p.add_argument("-o", "--out", dest="out", default=None, metavar="OUT_DIR", help="the same as OUT_DIR")
    p.set_defaults(func=_cmd_convert)


def _add_export_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm export``: export a model to ONNX."""
    p = sub.add_parser("export", formatter_class=_Formatter, help="export a model to ONNX",
                       description="Export the model of a run, a checkpoint or a Keras file to one ONNX file "
                                   "that runs on any batch size and number of input steps (onnxruntime, "
                                   "OpenVINO); prints its inputs and outputs and what they hold. A run's file "
                                   "reads and writes the data's units (its scaler and clamp at 0 are in the "
                                   "graph) unless --scaled. See docs/export.md.",
                       epilog="examples:\n  convlstm export runs/flow flow.onnx\n"
                              "  convlstm export runs/flow -o flow-scaled.onnx --scaled\n"
                              "  convlstm export model.keras -o model.onnx --static-time")
    p.add_argument("source", metavar="RUN|CKPT|KERAS_FILE",
                   help="a run folder, a .ckpt file, or a Keras .h5 / .keras file")
    p.add_argument("out_file", metavar="OUT", nargs="?", default=None, help="the .onnx file to write")
    p.add_argument("-o", "--out", default=None, metavar="FILE", help="the same as OUT")
    p.add_argument("--opset", type=int, default=18, metavar="N", help="ONNX opset (18 or more)")
    p.add_argument("--scaled", action="store_true",
                   help="a run's bare network: it reads and writes scaled values (apply the run's scaler "
                        "around it, as the file's metadata describes) instead of the data's units")
    p.add_argument("--static-time", action="store_true",
                   help="the unrolled graph, fixed at the example's time steps (a run's input_steps, a Keras "
                        "file's input shape), for runtimes that need static shapes; the batch stays dynamic")
    p.add_argument("--min-time", type=int, default=None, metavar="N",
                   help="trace for at least N input steps; the file then needs T >= N (default: the "
                        "model's own minimum, 3 for convlstm-warp, else 1)")
    p.set_defaults(func=_cmd_export)


def _add_models_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm models``: list the ready models."""
    p = sub.add_parser("models", formatter_class=_Formatter, help="list the ready models",
                       description="List the models `--model` accepts, with their descriptions.")
    p.set_defaults(func=_cmd_models)


def _add_config_command(sub: "argparse._SubParsersAction") -> None:
    """``convlstm config``: list or print the bundled example configs."""
    p = sub.add_parser("config", formatter_class=_Formatter, help="list or print the bundled example configs",
                       description="List the example configs shipped with the package, or print one (to save "
                                   "and edit). `convlstm fit --config NAME` uses one as it is.",
                       epilog="examples:\n  convlstm config\n  convlstm config flow > my-run.yaml   # edit it, then:\n"
                              "  convlstm fit --config my-run.yaml")
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="the config to print (default: list them)")
    p.set_defaults(func=_cmd_config)



# fit's flags whose destination is not the FitConfig field of the same name
_FIELD_OF_DEST = {"model_option": "model_options", "loss_option": "loss_options", "reader_option": "reader_options",
                  "member_option": "member_options"}


def _flag_names(parser: argparse.ArgumentParser) -> Dict[str, str]:
    """Parameter (destination) name -> the flag (``--fill-nan``) or argument (``DATA``) of
    ``parser`` that sets it."""
    names: Dict[str, str] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of a parser's arguments
        if action.dest in (argparse.SUPPRESS, "help"):
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        flag = (longs or action.option_strings or [action.metavar or action.dest.upper()])[0]
        names[action.dest] = flag
        if action.dest in _FIELD_OF_DEST:
            names[_FIELD_OF_DEST[action.dest]] = flag
    return names


def _cli_message(exc: BaseException, flag_names: Dict[str, str]) -> str:
    """The message of ``exc``; for a :class:`~convlstm._errors.ParameterError`, with the
    parameters it names spelled as this command's flags (``fill_nan=0`` -> ``--fill-nan 0``)."""
    text = str(exc)
    for name in getattr(exc, "parameters", ()):
        flag = flag_names.get(name)
        if flag:
            text = re.sub(rf"(?<![\w-]){re.escape(name)}=", flag + " ", text)
            text = re.sub(rf"(?<![\w-]){re.escape(name)}(?!\w)", flag, text)
    return text


# ---------------------------------------------------------------------------------- commands
def fit_config_from_args(args: argparse.Namespace):
    """The :class:`FitConfig` of ``convlstm fit``'s arguments: defaults < --config file < flags."""
    from .training.config import FitConfig, load_config, load_run_config

    if args.config:
        cfg = load_config(args.config)
    elif getattr(args, "resume", False) and getattr(args, "run_dir", None):
        cfg = load_run_config(args.run_dir)  # the run's data and options; the flags below override them
    else:
        cfg = FitConfig()
    skip = {"config", "save_config", "func", "command", "model_option", "loss_option", "reader_option",
            "member_option", "flag_names"}
    given = {k: v for k, v in vars(args).items() if k not in skip}
    if "data" in given:  # DATA...: none keeps the config's, one is a path, several a list
        data = list(given.pop("data"))
        if data:
            given["data"] = data[0] if len(data) == 1 else data
    if "model_option" in vars(args):
        opts = dict(cfg.model_options)
        opts.update(dict(args.model_option))
        given["model_options"] = opts
    if "member_option" in vars(args):
        opts = dict(cfg.member_options)
        opts.update(dict(args.member_option))
        given["member_options"] = opts
    if "reader_option" in vars(args):
        opts = dict(cfg.reader_options)
        opts.update(dict(args.reader_option))
        given["reader_options"] = opts
    if "loss_option" in vars(args):
        opts = dict(cfg.loss_options)
        opts.update(dict(args.loss_option))
        given["loss_options"] = opts
    return cfg.replace(**given) if given else cfg


def _cmd_fit(args: argparse.Namespace) -> int:
    from .training import fit, save_config

    cfg = fit_config_from_args(args)
    if args.save_config:
        save_config(cfg, args.save_config)
        print(f"wrote {args.save_config}")
        return 0
    if cfg.data is None:
        raise ValueError("no data: give the grid file (convlstm fit DATA.npy ...) or `data:` in --config")
    run_dir = fit(cfg)
    _print_run(run_dir)
    return 0


def _print_run(run_dir) -> None:
    import json
    from pathlib import Path

    from .training import format_results

    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        with open(run_dir / "metrics.json", encoding="utf-8") as fh:
            print(format_results(json.load(fh)))
    print(f"run folder: {run_dir}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .training import demo

    settings: Dict[str, Any] = {}
    if args.quick:
        settings.update(num_sequences=48, max_epochs=1, model_options={"filters": [8], "patch_size": 2,
                                                                       "encoder_width": 8, "correction": False})
    if args.epochs is not None:
        settings["max_epochs"] = args.epochs
    if args.precision is not None:
        settings["precision"] = args.precision
    demo(args.run_dir, settings=settings, progress=args.progress, seed=args.seed)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training import evaluate, format_results

    data = args.data[0] if args.data is not None and len(args.data) == 1 else args.data
    results = evaluate(args.checkpoint, data=data, key=args.key, layout=args.layout, part=args.part,
                       reader=args.reader, time_from_name=args.time_from_name,
                       out_dir=args.out_dir, thresholds=args.thresholds, units=args.units, samples=args.samples,
                       batch_size=args.batch_size, device=args.device, baselines=args.baselines,
                       fss_scales=args.fss_scales, extrapolation_method=args.extrapolation_method,
                       nonnegative=args.nonnegative, convention=args.convention, members=args.members,
                       probability_threshold=args.probability_threshold, rank_min=args.rank_min)
    print(format_results(results))
    if args.convention:
        from .conventions import format_convention

        print()
        print(format_convention(results, args.convention, args.units))
    from .training.runs import find_checkpoint, run_dir_of

    print(f"wrote metrics and pictures to {args.out_dir or run_dir_of(find_checkpoint(args.checkpoint))}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .training import predict

    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    out = predict(args.checkpoint, inputs, args.out, key=args.key, layout=args.layout,
                  reader=args.reader, time_from_name=args.time_from_name,
                  all_windows=args.all_windows, stride=args.stride, batch_size=args.batch_size, device=args.device,
                  nonnegative=args.nonnegative, members=args.members, quantiles=args.quantiles,
                  thresholds=args.thresholds, seed=args.seed)
    print(f"wrote {out}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    out_dir = args.out or args.out_dir
    if out_dir is None:
        raise ValueError("no output folder: give OUT_DIR or -o OUT_DIR")
    if args.out and args.out_dir and args.out != args.out_dir:
        raise ValueError(f"two output folders given: OUT_DIR={args.out_dir!r} and -o {args.out!r}; give one")
    try:
        from .keras.convert import convert
    except ImportError as exc:
        raise ValueError(f"convert is not available in this installation: {exc}") from None
    summary = convert(args.model, out_dir)
    if summary:
        print(summary)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .training.config import bundled_configs, read_bundled_config

    if args.name is not None:
        sys.stdout.write(read_bundled_config(args.name))
        return 0
    for name, about in bundled_configs().items():
        print(f"{name:<12} {about}")
    print("\nprint one: convlstm config NAME (> my.yaml to edit it); train with one: convlstm fit --config NAME")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .onnx import describe
    from .onnx.sources import export_file

    if args.out and args.out_file and args.out != args.out_file:
        raise ValueError(f"two output files given: OUT={args.out_file!r} and -o {args.out!r}; give one")
    if not (args.out or args.out_file):
        raise ValueError("no output file: give OUT or -o OUT (e.g. convlstm export runs/flow flow.onnx)")
    out = export_file(args.source, args.out or args.out_file, opset_version=args.opset,
                      dynamic_time=not args.static_time, min_time=args.min_time, units=not args.scaled)
    print(f"wrote {out}")
    print(describe(out))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from . import models

    for name in models.list_models():
        print(f"{name:<20} {models.model_info(name)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line and return its exit status.

    0 on success; 2 for a mistake of the user's (a bad argument, a missing file: one line that
    names the flag); 1 for a file the system refuses to read or write (permission denied, disk
    full: one line that names the path and why); 130 when interrupted. Any other exception is a
    bug and propagates with its traceback, as every exception does when the environment variable
    ``CONVLSTM_DEBUG`` is set.
    """
    parser = build_parser()
    args = _parse_args(parser, argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"convlstm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        report = None if os.environ.get("CONVLSTM_DEBUG") else _error_report(exc, args)
        if report is None:  # a bug: its traceback
            raise
        message, status = report
        print(f"convlstm {args.command}: error: {message}", file=sys.stderr)
        return status


def _error_report(exc: Exception, args: argparse.Namespace) -> Optional[Tuple[str, int]]:
    """The one-line message and the exit status of ``exc``, or ``None`` for a bug."""
    if isinstance(exc, OSError) and exc.filename is not None:  # the system's, about a path
        paths = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        return f"{paths}: {exc.strerror or exc}", 2 if isinstance(exc, _USER_ERRORS) else 1
    if isinstance(exc, _USER_ERRORS):
        return _cli_message(exc, getattr(args, "flag_names", {})), 2
    if isinstance(exc, OSError):  # that names no path
        return str(exc), 1
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] != "convlstm":  # a package not installed
        from .training import missing_train_extra

        return str(missing_train_extra(exc, f"convlstm {args.command}")), 2
    return None


if __name__ == "__main__":  # python -m convlstm.cli
    sys.exit(main())
