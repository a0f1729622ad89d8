"""Ranks from scores with an explicit tie mode, and metrics as pure functions of ranks.

A rank is computed once from a ``(B, n_items)`` score matrix (DESIGN.md, Evaluation):

- ``conservative`` (default): rank = 1 + number of *other* items scored ``>=`` the target,
  so a model that gives every item the same score ranks the target last, not first;
- ``optimistic``: rank = 1 + number of items scored strictly higher;
- ``average``: the mean of the two (the expected rank under a random order of the ties).

Excluded items (``exclude``, e.g. the items already in the session) never count as above the
target, whatever their score. An excluded *target* (the next item repeats one already in the
session, and seen items are excluded) can never be in the list that is served, so it is a
**miss**: its rank is ``inf``, it stays in the denominator and counts 0 in every metric. The
alternative, leaving it rankable, credits a model for items it would never show (a model that
boosts seen items would score hits on every repeat).

NaN scores never rank above a target, and a target scored NaN ranks **last** among the
rankable items in every tie mode (rank = the number of items not excluded), so a broken model
cannot score a hit: an all-NaN model gets Recall@k = 0 for every k below the catalogue size.

Metrics take the ranks (any shape, float or int, ``inf`` for a miss; empty allowed) and
return a Python float:
Recall@k (= HitRate@k with one target per prediction), MRR@k and NDCG@k. With no predictions
every metric is 0.0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

TieMode = Literal["conservative", "optimistic", "average"]
TIES: tuple[str, ...] = ("conservative", "optimistic", "average")


def check_ties(ties: str) -> None:
    if ties not in TIES:
        from sessionrec.errors import UnknownNameError

        raise UnknownNameError("tie mode", ties, list(TIES))


def ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ties: str = "conservative",
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each row's target among all items.

    Args:
        scores: (B, n_items) float scores, higher is better.
        targets: (B,) long item index of each row's target.
        ties: ``conservative`` | ``optimistic`` | ``average`` (see the module docstring).
        exclude: optional (B, n_items) bool; True items never count as ranked above the
            target, and a row whose target is itself excluded ranks it ``inf`` (a miss: the
            served list never holds it).

    Returns:
        (B,) float64 ranks on ``scores.device`` (float32 on MPS, which has no float64);
        integers unless ``ties="average"``, ``inf`` for an excluded target.
    """
    check_ties(ties)
    if scores.ndim != 2 or targets.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be (B, n_items) and targets (B,), got {tuple(scores.shape)} "
            f"and {tuple(targets.shape)}"
        )
    fdt = rank_dtype(scores.device)
    if scores.shape[0] == 0:
        return torch.zeros(0, dtype=fdt, device=scores.device)
    scores = scores.detach()
    targets = targets.to(scores.device).long().view(-1, 1)
    own = scores.gather(1, targets)
    # (B, 1) the target's score. Only this small column is cleaned of NaN: a NaN elsewhere
    # compares False with everything, so it never counts as above the target anyway.
    t = _nan_low(own)
    keep = None
    excluded_t = None
    if exclude is not None:
        keep = ~exclude.to(scores.device)
        # An excluded target is a miss (module docstring): ranked below, then set to inf.
        excluded_t = ~keep.gather(1, targets).view(-1)
        keep = keep.scatter(1, targets, True)
    nan_t = torch.isnan(own).view(-1)
    out = torch.zeros(scores.shape[0], dtype=fdt, device=scores.device)
    if ties in ("conservative", "average"):
        # the count includes the target itself (its score >= itself) unless it is NaN; 1 + the
        # other items scored >= the target either way
        out += _count_above(scores, t, keep, strict=False).to(fdt) + nan_t.to(fdt)
    if ties in ("optimistic", "average"):
        out += 1.0 + _count_above(scores, t, keep, strict=True).to(fdt)
    if ties == "average":
        out /= 2.0
    # A NaN target ranks last: every other rankable item counts as above it.
    if bool(nan_t.any()):
        n_rankable = (
            keep.sum(1, dtype=torch.int64).to(fdt)
            if keep is not None
            else torch.full_like(out, float(scores.shape[1]))
        )
        out = torch.where(nan_t, n_rankable, out)
    if excluded_t is not None and bool(excluded_t.any()):
        out = out.masked_fill(excluded_t, torch.inf)
    return out


def _count_above(
    scores: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None, *, strict: bool
) -> torch.Tensor:
    """(B,) int64 per row: the entries ``> t`` (``strict``) or ``>= t`` where ``keep``.

    On the CPU the comparison and the count run in numpy, a few times faster than torch's
    boolean reduction over the wide rows of a large catalogue (BENCHMARKS.md, "YOOCHOOSE
    scale"); the counts are the same integers.
    """
    if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64):
        s, tv = scores.numpy(), t.numpy()
        hit = np.greater(s, tv) if strict else np.greater_equal(s, tv)
        if keep is not None:
            hit &= keep.numpy()
        return torch.from_numpy(np.count_nonzero(hit, axis=1).astype(np.int64))
    hit = scores > t if strict else scores >= t
    if keep is not None:
        hit &= keep
    return hit.sum(1, dtype=torch.int64)


def rank_dtype(device: torch.device) -> torch.dtype:
    """float64, except on Apple's MPS, which has no float64 (exact for ranks below 2**23)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _nan_low(x: torch.Tensor) -> torch.Tensor:
    """NaN → -inf, other values (±inf included) unchanged."""
    return torch.where(torch.isnan(x), torch.full_like(x, -torch.inf), x)


def sampled_ranks(
    target_scores: torch.Tensor,
    negative_scores: torch.Tensor,
    ties: str = "conservative",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each target among its sampled negatives.

    Args:
        target_scores: (B,) the target's score.
        negative_scores: (B, N) the scores of N sampled negatives per row.
        ties: the tie mode, as for ``ranks``.
        valid: optional (B, N) bool; False negatives (padding) are ignored.

    Returns:
        (B,) float64 ranks in 1..N+1.
    """
    check_ties(ties)
    t = _nan_low(target_scores).view(-1, 1)
    neg = negative_scores  # NaN compares False: never above the target
    gt = neg > t
    geq = neg >= t
    if valid is not None:
        gt &= valid
        geq &= valid
    fdt = rank_dtype(neg.device)
    above = {
        "conservative": geq.sum(1).to(fdt),
        "optimistic": gt.sum(1).to(fdt),
        "average": (geq.sum(1) + gt.sum(1)).to(fdt) / 2.0,
    }[ties]
    # A NaN target ranks last, below every (valid) negative.
    n_neg = valid.sum(1).to(fdt) if valid is not None else torch.full_like(above, neg.shape[1])
    return 1.0 + torch.where(torch.isnan(target_scores.view(-1)), n_neg, above)


def _as_array(r: np.ndarray | torch.Tensor | list[float]) -> np.ndarray:
    if isinstance(r, torch.Tensor):
        r = r.detach().cpu().numpy()
    return np.asarray(r, dtype=np.float64).reshape(-1)


def recall(r: np.ndarray | torch.Tensor | list[float], k: int) -> float:
    """Recall@k = HitRate@k: the share of predictions whose target ranks within the top k."""
    a = _as_array(r)
    return float((a <= k).mean()) if a.size else 0.0


def mrr(r: np.ndarray | torch.Tensor | list[float], k: int) -> float:
    """MRR@k: the mean of 1/rank, counting 0 for ranks beyond k."""
    a = _as_array(r)
    return float(np.where(a <= k, 1.0 / a, 0.0).mean()) if a.size else 0.0


def ndcg(r: np.ndarray | torch.Tensor | list[float], k: int) -> float:
    """NDCG@k with one relevant item: the mean of 1/log2(rank+1), 0 for ranks beyond k."""
    a = _as_array(r)
    return float(np.where(a <= k, 1.0 / np.log2(a + 1.0), 0.0).mean()) if a.size else 0.0


def coverage(top_items: np.ndarray | torch.Tensor, n_items: int) -> float:
    """Item coverage: the share of the catalogue that appears in any recommendation list.

    Args:
        top_items: (P, k) item indices of P top-k lists (entries < 0 are padding).
        n_items: catalogue size.
    """
    a = top_items.detach().cpu().numpy() if isinstance(top_items, torch.Tensor) else top_items
    a = np.asarray(a).reshape(-1)
    a = a[a >= 0]
    return float(np.unique(a).size / n_items) if n_items and a.size else 0.0


def mean_popularity(top_items: np.ndarray | torch.Tensor, popularity: np.ndarray) -> float:
    """Mean popularity of the recommended items.

    Args:
        top_items: (P, k) item indices of P top-k lists (entries < 0 are padding).
        popularity: (n_items,) each item's popularity, e.g. its training count divided by the
            largest count (the evaluator's normalisation, in [0, 1]).
    """
    a = top_items.detach().cpu().numpy() if isinstance(top_items, torch.Tensor) else top_items
    a = np.asarray(a).reshape(-1)
    a = a[a >= 0]
    return float(np.asarray(popularity, dtype=np.float64)[a].mean()) if a.size else 0.0


def normalized_popularity(counts: np.ndarray) -> np.ndarray:
    """(n_items,) float64 counts divided by the largest count (all zeros stay zero)."""
    c = np.asarray(counts, dtype=np.float64)
    top = c.max() if c.size else 0.0
    return c / top if top > 0 else np.zeros_like(c)


__all__ = [
    "TIES",
    "TieMode",
    "coverage",
    "mean_popularity",
    "mrr",
    "ndcg",
    "normalized_popularity",
    "ranks",
    "recall",
    "sampled_ranks",
]
