"""One parameter table: both estimators' signatures and docs come from it, and the backend
list from the backend registry."""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import inspect
import re

import numpy as np
import pytest
from _reference_engine import ReferenceEngine

import ul4m4.backends
import ul4m4.engine
import ul4m4.parameters
import ul4m4.settings as settings_module
from ul4m4 import ModalityImputer, UL4M4Imputer
from ul4m4._utils.validation import Options
from ul4m4.backends import AsGiven
from ul4m4.engine import ChunkedEngine, Engine
from ul4m4.files_cli import imputer_params
from ul4m4.parameters import ENGINES, PARAMETERS, Backend, parameter_docs


def _documented(cls: type) -> dict[str, str]:
    """``name -> "kind, default=..."`` of the Parameters section of ``cls``' docstring."""
    doc = inspect.getdoc(cls)
    section = doc.split("Parameters\n----------\n", 1)[1].split("\nAttributes\n", 1)[0]
    found = {}
    for line in section.splitlines():
        match = re.fullmatch(r"(\w+(?:, \w+)*) : (.+)", line)
        if match:
            for name in match.group(1).split(", "):
                found[name] = match.group(2)
    return found


@pytest.mark.parametrize("cls", [UL4M4Imputer, ModalityImputer])
def test_every_parameter_of_the_table_is_documented_with_its_allowed_values(cls):
    documented = _documented(cls)
    for name, parameter in PARAMETERS.items():
        assert documented.get(name) == parameter.header(name).split(" : ", 1)[1], name
        # The values the check accepts by name are the ones the docs list.
        for constraint in parameter.allowed:
            if isinstance(constraint, Options):
                for value in constraint.values:
                    shown = "None" if value is None else f'"{value}"'
                    assert shown in documented[name], (name, value)


def test_the_adapter_documents_n_clusters_auto():
    # It had drifted to "n_clusters : int, default=8".
    assert _documented(ModalityImputer)["n_clusters"] == 'int or "auto", default=8'
    assert ModalityImputer(n_clusters="auto").get_params()["n_clusters"] == "auto"


@pytest.mark.parametrize("cls, extra", [(UL4M4Imputer, set()),
                                        (ModalityImputer, {"modalities", "add_indicator"})])
def test_signatures_come_from_the_table(cls, extra):
    signature = inspect.signature(cls)
    assert set(signature.parameters) == set(PARAMETERS) | extra
    for name, parameter in PARAMETERS.items():
        given = signature.parameters[name]
        assert given.default == parameter.default, name
        assert type(given.default) is type(parameter.default), name
        assert _same_code(given.annotation, parameter.annotation), name
    assert set(cls().get_params()) == set(PARAMETERS) | extra
    with pytest.raises(TypeError, match="n_cluster"):
        cls(n_cluster=3)


def _same_code(a: str, b: str) -> bool:
    return ast.unparse(ast.parse(a)) == ast.unparse(ast.parse(b))


def test_the_written_out_estimator_signature_is_the_table_in_order():
    # UL4M4Imputer spells its __init__ out for IDEs and type checkers: same names,
    # order, kinds and defaults as the table (n_clusters alone by position).
    parameters = list(inspect.signature(UL4M4Imputer).parameters.values())
    assert [p.name for p in parameters] == list(PARAMETERS)
    assert [p.kind for p in parameters] == (
        [inspect.Parameter.POSITIONAL_OR_KEYWORD]
        + [inspect.Parameter.KEYWORD_ONLY] * (len(PARAMETERS) - 1))


def test_parameter_docs_render_the_table():
    text = parameter_docs({"k_grid": PARAMETERS["k_grid"]}, indent=0)
    assert text.splitlines()[0] == "k_grid : tuple of int, default=(4, 8, 16, 32, 64)"


# ------------------------------------------------------------------- backends
def _data():
    rng = np.random.default_rng(0)
    X = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 4))}
    X["b"][:20] = np.nan
    return X


@pytest.fixture
def fake_backend(monkeypatch):
    """A backend registered by one line: the NumPy engine under another name."""
    monkeypatch.setitem(ENGINES, "fake", Backend(
        "ul4m4.backends.numpy_engine:NumpyEngine", cpu_only="the fake backend runs on the CPU"))
    return "fake"


def test_a_registered_backend_is_accepted_everywhere(fake_backend):
    X = _data()
    ours = UL4M4Imputer(3, random_state=0, backend=fake_backend).fit(X)
    numpy = UL4M4Imputer(3, random_state=0).fit(X)
    np.testing.assert_array_equal(ours.labels_, numpy.labels_)
    for name, filled in ours.transform(X).items():
        np.testing.assert_array_equal(filled, numpy.transform(X)[name])
    adapter = ModalityImputer({"a": slice(0, 3), "b": slice(3, 7)}, n_clusters=3,
                              backend=fake_backend).fit(np.hstack([X["a"], X["b"]]))
    assert adapter.imputer_.backend == fake_backend
    assert imputer_params([f"backend={fake_backend}"], verbose=0)["backend"] == fake_backend
    # Its device rule is its registry entry's.
    with pytest.raises(ValueError, match="needs backend='torch'; the fake backend runs"):
        UL4M4Imputer(backend=fake_backend, device="cuda").fit(X)


_READER = """
from ul4m4.validation import read_arrays

calls = []


def read(X, *, names=None, dims=None):
    calls.append((names, dims))
    return read_arrays({name: X[name] * 1.0 for name in X}, names=names, dims=dims)
"""


def test_a_registered_reader_reads_the_input_and_the_one_scan_checks_what_it_read(
        tmp_path, monkeypatch):
    # A backend reading its input its own way is its module plus one registry line
    # naming its reader; the engine has no part in it.
    (tmp_path / "reading_backend.py").write_text(_READER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ENGINES, "reading", Backend(
        "ul4m4.backends.numpy_engine:NumpyEngine", reader="reading_backend:read"))
    calls = importlib.import_module("reading_backend").calls
    X = _data()
    ours = UL4M4Imputer(3, random_state=0, backend="reading").fit(X)
    filled = ours.transform(X)
    assert calls == [(None, None), (["a", "b"], {"a": 3, "b": 4})]
    numpy = UL4M4Imputer(3, random_state=0).fit(X)
    for name, value in numpy.transform(X).items():
        assert filled[name].tobytes() == value.tobytes()
    X["b"][40, 1] = np.inf
    with pytest.raises(ValueError, match="modality 'b'.*inf"):
        ours.transform(X)
    assert len(calls) == 3


def test_an_unregistered_backend_is_refused_with_the_registered_names():
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'torch', 'dask'\)"
                                         r", got 'fake'"):
        UL4M4Imputer(backend="fake").fit(_data())


@pytest.mark.parametrize("backend", ["numpy", "dask"])
def test_cpu_only_backends_refuse_a_device_at_the_parameter_check(backend):
    with pytest.raises(ValueError, match="device='cuda:1' needs backend='torch'"):
        UL4M4Imputer(backend=backend, device="cuda:1").fit(_data())


def test_the_engine_protocol_has_no_input_conversion():
    engines = [Engine, ChunkedEngine, ReferenceEngine]
    if importlib.util.find_spec("dask") is not None:
        engines.append(importlib.import_module("ul4m4.backends.dask").DaskEngine)
    for cls in engines:
        # Reading the input is the backend's reader's (Backend.reader), not the engine's.
        assert not {"to_host", "for_input", "check_input"} & set(dir(cls)), cls
    # The output converter of input read as given is the backends' AsGiven.
    assert not hasattr(ul4m4.engine, "Identity")
    result = {"a": np.ones(2)}
    assert AsGiven().wrap(result) is result


# ------------------------------------------------------------ checked once
class _CountingInit(dict):
    """Explicit init centres that count how often their modalities are read."""

    reads = 0

    def values(self):
        type(self).reads += 1
        return super().values()


def _init_reads(monkeypatch, **params) -> int:
    monkeypatch.setattr(_CountingInit, "reads", 0)
    X = _data()
    init = _CountingInit({"a": X["a"][[0, 30, 50]], "b": X["b"][[25, 30, 50]]})
    UL4M4Imputer(3, init=init, random_state=0, **params).fit(X)
    return _CountingInit.reads


def test_explicit_init_is_checked_once_per_fit_whatever_the_seedings(monkeypatch):
    once = _init_reads(monkeypatch)
    assert once >= 1
    # Every seeding starts from the same checked centres: n_init and ensemble members
    # read them no more often than one seeding does.
    assert _init_reads(monkeypatch, n_init=3) == once
    assert _init_reads(monkeypatch, n_ensemble=2) == once


def test_the_adapters_parameters_are_checked_once_per_fit(monkeypatch):
    checks = []
    real = settings_module.check_params
    monkeypatch.setattr(settings_module, "check_params",
                        lambda params, constraints: checks.append(set(constraints)) or real(
                            params, constraints))
    X = _data()
    adapter = ModalityImputer({"a": slice(0, 3), "b": slice(3, 7)}, n_clusters=3,
                              random_state=0)
    adapter.fit(np.hstack([X["a"], X["b"]]))
    adapter.transform(np.hstack([X["a"], X["b"]]))
    assert checks.count(set(PARAMETERS)) == 1


def test_a_parameter_set_after_fit_is_checked_once_where_it_acts(monkeypatch):
    X = _data()
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    checks = []
    real = settings_module.check_params
    monkeypatch.setattr(settings_module, "check_params",
                        lambda params, constraints: checks.append(set(constraints)) or real(
                            params, constraints))
    imp.transform(X)
    imp.predict(X)
    assert checks == []  # the settings of fit serve transform and predict
    imp.set_params(backend="nope")
    with pytest.raises(ValueError, match="backend must be one of"):
        imp.transform(X)
    imp.set_params(backend="numpy", n_jobs=1)
    imp.transform(X)
    imp.transform(X)
    assert checks.count(set(PARAMETERS)) == 2  # "nope" once, then n_jobs=1 once


@pytest.mark.parametrize("module", [ul4m4.parameters, ul4m4.backends])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
