"""The options of a training run (:class:`FitConfig`), read from and written to YAML.

One flat table of options serves the library (``fit(FitConfig(...))``), the YAML files
(``convlstm fit --config run.yaml``) and the command line (``--input-steps 6`` is
``input_steps: 6``); command-line flags override the file, the file overrides the defaults.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .._checks import check_fractions, is_integer, is_real
from .._errors import ParameterError
from ..data.readers import LAYOUTS as _READER_LAYOUTS
from ..data.units import TRANSFORMS, UnitConversion
from ..extrapolation import MOTION_METHODS
from ..baselines import baseline_names
from ..losses import LOSS_NAMES as _LOSS_NAMES
from ..losses import get_loss as _get_loss
from ..models.baseline_start import STARTS

__all__ = ["FitConfig", "ParameterError", "load_config", "save_config", "load_run_config", "bundled_configs",
           "read_bundled_config", "LOSSES", "SCHEDULERS", "PRECISIONS", "LAYOUTS",
           "SCALER_NAMES"]

LOSSES = tuple(_LOSS_NAMES)  # convlstm.losses.LOSS_NAMES
SCHEDULERS = ("none", "cosine", "plateau", "onecycle")
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed", "64")
LAYOUTS = tuple(_READER_LAYOUTS)  # the layouts the grid readers understand
SCALER_NAMES = ("minmax", "standard", "log1p", "db", "none")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_CONVERSION_FIELDS = ("scale", "offset", "transform", "zr_a", "zr_b", "interval_minutes")  # UnitConversion's
_CONFIGS = resources.files("convlstm").joinpath("configs")  # the example configs shipped in the package


# ---------------------------------------------------------------------------------- field checks
# Each checks the field ``name`` of a config, stores its normalised value (``int``, ``float``, the
# lower-case spelling) and raises a ParameterError that names the field, the value and what is allowed.
def _choice(config: "FitConfig", name: str, allowed: Sequence[str], lower: bool = True) -> None:
    v = getattr(config, name)
    if not isinstance(v, str) or (v.lower() if lower else v) not in allowed:
        raise ParameterError(name, f"{name} must be one of {', '.join(allowed)}; got {v!r}")
    setattr(config, name, v.lower() if lower else v)


def _integer(config: "FitConfig", name: str, minimum: int, optional: bool = False) -> None:
    v = getattr(config, name)
    if v is None and optional:
        return
    if not is_integer(v) or v < minimum:
        raise ParameterError(name, f"{name} must be an integer >= {minimum}{' or None' if optional else ''}; "
                                   f"got {v!r}")
    setattr(config, name, int(v))


def _number(config: "FitConfig", name: str, minimum: Optional[float] = None, optional: bool = False,
            strict: bool = False) -> None:
    """A finite number, ``>= minimum`` (``> minimum`` when ``strict``)."""
    v = getattr(config, name)
    if v is None and optional:
        return
    if not is_real(v) or not math.isfinite(float(v)) or (
            minimum is not None and (float(v) <= minimum if strict else float(v) < minimum)):
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise ParameterError(name, f"{name} must be a finite number{bound}{' or None' if optional else ''}; "
                                   f"got {v!r}")
    setattr(config, name, float(v))


def _flag(config: "FitConfig", name: str) -> None:
    v = getattr(config, name)
    if not isinstance(v, bool):
        raise ParameterError(name, f"{name} must be true or false; got {v!r}")


def _text(config: "FitConfig", name: str, optional: bool = True) -> None:
    v = getattr(config, name)
    if v is None and optional:
        return
    if not isinstance(v, (str, Path)):
        raise ParameterError(name, f"{name} must be a string{' or None' if optional else ''}; got {v!r}")
    setattr(config, name, str(v))


def _options(config: "FitConfig", name: str) -> None:
    """A mapping of option name to value (``None``: none)."""
    v = getattr(config, name)
    if v is None:
        v = {}
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise ParameterError(name, f"{name} must be a mapping of option name to value; got {v!r}")
    setattr(config, name, v)


def _batches(config: "FitConfig", name: str) -> None:
    """A fraction of the batches in (0, 1], or a whole number of them (``None``: all)."""
    v = getattr(config, name)
    if v is None:
        return
    if is_integer(v) and v >= 1:
        setattr(config, name, int(v))
    elif is_real(v) and 0 < float(v) <= 1:
        setattr(config, name, float(v))
    else:
        raise ParameterError(name, f"{name} must be a fraction in (0, 1] or a whole number of batches >= 1; "
                                   f"got {v!r}")


def _devices(value: Any) -> Union[int, str, List[int]]:
    """``devices`` normalised: ``"auto"``, a count >= 1, -1 (all) or a list of device indices."""
    d = value
    if isinstance(d, str) and d.strip().lstrip("-").isdigit():
        d = int(d)
    if isinstance(d, (list, tuple)) and d and all(is_integer(i) and i >= 0 for i in d):
        return [int(i) for i in d]
    if is_integer(d) and (d >= 1 or d == -1):
        return int(d)
    if isinstance(d, str) and d == "auto":
        return d
    raise ParameterError("devices", f"devices must be 'auto', a count >= 1, -1 (all) or a list of device "
                                    f"indices; got {d!r}")


@dataclass
class FitConfig:
    """Everything a training run needs. Every field has a YAML key of the same name and a
    command-line flag with dashes (``input_steps`` -> ``--input-steps``).

    Data:
        data: the grid file (``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.nc``, ``.zarr``), or several:
            a list of files, a glob pattern (``"radar/*.h5"``) or a folder, read as one archive
            whose events (each file of several frames; a gap-free stretch of one-frame files)
            no sample crosses (:func:`convlstm.data.open_archive`).
        key: the array / dataset / variable in that file (needed when it holds several).
        layout: how the file's axes are stored: ``THWC``, ``TCHW`` or ``THW``.
        reader: ``auto`` (by suffix), ``xarray`` (netCDF, zarr, GRIB with cfgrib; CF time and
            coordinates) or ``pysteps:NAME`` (pysteps's importer NAME, e.g. ``pysteps:odim_hdf5``,
            one file per time step, converted to mm/h by pysteps).
        reader_options: keyword arguments of the reader: pysteps's importer arguments (``mch_gif``
            needs ``product``, ``unit`` and ``accutime``), or xarray's ``engine``.
        time_from_name: the time in each file's name, as a ``strftime`` pattern (``%Y%m%d%H%M``),
            for archives of one frame per file.
        split_by: ``time`` (cut at the split fractions) or ``event`` (cut between events, so the
            test part holds whole events the model never saw).
        input_steps, output_steps: frames in and frames forecast per sample.
        stride: steps between window starts; gap: steps skipped between input and target.
        split: train, validation and test fractions of the time axis (chronological).
        closeness, period, trend: multi-scale samples (ST-ResNet's names): the last ``closeness``
            frames, the same time on ``period`` previous days and in ``trend`` previous weeks
            (:class:`convlstm.data.MultiScaleWindowDataset`; a sample belongs to the part of its
            target, its inputs may reach back into earlier parts). ``None``: ``closeness`` =
            ``input_steps``; ``period``/``trend``/``calendar``: automatic for a model that takes
            the streams and features (``st-convlstm``: period 1 and calendar on with time stamps and a
            week of training, trend 1 with four weeks, see
            :func:`convlstm.training.multiscale.auto_streams`), else 0/off. Setting any of them, ``calendar``,
            ``holidays`` or ``external`` switches to multi-scale samples.
        period_interval, trend_interval: the streams' intervals in steps (default: one day and
            one week, from the file's time stamps or ``steps_per_day``).
        calendar: hour-of-day and day-of-week features (cyclic), weekend and holiday flags of
            the target time (:func:`convlstm.data.calendar_features`; needs time stamps and a
            model that takes features, ``st-convlstm``); ``None``: automatic, as ``period``.
        holidays: a text file of dates, one per line (``YYYY-MM-DD``), for the holiday flag.
        external, external_data: keys of external series (``(T,)`` or ``(T, F)``, e.g. weather)
            read from ``external_data`` (default: the data file), min-max scaled on the training
            part, taken at each sample's last observed step.
        scaler: ``minmax``, ``standard``, ``log1p``, ``db`` (pysteps's dB transform, then
            min-max) or ``none`` (fitted on the training part).
        fill_nan: replace NaN/inf in the data by this number (otherwise they are an error).
        scale, offset, transform, zr_a, zr_b, interval_minutes: physical units
            (:class:`convlstm.data.UnitConversion`): ``value = stored * scale + offset``, then
            ``transform`` (``none``, ``reflectivity-to-rate``, ``rate-to-reflectivity`` with
            ``Z = zr_a R^zr_b``, Marshall-Palmer 200 and 1.6 by default;
            ``accumulation-to-rate``, ``rate-to-accumulation`` over ``interval_minutes``).
            Thresholds, metrics, colour bars and forecasts are then in these units.
        nonnegative: clamp forecasts at 0 in data units (``True``/``False``; ``None`` = auto: on
            when the training part has no negative value, as counts and rain).
        batch_size, num_workers: the data loaders'.
    Model:
        model: a name from ``convlstm.models.list_models()``.
        model_options: keyword overrides for ``convlstm.models.create``.
        start_from: the baseline the model is a correction of, so that the untrained model
            forecasts exactly it (:class:`convlstm.models.StartFromBaseline`): ``auto`` (default:
            nothing for a model that starts from one by construction, ``convlstm-warp``'s
            block-matching extrapolation; persistence for the others), ``persistence``,
            ``seasonal`` (the same time one period before: ``st-convlstm`` with a period stream)
            or ``none`` (the model as published).
        calibrate_blend: after training, blend the forecast toward that start where it is better
            on the validation part, one weight per lead time and channel chosen in closed form
            (:mod:`convlstm.training.blend_calibration`); the weights are stored in the best
            checkpoint and in ``metrics.json["blend"]``. Default true.
        members: 0 (default): one forecast; M >= 2: an ensemble, M members per
            sample trained with the almost fair CRPS (:class:`convlstm.models.StochasticMembers`,
            :class:`convlstm.losses.EnsembleCRPS`); ``predict``/``evaluate --members N`` draw any number.
        member_options: ``noise_length`` (pixels), ``spread_width``, ``initial_spread``, ``noise``
            (``additive``, the default, ``log-normal`` or ``laplace``), ``noise_offset``, ``alpha``,
            ``spatial_weight``, ``spatial_pool``, ``centre``.
    Optimisation:
        loss (``mse``, ``mae``, ``bce``, ``mse+ssim``, ``balanced``; see :mod:`convlstm.losses`),
        loss_options (keyword options of that loss, checked against it: ``mse+ssim`` takes
        ``ssim_weight`` (default 1.0) and ``data_range`` (1.0, in the scaled units the model
        sees); ``balanced`` takes ``thresholds`` (default ``[2, 5, 10, 30]``, in the data's
        units, mapped through the scaler at training time) and ``weights`` (default
        ``[1, 2, 5, 10, 30]``); the others take none), lr, weight_decay, scheduler (``none``,
        ``cosine``, ``plateau``, ``onecycle``), scheduled_sampling (a fraction :math:`s` of the
        training over which the probability of feeding the true frame, instead of the model's own
        forecast, to its next step falls from 1 to 0; 0 = off; only for models that feed their
        forecasts back, such as ``convlstm-warp``), max_epochs, patience (early stopping on the
        validation loss; ``None`` = off), gradient_clip, limit_train_batches /
        limit_val_batches (a fraction or a number of batches per epoch).
    Hardware and reproducibility:
        precision (``auto``: ``bf16-mixed`` on a CPU with bfloat16 instructions, float32 on other
        CPUs, see :mod:`convlstm.training.precision`; ``32``, ``16-mixed``, ``bf16-mixed``, ``64``),
        seed, deterministic,
        accelerator, devices, num_nodes, strategy (``auto``, ``ddp``, ``ddp_spawn``, ...),
        memory_limit (what a CPU training step may use: ``None``/``"auto"`` = 80% of the memory
        available, a size such as ``"8GB"`` or a number of bytes, ``"off"`` = no check; before
        training, a batch size over it is lowered to the largest that fits, see
        :mod:`convlstm.training.memory`).
    Outputs:
        run_dir (default ``runs/fit-<date>-<time>``), resume (continue from
        ``run_dir/checkpoints/last.ckpt``), evaluate (score the test part and draw the pictures
        after training), thresholds (CSI/POD/FAR/ETS/FSS thresholds in data units), fss_scales
        (FSS window widths in pixels), baselines (scored beside the model: ``persistence``,
        ``climatology``, ``extrapolation``; the last needs the ``radar`` extra),
        extrapolation_method (pysteps's optical flow: ``lucaskanade``, ``vet``, ...), units
        (colour-bar label), samples (samples drawn in forecast.png), progress (progress bar).
    """

    # ------------------------------------------------------------------ data
    data: Union[None, str, List[str]] = None
    key: Optional[str] = None
    layout: str = "THWC"
    reader: str = "auto"
    reader_options: Dict[str, Any] = field(default_factory=dict)
    time_from_name: Optional[str] = None
    split_by: str = "time"
    input_steps: int = 6
    output_steps: int = 3
    stride: int = 1
    gap: int = 0
    closeness: Optional[int] = None
    period: Optional[int] = None
    trend: Optional[int] = None
    period_interval: Optional[int] = None
    trend_interval: Optional[int] = None
    steps_per_day: Optional[int] = None
    calendar: Optional[bool] = None
    holidays: Optional[str] = None
    external: List[str] = field(default_factory=list)
    external_data: Optional[str] = None
    split: List[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    scaler: str = "minmax"
    fill_nan: Optional[float] = None
    scale: float = 1.0
    offset: float = 0.0
    transform: str = "none"
    zr_a: float = 200.0
    zr_b: float = 1.6
    interval_minutes: Optional[float] = None
    nonnegative: Optional[bool] = None
    batch_size: int = 16
    num_workers: int = 0

    def _check_source(self) -> None:
        """``data``, ``key``, ``layout``, ``reader``, ``time_from_name`` and ``split_by``: the file(s)
        and how to read them."""
        if isinstance(self.data, (list, tuple)):
            if not self.data or not all(isinstance(d, (str, Path)) and str(d) for d in self.data):
                raise ParameterError("data", f"data must be a file, a glob pattern, a folder or a list of files; "
                                             f"got {self.data!r}")
            self.data = str(self.data[0]) if len(self.data) == 1 else [str(d) for d in self.data]
        else:
            _text(self, "data")
        _text(self, "key"); _text(self, "time_from_name")
        from ..data.archive import _check_reader

        self.reader = _check_reader(self.reader)
        _options(self, "reader_options")
        _choice(self, "split_by", ("time", "event"))
        if isinstance(self.layout, str):
            self.layout = self.layout.upper()
        _choice(self, "layout", LAYOUTS, lower=False)

    def _check_windows(self) -> None:
        """``input_steps``, ``output_steps``, ``stride``, ``gap`` and ``split``: the samples and
        the train, validation and test parts."""
        _integer(self, "input_steps", 1); _integer(self, "output_steps", 1)
        _integer(self, "stride", 1); _integer(self, "gap", 0)
        self.split = list(check_fractions("split", self.split))

    def _check_multiscale(self) -> None:
        """``closeness`` to ``external_data``: the multi-scale samples and their features."""
        _integer(self, "closeness", 1, optional=True)
        _integer(self, "period", 0, optional=True); _integer(self, "trend", 0, optional=True)
        _integer(self, "period_interval", 1, optional=True); _integer(self, "trend_interval", 1, optional=True)
        _integer(self, "steps_per_day", 1, optional=True)
        if self.calendar is not None and not isinstance(self.calendar, bool):
            raise ParameterError("calendar", f"calendar must be true, false or null (automatic); "
                                             f"got {self.calendar!r}")
        _text(self, "holidays"); _text(self, "external_data")
        ext = [self.external] if isinstance(self.external, str) else (self.external or [])
        if not isinstance(ext, (list, tuple)) or not all(isinstance(k, str) and k for k in ext):
            raise ParameterError("external", f"external must be a list of keys (arrays in the data file or "
                                             f"external_data); got {self.external!r}", also=("external_data",))
        self.external = list(ext)

    def _check_values(self) -> None:
        """``scaler``, ``fill_nan``, the physical units (``scale`` to ``interval_minutes``) and
        ``nonnegative``: how the values are read, scaled and clamped."""
        _choice(self, "scaler", SCALER_NAMES)
        _number(self, "fill_nan", optional=True)
        _number(self, "scale"); _number(self, "offset")
        _number(self, "zr_a", 0.0, strict=True); _number(self, "zr_b", 0.0, strict=True)
        _number(self, "interval_minutes", 0.0, optional=True, strict=True)
        _choice(self, "transform", TRANSFORMS)
        self.conversion()  # scale != 0, interval_minutes given exactly for the accumulation transforms
        if self.nonnegative is not None and not isinstance(self.nonnegative, bool):
            raise ParameterError("nonnegative", f"nonnegative must be true, false or null (auto: on when the "
                                 f"training data has no negative value); got {self.nonnegative!r}")

    def _check_loaders(self) -> None:
        """``batch_size`` and ``num_workers``."""
        _integer(self, "batch_size", 1); _integer(self, "num_workers", 0)

    def conversion(self) -> UnitConversion:
        """The :class:`convlstm.data.UnitConversion` of ``scale``, ``offset``, ``transform``,
        ``zr_a``, ``zr_b`` and ``interval_minutes``."""
        try:
            return UnitConversion(self.scale, self.offset, self.transform, zr_a=self.zr_a, zr_b=self.zr_b,
                                  interval_minutes=self.interval_minutes)
        except (TypeError, ValueError) as exc:
            raise ParameterError("scale", str(exc), also=_CONVERSION_FIELDS[1:]) from None

    # ------------------------------------------------------------------ model
    model: str = "convlstm-warp"
    model_options: Dict[str, Any] = field(default_factory=dict)
    start_from: str = "auto"
    calibrate_blend: bool = True
    members: int = 0
    member_options: Dict[str, Any] = field(default_factory=dict)

    def _check_model(self) -> None:
        """``model``, ``model_options`` (the model checks the options when it is built) and
        ``start_from``."""
        if not isinstance(self.model, str) or not self.model:
            raise ParameterError("model", f"model must be a model name (see `convlstm models`); "
                                          f"got {self.model!r}")
        _options(self, "model_options")
        _choice(self, "start_from", STARTS)
        _flag(self, "calibrate_blend")
        _integer(self, "members", 0)
        _options(self, "member_options")
        from ..models.members import check_members

        check_members(self.members, self.member_options, self.loss)

    # ------------------------------------------------------------------ optimisation
    loss: str = "mse"
    loss_options: Dict[str, Any] = field(default_factory=dict)
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    scheduled_sampling: float = 0.0
    max_epochs: int = 20
    patience: Optional[int] = None
    gradient_clip: Optional[float] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None

    def _check_loss(self) -> None:
        """``loss`` and ``loss_options``, checked by building the loss."""
        _choice(self, "loss", LOSSES)
        _options(self, "loss_options")
        self.loss_options = _plain(self.loss_options)  # tuples -> lists, as YAML gives them back
        try:
            _get_loss(self.loss, **self.loss_options)  # names and values checked by the loss itself
        except (ValueError, TypeError) as exc:
            raise ParameterError("loss_options", f"loss_options: {exc}") from None

    def _check_schedule(self) -> None:
        """``lr`` to ``limit_val_batches``: the optimiser, its schedule and the training's length."""
        _choice(self, "scheduler", SCHEDULERS)
        _number(self, "scheduled_sampling", 0.0)
        if self.scheduled_sampling > 1:
            raise ParameterError("scheduled_sampling", f"scheduled_sampling must be a fraction of the training in "
                                                       f"[0, 1] (0 = off); got {self.scheduled_sampling!r}")
        _number(self, "lr", 0.0, strict=True); _number(self, "weight_decay", 0.0)
        _integer(self, "max_epochs", 1); _integer(self, "patience", 1, optional=True)
        _number(self, "gradient_clip", 0.0, optional=True, strict=True)
        _batches(self, "limit_train_batches"); _batches(self, "limit_val_batches")

    # ------------------------------------------------------------------ hardware and reproducibility
    precision: str = "auto"
    seed: int = 0
    deterministic: bool = False
    accelerator: str = "auto"
    devices: Union[int, str, List[int]] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    memory_limit: Union[None, int, str] = None

    def _check_hardware(self) -> None:
        """``precision`` to ``strategy``: where and how the training runs."""
        if is_integer(self.precision):
            self.precision = str(self.precision)
        if self.precision in ("32-true", "64-true"):
            self.precision = self.precision[:-len("-true")]
        _choice(self, "precision", PRECISIONS)
        _integer(self, "seed", 0)
        _flag(self, "deterministic")
        _choice(self, "accelerator", ACCELERATORS)
        self.devices = _devices(self.devices)
        _integer(self, "num_nodes", 1)
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ParameterError("strategy", f"strategy must be a Lightning strategy name such as auto, ddp, "
                                             f"ddp_spawn, fsdp, deepspeed; got {self.strategy!r}")

    def _check_memory_limit(self) -> None:
        """``memory_limit``: ``None``, ``"off"``, a number of bytes or a size (``"8GB"``, kept so)."""
        if self.memory_limit is None:
            return
        from .memory import parse_memory_limit

        limit = parse_memory_limit(self.memory_limit)  # raises naming memory_limit
        if limit is None or limit == "off":
            self.memory_limit = limit
        else:  # keep the spelling given ("8GB") when it was text
            self.memory_limit = self.memory_limit.strip() if isinstance(self.memory_limit, str) else limit

    # ------------------------------------------------------------------ outputs and scoring
    run_dir: Optional[str] = None
    resume: bool = False
    evaluate: bool = True
    thresholds: List[float] = field(default_factory=list)
    fss_scales: List[int] = field(default_factory=list)
    baselines: List[str] = field(default_factory=lambda: ["persistence", "climatology"])
    extrapolation_method: str = "lucaskanade"
    units: str = ""
    samples: int = 3
    progress: bool = True

    def _check_outputs(self) -> None:
        """``run_dir``, ``resume``, ``evaluate``, ``units``, ``samples`` and ``progress``."""
        _text(self, "run_dir"); _text(self, "units", optional=False)
        _flag(self, "resume"); _flag(self, "evaluate"); _flag(self, "progress")
        _integer(self, "samples", 1)

    def _check_scoring(self) -> None:
        """``thresholds``, ``fss_scales``, ``baselines`` and ``extrapolation_method``: what the
        test part is scored with, and against."""
        th = self.thresholds
        th = [] if th is None else ([th] if is_real(th) else th)
        if not isinstance(th, (list, tuple)) or not all(is_real(t) and math.isfinite(float(t)) for t in th):
            raise ParameterError("thresholds", f"thresholds must be a list of numbers (in the data's units); "
                                               f"got {self.thresholds!r}")
        self.thresholds = [float(t) for t in th]
        sc = self.fss_scales
        sc = [] if sc is None else ([sc] if is_integer(sc) else sc)
        if not isinstance(sc, (list, tuple)) or not all(is_integer(v) and v >= 1 for v in sc):
            raise ParameterError("fss_scales", f"fss_scales must be a list of FSS window widths in pixels "
                                               f"(integers >= 1); got {self.fss_scales!r}")
        if sc and not self.thresholds:
            raise ParameterError("fss_scales", f"fss_scales={list(sc)} needs thresholds too (FSS is computed at "
                                               f"every threshold and scale); give thresholds, e.g. thresholds=[1.0]",
                                 also=("thresholds",))
        self.fss_scales = [int(v) for v in sc]
        b = [self.baselines] if isinstance(self.baselines, str) else self.baselines
        b = [] if b is None else b
        known = baseline_names()   # the built-in baselines and any registered one
        if not isinstance(b, (list, tuple)) or not all(isinstance(v, str) and v.lower() in known for v in b):
            raise ParameterError("baselines",
                                 f"baselines must be a list of {', '.join(known)}; got {self.baselines!r}")
        self.baselines = list(dict.fromkeys(v.lower() for v in b))
        _choice(self, "extrapolation_method", MOTION_METHODS)

    # ------------------------------------------------------------------ all checks
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "FitConfig":
        """Check every field; raise ``ValueError``/``TypeError`` naming the field, the value and
        what is allowed. Normalises a few spellings (``precision=32`` -> ``"32"``)."""
        for check in (self._check_source, self._check_windows, self._check_multiscale, self._check_values,
                      self._check_loaders, self._check_model, self._check_loss, self._check_schedule,
                      self._check_hardware, self._check_memory_limit, self._check_outputs, self._check_scoring):
            check()
        return self

    # ------------------------------------------------------------------ dict / YAML
    def to_dict(self) -> Dict[str, Any]:
        """A plain dict (JSON/YAML-able)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: Optional["FitConfig"] = None) -> "FitConfig":
        """Build a config from ``values`` (e.g. YAML), on top of ``base`` (default: the defaults).
        Unknown keys are an error that lists the known ones."""
        if not isinstance(values, Mapping):
            raise ValueError(f"a config must be a mapping of option: value; got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ValueError(f"unknown config option(s) {', '.join(map(repr, unknown))}; known options: "
                             f"{', '.join(known)}")
        merged = base.to_dict() if base is not None else {}
        merged.update(values)
        return cls(**merged)

    def replace(self, **changes: Any) -> "FitConfig":
        """A copy with ``changes`` applied (and checked)."""
        return FitConfig.from_dict(changes, base=self)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if getattr(v, "ndim", 0) and callable(getattr(v, "tolist", None)):  # numpy arrays, tensors
        return _plain(v.tolist())
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v


def bundled_configs() -> Dict[str, str]:
    """The example configs shipped in the package (``convlstm/configs/*.yaml``): name (the file
    name without ``.yaml``) -> its first comment line, which says what it is for. ``convlstm
    config`` lists them; :func:`load_config` and ``--config NAME`` accept the names."""
    out: Dict[str, str] = {}
    for entry in sorted(_CONFIGS.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            first = entry.read_text(encoding="utf-8").split("\n", 1)[0]
            out[entry.name[:-len(".yaml")]] = first.lstrip("#").strip()
    return out


def read_bundled_config(name: str) -> str:
    """The text of the bundled config ``name`` (``"flow"`` or ``"flow.yaml"``), to print or save
    and edit. Raises ``FileNotFoundError`` listing the names there are."""
    stem = name[:-len(".yaml")] if isinstance(name, str) and name.endswith(".yaml") else name
    names = bundled_configs()
    if stem not in names:
        raise FileNotFoundError(f"no bundled config named {name!r}; the bundled configs are "
                                f"{', '.join(names)} (or give the path of a YAML file)")
    return _CONFIGS.joinpath(f"{stem}.yaml").read_text(encoding="utf-8")


def load_config(path: Union[str, Path], base: Optional[FitConfig] = None) -> FitConfig:
    """Read a YAML config file (``yaml.safe_load``: plain data only) into a :class:`FitConfig`.

    ``path`` is a file, or the name of a config bundled with the package (``"flow"``, see
    :func:`bundled_configs`); a file of that name, when one exists, wins."""
    import yaml

    p = Path(path)
    if p.is_file():
        try:
            with open(p, "r", encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            raise ValueError(f"config file {str(p)!r} is not UTF-8 text ({exc})") from None
    elif len(p.parts) == 1 and p.name.replace(".yaml", "") in bundled_configs():  # a name, not a path
        text = read_bundled_config(p.name)
    else:
        raise FileNotFoundError(f"config file {str(p)!r} does not exist, nor is it a bundled config "
                                f"({', '.join(bundled_configs())}; `convlstm config` lists them)")
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if values is None:
        values = {}
    try:
        return FitConfig.from_dict(values, base=base)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"config file {str(p)!r}: {exc}") from None


def load_run_config(run_dir: Union[str, Path]) -> FitConfig:
    """The :class:`FitConfig` a run was trained with (``run_dir/config.yaml``, written by
    :func:`~convlstm.training.fit`): what resuming the run starts from, so that the data and
    options need not be given again."""
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{str(p)!r} does not exist: give the run folder of an earlier `convlstm fit` "
                                f"(--run-dir), or the data and options again")
    config = load_config(p)
    if "start_from" not in _read_yaml_keys(p):
        config.start_from = "none"  # runs from before the option trained their models as published
    return config


def _read_yaml_keys(path: Path) -> set:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return set(data) if isinstance(data, dict) else set()


def save_config(config: FitConfig, path: Union[str, Path]) -> Path:
    """Write ``config`` as YAML, atomically; :func:`load_config` reads it back unchanged."""
    import yaml

    from .._io import write_text

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    write_text(path, text)
    return Path(path)
