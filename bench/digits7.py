"""Issue 6's figures, printed: reading whole 7-digit numbers, CTC against two baselines.

    python bench/digits7.py                      # train the three configs, then score them
    python bench/digits7.py --out runs           # the same, keeping runs/digits7* folders
    python bench/digits7.py --runs RUN [RUN ...] # score run folders already trained

The three configs are ``digits7`` (convolutional columns read by CTC, trained on strings of 1
to 7 digits), ``digits7_cnn_heads`` (the same kind of convolutional layers, then 7 softmax
heads) and ``digits7_mlp_heads`` (a fully connected network on the whole image, 7 heads); the
heads need strings of one length, so they train on 7-digit strings only. All three are
scored on the same 10000 test strings of 7 digits made only of MNIST test digits
(``[data]`` of each config; the script refuses runs whose test strings differ).

Printed per model: whole-number accuracy (every digit right, no partial credit) with best
path and, for CTC, beam search (width 8); the character error rate; parameters; training
time of the whole run and the median epoch, on this machine's cores. Figures are measured,
never asserted: the machine is shared and its timings are noisy.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nn.build import images_to_inputs
from nn.datasets import load_dataset, string_params
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


def score_run(run: Path, test: tuple[Any, Any] | None) -> tuple[dict[str, Any], Any]:
    """One run's figures on its test strings (made once, shared by every run)."""
    cfg, model, params, state = load_model(run)
    if test is None:
        data = load_dataset(cfg, log=lambda line: None)
        test = (string_params(cfg.data, "test"), (data.x_test, data.y_test))
    if string_params(cfg.data, "test") != test[0]:
        raise SystemExit(f"{run}: its test strings differ from the first run's; not comparable")
    images, labels = test[1]
    began = time.perf_counter()
    x = images_to_inputs(images, model.input_shape)  # (N, 1, 32, 144) float32
    out = model.predict(params, x, state=state)  # (N, T, K) or (N, 7, 10)
    predict_seconds = time.perf_counter() - began
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = [r["seconds"] for r in metrics["history"]]
    row: dict[str, Any] = {
        "run": str(run),
        "loss": model.loss_name,
        "parameters": int(sum(v.size for v in params.values())),
        "train_strings": cfg.data.train_strings - cfg.train.validation,
        "lengths": f"{cfg.data.min_length}-{cfg.data.max_length}",
        "epochs": len(epochs),
        "run_seconds": metrics["seconds"],
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
    return row, test


def main(argv: list[str]) -> None:
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")  # fmt: skip
    if "--runs" in argv:
        runs = [Path(a) for a in argv[argv.index("--runs") + 1 :]]
    else:
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path("runs")
        runs = train_all(out)
    rows, test = [], None
    for run in runs:
        row, test = score_run(run, test)
        rows.append(row)
    print("\n## whole-number accuracy on the same 10000 test strings of 7 digits\n")
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
                  f"{minutes:.1f} min | {r['epoch_median_seconds']:.0f} s |")  # fmt: skip
    print(f"\n{os.cpu_count()} cores; training time is the whole `python -m nn train` run "
          f"(data, epochs, validation, test scoring); decode times in the JSON below.")  # fmt: skip
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
