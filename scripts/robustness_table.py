"""Render ``docs/robustness.md`` from the case list in ``tests/robustness_cases.py``.

Usage::

    python scripts/robustness_table.py            # print the document
    python scripts/robustness_table.py --write    # write docs/robustness.md
    python scripts/robustness_table.py --run      # run every case, print its outcome

``tests/test_robustness.py`` runs every case and checks that the committed
document equals the rendered one, so the table cannot drift from the tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "robustness.md"
sys.path.insert(0, str(ROOT / "tests"))

from robustness_cases import CASES, Case, expectation, run_case  # noqa: E402

_INTRO = """\
# Robustness: bad inputs and what they get

Every row is one case of `tests/robustness_cases.py`; `tests/test_robustness.py` runs
each of them (`test_case[<id>]`) and checks that this file equals the output of
`python scripts/robustness_table.py`, so the table and the tests cannot drift apart.
Regenerate it with `python scripts/robustness_table.py --write`.

An expected exception is given as its type and a regular expression its message must
match; a fallback is the documented behaviour that the test checks. CLI cases run
`ul4m4 benchmark` or `ul4m4 experiment` in-process and expect exit status 2 with a single
line on stderr (no traceback). The raw data set loaders are `load_mmimdb`, `load_mosi` and
`load_sleep_edf`, each run on a tiny fixture written by `ul4m4.datasets._fixtures` with one
file damaged; the image cases load the real EfficientNet-Lite0 weights. "Before" is
what the case got from the code before this table existed: "ok" or the unhelpful result
(a raw library traceback, silently wrong numbers).

{summary}
"""


def _cell(text: str) -> str:
    # A literal | would split the Markdown cell.
    return text.replace("|", "\\|").replace("\n", " ")


def _summary(cases: list[Case]) -> str:
    entries = sorted({c.entry for c in cases}, key=[c.entry for c in cases].index)
    # "ok (...)" notes a helpful but costly result; "n/a" a feature that did not exist.
    broken = [c for c in cases if not c.before.startswith(("ok", "n/a"))]
    lines = [
        f"{len(cases)} bad inputs over {len(entries)} entry points; {len(broken)} of them "
        "got an unhelpful result before this work (all fixed):",
        "",
        "| entry point | cases | unhelpful before |",
        "|---|---:|---:|",
    ]
    for entry in entries:
        group = [c for c in cases if c.entry == entry]
        bad = sum(c in broken for c in group)
        lines.append(f"| {entry} | {len(group)} | {bad} |")
    return "\n".join(lines)


def render(cases: list[Case] = CASES) -> str:
    """The whole Markdown document for ``cases``."""
    out = [_INTRO.format(summary=_summary(cases))]
    entries = sorted({c.entry for c in cases}, key=[c.entry for c in cases].index)
    for entry in entries:
        out += [f"## {entry}", "",
                "| # | bad input | gets | before | test |", "|---|---|---|---|---|"]
        for i, case in enumerate((c for c in cases if c.entry == entry), start=1):
            test = f"`test_case[{case.id}]`"
            out.append(
                f"| {i} | {_cell(case.bad_input)} | {_cell(expectation(case))} | "
                f"{_cell(case.before)} | {test} |"
            )
        out.append("")
    return "\n".join(out)


def _run_all() -> int:
    failed = 0
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_case(case, Path(tmp))
        failed += not outcome.ok
        print(f"{'ok  ' if outcome.ok else 'FAIL'} {case.id}: {outcome.detail}")
    print(f"{len(CASES)} cases, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Command line of this script; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    parser.add_argument("--run", action="store_true", help="run every case and report")
    args = parser.parse_args(argv)
    if args.run:
        return _run_all()
    text = render()
    if args.write:
        DOC.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
