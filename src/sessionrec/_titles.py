"""One title matcher behind every surface: ``recommend``, the batch recommender, the HTTP
event and recommend routes, and the web page's search.

A key finds its items by the first rule that matches anything, in this order:

1. the exact title (``"Return of the Jedi (1983)"``);
2. the title without its year, any case (``"return of the jedi"``);
3. the title any case, year included;
4. the title's core: year, case and a leading or trailing article aside, so ``"The Godfather"``
   and ``"Godfather"`` find MovieLens' ``"Godfather, The (1972)"``;
5. every word of the key is a word of the title (accents and case folded; punctuation
   splits words): ``"Jedi"`` finds ``"Return of the Jedi (1983)"``, ``"godfather part"``
   finds ``"Godfather: Part II, The (1974)"``.

One hit resolves the key; several make it ambiguous (the caller lists them, most popular
first); none leaves the caller to name the closest titles (``closest``).
``search`` is the looser query of a search box: every word of the query is *part* of a word of
the title, titles starting with the query first.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

#: MovieLens writes leading articles at the end: "Godfather, The (1972)", "Jour se lève, Le".
ARTICLES = ("the", "a", "an", "les", "le", "la", "l'", "il", "el", "das", "der", "die")

_WORD = re.compile(r"\w+")


def fold(text: str) -> str:
    """Lower-case, accents removed (``"Amélie"`` → ``"amelie"``): the search key of a title."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def without_year(title: str) -> str:
    """``"Heat (1995)"`` → ``"Heat"``."""
    t = title.strip()
    return t.rsplit(" (", 1)[0].strip() if t.endswith(")") and " (" in t else t


def core(title: str) -> str:
    """A title without its year, its case and its leading or trailing article."""
    t = without_year(title).lower()
    head, sep, tail = t.rpartition(", ")
    if sep and tail in ARTICLES:
        return head.strip()
    first, sep, rest = t.partition(" ")
    if sep and first in ARTICLES:
        return rest.strip()
    return t


def words(text: str) -> list[str]:
    """The folded words of ``text`` (the year of a title included when given)."""
    return _WORD.findall(fold(text))


class TitleIndex:
    """Dictionaries over a catalogue's titles, built once: a lookup costs a few dictionary
    reads and, for the word rule, an intersection of the words' posting sets.

    Args:
        titles: the title of each item index (``None`` for an item without one).
        counts: (n,) each item's training popularity: orders ambiguous hits and search
            results (most popular first); by index when not given.
    """

    def __init__(self, titles: Sequence[str | None], counts: np.ndarray | None = None) -> None:
        self.titles = list(titles)
        n = len(self.titles)
        self.counts = np.zeros(n) if counts is None else np.asarray(counts, dtype=np.float64)
        self._exact: dict[str, list[int]] = {}
        self._no_year: dict[str, list[int]] = {}
        self._lower: dict[str, list[int]] = {}
        self._cores: dict[str, list[int]] = {}
        self._words: dict[str, set[int]] = {}
        self._folded: list[str] = []
        for i, t in enumerate(self.titles):
            self._folded.append(fold(t) if t else "")
            if not t:
                continue
            self._exact.setdefault(t, []).append(i)
            self._no_year.setdefault(without_year(t).lower(), []).append(i)
            self._lower.setdefault(t.lower(), []).append(i)
            self._cores.setdefault(core(t), []).append(i)
            for w in set(words(without_year(t))):
                self._words.setdefault(w, set()).add(i)

    def __len__(self) -> int:
        return len(self.titles)

    def matches(self, key: str) -> list[int]:
        """The items ``key`` names by the first rule that finds any (module docstring)."""
        key = key.strip()
        if not key:
            return []
        if key in self._exact:
            return self._exact[key]
        low = key.lower()
        hits = self._no_year.get(low) or self._lower.get(low)
        if hits:
            return hits
        c = core(key)
        if c and c in self._cores:
            return self._cores[c]
        return self.by_words(key)

    def by_words(self, key: str) -> list[int]:
        """Items whose title holds every word of ``key``, most popular first."""
        ws = words(key)
        if not ws:
            return []
        posting = [self._words.get(w) for w in dict.fromkeys(ws)]
        if any(p is None for p in posting):
            return []
        found = set.intersection(*(p for p in posting if p is not None))
        return sorted(found, key=lambda i: (-self.counts[i], i))

    def closest(self, key: str, n: int = 5) -> list[str]:
        """Up to ``n`` titles close to ``key``: by spelling (articles and years aside), else
        the titles that contain it."""
        known = [t for t in self.titles if t]
        c = core(key)
        close = [
            self.titles[i]
            for m in difflib.get_close_matches(c, list(self._cores), n=n, cutoff=0.6)
            for i in self._cores[m]
        ]
        out = [t for t in close if t][:n]
        if not out:
            out = difflib.get_close_matches(key, known, n=n, cutoff=0.5)
        if not out:
            low = fold(key)
            out = [self.titles[i] or "" for i, t in enumerate(self._folded) if low and low in t][:n]
        return out

    def search(self, q: str, limit: int) -> list[int]:
        """Item indices whose title holds every word of ``q`` (case and accents ignored, words
        may be partial), titles starting with the query first, then by training popularity."""
        ws = fold(q).split()
        if not ws:
            return []
        joined = " ".join(ws)
        hits = [i for i, t in enumerate(self._folded) if t and all(w in t for w in ws)]
        hits.sort(key=lambda i: (not self._folded[i].startswith(joined), -self.counts[i], i))
        return hits[:limit]
