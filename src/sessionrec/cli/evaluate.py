"""`sessionrec evaluate MODEL_DIR DATA_DIR` and `sessionrec recommend MODEL_DIR --session ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sessionrec.cli._app import app, console, err_console
from sessionrec.cli._options import SeenMeasure, SeenServe
from sessionrec.cli._parsing import _EvaluateCommand, _RecommendCommand, expand_greedy
from sessionrec.errors import ConfigError, UnknownNameError

SPLITS = ("train", "valid", "test", "train+valid")


@app.command(cls=_EvaluateCommand)
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory.")],
    data_dir: Annotated[Path, typer.Argument(help="The PreparedData directory it was trained on.")],
    split: Annotated[str, typer.Option(help="train | valid | test | train+valid")] = "test",
    cutoffs: Annotated[
        list[int] | None, typer.Option(help="The k of the metrics: --cutoffs 5 10 20 (default).")
    ] = None,
    ties: Annotated[str, typer.Option(help="conservative | optimistic | average")] = (
        "conservative"
    ),
    exclude_seen: SeenMeasure = False,
    protocol: Annotated[str, typer.Option(help="every | last | sampled")] = "every",
    negatives: Annotated[int, typer.Option(help="Sampled negatives (--protocol sampled).")] = 100,
    negative_sampling: Annotated[
        str, typer.Option(help="uniform | popularity (--protocol sampled).")
    ] = "uniform",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Sessions evaluated side by side.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the negative sampler.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is fastest on a busy machine).")
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            help="Rank through this item index (from `sessionrec index`): items it does not "
            "return in its top --index-depth rank last."
        ),
    ] = None,
    index_depth: Annotated[int, typer.Option(help="Items taken from --index per query.")] = 100,
    ci: Annotated[
        bool,
        typer.Option(help="95 % intervals of Recall/MRR/NDCG by resampling sessions (bootstrap)."),
    ] = False,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates for --ci.")] = 1000,
    allow_other_data: Annotated[
        bool,
        typer.Option(
            help="Evaluate although the model was trained on another prepared dataset "
            "(refused otherwise; recorded in the JSON)."
        ),
    ] = False,
    max_session_events: Annotated[
        int | None,
        typer.Option(
            help="Rank each prediction from the events `serve --max-session-events N` keeps "
            "(its default is 200), so that the figures are those of the service for sessions "
            "of any length; default: the whole prefix."
        ),
    ] = None,
) -> None:
    """Next-item accuracy of a model: every position, full ranking, ties stated."""
    import torch

    from sessionrec import registry
    from sessionrec._io import check_output_file, write_json
    from sessionrec.evaluation import evaluate as do_evaluate
    from sessionrec.evaluation import seen_phrase
    from sessionrec.models import load_model
    from sessionrec.prepare import PreparedData
    from sessionrec.prepare.data import check_trained_on, check_vocabulary

    cutoffs = cutoffs or [5, 10, 20]
    if split not in SPLITS:
        raise UnknownNameError("split", split, list(SPLITS))
    if json_path is not None:
        check_output_file(json_path)  # before any work
    if registry.folder_task(model_dir) == registry.RATING:
        _evaluate_rating(model_dir, data_dir, split, json_path, device, allow_other_data)
        return
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, not {threads}")
        torch.set_num_threads(threads)
    model = load_model(model_dir, device=device)
    data = PreparedData(data_dir)
    check_trained_on(model.trained_on, data, model=model_dir, allow_other_data=allow_other_data)
    check_vocabulary(model, data, model_dir)
    if index is not None:
        from sessionrec.ann import IndexedModel, load_index

        if index_depth < max(cutoffs):
            raise ConfigError(f"--index-depth {index_depth} is below the cutoff {max(cutoffs)}")
        model = IndexedModel(model, load_index(index), depth=index_depth)
    part = data.part(split)
    res = do_evaluate(
        model,
        part,
        cutoffs=cutoffs,
        ties=ties,
        exclude_seen=exclude_seen,
        protocol=protocol,
        negatives=negatives,
        negative_sampling=negative_sampling,
        batch_size=batch_size,
        seed=seed,
        popularity=data.item_popularity(),
        progress=True,
        allow_other_data=allow_other_data,
        max_session_events=max_session_events,
    )
    res.protocol["popularity_source"] = "train counts"
    title = (
        f"{model.name} on {split} of {data_dir} · protocol {protocol}"
        + (f" ({negatives} {negative_sampling} negatives)" if protocol == "sampled" else "")
        + f" · ties {ties} · {seen_phrase(res.protocol)}"
        + (f" · through the index {index} (top {index_depth})" if index is not None else "")
        + (
            f" · session window {max_session_events} (as served)"
            if max_session_events is not None
            else ""
        )
    )
    intervals: dict[str, dict[str, float]] = {}
    if ci:
        from sessionrec.evaluation import bootstrap_interval

        names = [f"{m}@{k}" for k in res.protocol["cutoffs"] for m in ("recall", "mrr", "ndcg")]
        intervals = bootstrap_interval(res, part, names, n_boot=n_boot, seed=seed)
    table = Table(title=title)
    for col in ("k", "Recall", "MRR", "NDCG", "coverage", "popularity"):
        table.add_column(col, justify="right")
    m = res.metrics

    def cell(name: str) -> str:
        iv = intervals.get(name)
        return f"{m[name]:.4f}" + (f" [{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "")

    for k in res.protocol["cutoffs"]:
        table.add_row(
            str(k),
            cell(f"recall@{k}"),
            cell(f"mrr@{k}"),
            cell(f"ndcg@{k}"),
            f"{m[f'coverage@{k}']:.4f}",
            f"{m[f'popularity@{k}']:.4f}",
        )
    console.print(table)
    if ci:
        console.print(
            f"in brackets: 95 % intervals from {n_boot:,} bootstrap resamples of the "
            f"{part.n_sessions:,} sessions (predictions of one session move together)",
            highlight=False,
        )
    what = {
        "every": "every target event after a session's first event",
        "last": "the last event of each session",
        "sampled": "every target event after a session's first event, among sampled negatives",
    }[protocol]
    console.print(
        f"predictions: {res.predictions:,} ({what}) over {part.n_sessions:,} sessions "
        f"in {res.seconds:.2f} s"
    )
    for w in res.warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False)
    if protocol == "sampled":
        console.print(
            "sampled metrics rank the target among a few negatives only: they are "
            "higher than, and not comparable with, full-ranking metrics",
            style="yellow",
        )
    if json_path is not None:
        out = {
            **res.to_dict(),
            "model": str(model_dir),
            "data": str(data_dir),
            "split": split,
            "allow_other_data": allow_other_data,
        }
        if index is not None:
            out["index"] = {"path": str(index), "depth": index_depth}
        if intervals:
            out["intervals"] = {"level": 0.95, "n_boot": n_boot, "unit": "session", **intervals}
        write_json(json_path, out)
        console.print(f"results: {json_path}")


def _evaluate_rating(
    model_dir: Path,
    data_dir: Path,
    split: str,
    json_path: Path | None,
    device: str,
    allow_other_data: bool = False,
) -> None:
    """RMSE, MAE and FCP of a rating model on the target ratings of ``split``."""
    from sessionrec._io import write_json
    from sessionrec.prepare import PreparedData
    from sessionrec.prepare.data import check_trained_on, read_trained_on
    from sessionrec.rating import load_rating_model
    from sessionrec.rating.prepared import evaluate_prepared

    model = load_rating_model(model_dir, device=device)
    data = PreparedData(data_dir)
    check = check_trained_on(
        read_trained_on(model_dir), data, model=model_dir, allow_other_data=allow_other_data
    )
    m = evaluate_prepared(model, data, split)
    table = Table(title=f"{model.name} on {split} of {data_dir} · rating prediction")
    for col in ("ratings", "RMSE", "MAE", "FCP"):
        table.add_column(col, justify="right")
    table.add_row(f"{m['ratings']:,}", f"{m['rmse']:.4f}", f"{m['mae']:.4f}", f"{m['fcp']:.4f}")
    console.print(table)
    if json_path is not None:
        out = {
            **m,
            "model": str(model_dir),
            "data": str(data_dir),
            "split": split,
            "allow_other_data": allow_other_data,
            "data_check": check,
        }
        write_json(json_path, out)
        console.print(f"results: {json_path}")


@app.command(cls=_RecommendCommand)
def recommend(
    model_dir: Annotated[Path, typer.Argument(help="A saved model directory.")],
    session: Annotated[
        list[str] | None,
        typer.Option(
            "--session",
            "-s",
            help='The session so far, titles or ids: --session "Toy Story (1995)" "Heat (1995)"',
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            help="A user id: rating models rank unrated items by predicted rating; next-item "
            "models take the user's training items as the session.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items to recommend.")] = 10,
    exclude_seen: SeenServe = True,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    index: Annotated[
        Path | None,
        typer.Option(
            help="Search this item index (from `sessionrec index`) instead of scoring all."
        ),
    ] = None,
    sessions: Annotated[
        Path | None,
        typer.Option(
            "--sessions",
            help="Batch mode: a CSV/TSV/Parquet file of session_id,item rows (one event a row, "
            "in order; item = id or title), or of user_id rows; writes --out.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Batch mode's table: .csv, .tsv, .parquet or .json (by suffix)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the answer as JSON instead of a table.")
    ] = False,
) -> None:
    """The next items for a session (titles or ids) or for a user, with titles in the answer;
    or, with --sessions FILE --out FILE, for every session or user of a file."""
    from sessionrec import registry
    from sessionrec.models import load_model
    from sessionrec.recommend import resolve_items, user_history

    include_seen = not exclude_seen
    if k < 1:
        raise ConfigError(f"-k must be at least 1 (how many items to recommend), not {k}")
    if sessions is not None:
        if session is not None or user is not None or out is None:
            raise ConfigError("batch mode takes --sessions FILE --out FILE (no --session/--user)")
        if out.exists() and sessions.exists() and out.resolve() == sessions.resolve():
            raise ConfigError(f"--out {out} is the --sessions file itself; choose another file")
        from sessionrec.recommend import recommend_file

        done = recommend_file(model_dir, sessions, out, k, exclude_seen=not include_seen,
                              device=device)  # fmt: skip
        console.print(
            f"{done.n_asked:,} {'users' if done.key == 'user_id' else 'sessions'} → "
            f"{done.frame.height:,} rows (top {k} each, seen items "
            f"{'included' if include_seen else 'excluded'}) → {out}",
            highlight=False,
        )
        return
    if out is not None:
        raise ConfigError("--out is for batch mode (--sessions FILE); use --json for one answer")
    if (session is None) == (user is None):
        raise ConfigError("recommend takes either --session ... or --user USER_ID")
    if registry.folder_task(model_dir) == registry.RATING:
        if user is None:
            raise ConfigError("a rating model recommends for a --user, not for a --session")
        _recommend_rating(model_dir, user, k, include_seen, device, json_out)
        return
    if user is not None:
        session = [str(i) for i in user_history(model_dir, user)]
        if not json_out:
            console.print(f"user {user}: {len(session)} training items as the session")
    assert session is not None
    model = load_model(model_dir, device=device)
    item_index = None
    if index is not None:
        from sessionrec.ann import load_index

        item_index = load_index(index)
    frame = model.recommend(session, k, exclude_seen=not include_seen, index=item_index)
    shown: list[Any] = list(session)
    if model.items is not None and "title" in model.items.columns:
        idx = resolve_items(model.items, session)
        titles = dict(
            zip(model.items["item_idx"].to_list(), model.items["title"].to_list(), strict=True)
        )
        shown = [titles.get(i, i) for i in idx]
    if json_out:
        print_json(
            {
                "model": model.name,
                "session": shown,
                "user": user,
                "k": k,
                "exclude_seen": exclude_seen,
            },
            frame,
        )
        return
    if user is None and model.items is not None and "title" in model.items.columns:
        console.print("session: " + " → ".join(str(t) for t in shown))
    seen = "seen items excluded" if exclude_seen else "seen items included"
    print_recommendations(frame, f"{model.name}: top {frame.height} ({seen})")


def print_json(head: dict[str, Any], frame: Any) -> None:
    """One JSON object on stdout: ``head`` and the recommendations as a list of rows."""
    import json

    rows = frame.drop("item_idx", strict=False).to_dicts()
    typer.echo(json.dumps({**head, "recommendations": rows}, ensure_ascii=False))


def _recommend_rating(
    model_dir: Path, user: str, k: int, include_seen: bool, device: str, json_out: bool = False
) -> None:
    from sessionrec.rating import load_rating_model
    from sessionrec.recommend import as_id

    model = load_rating_model(model_dir, device=device)
    frame = model.recommend(as_id(user, model.user_ids), k, exclude_seen=not include_seen)
    frame = frame.rename({"predicted": "score"})
    if json_out:
        print_json(
            {"model": model.name, "user": user, "k": k, "exclude_seen": not include_seen}, frame
        )
        return
    rated = "" if include_seen else "unrated "
    print_recommendations(frame, f"{model.name}: top {frame.height} {rated}items for user {user}")


def print_recommendations(frame: Any, title: str) -> None:
    """A recommend() frame as a table: rank, title, year, genres, score, item id."""
    table = Table(title=title)
    cols = [
        c for c in ("rank", "title", "year", "genres", "score", "item_id") if c in frame.columns
    ]
    for c in cols:
        table.add_column(
            c, justify="right" if c in ("rank", "year", "score", "item_id") else "left"
        )
    for row in frame.iter_rows(named=True):
        table.add_row(*(_cell(c, row[c]) for c in cols))
    console.print(table)


def _cell(col: str, value: Any) -> str:
    if value is None:
        return ""
    if col == "genres":
        return ", ".join(value)
    if col == "score":
        return f"{value:.4g}"
    return str(value)


__all__ = [
    "SPLITS",
    "evaluate",
    "expand_greedy",
    "print_json",
    "print_recommendations",
    "recommend",
]
