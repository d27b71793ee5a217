"""Tests for ul4m4.missingness.protocols: the four protocols and their seeding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _rates import K_SE, N_BIG, assert_rate, pattern_freqs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ul4m4.missingness import (
    independent_mask,
    leads_mask,
    mnar_mask,
    parse_config,
    pattern_mask,
)


def gaussian_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(seed)
    return {
        "text": rs.normal(size=(n, 6)),
        "image": rs.normal(size=(n, 4)) @ rs.normal(size=(4, 4)) + 3.0,
        "audio": rs.normal(size=(n, 3)),
    }


# ---------------------------------------------------------------------------
# independent_mask
# ---------------------------------------------------------------------------


def test_independent_rates_allow_empty():
    rates = [0.9, 0.5, 0.2]
    mask = independent_mask(N_BIG, rates, random_state=0, allow_empty=True)
    assert mask.shape == (N_BIG, 3) and mask.dtype == bool
    for m, p in enumerate(rates):
        assert_rate(mask[:, m].mean(), p)
    assert_rate((~mask.any(axis=1)).mean(), 0.1 * 0.5 * 0.8)


def test_independent_repair_follows_conditional_law():
    rates = np.array([0.3, 0.2, 0.1])  # about half of the raw rows are empty
    mask = independent_mask(N_BIG, rates, random_state=1)
    assert mask.any(axis=1).all()
    p_nonempty = 1.0 - np.prod(1.0 - rates)
    for m, p in enumerate(rates):
        assert_rate(mask[:, m].mean(), p / p_nonempty)
    freqs = pattern_freqs(mask)
    for bits in itertools.product([False, True], repeat=3):
        if not any(bits):
            continue
        prob = np.prod([p if b else 1.0 - p for p, b in zip(rates, bits, strict=True)])
        assert_rate(freqs.get(bits, 0.0), prob / p_nonempty)


def test_independent_repair_only_touches_empty_rows():
    rates = [0.4, 0.3]
    raw = independent_mask(5000, rates, random_state=7, allow_empty=True)
    fixed = independent_mask(5000, rates, random_state=7)
    nonempty = raw.any(axis=1)
    assert (~nonempty).any()
    np.testing.assert_array_equal(fixed[nonempty], raw[nonempty])
    assert fixed.any(axis=1).all()


def test_independent_edge_rates():
    mask = independent_mask(100, [1.0, 0.0, 0.0], random_state=0)
    assert mask[:, 0].all() and not mask[:, 1:].any()
    # Only the last modality can be present, so repair must select it.
    mask = independent_mask(100, [0.0, 0.0, 0.01], random_state=0)
    assert mask[:, 2].all() and not mask[:, :2].any()
    assert independent_mask(0, [0.5, 0.5], random_state=0).shape == (0, 2)


@pytest.mark.parametrize(
    ("rates", "match"),
    [
        ([1.2, 0.5], r"rates\[0\] = 1.2 is not a probability"),
        ([0.5, -0.1], r"rates\[1\] = -0.1"),
        ([0.5, float("nan")], r"rates\[1\] = nan"),
        ([], "non-empty 1-D"),
        ([[0.5, 0.5]], "non-empty 1-D"),
        ([0.0, 0.0], "all presence rates are 0"),
    ],
)
def test_independent_bad_rates(rates, match):
    with pytest.raises(ValueError, match=match):
        independent_mask(10, rates, random_state=0)


def test_independent_all_zero_allowed_when_empty_allowed():
    mask = independent_mask(5, [0.0, 0.0], random_state=0, allow_empty=True)
    assert not mask.any()


@pytest.mark.parametrize("n", [-1, 2.5, True, "3"])
def test_bad_n(n):
    with pytest.raises((TypeError, ValueError), match="n must be a non-negative integer"):
        independent_mask(n, [0.5], random_state=0)


# ---------------------------------------------------------------------------
# pattern_mask
# ---------------------------------------------------------------------------


def test_pattern_probabilities_respected():
    patterns = {(0, 1, 2): 0.5, (0,): 0.2, frozenset({1, 2}): 0.25, (2,): 0.05}
    mask = pattern_mask(N_BIG, patterns, random_state=0, n_modalities=3)
    assert mask.shape == (N_BIG, 3)
    freqs = pattern_freqs(mask)
    expected = {
        (True, True, True): 0.5,
        (True, False, False): 0.2,
        (False, True, True): 0.25,
        (False, False, True): 0.05,
    }
    assert set(freqs) == set(expected)
    for bits, p in expected.items():
        assert_rate(freqs[bits], p)


def test_pattern_boolean_keys_match_index_keys():
    by_index = {(0, 1): 0.6, (0,): 0.3, (1,): 0.1}
    by_bool = {(True, True): 0.6, (True, False): 0.3, (False, True): 0.1}
    a = pattern_mask(500, by_index, random_state=3, n_modalities=2)
    b = pattern_mask(500, by_bool, random_state=3)
    np.testing.assert_array_equal(a, b)


def test_pattern_zero_probability_never_drawn_and_tolerance():
    patterns = {(0,): 0.0, (0, 1): 0.5 + 5e-7, (1,): 0.5}
    mask = pattern_mask(2000, patterns, random_state=0, n_modalities=2)
    assert not (mask[:, 0] & ~mask[:, 1]).any()


def test_pattern_empty_subset_allowed_only_when_asked():
    patterns = {(): 0.5, (0, 1): 0.5}
    with pytest.raises(ValueError, match="empty subset"):
        pattern_mask(10, patterns, random_state=0, n_modalities=2)
    mask = pattern_mask(N_BIG, patterns, random_state=0, n_modalities=2, allow_empty=True)
    assert_rate((~mask.any(axis=1)).mean(), 0.5)


@pytest.mark.parametrize(
    ("patterns", "kwargs", "match"),
    [
        ({(0, 1): 0.5, (0,): 0.4}, {"n_modalities": 2}, "must sum to 1"),
        ({(0, 1): 0.7, (0,): 0.4}, {"n_modalities": 2}, r"must sum to 1 .*got 1\.1"),
        ({(0, 1): 1.2, (0,): -0.2}, {"n_modalities": 2}, "must be >= 0"),
        ({(0, 3): 1.0}, {"n_modalities": 2}, "modality index 3, outside 0..1"),
        ({(0, 1): 0.5, (1, 0): 0.5}, {"n_modalities": 2}, "describe the same subset"),
        ({(0, 1): 1.0}, {}, "n_modalities is required"),
        ({(True, False, True): 1.0}, {"n_modalities": 2}, "has length 3 but n_modalities=2"),
        ({(0, 0): 1.0}, {"n_modalities": 2}, "repeats a modality index"),
        ({}, {"n_modalities": 2}, "non-empty mapping"),
    ],
)
def test_pattern_bad_specs(patterns, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pattern_mask(10, patterns, random_state=0, **kwargs)


# ---------------------------------------------------------------------------
# leads_mask
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_mod", "pm", "n_leads"),
    [(5, 0.4, 2), (5, 0.0, 1), (3, 0.5, 1), (3, 0.7, 2), (4, 1.0, 4), (100, 0.29, 29)],
)
def test_leads_number_of_leads_and_exact_counts(n_mod, pm, n_leads):
    n, ps = 1001, 0.3
    mask = leads_mask(n, n_mod, pm, ps, random_state=0)
    assert mask.shape == (n, n_mod) and mask.dtype == bool
    missing = (~mask).sum(axis=0)
    leads = np.flatnonzero(missing)
    assert leads.size == n_leads
    expected = math.floor(ps * n + 0.5)  # 300.3 -> 300
    if n_leads < n_mod:
        # Non-leads keep every sample present, so no lead is ever skipped.
        assert (missing[leads] == expected).all()
    else:
        assert (missing[leads] <= expected).all()
    assert mask.any(axis=1).all()


def test_leads_rounding_half_up():
    mask = leads_mask(10, 4, 0.25, 0.25, random_state=0)  # 2.5 samples -> 3
    assert (~mask).sum() == 3


@pytest.mark.parametrize("n_mod", [1, 2, 3, 6])
def test_leads_last_lead_never_empties_a_sample(n_mod):
    mask = leads_mask(200, n_mod, pm=1.0, ps=1.0, random_state=5)
    # Every lead is missing everywhere except the last one, which is kept as the final modality.
    assert (mask.sum(axis=1) == 1).all()
    assert len(np.unique(np.argmax(mask, axis=1))) == 1


def test_leads_ps_zero_keeps_everything():
    assert leads_mask(50, 3, 0.7, 0.0, random_state=0).all()


@pytest.mark.parametrize(
    ("pm", "ps", "match"),
    [(1.5, 0.5, r"pm must lie in \[0, 1\]"), (0.5, -0.1, r"ps must lie in \[0, 1\]")],
)
def test_leads_validation(pm, ps, match):
    with pytest.raises(ValueError, match=match):
        leads_mask(10, 3, pm, ps, random_state=0)


def test_leads_bad_n_modalities():
    with pytest.raises(ValueError, match="n_modalities must be a positive integer"):
        leads_mask(10, 0, 0.5, 0.5)


# ---------------------------------------------------------------------------
# mnar_mask
# ---------------------------------------------------------------------------


def test_mnar_rates_and_dependence():
    X = gaussian_data(N_BIG)
    rates = [0.8, 0.5, 0.3]
    mask, scores = mnar_mask(
        X, rates, strength=2.0, random_state=0, allow_empty=True, return_scores=True
    )
    assert mask.shape == (N_BIG, 3) and scores.shape == (N_BIG, 3)
    np.testing.assert_allclose(scores.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(scores.std(axis=0), 1.0, atol=1e-9)
    for m, p in enumerate(rates):
        assert_rate(mask[:, m].mean(), p)
        corr = np.corrcoef((~mask[:, m]).astype(float), scores[:, m])[0, 1]
        assert corr > 0.3, (m, corr)
        # Missing samples sit clearly higher on the score than present ones.
        assert scores[~mask[:, m], m].mean() > scores[mask[:, m], m].mean() + 0.5


def test_mnar_negative_strength_flips_dependence():
    X = gaussian_data(5000)
    mask, scores = mnar_mask(
        X, [0.5, 0.5, 0.5], strength=-2.0, random_state=0, allow_empty=True, return_scores=True
    )
    for m in range(3):
        assert np.corrcoef(~mask[:, m], scores[:, m])[0, 1] < -0.3


def test_mnar_strength_zero_is_mcar():
    X = gaussian_data(N_BIG)
    mask, scores = mnar_mask(
        X, [0.6, 0.6, 0.6], strength=0.0, random_state=1, allow_empty=True, return_scores=True
    )
    for m in range(3):
        assert_rate(mask[:, m].mean(), 0.6)
        corr = np.corrcoef(~mask[:, m], scores[:, m])[0, 1]
        assert abs(corr) < K_SE / math.sqrt(N_BIG)


def test_mnar_default_has_no_empty_rows_and_mapping_rates():
    X = gaussian_data(3000)
    rates = {"audio": 0.2, "text": 0.3, "image": 0.1}
    mask = mnar_mask(X, rates, strength=50.0, random_state=0)
    assert mask.any(axis=1).all()
    same = mnar_mask(X, [0.3, 0.1, 0.2], strength=50.0, random_state=0)
    np.testing.assert_array_equal(mask, same)


def test_mnar_extreme_rates():
    X = gaussian_data(500)
    mask = mnar_mask(X, [1.0, 0.0, 0.5], strength=3.0, random_state=0)
    assert mask[:, 0].all() and not mask[:, 1].any()


def test_mnar_does_not_mutate_input():
    X = gaussian_data(200)
    before = {k: v.copy() for k, v in X.items()}
    mnar_mask(X, [0.5, 0.5, 0.5], random_state=0)
    for k in X:
        np.testing.assert_array_equal(X[k], before[k])


@pytest.mark.parametrize(
    ("rates", "kwargs", "match"),
    [
        ([0.5, 0.5], {}, "rates has 2 entries but X has 3 modalities"),
        ({"text": 0.5, "video": 0.5}, {}, r"unknown: \['video'\]"),
        ([0.5, 0.5, 0.5], {"strength": float("inf")}, "strength must be finite"),
        ([0.0, 0.0, 0.0], {}, "all presence rates are 0"),
    ],
)
def test_mnar_validation(rates, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnar_mask(gaussian_data(20), rates, random_state=0, **kwargs)


def test_mnar_rejects_nan_input():
    X = gaussian_data(20)
    X["image"][3, 0] = np.nan
    with pytest.raises(ValueError, match="modality 'image' contains NaN"):
        mnar_mask(X, [0.5, 0.5, 0.5], random_state=0)


# ---------------------------------------------------------------------------
# seeding
# ---------------------------------------------------------------------------


def _all_protocols(seed):
    X = gaussian_data(300, seed=11)
    return [
        independent_mask(300, [0.5, 0.6, 0.7], random_state=seed),
        pattern_mask(300, {(0, 1): 0.5, (1,): 0.5}, random_state=seed, n_modalities=2),
        leads_mask(300, 4, 0.5, 0.5, random_state=seed),
        mnar_mask(X, [0.5, 0.6, 0.7], strength=1.0, random_state=seed),
        parse_config("complex_60_20_20", ["a", "b"]).make_mask(300, random_state=seed),
    ]


def test_same_seed_same_masks_different_seed_different_masks():
    first, again, other = _all_protocols(42), _all_protocols(42), _all_protocols(43)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_randomstate_and_generator_are_accepted():
    a = independent_mask(100, [0.5, 0.5], random_state=np.random.RandomState(3))
    b = independent_mask(100, [0.5, 0.5], random_state=3)
    np.testing.assert_array_equal(a, b)
    g1 = independent_mask(100, [0.5, 0.5], random_state=np.random.default_rng(3))
    g2 = independent_mask(100, [0.5, 0.5], random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(g1, g2)
    assert independent_mask(10, [0.5, 0.5]).shape == (10, 2)


def test_pinned_streams():
    # Pinned outputs: the legacy RandomState stream is frozen, so these must never change.
    assert independent_mask(6, [0.5, 0.5, 0.5], random_state=0).astype(int).tolist() == [
        [0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0],
    ]  # fmt: skip
    assert leads_mask(6, 3, 0.5, 0.5, random_state=0).astype(int).tolist() == [
        [0, 1, 1], [0, 1, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1],
    ]  # fmt: skip
    patterns = {(0, 1, 2): 0.4, (0,): 0.3, (1, 2): 0.3}
    assert pattern_mask(6, patterns, random_state=0, n_modalities=3).astype(int).tolist() == [
        [1, 0, 0], [0, 1, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0],
    ]  # fmt: skip



# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

rates_st = st.integers(1, 5).flatmap(
    lambda m: st.lists(
        st.one_of(st.sampled_from([0.0, 1.0, 1e-12]), st.floats(0.0, 1.0)), min_size=m, max_size=m
    )
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(n=st.integers(0, 60), rates=rates_st, seed=st.integers(0, 2**32 - 1),
       allow_empty=st.booleans())  # fmt: skip
def test_property_independent(n, rates, seed, allow_empty):
    if not allow_empty and not any(r > 0 for r in rates):
        with pytest.raises(ValueError):
            independent_mask(n, rates, random_state=seed)
        return
    mask = independent_mask(n, rates, random_state=seed, allow_empty=allow_empty)
    assert mask.shape == (n, len(rates)) and mask.dtype == bool
    assert not mask[:, np.asarray(rates) == 0.0].any()
    if not allow_empty:
        assert mask.any(axis=1).all()


@SETTINGS
@given(n=st.integers(0, 60), n_mod=st.integers(1, 4), data=st.data(),
       seed=st.integers(0, 2**32 - 1), allow_empty=st.booleans())  # fmt: skip
def test_property_pattern(n, n_mod, data, seed, allow_empty):
    candidates = [frozenset(c) for r in range(n_mod + 1)
                  for c in itertools.combinations(range(n_mod), r)]  # fmt: skip
    if not allow_empty:
        candidates = candidates[1:]
    chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique=True))
    weights = data.draw(st.lists(st.floats(0.01, 1.0), min_size=len(chosen),
                                 max_size=len(chosen)))  # fmt: skip
    total = sum(weights)
    patterns = {s: w / total for s, w in zip(chosen, weights, strict=True)}
    mask = pattern_mask(n, patterns, random_state=seed, n_modalities=n_mod,
                        allow_empty=allow_empty)  # fmt: skip
    assert mask.shape == (n, n_mod) and mask.dtype == bool
    drawn = {frozenset(np.flatnonzero(row).tolist()) for row in mask}
    assert drawn <= set(chosen)
    if not allow_empty:
        assert mask.any(axis=1).all()


@SETTINGS
@given(n=st.integers(0, 60), n_mod=st.integers(1, 6), pm=st.floats(0.0, 1.0),
       ps=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_property_leads(n, n_mod, pm, ps, seed):
    mask = leads_mask(n, n_mod, pm, ps, random_state=seed)
    assert mask.shape == (n, n_mod) and mask.dtype == bool
    assert mask.any(axis=1).all()
    missing = (~mask).sum(axis=0)
    n_leads = max(1, math.floor(n_mod * pm + 1e-9))
    assert (missing > 0).sum() <= n_leads
    assert (missing <= math.floor(ps * n + 0.5)).all()
    if n_leads < n_mod:
        assert (missing > 0).sum() == (n_leads if math.floor(ps * n + 0.5) else 0)


@SETTINGS
@given(n=st.integers(1, 40), rates=rates_st, strength=st.floats(-20.0, 20.0),
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_property_mnar(n, rates, strength, seed):
    rs = np.random.RandomState(0)
    X = {f"m{j}": rs.normal(size=(n, j + 1)) for j in range(len(rates))}
    if not any(r > 0 for r in rates):
        with pytest.raises(ValueError):
            mnar_mask(X, rates, strength=strength, random_state=seed)
        return
    mask = mnar_mask(X, rates, strength=strength, random_state=seed)
    assert mask.shape == (n, len(rates)) and mask.dtype == bool
    assert mask.any(axis=1).all()
    assert not mask[:, np.asarray(rates) == 0.0].any()
    assert mask[:, np.asarray(rates) == 1.0].all()
