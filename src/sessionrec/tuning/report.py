"""The tuning report: ``tune.json``, ``tune.md`` and a self-contained ``tune.html``.

Trials over time (each trial's valid figure and the best so far), Optuna's parameter
importances, the best trial's learning curve, and the test figures with their bootstrap
intervals (after the refit), from the same blocks as the sweep report.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from sessionrec._io import atomic_path, write_json
from sessionrec._report import Block, Heading, Image, Para, Table, blocks_html, blocks_markdown
from sessionrec.evaluation.evaluator import seen_phrase

log = logging.getLogger(__name__)


def importances(st: Any, optuna: Any) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator); empty with fewer than three
    finished trials, or when the study cannot tell yet."""
    import warnings

    done = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 3:
        return {}
    try:
        with warnings.catch_warnings():  # "too few trials" notes: the table says how many
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(st)
        return {k: float(v) for k, v in found.items()}
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        log.info("no parameter importances: %s", exc)
        return {}


def tune_blocks(result: dict[str, Any], summary: dict[str, Any]) -> list[Block]:
    metric = summary["metric"]
    states = ", ".join(f"{n} {s}" for s, n in sorted(summary["states"].items()))
    wall = summary.get("wall_seconds")
    blocks: list[Block] = [
        Heading(f"Tuning {summary['name']}", 1),
        Para(
            f"Study {summary['name']!r} in {summary['storage']}: {states} "
            f"({summary['workers']} worker(s)"
            + (f", {wall:.0f} s from the first start to the last finish" if wall else "")
            + f"). Every trial fits on train and is scored on valid ({metric}, maximised); "
            "test is not read during the search. Space: "
            + ", ".join(summary["space_sources"])
            + "."
        ),
    ]
    if "test" in result:
        test = result["test"]
        iv = test["intervals"]
        blocks += [
            Heading("Best configuration"),
            Para(
                f"Trial {result['trial']}: valid {metric} {result['valid'][metric]:.4f}"
                + (
                    f" (best epoch {result['valid']['best_epoch']})"
                    if result["valid"].get("best_epoch") is not None
                    else ""
                )
                + ". Refit on train+valid with "
                + ", ".join(f"{k}={v}" for k, v in result["refit"]["params"].items())
                + ", then test scored once."
            ),
            Heading("Test (refit on train+valid; chosen on valid only)"),
            Para(
                f"{test['predictions']:,} predictions, ties {test['protocol'].get('ties')}, "
                f"{seen_phrase(test['protocol'])}; {test['interval']}."
            ),
            Table(
                ["metric", "test", "95 % interval"],
                [
                    [n, f"{v['value']:.4f}", f"[{v['low']:.4f}, {v['high']:.4f}]"]
                    for n, v in iv.items()
                ],
            ),
        ]
    blocks += [
        Heading("Trials over time"),
        Image("tune-trials", f"valid {metric} of each trial and the best so far"),
        Heading("Parameter importances"),
    ]
    imp = summary.get("importances") or {}
    if imp:
        blocks += [
            Table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()]),
            Image("tune-importance", "Optuna's parameter importances"),
        ]
    else:
        blocks.append(Para("Not enough finished trials (three or more) with varied parameters."))
    blocks += [
        Heading("Best trial's learning curve"),
        Image("tune-curve", "train loss and valid metrics per epoch of the best trial"),
        Heading("Trials"),
    ]
    searched = list(summary["space"])
    rows = [
        [
            str(t["number"]),
            t["state"],
            ", ".join(f"{k}={v}" for k, v in t["params"].items() if k in searched),
            "" if t["value"] is None else f"{t['value']:.4f}",
            str(t["epochs"]),
            "" if t["fit_seconds"] is None else f"{t['fit_seconds']:.1f}",
        ]
        for t in summary["trials"]
    ]
    blocks.append(
        Table(["trial", "state", "parameters", f"valid {metric}", "epochs", "fit s"], rows, 3)
    )
    return blocks


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def trials_figure(summary: dict[str, Any]) -> bytes:
    """Each trial's valid figure by trial number (pruned ones hollow), the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    best = None
    xs, ys = [], []
    for t in summary["trials"]:
        if t["value"] is None:
            continue
        if t["state"] == "complete":
            best = t["value"] if best is None else max(best, t["value"])
            ax.plot(t["number"], t["value"], "o", color="tab:blue", markersize=4)
            xs.append(t["number"])
            ys.append(best)
    for t in summary["trials"]:  # pruned: at the last per-epoch figure they reported
        if t["state"] == "pruned" and t.get("last_value") is not None:
            ax.plot(t["number"], t["last_value"], "x", color="tab:gray", markersize=5)
    ax.step(xs, ys, where="post", color="tab:orange", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (x: pruned, at its last epoch)")
    ax.set_ylabel(f"valid {summary['metric']}")
    ax.legend(loc="lower right")
    return _png(fig)


def importance_figure(imp: dict[str, float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(names, [imp[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (Optuna's default evaluator, normalised)")
    return _png(fig)


def write_tune_report(
    result: dict[str, Any], summary: dict[str, Any], out: Path, st: Any, optuna: Any
) -> None:
    """tune.json (study + result), tune.md (+ PNGs beside it) and a self-contained tune.html."""
    from sessionrec.training.curve import learning_curve

    summary = {**summary, "importances": importances(st, optuna)}
    figures = {"tune-trials": trials_figure(summary)}
    if summary["importances"]:
        figures["tune-importance"] = importance_figure(summary["importances"])
    best = summary["best_trial"]
    history: list[dict[str, Any]] = next(
        (
            t.user_attrs.get("history", [])
            for t in st.get_trials(deepcopy=False)
            if t.number == best
        ),
        [],
    )
    if history:  # the best trial may have run on another machine: its history is in storage
        learning_curve(out / "tune-curve.png", history, f"{summary['name']}: trial {best}")
        figures["tune-curve"] = (out / "tune-curve.png").read_bytes()
    for name, png in figures.items():
        with atomic_path(out / f"{name}.png") as tmp:
            tmp.write_bytes(png)
    write_json(out / "tune.json", {"result": result, "study": summary})
    blocks = tune_blocks(result, summary)
    with atomic_path(out / "tune.md") as tmp:
        tmp.write_text(blocks_markdown(blocks, figures, images="files"), encoding="utf-8")
    with atomic_path(out / "tune.html") as tmp:
        tmp.write_text(blocks_html(blocks, figures, f"Tuning {summary['name']}"), encoding="utf-8")


__all__ = ["importances", "tune_blocks", "write_tune_report"]
