"""k-fold cross-validation of a rating model on raw ratings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sessionrec.rating.data import Ratings, kfold

log = logging.getLogger(__name__)
METRICS = ("rmse", "mae", "fcp")


def crossval(
    data: Ratings,
    model: str,
    params: dict[str, Any] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on each of ``folds`` training parts, measure RMSE/MAE/FCP on the held-out fold.

    Returns:
        {"model", "params", "folds": [{"fold", "rmse", "mae", "fcp", "fit_seconds",
        "n_train", "n_test"}, ...], "mean": {...}, "std": {...}, "seed", "n_ratings"}.
    """
    from sessionrec.rating import create_rating_model

    rows: list[dict[str, Any]] = []
    for k, (train, test) in enumerate(kfold(data, folds, seed), start=1):
        m = create_rating_model(model, params, device)
        started = time.perf_counter()
        m.fit(train)
        fit_seconds = time.perf_counter() - started
        row = {
            "fold": k,
            **m.evaluate(test),
            "fit_seconds": fit_seconds,
            "n_train": len(train),
            "n_test": len(test),
        }
        log.info("fold %d: %s", k, row)
        rows.append(row)
        if on_fold is not None:
            on_fold(row)
    keys = (*METRICS, "fit_seconds")
    return {
        "model": model,
        "params": dict(params or {}),
        "folds": rows,
        "mean": {key: float(np.mean([r[key] for r in rows])) for key in keys},
        "std": {key: float(np.std([r[key] for r in rows])) for key in keys},
        "seed": seed,
        "n_ratings": len(data),
    }
