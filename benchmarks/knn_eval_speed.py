"""Session-kNN evaluation speed on the ML-100K test part, before and after the fast path.

Acceptance protocol (session gap 1 h, min length 2, min support 5, 21/21-day time split); SKNN
and V-SKNN with default parameters, fit on train (``--fit-on train+valid`` for the demo's
setting), ``sessionrec.evaluate`` at every test position, full ranking, with and without
``exclude_seen``, one torch thread. Three variants are timed in the same run:

* ``before``: the scoring code as it was (neighbours by a full stable sort of the (b, S)
  similarities, V-SKNN's decay by expanding every neighbour's items), and every slot of the
  session-parallel batch scored at every step, idle ones included;
* ``rows only``: the same scoring code, but only the slots the evaluator predicts
  (``SessionModel.score_rows``);
* ``after``: the library as it is (top-k mask, (max, ×) sparse product, predicted slots only).

The ``before`` code is kept below verbatim (the methods ``_score_block`` and ``_decay_for``).
Asserts that the three give the same ranks, prediction for prediction, and reports the median
of ``--repeats`` runs (one for the slow variants unless ``--repeats-slow``); writes JSON.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src nice -n 10 python benchmarks/knn_eval_speed.py \\
        [--source ../shared/data/ml-100k | --data DIR] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sessionrec as sr
from sessionrec.models import create
from sessionrec.models._sparse import expand_rows
from sessionrec.models.base import SessionModel
from sessionrec.models.sknn import SKNN, KNNState, _spmm
from sessionrec.models.vsknn import VSKNN

RESULTS = Path(__file__).resolve().parent / "results" / "knn_eval_speed.json"


# -- the scoring code before the fast path (verbatim but for the names) -----------------------
def _before_score_block(self: Any, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    cfg = self.config
    n_b, width = items.shape
    pos = torch.arange(width, device=self.device).unsqueeze(0)
    present = pos < lengths.unsqueeze(1)
    safe = items.clamp_min(0)
    last_pos = torch.full((n_b, self.n_items), -1, dtype=torch.long, device=self.device)
    last_pos.scatter_reduce_(1, safe, torch.where(present, pos, -1).expand_as(safe), "amax")
    latest = present & (last_pos.gather(1, safe) == pos)
    dist = (lengths.unsqueeze(1) - 1 - pos).clamp_min(0)
    weights = self._position_weights(dist, lengths) * latest
    q = torch.zeros(n_b, self.n_items, device=self.device)
    q.scatter_add_(1, safe, weights)
    sims = _spmm(self._sessions_t, q)
    if cfg.similarity == "cosine":
        q_norm = weights.square().sum(1).sqrt().clamp_min(1e-12)
        sims = sims / self._session_norm.unsqueeze(0) / q_norm.unsqueeze(1)
    else:
        sims = sims / latest.sum(1).clamp_min(1).unsqueeze(1)
    n_sess = n_sess_all = sims.shape[1]
    cand: torch.Tensor | None = None
    if 0 < cfg.sample_size < n_sess:
        recency = torch.arange(n_sess, 0, -1, device=self.device).unsqueeze(0)
        cand = torch.topk(torch.where(sims > 0, recency, 0), cfg.sample_size, dim=1).indices
        sims = sims.gather(1, cand)
    vals, idx = torch.sort(sims, dim=1, descending=True, stable=True)
    vals, idx = vals[:, : cfg.k], idx[:, : cfg.k]
    if cand is not None:
        idx = cand.gather(1, idx)
    idx = torch.where(vals > 0, idx, -1)
    nb_weights = vals
    dist_all = torch.where(last_pos >= 0, lengths.unsqueeze(1) - 1 - last_pos, -1)
    decay = _before_decay_for(self, idx, dist_all)
    if decay is not None:
        nb_weights = nb_weights * decay
    nb = torch.zeros(n_b, n_sess_all, device=self.device)
    nb.scatter_add_(1, idx.clamp_min(0), torch.where(idx >= 0, nb_weights, 0))
    scores = _spmm(self._item_sessions_t, nb)
    if self.item_weights is not None:
        scores = scores * self.item_weights.unsqueeze(0)
    return scores  # SKNN._score adds the popularity tie-break


def _before_decay_for(self: Any, idx: torch.Tensor, dist_all: torch.Tensor) -> torch.Tensor | None:
    if not self._has_decay():
        return None
    valid = idx >= 0
    flat_nb = idx[valid]
    b_of = torch.arange(idx.shape[0], device=self.device).unsqueeze(1).expand_as(idx)[valid]
    entries, owner = expand_rows(self.sessions.indptr, flat_nb)
    d = dist_all[b_of[owner], self.sessions.indices[entries]]
    big = torch.iinfo(torch.long).max
    dmin = torch.full((flat_nb.numel(),), big, dtype=torch.long, device=self.device)
    dmin.scatter_reduce_(0, owner, torch.where(d >= 0, d, big), "amin")
    dmin = torch.where(dmin == big, 0, dmin)
    out = torch.zeros(idx.shape, device=self.device)
    out[valid] = self._neighbour_decay(dmin)
    return out


def _all_slots(self: Any, state: KNNState, rows: torch.Tensor) -> torch.Tensor:
    return self.score(state)[rows]  # the base protocol: every slot, idle ones included


def variant(model: SKNN, name: str) -> SessionModel:
    """``model`` (fitted) with the scoring of variant ``name``, sharing its index."""
    if name == "after":
        return model
    base = VSKNN if isinstance(model, VSKNN) else SKNN
    methods: dict[str, Any] = {"_score_block": _before_score_block}
    if name == "before":
        methods["score_rows"] = _all_slots
    cls = type(f"{base.__name__}_{name.replace(' ', '_')}", (base,), methods)
    out = cls(model.config, device=model.device)
    out.__dict__.update(model.__dict__)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="A PreparedData dir; by default ML-100K is prepared here.")
    ap.add_argument("--source", default="ml-100k", help="ML-100K: a name or folder.")
    ap.add_argument("--fit-on", default="train", choices=("train", "train+valid"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repeats-slow", type=int, default=1, help="Runs of the slow variants.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.data:
        data = sr.PreparedData(args.data)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="knn-speed-"))
        prepared = sr.prepare(
            args.source, tmp / "ml-100k", session="1h", split="time", test_days=21, valid_days=21
        )
        assert isinstance(prepared, sr.PreparedData)
        data = prepared
    test = data.part("test")
    print(f"{data}\nfit on {args.fit_on}; test predictions: {test.n_predictions:,}")
    rows: list[dict[str, Any]] = []
    for model_name in ("sknn", "vsknn"):
        fitted = create(model_name).fit(data.part(args.fit_on))
        assert isinstance(fitted, SKNN)
        for exclude in (True, False):
            ranks: dict[str, np.ndarray] = {}
            for var in ("after", "rows only", "before"):
                model = variant(fitted, var)
                times, res = [], None
                for _ in range(args.repeats if var == "after" else args.repeats_slow):
                    res = sr.evaluate(model, test, cutoffs=(10, 20), exclude_seen=exclude)
                    times.append(res.seconds)
                assert res is not None and res.predictions == test.n_predictions
                ranks[var] = res.ranks
                row = {
                    "model": model_name,
                    "exclude_seen": exclude,
                    "variant": var,
                    "fit_on": args.fit_on,
                    "threads": args.threads,
                    "seconds_median": statistics.median(times),
                    "runs": len(times),
                    "predictions": res.predictions,
                    "recall@20": res.metrics["recall@20"],
                    "mrr@20": res.metrics["mrr@20"],
                }
                rows.append(row)
                print(
                    f"{model_name:5s} exclude_seen={exclude!s:5s} {var:9s}: "
                    f"{row['seconds_median']:6.2f} s (median of {len(times)})  "
                    f"Recall@20 {row['recall@20']:.6f}  MRR@20 {row['mrr@20']:.6f}",
                    flush=True,
                )
            for var in ("rows only", "before"):
                if not np.array_equal(ranks[var], ranks["after"]):
                    raise AssertionError(f"{model_name}: {var} ranks differ from after")
            before = rows[-1]["seconds_median"]
            after = rows[-3]["seconds_median"]
            rows[-3]["speedup_vs_before"] = before / after
            print(f"{model_name:5s} exclude_seen={exclude!s:5s} after is {before / after:.1f}x "
                  "faster than before, identical ranks")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
