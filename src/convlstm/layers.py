"""Keras's ``ConvLSTM1D``, ``ConvLSTM2D`` and ``ConvLSTM3D`` as :class:`torch.nn.Module` s.

The layer runs :class:`convlstm.cell.ConvLSTMCell` over the time axis. The input convolution does
not depend on the state, so it is computed for all time steps at once (one batched convolution over
``batch x time`` frames) and only the recurrent convolution and the gate update stay in the loop;
the numbers are those of Keras's step-by-step loop.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parameter import UninitializedParameter

from . import activations as _activations
from . import constraints as _constraints
from . import initializers as _initializers
from . import regularizers as _regularizers
from . import _paths
from ._checks import check_choice, check_positive_int
from .cell import DATA_FORMATS, ConvLSTMCell
from ._errors import ParameterTypeError

__all__ = ["ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "regularization_loss", "apply_constraints"]

_SPATIAL_NAMES = {1: "steps", 2: "rows, cols", 3: "dim1, dim2, dim3"}


def _check_rate(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ParameterTypeError(name, f"{name} must be a float in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class _UninitializedWeights(nn.Module):
    """The weights of a layer that does not know its input channels yet, held as torch's lazy
    modules hold theirs: one :class:`torch.nn.parameter.UninitializedParameter` per weight of the
    cell, under the cell's names.

    ``layer.parameters()`` yields them, so an optimizer built before the first call holds them;
    :meth:`adopt` then materializes these same objects with the new cell's values and puts them in
    the cell, so that optimizer trains the layer. Until then, anything that needs their values
    (``p.numel()``, arithmetic) raises torch's error about uninitialized parameters. They are not
    in ``state_dict()`` (they have no values; loading a checkpoint builds the layer)."""

    def __init__(self, names: Sequence[str], device=None, dtype=None) -> None:
        super().__init__()
        for name in names:
            self.register_parameter(name, UninitializedParameter(device=device, dtype=dtype))

    def placeholder(self) -> UninitializedParameter:
        return next(iter(self._parameters.values()))

    def adopt(self, cell: ConvLSTMCell) -> None:
        """Make these parameters the weights of ``cell`` (same values, same objects as before)."""
        for name, p in self._parameters.items():
            real = getattr(cell, name)
            p.materialize(real.shape, device=real.device, dtype=real.dtype)
            p.data = real.data
            setattr(cell, name, p)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        pass  # no values yet

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        pass  # the layer builds its cell from the checkpoint's weights (ConvLSTM._load_from_state_dict)


class ConvLSTM(nn.Module):
    """Base class of :class:`ConvLSTM1D`, :class:`ConvLSTM2D` and :class:`ConvLSTM3D`; ``rank`` is
    the number of spatial dimensions. See :class:`ConvLSTM2D` for the arguments."""

    rank: int = 2

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid",
                 data_format: Optional[str] = None, dilation_rate=1, activation="tanh",
                 recurrent_activation="sigmoid", use_bias: bool = True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", unit_forget_bias: bool = True,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, *, dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 seed: Optional[int] = None, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, in_channels: Optional[int] = None,
                 peephole: bool = False, zero_output_for_mask: bool = False, unroll: bool = False,
                 implementation: str = "auto", checkpoint_chunk=None, device=None, dtype=None):
        super().__init__()
        rank = self.rank
        self.data_format = check_choice("data_format", "channels_last" if data_format is None else data_format,
                                        DATA_FORMATS, lower=True)
        # Everything the cell checks is checked here too, at construction, through a cell-shaped
        # dry run on one input channel when in_channels is not known yet.
        self._cell_kwargs: Dict[str, Any] = dict(
            filters=filters, kernel_size=kernel_size, strides=strides, padding=padding,
            dilation_rate=dilation_rate, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, peephole=peephole, data_format=self.data_format)
        probe = ConvLSTMCell(rank, 1 if in_channels is None else in_channels, device="meta", **self._cell_kwargs)
        self.filters = probe.filters
        self.kernel_size, self.strides, self.dilation_rate = probe.kernel_size, probe.strides, probe.dilation_rate
        self.padding = probe.padding
        self.activation, self.recurrent_activation = probe.activation, probe.recurrent_activation
        self.use_bias, self.unit_forget_bias, self.peephole = probe.use_bias, probe.unit_forget_bias, probe.peephole
        self.kernel_initializer = probe.kernel_initializer
        self.recurrent_initializer = probe.recurrent_initializer
        self.bias_initializer = probe.bias_initializer
        self.kernel_regularizer = _regularizers.get(kernel_regularizer, parameter="kernel_regularizer")
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer, parameter="recurrent_regularizer")
        self.bias_regularizer = _regularizers.get(bias_regularizer, parameter="bias_regularizer")
        self.activity_regularizer = _regularizers.get(activity_regularizer, parameter="activity_regularizer")
        self.kernel_constraint = _constraints.get(kernel_constraint, parameter="kernel_constraint")
        self.recurrent_constraint = _constraints.get(recurrent_constraint, parameter="recurrent_constraint")
        self.bias_constraint = _constraints.get(bias_constraint, parameter="bias_constraint")
        self.dropout = _check_rate(dropout, "dropout")
        self.recurrent_dropout = _check_rate(recurrent_dropout, "recurrent_dropout")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ParameterTypeError("seed", f"seed must be an int or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; the loop is the same
        self.implementation = _paths.check_implementation(implementation)
        self.checkpoint_chunk = _paths.check_checkpoint_chunk(checkpoint_chunk)
        self._factory = {"device": device, "dtype": dtype}
        self.cell: Optional[ConvLSTMCell] = None
        if in_channels is not None:
            self.build(check_positive_int("in_channels", in_channels))
        else:  # torch's lazy-module placeholders, materialized by build()
            self.uninitialized = _UninitializedWeights([n for n, _ in probe.named_parameters()], **self._factory)
        self._states: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._generators: Dict[torch.device, torch.Generator] = {}
        self._activity_losses: List[torch.Tensor] = []

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        return self.cell is not None

    @property
    def in_channels(self) -> Optional[int]:
        return None if self.cell is None else self.cell.in_channels

    def build(self, in_channels: int, *, device=None, dtype=None, initialize: bool = True) -> None:
        """Create the weights for ``in_channels`` input channels (done on the first call otherwise).

        ``initialize=False`` leaves them uninitialised (``torch.empty``), for callers that overwrite
        them at once, such as the Keras file loader.

        A layer made without ``in_channels`` holds :class:`~torch.nn.parameter.UninitializedParameter`
        placeholders until then (on the device and dtype that ``.to()`` gave them); they become the
        cell's weights, so an optimizer that took them trains the built layer."""
        pending: Optional[_UninitializedWeights] = getattr(self, "uninitialized", None)
        placeholder = None if pending is None else pending.placeholder()
        factory = {"device": device or self._factory["device"] or (None if placeholder is None else placeholder.device),
                   "dtype": dtype or self._factory["dtype"] or (None if placeholder is None else placeholder.dtype)}
        if initialize:
            cell = ConvLSTMCell(self.rank, in_channels, **self._cell_kwargs, **factory)
        else:
            cell = ConvLSTMCell(self.rank, in_channels, **self._cell_kwargs, device="meta", dtype=factory["dtype"])
            cell = cell.to_empty(device=factory["device"] or "cpu")
        if pending is not None:
            pending.adopt(cell)
            del self.uninitialized
        self.cell = cell

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "cell.weight_ih"
        if self.cell is None and key in state_dict:  # a lazy layer takes its size from the checkpoint
            w = state_dict[key]
            self.build(int(w.shape[1]), device=w.device, dtype=w.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _require_built(self, what: str) -> ConvLSTMCell:
        if self.cell is None:
            raise RuntimeError(f"{type(self).__name__}.{what}: the layer has no weights yet; pass in_channels= "
                               "to the constructor or call the layer once on an input")
        return self.cell

    # ------------------------------------------------------------------ Keras weight API
    def get_weights(self) -> List[np.ndarray]:
        """``[kernel, recurrent_kernel, bias]`` in Keras's layout (numpy), as Keras's ``get_weights``."""
        return self._require_built("get_weights").get_weights()

    def set_weights(self, weights: Sequence) -> None:
        """Set ``[kernel, recurrent_kernel, bias]`` given in Keras's layout; builds a lazy layer."""
        weights = list(weights)
        if self.cell is None:
            if not weights or np.ndim(weights[0]) != self.rank + 2:
                raise ValueError(f"set_weights: the first array must be the kernel of rank {self.rank + 2}")
            self.build(int(np.shape(weights[0])[-2]))
        self.cell.set_weights(weights)

    def _weights_with_rules(self):
        cell = self._require_built("losses")
        named = dict(cell.keras_weights())
        rules = [("kernel", self.kernel_regularizer, self.kernel_constraint, cell.weight_ih),
                 ("recurrent_kernel", self.recurrent_regularizer, self.recurrent_constraint, cell.weight_hh)]
        if cell.bias is not None:
            rules.append(("bias", self.bias_regularizer, self.bias_constraint, cell.bias))
        return [(name, reg, con, named[name], param) for name, reg, con, param in rules]

    @property
    def losses(self) -> List[torch.Tensor]:
        """Regularization penalties, as Keras's ``layer.losses``: the activity penalties of the
        last call, then the kernel, recurrent kernel and bias penalties of the current weights."""
        out = list(self._activity_losses)
        if self.cell is not None:
            out += [reg(keras_view) for _, reg, _, keras_view, _ in self._weights_with_rules() if reg is not None]
        return out

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Project the weights with their constraints (in Keras's layout), as Keras does after
        each optimizer update."""
        if self.cell is None:
            return
        for name, _, con, keras_view, _ in self._weights_with_rules():
            if con is not None:
                projected = con(keras_view.detach().clone())
                if tuple(projected.shape) != tuple(keras_view.shape):
                    raise ValueError(f"{name}_constraint returned shape {tuple(projected.shape)}, "
                                     f"expected {tuple(keras_view.shape)}")
                keras_view.copy_(projected)

    # ------------------------------------------------------------------ states
    def reset_states(self, states: Optional[Sequence] = None) -> None:
        """Forget the stored states of a ``stateful`` layer (the next call starts from zeros, with
        any batch size), or set them to ``[h, c]`` given in the layer's data format."""
        if not self.stateful:
            raise AttributeError("reset_states: the layer is not stateful; construct it with stateful=True")
        if states is None:
            self._states = None
            return
        if len(states) != 2:
            raise ValueError(f"reset_states expects [h, c], got {len(states)} tensors")
        h, c = (torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s) for s in states)
        if h.shape != c.shape:
            raise ValueError(f"reset_states: h has shape {tuple(h.shape)} but c has {tuple(c.shape)}")
        if self.data_format == "channels_last":
            h, c = h.movedim(-1, 1), c.movedim(-1, 1)
        if h.shape[1] != self.filters:
            raise ValueError(f"reset_states: the states must have {self.filters} channels (filters), "
                             f"got shape {tuple(states[0].shape)}")
        self._states = (h.detach(), c.detach())

    reset_state = reset_states

    @property
    def states(self) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The stored ``(h, c)`` of a stateful layer in its data format, or ``None``."""
        if self._states is None:
            return None
        if self.data_format == "channels_last":
            return tuple(s.movedim(1, -1) for s in self._states)
        return self._states

    # ------------------------------------------------------------------ forward
    def _describe_layout(self) -> str:
        sp = _SPATIAL_NAMES[self.rank]
        if self.data_format == "channels_last":
            return f"(batch, time, {sp}, channels)"
        return f"(batch, time, channels, {sp})"

    def _to_channels_first(self, inputs) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor):
            try:
                inputs = torch.as_tensor(np.asarray(inputs))
            except Exception as err:
                raise TypeError(f"{type(self).__name__} expects a tensor or array, got {type(inputs).__name__}: {err}")
        if inputs.dim() != self.rank + 3:
            raise ValueError(f"{type(self).__name__} expected ndim={self.rank + 3} input {self._describe_layout()}, "
                             f"got shape {tuple(inputs.shape)} (ndim={inputs.dim()})")
        if not (inputs.is_floating_point() or inputs.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16,
                                                                torch.int32, torch.int64)):
            raise TypeError(f"{type(self).__name__}: unsupported input dtype {inputs.dtype}")
        if self.data_format == "channels_last":
            inputs = inputs.movedim(-1, 2)
        return inputs

    def _generator(self, device: torch.device) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            self._generators[device] = gen
        return gen

    def _dropout_masks(self, rate: float, shape: Tuple[int, ...], like: torch.Tensor) -> Optional[torch.Tensor]:
        """Four inverted dropout masks (one per gate), or ``None`` outside ``0 < rate < 1``."""
        if not 0.0 < rate < 1.0:
            return None
        keep = torch.rand((4,) + shape, generator=self._generator(like.device), device=like.device) >= rate
        return keep.to(like.dtype) / (1.0 - rate)

    def _initial_state(self, batch: int, spatial: Tuple[int, ...], initial_state, like: torch.Tensor):
        expected = (batch, self.filters) + spatial
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
                raise ValueError("initial_state must be a list [h0, c0] of two tensors")
            states = []
            shown = expected if self.data_format == "channels_first" else (batch,) + spatial + (self.filters,)
            for name, s in zip(("h0", "c0"), initial_state):
                s = torch.as_tensor(np.asarray(s) if not isinstance(s, torch.Tensor) else s)
                if tuple(s.shape) != shown:
                    raise ValueError(f"initial_state {name} has shape {tuple(s.shape)}, expected {shown} "
                                     f"({self.data_format}: the state has the input convolution's output size)")
                if self.data_format == "channels_last":
                    s = s.movedim(-1, 1)
                states.append(s.to(device=like.device, dtype=like.dtype))
            return states[0], states[1]
        if self.stateful and self._states is not None:
            h, c = self._states
            if h.shape[0] != batch:
                raise ValueError(
                    f"stateful {type(self).__name__} holds states for batch size {h.shape[0]}, got a batch of "
                    f"{batch}: a stateful layer needs the same batch size on every call, so the number of "
                    f"samples must be a multiple of the batch size (drop the remainder, e.g. "
                    f"DataLoader(..., drop_last=True) or x[: len(x) // {h.shape[0]} * {h.shape[0]}]), or call "
                    f"reset_states() to start over with a new batch size")
            if tuple(h.shape) != expected:
                raise ValueError(f"stateful {type(self).__name__} holds states of shape {tuple(h.shape)} "
                                 f"(channels first), this input needs {expected}; call reset_states()")
            return h.to(device=like.device, dtype=like.dtype), c.to(device=like.device, dtype=like.dtype)
        zeros = like.new_zeros(expected)
        return zeros, zeros

    def _check_mask(self, mask, batch: int, steps: int, device) -> Optional[torch.Tensor]:
        if mask is None:
            return None
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask, device=device)
        if tuple(mask.shape) != (batch, steps):
            raise ValueError(f"mask must have shape (batch, time) = {(batch, steps)}, got {tuple(mask.shape)}")
        return mask.to(torch.bool)

    def forward(self, inputs, initial_state: Optional[Sequence] = None, mask=None,
                training: Optional[bool] = None):
        """Run the layer over a sequence.

        Args:
            inputs: the 5D (for 2D) sequence, in the layer's ``data_format``; a tensor or an array.
            initial_state: optional ``[h0, c0]`` in the state's shape.
            mask: optional boolean ``(batch, time)``; masked steps keep the state and repeat the
                previous output.
            training: override ``self.training`` (Keras's ``training`` flag) for dropout.
        """
        x = self._to_channels_first(inputs)
        batch, steps, channels = x.shape[0], x.shape[1], x.shape[2]
        spatial_in = tuple(x.shape[3:])
        if self.cell is None:
            self.build(int(channels), device=x.device)
        cell = self.cell
        if channels != cell.in_channels:
            raise ValueError(f"{type(self).__name__} was built for {cell.in_channels} input channels, got "
                             f"{channels} (input shape {tuple(inputs.shape)}, {self.data_format})")
        if steps < 1:
            raise ValueError(f"{type(self).__name__} needs at least one time step, got input shape {tuple(inputs.shape)}")
        spatial = cell.output_spatial(spatial_in)
        if min(spatial) < 1:
            raise ValueError(
                f"{type(self).__name__}: the spatial size {spatial_in} is too small for kernel_size={self.kernel_size}"
                f" with dilation_rate={self.dilation_rate}, strides={self.strides} and padding={self.padding!r} "
                f"(the output would be {spatial}); use a larger input or padding='same'")
        dtype = cell.weight_ih.dtype
        x = x.to(dtype)  # as Keras casts inputs to the layer's dtype (autocast still applies in the convs)
        training = self.training if training is None else bool(training)
        mask = self._check_mask(mask, batch, steps, x.device)
        h, c = self._initial_state(batch, spatial, initial_state, x)

        in_masks = self._dropout_masks(self.dropout, (batch, channels) + spatial_in, x) if training else None
        rec_masks = self._dropout_masks(self.recurrent_dropout, (batch, self.filters) + spatial, x) if training else None
        # the time loop: see convlstm._paths for the paths and the automatic choice
        output, h, c = _paths.run(self, cell, x, h, c, mask=mask, in_masks=in_masks, rec_masks=rec_masks,
                                  path=self.implementation, checkpoint_chunk=self.checkpoint_chunk)
        if self.stateful:
            self._states = (h.detach(), c.detach())
        if self.data_format == "channels_last":
            output = output.movedim(2 if self.return_sequences else 1, -1)
            h, c = h.movedim(1, -1), c.movedim(1, -1)
        result = (output, h, c) if self.return_state else output
        self._record_activity(result if self.return_state else (output,))
        return result

    def _record_activity(self, outputs: Sequence[torch.Tensor]) -> None:
        self._activity_losses = []
        if self.activity_regularizer is not None:
            self._activity_losses = [self.activity_regularizer(o) / o.shape[0] for o in outputs]

    # ------------------------------------------------------------------ config
    def get_config(self) -> Dict[str, Any]:
        """The Keras config keys and values (plus ``in_channels`` and ``peephole``)."""
        def ser(obj):
            if obj is None or isinstance(obj, (str, int, float)):
                return obj
            if hasattr(obj, "get_config"):
                return {"class_name": type(obj).__name__, "config": obj.get_config()}
            return obj

        return {
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": _activations.name_of(self.activation),
            "recurrent_activation": _activations.name_of(self.recurrent_activation),
            "use_bias": self.use_bias,
            "kernel_initializer": _initializers.name_or_config(self.kernel_initializer),
            "recurrent_initializer": _initializers.name_or_config(self.recurrent_initializer),
            "bias_initializer": _initializers.name_or_config(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": ser(self.kernel_regularizer),
            "recurrent_regularizer": ser(self.recurrent_regularizer),
            "bias_regularizer": ser(self.bias_regularizer),
            "activity_regularizer": ser(self.activity_regularizer),
            "kernel_constraint": ser(self.kernel_constraint),
            "recurrent_constraint": ser(self.recurrent_constraint),
            "bias_constraint": ser(self.bias_constraint),
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "in_channels": self.in_channels, "peephole": self.peephole,
            "implementation": self.implementation, "checkpoint_chunk": self.checkpoint_chunk,
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "ConvLSTM":
        """Build a layer from :meth:`get_config` or from a Keras layer config (Keras-only keys such
        as ``name``, ``trainable`` and ``dtype`` are ignored)."""
        config = dict(config)
        for key in ("name", "trainable", "dtype", "batch_input_shape", "batch_shape", "time_major"):
            config.pop(key, None)
        return cls(**config)

    def extra_repr(self) -> str:
        s = f"{self.filters}, kernel_size={self.kernel_size}"
        if self.in_channels is not None:
            s = f"in_channels={self.in_channels}, filters={s}"
        else:
            s = f"filters={s}"
        if max(self.strides) > 1:
            s += f", strides={self.strides}"
        s += f", padding={self.padding!r}, data_format={self.data_format!r}"
        if max(self.dilation_rate) > 1:
            s += f", dilation_rate={self.dilation_rate}"
        for name in ("return_sequences", "return_state", "go_backwards", "stateful", "peephole"):
            if getattr(self, name):
                s += f", {name}=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        return s


def _layer_doc(rank: int) -> str:
    sp = {1: "L", 2: "H, W", 3: "D, H, W"}[rank]
    spo = {1: "L'", 2: "H', W'", 3: "D', H', W'"}[rank]
    return f"""{rank}D convolutional LSTM: Keras's ``ConvLSTM{rank}D`` as a :class:`torch.nn.Module`.

    At each step :math:`t` (see :class:`convlstm.cell.ConvLSTMCell` for the full equations)

    .. math::
        \\begin{{aligned}}
        i_t &= \\sigma(W_{{xi}} \\star x_t + W_{{hi}} \\star h_{{t-1}} + b_i), \\quad
        f_t = \\sigma(W_{{xf}} \\star x_t + W_{{hf}} \\star h_{{t-1}} + b_f) \\\\
        c_t &= f_t \\odot c_{{t-1}} + i_t \\odot \\phi(W_{{xc}} \\star x_t + W_{{hc}} \\star h_{{t-1}} + b_c) \\\\
        o_t &= \\sigma(W_{{xo}} \\star x_t + W_{{ho}} \\star h_{{t-1}} + b_o), \\quad h_t = o_t \\odot \\phi(c_t)
        \\end{{aligned}}

    Args:
        filters (int): channels :math:`F` of the state and output.
        kernel_size (int or tuple of {rank}): convolution window.
        strides (int or tuple): input-convolution strides (the recurrent convolution has stride 1).
        padding (str): ``'valid'`` or ``'same'`` (TensorFlow's, extra pixel at the end).
        data_format (str or None): ``'channels_last'`` (default) or ``'channels_first'``.
        dilation_rate (int or tuple): input-convolution dilation; not with strides > 1.
        activation: :math:`\\phi`, a Keras name, ``None`` (linear) or a callable. Default ``'tanh'``.
        recurrent_activation: :math:`\\sigma`. Default ``'sigmoid'`` (Keras 3); Keras 2's default
            was ``'hard_sigmoid'`` with slope 0.2, here ``'keras2_hard_sigmoid'``.
        use_bias (bool): add a bias to the input convolution.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras names, configs or callables.
        unit_forget_bias (bool): set the forget block of the bias to 1 at initialisation.
        kernel_regularizer, recurrent_regularizer, bias_regularizer, activity_regularizer:
            penalties collected in :attr:`losses`.
        kernel_constraint, recurrent_constraint, bias_constraint: projections applied by
            :meth:`apply_constraints` / :func:`convlstm.apply_constraints`.
        dropout (float): input dropout rate (four per-gate masks, constant over time).
        recurrent_dropout (float): dropout rate on :math:`h_{{t-1}}` (four per-gate masks).
        seed (int or None): seed of the dropout masks.
        return_sequences (bool): return all outputs, not only the last.
        return_state (bool): also return the last :math:`h` and :math:`c`.
        go_backwards (bool): process the sequence from its last step; outputs are in processing order.
        stateful (bool): carry the last states of a batch over to the next call.
        in_channels (int, keyword): create the weights now rather than on the first call.
        peephole (bool, keyword): Shi et al. (2015)'s per-channel peepholes (not in Keras).
        implementation (str, keyword): the compute path, ``'auto'`` (default), ``'reference'``,
            ``'fused'``, ``'concat'``, ``'nnpack'`` or ``'fft'``; see :mod:`convlstm._paths` for
            what each does and the rule ``'auto'`` follows. All compute the same function (to
            float32 rounding); a path that does not apply to the layer runs its documented fallback.
        checkpoint_chunk (None, True or int, keyword): checkpointing through time in training:
            keep only every ``checkpoint_chunk``-th state and recompute the steps in between
            during the backward (``True``: chunks of ``ceil(sqrt(T))`` steps). Less memory for
            about one more forward pass of time.

    Shape (channels_last; channels_first puts :math:`C` / :math:`F` after the time axis):
        - Input: :math:`(B, T, {sp}, C_{{in}})`
        - Output: :math:`(B, T, {spo}, F)` with ``return_sequences=True``, else :math:`(B, {spo}, F)`;
          with ``return_state=True`` a tuple ``(output, h, c)``, h and c of shape :math:`(B, {spo}, F)`.

    Example::

        >>> layer = ConvLSTM{rank}D(8, 3, padding="same", return_sequences=True)
        >>> x = torch.randn(2, 5, {", ".join(["16"] * rank)}, 3)
        >>> layer(x).shape
        torch.Size([2, 5, {", ".join(["16"] * rank)}, 8])
    """


class ConvLSTM1D(ConvLSTM):
    __doc__ = _layer_doc(1)
    rank = 1


class ConvLSTM2D(ConvLSTM):
    __doc__ = _layer_doc(2)
    rank = 2


class ConvLSTM3D(ConvLSTM):
    __doc__ = _layer_doc(3)
    rank = 3


def regularization_loss(model: nn.Module) -> torch.Tensor:
    """The sum of the regularization penalties (:attr:`ConvLSTM.losses`) of every ConvLSTM layer
    in ``model``; a zero tensor if there are none. Add it to the training loss."""
    total = None
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            for loss in module.losses:
                total = loss if total is None else total + loss
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros((), device=None if p is None else p.device)
    return total


@torch.no_grad()
def apply_constraints(model: nn.Module) -> None:
    """Apply the weight constraints of every ConvLSTM layer in ``model``. Call it after
    ``optimizer.step()``, or attach it once::

        optimizer.register_step_post_hook(lambda *_: convlstm.apply_constraints(model))
    """
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            module.apply_constraints()


def release_workspaces(model: nn.Module) -> int:
    """Free the buffers that the ConvLSTM cells in ``model`` keep between calls and return how
    many bytes they held.

    In training (and in ``concat`` / ``nnpack`` inference) a cell keeps its time loop's large
    buffers (inputs, gates and cell states of every step, gate gradients) and reuses them in its
    next calls, which saves their fresh page faults (``convlstm._workspace``). They stay
    allocated until the model is freed; call this to give the memory back sooner, e.g. after
    training and before a long inference run. Outputs still in use are not affected: their
    memory is freed when they are.
    """
    released = 0
    for module in model.modules():
        workspace = getattr(module, "_workspace", None)
        if isinstance(module, ConvLSTMCell) and workspace is not None:
            released += workspace.clear()
    return released
