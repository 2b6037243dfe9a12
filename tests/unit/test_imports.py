"""The import graph of service/, training/ and bench/: no circles, and every import runs downward.

The layers, top to bottom (docs/architecture.md draws them); a module imports its own layer or lower ones:
entry points -> training, bench -> process -> app -> transports -> data plane -> repository -> kinds,
batching -> collate -> runtime -> leaves (protocol codecs, errors, config, context, the kind registry).
Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are left out (as grimp's
``exclude_type_checking_imports`` does). Run it as a script to print the graph's size and depth:
``python -m tests.unit.test_imports``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "training", "bench")

# Top to bottom. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry points", ("service.cli", "service.__main__", "service.client", "service.client_calls")),
    ("training and bench", ("training", "bench")),
    ("process", ("service.process",)),
    ("app", ("service.app", "service.playground")),
    ("transports", ("service.transports", "service.auth", "service.access_log")),
    ("data plane", ("service.dataplane", "service.decoding")),
    ("repository", ("service.repository",)),
    (
        "kinds, batching",
        ("service.kinds", "service.batching", "service.batch_policy", "service.metrics", "service.stats"),
    ),
    ("collate", ("service.collate",)),
    ("runtime", ("service.runtime",)),
    (
        "leaves",
        (
            "service$",  # service/__init__.py (the version) alone: "$" matches the module only
            "service.protocol",
            "service.errors",
            "service.config",
            "service.context",
            "service.logs",
            "service.registry",
        ),
    ),
]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "oip" in parts:
                continue  # generated gRPC stubs
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, known: dict[str, Path], here: str) -> set[str]:
    """The project's modules that ``tree`` imports at run time (function-level imports included)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    out.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif node.module in known:
                    out.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(here)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: _imported(ast.parse(path.read_text()), known, name) for name, path in known.items()}


def layer(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact = prefix.endswith("$")
            matches = module == prefix.rstrip("$") or (not exact and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_module_has_a_layer() -> None:
    assert [m for m in import_graph() if layer(m) < 0] == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_imports_run_downward() -> None:
    graph = import_graph()
    upward = [
        f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})"
        for a, targets in sorted(graph.items())
        for b in sorted(targets)
        if layer(b) < layer(a)
    ]
    assert upward == []


def test_service_never_imports_training_but_the_command_line() -> None:
    graph = import_graph()
    crossing = [
        (a, b)
        for a, targets in graph.items()
        for b in targets
        if a.startswith("service") and b.startswith("training")
    ]
    assert crossing == [("service.cli", "training.cli")]


def depth(graph: dict[str, set[str]]) -> int:
    memo: dict[str, int] = {}

    def level(v: str) -> int:
        if v not in memo:
            memo[v] = 0
            memo[v] = 1 + max((level(w) for w in graph[v]), default=0)
        return memo[v]

    return max(level(v) for v in graph)


if __name__ == "__main__":
    g = import_graph()
    print(f"{len(g)} modules, {sum(len(t) for t in g.values())} imports, {depth(g)} levels")
    print("circles:", circles(g))
    for a, targets in sorted(g.items()):
        for b in sorted(targets):
            if layer(b) < layer(a):
                print("upward:", a, "->", b)
    print("no layer:", [m for m in g if layer(m) < 0])
