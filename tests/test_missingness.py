"""Tests for the ul4m4.missingness package: one public API over its modules, examples that run."""

from __future__ import annotations

import doctest

import pytest

import ul4m4.missingness as missingness
from ul4m4.missingness import config, masks, protocols, report

MODULES = (protocols, config, masks, report)


def test_every_public_name_is_the_object_of_the_module_that_owns_it():
    # The public import paths (ul4m4.missingness.independent_mask, ...) stay those of the
    # single module the package replaced, and each name has exactly one owner.
    owners = {
        name: [m.__name__ for m in MODULES if name in m.__all__] for name in missingness.__all__
    }
    assert all(len(found) == 1 for found in owners.values()), owners
    for name, (owner,) in owners.items():
        module = next(m for m in MODULES if m.__name__ == owner)
        assert getattr(missingness, name) is getattr(module, name), name


@pytest.mark.parametrize("module", (missingness, *MODULES), ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
