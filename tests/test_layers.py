"""Import layering of ``ul4m4``, checked statically (see ``tests/_imports.py`` for the model).

1. no import cycle among first-party modules;
2. no private name (``_name``, not a dunder) imported from another first-party module,
   except from ``ul4m4._kernels`` and the modules of ``ul4m4._utils``;
3. no function-local first-party import in the core (``ul4m4/*.py`` and
   ``ul4m4/backends/``): lazy loading of optional third-party dependencies is fine,
   and the engine registry loads engines with :func:`importlib.import_module`;
4. imports point down the tiers of ``tests/_tiers.py`` (bottom <- engines <- drivers <-
   estimator <- side), every module is listed there, and a side module takes from the
   core only names of the imported module's ``__all__``.

``python scripts/import_report.py`` prints the same findings for the current tree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _imports import INIT_NOTE, ImportGraph, core_modules
from _tiers import TIERS, non_public_uses, stale_entries, tier_of, unlisted, upward_imports


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph()


def test_no_import_cycles(graph):
    cycles = graph.cycles()
    groups = "\n".join(", ".join(c) for c in graph.components())
    chains = "\n\n".join(graph.describe_cycle(c) for c in cycles)
    assert not cycles, (
        f"import cycles among these modules (one line per strongly connected group):\n"
        f"{groups}\n\n{INIT_NOTE}\n\n{len(cycles)} cycles that together use every edge "
        f"of those groups, each a chain with the file:line of every edge:\n\n{chains}"
    )


def test_no_private_names_imported_across_modules(graph):
    found = [
        f"{graph.modules[p.source].where(p.line)}: {p.target}.{p.name} ({p.how})"
        for p in graph.private_imports()
    ]
    assert not found, (
        "private names of other first-party modules are used; make the name public where "
        "it lives or move it to where it belongs:\n" + "\n".join(found)
    )


def test_no_function_local_first_party_imports_in_core(graph):
    found = [
        f"{graph.where(e)}: {e.source} imports {e.target}"
        for e in graph.local_imports(core_modules(graph))
    ]
    assert not found, (
        "function-local first-party imports in the core (import at module level; "
        "a lazy engine is loaded by the registry in ul4m4/backends/__init__.py):\n"
        + "\n".join(found)
    )


def test_every_module_is_in_a_tier(graph):
    missing = unlisted(graph)
    assert not missing, "modules missing from the tier table:\n" + "\n".join(missing)
    stale = stale_entries(graph)
    assert not stale, "entries that name no module:\n" + "\n".join(stale)


def test_imports_point_down_the_tiers(graph):
    found = upward_imports(graph)
    assert not found, (
        f"imports of a higher tier ({' <- '.join(TIERS)}; tests/_tiers.py): move the code "
        "to the tier it belongs to, or pass the object in from above:\n" + "\n".join(found)
    )


def test_side_modules_use_public_names_of_the_core(graph):
    found = non_public_uses(graph)
    assert not found, (
        "side modules use names that the core module does not export; add the name to "
        "that module's __all__ if it belongs to the API, else use a public function:\n"
        + "\n".join(found)
    )


# ------------------------------------------------------------ the analysis itself


def _package(root: Path, files: dict[str, str]) -> ImportGraph:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return ImportGraph(root, "pkg")


def test_analysis_resolves_imports_and_skips_type_checking(tmp_path):
    graph = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": """
            from typing import TYPE_CHECKING
            import typing
            from . import b
            from .sub import thing
            if TYPE_CHECKING:
                from .c import C
            if typing.TYPE_CHECKING:
                import pkg.c
            def f():
                from .c import helper
        """,
        "pkg/b.py": "",
        "pkg/c.py": "",
        "pkg/sub/__init__.py": "thing = 1",
        "pkg/sub/deep.py": "from ..b import x\nimport pkg.sub.deep as me\n",
    })
    assert graph.succ["pkg.a"] == {"pkg.b", "pkg.sub", "pkg.c"}
    assert [e.line for e in graph.local_imports(["pkg.a"])] == [11]
    # pkg.sub.deep's enclosing packages are already being imported: no edge to them
    assert graph.succ["pkg.sub.deep"] == {"pkg.b", "pkg.sub.deep"}
    assert graph.components() == [["pkg.sub.deep"]]  # a self-loop is a cycle


def test_analysis_reports_cycles_through_package_inits(tmp_path):
    graph = _package(tmp_path, {
        "pkg/__init__.py": "from .x import X\n",
        "pkg/x.py": "from .other.y import Y\n",
        "pkg/other/__init__.py": "from ..x import X\n",
        "pkg/other/y.py": "",
    })
    assert graph.components() == [["pkg.other", "pkg.x"]]
    (cycle,) = graph.cycles()
    text = graph.describe_cycle(cycle)
    assert "pkg/x.py:1" in text and "implicit package import" in text
    assert "pkg/other/__init__.py:1" in text


def test_analysis_finds_private_names(tmp_path):
    graph = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/_kernels.pyx": "",
        "pkg/_utils/__init__.py": "",
        "pkg/_utils/text.py": "",
        "pkg/_raw.py": "Public = 1\n_hidden = 2\n",
        "pkg/m.py": """
            from . import _raw
            from . import _kernels
            from ._raw import Public, _hidden
            from ._kernels import _fast
            from ._utils.text import _shared
            from .n import __version__
            import pkg.n as n
            n._private()
            n.public._inner
            _raw._hidden
        """,
        "pkg/n.py": "",
    })
    found = [(p.target, p.name, p.line, p.how) for p in graph.private_imports()]
    assert found == [
        ("pkg._raw", "_hidden", 4, "from-import"),
        ("pkg.n", "_private", 9, "attribute"),
        ("pkg._raw", "_hidden", 11, "attribute"),
    ]


_TOY_TIERS = {"low": ("", "base", "kern", "util.*"), "mid": ("engine",), "side": ("app",)}
_TOY_API = {"base": ("Base", "Other"), "engine": None}


def test_tier_checks_find_upward_imports_unlisted_modules_and_private_api(tmp_path):
    graph = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/base.py": """
            from typing import TYPE_CHECKING
            __all__ = ["Base", "helper"]
            Base = helper = Other = 1
            if TYPE_CHECKING:
                from .app import App
            def f():
                from .engine import run
        """,
        "pkg/kern.py": "__all__ = ['k']\nk = 1\n",
        "pkg/util/__init__.py": "",
        "pkg/util/text.py": "from ..engine import run\n",
        "pkg/engine.py": "from .base import Base\nrun = 1\n",
        "pkg/app.py": """
            from . import base
            from .base import Base, helper, Other
            from .engine import run
            from .kern import k
            base.helper
            base.Base
        """,
        "pkg/extra.py": "",
    })
    assert tier_of("pkg", "pkg", _TOY_TIERS) == "low"
    assert tier_of("pkg.util.text", "pkg", _TOY_TIERS) == "low"
    assert tier_of("pkg.extra", "pkg", _TOY_TIERS) is None
    assert stale_entries(graph, _TOY_TIERS, {**_TOY_API, "gone.*": None}) == [
        "tests/_tiers.py (CORE_API): 'gone.*' names no module of pkg; remove or rename it"
    ]
    (missing,) = unlisted(graph, _TOY_TIERS)
    assert missing.startswith("pkg/extra.py:1: pkg.extra is in no tier; add it to tests/_tiers.py")
    assert upward_imports(graph, _TOY_TIERS) == [
        "pkg/base.py:8: pkg.base (low) imports pkg.engine (mid)",  # function-local counts
        "pkg/util/text.py:1: pkg.util.text (low) imports pkg.engine (mid)",
    ]  # the TYPE_CHECKING import of pkg.app does not count
    api = "tests/_tiers.py (CORE_API)"
    assert non_public_uses(graph, _TOY_TIERS, _TOY_API) == [
        "pkg/app.py:3: pkg.app uses pkg.base.Other (from-import), not in its __all__",
        f"pkg/app.py:3: pkg.app uses pkg.base.helper (from-import), not among the names of "
        f"'base' in {api}",
        "pkg/app.py:4: pkg.app uses pkg.engine.run (from-import), which has no __all__",
        f"pkg/app.py:5: pkg.app uses pkg.kern.k (from-import), pkg.kern is not in the core's "
        f"API for side modules ({api})",
        f"pkg/app.py:6: pkg.app uses pkg.base.helper (attribute), not among the names of "
        f"'base' in {api}",
    ]
