"""Pictures of a trained CNN for the docs: its first layer's filters and its feature maps.

    python tools/cnn_figures.py RUN_DIR [OUT_DIR]     # default OUT_DIR: docs/_static

Writes ``cnn-filters.png`` (every filter of the first convolution) and
``cnn-feature-maps.png`` (one test digit, and what the first and second convolution layers
make of it after their ReLU). Needs matplotlib (``pip install .[plot]``) and MNIST.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nn.data import fetch_mnist
from nn.model import layer_params
from nn.run import load_model
from nn.train import images_to_inputs


def filters_figure(w: np.ndarray, path: Path) -> None:
    """Each (R, S) kernel of w (K, 1, R, S) in its own panel, on a shared colour scale."""
    k = w.shape[0]
    cols = 8
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9))
    limit = float(np.abs(w).max())
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < k:
            ax.imshow(w[i, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle("first convolution: 32 learned 5x5 filters (red +, blue -)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def feature_maps(run: Path, index: int = 0) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """A test image (28, 28) and the output (C, H, W) of every layer, in inference mode."""
    _, model, params, state = load_model(run)
    data = fetch_mnist(log=lambda line: None)
    x = images_to_inputs(data.x_test[index : index + 1], model.input_shape)  # (1, 1, 28, 28)
    outputs = []
    for name, layer in zip(model.names, model.layers, strict=True):
        x, _, _ = layer.forward(
            layer_params(params, name), x, state=layer_params(state, name), train=False, rng=None
        )
        outputs.append((name, x[0]))
    return data.x_test[index], outputs


def maps_figure(image: np.ndarray, outputs: list[tuple[str, np.ndarray]], path: Path) -> None:
    """The image, then 8 maps of the first and of the second ReLU after a convolution."""
    relus = [(n, y) for n, y in outputs if n.startswith("relu") and y.ndim == 3][:2]
    fig, axes = plt.subplots(len(relus), 9, figsize=(9 * 1.0, len(relus) * 1.15))
    for row, (name, maps) in enumerate(relus):
        axes[row, 0].imshow(image, cmap="gray_r")
        axes[row, 0].set_title("input", fontsize=7)
        strongest = np.argsort(maps.reshape(len(maps), -1).max(axis=1))[::-1][:8]
        for col, c in enumerate(strongest, start=1):
            axes[row, col].imshow(maps[c], cmap="viridis")
            axes[row, col].set_title(f"{name} ch {c}", fontsize=6)
        for ax in axes[row]:
            ax.axis("off")
    fig.suptitle("feature maps of one test digit (the 8 strongest channels per layer)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str]) -> None:
    run = Path(argv[0])
    out = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "docs/_static"
    )
    _, _, params, _ = load_model(run)
    filters_figure(params["conv2d0.w"], out / "cnn-filters.png")
    image, outputs = feature_maps(run)
    maps_figure(image, outputs, out / "cnn-feature-maps.png")
    print(f"wrote {out / 'cnn-filters.png'} and {out / 'cnn-feature-maps.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
