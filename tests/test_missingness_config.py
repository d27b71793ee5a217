"""Tests for ul4m4.missingness.config: configuration names and the masks they draw."""

from __future__ import annotations

import numpy as np
import pytest
from _rates import N_BIG, assert_rate, pattern_freqs

from ul4m4.missingness import (
    MissingnessConfig,
    complex_subset_order,
    leads_mask,
    parse_config,
)

TAV = ["text", "audio", "video"]


def test_parse_named_percentages():
    cfg = parse_config("100_image_20_text", ["text", "image", "audio"])
    assert isinstance(cfg, MissingnessConfig)
    assert cfg.protocol == "independent"
    assert cfg.rates == (0.2, 1.0, 1.0)  # audio is not named: always present
    mask = cfg.make_mask(N_BIG, random_state=0)
    assert mask[:, 1].all() and mask[:, 2].all()
    assert_rate(mask[:, 0].mean(), 0.2)


def test_parse_named_percentages_with_underscored_names():
    cfg = parse_config("50_text_emb_25_img", ["text_emb", "img"])
    assert cfg.rates == (0.5, 0.25)


def test_parse_complex_two_modalities():
    cfg = parse_config("complex_60_20_20", ["text", "image"])
    assert cfg.protocol == "pattern"
    assert cfg.patterns == (((0, 1), 0.6), ((0,), 0.2), ((1,), 0.2))
    freqs = pattern_freqs(cfg.make_mask(N_BIG, random_state=0))
    assert_rate(freqs[(True, True)], 0.6)
    assert_rate(freqs[(True, False)], 0.2)
    assert_rate(freqs[(False, True)], 0.2)


def test_parse_complex_three_modalities_order():
    cfg = parse_config("COMPLEX_40_5_10_15_20_0_10", TAV)
    assert [s for s, _ in cfg.patterns] == [
        (0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,),
    ]  # fmt: skip
    assert [p for _, p in cfg.patterns] == pytest.approx([0.4, 0.05, 0.1, 0.15, 0.2, 0.0, 0.1])
    freqs = pattern_freqs(cfg.make_mask(N_BIG, random_state=0))
    assert_rate(freqs[(True, False, True)], 0.10)  # {text, video}
    assert_rate(freqs[(False, True, True)], 0.15)  # {audio, video}
    assert (False, True, False) not in freqs  # audio only has probability 0


def test_complex_subset_order_general():
    order = complex_subset_order(4)
    assert len(order) == 15 and order[0] == (0, 1, 2, 3) and order[-1] == (3,)


def test_parse_per_modality_numbers():
    cfg = parse_config("100_20_20", TAV)
    assert cfg.protocol == "independent" and cfg.rates == (1.0, 0.2, 0.2)
    mask = cfg.make_mask(N_BIG, random_state=0)
    assert mask[:, 0].all()
    for m in (1, 2):
        assert_rate(mask[:, m].mean(), 0.2)


@pytest.mark.parametrize("name", ["pm0.4_ps0.5", "leads_0.4_0.5", "PM.4_PS.5"])
def test_parse_leads(name):
    cfg = parse_config(name, ["a", "b", "c", "d", "e"])
    assert cfg.protocol == "leads" and cfg.pm == pytest.approx(0.4) and cfg.ps == 0.5
    mask = cfg.make_mask(1000, random_state=0)
    np.testing.assert_array_equal(mask, leads_mask(1000, 5, 0.4, 0.5, random_state=0))
    assert ((~mask).sum(axis=0) > 0).sum() == 2


def test_parse_accepts_data_dict_as_modalities():
    X = {"text": np.zeros((2, 1)), "image": np.zeros((2, 1))}
    assert parse_config("30_image", X).rates == (1.0, 0.3)


@pytest.mark.parametrize(
    ("name", "mods", "match"),
    [
        ("complex_60_20_10", ["text", "image"], r"'complex_60_20_10'.*sum to 100, got 90"),
        ("complex_50_50", ["text", "image"], r"'complex_50_50'.*needs 2\*\*2 - 1 = 3 .*got 2"),
        ("complex_20_20_20_10_10_10_10", ["text", "image"], "got 7"),
        ("complex_60_20_20", TAV, r"= 7 percentages .*got 3"),
        ("complex_60_x_40", ["text", "image"], "percentages only"),
        ("complex_120_-10_-10", ["text", "image"], r"outside \[0, 100\]"),
        ("150_image", ["text", "image"], r"'150_image'.*presence of 'image' 150% is outside"),
        ("20_video", ["text", "image"], r"'20_video'.*unknown modality 'video'"),
        ("20_text_30_text", ["text", "image"], "'text' is given more than once"),
        ("20_text_image", ["text", "image"], "expected a percentage before 'image'"),
        ("100_20", TAV, r"'100_20'.*expected 3 percentages .*got 2"),
        ("100_20_120", TAV, r"presence of 'video' 120% is outside"),
        ("0_0_0", TAV, "every modality has presence 0%"),
        ("0_text_0_image", ["text", "image"], "every modality has presence 0%"),
        ("pm1.5_ps0.5", TAV, r"'pm1.5_ps0.5'.*pm=1.5 is outside \[0, 1\]"),
        ("leads_0.5_-0.2", TAV, r"ps=-0.2 is outside"),
        ("garbage", TAV, r"'garbage'.*expected a percentage before 'garbage'"),
        ("20", TAV, "expected 3 percentages"),
        ("30_", TAV, "empty field"),
        ("30__text", TAV, "empty field"),
        ("30_40_text", TAV, "percentage 30 is not followed by a modality name"),
        ("", TAV, "name is empty"),
        ("100_text", [], "no modalities"),
    ],
)
def test_parse_bad_configs(name, mods, match):
    with pytest.raises(ValueError, match=match):
        parse_config(name, mods)
