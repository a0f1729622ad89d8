"""Rating protocols on raw ratings: k-fold cross-validation, one random split, one time split."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from sessionrec.errors import ConfigError
from sessionrec.rating.data import Ratings, kfold, random_split, time_split

log = logging.getLogger(__name__)
METRICS = ("rmse", "mae", "fcp")
PROTOCOLS = ("kfold", "random", "time")


def crossval(
    data: Ratings,
    model: str,
    params: dict[str, Any] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    protocol: str = "kfold",
    test_fraction: float = 0.3,
) -> dict[str, Any]:
    """Fit ``model`` on each training part, measure RMSE/MAE/FCP on its held-out part.

    Protocols: ``kfold`` (``folds`` folds, every rating tested once, Surprise's KFold),
    ``random`` (one seeded random split holding out ``test_fraction``: the seed's 70/30) and
    ``time`` (the latest ``test_fraction`` of all ratings held out). The single-split protocols
    report one "fold" (std 0).

    Returns:
        {"model", "params", "protocol", "folds": [{"fold", "rmse", "mae", "fcp", "fit_seconds",
        "n_train", "n_test"}, ...], "mean": {...}, "std": {...}, "seed", "n_ratings"}.
    """
    from sessionrec.rating import create_rating_model

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if protocol != "kfold" and not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), not {test_fraction}")
    splits: Iterable[tuple[Ratings, Ratings]]
    if protocol == "kfold":
        splits = kfold(data, folds, seed)
    elif protocol == "random":
        splits = [random_split(data, test_fraction, seed)]
    else:
        splits = [time_split(data, test_fraction)]
    rows: list[dict[str, Any]] = []
    for k, (train, test) in enumerate(splits, start=1):
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
        "protocol": protocol if protocol == "kfold" else f"{protocol} {test_fraction:g}",
        "folds": rows,
        "mean": {key: float(np.mean([r[key] for r in rows])) for key in keys},
        "std": {key: float(np.std([r[key] for r in rows])) for key in keys},
        "seed": seed,
        "n_ratings": len(data),
    }
