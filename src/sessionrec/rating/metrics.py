"""Rating-prediction metrics as pure functions: RMSE, MAE, FCP."""

from __future__ import annotations

import itertools

import numpy as np


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error; NaN for no ratings."""
    truth, pred = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    return float(np.sqrt(np.mean((truth - pred) ** 2))) if len(truth) else float("nan")


def mae(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error; NaN for no ratings."""
    truth, pred = np.asarray(truth, np.float64), np.asarray(pred, np.float64)
    return float(np.mean(np.abs(truth - pred))) if len(truth) else float("nan")


def fcp(users: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of concordant pairs (Koren, 2008): among pairs of one user's ratings with
    different true ratings, the share the prediction orders the same way.

    ``FCP = Σ_u n_c(u) / Σ_u (n_c(u) + n_d(u))``; a pair with r_i > r_j is concordant when
    p_i > p_j and discordant otherwise (a tied prediction counts as discordant, as in
    Surprise). NaN when no user has two different ratings.
    """
    users = np.asarray(users)
    truth = np.asarray(truth, np.float64)
    pred = np.asarray(pred, np.float64)
    order = np.argsort(users, kind="stable")
    users, truth, pred = users[order], truth[order], pred[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    concordant = discordant = 0
    # A loop per user (not per pair): each user's pairs are counted with one outer comparison.
    for a, b in itertools.pairwise(bounds):
        if b - a < 2:
            continue
        t, p = truth[a:b], pred[a:b]
        higher = t[:, None] > t[None, :]
        c = int((higher & (p[:, None] > p[None, :])).sum())
        concordant += c
        discordant += int(higher.sum()) - c
    total = concordant + discordant
    return concordant / total if total else float("nan")


def rating_metrics(users: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """{"rmse", "mae", "fcp"} of predictions ``pred`` for ratings ``truth``."""
    return {"rmse": rmse(truth, pred), "mae": mae(truth, pred), "fcp": fcp(users, truth, pred)}
