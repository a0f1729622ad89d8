"""The import rule of docs/architecture.md: imports run one way, down the layers, and no two
modules import each other. Every import counts, at the top of a module or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import sessionrec

PACKAGE = Path(sessionrec.__file__).parent

#: Layers from the bottom up (docs/architecture.md): a module imports only from its own layer
#: or a lower one. A name is a module or a subpackage of ``sessionrec``.
LAYERS: list[tuple[str, ...]] = [
    (
        "errors",
        "_schema",
        "_version",
        "_io",
        "_titles",
        "_threads",
        "_optional",
        "_report",
        "_formats",
        "_checks",
    ),
    ("datasets",),
    ("prepare",),
    ("explore",),
    ("training",),
    ("models",),
    ("rating",),
    ("registry",),
    ("evaluation", "ann"),
    ("runner", "recommend", "catalog", "synthetic"),
    ("experiments", "tuning", "study"),
    ("serving",),
    ("cli", "__init__", "__main__"),
]

#: Imports that run upward on purpose, each with its reason; nothing else may.
UPWARD: dict[tuple[str, str], str] = {
    ("sessionrec.models", "sessionrec.registry"): "the next-item view of the registry "
    "(sessionrec.models.create, load_model, REGISTRY) that scripts import from here",
    ("sessionrec.rating", "sessionrec.registry"): "the rating view of the registry "
    "(sessionrec.rating.create_rating_model, load_rating_model, RATING_MODELS)",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that ``name`` imports, wherever the import stands."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]  # fmt: skip
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS (docs/architecture.md)")


_KNOWN = _modules()
GRAPH = {name: _imports(name, path, _KNOWN) for name, path in _KNOWN.items()}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        _layer(name)


def test_imports_run_down_the_layers() -> None:
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _layer(b) > _layer(a) and (a, b) not in UPWARD
    )
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_listed_upward_imports_still_exist() -> None:
    """An exception that the code no longer needs is struck from UPWARD."""
    gone = [f"{a} -> {b}" for a, b in UPWARD if b not in GRAPH.get(a, set())]
    assert not gone, "no longer imported (remove from UPWARD): " + ", ".join(gone)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (Tarjan's strongly connected components
    of more than one module), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    """A module may take the names its own package hands on (``from sessionrec.rating import
    create_rating_model`` inside ``rating/crossval.py``): an ``__init__`` that re-exports its
    modules is their face, not a module they depend on."""
    graph = {a: {b for b in targets if not a.startswith(b + ".")} for a, targets in GRAPH.items()}
    found = cycles(graph)
    assert not found, "modules that import each other: " + "; ".join(map(" <-> ".join, found))


def test_the_checks_see_what_they_rest_on() -> None:
    """The reader finds imports inside functions and under TYPE_CHECKING; the finder finds a
    cycle of two and of three, and none in a chain."""
    assert "sessionrec.models.base" in GRAPH["sessionrec.registry"]  # inside functions
    assert "sessionrec.rating.base" in GRAPH["sessionrec.registry"]  # under TYPE_CHECKING
    assert "sessionrec.explore.stats" in GRAPH["sessionrec.explore.report"]
    assert _layer("sessionrec.cli.evaluate") > _layer("sessionrec.models.base")
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
