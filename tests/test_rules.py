"""ul4m4.rules: a new completion rule is one class plus one registry line.

The rule below lives in this test file and is registered with one line; the
estimator, the ensemble averaging, shrinkage and model files take it as they take
the built-in rules, with no other change to the library.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from _data import clustered

from ul4m4 import UL4M4Imputer
from ul4m4.complete import FROM_MEAN
from ul4m4.rules import COMPLETION_RULES, FillTask


class LowestCentre:
    """Fill each missing block from the lowest-numbered centre that carries it."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        for m in modalities:
            missing = ~task.view.mask[:, m]
            carriers = np.flatnonzero(task.plan.centers.mask[:, m])
            source = int(carriers[0]) if carriers.size else FROM_MEAN
            task.sources[missing, m] = source
            task.weights[missing, m] = 1.0
            if source >= 0:
                task.filled[m][missing] = task.raw_centers[m][source]


def test_a_rule_registered_with_one_line_runs_everywhere(monkeypatch, tmp_path):
    monkeypatch.setitem(COMPLETION_RULES, "lowest", LowestCentre())  # the registry line
    X, _ = clustered(seed=1)
    imp = UL4M4Imputer(5, random_state=0).fit(X)
    names = imp.modalities_
    imp.model_ = dataclasses.replace(imp.model_, completion=["lowest", "greedy", "lowest"])
    filled, sources = imp.transform(X, return_sources=True)
    for m, name in enumerate(names):
        missing = np.isnan(X[name]).all(axis=1)
        assert not np.isnan(filled[name]).any()
        if imp.model_.completion[m] == "lowest":
            j = int(np.flatnonzero(imp.center_modalities_[:, m])[0])
            assert (sources[name][missing] == j).all()
            np.testing.assert_array_equal(filled[name][missing],
                                          np.broadcast_to(imp.cluster_centers_[name][j],
                                                          filled[name][missing].shape))
    imp.save(tmp_path / "lowest.ul4m4")  # model files accept the registered name
    back = UL4M4Imputer.load(tmp_path / "lowest.ul4m4")
    assert back.completion_ == dict(zip(names, ["lowest", "greedy", "lowest"], strict=True))
    for name, values in back.transform(X).items():
        np.testing.assert_array_equal(values, filled[name])
