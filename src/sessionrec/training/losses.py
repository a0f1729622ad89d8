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


def _elu_forward(z: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``elu(z, alpha)`` and ``exp(min(z, 0))`` (for the derivative), without ``F.elu``'s
    ``expm1`` (twice as slow on CPU): ``z⁺ − alpha + alpha exp(min(z, 0))``."""
    e = z.clamp(max=0.0).exp_()
    s = z.clamp(min=0.0).sub_(alpha).add_(e, alpha=alpha)
    return s, e


def _elu_backward_(
    d: torch.Tensor, z: torch.Tensor, e: torch.Tensor, alpha: float, scale: float
) -> None:
    """``d *= scale · elu'(z)`` in place: ``elu'`` is 1 above 0 and ``alpha exp(z)`` below,
    i.e. ``alpha e + (1 − alpha) [z > 0]`` (e = 1 above 0); the step at 0 from ``sign``
    (a comparison to a bool mask costs five times as much on CPU)."""
    deriv = torch.sign(z).clamp_(min=0.0).mul_(scale * (1.0 - alpha)).add_(e, alpha=scale * alpha)
    d.mul_(deriv)


def loss_and_grad(
    name: str,
    z: torch.Tensor,
    pos: torch.Tensor,
    *,
    scale: float,
    bpreg: float = 0.0,
    elu: float = 0.0,
    log_q: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ranking loss of ``elu(z)`` and its gradient with respect to ``z``, without autograd.

    Args:
        name: cross-entropy, bpr-max or top1-max.
        z: (B, C) raw scores (before the ELU; ``elu`` 0 = linear).
        pos: (B,) column of each row's positive.
        scale: the gradient is of ``scale`` times the row sum of the loss (GRU4Rec: 1 / its
            batch size, so that every pair weighs the same whatever the active rows).
        bpreg: BPR-max's score regularisation.
        log_q: (C,) logQ correction of cross-entropy (already weighted).
        counts: (C,) how many scored columns each of ``z``'s columns stands for (bpr-max and
            cross-entropy): GRU4Rec's columns (the batch's targets, then the shared samples)
            repeat items, so it scores each distinct item once and passes how often it was
            drawn; a row's positive is one of its item's ``counts``, the others are
            negatives. 0 = not scored (left out). None = every column once.

    Returns:
        The row mean of the loss (a 0-d tensor) and the (B, C) gradient (with ``counts``: each
        column's summed over the scored columns it stands for). Equal, to rounding, to
        autograd through ``ranking_loss(name, elu(z), pos)`` times ``scale · B`` over the
        columns spelled out.
    """
    if elu > 0:
        s, e = _elu_forward(z, elu)
    else:
        s, e = z, None
    inner = 1.0 if e is not None else scale  # with the ELU, its backward applies the scale
    if name == "bpr-max":
        loss, d = _bpr_max_grad(s, pos, bpreg, inner, counts)
    elif name == "cross-entropy":
        loss, d = _cross_entropy_grad(s, pos, log_q, inner, counts)
    else:  # the rare loss: autograd over the scores alone
        if counts is not None:
            raise ValueError(f"{name}: counts are for bpr-max and cross-entropy")
        leaf = s.detach().requires_grad_()
        with torch.enable_grad():
            loss = ranking_loss(name, leaf, pos, bpreg=bpreg, log_q=log_q)
            (d,) = torch.autograd.grad(loss * (inner * z.shape[0]), leaf)
        loss = loss.detach()
    if e is not None:
        _elu_backward_(d, z, e, elu, scale)
    return loss, d


#: exp(80) is far inside float32's range: the factor that turns a row's softmax terms into
#: the sigmoids' exponentials is capped there (see ``_bpr_max_grad``)
_EXP_CAP = 80.0


def _bpr_max_grad(
    s: torch.Tensor, pos: torch.Tensor, lam: float, scale: float, counts: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR-max's row-mean loss and ``scale ×`` its row-sum gradient (``_BPRMax``'s formulas),
    over columns that each stand for ``counts`` scored columns (None: one each).

    One exponential serves the softmax and the sigmoids: with ``E_j = c_j exp(s_j − m)`` (c_j
    the column's count as a negative of the row, m the row's largest ``s_j + log c_j``),
    ``σ(r − s_j) = 1 / (1 + (E_j / c_j) exp(m − r))``. The factor ``exp(m − r)`` is capped at
    ``exp(80)``: only a row whose positive scores 80 below its best negative reaches the cap,
    and there every term the cap changes has a softmax weight below ``exp(−80)``, far under
    the loss's ``1e-24`` floor. ``d`` is written as
    ``w (λ (s + 1)² + 1 − λ (1 + reg)) − w σ² / hit``, two passes fewer than its textbook form.
    """
    pos1 = pos.unsqueeze(1)
    r = s.gather(1, pos1)
    if counts is None:
        w = s.scatter(1, pos1, float("-inf"))  # the positive takes no part in the softmax
        inv_count = None
    else:
        c = counts.to(s.dtype)
        w = s + c.log()  # log 0 = −inf: an unscored column takes no part
        # the row's positive is one of its item's columns: the others are its negatives
        w.scatter_(1, pos1, r + (c[pos] - 1.0).log().unsqueeze(1))
        inv_count = c.clamp(min=1.0).reciprocal_()
    m = w.amax(1, keepdim=True)
    w.sub_(m).exp_()  # E
    q = torch.mul(w, (m - r).clamp_(max=_EXP_CAP).exp_())
    if inv_count is not None:
        q.mul_(inv_count)
        q.scatter_(1, pos1, 1.0)  # the positive's item: σ(r − r) (its weight says how often)
    sig = q.add_(1.0).reciprocal_()
    w.div_(w.sum(1, keepdim=True))
    wsig2 = w * sig
    hit = wsig2.sum(1, keepdim=True).add_(1e-24)
    wsig2.mul_(sig)  # w σ²
    reg = torch.mul(w, s).mul_(s).sum(1, keepdim=True)
    loss = (reg * lam).sub_(hit.log()).mean()
    # negatives: w (λ (s + 1)² + 1 − λ (1 + reg)) − w σ² / hit; the positive: (Σ w σ² − hit) / hit
    t = s + 1.0
    d = torch.addcmul(1.0 - lam * (1.0 + reg), t, t, value=lam).mul_(w)
    d.addcmul_(wsig2, hit.reciprocal(), value=-1.0)
    d_pos = (wsig2.sum(1, keepdim=True) - hit) / hit
    d.scatter_add_(1, pos1, d_pos)  # (a positive's item may be a negative of its row too)
    if scale != 1.0:
        d.mul_(scale)
    return loss, d


def _cross_entropy_grad(
    s: torch.Tensor,
    pos: torch.Tensor,
    log_q: torch.Tensor | None,
    scale: float,
    counts: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy's row-mean loss and ``scale ×`` its row-sum gradient, over
    columns that each stand for ``counts`` scored columns (None: one each)."""
    logits = s - log_q if log_q is not None else s.clone()
    pos1 = pos.unsqueeze(1)
    l_pos = logits.gather(1, pos1)
    if counts is not None:
        logits.add_(counts.to(s.dtype).log())  # c exp(l): a column for each count
    m = logits.amax(1, keepdim=True)
    p = logits.sub_(m).exp_()
    total = p.sum(1, keepdim=True)
    # −log softmax[pos] = m + log Σ exp(l − m) − l_pos
    loss = (total.log() + m - l_pos).mean()
    p.div_(total)
    p.scatter_add_(1, pos1, torch.full_like(pos1, -1.0, dtype=p.dtype))
    return loss, p.mul_(scale)


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
