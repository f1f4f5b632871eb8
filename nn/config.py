"""Training configurations: readable TOML files, checked field by field.

A config has the tables ``[model]``, ``[optimizer]``, ``[schedule]`` and ``[train]``, and
``[data]`` for a dataset other than MNIST's single digits (digit strings, issue 6); every key
is optional and defaults to the default MLP's value (see ``nn/configs/``). A
misspelt key or a wrong type is an error that names the file, the table, the key, what was
expected and what was found, so a typo never silently trains the default instead.

>>> cfg = Config.from_toml('[train]\\nepochs = 3\\n')
>>> cfg.train.epochs, cfg.optimizer.name
(3, 'nesterov')
>>> Config.from_toml(cfg.to_toml()) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nn.architecture import layer_problem
from nn.augment import MAX_SLANT, MAX_ZOOM
from nn.errors import DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Configs shipped with the package: ``python -m nn train --config classic``.
CONFIG_DIR = Path(__file__).with_name("configs")
#: What the trainer does with a step whose loss or gradient is NaN or inf (nn.guard).
NONFINITE = ("raise", "skip", "rollback")
#: The datasets a config can train on: MNIST's digits, or strings of them (nn.digit_strings).
DATASETS = ("mnist", "digit_strings")
#: The losses a config can name; ctc and per-head cross-entropy read digit strings.
LOSSES = ("softmax_cross_entropy", "mean_squared_error", "ctc")
#: The [model] keys of a fully connected network, replaced by ``layers`` for any other.
MLP_KEYS = frozenset({"hidden", "activation", "output_activation", "init"})


@dataclass(frozen=True)
class ModelConfig:
    # layers: a list of layer tables (nn.architecture), for any network of images (N, 1, 28, 28),
    # a CNN above all; when given, it replaces the MLP keys hidden, activation,
    # output_activation and init, which describe a fully connected network of 784 inputs.
    layers: tuple[dict[str, Any], ...] = ()
    hidden: tuple[int, ...] = (800, 800)  # hidden layer widths; the input is 784, the output 10
    activation: str = "relu"  # relu | sigmoid | tanh
    output_activation: str = "none"  # none | relu | sigmoid | tanh (applied to the outputs)
    # softmax_cross_entropy | mean_squared_error | ctc (outputs (T, K), the blank last);
    # softmax_cross_entropy of outputs (L, K) scores L heads against strings of length L
    loss: str = "softmax_cross_entropy"
    init: str = "auto"  # auto (He for relu, Glorot otherwise) or a name from nn.init


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "nesterov"  # sgd | momentum | nesterov | adam
    lr: float = 0.05
    momentum: float = 0.9  # momentum, nesterov
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam
    weight_decay: float = 5e-4  # coupled L2 on weights (not biases)
    clip_norm: float = 0.0  # largest global gradient norm (0: off); spec/clip_by_global_norm.md


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "cosine"  # constant | step | cosine
    every_epochs: int = 10  # step: multiply the lr by gamma every this many epochs
    gamma: float = 0.1  # step
    final_lr: float = 0.0  # cosine: the lr reached at the last step


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    validation: int = 5000  # the last images of the training set, held out for validation
    seed: int = 0  # initialization, shuffling and augmentation all derive from it
    shift: int = 2  # random translation by up to this many pixels (0: no augmentation)
    slant: float = 0.0  # random shear, |slant| up to this (nn.augment.random_affine; 0: off)
    zoom: float = 0.0  # random zoom in [1 - zoom, 1 + zoom] about the centre (0: off)
    patience: int = 0  # early stopping: epochs without a better validation loss (0: off)
    nonfinite: str = "raise"  # a NaN or inf in a step: raise | skip (the batch) | rollback


@dataclass(frozen=True)
class DataConfig:
    # mnist: single digits (N, 28, 28). digit_strings: images (N, height, width) of strings of
    # MNIST digits (nn.digit_strings; spec/digit_strings.md), training strings made of training
    # digits only, test strings of test digits only.
    name: str = "mnist"  # mnist | digit_strings
    # strings of the training set; its last train.validation are held out, made of the last
    # 5000 MNIST training digits, which the others never use (nn.datasets)
    train_strings: int = 60000
    test_strings: int = 10000
    min_length: int = 1  # digits per training string, uniform in [min_length, max_length]
    max_length: int = 7
    test_length: int = 7  # every test string has this many digits (the headline figure's 7)
    height: int = 32
    width: int = 144
    gap_min: int = -2  # pixels between neighbouring digits' ink, uniform; negative: overlap
    gap_max: int = 4
    jitter: int = 2  # vertical offset of each digit, uniform in [-jitter, jitter]
    scale_min: float = 1.0  # per-digit scale, uniform in [scale_min, scale_max]; 1, 1: off
    scale_max: float = 1.0
    seed: int = 0  # training strings from seed, test strings from seed + 1


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_toml(cls, text: str, source: str = "<config>") -> Config:
        """Parse and check a TOML document; ``source`` names it in errors."""
        return cls.from_dict(_parse_toml(text, f"config {source}"), source)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], source: str = "<config>") -> Config:
        tables = {"model": ModelConfig, "optimizer": OptimizerConfig,
                  "schedule": ScheduleConfig, "train": TrainConfig, "data": DataConfig}  # fmt: skip
        for name in doc:
            if name not in tables:
                raise DataError(
                    f"config {source}: unknown table [{name}]; expected one of {sorted(tables)}"
                )
        parts = {}
        for name, factory in tables.items():
            table = doc.get(name, {})
            if not isinstance(table, dict):
                raise DataError(f"config {source}: [{name}] must be a table, found {table!r}")
            if name == "model" and table.get("layers") and (mixed := MLP_KEYS & table.keys()):
                raise DataError(
                    f"config {source}: [model] layers describes the whole network; drop the "
                    f"MLP key(s) {sorted(mixed)}, or drop layers to describe an MLP"
                )
            parts[name] = _table(factory(), table, f"config {source}: [{name}]")
        return cls(**parts).check(source)

    def check(self, source: str = "<config>") -> Config:
        """``self``, or :class:`~nn.errors.DataError` listing every :meth:`problems` entry."""
        if problems := self.problems():
            raise DataError(f"config {source}: " + "; ".join(problems))
        return self

    def problems(self) -> list[str]:
        """Every value out of its range, each naming its table and key, the allowed values
        and what was found (types are checked when the file is read)."""
        m, o, s, t, d = self.model, self.optimizer, self.schedule, self.train, self.data
        activations = ("relu", "sigmoid", "tanh")
        # a scaled digit's side, as drawn; None when it is not a finite number of pixels
        # (scale_max is blamed for that, and height and width are not checked against it)
        reach = 28 * d.scale_max
        side = math.floor(max(reach, 0) + 0.5) if math.isfinite(reach) else None
        layers = [f"[model] layers[{i}] {p}" for i, spec in enumerate(m.layers)
                  if (p := layer_problem(spec))]  # fmt: skip
        inits = ("glorot_normal", "glorot_uniform", "he_normal", "he_uniform")
        checks = [
            ("model", "hidden", all(h >= 1 for h in m.hidden), "widths >= 1"),
            ("model", "activation", m.activation in activations, " | ".join(activations)),
            ("model", "output_activation", m.output_activation in ("none", *activations),
             " | ".join(("none", *activations))),
            ("model", "loss", m.loss in LOSSES, " | ".join(LOSSES)),
            ("model", "loss", m.loss != "ctc" or (d.name == "digit_strings" and m.layers),
             "ctc only with [data] name = \"digit_strings\" and [model] layers"),
            ("model", "init", m.init in ("auto", *inits), " | ".join(("auto", *inits))),
            ("optimizer", "name", o.name in ("sgd", "momentum", "nesterov", "adam"),
             "sgd | momentum | nesterov | adam"),
            ("optimizer", "lr", 0 <= o.lr < math.inf, "a finite number >= 0"),
            ("optimizer", "momentum", 0 <= o.momentum < 1, "in [0, 1)"),
            ("optimizer", "beta1", 0 <= o.beta1 < 1, "in [0, 1)"),
            ("optimizer", "beta2", 0 <= o.beta2 < 1, "in [0, 1)"),
            ("optimizer", "eps", 0 < o.eps < math.inf, "a finite number > 0"),
            ("optimizer", "weight_decay", 0 <= o.weight_decay < math.inf, "a finite number >= 0"),
            ("optimizer", "clip_norm", 0 <= o.clip_norm < math.inf, "a number >= 0 (0: off)"),
            ("schedule", "name", s.name in ("constant", "step", "cosine"),
             "constant | step | cosine"),
            ("schedule", "every_epochs", s.every_epochs >= 1, "an integer >= 1"),
            ("schedule", "gamma", 0 < s.gamma <= 1, "in (0, 1]"),
            # an lr out of range is named above: final_lr is not blamed for it as well
            ("schedule", "final_lr", 0 <= s.final_lr <= o.lr or not 0 <= o.lr < math.inf,
             "in [0, optimizer.lr]"),
            ("train", "epochs", t.epochs >= 1, "an integer >= 1"),
            ("train", "batch_size", t.batch_size >= 1, "an integer >= 1"),
            ("train", "validation", t.validation >= 0, "an integer >= 0"),
            ("train", "seed", t.seed >= 0, "an integer >= 0"),
            ("train", "shift", 0 <= t.shift <= 13, "an integer in 0..13 (pixels)"),
            ("train", "slant", 0 <= t.slant <= MAX_SLANT, f"a number in [0, {MAX_SLANT}]"),
            ("train", "zoom", 0 <= t.zoom <= MAX_ZOOM, f"a number in [0, {MAX_ZOOM}]"),
            ("train", "patience", t.patience >= 0, "an integer >= 0 (0: off)"),
            ("train", "nonfinite", t.nonfinite in NONFINITE, " | ".join(NONFINITE)),
            ("train", "patience", t.patience == 0 or t.validation > 0,
             "0 when train.validation = 0: early stopping needs a validation split"),
            ("data", "name", d.name in DATASETS, " | ".join(DATASETS)),
            ("data", "train_strings", d.train_strings >= 1, "an integer >= 1"),
            ("data", "test_strings", d.test_strings >= 1, "an integer >= 1"),
            ("data", "min_length", 1 <= d.min_length, "an integer >= 1"),
            ("data", "max_length", d.min_length <= d.max_length, "an integer >= min_length"),
            ("data", "test_length", 1 <= d.test_length <= d.max_length,
             "an integer in 1..max_length"),
            ("data", "train_strings", d.name == "mnist" or d.train_strings > t.validation,
             "more than [train] validation (the held-out strings are part of them)"),
            ("data", "height", side is None or d.height >= side,
             f"an integer >= {side} (a digit at scale_max)"),
            ("data", "width", side is None or d.width >= d.max_length - 1 + side,
             f"an integer >= max_length - 1 + {side} (any string must fit)"),
            ("data", "gap_max", d.gap_min <= d.gap_max, "an integer >= gap_min"),
            ("data", "jitter", d.jitter >= 0, "an integer >= 0"),
            # a scale_max that is not finite is named below: scale_min is not blamed for it
            ("data", "scale_min",
             0 < d.scale_min <= d.scale_max or (side is None and d.scale_min > 0),
             "in (0, scale_max]"),
            ("data", "scale_max", side is not None,
             "a finite number, with 28 * scale_max (a digit's side in pixels) finite"),
            ("data", "seed", d.seed >= 0, "an integer >= 0"),
            ("data", "name", d.name == "mnist" or bool(m.layers),
             "mnist for an MLP of 784 inputs (digit strings need [model] layers)"),
        ]  # fmt: skip
        return layers + [
            f"[{table}] {key} must be {allowed}, found {getattr(getattr(self, table), key)!r}"
            for table, key, ok, allowed in checks
            if not ok
        ]

    @classmethod
    def load(cls, path_or_name: str | Path) -> Config:
        """Read a TOML file, or a shipped config by name (``"default"``, ``"classic"``)."""
        path = Path(path_or_name)
        if not path.is_file() and (CONFIG_DIR / f"{path_or_name}.toml").is_file():
            path = CONFIG_DIR / f"{path_or_name}.toml"
        # configs/<name>.toml names a shipped config as the docs write it, from any folder
        named = CONFIG_DIR / path.name
        if not path.is_file() and path.parent.name == "configs" and named.is_file():
            path = named
        if not path.is_file():
            shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
            raise DataError(
                f"config {str(path_or_name)!r}: no such file, and not a shipped config "
                f"(shipped: {', '.join(shipped)})"
            )
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:  # TOML is UTF-8 by definition
            raise DataError(
                f"config {path}: expected UTF-8 text (TOML), received byte 0x{data[e.start]:02x} "
                f"at offset {e.start}, which is not UTF-8 there ({e.reason})"
            ) from None
        return cls.from_toml(text, str(path))

    def override(self, assignments: list[str]) -> Config:
        """Apply ``table.key=value`` strings (values in TOML syntax), as ``--set`` does."""
        doc = self.to_dict()
        for item in assignments:
            dotted, sep, value = item.partition("=")
            table, dot, key = dotted.strip().partition(".")
            if not sep or not dot:
                raise DataError(f"--set {item!r}: expected table.key=value, e.g. train.epochs=3")
            try:
                parsed = _parse_toml(f"v = {value.strip()}", f"config --set {dotted.strip()}")["v"]
            except DataError as e:
                if not isinstance(e.__cause__, tomllib.TOMLDecodeError):
                    raise  # TOML, but more than Python reads: too many digits, too deep
                parsed = value.strip()  # not TOML: a bare word is a string: optimizer.name=adam
            doc.setdefault(table, {})[key] = parsed
            # layers and the MLP keys are alternatives: the one set last replaces the other
            model = doc.get("model", {})
            if table == "model" and key == "layers":
                doc["model"] = {k: v for k, v in model.items() if k not in MLP_KEYS}
            elif table == "model" and key in MLP_KEYS:
                doc["model"] = {k: v for k, v in model.items() if k != "layers"}
        return Config.from_dict(doc, "--set")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain dicts and lists; a model described by ``layers`` omits the MLP keys."""
        doc = {
            f.name: {k: list(v) if isinstance(v, tuple) else v for k, v in vars(part).items()}
            for f in fields(self)
            for part in [getattr(self, f.name)]
        }
        drop = MLP_KEYS if self.model.layers else {"layers"}
        doc["model"] = {k: v for k, v in doc["model"].items() if k not in drop}
        if self.data == DataConfig():  # MNIST digits: configs and run folders stay as they were
            del doc["data"]
        return doc

    def differences(self, other: Config) -> list[str]:
        """``table.key: this vs other`` for every value that differs."""
        a, b = self.to_dict(), other.to_dict()
        return [
            f"{table}.{key}: {a.get(table, {}).get(key, '-')!r} vs "
            f"{b.get(table, {}).get(key, '-')!r}"
            for table in dict.fromkeys([*a, *b])
            for key in dict.fromkeys([*a.get(table, {}), *b.get(table, {})])
            if a.get(table, {}).get(key) != b.get(table, {}).get(key)
        ]

    def to_toml(self) -> str:
        """The config as TOML that :meth:`from_toml` reads back equal."""
        lines = []
        for table, values in self.to_dict().items():
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            lines.append("")
        return "\n".join(lines)


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads(text)``; any text it cannot read is a DataError that starts with ``where``.

    Besides TOMLDecodeError, tomllib lets two errors of Python through: int()'s ValueError for
    an integer of more digits than Python converts from text, and a RecursionError for arrays
    or inline tables nested deeper than its recursive parser can follow.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{where}: not valid TOML: {e}") from e
    except ValueError as e:
        limit = sys.get_int_max_str_digits()
        raise DataError(
            f"{where}: expected integers of at most {limit} digits, received a longer one "
            f"({str(e).partition(';')[0]})"
        ) from e
    except RecursionError as e:
        raise DataError(
            f"{where}: expected arrays and tables nested a few levels deep, received some "
            "nested too deeply to read"
        ) from e


def _table(default: Any, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(default)}
    for key in table:
        if key not in known:
            raise DataError(f"{where}: unknown key {key!r}; expected one of {sorted(known)}")
    values = {}
    for key, value in table.items():
        expected = getattr(default, key)
        if key == "layers":
            ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
            value = tuple(value) if ok else value
        elif isinstance(expected, tuple):
            ok = isinstance(value, list) and all(_is_int(v) for v in value)
            value = tuple(value) if ok else value
        elif isinstance(expected, float):
            ok = (_is_int(value) or isinstance(value, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(expected, int):
            ok = _is_int(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            kind = "a list of integers" if isinstance(expected, tuple) else type(expected).__name__
            kind = "a list of layer tables" if key == "layers" else kind
            raise DataError(f"{where}: {key} must be {kind}, found {value!r}")
        values[key] = value
    return dataclasses.replace(default, **values)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string uses JSON's escapes
    if isinstance(v, dict):  # an inline table: one layer
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list) and v and isinstance(v[0], dict):  # layers: one per line
        return "[\n" + "".join(f"    {_toml_value(x)},\n" for x in v) + "]"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)
