"""Missingness simulation: seeded protocols that decide which modality of which sample is present.

Every protocol returns an explicit boolean availability mask of shape ``(n, M)``:
``mask[i, m]`` is True when modality ``m`` of sample ``i`` is present.  A mask is turned into
NaN-bearing data with :func:`apply_mask` and read back with :func:`mask_from_data`.

Protocols
---------
- :func:`independent_mask`: modality ``m`` present independently with probability ``p_m``.
- :func:`pattern_mask`: one probability per subset of present modalities.
- :func:`leads_mask`: the PEPSY "leads" protocol (a few modalities miss in a share of samples).
- :func:`mnar_mask`: missing-not-at-random, driven by a random projection of the embedding.
- :func:`parse_config`: reference configuration names such as ``"100_image_20_text"``,
  ``"complex_60_20_20"``, ``"100_20_20"`` or ``"pm0.4_ps0.5"``; it returns a frozen
  :class:`MissingnessConfig` whose ``make_mask(n, random_state)`` draws the mask.
- :func:`apply_mask`, :func:`mask_from_data` and :func:`missing_report` convert and summarise.

Seeding
-------
``random_state`` is resolved with :func:`sklearn.utils.check_random_state`, so ``None``, an
``int`` or a :class:`numpy.random.RandomState` are accepted and every draw comes from the legacy
``RandomState`` (MT19937) stream, which NumPy keeps frozen across versions and platforms.  Each
protocol draws whole blocks in a fixed order (documented per function) and never in chunks whose
size depends on the hardware, so an ``int`` seed gives the same mask everywhere.  A
:class:`numpy.random.Generator` is accepted too: one 32-bit seed is drawn from it and a fresh
``RandomState`` is built from that seed, so the result is as reproducible as the Generator is.

Unless ``allow_empty=True`` is passed, no protocol produces a sample with zero modalities.

Modules
-------
- :mod:`.protocols`: the four protocols and the seeding they share.
- :mod:`.config`: configuration names (:func:`parse_config`, :class:`MissingnessConfig`).
- :mod:`.masks`: masks to NaN rows and back (:func:`apply_mask`, :func:`mask_from_data`).
- :mod:`.report`: the summary of a mask (:func:`missing_report`, :class:`MissingReport`).

Everything public is importable from ``ul4m4.missingness`` itself.
"""

from __future__ import annotations

from .config import MissingnessConfig, complex_subset_order, parse_config
from .masks import apply_mask, mask_from_data
from .protocols import RandomStateLike, independent_mask, leads_mask, mnar_mask, pattern_mask
from .report import MissingReport, missing_report

__all__ = [
    "MissingReport",
    "MissingnessConfig",
    "RandomStateLike",
    "apply_mask",
    "complex_subset_order",
    "independent_mask",
    "leads_mask",
    "mask_from_data",
    "missing_report",
    "mnar_mask",
    "parse_config",
    "pattern_mask",
]
