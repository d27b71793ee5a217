"""benchmarks/: the shared helpers live once in _common.py and the scripts import no cycle.

Static (``ast``): no benchmark is run or imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SHARED = ("cpu_model", "fmt_time", "print_table", "gemm_seconds")


def _scripts() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(BENCH.glob("*.py"))}


def test_shared_helpers_are_defined_once_in_common():
    found = sorted(
        f"benchmarks/{name}.py:{node.lineno}: {node.name}"
        for name, tree in _scripts().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in SHARED and name != "_common"
    )
    assert not found, "import these from benchmarks/_common.py instead:\n" + "\n".join(found)
    common = {n.name for n in _scripts()["_common"].body if isinstance(n, ast.FunctionDef)}
    assert set(SHARED) <= common


def test_benchmark_scripts_import_no_cycle():
    scripts = _scripts()
    imports: dict[str, set[str]] = {name: set() for name in scripts}
    for name, tree in scripts.items():
        for node in ast.walk(tree):  # function-local imports count
            if isinstance(node, ast.Import):
                imports[name] |= {a.name for a in node.names if a.name in scripts}
            elif isinstance(node, ast.ImportFrom) and node.module in scripts:
                imports[name].add(node.module)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in imports[start] - seen:
            if nxt == goal or reaches(nxt, goal, seen | {nxt}):
                return True
        return False

    cyclic = sorted(name for name in scripts if reaches(name, name, set()))
    assert not cyclic, f"benchmark scripts that import themselves through others: {cyclic}"
