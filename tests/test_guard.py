"""The non-finite guard (nn.guard) and gradient health (nn.health), alone and in the trainer."""

import math
import warnings

import numpy as np
import pytest

from conftest import mnist_sample, same_bits, synthetic_digits
from nn.activations import relu
from nn.config import Config
from nn.errors import DivergenceError, HealthWarning
from nn.guard import Guard, locate_nonfinite, squared_norms
from nn.health import EpochHealth, health_warnings, layer_names
from nn.layers import Activation, Dense
from nn.model import Sequential, mlp
from nn.norm_layers import BatchNorm, Dropout
from nn.optim import make_optimizer
from nn.step import train_step
from nn.train import train

SMALL = ["model.hidden=[16]", "train.epochs=2", "train.batch_size=32", "train.validation=100"]


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(400, seed=5)


def batch(n=8, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)).astype(np.float32), rng.integers(0, 3, n)


# --- squared_norms -------------------------------------------------------------------------


def test_squared_norms_equal_a_float64_reference():
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((30, 7)).astype(np.float32), "b": np.arange(5.0)}
    sq = squared_norms(grads)
    for k, g in grads.items():
        assert sq[k] == pytest.approx(math.fsum(float(v) ** 2 for v in g.ravel()), rel=1e-6)


def test_squared_norms_of_a_huge_finite_gradient_are_finite_and_a_nan_is_not():
    huge = np.full(4, 1e20, np.float32)  # its float32 squares overflow
    assert squared_norms({"w": huge})["w"] == pytest.approx(4e40, rel=1e-6)
    assert math.isnan(squared_norms({"w": np.array([1.0, np.nan], np.float32)})["w"])
    assert squared_norms({"w": np.array([1.0, np.inf], np.float32)})["w"] == math.inf


# --- locate_nonfinite: each place a NaN or inf can first appear ---------------------------


def test_a_clean_step_has_no_finding():
    model = mlp([6, 5, 3])
    assert locate_nonfinite(model, model.init(0), batch()) is None


def test_nan_in_the_data_is_named_as_the_input():
    model = mlp([6, 5, 3])
    x, y = batch()
    x[2, 3] = np.nan
    f = locate_nonfinite(model, model.init(0), (x, y))
    assert (f.where, f.layer, f.nan, f.size) == ("input", None, 1, 48)
    assert "data" in f.describe()


def test_a_non_finite_weight_is_named_with_its_layer_and_op():
    model = mlp([6, 5, 3])
    params = model.init(0)
    params["dense2.w"][1, 1] = -np.inf
    f = locate_nonfinite(model, params, batch())
    assert (f.where, f.layer, f.op, f.array, f.inf) == ("parameters", "dense2", "linear",
                                                         "dense2.w", 1)  # fmt: skip


def test_an_overflowing_layer_is_the_first_non_finite_output():
    model = mlp([6, 5, 5, 3], activation="relu")
    params = model.init(0)
    params["dense0.w"] = np.abs(params["dense0.w"])  # every relu1 unit positive on x > 0
    params["dense2.w"][:] = 3e38  # finite, but y = x w sums five products near 1e38: inf
    x, y = batch()
    outputs = []
    with np.errstate(all="ignore"):
        model.forward(params, x, observe=outputs.append)
    assert [np.isfinite(o).all() for o in outputs] == [True, True, False, False, False]
    f = locate_nonfinite(model, params, (x, y))  # the first of the three, not the last
    assert (f.where, f.layer, f.op, f.array) == ("forward", "dense2", "linear", "output")
    lo, hi = f.input_range  # the relu1 outputs that went in
    assert 0 < lo <= hi < 10
    assert "op linear" in f.describe() and "ranged over" in f.describe()


def naive_cross_entropy(logits, labels):
    """-log softmax(x)[y] computed the way a first attempt computes it: log of a probability."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)  # underflows to 0 for a logit gap above ~104
    n = len(labels)
    picked = p[np.arange(n), labels]
    with np.errstate(divide="ignore"):
        value = -np.mean(np.log(picked))

    def vjp(g):
        onehot = np.zeros_like(p)
        onehot[np.arange(n), labels] = 1
        return (g * (p - onehot) / n,)

    return value, vjp


def test_a_loss_that_takes_log_of_zero_is_named_as_the_loss():
    model = Sequential([Dense(3)], input_shape=(6,), loss=naive_cross_entropy)
    params = model.init(0)
    params["dense0.w"][:, 0] = 100  # class 0's logit far above the others
    x, _ = batch()
    y = np.full(len(x), 2)  # the true class gets probability exp(-gap) = 0 in float32
    f = locate_nonfinite(model, params, (x, y))
    assert (f.where, f.op, f.array, f.inf) == ("loss", "naive_cross_entropy", "loss", 1)
    assert "log-sum-exp" in f.describe() and "max |finite" not in f.describe()


def smooth_abs(x):
    """|x| as sqrt(x^2): right everywhere but at 0, where its derivative x / |x| is 0 / 0."""
    y = np.sqrt(x * x)
    return y, lambda g: (g * x / y,)


def test_a_gradient_that_is_nan_while_the_forward_pass_is_finite_is_found_in_backward():
    model = Sequential(
        [Dense(5), Activation(relu), Activation(smooth_abs), Dense(3)], input_shape=(6,)
    )  # fmt: skip  (smooth_abs passes assembly: no 0 there)
    params = model.init(0)
    f = locate_nonfinite(model, params, batch())  # relu's exact zeros reach smooth_abs
    assert (f.where, f.layer, f.op, f.array) == ("backward", "smooth_abs2", "smooth_abs", "dx")
    assert f.nan > 0 and f.inf == 0 and "0/0 in its vjp" in f.describe()  # not "overflow"


# --- policies ------------------------------------------------------------------------------


def test_raise_names_the_step_and_carries_the_finding(digits):
    cfg = Config().override([*SMALL, "optimizer.lr=1e6"])
    with pytest.raises(DivergenceError) as caught:
        train(cfg, *digits)
    message = str(caught.value)
    assert message.startswith("step ") and "(epoch 1, batch" in message
    f = caught.value.finding
    assert f is not None and f.layer is not None and f.op in message


def test_skip_drops_bad_batches_and_raises_after_ten_in_a_row():
    guard = Guard("skip")
    for _ in range(9):
        assert guard.failed(None, "step 1") is None
    with pytest.raises(DivergenceError, match="10 batches in a row"):
        guard.failed(None, "step 10")
    guard = Guard("skip")
    for _ in range(20):  # a finite step in between resets the count
        assert guard.failed(None, "step") is None
        guard.passed()


def test_rollback_returns_the_epoch_start_and_halves_the_learning_rate():
    guard = Guard("rollback")
    saved = ({"w": np.ones(2)}, {"step": np.zeros(())}, {})
    guard.start_epoch(*saved)
    for k in range(1, 11):
        assert all(a is b for a, b in zip(guard.failed(None, "step"), saved, strict=True))
        assert guard.lr_scale == 2.0**-k
    with pytest.raises(DivergenceError, match="after 10 rollbacks"):
        guard.failed(None, "step")


REAL = ["model.hidden=[800, 800]", "train.validation=100", "optimizer.lr=10"]


def test_rollback_keeps_a_diverging_run_alive_at_a_lower_learning_rate():
    # On real digits a learning rate of 10 drives the default MLP to inf (synthetic blobs
    # only kill its ReLUs); "raise" stops the run, "rollback" goes on.
    x, y = mnist_sample(1100)
    cfg = Config().override([*REAL, "train.epochs=3", "train.nonfinite=rollback"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)  # lr 10 / 2**k is still far too large
        with pytest.raises(DivergenceError):
            train(Config().override([*REAL, "train.epochs=3"]), x, y)
        result = train(cfg, x, y)
    rollbacks = sum(r["rollbacks"] for r in result.history)
    assert rollbacks >= 1 and result.history[-1]["lr_scale"] == 2.0**-rollbacks
    assert all(r["nonfinite_steps"] == r["rollbacks"] == len(r["nonfinite"])
               for r in result.history)  # fmt: skip
    assert all(np.isfinite(v).all() for v in result.params.values())


def test_a_rolled_back_run_resumes_bitwise(tmp_path):
    x, y = mnist_sample(1100)
    cfg = Config().override([*REAL, "train.epochs=3", "train.nonfinite=rollback"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)
        whole = train(cfg, x, y)
        # stop right after the epoch of the first rollback: the resumed run must take the
        # lowered learning rate from the record, not start again at lr 10
        first = next(r["epoch"] for r in whole.history if r["rollbacks"])
        assert first < len(whole.history) and whole.history[first - 1]["lr_scale"] < 1
        train(cfg, x, y, run_dir=tmp_path, stop_after=first)
        resumed = train(cfg, x, y, run_dir=tmp_path, resume=True)
    assert resumed.history[-1]["lr_scale"] == whole.history[-1]["lr_scale"]
    assert all(same_bits(whole.params[k], resumed.params[k]) for k in whole.params)


def test_the_guard_does_not_change_the_arithmetic(digits):
    cfg = Config().override(SMALL)
    on, off = train(cfg, *digits), train(cfg, *digits, guarded=False)
    assert all(same_bits(on.params[k], off.params[k]) for k in on.params)


# --- gradient health -----------------------------------------------------------------------


def test_health_is_logged_per_layer_in_every_epoch(digits):
    result = train(Config().override(SMALL), *digits)
    assert len(result.history) == 2
    for record in result.history:
        assert set(record["grad_norm"]) == {"dense0", "dense2"} == set(record["update_ratio"])
        assert all(0 < v < math.inf for v in record["grad_norm"].values())
        assert all(1e-5 < v < 0.1 for v in record["update_ratio"].values())
        assert record["global_grad_norm"] <= record["global_grad_norm_max"]
        assert record["warnings"] == [] and record["clipped_steps"] == 0


def test_clipping_bounds_every_steps_norm(digits):
    cfg = Config().override([*SMALL, "optimizer.clip_norm=0.01"])
    result = train(cfg, *digits)
    assert result.history[0]["clipped_steps"] == 10  # 300 images: every batch of 32 was clipped


def test_a_clipped_step_moves_the_weights_by_at_most_lr_times_max_norm():
    model, (x, y) = mlp([6, 5, 3]), batch()
    x = x.astype(np.float64)  # float64 throughout: float32 updates round at 1e-4 of a step
    params, opt = model.init(0, np.float64), make_optimizer("sgd", weight_decay=0.0)
    steps = {}
    for clip in (0.0, 1e-3):
        steps[clip] = train_step(
            model, opt, params, opt.init(params), {}, (x * 100, y), lr=0.5,
            rng=np.random.default_rng(0), guard=Guard("raise"),
            health=EpochHealth(layer_names(params)), clip=clip,
        )  # fmt: skip
    moved = {c: math.sqrt(sum(float(np.sum((s.params[k] - params[k]) ** 2)) for k in params))
             for c, s in steps.items()}  # fmt: skip
    assert steps[1e-3].clipped and not steps[0.0].clipped
    assert moved[1e-3] == pytest.approx(0.5 * 1e-3, rel=1e-9)
    assert moved[1e-3] < moved[0.0]


def trap_zero(x):
    """The identity, except NaN where x is exactly 0: after dropout, on the dropped entries."""
    y = np.where(x == 0, np.nan, x)
    return y, lambda g: (np.where(x == 0, 0, g),)


def test_a_skipped_step_changes_nothing_and_the_diagnosis_replays_the_dropout_masks():
    model = Sequential([Dense(64), BatchNorm(), Dropout(0.5), Activation(trap_zero), Dense(3)],
                       input_shape=(6,))  # fmt: skip
    opt = make_optimizer("momentum", beta=0.9)
    params, stats = model.init(0), model.init_state()
    opt_state, guard = opt.init(params), Guard("skip")
    health = EpochHealth(layer_names(params))
    x, y = batch(n=64)
    outputs = []  # the masks the step will draw, from a generator in the same state
    model.forward(params, x, state=stats, train=True, rng=np.random.default_rng(7),
                  observe=outputs.append)  # fmt: skip
    dropped = int(np.count_nonzero(outputs[2] == 0))
    done = train_step(model, opt, params, opt_state, stats, (x, y), lr=0.1,
                      rng=np.random.default_rng(7), guard=guard, health=health)  # fmt: skip
    assert not done.accepted and not done.rolled_back
    assert done.params is params and done.opt_state is opt_state and done.stats is stats
    assert health.norms == []  # nothing recorded for a dropped batch
    assert guard.events[0].startswith("a step: the output of layer trap_zero3 (op trap_zero)")
    assert f"{dropped} NaN in 4096 entries" in guard.events[0]  # the step's own masks


def test_an_inf_that_a_sigmoid_squashes_is_still_caught():
    # sigmoid(inf) = 1 with derivative 0: the loss and every gradient stay finite
    model = mlp([6, 5, 5, 3], activation="sigmoid")
    params = model.init(0)
    params["dense2.w"][:] = 3e38  # y = x w sums five positive products near 1e38: inf
    x, y = batch()
    with np.errstate(all="ignore"):
        value, grads = model.loss(params, (x, y))
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads.values())
    opt = make_optimizer("sgd")
    with pytest.raises(DivergenceError, match=r"the output of layer dense2 \(op linear\)"):
        train_step(model, opt, params, opt.init(params), {}, (x, y), lr=0.1,
                   rng=np.random.default_rng(0), guard=Guard("raise"),
                   health=EpochHealth(layer_names(params)))  # fmt: skip


def summary_of(norms, ratios=None):
    health = EpochHealth(list(norms[0]))
    for step in norms:
        health.record_step({f"{k}.w": v**2 for k, v in step.items()})
    health.ratios = ratios or []
    return health.summary()


def test_each_health_rule_fires_on_its_failure_and_not_on_a_healthy_epoch():
    healthy = summary_of([{"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.5}], [[1e-3, 2e-3]])
    assert health_warnings(1, healthy, None) == []
    dead = summary_of([{"a": 0.0, "b": 2.0}] * 3)
    assert "no gradient reached a" in health_warnings(1, dead, None)[0]
    mostly_zero = summary_of([{"a": 0.0, "b": 2.0}] * 2 + [{"a": 1.0, "b": 2.0}])
    assert (
        "gradient of a was exactly 0 in at least half" in health_warnings(1, mostly_zero, None)[0]
    )
    vanishing = summary_of([{"a": 1e-9, "b": 2.0}] * 3)
    assert "vanishes at a" in health_warnings(1, vanishing, None)[0]
    spike = summary_of([{"a": 1.0, "b": 1.0}] * 5 + [{"a": 1e4, "b": 1.0}])
    assert "exploded in a step" in health_warnings(1, spike, None)[0]
    grown = summary_of([{"a": 500.0, "b": 1.0}] * 3)
    assert "exploding" in health_warnings(2, grown, healthy)[0]
    large = summary_of([{"a": 1.0, "b": 1.0}], [[0.5, 1e-3]])
    assert "updates are too large at a" in health_warnings(1, large, None)[0]
    # a median of 0 (most steps without any gradient) is a finding, not a ZeroDivisionError
    silent = summary_of([{"a": 0.0, "b": 0.0}] * 3 + [{"a": 1.0, "b": 1.0}])
    assert "far above the epoch's median 0" in health_warnings(2, silent, healthy)[-1]
    assert "up from 0 last epoch" in health_warnings(2, healthy, silent)[-1]
    assert health_warnings(2, healthy, {"epoch": 1}) == []  # a record from before the log


def test_health_warnings_are_issued_as_warnings(digits):
    cfg = Config().override([*SMALL, "optimizer.lr=3", "optimizer.name=sgd",
                             "train.nonfinite=skip"])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HealthWarning)
        result = train(cfg, *digits)
    issued = [str(w.message) for w in caught if w.category is HealthWarning]
    assert issued == [w for r in result.history for w in r["warnings"]]
    assert any("updates are too large" in w for w in issued)
