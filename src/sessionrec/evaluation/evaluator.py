"""One evaluator for every model: session-parallel streaming, full ranking, every position.

``evaluate`` runs ``batch_size`` sessions side by side through a model's streaming protocol
(``start / step / score / reset``). At each step every active slot is fed its current event;
where the slot's next event is a target, the model's scores rank that next item. When a slot's
session has no more predictions, the slot is ``reset`` and takes the next session, and the loop
runs until the last session is done, so every prediction counts (the count is checked against
``SessionData.n_predictions``; an evaluator that stops when fewer than B sessions remain, or
never resets a slot, fails that check).

Protocols:
    every: each target event after a session's first event is predicted from its prefix
        (a session of n target events gives n-1 predictions). Context rows
        (``SessionData.target == False``) are fed as history but never predicted.
    last: only the last event of each session (when it is a target).
    sampled: as ``every``, but the target is ranked among ``negatives`` sampled items instead
        of the whole catalogue: uniformly or in proportion to ``popularity``, without
        replacement, never the target nor an item already in the session. Sampled metrics
        overstate accuracy and do not compare with full-ranking ones; the result says so in
        ``protocol["sampled"]``.

Coverage@k and popularity@k describe the top-k lists the model would serve at the predicted
positions (with ``exclude_seen``, the session's items removed), under every protocol.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sessionrec._threads import calm_threads
from sessionrec.errors import ConfigError, DataError, UnknownNameError
from sessionrec.evaluation import metrics as M

if TYPE_CHECKING:
    from sessionrec.models.base import SessionModel
    from sessionrec.prepare.data import SessionData

log = logging.getLogger(__name__)

PROTOCOLS = ("every", "last", "sampled")
NEGATIVE_SAMPLING = ("uniform", "popularity")


@dataclass
class EvalResult:
    """What ``evaluate`` measured.

    Attributes:
        predictions: the number of predictions ranked.
        metrics: ``recall@K``, ``mrr@K``, ``ndcg@K``, ``coverage@K``, ``popularity@K`` per cutoff.
        protocol: how it was measured (name, ties, exclude_seen, cutoffs, sampled, ...).
        seconds: wall time of the evaluation.
        ranks: (P,) float64 rank of each prediction's target, in event order.
        positions: (P,) int64 index into ``data.items`` of each prediction's target event.
        nan_predictions: predictions whose scores held a NaN (a NaN target ranks last, NaN
            items are never served); non-zero means a broken model, and ``warnings`` says so.
        warnings: what a reader of the figures must know (e.g. NaN scores).
    """

    predictions: int
    metrics: dict[str, float]
    protocol: dict[str, Any]
    seconds: float
    ranks: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    positions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    nan_predictions: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``predictions``, the metric keys, ``protocol``, ``seconds`` and, when there
        are any, ``nan_predictions`` and ``warnings``."""
        out: dict[str, Any] = {
            "predictions": self.predictions,
            **self.metrics,
            "protocol": dict(self.protocol),
            "seconds": round(self.seconds, 4),
        }
        if self.nan_predictions or self.warnings:
            out["nan_predictions"] = self.nan_predictions
            out["warnings"] = list(self.warnings)
        return out


def prediction_mask(data: SessionData, protocol: str = "every") -> np.ndarray:
    """(E,) bool: the events that are predicted under ``protocol`` (``sampled`` as ``every``)."""
    first = np.zeros(data.n_events, dtype=bool)
    first[data.offsets[:-1]] = True
    if protocol == "last":
        last = np.zeros(data.n_events, dtype=bool)
        long = data.lengths >= 2
        last[data.offsets[1:][long] - 1] = True
        return data.target & last
    return data.target & ~first


def evaluate(
    model: SessionModel,
    data: SessionData,
    *,
    cutoffs: Sequence[int] = (5, 10, 20),
    ties: str = "conservative",
    exclude_seen: bool = False,
    protocol: str = "every",
    negatives: int = 100,
    negative_sampling: str = "uniform",
    batch_size: int = 256,
    seed: int = 0,
    popularity: np.ndarray | None = None,
    progress: bool = False,
    allow_other_data: bool = False,
    max_session_events: int | None = None,
) -> EvalResult:
    """Next-item accuracy of ``model`` on ``data`` through the streaming protocol.

    Args:
        model: a fitted model (any ``SessionModel``); scores are computed on ``model.device``.
        data: the sessions to evaluate (item indices of the model's vocabulary).
        cutoffs: the k of Recall@k, MRR@k, NDCG@k, coverage@k, popularity@k.
        ties: ``conservative`` (items scored equal to the target rank above it), ``optimistic``
            or ``average`` (see ``sessionrec.evaluation.metrics``).
        exclude_seen: rank as the served list does, without the items already in the
            session (apt for MovieLens, where a movie is rated once). A target that repeats
            one of them can never be served and counts as a miss (rank ``inf``); how many did
            is recorded in ``protocol["seen_targets"]``.
        protocol: ``every`` | ``last`` | ``sampled`` (module docstring).
        negatives: number of sampled negatives per prediction (``sampled`` only).
        negative_sampling: ``uniform`` | ``popularity`` (``sampled`` only).
        batch_size: sessions run side by side.
        seed: seeds the negative sampler.
        popularity: (n_items,) training counts, for popularity@k and popularity sampling;
            by default the ``count`` column of ``model.items``, else the counts in ``data``
            (recorded in ``protocol["popularity_source"]``).
        progress: show a progress bar (rich) on stderr.
        allow_other_data: evaluate although ``model`` was trained on another PreparedData
            than the one ``data`` comes from (refused otherwise: the test sessions may have been
            in its training data). Recorded in ``protocol["data_check"]``.
        max_session_events: rank each prediction from the events a service with this
            ``--max-session-events`` keeps (``window.window_sessions``), so that served ranks
            equal evaluated ones for sessions of any length; None: the whole prefix.

    Returns:
        An ``EvalResult``.
    """
    t0 = time.perf_counter()
    cutoffs = _check_args(cutoffs, ties, protocol, negatives, negative_sampling, batch_size)
    if data.n_items != model.n_items:
        raise DataError(
            None,
            expected=f"sessions over the model's {model.n_items:,} items",
            found=f"data with {data.n_items:,} items (another vocabulary?)",
        )
    data_check = _check_data(model, data, allow_other_data)
    origin: np.ndarray | None = None
    n_sessions = data.n_sessions
    if max_session_events is not None:
        from sessionrec.evaluation.window import window_sessions

        data, origin = window_sessions(data, max_session_events)
    if protocol == "sampled" and negatives > data.n_items - 1:
        raise ConfigError(
            f"negatives {negatives} exceeds the {data.n_items - 1:,} items besides the target "
            f"in a catalogue of {data.n_items:,}"
        )
    counts, pop_source = _popularity(model, data, popularity)
    is_pred = prediction_mask(data, protocol)
    expected = int(is_pred.sum())
    if protocol != "last" and expected != data.n_predictions:
        raise AssertionError(f"{expected} != data.n_predictions {data.n_predictions}")

    with torch.no_grad(), calm_threads():
        run = _Run(
            model,
            data,
            is_pred,
            cutoffs=cutoffs,
            ties=ties,
            exclude_seen=exclude_seen,
            sampled=protocol == "sampled",
            negatives=negatives,
            sampling_weights=counts if negative_sampling == "popularity" else None,
            seed=seed,
            popularity=M.normalized_popularity(counts),
        )
        ranks, positions, cov, pop = run.loop(batch_size, expected, progress)
        drawn = run.negatives_drawn
    if origin is not None:  # back to the events of the data as given
        positions = origin[positions]
    # An evaluator that stops early or skips a slot is the classic bug this guards against.
    if len(ranks) != expected:
        raise AssertionError(f"made {len(ranks)} predictions, expected {expected}")
    log.info("%s predictions (%s protocol)", f"{len(ranks):,}", protocol)

    n = len(ranks)
    out: dict[str, float] = {}
    for k in cutoffs:
        out[f"recall@{k}"] = M.recall(ranks, k)
        out[f"mrr@{k}"] = M.mrr(ranks, k)
        out[f"ndcg@{k}"] = M.ndcg(ranks, k)
    for j, k in enumerate(cutoffs):
        out[f"coverage@{k}"] = float(cov[j]) / data.n_items if data.n_items and n else 0.0
        out[f"popularity@{k}"] = float(pop[j]) / n if n else 0.0
    proto: dict[str, Any] = {
        "name": protocol,
        "ties": ties,
        "exclude_seen": exclude_seen,
        # with exclude_seen: the targets that repeat a session item, each counted as a miss
        "seen_targets": int(np.isinf(ranks).sum()) if exclude_seen else 0,
        "cutoffs": list(cutoffs),
        "sampled": protocol == "sampled",
        "full_ranking": protocol != "sampled",
        "n_items": data.n_items,
        "sessions": n_sessions,
        "max_session_events": max_session_events,
        "popularity_source": pop_source,
        "model": getattr(model, "name", type(model).__name__),
        "batch_size": batch_size,
        "device": str(model.device),
    }
    if protocol == "sampled":
        proto.update(negatives=negatives, negative_sampling=negative_sampling, seed=seed)
        # Fewer where a session's own items (never negatives) or zero-popularity items leave
        # fewer to draw from: what was drawn is recorded beside what was asked.
        proto["negatives_drawn"] = {
            "min": int(drawn.min()) if len(drawn) else 0,
            "mean": float(drawn.mean()) if len(drawn) else 0.0,
        }
    if data_check is not None:
        proto["data_check"] = data_check
    warnings: list[str] = []
    if run.nan_rows:
        warnings.append(
            f"the model scored NaN in {run.nan_rows:,} of {n:,} predictions: a NaN target "
            "ranks last and NaN items are never recommended, but the model is broken"
        )
        log.warning(warnings[-1])
    return EvalResult(
        predictions=n,
        metrics=out,
        protocol=proto,
        seconds=time.perf_counter() - t0,
        ranks=ranks,
        positions=positions,
        nan_predictions=run.nan_rows,
        warnings=warnings,
    )


def _check_data(
    model: SessionModel, data: SessionData, allow_other_data: bool
) -> dict[str, Any] | None:
    """Whether ``model`` was trained on the PreparedData that ``data`` is a part of."""
    prepared = data.extra.get("prepared")
    trained_on = getattr(model, "trained_on", None)
    if prepared is None or not trained_on:
        return None
    from sessionrec.prepare.data import check_trained_on

    return check_trained_on(
        trained_on,
        prepared,
        model=getattr(model, "name", "model"),
        allow_other_data=allow_other_data,
    )


def _check_args(
    cutoffs: Sequence[int],
    ties: str,
    protocol: str,
    negatives: int,
    negative_sampling: str,
    batch_size: int,
) -> tuple[int, ...]:
    M.check_ties(ties)
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, list(PROTOCOLS))
    if negative_sampling not in NEGATIVE_SAMPLING:
        raise UnknownNameError("negative sampling", negative_sampling, list(NEGATIVE_SAMPLING))
    ks = tuple(int(k) for k in cutoffs)
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"cutoffs must be positive integers, got {list(cutoffs)}")
    if len(set(ks)) != len(ks):
        raise ConfigError(f"cutoffs repeat a value: {list(cutoffs)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if protocol == "sampled" and negatives < 1:
        raise ConfigError(f"negatives must be >= 1, got {negatives}")
    return ks


def _popularity(
    model: SessionModel, data: SessionData, popularity: np.ndarray | None
) -> tuple[np.ndarray, str]:
    if popularity is not None:
        counts = np.asarray(popularity, dtype=np.float64).reshape(-1)
        if counts.shape != (data.n_items,) or (counts < 0).any():
            raise ConfigError(
                f"popularity must be ({data.n_items},) non-negative counts, "
                f"got shape {counts.shape}"
            )
        return counts, "given"
    items = getattr(model, "items", None)
    if items is not None and "count" in items.columns and items.height == data.n_items:
        by_idx = items.sort("item_idx")["count"].to_numpy() if "item_idx" in items.columns else None
        if by_idx is not None:
            return np.asarray(by_idx, dtype=np.float64), "model items count"
    return data.item_counts().astype(np.float64), "evaluated data"


class _Run:
    """The session-parallel loop and its accumulators (one evaluation)."""

    def __init__(
        self,
        model: SessionModel,
        data: SessionData,
        is_pred: np.ndarray,
        *,
        cutoffs: tuple[int, ...],
        ties: str,
        exclude_seen: bool,
        sampled: bool,
        negatives: int,
        sampling_weights: np.ndarray | None,
        seed: int,
        popularity: np.ndarray,
    ) -> None:
        self.model = model
        self.data = data
        self.is_pred = is_pred
        self._drawn: list[torch.Tensor] = []  # sampled: negatives drawn per prediction
        self.cutoffs = cutoffs
        self.ties = ties
        self.exclude_seen = exclude_seen
        self.sampled = sampled
        self.negatives = negatives
        self.dev = model.device
        n = data.n_items
        self.kmax = min(max(cutoffs), n)
        fdt = M.rank_dtype(self.dev)
        self.pop = torch.as_tensor(popularity, dtype=fdt, device=self.dev)
        self.covered = torch.zeros(len(cutoffs), n, dtype=torch.bool, device=self.dev)
        self.pop_sum = torch.zeros(len(cutoffs), dtype=fdt, device=self.dev)
        self.nan_rows = 0
        if sampled:
            w = np.ones(n) if sampling_weights is None else sampling_weights
            self.weights = torch.as_tensor(w, dtype=torch.float32, device=self.dev)
            self.gen = torch.Generator(device=self.dev)
            self.gen.manual_seed(seed)

    def loop(
        self, batch_size: int, expected: int, progress: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        data, model, dev = self.data, self.model, self.dev
        items, offsets = data.items, data.offsets
        # Feed each session only up to its last predicted event; sessions without any
        # prediction are skipped entirely.
        pred_pos = np.flatnonzero(self.is_pred)
        sess_of = np.searchsorted(offsets, pred_pos, side="right") - 1
        run_len = np.zeros(data.n_sessions, dtype=np.int64)
        np.maximum.at(run_len, sess_of, pred_pos - offsets[sess_of] + 1)
        queue = np.flatnonzero(run_len >= 2)
        rank_chunks: list[torch.Tensor] = []
        pos_chunks: list[np.ndarray] = []
        if len(queue) == 0:
            z = np.zeros(len(self.cutoffs))
            return np.zeros(0), np.zeros(0, np.int64), z, z

        B = min(batch_size, len(queue))
        state = model.start(B)
        slot_sess = queue[:B].copy()
        next_q = B
        slot_pos = np.zeros(B, dtype=np.int64)
        active = np.ones(B, dtype=bool)
        arange_b = np.arange(B)
        track_seen = self.exclude_seen or self.sampled
        seen = torch.zeros(B, data.n_items, dtype=torch.bool, device=dev) if track_seen else None

        bar = _progress(progress, expected)
        chunk = max(1, _CHUNK_SCORES // max(1, data.n_items))
        own_rows = type(model).score_rows is not _base_score_rows()
        try:
            while active.any():
                ev = offsets[slot_sess] + slot_pos  # (B,) current event of each slot
                cur = np.where(active, items[np.minimum(ev, data.n_events - 1)], 0)
                cur_t = torch.from_numpy(cur).to(dev)
                state = model.step(state, cur_t)
                if seen is not None:
                    rows_a = torch.from_numpy(arange_b[active]).to(dev)
                    seen[rows_a, cur_t[rows_a]] = True
                nxt = ev + 1
                pred = active & self.is_pred[np.minimum(nxt, data.n_events - 1)]
                # the predicted slots, a few at a time: (chunk, n_items) scores stay small
                # enough to be reused from the allocator and to sit in the cache. A model
                # without its own score_rows scores every slot at each call: once per step
                pred_rows = np.flatnonzero(pred)
                whole = None
                if not own_rows:
                    whole = model.score_rows(state, torch.from_numpy(pred_rows).to(dev))
                for lo in range(0, len(pred_rows), chunk):
                    rows = pred_rows[lo : lo + chunk]
                    rows_t = torch.from_numpy(rows).to(dev)
                    if whole is None:
                        scores = model.score_rows(state, rows_t)  # (P, n_items)
                    else:
                        scores = whole[lo : lo + chunk]
                    has_nan = _rows_with_nan(scores)
                    self.nan_rows += int(has_nan.sum())
                    tgt = torch.from_numpy(items[nxt[rows]]).to(dev)
                    s_seen = seen[rows_t] if seen is not None else None
                    rank_chunks.append(self._rank(scores, tgt, s_seen))
                    pos_chunks.append(nxt[rows])
                    has_any_nan = bool(has_nan.any())
                    self._lists(scores, s_seen if self.exclude_seen else None, has_any_nan)
                    if bar is not None:
                        bar[0].advance(bar[1], len(rows))
                slot_pos[active] += 1
                ended = active & (slot_pos + 1 >= run_len[slot_sess])
                if ended.any():
                    slots = np.flatnonzero(ended)
                    take = min(len(slots), len(queue) - next_q)
                    refill, idle = slots[:take], slots[take:]
                    slot_sess[refill] = queue[next_q : next_q + take]
                    next_q += take
                    slot_pos[slots] = 0
                    active[idle] = False
                    mask = torch.from_numpy(ended).to(dev)
                    state = model.reset(state, mask)
                    if seen is not None:
                        seen[mask] = False
        finally:
            if bar is not None:
                bar[0].stop()

        ranks = torch.cat(rank_chunks).cpu().double().numpy() if rank_chunks else np.zeros(0)
        positions = np.concatenate(pos_chunks) if pos_chunks else np.zeros(0, np.int64)
        order = np.argsort(positions, kind="stable")
        cov = self.covered.sum(1).cpu().numpy()
        return ranks[order], positions[order], cov, self.pop_sum.cpu().double().numpy()

    @property
    def negatives_drawn(self) -> np.ndarray:
        """(P,) the negatives each sampled prediction was ranked among (empty otherwise)."""
        if not self._drawn:
            return np.zeros(0, dtype=np.int64)
        return torch.cat(self._drawn).numpy()

    def _rank(
        self, scores: torch.Tensor, tgt: torch.Tensor, seen: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.sampled:
            return M.ranks(scores, tgt, self.ties, exclude=seen if self.exclude_seen else None)
        # Sampling without replacement in proportion to the weights, all rows at once:
        # the items with the smallest Exp(1)/w come first (the exponential race, equivalent
        # to Gumbel-top-k). The target and the session's items are never negatives.
        e = torch.empty(scores.shape, device=self.dev).exponential_(generator=self.gen)
        keys = e / self.weights  # w = 0 → inf: never drawn
        if seen is not None:
            keys = keys.masked_fill(seen, torch.inf)
        keys.scatter_(1, tgt.view(-1, 1), torch.inf)
        n_neg = min(self.negatives, scores.shape[1])
        k_val, neg = torch.topk(keys, n_neg, dim=1, largest=False)
        valid = torch.isfinite(k_val)
        self._drawn.append(valid.sum(1).cpu())
        target_scores = scores.gather(1, tgt.view(-1, 1)).view(-1)
        r = M.sampled_ranks(target_scores, scores.gather(1, neg), self.ties, valid)
        if self.exclude_seen and seen is not None:
            # a seen target is never served: a miss, as in full ranking
            r = r.masked_fill(seen.gather(1, tgt.view(-1, 1)).view(-1), torch.inf)
        return r

    def _lists(self, scores: torch.Tensor, seen: torch.Tensor | None, has_nan: bool) -> None:
        """Accumulate coverage and popularity of the top-k lists that would be served."""
        # NaN would come first in topk: a NaN item is never served.
        served = scores.masked_fill(torch.isnan(scores), -torch.inf) if has_nan else scores
        if seen is not None:
            served = served.masked_fill(seen, -torch.inf)
        top_v, top_i = torch.topk(served, self.kmax, dim=1)
        finite = torch.isfinite(top_v)
        for j, k in enumerate(self.cutoffs):
            kk = min(k, self.kmax)
            ti, fi = top_i[:, :kk], finite[:, :kk]
            self.covered[j, ti[fi]] = True
            per_row = (self.pop[ti] * fi).sum(1) / fi.sum(1).clamp(min=1)
            self.pop_sum[j] += per_row.sum()


#: scores per ``score_rows`` call of the evaluator (rows × items): 8 MB of float64
_CHUNK_SCORES = 1 << 20


def _base_score_rows() -> Any:
    from sessionrec.models.base import SessionModel

    return SessionModel.score_rows


def _rows_with_nan(scores: torch.Tensor) -> torch.Tensor:
    """(P,) bool: the rows holding a NaN score. A row's sum is NaN if it holds one (or both
    infinities): one cheap pass over every row, the exact test only on the rows it flags."""
    flagged = torch.isnan(scores.sum(1))
    if not bool(flagged.any()):
        return flagged
    out = torch.zeros_like(flagged)
    out[flagged] = torch.isnan(scores[flagged]).any(1)
    return out


def _progress(show: bool, total: int) -> tuple[Any, Any] | None:
    if not show:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(
        "evaluate",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("evaluate", total=total)
    bar.start()
    return bar, task


def seen_phrase(protocol: dict[str, Any]) -> str:
    """How seen items were treated, in words, for every table caption and summary line."""
    if not protocol.get("exclude_seen"):
        return "including seen items"
    n = int(protocol.get("seen_targets", 0))
    if not n:
        return "excluding seen items"
    return f"excluding seen items ({n:,} repeated targets count as misses)"
