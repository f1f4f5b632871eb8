"""The op contract and the gradient protocol, for every registered op.

Each test is parametrized over the registry, so an op added later is checked here the moment
it is registered: gradient protocol P1-P4 and P7 at several samples, float32 agreement,
shape laws drawn by Hypothesis from the op's own signature (P10), and named errors for bad
shapes and dtypes. Per-op files hold the forward references (P8) and numbered invariants.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays, mutually_broadcastable_shapes

import nn
from nn.op import REGISTRY, Signature
from nn.testing import check_float32, check_vjp, sample_inputs

OPS = sorted(REGISTRY)
# Elementwise ops, "()->()", accept every shape; only ops with core dimensions have bad ones.
OPS_WITH_CORE_DIMS = [n for n in OPS if any(REGISTRY[n].signature.inputs)]


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loop", [(), (2, 3)], ids=["core", "loop"])
def test_gradient_protocol(name, seed, loop):
    """P1-P4, P7: complex step, central differences, full Jacobian, reentrancy, contract."""
    info = REGISTRY[name]
    x, static = sample_inputs(info, seed=seed, loop=loop)
    report = check_vjp(info.fn, *x, static=static, seed=seed)
    methods = {c.method for c in report.checks}
    assert {"contract", "reentrancy", "central-difference", "jacobian"} <= methods
    assert ("complex-step" in methods) == info.complex_safe


@pytest.mark.parametrize("name", OPS)
def test_gradient_protocol_at_larger_scale(name):
    """P2 at inputs of scale 5: saturated activations and peaked softmaxes still pass."""
    info = REGISTRY[name]
    x, static = sample_inputs(info, seed=7)
    check_vjp(info.fn, *(5 * a for a in x), static=static, seed=7)


@pytest.mark.parametrize("name", OPS)
def test_float32_forward_agrees_with_float64(name):
    """P0: float32 in gives float32 out, equal to the float64 forward to float32 precision."""
    info = REGISTRY[name]
    for seed in range(3):
        x, static = sample_inputs(info, seed=seed)
        check_float32(info.fn, *x, static=static)


@pytest.mark.parametrize("name", OPS)
def test_shape_laws(name):
    """P10: for any shapes the signature admits, out and every cotangent have the law's shape.

    An op with derived output sizes (a convolution's) either raises a ShapeError, when the
    static arguments leave no output, or returns exactly the derived shape.
    """
    info = REGISTRY[name]
    inputs = info.signature.text.split("->")[0]  # Hypothesis knows nothing of derived sizes
    shapes = mutually_broadcastable_shapes(
        signature=inputs + "->()", max_side=4, max_dims=2 if info.loops else 0
    )

    @given(shapes=shapes, data=st.data())
    def law(shapes, data):
        xs = tuple(
            data.draw(arrays(np.float64, s, elements=st.floats(-5, 5, allow_subnormal=False)))
            for s in shapes.input_shapes
        )
        rng = np.random.default_rng(0)
        static = info.static(rng, *xs) if info.static else {}
        try:
            expected = info.output_shape([a.shape for a in xs], static)
        except nn.ShapeError:
            with pytest.raises(nn.ShapeError, match=f"^{name}: "):
                info.fn(*xs, **static)
            return
        out, vjp = info.fn(*xs, **static)
        assert out.shape == expected
        assert out.dtype == np.float64
        cotangents = vjp(np.ones(out.shape))
        assert [c.shape for c in cotangents] == [a.shape for a in xs]
        assert all(c.dtype == np.float64 for c in cotangents)
        assert np.isfinite(out).all() and all(np.isfinite(c).all() for c in cotangents)

    law()


def _bad_shapes(sig: Signature, good: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """Shape lists that break ``sig``: a core size disagreeing, too few dimensions, loops."""
    bad = []
    for i, core in enumerate(sig.inputs):
        if core:
            bad.append([s if j != i else () for j, s in enumerate(good)])  # rank too low
        for pos, dim in enumerate(core):
            if any(dim in other for j, other in enumerate(sig.inputs) if j != i):
                shape = list(good[i])
                shape[len(shape) - len(core) + pos] += 1  # disagree with another input
                bad.append([tuple(shape) if j == i else s for j, s in enumerate(good)])
    if len(sig.inputs) > 1:  # loop dimensions 2 and 3 do not broadcast
        bad.append([((2,) if j == 0 else (3,)) + s for j, s in enumerate(good)])
    return bad


@pytest.mark.parametrize("name", OPS_WITH_CORE_DIMS)
def test_bad_shapes_raise_shape_error_naming_op_and_signature(name):
    """A shape that breaks the signature is a ShapeError naming op, signature and shapes."""
    info = REGISTRY[name]
    x, static = sample_inputs(info, loop=())
    cases = _bad_shapes(info.signature, [a.shape for a in x])
    assert cases, "every op has at least one way to get its shapes wrong"
    for shapes in cases:
        bad = [np.zeros(s) for s in shapes]
        with pytest.raises(nn.ShapeError) as err:
            info.fn(*bad, **static)
        message = str(err.value)
        assert message.startswith(f"{name}: ")
        assert f"signature {info.signature.text}, received shapes " in message
        assert message.endswith(", ".join(str(s) for s in shapes))


@pytest.mark.parametrize("name", OPS)
def test_wrong_number_of_arrays_is_a_shape_error(name):
    info = REGISTRY[name]
    x, static = sample_inputs(info)
    with pytest.raises(nn.ShapeError, match=f"expected {len(x)} array argument"):
        info.fn(*x, x[0], **static)


@pytest.mark.parametrize("name", OPS)
def test_bad_dtypes_raise_dtype_error(name):
    """Integers, Python lists and mixed float widths are refused before any arithmetic."""
    info = REGISTRY[name]
    x, static = sample_inputs(info)
    with pytest.raises(nn.DTypeError, match="floating"):
        info.fn(*(a.astype(np.int64) for a in x), **static)
    with pytest.raises(nn.DTypeError, match="NumPy array"):
        info.fn(*(a.tolist() for a in x), **static)
    if len(x) > 1:
        mixed = (x[0].astype(np.float32), *x[1:])
        with pytest.raises(nn.DTypeError, match="share one dtype"):
            info.fn(*mixed, **static)


@pytest.mark.parametrize("name", OPS)
def test_cotangent_of_wrong_shape_is_a_shape_error(name):
    info = REGISTRY[name]
    x, static = sample_inputs(info)
    out, vjp = info.fn(*x, **static)
    with pytest.raises(nn.ShapeError, match="cotangent g"):
        vjp(np.ones((*out.shape, 2)))


def test_every_op_is_exported_by_name():
    """Users import ops from the package: nn.<op> is the registered function."""
    for name, info in REGISTRY.items():
        assert getattr(nn, name) is info.fn


@pytest.mark.parametrize(
    "text", ["(n,d)(d)->()", "n->n", "(a)->(b),(c)", "(a)", "(a),->(a)", "(a,)->(a)"]
)
def test_malformed_signature_is_refused(text):
    with pytest.raises(ValueError, match="signature"):
        Signature.parse(text)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("g", [None, "2", True, np.array(["a"]), [1.0]])
def test_cotangent_that_is_not_numbers_is_a_dtype_error(name, g):
    """vjp(None) used to give all-NaN cotangents silently (np.asarray(None, float) is NaN)."""
    info = REGISTRY[name]
    x, static = sample_inputs(info)
    _, vjp = info.fn(*x, **static)
    with pytest.raises(nn.DTypeError, match="cotangent g"):
        vjp(g)


NONEMPTY = [(n, d) for n in OPS for d in REGISTRY[n].nonempty]


@pytest.mark.parametrize(("name", "dim"), NONEMPTY, ids=[f"{n}-{d}" for n, d in NONEMPTY])
def test_empty_core_dimension_is_a_named_shape_error(name, dim):
    """Softmax over no classes or a mean over no examples is refused, not returned as NaN."""
    info = REGISTRY[name]
    x, static = sample_inputs(info, loop=())
    empty = [
        np.zeros([0 if d == dim else n for d, n in zip(core, a.shape, strict=True)])
        for core, a in zip(info.signature.inputs, x, strict=True)
    ]
    with pytest.raises(nn.ShapeError, match=f"dimension '{dim}' must be at least 1"):
        info.fn(*empty, **static)


def test_errors_name_the_argument():
    x, w, b = sample_inputs(nn.linear, loop=())[0]
    with pytest.raises(nn.DTypeError, match=r"argument 1 \(w\)"):
        nn.linear(x, w.astype(np.int32), b)
    with pytest.raises(
        nn.ShapeError, match=r"'d' is 5 in argument 0 \(x\) but 6 in argument 1 \(w\)"
    ):
        nn.linear(x, np.zeros((6, 6)), b)
    with pytest.raises(nn.DTypeError, match=r"argument 0 \(x\) float32, argument 1 \(w\) float64"):
        nn.linear(x.astype(np.float32), w, b)


def test_output_dimension_of_no_input_needs_a_derive_function():
    with pytest.raises(ValueError, match=r"output dimension\(s\) \['m'\] of no input need"):
        nn.op(signature="(n)->(m)", complex_safe=False)


def test_derived_output_sizes_come_from_derive_and_must_be_positive():
    sig = Signature.parse("(n,h)->(n,p)")
    assert sig.derived == ("p",)

    def derive(sizes, *, window):
        return {"p": sizes["h"] - window + 1}

    assert sig.output_shape("win", [(2, 5)], derive=derive, static={"window": 3}) == (2, 3)
    with pytest.raises(nn.ShapeError, match=r"^win: output dimension 'p' would be -1 .*window=7"):
        sig.output_shape("win", [(2, 5)], derive=derive, static={"window": 7})


def test_an_op_without_loops_refuses_extra_dimensions():
    sig = Signature.parse("(n,h)->(n,h)")
    assert sig.output_shape("f", [(3, 2, 5)]) == (3, 2, 5)
    with pytest.raises(nn.ShapeError, match=r"exactly 2 dimension\(s\) \(n,h\), received 3"):
        sig.output_shape("f", [(3, 2, 5)], loops=False)
