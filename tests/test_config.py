"""Configs: the shipped files, the TOML round trip, and errors that name the key."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nn.config import CONFIG_DIR, Config
from nn.errors import DataError


def test_the_default_file_states_the_real_defaults():
    assert Config.load("default") == Config()


def test_the_classic_config_is_the_beginner_network():
    cfg = Config.load("classic")
    assert cfg.model.hidden == (30,) and cfg.model.activation == "sigmoid"
    assert cfg.model.loss == "mean_squared_error" and cfg.optimizer.name == "sgd"
    assert cfg.train.batch_size == 10 and cfg.train.epochs == 30


@given(
    hidden=st.lists(st.integers(1, 2000), max_size=4),
    lr=st.floats(1e-6, 10, allow_nan=False),
    name=st.sampled_from(["sgd", "adam", "momentum", "nesterov"]),
    epochs=st.integers(1, 100),
    seed=st.integers(0, 2**31),
)
def test_toml_round_trip(hidden, lr, name, epochs, seed):
    cfg = Config().override([f"model.hidden={hidden}", f"optimizer.lr={lr!r}",
                             f"optimizer.name={name}", f"train.epochs={epochs}",
                             f"train.seed={seed}"])  # fmt: skip
    assert cfg.model.hidden == tuple(hidden) and cfg.optimizer.lr == lr
    assert Config.from_toml(cfg.to_toml()) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[trian]\nepochs = 3\n", "unknown table [trian]; expected one of"),
        ("[train]\nepoch = 3\n", "[train]: unknown key 'epoch'; expected one of"),
        ("[train]\nepochs = 3.5\n", "[train]: epochs must be int, found 3.5"),
        ('[optimizer]\nlr = "fast"\n', "[optimizer]: lr must be float, found 'fast'"),
        ("[model]\nhidden = 800\n", "[model]: hidden must be a list of integers, found 800"),
        ("[train]\nepochs = true\n", "epochs must be int, found True"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_errors_name_the_source_table_and_key(text, message):
    with pytest.raises(DataError) as e:
        Config.from_toml(text, "my.toml")
    assert "config my.toml" in str(e.value) and message in str(e.value)


def test_an_integer_is_accepted_where_a_float_is_expected():
    assert Config.from_toml("[optimizer]\nlr = 1\n").optimizer.lr == 1.0


def test_overrides():
    cfg = Config().override(["train.epochs=3", "optimizer.name=adam", "model.hidden=[10, 20]"])
    assert (cfg.train.epochs, cfg.optimizer.name, cfg.model.hidden) == (3, "adam", (10, 20))
    with pytest.raises(DataError, match=r"expected table\.key=value"):
        Config().override(["epochs=3"])
    with pytest.raises(DataError, match="unknown key 'epoch'"):
        Config().override(["train.epoch=3"])


def test_an_unknown_config_lists_the_shipped_ones(tmp_path):
    shipped = r"not a shipped config \(shipped: classic, cnn, default, digits7, digits7_cnn_heads"
    with pytest.raises(DataError, match=shipped):
        Config.load(tmp_path / "nope.toml")
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) == [
        "classic",
        "cnn",
        "default",
        "digits7",
        "digits7_cnn_heads",
        "digits7_mlp_heads",
    ]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("model.activation=foo", "[model] activation must be relu | sigmoid | tanh, found 'foo'"),
        ("model.init=foo", "[model] init must be auto | glorot_normal"),
        ("model.hidden=[0]", "[model] hidden must be widths >= 1, found (0,)"),
        ("model.loss=hinge", "[model] loss must be softmax_cross_entropy | mean_squared_error"),
        ("optimizer.name=adagrad", "[optimizer] name must be sgd | momentum | nesterov | adam"),
        ("optimizer.lr=-1", "[optimizer] lr must be a finite number >= 0, found -1.0"),
        ("optimizer.momentum=1.5", "[optimizer] momentum must be in [0, 1), found 1.5"),
        ("schedule.final_lr=1.0", "[schedule] final_lr must be in [0, optimizer.lr], found 1.0"),
        ("schedule.name=linear", "[schedule] name must be constant | step | cosine"),
        ("train.seed=-1", "[train] seed must be an integer >= 0, found -1"),
        ("train.shift=-1", "[train] shift must be an integer in 0..13 (pixels), found -1"),
        ("train.patience=-1", "[train] patience must be an integer >= 0 (0: off), found -1"),
        ("train.batch_size=0", "[train] batch_size must be an integer >= 1, found 0"),
    ],
)
def test_values_out_of_range_are_named_before_anything_runs(assignment, message):
    with pytest.raises(DataError) as e:
        Config().override([assignment])
    assert message in str(e.value)


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(DataError, match="early stopping needs a validation split"):
        Config().override(["train.validation=0", "train.patience=2"])


def test_differences_name_each_changed_key():
    changed = Config().override(["train.epochs=3", "optimizer.name=adam"])
    assert Config().differences(changed) == [
        "optimizer.name: 'nesterov' vs 'adam'",
        "train.epochs: 20 vs 3",
    ]
