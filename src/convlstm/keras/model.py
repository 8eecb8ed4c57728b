"""A Keras model (Sequential or functional graph) as one :class:`torch.nn.Module`.

:func:`parse_model_config` turns a Keras 2 / tf.keras or Keras 3 model config (plain JSON) into a
list of :class:`LayerSpec` with their call nodes; :class:`KerasModel` builds the modules and runs
the graph in a fixed topological order. Inputs and outputs are in the Keras model's own layout.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..layers import ConvLSTM
from ..wrappers import Bidirectional
from ._safe import KerasFileError
from .layers import BUILDERS, MERGE_LAYERS, BuildContext, build_layer, build_module, unsupported

__all__ = ["KerasModel", "LayerSpec", "parse_model_config"]

Ref = Tuple[str, int, int]  # (layer name, node index, tensor index)

#: Sizes tried in place of the ``None`` dimensions of the inputs when shapes are inferred.
_PLACEHOLDERS = (2, 8, 32, 128)


class Node:
    """One call of a layer: its main inputs (a list when ``as_list``), and the ``initial_state``
    tensors given to a recurrent layer."""

    __slots__ = ("inputs", "states", "as_list")

    def __init__(self, inputs: List[Ref], states: List[Ref], as_list: bool):
        self.inputs, self.states, self.as_list = inputs, states, as_list

    def to_json(self):
        return {"inputs": [list(r) for r in self.inputs], "states": [list(r) for r in self.states],
                "as_list": self.as_list}


class LayerSpec:
    """A layer of the model: name, Keras class, config and call nodes (``InputLayer``: the shape)."""

    def __init__(self, name: str, class_name: str, config: dict, nodes: List[Node],
                 input_shape: Optional[Tuple[Optional[int], ...]] = None):
        self.name, self.class_name, self.config, self.nodes = name, class_name, config, nodes
        self.input_shape = input_shape


def _is_ref(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) >= 3 and isinstance(value[0], str)
            and isinstance(value[1], int) and isinstance(value[2], int))


def _refs(value, what: str) -> List[Ref]:
    """``[name, node, tensor]`` or a list (or dict) of them -> list of refs."""
    if _is_ref(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and all(_is_ref(v) for v in value):
        return [(v[0], v[1], v[2]) for v in value]
    raise KerasFileError(f"model config: cannot read {what} {value!r}")


def _k3_tensors(value) -> List[Ref]:
    """All ``__keras_tensor__`` references inside a Keras 3 node argument."""
    out: List[Ref] = []
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            hist = (value.get("config") or {}).get("keras_history")
            if not _is_ref(hist):
                raise KerasFileError(f"model config: bad keras_history {hist!r}")
            out.append((hist[0], hist[1], hist[2]))
        else:
            for v in value.values():
                out += _k3_tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            out += _k3_tensors(v)
    return out


def _parse_node(node, class_name: str, layer: str) -> Node:
    recurrent = class_name in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional")
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        args = node.get("args") or []
        kwargs = node.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise KerasFileError(f"layer {layer!r}: malformed inbound node {node!r}")
        as_list = bool(args) and isinstance(args[0], (list, tuple))
        main = _k3_tensors(args[:1])
        states = _k3_tensors(args[1:]) + _k3_tensors(kwargs.get("initial_state"))
        for key, value in kwargs.items():
            if key not in ("initial_state",) and _k3_tensors(value):
                raise KerasFileError(f"layer {layer!r}: a tensor passed as {key!r} is not supported")
        if states and not recurrent:
            raise KerasFileError(f"layer {layer!r}: extra tensor arguments are only supported as initial_state "
                                 "of a recurrent layer")
        return Node(main, states, as_list or class_name in MERGE_LAYERS)
    if isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]
        refs = []
        for entry in node:
            if not _is_ref(entry):
                raise KerasFileError(f"layer {layer!r}: malformed inbound node entry {entry!r}")
            refs.append((entry[0], entry[1], entry[2]))
            kw = entry[3] if len(entry) > 3 else {}
            if isinstance(kw, dict) and "initial_state" in kw:
                refs += _refs(kw["initial_state"], "initial_state")
        if class_name in MERGE_LAYERS:
            return Node(refs, [], True)
        if recurrent:
            return Node(refs[:1], refs[1:], False)
        if len(refs) != 1:
            raise KerasFileError(f"layer {layer!r} ({class_name}) is called on {len(refs)} tensors; it takes one")
        return Node(refs, [], False)
    raise KerasFileError(f"layer {layer!r}: malformed inbound node {node!r}")


def _check_class(name, class_name) -> None:
    """Refuse an unsupported layer class before reading anything else about it."""
    if class_name == "InputLayer" or (isinstance(class_name, str) and class_name in BUILDERS):
        return
    if class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        raise unsupported(name, class_name, "it holds Python code, which is never run")
    if class_name in ("Sequential", "Functional", "Model"):
        raise unsupported(name, class_name, "nested models are not supported; flatten the model first")
    raise unsupported(name, class_name)


def _input_shape_of(config: dict) -> Optional[Tuple[Optional[int], ...]]:
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return tuple(config[key])
    if config.get("input_shape") is not None:
        return (None,) + tuple(config["input_shape"])
    return None


def parse_model_config(model_config: Any) -> Tuple[str, List[LayerSpec], List[Ref], List[Ref]]:
    """Normalise a Keras model config (``{"class_name", "config"}``) into
    ``(model name, layer specs in Keras's layer order, input refs, output refs)``."""
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise KerasFileError("model config: expected a JSON object with 'class_name' and 'config'")
    class_name = model_config["class_name"]
    config = model_config.get("config")
    if class_name == "Sequential":
        if isinstance(config, list):  # Keras 2.0/2.1
            config = {"name": "sequential", "layers": config}
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise KerasFileError("model config: a Sequential config needs a 'layers' list")
        layers = config["layers"]
        specs: List[LayerSpec] = []
        prev: Optional[Ref] = None
        shape = None
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict):
                raise KerasFileError(f"model config: layer {i} is not a JSON object")
            lcfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            lname = str(lcfg.get("name", f"layer_{i}"))
            lcls = layer.get("class_name")
            _check_class(lname, lcls)
            if lcls == "InputLayer":
                specs.append(LayerSpec(lname, "InputLayer", lcfg, [], _input_shape_of(lcfg)))
                prev = (lname, 0, 0)
                continue
            if prev is None:
                shape = _input_shape_of(lcfg)
                if shape is None and isinstance(layer.get("build_config"), dict):
                    bshape = layer["build_config"].get("input_shape")
                    shape = tuple(bshape) if bshape is not None else None
                if shape is None and config.get("build_input_shape") is not None:
                    shape = tuple(config["build_input_shape"])
                if shape is None:
                    raise KerasFileError("model config: the Sequential model has no input shape "
                                         "(no InputLayer and no batch_input_shape)")
                specs.append(LayerSpec("input", "InputLayer", {"name": "input"}, [], shape))
                prev = ("input", 0, 0)
            specs.append(LayerSpec(lname, lcls, layer, [Node([prev], [], False)]))
            prev = (lname, 0, 0)
        if prev is None:
            raise KerasFileError("model config: the Sequential model has no layers")
        inputs = [(s.name, 0, 0) for s in specs if s.class_name == "InputLayer"][:1]
        return str(config.get("name", "sequential")), specs, inputs, [prev]
    if class_name in ("Functional", "Model"):
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise KerasFileError("model config: a functional config needs a 'layers' list")
        specs = []
        for i, layer in enumerate(config["layers"]):
            if not isinstance(layer, dict):
                raise KerasFileError(f"model config: layer {i} is not a JSON object")
            lcfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            lname = str(layer.get("name", lcfg.get("name", f"layer_{i}")))
            lcls = layer.get("class_name")
            _check_class(lname, lcls)
            if lcls == "InputLayer":
                specs.append(LayerSpec(lname, "InputLayer", lcfg, [], _input_shape_of(lcfg)))
                continue
            nodes = layer.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise KerasFileError(f"layer {lname!r}: inbound_nodes must be a list")
            specs.append(LayerSpec(lname, lcls, layer, [_parse_node(n, str(lcls), lname) for n in nodes]))
        inputs = _refs(config.get("input_layers"), "input_layers")
        outputs = _refs(config.get("output_layers"), "output_layers")
        return str(config.get("name", "model")), specs, inputs, outputs
    raise unsupported(model_config.get("config", {}).get("name") if isinstance(model_config.get("config"), dict)
                      else None, class_name, "the top level must be a Sequential or functional Model")


def _module_key(name: str) -> str:
    return name.replace(".", "_") or "_"


class KerasModel(nn.Module):
    """A Keras model rebuilt in torch; ``forward(*inputs)`` takes the inputs in the Keras model's
    order and layout and returns its output (a tuple when the model has several).

    Attributes:
        layers_by_name: ``nn.ModuleDict`` of the layers, keyed by Keras layer name.
        keras_version: the Keras version that wrote the file (``"2.2.4"``, ``"3.15.1"``, ...).
        output_shapes: ``{layer name: [shape per output]}`` (``None`` for the batch and for
            dimensions that follow the inputs' ``None`` dimensions), for summaries.
    """

    def __init__(self, model_config: dict, *, keras_version: str = "3", build: bool = True):
        super().__init__()
        self.model_config = model_config
        self.keras_version = str(keras_version)
        try:
            major = int(self.keras_version.split(".")[0])
        except ValueError:
            major = 3
        self.keras_major = major
        ctx = BuildContext(major)
        name, specs, inputs, outputs = parse_model_config(model_config)
        self.name = name
        self.specs = specs
        self.input_refs, self.output_refs = inputs, outputs
        by_name: Dict[str, LayerSpec] = {}
        for s in specs:
            if s.name in by_name:
                raise KerasFileError(f"model config: two layers are named {s.name!r}")
            by_name[s.name] = s
        self._spec_by_name = by_name
        self.layers_by_name = nn.ModuleDict()
        self._keys: Dict[str, str] = {}
        for s in specs:
            if s.class_name == "InputLayer":
                continue
            key = _module_key(s.name)
            self._keys[s.name] = key
            self.layers_by_name[key] = build_layer(s.config, ctx)
        for ref in inputs:
            spec = by_name.get(ref[0])
            if spec is None or spec.class_name != "InputLayer":
                raise KerasFileError(f"model config: model input {ref[0]!r} is not an InputLayer")
            if spec.input_shape is None:
                raise KerasFileError(f"model config: input {ref[0]!r} has no shape")
        self._order = self._schedule()
        self._output_shapes = None
        self._raw_shapes = None
        if build:
            self._build()
        self.eval()

    # ------------------------------------------------------------------ graph
    def _schedule(self) -> List[Tuple[str, int]]:
        ready = {ref[0] for ref in self.input_refs}
        for s in self.specs:
            if s.class_name == "InputLayer" and s.name not in ready:
                raise KerasFileError(f"model config: InputLayer {s.name!r} is not one of the model's inputs")
        done = {(name, 0) for name in ready}
        pending = [(s.name, i) for s in self.specs if s.class_name != "InputLayer" for i in range(len(s.nodes))]
        for name, i in pending:
            for ref in self._spec_by_name[name].nodes[i].inputs + self._spec_by_name[name].nodes[i].states:
                target = self._spec_by_name.get(ref[0])
                if target is None:
                    raise KerasFileError(f"layer {name!r} takes its input from an unknown layer {ref[0]!r}")
                if target.class_name != "InputLayer" and not 0 <= ref[1] < len(target.nodes):
                    raise KerasFileError(f"layer {name!r} refers to node {ref[1]} of {ref[0]!r}, which has "
                                         f"{len(target.nodes)} nodes")
        order: List[Tuple[str, int]] = []
        while pending:
            progressed = False
            rest = []
            for name, i in pending:
                node = self._spec_by_name[name].nodes[i]
                if all((r[0], r[1]) in done for r in node.inputs + node.states):
                    order.append((name, i))
                    done.add((name, i))
                    progressed = True
                else:
                    rest.append((name, i))
            if not progressed:
                raise KerasFileError("model config: the layer graph has a cycle or an unreachable node: "
                                     + ", ".join(f"{n}[{i}]" for n, i in rest[:10]))
            pending = rest
        for ref in self.output_refs:
            if (ref[0], ref[1]) not in done:
                raise KerasFileError(f"model config: output {ref} is never computed")
        return order

    def layer(self, name: str) -> nn.Module:
        """The module of the Keras layer called ``name``."""
        if name not in self._keys:
            raise KeyError(f"no layer {name!r} with weights or computation in the model; layers: "
                           f"{', '.join(self._keys)}")
        return self.layers_by_name[self._keys[name]]

    def keras_layers(self) -> List[Tuple[str, str, Optional[nn.Module]]]:
        """``(name, class, module)`` in Keras's layer order (``module`` is None for InputLayers)."""
        return [(s.name, s.class_name, None if s.class_name == "InputLayer" else self.layer(s.name))
                for s in self.specs]

    @staticmethod
    def _call(module: nn.Module, node: Node, values: List[torch.Tensor], states: List[torch.Tensor]):
        if isinstance(module, (ConvLSTM, Bidirectional)):
            out = module(values[0], initial_state=states or None)
        elif node.as_list:
            out = module(values)
        else:
            out = module(values[0])
        if isinstance(out, (list, tuple)):
            flat: List[torch.Tensor] = []
            for o in out:
                if isinstance(o, (list, tuple)):
                    flat.extend(o)
                else:
                    flat.append(o)
            return tuple(flat)
        return (out,)

    def _run(self, inputs: Sequence[torch.Tensor], hook=None):
        values: Dict[Tuple[str, int], Tuple[torch.Tensor, ...]] = {}
        for ref, x in zip(self.input_refs, inputs):
            values[(ref[0], 0)] = (x,)

        def get(ref: Ref) -> torch.Tensor:
            outs = values[(ref[0], ref[1])]
            if not 0 <= ref[2] < len(outs):
                raise RuntimeError(f"layer {ref[0]!r} node {ref[1]} has {len(outs)} outputs, "
                                   f"the model asks for output {ref[2]}")
            return outs[ref[2]]

        for name, i in self._order:
            node = self._spec_by_name[name].nodes[i]
            module = self.layer(name)
            xs = [get(r) for r in node.inputs]
            if hook is not None:
                hook(name, module, xs)
            values[(name, i)] = self._call(module, node, xs, [get(r) for r in node.states])
        outs = tuple(get(r) for r in self.output_refs)
        return outs, values

    def forward(self, *inputs):
        """Run the model. ``inputs``: one tensor per model input (or one list/tuple of them), in the
        Keras model's layout. Returns one tensor, or a tuple for several outputs."""
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) != len(self.input_refs):
            names = ", ".join(r[0] for r in self.input_refs)
            raise ValueError(f"the model takes {len(self.input_refs)} inputs ({names}), got {len(inputs)}")
        outs, _ = self._run(inputs)
        return outs[0] if len(outs) == 1 else outs

    # ------------------------------------------------------------------ build
    def input_shapes(self) -> List[Tuple[Optional[int], ...]]:
        """The Keras input shapes, ``None`` for the batch and unknown sizes."""
        return [self._spec_by_name[r[0]].input_shape for r in self.input_refs]

    def example_inputs(self, batch: int = 1, fill: Optional[int] = None) -> List[torch.Tensor]:
        """Zeros of the model's input shapes, ``batch`` samples; sizes Keras leaves open are
        ``fill`` (default: the size the model was built with)."""
        fill = fill or self._fill or 1
        return [torch.zeros([batch] + [fill if d is None else int(d) for d in shape[1:]])
                for shape in self.input_shapes()]

    def _dry_run(self, fill: int):
        xs = self.example_inputs(1, fill)

        def build_hook(name, module, values):
            build_module(module, [tuple(v.shape) for v in values])

        with torch.no_grad():
            _, values = self._run(xs, hook=build_hook)
        return {k: [tuple(t.shape) for t in v] for k, v in values.items()}

    def _build(self) -> None:
        """Create every layer's weights from the input shapes (Keras's ``build``) by one run on
        zeros, and record the output shapes."""
        was_training = self.training
        self.eval()
        errors = []
        shapes = None
        has_none = any(d is None for s in self.input_shapes() for d in s[1:])
        for fill in (_PLACEHOLDERS if has_none else (1,)):
            try:
                shapes = self._dry_run(fill)
                break
            except (RuntimeError, ValueError) as err:
                errors.append(err)
                if not has_none:
                    raise KerasFileError(f"the model cannot run on its declared input shapes "
                                         f"{self.input_shapes()}: {err}") from None
        if shapes is None:
            raise KerasFileError(f"the model cannot run on its input shapes {self.input_shapes()}: {errors[-1]}")
        self._fill = fill if has_none else None
        self._raw_shapes = shapes
        self._output_shapes: Optional[Dict[str, List[Tuple[Optional[int], ...]]]] = None
        self._reset_stateful()
        self.train(was_training)

    @property
    def output_shapes(self) -> Dict[str, List[Tuple[Optional[int], ...]]]:
        """``{layer name: [shape per output]}`` of each layer's first call, ``None`` for the batch and
        for the sizes that follow the inputs' ``None`` dimensions (found by a second run on zeros)."""
        if self._output_shapes is None:
            shapes = self._raw_shapes or {}
            other = shapes
            if self._fill is not None:
                was_training = self.training
                self.eval()
                try:
                    other = self._dry_run(self._fill + 1)
                except (RuntimeError, ValueError):
                    other = shapes
                finally:
                    self._reset_stateful()
                    self.train(was_training)
            out: Dict[str, List[Tuple[Optional[int], ...]]] = {}
            for (name, i), outs in shapes.items():
                if self._spec_by_name[name].class_name == "InputLayer" or name in out:
                    continue
                out[name] = [(None,) + tuple(x if x == y else None for x, y in zip(a[1:], b[1:]))
                             for a, b in zip(outs, other[(name, i)])]
            self._output_shapes = out
        return self._output_shapes

    def _reset_stateful(self) -> None:
        for module in self.modules():
            if isinstance(module, ConvLSTM) and module.stateful:
                module.reset_states()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, keras_version={self.keras_version!r}"
