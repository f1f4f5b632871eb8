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

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nn.augment import random_affine, random_shift
from nn.build import build_model as build_model  # re-exported: nn.train.build_model
from nn.build import build_optimizer as build_optimizer
from nn.build import build_schedule as build_schedule
from nn.build import check_batch_norm_batches
from nn.build import images_to_inputs as images_to_inputs
from nn.checkpoint import load_checkpoint, save_checkpoint
from nn.config import Config
from nn.errors import DataError, DivergenceError, HealthWarning
from nn.guard import Guard
from nn.health import RATIO_EVERY, EpochHealth, health_warnings, layer_names
from nn.inputs import as_integer, check_training_data
from nn.layers import Params, State
from nn.model import Sequential
from nn.op import Array
from nn.step import train_step
from nn.stopping import EarlyStopping

Progress = Callable[[dict[str, Any]], None]
MAX_EVENTS = 10  # non-finite diagnoses kept in an epoch's record (the count is complete)
SHUFFLE, AUGMENT, DROPOUT = 1, 2, 3  # stream ids: each epoch's draws for each purpose apart


@dataclass
class Result:
    params: Params  # the weights to keep: the last epoch's, or the best one's if stopped early
    state: State = field(default_factory=dict)  # running statistics that go with params
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def train(
    cfg: Config,
    x_train: Array,
    y_train: Array,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: Progress | None = None,
    model: Sequential | None = None,
    guarded: bool = True,
) -> Result:
    """Train the config's model on uint8 images (N, H, W) and labels: digits (N,), or strings
    (N, L) padded with -1 for ``[data] name = "digit_strings"``.

    The last ``cfg.train.validation`` images are held out for validation. With ``run_dir``
    the state is checkpointed there after every epoch; ``resume=True`` continues from that
    checkpoint (a run that stopped early returns its result at once). ``stop_after=k`` ends
    after epoch ``k`` (as an interruption would).

    ``model`` replaces the config's ``[model]`` by a network built in Python (a user's own
    layers or loss); it must take the images, (1, H, W) or H W inputs, and give outputs the
    labels can score: 10 for digits, or those of ``[model] loss`` for strings.

    Every step is guarded (:mod:`nn.guard`): a NaN or inf in the loss or a gradient is
    located (layer, op, statistics) and handled by ``[train] nonfinite``, and each epoch's
    record gets the per-layer gradient health of :mod:`nn.health`, whose warnings are also
    issued as :class:`~nn.errors.HealthWarning`. ``guarded=False`` only checks the loss and
    records no health: it exists to measure the guard's cost (``bench/guard_cost.py``).
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"train: cfg must be an nn.config.Config, received {type(cfg).__name__}")
    t = cfg.train
    cfg.check()
    if stop_after is not None and (as_integer(stop_after) is None or stop_after < 1):
        raise DataError(f"stop_after must be an epoch >= 1, received {stop_after!r}")
    if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"train: run_dir must be a folder path, received {type(run_dir).__name__}")
    if resume and run_dir is None:
        raise DataError("resume needs the run folder to resume from")
    model, opt = model or build_model(cfg), build_optimizer(cfg)
    check_training_data(cfg.data.name == "digit_strings", model, x_train, y_train)
    if not len(x_train):
        raise DataError(
            f"x_train holds no images (N = 0); training needs at least [train] validation + 1 "
            f"= {t.validation + 1}"
        )
    if not t.validation < len(x_train):
        raise DataError(
            f"[train] validation must be in 0..{len(x_train) - 1}, found {t.validation}"
        )
    n = len(x_train) - t.validation
    check_batch_norm_batches(model, n, t.batch_size)
    x_val, y_val = images_to_inputs(x_train[n:], model.input_shape), y_train[n:]
    images = x_train[:n]  # uint8 (n, H, W): converted to floats a batch at a time, so a
    labels = y_train[:n].astype(np.int64)  # large set of strings stays 1 byte a pixel
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

    raw = np.empty((t.batch_size, *images.shape[1:]), np.uint8)  # both allocated once
    buffer = np.empty((t.batch_size, *images.shape[1:]), np.float32)
    last = result.history[-1] if result.history else {}
    guard = Guard(t.nonfinite, lr_scale=last.get("lr_scale", 1.0),
                  rollbacks=sum(r.get("rollbacks", 0) for r in result.history))  # fmt: skip
    clip = cfg.optimizer.clip_norm
    for epoch in range(len(result.history), t.epochs):
        if stopping.stopped or (stop_after is not None and epoch >= stop_after):
            break
        began = time.perf_counter()
        order = epoch_order(t.seed, epoch, n)
        shifts = np.random.default_rng([t.seed, epoch, AUGMENT])
        masks = np.random.default_rng([t.seed, epoch, DROPOUT])
        seen, loss_sum, correct, rollbacks = 0, 0.0, 0, guard.rollbacks
        health, clipped = EpochHealth(layer_names(params)), 0
        guard.start_epoch(params, state, stats)
        for step in range(steps_per_epoch):
            idx = order[step * t.batch_size : (step + 1) * t.batch_size]
            xb = np.take(images, idx, axis=0, out=raw[: len(idx)])  # (B, H, W) uint8
            # float32(pixel) / 255: the same numbers as converting the whole set at once
            xb = np.divide(xb, np.float32(255), out=buffer[: len(idx)], dtype=np.float32)
            if t.shift:
                xb = random_shift(xb, shifts, t.shift)
            if t.slant or t.zoom:  # drawn after the shifts, from the same generator
                xb = random_affine(xb, shifts, t.slant, t.zoom)
            yb = labels[idx]
            lr = schedule(epoch * steps_per_epoch + step) * guard.lr_scale
            xb = xb.reshape(len(idx), *model.input_shape)  # (B, 784) or (B, 1, 28, 28)
            if guarded:
                where = (f"step {epoch * steps_per_epoch + step + 1} (epoch {epoch + 1}, "
                         f"batch {step + 1} of {steps_per_epoch}, lr {lr:.3g})")  # fmt: skip
                done = train_step(
                    model, opt, params, state, stats, (xb, yb), lr=lr, rng=masks, guard=guard,
                    health=health, clip=clip, ratio=step % RATIO_EVERY == 0, where=where,
                )  # fmt: skip
                # After a rollback the epoch's figures go on: they average every accepted
                # step, those the rollback undid included (restarting them could leave an
                # epoch whose last batch rolled back with no figures at all).
                params, state, stats = done.params, done.opt_state, done.stats
                if not done.accepted:
                    continue
                value, out, clipped = done.value, done.out, clipped + done.clipped
            else:  # only to measure the guard's cost (bench/guard_cost.py)
                value, grads, out, stats = model.loss_and_outputs(
                    params, (xb, yb), state=stats, train=True, rng=masks
                )
                if not np.isfinite(value):
                    raise DivergenceError(f"the training loss became {value} at step {step + 1}")
                params, state = opt.update(params, grads, state, lr=lr)
            seen += len(idx)
            loss_sum += value * len(idx)
            correct += int(model.correct(out, yb).sum())
            if progress:
                progress({"epoch": epoch + 1, "epochs": t.epochs, "step": step + 1,
                          "steps": steps_per_epoch, "loss": loss_sum / max(seen, 1),
                          "accuracy": correct / max(seen, 1),
                          "images_per_second": seen / (time.perf_counter() - began)})  # fmt: skip
        if not seen:
            raise DivergenceError(
                f"epoch {epoch + 1}: no batch gave a finite loss and gradient; first: "
                f"{guard.events[0]}",
                None,
            )
        seconds = time.perf_counter() - began
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "lr": lr,
            "seconds": seconds,
            "images_per_second": seen / seconds,
            **health.summary(),
            "clipped_steps": clipped,
            "nonfinite_steps": len(guard.events),
            "rollbacks": guard.rollbacks - rollbacks,
            "lr_scale": guard.lr_scale,
            "nonfinite": guard.events[:MAX_EVENTS],
        }
        record["warnings"] = health_warnings(epoch + 1, record, last or None)
        for text in record["warnings"]:
            warnings.warn(text, HealthWarning, stacklevel=2)
        if t.validation:
            record.update(evaluate_loss(model, params, x_val, y_val, state=stats))
            if stopping.update(epoch + 1, record["val_loss"]):
                best = params, stats
                if run_dir is not None and t.patience:
                    save_checkpoint(
                        Path(run_dir) / "best", params=params | stats, opt_state={}, meta={}
                    )
        result.history.append(record)
        last = record
        if run_dir is not None:  # after "best": a checkpoint never points past a missing best
            meta = {"epoch": epoch + 1, "history": result.history, "config": cfg.to_dict(),
                    **stopping.to_meta()}  # fmt: skip
            save_checkpoint(run_dir, params=params | stats, opt_state=state, meta=meta)
        if progress:
            progress({"end_of_epoch": True, "nonfinite_policy": t.nonfinite, **record})
    result.stopped_early, result.best_epoch = stopping.stopped, stopping.best_epoch
    result.params, result.state = best if stopping.stopped else (params, stats)
    return result


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
    """Validation loss and accuracy (whole strings, for strings) over a dataset, in batches."""
    out = model.predict(params, x, state=state)  # (N, K)
    return {
        "val_loss": mean_loss(model, out, y),
        "val_accuracy": float(np.mean(model.correct(out, y))),
    }


def mean_loss(model: Sequential, out: Array, y: Array, batch_size: int = 1000) -> float:
    """The model's loss averaged over all N outputs (N, ...), in batches of ``batch_size``."""
    if not len(out):
        raise DataError("mean_loss: out holds no outputs (N = 0): a mean over nothing is undefined")
    total = 0.0
    for i in range(0, len(out), batch_size):
        value, _ = model.loss_value(out[i : i + batch_size], y[i : i + batch_size])
        total += float(value) * len(out[i : i + batch_size])
    return total / len(out)
