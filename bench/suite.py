"""The benchmark suite: our training and inference against PyTorch's on the CPU, in one table.

    python bench/suite.py                        # every model, 3 repeats (about 15 minutes)
    python bench/suite.py --models mlp256 cnn --repeats 5
    tox -e bench                                 # the same, with PyTorch installed

For each model of :data:`MODELS`, every repeat runs one training epoch of ours and then one
of PyTorch's (interleaved, so both see the same machine), each in a fresh process
(``--worker``) so that its peak resident memory is its own. Both train the same network
(same layers, initializer family, optimizer, batch, float32, random shifts made by the same
NumPy code) on the same images with the same number of threads: NumPy's BLAS threads and
``torch.set_num_threads``. After the epoch each worker times inference on 10000 test images.

Printed and written (``--out``, default ``bench/results``) as ``bench.json`` and ``bench.md``:
median epoch seconds with the spread (min-max), ours/PyTorch, inference images per second,
peak resident memory, and achieved GFLOP/s as a fraction of this machine's own float32 GEMM
throughput, measured by this command (a square product of 2048, same threads). Training
FLOPs are counted as 3x the forward pass's multiply-adds x 2 (the backward pass does twice
the forward's work), from the layer shapes. Figures are measured, never asserted.

The 7-digit model's full epoch (the config's training strings less the held-out ones) takes
minutes; the suite times an epoch of ``DIGITS7_STRINGS`` strings and scales it to the full
epoch (``epoch_scaled``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: E402, F401

# isort: split
import numpy as np  # noqa: E402

from nn.atomic import write_bytes_atomic  # noqa: E402

# name: (title, shipped config, overrides). One epoch, no validation: every image trains.
MODELS: dict[str, tuple[str, str, list[str]]] = {
    "mlp256": ("MLP 784-256-10, SGD momentum", "default",
               ["model.hidden=[256]", "optimizer.name=momentum", "optimizer.weight_decay=0",
                "train.shift=0"]),
    "mlp800": ("MLP 784-800-800-10 (default config)", "default", []),
    "cnn": ("CNN conv5x5(32)-pool-conv5x5(64)-pool-128-10 (cnn config)", "cnn", []),
    "digits7": ("7-digit reader, CTC (digits7 config)", "digits7", []),
}  # fmt: skip
COMMON = ["train.epochs=1", "train.validation=0", "train.patience=0"]
DIGITS7_STRINGS = 3200  # timed subset of the config's training strings


def digits7_full() -> int:
    """The strings of a full digits7 epoch: the config's training strings less the held-out."""
    from nn.config import Config

    cfg = Config.load(MODELS["digits7"][1])
    return cfg.data.train_strings - cfg.train.validation


def blas_threads() -> int:
    """The threads NumPy's BLAS uses: OpenBLAS's variable if set, else every core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def load(name: str) -> tuple[Any, Any, Any]:
    """``(cfg, train set (x, y), test images)`` of a model, as ``python -m nn train`` loads them."""
    from nn.config import Config
    from nn.datasets import load_dataset

    overrides = MODELS[name][2] + COMMON
    if name == "digits7":
        overrides = [*overrides, f"data.train_strings={DIGITS7_STRINGS}"]
    cfg = Config.load(MODELS[name][1]).override(overrides)
    data = load_dataset(cfg, log=lambda line: None)
    return cfg, (data.x_train, data.y_train), data.x_test


def forward_flops(model: Any) -> int:
    """Multiply-adds x 2 of one image's forward pass: dense and conv layers only."""
    total = 0
    for layer, shape in zip(model.layers, model.shapes, strict=False):
        out = layer.out_shape(shape)
        if layer.name == "dense":
            total += 2 * int(np.prod(out)) * shape[-1]
        elif layer.name == "conv2d":
            r, s = layer.kernel
            total += 2 * int(np.prod(out)) * shape[0] * r * s  # K P Q outputs x C R S terms
    return total


def worker_nn(name: str) -> dict[str, Any]:
    from nn.build import build_model
    from nn.train import train

    cfg, (x, y), x_test = load(name)
    result = train(cfg, x, y)
    model = build_model(cfg)
    images = min(10000, len(x_test))
    xt = (x_test[:images].astype(np.float32) / np.float32(255)).reshape(images, *model.input_shape)
    began = time.perf_counter()
    model.predict(result.params, xt, state=result.state, batch_size=500)
    infer = time.perf_counter() - began
    return {"epoch": result.history[0]["seconds"], "images": len(x),
            "infer_ips": images / infer, "flops": forward_flops(model)}  # fmt: skip


def worker_torch(name: str, threads: int) -> dict[str, Any]:
    import torch
    from torch_cnn import build_torch, make_torch_optimizer

    from nn.augment import random_shift
    from nn.build import build_model

    cfg, (x, y), x_test = load(name)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    ours = build_model(cfg)
    layers = [dict(spec) for spec in ours.config()["layers"]]
    shape = tuple(ours.input_shape)
    model = build_torch(layers, shape).train()
    opt = make_torch_optimizer(model, cfg.optimizer.name, cfg.optimizer.lr,
                               cfg.optimizer.weight_decay)  # fmt: skip
    rng = np.random.default_rng(cfg.train.seed)
    ctc = cfg.model.loss == "ctc"
    loss_fn = (
        torch.nn.CTCLoss(blank=10, zero_infinity=False) if ctc else torch.nn.CrossEntropyLoss()
    )
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    batch, shift = cfg.train.batch_size, cfg.train.shift
    began = time.perf_counter()
    order = rng.permutation(len(x))
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        xb = x[idx].astype(np.float32) / np.float32(255)  # (B, H, W) or (B, 784)
        if shift:
            xb = random_shift(xb.reshape(len(idx), *x.shape[1:]), rng, shift)
        out = model(torch.from_numpy(np.ascontiguousarray(xb)).reshape(len(idx), *shape))
        if ctc:  # (B, T, K) -> (T, B, K) log-probabilities; labels padded with -1
            logp = out.log_softmax(-1).transpose(0, 1)
            lab = labels[idx]
            lengths = (lab >= 0).sum(1)
            loss = loss_fn(logp, lab.clamp(min=0), torch.full((len(idx),), logp.shape[0]),
                           lengths)  # fmt: skip
        else:
            loss = loss_fn(out, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    epoch = time.perf_counter() - began
    model.eval()
    images = min(10000, len(x_test))
    xt = torch.from_numpy(x_test[:images].astype(np.float32) / np.float32(255))
    xt = xt.reshape(images, *shape)
    began = time.perf_counter()
    with torch.no_grad():
        for start in range(0, images, 500):
            model(xt[start : start + 500])
    return {"epoch": epoch, "images": len(x), "infer_ips": images / (time.perf_counter() - began)}


def run_worker(name: str, impl: str, threads: int) -> dict[str, Any]:
    """One measurement in a fresh process; its peak resident memory is its own."""
    cmd = [sys.executable, __file__, "--worker", name, impl, "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def gemm_gflops(threads: int, size: int = 2048, repeats: int = 7) -> float:
    """This machine's float32 GEMM throughput: median of square products of ``size``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    a @ a  # warm up: page in, start BLAS's threads
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - began)
    return 2 * size**3 / statistics.median(times) / 1e9


def row(name: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]], gemm: float) -> dict:
    """The table's figures of one model from its repeats."""

    def spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
        vals = [r[key] for r in runs]
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}

    epoch = spread(ours, "epoch")
    images = ours[0]["images"]
    scale = digits7_full() / images if name == "digits7" else 1.0
    gflops = 3 * ours[0]["flops"] * images / epoch["median"] / 1e9
    out: dict[str, Any] = {
        "model": MODELS[name][0], "images_per_epoch": images, "epoch_s": epoch,
        "epoch_scaled_s": epoch["median"] * scale, "scaled_to_images": int(images * scale),
        "infer_ips": statistics.median(r["infer_ips"] for r in ours),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
        "train_gflops": gflops, "gemm_fraction": gflops / gemm,
    }  # fmt: skip
    if theirs:
        t_epoch = spread(theirs, "epoch")
        out["torch"] = {"epoch_s": t_epoch,
                        "infer_ips": statistics.median(r["infer_ips"] for r in theirs),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in theirs)}  # fmt: skip
        out["ratio_epoch"] = epoch["median"] / t_epoch["median"]
        out["ratio_infer"] = out["torch"]["infer_ips"] / out["infer_ips"]  # time ratio
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpus']} CPUs ({m['processor']}), {m['threads']} "
        f"threads, numpy {m['numpy']}, {m['torch'] or 'no PyTorch'}; float32 GEMM "
        f"{m['gemm_gflops']:.0f} GFLOP/s (square 2048). Medians of {report['repeats']} "
        "interleaved repeats, spread min-max.",
        "",
        "| model | ours: epoch s | PyTorch: epoch s | ours / PyTorch | inference img/s, ours "
        "/ PyTorch | peak memory MB, ours / PyTorch | GFLOP/s (of GEMM) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["models"].values():
        e = r["epoch_s"]
        ours = f"{e['median']:.2f} ({e['min']:.2f}-{e['max']:.2f})"
        if r["scaled_to_images"] != r["images_per_epoch"]:
            ours += f"; {r['epoch_scaled_s']:.0f} s scaled to {r['scaled_to_images']} images"
        t = r.get("torch")
        te = t["epoch_s"] if t else None
        theirs = f"{te['median']:.2f} ({te['min']:.2f}-{te['max']:.2f})" if te else "-"
        ratio = f"**{r['ratio_epoch']:.2f}**" if t else "-"
        infer = f"{r['infer_ips']:.0f} / {t['infer_ips']:.0f}" if t else f"{r['infer_ips']:.0f}"
        mem = f"{r['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f}" if t else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['model']} ({r['images_per_epoch']} images) | {ours} | {theirs} | "
                     f"{ratio} | {infer} | {mem} | {r['train_gflops']:.0f} "
                     f"({100 * r['gemm_fraction']:.0f}%) |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--threads", type=int, default=blas_threads(), help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # a child process: one measurement, one JSON line
        name, impl = args.worker
        figures = worker_nn(name) if impl == "nn" else worker_torch(name, args.threads)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    try:
        import torch

        torch_version: str | None = f"PyTorch {torch.__version__}"
    except ImportError:
        torch_version = None
    use_torch = torch_version is not None and not args.no_torch
    gemm = gemm_gflops(args.threads)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "threads": args.threads, "numpy": np.__version__,
                    "python": platform.python_version(), "torch": torch_version,
                    "gemm_gflops": gemm, "load_before": os.getloadavg()[0]},
        "models": {},
    }  # fmt: skip
    print(f"float32 GEMM: {gemm:.0f} GFLOP/s with {args.threads} threads", flush=True)
    for name in args.models:
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for i in range(args.repeats):
            ours.append(run_worker(name, "nn", args.threads))
            if use_torch:
                theirs.append(run_worker(name, "torch", args.threads))
            t = f", PyTorch {theirs[-1]['epoch']:.2f} s" if theirs else ""
            print(f"{name} repeat {i + 1}: ours {ours[-1]['epoch']:.2f} s{t}", flush=True)
        report["models"][name] = row(name, ours, theirs, gemm)
    report["machine"]["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "bench.json", (json.dumps(report, indent=2) + "\n").encode())
    text = markdown(report)
    write_bytes_atomic(out / "bench.md", text.encode())
    print("\n" + text + f"\nwritten: {out / 'bench.json'}, {out / 'bench.md'}")


if __name__ == "__main__":
    main()
