"""The trainer: it only loops, logs and saves (the math lives in verified parts).

One epoch: a seeded permutation of the training images, minibatches gathered into a buffer
allocated once, an optional random shift of each image, ``model.loss`` for the gradient,
the optimizer's pure update at the schedule's learning rate, then the validation loss and
accuracy. After each epoch the whole state (parameters, optimizer state, history, early
stopping counters) is checkpointed atomically.

**Resume is exact.** Every random draw of epoch ``e`` comes from a generator seeded with
``(seed, e)``, never from a generator carried across epochs, so a run stopped after epoch
``k`` and resumed from its checkpoint computes the same floating-point operations in the
same order as an uninterrupted run: the final weights are bitwise equal (tested in
``tests/test_train.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nn.architecture import build_layers
from nn.augment import random_shift
from nn.checkpoint import load_checkpoint, save_checkpoint
from nn.config import Config
from nn.errors import DataError, DivergenceError, ShapeError
from nn.layers import Params, State
from nn.model import Sequential, mlp
from nn.norm_layers import BatchNorm
from nn.op import Array
from nn.optim import Optimizer, make_optimizer
from nn.schedules import Constant, CosineDecay, StepDecay

Progress = Callable[[dict[str, Any]], None]
SHUFFLE, AUGMENT, DROPOUT = 1, 2, 3  # stream ids: each epoch's draws for each purpose apart


@dataclass
class Result:
    params: Params  # the weights to keep: the last epoch's, or the best one's if stopped early
    state: State = field(default_factory=dict)  # running statistics that go with params
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def images_to_inputs(images: Array, input_shape: tuple[int, ...] | None = None) -> Array:
    """uint8 images (N, 28, 28) -> float32 inputs in [0, 1], shaped ``(N, *input_shape)``:
    (N, 784) for an MLP (the default), (N, 1, 28, 28) for a CNN."""
    if images.dtype != np.uint8:
        raise DataError(f"images must be uint8 pixels 0..255, received dtype {images.dtype}")
    shape = input_shape or (int(np.prod(images.shape[1:])),)
    x = images.reshape(len(images), *shape)  # (N, 784) or (N, 1, 28, 28), even N = 0
    return x.astype(np.float32) / np.float32(255)


def build_model(cfg: Config, input_size: int = 784, classes: int = 10) -> Sequential:
    """The network a config describes: its ``layers`` on images (1, 28, 28), or an MLP of
    ``input_size`` inputs (``input_size`` applies to the MLP only)."""
    m = cfg.model
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


@dataclass
class EarlyStopping:
    """Early stopping on the validation loss: its whole state, so a checkpoint can hold it.

    ``patience = 0`` only tracks the best epoch; otherwise the run stops once ``patience``
    epochs in a row have not lowered the best validation loss, and keeps the best weights.
    """

    patience: int
    best_loss: float = np.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record an epoch's validation loss; return whether it is the best so far."""
        better = val_loss < self.best_loss
        if better:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.patience > 0 and self.bad_epochs >= self.patience
        return better

    def to_meta(self) -> dict[str, Any]:
        best = self.best_loss if np.isfinite(self.best_loss) else None  # JSON has no inf
        return {"best_val_loss": best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped_early": self.stopped}  # fmt: skip

    @classmethod
    def from_meta(cls, patience: int, meta: dict[str, Any]) -> EarlyStopping:
        best = np.inf if meta["best_val_loss"] is None else meta["best_val_loss"]
        return cls(patience, best, meta["best_epoch"], meta["bad_epochs"], meta["stopped_early"])


def train(
    cfg: Config,
    x_train: Array,
    y_train: Array,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: Progress | None = None,
) -> Result:
    """Train the config's model on uint8 images (N, 28, 28) and labels (N,).

    The last ``cfg.train.validation`` images are held out for validation. With ``run_dir``
    the state is checkpointed there after every epoch; ``resume=True`` continues from that
    checkpoint (a run that stopped early returns its result at once). ``stop_after=k`` ends
    after epoch ``k`` (as an interruption would).
    """
    t = cfg.train
    cfg.check()
    if stop_after is not None and stop_after < 1:
        raise DataError(f"stop_after must be an epoch >= 1, received {stop_after}")
    if len(x_train) != len(y_train):
        raise DataError(f"x_train has {len(x_train)} images but y_train {len(y_train)} labels")
    if not t.validation < len(x_train):
        raise DataError(
            f"[train] validation must be in 0..{len(x_train) - 1}, found {t.validation}"
        )
    if resume and run_dir is None:
        raise DataError("resume needs the run folder to resume from")
    n = len(x_train) - t.validation
    model, opt = build_model(cfg), build_optimizer(cfg)
    _check_batch_norm_batches(model, n, t.batch_size)
    x_val, y_val = images_to_inputs(x_train[n:], model.input_shape), y_train[n:]
    images = x_train[:n].astype(np.float32)  # (n, 28, 28), one copy
    images /= np.float32(255)
    labels = y_train[:n].astype(np.int64)
    steps_per_epoch = -(-n // t.batch_size)
    schedule = build_schedule(cfg, steps_per_epoch)

    params, stats = model.init(t.seed), model.init_state()
    state = opt.init(params)
    result, stopping = Result(params, stats), EarlyStopping(t.patience)
    best = params, stats
    # Interrupted before the first checkpoint: resuming is starting over, exactly.
    if resume and run_dir is not None and (Path(run_dir) / "checkpoint.json").exists():
        params, stats, state, result.history, stopping = _restore(run_dir, cfg, model)
        if t.patience and stopping.best_epoch:  # no epoch improved yet: no best/ was written
            best = split_state(model, load_checkpoint(Path(run_dir) / "best")[0])
        else:
            best = params, stats

    buffer = np.empty((t.batch_size, *images.shape[1:]), np.float32)  # allocated once
    for epoch in range(len(result.history), t.epochs):
        if stopping.stopped or (stop_after is not None and epoch >= stop_after):
            break
        began = time.perf_counter()
        order = epoch_order(t.seed, epoch, n)
        shifts = np.random.default_rng([t.seed, epoch, AUGMENT])
        masks = np.random.default_rng([t.seed, epoch, DROPOUT])
        seen, loss_sum, correct = 0, 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * t.batch_size : (step + 1) * t.batch_size]
            xb = np.take(images, idx, axis=0, out=buffer[: len(idx)])  # (B, 28, 28)
            if t.shift:
                xb = random_shift(xb, shifts, t.shift)
            yb = labels[idx]
            lr = schedule(epoch * steps_per_epoch + step)
            xb = xb.reshape(len(idx), *model.input_shape)  # (B, 784) or (B, 1, 28, 28)
            value, grads, out, stats = model.loss_and_outputs(
                params, (xb, yb), state=stats, train=True, rng=masks
            )
            if not np.isfinite(value):
                raise DivergenceError(
                    f"the training loss became {value} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {lr:.3g}); lower [optimizer] lr or check the data"
                )
            params, state = opt.update(params, grads, state, lr=lr)
            seen += len(idx)
            loss_sum += value * len(idx)
            correct += int(np.sum(out.argmax(axis=1) == yb))
            if progress:
                progress({"epoch": epoch + 1, "epochs": t.epochs, "step": step + 1,
                          "steps": steps_per_epoch, "loss": loss_sum / seen,
                          "accuracy": correct / seen,
                          "images_per_second": seen / (time.perf_counter() - began)})  # fmt: skip
        seconds = time.perf_counter() - began
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "lr": lr,
            "seconds": seconds,
            "images_per_second": seen / seconds,
        }
        if t.validation:
            record.update(evaluate_loss(model, params, x_val, y_val, state=stats))
            if stopping.update(epoch + 1, record["val_loss"]):
                best = params, stats
                if run_dir is not None and t.patience:
                    save_checkpoint(
                        Path(run_dir) / "best", params=params | stats, opt_state={}, meta={}
                    )
        result.history.append(record)
        if run_dir is not None:  # after "best": a checkpoint never points past a missing best
            meta = {"epoch": epoch + 1, "history": result.history, "config": cfg.to_dict(),
                    **stopping.to_meta()}  # fmt: skip
            save_checkpoint(run_dir, params=params | stats, opt_state=state, meta=meta)
        if progress:
            progress({"end_of_epoch": True, **record})
    result.stopped_early, result.best_epoch = stopping.stopped, stopping.best_epoch
    result.params, result.state = best if stopping.stopped else (params, stats)
    return result


def _check_batch_norm_batches(model: Sequential, n: int, batch_size: int) -> None:
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


def split_state(model: Sequential, arrays: Params) -> tuple[Params, State]:
    """Saved arrays -> (parameters, state): files keep both under their own names."""
    params = {k: v for k, v in arrays.items() if k not in model.state_names}
    return params, {k: arrays[k] for k in model.state_names if k in arrays}


def _restore(
    run_dir: str | Path, cfg: Config, model: Sequential
) -> tuple[Params, State, dict[str, Array], list[dict[str, Any]], EarlyStopping]:
    """The state saved after the last finished epoch, for the same config only."""
    arrays, state, meta = load_checkpoint(run_dir)
    if differences := cfg.differences(Config.from_dict(meta["config"], f"{run_dir}")):
        raise DataError(
            f"{run_dir}: the checkpoint was made with another config (config.toml vs "
            f"checkpoint: {'; '.join(differences)}); resume it with its own config"
        )
    params, stats = split_state(model, arrays)
    stopping = EarlyStopping.from_meta(cfg.train.patience, meta)
    return params, stats, state, meta["history"], stopping


def epoch_order(seed: int, epoch: int, n: int) -> Array:
    """The order of the ``n`` training images in ``epoch``: a fresh permutation each epoch,
    drawn from ``(seed, epoch)`` alone so a resumed run draws the same one."""
    return np.random.default_rng([seed, epoch, SHUFFLE]).permutation(n)


def evaluate_loss(
    model: Sequential, params: Params, x: Array, y: Array, *, state: State | None = None
) -> dict[str, float]:
    """Validation loss and accuracy over a whole dataset, computed in batches."""
    out = model.predict(params, x, state=state)  # (N, K)
    return {
        "val_loss": mean_loss(model, out, y),
        "val_accuracy": float(np.mean(out.argmax(1) == y)),
    }


def mean_loss(model: Sequential, out: Array, y: Array, batch_size: int = 1000) -> float:
    """The model's loss averaged over all N outputs (N, K), in batches of ``batch_size``."""
    total = 0.0
    for i in range(0, len(out), batch_size):
        value, _ = model.loss_value(out[i : i + batch_size], y[i : i + batch_size])
        total += float(value) * len(out[i : i + batch_size])
    return total / len(out)
