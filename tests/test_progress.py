"""The progress bar: redrawn in place on a terminal, one line per epoch in a log."""

import io

from nn.progress import ProgressBar

STEP = {"epoch": 2, "epochs": 20, "step": 215, "steps": 430, "loss": 0.1234,
        "accuracy": 0.9612, "images_per_second": 14230.0}  # fmt: skip
EPOCH = {"end_of_epoch": True, "epoch": 2, "train_loss": 0.1, "train_accuracy": 0.97,
         "val_loss": 0.08, "val_accuracy": 0.975, "lr": 0.049, "seconds": 3.9,
         "images_per_second": 14100.0}  # fmt: skip


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_the_live_bar_with_every_field():
    out = Terminal()
    bar = ProgressBar(out)
    bar(STEP)
    line = out.getvalue()
    assert line.startswith("\repoch 2/20 [############............] batch 215/430 ")
    assert "loss 0.1234 acc 96.12% 14,230 img/s" in line
    bar(EPOCH)
    assert out.getvalue().endswith(
        "\r\033[Kepoch   2: loss 0.1000 acc 97.00% | val loss 0.0800 acc 97.50% | lr 0.049 | "
        "3.9 s, 14,100 img/s\n"
    )


def test_a_log_file_gets_only_the_epoch_lines():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar(STEP)
    bar(EPOCH)
    assert out.getvalue() == (
        "epoch   2: loss 0.1000 acc 97.00% | val loss 0.0800 acc 97.50% | lr 0.049 | "
        "3.9 s, 14,100 img/s\n"
    )


def test_redraws_are_throttled_but_the_last_batch_is_drawn():
    out = Terminal()
    bar = ProgressBar(out)
    for step in range(1, 101):
        bar({**STEP, "step": step, "steps": 100})
    draws = out.getvalue().count("\r")
    assert 1 <= draws < 100 and "batch 100/100" in out.getvalue()
