"""Issue 6's figures, printed: reading whole 7-digit numbers, CTC against two baselines.

    python bench/digits7.py                      # train the three configs, then score them
    python bench/digits7.py --out runs           # the same, keeping runs/digits7* folders
    python bench/digits7.py --runs RUN [RUN ...] # score run folders already trained
    python bench/digits7.py --ensemble --runs RUN [RUN ...]  # and their products of experts
    python bench/digits7.py --held-out 5000 --runs RUN [RUN ...]  # on validation digits

The three configs are ``digits7`` (convolutional columns read by CTC, trained on strings of 1
to 7 digits), ``digits7_cnn_heads`` (the same kind of convolutional layers, then 7 softmax
heads) and ``digits7_mlp_heads`` (a fully connected network on the whole image, 7 heads); the
heads need strings of one length, so they train on 7-digit strings only. All three are
scored on the same 10000 test strings of 7 digits made only of MNIST test digits
(``[data]`` of each config; the script refuses runs whose test strings differ).

With ``--held-out N`` the strings scored are N strings of 7 digits made of the validation
digits (MNIST training digits that no training string uses) instead of the test strings: a
check that needs no look at the test set.

With ``--ensemble``, the CTC runs are also read as products of experts
(spec/product_of_experts.md): each run with its image moved by a pixel (``nn.ensemble.VIEWS``,
5 views), all runs together, all runs with 5 views each, and with more than two runs every
pair with 5 views each; the table says how often the true string is among the candidates.

Printed per model: whole-number accuracy (every digit right, no partial credit) with best
path and, for CTC, beam search (width 8); the character error rate; parameters; training
time of the whole run and the median epoch, on this machine's cores. Figures are measured,
never asserted: the machine is shared and its timings are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: F401

# isort: split
import numpy as np

from nn.activations import log_softmax
from nn.build import images_to_inputs
from nn.data import fetch_mnist
from nn.datasets import held_out_strings, load_dataset, string_params
from nn.decode import best_path
from nn.ensemble import VIEWS, product_of_experts, shifted
from nn.progress import ProgressBar
from nn.reading import read_outputs
from nn.run import load_model, train_run
from nn.string_metrics import character_error_rate, strings_match

CONFIGS = ("digits7", "digits7_cnn_heads", "digits7_mlp_heads")


def train_all(out: Path) -> list[Path]:
    from nn.config import Config

    runs = []
    for name in CONFIGS:
        run = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"== training {name} into {run}", flush=True)
        train_run(Config.load(name), run, progress=ProgressBar(sys.stdout))
        runs.append(run)
    return runs


def strings_params(cfg: Any, held_out: int) -> Any:
    """The generator's parameters of the strings scored: the config's test strings, or with
    ``held_out`` > 0 that many strings of ``test_length`` digits made of the validation
    digits (MNIST training digits that no training string uses)."""
    if not held_out:
        return string_params(cfg.data, "test")
    length = cfg.data.test_length
    data = dataclasses.replace(cfg.data, min_length=length, max_length=length)
    return string_params(data, "validation", held_out)


def strings_of(cfg: Any, held_out: int) -> tuple[Any, Any]:
    """Images (N, H, W) and labels (N, L) of the strings scored (see strings_params)."""
    if not held_out:
        data = load_dataset(cfg, log=lambda line: None)
        return data.x_test, data.y_test
    made = held_out_strings(strings_params(cfg, held_out), fetch_mnist(log=lambda line: None),
                            log=lambda line: None)  # fmt: skip
    return made.images, made.labels


def score_run(run: Path, test: tuple[Any, Any] | None, with_views: bool = False,
              held_out: int = 0) -> tuple[dict[str, Any], Any, list[Any]]:  # fmt: skip
    """One run's figures on its test strings (made once, shared by every run), and with
    ``with_views`` its log-probabilities (N, T, K) on each of nn.ensemble.VIEWS."""
    cfg, model, params, state = load_model(run)
    if test is None:
        test = (strings_params(cfg, held_out), strings_of(cfg, held_out))
    if strings_params(cfg, held_out) != test[0]:
        raise SystemExit(f"{run}: its test strings differ from the first run's; not comparable")
    images, labels = test[1]
    began = time.perf_counter()
    x = images_to_inputs(images, model.input_shape)  # (N, 1, 32, 144) float32
    out = model.predict(params, x, state=state)  # (N, T, K) or (N, 7, 10)
    predict_seconds = time.perf_counter() - began
    experts = []
    if with_views and model.loss_name == "ctc":
        for dy, dx in VIEWS:
            moved = out if (dy, dx) == (0, 0) else model.predict(params, shifted(x, dy, dx),
                                                                 state=state)  # fmt: skip
            experts.append(log_softmax(moved.astype(np.float64))[0])  # (N, T, K)
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = [r["seconds"] for r in metrics["history"]]
    row: dict[str, Any] = {
        "run": str(run),
        "loss": model.loss_name,
        "parameters": int(sum(v.size for v in params.values())),
        "train_strings": cfg.data.train_strings - cfg.train.validation,
        "lengths": f"{cfg.data.min_length}-{cfg.data.max_length}",
        "epochs": len(epochs),
        # A resumed run's metrics time only its last part; its epochs' time is then the
        # better figure (marked * in the table).
        "run_seconds": max(metrics["seconds"], sum(epochs)),
        "resumed": metrics["seconds"] < sum(epochs),
        "epoch_median_seconds": statistics.median(epochs),
        "test_strings": len(labels),
        "predict_seconds": predict_seconds,
    }
    decoders = ["best_path", "beam_search"] if model.loss_name == "ctc" else ["heads"]
    for decoder in decoders:
        began = time.perf_counter()
        readings = read_outputs(model, out, decoder="best_path" if decoder == "heads" else decoder)
        read = [r.labels for r in readings]
        row[decoder] = {
            "accuracy": float(strings_match(labels, read).mean()),
            "character_error_rate": character_error_rate(labels, read),
            "decode_seconds": time.perf_counter() - began,
        }
    return row, test, experts


def score_experts(name: str, experts: list[Any], members: list[dict[str, Any]],
                  labels: Any) -> dict[str, Any]:  # fmt: skip
    """The figures of one product of experts, read by its members (rows of score_run)."""
    began = time.perf_counter()
    read = [r.labels for r in product_of_experts(experts)]
    decode_seconds = time.perf_counter() - began
    # The oracle: how often some expert's best path, a candidate, is the true string.
    among = np.any([strings_match(labels, [r.labels for r in best_path(e)]) for e in experts],
                   axis=0)  # fmt: skip
    return {
        "name": name,
        "experts": len(experts),
        "accuracy": float(strings_match(labels, read).mean()),
        "truth_among_candidates": float(among.mean()),
        "character_error_rate": character_error_rate(labels, read),
        "decode_seconds": decode_seconds,
        "parameters": sum(m["parameters"] for m in members),
        "run_seconds": sum(m["run_seconds"] for m in members),
    }


def ensembles(rows: list[dict[str, Any]], experts: list[list[Any]], labels: Any) -> list[Any]:
    """Each CTC run with its 5 views, all CTC runs, all CTC runs with 5 views each, and
    with more than 2 runs every pair with 5 views each."""
    ctc = [(r, e) for r, e in zip(rows, experts, strict=True) if e]
    out = [score_experts(f"{Path(r['run']).name}, {len(e)} views", e, [r], labels)
           for r, e in ctc]  # fmt: skip
    if len(ctc) > 1:
        members = [r for r, _ in ctc]
        out.append(score_experts(f"{len(ctc)} runs", [e[0] for _, e in ctc], members, labels))
        out.append(score_experts(f"{len(ctc)} runs, {len(VIEWS)} views each",
                                 [v for _, e in ctc for v in e], members, labels))  # fmt: skip
    if len(ctc) > 2:
        for (r1, e1), (r2, e2) in itertools.combinations(ctc, 2):
            name = f"{Path(r1['run']).name} and {Path(r2['run']).name}, {len(VIEWS)} views each"
            out.append(score_experts(name, e1 + e2, [r1, r2], labels))
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Issue 6's figures: reading 7-digit numbers.")
    parser.add_argument("--runs", nargs="+", type=Path, metavar="RUN",
                        help="score these run folders, not three newly trained")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs"),
                        help="where to train the three configs (default: runs)")  # fmt: skip
    parser.add_argument("--ensemble", action="store_true",
                        help="also score the CTC runs as products of experts")  # fmt: skip
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="score N 7-digit strings of held-out training digits")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")  # fmt: skip
    runs = args.runs or train_all(args.out)
    held_out = args.held_out
    rows, test, experts = [], None, []
    for run in runs:
        row, test, view_log_probs = score_run(run, test, with_views=args.ensemble,
                                              held_out=held_out)  # fmt: skip
        rows.append(row)
        experts.append(view_log_probs)
    kind = "held-out strings of validation digits" if held_out else "test strings"
    count = len(test[1][1]) if test is not None else 0
    print(f"\n## whole-number accuracy on the same {count} {kind} of 7 digits\n")
    print("| model | decoder | whole-number accuracy | character error rate | parameters | "
          "training strings (lengths) | epochs | training time | epoch median |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for decoder in ("best_path", "beam_search", "heads"):
            if decoder not in r:
                continue
            d, minutes = r[decoder], r["run_seconds"] / 60
            print(f"| {Path(r['run']).name} ({r['loss']}) | {decoder} | "
                  f"{100 * d['accuracy']:.2f}% | {100 * d['character_error_rate']:.3f}% | "
                  f"{r['parameters']:,} | {r['train_strings']} ({r['lengths']}) | {r['epochs']} | "
                  f"{minutes:.1f} min{'*' if r['resumed'] else ''} | "
                  f"{r['epoch_median_seconds']:.0f} s |")  # fmt: skip
    print(f"\n{os.cpu_count()} cores; training time is the whole `python -m nn train` run "
          f"(data, epochs, validation, test scoring), or * for a resumed run the sum of its "
          f"epochs; decode times in the JSON below.")  # fmt: skip
    if args.ensemble and test is not None:
        together = ensembles(rows, experts, test[1][1])
        print("\n## products of experts (spec/product_of_experts.md) on the same strings\n")
        print("| experts | count | whole-number accuracy | truth among candidates | character "
              "error rate | parameters | training time (all runs) | decode time |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for e in together:
            print(f"| {e['name']} | {e['experts']} | {100 * e['accuracy']:.2f}% | "
                  f"{100 * e['truth_among_candidates']:.2f}% | "
                  f"{100 * e['character_error_rate']:.3f}% | {e['parameters']:,} | "
                  f"{e['run_seconds'] / 60:.1f} min | {e['decode_seconds']:.0f} s |")  # fmt: skip
        rows.append({"products_of_experts": together})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
