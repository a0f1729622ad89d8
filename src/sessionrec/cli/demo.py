"""`sessionrec demo`: the whole job on MovieLens-100K, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sessionrec.cli._app import app, console


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where results go.")] = Path("demo-out"),
    source: Annotated[str, typer.Option(help="Dataset name or path.")] = "ml-100k",
    models: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Models to compare (repeatable); default: all."),
    ] = None,
    session: Annotated[
        list[str] | None,
        typer.Option(help="Example session (titles or ids, repeatable) to recommend for."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto.")] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace --out when it holds an earlier demo's output.")
    ] = False,
) -> None:
    """Fetch MovieLens-100K, explore it, prepare sessions, train GRU4Rec and the baselines,
    compare them on the test part, and recommend the next movies for an example session."""
    from sessionrec._io import claim_dir, mark_complete
    from sessionrec.cli.explore import print_exploration
    from sessionrec.cli.prepare import print_prepared
    from sessionrec.datasets import load
    from sessionrec.explore import explore
    from sessionrec.prepare import PrepareConfig, PreparedData, prepare

    _check_models(models or [])
    claim_dir(out, overwrite=overwrite, verb="demo")
    console.rule("1. data")
    ds = load(source)
    console.print(f"{ds.name}: {ds.events.height:,} events from {', '.join(map(str, ds.files))}")
    if ds.info.get("source_used"):
        console.print(f"source used: {ds.info['source_used']}")
    console.rule("2. explore")
    ex = explore(ds)
    ex.save(out / "explore", overwrite=True)
    print_exploration(ex)
    console.print(f"report: {out / 'explore' / 'report.html'}")
    console.rule("3. prepare")
    cfg = PrepareConfig(session="1h", split="time", test_days=21, valid_days=21)
    data = prepare(ds, out / "prepared", cfg, overwrite=True)
    assert isinstance(data, PreparedData)
    print_prepared(data)
    console.rule("4. train and evaluate")
    console.print(PROTOCOL, highlight=False)
    results = compare(data, out / "models", models or list(DEMO_MODELS), device=device)
    write_results(results, out)  # rewritten with the example's recommendations below
    print_comparison(results)
    console.rule("5. recommend")
    best = "gru4rec" if "gru4rec" in results else next(iter(results))
    example = session or list(EXAMPLE_SESSION)
    from sessionrec.models import load_model

    model = load_model(out / "models" / best, device=device)
    console.print(f"{best}, after: " + " → ".join(example))
    from sessionrec.cli.evaluate import print_recommendations

    recs = model.recommend(example, k=10)
    print_recommendations(recs, f"{best}: top 10")
    write_results(results, out, example={"model": best, "session": example, "top": recs})
    mark_complete(out, "demo")
    console.print(f"results: {out / 'results.md'}, {out / 'results.json'}")
    console.print(
        f"try: sessionrec recommend {out / 'models' / best} --session "
        + " ".join(f'"{t}"' for t in example)
        + " -k 10",
        soft_wrap=True,  # one line to copy, whatever the width
    )
    served = " ".join(str(out / "models" / m) for m in [best, *(m for m in results if m != best)])
    console.print(
        f"live, in a browser (needs the serve extra): sessionrec serve {served}\n"
        "then open http://127.0.0.1:8000/",
        highlight=False,
        soft_wrap=True,
    )


#: The models the demo compares and their settings on ML-100K (BENCHMARKS.md). GRU4Rec uses
#: the official code's `retailrocket_bprmax_shared_best` settings (CIKM 2018: BPR-max, shared
#: embedding), 2 epochs, as in the side-by-side benchmark.
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "pop": {},
    "spop": {},
    "markov": {},
    "sr": {},
    "itemknn": {},
    "sknn": {},
    "vsknn": {},
    "bpr": {},
    "als": {},
    "two-tower": {},
    "gru4rec": {
        "loss": "bpr-max",
        "constrained_embedding": True,
        "layers": [224],
        "batch_size": 80,
        "n_sample": 2048,
        "sample_alpha": 0.4,
        "bpreg": 1.95,
        "elu_param": 0.5,
        "dropout_p_embed": 0.5,
        "dropout_p_hidden": 0.05,
        "learning_rate": 0.05,
        "momentum": 0.4,
        "n_epochs": 2,
    },
}
EXAMPLE_SESSION = ("Toy Story (1995)", "Star Wars (1977)", "Fargo (1996)")
CUTOFFS = (10, 20)
#: How the demo's numbers were measured; printed, and the caption of results.md.
PROTOCOL = (
    "Every model fit on train+valid (fit part: train+valid), scored on the test part: every "
    "position of every session (a session of n events gives n−1 predictions), full ranking "
    "over the whole catalogue (no sampling), conservative ties (an item scored equal to the "
    "target ranks above it), seed 0."
)


def _check_models(names: list[str]) -> None:
    from sessionrec.errors import UnknownNameError

    unknown = [n for n in names if n not in DEMO_MODELS]
    if unknown:
        raise UnknownNameError("demo model", unknown[0], list(DEMO_MODELS))


def compare(
    data: Any, root: Path, names: list[str], *, device: str = "auto", seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Train each model on train+valid, evaluate on test with and without seen items.

    Returns, per model, the fit and evaluation seconds and both metric sets.
    """
    import time

    from sessionrec.evaluation import evaluate
    from sessionrec.models.base import SessionModel
    from sessionrec.runner import train

    _check_models(names)
    test = data.part("test")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        console.print(name, style="bold")
        t0 = time.perf_counter()
        model = train(
            name, data, root / name, params=DEMO_MODELS[name], fit_on="train+valid",
            seed=seed, device=device, overwrite=True,
        )  # fmt: skip
        fit_s = time.perf_counter() - t0
        assert isinstance(model, SessionModel)  # DEMO_MODELS are next-item models
        row: dict[str, Any] = {"fit_seconds": fit_s}
        for key, exclude in (("all", False), ("exclude_seen", True)):
            res = evaluate(model, test, cutoffs=CUTOFFS, exclude_seen=exclude)
            row[key] = res.to_dict()
            row["predictions"] = res.predictions
            row.setdefault("eval_seconds", 0.0)
            row["eval_seconds"] += res.seconds
        results[name] = row
    return results


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    from rich.table import Table

    any_row = next(iter(results.values()))
    table = Table(
        title=f"ML-100K test: {any_row['predictions']:,} predictions, full ranking, "
        "conservative ties; @20 (@10 in results.md)"
    )
    table.add_column("model")
    for head in ("R excl.", "MRR excl.", "R all", "MRR all", "fit s", "eval s"):
        table.add_column(head, justify="right")
    ranked = sorted(results.items(), key=lambda kv: -kv[1]["exclude_seen"]["recall@20"])
    for name, r in ranked:
        e, a = r["exclude_seen"], r["all"]
        table.add_row(
            name,
            *(f"{x:.3f}" for x in (e["recall@20"], e["mrr@20"], a["recall@20"], a["mrr@20"])),
            f"{r['fit_seconds']:.1f}",
            f"{r['eval_seconds']:.1f}",
        )
    console.print(table)
    console.print("excl.: items already in the session removed from the ranking; all: kept.")


def write_results(
    results: dict[str, dict[str, Any]], out: Path, example: dict[str, Any] | None = None
) -> None:
    """results.json and results.md: the table captioned with its protocol, then the example
    session's recommendations by title."""
    from sessionrec._io import atomic_path, write_json

    any_row = next(iter(results.values()))
    write_json(out / "results.json", results)
    heads = [f"{m}@{k} {w}" for w in ("excl.", "all") for k in CUTOFFS for m in ("Recall", "MRR")]
    lines = [
        "# sessionrec demo: next-item accuracy on the test part",
        "",
        f'{PROTOCOL} {any_row["predictions"]:,} predictions per model. "excl.": items '
        'already in the session removed from the ranking (`--exclude-seen`); "all": kept. '
        "Fit seconds on this machine.",
        "",
        "| model | " + " | ".join(heads) + " | fit s |",
        "| --- |" + " ---: |" * (len(heads) + 1),
    ]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["exclude_seen"]["recall@20"]):
        cells = [
            f"{r[w][f'{m}@{k}']:.3f}"
            for w in ("exclude_seen", "all")
            for k in CUTOFFS
            for m in ("recall", "mrr")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['fit_seconds']:.1f} |")
    if example is not None:
        top = example["top"]
        lines += [
            "",
            f"## {example['model']}: the next 10 after " + " → ".join(example["session"]),
            "",
            "| rank | title | score |",
            "| ---: | --- | ---: |",
        ]
        for row in top.iter_rows(named=True):
            title = row.get("title") or row.get("item_id")
            lines.append(f"| {row['rank']} | {title} | {row['score']:.4g} |")
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
