"""Session-level bootstrap intervals and paired comparisons, against a plain reference."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import session_data

from sessionrec.errors import ConfigError
from sessionrec.evaluation import EvalResult, bootstrap_interval, paired_difference
from sessionrec.evaluation.intervals import per_prediction


def _result(ranks: list[float], positions: list[int]) -> EvalResult:
    return EvalResult(
        predictions=len(ranks),
        metrics={},
        protocol={},
        seconds=0.0,
        ranks=np.asarray(ranks, dtype=np.float64),
        positions=np.asarray(positions, dtype=np.int64),
    )


# Three sessions of 4, 2 and 3 events: predictions at every event after the first.
DATA = session_data([[0, 1, 2, 3], [4, 5], [6, 7, 8]], 9)
POSITIONS = [1, 2, 3, 5, 7, 8]
SESSION_OF = [0, 0, 0, 1, 2, 2]


def test_per_prediction_values_by_hand() -> None:
    r = _result([1, 3, 25, 2, 1, 40], POSITIONS)
    np.testing.assert_allclose(per_prediction(r, "recall@20"), [1, 1, 0, 1, 1, 0])
    np.testing.assert_allclose(per_prediction(r, "mrr@20"), [1, 1 / 3, 0, 1 / 2, 1, 0])
    np.testing.assert_allclose(per_prediction(r, "ndcg@2"), [1, 0, 0, 1 / np.log2(3), 1, 0])
    with pytest.raises(ConfigError, match="recall@K"):
        per_prediction(r, "coverage@20")


def test_interval_is_the_bootstrap_over_sessions_written_plainly() -> None:
    r = _result([1, 3, 25, 2, 1, 40], POSITIONS)
    got = bootstrap_interval(r, DATA, ("recall@20", "mrr@20"), n_boot=200, seed=7)
    rng = np.random.default_rng(7)
    hits = per_prediction(r, "recall@20")
    reps = []
    for _ in range(200):
        drawn = rng.integers(3, size=3)
        rows = [p for s in drawn for p, owner in enumerate(SESSION_OF) if owner == s]
        reps.append(hits[rows].mean())
    assert got["recall@20"]["value"] == pytest.approx(4 / 6)
    assert got["recall@20"]["low"] == pytest.approx(np.percentile(reps, 2.5))
    assert got["recall@20"]["high"] == pytest.approx(np.percentile(reps, 97.5))
    assert got["recall@20"]["low"] <= 4 / 6 <= got["recall@20"]["high"]


def test_sessions_with_equal_values_give_a_point_interval() -> None:
    r = _result([1, 1, 1, 1, 1, 1], POSITIONS)
    got = bootstrap_interval(r, DATA, ("recall@5",), n_boot=50)
    assert got["recall@5"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_paired_difference() -> None:
    a = _result([1, 1, 1, 1, 1, 1], POSITIONS)
    b = _result([1, 30, 1, 30, 1, 30], POSITIONS)  # worse in every session
    same = paired_difference(a, a, DATA, "recall@20")
    assert same["difference"] == 0 and same["p_value"] == 1.0
    d = paired_difference(a, b, DATA, "recall@20", n_boot=500)
    assert d["difference"] == pytest.approx(0.5) and d["low"] > 0 and d["p_value_is_bound"]
    assert d["p_value"] == 2 / 500  # the bound 500 replicates support, never 0
    flipped = paired_difference(b, a, DATA, "recall@20", n_boot=500)
    assert flipped["difference"] == pytest.approx(-0.5) and flipped["high"] < 0
    with pytest.raises(ConfigError, match="same predictions"):
        paired_difference(a, _result([1] * 5, POSITIONS[:5]), DATA)


def test_results_of_other_data_are_refused() -> None:
    r = _result([1, 2], [1, 40])
    with pytest.raises(ConfigError, match="do not belong"):
        bootstrap_interval(r, DATA)
