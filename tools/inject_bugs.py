"""Inject classic bugs into the ops, optimizers, trainer and diagnostics; the suite must go red.

Each bug is applied to a copy of the repository in a temporary directory (the work tree is
never touched), the test suite runs there, and the script prints which tests caught it.
It exits 1 if any bug survives, that is, if the suite stays green with the bug in place.

    python tools/inject_bugs.py            # all bugs
    python tools/inject_bugs.py --list     # what each bug changes
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (file, exact text, replacement). The text must occur exactly once.
BUGS = {
    # Reading whole numbers (issue 6).
    "CTC lets a path skip the blank between two equal digits": (
        "nn/ctc.py",
        "    skip[:, 3::2] = ~same & ~pad[:, 1:]",
        "    skip[:, 3::2] = ~pad[:, 1:]",
    ),
    "CTC's gradient forgets the mean's 1/N": (
        "nn/ctc.py",
        "(-float(g) / n)",
        "(-float(g))",
    ),
    "CTC's backward pass tests the skip rule on the wrong state": (
        "nn/ctc.py",
        "        jump = _shift(np.where(skip, c, NEG_INF), -2)",
        "        jump = np.where(skip, _shift(c, -2), NEG_INF)",
    ),
    "best path keeps the blanks": (
        "nn/decode.py",
        "    keep = symbol != blank",
        "    keep = symbol >= 0",
    ),
    "best path never merges a digit repeated in neighbouring columns": (
        "nn/decode.py",
        "    new_run[:, 1:] = path[:, 1:] != path[:, :-1]",
        "    new_run[:, 1:] = True",
    ),
    "beam search forgets that a blank can follow a prefix ending in a digit": (
        "nn/decode.py",
        "        stay_b = total + row[blank]",
        "        stay_b = pb + row[blank]",
    ),
    "the product of experts scores each candidate by its own expert only": (
        "nn/ensemble.py",
        "        for lp in experts:\n            scores[c] +=",
        "        for lp in experts[c : c + 1]:\n            scores[c] +=",
    ),
    "the product of experts averages confidences over the experts that can write the string": (
        "nn/ensemble.py",
        "    confidences = total / len(experts)  # (L,)",
        "    confidences = total / max(1, np.count_nonzero(total)) * (total > 0)  # (L,)",
    ),
    "a shifted view blanks the edges but does not move the pixels": (
        "nn/ensemble.py",
        "    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[",
        "    out[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)] = x[",
    ),
    "CTC's log-likelihood of a given string ignores the last column": (
        "nn/ctc.py",
        "    return _log_likelihood(_forward(lp, skip), last)  # (N,)",
        "    return _log_likelihood(_forward(lp[:, :-1], skip), last)  # (N,)",
    ),
    "ctc_log_likelihood refuses a string too long for T instead of giving it -inf": (
        "nn/ctc.py",
        "labels, refuse_too_long=False)",
        "labels, refuse_too_long=True)",
    ),
    "digit strings are labelled with another digit's label": (
        "nn/digit_strings.py",
        "labels.astype(np.int64)[chosen]",
        "labels.astype(np.int64)[(chosen + 1) % m]",
    ),
    "digit strings place each digit one pixel further than its gap": (
        "nn/digit_layout.py",
        "            left += wj + (g[j] if j < len(g) else 0)",
        "            left += wj + (g[j] + 1 if j < len(g) else 0)",
    ),
    "a saved digit-strings file's checksums are not checked": (
        "nn/digit_strings_io.py",
        "        if received != sums[name]:",
        "        if received != received:",
    ),
    "columns orders a column's features h C + c instead of c H + h": (
        "nn/reshape.py",
        "x.transpose(0, 3, 1, 2)).reshape(n, w, c * h)",
        "x.transpose(0, 3, 2, 1)).reshape(n, w, c * h)",
    ),
    "unflatten's vjp transposes the heads": (
        "nn/reshape.py",
        "        return (np.reshape(g, (n, d)),)",
        "        return (np.reshape(np.swapaxes(g, 1, 2), (n, d)),)",
    ),
    "the CTC model's loss skips log_softmax's vjp": (
        "nn/string_losses.py",
        "        (dout,) = softmax_vjp(dlog_probs)  # (N, T, K)",
        "        dout = dlog_probs",
    ),
    "the heads' labels are read head-major": (
        "nn/string_losses.py",
        "labels=y.reshape(-1))",
        "labels=y.T.reshape(-1))",
    ),
    "test strings are made of training digits": (
        "nn/datasets.py",
        'string_params(cfg.data, "test"), mnist.x_test, mnist.y_test',
        'string_params(cfg.data, "test"), mnist.x_train, mnist.y_train',
    ),
    "edit distance counts a substitution as free": (
        "nn/string_metrics.py",
        "prev + (x != y)",
        "prev",
    ),
    "CTC outputs may have one column too few for 7 equal digits": (
        "nn/build.py",
        "out[0] < need",
        "out[0] < need - 1",
    ),
    "Dense on sequences averages dw over the positions instead of summing": (
        "nn/layers.py",
        "            return (None if dx is None else dx.reshape(n, t, d)), dparams",
        '            return dx.reshape(n, t, d), {**dparams, "w": dparams["w"] / t}',
    ),
    # Diagnostics (issue 4).
    "clipping scales each array by its own norm (the step's direction changes)": (
        "nn/clip.py",
        "    return {key: _scaled(g, scale) for key, g in grads.items()}, n\n",
        "    return {key: _scaled(g, limit / max(limit, global_norm({key: g})))"
        " for key, g in grads.items()}, n\n",
    ),
    "clipping also scales gradients already below max_norm": (
        "nn/clip.py",
        "    if n <= limit:\n        return dict(grads), n\n",
        "    if n == 0:\n        return dict(grads), n\n",
    ),
    "the guard blames the last non-finite layer, not the first": (
        "nn/guard.py",
        "for i, y in enumerate(t.outputs):",
        "for i, y in reversed(list(enumerate(t.outputs))):",
    ),
    "the guard never looks at a layer's dx": (
        "nn/guard.py",
        'for key, g in [*own, ("dx", t.dinputs[i])]:',
        "for key, g in own:",
    ),
    "rollback does not lower the learning rate": (
        "nn/guard.py",
        "self.lr_scale /= 2",
        "self.lr_scale /= 1",
    ),
    "the vanishing-gradient rule compares with the smallest layer": (
        "nn/health.py",
        "largest = max(norms.values())",
        "largest = min(norms.values())",
    ),
    "parameters are not checked against the layers' shapes": (
        "nn/model.py",
        "        check_params(self, params, self._param_shapes)\n",
        "",
    ),
    "the doctor counts a unit dead when it is 0 for any example, not all": (
        "nn/doctor.py",
        "return float(np.mean(np.all(y == 0, axis=0))) if len(y) else 0.0",
        "return float(np.mean(np.any(y == 0, axis=0))) if len(y) else 0.0",
    ),
    # CNN ops and layers (issue 5).
    "col2im crop swaps the padding of rows and columns (conv2d dx)": (
        "nn/conv.py",
        "dxp[:, :, ph : ph + h, pw : pw + wd]",
        "dxp[:, :, pw : pw + h, ph : ph + wd]",
    ),
    "col2im overwrites instead of adding (conv2d dx, overlapping taps)": (
        "nn/conv.py",
        "dxp[:, :, rows, cols] += dcols[:, i, j]",
        "dxp[:, :, rows, cols] = dcols[:, i, j]",
    ),
    # Speed (issue 7): the DFT path of conv2d and the kept heap.
    "the DFT grid is one row short, so a tap wraps onto the image": (
        "nn/conv_dft.py",
        "return max(h + ph, p, r), max(w + pw, q, s)",
        "return max(h + ph - 1, p, r), max(w + pw, q, s)",
    ),
    "the inverse DFT counts each kept frequency once (forgets its conjugate)": (
        "nn/conv_dft.py",
        "return fh, fw, np.where(own, 1.0, 2.0)",
        "return fh, fw, np.where(own, 1.0, 1.0)",
    ),
    "the DFT keeps both members of a conjugate pair in the mirror columns": (
        "nn/conv_dft.py",
        "keep = ~mirror | (2 * fh <= lh)",
        "keep = ~mirror | (fh >= 0)",
    ),
    "the DFT kernel's taps are not shifted by the padding": (
        "nn/conv_dft.py",
        "t_w = theta(np.arange(r) - ph, np.arange(s) - pw)",
        "t_w = theta(np.arange(r), np.arange(s))",
    ),
    "the DFT's complex product drops the minus of Xi Vi": (
        "nn/conv_dft.py",
        "np.negative(vi, out=v[:, 0, :, 1])",
        "np.copyto(v[:, 0, :, 1], vi)",
    ),
    "the DFT's dw adds where its transpose subtracts": (
        "nn/conv_dft.py",
        "dvi = (dv[:, 1, :, 0] - dv[:, 0, :, 1])",
        "dvi = (dv[:, 1, :, 0] + dv[:, 0, :, 1])",
    ),
    "ReLU's check for a non-finite g looks at one entry of each thread's slice": (
        "nn/activations.py",
        "sums.append(np.add.reduce(dx1[s]))",
        "sums.append(np.add.reduce(dx1[s][:1]))",
    ),
    "keep_heap leaves glibc's trim threshold low, so freed pages go back": (
        "nn/heap.py",
        "TRIM_THRESHOLD = 1 << 30",
        "TRIM_THRESHOLD = 128 << 10",
    ),
    "max-pool routes a tie to the last maximum": (
        "nn/pool.py",
        "wins = buf > y",
        "wins = buf >= y",
    ),
    "batch norm dx drops the -xhat mean(g xhat) term": (
        "nn/norm.py",
        "dx = xhat * (-dgamma / m)[:, None, None]",
        "dx = xhat * (0 * dgamma)[:, None, None]",
    ),
    "dropout without the 1/(1-rate) scale": (
        "nn/dropout.py",
        "scale = x.dtype.type(1.0 / (1.0 - rate))",
        "scale = x.dtype.type(1.0)",
    ),
    "batch norm running statistics never updated in training": (
        "nn/norm_layers.py",
        'state = {"running_mean": running[0], "running_var": running[1]}',
        "state = dict(state)",
    ),
    "dropout masks from an unseeded generator (resume no longer exact)": (
        "nn/train.py",
        "masks = np.random.default_rng([t.seed, epoch, DROPOUT])",
        "masks = np.random.default_rng()",
    ),
    "vjp scaled by 1.01 (linear dW)": (
        "nn/linear.py",
        "unbroadcast(dw, w.shape)",
        "unbroadcast(1.01 * dw, w.shape)",
    ),
    "dropped term (softmax VJP loses -s*sum(g*s))": (
        "nn/activations.py",
        "return (s * (g - (g * s).sum(axis=-1, keepdims=True)),)",
        "return (s * g,)",
    ),
    "sum over the wrong axis (log_softmax VJP)": (
        "nn/activations.py",
        "return (g - (e / total) * g.sum(axis=-1, keepdims=True),)",
        "return (g - (e / total) * g.sum(axis=0, keepdims=True),)",
    ),
    "transposed weight gradient (linear dW)": (
        "nn/linear.py",
        "dw = np.matmul(np.swapaxes(x, -1, -2), g)",
        "dw = np.swapaxes(np.matmul(np.swapaxes(x, -1, -2), g), -1, -2)",
    ),
    "forward-only bug (linear adds 1e-3; its derivative is unchanged)": (
        "nn/linear.py",
        "y += b",
        "y += b + 1e-3",
    ),
    # Beyond the ops: the parts a model is assembled from, and the trainer's exact resume.
    "Adam without bias correction": (
        "nn/optim.py",
        'step = _in_place(np.divide, m, dt(1.0 - b1**t), out=out["w"])  # m_hat',
        'step = _in_place(np.divide, m, dt(1.0), out=out["w"])  # m_hat',
    ),
    "Nesterov look-ahead from the old velocity": (
        "nn/optim.py",
        "step = g + beta * v if self.nesterov else v",
        "step = g + beta * slots['velocity'] if self.nesterov else v",
    ),
    "weight decay applied to biases too": (
        "nn/optim.py",
        "if self.weight_decay > 0 and w.ndim >= 2 else None",
        "if self.weight_decay > 0 else None",
    ),
    "He normal scaled by fan_out": (
        "nn/init.py",
        'return _normal("he_normal", rng, sides, math.sqrt(2 / n_in), dtype)',
        'return _normal("he_normal", rng, sides, math.sqrt(2 / n_out), dtype)',
    ),
    "augmentation drawn from an unseeded generator (resume no longer exact)": (
        "nn/train.py",
        "shifts = np.random.default_rng([t.seed, epoch, AUGMENT])",
        "shifts = np.random.default_rng()",
    ),
    "slants only one way (random_affine draws s from [0, slant])": (
        "nn/augment.py",
        "s = rng.uniform(-slant, slant, n)[:, None, None]",
        "s = rng.uniform(0, slant, n)[:, None, None]",
    ),
    "overrides the user's OpenBLAS spin (nn.blas_env sets instead of setdefault)": (
        "nn/blas_env.py",
        "os.environ.setdefault(SPIN_VARIABLE, SPIN_EXPONENT)",
        "os.environ[SPIN_VARIABLE] = SPIN_EXPONENT",
    ),
}


# With --first, the tests of the changed module run first: a failure there already proves
# the suite goes red, and saves running the whole suite up to its first failure (CI time).
# Only when they all pass does the whole suite run.
FIRST_LOOK = {
    "nn/linear.py": ["tests/test_linear.py"],
    "nn/activations.py": [
        "tests/test_softmax.py",
        "tests/test_log_softmax.py",
        "tests/test_relu.py",
    ],
    "nn/optim.py": ["tests/test_optim.py"],
    "nn/init.py": ["tests/test_init.py"],
    "nn/train.py": ["tests/test_train.py", "tests/test_cnn.py"],
    "nn/augment.py": ["tests/test_random_affine.py", "tests/test_augment.py"],
    "nn/conv.py": ["tests/test_conv2d.py"],
    "nn/conv_dft.py": ["tests/test_conv2d.py"],
    "nn/heap.py": ["tests/test_heap.py"],
    "nn/pool.py": ["tests/test_max_pool2d.py"],
    "nn/norm.py": ["tests/test_batch_norm.py"],
    "nn/dropout.py": ["tests/test_dropout.py"],
    "nn/norm_layers.py": ["tests/test_cnn.py"],
    "nn/clip.py": ["tests/test_clip.py"],
    "nn/guard.py": ["tests/test_guard.py"],
    "nn/health.py": ["tests/test_guard.py"],
    "nn/model.py": [
        "tests/test_diagnostics.py",
        "tests/test_model.py",
        "tests/test_strings_model.py",
    ],
    "nn/doctor.py": ["tests/test_doctor.py"],
    "nn/ctc.py": ["tests/test_ctc_loss.py"],
    "nn/decode.py": ["tests/test_decode.py"],
    "nn/digit_strings.py": ["tests/test_digit_strings.py"],
    "nn/digit_layout.py": ["tests/test_digit_strings.py"],
    "nn/digit_strings_io.py": ["tests/test_digit_strings.py"],
    "nn/reshape.py": ["tests/test_columns.py", "tests/test_unflatten.py"],
    "nn/layers.py": ["tests/test_sequence_layers.py"],
    "nn/datasets.py": ["tests/test_reading.py"],
    "nn/string_metrics.py": ["tests/test_string_metrics.py"],
    "nn/string_losses.py": ["tests/test_strings_model.py"],
    "nn/build.py": ["tests/test_strings_model.py"],
}


def run_with_bug(name: str, keep_going: bool) -> list[str]:
    """Apply one bug in a copy of the repository; return the ids of the failing tests."""
    path, old, new = BUGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        skip = shutil.ignore_patterns(".git", ".tox", "_build", "__pycache__", ".*cache*")
        shutil.copytree(ROOT, copy, symlinks=True, ignore=skip)
        source = (copy / path).read_text(encoding="utf-8")
        if source.count(old) != 1:
            raise SystemExit(f"{name}: {old!r} must occur once in {path}; update BUGS")
        (copy / path).write_text(source.replace(old, new), encoding="utf-8")
        pytest = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider"]
        pytest += [] if keep_going else ["-x"]
        first = [] if keep_going else FIRST_LOOK.get(path, [])
        for tests in ([first] if first else []) + [[]]:  # [] is the whole suite
            try:  # a hang is neither caught nor survived: say so rather than stall CI
                result = subprocess.run(
                    pytest + tests, cwd=copy, capture_output=True, text=True, check=False,
                    timeout=600,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise SystemExit(f"{name}: the tests ran over 600 s with the bug in") from None
            if failed := re.findall(r"^FAILED (\S+)", result.stdout, re.M):
                return failed
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the bugs and exit")
    parser.add_argument("--first", action="store_true", help="stop each run at its first failure")
    args = parser.parse_args()
    if args.list:
        for name, (path, old, new) in BUGS.items():
            print(f"{name}\n  {path}: {old}\n  ->  {new}")
        return 0
    survivors = []
    for name in BUGS:
        failed = run_with_bug(name, keep_going=not args.first)
        print(f"{name}: {'caught by ' + str(len(failed)) + ' test(s)' if failed else 'SURVIVED'}")
        for test in failed[:8]:
            print(f"    {test}")
        if len(failed) > 8:
            print(f"    ... and {len(failed) - 8} more")
        if not failed:
            survivors.append(name)
    print(f"\n{len(BUGS) - len(survivors)} of {len(BUGS)} injected bugs caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
