"""Whole networks: the gradient passes the protocol end to end (P12), and assembly is verified."""

import sys

import numpy as np
import pytest

from nn import activations
from nn.conv_layers import Conv2D, Flatten
from nn.errors import DataError, ShapeError, VerificationError
from nn.layers import Activation, Dense, Layer
from nn.model import Sequential, check_model, layer_params, mlp, one_hot
from nn.op import op
from nn.optim import SGD
from nn.testing import check_vjp


def batch_away_from_kinks(model, params, seed, n=3):
    """P5 for a whole network: redraw the batch until every pre-activation has |z| >= 1e-3."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        x = rng.standard_normal((n, *model.input_shape))
        y = rng.integers(0, model.classes, n)
        h, margin = x, np.inf
        for name, layer in zip(model.names, model.layers, strict=True):
            if isinstance(layer, Activation):
                margin = min(margin, float(np.abs(h).min()))
            h = layer.apply(layer_params(params, name), h)[0]
        if margin >= 1e-3:
            return x, y
    raise AssertionError("no batch away from the kinks")


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mean_squared_error"])
def test_whole_gradient_passes_the_protocol_at_init_and_after_steps(depth, activation, loss):
    sizes = [6] + [5] * (depth - 1) + [4]  # depth = number of Dense layers
    model = mlp(sizes, activation=activation, loss=loss)
    params = model.init(depth, np.float64)
    opt = SGD()
    state = opt.init(params)
    for step in range(2):
        x, y = batch_away_from_kinks(model, params, seed=step)
        report = check_model(model, params, (x, y), seed=step)
        assert report.passed, [c.message() for c in report.failures]
        # every parameter tensor was moved alone, and all jointly (P3)
        assert {c.input for c in report.checks if c.method == "central-difference"} >= {
            *params,
            "all inputs jointly",
        }
        for _ in range(5):  # then a few training steps, and check again (P12)
            _, grads = model.loss(params, (x, y))
            params, state = opt.update(params, grads, state, lr=0.5)


@pytest.mark.parametrize(
    ("sizes", "activation", "loss", "wrong"),
    [
        ([6, 5, 4], "tanh", "softmax_cross_entropy", "dense0.w"),
        # the hardest case for the whole-gradient atol: the first bias of a deep sigmoid net
        ([6, 5, 5, 5, 4], "sigmoid", "mean_squared_error", "dense0.b"),
    ],
)
def test_check_model_catches_a_one_percent_error_in_any_tensor(
    monkeypatch, sizes, activation, loss, wrong
):
    model = mlp(sizes, activation=activation, loss=loss)
    params = model.init(0, np.float64)
    x, y = batch_away_from_kinks(model, params, 0)
    honest = model.loss

    def scaled(params, batch, **mode):
        value, grads = honest(params, batch, **mode)
        return value, {**grads, wrong: grads[wrong] * 1.01}

    assert check_model(model, params, (x, y)).passed
    monkeypatch.setattr(model, "loss", scaled)
    report = check_model(model, params, (x, y))
    assert {c.input for c in report.failures} >= {wrong, "all inputs jointly"}


def test_gradients_keep_names_shapes_and_float32():
    model = mlp([6, 5, 4])
    params = model.init(0)
    x = np.ones((2, 6), np.float32)
    value, grads = model.loss(params, (x, np.array([1, 3])))
    assert isinstance(value, float)
    assert list(grads) == list(params)
    for k in params:
        assert grads[k].shape == params[k].shape and grads[k].dtype == np.float32


def test_model_names_the_expected_input_shape():
    model = mlp([6, 4])
    with pytest.raises(ShapeError, match=r"x must have shape \(N, 6\), received \(2, 7\)"):
        model.loss(model.init(0), (np.ones((2, 7), np.float32), np.array([0, 1])))


# --- verified assembly --------------------------------------------------------------------


class Scale(Layer):
    """A user's layer, y = x * s with a learned vector s."""

    name = "scale"

    def __init__(self, bug=1.0):
        self.bug = bug

    def init(self, rng, in_shape, dtype=np.float32):
        return {"s": (1 + rng.standard_normal(in_shape)).astype(dtype)}

    def apply(self, params, x):
        s = params["s"]
        return x * s, lambda g: (g * s, {"s": self.bug * (g * x).sum(axis=0)})


class ForgetfulScale(Scale):
    """dx = g: right only where s = 1, which is exactly where init puts it."""

    def init(self, rng, in_shape, dtype=np.float32):
        return {"s": np.ones(in_shape, dtype)}

    def apply(self, params, x):
        s = params["s"]
        return x * s, lambda g: (g, {"s": (g * x).sum(axis=0)})


def test_a_correct_user_layer_is_verified_and_accepted():
    model = Sequential([Dense(5), Scale(), Dense(3)], input_shape=(4,))
    assert model.loss(model.init(0), (np.ones((2, 4), np.float32), np.array([0, 2])))[0] > 0


def test_a_wrong_user_layer_is_refused_with_the_check_and_ratio():
    with pytest.raises(VerificationError) as e:
        Sequential([Dense(5), Scale(bug=1.01), Dense(3)], input_shape=(4,))
    message = str(e.value)
    assert "layer 1 (scale) is not a library op" in message
    assert "failed 5 of 10 checks (on s, all inputs jointly)" in message
    assert "x tolerance" in message


def test_a_bug_hidden_at_the_init_values_is_found():
    with pytest.raises(VerificationError, match=r"central-difference check on x"):
        Sequential([ForgetfulScale()], input_shape=(3,))


def test_check_vjp_labels_inputs_with_the_names_given():
    def double(x):
        return 2 * x, lambda g: (2 * g,)

    report = check_vjp(double, np.ones(3), names=["pixels"])
    assert {c.input for c in report.checks} >= {"pixels"}
    with pytest.raises(ValueError, match="names must label each of the 1 inputs"):
        check_vjp(double, np.ones(3), names=["a", "b"])


def test_a_users_activation_function_is_verified():
    def cube(x):
        return x**3, lambda g: (3 * x**2 * g,)

    def wrong_cube(x):
        return x**3, lambda g: (2 * x**2 * g,)

    Sequential([Dense(5), Activation(cube), Dense(3)], input_shape=(4,))
    with pytest.raises(VerificationError, match=r"layer 1 \(wrong_cube\)"):
        Sequential([Dense(5), Activation(wrong_cube), Dense(3)], input_shape=(4,))


def test_a_user_registered_op_is_not_trusted_without_checking(monkeypatch):
    op_module = sys.modules["nn.op"]  # the attribute nn.op is the decorator, not the module
    # register into a copy, so the library's registry (and test_contract) never sees it
    monkeypatch.setattr(op_module, "REGISTRY", dict(op_module.REGISTRY))

    @op(signature="()->()", complex_safe=True)
    def user_square(x):
        return x * x, lambda g: (g * x,)  # wrong: the derivative is 2x

    with pytest.raises(VerificationError, match="user_square"):
        Sequential([Dense(3), Activation(user_square)], input_shape=(2,))


def test_a_layer_that_crashes_is_reported():
    class Broken(Scale):
        def apply(self, params, x):
            raise RuntimeError("boom")

    with pytest.raises(VerificationError, match="could not be verified: RuntimeError: boom"):
        Sequential([Broken()], input_shape=(3,))


def test_library_layers_are_trusted_without_running_checks(monkeypatch):
    import nn.model_checks

    def fail(*args, **kwargs):
        raise AssertionError("a library layer was re-verified")

    monkeypatch.setattr(nn.model_checks, "check_vjp", fail)
    mlp([784, 800, 10])  # no check ran: Dense and relu are library parts
    with pytest.raises(AssertionError, match="re-verified"):
        Sequential([Scale()], input_shape=(3,))


def test_assembly_refuses_non_layers():
    with pytest.raises(TypeError, match=r"layer 0 must be an nn.layers.Layer .* received function"):
        Sequential([activations.relu], input_shape=(3,))


def test_one_hot_and_its_errors():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.2, received 0\.\.3"):
        one_hot(np.array([0, 3]), 3)


def test_a_layer_whose_out_shape_lies_is_refused():
    class Halve(Scale):  # keeps the default out_shape (the input's), returns half the width
        def apply(self, params, x):
            return x[:, ::2], lambda g: (np.repeat(g, 2, axis=1), {"s": np.zeros_like(params["s"])})

    with pytest.raises(VerificationError, match=r"out_shape says the output is \(2, 4\)"):
        Sequential([Halve(), Dense(3)], input_shape=(4,))


def test_only_one_array_library_ops_are_trusted_activations():
    from nn.linear import linear
    from nn.losses import mean_squared_error

    assert Activation(activations.softmax).library_ops() is not None
    for fn in (linear, mean_squared_error):
        assert Activation(fn).library_ops() is None
        with pytest.raises(ShapeError, match=r"layer 1 .*expected \d array argument"):
            Sequential([Dense(3), Activation(fn)], input_shape=(2,))  # verified: it cannot run


def test_layer_names_must_be_unique_and_dot_free():
    class Named(Scale):
        name = "a.b"

    with pytest.raises(ValueError, match=r"'a\.b0' is not"):
        Sequential([Named()], input_shape=(3,))


def test_a_users_loss_is_verified_at_assembly():
    from nn.losses import softmax_cross_entropy

    def good_loss(out, labels):
        return softmax_cross_entropy(out, labels=labels)

    def bad_loss(out, labels):  # the gradient of the mean, without the 1/N
        value, vjp = softmax_cross_entropy(out, labels=labels)
        return value, lambda g: (vjp(g)[0] * len(labels),)

    model = Sequential([Dense(4)], input_shape=(3,), loss=good_loss)
    assert model.loss_name == "good_loss" and model.config()["loss"] == "good_loss"
    with pytest.raises(VerificationError, match="loss bad_loss is not a library loss, so it"):
        Sequential([Dense(4)], input_shape=(3,), loss=bad_loss)
    with pytest.raises(VerificationError, match="loss len could not be verified: TypeError"):
        Sequential([Dense(4)], input_shape=(3,), loss=len)
    with pytest.raises(ValueError, match=r"or a function fn\(outputs, labels\)"):
        Sequential([Dense(4)], input_shape=(3,), loss="hinge")


FIRST_LAYERS = {  # a network whose first layer can skip dx, and its input shape
    "dense": (lambda: [Dense(5), Activation(activations.relu), Dense(4)], (6,)),
    "dense on a sequence": (lambda: [Dense(5), Activation(activations.relu), Dense(4)], (3, 6)),
    "conv2d": (lambda: [Conv2D(4, kernel=3, padding=1), Activation(activations.relu),
                        Conv2D(3, kernel=3), Flatten(), Dense(10)], (2, 6, 6)),
}  # fmt: skip


@pytest.mark.parametrize("first", FIRST_LAYERS)
def test_a_first_layers_input_gradient_is_skipped_and_the_gradients_are_the_same(
    monkeypatch, first
):
    """The input is data, so the model asks its first Dense or Conv2D for no dx (a third of a
    dense layer's backward work, a conv's col2im); every parameter gradient is bitwise what
    the full backward pass gives, and a model asked for the layer inputs' cotangents
    (nn.trace, the doctor) still gets the first one."""
    layers, shape = FIRST_LAYERS[first]
    model = Sequential(layers(), input_shape=shape)
    params = model.init(0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, *shape)).astype(np.float32)
    out, vjp, _ = model.forward(params, x)
    g = rng.standard_normal(out.shape).astype(np.float32)
    cotangents: list[np.ndarray] = []
    full = vjp(g, cotangents=cotangents)
    assert cotangents[-1].shape == x.shape
    calls = []
    real = model.layers[0].apply

    def counting_apply(p, x_):
        y_, layer_vjp = real(p, x_)

        def spy(g_, **options):
            calls.append(options)
            dx, dparams = layer_vjp(g_, **options)
            assert dx is None
            return dx, dparams

        return y_, spy

    monkeypatch.setattr(model.layers[0], "apply", counting_apply)
    _, vjp2, _ = model.forward(params, x)
    skipped = vjp2(g)
    assert calls == [{"input_grad": False}]
    assert all(full[k].tobytes() == skipped[k].tobytes() for k in full)
