"""docs/architecture.md stays true to the code: the files it names exist, every module
of the package is on the map, and its engine-protocol table is the protocol."""

from __future__ import annotations

import re
from pathlib import Path

from ul4m4.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGE = ROOT / "ul4m4"


def _named_paths() -> set[str]:
    """Backticked file and folder names of the doc (``model.py``, ``backends/dask/``)."""
    return {m for m in re.findall(r"`([\w/.*]+(?:\.py|/))`", DOC)}


def _exists(name: str) -> bool:
    for base in (PACKAGE, ROOT):
        if "*" in name and list(base.glob(name)):
            return True
        if (base / name).exists():
            return True
    return False


def _on_map(module: Path) -> bool:
    relative = module.relative_to(PACKAGE)
    names = _named_paths()
    # A module is on the map when the doc names it, or a folder above it.
    candidates = {str(relative)} | {str(p) + "/" for p in relative.parents if str(p) != "."}
    return bool(candidates & names) or module.stem.startswith("_kernels")


def test_every_file_the_map_names_exists():
    missing = sorted(name for name in _named_paths() if not _exists(name))
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_module_of_the_package_is_on_the_map():
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"
               and not (p.name == "__init__.py" and p.parent == PACKAGE)]
    off = sorted(str(p.relative_to(PACKAGE)) for p in modules if not _on_map(p))
    assert not off, f"modules docs/architecture.md does not place: {off}"


def test_the_protocol_table_is_the_engine_protocol():
    section = DOC.split("## The engine protocol", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)\(", section, flags=re.M))
    protocol = {name for name, value in vars(Engine).items()
                if callable(value) and not name.startswith("_")}
    assert documented == protocol
    assert f"Its protocol has {len(protocol)} methods" in section
