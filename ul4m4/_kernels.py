"""The compiled kernels, in the build variant for the best instruction set this CPU runs.

The kernels (``ul4m4/_kernels_impl.pxi``) are compiled once per variant:
``_kernels_baseline`` (x86-64 SSE2, or the baseline of another architecture),
``_kernels_avx2`` and ``_kernels_avx512`` (x86-64 only). Every variant gives the same
bits: contraction is off and vector lanes run across features only, so no sum is
reassociated. At import this module checks the CPU and the OS (CPUID and XCR0,
through the baseline module) and takes the best variant that is built and runs here;
:data:`ISA` names it.

The environment variable ``UL4M4_ISA`` (``baseline``, ``avx2`` or ``avx512``) forces
one; ``auto`` or empty is the default choice. A value that is unknown, not built or
not supported by this CPU raises :class:`ImportError` rather than risk SIGILL.
"""

from __future__ import annotations

import os
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from ._kernels_baseline import cpu_supports

#: The build variants, best first.
VARIANTS = ("avx512", "avx2", "baseline")
#: The environment variable that forces a variant.
ENV_VAR = "UL4M4_ISA"


def is_built(isa: str) -> bool:
    """Whether the variant ``isa`` was compiled into this install.

    Parameters
    ----------
    isa : str
        A name from :data:`VARIANTS`.

    Returns
    -------
    bool
    """
    return find_spec(f"{__package__}._kernels_{isa}") is not None


def usable_variants() -> tuple[str, ...]:
    """The variants that are built and that this CPU and OS run, best first.

    Returns
    -------
    tuple of str
        Always ends with ``"baseline"``.
    """
    return tuple(isa for isa in VARIANTS if is_built(isa) and cpu_supports(isa))


def select_variant(requested: str | None, usable: tuple[str, ...]) -> str:
    """The variant to load: ``requested`` if it can run, the best usable one if unset.

    Parameters
    ----------
    requested : str or None
        The value of ``UL4M4_ISA``; ``None``, ``""`` and ``"auto"`` ask for the best.
    usable : tuple of str
        The variants that can run here, best first (see :func:`usable_variants`).

    Returns
    -------
    str

    Raises
    ------
    ImportError
        If ``requested`` is not a variant name, or names one that cannot run here.
    """
    name = (requested or "").strip().lower()
    if name in ("", "auto"):
        return usable[0]
    if name not in VARIANTS:
        raise ImportError(f"{ENV_VAR}={requested!r} is not a kernel variant; expected one "
                          f"of {', '.join(VARIANTS)} or auto")
    if name not in usable:
        raise ImportError(f"{ENV_VAR}={requested!r}: the {name} kernels are not built or this "
                          f"CPU/OS does not support them; usable here: {', '.join(usable)}")
    return name


def load_variant(isa: str) -> ModuleType:
    """Import the compiled kernels of variant ``isa`` (check it can run first).

    Parameters
    ----------
    isa : str
        A name from :data:`VARIANTS`.

    Returns
    -------
    module
    """
    return import_module(f"{__package__}._kernels_{isa}")


#: The variant in use: "avx512", "avx2" or "baseline".
ISA = select_variant(os.environ.get(ENV_VAR), usable_variants())
_module = load_variant(ISA)
add_rows = _module.add_rows
add_squared_deviations = _module.add_squared_deviations
partial_sq_dists_from_cross = _module.partial_sq_dists_from_cross
sq_to_assigned = _module.sq_to_assigned
bounded_argmin = _module.bounded_argmin
candidate_minimum = _module.candidate_minimum
nearest_from_cross = _module.nearest_from_cross

__all__ = [
    "ISA",
    "VARIANTS",
    "add_rows",
    "add_squared_deviations",
    "bounded_argmin",
    "candidate_minimum",
    "cpu_supports",
    "nearest_from_cross",
    "partial_sq_dists_from_cross",
    "select_variant",
    "sq_to_assigned",
    "usable_variants",
]
