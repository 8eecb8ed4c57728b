"""The options of a training run (:class:`FitConfig`), read from and written to YAML.

One flat table of options serves the library (``fit(FitConfig(...))``), the YAML files
(``convlstm fit --config run.yaml``) and the command line (``--input-steps 6`` is
``input_steps: 6``); command-line flags override the file, the file overrides the defaults.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from .._errors import ParameterError
from ..data.readers import LAYOUTS as _READER_LAYOUTS
from ..data.units import TRANSFORMS, UnitConversion
from ..extrapolation import MOTION_METHODS
from ..metrics import BASELINES
from ..losses import LOSS_NAMES as _LOSS_NAMES
from ..losses import get_loss as _get_loss

__all__ = ["FitConfig", "ParameterError", "load_config", "save_config", "load_run_config", "bundled_configs",
           "read_bundled_config", "LOSSES", "SCHEDULERS", "PRECISIONS", "LAYOUTS",
           "SCALER_NAMES"]

LOSSES = tuple(_LOSS_NAMES)  # convlstm.losses.LOSS_NAMES
SCHEDULERS = ("none", "cosine", "plateau", "onecycle")
PRECISIONS = ("32", "16-mixed", "bf16-mixed", "64")
LAYOUTS = tuple(_READER_LAYOUTS)  # the layouts the grid readers understand
SCALER_NAMES = ("minmax", "standard", "log1p", "db", "none")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_CONVERSION_FIELDS = ("scale", "offset", "transform", "zr_a", "zr_b", "interval_minutes")  # UnitConversion's
_CONFIGS = resources.files("convlstm").joinpath("configs")  # the example configs shipped in the package


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass
class FitConfig:
    """Everything a training run needs. Every field has a YAML key of the same name and a
    command-line flag with dashes (``input_steps`` -> ``--input-steps``).

    Data:
        data: the grid file (``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.nc``).
        key: the array / dataset / variable in that file (needed when it holds several).
        layout: how the file's axes are stored: ``THWC``, ``TCHW`` or ``THW``.
        input_steps, output_steps: frames in and frames forecast per sample.
        stride: steps between window starts; gap: steps skipped between input and target.
        split: train, validation and test fractions of the time axis (chronological).
        closeness, period, trend: multi-scale samples (ST-ResNet's names): the last ``closeness``
            frames, the same time on ``period`` previous days and in ``trend`` previous weeks
            (:class:`convlstm.data.MultiScaleWindowDataset`; a sample belongs to the part of its
            target, its inputs may reach back into earlier parts). ``None``: ``closeness`` =
            ``input_steps``; ``period``/``trend``/``calendar``: automatic for a model that takes
            the streams and features (``st-convlstm``: 1, 1 and on with time stamps and two weeks of
            training, see :func:`convlstm.training.multiscale.auto_streams`), else 0/off. Setting any of them, ``calendar``,
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
        precision (``32``, ``16-mixed``, ``bf16-mixed``, ``64``), seed, deterministic,
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
        ``climatology``, ``extrapolation``; the last needs ``convlstm[radar]``),
        extrapolation_method (pysteps's optical flow: ``lucaskanade``, ``vet``, ...), units
        (colour-bar label), samples (samples drawn in forecast.png), progress (progress bar).
    """

    data: Optional[str] = None
    key: Optional[str] = None
    layout: str = "THWC"
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
    model: str = "convlstm-warp"
    model_options: Dict[str, Any] = field(default_factory=dict)
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
    precision: str = "32"
    seed: int = 0
    deterministic: bool = False
    accelerator: str = "auto"
    devices: Union[int, str, List[int]] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    memory_limit: Union[None, int, str] = None
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

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> "FitConfig":
        """Check every field; raise ``ValueError``/``TypeError`` naming the field, the value and
        what is allowed. Normalises a few spellings (``precision=32`` -> ``"32"``)."""
        def choice(name: str, allowed: Sequence[str], lower: bool = True) -> None:
            v = getattr(self, name)
            if not isinstance(v, str) or (v.lower() if lower else v) not in allowed:
                raise ParameterError(name, f"{name} must be one of {', '.join(allowed)}; got {v!r}")
            setattr(self, name, v.lower() if lower else v)

        def integer(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not _is_int(v) or v < minimum:
                raise ParameterError(name, f"{name} must be an integer >= {minimum}{' or None' if optional else ''}; "
                                 f"got {v!r}")
            setattr(self, name, int(v))

        def number(name: str, minimum: Optional[float] = None, optional: bool = False,
                   strict: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not _is_num(v) or not math.isfinite(float(v)) or (
                    minimum is not None and (float(v) <= minimum if strict else float(v) < minimum)):
                bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
                raise ParameterError(name, f"{name} must be a finite number{bound}{' or None' if optional else ''}; "
                                 f"got {v!r}")
            setattr(self, name, float(v))

        def flag(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ParameterError(name, f"{name} must be true or false; got {v!r}")

        def text(name: str, optional: bool = True) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if not isinstance(v, (str, Path)):
                raise ParameterError(name, f"{name} must be a string{' or None' if optional else ''}; got {v!r}")
            setattr(self, name, str(v))

        text("data"); text("key"); text("run_dir"); text("units", optional=False)
        if self.layout is not None and isinstance(self.layout, str):
            self.layout = self.layout.upper()
        choice("layout", LAYOUTS, lower=False)
        integer("input_steps", 1); integer("output_steps", 1); integer("stride", 1); integer("gap", 0)
        integer("closeness", 1, optional=True); integer("period", 0, optional=True); integer("trend", 0, optional=True)
        integer("period_interval", 1, optional=True); integer("trend_interval", 1, optional=True)
        integer("steps_per_day", 1, optional=True)
        if self.calendar is not None and not isinstance(self.calendar, bool):
            raise ValueError(f"calendar must be true, false or null (automatic); got {self.calendar!r}")
        text("holidays"); text("external_data")
        ext = [self.external] if isinstance(self.external, str) else (self.external or [])
        if not isinstance(ext, (list, tuple)) or not all(isinstance(k, str) and k for k in ext):
            raise ValueError(f"external must be a list of keys (arrays in the data file or external_data); "
                             f"got {self.external!r}")
        self.external = list(ext)
        split = self.split
        if (not isinstance(split, (list, tuple)) or len(split) != 3 or not all(_is_num(f) for f in split)
                or any(f < 0 for f in split) or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0):
            raise ParameterError("split", f"split must be three fractions (train, val, test) >= 0 summing to 1 "
                                          f"with train > 0, e.g. [0.7, 0.1, 0.2]; got {split!r}")
        self.split = [float(f) for f in split]
        choice("scaler", SCALER_NAMES)
        number("fill_nan", optional=True)
        number("scale"); number("offset"); number("zr_a", 0.0, strict=True); number("zr_b", 0.0, strict=True)
        number("interval_minutes", 0.0, optional=True, strict=True)
        choice("transform", TRANSFORMS)
        self.conversion()  # scale != 0, interval_minutes given exactly for the accumulation transforms
        if self.nonnegative is not None and not isinstance(self.nonnegative, bool):
            raise ParameterError("nonnegative", f"nonnegative must be true, false or null (auto: on when the "
                                 f"training data has no negative value); got {self.nonnegative!r}")
        integer("batch_size", 1); integer("num_workers", 0)
        if not isinstance(self.model, str) or not self.model:
            raise ParameterError("model", f"model must be a model name (see `convlstm models`); "
                                          f"got {self.model!r}")
        if self.model_options is None:
            self.model_options = {}
        if not isinstance(self.model_options, dict) or not all(isinstance(k, str) for k in self.model_options):
            raise ParameterError("model_options", f"model_options must be a mapping of option name to value; "
                                                  f"got {self.model_options!r}")
        choice("loss", LOSSES); choice("scheduler", SCHEDULERS)
        number("scheduled_sampling", 0.0)
        if self.scheduled_sampling > 1:
            raise ParameterError("scheduled_sampling", f"scheduled_sampling must be a fraction of the training in "
                                                       f"[0, 1] (0 = off); got {self.scheduled_sampling!r}")
        if self.loss_options is None:
            self.loss_options = {}
        if not isinstance(self.loss_options, dict) or not all(isinstance(k, str) for k in self.loss_options):
            raise ParameterError("loss_options", f"loss_options must be a mapping of option name to value; "
                                                 f"got {self.loss_options!r}")
        self.loss_options = _plain(self.loss_options)  # tuples -> lists, as YAML gives them back
        try:
            _get_loss(self.loss, **self.loss_options)  # names and values checked by the loss itself
        except (ValueError, TypeError) as exc:
            raise ParameterError("loss_options", f"loss_options: {exc}") from None
        number("lr", 0.0, strict=True); number("weight_decay", 0.0)
        integer("max_epochs", 1); integer("patience", 1, optional=True)
        number("gradient_clip", 0.0, optional=True, strict=True)
        for name in ("limit_train_batches", "limit_val_batches"):
            v = getattr(self, name)
            if v is None:
                continue
            if _is_int(v) and v >= 1:
                setattr(self, name, int(v))
            elif _is_num(v) and 0 < float(v) <= 1:
                setattr(self, name, float(v))
            else:
                raise ParameterError(name, f"{name} must be a fraction in (0, 1] or a whole number of batches >= 1; "
                                           f"got {v!r}")
        if _is_int(self.precision):
            self.precision = str(self.precision)
        if self.precision == "32-true":
            self.precision = "32"
        if self.precision == "64-true":
            self.precision = "64"
        choice("precision", PRECISIONS)
        integer("seed", 0)
        flag("deterministic"); flag("resume"); flag("evaluate"); flag("progress")
        choice("accelerator", ACCELERATORS)
        d = self.devices
        if isinstance(d, str) and d.strip().lstrip("-").isdigit():
            d = int(d)
        bad_devices = ParameterError("devices", f"devices must be 'auto', a count >= 1, -1 (all) or a list of "
                                                f"device indices; got {d!r}")
        if isinstance(d, (list, tuple)):
            if not d or not all(_is_int(i) and i >= 0 for i in d):
                raise bad_devices
            d = [int(i) for i in d]
        elif _is_int(d):
            if d == 0 or d < -1:
                raise bad_devices
            d = int(d)
        elif d != "auto":
            raise bad_devices
        self.devices = d
        integer("num_nodes", 1)
        if not isinstance(self.strategy, str) or not self.strategy:
            raise ParameterError("strategy", f"strategy must be a Lightning strategy name such as auto, ddp, "
                                             f"ddp_spawn, fsdp, deepspeed; got {self.strategy!r}")
        th = self.thresholds
        if th is None:
            th = []
        if _is_num(th):
            th = [th]
        if not isinstance(th, (list, tuple)) or not all(_is_num(t) and math.isfinite(float(t)) for t in th):
            raise ParameterError("thresholds", f"thresholds must be a list of numbers (in the data's units); "
                                               f"got {self.thresholds!r}")
        self.thresholds = [float(t) for t in th]
        sc = self.fss_scales
        sc = [] if sc is None else ([sc] if _is_int(sc) else sc)
        if not isinstance(sc, (list, tuple)) or not all(_is_int(v) and v >= 1 for v in sc):
            raise ParameterError("fss_scales", f"fss_scales must be a list of FSS window widths in pixels "
                                               f"(integers >= 1); got {self.fss_scales!r}")
        if sc and not self.thresholds:
            raise ParameterError("fss_scales", f"fss_scales={list(sc)} needs thresholds too (FSS is computed at "
                                               f"every threshold and scale); give thresholds, e.g. thresholds=[1.0]",
                                 also=("thresholds",))
        self.fss_scales = [int(v) for v in sc]
        b = [self.baselines] if isinstance(self.baselines, str) else self.baselines
        if b is None:
            b = []
        if not isinstance(b, (list, tuple)) or not all(isinstance(v, str) and v.lower() in BASELINES for v in b):
            raise ParameterError("baselines",
                                 f"baselines must be a list of {', '.join(BASELINES)}; got {self.baselines!r}")
        self.baselines = list(dict.fromkeys(v.lower() for v in b))
        choice("extrapolation_method", MOTION_METHODS)
        integer("samples", 1)
        if self.memory_limit is not None:
            from .memory import parse_memory_limit

            limit = parse_memory_limit(self.memory_limit)  # raises naming memory_limit
            if limit is None or limit == "off":
                self.memory_limit = limit
            else:  # keep the spelling given ("8GB") when it was text
                self.memory_limit = self.memory_limit.strip() if isinstance(self.memory_limit, str) else limit
        return self

    def conversion(self) -> UnitConversion:
        """The :class:`convlstm.data.UnitConversion` of ``scale``, ``offset``, ``transform``,
        ``zr_a``, ``zr_b`` and ``interval_minutes``."""
        try:
            return UnitConversion(self.scale, self.offset, self.transform, zr_a=self.zr_a, zr_b=self.zr_b,
                                  interval_minutes=self.interval_minutes)
        except (TypeError, ValueError) as exc:
            raise ParameterError("scale", str(exc), also=_CONVERSION_FIELDS[1:]) from None

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
    return load_config(p)


def save_config(config: FitConfig, path: Union[str, Path]) -> Path:
    """Write ``config`` as YAML, atomically; :func:`load_config` reads it back unchanged."""
    import yaml

    from .._io import write_text

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    write_text(path, text)
    return Path(path)
