"""Ranks and metrics: hand-computed cases, edge cases, and properties against plain Python."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _helpers import py_rank
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionrec.errors import ConfigError
from sessionrec.evaluation import metrics as M
from sessionrec.recommend import top_k_frame


def test_ranks_hand_computed() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.5, 0.9, 0.5], [3.0, 2.0, 1.0, 0.0, -1.0]])
    targets = torch.tensor([2, 0])
    # row 0: one item strictly higher (0.9), two others tie with the target (items 1 and 4).
    assert M.ranks(scores, targets, "conservative").tolist() == [4.0, 1.0]
    assert M.ranks(scores, targets, "optimistic").tolist() == [2.0, 1.0]
    assert M.ranks(scores, targets, "average").tolist() == [3.0, 1.0]
    assert M.ranks(scores, targets).tolist() == [4.0, 1.0]  # conservative is the default


def test_all_equal_scores_rank_last_conservatively() -> None:
    scores = torch.zeros(1, 10)
    assert M.ranks(scores, torch.tensor([3]), "conservative").item() == 10
    assert M.ranks(scores, torch.tensor([3]), "optimistic").item() == 1
    assert M.ranks(scores, torch.tensor([3]), "average").item() == 5.5


def test_excluded_items_never_count_and_an_excluded_target_is_a_miss() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    exclude = torch.tensor([[True, False, True, False], [True, False, True, True]])
    # row 0: item 0 scores above the target (3) but is excluded: only item 1 is above it.
    # row 1: the target itself is excluded (it repeats a seen item): it can never be
    # served, so it is a miss (inf), not rank 2.
    r = M.ranks(scores, torch.tensor([3, 3]), exclude=exclude)
    assert r.tolist() == [2.0, math.inf]
    assert (
        M.recall(r, 4) == 0.5
        and M.mrr(r, 4) == 0.25
        and M.ndcg(r, 4) == pytest.approx(1 / math.log2(3) / 2)
    )
    # masked with -inf by a caller: a -inf target does not tie with excluded -inf items.
    masked = torch.tensor([[-torch.inf, 1.0, -torch.inf, -torch.inf]])
    assert M.ranks(masked, torch.tensor([3]), exclude=exclude[:1]).item() == 2


def test_nan_scores_never_win() -> None:
    scores = torch.tensor([[float("nan"), 1.0, 2.0], [float("nan"), 1.0, 2.0]])
    assert M.ranks(scores, torch.tensor([1, 0])).tolist() == [2.0, 3.0]


def test_ranks_empty_and_bad_input() -> None:
    assert M.ranks(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).numel() == 0
    with pytest.raises(ValueError):
        M.ranks(torch.zeros(3, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError):
        M.ranks(torch.zeros(1, 5), torch.zeros(1, dtype=torch.long), "pessimistic")


def test_metrics_hand_computed() -> None:
    r = [1, 2, 4, 25]
    assert M.recall(r, 1) == 0.25
    assert M.recall(r, 4) == 0.75
    assert M.recall(r, 20) == 0.75
    assert M.mrr(r, 20) == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)
    assert M.mrr(r, 1) == 0.25
    assert M.ndcg(r, 20) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert M.ndcg(r, 30) == pytest.approx(
        (1 + 1 / math.log2(3) + 1 / math.log2(5) + 1 / math.log2(26)) / 4
    )
    # average ties give half ranks; a rank of 2.5 is within k=3 but not k=2
    assert M.recall([2.5], 2) == 0.0 and M.recall([2.5], 3) == 1.0
    assert M.mrr(torch.tensor([2.0, 4.0]), 5) == pytest.approx(0.375)


def test_metrics_of_nothing_are_zero() -> None:
    for f in (M.recall, M.mrr, M.ndcg):
        assert f([], 20) == 0.0
        assert f(np.zeros(0), 1) == 0.0
    assert M.coverage(np.zeros((0, 5), dtype=np.int64), 10) == 0.0
    assert M.mean_popularity(np.zeros((0, 5), dtype=np.int64), np.ones(10)) == 0.0
    assert M.normalized_popularity(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_coverage_and_popularity_hand_computed() -> None:
    lists = np.array([[0, 1], [1, 2], [2, -1]])  # -1: padding
    assert M.coverage(lists, 8) == 3 / 8
    pop = M.normalized_popularity(np.array([10, 5, 0, 0, 0, 0, 0, 0]))
    assert pop[:3].tolist() == [1.0, 0.5, 0.0]
    assert M.mean_popularity(lists, pop) == pytest.approx((1 + 0.5 + 0.5 + 0 + 0) / 5)


def test_sampled_ranks_hand_computed() -> None:
    t = torch.tensor([1.0, 1.0])
    neg = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    assert M.sampled_ranks(t, neg, "conservative", valid).tolist() == [3.0, 1.0]
    assert M.sampled_ranks(t, neg, "optimistic", valid).tolist() == [2.0, 1.0]
    assert M.sampled_ranks(t, neg, "average").tolist() == [2.5, 2.0]


@st.composite
def score_cases(draw: st.DrawFn) -> tuple[list[list[float]], list[int], list[list[bool]]]:
    n = draw(st.integers(1, 9))
    b = draw(st.integers(1, 6))
    # few distinct values, so ties are common; NaN and inf included
    value = st.sampled_from([0.0, 1.0, 2.0, -1.5, math.inf, -math.inf, math.nan])
    scores = draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=b, max_size=b))
    targets = draw(st.lists(st.integers(0, n - 1), min_size=b, max_size=b))
    exclude = draw(
        st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=b, max_size=b)
    )
    return scores, targets, exclude


@settings(max_examples=150, deadline=None)
@given(score_cases(), st.sampled_from(M.TIES), st.booleans())
def test_vectorised_ranks_equal_the_definition(
    case: tuple[list[list[float]], list[int], list[list[bool]]], ties: str, use_exclude: bool
) -> None:
    scores, targets, exclude = case
    got = M.ranks(
        torch.tensor(scores),
        torch.tensor(targets),
        ties,
        exclude=torch.tensor(exclude) if use_exclude else None,
    ).tolist()
    want = [
        py_rank(s, t, ties, {j for j, x in enumerate(e) if x} if use_exclude else set())
        for s, t, e in zip(scores, targets, exclude, strict=True)
    ]
    assert got == want
    n = len(scores[0])
    assert all(1 <= r <= n or (use_exclude and r == math.inf) for r in got)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=30),
    st.integers(1, 40),
    st.lists(st.integers(0, 29), max_size=5),
)
def test_top_k_sorted_unique_and_bounded(values: list[int], k: int, exclude: list[int]) -> None:
    scores = torch.tensor(values, dtype=torch.float32)
    exclude = [e for e in exclude if e < len(values)]
    frame = top_k_frame(scores, k, None, exclude=exclude)
    idx = frame["item_idx"].to_list()
    sc = frame["score"].to_list()
    assert len(idx) == len(set(idx)) == min(k, len(values) - len(set(exclude)))
    assert sc == sorted(sc, reverse=True)
    assert not set(idx) & set(exclude)
    assert frame["rank"].to_list() == list(range(1, len(idx) + 1))


@pytest.mark.parametrize("ties", M.TIES)
def test_a_nan_target_ranks_last_in_every_tie_mode(ties: str) -> None:
    # All-NaN scores used to rank every target first (Recall = MRR = 1.0).
    scores = torch.full((3, 30), float("nan"))
    r = M.ranks(scores, torch.tensor([0, 7, 29]), ties)
    assert r.tolist() == [30.0, 30.0, 30.0]
    assert M.recall(r, 20) == 0.0 and M.mrr(r, 20) == 0.0 and M.ndcg(r, 20) == 0.0
    # excluded items are not rankable: last is the number of items left
    exclude = torch.zeros(3, 30, dtype=torch.bool)
    exclude[:, :10] = True
    # an excluded target is a miss; item 29 is last of the 20 left
    want = [math.inf, math.inf, 20.0]
    assert M.ranks(scores, torch.tensor([0, 7, 29]), ties, exclude).tolist() == want
    # a finite target among NaN items is not hurt by them
    mixed = torch.tensor([[float("nan"), 0.5, float("nan")]])
    assert M.ranks(mixed, torch.tensor([1]), ties).item() == 1.0


def test_a_nan_target_ranks_last_among_sampled_negatives() -> None:
    t = torch.tensor([float("nan"), float("nan")])
    neg = torch.tensor([[float("nan"), 1.0, 0.0], [0.0, 0.0, 5.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    for ties in M.TIES:
        assert M.sampled_ranks(t, neg, ties, valid).tolist() == [4.0, 3.0]


def test_cpu_count_equals_torch_comparison() -> None:
    """``ranks`` counts on the CPU with numpy; the counts must be torch's comparisons'."""
    from sessionrec.evaluation.metrics import _count_above

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        s = torch.randint(0, 5, (7, 300), generator=g).to(dtype)
        s[2, 5] = float("nan")
        t = s[:, 3:4]
        keep = torch.rand(7, 300, generator=g) > 0.3
        for strict in (False, True):
            want = (s > t) if strict else (s >= t)
            assert torch.equal(_count_above(s, t, None, strict=strict), want.sum(1))
            assert torch.equal(_count_above(s, t, keep, strict=strict), (want & keep).sum(1))
