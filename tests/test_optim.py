"""Optimizers: the invariants of spec/sgd.md, momentum.md, nesterov.md, adam.md, weight_decay.md.

Trajectories are checked against independent references written here: closed forms, plain
Python loops over floats one entry at a time, and the other textbook forms of each rule.
"""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn.errors import DataError, DTypeError, ShapeError
from nn.optim import SGD, Adam, Momentum, make_optimizer

# Each rule, plain and with weight decay; ids keep the reports readable.
OPTIMIZERS = [
    SGD(),
    SGD(weight_decay=0.1),
    Momentum(),
    Momentum(beta=0.5, nesterov=True, weight_decay=0.01),
    Adam(),
    Adam(beta1=0.5, beta2=0.9, weight_decay=0.1),
]
CLASSES = [SGD, Momentum, lambda **kw: Momentum(nesterov=True, **kw), Adam]
NAMES = ["dense0.w", "dense0.b", "conv.w", "scale"]
# Entries exactly representable in float32, so one draw serves both dtypes.
ENTRY = st.floats(-10, 10, width=32)


@st.composite
def problems(draw, dtypes=(np.float32, np.float64)):
    """A params dict (names, shapes with 0 to 3 axes, dtypes all drawn) and matching grads."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    params, grads = {}, {}
    for name in names:
        dtype = draw(st.sampled_from(dtypes))
        shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        params[name] = draw(arrays(dtype, shape, elements=ENTRY))
        grads[name] = draw(arrays(dtype, shape, elements=ENTRY))
    return params, grads


def run(opt, params, grad_fn, steps, lr=0.1, state=None):
    """``steps`` updates with gradients ``grad_fn(params, t)``; returns (params, state)."""
    state = opt.init(params) if state is None else state
    for t in range(steps):
        params, state = opt.update(params, grad_fn(params, t), state, lr=lr)
    return params, state


def assert_dicts_identical(a, b):
    """Same names, and bitwise-equal arrays of the same dtype and shape."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- a separable quadratic and the Python-float references -------------------------------

A = {"w": np.array([[0.5, 1.0, 2.0], [3.0, 0.7, 1.5]]), "b": np.array([0.8, 2.5, 1.2])}
B = {"w": np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), "b": np.array([-0.5, 0.25, 2.0])}


def quadratic_grads(params, t=0):
    """Gradient of sum_i (a_i w_i^2 / 2 - b_i w_i): ``a * w - b``, entry by entry."""
    return {k: A[k] * w - B[k] for k, w in params.items()}


def python_loop(step, params, steps):
    """Run ``step(w, g, memory, t) -> (w, memory)`` on Python floats, one entry at a time."""
    out = {}
    for key, w0 in params.items():
        flat = []
        for w, a, b in zip(
            w0.ravel().tolist(), A[key].ravel().tolist(), B[key].ravel().tolist(), strict=True
        ):
            memory = (0.0, 0.0)
            for t in range(1, steps + 1):
                w, memory = step(w, a * w - b, memory, t)
            flat.append(w)
        out[key] = np.array(flat).reshape(w0.shape)
    return out


W0 = {"w": np.array([[0.3, -1.0, 2.0], [0.5, 0.0, -0.7]]), "b": np.array([1.0, -2.0, 0.1])}
LR = st.floats(1e-3, 0.3)
BETA = st.floats(0.0, 0.99)
STEPS = st.integers(1, 25)


# --- spec/sgd.md ---------------------------------------------------------------------------


@pytest.mark.spec("sgd", 1)
@given(lr=st.floats(1e-3, 0.25), steps=st.integers(1, 50), w0=arrays(np.float64, 4, elements=ENTRY))
def test_sgd_on_a_quadratic_contracts_at_its_rate(lr, steps, w0):
    """Invariant 1: on f(w) = a w^2 / 2, w_t = (1 - lr a)^t w_0, with lr a from 0 to 2.5.

    Catches a wrong sign, a scaled step, or a step applied twice or not at all.
    """
    a = np.array([0.5, 1.0, 4.0, 10.0])  # lr * a reaches past the stability bound 2
    w, _ = run(SGD(), {"w": w0}, lambda p, t: {"w": a * p["w"]}, steps, lr=lr)
    closed = (1 - lr * a) ** steps * w0
    np.testing.assert_allclose(w["w"], closed, rtol=1e-13, atol=1e-13 * np.abs(w0).max())


@pytest.mark.spec("sgd", 2)
@given(problem=problems(), opt=st.sampled_from(OPTIMIZERS))
def test_update_is_pure(problem, opt):
    """Invariant 2: update mutates nothing and returns arrays that share no memory with inputs.

    Catches in-place updates (``w -= lr * g``, ``v *= beta``) of parameters or state.
    """
    params, grads = problem
    params, state = run(opt, params, lambda p, t: grads, 2)  # nonzero slots
    before = copy.deepcopy((params, grads, state))
    new_params, new_state = opt.update(params, grads, state, lr=0.1)
    for old, now in zip(before, (params, grads, state), strict=True):
        assert_dicts_identical(old, now)
    inputs = [*params.values(), *grads.values(), *state.values()]
    for out in [*new_params.values(), *new_state.values()]:
        assert isinstance(out, np.ndarray)
        assert not any(np.shares_memory(out, x) for x in inputs)


@pytest.mark.spec("sgd", 3)
@given(problem=problems(), opt=st.sampled_from(OPTIMIZERS))
def test_dtype_is_preserved(problem, opt):
    """Invariant 3: each parameter and its state keep the parameter's dtype; step is int64 0-d.

    The learning rate arrives as a NumPy float64 scalar and each gradient in the other
    dtype: under NumPy 2 either would promote float32 arithmetic to float64 if it reached it.
    Catches bias corrections or hyperparameters left as NumPy float64 scalars.
    """
    params, grads = problem
    other = {
        k: g.astype(np.float64 if g.dtype == np.float32 else np.float32) for k, g in grads.items()
    }
    new, state = run(opt, params, lambda p, t: other, 3, lr=np.float64(0.05))
    for key, w in params.items():
        assert new[key].dtype == w.dtype and new[key].shape == w.shape
        for slot in opt.slots:
            assert state[f"{slot}/{key}"].dtype == w.dtype
    assert state["step"].dtype == np.int64 and state["step"].shape == () and state["step"] == 3


@pytest.mark.spec("sgd", 3)
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_float32_tracks_float64(opt):
    """Invariant 3: float32 runs the same rule, to float32 precision (a few steps)."""
    w32 = {k: w.astype(np.float32) for k, w in W0.items()}
    new64, _ = run(opt, W0, quadratic_grads, 5, lr=0.05)
    new32, _ = run(opt, w32, quadratic_grads, 5, lr=0.05)  # float64 gradients, rounded
    for key in new64:
        assert new32[key].dtype == np.float32
        np.testing.assert_allclose(new32[key], new64[key], rtol=1e-5, atol=1e-5)


@pytest.mark.spec("sgd", 4)
@given(problem=problems(), opt=st.sampled_from(OPTIMIZERS))
def test_state_round_trips_through_npz(problem, opt):
    """Invariant 4: the state saved with np.savez and loaded back is identical, and continuing
    from it is bitwise equal to continuing without the interruption.

    Catches any state kept outside the dict (a step counter on the optimizer object).
    """
    params, grads = problem
    scaled = lambda p, t: {k: (t + 1) * g for k, g in grads.items()}  # noqa: E731
    params, state = run(opt, params, scaled, 2, lr=0.05)
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        restored = dict(saved)
    assert_dicts_identical(restored, state)
    straight = run(opt, params, scaled, 2, lr=0.05, state=state)
    resumed = run(opt, params, scaled, 2, lr=0.05, state=restored)
    for a, b in zip(straight, resumed, strict=True):
        assert_dicts_identical(a, b)


@pytest.mark.spec("sgd", 5)
@pytest.mark.parametrize(
    ("name", "hyper"),
    [
        ("sgd", {}),
        ("sgd", {"weight_decay": 1e-4}),
        ("momentum", {"beta": 0.8}),
        ("nesterov", {"beta": 0.95, "weight_decay": 5e-4}),
        ("momentum", {"nesterov": True}),
        ("adam", {"beta1": 0.8, "beta2": 0.99, "eps": 1e-7, "weight_decay": 1e-3}),
    ],
)
def test_make_optimizer_rebuilds_from_config(name, hyper):
    """Invariant 5: make_optimizer(opt.name, **opt.config()) rebuilds opt, through JSON."""
    opt = make_optimizer(name, **hyper)
    assert opt.name == ("nesterov" if hyper.get("nesterov") else name)
    assert {k: opt.config()[k] for k in hyper} == hyper
    again = make_optimizer(opt.name, **json.loads(json.dumps(opt.config())))
    assert type(again) is type(opt) and again.config() == opt.config()


@pytest.mark.spec("sgd", 5)
def test_make_optimizer_names_the_choices():
    """Invariant 5: an unknown name or hyperparameter is a ValueError listing the choices."""
    with pytest.raises(ValueError, match="'adamw'; choose from adam, momentum, nesterov, sgd"):
        make_optimizer("adamw")
    with pytest.raises(
        ValueError, match=r"'sgd' accepts weight_decay; received unknown \['beta'\]"
    ):
        make_optimizer("sgd", beta=0.9)
    with pytest.raises(ValueError, match="use 'momentum'"):
        make_optimizer("nesterov", nesterov=False)


@pytest.mark.spec("sgd", 6)
@pytest.mark.parametrize("opt", [SGD(), Momentum(), Adam()], ids=repr)
def test_bad_inputs_are_named(opt):
    """Invariant 6: names, shapes, dtypes and the state's origin are checked; errors name them."""
    params = {"w": np.ones((2, 3)), "b": np.zeros(3)}
    grads = {"w": np.ones((2, 3)), "b": np.ones(3)}
    state = opt.init(params)
    with pytest.raises(DataError, match=r"missing \['b'\], extra \['c'\]"):
        opt.update(params, {"w": grads["w"], "c": grads["b"]}, state, lr=0.1)
    with pytest.raises(ShapeError, match=r"grads\['w'\] has shape \(3, 2\), expected \(2, 3\)"):
        opt.update(params, {**grads, "w": np.ones((3, 2))}, state, lr=0.1)
    with pytest.raises(DTypeError, match=r"params\['b'\] must be a float32 or float64 array"):
        opt.update({**params, "b": np.zeros(3, dtype=int)}, grads, state, lr=0.1)
    with pytest.raises(DTypeError, match=r"grads\['b'\] must be floating point, received complex"):
        opt.update(params, {**grads, "b": np.ones(3, dtype=complex)}, state, lr=0.1)
    other = opt.init({"w": params["w"], "c": params["b"]})
    with pytest.raises(DataError, match=r"state must come from \w+\.init\(params\)"):
        opt.update(params, grads, other if opt.slots else {**state, "x": state["step"]}, lr=0.1)
    with pytest.raises(DataError, match=r"state\['step'\] must be a 0-d integer >= 0"):
        opt.update(params, grads, {**state, "step": np.array(-1)}, lr=0.1)
    if opt.slots:  # state of float64 parameters does not fit float32 ones
        as32 = {k: w.astype(np.float32) for k, w in params.items()}
        with pytest.raises(DataError, match=r"is float64 \(2, 3\), expected float32 \(2, 3\)"):
            opt.update(as32, grads, state, lr=0.1)
    for lr in (-0.1, math.nan, math.inf):
        with pytest.raises(
            ValueError, match=rf"lr must be finite and in \[0, inf\), received {lr}"
        ):
            opt.update(params, grads, state, lr=lr)
    with pytest.raises(TypeError, match="lr must be a real number"):
        opt.update(params, grads, state, lr="0.1")


@pytest.mark.spec("sgd", 6)
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Momentum(beta=1.0),
            r"Momentum: beta must be finite and in \[0, 1\), received 1.0",
        ),
        (lambda: Momentum(beta=-0.1), r"beta must be finite and in \[0, 1\), received -0.1"),
        (lambda: Adam(beta1=1.5), r"Adam: beta1 must be finite and in \[0, 1\), received 1.5"),
        (lambda: Adam(beta2=math.nan), r"beta2 must be finite and in \[0, 1\), received nan"),
        (lambda: Adam(eps=0.0), r"Adam: eps must be finite and in \(0, inf\), received 0.0"),
        (
            lambda: SGD(weight_decay=-1),
            r"weight_decay must be finite and in \[0, inf\), received -1",
        ),
    ],
)
def test_bad_hyperparameters_are_named(make, message):
    """Invariant 6: a bad hyperparameter is a ValueError naming it, its range and the value."""
    with pytest.raises(ValueError, match=message):
        make()


# --- spec/momentum.md and spec/nesterov.md -------------------------------------------------


@pytest.mark.spec("momentum", 1)
@pytest.mark.spec("nesterov", 5)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@given(problem=problems(), nesterov=st.booleans(), steps=st.integers(1, 4))
def test_momentum_with_beta_zero_is_sgd(weight_decay, problem, nesterov, steps):
    """Momentum (classical or Nesterov) with beta = 0 is SGD, bit for bit, with and without
    weight decay.

    Catches a damping factor (1 - beta) g, or a velocity that outlives beta = 0.
    """
    params, grads = problem
    decay = {"weight_decay": weight_decay}
    sgd, _ = run(SGD(**decay), params, lambda p, t: grads, steps)
    heavy, _ = run(
        Momentum(beta=0.0, nesterov=nesterov, **decay), params, lambda p, t: grads, steps
    )
    assert_dicts_identical(heavy, sgd)


def momentum_step(lr, beta, nesterov):
    def step(w, g, memory, t):
        v = beta * memory[0] + g
        return w - lr * (g + beta * v if nesterov else v), (v, 0.0)

    return step


@pytest.mark.spec("momentum", 2)
@pytest.mark.spec("nesterov", 3)
@given(lr=LR, beta=BETA, steps=STEPS, nesterov=st.booleans())
def test_momentum_matches_a_python_loop(lr, beta, steps, nesterov):
    """The trajectory on a quadratic equals a loop of the rule on Python floats."""
    expected = python_loop(momentum_step(lr, beta, nesterov), W0, steps)
    got, _ = run(Momentum(beta=beta, nesterov=nesterov), W0, quadratic_grads, steps, lr=lr)
    for key in W0:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12)


def sutskever(lr, beta, steps, look_ahead):
    """Sutskever et al. (2013): v <- beta v - lr grad(theta [+ beta v]); theta <- theta + v."""
    theta, v = dict(W0), {k: np.zeros_like(w) for k, w in W0.items()}
    for _ in range(steps):
        at = {k: theta[k] + beta * v[k] if look_ahead else theta[k] for k in theta}
        g = quadratic_grads(at)
        v = {k: beta * v[k] - lr * g[k] for k in v}
        theta = {k: theta[k] + v[k] for k in theta}
    return theta, v


@pytest.mark.spec("momentum", 3)
@given(lr=LR, beta=BETA, steps=STEPS)
def test_momentum_equals_the_sutskever_form(lr, beta, steps):
    """Invariant 3: at constant lr, PyTorch's form and Sutskever's give the same weights."""
    theta, _ = sutskever(lr, beta, steps, look_ahead=False)
    got, _ = run(Momentum(beta=beta), W0, quadratic_grads, steps, lr=lr)
    for key in W0:
        np.testing.assert_allclose(got[key], theta[key], rtol=1e-10, atol=1e-10)


@pytest.mark.spec("momentum", 4)
@given(beta=BETA, steps=st.integers(1, 60), g=arrays(np.float64, 3, elements=ENTRY))
def test_constant_gradient_velocity_is_a_geometric_sum(beta, steps, g):
    """Invariant 4: a constant gradient gives v_t = g (1 - beta^t) / (1 - beta)."""
    _, state = run(Momentum(beta=beta), {"w": np.zeros(3)}, lambda p, t: {"w": g}, steps)
    expected = g * (1 - beta**steps) / (1 - beta)
    np.testing.assert_allclose(state["velocity/w"], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.spec("nesterov", 1)
@given(
    lr=LR,
    beta=BETA,
    w0=arrays(np.float64, 4, elements=ENTRY),
    g1=arrays(np.float64, 4, elements=ENTRY),
    g2=arrays(np.float64, 4, elements=ENTRY),
)
def test_nesterov_first_two_steps(lr, beta, w0, g1, g2):
    """Invariant 1: w1 = w0 - lr (1 + beta) g1; w2 = w1 - lr ((1 + beta) g2 + beta^2 g1).

    Catches the look-ahead built from the old velocity (g + beta v_old) or left out.
    """
    gs = [g1, g2]
    opt = Momentum(beta=beta, nesterov=True)
    w1, state = run(opt, {"w": w0}, lambda p, t: {"w": gs[t]}, 1, lr=lr)
    w2, _ = run(opt, w1, lambda p, t: {"w": g2}, 1, lr=lr, state=state)
    np.testing.assert_allclose(w1["w"], w0 - lr * (1 + beta) * g1, rtol=1e-13, atol=1e-13)
    expected = w1["w"] - lr * ((1 + beta) * g2 + beta**2 * g1)
    np.testing.assert_allclose(w2["w"], expected, rtol=1e-13, atol=1e-13)


@pytest.mark.spec("nesterov", 2)
@given(lr=LR, beta=st.floats(0.1, 0.99), g=arrays(np.float64, 4, elements=st.floats(0.5, 10)))
def test_nesterov_differs_from_classical(lr, beta, g):
    """Invariant 2: for beta > 0 Nesterov's first step is longer than classical's by lr beta g."""
    w0 = {"w": np.zeros(4)}
    classical, _ = run(Momentum(beta=beta), w0, lambda p, t: {"w": g}, 1, lr=lr)
    nesterov, _ = run(Momentum(beta=beta, nesterov=True), w0, lambda p, t: {"w": g}, 1, lr=lr)
    assert np.all(nesterov["w"] < classical["w"])
    np.testing.assert_allclose(classical["w"] - nesterov["w"], lr * beta * g, rtol=1e-13)


@pytest.mark.spec("nesterov", 4)
@given(lr=LR, beta=BETA, steps=STEPS)
def test_nesterov_equals_the_look_ahead_form(lr, beta, steps):
    """Invariant 4: PyTorch's weights are Sutskever's look-ahead point theta + beta v."""
    theta, v = sutskever(lr, beta, steps, look_ahead=True)
    got, _ = run(Momentum(beta=beta, nesterov=True), W0, quadratic_grads, steps, lr=lr)
    for key in W0:
        np.testing.assert_allclose(got[key], theta[key] + beta * v[key], rtol=1e-10, atol=1e-10)


# --- spec/adam.md --------------------------------------------------------------------------

GRADIENT = st.floats(1e-4, 1e4) | st.floats(-1e4, -1e-4) | st.just(0.0)


@pytest.mark.spec("adam", 1)
@given(
    g=arrays(np.float64, 5, elements=GRADIENT),
    lr=st.floats(1e-4, 1.0),
    beta1=BETA,
    beta2=st.floats(0.0, 0.9999),
    steps=st.integers(1, 10),
)
def test_adam_constant_gradient_steps_by_lr(g, lr, beta1, beta2, steps):
    """Invariant 1: with a constant gradient g, every step moves each weight by
    -lr g / (|g| + eps): lr against the gradient's sign, short by lr eps / (|g| + eps).

    Catches a missing or off-by-one bias correction, a missing square root, eps misplaced.
    """
    opt = Adam(beta1=beta1, beta2=beta2)
    w, state = {"w": np.zeros(5)}, opt.init({"w": np.zeros(5)})
    expected = -lr * g / (np.abs(g) + opt.eps)
    assert np.all(np.abs(expected) <= lr)
    for _ in range(steps):
        new, state = opt.update(w, {"w": g}, state, lr=lr)
        np.testing.assert_allclose(new["w"] - w["w"], expected, rtol=1e-12 * steps, atol=0)
        w = new


def adam_step(lr, beta1, beta2, eps):
    def step(w, g, memory, t):
        m = beta1 * memory[0] + (1 - beta1) * g
        v = beta2 * memory[1] + (1 - beta2) * (g * g)
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        return w - lr * m_hat / (math.sqrt(v_hat) + eps), (m, v)

    return step


@pytest.mark.spec("adam", 2)
@given(lr=LR, beta1=BETA, beta2=st.floats(0.0, 0.9999), eps=st.floats(1e-8, 1e-2), steps=STEPS)
def test_adam_matches_a_python_loop(lr, beta1, beta2, eps, steps):
    """Invariant 2: the trajectory on a quadratic equals Algorithm 1 on Python floats.

    The loop rounds in the same order as the optimizer: with beta2 near 0 Adam is close to
    sign descent, which bounces chaotically and would amplify a difference of one rounding.
    """
    expected = python_loop(adam_step(lr, beta1, beta2, eps), W0, steps)
    opt = Adam(beta1=beta1, beta2=beta2, eps=eps)
    got, _ = run(opt, W0, quadratic_grads, steps, lr=lr)
    for key in W0:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-10, atol=1e-10)


@pytest.mark.spec("adam", 3)
@given(
    gs=arrays(np.float64, (5, 4), elements=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3)),
    k=st.integers(-20, 20),
    beta1=BETA,
    beta2=st.floats(0.0, 0.999),
)
def test_adam_is_invariant_to_gradient_scale(gs, k, beta1, beta2):
    """Invariant 3: gradients times c = 2^k give the same weights, bit for bit (eps negligible).

    Catches a missing square root or a v estimate that is not quadratic in g.
    """
    opt = Adam(beta1=beta1, beta2=beta2, eps=1e-30)
    w0 = {"w": np.linspace(-1, 1, 4)}
    plain, _ = run(opt, w0, lambda p, t: {"w": gs[t]}, len(gs))
    scaled, _ = run(opt, w0, lambda p, t: {"w": 2.0**k * gs[t]}, len(gs))
    assert_dicts_identical(scaled, plain)


# --- spec/weight_decay.md ------------------------------------------------------------------


@pytest.mark.spec("weight_decay", 1)
@given(problem=problems(dtypes=(np.float64,)), make=st.sampled_from(CLASSES), lam=st.floats(0, 1))
def test_weight_decay_adds_lambda_w_to_the_gradient(problem, make, lam):
    """Invariant 1: decay lambda equals adding lambda w to the gradient of every parameter with
    ndim >= 2, bit for bit, over three steps whose gradients depend on the weights.

    Catches lambda/2 w, the wrong sign, or decay applied after the rule instead of before.
    """
    params, grads = problem
    grad_fn = lambda p, t: {k: g + 0.5 * p[k] for k, g in grads.items()}  # noqa: E731
    decayed, _ = run(make(weight_decay=lam), params, grad_fn, 3)

    def with_l2(p, t):
        return {k: g + lam * p[k] if g.ndim >= 2 else g for k, g in grad_fn(p, t).items()}

    added, _ = run(make(), params, with_l2, 3)
    assert_dicts_identical(decayed, added)


@pytest.mark.spec("weight_decay", 2)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weight_decay_is_l2_regularization(seed):
    """Invariant 2: an SGD step with decay lambda is a gradient step on the loss plus
    lambda/2 ||W||^2 (weights only), the gradient of which is taken by central differences.

    Catches decay on the bias, a missing or doubled factor, decay of the wrong sign.
    """
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    lam, lr = 0.3, 0.1

    def penalized(p):
        r = x @ p["w"] + p["b"] - y
        return 0.5 * np.mean(np.sum(r * r, axis=1)) + 0.5 * lam * np.sum(p["w"] ** 2)

    r = x @ params["w"] + params["b"] - y  # (8, 2) residuals; the hand-written data gradient:
    grads = {"w": x.T @ r / len(x), "b": r.sum(axis=0) / len(x)}
    new, _ = SGD(weight_decay=lam).update(params, grads, SGD().init(params), lr=lr)
    h = 1e-5
    for key, w in params.items():
        numeric = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            e = np.zeros_like(w)
            e[i] = h
            plus, minus = penalized({**params, key: w + e}), penalized({**params, key: w - e})
            numeric[i] = (plus - minus) / (2 * h)
        np.testing.assert_allclose(new[key], w - lr * numeric, rtol=1e-8, atol=1e-9)


@pytest.mark.spec("weight_decay", 3)
@given(problem=problems(), make=st.sampled_from(CLASSES), lam=st.floats(1e-3, 1))
def test_weight_decay_leaves_biases_alone(problem, make, lam):
    """Invariant 3: parameters with ndim < 2 (biases, scales) update exactly as without decay."""
    params, grads = problem
    decayed, _ = run(make(weight_decay=lam), params, lambda p, t: grads, 2)
    plain, _ = run(make(), params, lambda p, t: grads, 2)
    small = [k for k, w in params.items() if w.ndim < 2]
    assert_dicts_identical({k: decayed[k] for k in small}, {k: plain[k] for k in small})


@pytest.mark.spec("weight_decay", 4)
@given(w=arrays(np.float64, (3, 4), elements=st.floats(0.1, 10) | st.floats(-10, -0.1)))
def test_adam_weight_decay_is_coupled_not_adamw(w):
    """Invariant 4: with zero data gradient, Adam's first decayed step moves each weight by
    lr against its sign whatever lambda: the decay term is normalized like any gradient.
    AdamW would move it by lr lambda w instead.
    """
    steps, lr = [], 0.01
    for lam in (0.01, 0.1):
        opt = Adam(weight_decay=lam)
        new, _ = opt.update({"w": w}, {"w": np.zeros_like(w)}, opt.init({"w": w}), lr=lr)
        steps.append(new["w"] - w)
        np.testing.assert_allclose(steps[-1], -lr * np.sign(w), rtol=1e-5)
    assert not np.allclose(steps[0], -lr * 0.01 * w)  # not AdamW's decoupled step


@pytest.mark.parametrize("make", CLASSES)
def test_blocks_give_bitwise_the_whole_array_update(monkeypatch, make):
    """The rule runs on blocks of BLOCK entries: parameters of several blocks and a ragged
    last one, a transposed (non-contiguous) gradient, a 0-d parameter, each updated bitwise
    as the whole arrays are (BLOCK larger than any parameter)."""
    from nn import optim

    rng = np.random.default_rng(0)
    opt = make(weight_decay=0.01)
    w, gw = rng.standard_normal((3 * 257, 67)), rng.standard_normal((67, 3 * 257))
    params = {"w": w.astype(np.float32), "b": np.ones(67, np.float32),
              "s": np.full((), 0.5, np.float32)}  # fmt: skip
    grads = {"w": gw.astype(np.float32).T, "b": rng.standard_normal(67).astype(np.float32),
             "s": np.full((), -2.0, np.float32)}  # fmt: skip

    def two_steps():
        state = opt.init(params)
        new, state = opt.update(params, grads, state, lr=0.1)
        return opt.update(new, grads, state, lr=0.05)

    monkeypatch.setattr(optim, "BLOCK", 1 << 30)
    whole, whole_state = two_steps()
    monkeypatch.setattr(optim, "BLOCK", 1000)  # 52 blocks of w, the last of 561 entries
    blocks, blocks_state = two_steps()
    pairs = [*zip(whole.values(), blocks.values(), strict=True),
             *zip(whole_state.values(), blocks_state.values(), strict=True)]  # fmt: skip
    for a, b in pairs:
        assert a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
