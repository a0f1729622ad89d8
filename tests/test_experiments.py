"""Seed sweeps: the t interval by hand, and a sweep end to end from the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _helpers import run_cli
from conftest import write_log

import sessionrec as sr
from sessionrec.errors import ConfigError
from sessionrec.experiments import grid_configs, sweep, t_interval


def test_t_interval_by_hand() -> None:
    mean, sd, low, high = t_interval([0.2, 0.3])
    assert mean == pytest.approx(0.25) and sd == pytest.approx(math.sqrt(0.005))
    half = 12.7062047 * sd / math.sqrt(2)  # t(0.975, df=1)
    assert (low, high) == pytest.approx((0.25 - half, 0.25 + half))
    assert t_interval([0.4]) == (0.4, 0.0, 0.4, 0.4)


@pytest.fixture
def tiny(tmp_path: Path) -> sr.PreparedData:
    rows = [(u, (u + j) % 7 + 1, 1000 * u + 60 * j) for u in range(40) for j in range(5)]
    log = write_log(tmp_path / "log.csv", rows)
    data = sr.prepare(log, tmp_path / "prep", session="user", split="random", test_fraction=0.25,
                      valid_fraction=0.25, min_item_support=1)  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    return data


def test_sweep_cli_runs_every_seed_and_summarises(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sw"
    argv = ["sweep", str(tiny.path), "--model", "two-tower", "--seeds", "3", "4", "--out",
            str(out), "-p", "n_epochs=1", "-p", "dim=4", "--cutoffs", "5"]  # fmt: skip
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    res = json.loads((out / "sweep.json").read_text())
    (config,) = res["configs"]
    assert config["params"] == {} and [r["seed"] for r in config["runs"]] == [3, 4]
    assert json.loads((out / "seed-4" / "config.json").read_text())["config"]["seed"] == 4
    values = [r["mrr@5"] for r in config["runs"]]
    assert values[0] != values[1]  # the seed reaches the model
    mean, sd, low, high = t_interval(values)
    assert config["summary"]["mrr@5"] == pytest.approx(
        {"mean": mean, "sd": sd, "low": low, "high": high}
    )
    md = (out / "sweep.md").read_text()
    assert "## Runs" in md and "sweep.png" in md
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "sweep.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert f"{mean:.4f} ± {sd:.4f}" in page
    assert "[95 %]" in stdout


def test_sweep_grid_runs_every_combination(tiny: sr.PreparedData, tmp_path: Path) -> None:
    assert grid_configs({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    res = sweep("two-tower", tiny, tmp_path / "g", [0, 1], params={"n_epochs": 1},
                grid={"dim": [4, 8]}, cutoffs=(5,))  # fmt: skip
    assert [c["params"] for c in res["configs"]] == [{"dim": 4}, {"dim": 8}]
    cfg = json.loads((tmp_path / "g" / "config-1" / "seed-0" / "config.json").read_text())
    assert cfg["config"]["dim"] == 8 and cfg["config"]["n_epochs"] == 1
    assert all(len(c["runs"]) == 2 for c in res["configs"])
    # comparing configurations is choosing one: by default fit on train, scored on valid
    assert (res["fit_on"], res["split"], res["selection"]) == ("train", "valid", "valid")
    assert res["best"] in (0, 1)
    assert (
        json.loads((tmp_path / "g" / "config-0" / "seed-0" / "training.json").read_text())["fit_on"]
        == "train"
    )
    assert "compared on valid" in (tmp_path / "g" / "sweep.md").read_text()
    with pytest.raises(ConfigError, match="non-empty list"):
        grid_configs({"dim": 4})  # type: ignore[dict-item]


def test_sweep_refuses_bad_requests(tiny: sr.PreparedData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeat"):
        sweep("pop", tiny, tmp_path / "a", [1, 1])
    with pytest.raises(ConfigError, match="--seeds"):
        sweep("two-tower", tiny, tmp_path / "b", [1], params={"seed": 2})
    with pytest.raises(ConfigError, match="rating model"):
        sweep("svd", tiny, tmp_path / "c", [1])
    with pytest.raises(ConfigError, match="both"):
        sweep("two-tower", tiny, tmp_path / "d", [1], params={"dim": 4}, grid={"dim": [8]})


def test_sweep_resume_keeps_finished_runs_asked_the_same(
    tiny: sr.PreparedData, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    kw = {"params": {"n_epochs": 1, "dim": 4}, "cutoffs": (5,)}
    first = sweep("two-tower", tiny, out, [0, 1], **kw)  # type: ignore[arg-type]
    original = [r["mrr@5"] for r in first["configs"][0]["runs"]]
    kept = json.loads((out / "seed-1" / "run.json").read_text())
    kept["run"]["mrr@5"] = 0.123  # a finished run: resume must take it as it is
    (out / "seed-1" / "run.json").write_text(json.dumps(kept))
    stale = json.loads((out / "seed-0" / "run.json").read_text())
    stale["asked"]["params"]["dim"] = 99  # asked otherwise: resume must train it again
    stale["run"]["mrr@5"] = 0.456
    (out / "seed-0" / "run.json").write_text(json.dumps(stale))
    again = sweep("two-tower", tiny, out, [0, 1], resume=True, **kw)  # type: ignore[arg-type]
    assert [r["mrr@5"] for r in again["configs"][0]["runs"]] == [original[0], 0.123]
    fresh = sweep("two-tower", tiny, out, [0, 1], overwrite=True, **kw)  # type: ignore[arg-type]
    assert [r["mrr@5"] for r in fresh["configs"][0]["runs"]] == original


def test_a_grid_is_never_scored_on_test_unless_asked_and_labelled(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kw = {"params": {"n_epochs": 1}, "grid": {"dim": [4, 8]}, "cutoffs": (5,)}
    with pytest.raises(ConfigError, match="tuning on test"):
        sweep("two-tower", tiny, tmp_path / "a", [0], split="test", **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="trained on"):
        sweep("two-tower", tiny, tmp_path / "b", [0], fit_on="train+valid", **kw)  # type: ignore[arg-type]
    res = sweep("two-tower", tiny, tmp_path / "c", [0], split="test", select_on_test=True, **kw)  # type: ignore[arg-type]
    assert res["selection"] == "test-selected"
    for name in ("sweep.md", "sweep.html"):
        assert "TEST-SELECTED" in (tmp_path / "c" / name).read_text()
    argv = ["sweep", str(tiny.path), "--model", "two-tower", "--seeds", "0", "--out",
            str(tmp_path / "d"), "-p", "n_epochs=1", "--grid", "dim=[4,8]", "--split", "test"]  # fmt: skip
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "--select-on-test" in err
    code, out, err = run_cli([*argv, "--select-on-test"], capsys)
    assert code == 0 and "TEST-SELECTED" in out
    # one configuration over seeds chooses nothing: train+valid → test stays its default
    one = sweep("two-tower", tiny, tmp_path / "e", [0], params={"n_epochs": 1, "dim": 4})
    assert (one["fit_on"], one["split"], one["selection"], one["best"]) == (
        "train+valid",
        "test",
        "none",
        None,
    )


def test_sweep_refuses_an_empty_part(tmp_path: Path) -> None:
    rows = [(u, (u + j) % 7 + 1, 1000 * u + 60 * j) for u in range(40) for j in range(5)]
    log = write_log(tmp_path / "log.csv", rows)
    data = sr.prepare(log, tmp_path / "prep", session="user", split="random", test_fraction=0.25,
                      valid_fraction=0, min_item_support=1)  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    with pytest.raises(ConfigError, match=r"valid part .* no predictions"):
        sweep("pop", data, tmp_path / "s", [0], grid={"k": [1, 2]})
