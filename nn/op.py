"""The op contract, declared in one place.

An op is a pure function ``op(*arrays, **static) -> (out, vjp)``:

* the positional arguments are the arrays the op is differentiable in;
* keyword-only arguments are static (integer labels, axes, masks, an ``rng``);
* ``vjp(g)`` takes a cotangent ``g`` shaped like ``out`` and returns a tuple with one
  cotangent per positional array, each with its input's shape and dtype.

The :func:`op` decorator registers an op with its spec id, its shape signature in
NumPy's generalized-ufunc notation (``"(n,d),(d,m),(m)->(n,m)"``), whether it is
complex-safe and where its kinks are, and it checks every call against the signature
so that a bad shape raises :class:`~nn.errors.ShapeError` naming the op, the signature
and the shapes received, instead of a bare NumPy broadcasting error deep inside. The
arrays must be float32 or float64 (complex64 or complex128 only for a complex-safe op) and
share one dtype, else :class:`~nn.errors.DTypeError`; a missing or misspelt keyword
argument is a ``TypeError`` that lists the ones the op takes. Values are not checked: a NaN
or an inf goes through the IEEE arithmetic as in NumPy, under the caller's ``np.errstate``
(the trainer's guard is what names them; docs/bad-input.md).

Loop dimensions follow gufunc rules: leading dimensions outside the core ones
broadcast against each other, and a vjp sums a cotangent back over the dimensions its
input was broadcast along (:func:`unbroadcast`). An op registered with ``loops=False``
(``conv2d``: its inputs already have a batch axis) takes no loop dimensions.

An output dimension that no input has is *derived*: its size follows from the inputs' core
sizes and the static arguments, by the op's ``derive`` function. ``conv2d``'s
``(n,c,h,w),(k,c,r,s),(k)->(n,k,p,q)`` derives ``p`` and ``q`` from ``h``, ``r``, the
stride, the padding and the dilation. The check refuses static arguments that would make a
derived size less than 1, before any arithmetic.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nn.errors import DTypeError, ShapeError

Array = np.ndarray[Any, Any]
VJP = Callable[[Any], tuple[Array, ...]]
OpFn = Callable[..., tuple[Array, VJP]]
Shape = tuple[int, ...]
Derive = Callable[..., dict[str, int]]
"""``derive(sizes, **static) -> {name: size}`` for the derived output dimensions."""

_CORE = re.compile(r"\(([^()]*)\)")
_SIDE = re.compile(r"\(\w*(,\w+)*\)(,\(\w*(,\w+)*\))*")


@dataclass(frozen=True)
class Signature:
    """A parsed gufunc signature: the core dimension names of each input and the output."""

    text: str
    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Parse ``"(n,d),(d,m),(m)->(n,m)"``; raise ``ValueError`` if it is not of that form."""
        if text.count("->") != 1:
            raise ValueError(f"signature {text!r} needs exactly one '->'")
        left, right = text.replace(" ", "").split("->")

        def groups(side: str) -> tuple[tuple[str, ...], ...]:
            if not _SIDE.fullmatch(side):
                raise ValueError(f"signature {text!r}: cannot read {side!r}")
            return tuple(tuple(n for n in g.split(",") if n) for g in _CORE.findall(side))

        inputs, outputs = groups(left), groups(right)
        if len(outputs) != 1:
            raise ValueError(f"signature {text!r} must have one output")
        return cls(text.replace(" ", ""), inputs, outputs[0])

    @property
    def derived(self) -> tuple[str, ...]:
        """Output dimensions of no input: their sizes come from the op's ``derive``."""
        known = {n for core in self.inputs for n in core}
        return tuple(n for n in self.output if n not in known)

    def output_shape(
        self,
        op: str,
        shapes: list[Shape],
        names: tuple[str, ...] = (),
        nonempty: tuple[str, ...] = (),
        *,
        loops: bool = True,
        derive: Derive | None = None,
        static: dict[str, Any] | None = None,
    ) -> Shape:
        """Check ``shapes`` against the signature; return the output's shape.

        ``names`` are the arguments' names for the messages; core dimensions in ``nonempty``
        must be at least 1; with ``loops=False`` no input may have loop dimensions. Derived
        output sizes come from ``derive(sizes, **static)`` and must be at least 1. Raises
        :class:`~nn.errors.ShapeError` naming ``op``, the signature and every shape received.
        """

        def fail(why: str) -> ShapeError:
            got = ", ".join(str(s) for s in shapes)
            return ShapeError(f"{op}: {why}; signature {self.text}, received shapes {got}")

        def arg(i: int) -> str:
            return _arg_label(i, names)

        if len(shapes) != len(self.inputs):
            raise fail(f"expected {len(self.inputs)} array argument(s), received {len(shapes)}")
        sizes: dict[str, tuple[int, int]] = {}  # core name -> (size, input that set it)
        loops_: list[Shape] = []
        for i, (shape, core) in enumerate(zip(shapes, self.inputs, strict=True)):
            if len(shape) < len(core):
                raise fail(
                    f"{arg(i)} needs at least {len(core)} dimension(s) ({','.join(core)}), "
                    f"received {len(shape)}"
                )
            split = len(shape) - len(core)
            if split and not loops:
                raise fail(
                    f"{arg(i)} must have exactly {len(core)} dimension(s) ({','.join(core)}), "
                    f"received {len(shape)}"
                )
            loops_.append(shape[:split])
            for name, size in zip(core, shape[split:], strict=True):
                if name in sizes and sizes[name][0] != size:
                    seen, where = sizes[name]
                    raise fail(
                        f"dimension {name!r} is {seen} in {arg(where)} but {size} in {arg(i)}"
                    )
                sizes.setdefault(name, (size, i))
        for name in nonempty:
            if sizes[name][0] == 0:
                raise fail(f"dimension {name!r} must be at least 1, received 0")
        try:
            loop = np.broadcast_shapes(*loops_)
        except ValueError:
            raise fail(f"loop dimensions {loops_} do not broadcast") from None
        out = {n: size for n, (size, _) in sizes.items()}
        if self.derived:
            if derive is None:
                raise ValueError(f"{op}: derived dimensions {self.derived} need a derive function")
            out.update(derive({n: size for n, (size, _) in sizes.items()}, **(static or {})))
            for n in self.derived:
                if out[n] < 1:
                    got = ", ".join(f"{k}={v!r}" for k, v in (static or {}).items())
                    raise fail(
                        f"output dimension {n!r} would be {out[n]} (< 1) for these shapes"
                        + (f" with {got}" if got else "")
                    )
        return tuple(loop) + tuple(out[n] for n in self.output)


@dataclass(frozen=True)
class OpInfo:
    """What the registry knows about one op."""

    name: str
    fn: OpFn
    """The public function: checks shapes, then calls the implementation."""
    signature: Signature
    complex_safe: bool
    kinks: tuple[float, ...]
    """Input values where the op is not differentiable, elementwise (``relu``: ``(0.0,)``)."""
    static: Callable[..., dict[str, Any]] | None
    """``static(rng, *arrays) -> kwargs``: valid static arguments for given arrays."""
    nonempty: tuple[str, ...]
    """Core dimensions that must be at least 1."""
    spec: str
    """The spec page id: ``spec/<spec>.md``."""
    arg_names: tuple[str, ...]
    """Names of the positional (differentiable) arguments, from the function itself."""
    loops: bool = True
    """Whether inputs may carry leading loop dimensions that broadcast."""
    derive: Derive | None = None
    """Sizes of the output dimensions of no input, from core sizes and static arguments."""
    sample_sizes: dict[str, int] | None = None
    """Core sizes for the protocol's samples, where the default 4, 5, 6, ... cannot work
    (a convolution's kernel must fit its image)."""
    distinct: bool = False
    """Sample the first input with entries at least ``KINK_MARGIN`` apart (max-pool: a tie
    is a kink, so no two entries of a window may be within a finite-difference step)."""

    def output_shape(self, shapes: list[Shape], static: dict[str, Any] | None = None) -> Shape:
        """The output's shape for inputs of ``shapes`` and these static arguments."""
        return self.signature.output_shape(
            self.name, shapes, self.arg_names, self.nonempty,
            loops=self.loops, derive=self.derive, static=static,
        )  # fmt: skip


REGISTRY: dict[str, OpInfo] = {}


def op(
    *,
    signature: str,
    complex_safe: bool,
    kinks: tuple[float, ...] = (),
    static: Callable[..., dict[str, Any]] | None = None,
    nonempty: tuple[str, ...] = (),
    spec: str | None = None,
    loops: bool = True,
    derive: Derive | None = None,
    sample_sizes: dict[str, int] | None = None,
    distinct: bool = False,
) -> Callable[[OpFn], OpFn]:
    """Register an op and check its arguments on every call (see the module docstring).

    ``nonempty`` names core dimensions that must not be 0 (softmax over no classes, a mean
    over no examples: undefined, so refused with a ShapeError rather than a NaN).
    ``derive`` gives the sizes of output dimensions that no input has; the output of such
    an op is checked against the derived shape after every call.
    """
    sig = Signature.parse(signature)
    if sig.derived and derive is None:
        raise ValueError(
            f"signature {signature!r}: output dimension(s) {sorted(sig.derived)} of no input "
            f"need a derive function"
        )
    if unknown := set(nonempty) - {n for core in sig.inputs for n in core}:
        raise ValueError(f"nonempty names {sorted(unknown)}, not in signature {signature!r}")

    def register(fn: OpFn) -> OpFn:
        name = fn.__name__
        params = inspect.signature(fn).parameters.values()
        names = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        keywords = _Keywords.of(name, params)

        @functools.wraps(fn)
        def checked(*arrays: Any, **kwargs: Any) -> tuple[Array, VJP]:
            # A NumPy scalar (what 0-d arithmetic returns) is a 0-d array to us.
            arrays = tuple(np.asarray(a) if isinstance(a, np.generic) else a for a in arrays)
            _check_arrays(name, names, arrays, complex_safe)
            keywords.check_missing(kwargs)
            shape = REGISTRY[name].output_shape([a.shape for a in arrays], kwargs)
            keywords.check_unknown(kwargs)  # after derive: conv2d's names its own
            out, vjp = fn(*arrays, **kwargs)
            out = np.asarray(out)  # NumPy turns 0-d results into scalars; the contract says arrays
            if sig.derived and out.shape != shape:  # a derive that disagrees with the op
                raise ShapeError(f"{name}: returned shape {out.shape}, its signature says {shape}")

            def checked_vjp(g: Any, **options: Any) -> tuple[Array, ...]:
                numeric = isinstance(g, (np.ndarray, np.generic, int, float)) and not isinstance(
                    g, bool
                )
                if not numeric or np.asarray(g).dtype.kind not in "fciu":
                    got = type(g).__name__ + (f" of {g.dtype}" if hasattr(g, "dtype") else "")
                    raise DTypeError(
                        f"{name}: the cotangent g must be an array of numbers shaped like the "
                        f"output {out.shape}, received {got}"
                    )
                g = np.asarray(g, dtype=out.dtype)
                if g.shape != out.shape:
                    raise ShapeError(
                        f"{name}: the cotangent g must have the output's shape {out.shape}, "
                        f"received {g.shape}"
                    )
                # options: an op's own vjp keywords, as conv2d's input_grad=False
                return vjp(g, **options)

            return out, checked_vjp

        if name in REGISTRY:
            raise ValueError(f"op {name!r} is registered twice")
        REGISTRY[name] = OpInfo(
            name, checked, sig, complex_safe, kinks, static, nonempty, spec or name, names,
            loops, derive, sample_sizes, distinct,
        )  # fmt: skip
        return checked

    return register


def _arg_label(i: int, names: tuple[str, ...]) -> str:
    """``argument 1 (w)``: position and name, for error messages."""
    return f"argument {i} ({names[i]})" if i < len(names) else f"argument {i}"


#: The dtypes an op computes in: float32 for training, float64 (and complex128, for the
#: complex step of a complex-safe op) for verification. float16 and long double are refused:
#: the protocol's tolerances were measured for these four only, and float16's range
#: (65504) and 11-bit mantissa break softmax sums and gradient checks silently.
DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


@dataclass(frozen=True)
class _Keywords:
    """An op's keyword-only (static) arguments, to name a missing or a misspelt one."""

    op: str
    accepted: tuple[str, ...]
    required: frozenset[str]
    open: bool  # the op takes **kwargs

    @classmethod
    def of(cls, op: str, params: Any) -> _Keywords:
        params = list(params)
        kw = [p for p in params if p.kind is p.KEYWORD_ONLY]
        return cls(
            op, tuple(p.name for p in kw), frozenset(p.name for p in kw if p.default is p.empty),
            any(p.kind is p.VAR_KEYWORD for p in params),
        )  # fmt: skip

    def check_missing(self, kwargs: dict[str, Any]) -> None:
        """Before a derive function reads them: it would be blamed, by its private name."""
        if missing := sorted(self.required - kwargs.keys()):
            raise TypeError(
                f"{self.op}: missing keyword argument(s) {missing}; it takes "
                f"{list(self.accepted)}, received {sorted(kwargs)}"
            )

    def check_unknown(self, kwargs: dict[str, Any]) -> None:
        """Python's own message, plus the keywords the op does take."""
        if not self.open and (unknown := sorted(kwargs.keys() - set(self.accepted))):
            takes = f"it takes {list(self.accepted)}" if self.accepted else "it takes none"
            raise TypeError(
                f"{self.op}() got an unexpected keyword argument {unknown[0]!r}; {takes}"
            )


def _check_arrays(
    name: str, names: tuple[str, ...], arrays: tuple[Any, ...], complex_safe: bool = True
) -> None:
    def arg(i: int) -> str:
        return _arg_label(i, names)

    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise DTypeError(
                f"{name}: {arg(i)} must be a NumPy array of floats, received "
                f"{type(a).__name__}; convert it with np.asarray(..., dtype=np.float32)"
            )
        if a.dtype not in DTYPES:
            raise DTypeError(
                f"{name}: {arg(i)} must have a floating dtype, float32 or float64 (complex64 or "
                f"complex128 where the op is complex-safe), received {a.dtype}"
            )
        if a.dtype.kind == "c" and not complex_safe:
            label = names[i] if i < len(names) else f"argument {i}"
            raise DTypeError(
                f"{name}: {label} must be real, float32 or float64: {name} is not complex-safe "
                f"(its complex_safe is False), received {a.dtype}"
            )
    if len({a.dtype for a in arrays}) > 1:
        got = ", ".join(f"{arg(i)} {a.dtype}" for i, a in enumerate(arrays))
        raise DTypeError(
            f"{name}: all array arguments must share one dtype (mixing would silently upcast), "
            f"received {got}"
        )


def unbroadcast(g: Array, shape: Shape) -> Array:
    """Sum ``g`` over the dimensions along which an input of ``shape`` was broadcast.

    Broadcasting copies an input along new or size-1 axes; the chain rule adds up the
    cotangents of all the copies.

    >>> unbroadcast(np.ones((4, 2, 3)), (1, 3)).tolist()
    [[8.0, 8.0, 8.0]]
    """
    extra = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(extra))) if extra else g  # (..., *shape') -> shape'
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
