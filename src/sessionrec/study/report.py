"""The study's results: ``results.json``, ``report.md`` (with PNG figures) and a
self-contained ``report.html``, assembled from the cache once every cell is done.

Intervals are percentile intervals of a cluster bootstrap: on a definition's own targets the
unit is its test session; on the common targets it is the user (or the log's own session),
which holds the sessions of every definition, so that the draws are the same for every
definition and a difference between two definitions is paired on identical targets. Several
slices pool: their targets are concatenated, each slice's clusters its own.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sessionrec._io import atomic_path, read_json, write_json
from sessionrec._report import Block, Heading, Image, Para, Table, blocks_html, blocks_markdown
from sessionrec.evaluation import EvalResult
from sessionrec.evaluation.intervals import cluster_replicates, paired_values, per_prediction
from sessionrec.prepare.data import PreparedData
from sessionrec.study.compute import Context, load_cell_model, read_eval

RANKING = ("recall", "mrr", "ndcg")
TARGET_TEXT = {
    "own": "each definition's own test set: every predicted event of its test part (the sets "
    "differ between definitions, so figures compare within a definition only)",
    "common": "the common target set: the test events that every session definition "
    "predicts, identical for all; each definition sets only where the context starts and "
    "what the model was trained on",
    "sampled": "each definition's own test set, every target ranked against {n} negatives "
    "sampled by {by} (not against the whole catalogue): SAMPLED figures overstate accuracy and "
    "do not compare with full-ranking ones (Krichene & Rendle, 2020); recall@k here is the "
    "hit rate HR@k of the sampled protocol",
    "folds": "every rating held out once, over the same k folds for every model (k-fold "
    "cross-validation)",
}
PAIRED_TEXT = (
    "A − B on identical targets (first seed; slices pooled), with the paired cluster-bootstrap "
    "interval and the two-sided p-value of no difference. 'sessions' rows compare session "
    "definitions on the common targets; 'models' rows compare models within one definition "
    "and target set."
)


def _values(ranks: np.ndarray, metric: str) -> np.ndarray:
    res = EvalResult(len(ranks), {}, {}, 0.0, ranks=ranks)
    return per_prediction(res, metric)


class _Pool:
    """Per-prediction ranks and clusters of one (sessions, model, seed, target), pooled over
    slices in slice order."""

    def __init__(self) -> None:
        self.ranks: list[np.ndarray] = []
        self.clusters: list[np.ndarray] = []
        self.offset = 0

    def add(self, ranks: np.ndarray, clusters: np.ndarray, n_clusters: int) -> None:
        self.ranks.append(ranks)
        self.clusters.append(clusters + self.offset)
        self.offset += n_clusters

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.ranks), np.concatenate(self.clusters)


def collect(ctx: Context, n_boot: int, level: float = 0.95) -> dict[str, Any]:
    """Every row, summary, comparison and the example, from the finished cache."""
    plan, store = ctx.plan, ctx.store
    spec = plan.spec
    ev = spec.evaluation
    if ev.task == "rating":
        return _collect_rating(ctx, level)
    k = ev.cutoffs[-1]
    metric_names = [f"{m}@{c}" for c in ev.cutoffs for m in RANKING]
    compared = [f"recall@{k}", f"mrr@{k}"]
    commons = {
        sl: pl.read_parquet(store.path("common", key) / "targets.parquet")
        for sl, key in plan.common.items()
    }
    several_slices = len(plan.slices()) > 1
    rows: list[dict[str, Any]] = []
    pools: dict[tuple[str, str, int, str], _Pool] = {}
    prepared: dict[str, PreparedData] = {}
    for cell in plan.cells:
        info = read_json(store.path("models", cell.key) / "info.json")
        for target, key in cell.evals.items():
            rec = read_eval(store.path("evals", key))
            ranks = rec["ranks"]
            if target in ("own", "sampled"):
                clusters, n_clusters = rec["ident"], int(rec["sessions"])
            else:
                common = commons[cell.prep.slice]
                clusters = common["cluster"].to_numpy()[rec["ident"]]
                n_clusters = common.height and int(common["cluster"].to_numpy().max()) + 1
            pool = pools.setdefault((cell.sessions, cell.model, cell.seed, target), _Pool())
            pool.add(ranks, clusters, n_clusters)
            values = [_values(ranks, m) for m in metric_names]
            reps = cluster_replicates(
                values, clusters, n_clusters=n_clusters, n_boot=n_boot, seed=0
            )
            tail = (1 - level) / 2 * 100
            metrics: dict[str, Any] = {}
            for m, v, r in zip(metric_names, values, reps, strict=True):
                metrics[m] = {
                    "value": float(v.mean()) if len(v) else 0.0,
                    "low": float(np.percentile(r, tail)),
                    "high": float(np.percentile(r, 100 - tail)),
                }
            for c in ev.cutoffs:
                for extra in ("coverage", "popularity"):
                    metrics[f"{extra}@{c}"] = {"value": rec["metrics"][f"{extra}@{c}"]}
            if cell.prep.key not in prepared:
                prepared[cell.prep.key] = PreparedData(
                    store.path("prepared", cell.prep.key) / "data"
                )
            rows.append(
                {
                    "sessions": cell.sessions,
                    "slice": cell.prep.slice if several_slices else None,
                    "window": list(cell.prep.window) if cell.prep.window else None,
                    "model": cell.model,
                    "name": cell.name,
                    "params": info["params"],
                    "seed": cell.seed,
                    "target": target,
                    "predictions": int(rec["predictions"]),
                    "metrics": metrics,
                    "chosen_by": info["chosen_by"],
                    "fit_on": info["fit_on"],
                    "fit_seconds": round(float(info["fit_seconds"]), 3),
                    "evaluate_seconds": round(float(rec["evaluate_seconds"]), 3),
                    "exclude_seen": ev.exclude_seen,
                    "cell": cell.key,
                }
            )
    result: dict[str, Any] = {
        "format": "sessionrec.experiment/1",
        "name": spec.name,
        "spec": spec.to_dict(),
        "code": plan.code,
        "input_sha256": plan.fingerprint,
        "targets": {
            t: TARGET_TEXT[t].format(n=ev.sampled_negatives, by=ev.sampled_by)
            for t in ("own", "common", "sampled")
            if any(r["target"] == t for r in rows)
        },
        "interval": f"{level:.0%} percentile interval, cluster bootstrap ({n_boot} replicates): "
        "own targets resample test sessions, common targets resample users (or the log's "
        "sessions)",
        "paired": PAIRED_TEXT,
        "shown": [f"recall@{k}", f"mrr@{k}", f"ndcg@{k}"],
        "rows": rows,
        "summary": _summary(rows, metric_names) if several_slices or len(ev.seeds) > 1 else [],
        "comparisons": _comparisons(ctx, pools, compared, n_boot, level),
        "preparations": _preparations(ctx, prepared, commons),
        "example": _example(ctx),
    }
    return result


def _collect_rating(ctx: Context, level: float) -> dict[str, Any]:
    """A rating study: per cell the folds' mean RMSE, MAE and FCP with a Student-t interval
    over folds; models paired fold by fold against the first (same folds: same seed)."""
    from scipy import stats

    from sessionrec.experiments import t_interval

    plan, store = ctx.plan, ctx.store
    spec = plan.spec
    names = ("rmse", "mae", "fcp")
    rows: list[dict[str, Any]] = []
    per_fold: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    for cell in plan.cells:
        rec = read_json(store.path("evals", cell.evals["folds"]) / "crossval.json")
        folds = rec["folds"]
        metrics: dict[str, Any] = {}
        for n in names:
            mean, sd, low, high = t_interval([f[n] for f in folds], level)
            metrics[n] = {"value": mean, "low": low, "high": high, "sd": sd}
        per_fold[(cell.model, cell.seed)] = {n: np.array([f[n] for f in folds]) for n in names}
        fit = float(sum(f["fit_seconds"] for f in folds))
        rows.append(
            {
                "sessions": cell.sessions, "slice": None, "window": None, "model": cell.model,
                "name": cell.name, "params": cell.params, "seed": cell.seed, "target": "folds",
                "predictions": int(sum(f["n_test"] for f in folds)), "metrics": metrics,
                "chosen_by": "fixed" if not _in_grid(spec, cell.model) else "grid point (fixed)",
                "fit_on": f"{len(folds)}-fold cross-validation",
                "fit_seconds": round(fit, 3),
                "evaluate_seconds": round(float(rec["seconds"]) - fit, 3),
                "exclude_seen": None, "cell": cell.key,
            }
        )  # fmt: skip
    seed = spec.evaluation.seeds[0]
    models = list(dict.fromkeys(c.model for c in plan.cells))
    comparisons = []
    for model in models[1:]:
        a, b = per_fold[(model, seed)], per_fold[(models[0], seed)]
        for n in ("rmse", "mae"):
            d = a[n] - b[n]
            mean, _, low, high = t_interval(list(d), level)
            p = float(stats.ttest_rel(a[n], b[n]).pvalue) if np.any(d != d[0]) else 1.0
            comparisons.append(
                {"compare": "models", "target": "folds", "a": {"sessions": "ratings",
                 "model": model}, "b": {"sessions": "ratings", "model": models[0]},
                 "predictions": rows[0]["predictions"], "metric": n, "difference": mean,
                 "low": low, "high": high, "p_value": p, "p_value_is_bound": False,
                 "level": level}
            )  # fmt: skip
    return {
        "format": "sessionrec.experiment/1",
        "name": spec.name,
        "spec": spec.to_dict(),
        "code": plan.code,
        "input_sha256": plan.fingerprint,
        "targets": {"folds": TARGET_TEXT["folds"]},
        "interval": f"{level:.0%} Student-t interval of the mean over folds",
        "paired": "A − B fold by fold on the same folds (first seed): mean difference, its "
        f"{level:.0%} Student-t interval and the paired t-test's two-sided p-value.",
        "shown": list(names),
        "rows": rows,
        "summary": _summary(rows, list(names)) if len(spec.evaluation.seeds) > 1 else [],
        "comparisons": comparisons,
        "preparations": [],
        "example": {},
    }


def _in_grid(spec: Any, label: str) -> bool:
    return any(m.grid and label.startswith(m.label + " ") for m in spec.models)


def _summary(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Mean ± sd over slices and seeds per (sessions, model, target)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["sessions"], r["model"], r["target"]), []).append(r)
    out = []
    for (sessions, model, target), rs in groups.items():
        stats = {}
        for n in names:
            v = np.array([r["metrics"][n]["value"] for r in rs])
            stats[n] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        out.append(
            {"sessions": sessions, "model": model, "target": target, "runs": len(rs),
             "metrics": stats}
        )  # fmt: skip
    return out


def _comparisons(
    ctx: Context,
    pools: dict[tuple[str, str, int, str], _Pool],
    compared: list[str],
    n_boot: int,
    level: float,
) -> list[dict[str, Any]]:
    """Paired differences on identical targets: on the common set, every definition against
    the first (per model); on each target set and definition, every model against the
    first. Seed: the first; slices pooled."""
    spec = ctx.plan.spec
    seed = spec.evaluation.seeds[0]
    defs = [d.label for d in spec.sessions]
    models = list(dict.fromkeys(c.model for c in ctx.plan.cells))
    out: list[dict[str, Any]] = []

    def add(a: tuple[str, str, int, str], b: tuple[str, str, int, str], what: str) -> None:
        if a not in pools or b not in pools:
            return
        ra, ca = pools[a].arrays()
        rb, cb = pools[b].arrays()
        if not np.array_equal(ca, cb) or len(ra) != len(rb):
            raise AssertionError(f"{a} and {b} are not on the same targets")
        for m in compared:
            d = paired_values(_values(ra, m), _values(rb, m), ca, m, n_boot=n_boot, level=level)
            out.append(
                {
                    "compare": what,
                    "target": a[3],
                    "a": {"sessions": a[0], "model": a[1]},
                    "b": {"sessions": b[0], "model": b[1]},
                    "predictions": len(ra),
                    **d,
                }
            )

    if "common" in {k[3] for k in pools}:
        for model in models:
            for d in defs[1:]:
                add((d, model, seed, "common"), (defs[0], model, seed, "common"), "sessions")
    for target in ("own", "common", "sampled"):
        for d in defs:
            for model in models[1:]:
                add((d, model, seed, target), (d, models[0], seed, target), "models")
    return out


def _preparations(
    ctx: Context, prepared: dict[str, PreparedData], commons: dict[int, pl.DataFrame]
) -> list[dict[str, Any]]:
    out = []
    for p in ctx.plan.preparations:
        data = prepared.get(p.key) or PreparedData(ctx.store.path("prepared", p.key) / "data")
        counts = data.meta.get("counts", {})
        out.append(
            {
                "sessions": p.label,
                "slice": p.slice,
                "window": list(p.window) if p.window else None,
                "session": p.config["session"],
                "counts": counts,
                "n_items": data.n_items,
                "test_predictions": data.part("test").n_predictions,
                "common_targets": commons[p.slice].height if p.slice in commons else None,
                "prepared": p.key,
            }
        )
    return out


def _example(ctx: Context) -> dict[str, Any]:
    """Each model's top-k for the example session, per definition (last slice, first seed)."""
    from sessionrec.errors import SessionrecError
    from sessionrec.recommend import recommend

    spec = ctx.plan.spec
    if not spec.example.items:
        return {}
    last = max(ctx.plan.slices())
    seed = spec.evaluation.seeds[0]
    out: dict[str, Any] = {"items": list(spec.example.items), "k": spec.example.k, "lists": []}
    for cell in ctx.plan.cells:
        if cell.prep.slice != last or cell.seed != seed:
            continue
        model = load_cell_model(ctx, cell)
        entry: dict[str, Any] = {"sessions": cell.sessions, "model": cell.model}
        try:
            top = recommend(
                model, list(spec.example.items), spec.example.k,
                exclude_seen=spec.evaluation.exclude_seen,
            )  # fmt: skip
            col = "title" if "title" in top.columns else "item_id"
            entry["top"] = [str(x) for x in top[col].to_list()]
        except SessionrecError as exc:
            entry["error"] = str(exc)
        out["lists"].append(entry)
    return out


# -- rendering ------------------------------------------------------------------------------------


def _iv(m: dict[str, Any]) -> str:
    if "low" not in m:
        return f"{m['value']:.4f}"
    return f"{m['value']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def _p(c: dict[str, Any]) -> str:
    return ("< " if c["p_value_is_bound"] else "") + f"{c['p_value']:.3g}"


def blocks(result: dict[str, Any]) -> list[Block]:
    spec = result["spec"]
    ev = spec["evaluation"]
    shown = result["shown"]
    split = spec["split"]
    split_text = f"{split['method']} split"
    if split["method"] == "time":
        split_text += f" (test: last {split['test_days']:g} days, valid: {split['valid_days']:g})"
    if split["slices"] > 1:
        split_text += (
            f", in {split['slices']} sliding windows of {split['window_days']:g} days, "
            "each split on its own"
        )
    defs = ", ".join(d["label"] + " (" + d["session"] + ")" for d in spec["sessions"])
    how = (
        f"session definitions {defs}; {split_text}; ranking "
        f"{'without' if ev['exclude_seen'] else 'with'} the session's own items (exclude_seen "
        f"= {str(ev['exclude_seen']).lower()}), full ranking, ties {ev['ties']}"
    )
    if ev["task"] == "rating":
        how = f"{ev['folds']}-fold cross-validation of the ratings (RMSE, MAE, FCP)"
    out: list[Block] = [
        Heading(f"Study: {result['name']}", 1),
        Para(
            f"Data `{spec['data']['source']}` (sha256 {result['input_sha256'][:12]}…); {how}. "
            f"{result['interval']}. Code {result['code']}."
        ),
    ]
    several = any(r["slice"] is not None for r in result["rows"])
    for target, text in result["targets"].items():
        out.append(Heading(f"Figures on {target} targets"))
        out.append(Para(f"Target set: {text}."))
        rows = [r for r in result["rows"] if r["target"] == target]
        headers = [
            "sessions",
            "model",
            *(["slice"] if several else []),
            "seed",
            "predictions",
            *shown,
            "chosen by",
            "fit s",
            "eval s",
        ]
        out.append(
            Table(
                headers,
                [
                    [
                        r["sessions"],
                        r["model"],
                        *([str(r["slice"])] if several else []),
                        str(r["seed"]),
                        f"{r['predictions']:,}",
                        *(_iv(r["metrics"][m]) for m in shown),
                        r["chosen_by"],
                        f"{r['fit_seconds']:.1f}",
                        f"{r['evaluate_seconds']:.1f}",
                    ]
                    for r in rows
                ],
                align_left=2,
            )
        )
        out.append(Image(f"{target}-by-sessions", f"{shown[0]} and {shown[1]} by session "
                         f"definition per model, {target} targets (95 % intervals)"))  # fmt: skip
        summary = [s for s in result["summary"] if s["target"] == target]
        if summary:
            out.append(Para(f"Mean ± sd over slices and seeds ({target} targets):"))
            out.append(
                Table(
                    ["sessions", "model", "runs", *shown],
                    [
                        [
                            s["sessions"],
                            s["model"],
                            str(s["runs"]),
                            *(
                                f"{s['metrics'][m]['mean']:.4f} ± {s['metrics'][m]['sd']:.4f}"
                                for m in shown
                            ),
                        ]
                        for s in summary
                    ],
                    align_left=2,
                )
            )
            if several:
                out.append(Image(f"{target}-by-slice", f"{shown[0]} per slice, {target} targets"))
    if result["comparisons"]:
        out.append(Heading("Paired differences"))
        out.append(Para(result["paired"]))
        out.append(
            Table(
                [
                    "compare",
                    "target set",
                    "A",
                    "B",
                    "metric",
                    "A − B",
                    "interval",
                    "p",
                    "predictions",
                ],
                [
                    [
                        c["compare"],
                        c["target"],
                        f"{c['a']['sessions']} · {c['a']['model']}",
                        f"{c['b']['sessions']} · {c['b']['model']}",
                        c["metric"],
                        f"{c['difference']:+.4f}",
                        f"[{c['low']:+.4f}, {c['high']:+.4f}]",
                        _p(c),
                        f"{c['predictions']:,}",
                    ]
                    for c in result["comparisons"]
                ],
                align_left=5,
            )
        )
    example = result.get("example") or {}
    if example.get("lists"):
        out.append(Heading(f"Top {example['k']} for the example session"))
        out.append(Para("Session: " + " → ".join(map(str, example["items"]))))
        for d in dict.fromkeys(e["sessions"] for e in example["lists"]):
            lists = [e for e in example["lists"] if e["sessions"] == d]
            out.append(Para(f"Sessions by {d}:"))
            ok = [e for e in lists if "top" in e]
            rows = [
                [str(i + 1), *(e["top"][i] if i < len(e["top"]) else "" for e in ok)]
                for i in range(example["k"])
            ]
            out.append(Table(["rank", *(e["model"] for e in ok)], rows, align_left=1 + len(ok)))
            for e in lists:
                if "error" in e:
                    out.append(Para(f"{e['model']}: {e['error']}"))
    if not result["preparations"]:
        return out
    out.append(Heading("Data"))
    out.append(
        Table(
            [
                "sessions",
                "slice",
                "train events",
                "test sessions",
                "test predictions",
                "common targets",
                "items",
            ],
            [
                [
                    p["sessions"],
                    str(p["slice"]),
                    f"{p['counts']['train']['events']:,}",
                    f"{p['counts']['test']['sessions']:,}",
                    f"{p['test_predictions']:,}",
                    "—" if p["common_targets"] is None else f"{p['common_targets']:,}",
                    f"{p['n_items']:,}",
                ]
                for p in result["preparations"]
            ],
            align_left=1,
        )
    )
    return out


def figures(result: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = result["spec"]["evaluation"]
    shown = result["shown"][:2]
    seed = ev["seeds"][0]
    out: dict[str, bytes] = {}
    for target in result["targets"]:
        rows = [r for r in result["rows"] if r["target"] == target and r["seed"] == seed]
        last = max((r["slice"] or 0) for r in rows)
        rows_last = [r for r in rows if (r["slice"] or 0) == last]
        defs = list(dict.fromkeys(r["sessions"] for r in rows_last))
        models = list(dict.fromkeys(r["model"] for r in rows_last))
        fig, axes = plt.subplots(1, 2, figsize=(max(5.0, 1.0 + 1.3 * len(defs)) * 2, 3.6))
        width = 0.8 / max(1, len(models))
        for ax, m in zip(axes, shown, strict=True):
            for j, model in enumerate(models):
                xs, ys, lo, hi = [], [], [], []
                for i, d in enumerate(defs):
                    r = next((r for r in rows_last if r["sessions"] == d and r["model"] == model),
                             None)  # fmt: skip
                    if r is None:
                        continue
                    v = r["metrics"][m]
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(v["value"])
                    lo.append(v["value"] - v["low"])
                    hi.append(v["high"] - v["value"])
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=model)
            ax.set_xticks(range(len(defs)), defs)
            ax.set_xlabel("session definition")
            ax.set_title(f"{m}, {target} targets" + (f" (slice {last})" if last else ""))
        axes[0].legend(fontsize=7)
        out[f"{target}-by-sessions"] = _png(fig, plt)
        if any(r["slice"] is not None for r in rows):
            fig, ax = plt.subplots(figsize=(7, 3.6))
            for d in defs:
                for model in models:
                    pts = sorted((r["slice"], r["metrics"][shown[0]]["value"]) for r in rows
                                 if r["sessions"] == d and r["model"] == model)  # fmt: skip
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-",
                            label=f"{d} · {model}")  # fmt: skip
            ax.set_xlabel("slice")
            ax.set_title(f"{shown[0]} per slice, {target} targets")
            ax.legend(fontsize=7)
            out[f"{target}-by-slice"] = _png(fig, plt)
    return out


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_report(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``report.md`` with its PNG figures, a self-contained ``report.html``."""
    write_json(out / "results.json", result)
    figs = figures(result)
    for name, data in figs.items():
        with atomic_path(out / f"{name}.png") as tmp:
            tmp.write_bytes(data)
    bl = blocks(result)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(blocks_markdown(bl, figs, images="files"), encoding="utf-8")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(blocks_html(bl, figs, f"Study: {result['name']}"), encoding="utf-8")


def stable(
    result: dict[str, Any], drop: Sequence[str] = ("fit_seconds", "evaluate_seconds")
) -> Any:
    """``result`` without its timings (what two runs of one spec agree on exactly)."""
    if isinstance(result, dict):
        return {k: stable(v, drop) for k, v in result.items() if k not in drop}
    if isinstance(result, list):
        return [stable(v, drop) for v in result]
    return result


__all__ = ["collect", "stable", "write_report"]
