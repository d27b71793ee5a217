"""The tiers of ``ul4m4`` and the checks of their direction (used by ``tests/test_layers.py``).

Tiers, lowest first. A module may import modules of its own tier or of a lower one, never
of a higher one (``TYPE_CHECKING`` imports do not count; function-local imports do):

``bottom``
    data access, validation, statistics, distances, packed blocks, centres, plans,
    settings, the compiled kernels and ``_utils``;
``engines``
    the ``Engine`` protocol (``engine.py``) and the backends;
``drivers``
    every decision of the method: clustering, completion, selection, the fitted model,
    inference and persistence;
``estimator``
    ``UL4M4Imputer`` and ``ModalityImputer``;
``side``
    everything built on the estimator: the package's public ``__init__``, the command
    line, experiments, data sets, encoders, the fusion model, baselines, metrics.
    A side module takes from the core (the lower tiers) only what :data:`CORE_API`
    lists: the modules it may use and, for each, the names (always names of that
    module's ``__all__``). The engines, kernels and drivers are not in it.

Every first-party module must be listed: an entry ``"name"`` is one module (relative to
the package, ``""`` being the package ``__init__``), an entry ``"name.*"`` a package
and every module under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from _imports import ImportGraph, public_names

#: The tiers, lowest first; each lists its modules (see the module docstring).
TIERS: dict[str, tuple[str, ...]] = {
    "bottom": (
        "_version",
        "_kernels",
        "_kernels_avx2",
        "_kernels_avx512",
        "_kernels_baseline",
        "_utils.*",
        "inputs",
        "validation",
        "view",
        "rowsums",
        "threads",
        "statistics",
        "distance",
        "blocks",
        "centers",
        "plan",
        "stream",
        "settings",
        "parameters",
    ),
    "engines": ("engine", "backends.*"),
    "drivers": (
        "cluster",
        "minibatch",
        "complete",
        "selection",
        "mixture",
        "rules",
        "members",
        "uncertainty",
        "auto",
        "model",
        "model_layout",
        "model_checks",
        "inference",
        "persistence",
    ),
    "estimator": ("imputer", "adapter"),
    "side": (
        "",
        "__main__",
        "cli",
        "cli_parser",
        "files_cli",
        "demo",
        "metrics",
        "missingness.*",
        "experiments.*",
        "datasets.*",
        "encoders.*",
        "fusion.*",
        "baselines.*",
    ),
}
#: The tier whose modules use the core through :data:`CORE_API` only.
SIDE = "side"
#: The core's API for side modules: module entry (as in TIERS) -> the names side modules
#: may take from it (None: every name of the module's ``__all__``).
CORE_API: dict[str, tuple[str, ...] | None] = {
    "_version": None,
    "_utils.*": None,  # the helpers shared by the whole package
    "imputer": None,
    "adapter": None,
    "persistence": ("ModelFileError",),
    "settings": ("AUTO_K", "resolve_settings"),
    # the estimator's input contract, shared by the baselines and metrics, and the one
    # NaN/inf scan (scan_block), which the missingness report reuses
    "validation": ("Multimodal", "check_multimodal", "check_observed_twice", "scan_block"),
    "view": ("standardize_rows",),
    "statistics": ("modality_statistics", "unit_scales"),
    "distance": ("nearest_donors",),
}
#: Where a module that is in no tier is told to add itself.
WHERE = "tests/_tiers.py (TIERS)"
#: Where the core's API for side modules is listed.
API_WHERE = "tests/_tiers.py (CORE_API)"


def entry_of(module: str, package: str, entries: Sequence[str]) -> str | None:
    """The entry that covers ``module`` (a dotted name under ``package``); the longest wins."""
    rel = module[len(package) + 1 :] if module != package else ""
    best: str | None = None
    for entry in entries:
        if entry.endswith(".*"):
            head = entry[:-2]
            hit = rel == head or rel.startswith(head + ".")
        else:
            hit = rel == entry
        if hit and (best is None or len(entry) > len(best)):
            best = entry
    return best


def tier_of(module: str, package: str, tiers: Mapping[str, Sequence[str]]) -> str | None:
    """The tier that lists ``module`` (a dotted name under ``package``); None if none does."""
    owner = {entry: tier for tier, entries in tiers.items() for entry in entries}
    entry = entry_of(module, package, list(owner))
    return None if entry is None else owner[entry]


def unlisted(graph: ImportGraph, tiers: Mapping[str, Sequence[str]] = TIERS) -> list[str]:
    """Modules of the package that no tier lists, each with where to add it."""
    order = " <- ".join(tiers)
    return [
        f"{graph.modules[name].where(1)}: {name} is in no tier; add it to {WHERE} "
        f"({order}: a module may import its own tier and lower ones only)"
        for name in sorted(graph.modules)
        if tier_of(name, graph.package, tiers) is None
    ]


def stale_entries(
    graph: ImportGraph,
    tiers: Mapping[str, Sequence[str]] = TIERS,
    api: Mapping[str, Sequence[str] | None] = CORE_API,
) -> list[str]:
    """Entries of the tier table or of the API that name no module (renamed or removed)."""
    entries = [(e, WHERE) for t in tiers.values() for e in t] + [(e, API_WHERE) for e in api]
    return [
        f"{where}: {entry!r} names no module of {graph.package}; remove or rename it"
        for entry, where in entries
        if all(entry_of(name, graph.package, [entry]) is None for name in graph.modules)
    ]


def upward_imports(graph: ImportGraph, tiers: Mapping[str, Sequence[str]] = TIERS) -> list[str]:
    """Every import of a module of a higher tier, as ``file:line: a (tier) imports b (tier)``."""
    rank = {tier: i for i, tier in enumerate(tiers)}
    found = []
    for edge in graph.edges:
        source = tier_of(edge.source, graph.package, tiers)
        target = tier_of(edge.target, graph.package, tiers)
        if source is None or target is None or rank[target] <= rank[source]:
            continue
        how = " (implicit package import)" if edge.implicit else ""
        found.append(
            f"{graph.where(edge)}: {edge.source} ({source}) imports {edge.target} ({target}){how}"
        )
    return found


def non_public_uses(
    graph: ImportGraph,
    tiers: Mapping[str, Sequence[str]] = TIERS,
    api: Mapping[str, Sequence[str] | None] = CORE_API,
    side: str = SIDE,
) -> list[str]:
    """What side modules take from the core beyond ``api`` or a module's ``__all__``."""
    found = []
    cache: dict[str, frozenset[str] | None] = {}
    for use in graph.name_uses():
        if tier_of(use.source, graph.package, tiers) != side:
            continue
        target_tier = tier_of(use.target, graph.package, tiers)
        if target_tier is None or target_tier == side:
            continue
        if use.target not in cache:
            cache[use.target] = public_names(graph.modules[use.target])
        public = cache[use.target]
        entry = entry_of(use.target, graph.package, list(api))
        if entry is None:
            why = f"{use.target} is not in the core's API for side modules ({API_WHERE})"
        elif public is None or use.name not in public:
            why = "which has no __all__" if public is None else "not in its __all__"
        elif api[entry] is not None and use.name not in api[entry]:
            why = f"not among the names of {entry!r} in {API_WHERE}"
        else:
            continue
        found.append(
            f"{graph.modules[use.source].where(use.line)}: {use.source} uses "
            f"{use.target}.{use.name} ({use.how}), {why}"
        )
    return found
