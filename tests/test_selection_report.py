"""Readable model selection: repr, Markdown/DataFrame tables with standard errors, the rule,
the grid-edge note, the growth of the grid under ``n_clusters="auto"`` with a set
completion, and the ensembles of ``completion="auto"``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4.selection import MAX_GRID_EXTENSIONS, Selection, standard_error

DATA = Path(__file__).parent / "data"


def _shared(n=500, seed=0):
    """Two modalities driven by a smooth 3-d factor: more centres keep helping."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    X = {"a": z @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(n, 6)),
         "b": z @ rng.normal(size=(3, 4)) + 0.3 * rng.normal(size=(n, 4))}
    X["b"][: n // 4] = np.nan
    X["a"][n // 4: n // 2] = np.nan
    return X


@pytest.fixture(scope="module")
def fitted():
    return UL4M4Imputer("auto", completion="soft", k_grid=(2, 4, 8), random_state=0,
                        n_ensemble=1).fit(_shared())


@pytest.fixture(scope="module")
def ensemble():
    return UL4M4Imputer("auto", completion="auto", k_grid=(2, 4, 8), random_state=0
                        ).fit(_shared())


def test_ensemble_repr_summary_and_markdown_name_the_members(ensemble):
    sel = ensemble.selection_
    text = repr(sel)
    assert text.startswith("Selection(ensembles: a=[") and "\n" not in text
    assert f"rows={sel.n_rows}" in text and sel.n_rows == 500
    for name in ("a", "b"):
        weights = [w for _, w in sel.ensemble[name]]
        assert weights and all(w > 0 for w in weights)
        assert sum(weights) == pytest.approx(1 - sel.shrinkage[name])
        assert sel.completion[name] == "ensemble"
        assert sel.members(name)[0] in text
    md = sel.to_markdown()
    assert "| modality | ensemble | shrinkage | hidden-block MSE | calibration |" in md
    assert f"hidden in a subsample of {sel.n_rows} rows" in md
    # every chosen table row is bold in the columns of the modalities that use it
    assert md.count("**") == 2 * sum(len(sel.ensemble[n]) for n in ("a", "b"))
    assert "auto:" in sel.summary() and "hidden-block MSE" in sel.summary()
    # the ensemble scores are what the chosen mixes reach: at least as good as the best
    # single candidate's row, give or take the shrinkage grid
    for name in ("a", "b"):
        best_single = min(row[name] for row in sel.table[1:])
        assert sel.ensemble_scores[name][0] <= best_single + 1e-12


def test_ensemble_selection_round_trips(ensemble, tmp_path):
    ensemble.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4")
    assert loaded.selection_.to_markdown() == ensemble.selection_.to_markdown()
    assert repr(loaded.selection_) == repr(ensemble.selection_)
    X = _shared(seed=1)
    a, sa = ensemble.transform(X, return_std=True)
    b, sb = loaded.transform(X, return_std=True)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(sa[name], sb[name])


def test_repr_is_short(fitted):
    text = repr(fitted.selection_)
    assert text.startswith(f"Selection(k={fitted.n_clusters_}, completion={{a=")
    assert f"candidates={len(fitted.selection_.table)})" in text
    assert "\n" not in text and len(text) < 200


def test_standard_error_formula():
    errors = np.array([0.5, 1.0, 2.0, 4.0])
    assert standard_error(errors) == pytest.approx(errors.std(ddof=1) / 2)
    assert np.isnan(standard_error(np.array([1.0])))


def test_markdown_marks_chosen_rows_and_states_rule_and_edge(fitted):
    sel = fitted.selection_
    text = sel.to_markdown()
    assert "| chosen for |" in text and " ± " in text
    assert "replaces the mean only if it wins by more than 2 SE" in text
    chosen = [row for row in sel.table if sel.chosen_for(row)]
    assert {n for row in chosen for n in sel.chosen_for(row)} == {"a", "b"}
    assert all(row["n_clusters"] == sel.n_clusters for row in chosen)
    # the chosen cells are bold
    assert text.count("**") == 2 * 2
    if sel.n_clusters == max(sel.k_grid):
        assert f"Edge: the chosen k={sel.n_clusters} is the largest k scored" in text
    for row in sel.table:
        for name in ("a", "b"):
            assert row["se"][name] > 0


def test_frame_has_standard_errors_and_notes(fitted):
    pd = pytest.importorskip("pandas")
    frame = fitted.selection_.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["n_clusters", "method", "temperature", "shrinkage",
                                   "a", "a se", "b", "b se", "chosen_for"]
    assert len(frame) == len(fitted.selection_.table)
    chosen = frame[frame["chosen_for"] != ""]
    assert (chosen["n_clusters"] == fitted.n_clusters_).all()
    assert any("2 SE" in note for note in frame.attrs["notes"])


def test_edge_notes():
    row = {"n_clusters": 4, "method": "mean", "temperature": None, "shrinkage": 0.0, "x": 1.0}
    table = [row, {**row, "n_clusters": 8}]
    low = Selection(4, {"x": "mean"}, {"x": None}, table, {"x": 0.0}, k_grid=(4, 8))
    assert "smallest value of k_grid" in low.edge_note()
    top = Selection(8, {"x": "mean"}, {"x": None}, table, {"x": 0.0}, k_grid=(4, 8))
    assert "a larger k might score better" in top.edge_note()
    capped = Selection(8, {"x": "mean"}, {"x": None}, table, {"x": 0.0}, k_grid=(4, 8),
                       k_added=(8,), k_limit=100)
    assert "cap" in capped.edge_note()
    full = Selection(8, {"x": "mean"}, {"x": None}, table, {"x": 0.0}, k_grid=(4, 8),
                     k_added=(8,), k_limit=8)
    assert "largest the data allow" in full.edge_note()
    inside = Selection(8, {"x": "mean"}, {"x": None}, [*table, {**row, "n_clusters": 16}],
                       {"x": 0.0})
    assert inside.edge_note() is None
    assert Selection(4, {}, {}, []).to_markdown() == "(no selection was run)"


def test_auto_grows_the_grid_past_its_top_edge():
    X = _shared()
    kw = {"completion": "soft", "random_state": 0, "n_ensemble": 1}
    grown = UL4M4Imputer("auto", k_grid=(2, 4), **kw).fit(X)
    sel = grown.selection_
    # k=4 scores best among (2, 4) (a grid ending at 2 keeps k=2 inside) ...
    assert UL4M4Imputer("auto", k_grid=(1, 2, 4, 8), **kw).fit(X).n_clusters_ >= 4
    assert sel.k_added and sel.k_added[0] == 8  # ... so the grid grows by doubling
    assert sel.k_grid == (2, 4, *sel.k_added)
    assert len(sel.k_added) <= MAX_GRID_EXTENSIONS
    assert sel.n_clusters != max(sel.k_grid) or len(sel.k_added) == MAX_GRID_EXTENSIONS
    assert grown.n_clusters_ == sel.n_clusters
    assert {r["n_clusters"] for r in sel.table} == set(sel.k_grid)


def test_auto_extension_stops_at_n_samples():
    imp = UL4M4Imputer("auto", completion="soft", k_grid=(8, 16), random_state=0,
                       n_ensemble=1).fit(_shared(n=60))
    assert max(imp.selection_.k_grid) <= 60
    assert imp.selection_.k_limit == 60


def test_auto_adds_nothing_when_the_best_is_inside():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)  # three clusters: the best k is inside (1, 3, 16)
    X = {f"m{m}": rng.normal(scale=3, size=(3, d))[labels] + 0.5 * rng.normal(size=(400, d))
         for m, d in enumerate((5, 4))}
    X["m1"][:100] = np.nan
    X["m0"][100:200] = np.nan
    kw = {"completion": "greedy", "k_grid": (1, 3, 16), "random_state": 0, "n_ensemble": 1}
    a = UL4M4Imputer("auto", **kw).fit(X)
    assert a.n_clusters_ == 3 and a.selection_.k_added == ()
    assert a.selection_.k_grid == (1, 3, 16)
    assert a.selection_.edge_note() is None


def test_selection_round_trips_and_release_0_1_tables_still_render(fitted, tmp_path):
    fitted.save(tmp_path / "m.ul4m4")
    loaded = UL4M4Imputer.load(tmp_path / "m.ul4m4").selection_
    assert loaded.to_markdown() == fitted.selection_.to_markdown()
    assert loaded.k_grid == fitted.selection_.k_grid
    old = UL4M4Imputer.load(DATA / "model_v1_auto.ul4m4").selection_
    text = old.to_markdown()  # no standard errors stored: plain scores, still marked
    table, notes = text.split("\n\n")
    assert "| chosen for |" in table and "±" not in table and "2 SE" in notes
    assert repr(old).startswith(f"Selection(k={old.n_clusters},")


def test_ensemble_frame_has_the_rank_and_marks_the_members(ensemble):
    pytest.importorskip("pandas")
    frame = ensemble.selection_.to_frame()
    assert list(frame.columns[:5]) == ["n_clusters", "method", "temperature", "shrinkage",
                                       "rank"]
    mixtures = frame[frame["method"] == "mixture"]
    assert len(mixtures) and mixtures["rank"].notna().all()
    used = frame[frame["chosen_for"] != ""]
    assert len(used) == len({r for pairs in ensemble.selection_.ensemble.values()
                             for r, _ in pairs})


def test_ensemble_selection_with_nothing_to_hide_says_so():
    rng = np.random.default_rng(0)
    imp = UL4M4Imputer("auto", completion="auto", random_state=0).fit(
        {"a": rng.normal(size=(60, 3))})
    assert repr(imp.selection_) == ("Selection(no ensemble: no training sample has two "
                                    "observed modalities; rows=60)")
    assert imp.completion_ == {"a": "mean"}
    assert "nothing could be hidden" in imp.selection_.summary()
