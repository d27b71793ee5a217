#!/usr/bin/env python
"""Quality, cost and uncertainty of ``completion="auto"`` against its peers (issue 22's tables).

For each data set (``mfeat``; ``movielens`` when its loader and encoder are installed),
each nominal share of missing modality slots and each seed, the benchmark's own
protocol (:func:`ul4m4.experiments.benchmark.run_benchmark`, as ``python -m ul4m4.demo``
runs it: stratified 70/30 split per seed, one independent mask over train and test,
every method fitted on the masked training rows only, one BLAS thread) scores:

- block-MSE on the hidden test blocks in training z-space (lower is better);
- the downstream score of the benchmark's logistic-regression head trained on the
  imputed training set: accuracy (mfeat), true micro-F1 over the 19 genres (MovieLens,
  multi-label; samples- and macro-F1 are in the CSV);
- fit time, and fit + filling the training and test sets (wall seconds, one thread).

Methods (registry names of :mod:`ul4m4.baselines`): ``ul4m4-auto``
(``UL4M4Imputer(completion="auto")``), ``ul4m4`` (greedy, k from ``--k``, 16),
``knn`` (scikit-learn's KNNImputer), ``mean`` and ``softimpute`` (inductive SoftImpute).
A method the installed ul4m4 lacks is left out with a note.

Uncertainty: when the installed ``UL4M4Imputer.transform`` takes ``return_std``,
``ul4m4-auto`` is fitted again on the same split and mask and its predicted std of
each filled test block is scored against the block's true z-space MSE
(:func:`ul4m4.metrics.uncertainty_auroc`: AUROC for the top quarter of errors;
:func:`ul4m4.metrics.calibration_ratio`: mean(std^2) / mean(error)), overall and per
modality, next to the AUROC of "fewer observed modalities" as the naive predictor.

Outputs go to ``<out>/<label>/`` (default ``results/auto_quality/current/``):
``rows.csv`` (one row per run), ``summary.csv`` (mean and std over seeds),
``uncertainty.csv``, ``tables.md`` (what is printed) and ``run.json`` (settings,
ul4m4 path and version, elapsed time). With ``--resume``, finished runs are kept in
``<out>/<label>/runs/`` and reused, so a killed run resumes where it stopped; a run
is keyed by the library *version*, not its code, so resume only the same code.

Comparing with an older ul4m4 (e.g. today's auto before a change): check the old
commit out beside this one, run this same script with ``PYTHONPATH`` pointing at it
and another label, then merge the tables::

    git worktree add /tmp/ul4m4-old <old-commit>
    cp ul4m4/*.so /tmp/ul4m4-old/ul4m4/            # the compiled kernels, if unchanged
    PYTHONPATH=/tmp/ul4m4-old python scripts/auto_quality.py --label today \\
        --methods ul4m4-auto
    PYTHONPATH=. python scripts/auto_quality.py --label new
    python scripts/auto_quality.py --merge today,new     # one table, rows "method [label]"

The ul4m4 measured is the one Python imports (``PYTHONPATH`` first); its path and
version are printed and stored. Usage::

    PYTHONPATH=. python scripts/auto_quality.py                     # everything (see run.json)
    PYTHONPATH=. python scripts/auto_quality.py --datasets mfeat --missing 0.5 --seeds 1
    PYTHONPATH=. python scripts/auto_quality.py --methods ul4m4-auto,knn --label new
    python scripts/auto_quality.py --merge today,new
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

import ul4m4
from ul4m4 import UL4M4Imputer
from ul4m4.baselines import available_methods, make_method
from ul4m4.experiments.benchmark import (
    BenchmarkConfig,
    BenchmarkError,
    draw_mask,
    environment,
    run_benchmark,
    seed_for,
)
from ul4m4.experiments.datasets import SPLIT_AWARE, DatasetError, load_dataset
from ul4m4.experiments.report import summarise
from ul4m4.metrics import hidden_mask
from ul4m4.missingness import apply_mask, mask_from_data

try:  # absent from an older ul4m4 (the --label workflow): no uncertainty figures then
    from ul4m4.experiments.benchmark import split_rows
    from ul4m4.metrics import block_errors, calibration_ratio, uncertainty_auroc
except ImportError:
    split_rows = None

DEFAULTS = {
    "datasets": ("mfeat", "movielens"),
    "missing": (0.3, 0.5, 0.7),
    "methods": ("ul4m4-auto", "ul4m4", "knn", "mean", "softimpute"),
    "k": (16,),
    "seeds": 3,
    "out": "results/auto_quality",
    "label": "current",
}
#: Test share of the split, as the demo.
TEST_SIZE = 0.3
DOWNSTREAM = {"mfeat": ("accuracy", "accuracy"), "movielens": ("micro_f1", "micro-F1")}


def _csv(cast):
    return lambda text: tuple(cast(t) for t in text.split(",") if t.strip())


def supports_std() -> bool:
    """Whether the installed ``UL4M4Imputer.transform`` takes ``return_std``."""
    params = inspect.signature(UL4M4Imputer.transform).parameters
    return "return_std" in params and split_rows is not None


# ----------------------------------------------------------------------------- measuring
def quality_rows(dataset: str, args: argparse.Namespace, methods: list[str],
                 run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The benchmark's rows (quality and cost) of one data set, one per seed x share x method."""
    config = BenchmarkConfig(
        dataset=dataset, protocol="independent", missing=args.missing, ks=args.k,
        methods=methods, seeds=args.seeds, test_size=TEST_SIZE, memory="none",
        progress=not args.no_progress,
    )
    resume = run_dir / "runs" / dataset if args.resume else None
    result = run_benchmark(config, resume_dir=resume,
                           argv=["scripts/auto_quality.py", *sys.argv[1:]])
    summary = summarise(result)
    summary.insert(0, "dataset", dataset)
    frame = result.frame()
    frame = frame[frame["method"] != "complete"].copy()
    frame["fit_fill_s"] = frame["fit_s"] + frame["fill_train_s"] + frame["fill_test_s"]
    return frame, summary


def uncertainty_rows(dataset: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Predicted std of ``ul4m4-auto``'s test fills against their true errors, per seed x share."""
    X_all, y = load_dataset(dataset)
    split_loader = SPLIT_AWARE.get(dataset)
    rows = []
    for seed in range(args.seeds):
        train, test = split_rows(y, TEST_SIZE, seed)
        X = split_loader(train)[0] if split_loader is not None else X_all
        for share in args.missing:
            setting = BenchmarkConfig(missing=(share,)).settings()[0]
            mask = draw_mask(setting, X, seed_for(seed, setting.label))
            X_train = {k: v[train] for k, v in X.items()}
            X_test = {k: v[test] for k, v in X.items()}
            Xm_train = apply_mask(X_train, mask[train])
            Xm_test = apply_mask(X_test, mask[test])
            method = make_method("ul4m4-auto", random_state=seed).fit(Xm_train)
            out = method.imputer_.transform(Xm_test, return_std=True)
            std_dict = out[-1]
            filled = out[0]
            hidden = hidden_mask(X_test, Xm_test)
            # The training statistics, as the model's z-space (the same computation).
            errors = block_errors(X_test, filled, hidden, method.scale_)
            names = list(X_test)
            std = np.column_stack([np.asarray(std_dict[n], dtype=float) for n in names])
            std = np.where(hidden, std, np.nan)
            # The naive predictor: a row with fewer observed modalities is filled worse.
            n_observed = mask_from_data(Xm_test).sum(axis=1)
            naive = np.where(hidden, -n_observed[:, None].astype(float), np.nan)
            row = {"dataset": dataset, "seed": seed, "missing_nominal": share,
                   "n_blocks": int(np.isfinite(errors).sum()),
                   "auroc": uncertainty_auroc(std, errors),
                   "calibration": calibration_ratio(std, errors),
                   "auroc_n_observed": uncertainty_auroc(naive, errors),
                   "mse": float(np.nanmean(errors))}
            for m, name in enumerate(names):
                row[f"auroc_{name}"] = uncertainty_auroc(std[:, m], errors[:, m])
                row[f"calibration_{name}"] = calibration_ratio(std[:, m], errors[:, m])
            rows.append(row)
            print(f"  uncertainty {dataset} seed {seed} @ {share:g}: AUROC {row['auroc']:.3f}, "
                  f"calibration {row['calibration']:.3f}", file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------- tables
def _fmt(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna().to_numpy(dtype=float)
    if values.size == 0:
        return "–"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _name(row_label: str, run_label: str, several: bool) -> str:
    return f"{row_label} [{run_label}]" if several else row_label


def quality_table(rows: pd.DataFrame, dataset: str) -> str:
    """Block-MSE and the downstream score per share (mean ± std over seeds)."""
    sub = rows[rows["dataset"] == dataset]
    shares = sorted(sub["missing_nominal"].unique())
    metric, metric_name = DOWNSTREAM.get(dataset, ("accuracy", "accuracy"))
    several = sub["run_label"].nunique() > 1
    header = ["method", *[f"block-MSE @ {s:g}" for s in shares],
              *[f"{metric_name} @ {s:g}" for s in shares]]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for (run_label, label), group in sub.groupby(["run_label", "label"], sort=False):
        cells = [_fmt(group.loc[group["missing_nominal"] == s, "mse"]) for s in shares]
        cells += [_fmt(group.loc[group["missing_nominal"] == s, metric])
                  if metric in group else "–" for s in shares]
        lines.append("| " + " | ".join([_name(label, run_label, several), *cells]) + " |")
    return "\n".join(lines)


def cost_table(rows: pd.DataFrame, dataset: str) -> str:
    """Fit and fit + fill (train and test) seconds, mean over seeds and shares; auto / KNN."""
    sub = rows[rows["dataset"] == dataset]
    several = sub["run_label"].nunique() > 1
    lines = ["| method | fit (s) | fit + fill train and test (s) |", "|---|---:|---:|"]
    totals = {}
    for (run_label, label), group in sub.groupby(["run_label", "label"], sort=False):
        totals[(run_label, label)] = group["fit_fill_s"].mean()
        lines.append(f"| {_name(label, run_label, several)} | {group['fit_s'].mean():.3f} | "
                     f"{group['fit_fill_s'].mean():.3f} |")
    notes = []
    for (run_label, label), total in totals.items():
        knn = totals.get((run_label, "knn"))
        if label == "ul4m4-auto" and knn:
            notes.append(f"{_name(label, run_label, several)}: fit + fill / KNNImputer's = "
                         f"{total / knn:.3f} (target < 0.5)")
    return "\n".join(lines + ([""] + notes if notes else []))


def uncertainty_table(unc: pd.DataFrame) -> str:
    """AUROC, calibration and the naive predictor's AUROC per data set and share."""
    if unc.empty:
        return ("(no uncertainty figures: this ul4m4's transform has no return_std)")
    several = unc["run_label"].nunique() > 1
    per_mod = sorted(c for c in unc.columns if c.startswith("auroc_") and c != "auroc_n_observed")
    header = ["data set", "missing", "AUROC (top 25 % errors)", "mean(std²) / mean(error)",
              "AUROC of fewer observed modalities",
              *[f"AUROC {c[len('auroc_'):]}" for c in per_mod]]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    for (run_label, dataset, share), group in unc.groupby(
            ["run_label", "dataset", "missing_nominal"], sort=False):
        cells = [_fmt(group["auroc"]), _fmt(group["calibration"]),
                 _fmt(group["auroc_n_observed"]), *[_fmt(group[c]) for c in per_mod]]
        lines.append("| " + " | ".join([_name(dataset, run_label, several), f"{share:g}", *cells])
                     + " |")
    return "\n".join(lines)


def render(rows: pd.DataFrame, unc: pd.DataFrame) -> str:
    parts = []
    for dataset in rows["dataset"].unique():
        parts += [f"### {dataset}: block-MSE (hidden test blocks, z-space) and downstream score",
                  "", quality_table(rows, dataset), "",
                  f"### {dataset}: cost (one BLAS thread)", "", cost_table(rows, dataset), ""]
    parts += ["### Uncertainty of ul4m4-auto (test blocks)", "", uncertainty_table(unc), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- entry point
def merge(out: Path, labels: tuple[str, ...]) -> int:
    rows, unc = [], []
    for label in labels:
        folder = out / label
        if not (folder / "rows.csv").is_file():
            print(f"no results for label {label!r} in {folder}", file=sys.stderr)
            return 2
        rows.append(pd.read_csv(folder / "rows.csv"))
        if (folder / "uncertainty.csv").is_file():
            unc.append(pd.read_csv(folder / "uncertainty.csv"))
    print(render(pd.concat(rows, ignore_index=True),
                 pd.concat(unc, ignore_index=True) if unc else pd.DataFrame()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=_csv(str), default=DEFAULTS["datasets"])
    parser.add_argument("--missing", type=_csv(float), default=DEFAULTS["missing"])
    parser.add_argument("--methods", type=_csv(str), default=DEFAULTS["methods"])
    parser.add_argument("--k", type=_csv(int), default=DEFAULTS["k"],
                        help="k of the greedy 'ul4m4' rows (default 16)")
    parser.add_argument("--seeds", type=int, default=DEFAULTS["seeds"])
    parser.add_argument("--label", default=DEFAULTS["label"],
                        help="name of this run (e.g. 'today', 'new'): its folder and table rows")
    parser.add_argument("--out", type=Path, default=Path(DEFAULTS["out"]))
    parser.add_argument("--merge", type=_csv(str), metavar="LABELS",
                        help="print the tables of finished runs together, e.g. today,new")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished runs in <out>/<label>/runs and reuse them")
    parser.add_argument("--no-uncertainty", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.out, args.merge)

    known = set(available_methods())
    methods = [m for m in args.methods if m in known]
    for m in args.methods:
        if m not in known:
            print(f"note: method {m!r} is not in this ul4m4 ({ul4m4.__file__}): left out")
    if not methods:
        print("no method to run", file=sys.stderr)
        return 2
    with_std = supports_std() and "ul4m4-auto" in methods and not args.no_uncertainty
    print(f"ul4m4 {ul4m4.__version__} from {Path(ul4m4.__file__).parent}; label {args.label!r}; "
          f"uncertainty {'on' if with_std else 'off (no return_std here)'}", flush=True)
    run_dir = args.out / args.label
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    all_rows, summaries, unc = [], [], []
    for dataset in args.datasets:
        t0 = time.perf_counter()
        try:
            frame, summary = quality_rows(dataset, args, methods, run_dir)
        except (DatasetError, BenchmarkError) as exc:
            print(f"{dataset}: left out ({exc})")
            continue
        all_rows.append(frame)
        summaries.append(summary)
        if with_std:
            with threadpool_limits(1):
                unc += uncertainty_rows(dataset, args)
        print(f"{dataset}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if not all_rows:
        return 2
    rows = pd.concat(all_rows, ignore_index=True)
    rows.insert(0, "run_label", args.label)
    summary = pd.concat(summaries, ignore_index=True)
    summary.insert(0, "run_label", args.label)
    unc_frame = pd.DataFrame(unc)
    if not unc_frame.empty:
        unc_frame.insert(0, "run_label", args.label)
    text = render(rows, unc_frame)
    print(text)
    rows.to_csv(run_dir / "rows.csv", index=False)
    summary.to_csv(run_dir / "summary.csv", index=False)
    if not unc_frame.empty:
        unc_frame.to_csv(run_dir / "uncertainty.csv", index=False)
    (run_dir / "tables.md").write_text(text + "\n")
    elapsed = time.perf_counter() - start
    record = {"label": args.label, "argv": sys.argv, "ul4m4_version": ul4m4.__version__,
              "ul4m4_path": str(Path(ul4m4.__file__).parent), "datasets": list(args.datasets),
              "missing": list(args.missing), "methods": methods, "k": list(args.k),
              "seeds": args.seeds, "uncertainty": with_std, "elapsed_s": round(elapsed, 1),
              **environment()}
    (run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"Done in {elapsed:.1f} s; wrote rows.csv, summary.csv, tables.md, run.json"
          f"{', uncertainty.csv' if not unc_frame.empty else ''} to {run_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
