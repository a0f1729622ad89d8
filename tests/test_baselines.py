"""Hand-checked cases and planted patterns for the non-neural baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sessionrec.errors import ConfigError, UnknownNameError
from sessionrec.evaluation.metrics import ranks
from sessionrec.models import REGISTRY, create, load_model
from sessionrec.models._sparse import popularity_tiebreak, top_k_per_row, with_tiebreak
from sessionrec.models.base import presets
from sessionrec.models.sr import SRConfig
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
    model = create(name, {"tiebreak": False, **params}).fit(sessions_data(train, n))
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
    # float64: the exact popularity tie-break (_sparse.with_tiebreak)
    assert direct.shape == (5, 10) and direct.dtype == torch.float64
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


# -- exact popularity tie-break (issue 8: float32 lost ε · rank above a count of about 8) ------
def test_with_tiebreak_orders_ties_by_rank_and_keeps_distinct_scores() -> None:
    # by hand: equal float32 scores at 0, 1000 (ulp 2**-14) and -2 (a power of two: the gap
    # above it is half the gap below); their order must follow r, distinct scores must not move
    s = torch.tensor(
        [[1000.0, 1000.0, np.nextafter(np.float32(1000), np.float32(2000)), 0.0, 0.0, -2.0, -2.0]]
    )
    r = torch.tensor([0.9, 0.1, 0.05, 0.2, 0.7, 0.3, 0.6], dtype=torch.float64)
    out = with_tiebreak(s, r)[0]
    assert out.dtype == torch.float64
    assert out.argsort(descending=True).tolist() == [2, 0, 1, 4, 3, 6, 5]
    # the added term is r · ulp32(s) / 4: at 1000, 0.9 · 2**-16
    assert out[0].item() == 1000.0 + 0.9 * 2.0**-16
    assert out[4].item() == 0.7 * 2.0**-151 and out[3].item() == 0.2 * 2.0**-151
    # the old ε = 1e-6 in float32 left items 0 and 1 tied
    old = s + 1e-6 * r.float()
    assert old[0, 0] == old[0, 1]


def test_with_tiebreak_matches_a_lexicographic_sort() -> None:
    rng = np.random.default_rng(0)
    base = rng.choice(
        np.array([0.0, 1e-40, 0.5, 3.0, 9.0, 1000.0, 1001.0, 2.0**23, -2.0, -7.5], np.float32),
        size=(4, 400),
    )
    ranks = popularity_tiebreak(rng.permutation(400))
    out = with_tiebreak(torch.from_numpy(base), torch.from_numpy(ranks)).numpy()
    for row in range(4):
        expected = np.lexsort((ranks, base[row]))  # by score, then by popularity rank
        assert np.array_equal(np.argsort(out[row], kind="stable"), expected)


def _big_tie() -> tuple[SessionData, int]:
    """Item 0 is followed 1000 times by item 1 and 1000 times by item 2; item 2 is more
    popular (20 more sessions [2, 3]). Item counts: 0: 2000, 1: 1000, 2: 1020, 3: 20."""
    train = [[0, 1]] * 1000 + [[0, 2]] * 1000 + [[2, 3]] * 20
    return sessions_data(train, 5), 5


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("markov", {}),
        ("sr", {}),
        ("sr", {"preset": "session-rec"}),
        ("sknn", {"k": 5000, "sample_size": 0}),
        ("vsknn", {"k": 5000, "idf_weighting": 0.0, "sample_size": 0}),
    ],
)
def test_equal_scores_above_1000_rank_by_popularity(name: str, params: dict) -> None:
    data, n = _big_tie()
    model = create(name, params).fit(data)
    s = model.score_sessions([[0]])
    # items 1 and 2 score the same large value (1000, or 1000 neighbours · similarity)
    raw = create(name, {**params, "tiebreak": False}).fit(data).score_sessions([[0]])
    assert raw[0, 1] == raw[0, 2] and raw[0, 1] > 8
    # conservative ranks with the session's item 0 excluded, by hand: item 2 (more popular)
    # first, item 1 second (the old float32 ε · rank tied them: both rank 2)
    seen = torch.zeros(2, n, dtype=torch.bool)
    seen[:, 0] = True
    r = ranks(s.repeat(2, 1), torch.tensor([2, 1]), exclude=seen)
    assert r.tolist() == [1.0, 2.0]
    assert [i for i in s[0].argsort(descending=True).tolist() if i][:2] == [2, 1]


def test_distinct_large_counts_still_decide() -> None:
    # 1001 vs 1000 successors; the one seen less often overall must still come second
    train = [[0, 1]] * 1001 + [[0, 2]] * 1000 + [[2, 3]] * 50
    model = create("markov").fit(sessions_data(train, 4))
    s = model.score_sessions([[0]])[0]
    assert s.argsort(descending=True)[:2].tolist() == [1, 2]


def test_spop_large_session_counts_rank_by_popularity() -> None:
    train = [[1, 2, 2], [3]]  # popularity: 2 (2 events) > 1 (1 event)
    model = create("spop").fit(sessions_data(train, 4))
    s = model.score_sessions([[1] * 1000 + [2] * 1000])
    assert s.dtype == torch.float64
    assert ranks(s.repeat(2, 1), torch.tensor([2, 1])).tolist() == [1.0, 2.0]


def test_recommend_keeps_the_tiebreak() -> None:
    from sessionrec.recommend import top_k_frame

    data, _ = _big_tie()
    model = create("markov").fit(data)
    frame = top_k_frame(model.score_sessions([[0]])[0], 2, None, exclude=[0])
    assert frame["item_idx"].to_list() == [2, 1]


# -- presets ------------------------------------------------------------------------------------
def test_presets_resolve_with_explicit_values_on_top() -> None:
    cfg = create("sr", {"preset": "session-rec"}).config
    assert (cfg.steps, cfg.weighting, cfg.pruning) == (10, "div", 20)
    cfg = create("sr", {"preset": "session-rec", "pruning": 5}).config
    assert cfg.pruning == 5
    cfg = create("vsknn", {"preset": "session-rec"}).config
    assert (cfg.similarity, cfg.weighting, cfg.weighting_score) == ("dot", "linear", "harmonic")
    assert (cfg.sample_size, cfg.idf_weighting, cfg.idf_counts, cfg.k) == (1000, 0, "events", 100)
    assert create("itemknn", {"preset": "gru4rec"}).config.form == "gru4rec"
    assert presets(create("sr").Config) == {"session-rec": SRConfig.PRESETS["session-rec"]}
    with pytest.raises(UnknownNameError, match="session-rec"):
        create("sr", {"preset": "nope"})
    with pytest.raises(UnknownNameError, match="none"):
        create("markov", {"preset": "session-rec"})


def test_sr_session_rec_linear_weighting() -> None:
    # a → b at distance 1, 2 and 11 (outside 10 steps but steps=12 lets it in): 0.9, 0.8, 0
    train = [[0, 1], [0, 5, 1], [0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 2]]
    s = scores("sr", {"steps": 12, "weighting": "linear-session-rec"}, train, 6, [0])
    assert s[1].item() == pytest.approx(0.9 + 0.8) and s[2].item() == 0.0


# -- item-kNN, the GRU4Rec baselines' formula ---------------------------------------------------
def test_itemknn_gru4rec_form_by_hand() -> None:
    # events: 0 ×3, 1 ×2, 2 ×2; event pairs c(0, 1) = 2·1 (session 0), c(0, 2) = 1, c(1, 2) = 1
    train = [[0, 1, 0], [0, 2], [1, 2]]
    p = {"preset": "gru4rec", "lmbd": 1.0}
    s0 = scores("itemknn", p, train, 3, [0])
    assert s0.tolist() == pytest.approx([0.0, 2 / math.sqrt(4 * 3), 1 / math.sqrt(4 * 3)])
    s1 = scores("itemknn", {**p, "alpha": 0.75}, train, 3, [1])
    assert s1[0].item() == pytest.approx(2 / (3**0.75 * 4**0.25))
    assert s1[2].item() == pytest.approx(1 / (3**0.75 * 3**0.25))
    # the default form: sessions holding both / (n_i^a n_j^(1-a) + lmbd): n(0) = 2, n(1) = 2
    d0 = scores("itemknn", {"lmbd": 1.0}, train, 3, [0])
    assert d0[1].item() == pytest.approx(1 / (2 + 1)) and d0[2].item() == pytest.approx(1 / 3)


def test_itemknn_gru4rec_form_matches_a_loop_over_events() -> None:
    rng = np.random.default_rng(3)
    train = [[int(i) for i in rng.integers(0, 8, size=rng.integers(1, 7))] for _ in range(30)]
    lmbd, alpha = 5.0, 0.3
    model = create("itemknn", {"preset": "gru4rec", "lmbd": lmbd, "alpha": alpha, "k": 0,
                               "tiebreak": False}).fit(sessions_data(train, 8))  # fmt: skip
    supp = [sum(s.count(i) for s in train) for i in range(8)]
    for i in range(8):
        # the official loop: for each event of i, +1 for every event of its session
        row = np.zeros(8)
        for s in train:
            for _ in range(s.count(i)):
                for j in s:
                    row[j] += 1
        row[i] = 0
        norm = [(supp[i] + lmbd) ** alpha * (supp[j] + lmbd) ** (1 - alpha) for j in range(8)]
        expected = row / np.array(norm)
        got = model.score_sessions([[i]])[0].double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_evaluator_ranks_the_float64_scores() -> None:
    from sessionrec.evaluation import evaluate

    data, n = _big_tie()
    model = create("markov").fit(data)
    test = sessions_data([[0, 2], [0, 1]], n)
    res = evaluate(model, test, cutoffs=(1, 2))
    # by hand: after 0, item 2 (more popular) ranks 1 and item 1 ranks 2 (the old float32
    # tie-break tied them: both rank 2, Recall@1 = 0)
    assert res.metrics["recall@1"] == 0.5 and res.metrics["recall@2"] == 1.0
    assert res.metrics["mrr@2"] == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["markov", "sr", "itemknn"])
def test_last_item_scores_tie_break_only_the_stored_entries(name: str) -> None:
    """Last-item models add the exact tie-break to the stored entries of the last item's row
    and copy a precomputed background for the rest: the same float64 scores, bit for bit, as
    the tie-break over the whole dense row, empty sessions (−1) included."""
    rng = np.random.default_rng(7)
    n = 40
    train = [list(rng.integers(0, n, size=int(rng.integers(2, 9)))) for _ in range(400)]
    train += [[3, 5]] * 30  # counts well above float32's 1e-6 resolution
    model = create(name).fit(sessions_data(train, n))
    assert model.matrix is not None and model.tiebreak is not None
    state = torch.tensor([3, -1, 0, 5, n - 1, 3])
    got = model.score(state)
    want = with_tiebreak(model.matrix.gather_rows(state), model.tiebreak)
    assert got.dtype == torch.float64
    assert torch.equal(got, want)
    rows = torch.tensor([4, 1])
    assert torch.equal(model.score_rows(state, rows), want[rows])
