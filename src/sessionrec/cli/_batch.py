"""`sessionrec recommend MODEL_DIR --sessions FILE --out FILE`: many sessions or users in, one
table out.

Input (CSV, TSV or Parquet, by suffix): either ``session_id,item`` rows, one event a row in
the session's order, ``item`` an id or a title (``item_id`` or ``title`` are read as ``item``
too); or ``user_id`` rows (one user a row): a rating model ranks the user's unrated items, a
next-item model takes the user's training items as the session. Output (by suffix: ``.csv``,
``.tsv``, ``.parquet``, ``.json``): ``session_id`` (or ``user_id``), ``rank``, ``item_id``,
``title``, ``year``, ``score`` (genres joined by ``|`` in CSV/TSV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from sessionrec.cli._app import console
from sessionrec.errors import DataError

ITEM_COLUMNS = ("item", "item_id", "title")
OUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".json")


def read_sessions(path: Path) -> tuple[str, list[tuple[Any, list[Any]]]]:
    """``(key column, [(key, items), ...])`` from a batch file, in the file's order."""
    if not path.exists():
        raise DataError(path, expected="a CSV/TSV/Parquet file of sessions", found="no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pl.read_parquet(path, glob=False)
    elif suffix in (".csv", ".tsv", ".txt"):
        frame = pl.read_csv(
            path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=0, glob=False
        )  # every column as text: ids and titles alike, resolved against the model
    else:
        raise DataError(path, expected="a .csv, .tsv or .parquet file", found=f"{suffix!r}")
    item = next((c for c in ITEM_COLUMNS if c in frame.columns), None)
    if "session_id" in frame.columns and item is not None:
        groups = (
            frame.with_row_index("_row")
            .group_by("session_id", maintain_order=True)
            .agg(pl.col(item).sort_by("_row"))
        )
        return "session_id", [
            (s, [str(x) for x in items])
            for s, items in zip(groups["session_id"], groups[item], strict=True)
        ]
    if "user_id" in frame.columns and item is None:
        return "user_id", [(u, []) for u in frame["user_id"].unique(maintain_order=True)]
    raise DataError(
        path,
        expected="columns session_id,item (one event a row) or user_id (one user a row)",
        found=", ".join(frame.columns) or "no columns",
    )


def write_table(frame: pl.DataFrame, out: Path) -> None:
    from sessionrec._io import atomic_path

    suffix = out.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise DataError(out, expected=f"an output file ending {', '.join(OUT_SUFFIXES)}",
                        found=f"{suffix!r}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if suffix == ".parquet":
            frame.write_parquet(tmp)
        elif suffix == ".json":
            frame.write_json(tmp)
        else:
            flat = frame.with_columns(pl.col("genres").list.join("|")) if (
                "genres" in frame.columns
            ) else frame  # fmt: skip
            flat.write_csv(tmp, separator="\t" if suffix == ".tsv" else ",")


def recommend_batch(
    model_dir: Path, sessions: Path, out: Path, k: int, include_seen: bool, device: str
) -> None:
    from sessionrec.cli.evaluate import _is_rating_model, _user_history, _user_id

    key, rows = read_sessions(sessions)
    if _is_rating_model(model_dir):
        if key != "user_id":
            raise DataError(sessions, expected="user_id rows for a rating model",
                            found="session_id,item rows")  # fmt: skip
        from sessionrec.rating import load_rating_model

        rating = load_rating_model(model_dir, device=device)
        frames = [
            rating.recommend(_user_id(str(u), rating.user_ids), k, exclude_seen=not include_seen)
            .rename({"predicted": "score"})
            .select(pl.lit(u).alias(key), pl.all())
            for u, _ in rows
        ]
        frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    else:
        from sessionrec.models import load_model
        from sessionrec.recommend import ItemLookupError, recommend_many

        if key == "user_id":
            rows = [(u, [str(i) for i in _user_history(model_dir, str(u), quiet=True)])
                    for u, _ in rows]  # fmt: skip
        model = load_model(model_dir, device=device)
        try:
            frame = recommend_many(model, rows, k, exclude_seen=not include_seen, key=key)
        except ItemLookupError as exc:
            raise ItemLookupError(f"{sessions}: {exc}") from None
        frame = frame.drop("item_idx", strict=False)
    write_table(frame, out)
    console.print(
        f"{len(rows):,} {'users' if key == 'user_id' else 'sessions'} → {frame.height:,} rows "
        f"(top {k} each, seen items {'included' if include_seen else 'excluded'}) → {out}",
        highlight=False,
    )
