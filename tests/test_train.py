"""The trainer: exact resume, early stopping, determinism, and that it learns."""

import json

import numpy as np
import pytest

from conftest import same_bits, synthetic_digits
from nn.checkpoint import load_checkpoint, save_checkpoint
from nn.config import Config
from nn.errors import DataError, DivergenceError
from nn.train import build_model, epoch_order, images_to_inputs, train

# The tiny nets here train at learning rates whose updates the gradient-health rules call
# too large (nn.health); health is tested in test_guard.py, resume and early stopping here.
pytestmark = pytest.mark.filterwarnings("ignore::nn.errors.HealthWarning")

SMALL = [
    "model.hidden=[16]",
    "train.epochs=4",
    "train.batch_size=32",
    "train.validation=100",
    "optimizer.lr=0.1",
]


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(500, seed=3)


def same_history(a, b):
    drop = {"seconds", "images_per_second"}  # wall-clock figures differ between runs
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]


@pytest.mark.parametrize(
    "extra",
    [
        [],  # nesterov, cosine, shifts: the default recipe
        ["optimizer.name=adam", "optimizer.lr=0.01", "schedule.name=step",
         "schedule.every_epochs=1", "schedule.gamma=0.5", "train.patience=3"],
        ["optimizer.name=sgd", "train.shift=0", "schedule.name=constant"],
    ],
    ids=["nesterov-cosine-shift", "adam-step-patience", "sgd-constant"],
)  # fmt: skip
@pytest.mark.parametrize("stop", [1, 2, 3])
def test_resumed_run_is_bitwise_the_uninterrupted_run(tmp_path, digits, extra, stop):
    cfg = Config().override(SMALL + extra)
    x, y = digits
    whole = train(cfg, x, y, run_dir=tmp_path / "whole")
    cut = train(cfg, x, y, run_dir=tmp_path / "cut", stop_after=stop)
    assert len(cut.history) == stop
    resumed = train(cfg, x, y, run_dir=tmp_path / "cut", resume=True)
    assert list(resumed.params) == list(whole.params)
    for name in whole.params:
        assert same_bits(resumed.params[name], whole.params[name]), name
    assert same_history(resumed.history, whole.history)
    # and the optimizer state on disk too
    _, state_whole, _ = load_checkpoint(tmp_path / "whole")
    _, state_resumed, _ = load_checkpoint(tmp_path / "cut")
    assert all(same_bits(state_whole[k], state_resumed[k]) for k in state_whole)


def test_resume_really_depends_on_the_checkpoint(tmp_path, digits):
    """A resume that silently restarted from scratch would still finish: show it would differ."""
    cfg = Config().override(SMALL)
    x, y = digits
    whole = train(cfg, x, y)
    train(cfg, x, y, run_dir=tmp_path, stop_after=2)
    params, state, meta = load_checkpoint(tmp_path)
    halved = {k: v / 2 for k, v in params.items()}  # a different saved state
    save_checkpoint(tmp_path, params=halved, opt_state=state, meta=meta)
    resumed = train(cfg, x, y, run_dir=tmp_path, resume=True)
    assert any(resumed.params[k].tobytes() != whole.params[k].tobytes() for k in whole.params)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, digits):
    cfg = Config().override(SMALL)
    train(cfg, *digits, run_dir=tmp_path, stop_after=1)
    with pytest.raises(
        DataError, match=r"another config .*train\.seed: 0 vs 1|train\.seed: 1 vs 0"
    ):
        train(cfg.override(["train.seed=1"]), *digits, run_dir=tmp_path, resume=True)


def test_same_seed_same_weights_other_seed_other_weights(digits):
    cfg = Config().override([*SMALL, "train.epochs=1"])
    a, b = train(cfg, *digits), train(cfg, *digits)
    c = train(cfg.override(["train.seed=1"]), *digits)
    assert all(same_bits(a.params[k], b.params[k]) for k in a.params)
    assert any(a.params[k].tobytes() != c.params[k].tobytes() for k in a.params)


def test_it_learns_the_synthetic_digits(digits):
    cfg = Config().override([*SMALL, "train.epochs=5"])
    result = train(cfg, *digits)
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    x_test, y_test = synthetic_digits(300, seed=4)
    predicted = build_model(cfg).predict(result.params, images_to_inputs(x_test)).argmax(1)
    assert np.mean(predicted == y_test) > 0.9


def unlearnable_validation(digits):
    """The held-out labels are shuffled: fitting the training set makes validation worse."""
    x, y = digits
    y = y.copy()
    y[-100:] = np.random.default_rng(5).permutation(y[-100:]) + 1
    y[-100:] %= 10
    return x, y


STOPPING = [*SMALL, "train.epochs=12", "train.patience=2", "optimizer.lr=0.3"]


def test_early_stopping_keeps_the_best_epoch_not_the_last(tmp_path):
    digits = unlearnable_validation(synthetic_digits(500, seed=3))
    result = train(Config().override(STOPPING), *digits, run_dir=tmp_path)
    assert result.stopped_early and len(result.history) == result.best_epoch + 2
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses)) and min(losses) < losses[-1]
    best = load_checkpoint(tmp_path / "best")[0]
    last = load_checkpoint(tmp_path)[0]
    assert all(same_bits(result.params[k], best[k]) for k in best)
    assert any(result.params[k].tobytes() != last[k].tobytes() for k in last)


@pytest.mark.parametrize("stop", [1, 2, 3, 4, 5])
def test_an_early_stopped_run_resumes_bitwise(tmp_path, stop):
    digits = unlearnable_validation(synthetic_digits(500, seed=3))
    cfg = Config().override(STOPPING)
    whole = train(cfg, *digits, run_dir=tmp_path / "whole")
    assert whole.stopped_early and len(whole.history) < 12
    train(cfg, *digits, run_dir=tmp_path / "cut", stop_after=stop)
    resumed = train(cfg, *digits, run_dir=tmp_path / "cut", resume=True)
    assert resumed.stopped_early and resumed.best_epoch == whole.best_epoch
    assert same_history(resumed.history, whole.history)
    assert all(same_bits(resumed.params[k], whole.params[k]) for k in whole.params)
    again = train(cfg, *digits, run_dir=tmp_path / "whole", resume=True)  # nothing left to do
    assert same_history(again.history, whole.history)
    assert all(same_bits(again.params[k], whole.params[k]) for k in whole.params)


def test_the_history_records_each_epoch(digits):
    result = train(Config().override([*SMALL, "train.epochs=2"]), *digits)
    keys = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
            "seconds", "images_per_second",
            # gradient health and the guard (nn.health, nn.guard; tested in test_guard.py)
            "grad_norm", "grad_norm_max", "global_grad_norm", "global_grad_norm_max",
            "update_ratio", "clipped_steps", "nonfinite_steps", "rollbacks", "lr_scale",
            "nonfinite", "warnings"}  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(set(r) == keys for r in result.history)
    json.dumps(result.history)  # JSON-able, for metrics.json


def test_the_checkpoint_is_npz_and_json_without_pickle(tmp_path, digits):
    train(Config().override([*SMALL, "train.epochs=1"]), *digits, run_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith("checkpoint-") and names[1] == "checkpoint.json"
    with np.load(tmp_path / names[0], allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_divergence_is_named(digits):
    cfg = Config().override([*SMALL, "optimizer.lr=1e30", "optimizer.name=sgd"])
    with pytest.raises(DivergenceError, match=r"step \d+ \(epoch 1, batch \d+ of 13") as e:
        train(cfg, *digits)  # the guard silences NumPy's overflow warnings: it names the layer
    assert e.value.finding.layer is not None and "op linear" in str(e.value)


def test_bad_arguments_are_named(digits):
    x, y = digits
    with pytest.raises(DataError, match=r"validation must be in 0\.\.499, found 500"):
        train(Config().override(["train.validation=500"]), x, y)
    with pytest.raises(DataError, match="images must be uint8"):
        images_to_inputs(x.astype(np.float32))
    with pytest.raises(DataError, match="resume needs the run folder"):
        train(Config().override(SMALL), x, y, resume=True)
    with pytest.raises(DataError, match="x_train has 500 images but y_train 499 labels"):
        train(Config().override(SMALL), x, y[:-1])
    with pytest.raises(DataError, match="stop_after must be an epoch >= 1, received 0"):
        train(Config().override(SMALL), x, y, stop_after=0)


def test_each_epoch_has_its_own_permutation():
    orders = [epoch_order(0, e, 1000) for e in range(3)]
    assert all(np.array_equal(np.sort(o), np.arange(1000)) for o in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert np.array_equal(orders[1], epoch_order(0, 1, 1000))  # a function of (seed, epoch)
    assert not np.array_equal(orders[0], epoch_order(1, 0, 1000))


def test_no_validation_split_trains_on_everything(digits):
    result = train(Config().override([*SMALL, "train.epochs=1", "train.validation=0"]), *digits)
    (record,) = result.history
    assert "val_loss" not in record and record["train_accuracy"] > 0


def test_a_config_built_in_python_is_checked_too(digits):
    from dataclasses import replace

    cfg = Config()
    bad = replace(cfg, train=replace(cfg.train, validation=0, patience=2))  # skips from_toml
    with pytest.raises(DataError, match="early stopping needs a validation split"):
        train(bad, *digits)
