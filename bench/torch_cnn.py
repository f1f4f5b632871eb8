"""An optional yardstick: the same network in PyTorch on the CPU, timed per epoch.

PyTorch is never a dependency of ``nn``: this module imports it inside its functions, and
:func:`torch_available` tells a caller (``bench/mnist_cnn.py``) whether the comparison can
run at all. A network is described as ``nn`` describes it, a list of layer dicts::

    [{"layer": "conv2d", "channels": 32, "kernel": 3, "padding": 1}, {"layer": "relu"},
     {"layer": "max_pool2d", "window": 2}, {"layer": "flatten"},
     {"layer": "dense", "units": 10}]

Layers: ``conv2d`` (channels, kernel, stride, padding, dilation), ``max_pool2d`` and
``avg_pool2d`` (window, stride = window), ``relu`` (or ``{"layer": "activation", "fn":
"relu"}``), ``flatten``, ``dense`` (units), ``dropout`` (rate), ``batch_norm`` (momentum 0.1,
eps 1e-5; 2-d after a conv, 1-d after a dense). Weights start He-normal (fan_in = C*R*S) or
as a layer's ``init`` says, biases at zero, as in ``nn``. Training matches ``nn.train``:
float32, pixels / 255, a random shift of each image by up to ``shift`` pixels.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

INITS = {"he_normal": "kaiming_normal_", "he_uniform": "kaiming_uniform_",
         "glorot_normal": "xavier_normal_", "glorot_uniform": "xavier_uniform_"}  # fmt: skip


def torch_available() -> bool:
    """Whether PyTorch can be imported (it is optional: ``nn`` never needs it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build_torch(layers: list[dict[str, Any]], in_shape: tuple[int, ...] = (1, 28, 28)) -> Any:
    """The ``torch.nn.Sequential`` equivalent of ``layers`` for inputs ``(N, *in_shape)``."""
    import torch
    from torch import nn

    mods: list[Any] = []
    x = torch.zeros(2, *in_shape)  # a dummy batch: each layer's input shape is x.shape[1:]
    for spec in layers:
        kind = spec["layer"]
        if kind == "activation":
            kind = spec["fn"]
        if kind == "conv2d":
            mod: Any = nn.Conv2d(x.shape[1], spec["channels"], spec["kernel"],
                                 stride=spec.get("stride", 1), padding=spec.get("padding", 0),
                                 dilation=spec.get("dilation", 1))  # fmt: skip
        elif kind == "dense":
            mod = nn.Linear(x.shape[-1], spec["units"])
        elif kind in ("max_pool2d", "avg_pool2d"):
            pool = nn.MaxPool2d if kind == "max_pool2d" else nn.AvgPool2d
            mod = pool(spec["window"], stride=spec.get("stride") or spec["window"])
        elif kind == "relu":
            mod = nn.ReLU()
        elif kind == "flatten":
            mod = nn.Flatten()
        elif kind == "columns":  # (N, C, H, W) -> (N, W, C*H), as nn.reshape.columns
            mod = _Columns()
        elif kind == "dropout":
            mod = nn.Dropout(spec["rate"])
        elif kind == "batch_norm":
            norm = nn.BatchNorm2d if x.ndim == 4 else nn.BatchNorm1d
            mod = norm(x.shape[1], eps=spec.get("eps", 1e-5), momentum=spec.get("momentum", 0.1))
        else:
            raise ValueError(f"build_torch: unknown layer {kind!r}")
        if kind in ("conv2d", "dense"):
            init = spec.get("init", "he_normal")
            relu = {"nonlinearity": "relu"} if init.startswith("he") else {}  # std sqrt(2/fan_in)
            getattr(nn.init, INITS[init])(mod.weight, **relu)
            nn.init.zeros_(mod.bias)
        mods.append(mod)
        x = mod(x)
    return nn.Sequential(*mods)


def _Columns() -> Any:  # a module class, made when torch is importable
    from torch import nn

    class Columns(nn.Module):  # type: ignore[misc]
        def forward(self, x: Any) -> Any:
            n, c, h, w = x.shape
            return x.permute(0, 3, 1, 2).reshape(n, w, c * h)

    return Columns()


def make_torch_optimizer(model: Any, name: str, lr: float, weight_decay: float = 0.0) -> Any:
    """``nn``'s optimizers in PyTorch: coupled L2 on weights only (ndim >= 2), not biases."""
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=1e-8)
    if name in ("sgd", "momentum", "nesterov"):
        beta = 0.0 if name == "sgd" else 0.9
        return torch.optim.SGD(groups, lr=lr, momentum=beta, nesterov=name == "nesterov")
    raise ValueError(f"make_torch_optimizer: unknown optimizer {name!r}")


def torch_epoch_time(
    layers: list[dict[str, Any]],
    x_uint8: np.ndarray,
    y: np.ndarray,
    *,
    batch: int = 128,
    threads: int,
    optimizer: str = "adam",
    lr: float,
    epochs_to_time: int = 1,
    shift: int = 2,
    seed: int = 0,
) -> list[float]:
    """Seconds of each of ``epochs_to_time`` training epochs over ``x_uint8`` (N, H, W).

    Runs on ``threads`` intra-op threads (restored afterwards). Each epoch shuffles, shifts
    each image by up to ``shift`` pixels (NumPy, as ``nn.train``), and takes one optimizer
    step per batch of cross-entropy; the time covers all of it.
    """
    import torch

    from nn.augment import random_shift

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = build_torch(layers, (1, *x_uint8.shape[1:])).train()
        opt = make_torch_optimizer(model, optimizer, lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        times = []
        for _ in range(epochs_to_time):
            began = time.perf_counter()
            order = rng.permutation(len(x_uint8))
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                xb = x_uint8[idx].astype(np.float32) / np.float32(255)  # (B, H, W)
                if shift:
                    xb = random_shift(xb, rng, shift)
                out = model(torch.from_numpy(xb).unsqueeze(1))  # (B, 1, H, W) -> (B, 10)
                loss = loss_fn(out, labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - began)
        return times
    finally:
        torch.set_num_threads(before)
