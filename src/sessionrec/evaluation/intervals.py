"""How sure a metric is: session-level bootstrap intervals and paired model comparisons.

Predictions within a session are not independent (the same user, the same history), so the
resampling unit is the *session*, not the prediction: each bootstrap replicate draws as many
sessions as the test part has, with replacement, and recomputes the metric as the mean over
all predictions of the drawn sessions (a ratio of sums, exactly as the metric itself is
computed). Intervals are percentile intervals of ``n_boot`` replicates.

A paired comparison resamples the same sessions for both models, so the interval of the
difference reflects only how the two models disagree on the same predictions; ``p_value`` is
the two-sided bootstrap p-value of "no difference" (twice the share of replicates on the far
side of zero, capped at 1); when no replicate lies there, it is the bound ``2 / n_boot`` with
``p_value_is_bound`` true (p is below it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sessionrec.errors import ConfigError
from sessionrec.evaluation.evaluator import EvalResult
from sessionrec.prepare.data import SessionData

#: Per-prediction value of a ranking metric, from the (P,) ranks and the cutoff.
_PER_PREDICTION: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "recall": lambda r, k: (r <= k).astype(np.float64),
    "mrr": lambda r, k: np.where(r <= k, 1.0 / r, 0.0),
    "ndcg": lambda r, k: np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0),
}


def per_prediction(result: EvalResult, metric: str) -> np.ndarray:
    """(P,) the metric's value for each prediction (``recall@20`` → 0/1 hits, ...)."""
    name, _, k = metric.partition("@")
    if name not in _PER_PREDICTION or not k.isdigit():
        raise ConfigError(
            f"intervals are for {', '.join(f'{m}@K' for m in _PER_PREDICTION)}, not {metric!r}"
        )
    if len(result.ranks) != result.predictions:
        raise ConfigError("the result carries no per-prediction ranks")
    return _PER_PREDICTION[name](np.asarray(result.ranks, dtype=np.float64), int(k))


def _sessions_of(result: EvalResult, data: SessionData) -> np.ndarray:
    """(P,) the session index of each prediction."""
    if len(result.positions) != result.predictions or (
        result.predictions and result.positions.max() >= data.n_events
    ):
        raise ConfigError("the result's predictions do not belong to these sessions")
    return np.searchsorted(data.offsets, result.positions, side="right") - 1


def _replicates(
    values: list[np.ndarray], sessions: np.ndarray, n_sessions: int, n_boot: int, seed: int
) -> list[np.ndarray]:
    """(n_boot,) bootstrap replicates of the mean of each of ``values`` (same draws for all)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ConfigError(f"n_boot (bootstrap replicates) must be at least 1, not {n_boot!r}")
    counts = np.bincount(sessions, minlength=n_sessions).astype(np.float64)
    sums = [np.bincount(sessions, weights=v, minlength=n_sessions) for v in values]
    rng = np.random.default_rng(seed)
    out = [np.empty(n_boot) for _ in values]
    block = max(1, 2_000_000 // max(n_sessions, 1))  # bound the (block, S) weight matrix
    for a in range(0, n_boot, block):
        b = min(n_boot, a + block)
        draws = rng.integers(n_sessions, size=(b - a, n_sessions))  # row r: replicate a + r
        flat = (np.arange(b - a)[:, None] * n_sessions + draws).ravel()
        weight = np.bincount(flat, minlength=(b - a) * n_sessions).reshape(b - a, n_sessions)
        weight = weight.astype(np.float64)  # how often each session is drawn
        denom = weight @ counts
        for o, s in zip(out, sums, strict=True):
            o[a:b] = (weight @ s) / np.maximum(denom, 1.0)
    return out


def bootstrap_interval(
    result: EvalResult,
    data: SessionData,
    metrics: Sequence[str] = ("recall@20", "mrr@20"),
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile intervals of metrics by resampling the sessions of ``data``.

    Args:
        result: what ``evaluate`` returned on ``data`` (it keeps every prediction's rank).
        data: the SessionData evaluated.
        metrics: ``recall@K``, ``mrr@K`` or ``ndcg@K`` names.
        n_boot: bootstrap replicates.
        level: the interval's coverage (0.95: the 2.5th to 97.5th percentiles).
        seed: the resampling seed.

    Returns:
        ``{metric: {"value", "low", "high"}}``; ``value`` is the metric on all predictions.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must lie in (0, 1), not {level}")
    values = [per_prediction(result, m) for m in metrics]
    sessions = _sessions_of(result, data)
    reps = _replicates(values, sessions, data.n_sessions, n_boot, seed)
    tail = (1 - level) / 2 * 100
    return {
        m: {
            "value": float(v.mean()) if len(v) else 0.0,
            "low": float(np.percentile(r, tail)),
            "high": float(np.percentile(r, 100 - tail)),
        }
        for m, v, r in zip(metrics, values, reps, strict=True)
    }


def paired_difference(
    a: EvalResult,
    b: EvalResult,
    data: SessionData,
    metric: str = "mrr@20",
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``metric(a) − metric(b)`` with a paired session bootstrap interval and p-value.

    Both results must rank the same predictions of ``data`` (same protocol and part).
    """
    if not np.array_equal(a.positions, b.positions):
        raise ConfigError("a paired comparison needs both results on the same predictions")
    va, vb = per_prediction(a, metric), per_prediction(b, metric)
    sessions = _sessions_of(a, data)
    return paired_values(
        va, vb, sessions, metric, n_sessions=data.n_sessions, n_boot=n_boot, level=level, seed=seed
    )


def cluster_replicates(
    values: Sequence[np.ndarray],
    clusters: np.ndarray,
    *,
    n_clusters: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[np.ndarray]:
    """(n_boot,) bootstrap replicates of the mean of each of ``values`` (per-prediction values,
    all of one length), resampling the ``clusters`` (a (P,) index 0..n_clusters-1 per
    prediction: its session, or a user) with the same draws for every array."""
    clusters = np.asarray(clusters, dtype=np.int64)
    n = int(clusters.max()) + 1 if n_clusters is None and len(clusters) else (n_clusters or 0)
    return _replicates([np.asarray(v, np.float64) for v in values], clusters, n, n_boot, seed)


def paired_values(
    va: np.ndarray,
    vb: np.ndarray,
    clusters: np.ndarray,
    metric: str,
    *,
    n_sessions: int | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """``mean(va) − mean(vb)`` of per-prediction values on the same predictions, with a paired
    bootstrap interval and p-value over ``clusters`` (see ``paired_difference``)."""
    if len(va) != len(vb) or len(va) != len(clusters):
        raise ConfigError("a paired comparison needs both values on the same predictions")
    (diff,) = cluster_replicates(
        [va - vb], clusters, n_clusters=n_sessions, n_boot=n_boot, seed=seed
    )
    tail = (1 - level) / 2 * 100
    observed = float((va - vb).mean()) if len(va) else 0.0
    far = (diff <= 0).mean() if observed > 0 else (diff >= 0).mean()
    return {
        "metric": metric,
        "difference": observed,
        "low": float(np.percentile(diff, tail)),
        "high": float(np.percentile(diff, 100 - tail)),
        # No replicate on the far side resolves p only to below 2 / n_boot: that bound is
        # stored (with p_value_is_bound), never a p-value of 0.
        "p_value": (float(min(1.0, 2 * far)) if far > 0 else 2 / n_boot) if observed != 0 else 1.0,
        "p_value_is_bound": bool(observed != 0 and far == 0),
        "n_boot": n_boot,
        "level": level,
    }


__all__ = [
    "bootstrap_interval",
    "cluster_replicates",
    "paired_difference",
    "paired_values",
    "per_prediction",
]
