"""A small parameter-constraint checker (the idea of scikit-learn's ``_parameter_constraints``).

Each parameter has a list of constraints; a value is valid when it satisfies
one of them. The error names the parameter, what it must be and what it got.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Interval", "Options", "TypeOf", "check_params"]


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (numbers.Integral or numbers.Real) between bounds; bools refused."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "left"  # "left", "right", "both" or "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool | np.bool_) or not isinstance(value, self.kind):
            return False
        if self.kind is numbers.Real and not np.isfinite(value):
            return False
        left = self.closed in ("left", "both")
        right = self.closed in ("right", "both")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return not (self.high is not None
                    and (value > self.high or (value == self.high and not right)))

    def describe(self) -> str:
        if self.kind is numbers.Integral:
            if self.high is None:
                return f"an integer >= {self.low:g}"
            if self.low is None:
                return f"an integer <= {self.high:g}"
            return f"an integer in [{self.low:g}, {self.high:g}]"
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        if self.high is None:
            return f"a finite real {'>=' if left == '[' else '>'} {self.low:g}"
        return f"a real in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class Options:
    """One of a set of values: a tuple, or a live container such as a registry's dict
    (then a value registered after the constraint was made is accepted too)."""

    values: Any

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | type(None) | bool) and value in self.values

    def describe(self) -> str:
        return f"one of {tuple(self.values)}"


@dataclass(frozen=True)
class TypeOf:
    """An instance of ``types`` (``describe`` is what the message says)."""

    types: tuple
    description: str
    error: type = TypeError

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def describe(self) -> str:
        return self.description


def check_params(params: Mapping[str, Any], constraints: Mapping[str, list]) -> None:
    """Raise ValueError (TypeError for a wrong type) for the first invalid parameter.

    Examples
    --------
    >>> check_params({"k": 3}, {"k": [Interval(numbers.Integral, 1)]})
    >>> check_params({"k": 0}, {"k": [Interval(numbers.Integral, 1)]})
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer >= 1, got 0
    """
    for name, allowed in constraints.items():
        value = params[name]
        if any(c.accepts(value) for c in allowed):
            continue
        what = " or ".join(c.describe() for c in allowed)
        # A wrong type is a TypeError unless some constraint names a valid value.
        type_only = all(getattr(c, "error", ValueError) is TypeError for c in allowed)
        raise (TypeError if type_only else ValueError)(f"{name} must be {what}, got {value!r}")
