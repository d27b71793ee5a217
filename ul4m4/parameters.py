"""The estimator's parameter table: names, defaults, allowed values and docs, once.

:data:`PARAMETERS` is the one source of the constructor parameters of
:class:`~ul4m4.UL4M4Imputer`, which :class:`~ul4m4.ModalityImputer` shares:
both signatures (:func:`table_init`), the checks of
:func:`ul4m4.settings.resolve_settings` (:data:`ul4m4.settings.PARAMETER_CONSTRAINTS`)
and the "Parameters" sections of both docstrings (:func:`parameter_docs`) are
made from it, so a parameter is added, or its allowed values changed, here
alone. The backends ``backend`` accepts are those of the backend registry,
:data:`ENGINES`, read when a value is checked; it lives here, below the
engines, so that checking a parameter never imports one.
"""

from __future__ import annotations

import inspect
import numbers
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._utils.validation import Interval, Options, TypeOf

__all__ = [
    "AUTO_K",
    "ENGINES",
    "PARAMETERS",
    "Backend",
    "Parameter",
    "backend_names",
    "check_device",
    "parameter_docs",
    "table_init",
]

#: ``n_clusters`` values that select k: over ``k_grid`` only, or growing it past its top.
AUTO_K = ("auto",)


# ------------------------------------------------------------------ backends
@dataclass(frozen=True)
class Backend:
    """One registered backend: where its engine, its input adapter and its reader live.

    Attributes
    ----------
    engine : str
        ``"module:Class"`` of the engine; the class is called with the device.
    inputs : str or None
        ``"module:function"`` of the input adapter, ``function(X, engine)`` ->
        ``(X as host arrays, the engine for this input, output converter)``
        (the converter's ``wrap`` turns results back into the caller's type,
        e.g. tensors on the input's device). None: the input is read as given
        and results are returned as they are
        (:class:`ul4m4.backends.AsGiven`).
    reader : str or None
        ``"module:function"`` of the reader, ``function(X, *, names, dims)`` ->
        ``(names, arrays)``: the (adapted) input as the arrays the engine reads,
        names matched to the fit-time ``names`` and shapes checked against
        ``dims``, values unread. :func:`ul4m4.validation.check_multimodal` scans
        them over the engine's ``reduce_blocks``. None: the host reading,
        :func:`ul4m4.validation.read_arrays`.
    cpu_only : str or None
        Why the backend takes no device but the CPU (the end of the error
        message for another ``device``); None where it takes any device its
        engine accepts.
    """

    engine: str
    inputs: str | None = None
    cpu_only: str | None = None
    reader: str | None = None


#: The backend registry, ``name -> Backend``, in the order the documentation lists them:
#: the values ``backend`` accepts (:mod:`ul4m4.backends` loads them). A new backend is
#: one module in ``ul4m4/backends/`` and one line here.
ENGINES: dict[str, Backend] = {
    "numpy": Backend("ul4m4.backends.numpy_engine:NumpyEngine",
                     cpu_only="the numpy backend runs on the CPU"),
    "torch": Backend("ul4m4.backends._torch:TorchEngine",
                     inputs="ul4m4.backends._torch:tensor_input"),
    "dask": Backend("ul4m4.backends.dask:DaskEngine",
                    cpu_only="backend='dask' runs the NumPy engine on the workers' CPUs",
                    reader="ul4m4.backends.dask:as_row_chunks"),
}


def backend_names() -> tuple[str, ...]:
    """The names ``backend`` accepts: those of :data:`ENGINES`, as registered now."""
    return tuple(ENGINES)


def check_device(backend: str, device: Any) -> None:
    """Raise ValueError where ``backend`` cannot run on ``device`` (a CPU-only backend).

    The one place the rule lives; the estimator's parameter check calls it. A
    device the engine itself must interpret (e.g. ``"cuda:7"`` for torch) is
    checked when that engine is made.

    Examples
    --------
    >>> check_device("numpy", "cpu")
    >>> check_device("numpy", "cuda")
    Traceback (most recent call last):
    ...
    ValueError: device='cuda' needs backend='torch'; the numpy backend runs on the CPU
    """
    reason = ENGINES[backend].cpu_only
    if reason is not None and device is not None and str(device) != "cpu":
        devices = " or ".join(repr(n) for n, b in ENGINES.items() if b.cpu_only is None)
        raise ValueError(f"device={str(device)!r} needs backend={devices}; {reason}")


# ---------------------------------------------------------------- parameters
_INT1 = Interval(numbers.Integral, 1)
_BOOL = TypeOf((bool, np.bool_), "a bool")


@dataclass(frozen=True)
class Parameter:
    """One constructor parameter.

    Attributes
    ----------
    default : object
        Its default value.
    allowed : list
        Constraints of :func:`ul4m4._utils.validation.check_params`; a value is
        valid when it satisfies one of them.
    kind : str
        The numpydoc type of the docstring, e.g. ``'int or "auto"'``.
    annotation : str
        The type hint of the signature.
    short : str
        A summary of a few lines (:class:`~ul4m4.ModalityImputer`'s docstring).
    doc : str
        The full description (:class:`~ul4m4.UL4M4Imputer`'s docstring).
    default_text : str or None
        How the docstring writes the default (None: from its value).
    """

    default: Any
    allowed: list
    kind: str
    annotation: str
    default_text: str | None = None
    short: str = ""
    doc: str = ""

    def header(self, name: str) -> str:
        """The numpydoc line ``name : kind, default=...``."""
        default = self.default_text
        if default is None:
            default = f'"{self.default}"' if isinstance(self.default, str) else repr(self.default)
        return f"{name} : {self.kind}, default={default}"


def _backend_kind() -> str:
    return "{" + ", ".join(f'"{name}"' for name in ENGINES) + "}"


#: Every constructor parameter of :class:`~ul4m4.UL4M4Imputer`, in the docstring's order.
PARAMETERS: dict[str, Parameter] = {
    "n_clusters": Parameter(
        8, [_INT1, Options(AUTO_K)],
        'int or "auto"', 'int | Literal["auto"]',
        short="""\
Number of centres k, or ``"auto"`` to pick it from ``k_grid`` by masked
reconstruction on the training data. Fitting needs at least ``n_clusters``
samples.""",
        doc="""\
Number of centres k; ``"auto"`` picks it from ``k_grid`` by masked
reconstruction on the training data (no labels), like ``completion="auto"``.
The grid is not a wall: while the best k is the largest one scored, twice
that k (at most n_samples) is scored too, up to 3 more values (e.g. 128,
256, 512 after the default grid), so the choice lies inside the grid or at
a stated limit; ``selection_.to_markdown()`` says which."""),
    "max_iter": Parameter(
        300, [_INT1],
        'int', 'int',
        short="""\
Maximum number of Lloyd iterations (mini-batch: epochs).""",
        doc="""\
Maximum number of Lloyd iterations; with ``algorithm="minibatch"``, the
budget in epochs (at most ``ceil(max_iter * n_samples / batch_size)``
mini-batch steps)."""),
    "tol": Parameter(
        0.0, [Interval(numbers.Real, 0, None, "left")],
        'float', 'float',
        short="""\
Relative tolerance on the centre shift (0: stop only at a fixed point).""",
        doc="""\
Relative tolerance, as in scikit-learn's ``KMeans``: stop when the total
squared z-space shift of the centres in one iteration (per mini-batch
step with ``algorithm="minibatch"``; summed over centres and over the
dimensions of the modalities a centre carries before and after) is at
most ``tol * v``, where ``v = sum_m d_m (n_m - 1) / n_m / sum_m d_m`` is
the mean per-dimension variance (ddof=0, as ``np.var``) of the z-scored
training data, each dimension of modality m over the ``n_m`` samples
that observe it (see :func:`ul4m4.centers.shift_tolerance`). With the
default 0 the Lloyd iterations stop only at a fixed point (no label
changes). Measured (``benchmarks/bench_tol.py``; 2 shared cores of an
Intel Xeon, k-means++ then Lloyd, float32): on mfeat (2000 x 649, 50 %
of the slots missing, k=16) no run stopped before its fixed point at
``tol`` up to 0.1 (21 iterations, 0.15 s, same block-MSE 0.633); on
200,000 x 1000 synthetic data (4 x 250 dims, 32 clusters, 50 %
missing, k=32), tol=0: 96 iterations, 98 s; 1e-4: 94, 85 s (same
inertia and block-MSE 0.2765); 1e-2: 37, 33 s (inertia +0.001 %,
block-MSE 0.2764); 1e-1: 19, 28 s (inertia +4.6 %, block-MSE 0.2795)."""),
    "init": Parameter(
        "k-means++", [Options(("k-means++", "random")),
             TypeOf((Mapping, list, tuple), "a mapping of centres")],
        '{"k-means++", "random"} or mapping of str to array-like', 'Literal["k-means++", "random"] | Mapping[str, Any]',
        short="""\
Seeding, or explicit initial centres ``{modality: array (k, d_m)}`` (with
:class:`~ul4m4.ModalityImputer`, keyed by the names of ``modalities``).""",
        doc="""\
Seeding: k-means++ under the partial distance, k distinct random samples,
or explicit initial centres ``{modality: array (k, d_m)}`` in the raw
input space (an all-NaN row means the centre lacks that modality)."""),
    "random_state": Parameter(
        None, [TypeOf((type(None), numbers.Integral, np.random.RandomState),
                     "None, an int or a RandomState", ValueError)],
        'int, RandomState instance or None', 'int | np.random.RandomState | None',
        short="""\
Drives every random choice (seeding).""",
        doc="""\
Drives every random choice (seeding). Same seed, same result."""),
    "dtype": Parameter(
        np.float32, [TypeOf((object,), "float32 or float64")],
        '{numpy.float32, numpy.float64}', 'Any', default_text="numpy.float32",
        short="""\
Working precision (:class:`~ul4m4.ModalityImputer` returns the dtype of
``X``: float32 stays float32, anything else becomes float64; integers
beyond 2**53 in magnitude are rounded then, with a warning).""",
        doc="""\
Working precision of z-scored data and centres. Labels are the exact
argmin in either precision: near-ties are rechecked in float64."""),
    "batch_size": Parameter(
        None, [_INT1, Options((None,))],
        'int or None', 'int | None',
        short="""\
Rows per chunk of every pass over the data (``None``: from a memory budget).""",
        doc="""\
Rows per chunk of every pass over the data; ``None`` picks it from a
64 MiB working-memory budget per chunk, with at least two chunks per
thread (256 to 16384 rows). Peak extra memory is O(batch_size * (k + d))
per thread plus O(n_samples) labels: memory-mapped and other
row-sliceable inputs are streamed chunk by chunk and never copied whole.
Results do not depend on it with ``algorithm="lloyd"`` (labels, centres,
``n_iter_``, and ``inertia_``, a sum of per-row float64 distances). With
``algorithm="minibatch"`` it is also the mini-batch size (``None``: 1024)
and changes the result."""),
    "reference_one_step": Parameter(
        False, [_BOOL],
        'bool', 'bool',
        short="""\
Reproduce the public reference scripts (comparison only).""",
        doc="""\
Reproduce the public reference scripts (seeding, one assignment, one mean
update), for comparison only: the result is not a k-means fixed point."""),
    "verbose": Parameter(
        0, [Interval(numbers.Integral, 0), _BOOL],
        'int', 'int',
        short="""\
Progress on the ``"ul4m4"`` logger: 0 silent, 1 stages, 2 every iteration.""",
        doc="""\
Progress on stderr through the ``"ul4m4"`` logger, as in scikit-learn:
0 is silent; 1 logs the stages of a fit (each model-selection fit
``"selection: k=16, 3/5"``, each ensemble member ``"member 2/5"``, how
each k-means run ended, and with ``"auto"`` one line saying what was
chosen and why) and the progress of each k-means run: where stderr is
a terminal and tqdm is installed, a progress bar over its iterations
showing the k-means++ seeds drawn, then the labels that changed and
the inertia; elsewhere (a file, a pipe) a line ``"Lloyd iteration
40/300, 12 labels changed, inertia ..., centre shift ..., elapsed
...s"`` one second into the iterations, then every 5 seconds (and
``"k-means++ seed 12/64, elapsed ...s"`` lines alike for a long
seeding: each seed is a pass over the data). 2 also logs every
iteration. ``True`` is 1."""),
    "empty": Parameter(
        "raise", [Options(("raise", "mean"))],
        '{"raise", "mean"}', 'Literal["raise", "mean"]',
        short="""\
A sample that misses every modality: ``"raise"`` ``ValueError`` in fit and
transform, or ``"mean"``: fit leaves it out (it carries nothing to
cluster) and transform fills every modality with its training mean.""",
        doc="""\
What :meth:`transform` and :meth:`predict` do with a sample that has no
observed modality: raise, or fill every modality with its training mean
(``predict`` then returns label -1 for it)."""),
    "partial": Parameter(
        "raise", [Options(("raise", "missing"))],
        '{"raise", "missing"}', 'Literal["raise", "missing"]',
        short="""\
A modality's row that is partly NaN: raise ``ValueError``, or
(``"missing"``) treat that modality as missing in the row, so its finite
cells are ignored and the whole row is filled. With one modality
(``ModalityImputer(modalities=None)``), any NaN then makes the whole row
missing, so combine it with ``empty="mean"``.""",
        doc="""\
What fit, transform and predict do with a modality row that is partly
NaN. ``"raise"``: raise ``ValueError`` naming the rows (UL4M4 models
whole missing modalities, and a partly NaN row is more often a bug
upstream than a choice). ``"missing"``: count the whole modality
missing in that row: its finite cells are not used (not in the
statistics, the clustering or the completion search) and the whole row
is filled, so they are not returned as given. A sample whose every
modality becomes missing this way is handled by ``empty``."""),
    "completion": Parameter(
        "greedy", [Options(("greedy", "soft", "auto"))],
        '{"greedy", "soft", "auto"}', 'Literal["greedy", "soft", "auto"]',
        short="""\
Copy each missing modality from one centre (``"greedy"``, the method),
blend the centres by softmax weights (``"soft"``), or choose per modality
without labels (``"auto"``).""",
        doc="""\
``"greedy"`` is the method's completion (copy each missing modality from
one centre). ``"soft"`` fills each missing modality with the mean of the
centres that carry it, weighted by ``softmax(-(d_j^2 - min d^2) /
(temperature * median d^2))`` over the partial distances d_j of the
sample to the centres. ``"auto"`` fills each modality with an ensemble
chosen without labels by masked reconstruction on a subsample of at
most 8,192 training rows (see :mod:`ul4m4.auto`): every registered
rule's candidates are scored (greedy and soft at every k of the grid,
and the conditional low-rank mixture of :mod:`ul4m4.mixture`, whose
fill is the conditional mean of the missing blocks given the observed
ones, from k=1 with rank 40 or 80, probabilistic PCA, to k=64 with rank
0);
greedy forward selection builds each modality's weighted blend, a
shrinkage toward the mean is chosen, and the blend replaces the mean
only if it wins by more than two standard errors. The blends use at
most two fitted models, each then fitted once on all the rows, so the
fit costs about as much as two or three fits. The scores are in
``selection_``."""),
    "temperature": Parameter(
        0.05, [Interval(numbers.Real, 0, None, "neither")],
        'float', 'float',
        short="""\
Relative temperature of ``completion="soft"``.""",
        doc="""\
Relative temperature of ``completion="soft"``."""),
    "n_init": Parameter(
        1, [_INT1],
        'int', 'int',
        short="""\
Number of seedings; the best run is kept.""",
        doc="""\
Number of seedings; the run with the lowest inertia among those that
converged is kept (the lowest of all when none converged)."""),
    "n_ensemble": Parameter(
        None, [_INT1, Options((None,))],
        'int or None', 'int | None',
        short="""\
Independently seeded fits whose completions are averaged (``None``: 1).""",
        doc="""\
Number of independently seeded k-means fits (same k, seeds drawn from
``random_state``) whose completions are averaged: a missing block is
the mean of the members' fills, which lowers the variance that one
seeding leaves in the completion. The first member is the model
described by ``cluster_centers_``, ``labels_`` and ``predict``; the
others are in ``ensemble_centers_``. ``None`` means 1 (the faithful
method). With more
than one member ``return_sources``/``return_weights`` are refused (no
single centre filled a block). Fit cost grows by one fit per member.
With ``completion="auto"`` each chosen model is fitted ``n_ensemble``
times (``None``: once) and each seeding's members share its weight."""),
    "k_grid": Parameter(
        (4, 8, 16, 32, 64), [TypeOf((list, tuple), "a non-empty tuple of integers")],
        'tuple of int', 'tuple[int, ...]',
        short="""\
Candidate k when ``n_clusters="auto"``.""",
        doc="""\
Candidate k when ``n_clusters="auto"`` (values above
n_samples dropped)."""),
    "selection_fraction": Parameter(
        0.2, [Interval(numbers.Real, 0, 1, "right")],
        'float', 'float',
        short="""\
Share of the training samples that get a block hidden for ``"auto"`` selection.""",
        doc="""\
Share of the training samples with two or more modalities that get one
block hidden for ``"auto"`` selection (at most 10,000 samples; with
``completion="auto"``, of the subsample of at most 8,192 rows it scores
the candidates on)."""),
    "n_jobs": Parameter(
        None, [_INT1, Interval(numbers.Integral, None, -1, "right"), Options((None,))],
        'int or None', 'int | None',
        short="""\
Threads over row chunks, as in scikit-learn (``None``: every CPU); results
do not depend on it.""",
        doc="""\
Threads that process row chunks in parallel (BLAS is then limited to one
thread each); ``None`` and -1 use every CPU the process may run on, -2
all but one, ``-j`` all but ``j - 1`` (at least 1), as in scikit-learn.
Results do not depend on it. Calls on little data (one chunk, or at most
:data:`ul4m4.threads.INLINE_BYTES`, e.g. serving a few rows) run on the
calling thread whatever ``n_jobs``: no pool is started and the BLAS and
PyTorch thread settings are left alone, so concurrent callers do not
oversubscribe the CPUs."""),
    "shrinkage": Parameter(
        0.0, [Interval(numbers.Real, 0, 1, "left")],
        'float', 'float',
        short="""\
Pull filled values toward the training mean by this share.""",
        doc="""\
Pull every value filled from centres toward the training mean:
``mean + (1 - shrinkage) * (filled - mean)``. 0 keeps the method's values.
``completion="auto"`` chooses it per modality among 0, 0.25 and 0.5."""),
    "algorithm": Parameter(
        "lloyd", [Options(("lloyd", "minibatch"))],
        '{"lloyd", "minibatch"}', 'Literal["lloyd", "minibatch"]',
        short="""\
Full Lloyd iterations, or mini-batch k-means (faster on large data).""",
        doc="""\
``"lloyd"``: full Lloyd iterations (one pass over the data each) to a
fixed point. ``"minibatch"``: Sculley's mini-batch k-means under the
partial distance (see :mod:`ul4m4.minibatch`): k-means++ seeds drawn
from a random sample of ``max(3 * batch_size, 3 * k)`` rows, then steps
on ``batch_size`` rows drawn with replacement through ``random_state``,
each moving a centre toward its new members with rate 1 / (members seen
so far, per modality); it stops when the smoothed batch inertia has not
improved for 10 steps, by ``tol``, or after ``max_iter`` epochs, and
ends with one exact assignment pass over all the data for ``labels_``
and ``inertia_``. ``n_iter_`` then counts steps, and ``history_`` holds
the smoothed batch inertia scaled to n_samples. Much faster on large
data; the centres are not a Lloyd fixed point."""),
    "backend": Parameter(
        "numpy", [Options(ENGINES)],
        _backend_kind(), 'str',
        short="""\
Compute engine: one of the backends registered in
:data:`ul4m4.backends.ENGINES`.""",
        doc="""\
Compute engine (see :mod:`ul4m4.backends`). ``"torch"`` runs the distance
GEMMs, Lloyd sums and completion tensors on PyTorch tensors (same labels,
centres and completions as ``"numpy"``; see :mod:`ul4m4.backends._torch`)
and accepts tensors, returning tensors on the input's device. ``"dask"``
fits on ``dask.array`` inputs chunked by rows on the active dask scheduler
(a ``dask.distributed`` cluster when a ``Client`` is open), and
``transform``/``predict`` return lazy dask arrays; see
:mod:`ul4m4.backends.dask`. Every option runs on every backend: the
drivers are shared and only the engine's kernels differ
(``docs/architecture.md``).
Torch tensors need ``"torch"``: the other backends raise ``TypeError``
saying so, rather than move a tensor off its device behind the caller's
back (``tensor.numpy()`` is the explicit way to use them there)."""),
    "device": Parameter(
        None, [TypeOf((str, type(None)), "a string such as 'cpu' or 'cuda', a torch.device "
                     "or None")],
        'str, torch.device or None', 'Any',
        short="""\
Device of the torch backend (``None``: the input's, else the CPU).""",
        doc="""\
Device of the torch backend (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...);
``None`` uses the device of tensor input, else the CPU."""),
}


def parameter_docs(table: Mapping[str, Parameter], *, short: bool = False,
                   indent: int = 4) -> str:
    """The numpydoc entries of ``table``, indented as in a class docstring.

    ``short`` takes each parameter's summary instead of its full description.

    Examples
    --------
    >>> print(parameter_docs({"tol": PARAMETERS["tol"]}, short=True, indent=0))
    tol : float, default=0.0
        Relative tolerance on the centre shift (0: stop only at a fixed point).
    """
    pad = " " * indent
    lines = []
    for name, parameter in table.items():
        lines.append(pad + parameter.header(name))
        text = parameter.short if short else parameter.doc
        lines.append(textwrap.indent(text, pad + "    "))
    return "\n".join(lines)


def table_init(table: Mapping[str, Parameter], n_positional: int = 1) -> Callable[..., None]:
    """An estimator ``__init__`` that takes the parameters of ``table`` and stores them as given.

    Its signature (what :func:`inspect.signature`, and so scikit-learn's
    ``get_params``, ``set_params`` and ``clone``, read) lists every parameter
    with its default; the first ``n_positional`` may be passed by position,
    the others by keyword only.
    """
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for i, (name, parameter) in enumerate(table.items()):
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if i < n_positional
                else inspect.Parameter.KEYWORD_ONLY)
        parameters.append(inspect.Parameter(name, kind, default=parameter.default,
                                            annotation=parameter.annotation))
    signature = inspect.Signature(parameters, return_annotation="None")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        # scikit-learn's convention: store the parameters as given, check them in fit.
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__doc__ = ("Store the parameters as given (scikit-learn's convention; fit checks "
                        "them). See the class docstring.")
    return __init__
