"""Reading whole numbers: score a string model on a test set, and read a number from an image.

A model trained on digit strings (``[data] name = "digit_strings"``) gives, per image, either
columns of scores (``loss = "ctc"``), decoded by :mod:`nn.decode`, or one head per digit
(``softmax_cross_entropy`` of outputs (L, K)), read by the argmax of each head. Either way the
result is a string of digits with a confidence per digit, and it is scored whole: a number is
read right only if every digit is (:mod:`nn.string_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nn.activations import log_softmax
from nn.build import images_to_inputs
from nn.decode import Reading, beam_search, best_path
from nn.ensemble import VIEWS, product_of_experts, shifted
from nn.errors import DataError, ShapeError
from nn.inputs import as_integer, check_scored
from nn.layers import Params, State
from nn.model import Sequential
from nn.op import Array
from nn.run import Trained, light_background, read_picture
from nn.string_metrics import character_error_rate, label_strings, strings_match
from nn.train import mean_loss

DECODERS = ("best_path", "beam_search")
SHOWN_ERRORS = 20  # misread strings kept in metrics.json, as examples


def read_outputs(model: Sequential, out: Array, *, decoder: str = "best_path",
                 beam: int = 8) -> list[Reading]:  # fmt: skip
    """The strings that outputs (N, T, K) of a CTC model, or (N, L, K) of one with heads, read."""
    if decoder not in DECODERS:
        raise DataError(f"read_outputs: decoder must be one of {DECODERS}, received {decoder!r}")
    out = np.asarray(out)
    if out.dtype.kind != "f" or out.ndim != 3:
        raise ShapeError(
            f"read_outputs: out must be float outputs (N, T, K) of a CTC model or (N, L, K) of "
            f"one with heads, received {out.dtype} {out.shape}"
        )
    log_probs = log_softmax(out.astype(np.float64))[0]  # (N, T, K) or (N, L, K)
    if model.loss_name == "ctc":
        return best_path(log_probs) if decoder == "best_path" else beam_search(log_probs, beam=beam)
    digits = log_probs.argmax(axis=-1)  # (N, L): each head's digit
    best = np.take_along_axis(log_probs, digits[..., None], axis=-1)[..., 0]  # (N, L)
    return [Reading(d.astype(np.int64), np.exp(b), float(b.sum()))
            for d, b in zip(digits, best, strict=True)]  # fmt: skip


def score_strings(
    model: Sequential,
    params: Params,
    images: Array,
    labels: Array,
    *,
    state: State | None = None,
    decoder: str = "best_path",
    beam: int = 8,
) -> dict[str, Any]:
    """Whole-string accuracy, character error rate, accuracy by length, the mean loss and the
    first misread strings, on images (N, H, W) of strings labelled (N, L)."""
    check_scored(images, labels)
    out = model.predict(params, images_to_inputs(images, model.input_shape), state=state)
    readings = read_outputs(model, out, decoder=decoder, beam=beam)
    read = [r.labels for r in readings]
    right = strings_match(labels, read)  # (N,)
    truth = label_strings(labels)
    lengths = np.array([len(t) for t in truth])  # (N,)
    misread = np.flatnonzero(~right)[:SHOWN_ERRORS]
    return {
        "images": len(labels),
        "decoder": decoder if model.loss_name == "ctc" else "heads",
        "loss": mean_loss(model, out, labels),
        "accuracy": float(right.mean()),
        "character_error_rate": character_error_rate(labels, read),
        "accuracy_by_length": {
            int(n): float(right[lengths == n].mean()) for n in np.unique(lengths)
        },
        "errors": [
            {"index": int(i), "truth": "".join(map(str, truth[i])), "read": readings[i].text}
            for i in misread
        ],
    }


def read_number(trained: Any, path: str | Path, *, decoder: str = "beam_search", beam: int = 8,
                also: Sequence[Any] = (), views: Sequence[tuple[int, int]] = ((0, 0),),
                ) -> tuple[Reading, bool]:  # fmt: skip
    """The number in one image file, read by a run's model: ``(reading, inverted)``.

    The image is made to look like the training strings: gray, a light number on a dark
    background (a light background is inverted), then fitted into the model's canvas: scaled
    down if it is taller than the canvas, and padded with background to its size. With more
    runs (``also``) or views than the image itself, :func:`read_with_experts` reads it
    (``decoder`` and ``beam`` then do not apply).
    """
    _check_string_reader("read_number: trained", trained, where=str(path))
    for j, run in enumerate(also):
        _check_string_reader(f"read_number: also[{j}]", run, where=str(path))
    views = tuple((dy, dx) for dy, dx in views)  # lists from a caller read as tuples
    image = read_picture(path)  # (H, W) uint8
    inverted = bool(light_background(image[None])[0])
    image = 255 - image if inverted else image
    _, height, width = trained.model.input_shape
    canvas = fit_to_canvas(image, height, width, where=str(path))  # (height, width)
    if also or views != ((0, 0),):
        return read_with_experts([trained, *also], canvas[None], views=views)[0], inverted
    x = images_to_inputs(canvas[None], trained.model.input_shape)  # (1, 1, height, width)
    out = trained.model.predict(trained.params, x, state=trained.state)
    return read_outputs(trained.model, out, decoder=decoder, beam=beam)[0], inverted


def read_with_experts(runs: Sequence[Any], images: Array, *,
                      views: Sequence[tuple[int, int]] = VIEWS) -> list[Reading]:  # fmt: skip
    """Each run's model reads each view of ``images`` (N, H, W) uint8 (``views`` are the
    (dy, dx) of :func:`nn.ensemble.shifted`); :func:`nn.ensemble.product_of_experts` of
    these ``len(runs) * len(views)`` experts picks each string (spec/product_of_experts.md).
    Every run must read strings with CTC, on a canvas of the images' size."""
    if not runs or not views:
        raise DataError(f"read_with_experts: runs and views must not be empty, received "
                        f"{len(runs)} runs and {len(views)} views")  # fmt: skip
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        got = (
            f"{images.dtype} {images.shape}"
            if isinstance(images, np.ndarray)
            else type(images).__name__
        )
        raise DataError(f"read_with_experts: images must be gray uint8 pixels (N, H, W), "
                        f"received {got}")  # fmt: skip
    experts = []
    for j, run in enumerate(runs):
        who = f"read_with_experts: runs[{j}]"
        _check_string_reader(who, run, where=who)
        if run.model.loss_name != "ctc":
            raise DataError(f"{who} must read strings with CTC (columns), received a run "
                            f"with loss {run.model.loss_name!r}")  # fmt: skip
        if run.model.input_shape[1:] != images.shape[1:]:
            raise DataError(f"{who} must read images of the given size {images.shape[1:]}, "
                            f"received a run whose input is {run.model.input_shape}")  # fmt: skip
        x = images_to_inputs(images, run.model.input_shape)  # (N, 1, H, W)
        for dy, dx in views:
            out = run.model.predict(run.params, shifted(x, dy, dx), state=run.state)  # (N, T, K)
            experts.append(log_softmax(out.astype(np.float64))[0])
    return product_of_experts(experts)


def _check_string_reader(who: str, trained: Any, *, where: str) -> None:
    """A run's model (nn.run.load_model) trained on digit strings, or a named error; ``who``
    is the function and the argument, ``where`` what the other message starts with."""
    if not isinstance(trained, Trained):
        raise TypeError(
            f"{who} must be a run's model, nn.run.load_model(RUN), received "
            f"{type(trained).__name__}"
        )
    if trained.cfg.data.name != "digit_strings":  # an MLP's (784,) or a CNN's (N, 10): no string
        raise DataError(
            f"{where}: the run's model reads single digits ([data] name = "
            f"{trained.cfg.data.name!r}); read needs a run trained with [data] name = "
            f'"digit_strings" (for single digits use `python -m nn predict`)'
        )


#: Ink height a picture is scaled to: the median of the 7-digit test strings' (25 px: a
#: digit's 20 px and the vertical jitter between digits).
INK_HEIGHT = 25
INK = 32  # a pixel brighter than this (of 255) is ink, not background noise


def fit_to_canvas(image: Array, height: int, width: int, *, where: str = "image") -> Array:
    """``image`` (h, w) uint8, light ink on dark, made to look like a training string: cropped
    to its ink, scaled (smoothly, :func:`resize`) so the ink is ``INK_HEIGHT`` pixels tall, or
    less if it would not fit, and centred on a black (height, width) canvas."""
    _check_image("fit_to_canvas", image)
    if as_integer(height) is None or as_integer(width) is None or min(height, width) < 3:
        raise ValueError(
            f"fit_to_canvas: height and width must be integers >= 3 (the ink and a pixel of "
            f"margin on each side), received {height!r} and {width!r}"
        )
    ink = image > INK  # (h, w)
    if not ink.any():
        raise DataError(f"{where}: no ink found (no pixel brighter than {INK} of 255 after "
                        f"making the background dark)")  # fmt: skip
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # (ink h, ink w)
    h, w = crop.shape
    scale = min(min(INK_HEIGHT, height - 2) / h, (width - 2) / w)  # a pixel of margin
    h, w = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.zeros((height, width), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = resize(crop, h, w)
    return canvas


def resize(image: Array, h: int, w: int) -> Array:
    """``image`` (H, W) uint8 resampled to (h, w) by a separable linear (tent) filter whose
    width grows with the shrink factor, so shrinking averages rather than skips pixels."""
    _check_image("resize", image)
    if as_integer(h) is None or as_integer(w) is None or min(h, w) < 1:
        raise ValueError(f"resize: h and w must be integers >= 1, received {h!r} and {w!r}")
    rows, cols = _tent(h, image.shape[0]), _tent(w, image.shape[1])  # (h, H), (w, W)
    values = rows @ image.astype(np.float64) @ cols.T  # (h, w) convex combinations of 0..255
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def _tent(n_out: int, n_in: int) -> Array:
    """(n_out, n_in) weights, rows summing to 1: output pixel i is centred at input position
    (i + 1/2) n_in / n_out - 1/2, and weighs inputs by a tent of half-width max(1, n_in/n_out)."""
    step = n_in / n_out
    centres = (np.arange(n_out) + 0.5) * step - 0.5  # (n_out,)
    tent = 1 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / max(step, 1.0)
    weights = np.maximum(tent, 0)  # (n_out, n_in); every row has an input within 1 of its centre
    return np.asarray(weights / weights.sum(axis=1, keepdims=True))


def _check_image(who: str, image: Any) -> None:
    """A gray picture: uint8 (H, W) with at least one pixel."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        got = (
            f"{image.dtype} {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise DataError(f"{who}: image must be gray uint8 pixels (H, W), received {got}")
    if not image.size:
        raise DataError(f"{who}: image has no pixels, received shape {image.shape}")
