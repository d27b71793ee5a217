"""Packaging: the py.typed marker ships, every public module declares __all__, one version."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

import ul4m4

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ul4m4"


def _public_modules() -> list[Path]:
    """Every .py of the package whose name, and whose folders' names, start with no '_'
    (``__init__.py`` of a public package counts as public)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if any(p.startswith("_") for p in parts[:-1]):
            continue
        if parts[-1].startswith("_") and parts[-1] != "__init__.py":
            continue
        found.append(path)
    return found


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING blocks, optional imports
            for child in ast.walk(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    names.update((a.asname or a.name).split(".")[0] for a in child.names)
                elif isinstance(child, ast.FunctionDef | ast.ClassDef):
                    names.add(child.name)
                elif isinstance(child, ast.Assign):
                    names.update(t.id for t in child.targets if isinstance(t, ast.Name))
    if "__getattr__" in names:  # lazy attributes: the string keys of a top-level table
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
                names.update(k.value for k in node.value.keys
                             if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return names


@pytest.mark.parametrize("path", _public_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_public_module_declares_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                and any(isinstance(t, ast.Name) and t.id == "__all__"
                        for t in (node.targets if isinstance(node, ast.Assign)
                                  else [node.target]))]
    assert declared, f"{path.name} has no __all__"
    value = ast.literal_eval(declared[0].value)
    missing = set(value) - _top_level_names(tree)
    assert not missing, f"{path.name}: __all__ names {sorted(missing)} are not defined"


def test_py_typed_ships():
    assert (PACKAGE / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["ul4m4"]


def test_one_version():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["version"] == ul4m4.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(ul4m4.__version__)}\b", changelog, re.M)
