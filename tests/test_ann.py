"""Item indexes: exact search by brute force, HNSW recall, ties, persistence, models, CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import run_cli, session_data

from sessionrec.ann import (
    ExactIndex,
    HNSWIndex,
    IndexedModel,
    ItemIndex,
    VectorScorer,
    build_index,
    index_recall,
    load_index,
    prefix_sessions,
    session_queries,
)
from sessionrec.errors import ConfigError, DataError, SessionrecError
from sessionrec.evaluation import evaluate
from sessionrec.models import REGISTRY, create, model_class

needs_faiss = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None, reason="the ann extra (faiss-cpu) is not installed"
)


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return (centres[rng.integers(20, size=n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def test_exact_search_is_brute_force_with_exclusions() -> None:
    items, queries = _clustered(300, 8, 0), _clustered(17, 8, 1)
    index = ExactIndex(items, block=5)  # several blocks
    scores, idx = index.search(queries, 7)
    full = queries @ items.T
    for row in range(17):
        expect = np.argsort(-full[row], kind="stable")[:7]
        np.testing.assert_array_equal(np.sort(idx[row]), np.sort(expect))
        np.testing.assert_allclose(scores[row], full[row, idx[row]], rtol=1e-5)
        assert np.all(np.diff(scores[row]) <= 0)
    banned = [list(idx[r, :3]) for r in range(17)]
    _, i2 = index.search(queries, 7, exclude=banned)
    for row in range(17):
        assert not set(i2[row]) & set(banned[row]) and len(set(i2[row])) == 7
        np.testing.assert_array_equal(i2[row][:4], idx[row][3:])  # the next best move up
    _, tiny = ExactIndex(items[:5]).search(queries, 10, exclude=[[0, 1]] * 17)
    assert tiny.shape == (17, 5) and (tiny[:, 3:] == -1).all()  # padded, never excluded ids


@needs_faiss
def test_hnsw_recall_against_exact_and_its_knobs() -> None:
    items, queries = _clustered(3000, 32, 2), _clustered(200, 32, 3)
    exact = ExactIndex(items)
    good = HNSWIndex(items, m=32, ef_construction=200, ef_search=200, threads=1)
    poor = HNSWIndex(items, m=2, ef_construction=2, ef_search=1, threads=1)
    r_good, r_poor = index_recall(good, exact, queries, 10), index_recall(poor, exact, queries, 10)
    assert r_good > 0.98 and r_poor < r_good and 0 <= r_poor <= 1
    assert index_recall(exact, exact, queries, 10) == 1.0
    _, idx = good.search(queries, 10, exclude=[[0]] * 200)
    assert not (idx == 0).any()


def test_index_recall_counts_an_equally_scored_item_as_found() -> None:
    items = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    exact = ExactIndex(items)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    _, e_idx = exact.search(q, 1)

    class Other(ItemIndex):  # returns the tied twin the exact index did not pick
        kind = "other"

        def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return np.ones((1, k), np.float32), np.array([[1 - e_idx[0, 0]]])

        def _save(self, directory: Path) -> None: ...

        def stored_vectors(self, rows: np.ndarray) -> np.ndarray:
            return items[rows]

    assert index_recall(Other(items), exact, q, 1) == 1.0

    class Wrong(Other):
        def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            return np.zeros((1, k), np.float32), np.array([[2]])

    assert index_recall(Wrong(items), exact, q, 1) == 0.0


@pytest.mark.parametrize("kind", ["exact", pytest.param("hnsw", marks=needs_faiss)])
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    items, queries = _clustered(500, 16, 4), _clustered(30, 16, 5)
    index = ExactIndex(items) if kind == "exact" else HNSWIndex(items, m=8, threads=1)
    index.save(tmp_path / "ix", note="x")
    back = load_index(tmp_path / "ix")
    assert type(back) is type(index) and (back.n_items, back.dim) == (500, 16)
    for a, b in zip(index.search(queries, 10), back.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["note"] == "x"
    with pytest.raises(DataError, match=r"index\.json"):
        load_index(tmp_path)


def _cycle_data(n: int = 12, count: int = 80) -> Any:
    rng = np.random.default_rng(0)
    sessions = []
    for _ in range(count):
        start = int(rng.integers(n))
        sessions.append([(start + t) % n for t in range(int(rng.integers(3, 7)))])
    return session_data(sessions, n)


VECTOR_MODELS = [n for n in REGISTRY if issubclass(model_class(n), VectorScorer)]


def test_vector_models_are_the_expected_ones() -> None:
    assert set(VECTOR_MODELS) == {"two-tower", "bpr", "als"}


@pytest.mark.parametrize("name", VECTOR_MODELS)
def test_score_is_the_inner_product_of_the_vectors(name: str) -> None:
    pytest.importorskip("implicit") if name in ("bpr", "als") else None
    cls = model_class(name)
    model = create(name, getattr(cls, "test_params", {})).fit(_cycle_data())
    sessions = [[0], [3, 4], [5, 6, 7], [1, 2]]
    q = session_queries(model, sessions)
    expect = model.score_sessions(sessions)
    torch.testing.assert_close(q @ model.item_vectors().T, expect, rtol=1e-5, atol=1e-5)  # type: ignore[attr-defined]


@needs_faiss
def test_evaluation_and_recommend_through_an_exact_index_match_the_model() -> None:
    data = _cycle_data()
    model = create("two-tower", model_class("two-tower").test_params).fit(data)
    model.items = pl.DataFrame(
        {"item_idx": range(12), "item_id": range(100, 112), "title": [f"m{i}" for i in range(12)]}
    )
    test = _cycle_data(count=20)
    plain = evaluate(model, test, cutoffs=(5,), exclude_seen=True)
    via = evaluate(IndexedModel(model, build_index(model), depth=8), test, cutoffs=(5,),
                   exclude_seen=True)  # fmt: skip
    assert via.predictions == plain.predictions
    for key in ("recall@5", "mrr@5"):
        assert via.metrics[key] == pytest.approx(plain.metrics[key])
    with pytest.raises(SessionrecError, match="wrapped model"):
        IndexedModel(model, build_index(model)).save("nowhere")
    a = model.recommend(["m1", "m2"], 4)
    b = model.recommend(["m1", "m2"], 4, index=build_index(model, "hnsw", m=4))
    assert a["item_id"].to_list() == b["item_id"].to_list()
    assert not {101, 102} & set(b["item_id"].to_list())


@pytest.mark.parametrize("kind", ["exact", pytest.param("hnsw", marks=needs_faiss)])
def test_an_index_of_other_vectors_is_refused(kind: str, tmp_path: Path) -> None:
    data = _cycle_data()
    params = model_class("two-tower").test_params
    model = create("two-tower", {**params, "n_epochs": 2}).fit(data)
    retrained = create("two-tower", {**params, "n_epochs": 2, "seed": 1}).fit(data)
    model.items = retrained.items = pl.DataFrame({"item_idx": range(12), "item_id": range(12)})
    index = load_index(build_index(model, kind).save(tmp_path / "ix"))
    index.check_model(model)  # its own model passes
    with pytest.raises(ConfigError, match="other item vectors"):
        retrained.recommend([1, 2], 3, index=index)
    with pytest.raises(ConfigError, match="other item vectors"):
        IndexedModel(retrained, index)
    small = create("two-tower", {**params, "n_epochs": 1}).fit(_cycle_data(n=10))
    with pytest.raises(ConfigError, match="rebuild"):
        IndexedModel(small, index)


def test_models_without_vectors_are_refused() -> None:
    model = create("pop").fit(_cycle_data())
    with pytest.raises(ConfigError, match="inner product"):
        build_index(model)
    with pytest.raises(ConfigError, match="kind"):
        build_index(create("two-tower"), "annoy")


def test_prefix_sessions_are_the_evaluated_histories() -> None:
    data = session_data([[1, 2, 3], [4, 5]], 6, targets=[[True, True, True], [False, True]])
    assert prefix_sessions(data, None) == [[1], [1, 2], [4]]
    assert len(prefix_sessions(data, 2)) == 2


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_cli(argv, capsys)
    return code, out + err


@needs_faiss
def test_cli_index_recommend_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sessionrec as sr

    rows = [(u, (u + k) % 15, 1000 * u + 60 * k) for u in range(60) for k in range(6)]
    log = tmp_path / "log.csv"
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(log)
    prep = tmp_path / "p"
    sr.prepare(log, prep, session="user", split="random", test_fraction=0.2, valid_fraction=0,
               min_item_support=0)  # fmt: skip
    argv = ["train", str(prep), "--model", "two-tower", "--out", str(tmp_path / "m")]
    assert _run([*argv, "-p", "n_epochs=2", "-p", "dim=8"], capsys)[0] == 0
    code, out = _run(["index", str(tmp_path / "m"), "--kind", "hnsw", "--data", str(prep)], capsys)
    assert code == 0, out
    meta = json.loads((tmp_path / "m" / "index" / "index.json").read_text())
    assert meta["kind"] == "hnsw" and 0.9 <= meta["recall@10"] <= 1.0 and "recall@100" in meta
    code, out = _run(["recommend", str(tmp_path / "m"), "-s", "3", "4", "-k", "3", "--index",
                      str(tmp_path / "m" / "index")], capsys)  # fmt: skip
    assert code == 0 and "top 3" in out, out
    code, out = _run(["evaluate", str(tmp_path / "m"), str(prep), "--index",
                      str(tmp_path / "m" / "index"), "--cutoffs", "5"], capsys)  # fmt: skip
    assert code == 0 and "through the index" in " ".join(out.split()), out
    code, out = _run(["evaluate", str(tmp_path / "m"), str(prep), "--index",
                      str(tmp_path / "m" / "index"), "--index-depth", "3"], capsys)  # fmt: skip
    assert code == 2 and "--index-depth" in out
    argv = ["train", str(prep), "--model", "pop", "--out", str(tmp_path / "pop")]
    assert _run(argv, capsys)[0] == 0
    code, out = _run(["index", str(tmp_path / "pop")], capsys)
    assert code == 2 and "inner product" in out
