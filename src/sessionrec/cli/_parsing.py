"""Click parsing shared by verbs: list options that take several values after one flag
(``--cutoffs 5 10 20``, ``--session "Toy Story (1995)" "Heat (1995)"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from typer.core import TyperCommand


def expand_greedy(args: list[str], greedy: dict[str, Callable[[str], bool]]) -> list[str]:
    """Rewrite ``--opt a b c`` as ``--opt a --opt b --opt c`` for the options in ``greedy``.

    Click options take one value each; this lets a list option take several after one flag,
    as in ``--cutoffs 5 10 20`` or ``--session "Toy Story (1995)" "Heat (1995)"``. Values are
    taken while ``greedy[opt](token)`` accepts them and the token is not ``--``; repeating
    the flag (``--cutoffs 5 --cutoffs 10``) works as well.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, first = a.partition("=")
        if flag not in greedy:
            out.append(a)
            i += 1
            if a == "--":
                out.extend(args[i:])
                break
            continue
        accepts = greedy[flag]
        values = [first] if eq else []
        i += 1
        while i < len(args) and args[i] != "--" and accepts(args[i]):
            values.append(args[i])
            i += 1
        if not values:
            out.append(a)  # let click report the missing value
        for v in values:
            out += [flag, v]
    return out


def _is_int(token: str) -> bool:
    return token.isdigit()


def _is_value(token: str) -> bool:
    return not token.startswith("-") or token == "-"


class _GreedyCommand(TyperCommand):
    greedy: ClassVar[dict[str, Callable[[str], bool]]] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_greedy(list(args), self.greedy))


class _EvaluateCommand(_GreedyCommand):
    greedy: ClassVar[dict[str, Callable[[str], bool]]] = {"--cutoffs": _is_int}


class _RecommendCommand(_GreedyCommand):
    greedy: ClassVar[dict[str, Callable[[str], bool]]] = {"--session": _is_value, "-s": _is_value}
