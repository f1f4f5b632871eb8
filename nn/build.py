"""What a config describes, built: the network, the optimizer, the learning-rate schedule, and
the network's inputs from uint8 images. The trainer (:mod:`nn.train`) and the doctor
(:mod:`nn.doctor`) both build from here, so they see the same network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nn.architecture import build_layers
from nn.config import Config
from nn.errors import DataError, ShapeError
from nn.model import Sequential, mlp
from nn.norm_layers import BatchNorm
from nn.op import Array
from nn.optim import Optimizer, make_optimizer
from nn.schedules import Constant, CosineDecay, StepDecay


def images_to_inputs(images: Array, input_shape: tuple[int, ...] | None = None) -> Array:
    """uint8 images (N, 28, 28) -> float32 inputs in [0, 1], shaped ``(N, *input_shape)``:
    (N, 784) for an MLP (the default), (N, 1, 28, 28) for a CNN."""
    if images.dtype != np.uint8:
        raise DataError(f"images must be uint8 pixels 0..255, received dtype {images.dtype}")
    shape = input_shape or (int(np.prod(images.shape[1:])),)
    x = images.reshape(len(images), *shape)  # (N, 784) or (N, 1, 28, 28), even N = 0
    return x.astype(np.float32) / np.float32(255)


def build_model(cfg: Config, input_size: int = 784, classes: int = 10) -> Sequential:
    """The network a config describes: its ``layers`` on images (1, 28, 28), or (1, height,
    width) for digit strings, or an MLP of ``input_size`` inputs (``input_size`` applies to
    the MLP only)."""
    m, d = cfg.model, cfg.data
    if m.layers and d.name == "digit_strings":
        layers = build_layers(m.layers, "[model] layers")
        model = Sequential(layers, input_shape=(1, d.height, d.width), loss=m.loss)
        check_string_outputs(cfg, model.shapes[-1], classes)
        return model
    if m.layers:
        layers = build_layers(m.layers, "[model] layers")
        model = Sequential(layers, input_shape=(1, 28, 28), loss=m.loss)
        if model.shapes[-1] != (classes,):
            raise ShapeError(
                f"[model] layers: the last layer must give {classes} outputs (one per class), "
                f"but the network's output shape is {model.shapes[-1]}"
            )
        return model
    out = None if m.output_activation == "none" else m.output_activation
    init = None if m.init == "auto" else m.init
    sizes = [input_size, *m.hidden, classes]
    return mlp(sizes, activation=m.activation, output_activation=out, loss=m.loss, init=init)


def check_string_outputs(cfg: Config, out: tuple[int, ...], classes: int = 10) -> None:
    """A network that reads strings gives, per example, either T columns of K + 1 scores
    (``ctc``: the digits and the blank, T long enough for any string) or one head of K scores
    per digit (``softmax_cross_entropy``, strings of one fixed length)."""
    d, where = cfg.data, "[model] layers: for digit strings"
    if cfg.model.loss == "ctc":
        need = 2 * d.max_length - 1  # a string of equal digits needs a blank between each pair
        if len(out) != 2 or out[1] != classes + 1 or out[0] < need:
            raise ShapeError(
                f"{where} and loss ctc the network's output must be (T, {classes + 1}): T >= "
                f"{need} columns (2 max_length - 1), {classes} digits and the blank; it is {out}"
            )
    elif cfg.model.loss == "softmax_cross_entropy":
        if out != (d.max_length, classes) or not d.min_length == d.max_length == d.test_length:
            raise ShapeError(
                f"{where} and softmax_cross_entropy the network must have one head per digit, "
                f"output (max_length, {classes}) = ({d.max_length}, {classes}), for strings of "
                f"one length (min_length = max_length = test_length); it is {out} for "
                f"training lengths {d.min_length}..{d.max_length} and test_length "
                f"{d.test_length} (loss ctc reads strings of any length)"
            )
    else:
        raise ShapeError(f"{where} the loss must be ctc or softmax_cross_entropy, found "
                         f"{cfg.model.loss!r}")  # fmt: skip


def build_optimizer(cfg: Config) -> Optimizer:
    """The update rule of ``[optimizer]`` (its ``lr`` goes to the schedule, not here)."""
    o = cfg.optimizer
    hyper: dict[str, Any] = {"weight_decay": o.weight_decay}
    if o.name in ("momentum", "nesterov"):
        hyper["beta"] = o.momentum
    elif o.name == "adam":
        hyper.update(beta1=o.beta1, beta2=o.beta2, eps=o.eps)
    return make_optimizer(o.name, **hyper)


def build_schedule(cfg: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate as a function of the global step; epochs become steps here."""
    s, lr = cfg.schedule, cfg.optimizer.lr
    if s.name == "constant":
        return Constant(lr)
    if s.name == "step":
        return StepDecay(lr, every=s.every_epochs * steps_per_epoch, gamma=s.gamma)
    if s.name == "cosine":
        return CosineDecay(lr, total=cfg.train.epochs * steps_per_epoch, final=s.final_lr)
    raise DataError(f"[schedule] name must be constant, step or cosine, found {s.name!r}")


def check_batch_norm_batches(model: Sequential, n: int, batch_size: int) -> None:
    """Batch norm needs 2 values per channel in every batch; say so before training starts
    rather than in the last batch of the first epoch."""
    last = n % batch_size or batch_size  # the smallest batch of an epoch
    for name, layer, shape in zip(model.names, model.layers, model.shapes, strict=False):
        per_channel = min(last, batch_size) * int(np.prod(shape[1:]))  # N H W, or N for (D,)
        if isinstance(layer, BatchNorm) and per_channel < 2:
            raise DataError(
                f"[train] batch_size {batch_size} leaves a last batch of {last} of the {n} "
                f"training images, and {name} (batch norm of {shape}) needs at least 2 values "
                f"per channel; change batch_size or validation"
            )
