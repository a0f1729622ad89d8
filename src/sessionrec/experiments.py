"""Repeated runs of one configuration over seeds: how much of a figure is the seed's.

``sweep`` trains a model once per seed on the same PreparedData, evaluates each run on the same
part, and summarises every metric by its mean, standard deviation and a 95 % Student-t interval
of the mean over seeds. It writes one model directory per seed and, beside them, ``sweep.json``
and the report: ``sweep.md``, a self-contained ``sweep.html`` and ``sweep.png``. The session-bootstrap intervals of ``sessionrec.evaluation`` measure
the test set's sampling noise for one trained model; a sweep measures the training noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sessionrec._io import (
    atomic_path,
    check_output,
    claim_dir,
    mark_complete,
    read_json,
    write_json,
    written_by_sessionrec,
)
from sessionrec._report import Block, Heading, Image, Para, Table, blocks_html, blocks_markdown
from sessionrec.errors import ConfigError
from sessionrec.prepare.data import PreparedData

log = logging.getLogger(__name__)


#: how seen items were treated, said in every report
_SEEN = {
    False: "including seen items",
    True: "excluding seen items: a target that repeats one is a miss",
}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sd, low, high): the mean with a Student-t interval (sd with n−1; n=1 → no width)."""
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return mean, 0.0, mean, mean
    from scipy import stats

    sd = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(a) - 1)) * sd / math.sqrt(len(a))
    return mean, sd, mean - half, mean + half


def grid_configs(grid: dict[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the grid's order (``{}`` alone without one)."""
    import itertools

    if not grid:
        return [{}]
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"grid {key!r} needs a non-empty list of values, not {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def sweep(
    model_name: str,
    data: PreparedData | str | Path,
    out_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    params: dict[str, Any] | None = None,
    grid: dict[str, Sequence[Any]] | None = None,
    fit_on: str | None = None,
    split: str | None = None,
    cutoffs: Sequence[int] = (20,),
    exclude_seen: bool = False,
    device: str = "auto",
    resume: bool = False,
    select_on_test: bool = False,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model_name`` once per seed (and per combination of ``grid``), evaluate each run,
    summarise each configuration over its seeds.

    Args:
        grid: parameter → values to try (every combination, each over every seed), on top of
            ``params``; None: ``params`` alone.
        fit_on: the part each run is fit on. Default: one configuration over seeds fits on
            ``train+valid`` and scores ``test`` (nothing is chosen, the seeds' spread is
            measured); a grid of several configurations fits on ``train`` and scores
            ``valid``, because comparing configurations is choosing one.
        split: the part each run is scored on (default: as said for ``fit_on``).
        resume: keep the runs an interrupted sweep finished (each run's ``run.json`` records
            what it was asked; a run asked otherwise is trained again).
        overwrite: replace ``out_dir`` when it is a sweep sessionrec wrote; without it (and
            without ``resume``) ``out_dir`` must be new or empty.
        select_on_test: allow a grid to be scored on ``test``. Choosing among configurations
            by their test figures is tuning on test: it must be asked for, and every output
            says ``test-selected``.

    Returns:
        ``{"model", "params", "grid", "data", "fit_on", "split", "exclude_seen", "seeds",
        "configs": [{"params": {...}, "runs": [{"seed", "fit_seconds", "predictions",
        metrics...}], "summary": {metric: {"mean", "sd", "low", "high"}}}]}``, also written
        to ``out_dir/sweep.json`` (and the report: sweep.html, sweep.md, sweep.png), with
        ``selection`` (what a reader may conclude from the comparison: ``valid``,
        ``test-selected`` or ``none`` for one configuration) and ``best`` (the configuration
        with the highest mean of the first metric, None for one configuration). Runs are
        in ``out_dir/seed-N`` (no grid) or ``out_dir/config-I/seed-N``.
    """
    import time

    from sessionrec import registry
    from sessionrec.evaluation import evaluate
    from sessionrec.models.base import SessionModel
    from sessionrec.runner import train

    if registry.is_rating(model_name):
        raise ConfigError(f"{model_name} is a rating model: sweep ranks next-item models")
    if not seeds:
        raise ConfigError("a sweep needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds repeat: {list(seeds)}")
    if "seed" in (params or {}) or "seed" in (grid or {}):
        raise ConfigError("give seeds with --seeds, not as a parameter")
    overlap = set(params or {}) & set(grid or {})
    if overlap:
        raise ConfigError(f"{sorted(overlap)} given both as parameters and in the grid")
    configs = grid_configs(grid)
    fit_on, split, selection = _sweep_parts(len(configs), fit_on, split, select_on_test)
    if not isinstance(data, PreparedData):
        data = PreparedData(data)
    out = Path(out_dir)
    part = data.part(split)
    if part.n_predictions == 0:
        raise ConfigError(f"the {split} part of {data.path} has no predictions to score")
    data.part(fit_on)  # read (and checked) before the output is claimed
    if resume and written_by_sessionrec(out):
        check_output(out, overwrite=True, verb="sweep")  # nothing foreign inside
    else:
        claim_dir(out, overwrite=overwrite, verb="sweep")
    results: list[dict[str, Any]] = []
    for i, varied in enumerate(configs):
        where = out if grid is None else out / f"config-{i}"
        runs: list[dict[str, Any]] = []
        for seed in seeds:
            run_dir = where / f"seed-{seed}"
            run_params = {**(params or {}), **varied}
            asked: dict[str, Any] = {
                "model": model_name,
                "params": run_params,
                "seed": seed,
                "fit_on": fit_on,
                "split": split,
                "cutoffs": list(cutoffs),
                "exclude_seen": exclude_seen,
                "data": str(data.path),
            }
            done = read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else None
            if resume and done is not None and done.get("asked") == asked:
                run = done["run"]  # finished before, with the same settings: keep it
            else:
                t0 = time.perf_counter()
                model = train(
                    model_name,
                    data,
                    run_dir,
                    params=run_params,
                    fit_on=fit_on,
                    seed=seed,
                    device=device,
                    progress=False,
                    overwrite=True,  # a run folder inside the sweep's own folder
                )
                assert isinstance(model, SessionModel)
                fit_seconds = time.perf_counter() - t0
                res = evaluate(model, part, cutoffs=tuple(cutoffs), exclude_seen=exclude_seen)
                run = {
                    "config": i,
                    "seed": seed,
                    "fit_seconds": fit_seconds,
                    "predictions": res.predictions,
                    "seen_targets": res.protocol["seen_targets"],
                }
                run.update(
                    {k: v for k, v in res.metrics.items() if k.split("@")[0] in _RANKING_METRICS}
                )
                write_json(run_dir / "run.json", {"asked": asked, "run": run})
                mark_complete(run_dir, "train")  # run.json is the sweep's, not a stranger's
            runs.append(run)
            log.info("config %d %s, seed %d: %s", i, varied, seed, run)
            if on_run is not None:
                on_run({**run, "params": varied})
        summary = {}
        for name in (k for k in runs[0] if "@" in k):
            mean, sd, low, high = t_interval([r[name] for r in runs])
            summary[name] = {"mean": mean, "sd": sd, "low": low, "high": high}
        results.append({"params": varied, "runs": runs, "summary": summary})
    first = next((k for k in results[0]["summary"]), None)
    best = (
        max(range(len(results)), key=lambda i: results[i]["summary"][first]["mean"])
        if len(results) > 1 and first is not None
        else None
    )
    result = {
        "model": model_name,
        "params": dict(params or {}),
        "grid": {k: list(v) for k, v in (grid or {}).items()},
        "data": str(data.path),
        "fit_on": fit_on,
        "split": split,
        "selection": selection,
        "best": best,
        "exclude_seen": exclude_seen,
        "seeds": list(seeds),
        "configs": results,
        "interval": "95 % Student-t interval of the mean over seeds",
    }
    write_sweep_report(result, out)
    mark_complete(out, "sweep")
    return result


_RANKING_METRICS = ("recall", "mrr", "ndcg")


def _sweep_parts(
    n_configs: int, fit_on: str | None, split: str | None, select_on_test: bool
) -> tuple[str, str, str]:
    """(fit_on, split, selection) with the defaults of ``sweep`` and its refusals."""
    several = n_configs > 1
    fit_on = fit_on or ("train" if several else "train+valid")
    split = split or ("valid" if several else "test")
    if fit_on not in ("train", "train+valid"):
        raise ConfigError(f"fit_on must be train or train+valid, not {fit_on!r}")
    if split not in ("train", "valid", "test"):
        raise ConfigError(f"split must be valid or test, not {split!r}")
    if split in fit_on.split("+"):
        raise ConfigError(
            f"runs fit on {fit_on} cannot be scored on {split}: its sessions were trained on"
        )
    if not several:
        return fit_on, split, "none"
    if split == "test":
        if not select_on_test:
            raise ConfigError(
                f"a grid of {n_configs} configurations scored on test chooses one by its test "
                "figures (tuning on test); score valid (the default for a grid: fit on train, "
                "score valid) or pass --select-on-test, which labels every output test-selected"
            )
        return fit_on, split, "test-selected"
    return fit_on, split, split


def _label(varied: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in varied.items()) or "—"


def sweep_blocks(result: dict[str, Any]) -> list[Block]:
    """The sweep report: settings, the summary per configuration, every run, the figure."""
    configs = result["configs"]
    names = list(configs[0]["summary"])
    summary_rows = [
        [
            str(i),
            _label(c["params"]),
            *(
                f"{c['summary'][n]['mean']:.4f} ± {c['summary'][n]['sd']:.4f} "
                f"[{c['summary'][n]['low']:.4f}, {c['summary'][n]['high']:.4f}]"
                for n in names
            ),
        ]
        for i, c in enumerate(configs)
    ]
    run_rows = [
        [str(r["config"]), str(r["seed"]), *(f"{r[n]:.4f}" for n in names),
         f"{r['fit_seconds']:.1f}"]
        for c in configs
        for r in c["runs"]
    ]  # fmt: skip
    grid = f"; grid {result['grid']}" if result["grid"] else ""
    selection = result.get("selection", "none")
    chosen = {
        "none": "One configuration: nothing is chosen here; the spread is the seeds'.",
        "valid": "Configurations are compared on valid (fit on train): a choice made here is "
        "made on valid, and the chosen one's test figure is still unseen.",
        "test-selected": "TEST-SELECTED: configurations are compared on test; a configuration "
        "chosen here is tuned on test and its figures overstate what new data will show.",
    }.get(selection, f"selection: {selection}")
    best = result.get("best")
    if best is not None:
        chosen += f" Highest mean {names[0]}: config {best} ({_label(configs[best]['params'])})."
    return [
        Heading(f"{result['model']} over seeds {', '.join(map(str, result['seeds']))}", 1),
        Para(
            f"Data {result['data']}, fit on {result['fit_on']}, evaluated on {result['split']} "
            f"({_SEEN[bool(result['exclude_seen'])]}); "
            f"parameters {result['params']}{grid}. Each configuration: mean ± sd over seeds "
            "[95 % Student-t interval of the mean] — training noise; the test set's own "
            "sampling noise is `sessionrec evaluate --ci`."
        ),
        Para(chosen),
        Table(["config", "varied", *names], summary_rows, align_left=2),
        Image("sweep", "every run's metric (dots), each configuration's mean and 95 % interval"),
        Heading("Runs"),
        Table(["config", "seed", *names, "fit s"], run_rows, align_left=2),
    ]


def varied_names(configs: list[dict[str, Any]]) -> list[str]:
    """The grid's parameter names, in the order the configurations list them."""
    return list(dict.fromkeys(k for c in configs for k in c["params"]))


def tick_labels(configs: list[dict[str, Any]]) -> list[str]:
    """One x tick per configuration: its values of the varied parameters (``32`` for one
    parameter, ``32, 0.1`` for two, named on the axis), or the settings of a single run."""
    names = varied_names(configs)
    if not names:
        return ["one setting"] * len(configs)
    return [", ".join(str(c["params"].get(n, "—")) for n in names) for c in configs]


def sweep_figure(result: dict[str, Any]) -> bytes:
    """PNG: one panel per metric; per configuration a dot per seed, the mean and its interval."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = result["configs"]
    names = list(configs[0]["summary"])
    fig, axes = plt.subplots(
        1, len(names), figsize=(max(3.2, 1.2 * len(configs) + 2) * len(names), 3.2), squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        for x, c in enumerate(configs):
            s = c["summary"][name]
            values = [r[name] for r in c["runs"]]
            ax.plot([x] * len(values), values, "o", color="black", alpha=0.6, markersize=4)
            below, above = s["mean"] - s["low"], s["high"] - s["mean"]
            ax.errorbar(x + 0.15, s["mean"], yerr=[[below], [above]], fmt="s", capsize=4)
        ax.set_xticks(range(len(configs)), tick_labels(configs), fontsize=8)
        ax.set_xlabel(", ".join(varied_names(configs)))
        ax.set_title(name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_sweep_report(result: dict[str, Any], out_dir: Path) -> None:
    """``sweep.json``, ``sweep.png``, ``sweep.md`` and a self-contained ``sweep.html``."""
    write_json(out_dir / "sweep.json", result)
    figures = {"sweep": sweep_figure(result)}
    with atomic_path(out_dir / "sweep.png") as tmp:
        tmp.write_bytes(figures["sweep"])
    blocks = sweep_blocks(result)
    with atomic_path(out_dir / "sweep.md") as tmp:
        tmp.write_text(blocks_markdown(blocks, figures, images="files"), encoding="utf-8")
    with atomic_path(out_dir / "sweep.html") as tmp:
        tmp.write_text(
            blocks_html(blocks, figures, f"{result['model']} over seeds"), encoding="utf-8"
        )


__all__ = ["grid_configs", "sweep", "sweep_blocks", "t_interval", "write_sweep_report"]
