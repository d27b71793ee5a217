"""Tests for ul4m4.cli_parser: the command's options, value types and parse errors."""

from __future__ import annotations

import pytest

import ul4m4.cli
from ul4m4.cli_parser import CLIError, build_parser


def test_the_command_line_runs_this_parser():
    assert ul4m4.cli.build_parser is build_parser


def test_defaults_of_benchmark_and_experiment():
    bench = build_parser().parse_args(["benchmark"])
    assert (bench.dataset, bench.protocol, bench.missing, bench.k) == (
        "mfeat", "independent", [0.3, 0.5, 0.7], [4, 16, 64])
    assert (bench.seeds, bench.test_size, bench.memory, bench.param) == (5, 0.3, "tracemalloc", [])
    exp = build_parser().parse_args(["experiment", "mosi"])
    assert (exp.dataset, exp.protocol, exp.config, exp.k, exp.seeds) == (
        "mosi", "clean", None, None, 1)


def test_value_types():
    args = build_parser().parse_args([
        "benchmark", "--missing", " 0.1, 0.9 ,", "--k", "2,3", "--methods", "mean,knn",
        "--param", "knn.n_neighbors=10", "--param", "ul4m4.label=text",
        "--config", "100_20_20,pm0.4_ps0.5",
    ])
    assert args.missing == [0.1, 0.9] and args.k == [2, 3] and args.methods == ["mean", "knn"]
    # A value that reads as a Python literal is one; anything else stays a string.
    assert args.param == [("knn", "n_neighbors", 10), ("ul4m4", "label", "text")]
    assert args.config == ["100_20_20", "pm0.4_ps0.5"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["benchmark", "--missing", "0.3,abc"], "expected comma-separated numbers, got '0.3,abc'"),
        (["benchmark", "--missing", "1"], "share 1 is not in [0, 1)"),
        (["benchmark", "--k", "4,x"], "expected comma-separated integers"),
        (["benchmark", "--k", "0"], "values must be >= 1, got '0'"),
        (["benchmark", "--methods", ","], "expected at least one name"),
        (["benchmark", "--seeds", "0"], "must be >= 1, got 0"),
        (["benchmark", "--test-size", "1"], "must be in (0, 1), got 1"),
        (["benchmark", "--param", "knn=3"], "expected METHOD.NAME=VALUE, got 'knn=3'"),
        (["experiment", "nope"], "invalid choice: 'nope'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_parse_errors_are_one_line(argv, message):
    with pytest.raises(CLIError) as info:
        build_parser().parse_args(argv)
    text = str(info.value)
    assert message in text and text.endswith("(see --help)") and "\n" not in text
