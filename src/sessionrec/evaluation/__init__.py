"""Evaluation: ranks with explicit ties, metrics of ranks, and one streaming evaluator.

>>> result = sr.evaluate(model, data.test, cutoffs=(5, 10, 20), exclude_seen=True)
>>> result.predictions, result.metrics["recall@20"]
"""

from __future__ import annotations

from sessionrec.evaluation import metrics
from sessionrec.evaluation.evaluator import PROTOCOLS, EvalResult, evaluate, prediction_mask

__all__ = ["PROTOCOLS", "EvalResult", "evaluate", "metrics", "prediction_mask"]
