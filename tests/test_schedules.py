"""Learning-rate schedules: the invariants of spec/schedules.md."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nn.schedules import Constant, CosineDecay, StepDecay, make_schedule

LR = st.floats(1e-6, 10.0)
NO_WARMUP = st.just(0)


@st.composite
def schedules(draw, warmup=NO_WARMUP):
    """Any schedule with drawn hyperparameters; totals up to 1e9 steps (rounding near the end)."""
    lr = draw(LR)
    kind = draw(st.sampled_from(["constant", "step", "cosine"]))
    if kind == "constant":
        return Constant(lr, warmup=draw(warmup))
    if kind == "step":
        every, gamma = draw(st.integers(1, 1000)), draw(st.floats(1e-3, 1.0))
        return StepDecay(lr, every=every, gamma=gamma, warmup=draw(warmup))
    total, final = draw(st.integers(1, 10**9)), draw(st.floats(0.0, lr))
    return CosineDecay(lr, total=total, final=final, warmup=draw(warmup))


def probe_steps(schedule, extra):
    """The steps worth looking at: the start, both sides of every decay boundary, the end."""
    around = [0, 1, 2, *extra]
    for key in ("every", "total", "warmup"):
        k = getattr(schedule, key, 0)
        around += [k - 2, k - 1, k, k + 1, 2 * k, 3 * k - 1, 3 * k]
    return sorted({s for s in around if s >= 0})


@pytest.mark.spec("schedules", 1)
@given(lr=st.floats(0.0, 10.0), steps=st.lists(st.integers(0, 10**12), max_size=5))
def test_constant_is_constant(lr, steps):
    """Invariant 1: Constant(lr) is lr at every step, exactly."""
    assert all(Constant(lr)(s) == lr for s in [0, *steps])


@pytest.mark.spec("schedules", 2)
def test_step_decay_known_values():
    """Invariant 2: lr gamma^(step // every): flat within a period, one factor at each boundary."""
    schedule = StepDecay(0.1, every=10, gamma=0.5)
    expected = {0: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025, 29: 0.025, 30: 0.0125}
    assert {s: schedule(s) for s in expected} == expected


@pytest.mark.spec("schedules", 2)
@given(lr=LR, every=st.integers(1, 50), gamma=st.floats(1e-3, 1.0), period=st.integers(0, 20))
def test_step_decay_boundaries(lr, every, gamma, period):
    """Invariant 2: every step of period j has the value lr gamma^j; the next period's first
    step is that value times gamma, to rounding.

    Catches an off-by-one boundary (step // every + 1, or (step + 1) // every).
    """
    schedule = StepDecay(lr, every=every, gamma=gamma)
    start = period * every
    values = {schedule(s) for s in range(start, start + every)}
    assert values == {lr * gamma**period}
    assert math.isclose(schedule(start + every), gamma * schedule(start), rel_tol=1e-13)


@pytest.mark.spec("schedules", 3)
def test_cosine_known_values():
    """Invariant 3: half a cosine from lr to final; known values of (1 + cos(pi s / T)) / 2."""
    schedule = CosineDecay(1.0, total=100)
    assert schedule(0) == 1.0 and schedule(100) == 0.0 and schedule(10**6) == 0.0
    assert math.isclose(schedule(25), (1 + math.sqrt(0.5)) / 2, rel_tol=1e-15)
    assert math.isclose(schedule(50), 0.5, rel_tol=1e-15)
    assert math.isclose(schedule(75), (1 - math.sqrt(0.5)) / 2, rel_tol=1e-14)
    # The textbook form final + (lr - final) (1 + cos) / 2 gives 0.30000000000000004 here.
    assert CosineDecay(0.3, total=10, final=0.03)(0) == 0.3


@pytest.mark.spec("schedules", 3)
@given(lr=LR, fraction=st.floats(0.0, 1.0), half=st.integers(1, 10**6), t=st.integers(0, 10**6))
def test_cosine_endpoints_midpoint_and_symmetry(lr, fraction, half, t):
    """Invariant 3: lr at step 0 and final from total on, exactly; (lr + final) / 2 at the
    midpoint and s(t) + s(total - t) = lr + final, to rounding.

    Catches a quarter cosine, cos(pi s / T) without the half, or the wrong endpoint.
    """
    final, total = fraction * lr, 2 * half
    schedule = CosineDecay(lr, total=total, final=final)
    assert schedule(0) == lr and schedule(total) == final and schedule(total + t) == final
    assert math.isclose(schedule(half), (lr + final) / 2, rel_tol=1e-14)
    t = t % (total + 1)
    assert math.isclose(schedule(t) + schedule(total - t), lr + final, rel_tol=1e-12)


@pytest.mark.spec("schedules", 4)
@given(schedule=schedules(), extra=st.lists(st.integers(0, 2 * 10**9), max_size=20))
# At T = 1e9 the drop at T - 1 rounds to 1 and 1 - fl(0.9) = 0.09999999999999998 < final.
@example(schedule=CosineDecay(1.0, total=10**9, final=0.1), extra=[])
def test_schedules_never_increase(schedule, extra):
    """Invariant 4: without warmup every schedule is non-increasing in the step, and stays in
    [final, lr] (final = 0 for step decay, lr for a constant).

    Checked at both sides of each boundary and of the end, where rounding could misbehave.
    Catches a cosine without the clamp at final (the explicit example).
    """
    steps = probe_steps(schedule, extra)
    values = [schedule(s) for s in steps]
    pairs = list(zip(steps, values, strict=True))
    assert all(b <= a for a, b in itertools.pairwise(values)), pairs
    assert all(getattr(schedule, "final", 0.0) <= v <= schedule.lr for v in values)


@pytest.mark.spec("schedules", 5)
@given(schedule=schedules(warmup=st.integers(1, 100)), extra=st.lists(st.integers(0, 300)))
def test_warmup_ramps_linearly(schedule, extra):
    """Invariant 5: with warmup W the value is the schedule's times (step + 1) / W below W,
    and the schedule's own value from W - 1 on.
    """
    plain = make_schedule(schedule.name, **{**schedule.config(), "warmup": 0})
    w = schedule.warmup
    for s in probe_steps(schedule, extra):
        factor = min(1.0, (s + 1) / w)
        assert math.isclose(schedule(s), plain(s) * factor, rel_tol=1e-15)
        if s >= w - 1:
            assert schedule(s) == plain(s)
    assert Constant(1.0, warmup=4)(0) == 0.25


@pytest.mark.spec("schedules", 6)
@given(schedule=schedules(warmup=st.integers(0, 10)), steps=st.lists(st.integers(0, 10**6)))
def test_make_schedule_rebuilds_from_config(schedule, steps):
    """Invariant 6: make_schedule(s.name, **s.config()) rebuilds s, through JSON."""
    again = make_schedule(schedule.name, **json.loads(json.dumps(schedule.config())))
    assert type(again) is type(schedule) and again.config() == schedule.config()
    assert [again(s) for s in steps] == [schedule(s) for s in steps]


@pytest.mark.spec("schedules", 6)
def test_make_schedule_names_the_choices():
    """Invariant 6: an unknown name or keyword is a ValueError listing the choices."""
    with pytest.raises(ValueError, match="'linear'; choose from constant, cosine, step"):
        make_schedule("linear", 0.1)
    with pytest.raises(ValueError, match=r"accepts every, gamma, warmup; received unknown \['t'\]"):
        make_schedule("step", 0.1, every=2, gamma=0.5, t=1)


@pytest.mark.spec("schedules", 7)
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Constant(-1.0), ValueError, r"Constant: lr must be finite and in \[0, inf\)"),
        (
            lambda: Constant(math.inf),
            ValueError,
            r"lr must be finite and in \[0, inf\), received inf",
        ),
        (lambda: StepDecay(0.1, every=0, gamma=0.5), ValueError, "every must be an integer >= 1"),
        (lambda: StepDecay(0.1, every=2.5, gamma=0.5), TypeError, "every must be an integer"),
        (
            lambda: StepDecay(0.1, every=2, gamma=1.5),
            ValueError,
            r"gamma must be finite and in \(0, 1\]",
        ),
        (
            lambda: CosineDecay(0.1, total=0),
            ValueError,
            "total must be an integer >= 1, received 0",
        ),
        (
            lambda: CosineDecay(0.1, total=9, final=0.2),
            ValueError,
            r"final must be finite and in \[0, 0.1\]",
        ),
        (
            lambda: Constant(0.1, warmup=-1),
            ValueError,
            "warmup must be an integer >= 0, received -1",
        ),
        (lambda: Constant(0.1)(-1), ValueError, "step must be an integer >= 0, received -1"),
        (lambda: Constant(0.1)(1.0), TypeError, "step must be an integer, received 1.0"),
    ],
)
def test_bad_schedule_arguments_are_named(make, error, message):
    """Invariant 7: a bad argument is an error naming it, what is allowed and what was received."""
    with pytest.raises(error, match=message):
        make()
