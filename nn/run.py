"""Run folders: what ``python -m nn train`` writes and ``evaluate`` / ``predict`` read.

A run folder holds everything needed to understand and reuse a training run, none of it
pickled, each file written atomically::

    config.toml            the configuration used (readable; `--config` accepts it back)
    checkpoint.json, checkpoint-<hash>.npz   the latest training state, after every epoch
                           (for --resume; see nn.checkpoint)
    model/checkpoint.*     the trained weights (the best epoch's, if stopped early)
    metrics.json           history per epoch, test accuracy, per-class accuracy, confusion
    loss.png, accuracy.png, confusion.png    figures (when matplotlib is installed)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from nn.activations import softmax
from nn.atomic import create_bytes_exclusive, write_text_atomic
from nn.checkpoint import load_checkpoint, save_checkpoint
from nn.config import Config
from nn.datasets import load_dataset
from nn.errors import DataError
from nn.inputs import check_scored
from nn.layers import Params, State
from nn.metrics import accuracy, confusion_matrix, per_class_accuracy
from nn.model import Sequential
from nn.op import Array
from nn.plots import save_figures
from nn.png import read_png
from nn.train import (
    Progress,
    build_model,
    images_to_inputs,
    mean_loss,
    split_state,
    train,
)

Log = Callable[[str], None]


def train_run(
    cfg: Config,
    run_dir: str | Path,
    *,
    data_dir: str | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: Progress | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Train on MNIST into ``run_dir``; return the metrics written to ``metrics.json``."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir) if resume else cfg.check()  # bad values fail before any download
    model = build_model(cfg)
    if not resume and run_dir.exists() and not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} is a file, not a folder; choose another --out")
    if not resume:
        try:  # claim the folder: of two runs started into it, exactly one gets it
            create_bytes_exclusive(run_dir / "config.toml", cfg.to_toml().encode("utf-8"))
        except FileExistsError:
            raise DataError(
                f"run folder {run_dir} already holds a run; pass --resume to continue it or "
                f"choose another --out"
            ) from None
    began = time.perf_counter()
    data = load_dataset(cfg, data_dir, log=log)
    log(f"data: {data.source}")
    log(model.summary())
    result = train(
        cfg, data.x_train, data.y_train, run_dir=run_dir, resume=resume,
        stop_after=stop_after, progress=progress,
    )  # fmt: skip
    meta = {"config": cfg.to_dict(), "model": model.config(), "epochs": len(result.history)}
    arrays = result.params | result.state  # batch norm's running statistics go with the weights
    save_checkpoint(run_dir / "model", params=arrays, opt_state={}, meta=meta)
    test = score_set(cfg, model, result.params, data.x_test, data.y_test, state=result.state)
    metrics = {
        "test": test,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "finished": len(result.history) == cfg.train.epochs or result.stopped_early,
        "seconds": time.perf_counter() - began,
        "data_source": data.source,
    }
    # allow_nan=False: metrics.json stays strict JSON (an empty class's accuracy is null)
    write_text_atomic(
        run_dir / "metrics.json", json.dumps(metrics, indent=1, allow_nan=False) + "\n"
    )
    confusion = np.array(test["confusion"]) if "confusion" in test else None
    save_figures(run_dir, result.history, confusion, log=log)
    return metrics


def score_set(cfg: Config, model: Sequential, params: Params, images: Array, labels: Array, *,
              state: State | None = None) -> dict[str, Any]:  # fmt: skip
    """:func:`score` for digits; :func:`nn.reading.score_strings` for digit strings."""
    if cfg.data.name == "digit_strings":
        from nn.reading import score_strings

        return score_strings(model, params, images, labels, state=state)
    return score(model, params, images, labels, state=state)


def score(
    model: Sequential,
    params: Params,
    images: Array,
    labels: Array,
    *,
    state: State | None = None,
) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix on a labelled set."""
    check_scored(images, labels)
    out = model.predict(params, images_to_inputs(images, model.input_shape), state=state)
    predicted = out.argmax(axis=1)
    k = model.classes
    per_class = per_class_accuracy(labels, predicted, k)
    return {
        "images": len(labels),
        "loss": mean_loss(model, out, labels),
        "accuracy": accuracy(labels, predicted),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion": confusion_matrix(labels, predicted, k).tolist(),
    }


def read_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.toml"
    if not path.exists():
        raise DataError(f"{run_dir} is not a run folder: it has no config.toml")
    return Config.load(path)


class Trained(NamedTuple):
    """A run folder's trained model, ready for ``model.predict(params, x, state=state)``."""

    cfg: Config
    model: Sequential
    params: Params
    state: State  # running statistics (batch norm); empty for most models


def load_model(run_dir: str | Path) -> Trained:
    """The config, the model, the trained weights and the state of a run folder."""
    cfg = read_config(run_dir)
    model = build_model(cfg)
    if not (Path(run_dir) / "model" / "checkpoint.json").exists():
        raise DataError(
            f"{run_dir} has no trained model yet (model/checkpoint.json); it is written when "
            f"training ends: finish it with `python -m nn train --resume {run_dir}`"
        )
    arrays, _, meta = load_checkpoint(Path(run_dir) / "model")
    if differences := cfg.differences(Config.from_dict(meta["config"], f"{run_dir}/model")):
        raise DataError(
            f"{run_dir}: config.toml is not the config the model was trained with "
            f"(config.toml vs model: {'; '.join(differences)})"
        )
    expected = model.init(0) | model.init_state()
    for name, value in expected.items():
        if name not in arrays or arrays[name].shape != value.shape:
            got = arrays[name].shape if name in arrays else "missing"
            raise DataError(
                f"{run_dir}/model: parameter {name} should be {value.shape} for the model in "
                f"config.toml, found {got}"
            )
    params, state = split_state(model, arrays)
    return Trained(cfg, model, params, state)


def evaluate_run(run_dir: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """Score a run's trained model on its test set: the 10000 MNIST test images, or the test
    strings of its ``[data]``."""
    cfg, model, params, state = load_model(run_dir)
    data = load_dataset(cfg, data_dir)
    return score_set(cfg, model, params, data.x_test, data.y_test, state=state)


def read_images(path: str | Path) -> Array:
    """uint8 images (N, 28, 28) from a .png (one image) or a .npy file ((28, 28) or (N, 28, 28)).

    A .npy of floats must hold values in [0, 1]. Images are expected as MNIST's: a light
    digit on a dark background; a picture whose border is mostly light (a dark digit on
    white paper) is inverted, and the caller is told so.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        images = read_picture(path)[None]  # (1, H, W)
    elif path.suffix.lower() == ".npy":
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable .npy file ({e})") from e
        if images.ndim == 2:
            images = images[None]  # (1, H, W)
        if images.dtype.kind == "f":
            if not np.all(np.isfinite(images)):
                raise DataError(f"{path}: float pixels must be finite, found NaN or infinity")
            if images.size and (images.min() < 0 or images.max() > 1):
                raise DataError(f"{path}: float pixels must lie in [0, 1], found "
                                f"{images.min():.3g}..{images.max():.3g}")  # fmt: skip
            images = np.rint(images * 255).astype(np.uint8)
        elif images.dtype != np.uint8:
            raise DataError(
                f"{path}: pixels must be uint8 or float in [0, 1], found {images.dtype}"
            )
    else:
        raise DataError(f"{path}: expected a .png or .npy file, found suffix {path.suffix!r}")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{path}: images must be 28x28 pixels, found shape {images.shape}")
    if not len(images):
        raise DataError(f"{path}: holds no images, found shape {images.shape}")
    return images


def read_picture(path: str | Path) -> Array:
    """A .png file as one gray uint8 image (H, W) of any size; ink drawn on transparency is
    composed over black, or over white when it would be invisible over black."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DataError(f"{path}: expected a .png file, found suffix {path.suffix!r}")
    try:
        image = read_png(path)  # (H, W)
        if np.ptp(image) < 32:  # nothing visible over black: dark ink on transparency?
            image = read_png(path, background=255)
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from e
    return image


def light_background(images: Array) -> Array:
    """Per image: is the 1-pixel border mostly light (mean above 127)?"""
    border = np.concatenate(
        [images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1
    )  # (N, 108)
    return np.asarray(border.mean(axis=1) > 127)


def predict_files(run_dir: str | Path, files: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Classify each image of each file; one dict per image with the digit and probabilities."""
    cfg, model, params, state = load_model(run_dir)
    if cfg.data.name != "mnist":  # its inputs are (1, height, width) canvases of strings
        raise DataError(f"{run_dir} reads whole numbers ([data] name = {cfg.data.name!r}); "
                        f"use `python -m nn read {run_dir} IMAGE.png`")  # fmt: skip
    results = []
    for f in files:
        images = read_images(f)
        inverted = light_background(images)
        images = np.where(inverted[:, None, None], 255 - images, images).astype(np.uint8)
        out = model.predict(params, images_to_inputs(images, model.input_shape), state=state)
        logits = model.loss_name == "softmax_cross_entropy"
        probs = softmax(out.astype(np.float64))[0] if logits else out
        for i, p in enumerate(probs):
            results.append({"file": str(f), "index": i, "digit": int(np.argmax(p)),
                            "kind": "probability" if logits else "output",
                            "probabilities": [float(v) for v in p],
                            "inverted": bool(inverted[i]),
                            "blank": bool(np.ptp(images[i]) < 32)})  # fmt: skip
    return results
