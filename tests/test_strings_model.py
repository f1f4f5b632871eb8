"""Models that read digit strings: the ``[data]`` table of a config, the networks built for it
(check_string_outputs), the losses ctc (log_softmax then ctc_loss) and heads
(softmax_cross_entropy of outputs (N, L, K)), checked end to end by the protocol (P12), and
Sequential.correct, which scores a whole string at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from nn.architecture import build_layers
from nn.build import build_model, check_string_outputs
from nn.config import DATASETS, LOSSES, Config, DataConfig
from nn.errors import DataError, ShapeError
from nn.model import Sequential, check_model, mlp
from nn.optim import SGD
from nn.string_losses import ctc_of_logits, heads_cross_entropy
from nn.testing import check_vjp

BLANK = 10  # the CTC blank is the last class of K = 11
STRINGS = {"name": "digit_strings", "train_strings": 64, "test_strings": 16, "min_length": 1,
           "max_length": 3, "test_length": 3, "height": 28, "width": 64}  # fmt: skip
HEADS = {**STRINGS, "min_length": 3}
# Smooth layers (tanh, average pooling): no kinks for the finite differences to cross (P5).
CTC_LAYERS = [
    {"layer": "conv2d", "channels": 2, "kernel": 3, "padding": "same"},  # (2, 28, 64)
    {"layer": "tanh"},
    {"layer": "avg_pool2d", "window": 4},  # (2, 7, 16)
    {"layer": "columns"},  # (16, 14): T = 16 columns
    {"layer": "dense", "units": 6},  # Dense on (T, D)
    {"layer": "tanh"},
    {"layer": "dense", "units": 11},  # (16, 11): 10 digits and the blank
]
HEADS_LAYERS = [
    {"layer": "avg_pool2d", "window": 4},  # (1, 7, 16)
    {"layer": "flatten"},  # (112,)
    {"layer": "dense", "units": 8},
    {"layer": "tanh"},
    {"layer": "dense", "units": 30},
    {"layer": "unflatten", "shape": [3, 10]},  # (3, 10): 3 heads
]


def config(layers=CTC_LAYERS, loss="ctc", data=STRINGS, **tables) -> Config:
    tables = {"train": {"validation": 16}, **tables}  # 16 of the 64 strings held out
    return Config.from_dict({"model": {"layers": list(layers), "loss": loss}, "data": data,
                             **tables})  # fmt: skip


# --- the [data] table ---------------------------------------------------------------------------


def test_the_data_table_is_read_and_defaults_to_mnist():
    assert Config().data == DataConfig() and DataConfig().name == "mnist"
    assert DATASETS == ("mnist", "digit_strings") and "ctc" in LOSSES
    cfg = Config.from_toml(
        '[data]\nname = "digit_strings"\nmax_length = 5\ntest_length = 5\nscale_max = 1.1\n'
        '[model]\nlayers = [{layer = "columns"}, {layer = "dense", units = 11}]\nloss = "ctc"\n'
    )
    assert (cfg.data.name, cfg.data.max_length, cfg.data.height) == ("digit_strings", 5, 32)
    assert cfg.data.scale_max == 1.1 and isinstance(cfg.data.scale_max, float)
    assert Config.from_toml(cfg.to_toml()) == cfg


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[data]\nlenght = 3\n", r"config <config>: \[data\]: unknown key 'lenght'"),
        ("[data]\nheight = 32.5\n", r"\[data\]: height must be int, found 32.5"),
        ("[data]\nname = 3\n", r"\[data\]: name must be str, found 3"),
        ("data = 3\n", r"\[data\] must be a table, found 3"),
    ],
)
def test_a_bad_data_table_is_named(toml, message):
    with pytest.raises(DataError, match=message):
        Config.from_toml(toml)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("name", "emnist", "[data] name must be mnist | digit_strings, found 'emnist'"),
        ("train_strings", 0, "[data] train_strings must be an integer >= 1, found 0"),
        ("test_strings", 0, "[data] test_strings must be an integer >= 1, found 0"),
        ("min_length", 0, "[data] min_length must be an integer >= 1, found 0"),
        ("max_length", 0, "[data] max_length must be an integer >= min_length, found 0"),
        ("test_length", 4, "[data] test_length must be an integer in 1..max_length, found 4"),
        ("test_length", 0, "[data] test_length must be an integer in 1..max_length, found 0"),
        ("height", 27, "[data] height must be an integer >= 28 (a digit at scale_max), found 27"),
        (
            "width",
            29,
            "[data] width must be an integer >= max_length - 1 + 28 (any string must "
            "fit), found 29",
        ),
        ("scale_max", 1.2, "[data] height must be an integer >= 34 (a digit at scale_max), found"),
        ("train_strings", 2, "[data] train_strings must be more than [train] validation"),
        ("gap_max", -3, "[data] gap_max must be an integer >= gap_min, found -3"),
        ("jitter", -1, "[data] jitter must be an integer >= 0, found -1"),
        ("scale_min", 0.0, "[data] scale_min must be in (0, scale_max], found 0.0"),
        ("scale_min", 1.5, "[data] scale_min must be in (0, scale_max], found 1.5"),
        ("seed", -1, "[data] seed must be an integer >= 0, found -1"),
    ],
)
def test_every_data_value_out_of_range_is_named(key, value, message):
    with pytest.raises(DataError) as error:
        config(data={**STRINGS, key: value})
    assert message in str(error.value)
    assert config().problems() == []  # the values around it are valid


def test_strings_need_layers_and_ctc_needs_strings():
    with pytest.raises(DataError, match=r"\[data\] name must be mnist for an MLP of 784 inputs"):
        Config.from_dict({"data": STRINGS})
    with pytest.raises(DataError, match=r"\[model\] loss must be ctc only with \[data\] name"):
        Config.from_dict({"model": {"layers": CTC_LAYERS, "loss": "ctc"}})  # MNIST digits
    with pytest.raises(DataError, match=r"ctc only with .* and \[model\] layers, found 'ctc'"):
        Config.from_dict({"model": {"loss": "ctc"}, "data": STRINGS})  # an MLP


def test_to_dict_omits_the_data_table_only_when_it_is_mnists_default():
    assert "data" not in Config().to_dict() and "[data]" not in Config().to_toml()
    cfg = config()
    assert cfg.to_dict()["data"] == {**DataConfig().__dict__, **STRINGS}
    assert "[data]" in cfg.to_toml() and Config.from_toml(cfg.to_toml()) == cfg
    # a data table that differs from the default in one key is kept whole
    seeded = Config.from_dict({"data": {"seed": 3}})
    assert seeded.to_dict()["data"]["seed"] == 3 and Config.from_toml(seeded.to_toml()) == seeded


def test_differences_copes_with_a_table_on_one_side_only():
    mnist, strings = Config(), config()
    forward = mnist.differences(strings)
    assert "data.name: '-' vs 'digit_strings'" in forward
    assert "data.height: '-' vs 28" in forward
    assert "model.loss: 'softmax_cross_entropy' vs 'ctc'" in forward
    backward = strings.differences(mnist)
    assert "data.name: 'digit_strings' vs '-'" in backward and len(backward) == len(forward)
    assert strings.differences(config(data={**STRINGS, "height": 32})) == ["data.height: 28 vs 32"]
    assert strings.differences(config()) == []


def test_load_accepts_configs_slash_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = Config.load("digits7")
    assert Config.load("configs/digits7.toml") == shipped
    assert Config.load("nn/configs/digits7.toml") == shipped
    with pytest.raises(DataError, match="not a shipped config"):
        Config.load("configs/nope.toml")
    (tmp_path / "configs").mkdir()  # a file of that name here is read first
    (tmp_path / "configs" / "digits7.toml").write_text("[train]\nepochs = 2\n")
    assert Config.load("configs/digits7.toml").train.epochs == 2


# --- networks for strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "out"),
    [("digits7", (36, 11)), ("digits7_cnn_heads", (7, 10)), ("digits7_mlp_heads", (7, 10))],
)
def test_shipped_string_configs_build_and_give_outputs_that_read_strings(name, out):
    cfg = Config.load(name)
    model = build_model(cfg)
    assert model.input_shape == (1, cfg.data.height, cfg.data.width) == (1, 32, 144)
    assert model.shapes[-1] == out and model.loss_name == cfg.model.loss
    check_string_outputs(cfg, model.shapes[-1])  # no error
    assert model.classes == out[1]
    assert Config.from_toml(cfg.to_toml()) == cfg


def test_build_model_reads_the_canvas_of_the_data_table():
    model = build_model(config())
    assert model.input_shape == (1, 28, 64) and model.shapes[-1] == (16, 11)
    assert model.classes == 11 and model.loss_name == "ctc"
    heads = build_model(config(HEADS_LAYERS, "softmax_cross_entropy", HEADS))
    assert heads.shapes[-1] == (3, 10) and heads.classes == 10
    assert build_model(Config()).classes == 10  # digits: unchanged


def test_ctc_needs_two_columns_per_digit_less_one():
    """A string of max_length equal digits needs a blank between each pair: T >= 2L - 1."""
    for length in (1, 3, 7):
        cfg = config(data={**STRINGS, "max_length": length, "test_length": length,
                           "width": 28 + length})  # fmt: skip
        check_string_outputs(cfg, (2 * length - 1, 11))
        check_string_outputs(cfg, (2 * length + 5, 11))
        with pytest.raises(ShapeError, match=rf"T >= {2 * length - 1} columns"):
            check_string_outputs(cfg, (2 * length - 2, 11))


@pytest.mark.parametrize(
    "out",
    [(16, 10), (16, 12), (16 * 11,), (1, 16, 11), (16, 11, 1)],
)
def test_ctc_outputs_must_be_columns_of_the_digits_and_the_blank(out):
    with pytest.raises(ShapeError, match=r"loss ctc the network's output must be \(T, 11\).*"
                                         r"10 digits and the blank; it is"):  # fmt: skip
        check_string_outputs(config(), out)


def test_heads_need_one_head_per_digit_of_strings_of_one_length():
    cfg = config(HEADS_LAYERS, "softmax_cross_entropy", HEADS)
    check_string_outputs(cfg, (3, 10))
    for out in [(2, 10), (4, 10), (3, 11), (30,), (3, 10, 1)]:
        with pytest.raises(ShapeError, match=r"one head per digit, output \(max_length, 10\)"):
            check_string_outputs(cfg, out)
    for data in [STRINGS, {**HEADS, "test_length": 2}]:  # lengths 1..3; tests of length 2
        with pytest.raises(ShapeError, match=r"for strings of one length .*\(loss ctc reads"):
            check_string_outputs(config(HEADS_LAYERS, "softmax_cross_entropy", data), (3, 10))


def test_build_model_refuses_a_network_that_cannot_read_strings():
    ten = [*CTC_LAYERS[:-1], {"layer": "dense", "units": 10}]
    with pytest.raises(ShapeError, match=r"\[model\] layers: for digit strings and loss ctc .* "
                                         r"it is \(16, 10\)"):  # fmt: skip
        build_model(config(ten))
    with pytest.raises(ShapeError, match="the loss must be ctc or softmax_cross_entropy, found "
                                         "'mean_squared_error'"):  # fmt: skip
        build_model(config(HEADS_LAYERS, "mean_squared_error", HEADS))
    with pytest.raises(ShapeError, match="for strings of one length"):
        build_model(config(HEADS_LAYERS, "softmax_cross_entropy", STRINGS))


# --- the losses, end to end --------------------------------------------------------------------


def ctc_brute_force(out: np.ndarray, labels: np.ndarray) -> float:
    """CTC of logits by enumerating every path: -mean_n log sum_{B(pi) = l_n} prod_t y_t[pi_t]."""
    n, t, k = out.shape
    lp = log_softmax(out, axis=-1)
    total = 0.0
    for i in range(n):
        target = [int(c) for c in labels[i] if c >= 0]
        terms = []
        for path in itertools.product(range(k), repeat=t):
            runs = [c for j, c in enumerate(path) if j == 0 or path[j - 1] != c]  # merge repeats
            if [c for c in runs if c != k - 1] == target:  # then drop the blanks
                terms.append(sum(lp[i, j, c] for j, c in enumerate(path)))
        total -= logsumexp(terms)
    return total / n


def test_ctc_of_logits_is_the_ctc_of_their_log_softmax_by_path_enumeration():
    rng = np.random.default_rng(0)
    out = rng.standard_normal((4, 4, 3)) * 2  # T = 4 columns, classes 0, 1 and the blank
    labels = np.array([[0, 0], [1, -1], [-1, -1], [0, 1]])  # a repeat, one, empty, two
    value, vjp = ctc_of_logits(out, labels)
    assert float(value) == pytest.approx(ctc_brute_force(out, labels), rel=1e-12)
    # softmax is invariant to a constant per column; so is the loss, and its gradient sums to 0
    shifted = out + rng.standard_normal((4, 4, 1))
    assert float(ctc_of_logits(shifted, labels)[0]) == pytest.approx(float(value), rel=1e-12)
    (dout,) = vjp(np.float64(1.0))
    assert dout.shape == out.shape
    np.testing.assert_allclose(dout.sum(axis=-1), 0, atol=1e-12)
    report = check_vjp(lambda o: ctc_of_logits(o, labels), out, raise_on_failure=False)
    assert report.passed, [c.message() for c in report.failures]


def test_heads_cross_entropy_is_the_mean_over_examples_and_heads():
    rng = np.random.default_rng(1)
    out, labels = rng.standard_normal((4, 3, 10)), rng.integers(0, 10, (4, 3))
    value, vjp = heads_cross_entropy(out, labels)
    lp = log_softmax(out, axis=-1)
    expected = -np.mean([[lp[n, h, labels[n, h]] for h in range(3)] for n in range(4)])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert vjp(np.float64(1.0))[0].shape == (4, 3, 10)
    report = check_vjp(lambda o: heads_cross_entropy(o, labels), out, raise_on_failure=False)
    assert report.passed, [c.message() for c in report.failures]
    with pytest.raises(ShapeError, match=r"labels must be \(N, 3\) = \(4, 3\), one digit per head; "
                                         r"received \(4, 2\)"):  # fmt: skip
        heads_cross_entropy(out, labels[:, :2])


def string_batch(model: Sequential, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(0, 1, (len(labels), *model.input_shape))
    return x, labels


@pytest.mark.parametrize(
    ("layers", "loss", "data", "labels"),
    [
        # a repeated digit (a blank between), a full string, the empty string
        (CTC_LAYERS, "ctc", STRINGS, np.array([[1, 1, -1], [2, 3, 4], [-1, -1, -1]])),
        (HEADS_LAYERS, "softmax_cross_entropy", HEADS, np.array([[1, 1, 9], [0, 5, 7]])),
    ],
    ids=["ctc", "heads"],
)
def test_string_models_pass_the_protocol_at_init_and_after_steps(layers, loss, data, labels):
    model = build_model(config(layers, loss, data))
    params = model.init(0, np.float64)
    opt = SGD()
    opt_state = opt.init(params)
    for step in range(2):
        x, y = string_batch(model, labels, seed=step)
        report = check_model(model, params, (x, y), seed=step)
        assert report.passed, [c.message() for c in report.failures]
        assert {c.input for c in report.checks if c.method == "central-difference"} >= {
            *params,
            "all inputs jointly",
        }
        for _ in range(5):  # a few training steps, then check again (P12)
            _, grads = model.loss(params, (x, y))
            params, opt_state = opt.update(params, grads, opt_state, lr=0.1)


def test_check_model_sees_a_wrong_composition(monkeypatch):
    """The model check is not vacuous here: a ctc whose vjp skips log_softmax's is caught."""
    import nn.model
    from nn.ctc import ctc_loss

    def no_softmax_vjp(out, y):
        value, _ = ctc_of_logits(out, y)
        lp = log_softmax(out, axis=-1)
        return value, lambda g: ctc_loss(lp, labels=y)[1](g)  # d/d log_probs, not d/d logits

    model = build_model(config())
    params = model.init(0, np.float64)
    batch = string_batch(model, np.array([[1, 1, -1], [2, 3, 4]]), 0)
    assert check_model(model, params, batch).passed
    monkeypatch.setattr(nn.model, "ctc_of_logits", no_softmax_vjp)
    assert not check_model(model, params, batch).passed


def test_the_loss_value_of_a_model_is_its_losss():
    model = build_model(config())
    out = np.random.default_rng(2).standard_normal((2, 16, 11))
    y = np.array([[1, 1, -1], [-1, -1, -1]])
    assert float(model.loss_value(out, y)[0]) == float(ctc_of_logits(out, y)[0])
    heads = build_model(config(HEADS_LAYERS, "softmax_cross_entropy", HEADS))
    out, y = out[:, :3, :10], np.array([[1, 2, 3], [4, 5, 6]])
    assert float(heads.loss_value(out, y)[0]) == float(heads_cross_entropy(out, y)[0])


# --- scoring whole strings: Sequential.correct ----------------------------------------------------


def logits_of_paths(paths: list[list[int]], k: int = 11) -> np.ndarray:
    """Outputs (N, T, K) whose argmax in column t is paths[n][t] (other classes well below)."""
    rng = np.random.default_rng(3)
    out = rng.uniform(-1, 1, (len(paths), len(paths[0]), k))
    for n, path in enumerate(paths):
        out[n, np.arange(len(path)), path] = 5.0
    return out


def test_ctc_correct_reads_the_best_path_and_compares_whole_strings():
    model = build_model(config())
    b = BLANK
    cases = [  # (best path, label, read right?)
        ([1, b, 1, b, b, b], [1, 1, -1], True),  # "11": a blank between the two 1s
        ([1, 1, b, b, b, b], [1, 1, -1], False),  # two columns of 1 merge: "1"
        ([1, 1, b, b, b, b], [1, -1, -1], True),
        ([b, 3, 3, 0, b, 5], [3, 0, 5], True),
        ([3, 0, 5, 5, 5, 0], [3, 0, 5], False),  # "3050": one digit too many
        ([3, 0, b, b, b, b], [3, 0, 5], False),  # a digit missing
        ([3, 0, 6, b, b, b], [3, 0, 5], False),  # the last digit wrong
        ([b] * 6, [-1, -1, -1], True),  # the empty string
        ([b] * 6, [7, -1, -1], False),
    ]
    out = logits_of_paths([p for p, _, _ in cases])
    labels = np.array([y for _, y, _ in cases])
    got = model.correct(out, labels)
    assert got.dtype == bool and got.shape == (len(cases),)
    assert got.tolist() == [right for _, _, right in cases]
    # the scale of the logits does not matter, only each column's argmax
    assert model.correct(out * 10, labels).tolist() == got.tolist()


def test_heads_correct_needs_every_head_right():
    model = build_model(config(HEADS_LAYERS, "softmax_cross_entropy", HEADS))
    labels = np.array([[1, 1, 9], [1, 1, 9], [1, 1, 9], [0, 5, 7], [0, 5, 7]])
    read = np.array([[1, 1, 9], [2, 1, 9], [1, 1, 8], [0, 5, 7], [0, 6, 7]])
    out = np.random.default_rng(4).uniform(-1, 1, (5, 3, 10))
    np.put_along_axis(out, read[..., None], 5.0, axis=-1)
    assert model.correct(out, labels).tolist() == [True, False, False, True, False]


def test_correct_of_single_digits_is_the_argmax():
    model = mlp([4, 10])
    out = np.eye(10)[[3, 1, 4]] + 0.1
    assert model.correct(out, np.array([3, 1, 5])).tolist() == [True, True, False]


# --- prediction ---------------------------------------------------------------------------------


def test_predict_gives_outputs_of_every_image_even_none():
    model = build_model(config())
    params = model.init(0)
    x = np.random.default_rng(5).uniform(0, 1, (5, 1, 28, 64)).astype(np.float32)
    out = model.predict(params, x, batch_size=2)
    assert out.shape == (5, 16, 11) and out.dtype == np.float32
    np.testing.assert_allclose(out, model.forward(params, x)[0], rtol=1e-6)
    empty = model.predict(params, x[:0])
    assert empty.shape == (0, 16, 11) and empty.dtype == np.float32
    assert model.correct(empty, np.zeros((0, 3), np.int64)).shape == (0,)


def test_outputs_with_a_nan_or_inf_read_nothing_right():
    """Scoring never crashes on a diverged network: such an output is simply wrong."""
    model = Sequential(build_layers(CTC_LAYERS), input_shape=(1, 28, 64), loss="ctc")
    out = np.zeros((3, *model.shapes[-1]))  # uniform columns: the blank wins ties last
    y = np.full((3, 3), -1)  # three empty strings: all-blank columns read them right
    out[:, :, -1] = 5.0
    out[1, 0, 0], out[2, 3, 4] = np.nan, np.inf
    assert model.correct(out, y).tolist() == [True, False, False]
    heads = Sequential(build_layers(HEADS_LAYERS), input_shape=(1, 28, 64))
    logits = np.zeros((2, 3, 10))
    logits[:, :, 4] = 1.0
    logits[1, 2, 0] = np.nan
    assert heads.correct(logits, np.full((2, 3), 4)).tolist() == [True, False]
