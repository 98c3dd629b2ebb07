"""Report import cycles and imports up the layer order among pec/ and flows/ (exit 1 if any).

Layers, lowest first: maths -> runs -> backends -> jobs -> iteration -> evaluation ->
presentation -> flows (pec.errors and pec.faults sit below them all). A module may import its
own layer and the layers below; an import of a higher layer is reported unless it is one of
the named exceptions in `ALLOWED_UPWARD`, each justified in the README's layout section.

Every import counts, also one inside a function: a lazy import hides a cycle or an upward
arrow from Python, not from a reader. Run from the repository root:
`python scripts/import_cycles.py`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("pec", "flows")
LAYERS = (
    "pec.maths",
    "pec.runs",
    "pec.backends",
    "pec.jobs",
    "pec.iteration",
    "pec.evaluation",
    "pec.presentation",
    "flows",
)
# (importer, imported): upward imports kept on purpose; README.md, "Layout", says why.
ALLOWED_UPWARD: frozenset[tuple[str, str]] = frozenset(
    {
        # backend_settings are validated with the config, by the chosen backend's own model
        ("pec.runs.config", "pec.backends.registry"),
    }
)


def layer(name: str) -> int:
    """Rank of a module's layer; -1 for the shared base (pec, pec.errors, pec.faults)."""
    for rank, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return -1


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where the imported module's layer is above the importer's."""
    return sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if layer(target) > layer(name) and name != "pec"
    )


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The known modules `path` imports (a `from a import b` names a.b if that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def main() -> int:
    files = [p for pkg in PACKAGES for p in sorted(Path(pkg).rglob("*.py"))]
    names = {module_name(p): p for p in files}
    known = set(names)
    graph = {}
    for name, path in names.items():
        # a package's __init__ importing its own submodules is not a cycle with them
        graph[name] = {
            m
            for m in imported_modules(path, name, known)
            if not (path.name == "__init__.py" and m.startswith(name + "."))
        }
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle: " + " <-> ".join(cycle))
    upward = [pair for pair in upward_imports(graph) if pair not in ALLOWED_UPWARD]
    for importer, imported in upward:
        print(f"import up the layers: {importer} ({LAYERS[layer(importer)]}) -> {imported}")
    stale = sorted(ALLOWED_UPWARD - set(upward_imports(graph)))
    for importer, imported in stale:
        print(f"allowed upward import no longer made (drop it): {importer} -> {imported}")
    print(
        f"{len(names)} modules, {len(cycles)} import cycle(s), "
        f"{len(upward)} upward import(s) ({len(ALLOWED_UPWARD)} allowed)"
    )
    return 1 if cycles or upward or stale else 0


if __name__ == "__main__":
    sys.exit(main())
