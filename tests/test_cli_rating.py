"""Rating models and user recommendations through `sessionrec train/evaluate/recommend`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from _helpers import run_cli

import sessionrec as sr


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_cli(argv, capsys)
    return code, out + err


@pytest.fixture
def rated(tmp_path: Path) -> Path:
    """30 users x 12 items, ratings from user and item biases; per-user time split."""
    rng = np.random.default_rng(0)
    ub, ib = rng.normal(0, 1, 30), np.linspace(-1.5, 1.5, 12)
    rows = []
    for u in range(30):
        for j, i in enumerate(rng.permutation(12)[:9]):
            r = int(np.clip(np.rint(3 + ub[u] + ib[i] + rng.normal(0, 0.3)), 1, 5))
            rows.append((u, int(i) + 1, r, 1_000_000 + 3600 * (u * 20 + j)))
    log = tmp_path / "log.csv"
    pl.DataFrame(
        rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"
    ).write_csv(log)
    sr.prepare(
        log, tmp_path / "prep", session="user", split="user-time", test_fraction=0.3,
        valid_fraction=0.1, min_item_support=0, min_session_length=0,
    )  # fmt: skip
    return tmp_path / "prep"


@pytest.mark.parametrize("name", ["baseline", "svd", "autorec"])
def test_train_evaluate_recommend_rating(
    name: str, rated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sessionrec.rating import RATING_MODELS, load_rating_model

    params = [f"{k}={json.dumps(v)}" for k, v in RATING_MODELS_TEST[name].items()]
    argv = ["train", str(rated), "--model", name, "--out", str(tmp_path / "m")]
    code, out = run(argv + [a for p in params for a in ("--param", p)], capsys)
    assert code == 0, out
    assert f"trained {name}" in out
    assert name in RATING_MODELS
    model = load_rating_model(tmp_path / "m")
    code, out = run(
        ["evaluate", str(tmp_path / "m"), str(rated), "--json", str(tmp_path / "r.json")], capsys
    )
    assert code == 0, out
    assert "RMSE" in out and "Recall" not in out
    res = json.loads((tmp_path / "r.json").read_text())
    test = pl.read_parquet(rated / "test.parquet").filter(pl.col("target"))
    assert res["ratings"] == test.height
    assert 0 < res["rmse"] < 4.0 and 0 < res["mae"] <= res["rmse"] and 0 <= res["fcp"] <= 1
    code, out = run(["recommend", str(tmp_path / "m"), "--user", "3", "-k", "2"], capsys)
    assert code == 0, out
    # two unrated items of user 3, none it rated in training
    seen = set(pl.read_parquet(rated / "train.parquet").filter(pl.col("user_id") == 3)["item_id"])
    rec = model.recommend(3, 2)
    assert rec.height == 2 and not set(rec["item_id"]) & seen
    assert "top 2 unrated items for user 3" in " ".join(out.split())


RATING_MODELS_TEST = {
    "baseline": {},
    "svd": {"n_epochs": 3},
    "autorec": {"n_epochs": 2},
}


def test_epoch_progress_printed(
    rated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(rated), "--model", "svd", "--out", str(tmp_path / "m")]
    code, out = run([*argv, "--param", "n_epochs=2"], capsys)
    assert code == 0, out
    assert "epoch 1:" in out and "epoch 2:" in out and "valid rmse" in out
    lines = (tmp_path / "m" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    assert all("valid_rmse" in json.loads(x) for x in lines)
    assert (tmp_path / "m" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_train_fits_rating_models_on_a_random_event_split(tmp_path: Path) -> None:
    """``sr.train`` dispatches rating models; the 70/30 split holds out single ratings."""
    rng = np.random.default_rng(1)
    rows = [(u, int(i), int(rng.integers(1, 6)), 1000 * u + k)
            for u in range(20) for k, i in enumerate(rng.permutation(15)[:10])]  # fmt: skip
    log = tmp_path / "log.csv"
    pl.DataFrame(
        rows, schema=["user_id", "item_id", "rating", "timestamp"], orient="row"
    ).write_csv(log)
    prep = sr.prepare(
        log, tmp_path / "p", session="user", split="random-event", test_fraction=0.3,
        valid_fraction=0.1, min_item_support=0, min_session_length=0, seed=5,
    )  # fmt: skip
    assert isinstance(prep, sr.PreparedData)
    counts = prep.meta["counts"]
    dropped = prep.meta["dropped"]["test"]
    held = (
        counts["test"]["events"] + dropped["unknown_item_events"] + dropped["short_session_events"]
    )
    assert held == 60 and counts["valid"]["events"] + counts["train"]["events"] <= 140
    model = sr.train("svd", prep, tmp_path / "m", params={"n_epochs": 3}, seed=4, progress=False)
    from sessionrec.rating import RatingModel
    from sessionrec.rating.prepared import prepared_ratings

    assert isinstance(model, RatingModel) and model.config.seed == 4
    assert len(model.train_ratings) == counts["train"]["events"]
    history = [json.loads(x) for x in (tmp_path / "m" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and "valid_rmse" in history[0]
    assert len(prepared_ratings(prep, "test")) == counts["test"]["events"]


def test_rating_train_refuses_next_item_options(
    rated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(rated), "--model", "svd", "--out", str(tmp_path / "m"), "--resume"]
    code, out = run(argv, capsys)
    assert code == 2 and "--resume" in out and not (tmp_path / "m").exists()


def test_recommend_bpr_for_user(
    rated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(rated), "--model", "bpr", "--out", str(tmp_path / "b")]
    code, out = run([*argv, "--param", "n_epochs=2"], capsys)
    assert code == 0, out
    code, out = run(["recommend", str(tmp_path / "b"), "--user", "5", "-k", "3"], capsys)
    assert code == 0, out
    n_seen = pl.read_parquet(rated / "train.parquet").filter(pl.col("user_id") == 5).height
    assert f"user 5: {n_seen} training items as the session" in " ".join(out.split())
    code, out = run(["recommend", str(tmp_path / "b"), "--user", "999"], capsys)
    assert code == 2 and "user" in out


def test_recommend_needs_session_or_user(
    rated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["train", str(rated), "--model", "baseline", "--out", str(tmp_path / "m")], capsys)
    code, out = run(["recommend", str(tmp_path / "m")], capsys)
    assert code == 2 and "--user" in out
    code, out = run(["recommend", str(tmp_path / "m"), "--session", "1"], capsys)
    assert code == 2 and "--user" in out


def test_rating_train_needs_ratings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.csv"
    pl.DataFrame(
        [(u, i, 100 * u + i) for u in range(5) for i in range(4)],
        schema=["user_id", "item_id", "timestamp"],
        orient="row",
    ).write_csv(log)
    sr.prepare(log, tmp_path / "p", session="user", split="user-time", test_fraction=0.25,
               valid_fraction=0, min_item_support=0, min_session_length=0)  # fmt: skip
    code, out = run(
        ["train", str(tmp_path / "p"), "--model", "svd", "--out", str(tmp_path / "m")], capsys
    )
    assert code == 2 and "rating" in out


@pytest.mark.parametrize("split", ["user-time", "random-event"])
def test_ml100k_svd_end_to_end(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str
) -> None:
    prep = tmp_path / "prep"
    sr.prepare(ml100k, prep, session="user", split=split, test_fraction=0.2,
               valid_fraction=0, min_item_support=0, min_session_length=0)  # fmt: skip
    code, out = run(["train", str(prep), "--model", "svd", "--out", str(tmp_path / "m")], capsys)
    assert code == 0, out
    code, out = run(
        ["evaluate", str(tmp_path / "m"), str(prep), "--json", str(tmp_path / "r.json")], capsys
    )
    assert code == 0, out
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["ratings"] > 15_000 and res["rmse"] < 1.05 and res["fcp"] > 0.6
