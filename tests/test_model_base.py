"""One model base for every task (``sessionrec.models.base.Model``): the same code saves,
loads, checks and records the training data of a next-item and a rating model folder, and the
same entry checks ``recommend``'s ``k``; the task decides only what a query is and what ranks
the items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from _helpers import session_data

from sessionrec import registry
from sessionrec.errors import ConfigError, DataError
from sessionrec.models.base import Model, SessionModel
from sessionrec.models.markov import Markov
from sessionrec.rating import Ratings, create_rating_model
from sessionrec.rating.base import RatingModel


def test_the_folder_code_and_the_recommend_entry_are_the_base_s_alone() -> None:
    for task_base in (SessionModel, RatingModel):
        assert issubclass(task_base, Model)
        assert not {"save", "load_from"} & set(vars(task_base)), task_base
    for name in registry.names():
        cls = registry.model_class(name)
        assert issubclass(cls, Model) and "save" not in vars(cls), name
        assert "recommend" not in vars(cls), f"{name} answers recommend outside the base"


def _ratings() -> Ratings:
    rng = np.random.default_rng(0)
    u, i = np.nonzero(rng.random((12, 9)) < 0.6)
    r = rng.integers(1, 6, size=len(u)).astype(np.float32)
    return Ratings.from_arrays(u, i, r, n_users=12, n_items=9)


def _fitted(kind: str) -> Model:
    return _markov() if kind == "next-item" else create_rating_model("baseline").fit(_ratings())


def _markov() -> Markov:
    return Markov().fit(session_data([[0, 1, 2], [1, 2]], n_items=3))


@pytest.mark.parametrize("kind", ["next-item", "rating"])
def test_both_tasks_round_trip_and_read_their_training_record(tmp_path: Path, kind: str) -> None:
    model = _fitted(kind)
    folder = model.save(tmp_path / kind)
    record = {"path": "somewhere", "fit_on": "train", "fingerprint": "abc"}
    (folder / "data_meta.json").write_text(json.dumps(record))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["format"] == type(model).FORMAT and cfg["model"] == model.name
    loaded = registry.load_model(folder)
    assert type(loaded) is type(model)
    assert loaded.trained_on is not None and loaded.trained_on["fingerprint"] == "abc"
    assert {k: v.tolist() for k, v in loaded.state_arrays().items()} == {
        k: v.tolist() for k, v in model.state_arrays().items()
    }


@pytest.mark.parametrize("kind", ["next-item", "rating"])
def test_arrays_that_do_not_fit_name_the_weights_for_both_tasks(tmp_path: Path, kind: str) -> None:
    from safetensors.torch import save_file

    model = _fitted(kind)
    folder = model.save(tmp_path / kind)
    arrays = model.state_arrays()
    arrays.pop(sorted(arrays)[0])  # one array missing
    save_file(
        {k: v.contiguous().cpu() for k, v in arrays.items()}, str(folder / "weights.safetensors")
    )
    with pytest.raises(DataError, match=r"weights\.safetensors"):
        registry.load_model(folder)


def test_the_one_entry_checks_k_for_both_tasks() -> None:
    markov = _markov()
    markov.items = pl.DataFrame({"item_idx": [0, 1, 2], "item_id": [10, 11, 12]})
    rating = create_rating_model("baseline").fit(_ratings())
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ConfigError, match="k must be a whole number"):
            markov.recommend([10], bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="k must be a whole number"):
            rating.recommend(int(rating.user_ids[0]), bad)  # type: ignore[arg-type]
    assert markov.recommend([10], 2)["item_id"].to_list()[0] == 11
    assert rating.recommend(int(rating.user_ids[0]), 2).height <= 2
    with pytest.raises(ConfigError, match="no index"):
        rating.recommend(int(rating.user_ids[0]), 2, index=object())
    assert torch.is_tensor(markov.score_sessions([[0]]))
