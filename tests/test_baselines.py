"""Hand-checked cases and planted patterns for the non-neural baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sessionrec.errors import ConfigError
from sessionrec.models import REGISTRY, create, load_model
from sessionrec.models._sparse import popularity_tiebreak, top_k_per_row
from sessionrec.prepare.data import SessionData

BASELINES = ("markov", "sr", "itemknn", "sknn", "vsknn")


def sessions_data(sessions: list[list[int]], n_items: int) -> SessionData:
    """SessionData from item lists; session s happens at time s (later = more recent)."""
    lengths = [len(s) for s in sessions]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    times = np.repeat(np.arange(len(sessions), dtype=np.int64) * 10**6, lengths)
    return SessionData(
        items=np.concatenate([np.asarray(s, dtype=np.int64) for s in sessions]),
        offsets=offsets,
        session_ids=np.arange(len(sessions), dtype=np.int64),
        timestamps=times + np.concatenate([np.arange(n) for n in lengths]),
        target=np.ones(int(offsets[-1]), dtype=bool),
        n_items=n_items,
    )


def scores(name: str, params: dict, train: list[list[int]], n: int, session: list[int]):
    model = create(name, {"tie_epsilon": 0.0, **params}).fit(sessions_data(train, n))
    return model.score_sessions([session])[0]


# -- markov -----------------------------------------------------------------------------------
def test_markov_counts_successors() -> None:
    train = [[0, 1], [0, 1], [0, 2], [3, 4]]
    s = scores("markov", {}, train, 5, [3, 0])
    assert s.tolist() == [0.0, 2.0, 1.0, 0.0, 0.0]
    p = scores("markov", {"normalize": True}, train, 5, [0])
    assert p[1].item() == pytest.approx(2 / 3) and p[2].item() == pytest.approx(1 / 3)


def test_markov_ties_and_empty_session_follow_popularity() -> None:
    # popularity: 0 ×3, 1 ×3 (tie, lower index ranks higher), 2 ×1, 3 ×1, 4 ×1
    train = [[0, 1], [0, 1], [0, 2], [3, 4], [1, 3]]
    model = create("markov").fit(sessions_data(train, 6))
    empty, after0 = model.score_sessions([[], [0]])
    assert empty.argsort(descending=True)[:2].tolist() == [0, 1]
    assert empty[5] < empty[4]  # never seen: least popular
    # successors of 0 first (1 twice, 2 once), then the rest by popularity
    assert after0.argsort(descending=True)[:4].tolist() == [1, 2, 0, 3]


# -- sequential rules --------------------------------------------------------------------------
def test_sr_weights_by_one_over_distance() -> None:
    train = [[0, 1, 2, 3]]
    s = scores("sr", {"steps": 2}, train, 5, [0])
    assert s.tolist() == pytest.approx([0, 1.0, 0.5, 0, 0])  # 3 is 3 steps away
    s = scores("sr", {"steps": 10}, train, 5, [0])
    assert s.tolist() == pytest.approx([0, 1.0, 1 / 2, 1 / 3, 0])
    s = scores("sr", {"steps": 10, "weighting": "quadratic"}, train, 5, [1])
    assert s.tolist() == pytest.approx([0, 0, 1.0, 1 / 4, 0])
    # rules only point forward and sum over sessions
    s = scores("sr", {}, [[0, 1, 2], [2, 1]], 3, [1])
    assert s.tolist() == pytest.approx([0, 0, 1.0])
    s = scores("sr", {}, [[0, 1, 2], [0, 2]], 3, [0])
    assert s.tolist() == pytest.approx([0, 1.0, 1.5])


def test_sr_pruning_keeps_strongest_rules() -> None:
    s = scores("sr", {"pruning": 1}, [[0, 1, 2], [0, 2]], 3, [0])
    assert s.tolist() == pytest.approx([0, 0, 1.5])


# -- item-kNN ----------------------------------------------------------------------------------
def test_itemknn_regularised_cosine_by_hand() -> None:
    train = [[0, 1], [1, 0, 0], [0, 2], [3]]  # supports 0:3, 1:2, 2:1; n(0,1)=2, n(0,2)=1
    s = scores("itemknn", {"lmbd": 0.0}, train, 4, [0])
    assert s.tolist() == pytest.approx([0, 2 / math.sqrt(6), 1 / math.sqrt(3), 0])
    s = scores("itemknn", {"lmbd": 20.0}, train, 4, [1])
    assert s.tolist() == pytest.approx([2 / (math.sqrt(6) + 20), 0, 0, 0])
    s = scores("itemknn", {"lmbd": 0.0, "alpha": 0.25}, train, 4, [0])
    assert s[1].item() == pytest.approx(2 / (3**0.25 * 2**0.75))
    s = scores("itemknn", {"lmbd": 0.0, "k": 1}, train, 4, [0])
    assert s.tolist() == pytest.approx([0, 2 / math.sqrt(6), 0, 0])


# -- session kNN -------------------------------------------------------------------------------
KNN_TRAIN = [[0, 1, 2], [4, 5], [0, 3]]  # A, C, B; B is the most recent


def test_sknn_cosine_neighbours_by_hand() -> None:
    sim_a, sim_b = 2 / (math.sqrt(2) * math.sqrt(3)), 1 / 2
    s = scores("sknn", {"k": 1}, KNN_TRAIN, 6, [0, 1])
    assert s.tolist() == pytest.approx([sim_a, sim_a, sim_a, 0, 0, 0])
    s = scores("sknn", {"k": 5}, KNN_TRAIN, 6, [0, 1])
    assert s.tolist() == pytest.approx([sim_a + sim_b, sim_a, sim_a, sim_b, 0, 0])
    # only the most recent candidate (B) is looked at
    s = scores("sknn", {"k": 5, "sample_size": 1}, KNN_TRAIN, 6, [0, 1])
    assert s.tolist() == pytest.approx([sim_b, 0, 0, sim_b, 0, 0])
    # a repeated item counts once
    s2 = scores("sknn", {"k": 5}, KNN_TRAIN, 6, [0, 1, 0])
    assert s2.tolist() == pytest.approx([sim_a + sim_b, sim_a, sim_a, sim_b, 0, 0])


def test_sknn_equal_similarity_prefers_recent_session() -> None:
    train = [[0, 1], [0, 2]]  # both share item 0 equally; the second is more recent
    s = scores("sknn", {"k": 1}, train, 3, [0])
    assert s[2] > 0 and s[1] == 0


PLAIN = {"weighting_score": "same", "idf_weighting": 0.0}  # V-SKNN with no decay, no IDF


def test_vsknn_recency_weights_decay_and_idf_by_hand() -> None:
    q_norm = math.sqrt(0.5**2 + 1)  # [0, 1]: item 0 weighs 1/2, item 1 weighs 1
    sim_a = 1.5 / (q_norm * math.sqrt(3))
    sim_b = 0.5 / (q_norm * math.sqrt(2))
    s = scores("vsknn", {**PLAIN, "k": 5}, KNN_TRAIN, 6, [0, 1])
    assert s.tolist() == pytest.approx([sim_a + sim_b, sim_a, sim_a, sim_b, 0, 0], rel=1e-5)
    # B's latest shared item (0) lies one step back: weight halves
    s = scores("vsknn", {**PLAIN, "k": 5, "weighting_score": "harmonic"}, KNN_TRAIN, 6, [0, 1])
    assert s.tolist() == pytest.approx([sim_a + sim_b / 2, sim_a, sim_a, sim_b / 2, 0, 0], rel=1e-5)
    s = scores("vsknn", {**PLAIN, "k": 5, "idf_weighting": 1.0}, KNN_TRAIN, 6, [0, 1])
    idf = [math.log(3 / 2), math.log(3), math.log(3), math.log(3)]
    expected = [sim_a + sim_b, sim_a, sim_a, sim_b]
    assert s[:4].tolist() == pytest.approx(
        [e * (1 + i) for e, i in zip(expected, idf, strict=True)], rel=1e-5
    )
    s = scores("vsknn", {**PLAIN, "k": 5, "weighting": "linear"}, KNN_TRAIN, 6, [0, 1])
    q_norm = math.sqrt(0.5**2 + 1)  # linear: (L − d)/L = 1/2, 1 for L = 2
    assert s[3].item() == pytest.approx(0.5 / (q_norm * math.sqrt(2)), rel=1e-5)


def test_knn_clusters_are_recovered() -> None:
    rng = np.random.default_rng(0)
    train = [list(rng.choice(np.arange(5) + 5 * (i % 2), size=3, replace=False)) for i in range(40)]
    for name in ("sknn", "vsknn"):
        model = create(name).fit(sessions_data(train, 12))
        s = model.score_sessions([[0, 1], [7]])
        assert set(s[0].topk(5).indices.tolist()) == set(range(5)), name
        assert set(s[1].topk(5).indices.tolist()) == set(range(5, 10)), name
    # item-kNN leaves the item itself out of its neighbours
    s = create("itemknn").fit(sessions_data(train, 12)).score_sessions([[7]])[0]
    assert set(s.topk(4).indices.tolist()) == {5, 6, 8, 9}


def test_chain_successor_is_top_for_sequential_models() -> None:
    rng = np.random.default_rng(1)
    chain = list(rng.permutation(10))
    # every link of the chain, plus random stretches of it
    train = [chain[i : i + 3] for i in range(9)]
    for _ in range(20):
        a = int(rng.integers(0, 8))
        train.append(chain[a : a + int(rng.integers(2, 5))])
    for name in ("markov", "sr"):
        model = create(name).fit(sessions_data(train, 10))
        s = model.score_sessions([[chain[i]] for i in range(9)])
        assert s.argmax(1).tolist() == chain[1:10], name


# -- protocol, persistence, configuration ------------------------------------------------------
TOY = [[0, 1, 2, 3], [1, 2, 4], [5, 6, 5, 7], [0, 2, 4, 6, 8], [3, 9], [9, 1, 0]]


@pytest.mark.parametrize("name", BASELINES)
def test_streaming_reset_save_load(name: str, tmp_path: Path) -> None:
    assert name in REGISTRY
    model = create(name).fit(sessions_data(TOY, 10))
    sessions = [[0, 1], [5, 6, 5], [9], [], [2, 4, 6, 8]]
    direct = model.score_sessions(sessions)
    assert direct.shape == (5, 10) and direct.dtype == torch.float32
    # stream with resets: slot 3 restarts every step, slot 0 drops its first item
    state = model.start(5)
    state = model.step(state, torch.tensor([7, 5, 9, 0, 2]))
    state = model.reset(state, torch.tensor([True, False, False, True, False]))
    for t, items in enumerate(([0, 6, 0, 3, 4], [1, 5, 0, 1, 6], [0, 0, 0, 9, 8])):
        if t:
            state = model.reset(state, torch.tensor([False, False, False, True, False]))
        state = model.step(state, torch.tensor(items))
    expected = model.score_sessions([[0, 1, 0], [5, 6, 5, 0], [9, 0, 0, 0], [9], [2, 4, 6, 8]])
    torch.testing.assert_close(model.score(state), expected, rtol=0, atol=0)
    torch.testing.assert_close(expected[4], direct[4], rtol=0, atol=0)
    loaded = load_model(model.save(tmp_path / name))
    torch.testing.assert_close(loaded.score_sessions(sessions), direct, rtol=0, atol=0)
    again = create(name).fit(sessions_data(TOY, 10))
    torch.testing.assert_close(again.score_sessions(sessions), direct, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("markov", {"bogus": 1}),
        ("sr", {"weighting": "nope"}),
        ("sr", {"steps": 0}),
        ("itemknn", {"alpha": 2.0}),
        ("sknn", {"k": 0}),
        ("vsknn", {"weighting_score": "nope"}),
    ],
)
def test_bad_config_is_rejected(name: str, params: dict) -> None:
    with pytest.raises(ConfigError):
        create(name, params)


def test_sparse_helpers() -> None:
    tb = popularity_tiebreak(np.array([5, 1, 5, 0]))
    assert list(np.argsort(-tb)) == [0, 2, 1, 3] and tb.max() < 1 and tb.min() > 0
    indptr, indices, data = top_k_per_row(
        np.array([0, 3, 3, 5]), np.array([0, 1, 2, 0, 2]), np.array([1.0, 3.0, 3.0, 2.0, 1.0]), 2
    )
    assert indptr.tolist() == [0, 2, 2, 4]
    assert indices.tolist() == [1, 2, 0, 2] and data.tolist() == [3.0, 3.0, 2.0, 1.0]
