"""The five classic failures of issue 4, reproduced, each with its named diagnosis.

1. a deep sigmoid network with N(0, 1) weights: the doctor says the units saturate and why;
2. a learning rate of 10: the trainer's guard stops at the first inf, naming step, layer, op;
3. a hand-written cross-entropy that takes log(0): the guard names the loss and log-sum-exp;
4. a weight of the wrong shape: a ShapeError naming the layer, its op's signature, the shapes;
5. a network whose ReLUs all died: the gradient-health log and the doctor both say so.

They run on real digits (tests/data: the first 1200 MNIST training images), because some of
them, such as 2, do not happen on synthetic blobs. The tutorial docs/debugging.md shows the
same failures on the whole of MNIST.
"""

import warnings

import numpy as np
import pytest

from conftest import mnist_sample
from nn.config import Config
from nn.doctor import diagnose
from nn.errors import DivergenceError, HealthWarning, ShapeError
from nn.losses import softmax_cross_entropy
from nn.model import Sequential, mlp
from nn.optim import make_optimizer
from nn.train import build_model, images_to_inputs, train

REAL = ["model.hidden=[800, 800]", "train.validation=100", "train.epochs=3"]


@pytest.fixture(scope="module")
def digits():
    return mnist_sample(1100)


@pytest.fixture(scope="module")
def batch(digits):
    x, y = digits
    return images_to_inputs(x[:128]), y[:128].astype(np.int64)


def kinds(diagnosis):
    return {(f.kind, f.layer) for f in diagnosis.findings}


def test_1_deep_sigmoid_with_standard_normal_weights_saturates(batch):
    model = mlp([784, 100, 100, 100, 100, 10], activation="sigmoid")
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape).astype(np.float32) if k.endswith(".w") else v
              for k, v in model.init(0).items()}  # fmt: skip
    d = diagnose(model, params, batch)
    assert ("init_scale", "dense0") in kinds(d) and ("saturated", "sigmoid1") in kinds(d)
    saturated = next(f for f in d.findings if f.kind == "saturated")
    assert "N(0,1)" in saturated.message or "std 1" in saturated.message
    # Glorot's weights: no unit saturates (its gradient still shrinks by sigma' <= 1/4 a layer)
    glorot = kinds(diagnose(model, model.init(0), batch))
    assert not {k for k, _ in glorot} & {"init_scale", "saturated"}


def test_2_a_learning_rate_of_10_diverges_and_the_guard_names_where(digits, batch):
    cfg = Config().override([*REAL, "optimizer.lr=10"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)  # epoch 1's huge steps are warned of
        with pytest.raises(DivergenceError) as caught:
            train(cfg, *digits)
    message, f = str(caught.value), caught.value.finding
    assert message.startswith("step ") and "lr " in message
    assert f.layer in {"dense0", "dense2", "dense4"} and f.op == "linear"
    assert f.where in {"forward", "backward"} and f.nan + f.inf > 0
    assert f"layer {f.layer} (op linear)" in message and "learning rate too large" in message
    # and the doctor sees it coming from one batch, before any training:
    model = build_model(cfg)
    d = diagnose(model, model.init(0), batch, optimizer=make_optimizer("nesterov", beta=0.9),
                 lr=10.0)  # fmt: skip
    assert "lr_too_large" in {k for k, _ in kinds(d)}


def naive_cross_entropy(logits, labels):
    """-log softmax(x)[y], computed as a first attempt does: the log of a probability."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)  # (N, K); 0 in float32 for a logit gap above ~104
    n = len(labels)
    with np.errstate(divide="ignore"):
        value = -np.mean(np.log(p[np.arange(n), labels]))

    def vjp(g):
        onehot = np.zeros_like(p)
        onehot[np.arange(n), labels] = 1
        return (g * (p - onehot) / n,)

    return value, vjp


def test_3_a_hand_written_cross_entropy_takes_log_of_zero(digits):
    cfg = Config().override([*REAL, "optimizer.lr=1"])
    base = build_model(cfg)  # passes assembly: the loss is right, only its numerics are not
    model = Sequential(base.layers, input_shape=base.input_shape, loss=naive_cross_entropy)
    with pytest.raises(DivergenceError) as caught:
        train(cfg, *digits, model=model)
    f = caught.value.finding
    assert (f.where, f.op, f.array, f.inf) == ("loss", "naive_cross_entropy", "loss", 1)
    assert "log-sum-exp" in str(caught.value)
    # the library's loss on logits that far apart stays finite (log-sum-exp)
    logits, labels = np.array([[0.0, 150.0]], np.float32), np.array([0])
    assert np.isinf(naive_cross_entropy(logits, labels)[0])
    assert softmax_cross_entropy(logits, labels=labels)[0] == pytest.approx(150.0)


def test_4_a_weight_of_the_wrong_shape_is_named_before_any_arithmetic(batch):
    model = mlp([784, 800, 800, 10])
    params = model.init(0)
    params["dense0.w"] = params["dense0.w"].T  # stored (out, in), as some books write W x
    with pytest.raises(ShapeError) as caught:
        model.loss(params, batch)
    assert str(caught.value) == (
        "model: layer 0 (dense0) takes inputs (N, 784) and needs dense0.w (784, 800), but "
        "params has dense0.w (800, 784) (op linear: (n,d),(d,m),(m)->(n,m)); were these "
        "parameters made for another model?"
    )
    # a shape that its own op accepts is caught too, not blamed on the next layer
    params = model.init(0)
    params["dense2.w"] = params["dense2.w"][:, :10]  # (800, 10): linear runs, dense4 would fail
    with pytest.raises(ShapeError, match=r"layer 2 \(dense2\) takes inputs \(N, 800\)"):
        model.loss(params, batch)


def test_5_all_dead_relus_are_reported_by_training_and_by_the_doctor(digits, batch):
    cfg = Config().override([*REAL, "optimizer.lr=3"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HealthWarning)
        result = train(cfg, *digits)
    issued = [str(w.message) for w in caught if w.category is HealthWarning]
    assert any("no gradient reached dense0" in w for w in issued)
    assert result.history[-1]["grad_norm"]["dense0"] == 0.0
    d = diagnose(build_model(cfg), result.params, batch, trained=True)
    dead = [f for f in d.findings if f.kind == "dead_relu"]
    assert {f.layer for f in dead} >= {"relu1"} and "100%" in dead[0].message
