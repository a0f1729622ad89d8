"""Evaluation: ranks with explicit ties, metrics of ranks, and one streaming evaluator.

>>> result = sr.evaluate(model, data.test, cutoffs=(5, 10, 20), exclude_seen=True)
>>> result.predictions, result.metrics["recall@20"]
>>> bootstrap_interval(result, data.test)   # session-level 95 % intervals
"""

from __future__ import annotations

from sessionrec.evaluation import metrics
from sessionrec.evaluation.evaluator import (
    PROTOCOLS,
    EvalResult,
    evaluate,
    prediction_mask,
    seen_phrase,
)
from sessionrec.evaluation.intervals import bootstrap_interval, paired_difference

__all__ = [
    "PROTOCOLS",
    "EvalResult",
    "bootstrap_interval",
    "evaluate",
    "metrics",
    "paired_difference",
    "prediction_mask",
    "seen_phrase",
]
