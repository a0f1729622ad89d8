"""One registry for every model (``sessionrec.registry``): tasks, classes, parameters, spaces,
loading folders of either task, and the old names as views of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import session_data

from sessionrec import registry
from sessionrec.catalog import model_catalog, models_markdown
from sessionrec.errors import DataError, UnknownNameError
from sessionrec.models import REGISTRY, create
from sessionrec.models.base import SessionModel
from sessionrec.rating import RATING_MODELS, Ratings, create_rating_model
from sessionrec.rating.base import RatingModel


def test_every_model_is_registered_once_with_its_task() -> None:
    assert set(registry.MODELS) == set(REGISTRY) | set(RATING_MODELS)
    assert not set(REGISTRY) & set(RATING_MODELS)
    assert registry.names(registry.NEXT_ITEM) == list(REGISTRY)
    assert registry.names(registry.RATING) == list(RATING_MODELS)
    for name, spec in registry.MODELS.items():
        cls = spec.load_class()
        assert cls.name == name
        base = SessionModel if spec.task == registry.NEXT_ITEM else RatingModel
        assert issubclass(cls, base), name
        assert registry.is_rating(name) == (spec.task == registry.RATING)


def test_parameters_come_from_the_config_with_types_defaults_and_old_names() -> None:
    params = {p.name: p for p in registry.spec("gru4rec").parameters()}
    assert params["layers"].type == "list of int"
    assert params["layers"].shown_default == "[300]"
    assert params["embedding"].type == "int or str"
    assert params["n_epochs"].aliases == ("epochs",)
    assert params["learning_rate"].aliases == ("lr",)
    assert params["loss"].type == "str" and params["loss"].shown_default == params["loss"].default
    assert registry.spec("pop").parameters() == []


def test_every_next_item_model_ships_a_search_space_and_no_rating_model_does() -> None:
    for name, spec in registry.MODELS.items():
        assert (spec.space_file is not None) == (spec.task == registry.NEXT_ITEM), name
    by_name = {m["model"]: m for m in model_catalog()}
    assert by_name["gru4rec"]["space"] == "sessionrec/tuning/spaces/gru4rec.toml"
    assert by_name["svd"]["space"] is None and by_name["svd"]["task"] == "rating"


def test_unknown_names_list_every_model_or_those_of_the_task() -> None:
    with pytest.raises(UnknownNameError, match=r"autorec.*gru4rec"):
        registry.spec("nope")
    with pytest.raises(UnknownNameError, match="unknown rating model 'gru4rec'"):
        registry.spec("gru4rec", registry.RATING)
    with pytest.raises(UnknownNameError, match="unknown model 'svd'"):
        create("svd")


def test_the_markdown_table_lists_every_model_with_types() -> None:
    md = models_markdown()
    for name in registry.MODELS:
        assert f"| `{name}` |" in md
    assert "`layers=[300]` (list of int)" in md
    assert "`embedding=0` (int or str)" in md  # no "|" inside a table cell


def test_load_model_reads_a_folder_of_either_task(tmp_path: Path) -> None:
    nxt = create("markov").fit(session_data([[0, 1, 2]] * 3, n_items=3))
    nxt.save(tmp_path / "markov")
    ratings = Ratings.from_arrays(
        np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([4.0, 3.0, 5.0]), n_users=2, n_items=2
    )
    rat = create_rating_model("baseline").fit(ratings)
    rat.save(tmp_path / "baseline")
    assert registry.folder_task(tmp_path / "markov") == registry.NEXT_ITEM
    assert registry.folder_task(tmp_path / "baseline") == registry.RATING
    assert isinstance(registry.load_model(tmp_path / "markov"), SessionModel)
    assert isinstance(registry.load_model(tmp_path / "baseline"), RatingModel)
    with pytest.raises(DataError, match=r"config\.json.*a next-item model name"):
        registry.load_model(tmp_path / "baseline", task=registry.NEXT_ITEM)
    with pytest.raises(DataError, match="a rating model name"):
        registry.load_model(tmp_path / "markov", task=registry.RATING)


def test_importing_the_registry_imports_no_model_and_no_torch() -> None:
    code = (
        "import sys, sessionrec.registry as r; r.names(); r.spec('gru4rec'); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('sessionrec.models')"
        " or m.startswith('sessionrec.rating')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
