"""Rating prediction: metrics by hand, protocols, models (fit, save/load, seeds), crossval CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sessionrec.cli import app
from sessionrec.errors import ConfigError, UnknownNameError
from sessionrec.rating import (
    RATING_MODELS,
    Ratings,
    create_rating_model,
    crossval,
    fcp,
    kfold,
    load_rating_model,
    mae,
    random_split,
    rmse,
    time_split,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a loaded 2-core machine: extra intra-op threads only oversubscribe."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_rmse_mae_by_hand() -> None:
    truth, pred = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0])
    assert rmse(truth, pred) == pytest.approx(np.sqrt(5 / 3))
    assert mae(truth, pred) == pytest.approx(1.0)
    assert np.isnan(rmse(np.zeros(0), np.zeros(0)))


def test_fcp_by_hand() -> None:
    # User 0: truths 5 > 3 > 1; predictions order (5,3) right, (5,1) right, (3,1) wrong → 2 c, 1 d.
    # User 1: truths 4 > 2, prediction tie → discordant (as in Surprise). User 2: one rating.
    users = np.array([0, 0, 0, 1, 1, 2])
    truth = np.array([5.0, 3.0, 1.0, 4.0, 2.0, 3.0])
    pred = np.array([4.5, 2.0, 2.5, 3.0, 3.0, 1.0])
    assert fcp(users, truth, pred) == pytest.approx(2 / 4)
    # Equal true ratings make no pair.
    assert np.isnan(fcp(np.array([0, 0]), np.array([3.0, 3.0]), np.array([1.0, 2.0])))
    # Order of rows does not matter.
    perm = np.array([5, 3, 1, 0, 4, 2])
    assert fcp(users[perm], truth[perm], pred[perm]) == pytest.approx(0.5)


def _synthetic(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Ratings:
    """Low-rank ratings with user and item biases, ~50 % observed."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    bu, bi = rng.normal(0, 0.5, n_users), rng.normal(0, 0.5, n_items)
    full = np.clip(3 + bu[:, None] + bi[None, :] + p @ q.T * 0.7, 1, 5)
    mask = rng.random((n_users, n_items)) < 0.5
    u, i = np.nonzero(mask)
    return Ratings.from_arrays(u, i, np.round(full[u, i] * 2) / 2, n_users=n_users, n_items=n_items)


def test_protocols_partition_the_ratings() -> None:
    data = _synthetic()
    seen = np.zeros(len(data), dtype=int)
    for train, test in kfold(data, 4, seed=1):
        assert len(train) + len(test) == len(data)
        key = test.users * 1000 + test.items
        seen[np.isin(data.users * 1000 + data.items, key)] += 1
    assert (seen == 1).all()
    train, test = random_split(data, 0.3, seed=0)
    assert len(test) == round(0.3 * len(data)) and len(train) + len(test) == len(data)
    train, test = time_split(data, 0.2)
    assert train.timestamps.max() <= test.timestamps.min()


@pytest.mark.parametrize("name", sorted(RATING_MODELS))
def test_rating_model_contract(name: str, tmp_path: Path) -> None:
    cls = create_rating_model(name).__class__
    data = _synthetic()
    train, test = random_split(data, 0.2, seed=3)
    records: list[dict[str, float]] = []
    m = create_rating_model(name, cls.test_params).fit(train, test, callback=records.append)
    pred = m.predict(test.users, test.items)
    assert pred.shape == (len(test),) and np.isfinite(pred).all()
    assert pred.min() >= data.scale[0] and pred.max() <= data.scale[1]
    assert records and {"epoch", "train_loss", "seconds", "valid_rmse"} <= set(records[0])
    # Same seed → same numbers; save → load → same predictions.
    again = create_rating_model(name, cls.test_params).fit(train)
    np.testing.assert_array_equal(again.predict(test.users, test.items), pred)
    loaded = load_rating_model(m.save(tmp_path / name))
    np.testing.assert_array_equal(loaded.predict(test.users, test.items), pred)
    # Unknown users/items fall back to the global mean (clipped).
    assert m.predict(np.array([-1]), np.array([-1]))[0] == pytest.approx(m.global_mean)
    top = m.recommend(int(data.user_ids[0]), k=5)
    seen = set(train.items[train.users == 0].tolist())
    assert top.height == 5 and not seen & set(top["item_id"].to_list())


@pytest.mark.parametrize("name", ["baseline", "svd", "svdpp"])
def test_models_beat_the_global_mean(name: str) -> None:
    data = _synthetic(80, 60)
    train, test = random_split(data, 0.2, seed=0)
    params = {"n_epochs": 40, "factors": 8, "learning_rate": 0.02} if name != "baseline" else {}
    m = create_rating_model(name, params).fit(train)
    mean_rmse = rmse(test.ratings, np.full(len(test), train.ratings.mean()))
    assert m.evaluate(test)["rmse"] < 0.9 * mean_rmse


def test_divergence_is_an_error_not_nan_predictions() -> None:
    data = _synthetic(80, 60)
    with pytest.raises(ConfigError, match="diverged in epoch"):
        create_rating_model(
            "svdpp", {"batch_size": 4096, "learning_rate": 0.02, "n_epochs": 40}
        ).fit(data)


def test_svdpp_with_batches_of_one_is_koren_per_rating_sgd() -> None:
    """batch_size=1 is the per-rating algorithm (Surprise's SVDpp loop), written plainly."""
    data = _synthetic(12, 9, seed=2)
    c = {
        "factors": 3,
        "n_epochs": 2,
        "learning_rate": 0.01,
        "reg": 0.05,
        "batch_size": 1,
        "seed": 4,
    }
    m = create_rating_model("svdpp", c).fit(data)
    rng = np.random.default_rng(4)
    nu, ni, f = data.n_users, data.n_items, 3
    bu, bi = np.zeros(nu), np.zeros(ni)
    P, Q, Y = (rng.normal(0, 0.1, (n, f)) for n in (nu, ni, ni))
    mu = float(np.mean(data.ratings, dtype=np.float64))
    rated = {u: data.items[data.users == u] for u in range(nu)}
    for _ in range(2):
        for row in rng.permutation(len(data)):
            u, i, r = data.users[row], data.items[row], float(data.ratings[row])
            norm = 1 / np.sqrt(max(len(rated[u]), 1))
            imp = Y[rated[u]].sum(0) * norm
            err = r - (mu + bu[u] + bi[i] + Q[i] @ (P[u] + imp))
            pu, qi = P[u].copy(), Q[i].copy()
            bu[u] += 0.01 * (err - 0.05 * bu[u])
            bi[i] += 0.01 * (err - 0.05 * bi[i])
            P[u] += 0.01 * (err * qi - 0.05 * pu)
            Q[i] += 0.01 * (err * (pu + imp) - 0.05 * qi)
            for j in rated[u]:
                Y[j] += 0.01 * (err * qi * norm - 0.05 * Y[j])
    u, i = data.users, data.items
    imp_all = np.stack([Y[rated[k]].sum(0) / np.sqrt(max(len(rated[k]), 1)) for k in range(nu)])
    expect = np.clip(mu + bu[u] + bi[i] + (Q[i] * (P[u] + imp_all[u])).sum(1), 1, 5)
    np.testing.assert_allclose(m.predict(u, i), expect, rtol=1e-6)  # predict gives float32


def test_baseline_matches_closed_form_one_step() -> None:
    # Two users, two items; one ALS epoch: item biases from zero user biases, then user biases.
    data = Ratings.from_arrays([0, 0, 1], [0, 1, 0], [5.0, 3.0, 4.0])
    m = create_rating_model("baseline", {"n_epochs": 1, "reg_user": 1.0, "reg_item": 1.0})
    m.fit(data)
    mu = 4.0
    bi = np.array([(1.0 + 0.0) / (1 + 2), -1.0 / (1 + 1)])
    bu = np.array([((5 - mu - bi[0]) + (3 - mu - bi[1])) / (1 + 2), (4 - mu - bi[0]) / (1 + 1)])
    np.testing.assert_allclose(m.predict(np.array([1]), np.array([1])), [mu + bu[1] + bi[1]])


def test_unknown_names_and_params() -> None:
    with pytest.raises(UnknownNameError):
        create_rating_model("nope")
    with pytest.raises(ConfigError):
        create_rating_model("svd", {"factorz": 3})


def test_crossval_function_and_cli(tmp_path: Path) -> None:
    data = _synthetic()
    res = crossval(data, "baseline", folds=3, seed=1)
    assert [r["fold"] for r in res["folds"]] == [1, 2, 3]
    assert sum(r["n_test"] for r in res["folds"]) == len(data)
    assert res["mean"]["rmse"] == pytest.approx(np.mean([r["rmse"] for r in res["folds"]]))
    # CLI on a tiny CSV log with ratings.
    rows = ["user_id,item_id,rating,timestamp"]
    rows += [
        f"{u},{i},{r},{1000 + k}"
        for k, (u, i, r) in enumerate(zip(data.users, data.items, data.ratings, strict=True))
    ]
    log = tmp_path / "ratings.csv"
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "cv.json"
    result = CliRunner().invoke(
        app,
        [
            "crossval",
            str(log),
            "--model",
            "svd",
            "--folds",
            "2",
            "--seed",
            "1",
            "-p",
            "n_epochs=2",
            "-p",
            "factors=3",
            "--json",
            str(out),
            "--time-unit",
            "s",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert len(saved["folds"]) == 2 and {"rmse", "mae", "fcp"} <= set(saved["mean"])
    assert saved["params"] == {"n_epochs": 2, "factors": 3}


def test_crossval_single_split_protocols(tmp_path: Path) -> None:
    data = _synthetic()
    rnd = crossval(data, "baseline", protocol="random", test_fraction=0.3, seed=2)
    assert rnd["protocol"] == "random 0.3" and len(rnd["folds"]) == 1
    assert rnd["folds"][0]["n_test"] == round(0.3 * len(data))
    expect_train, expect_test = random_split(data, 0.3, seed=2)
    assert rnd["folds"][0]["rmse"] == pytest.approx(
        create_rating_model("baseline").fit(expect_train).evaluate(expect_test)["rmse"]
    )
    tim = crossval(data, "baseline", protocol="time", test_fraction=0.2)
    assert tim["folds"][0]["n_test"] == round(0.2 * len(data)) and rnd["std"]["rmse"] == 0
    with pytest.raises(ConfigError, match="protocol"):
        crossval(data, "baseline", protocol="loo")
    with pytest.raises(ConfigError, match="test_fraction"):
        crossval(data, "baseline", protocol="random", test_fraction=1.0)
