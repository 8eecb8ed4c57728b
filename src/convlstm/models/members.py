r"""Stochastic members of any forecasting model: its forecast, perturbed by a spatially and
temporally correlated noise field whose local spread the network learns.

For inputs :math:`x` the wrapped model forecasts :math:`\hat y = f(x)` :math:`(B, K, H, W, C)`. Member
:math:`m` at lead time :math:`k` is

.. math::
    y^{(m)}_k = \hat y_k + s_k(x, \hat y_k) \odot \varepsilon^{(m)}_k, \qquad
    \varepsilon^{(m)}_k = \rho\, \varepsilon^{(m)}_{k-1} + \sqrt{1 - \rho^2}\, G_L * \eta^{(m)}_k \,/\, \lVert G_L \rVert_2

with :math:`\eta` white Gaussian noise drawn per member and lead time, :math:`G_L` a Gaussian
kernel of standard deviation :math:`L` pixels (so that each :math:`\varepsilon_k` has unit variance
and correlation length :math:`\sim L`: the members differ by coherent blobs, not pixel noise),
:math:`\rho \in (0, 1)` a learned correlation from one lead time to the next, and
:math:`s_k \ge 0` a small convolutional network of the forecast and the last input frame (and of
their logarithms, see ``_Spread``): the spread grows where the forecast is uncertain (edges of
rain cells, busy cells, later lead times).

With ``noise="log-normal"`` (for nonnegative, right-skewed fields such as rain) the members are
shifted log-normal around the forecast instead, with the same mean:

.. math::
    y^{(m)}_k = (\hat y_k + a) \odot \exp\big(s_k \odot \varepsilon^{(m)}_k - s_k^2 / 2\big) - a,
    \qquad \mathbb{E}\big[y^{(m)}_k\big] = \hat y_k

(:math:`a` the ``noise_offset``): their median lies below the forecast and their spread grows
with it, as the errors of a rain forecast do, and they stay above :math:`-a`.

With ``noise="laplace"`` the members are additive with Laplace marginals of unit variance,
:math:`y^{(m)}_k = \hat y_k + s_k \odot \ell(\varepsilon^{(m)}_k)`, where
:math:`\ell(e) = -\operatorname{sign}(e) \ln\!\big(2\,\Phi(-|e|)\big)/\sqrt{2}` maps the
Gaussian noise through its own distribution function to a Laplace of scale
:math:`1/\sqrt{2}` (a monotone map: the noise keeps its ranks, so its spatial and temporal
dependence, a Gaussian copula). Its sharper peak and heavier tails suit errors that are mostly
small with a few large ones (counts at city cells).

The spread is trained with the (almost) fair CRPS over members
(:class:`convlstm.losses.EnsembleCRPS`); the centre :math:`\hat y` with the MSE, as without
members, or with the same CRPS (``convlstm.training.ForecastModule``'s ``centre``). Called like
the wrapped model (``model(x)``), the wrapper gives :math:`\hat y`, the noise-free forecast and
the members' exact mean, so a members run is used, exported and scored as a deterministic one;
:meth:`StochasticMembers.sample` draws members.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["StochasticMembers", "correlated_noise", "laplace_marginals", "check_members", "MEMBER_MODEL_OPTIONS", "MEMBER_LOSS_OPTIONS"]

#: ``member_options`` of a run (``fit --member-option``): those of :class:`StochasticMembers`, and
#: those of :class:`convlstm.losses.EnsembleCRPS` it is trained with
MEMBER_MODEL_OPTIONS = ("noise_length", "spread_width", "initial_spread", "noise", "noise_offset")
MEMBER_LOSS_OPTIONS = ("alpha", "spatial_weight", "spatial_pool", "centre")
#: how the members' centre trains: ``"mse"`` as a deterministic run does (the spread alone learns
#: from the CRPS), or ``"crps"`` jointly with the spread
CENTRES = ("mse", "crps")
#: how the noise perturbs the forecast: added to it (Gaussian), multiplying it (shifted
#: log-normal), or added with Laplace marginals
NOISES = ("additive", "log-normal", "laplace")


#: the spread's bias per lead time is stored divided by this (see ``_Spread``)
BIAS_SCALE = 30.0
#: :math:`\delta` of the spread network's logarithmic inputs, in the model's scaled units (1% of
#: the training range under min-max scaling)
LOG_FLOOR = 0.01


def check_members(members: Any, options: Any, loss: str = "mse") -> "tuple[int, dict]":
    """``members`` (0, or an integer >= 2) and its ``member_options`` checked by name and value;
    a ``loss`` other than the default beside members is refused (members train with the CRPS).
    Errors are :class:`~convlstm._errors.ParameterError` (a ``ValueError``) naming the field."""
    from .._errors import ParameterError

    if isinstance(members, bool) or not isinstance(members, int) or members < 0 or members == 1:
        raise ParameterError("members", f"members must be 0 (one forecast) or 2 or more (an ensemble trained with "
                                        f"the CRPS); got {members!r}")
    options = dict(options or {})
    allowed = MEMBER_MODEL_OPTIONS + MEMBER_LOSS_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParameterError("member_options", f"member_options takes {', '.join(allowed)}; got "
                                               f"{', '.join(unknown)}", also=("members",))
    if options and not members:
        raise ParameterError("member_options", "member_options were given without members; add members >= 2",
                             also=("members",))
    if options.get("centre", "mse") not in CENTRES:
        raise ParameterError("member_options", f"member_options centre must be 'mse' (the centre trains as a "
                                               f"deterministic forecast, the spread on the CRPS) or 'crps' (both on "
                                               f"the CRPS); got {options['centre']!r}")
    if options.get("noise", "additive") not in NOISES:
        raise ParameterError("member_options", f"member_options noise must be one of {', '.join(NOISES)}; got "
                                               f"{options['noise']!r}")
    if members and str(loss).lower() != "mse":
        raise ParameterError("loss", f"members train with the ensemble CRPS; loss={loss!r} does not apply to them: "
                                     f"leave loss at mse", also=("members",))
    return members, options


def _gaussian_kernel(length: float) -> torch.Tensor:
    """A 1-D Gaussian kernel of standard deviation ``length`` pixels over :math:`\\pm 3` standard
    deviations, summing to 1."""
    radius = max(1, int(math.ceil(3 * length)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / length) ** 2)
    return k / k.sum()


def correlated_noise(shape: tuple, length: float, *, generator: Optional[torch.Generator] = None,
                     device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Gaussian noise of unit variance, correlated in space over about ``length`` pixels:
    white noise :math:`\eta` convolved with a separable Gaussian kernel :math:`G_L` and divided by
    :math:`\lVert G_L \rVert_2`, so that every pixel has variance 1 (the frame is padded by
    reflection, so the border pixels keep it too).

    Shape:
        ``shape`` :math:`(N, C, H, W)`; the output has it.
    """
    n, c, h, w = shape
    if length <= 0:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    k = _gaussian_kernel(float(length)).to(device=device, dtype=dtype)
    r = (len(k) - 1) // 2
    eta = torch.randn((n * c, 1, h + 2 * r, w + 2 * r), generator=generator, device=device, dtype=dtype)
    out = F.conv2d(eta, k.view(1, 1, 1, -1))
    out = F.conv2d(out, k.view(1, 1, -1, 1))
    return (out / (k ** 2).sum()).view(n, c, h, w)   # ||G_L||_2 of the 2-D kernel = ||k||_2^2


def laplace_marginals(eps: torch.Tensor) -> torch.Tensor:
    r""":math:`\ell(\varepsilon) = -\operatorname{sign}(\varepsilon) \ln\!\big(2\,\Phi(-|\varepsilon|)\big)/\sqrt{2}`:
    standard Gaussian values mapped, monotonically, to Laplace values of unit variance (scale
    :math:`1/\sqrt{2}`): :math:`P(\ell \le q) = \Phi(\varepsilon)` at :math:`q = \ell(\varepsilon)`.
    Computed with :func:`torch.special.log_ndtr`, finite for any finite input."""
    e = eps.float() if eps.dtype in (torch.float16, torch.bfloat16) else eps
    magnitude = -(math.log(2.0) + torch.special.log_ndtr(-e.abs())) / math.sqrt(2.0)
    return (torch.sign(e) * magnitude).to(eps.dtype)


class _Spread(nn.Module):
    """:math:`s_k = \\mathrm{softplus}(g(u_k) + b_k)` with inputs :math:`u_k = [\\hat y_k, x_{last},
    |\\hat y_k - x_{last}|, \\ln(|\\hat y_k| + \\delta), \\ln(|x_{last}| + \\delta)]`, a two-layer
    convolution shared by the lead times plus a bias per lead time and channel; starts at
    ``initial`` times :math:`\\sqrt{k}` at lead time :math:`k` (errors that add up step by step
    grow so), the last convolution at zero. The logarithms (:math:`\\delta` =
    :data:`LOG_FLOOR` in the model's scaled units) put quiet and busy cells, whose values differ by
    orders of magnitude in a few hundredths of the scaled range, at inputs of order one, so the
    spread can follow the level. The bias is stored divided by :data:`BIAS_SCALE`, so that an
    optimiser's steps of the learning rate's size move it that many times faster: a run of a few
    hundred steps can still reach the spread its data need. A state dict written before the
    logarithms were inputs (a first convolution of :math:`3C` channels) loads as it was trained,
    without them."""

    def __init__(self, channels: int, lead_times: int, width: int, initial: float) -> None:
        super().__init__()
        self.log_inputs = True
        self.body = nn.Sequential(nn.Conv2d(5 * channels, width, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(width, channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        start = [math.log(math.expm1(initial * math.sqrt(k + 1))) for k in range(lead_times)]  # softplus^-1
        self.lead_bias = nn.Parameter(torch.tensor(start).view(-1, 1).repeat(1, channels) / BIAS_SCALE)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        first = state_dict.get(prefix + "body.0.weight")
        channels = self.lead_bias.shape[1]
        if first is not None and first.shape[1] == 3 * channels and self.log_inputs:   # written before the logs
            old = self.body[0]
            self.body[0] = nn.Conv2d(3 * channels, old.out_channels, 3, padding=1).to(old.weight.device,
                                                                                       old.weight.dtype)
            self.log_inputs = False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, forecast: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        # forecast (B, K, H, W, C), last (B, H, W, C) -> spread (B, K, H, W, C)
        b, k, h, w, c = forecast.shape
        if k > self.lead_bias.shape[0] or c != self.lead_bias.shape[1]:
            raise ValueError(f"the model forecast {k} lead times of {c} channels; the members were built for "
                             f"{self.lead_bias.shape[0]} of {self.lead_bias.shape[1]} (lead_times, channels)")
        f = forecast.movedim(-1, 2).flatten(0, 1)                     # (B K, C, H, W)
        l = last.movedim(-1, 1).unsqueeze(1).expand(b, k, c, h, w).flatten(0, 1)
        inputs = [f, l, (f - l).abs()]
        if self.log_inputs:
            inputs += [torch.log(f.abs() + LOG_FLOOR), torch.log(l.abs() + LOG_FLOOR)]
        z = self.body(torch.cat(inputs, dim=1)).unflatten(0, (b, k)).movedim(2, -1)
        return F.softplus(z + BIAS_SCALE * self.lead_bias[:k].view(1, k, 1, 1, c))


class StochasticMembers(nn.Module):
    r"""Members of ``model``'s forecast (see the module's docstring for the equations).

    Args:
        model: a forecasting model, :math:`(B, T_{in}, H, W, C) \to (B, K, H, W, C)` (with
            ``features`` as a second argument when it takes them).
        channels: :math:`C`. lead_times: :math:`K`.
        noise_length (float): :math:`L`, the noise's correlation length in pixels. Default 4.
        spread_width (int): channels of the spread network. Default 16.
        initial_spread (float): :math:`s_1` before training, in the model's (scaled) units
            (with ``noise="log-normal"``: of the logarithm); :math:`s_k` starts at :math:`\sqrt{k}`
            times it. Default 0.02 (additive), 0.2 (log-normal).
        noise (str): ``"additive"``, ``"log-normal"`` or ``"laplace"`` (see the module's
            docstring). Default ``"additive"``.
        noise_offset (float): :math:`a > 0` of the log-normal noise, in the model's (scaled)
            units: the members of a forecast of zero spread over about :math:`a s`. Default 0.05.

    Attributes:
        base: the wrapped model; ``start_from`` and ``starts_from`` are read through to it.

    Shape:
        - ``forward``: as the wrapped model, :math:`(B, K, H, W, C)`: the noise-free forecast.
        - :meth:`sample`: :math:`(n, B, K, H, W, C)`.

    Example::

        >>> from convlstm.models import create
        >>> m = StochasticMembers(create("keras-nextframe", filters=(4,), output_steps=1), channels=1, lead_times=1)
        >>> m.sample(torch.rand(2, 3, 16, 16, 1), 5).shape
        torch.Size([5, 2, 1, 16, 16, 1])
    """

    def __init__(self, model: nn.Module, *, channels: int, lead_times: int, noise_length: float = 4.0,
                 spread_width: int = 16, initial_spread: Optional[float] = None, noise: str = "additive",
                 noise_offset: float = 0.05) -> None:
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
        if (isinstance(noise_offset, bool) or not isinstance(noise_offset, (int, float)) or not noise_offset > 0
                or not math.isfinite(noise_offset)):
            raise ValueError(f"noise_offset must be a number > 0 (in the model's scaled units), got {noise_offset!r}")
        if initial_spread is None:
            initial_spread = 0.2 if noise == "log-normal" else 0.02
        if isinstance(noise_length, bool) or not isinstance(noise_length, (int, float)) or noise_length < 0:
            raise ValueError(f"noise_length must be a number of pixels >= 0 (0: uncorrelated), got {noise_length!r}")
        if isinstance(initial_spread, bool) or not isinstance(initial_spread, (int, float)) or initial_spread <= 0:
            raise ValueError(f"initial_spread must be a number > 0, got {initial_spread!r}")
        self.base = model
        self.channels = check_positive_int("channels", channels)
        self.lead_times = check_positive_int("lead_times", lead_times)
        self.noise_length = float(noise_length)
        self.noise, self.noise_offset = noise, float(noise_offset)
        self.spread = _Spread(self.channels, self.lead_times, check_positive_int("spread_width", spread_width),
                              float(initial_spread))
        self._rho = nn.Parameter(torch.zeros(()))   # rho = sigmoid(0) = 0.5 to start
        #: factors of the spread per lead time and channel, chosen after training on the validation
        #: part (:mod:`convlstm.training.spread_calibration`); ones until then
        self.register_buffer("spread_scale", torch.ones(self.lead_times, self.channels))

    def set_spread_scale(self, scale: torch.Tensor) -> None:
        """Set :attr:`spread_scale` :math:`(K, C)`, factors >= 0 of the learned spread."""
        scale = torch.as_tensor(scale, dtype=self.spread_scale.dtype, device=self.spread_scale.device)
        if scale.shape != self.spread_scale.shape or bool((scale < 0).any()) or not bool(torch.isfinite(scale).all()):
            raise ValueError(f"spread_scale must be finite factors >= 0 shaped {tuple(self.spread_scale.shape)}, got "
                             f"{tuple(scale.shape)}")
        self.spread_scale.copy_(scale)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # a checkpoint written before the factors existed: its spread as trained
        state_dict.setdefault(prefix + "spread_scale", torch.ones_like(self.spread_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # the wrapped model's own attributes, for the toolkit (starts, blending, ONNX, input checks)
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base")
            if base is None or name in ("base", "spread", "_rho"):
                raise
            return getattr(base, name)

    @property
    def rho(self) -> torch.Tensor:
        """:math:`\\rho`, the noise's correlation from one lead time to the next."""
        return torch.sigmoid(self._rho)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base(x, *args, **kwargs)

    def sample(self, x: torch.Tensor, n: int, features: Optional[torch.Tensor] = None, *,
               generator: Optional[torch.Generator] = None, forecast: Optional[torch.Tensor] = None,
               **kwargs: Any) -> torch.Tensor:
        """``n`` members for each sample of ``x``: :math:`(n, B, K, H, W, C)`. ``forecast``: the
        model's own forecast of ``x`` when already computed; ``generator`` makes the draw
        reproducible."""
        forecast, spread, eps = self.sample_parts(x, n, features, generator=generator, forecast=forecast, **kwargs)
        k, c = forecast.shape[1], forecast.shape[-1]
        return self.members_from(forecast, spread * self.spread_scale[:k].to(spread.dtype).view(1, k, 1, 1, c), eps)

    def sample_parts(self, x: torch.Tensor, n: int, features: Optional[torch.Tensor] = None, *,
                     generator: Optional[torch.Generator] = None, forecast: Optional[torch.Tensor] = None,
                     **kwargs: Any):
        """What :meth:`sample` combines: the forecast :math:`(B, K, H, W, C)`, the learned spread
        before :attr:`spread_scale` (same shape) and the noise :math:`\varepsilon` of ``n`` members
        :math:`(n, B, K, H, W, C)`, so that spreads can be compared on one draw."""
        n = check_positive_int("n", n)
        if forecast is None:
            forecast = self.base(x, **kwargs) if features is None else self.base(x, features, **kwargs)
        b, k, h, w, c = forecast.shape
        spread = self.spread(forecast, x[:, -1].to(forecast.dtype))
        rho = self.rho.to(forecast.dtype)
        keep = torch.sqrt(1 - rho ** 2)
        eps = None
        steps = []
        for _ in range(k):
            fresh = correlated_noise((n * b, c, h, w), self.noise_length, generator=generator, device=forecast.device,
                                     dtype=forecast.dtype).view(n, b, c, h, w).movedim(2, -1)
            eps = fresh if eps is None else rho * eps + keep * fresh
            steps.append(eps)
        return forecast, spread, torch.stack(steps, dim=2)

    def members_from(self, forecast: torch.Tensor, spread: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Members :math:`(n, B, K, H, W, C)` of ``forecast`` with ``spread`` (both
        :math:`(B, K, H, W, C)`) and the noise ``eps``: additive, shifted log-normal or additive with
        Laplace marginals (:attr:`noise`)."""
        if self.noise == "additive":
            return forecast + spread * eps
        if self.noise == "laplace":
            return forecast + spread * laplace_marginals(eps)
        a = self.noise_offset   # (forecast + a) at 0 below -a: log-normal members are for fields >= 0
        return (forecast + a).clamp_min(0) * torch.exp(spread * eps - 0.5 * spread ** 2) - a

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, lead_times={self.lead_times}, noise_length={self.noise_length:g}, "
                f"noise={self.noise!r}" + (f", noise_offset={self.noise_offset:g}" if self.noise != "additive" else ""))
