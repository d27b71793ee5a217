"""The README's Python examples run as written."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from ul4m4.parameters import PARAMETERS

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(block, str(README), "exec"), namespace)
    # the README's defaults need no warning: a reader could not act on one
    assert [str(w.message) for w in caught] == []
    # what an example prints is quoted in the README text after it
    for line in capsys.readouterr().out.splitlines():
        assert f"`{line}`" in README.read_text(), line
    if "X_test_full" in namespace:
        assert not any(np.isnan(a).any() for a in namespace["X_test_full"].values())
        for name, a in namespace["imp2"].transform(namespace["X_test"]).items():
            np.testing.assert_array_equal(a, namespace["X_test_full"][name])


def test_the_interface_signature_is_the_parameter_table():
    # The README spells the estimator's signature out; it must not drift from the table.
    text = re.search(r"`UL4M4Imputer\((.*?)\)`", README.read_text(), flags=re.S).group(1)
    spelled = ast.parse(f"def f({' '.join(text.split())}): pass").body[0].args
    names = [a.arg for a in spelled.args + spelled.kwonlyargs]
    defaults = spelled.defaults + spelled.kw_defaults
    assert sorted(names) == sorted(PARAMETERS)
    for name, default in zip(names, defaults, strict=True):
        value = eval(compile(ast.Expression(default), "README", "eval"), {"numpy": np})
        assert value == PARAMETERS[name].default, name
        assert type(value) is type(PARAMETERS[name].default), name
