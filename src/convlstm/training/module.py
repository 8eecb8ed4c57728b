"""The Lightning module (model + loss + optimiser), the callbacks and the checkpoint writer."""
from __future__ import annotations

import inspect
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import lightning.pytorch as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .. import layers as _layers
from .. import losses as _losses
from .._io import atomic_path, write_json
from ..models.members import MEMBER_MODEL_OPTIONS as _MEMBER_MODEL_OPTIONS
from ..models.members import check_members
from .config import LOSSES, SCHEDULERS

#: the members' training noise generator is seeded with the run's seed plus this
NOISE_SEED_OFFSET = 7919

__all__ = ["ForecastModule", "build_model", "AtomicCheckpointIO", "HistoryCallback", "RandomStateCallback",
           "load_checkpoint"]


# ---------------------------------------------------------------------------------- models
def _factory_params(name: str) -> Optional[set]:
    from ..models import registry

    factory = registry._MODELS.get(name)  # noqa: SLF001 - the registry's own table
    if factory is None:
        return None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def build_model(name: str, options: Optional[Dict[str, Any]] = None, *, input_steps: Optional[int] = None,
                output_steps: Optional[int] = None, frame_shape: Optional[Sequence[int]] = None,
                streams: Optional[Sequence[int]] = None, num_features: int = 0,
                start_from: str = "none") -> nn.Module:
    """``convlstm.models.create(name, **options)``, with the data's shape filled in where the model
    takes it and ``options`` does not set it: ``in_channels``/``channels`` from the frames'
    channels, ``frame_size`` from their rows and cols, ``input_steps`` and ``output_steps``, and
    for multi-scale samples ``streams`` (closeness, period, trend) and ``num_features``. A model
    that does not take ``streams`` reads the stacked frames as one sequence; one that does not
    take ``num_features`` cannot be given features (an error says which model can).
    ``start_from``: the baseline the model starts from (:class:`convlstm.models.StartFromBaseline`;
    ``"auto"``: persistence for a model that does not start from one by construction)."""
    from .. import models

    options = dict(options or {})
    if "start_from" in options:
        raise ValueError("start_from is an option of the run (--start-from / start_from:), not of model_options")
    if name not in models.list_models():
        raise ValueError(f"model={name!r} is not a registered model; choose one of {', '.join(models.list_models())}")
    accepted = _factory_params(name)
    auto: Dict[str, Any] = {}
    if frame_shape is not None:
        h, w, c = (int(v) for v in frame_shape)
        auto.update(in_channels=c, channels=c, frame_size=[h, w])
    if input_steps is not None:
        auto["input_steps"] = int(input_steps)
    if output_steps is not None:
        auto["output_steps"] = int(output_steps)
    if streams is not None:
        auto["streams"] = [int(v) for v in streams]
    if num_features:
        if accepted is not None and "num_features" not in accepted:
            raise ValueError(f"model={name!r} does not take calendar or external features ({num_features} per "
                             f"sample from --calendar/--holidays/--external); use --model st-convlstm, or drop them")
        auto["num_features"] = int(num_features)
    for k, v in auto.items():
        if k not in options and (accepted is None or k in accepted):
            options[k] = v
    return models.create(name, start_from=start_from, **options)


class ForecastModule(pl.LightningModule):
    r"""Train a forecasting model: ``(B, T_in, H, W, C)`` -> ``(B, T_out, H, W, C)``.

    The loss is ``loss(model(x), y) + convlstm.regularization_loss(model)`` (the Keras-style
    regularizers of every ConvLSTM layer), and ``convlstm.apply_constraints(model)`` runs after
    every optimizer step, as Keras does.

    Args:
        model: a registered model name (built with :func:`build_model`, and rebuilt from the
            checkpoint's hyperparameters) or a ready ``nn.Module``.
        model_options: overrides for ``convlstm.models.create`` (with a name only).
        input_steps, output_steps, frame_shape: the data's sizes, passed to the model where it
            takes them (with a name only).
        loss: ``"mse"``, ``"mae"``, ``"bce"`` (targets in [0, 1], model output probabilities),
            ``"mse+ssim"`` or ``"balanced"``: a name of :data:`convlstm.losses.LOSS_NAMES`, built with
            :func:`convlstm.losses.get_loss` (the table of formulas is in :mod:`convlstm.losses`).
        loss_options: that loss's keyword options (plain values), e.g. ``{"ssim_weight": 0.5}``
            or ``{"thresholds": [0.5, 2, 5], "weights": [1, 2, 5, 10]}``. For ``"balanced"`` the
            thresholds are in the data's units: :meth:`setup` maps them through
            ``trainer.datamodule.scaler.transform`` (see
            :meth:`convlstm.losses.BalancedMSEMAE.set_value_transform`); without a datamodule
            scaler it warns and compares them with the model's (scaled) values as they are.
        lr: learning rate of AdamW. weight_decay: AdamW's decoupled weight decay.
        scheduler: ``"none"``, ``"cosine"`` (to 0 over the run's epochs), ``"plateau"`` (halve the
            rate after 3 epochs without progress of the validation loss) or ``"onecycle"``.
        scheduled_sampling: a fraction :math:`s` of the run's optimizer steps over which the
            probability of feeding the model the true frame instead of its own forecast falls
            linearly from 1 to 0 (:meth:`teacher_forcing`); 0 (default) = always its own forecasts.
            Only for models with ``accepts_targets`` (``convlstm-warp``).
        start_from: the baseline a named model starts from, ``"none"`` (default, as published),
            ``"persistence"``, ``"seasonal"`` or ``"auto"`` (:func:`build_model`); the
            checkpoint keeps the resolved name, so a run is rebuilt as it was trained.
        members: 0 (default) trains a deterministic forecast with ``loss``; :math:`M \ge 2` wraps the
            model in :class:`convlstm.models.StochasticMembers` and draws :math:`M` members per
            sample around its forecast: the forecast (the members' centre) trains on the MSE as in
            a deterministic run, and the spread on the almost fair CRPS of the members
            (:class:`convlstm.losses.EnsembleCRPS`) with the centre held fixed (``centre="mse"``,
            the default), or both on the CRPS (``centre="crps"``). With ``centre="mse"`` the
            centre is the run without members, bit for bit, for the same seed: the spread's
            initial weights leave the global generator as it was, the members' training noise
            comes from a generator of its own (kept in checkpoints), and the loss logged and
            monitored (``train_loss``, ``val_loss``) is the centre's MSE, the CRPS logged beside it
            (``train_crps``, ``val_crps``). :meth:`forecast_members` then draws any number of
            members; ``forward`` stays the noise-free forecast.
        member_options: ``noise_length``, ``spread_width``, ``initial_spread`` (of
            :class:`~convlstm.models.StochasticMembers`), ``alpha``, ``spatial_weight``,
            ``spatial_pool`` (of :class:`~convlstm.losses.EnsembleCRPS`) and ``centre``.

    The hyperparameters saved in checkpoints are plain Python values only, so a checkpoint loads
    with ``torch.load(path, weights_only=True)``.
    """

    def __init__(self, model: Union[str, nn.Module] = "keras-nextframe", *,
                 model_options: Optional[Dict[str, Any]] = None, input_steps: Optional[int] = None,
                 output_steps: Optional[int] = None, frame_shape: Optional[Sequence[int]] = None,
                 loss: str = "mse", loss_options: Optional[Dict[str, Any]] = None, lr: float = 1e-3,
                 weight_decay: float = 0.0, scheduler: str = "none", scheduled_sampling: float = 0.0,
                 streams: Optional[Sequence[int]] = None, num_features: int = 0,
                 start_from: str = "none", members: int = 0,
                 member_options: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if not isinstance(loss, str) or loss.lower() not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if loss_options is not None and (not isinstance(loss_options, dict)
                                         or not all(isinstance(k, str) for k in loss_options)):
            raise ValueError(f"loss_options must be a dict of option name to value, got {loss_options!r}")
        loss_options = _plain(dict(loss_options or {}), "loss_options")
        self.loss_fn = _losses.get_loss(loss, **loss_options)
        if frame_shape is not None and hasattr(self.loss_fn, "check_frame_size"):
            self.loss_fn.check_frame_size(int(frame_shape[0]), int(frame_shape[1]))
        if not isinstance(scheduler, str) or scheduler.lower() not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        if isinstance(model, str):
            self.model = build_model(model, model_options, input_steps=input_steps, output_steps=output_steps,
                                     frame_shape=frame_shape, streams=streams, num_features=num_features,
                                     start_from=start_from)
            model_name: Optional[str] = model
        elif isinstance(model, nn.Module):
            self.model = model
            model_name = None
        else:
            raise TypeError(f"model must be a registered model name or a torch.nn.Module, got {type(model).__name__}")
        if (isinstance(scheduled_sampling, bool) or not isinstance(scheduled_sampling, (int, float))
                or not 0 <= scheduled_sampling <= 1):
            raise ValueError(f"scheduled_sampling must be a fraction of the training in [0, 1] (0 = off), "
                             f"got {scheduled_sampling!r}")
        members, member_options = check_members(members, member_options, loss)
        if members:
            from ..models.members import StochasticMembers

            model_part = {k: v for k, v in member_options.items() if k in _MEMBER_MODEL_OPTIONS}
            loss_part = {k: v for k, v in member_options.items()
                         if k not in _MEMBER_MODEL_OPTIONS and k != "centre"}
            self.centre = str(member_options.get("centre", "mse"))
            if frame_shape is None or output_steps is None:
                raise ValueError("members need frame_shape and output_steps (the channels and lead times the "
                                 "spread is learned for)")
            with torch.random.fork_rng(devices=[]):   # the spread's initial weights leave the global generator as
                # it was: the centre then trains on the same draws (shuffling, dropout) as without members
                self.model = StochasticMembers(self.model, channels=int(frame_shape[-1]),
                                               lead_times=int(output_steps), **model_part)
            self.loss_fn = _losses.EnsembleCRPS(**loss_part)
        self.members = members
        #: the members' training noise is drawn from its own generator (seeded from the run's seed,
        #: its state kept in checkpoints), not from the global one that shuffles the data
        self._noise_generator: Optional[torch.Generator] = None
        self._noise_state: Optional[torch.Tensor] = None
        if scheduled_sampling and not getattr(self.model, "accepts_targets", False):
            raise ValueError(f"scheduled_sampling={scheduled_sampling} needs a model that feeds its own forecasts "
                             f"back and takes targets= (such as convlstm-warp); {type(self.model).__name__} does not")
        self.save_hyperparameters({
            "model": model_name,
            "model_options": _plain(dict(model_options or {})),
            "input_steps": None if input_steps is None else int(input_steps),
            "output_steps": None if output_steps is None else int(output_steps),
            "frame_shape": None if frame_shape is None else [int(v) for v in frame_shape],
            "loss": loss.lower(), "loss_options": loss_options, "lr": float(lr), "weight_decay": float(weight_decay),
            "scheduler": scheduler.lower(), "scheduled_sampling": float(scheduled_sampling),
            "streams": None if streams is None else [int(v) for v in streams], "num_features": int(num_features),
            "start_from": getattr(self.model, "start_from", "none") if model_name else "none",
            **({"members": members, "member_options": _plain(member_options, "member_options")} if members else {}),
        })
        self.num_features = int(num_features)

    def setup(self, stage: str) -> None:
        """Map the ``balanced`` loss's thresholds (data units) into the scaled units the model
        trains on, through the datamodule's scaler (``trainer.datamodule.scaler``)."""
        if not isinstance(self.loss_fn, _losses.BalancedMSEMAE):
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        scaler = getattr(dm, "scaler", None)
        if scaler is None:
            warnings.warn(f"loss='balanced': no datamodule with a fitted scaler (trainer.datamodule.scaler), so the "
                          f"thresholds {list(self.loss_fn.thresholds)} are taken in the model's (scaled) units, "
                          f"not the data's; train through a GridDataModule, or call "
                          f"module.loss_fn.set_value_transform(scaler.transform, channels) yourself", stacklevel=2)
            return
        channels = getattr(scaler, "n_channels", None)
        if channels is None and hasattr(dm, "sample_shape"):
            channels = dm.sample_shape[-1]
        self.loss_fn.set_value_transform(scaler.transform, channels=int(channels or 1))

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The model's forecast; ``features`` (B, F) only for a model built with ``num_features``."""
        return self.model(x) if features is None else self.model(x, features)

    def teacher_forcing(self) -> float:
        r"""The probability :math:`q` of feeding the true frame instead of the forecast to the
        model's next step (scheduled sampling, Bengio et al. 2015): with ``scheduled_sampling``
        :math:`s > 0`, :math:`q = \max(0, 1 - \text{progress} / s)`, progress being the fraction of
        the run's optimizer steps done (from all teacher forcing to none over the first :math:`s`
        of training). 0 outside training and when ``scheduled_sampling`` is 0."""
        s = float(self.hparams.get("scheduled_sampling", 0.0) or 0.0)
        if not s or not self.training or self._trainer is None:
            return 0.0
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return max(0.0, 1.0 - self.global_step / (s * total))

    def forecast_members(self, x: torch.Tensor, n: int, features: Optional[torch.Tensor] = None, *,
                         generator: Optional[torch.Generator] = None,
                         forecast: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``n`` members of the forecast of ``x``, :math:`(n, B, T_{out}, H, W, C)`, in the model's
        (scaled) units; a module trained with ``members`` only. ``forecast``: ``self(x, features)``
        when already computed (the members' exact mean, see
        :class:`~convlstm.models.members.StochasticMembers`), so the model runs once."""
        if not self.members:
            raise ValueError("forecast_members needs a module trained with members >= 2 (fit --members M); this "
                             "one forecasts one field")
        return self.model.sample(x, n, features, generator=generator, forecast=forecast)

    def _step(self, batch: Tuple[torch.Tensor, torch.Tensor], training: bool = False,
              batch_idx: int = 0, stage: str = "val") -> torch.Tensor:
        x, y = batch[0], batch[1]
        features = batch[2] if len(batch) > 2 else None
        q = self.teacher_forcing() if training else 0.0
        pred = self.model(x, targets=y, teacher_forcing=q) if q > 0 else self(x, features)
        if pred.shape != y.shape:
            raise ValueError(f"the model returned shape {tuple(pred.shape)} for input {tuple(x.shape)}, but the "
                             f"targets have shape {tuple(y.shape)}; check the model's output_steps and channels")
        if not self.members:
            return self.loss_fn(pred, y)
        if training:
            generator = self._training_noise(x.device)
        else:   # the same noise for the same batch each epoch: a validation loss that compares
            generator = torch.Generator(device=x.device).manual_seed(1000003 + batch_idx)
        if self.centre == "mse":   # the centre as a deterministic run trains it; the CRPS teaches the spread alone
            members = self.model.sample(x, self.members, features, generator=generator, forecast=pred.detach())
            centre_loss, spread_loss = _losses.mse(pred, y), self.loss_fn(members, y)
            self.log(f"{'train' if training else stage}_crps", spread_loss, on_step=False, on_epoch=True,
                     batch_size=x.shape[0], sync_dist=not training)
            # the loss logged (and monitored: best checkpoint, early stopping, plateaus) is the centre's
            # MSE, as in a run without members, so the centre trains and is chosen exactly as there
            return centre_loss + spread_loss - spread_loss.detach() if training else centre_loss
        return self.loss_fn(self.model.sample(x, self.members, features, generator=generator, forecast=pred), y)

    def _training_noise(self, device: torch.device) -> torch.Generator:
        """The generator of the members' training noise: seeded from the run's seed (with an
        offset), or restored from the checkpoint a run resumes from."""
        if self._noise_generator is None or self._noise_generator.device != torch.device(device):
            g = torch.Generator(device=device)
            if self._noise_state is not None:
                g.set_state(self._noise_state)
            else:
                g.manual_seed((torch.initial_seed() + NOISE_SEED_OFFSET) % (2 ** 63))
            self._noise_generator = g
        return self._noise_generator

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if self._noise_generator is not None:
            checkpoint["member_noise_rng"] = self._noise_generator.get_state()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        state = checkpoint.get("member_noise_rng")
        if state is not None:
            self._noise_state, self._noise_generator = state, None

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        data_loss = self._step(batch, training=True)
        loss = data_loss + _layers.regularization_loss(self.model).to(data_loss.dtype)
        self.log("train_loss", data_loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss = self._step(batch, batch_idx=batch_idx)
        self.log("val_loss", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=batch[0].shape[0])

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test_loss", self._step(batch, batch_idx=batch_idx, stage="test"), on_epoch=True, sync_dist=True, batch_size=batch[0].shape[0])

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, (tuple, list)):
            return self(batch[0], batch[2] if len(batch) > 2 else None)
        return self(batch)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> Any:
        out = super().optimizer_step(*args, **kwargs)
        _layers.apply_constraints(self.model)   # Keras applies constraints after each update
        return out

    def on_train_start(self) -> None:
        r"""Make a resumed run's learning-rate schedule follow the trainer's ``max_epochs`` when it
        differs from the one the run started with (Lightning restores the schedule as it was).

        ``cosine``: from the resumed epoch :math:`e` on, the rate is that of a cosine over the new
        number of epochs :math:`E`, :math:`\eta_e = \eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi e / E)) / 2`
        (the rate may jump at :math:`e`, e.g. up from 0 when a finished run is extended).
        ``onecycle``: its phases are laid out over the planned steps; a different number of steps
        is refused with a ``ValueError``. ``none`` and ``plateau`` do not depend on ``max_epochs``."""
        epochs = max(1, int(self.trainer.max_epochs or 1))
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max != epochs:
                sched.T_max = epochs
                for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                    group["lr"] = sched.eta_min + (base - sched.eta_min) * (
                        1 + math.cos(math.pi * sched.last_epoch / epochs)) / 2
            if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
                total = max(2, int(self.trainer.estimated_stepping_batches))
                if sched.total_steps != total:
                    raise ValueError(f"the onecycle schedule was laid out over {sched.total_steps} steps when the "
                                     f"run started, and this run plans {total}: it cannot be stretched; resume "
                                     f"with the run's max_epochs, or start a new run")

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "cosine":
            epochs = max(1, int(self.trainer.max_epochs or 1))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if hp.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
            monitor = "val_loss" if self.trainer.limit_val_batches and _has_val(self.trainer) else "train_loss_epoch"
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor, "interval": "epoch"}}
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=max(2, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}




def _has_val(trainer: "pl.Trainer") -> bool:
    dm = getattr(trainer, "datamodule", None)
    return bool(getattr(dm, "has_val", True))


def _plain(v: Any, what: str = "model_options") -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x, what) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x, what) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if getattr(v, "ndim", 0) and callable(getattr(v, "tolist", None)):  # numpy arrays, tensors
        return _plain(v.tolist(), what)
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"{what} values must be plain numbers, strings, lists or dicts (they go into "
                    f"checkpoints); got {v!r}")


# ---------------------------------------------------------------------------------- checkpoints
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing to a temporary file beside the target and renaming it
    (``os.replace``) so a crash never leaves a half-written checkpoint; reading with
    ``torch.load(weights_only=True)`` so nothing is unpickled."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO does not take storage_options, got {storage_options!r}")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = None, weights_only: Optional[bool] = None):
        return load_checkpoint(path, map_location=map_location or "cpu")


def load_checkpoint(path: Union[str, os.PathLike], map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain Python values
    only, nothing unpickled. Errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - name the file in the message
        raise ValueError(f"checkpoint {str(p)!r} could not be read as a weights-only torch checkpoint "
                         f"(it must hold only tensors and plain Python values): {exc}") from None


class HistoryCallback(pl.Callback):
    """Keep the per-epoch training and validation loss (``{"train_loss": [...], "val_loss":
    [...], "lr": [...]}``), in checkpoints (so a resumed run continues it) and in
    ``run_dir/history.json``."""

    def __init__(self, path: Optional[Union[str, os.PathLike]] = None) -> None:
        self.path = None if path is None else Path(path)
        self.history: Dict[str, List[Optional[float]]] = {"epoch": [], "train_loss": [], "val_loss": [], "lr": []}

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics

        def get(name: str) -> Optional[float]:
            v = m.get(name)
            return None if v is None else float(v)

        lr = None
        if trainer.optimizers:
            lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.history["epoch"].append(int(trainer.current_epoch) + 1)
        self.history["train_loss"].append(get("train_loss_epoch"))
        self.history["val_loss"].append(get("val_loss"))
        self.history["lr"].append(lr)
        if self.path is not None and trainer.is_global_zero:
            write_json(self.path, self.history)

    def state_dict(self) -> Dict[str, Any]:
        return {k: list(v) for k, v in self.history.items()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = {k: list(state_dict.get(k, [])) for k in ("epoch", "train_loss", "val_loss", "lr")}


class RandomStateCallback(pl.Callback):
    """Keep the random number generators' states in checkpoints, so that a resumed run draws what
    the uninterrupted run would have drawn: the training loader's shuffling (torch's global
    generator seeds it at each epoch), dropout, teacher forcing.

    Saved: torch's CPU generator, the CUDA generators when CUDA is initialised, numpy's legacy global
    generator and Python's ``random``, as tensors and plain values (the checkpoint stays loadable
    with ``weights_only=True``).

    Under DDP every rank keeps its own states: when the checkpoint is made (on every rank), the
    states of all ranks are gathered (``torch.distributed.all_gather_object``) into ``per_rank``,
    a list indexed by rank, which rank 0 writes; on resume each rank restores its own entry. A run
    resumed on more ranks than it was saved from gives rank ``r`` the entry ``r mod n`` (and says
    so). The top-level entries are rank 0's, as a single process saves them, so a checkpoint of
    either kind resumes in either kind of run.
    """

    @staticmethod
    def _local_state() -> Dict[str, Any]:
        """This process's generators' states, as tensors and plain values."""
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state: Dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _restore(state: Dict[str, Any]) -> None:
        """Set this process's generators to ``state`` (as :meth:`_local_state` makes it)."""
        import random

        import numpy as np

        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            states = state["cuda"]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)

    def state_dict(self) -> Dict[str, Any]:
        from .distributed import gather_from_all, world

        mine = self._local_state()
        if world()[1] == 1:
            return mine
        per_rank = gather_from_all(mine)   # every rank makes the checkpoint's dict; rank 0 writes it
        return dict(per_rank[0], per_rank=per_rank)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        from .distributed import world

        per_rank = state_dict.get("per_rank")
        if not per_rank:
            self._restore(state_dict)
            return
        rank, size = world()
        if size != len(per_rank) and rank == 0:
            warnings.warn(f"the checkpoint holds the random states of {len(per_rank)} ranks and this run has {size}; "
                          f"rank r restores the states of rank r mod {len(per_rank)}", UserWarning, stacklevel=2)
        self._restore(per_rank[rank % len(per_rank)])
