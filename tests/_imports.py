"""Static analysis of the first-party imports of the ``ul4m4`` package.

Used by ``tests/test_layers.py`` and ``scripts/import_report.py``. Only the standard
library (:mod:`ast`) is used; no module of ``ul4m4`` is imported.

Model
-----
* Every ``ul4m4/**/*.py`` file is a module; a ``.pyx`` file (``ul4m4._kernels``) is
  a module with no imports of its own.
* An ``import`` or ``from ... import`` statement counts wherever it runs: at module
  level, in a class body or in a function. Statements in the body of
  ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``) never run and do not count.
* ``from P import name`` imports the module ``P.name`` when that is a module, else
  the module ``P``.
* Package ``__init__`` modules: importing ``ul4m4.a.b`` also runs ``ul4m4/__init__``
  and ``ul4m4/a/__init__``. A module's own enclosing packages are already being
  imported when the module runs, so those implicit edges are dropped; an implicit
  edge to any *other* package is kept (``ul4m4.x.m`` importing ``ul4m4.a.b`` depends
  on ``ul4m4.a``). An explicit import of an enclosing package (``from . import name``
  where ``name`` is defined in the ``__init__``) is an ordinary edge.
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ul4m4"

#: Modules (relative to the package) whose private names anyone may import: the kernels.
PRIVATE_OK = ("_kernels",)
#: Packages (relative to the package) whose modules' private names anyone may import.
PRIVATE_OK_PACKAGES = ("_utils",)

#: How package ``__init__`` modules enter the graph, for failure messages.
INIT_NOTE = (
    "A package __init__ is a node like any module. Importing a.b.c also runs the "
    "__init__ of a and a.b: that edge is kept (marked 'implicit package import') "
    "unless the package encloses the importing module, which is then already being "
    "imported. An explicit import of an enclosing package (from . import name) counts."
)


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, file, whether it is a package, and root."""

    name: str
    path: Path
    is_package: bool
    root: Path = ROOT

    def where(self, line: int) -> str:
        """``path:line`` relative to the repository root."""
        return f"{self.path.relative_to(self.root).as_posix()}:{line}"


@dataclass(frozen=True)
class Edge:
    """One first-party import: ``source`` imports ``target`` at ``line``.

    ``names`` are the names the statement takes from ``target`` (empty for
    ``import x``); ``local`` is true inside a function body; ``implicit`` is true
    for the edge to a package ``__init__`` that importing a submodule runs.
    """

    source: str
    target: str
    line: int
    names: tuple[str, ...]
    local: bool
    implicit: bool = False


@dataclass(frozen=True)
class NameUse:
    """A name of another first-party module, taken at ``source:line`` (``from`` or attribute)."""

    source: str
    target: str
    name: str
    line: int
    how: str  # "from-import" or "attribute"


@dataclass(frozen=True)
class PrivateUse:
    """A private name of another first-party module used at ``source:line``."""

    source: str
    target: str
    name: str
    line: int
    how: str  # "from-import" or "attribute"


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of a file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``package`` (``.py`` files and ``.pyx`` extensions), by name."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")) + sorted((root / package).rglob("*.pyx")):
        name = module_name(path, root)
        if name not in modules:
            modules[name] = Module(name, path, path.name == "__init__.py", root)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _statements(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node that runs, with whether it is inside a function body."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, local = stack.pop()
        yield node, local
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: Iterable[ast.AST] = node.orelse
        else:
            children = ast.iter_child_nodes(node)
        inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack.extend((child, inner) for child in children)


def _base(module: Module, level: int, target: str | None) -> str:
    """Absolute module name of a (possibly relative) ``from`` import."""
    if level == 0:
        return target or ""
    parts = module.name.split(".")
    if not module.is_package:
        parts.pop()
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _first_party(name: str, package: str = PACKAGE) -> bool:
    return name == package or name.startswith(package + ".")


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class ModuleImports:
    """The first-party imports and private-name uses of one module."""

    def __init__(self, module: Module, modules: dict[str, Module], package: str = PACKAGE) -> None:
        self.module = module
        self.modules = modules
        self.package = package
        self.edges: list[Edge] = []
        self.private: list[PrivateUse] = []
        self.uses: list[NameUse] = []
        self.aliases: dict[str, str] = {}
        if module.path.suffix == ".py":
            self._scan(ast.parse(module.path.read_text(), str(module.path)))

    def _scan(self, tree: ast.AST) -> None:
        attributes = []
        for node, local in _statements(tree):
            if isinstance(node, ast.Import):
                self._import(node, local)
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node, local)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attributes.append(node)
        for node in attributes:
            self._attribute(node)

    def _add(self, target: str, line: int, names: tuple[str, ...], local: bool) -> None:
        own = set(_parents(self.module.name))
        for parent in _parents(target):
            if parent not in own and parent != self.module.name:
                self.edges.append(Edge(self.module.name, parent, line, (), local, True))
        self.edges.append(Edge(self.module.name, target, line, names, local))

    def _import(self, node: ast.Import, local: bool) -> None:
        for alias in node.names:
            if not _first_party(alias.name, self.package):
                continue
            self._add(alias.name, node.lineno, (), local)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def _import_from(self, node: ast.ImportFrom, local: bool) -> None:
        base = _base(self.module, node.level, node.module)
        if not _first_party(base, self.package):
            return
        plain = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.modules:
                self._add(submodule, node.lineno, (), local)
                self.aliases[alias.asname or alias.name] = submodule
            else:
                plain.append(alias.name)
                self._use(base, alias.name, node.lineno, "from-import")
        if plain:
            self._add(base, node.lineno, tuple(plain), local)

    def _attribute(self, node: ast.Attribute) -> None:
        chain = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in self.aliases:
            return
        target = self.aliases[value.id]
        chain.reverse()
        while len(chain) > 1 and f"{target}.{chain[0]}" in self.modules:
            target = f"{target}.{chain.pop(0)}"
        if len(chain) == 1:  # the outermost attribute only, so each use counts once
            self._use(target, chain[0], node.lineno, "attribute")

    def _use(self, target: str, name: str, line: int, how: str) -> None:
        if name != "*" and target != self.module.name and f"{target}.{name}" not in self.modules:
            self.uses.append(NameUse(self.module.name, target, name, line, how))
        self._private(target, name, line, how)

    def _private(self, target: str, name: str, line: int, how: str) -> None:
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            return
        if target == self.module.name:
            return
        if any(target == f"{self.package}.{p}" for p in PRIVATE_OK):
            return
        if any(_first_party(target, f"{self.package}.{p}") for p in PRIVATE_OK_PACKAGES):
            return
        if f"{target}.{name}" in self.modules:  # a private module, not a private name
            return
        self.private.append(PrivateUse(self.module.name, target, name, line, how))


class ImportGraph:
    """The first-party import graph of the package at run time.

    Parameters
    ----------
    root : Path
        The repository root (the folder that holds the package).
    package : str
        The top-level package name.
    """

    def __init__(self, root: Path = ROOT, package: str = PACKAGE) -> None:
        self.root = root
        self.package = package
        self.modules = discover(root, package)
        self.scans = {n: ModuleImports(m, self.modules, package) for n, m in self.modules.items()}
        self.edges = sorted(
            (e for s in self.scans.values() for e in s.edges if e.target in self.modules),
            key=lambda e: (e.source, e.line, e.target),
        )
        self.by_pair: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        for edge in self.edges:
            self.by_pair[edge.source, edge.target].append(edge)
        self.succ: dict[str, set[str]] = {name: set() for name in self.modules}
        for source, target in self.by_pair:
            self.succ[source].add(target)

    def where(self, edge: Edge) -> str:
        """``path:line`` of an edge."""
        return self.modules[edge.source].where(edge.line)

    def components(self) -> list[list[str]]:
        """Strongly connected components with a cycle (size > 1, or a self-loop)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def visit(node: str) -> None:  # Tarjan; the package is small, recursion is fine
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            for nxt in sorted(self.succ[node]):
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) > 1 or node in self.succ[node]:
                    found.append(sorted(members))

        for name in sorted(self.modules):
            if name not in index:
                visit(name)
        return sorted(found)

    def _path(self, start: str, goal: str, within: set[str]) -> list[str]:
        """A shortest path ``start -> ... -> goal`` inside ``within``."""
        before: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                break
            for nxt in sorted(self.succ[node] & within):
                if nxt not in before:
                    before[nxt] = node
                    queue.append(nxt)
        path = [goal]
        while before[path[-1]] is not None:
            path.append(before[path[-1]])  # type: ignore[arg-type]
        return path[::-1]

    def cycles(self) -> list[list[str]]:
        """Simple cycles that together use every edge of every cyclic component.

        Each cycle is a list of module names whose last element equals its first.
        """
        result = []
        seen = set()
        for members in self.components():
            within = set(members)
            for source in members:
                for target in sorted(self.succ[source] & within):
                    back = self._path(target, source, within) if target != source else [source]
                    ring = [source, *back][:-1]
                    first = ring.index(min(ring))
                    key = tuple(ring[first:] + ring[:first])
                    if key not in seen:
                        seen.add(key)
                        result.append(list(key) + [key[0]])
        return result

    def describe_cycle(self, cycle: list[str]) -> str:
        """A cycle as a chain ``a -> b (file:line) -> ...``, one edge a line."""
        lines = [cycle[0]]
        for source, target in zip(cycle, cycle[1:], strict=False):
            edges = self.by_pair[source, target]
            where = ", ".join(self.where(e) for e in edges)
            kinds = {"implicit package import" if e.implicit else "local" if e.local else ""
                     for e in edges} - {""}
            note = f" [{', '.join(sorted(kinds))}]" if kinds else ""
            lines.append(f"  -> {target}  ({where}){note}")
        return "\n".join(lines)

    def name_uses(self) -> list[NameUse]:
        """Every name taken from another first-party module (not a submodule)."""
        return sorted(
            (u for s in self.scans.values() for u in s.uses if u.target in self.modules),
            key=lambda u: (u.source, u.line, u.name),
        )

    def private_imports(self) -> list[PrivateUse]:
        """Every use of another first-party module's private name."""
        return sorted(
            (p for s in self.scans.values() for p in s.private),
            key=lambda p: (p.source, p.line, p.name),
        )

    def local_imports(self, modules: Iterable[str]) -> list[Edge]:
        """Explicit first-party imports inside function bodies of ``modules``."""
        wanted = set(modules)
        return sorted(
            {e for e in self.edges if e.local and not e.implicit and e.source in wanted},
            key=lambda e: (e.source, e.line, e.target),
        )


def public_names(module: Module) -> frozenset[str] | None:
    """The names of a module's literal ``__all__`` (``None`` when it has none).

    ``__all__ = [...]``, ``__all__: list[str] = [...]`` and ``__all__ += [...]`` at
    module level count; anything computed is not read.
    """
    if module.path.suffix != ".py":
        return None
    found: set[str] | None = None
    for node in ast.parse(module.path.read_text(), str(module.path)).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if isinstance(value, ast.List | ast.Tuple):
            names = {e.value for e in value.elts if isinstance(e, ast.Constant)}
            found = (found or set()) | names if isinstance(node, ast.AugAssign) else names
    return None if found is None else frozenset(found)


def core_modules(graph: ImportGraph) -> list[str]:
    """The core: the package's top-level ``.py`` modules and the ``backends`` package."""
    top = graph.root / graph.package
    backends = f"{graph.package}.backends"
    return sorted(
        name
        for name, module in graph.modules.items()
        if module.path.suffix == ".py"
        and (module.path.parent == top or _first_party(name, backends))
    )


def line_count(module: Module) -> int:
    """Number of lines of a module's file."""
    return len(module.path.read_text().splitlines())
