"""Pictures for the tutorial "Reading a whole number": the strings, a CTC alignment, the errors.

    python tools/digits7_figures.py --run RUN [--out docs/_static] [--limit N] [--index I]
    python tools/digits7_figures.py --strings-only [--config digits7] [--out docs/_static]

Writes, into ``--out`` (default ``docs/_static``):

* ``digit-strings.png``: 8 training strings (one of each length 1..7, then one more) and 4
  test strings, made by the config's own generator parameters (``nn.datasets.string_params``),
  each with its label above it. ``--strings-only`` writes only this one and needs no run;
  the config is ``--config`` (a shipped name or a file), else the run's, else ``digits7``.
* ``ctc-alignment.png`` (a CTC run only): one test string, the per-column probabilities of
  the 11 classes with the forced alignment of the true string drawn on them, and the CTC
  posteriors (``nn.ctc.ctc_alignment``) over the extended label, on a shared axis of columns.
* ``reading-errors.png``: the first 12 misread test strings, truth and reading, with each
  read digit's confidence under the image.

and prints a summary of the errors: substitutions, deletions and insertions from an
edit-distance alignment of each reading with its truth, the most frequent substitutions, and
how often an error falls on a digit whose ink overlaps a neighbour's. ``--limit N`` scores only
the first N test strings. Needs matplotlib (``pip install .[plot]``) and MNIST.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nn.activations import log_softmax
from nn.build import images_to_inputs
from nn.config import Config
from nn.ctc import ctc_alignment
from nn.data import default_cache_path, fetch_mnist
from nn.datasets import cached_strings, string_params
from nn.decode import Reading, forced_alignment
from nn.digit_layout import SIDE, crop_to_ink, resample
from nn.digit_strings import DigitStrings
from nn.reading import read_outputs
from nn.run import Trained, load_model
from nn.string_metrics import character_error_rate, label_strings

Array = np.ndarray[Any, Any]
DPI = 100
CMAP = "gray_r"  # dark ink on white paper; the network sees light ink on black
SHOWN = 12  # misread strings drawn
WRONG = "#c0392b"


def quiet(line: str) -> None:
    """A log that says nothing (MNIST and the strings come from the cache)."""


def load_strings(cfg: Config, split: str) -> DigitStrings:
    """The config's training or test strings, from the cache beside MNIST (made if missing)."""
    mnist = fetch_mnist(log=quiet)
    images, labels = (
        (mnist.x_train, mnist.y_train) if split == "train" else (mnist.x_test, mnist.y_test)
    )
    return cached_strings(
        string_params(cfg.data, split),
        images,
        labels,
        cache_dir=default_cache_path().parent,
        log=print,
    )


def text(digits: Any) -> str:
    return "".join(str(int(d)) for d in digits)


# --- figure 1: the strings -------------------------------------------------------------------


def strings_figure(train: DigitStrings, test: DigitStrings, path: Path) -> None:
    """Training strings of each length 1..7 and one more, then 4 test strings, labelled."""
    lengths = train.lengths
    picked = [int(np.flatnonzero(lengths == n)[0]) for n in range(1, 8) if np.any(lengths == n)]
    picked += [i for i in range(len(lengths)) if i not in picked][: 8 - len(picked)]
    panels = [("train", train, i) for i in picked] + [("test", test, i) for i in range(4)]
    rows = -(-len(panels) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(6.6, rows * 0.98))
    h, w = train.images.shape[1:]
    for ax, (split, s, i) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(s.images[i], cmap=CMAP, vmin=0, vmax=255, interpolation="nearest")
        label = text(s.labels[i][s.labels[i] >= 0])
        ax.set_title(f"{split} #{i}:  {label}", fontsize=8, pad=2,
                     color="black" if split == "train" else "#1f4e99")  # fmt: skip
        ax.set_xticks([0, w // 2, w])
        ax.set_yticks([0, h])
        ax.tick_params(labelsize=6, length=2, pad=1)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax in axes[:-1].ravel():
        ax.set_xticklabels([])
    for ax in axes[-1]:
        ax.set_xlabel("column (pixels)", fontsize=7, labelpad=1)
    for ax in axes[:, 0]:
        ax.set_ylabel("row", fontsize=7, labelpad=1)
    p = train.params
    fig.suptitle(
        f"digit strings {h}x{w}: training strings of {p.min_length}-{p.max_length} digits "
        f"(black), test strings of {test.params.max_length} (blue)\ngaps {p.gap[0]}..{p.gap[1]} "
        f"px between inks (negative: overlap), vertical jitter +-{p.jitter} px",
        fontsize=8,
    )
    fig.tight_layout(h_pad=0.5, w_pad=1.0)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --- figure 2: a CTC alignment ----------------------------------------------------------------


def alignment_figure(image: Array, truth: Array, log_probs: Array, reading: Reading,
                     where: str, path: Path) -> None:  # fmt: skip
    """The image over its T columns; the (K, T) class probabilities with the forced alignment
    of the truth; the CTC posteriors over the extended label (blank, l1, blank, ..., blank)."""
    t_len, k = log_probs.shape
    h, w = image.shape
    per = w / t_len  # pixels per column
    probs = np.exp(log_probs).T  # (K, T)
    forced = forced_alignment(log_probs, truth)  # (T,)
    gamma = ctc_alignment(log_probs[None], truth[None])[0].T  # (S, T)
    ext = ["-"] + [c for d in truth for c in (str(int(d)), "-")]
    extent = (-0.5, t_len - 0.5)

    fig, axes = plt.subplots(
        3, 1, sharex=True, figsize=(7.0, 6.4),
        gridspec_kw={"height_ratios": [h / per, k, len(ext)]},
    )  # fmt: skip
    ax = axes[0]
    ax.imshow(image, cmap=CMAP, vmin=0, vmax=255, aspect="auto", interpolation="nearest",
              extent=(*extent, h - 0.5, -0.5))  # fmt: skip
    for b in np.arange(t_len + 1) - 0.5:
        ax.axvline(b, color="#4a90d9", lw=0.3, alpha=0.6)
    ax.set_ylabel("row (px)", fontsize=7)
    ax.set_title(f"the image: {t_len} columns of {per:g} pixels", fontsize=8, loc="left", pad=2)

    ax = axes[1]
    ax.imshow(probs, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
              extent=(*extent, k - 0.5, -0.5))  # fmt: skip
    ax.plot(np.arange(t_len), forced, "o", ms=3.2, mfc="none", mec=WRONG, mew=0.9,
            label="forced alignment of the truth")  # fmt: skip
    ax.set_yticks(range(k), [str(c) for c in range(k - 1)] + ["blank"], fontsize=6)
    ax.set_ylabel("class", fontsize=7)
    ax.legend(loc="upper right", fontsize=6, framealpha=0.8, handletextpad=0.2)
    ax.set_title("per-column probabilities of the 11 classes (black = 1)", fontsize=8, loc="left",
                 pad=2)  # fmt: skip

    ax = axes[2]
    ax.imshow(gamma, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest",
              extent=(*extent, len(ext) - 0.5, -0.5))  # fmt: skip
    ax.set_yticks(range(len(ext)), ext, fontsize=6)
    ax.set_ylabel("extended label", fontsize=7)
    ax.set_xlabel("column t", fontsize=7)
    ax.set_title("CTC posterior of each state of the true string's extended label "
                 '(blank "-" between digits)', fontsize=8, loc="left", pad=2)  # fmt: skip
    for a in axes:
        a.tick_params(labelsize=6, length=2)
    conf = " ".join(f"{c:.2f}" for c in reading.confidences)
    read = reading.text or "(nothing)"
    verdict = "right" if np.array_equal(reading.labels, truth) else "WRONG"
    fig.suptitle(f"{where}: truth {text(truth)}, best path reads {read} ({verdict})\n"
                 f"confidences {conf or '-'}", fontsize=9)  # fmt: skip
    fig.tight_layout(h_pad=0.6)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --- figure 3 and the summary: the errors ------------------------------------------------------


def edit_ops(truth: Any, read: Any) -> list[tuple[str, int, int | None, int | None]]:
    """An optimal edit script turning ``truth`` into ``read``: (kind, position in truth,
    true symbol, read symbol) for each substitution ("sub"), deletion ("del", a true digit
    not read) and insertion ("ins", a read digit with no true one; its position is the true
    digit it precedes). Matches are left out; ties prefer a match/substitution."""
    a, b = [int(x) for x in truth], [int(x) for x in read]
    d = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int64)
    d[:, 0], d[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(
                d[i - 1, j - 1] + (a[i - 1] != b[j - 1]), d[i - 1, j] + 1, d[i, j - 1] + 1
            )
    ops: list[tuple[str, int, int | None, int | None]] = []
    i, j = len(a), len(b)
    while i or j:
        if i and j and d[i, j] == d[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            if a[i - 1] != b[j - 1]:
                ops.append(("sub", i - 1, a[i - 1], b[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i, j] == d[i - 1, j] + 1:
            ops.append(("del", i - 1, a[i - 1], None))
            i -= 1
        else:
            ops.append(("ins", i, None, b[j - 1]))
            j -= 1
    return ops[::-1]


def ink_widths(s: DigitStrings, digits: Array) -> Array | None:
    """(N, L) the ink width of each placed digit (-1 on padding), from the strings' sources in
    ``digits`` (M, 28, 28), the split they were made of. Scaled digits' sides are not stored:
    the generator's draws are replayed in the spec's order (spec/digit_strings.md), and None is
    returned if the replayed sources do not match the stored ones."""
    p = s.params
    used = s.labels >= 0
    ink = digits.max(axis=1) > 0  # (M, 28)
    first = ink.argmax(axis=1)
    plain = np.where(ink.any(axis=1), SIDE - ink[:, ::-1].argmax(axis=1) - first, 0)  # (M,)
    widths = np.where(used, plain[np.where(used, s.sources, 0)], -1)
    if p.scale == (1.0, 1.0):
        return widths
    rng = np.random.default_rng(p.seed)
    n, big_l = p.count, p.max_length
    rng.integers(p.min_length, big_l + 1, size=n)
    chosen = rng.integers(0, len(digits), size=(n, big_l))
    rng.integers(p.gap[0], p.gap[1] + 1, size=(n, big_l - 1))
    rng.integers(-p.jitter, p.jitter + 1, size=(n, big_l))
    sides = np.floor(SIDE * rng.uniform(p.scale[0], p.scale[1], size=(n, big_l)) + 0.5)
    if not np.array_equal(np.where(used, chosen, -1), s.sources):
        return None
    for i, j in zip(*np.nonzero(used & (sides != SIDE)), strict=True):
        widths[i, j] = crop_to_ink(resample(digits[s.sources[i, j]], int(sides[i, j]))).shape[1]
    return widths


def overlaps(s: DigitStrings, widths: Array) -> Array:
    """(N, L) bool: the digit's ink shares a column with its left or right neighbour's."""
    pos = s.positions
    left = np.zeros(pos.shape, dtype=bool)
    both = (pos[:, 1:] >= 0) & (pos[:, :-1] >= 0)
    left[:, 1:] = both & (pos[:, 1:] < pos[:, :-1] + widths[:, :-1])
    right = np.zeros_like(left)
    right[:, :-1] = left[:, 1:]
    return left | right


def summary(s: DigitStrings, readings: list[Reading], digits: Array) -> list[int]:
    """Print the error counts; return the indices of the misread strings."""
    truth = label_strings(s.labels[: len(readings)])
    read = [r.labels for r in readings]
    wrong = [
        i for i, (t, r) in enumerate(zip(truth, read, strict=True)) if not np.array_equal(t, r)
    ]
    print(f"scored {len(readings)} test strings: {len(readings) - len(wrong)} read right "
          f"({1 - len(wrong) / max(len(readings), 1):.2%}), CER "
          f"{character_error_rate(s.labels[: len(readings)], read):.4f}")  # fmt: skip
    kinds: collections.Counter[str] = collections.Counter()
    pairs: collections.Counter[tuple[int | None, int | None]] = collections.Counter()
    per_string: collections.Counter[int] = collections.Counter()
    ops_of = {i: edit_ops(truth[i], read[i]) for i in wrong}
    for i in wrong:
        per_string[len(ops_of[i])] += 1
        for kind, _, a, b in ops_of[i]:
            kinds[kind] += 1
            if kind == "sub":
                pairs[(a, b)] += 1
    total = sum(kinds.values())
    names = (("sub", "substitutions"), ("del", "deletions"), ("ins", "insertions"))
    counts = ", ".join(f"{kinds[k]} {name}" for k, name in names)
    print(f"{total} digit errors in {len(wrong)} misread strings: {counts}")
    if per_string:
        print("errors per misread string: "
              + ", ".join(f"{n}: {c}" for n, c in sorted(per_string.items())))  # fmt: skip
    if pairs:
        print("most frequent substitutions (true -> read): "
              + ", ".join(f"{a}->{b} x{c}" for (a, b), c in pairs.most_common(6)))  # fmt: skip
    widths = ink_widths(s, digits)
    if widths is None:
        print("overlaps: the replayed generator draws do not match the strings; not counted")
        return wrong
    over = overlaps(s, widths)[: len(readings)]  # (N, L)
    used = s.labels[: len(readings)] >= 0
    base = over[used].mean() if used.any() else 0.0
    on_overlap = 0
    for i in wrong:
        for kind, j, _, _ in ops_of[i]:
            if kind == "ins":  # between true digits j-1 and j: both must exist and overlap
                hit = 0 < j < len(truth[i]) and over[i, j - 1] and over[i, j]
            else:
                hit = over[i, j]
            on_overlap += bool(hit)
    print(f"{base:.1%} of all test digits overlap a neighbour's ink; {on_overlap} of the "
          f"{total} errors ({on_overlap / max(total, 1):.1%}) are on such a digit "
          f"(an insertion: between two overlapping digits)")  # fmt: skip
    return wrong


def read_positions(reading: Reading, log_probs: Array | None, width: int) -> Array:
    """x (pixels) of each read digit: the centre of its run of columns in the forced
    alignment of the reading (CTC), else evenly spread (one head per digit)."""
    n = len(reading.labels)
    if log_probs is None or n == 0:
        return (np.arange(n) + 0.5) * width / max(n, 1)
    path = forced_alignment(log_probs, reading.labels)
    t_len, blank = len(path), log_probs.shape[1] - 1
    new = np.r_[True, path[1:] != path[:-1]] & (path != blank)
    starts = np.flatnonzero(new)
    ends = [int(np.argmax(path[a:] != path[a])) or t_len - a for a in starts]
    return (starts + np.array(ends) / 2) * width / t_len


def errors_figure(s: DigitStrings, wrong: list[int], readings: list[Reading],
                  log_probs: Array | None, path: Path) -> None:  # fmt: skip
    """The first misread strings: truth and reading above, each read digit and its
    confidence under the image, at the place it was read (CTC)."""
    shown = wrong[:SHOWN]
    cols = 3
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.45, rows * 1.28), squeeze=False)
    h, w = s.images.shape[1:]
    for ax, i in zip(axes.ravel(), shown, strict=False):
        r = readings[i]
        truth = s.labels[i][s.labels[i] >= 0]
        ax.imshow(s.images[i], cmap=CMAP, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"#{i} truth {text(truth)}\nread {r.text or '(nothing)'}", fontsize=7, pad=2)
        xs = read_positions(r, None if log_probs is None else log_probs[i], w)
        last, low = -np.inf, False
        for x, d, c in zip(xs, r.labels, r.confidences, strict=True):
            low = x - last < 15 and not low  # too close to the previous label: one row lower
            last = x
            ax.text(x, h + (11 if low else 1), f"{int(d)}\n{c:.2f}".replace("0.", "."),
                    ha="center", va="top", fontsize=5.5, linespacing=1.0,
                    color=WRONG if c < 0.5 else "black")  # fmt: skip
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h + 21, -0.5)
        ax.axis("off")
        ax.add_patch(plt.Rectangle((-0.5, -0.5), w, h, fill=False, lw=0.5, ec="#888888"))
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no misread string", ha="center", transform=axes[0, 0].transAxes)
    fig.suptitle(f"the first {len(shown)} misread test strings; under each image the read digits "
                 "and their confidences (red: < 0.5)", fontsize=8)  # fmt: skip
    fig.tight_layout(h_pad=0.3, w_pad=0.6)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --- the command --------------------------------------------------------------------------------


def run_figures(trained: Trained, out: Path, limit: int | None, index: int | None,
                decoder: str) -> list[Path]:  # fmt: skip
    """Figures 2 and 3 of a run: one predict on the (first ``limit``) test strings."""
    cfg, model, params, state = trained
    test = load_strings(cfg, "test")
    n = len(test.labels) if limit is None else min(limit, len(test.labels))
    x = images_to_inputs(test.images[:n], model.input_shape)
    outputs = model.predict(params, x, state=state)
    readings = read_outputs(model, outputs, decoder=decoder)
    ctc = model.loss_name == "ctc"
    log_probs = log_softmax(outputs.astype(np.float64))[0] if ctc else None  # (N, T, K)
    digits = fetch_mnist(log=quiet).x_test
    wrong = summary(test, readings, digits)
    written = []
    if ctc and log_probs is not None:
        truth = label_strings(test.labels[:n])
        if index is None:  # the first string read right, else the first one
            misread = set(wrong)
            right = [i for i in range(n) if i not in misread]
            index = right[0] if right else 0
        if not 0 <= index < n:
            raise SystemExit(f"--index {index}: the scored test strings are 0..{n - 1}")
        best = read_outputs(model, outputs[index : index + 1], decoder="best_path")[0]
        written.append(out / "ctc-alignment.png")
        alignment_figure(test.images[index], truth[index], log_probs[index], best,
                         f"test string #{index}", written[-1])  # fmt: skip
    else:
        print("ctc-alignment.png: skipped, the run's model is not trained with CTC")
    written.append(out / "reading-errors.png")
    errors_figure(test, wrong, readings, log_probs, written[-1])
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run folder trained on digit strings (CTC or heads)")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent.parent / "docs/_static")
    )
    parser.add_argument("--config", help="config of the strings of digit-strings.png "
                        "(default: the run's, else digits7)")  # fmt: skip
    parser.add_argument("--strings-only", action="store_true", help="only digit-strings.png")
    parser.add_argument("--limit", type=int, help="score only the first N test strings")
    parser.add_argument("--index", type=int, help="test string of ctc-alignment.png "
                        "(default: the first one read right)")  # fmt: skip
    parser.add_argument("--decoder", default="best_path", choices=("best_path", "beam_search"))
    args = parser.parse_args(argv)
    if not args.strings_only and not args.run:
        parser.error("--run RUN is needed (or --strings-only)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = load_model(args.run) if args.run else None
    if args.config:
        cfg = Config.load(args.config)
    else:
        cfg = trained.cfg if trained is not None else Config.load("digits7")
    if cfg.data.name != "digit_strings":
        raise SystemExit(f"the config's [data] name is {cfg.data.name!r}, not 'digit_strings'")
    written = [out / "digit-strings.png"]
    strings_figure(load_strings(cfg, "train"), load_strings(cfg, "test"), written[0])
    if not args.strings_only and trained is not None:
        written += run_figures(trained, out, args.limit, args.index, args.decoder)
    for p in written:
        print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
