"""The one title matcher behind recommend, the batch recommender, HTTP and the page."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sessionrec._titles import TitleIndex, core, words
from sessionrec.recommend import ItemLookupError, resolve_items

TITLES = [
    "Star Wars (1977)",
    "Return of the Jedi (1983)",
    "Empire Strikes Back, The (1980)",
    "Godfather, The (1972)",
    "Godfather: Part II, The (1974)",
    "Amélie (2001)",
    "Heat (1995)",
    "Heat (1986)",
    None,
    "1941 (1979)",
]


def test_rules_in_order() -> None:
    ix = TitleIndex(TITLES, np.arange(len(TITLES), dtype=float))
    assert ix.matches("Return of the Jedi (1983)") == [1]  # exact
    assert ix.matches("return of the jedi") == [1]  # no year, any case
    assert ix.matches("The Godfather") == [3]  # article moved: not Part II
    assert ix.matches("Godfather") == [3]
    assert ix.matches("Jedi") == [1]  # any word of the title
    assert ix.matches("jedi return") == [1]  # every word, any order
    assert ix.matches("godfather part") == [4]
    assert ix.matches("amelie") == [5]  # accents folded
    assert ix.matches("Empire") == [2]
    # by words, several titles: most popular first (counts = index here)
    assert sorted(ix.matches("Heat")) == [6, 7]  # two titles without their years
    assert ix.matches("the") == [4, 3, 2, 1]
    assert ix.matches("jedix") == [] and ix.matches("") == [] and ix.matches("  ") == []
    assert ix.matches("1941") == [9]  # a title word, not a year of another title


def test_words_and_core() -> None:
    assert words("Godfather: Part II, The") == ["godfather", "part", "ii", "the"]
    assert core("The Godfather (1972)") == core("Godfather, The (1972)") == "godfather"


def test_resolve_items_uses_the_word_rule_and_names_ambiguity() -> None:
    items = pl.DataFrame({"item_idx": range(4), "item_id": [10, 11, 12, 13], "title": TITLES[:4]})
    assert resolve_items(items, ["Jedi", 10, "godfather"]) == [1, 0, 3]
    with pytest.raises(ItemLookupError, match=r"'the' is ambiguous: .*Jedi"):
        resolve_items(items, ["the"])
    with pytest.raises(ItemLookupError, match=r"closest: Return of the Jedi"):
        resolve_items(items, ["Return of the Jedy"])


def test_search_is_looser_than_matching() -> None:
    ix = TitleIndex(TITLES)
    assert ix.search("jed", 5) == [1]  # a part of a word is enough for the search box
    assert ix.matches("jed") == []  # but not to resolve a session's item
