"""`sessionrec evaluate` and `sessionrec recommend` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers import run_cli, session_data
from conftest import write_log

import sessionrec as sr
from sessionrec.cli.evaluate import expand_greedy
from sessionrec.models import create


def model_dir(name: str, data: sr.PreparedData, path: Path) -> Path:
    """A saved model directory, as `sessionrec train` will write it (fit, items, save)."""
    model = create(name).fit(data.train)
    model.items = data.items
    return model.save(path)


@pytest.fixture
def tiny(tmp_path: Path) -> sr.PreparedData:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        t0 = int(rng.integers(0, 10 * 86400))
        rows += [(u, int(rng.integers(1, 9)), t0 + 60 * j) for j in range(6)]
    log = write_log(tmp_path / "log.csv", rows)
    return sr.prepare(
        log, tmp_path / "prep", session="1h", split="time", test_days=2, valid_days=2,
        min_item_support=1,
    )  # fmt: skip


def test_expand_greedy() -> None:
    g = {"--cutoffs": str.isdigit, "--session": lambda t: not t.startswith("-")}
    assert expand_greedy(["m", "d", "--cutoffs", "5", "10", "--json", "f"], g) == [
        "m", "d", "--cutoffs", "5", "--cutoffs", "10", "--json", "f",
    ]  # fmt: skip
    assert expand_greedy(["--cutoffs=5", "10", "x"], g) == [
        "--cutoffs",
        "5",
        "--cutoffs",
        "10",
        "x",
    ]
    assert expand_greedy(["--session", "A B", "C", "-k", "3"], g) == [
        "--session", "A B", "--session", "C", "-k", "3",
    ]  # fmt: skip
    assert expand_greedy(["--cutoffs", "--json", "f"], g) == ["--cutoffs", "--json", "f"]
    assert expand_greedy(["--", "--cutoffs", "5", "6"], g) == ["--", "--cutoffs", "5", "6"]


def test_evaluate_prints_and_writes_json(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = model_dir("pop", tiny, tmp_path / "pop")
    out = tmp_path / "res.json"
    code, stdout, _ = run_cli(
        ["evaluate", str(m), str(tiny.path), "--cutoffs", "1", "3", "--json", str(out),
         "--exclude-seen", "--device", "cpu"],
        capsys,
    )  # fmt: skip
    assert code == 0
    n = tiny.test.n_predictions
    assert f"predictions: {n:,}" in stdout
    res = json.loads(out.read_text())
    assert res["predictions"] == n
    for k in (1, 3):
        for key in ("recall", "mrr", "ndcg", "coverage", "popularity"):
            assert 0.0 <= res[f"{key}@{k}"] <= 1.0
    assert res["protocol"]["name"] == "every" and res["protocol"]["exclude_seen"] is True
    assert res["protocol"]["cutoffs"] == [1, 3] and res["protocol"]["ties"] == "conservative"
    assert res["split"] == "test"
    # the same numbers as the library call
    lib = sr.evaluate(
        sr.models.load_model(m), tiny.test, cutoffs=(1, 3), exclude_seen=True,
        popularity=tiny.train.item_counts(),
    )  # fmt: skip
    assert res["recall@3"] == pytest.approx(lib.metrics["recall@3"])
    assert res["popularity@3"] == pytest.approx(lib.metrics["popularity@3"])


def test_evaluate_sampled_and_last(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = model_dir("spop", tiny, tmp_path / "spop")
    out = tmp_path / "s.json"
    code, stdout, _ = run_cli(
        ["evaluate", str(m), str(tiny.path), "--protocol", "sampled", "--negatives", "3",
         "--negative-sampling", "popularity", "--json", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0 and "sampled" in stdout
    res = json.loads(out.read_text())
    assert res["protocol"]["sampled"] is True and res["protocol"]["negatives"] == 3
    code, stdout, _ = run_cli(
        ["evaluate", str(m), str(tiny.path), "--protocol", "last", "--split", "valid",
         "--json", str(out)],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert json.loads(out.read_text())["predictions"] == tiny.valid.n_sessions


def test_evaluate_errors_are_one_line_exit_2(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = model_dir("pop", tiny, tmp_path / "pop")
    code, _, err = run_cli(["evaluate", str(m), str(tiny.path), "--ties", "random"], capsys)
    assert code == 2 and "unknown tie mode 'random'" in err
    code, _, err = run_cli(["evaluate", str(m), str(tiny.path), "--split", "dev"], capsys)
    assert code == 2 and "unknown split" in err
    code, _, err = run_cli(["evaluate", str(tmp_path / "nope"), str(tiny.path)], capsys)
    assert code == 2 and "config.json" in err
    # a model over another vocabulary is refused rather than silently mis-scored
    other = create("pop").fit(session_data([[0, 1, 2]], 3))
    other.save(tmp_path / "other")
    code, _, err = run_cli(["evaluate", str(tmp_path / "other"), str(tiny.path)], capsys)
    assert code == 2 and "8 items" in err


def test_recommend_by_id_without_titles(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = model_dir("pop", tiny, tmp_path / "pop")
    code, stdout, _ = run_cli(["recommend", str(m), "--session", "4", "8", "-k", "3"], capsys)
    assert code == 0
    # pop over train counts: item ids 4 (20) and 8 (19) are seen, so 7 (18), 6 (17), 5 (13)
    counts = dict(zip(tiny.items["item_id"], tiny.items["count"], strict=True))
    best = sorted((i for i in counts if i not in (4, 8)), key=lambda i: -counts[i])[:3]
    lines = [ln for ln in stdout.splitlines() if ln.strip().startswith("│")]
    assert [int(ln.split("│")[-2]) for ln in lines] == best


@pytest.mark.e2e
def test_ml100k_evaluate_and_recommend_by_title(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sr.prepare(
        ml100k, tmp_path / "p", session="1h", split="time", test_days=21, valid_days=21
    )
    m = model_dir("pop", data, tmp_path / "pop")
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli(["evaluate", str(m), str(data.path), "--json", str(out)], capsys)
    assert code == 0 and "predictions: 7,117" in stdout
    assert json.loads(out.read_text())["predictions"] == 7117
    code, stdout, _ = run_cli(
        ["recommend", str(m), "--session", "Toy Story (1995)", "Heat (1995)", "-k", "10"], capsys
    )
    assert code == 0
    assert "Star Wars" in stdout and "session: Toy Story (1995) → Heat (1995)" in stdout
    assert stdout.count("│") >= 10 * 6
    code, _, err = run_cli(["recommend", str(m), "--session", "Toy Stori", "-k", "3"], capsys)
    assert code == 2 and "closest: Toy Story (1995)" in err
    # any word of a title finds it, as the service's search does
    code, stdout, _ = run_cli(["recommend", str(m), "--session", "Jedi", "-k", "3"], capsys)
    assert code == 0 and "session: Return of the Jedi (1983)" in stdout
    assert "(seen items excluded)" in stdout


def test_evaluate_ci_and_compare(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pop = model_dir("pop", tiny, tmp_path / "pop")
    markov = model_dir("markov", tiny, tmp_path / "markov")
    out = tmp_path / "e.json"
    code, stdout, err = run_cli(["evaluate", str(pop), str(tiny.path), "--ci", "--n-boot",
                                 "200", "--json", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert "bootstrap resamples" in " ".join(stdout.split())
    res = json.loads(out.read_text())
    iv = res["intervals"]["recall@20"]
    assert res["recall@20"] == pytest.approx(iv["value"])
    assert iv["low"] <= iv["value"] <= iv["high"]
    cmp_json = tmp_path / "c.json"
    code, stdout, err = run_cli(["compare", str(tiny.path), str(pop), str(markov),
                                 "--metric", "mrr@5", "--n-boot", "200",
                                 "--json", str(cmp_json)], capsys)  # fmt: skip
    assert code == 0, err
    c = json.loads(cmp_json.read_text())
    first, second = c["models"]
    assert first["name"] == "pop" and "vs_first" not in first
    d = second["vs_first"]["mrr@5"]
    value = second["intervals"]["mrr@5"]["value"] - first["intervals"]["mrr@5"]["value"]
    assert d["difference"] == pytest.approx(value) and 0 <= d["p_value"] <= 1
    code, _, err = run_cli(["compare", str(tiny.path), str(pop)], capsys)
    assert code == 2 and "two or more" in err
