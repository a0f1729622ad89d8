"""Hyperparameter search on valid (Optuna), then one score on test: ``sr.tune``.

>>> best = sr.tune("vsknn", "runs/ml-100k", "runs/tune-vsknn", trials=30, metric="mrr@20")
>>> best["params"], best["valid"], best["test"]["intervals"]["mrr@20"]

Search spaces ship per model (``sessionrec/tuning/spaces/<model>.toml``, ``load_space``).
Optuna is an optional extra: ``pip install -e ".[tune]"``.
"""

from __future__ import annotations

from sessionrec.tuning.search import SearchData, tune
from sessionrec.tuning.space import Param, Space, load_space

__all__ = ["Param", "SearchData", "Space", "load_space", "tune"]
