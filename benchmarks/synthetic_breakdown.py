"""Where a model falls short of the Bayes-optimal ceiling: figures by place in the session.

For a synthetic log prepared by ``benchmarks/gru4rec_diagnose.py`` (``WORK/PRESET/log`` and
``WORK/PRESET/data``) and trained model folders: every prediction of the part is split by the
position of its target in the session (the 2nd event, predicted from the first, the 3rd, the
4th, the 5th and later) and by how many intents own the item before it. Each group gets the
oracle's and each model's Recall@20 / MRR@20 (every position, full ranking, conservative ties,
seen items kept), and the model's share of the oracle's MRR@20. With ``--nll``, also the mean
cross-entropy of the oracle and of each model on the part (a model's scores read as logits).

    PYTHONPATH=src python benchmarks/synthetic_breakdown.py --work /tmp/dg4 --preset ecommerce \\
        --part valid /tmp/dg4/ecommerce/diag/defaults [--nll]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sessionrec import synthetic as syn
from sessionrec.evaluation import evaluate
from sessionrec.prepare.data import PreparedData
from sessionrec.registry import load_model


def cross_entropy(model: Any, part: Any, probabilities: bool, limit: int) -> float:
    """Mean -log P(next) over the first ``limit`` sessions of ``part``."""
    out: list[float] = []
    with torch.no_grad():
        for s in range(min(part.n_sessions, limit)):
            items = part.items[part.offsets[s] : part.offsets[s + 1]]
            state = model.start(1)
            for t in range(len(items) - 1):
                state = model.step(state, torch.as_tensor(items[t : t + 1]))
                sc = model.score(state)[0].double()
                lp = torch.log(sc / sc.sum()) if probabilities else torch.log_softmax(sc, 0)
                out.append(-float(lp[items[t + 1]]))
    return float(np.mean(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--preset", required=True, choices=list(syn.PRESETS))
    ap.add_argument("--part", default="valid", choices=["train", "valid", "test"])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument(
        "--nll",
        action="store_true",
        help="also the mean cross-entropy (for models whose scores are logits or log-probabilities: gru4rec, sasrec, repeatnet)",
    )
    ap.add_argument("--nll-sessions", type=int, default=3000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    log = syn.SyntheticLog.load(args.work / args.preset / "log")
    data = PreparedData(args.work / args.preset / "data")
    part = data.part(args.part)
    oracle = syn.ceiling(log, data, split=args.part, cutoffs=(20,))
    starts = part.offsets[np.searchsorted(part.offsets, oracle.positions, side="right") - 1]
    place = oracle.positions - starts  # 1: the session's 2nd event
    gen = data.items.sort("item_idx")["item_id"].to_numpy() - 1
    owners = (log.process.position() >= 0).sum(0)[gen[part.items[oracle.positions - 1]]]
    results = {"oracle": oracle}
    for path in args.models:
        res = evaluate(load_model(path), part, cutoffs=(20,))
        if not np.array_equal(res.positions, oracle.positions):
            raise SystemExit(f"{path}: its predictions are not the oracle's (another data?)")
        results[str(path)] = res
    groups = {
        "every prediction": np.ones(len(place), bool),
        "2nd event": place == 1,
        "3rd": place == 2,
        "4th": place == 3,
        "5th and later": place >= 4,
        "previous item in 1 intent": owners <= 1,
        "in 2-3 intents": (owners >= 2) & (owners <= 3),
        "in 4 or more": owners >= 4,
    }
    names = list(results)
    print("| predicting | n | " + " | ".join(names) + " | MRR@20 share |")
    print("| --- | ---: |" + " ---: |" * (len(names) + 1))
    for name, mask in groups.items():
        cells, mrr = [], []
        for res in results.values():
            r = res.ranks[mask]
            hit, rr = (r <= 20).mean(), np.where(r <= 20, 1.0 / r, 0.0).mean()
            cells.append(f"{hit:.3f} / {rr:.3f}")
            mrr.append(rr)
        shares = ", ".join(f"{m / mrr[0]:.0%}" for m in mrr[1:])
        print(f"| {name} | {int(mask.sum()):,} | " + " | ".join(cells) + f" | {shares} |")
    if args.nll:
        print(f"cross-entropy on {args.part} (first {args.nll_sessions} sessions):")
        orc = syn.OracleModel.for_data(log.process, data.items)
        print(f"  oracle {cross_entropy(orc, part, True, args.nll_sessions):.3f}")
        for path in args.models:
            ce = cross_entropy(load_model(path), part, False, args.nll_sessions)
            print(f"  {path} {ce:.3f}")


if __name__ == "__main__":
    main()
