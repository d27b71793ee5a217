"""Tests for ul4m4.missingness.report: the summary of a mask."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ul4m4.missingness import MissingReport, missing_report


def test_missing_report_hand_computed():
    mask = np.array(
        [
            [True, True, False],
            [True, False, False],
            [True, True, False],
            [False, True, True],
            [False, False, False],
        ]
    )
    rep = missing_report(mask, ["text", "image", "audio"])
    assert isinstance(rep, MissingReport)
    assert rep.n_samples == 5
    assert rep.missing_share == pytest.approx(8 / 15)
    assert rep.missing_rates == pytest.approx({"text": 2 / 5, "image": 2 / 5, "audio": 4 / 5})
    assert rep.pattern_counts == {"text+image": 2, "image+audio": 1, "text": 1, "(none)": 1}
    assert list(rep.pattern_counts) == ["text+image", "image+audio", "text", "(none)"]
    assert rep.n_empty == 1
    table = str(rep)
    assert table == rep.to_markdown()
    assert "| modality | missing rate |" in table
    assert "| audio | 80.00% |" in table
    assert "| text+image | 2 | 40.00% |" in table
    assert "samples with no modality: 1" in table


def test_missing_report_default_names_and_validation():
    rep = missing_report(np.array([[True, False]]))
    assert rep.modalities == ("m0", "m1") and rep.pattern_counts == {"m0": 1}
    with pytest.raises(ValueError, match="mask has 2 columns but 3 modality names"):
        missing_report(np.ones((2, 2), bool), ["a", "b", "c"])
    empty = missing_report(np.zeros((0, 2), bool), ["a", "b"])
    assert empty.n_samples == 0 and math.isnan(empty.missing_share) and "n/a" in str(empty)
