"""Print the first-party import layering of ``ul4m4``, as ``tests/test_layers.py`` sees it.

Usage::

    python scripts/import_report.py

Prints, for the current tree: the import cycles (each as a chain of modules with the
``file:line`` of every edge), the private names imported from other first-party
modules, the function-local first-party imports of the core modules, the tier of every
module with the imports against the tier direction, unlisted modules and side modules'
uses of the core beyond its listed API (``tests/_tiers.py``), and the line count of each
core module. The model of an import is described in ``tests/_imports.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _imports import ImportGraph, core_modules, line_count  # noqa: E402
from _tiers import (  # noqa: E402
    TIERS,
    non_public_uses,
    stale_entries,
    tier_of,
    unlisted,
    upward_imports,
)


def _section(title: str, lines: list[str]) -> None:
    print(f"{title} ({len(lines)})")
    for line in lines or ["none"]:
        print(f"  {line}")
    print()


def main() -> int:
    """Print the report; the exit status is 0."""
    graph = ImportGraph(ROOT)
    core = core_modules(graph)
    _section("Strongly connected components with a cycle", [", ".join(c) for c in graph.components()])
    cycles = [graph.describe_cycle(c).replace("\n", "\n  ") for c in graph.cycles()]
    _section("Import cycles (together they use every edge of those components)", cycles)
    _section(
        "Private names imported from other first-party modules",
        [
            f"{graph.modules[p.source].where(p.line)}  {p.target}.{p.name}  ({p.how})"
            for p in graph.private_imports()
        ],
    )
    _section(
        "Function-local first-party imports in the core",
        [f"{graph.where(e)}  {e.source} -> {e.target}" for e in graph.local_imports(core)],
    )
    _section(
        "Function-local first-party imports elsewhere",
        [
            f"{graph.where(e)}  {e.source} -> {e.target}"
            for e in graph.local_imports(set(graph.modules) - set(core))
        ],
    )
    _section(
        "Tiers (" + " <- ".join(TIERS) + ")",
        [
            f"{tier}: " + ", ".join(
                n for n in sorted(graph.modules) if tier_of(n, graph.package, TIERS) == tier
            )
            for tier in TIERS
        ],
    )
    _section("Imports against the tier direction", upward_imports(graph))
    _section("Modules in no tier, and table entries naming no module",
             unlisted(graph) + stale_entries(graph))
    _section("Side modules' uses of the core beyond its API", non_public_uses(graph))
    counts = sorted(((line_count(graph.modules[n]), n) for n in core), reverse=True)
    _section("Core module line counts", [f"{n:6d}  {name}" for n, name in counts])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
