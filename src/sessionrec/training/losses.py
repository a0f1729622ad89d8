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


#: log2(e): the losses take their exponentials as ``exp2(x log2 e)``; torch's CPU ``exp2``
#: costs half its ``exp`` (both vectorised; measured on AVX2, 80,000 floats: 44 against 82 µs)
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453


def _elu_forward(z: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``elu(z, alpha)``, ``exp(min(z, 0))`` and ``max(z, 0)`` (the last two for the
    derivative), without ``F.elu``'s ``expm1`` (twice as slow on CPU):
    ``z⁺ − alpha + alpha exp(min(z, 0))``."""
    e = z.clamp(max=0.0).mul_(_LOG2E).exp2_()
    relu = z.clamp(min=0.0)
    return torch.add(relu, e, alpha=alpha).sub_(alpha), e, relu


def _elu_backward_(
    d: torch.Tensor,
    relu: torch.Tensor,
    e: torch.Tensor,
    alpha: float,
    factor: float | torch.Tensor,
) -> None:
    """``d *= factor · elu'(z)`` in place (``factor``: a number or a (B, 1) column, one per
    row): ``elu'`` is 1 above 0 and ``alpha exp(z)`` below, i.e.
    ``alpha e + (1 − alpha) [z > 0]`` (e = 1 above 0); ``[z > 0]`` is ``sign(max(z, 0))``,
    computed in ``relu``'s memory (a comparison to a bool mask costs five times as much on
    CPU)."""
    deriv = relu.sign_().mul_(factor * (1.0 - alpha))
    if isinstance(factor, torch.Tensor):
        deriv.addcmul_(e, factor * alpha)
    else:
        deriv.add_(e, alpha=factor * alpha)
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
        s, e, relu = _elu_forward(z, elu)
    else:
        s, e, relu = z, None, None
    # The softmax losses leave their row normalisation (1 / Σ exp) to the last pass over the
    # gradient (``row``): the ELU's derivative or the scale take it at no extra pass.
    row: torch.Tensor | None
    if name == "bpr-max":
        loss, d, row = _bpr_max_grad(s, pos, bpreg, counts)
    elif name == "cross-entropy":
        loss, d, row = _cross_entropy_grad(s, pos, log_q, counts)
    else:  # the rare loss: autograd over the scores alone
        if counts is not None:
            raise ValueError(f"{name}: counts are for bpr-max and cross-entropy")
        leaf = s.detach().requires_grad_()
        with torch.enable_grad():
            loss = ranking_loss(name, leaf, pos, bpreg=bpreg, log_q=log_q)
            (d,) = torch.autograd.grad(loss * z.shape[0], leaf)
        loss, row = loss.detach(), None
    factor = row.mul_(scale) if row is not None else scale
    if e is not None:
        assert relu is not None
        _elu_backward_(d, relu, e, elu, factor)
    elif isinstance(factor, torch.Tensor) or factor != 1.0:
        d.mul_(factor)
    return loss, d


#: exp(80) is far inside float32's range: the factor that turns a row's softmax terms into
#: the sigmoids' exponentials is capped there (see ``_bpr_max_grad``)
_EXP_CAP = 80.0


def _bpr_max_grad(
    s: torch.Tensor, pos: torch.Tensor, lam: float, counts: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BPR-max's row-mean loss and its row-sum gradient (``_BPRMax``'s formulas) as ``d``
    times the (B, 1) column ``row``, over columns that each stand for ``counts`` scored
    columns (None: one each).

    One exponential serves the softmax and the sigmoids: with ``E_j = c_j exp(s_j − m)`` (c_j
    the column's count as a negative of the row, m the row's largest ``s_j + log c_j``),
    ``σ(r − s_j) = 1 / (1 + (E_j / c_j) exp(m − r))``. The factor ``exp(m − r)`` is capped at
    ``exp(80)``: only a row whose positive scores 80 below its best negative reaches the cap,
    and there every term the cap changes has a softmax weight below ``exp(−80)``, far under
    the loss's ``1e-24`` floor. With the softmax ``w = E / Z`` (Z = Σ E), the gradient is
    ``w (λ (s + 1)² + 1 − λ (1 + reg)) − w σ² / hit``, two passes fewer than its textbook
    form; ``d`` is it times Z (``row`` = 1 / Z), so that E is never divided by Z.
    """
    pos1 = pos.unsqueeze(1)
    r = s.gather(1, pos1)
    # the exponents in base 2 (``_LOG2E``): w = (s + log c) log2 e
    r2 = r * _LOG2E
    if counts is None:
        w = torch.mul(s, _LOG2E).scatter_(1, pos1, float("-inf"))  # the positive takes no part
    else:
        c = counts.to(s.dtype)
        w = torch.add(c.log2(), s, alpha=_LOG2E)  # log 0 = −inf: an unscored column takes no part
        # the row's positive is one of its item's columns: the others are its negatives
        w.scatter_(1, pos1, r2 + (c[pos] - 1.0).log2().unsqueeze(1))
    m = w.amax(1, keepdim=True)
    big = w.sub_(m).exp2_()  # E
    k = (m - r2).clamp_(max=_EXP_CAP * _LOG2E).exp2_()  # exp(m − r)
    one = s.new_ones(())
    if counts is None:
        sig = torch.addcmul(one, big, k)
    else:
        sig = torch.addcmul(one, torch.mul(big, c.clamp(min=1.0).reciprocal_()), k)
        sig.scatter_(1, pos1, 2.0)  # the positive's item: σ(r − r) (its weight says how often)
    sig.reciprocal_()
    zi = big.sum(1, keepdim=True).reciprocal_()  # 1 / Z
    es2 = big * sig
    hit = es2.sum(1, keepdim=True).mul_(zi).add_(1e-24)
    es2.mul_(sig)  # E σ²
    reg = torch.mul(big, s).mul_(s).sum(1, keepdim=True).mul_(zi)
    loss = (reg * lam).sub_(hit.log()).mean()
    # negatives: Z w (λ (s + 1)² + 1 − λ (1 + reg)) − Z w σ² / hit; the positive, times Z:
    # (Σ w σ² − hit) / hit
    t = s + 1.0
    d = torch.addcmul(1.0 - lam * (1.0 + reg), t, t, value=lam).mul_(big)
    d.addcmul_(es2, hit.reciprocal(), value=-1.0)
    d_pos = (es2.sum(1, keepdim=True).mul_(zi) - hit).div_(hit * zi)
    d.scatter_add_(1, pos1, d_pos)  # (a positive's item may be a negative of its row too)
    return loss, d, zi


def _cross_entropy_grad(
    s: torch.Tensor,
    pos: torch.Tensor,
    log_q: torch.Tensor | None,
    counts: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy's row-mean loss and its row-sum gradient as ``d`` times the
    (B, 1) column ``row``, over columns that each stand for ``counts`` scored columns (None:
    one each): ``d = exp(l − m) − Z [pos]``, ``row = 1 / Z``."""
    # the logits in base 2 (``_LOG2E``): l = (s − log q) log2 e
    logits = torch.mul(s, _LOG2E)
    if log_q is not None:
        logits.sub_(log_q, alpha=_LOG2E)
    pos1 = pos.unsqueeze(1)
    l_pos = logits.gather(1, pos1)
    if counts is not None:
        logits.add_(counts.to(s.dtype).log2())  # c 2^l: a column for each count
    m = logits.amax(1, keepdim=True)
    p = logits.sub_(m).exp2_()
    total = p.sum(1, keepdim=True)
    # −log softmax[pos] = log Σ exp(l − m) + (m − l_pos) ln 2
    loss = total.log().add_(m - l_pos, alpha=_LN2).mean()
    p.scatter_add_(1, pos1, -total)
    return loss, p, total.reciprocal()


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
