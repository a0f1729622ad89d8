"""Ranking losses over sampled scores (Hidasi & Karatzoglou, CIKM 2018).

Every loss takes ``scores`` (B, C): row i scores C candidate items for the next event of
session slot i, and ``pos`` (B,): the column of row i's positive (its true next item). With
shared sampling the candidates are the B targets of the mini-batch followed by the shared
samples, so ``pos = arange(B)``; every other column is a negative of row i.

The losses return the mean over rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("cross-entropy", "bpr-max", "top1-max")


def _positive(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    return scores.gather(1, pos.unsqueeze(1))  # (B, 1)


def _negative_softmax(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(B, C) softmax over each row's negatives; the positive gets weight 0."""
    masked = scores.scatter(1, pos.unsqueeze(1), float("-inf"))
    return torch.softmax(masked, dim=1)


def cross_entropy(
    scores: torch.Tensor, pos: torch.Tensor, log_q: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax cross-entropy, ``-log softmax(scores)[pos]``.

    Args:
        scores: (B, C) scores.
        pos: (B,) column of each row's positive.
        log_q: optional (C,) log sampling probability of each candidate, times the ``logq``
            weight; subtracting it from every logit is the logQ correction of sampled
            softmax (Yi et al., RecSys 2019), which removes the bias towards popular items
            that popularity-driven negatives bring.
    """
    if log_q is not None:
        scores = scores - log_q
    return F.cross_entropy(scores, pos)


def bpr_max(scores: torch.Tensor, pos: torch.Tensor, bpreg: float) -> torch.Tensor:
    """BPR-max with score regularisation.

    ``-log sum_j s_j sigmoid(r_pos - r_j) + bpreg * sum_j s_j r_j**2`` where ``s`` is the
    softmax over the negatives' scores: the negatives that score highest dominate.
    """
    weights = _negative_softmax(scores, pos)
    r_pos = _positive(scores, pos)
    hit = (weights * torch.sigmoid(r_pos - scores)).sum(1)
    reg = (weights * scores.square()).sum(1)
    return (-torch.log(hit + 1e-24) + bpreg * reg).mean()


def top1_max(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """TOP1-max: ``sum_j s_j (sigmoid(r_j - r_pos) + sigmoid(r_j**2))``, s as in BPR-max."""
    weights = _negative_softmax(scores, pos)
    r_pos = _positive(scores, pos)
    per = torch.sigmoid(scores - r_pos) + torch.sigmoid(scores.square())
    return (weights * per).sum(1).mean()


def ranking_loss(
    name: str,
    scores: torch.Tensor,
    pos: torch.Tensor,
    *,
    bpreg: float = 0.0,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dispatch by the official names: cross-entropy, bpr-max, top1-max."""
    if name == "cross-entropy":
        return cross_entropy(scores, pos, log_q)
    if name == "bpr-max":
        return bpr_max(scores, pos, bpreg)
    if name == "top1-max":
        return top1_max(scores, pos)
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
