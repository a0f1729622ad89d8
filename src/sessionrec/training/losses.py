"""Ranking losses over sampled scores (Hidasi & Karatzoglou, CIKM 2018).

Every loss takes ``scores`` (B, C): row i scores C candidate items for the next event of
session slot i, and ``pos`` (B,): the column of row i's positive (its true next item). With
shared sampling the candidates are the B targets of the mini-batch followed by the shared
samples, so ``pos = arange(B)``; every other column is a negative of row i.

The losses return the mean over rows.
"""

from __future__ import annotations

from typing import Any

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


class _BPRMax(torch.autograd.Function):
    """BPR-max over ELU scores with a closed-form backward.

    With ``w`` the softmax over the negatives, ``σ_j = sigmoid(r_pos - s_j)``,
    ``hit = Σ w_j σ_j`` and ``reg = Σ w_j s_j²``, the row loss is ``-log hit + λ reg`` and

        dL/ds_j   = w_j (1 - σ_j² / hit + λ (s_j² + 2 s_j - reg))     (negatives)
        dL/dr_pos = -(hit - Σ w_j σ_j²) / hit

    One pass instead of the dozens of small kernels autograd records: the loss is the largest
    elementwise work of a GRU4Rec step.
    """

    @staticmethod
    def forward(
        ctx: Any, z: torch.Tensor, pos: torch.Tensor, bpreg: float, elu: float
    ) -> torch.Tensor:
        s = F.elu(z, alpha=elu) if elu > 0 else z
        pos1 = pos.unsqueeze(1)
        w = torch.softmax(s.scatter(1, pos1, float("-inf")), dim=1)
        sig = torch.sigmoid(s.gather(1, pos1) - s)
        hit = (w * sig).sum(1, keepdim=True)
        reg = (w * s.square()).sum(1, keepdim=True)
        ctx.save_for_backward(z, s, pos1, w, sig, hit, reg)
        ctx.bpreg, ctx.elu = bpreg, elu
        return (bpreg * reg - torch.log(hit + 1e-24)).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, s, pos1, w, sig, hit, reg = ctx.saved_tensors
        lam = ctx.bpreg
        hit = hit + 1e-24
        sig2 = sig.square_()  # sig is not needed any more: reuse its memory
        wsig2 = w * sig2
        # λ (s² + 2 s − reg) + 1 − σ²/hit, times w
        d = (s + 2.0).mul_(s).sub_(reg).mul_(lam).add_(1.0) if lam else torch.ones_like(s)
        d.mul_(w).sub_(wsig2 / hit)
        d_pos = (wsig2.sum(1, keepdim=True) - hit) / hit
        d.scatter_(1, pos1, d_pos)
        d.mul_(grad / s.shape[0])
        if ctx.elu > 0:
            # ELU'(z) = 1 for z > 0, else elu(z) + alpha
            d = torch.where(z > 0, d, d * (s + ctx.elu))
        return d, None, None, None


def bpr_max_elu(z: torch.Tensor, pos: torch.Tensor, bpreg: float, elu: float) -> torch.Tensor:
    """``bpr_max(elu(z, elu), pos, bpreg)`` (``elu`` 0 = linear) with a fused backward."""
    out = _BPRMax.apply(z, pos, bpreg, elu)
    assert isinstance(out, torch.Tensor)
    return out


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
