"""Networks described as data: a list of layer tables, as a config file writes them.

Each table names a layer and its arguments, the keyword arguments of the layer's class::

    {layer = "conv2d", channels = 32, kernel = 3, padding = "same"}
    {layer = "relu"}
    {layer = "max_pool2d", window = 2}
    {layer = "columns"}                   # (C, H, W) -> (W, C*H): one step per image column
    {layer = "unflatten", shape = [7, 10]}  # (70,) -> (7, 10): 7 heads of 10 scores

Every key is checked before anything is built, so a typo is an error that names the layer's
position, the key and the keys that layer accepts.

>>> layers = build_layers([{"layer": "conv2d", "channels": 4, "kernel": 3}, {"layer": "relu"},
...                        {"layer": "flatten"}, {"layer": "dense", "units": 10}])
>>> [layer.name for layer in layers]
['conv2d', 'relu', 'flatten', 'dense']
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from nn import activations
from nn.conv_layers import AvgPool2D, Columns, Conv2D, Flatten, MaxPool2D, Unflatten
from nn.errors import DataError
from nn.layers import Activation, Dense, Layer
from nn.norm_layers import BatchNorm, Dropout

_CLASSES = (Conv2D, MaxPool2D, AvgPool2D, Flatten, Columns, Dense, Unflatten, Dropout, BatchNorm)
#: Layer name in a config -> the class that builds it (its keyword arguments are the keys).
LAYER_TYPES: dict[str, type[Layer]] = {cls.name: cls for cls in _CLASSES}
ACTIVATION_LAYERS = ("relu", "sigmoid", "tanh")


def layer_keys(name: str) -> dict[str, bool]:
    """The keys a layer table of this type accepts -> whether each is required."""
    if name in ACTIVATION_LAYERS:
        return {}
    params = list(inspect.signature(LAYER_TYPES[name].__init__).parameters.values())[1:]
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {p.name: p.default is inspect.Parameter.empty for p in named}


def layer_problem(spec: Any) -> str | None:
    """What is wrong with one layer table, or ``None``."""
    if not isinstance(spec, dict):
        return f'must be a table such as {{layer = "relu"}}, found {spec!r}'
    name = spec.get("layer")
    known = sorted([*LAYER_TYPES, *ACTIVATION_LAYERS])
    if name not in known:
        return f"layer must be one of {known}, found {name!r}"
    keys = layer_keys(name)
    if unknown := sorted(set(spec) - {"layer", *keys}):
        return f"({name}) unknown key(s) {unknown}; {name} accepts {sorted(keys) or 'none'}"
    if missing := sorted(k for k, required in keys.items() if required and k not in spec):
        return f"({name}) needs {missing}"
    try:
        build_layer(spec)
    except (ValueError, TypeError) as e:
        return f"({name}) {e}"
    return None


def build_layer(spec: dict[str, Any]) -> Layer:
    """One layer from its table (unchecked: see :func:`layer_problem`)."""
    name = spec["layer"]
    if name in ACTIVATION_LAYERS:
        return Activation(getattr(activations, name))
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "layer"}
    return LAYER_TYPES[name](**kwargs)


def build_layers(specs: Sequence[dict[str, Any]], where: str = "layers") -> list[Layer]:
    """The layers of a list of tables; a DataError names the first bad one and why."""
    for i, spec in enumerate(specs):
        if problem := layer_problem(spec):
            raise DataError(f"{where}[{i}] {problem}")
    return [build_layer(spec) for spec in specs]
