"""The streaming evaluator against a slow brute-force reference (one session at a time)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import TieModel, py_rank, session_data
from hypothesis import given, settings
from hypothesis import strategies as st

import sessionrec as sr
from sessionrec.errors import ConfigError, DataError, UnknownNameError
from sessionrec.evaluation import evaluate, prediction_mask
from sessionrec.evaluation import metrics as M
from sessionrec.models import create
from sessionrec.models.base import SessionModel
from sessionrec.prepare.data import SessionData


def brute_force(
    model: SessionModel, data: SessionData, ties: str, exclude_seen: bool, protocol: str = "every"
) -> list[float]:
    """Rank every prediction one session prefix at a time, in plain Python."""
    out = []
    for s in range(data.n_sessions):
        items = data.session(s).tolist()
        tgt = data.target[data.offsets[s] : data.offsets[s + 1]].tolist()
        positions = range(1, len(items)) if protocol == "every" else [len(items) - 1]
        for t in positions:
            if t < 1 or not tgt[t]:
                continue
            prefix = items[:t]
            scores = model.score_sessions([prefix])[0].tolist()
            seen = set(prefix) if exclude_seen else set()
            out.append(py_rank(scores, items[t], ties, seen))
    return out


def random_sessions(
    rng: np.random.Generator, n_sessions: int, n_items: int, max_len: int = 9
) -> tuple[list[list[int]], list[list[bool]]]:
    sessions, targets = [], []
    for _ in range(n_sessions):
        length = int(rng.integers(1, max_len + 1))
        sessions.append(rng.integers(0, n_items, length).tolist())
        n_context = int(rng.integers(0, length)) if rng.random() < 0.3 else 0
        targets.append([i >= n_context for i in range(length)])
    return sessions, targets


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31),
    st.sampled_from(M.TIES),
    st.booleans(),
    st.integers(1, 7),
    st.sampled_from(["every", "last"]),
)
def test_streaming_evaluator_equals_brute_force(
    seed: int, ties: str, exclude_seen: bool, batch_size: int, protocol: str
) -> None:
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(2, 12))
    sessions, targets = random_sessions(rng, int(rng.integers(0, 12)), n_items)
    data = session_data(sessions, n_items, targets)
    model = TieModel().fit(data)
    res = evaluate(
        model,
        data,
        cutoffs=(1, 3, 5),
        ties=ties,
        exclude_seen=exclude_seen,
        batch_size=batch_size,
        protocol=protocol,
    )
    want = brute_force(model, data, ties, exclude_seen, protocol)
    assert res.ranks.tolist() == want
    assert res.predictions == len(want)
    if protocol == "every":
        assert res.predictions == data.n_predictions
    for k in (1, 3, 5):
        hits = [r for r in want if r <= k]
        assert res.metrics[f"recall@{k}"] == pytest.approx(len(hits) / len(want) if want else 0)
        assert res.metrics[f"mrr@{k}"] == pytest.approx(
            sum(1 / r for r in hits) / len(want) if want else 0
        )
        assert res.metrics[f"ndcg@{k}"] == pytest.approx(
            sum(1 / math.log2(r + 1) for r in hits) / len(want) if want else 0
        )


def test_results_do_not_depend_on_the_batch_size() -> None:
    rng = np.random.default_rng(3)
    sessions, targets = random_sessions(rng, 40, 15, max_len=20)
    data = session_data(sessions, 15, targets)
    model = TieModel().fit(data)
    runs = [evaluate(model, data, batch_size=b, exclude_seen=True) for b in (1, 4, 64)]
    for r in runs[1:]:
        # summation order differs with the batch size: equal up to rounding
        assert r.metrics == pytest.approx(runs[0].metrics, rel=1e-12)
        assert np.array_equal(r.ranks, runs[0].ranks)
        assert np.array_equal(r.positions, runs[0].positions)


def test_results_do_not_depend_on_the_scoring_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator scores the predicted slots a few at a time (``_CHUNK_SCORES`` scores per
    call); any chunk size gives the same ranks, positions, coverage and popularity."""
    from sessionrec.evaluation import evaluator as E

    rng = np.random.default_rng(5)
    sessions, targets = random_sessions(rng, 40, 15, max_len=20)
    data = session_data(sessions, 15, targets)
    model = create("vsknn", {"sample_size": 10}).fit(data)
    want = evaluate(model, data, batch_size=64, exclude_seen=True)
    for chunk_scores in (1, 15 * 3, 15 * 64):
        monkeypatch.setattr(E, "_CHUNK_SCORES", chunk_scores)
        got = evaluate(model, data, batch_size=64, exclude_seen=True)
        assert np.array_equal(got.ranks, want.ranks)
        assert np.array_equal(got.positions, want.positions)
        assert got.metrics == pytest.approx(want.metrics, rel=1e-12)


def test_rows_with_nan_tells_nan_from_opposite_infinities() -> None:
    from sessionrec.evaluation.evaluator import _rows_with_nan

    inf = math.inf
    scores = torch.tensor(
        [[inf, -inf, 0.0], [math.nan, 1.0, 2.0], [1.0, 2.0, 3.0], [inf, 1.0, math.nan]],
        dtype=torch.float64,
    )
    assert _rows_with_nan(scores).tolist() == [False, True, False, True]
    assert _rows_with_nan(scores[2:3]).tolist() == [False]


def test_hand_computed_pop_case() -> None:
    # train counts: item 0 ×3, item 1 ×2, item 2 ×1, item 3 ×0 → pop ranks items 0 > 1 > 2 > 3
    train = session_data([[0, 0, 1], [1, 0, 2]], 4)
    test = session_data([[3, 0, 2], [1, 1], [2]], 4)
    model = create("pop").fit(train)
    res = evaluate(model, test, cutoffs=(1, 2))
    # predictions: 0 after [3] → rank 1; 2 after [3, 0] → rank 3; 1 after [1] → rank 2.
    assert res.ranks.tolist() == [1.0, 3.0, 2.0]
    assert res.positions.tolist() == [1, 2, 4]
    assert res.predictions == 3 == test.n_predictions
    assert res.metrics["recall@1"] == pytest.approx(1 / 3)
    assert res.metrics["recall@2"] == pytest.approx(2 / 3)
    assert res.metrics["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)
    assert res.metrics["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    # pop always recommends [0, 1]: coverage 2 of 4, popularity (1 + 2/3) / 2 (train counts)
    assert res.metrics["coverage@2"] == 0.5
    # by default popularity comes from the evaluated data: counts 1, 2, 2, 1 → items 0, 1 have
    # normalised popularity 0.5 and 1
    assert res.metrics["popularity@2"] == pytest.approx(0.75)
    assert res.protocol["popularity_source"] == "evaluated data"
    given = evaluate(model, test, cutoffs=(1, 2), popularity=train.item_counts())
    assert given.metrics["popularity@2"] == pytest.approx((1 + 2 / 3) / 2)
    # exclude_seen: after [3, 0] item 0 is removed, so item 2 is ranked 2nd
    ex = evaluate(model, test, cutoffs=(1, 2), exclude_seen=True)
    # and the target 1 after [1] was seen: it can never be served, so it is a miss
    assert ex.ranks.tolist() == [1.0, 2.0, math.inf]
    assert ex.protocol["seen_targets"] == 1


def test_a_repeated_target_is_a_miss_with_exclude_seen() -> None:
    train = session_data([[0, 0, 0, 1]], 3)
    test = session_data([[1, 1]], 3)
    res = evaluate(create("pop").fit(train), test, exclude_seen=True)
    assert res.ranks.tolist() == [math.inf]  # item 1 was seen: never served, never a hit
    assert res.predictions == 1 and res.metrics["recall@20"] == 0.0
    assert res.protocol["seen_targets"] == 1
    kept = evaluate(create("pop").fit(train), test, exclude_seen=False)
    assert kept.ranks.tolist() == [2.0] and kept.protocol["seen_targets"] == 0


@pytest.mark.parametrize("protocol", ["every", "sampled"])
def test_alternating_sessions_credit_no_repeat_under_exclude_seen(protocol: str) -> None:
    """Sessions a b a b a b: every target after the second event repeats a seen item. Markov
    predicts each of them at rank 1, but under exclude_seen none can be served: only the
    second event of each session (the first b) can be a hit."""
    sessions = [[2 * s % 10, (2 * s + 1) % 10] * 3 for s in range(20)]
    data = session_data(sessions, 10)
    model = create("markov").fit(data)
    kw: dict[str, Any] = {"negatives": 5} if protocol == "sampled" else {}
    kept = evaluate(model, data, cutoffs=(1,), protocol=protocol, **kw)
    assert kept.metrics["recall@1"] == 1.0
    ex = evaluate(model, data, cutoffs=(1,), exclude_seen=True, protocol=protocol, **kw)
    assert ex.predictions == 20 * 5
    assert ex.protocol["seen_targets"] == 20 * 4
    assert ex.metrics["recall@1"] == pytest.approx(20 / 100)
    # the served lists agree: exactly the non-repeated targets are in the top 1
    assert np.isinf(ex.ranks).sum() == 80


def test_context_rows_are_fed_but_not_predicted() -> None:
    data = session_data([[0, 1, 2, 3]], 4, targets=[[False, False, True, True]])
    assert data.n_predictions == 2
    model = TieModel().fit(data)
    res = evaluate(model, data)
    assert res.positions.tolist() == [2, 3]
    assert res.ranks.tolist() == brute_force(model, data, "conservative", False)


def test_empty_data_gives_defined_zeros() -> None:
    model = create("pop").fit(session_data([[0, 1]], 2))
    for data in (session_data([], 2), session_data([[1], [0]], 2)):
        res = evaluate(model, data, cutoffs=(5,))
        assert res.predictions == 0
        assert res.metrics == {
            "recall@5": 0.0,
            "mrr@5": 0.0,
            "ndcg@5": 0.0,
            "coverage@5": 0.0,
            "popularity@5": 0.0,
        }


def test_bad_arguments_are_config_errors() -> None:
    data = session_data([[0, 1]], 2)
    model = create("pop").fit(data)
    with pytest.raises(UnknownNameError):
        evaluate(model, data, protocol="all")
    with pytest.raises(UnknownNameError):
        evaluate(model, data, ties="random")
    with pytest.raises(UnknownNameError):
        evaluate(model, data, protocol="sampled", negative_sampling="zipf")
    with pytest.raises(ConfigError):
        evaluate(model, data, cutoffs=(0, 5))
    with pytest.raises(ConfigError):
        evaluate(model, data, popularity=np.ones(5))
    with pytest.raises(DataError):
        evaluate(model, session_data([[0, 1]], 3))


def test_sampled_protocol_is_marked_and_ranks_among_negatives() -> None:
    rng = np.random.default_rng(0)
    sessions, _ = random_sessions(rng, 30, 50, max_len=8)
    data = session_data(sessions, 50)
    model = create("pop").fit(data)
    full = evaluate(model, data, cutoffs=(5,))
    for how in ("uniform", "popularity"):
        res = evaluate(
            model, data, cutoffs=(5,), protocol="sampled", negatives=10, negative_sampling=how
        )
        assert res.protocol["sampled"] is True and full.protocol["sampled"] is False
        assert res.protocol["negatives"] == 10
        assert res.protocol["negative_sampling"] == how
        assert res.predictions == data.n_predictions
        assert res.ranks.max() <= 11
        # fewer competitors than the full catalogue: never a worse rank
        assert (res.ranks <= full.ranks).all()
        again = evaluate(
            model, data, cutoffs=(5,), protocol="sampled", negatives=10, negative_sampling=how
        )
        assert np.array_equal(again.ranks, res.ranks)  # seeded
    # with every other item as a negative, the sampled rank is the full rank minus the
    # session's items scored above the target (they are never negatives); more than the
    # catalogue is refused (issue 9: it was capped silently)
    every = data.n_items - 1
    all_neg = evaluate(model, data, cutoffs=(5,), protocol="sampled", negatives=every)
    with pytest.raises(ConfigError, match="exceeds"):
        evaluate(model, data, cutoffs=(5,), protocol="sampled", negatives=every + 1)
    excl = evaluate(model, data, cutoffs=(5,), exclude_seen=True)
    finite = np.isfinite(excl.ranks)  # a seen target is a miss under exclude_seen
    assert (~finite).any() and np.array_equal(all_neg.ranks[finite], excl.ranks[finite])
    all_neg_ex = evaluate(
        model, data, cutoffs=(5,), protocol="sampled", negatives=every, exclude_seen=True
    )
    assert np.array_equal(all_neg_ex.ranks, excl.ranks)


def test_popularity_sampling_never_draws_unseen_items() -> None:
    # items 5..9 have no training count: they can never be negatives, so with nine negatives
    # asked for, only the popular items not in the session compete (and that is recorded).
    train = session_data([[0, 1, 2, 3, 4]], 10)
    test = session_data([[9, 0]], 10)
    model = create("pop").fit(train)
    res = evaluate(
        model,
        test,
        protocol="sampled",
        negatives=9,
        negative_sampling="popularity",
        popularity=train.item_counts(),
    )
    # target 0 (count 1) vs negatives {1, 2, 3, 4} all with count 1: conservative rank 5
    assert res.ranks.tolist() == [5.0]
    assert res.protocol["negatives_drawn"] == {"min": 4, "mean": 4.0}


def test_prediction_mask_counts() -> None:
    data = session_data([[0, 1, 2], [3], [1, 2]], 4, [[True, True, False], [True], [True, True]])
    assert prediction_mask(data, "every").tolist() == [False, True, False, False, False, True]
    assert prediction_mask(data, "last").tolist() == [False, False, False, False, False, True]


def test_to_dict_has_the_agreed_keys() -> None:
    data = session_data([[0, 1, 2]], 3)
    res = sr.evaluate(create("spop").fit(data), data, cutoffs=(10, 20))
    d = res.to_dict()
    for k in (10, 20):
        for m in ("recall", "mrr", "ndcg", "coverage", "popularity"):
            assert f"{m}@{k}" in d
    assert d["predictions"] == 2
    assert d["protocol"]["name"] == "every" and d["protocol"]["ties"] == "conservative"
    assert d["protocol"]["exclude_seen"] is False and d["protocol"]["cutoffs"] == [10, 20]


@pytest.mark.e2e
def test_ml100k_test_part_counts_every_prediction(ml100k: Any, tmp_path: Any) -> None:
    data = sr.prepare(
        ml100k, tmp_path / "p", session="1h", split="time", test_days=21, valid_days=21
    )
    model = create("pop").fit(data.train)
    res = evaluate(model, data.test, popularity=data.train.item_counts())
    assert res.predictions == 7117 == data.test.n_predictions
    assert res.protocol["popularity_source"] == "given"
    assert 0 < res.metrics["recall@20"] < 1


class _NaNModel(TieModel):
    name = "nan-model"

    def score(self, state: Any) -> Any:
        return super().score(state) * float("nan")


def test_a_model_scoring_nan_gets_no_hits_and_a_warning() -> None:
    sessions = [[i % 25, (i + 1) % 25, (i + 2) % 25] for i in range(30)]
    data = session_data(sessions, 25)
    model = _NaNModel().fit(data)
    res = evaluate(model, data, cutoffs=(1, 20))
    assert res.predictions == 60
    assert res.metrics["recall@20"] == 0.0 and res.metrics["mrr@20"] == 0.0
    assert res.metrics["coverage@20"] == 0.0  # NaN items are never served
    assert res.nan_predictions == 60 and "NaN" in res.warnings[0]
    assert res.to_dict()["nan_predictions"] == 60
    assert brute_force(model, data, "conservative", False) == res.ranks.tolist()
