"""Reference missingness configuration names: :func:`parse_config` and :class:`MissingnessConfig`.

Names such as ``"100_image_20_text"``, ``"complex_60_20_20"``, ``"100_20_20"`` or
``"pm0.4_ps0.5"`` are parsed into a frozen :class:`MissingnessConfig` whose
``make_mask(n, random_state)`` draws the mask with one of the protocols of
:mod:`ul4m4.missingness.protocols`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .protocols import (
    PROB_TOL,
    RandomStateLike,
    check_n_modalities,
    independent_mask,
    leads_mask,
    pattern_mask,
)

__all__ = ["MissingnessConfig", "complex_subset_order", "parse_config"]


def complex_subset_order(n_modalities: int) -> list[tuple[int, ...]]:
    """Order of the non-empty subsets in a ``complex_...`` configuration name.

    Subsets are listed by decreasing size, and lexicographically within a size.  For two
    modalities: ``(0, 1), (0,), (1,)``; for three: ``(0, 1, 2), (0, 1), (0, 2), (1, 2), (0,),
    (1,), (2,)``.

    Examples
    --------
    >>> complex_subset_order(2)
    [(0, 1), (0,), (1,)]
    """
    n_mod = check_n_modalities(n_modalities)
    return [c for size in range(n_mod, 0, -1) for c in itertools.combinations(range(n_mod), size)]


@dataclass(frozen=True)
class MissingnessConfig:
    """A parsed missingness configuration; call :meth:`make_mask` to draw a mask.

    Attributes
    ----------
    name : str
        The configuration name it was parsed from.
    modalities : tuple of str
        Modality names, in mask column order.
    protocol : {"independent", "pattern", "leads"}
        Which protocol :meth:`make_mask` runs.
    rates : tuple of float or None
        Presence probability per modality (``"independent"``).
    patterns : tuple of (tuple of int, float) or None
        ``(subset, probability)`` pairs (``"pattern"``).
    pm, ps : float or None
        Leads parameters (``"leads"``).
    """

    name: str
    modalities: tuple[str, ...]
    protocol: Literal["independent", "pattern", "leads"]
    rates: tuple[float, ...] | None = None
    patterns: tuple[tuple[tuple[int, ...], float], ...] | None = None
    pm: float | None = None
    ps: float | None = None

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def make_mask(self, n: int, random_state: RandomStateLike = None) -> np.ndarray:
        """Draw an ``(n, M)`` availability mask with no empty sample.

        Examples
        --------
        >>> cfg = parse_config("100_20_20", ["text", "audio", "video"])
        >>> cfg.make_mask(3, random_state=0).shape
        (3, 3)
        """
        if self.protocol == "independent":
            assert self.rates is not None
            return independent_mask(n, self.rates, random_state)
        if self.protocol == "pattern":
            assert self.patterns is not None
            return pattern_mask(
                n, dict(self.patterns), random_state, n_modalities=self.n_modalities
            )
        if self.protocol == "leads":
            assert self.pm is not None and self.ps is not None
            return leads_mask(n, self.n_modalities, self.pm, self.ps, random_state)
        raise ValueError(f"unknown protocol {self.protocol!r}")


_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUM_RE = re.compile(rf"^{_NUM}$")
_LEADS_RE = re.compile(
    rf"^(?:pm(?P<pm>{_NUM})_ps(?P<ps>{_NUM})|leads_(?P<pm2>{_NUM})_(?P<ps2>{_NUM}))$",
    re.IGNORECASE,
)


def _percent(token: str, config: str, what: str) -> float:
    value = float(token)
    if not 0.0 <= value <= 100.0:
        raise ValueError(
            f"invalid missingness config {config!r}: {what} {token}% is outside [0, 100]"
        )
    return value


def parse_config(name: str, modalities: Iterable[str]) -> MissingnessConfig:
    """Parse a reference missingness configuration name.

    Recognised forms (``M = len(modalities)``):

    - ``"<pct>_<modality>_<pct>_<modality>..."`` such as ``"100_image_20_text"``: presence
      percentage of each named modality, drawn independently; modalities not named are always
      present.  Modality names may contain underscores (the longest known name wins).
    - ``"<pct>_<pct>_..."`` with exactly ``M`` numbers such as ``"100_20_20"``: presence
      percentage of each modality in order, drawn independently.
    - ``"complex_<pct>_..."`` with ``2**M - 1`` numbers summing to 100: probability of each
      non-empty subset of present modalities, in the order of :func:`complex_subset_order`
      (decreasing size, then lexicographic).  For two modalities ``complex_60_20_20`` means
      both 60%, first only 20%, second only 20%; for three, the seven numbers are
      ``{0,1,2}, {0,1}, {0,2}, {1,2}, {0}, {1}, {2}``.
    - ``"pm<pm>_ps<ps>"`` or ``"leads_<pm>_<ps>"`` such as ``"pm0.4_ps0.5"``: the leads protocol
      of :func:`leads_mask` with fractions ``pm`` and ``ps`` in ``[0, 1]``.

    Keywords (``complex``, ``pm``, ``ps``, ``leads``) are case-insensitive; modality names are
    matched exactly.

    Parameters
    ----------
    name : str
        The configuration name.
    modalities : iterable of str
        Modality names in mask column order (a data dict works: its keys are used).

    Returns
    -------
    MissingnessConfig
        A frozen description whose ``make_mask(n, random_state)`` draws the mask.

    Raises
    ------
    ValueError
        For an unknown form, a percentage outside ``[0, 100]``, ``complex`` percentages not
        summing to 100 or of the wrong count, an unknown or repeated modality name, the wrong
        number of per-modality percentages, or a configuration in which every modality is
        always absent.  The message names the configuration and the problem.

    Examples
    --------
    >>> cfg = parse_config("100_image_20_text", ["text", "image"])
    >>> cfg.protocol, cfg.rates
    ('independent', (0.2, 1.0))
    >>> parse_config("complex_60_20_20", ["text", "image"]).patterns
    (((0, 1), 0.6), ((0,), 0.2), ((1,), 0.2))
    """
    if not isinstance(name, str):
        raise TypeError(f"config name must be a string, got {type(name).__name__}")
    mods = tuple(modalities)
    if not mods:
        raise ValueError(f"invalid missingness config {name!r}: no modalities given")
    if not all(isinstance(m, str) for m in mods) or len(set(mods)) != len(mods):
        raise ValueError(
            f"invalid missingness config {name!r}: modalities must be distinct strings, got {mods}"
        )
    n_mod = len(mods)
    text = name.strip()
    if not text:
        raise ValueError("invalid missingness config '': the name is empty")

    def fail(problem: str) -> ValueError:
        return ValueError(f"invalid missingness config {name!r}: {problem}")

    match = _LEADS_RE.match(text)
    if match:
        pm_tok = match.group("pm") or match.group("pm2")
        ps_tok = match.group("ps") or match.group("ps2")
        pm, ps = float(pm_tok), float(ps_tok)
        for label, value in (("pm", pm), ("ps", ps)):
            if not 0.0 <= value <= 1.0:
                raise fail(f"{label}={value} is outside [0, 1]")
        return MissingnessConfig(name, mods, "leads", pm=pm, ps=ps)

    tokens = text.split("_")
    if "" in tokens:
        raise fail("empty field (leading, trailing or doubled '_')")
    if tokens[0].lower() == "complex":
        numbers = tokens[1:]
        bad = [t for t in numbers if not _NUM_RE.match(t)]
        if not numbers or bad:
            raise fail(f"'complex' must be followed by percentages only, got {numbers}")
        order = complex_subset_order(n_mod)
        if len(numbers) != len(order):
            raise fail(
                f"'complex' needs 2**{n_mod} - 1 = {len(order)} percentages for {n_mod} "
                f"modalities {list(mods)}, got {len(numbers)}"
            )
        pcts = [_percent(t, name, f"subset {s}") for t, s in zip(numbers, order, strict=True)]
        total = sum(pcts)
        if abs(total - 100.0) > 100.0 * PROB_TOL:
            raise fail(f"subset percentages must sum to 100, got {total:g}")
        patterns = tuple((subset, pct / 100.0) for subset, pct in zip(order, pcts, strict=True))
        return MissingnessConfig(name, mods, "pattern", patterns=patterns)

    if all(_NUM_RE.match(t) for t in tokens):
        if len(tokens) != n_mod:
            raise fail(
                f"expected {n_mod} percentages (one per modality {list(mods)}), got {len(tokens)}"
            )
        rates = tuple(
            _percent(t, name, f"presence of {m!r}") / 100.0
            for t, m in zip(tokens, mods, strict=True)
        )
        if not any(r > 0 for r in rates):
            raise fail("every modality has presence 0%, so every sample would be empty")
        return MissingnessConfig(name, mods, "independent", rates=rates)

    # "<pct>_<modality>_<pct>_<modality>..."
    presence = dict.fromkeys(mods, 1.0)
    named: set[str] = set()
    i = 0
    while i < len(tokens):
        if not _NUM_RE.match(tokens[i]):
            raise fail(
                f"expected a percentage before {tokens[i]!r}; known forms are "
                "'<pct>_<modality>_...', '<pct>_<pct>_...', 'complex_<pct>_...', "
                "'pm<pm>_ps<ps>' and 'leads_<pm>_<ps>'"
            )
        pct_tok = tokens[i]
        j = i + 1
        while j < len(tokens) and not _NUM_RE.match(tokens[j]):
            j += 1
        if j == i + 1:
            raise fail(f"percentage {pct_tok} is not followed by a modality name")
        # Longest known name first, so names that contain underscores still parse.
        for k in range(j, i + 1, -1):
            candidate = "_".join(tokens[i + 1 : k])
            if candidate in presence:
                break
        else:
            raise fail(f"unknown modality {'_'.join(tokens[i + 1 : j])!r}; known: {list(mods)}")
        if candidate in named:
            raise fail(f"modality {candidate!r} is given more than once")
        named.add(candidate)
        presence[candidate] = _percent(pct_tok, name, f"presence of {candidate!r}") / 100.0
        i = k
    rates = tuple(presence[m] for m in mods)
    if not any(r > 0 for r in rates):
        raise fail("every modality has presence 0%, so every sample would be empty")
    return MissingnessConfig(name, mods, "independent", rates=rates)
