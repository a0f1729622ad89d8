"""The README's commands, run as written, against the numbers the README quotes beside them.

The documented subset (a few seconds each on ML-100K): the acceptance `prepare` (7,117 test
predictions), the rating `prepare` (66 of 30,000 test ratings dropped as unseen) and the TFRS
`prepare --examples tfrs` (83,652 / 9,295 examples). Training figures (0.940, the results
table) take minutes and are checked by the benchmarks that BENCHMARKS.md lists.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from _helpers import run_cli

import sessionrec as sr

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def readme_command(prefix: str) -> list[str]:
    """The README's command line starting with ``prefix`` (continuations joined, the comment
    dropped), as arguments after ``sessionrec``."""
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            text = line
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            args = shlex.split(text.split("  #")[0])
            assert args[0] == "sessionrec"
            return args[1:]
    raise AssertionError(f"the README has no command starting {prefix!r}")


def quoted(pattern: str) -> list[int]:
    """The numbers the README quotes in ``pattern`` (a regex with groups), commas removed."""
    found = re.search(pattern, README)
    assert found, f"the README no longer says {pattern!r}"
    return [int(g.replace(",", "")) for g in found.groups()]


def run(args: list[str], ml100k: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(ml100k) if a == "ml-100k" else a for a in args]
    args = [str(tmp / a) if a.startswith("runs/") else a for a in args]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err


@pytest.mark.e2e
def test_readme_prepare_commands_give_the_quoted_numbers(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(readme_command("sessionrec prepare ml-100k --out runs/ml-100k --session-gap 1h --split"),
        ml100k, tmp_path, capsys)  # fmt: skip
    (predictions,) = quoted(r"\(([\d,]+) on the ML-100K test part\)")
    assert sr.PreparedData(tmp_path / "runs/ml-100k").test.n_predictions == predictions

    run(readme_command("sessionrec prepare ml-100k --out runs/ml100k-ratings"), ml100k,
        tmp_path, capsys)  # fmt: skip
    dropped, total = quoted(r"\(counted in `meta.json`: ([\d,]+) of ([\d,]+) on ML-100K\)")
    meta = sr.PreparedData(tmp_path / "runs/ml100k-ratings").meta
    assert meta["dropped"]["test"]["unknown_item_events"] == dropped
    assert meta["counts"]["test"]["events"] + dropped == total

    run(readme_command("sessionrec prepare ml-100k --out runs/tfrs --examples tfrs"), ml100k,
        tmp_path, capsys)  # fmt: skip
    train, test = quoted(r"--examples tfrs +# ([\d,]+) / ([\d,]+) examples")
    tfrs = sr.PreparedData(tmp_path / "runs/tfrs")
    assert (tfrs.train.n_sessions, tfrs.test.n_sessions) == (train, test)


def test_readme_commands_are_found() -> None:
    assert readme_command("sessionrec crossval ml-100k --model svd --protocol random")[-2:] == [
        "--seed",
        "1",
    ]  # the 0.940 beside it needs the seed (checked by hand: RMSE 0.9399)
