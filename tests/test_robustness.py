"""Every bad input of ``docs/robustness.md`` gets the documented error or fallback.

The cases live in ``robustness_cases.py``; ``scripts/robustness_table.py`` renders
the document from the same list, and the last test checks that the committed
document is that rendering.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _scripts import load_script
from robustness_cases import CASES, run_case

ROOT = Path(__file__).resolve().parents[1]


def _render() -> str:
    return load_script("robustness_table").render()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path):
    outcome = run_case(case, tmp_path)
    assert outcome.ok, f"{case.entry}: {case.bad_input}: {outcome.detail}"


def test_case_ids_are_unique_and_each_case_expects_one_thing():
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        kinds = [case.raises is not None, bool(case.exit_match), case.check is not None]
        assert sum(kinds) == 1, case.id
        assert (case.check is not None) == bool(case.fallback), case.id


def test_runner_reports_a_wrong_expectation(tmp_path):
    """The harness itself can fail: a case expecting the wrong error is reported."""
    from dataclasses import replace

    case = next(c for c in CASES if c.id == "fit-partial-nan")
    assert not run_case(replace(case, match="no such message"), tmp_path).ok
    assert not run_case(replace(case, raises=TypeError), tmp_path / "b").ok


def test_committed_document_matches_the_cases():
    committed = (ROOT / "docs" / "robustness.md").read_text(encoding="utf-8")
    assert committed == _render(), (
        "docs/robustness.md is out of date: run python scripts/robustness_table.py --write"
    )
