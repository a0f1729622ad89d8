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

from sessionrec._io import atomic_path, write_json
from sessionrec._report import Block, Heading, Image, Para, Table, blocks_html, blocks_markdown
from sessionrec.errors import ConfigError
from sessionrec.prepare.data import PreparedData

log = logging.getLogger(__name__)


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


def sweep(
    model_name: str,
    data: PreparedData | str | Path,
    out_dir: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    params: dict[str, Any] | None = None,
    fit_on: str = "train+valid",
    split: str = "test",
    cutoffs: Sequence[int] = (20,),
    exclude_seen: bool = False,
    device: str = "auto",
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` once per seed, evaluate each, summarise over seeds.

    Returns:
        ``{"model", "params", "fit_on", "split", "exclude_seen", "runs": [{"seed", "fit_seconds",
        "predictions", metrics...}], "summary": {metric: {"mean", "sd", "low", "high"}}}``,
        also written to ``out_dir/sweep.json`` (and the report: sweep.md, sweep.html, sweep.png).
    """
    import time

    from sessionrec.evaluation import evaluate
    from sessionrec.models.base import SessionModel
    from sessionrec.rating import RATING_MODELS
    from sessionrec.training import train

    if model_name in RATING_MODELS:
        raise ConfigError(f"{model_name} is a rating model: sweep ranks next-item models")
    if not seeds:
        raise ConfigError("a sweep needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds repeat: {list(seeds)}")
    if params and "seed" in params:
        raise ConfigError("give seeds with --seeds, not as a parameter")
    if not isinstance(data, PreparedData):
        data = PreparedData(data)
    out = Path(out_dir)
    part = data.part(split)
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        t0 = time.perf_counter()
        model = train(model_name, data, out / f"seed-{seed}", params=params, fit_on=fit_on,
                      seed=seed, device=device, progress=False)  # fmt: skip
        assert isinstance(model, SessionModel)
        fit_seconds = time.perf_counter() - t0
        res = evaluate(model, part, cutoffs=tuple(cutoffs), exclude_seen=exclude_seen)
        run = {"seed": seed, "fit_seconds": fit_seconds, "predictions": res.predictions}
        run.update({k: v for k, v in res.metrics.items() if k.split("@")[0] in ("recall", "mrr",
                                                                               "ndcg")})  # fmt: skip
        runs.append(run)
        log.info("seed %d: %s", seed, run)
        if on_run is not None:
            on_run(run)
    metric_names = [k for k in runs[0] if "@" in k]
    summary = {}
    for name in metric_names:
        mean, sd, low, high = t_interval([r[name] for r in runs])
        summary[name] = {"mean": mean, "sd": sd, "low": low, "high": high}
    result = {
        "model": model_name,
        "params": dict(params or {}),
        "data": str(data.path),
        "fit_on": fit_on,
        "split": split,
        "exclude_seen": exclude_seen,
        "seeds": list(seeds),
        "runs": runs,
        "summary": summary,
        "interval": "95 % Student-t interval of the mean over seeds",
    }
    write_sweep_report(result, out)
    return result


def sweep_blocks(result: dict[str, Any]) -> list[Block]:
    """The sweep report: settings, every run, the summary over seeds, the figure."""
    names = list(result["summary"])
    s = result["summary"]
    rows = [
        [str(r["seed"]), *(f"{r[n]:.4f}" for n in names), f"{r['fit_seconds']:.1f}"]
        for r in result["runs"]
    ]
    rows.append(["mean ± sd", *(f"{s[n]['mean']:.4f} ± {s[n]['sd']:.4f}" for n in names), ""])
    rows.append(["95 % interval", *(f"[{s[n]['low']:.4f}, {s[n]['high']:.4f}]" for n in names), ""])
    return [
        Heading(f"{result['model']} over seeds {', '.join(map(str, result['seeds']))}", 1),
        Para(
            f"Data {result['data']}, fit on {result['fit_on']}, evaluated on {result['split']} "
            f"({'excluding' if result['exclude_seen'] else 'including'} seen items); "
            f"parameters {result['params']}. The interval is a 95 % Student-t interval of "
            "the mean over seeds (training noise); the test set's own sampling noise is "
            "`sessionrec evaluate --ci`."
        ),
        Table(["seed", *names, "fit s"], rows),
        Image("sweep", "every seed's metric (dots), the mean (line) and its 95 % interval (band)"),
    ]


def sweep_figure(result: dict[str, Any]) -> bytes:
    """PNG: one panel per metric, a dot per seed, the mean and its interval."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["summary"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        s = result["summary"][name]
        values = [r[name] for r in result["runs"]]
        ax.axhspan(s["low"], s["high"], color="tab:blue", alpha=0.15, label="95 % interval")
        ax.axhline(s["mean"], color="tab:blue", label="mean")
        ax.plot(range(len(values)), values, "o", color="black", label="seed")
        ax.set_xticks(range(len(values)), [str(r["seed"]) for r in result["runs"]])
        ax.set_xlabel("seed")
        ax.set_title(name)
    axes[0][0].legend(fontsize="small")
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


__all__ = ["sweep", "sweep_blocks", "t_interval", "write_sweep_report"]
