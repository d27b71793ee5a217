"""Summaries, Markdown tables, plots and output files of a benchmark run."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.files import write_bytes_atomic, write_text_atomic
from .benchmark import K_METHODS, BenchmarkResult, config_record, method_label

__all__ = [
    "RESULT_FILES",
    "main_table",
    "primary_metric",
    "summarise",
    "summary_markdown",
    "write_outputs",
]

#: Files :func:`write_outputs` writes (plots only when there is something to draw).
RESULT_FILES = (
    "results.csv",
    "summary.csv",
    "summary.md",
    "config.json",
    "metric_vs_missing.png",
    "k_stability.png",
)

#: Columns that identify a row rather than measure something.
_KEYS = ("label", "method", "k", "setting")
_NOT_METRICS = {
    "dataset",
    "seed",
    "protocol",
    "setting",
    "method",
    "k",
    "label",
    "transductive",
    "n_train",
    "n_test",
    "missing_nominal",
}

#: Display names of metrics in tables and plots (a metric not listed shows its column name).
METRIC_NAMES = {
    "mse": "block-MSE",
    "accuracy": "accuracy",
    "micro_f1": "micro-F1",
    "macro_f1": "macro-F1",
    "samples_f1": "samples-F1",
    "subset_accuracy": "subset accuracy",
    "legacy_flattened_f1": "legacy flattened F1 (element-wise accuracy, not an F1)",
    "cosine": "cosine similarity",
    "ami_test": "AMI of clusters vs classes (test)",
    "train_mse": "block-MSE on training blocks",
}


def primary_metric(task: str) -> str:
    """The downstream score of the main table: accuracy, or true micro-F1 for multi-label."""
    return "micro_f1" if task == "multilabel" else "accuracy"


def row_order(result: BenchmarkResult) -> tuple[list[str], list[str]]:
    """Method labels and setting labels of a result, in table order."""
    cfg = result.config
    labels = [method_label(m, k) for m, k in cfg.runs()]
    settings = [s.label for s in cfg.settings()]
    return labels, settings


def summarise(result: BenchmarkResult) -> Any:
    """Mean and std (over seeds) of every metric per method and setting.

    Returns
    -------
    pandas.DataFrame
        One row per (method label, setting) in table order, with ``n_seeds`` and
        ``<metric>_mean`` / ``<metric>_std`` columns (sample std, NaN for 1 seed).
    """
    import pandas as pd

    frame = result.frame()
    labels, settings = row_order(result)
    frame = frame[frame["method"] != "complete"]
    metrics = [
        c
        for c in frame.columns
        if c not in _NOT_METRICS and pd.api.types.is_numeric_dtype(frame[c])
    ]
    records = []
    for label in labels:
        for setting in settings:
            sub = frame[(frame["label"] == label) & (frame["setting"] == setting)]
            if sub.empty:
                continue
            first = sub.iloc[0]
            rec: dict[str, Any] = {
                "label": label,
                "method": first["method"],
                "k": first["k"],
                "transductive": bool(first["transductive"]),
                "setting": setting,
                "protocol": first["protocol"],
                "missing_nominal": first["missing_nominal"],
                "n_seeds": int(sub["seed"].nunique()),
            }
            for c in metrics:
                values = sub[c].to_numpy(dtype=float)
                finite = values[~np.isnan(values)]
                rec[f"{c}_mean"] = float(finite.mean()) if finite.size else np.nan
                rec[f"{c}_std"] = float(finite.std(ddof=1)) if finite.size > 1 else np.nan
            records.append(rec)
    return pd.DataFrame.from_records(records)


def _fmt(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(summary: Any, label: str, setting: str, metric: str, digits: int = 3) -> str:
    row = summary[(summary["label"] == label) & (summary["setting"] == setting)]
    if row.empty or f"{metric}_mean" not in row:
        return "–"
    return _fmt(row[f"{metric}_mean"].iloc[0], row[f"{metric}_std"].iloc[0], digits)


def _row_name(summary: Any, label: str) -> str:
    sub = summary[summary["label"] == label]
    return f"{label} †" if not sub.empty and bool(sub["transductive"].iloc[0]) else label


def markdown_table(
    summary: Any, result: BenchmarkResult, metrics: list[str], digits: int = 3
) -> str:
    """Markdown table: one row per method, one column per metric and setting (mean ± std)."""
    labels, settings = row_order(result)
    header = ["method"] + [f"{METRIC_NAMES.get(m, m)} @ {s}" for m in metrics for s in settings]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]
    for label in labels:
        cells = [_cell(summary, label, s, m, digits) for m in metrics for s in settings]
        lines.append("| " + " | ".join([_row_name(summary, label), *cells]) + " |")
    return "\n".join(lines)


def main_table(result: BenchmarkResult, summary: Any | None = None) -> str:
    """Markdown table: block-MSE and the primary downstream score at every setting."""
    summary = summarise(result) if summary is None else summary
    return markdown_table(summary, result, ["mse", primary_metric(result.dataset_info["task"])])


def _complete_line(result: BenchmarkResult) -> str:
    frame = result.frame()
    metric = primary_metric(result.dataset_info["task"])
    sub = frame[frame["method"] == "complete"]
    if sub.empty or metric not in sub or sub[metric].isna().all():
        return ""
    values = sub[metric].to_numpy(dtype=float)
    std = values.std(ddof=1) if values.size > 1 else float("nan")
    return (
        f"Complete data (no missing modality, same split and head): "
        f"{METRIC_NAMES[metric]} {_fmt(values.mean(), std)}."
    )


def realised_shares(result: BenchmarkResult) -> str:
    """One line: the realised share of missing slots per setting (mean over seeds)."""
    frame = result.frame()
    parts = []
    for s in result.config.settings():
        sub = frame[frame["setting"] == s.label]
        if sub.empty:
            continue
        parts.append(
            f"{s.label} → {sub['missing_realised'].mean():.3f} "
            f"(train {sub['missing_train'].mean():.3f}, test {sub['missing_test'].mean():.3f})"
        )
    return "; ".join(parts)


def _cost_table(summary: Any, result: BenchmarkResult) -> str:
    labels, _ = row_order(result)
    cols = [
        ("fit_s", "fit (s)", 3),
        ("fill_train_s", "fill train (s)", 3),
        ("fill_test_s", "fill test (s)", 3),
        ("peak_mib", "peak memory (MiB)", 1),
    ]
    lines = [
        "| method | " + " | ".join(c[1] for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for label in labels:
        sub = summary[summary["label"] == label]
        cells = []
        for key, _, digits in cols:
            values = sub[f"{key}_mean"].to_numpy(dtype=float) if f"{key}_mean" in sub else []
            cells.append(
                _fmt(float(np.nanmean(values)), float("nan"), digits)
                if len(values) and not np.isnan(values).all()
                else "–"
            )
        lines.append("| " + " | ".join([_row_name(summary, label), *cells]) + " |")
    return "\n".join(lines)


def summary_markdown(result: BenchmarkResult, summary: Any | None = None) -> str:
    """The full ``summary.md`` text."""
    summary = summarise(result) if summary is None else summary
    cfg = result.config
    info = result.dataset_info
    task = info["task"]
    metric = primary_metric(task)
    seeds = cfg.seed_list()
    mods = ", ".join(f"{m} ({d})" for m, d in info["modalities"].items())
    protocol = cfg.protocol + (
        f", strength {cfg.mnar_strength:g}" if cfg.protocol == "mnar" else ""
    )
    out = [
        f"# UL4M4 benchmark: {cfg.dataset}",
        "",
        f"{info['n_samples']} samples; modalities (dims): {mods}; {task} target "
        f"({info['n_classes']} {'labels' if task == 'multilabel' else 'classes'}).",
        f"Protocol: {protocol}; seeds {seeds[0]}–{seeds[-1]} ({len(seeds)}); test share "
        f"{cfg.test_size:g}; elapsed {result.elapsed_s:.1f} s.",
        "",
        f"Realised share of missing modality slots (mean over seeds): {realised_shares(result)}.",
        "",
        f"## Block-MSE and {METRIC_NAMES[metric]} (mean ± std over {len(seeds)} seeds)",
        "",
        "Block-MSE: mean squared error per dimension in training z-space on the hidden "
        "test blocks (lower is better; the training mean scores about 1). "
        f"{METRIC_NAMES[metric].capitalize()}: logistic regression trained on the imputed training "
        "set, scored on the imputed test set. Columns are labelled by setting (nominal share "
        "of missing slots, or configuration name).",
        "",
        main_table(result, summary),
        "",
    ]
    line = _complete_line(result)
    if line:
        out += [line, ""]
    if summary["transductive"].any():
        out += ["† transductive: refits on the data it fills (sees the unlabelled test set).", ""]
    extra = ["cosine", "macro_f1"]
    if task == "multilabel":
        extra = ["cosine", "samples_f1", "macro_f1", "subset_accuracy", "legacy_flattened_f1"]
    if "ami_test_mean" in summary and summary["ami_test_mean"].notna().any():
        extra.append("ami_test")
    extra.append("train_mse")
    out += ["## Further scores", ""]
    for m in extra:
        if f"{m}_mean" in summary:
            out += [f"### {METRIC_NAMES.get(m, m)}", "", markdown_table(summary, result, [m]), ""]
    per_mod = [
        c[: -len("_mean")]
        for c in summary.columns
        if c.startswith("mse_") and c.endswith("_mean") and c != "mse_mean"
    ]
    if per_mod:
        out += ["### Block-MSE per modality", ""]
        for setting in [s.label for s in cfg.settings()]:
            out += [
                f"Setting {setting}:",
                "",
                _per_modality_table(summary, result, setting, per_mod),
                "",
            ]
    out += ["## Cost (mean over seeds and settings)", "", _cost_table(summary, result), ""]
    return "\n".join(out)


def _per_modality_table(summary: Any, result: BenchmarkResult, setting: str, cols: list) -> str:
    labels, _ = row_order(result)
    names = [c[len("mse_") :] for c in cols]
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label in labels:
        cells = [_cell(summary, label, setting, c) for c in cols]
        lines.append("| " + " | ".join([_row_name(summary, label), *cells]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------ plots
def new_figure(ncols: int) -> tuple[Any, list[Any]]:
    """A matplotlib figure with ``ncols`` axes side by side, on its own Agg canvas."""
    # Figure + Agg canvas directly: no pyplot, so the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * ncols, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def png_bytes(fig: Any) -> bytes:
    """The PNG bytes of a figure (120 dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def plot_band(ax: Any, rows: Any, x: str, metric: str, **kw: Any) -> None:
    """Plot the summary column ``{metric}_mean`` of ``rows`` against column ``x``, ±std shaded.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    rows : pandas.DataFrame
        Summary rows of one line; nothing is drawn when ``{metric}_mean`` is absent or
        all NaN. A NaN ``{metric}_std`` draws no band at that point.
    x : str
        The column of the x values.
    metric : str
    **kw
        Passed to ``ax.plot`` (label, colour, line style).
    """
    if rows.empty or f"{metric}_mean" not in rows or rows[f"{metric}_mean"].isna().all():
        return
    x, mean, std = (rows[c].to_numpy(float) for c in (x, f"{metric}_mean", f"{metric}_std"))
    order = np.argsort(x)
    x, mean, std = x[order], mean[order], np.nan_to_num(std[order])
    line = ax.plot(x, mean, marker="o", **kw)[0]
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)


def plot_metric_vs_missing(result: BenchmarkResult, summary: Any) -> bytes | None:
    """Block-MSE and the primary score vs the realised share of missing slots, ±std bands."""
    metric = primary_metric(result.dataset_info["task"])
    labels, _ = row_order(result)
    if summary.empty:
        return None
    fig, axes = new_figure(2)
    for ax, m in zip(axes, ["mse", metric], strict=True):
        for label in labels:
            plot_band(ax, summary[summary["label"] == label], "missing_realised_mean", m,
                      label=_row_name(summary, label))
        ax.set_xlabel("share of missing modality slots (realised)")
        suffix = " (hidden test blocks)" if m == "mse" else " (test)"
        ax.set_ylabel(METRIC_NAMES.get(m, m) + suffix)
        ax.grid(alpha=0.3)
    frame = result.frame()
    complete = frame[frame["method"] == "complete"]
    if metric in complete and complete[metric].notna().any():
        axes[1].axhline(complete[metric].mean(), color="k", ls=":", lw=1, label="complete data")
    axes[1].legend(fontsize="small")
    fig.suptitle(f"{result.config.dataset}: imputation quality vs missingness")
    return png_bytes(fig)


def plot_k_stability(result: BenchmarkResult, summary: Any) -> bytes | None:
    """Block-MSE and the primary score of the UL4M4 methods vs k, one line per setting."""
    metric = primary_metric(result.dataset_info["task"])
    sub = summary[summary["method"].isin(K_METHODS)]
    if sub.empty or sub["k"].nunique() < 2:
        return None
    settings = [s.label for s in result.config.settings()]
    fig, axes = new_figure(2)
    for ax, m in zip(axes, ["mse", metric], strict=True):
        drew_ref = k_stability_axis(ax, sub, summary, m, settings, ("-", "--", ":"),
                                    METRIC_NAMES.get(m, m))
    for ax in axes:
        ax.legend(fontsize="small", title="dotted: mean fill" if drew_ref else None)
    fig.suptitle(f"{result.config.dataset}: stability of UL4M4 over k")
    return png_bytes(fig)


def k_stability_axis(ax: Any, sub: Any, summary: Any, metric: str, settings: list[str],
                     styles: tuple[str, ...], ylabel: str) -> bool:
    """One panel of a k-stability plot: ``metric`` of each UL4M4 method vs k, per setting.

    ``sub`` holds the summary rows of the methods of :data:`K_METHODS` (one line style
    each), ``summary`` all rows: the mean fill (what UL4M4 gives with k=1) is drawn as a
    dotted reference level per setting. Returns whether that reference exists.
    """
    colors = {s: f"C{i % 10}" for i, s in enumerate(settings)}
    for method, style in zip(K_METHODS, styles, strict=True):
        for s in settings:
            cur = sub[(sub["method"] == method) & (sub["setting"] == s)]
            plot_band(ax, cur, "k", metric, ls=style, color=colors[s], label=f"{method} @ {s}")
    ref = summary[summary["method"] == "mean"]
    for s in settings:
        cur = ref[ref["setting"] == s]
        if not cur.empty and not math.isnan(cur[f"{metric}_mean"].iloc[0]):
            ax.axhline(cur[f"{metric}_mean"].iloc[0], color=colors[s], ls=":", lw=1)
    ks = sorted(int(k) for k in sub["k"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return not ref.empty


# ----------------------------------------------------------------------- output

def write_outputs(result: BenchmarkResult, out_dir: str | Path) -> list[Path]:
    """Write every result file into ``out_dir`` (created if needed), each atomically.

    Returns
    -------
    list of Path
        The files written.
    """
    summary = summarise(result)
    texts = {
        "results.csv": result.frame().to_csv(index=False),
        "summary.csv": summary.to_csv(index=False),
        "summary.md": summary_markdown(result, summary),
    }
    return write_result_files(out_dir, texts, lambda: {
        "metric_vs_missing.png": plot_metric_vs_missing(result, summary),
        "k_stability.png": plot_k_stability(result, summary),
    }, config_record(result))


def write_result_files(
    out_dir: str | Path, texts: dict[str, str], plots: Any, record: dict[str, Any]
) -> list[Path]:
    """Write ``texts``, the PNGs ``plots()`` returns and ``config.json``, each atomically.

    ``plots`` is called once; without matplotlib the plots are skipped with a warning.
    ``config.json`` is ``record`` plus the list of the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_text_atomic(out / name, text) for name, text in texts.items()]
    try:
        pngs = plots()
    except ImportError as exc:
        warnings.warn(f"plots skipped: matplotlib is not available ({exc})", stacklevel=3)
        pngs = {}
    for name, png in pngs.items():
        if png is not None:
            written.append(write_bytes_atomic(out / name, png))
    record = dict(record)
    record["files"] = [p.name for p in written] + ["config.json"]
    written.append(
        write_text_atomic(
            out / "config.json", json.dumps(record, indent=2, default=json_default) + "\n"
        )
    )
    return written


def json_default(value: Any) -> Any:
    """``default=`` of :func:`json.dumps` for result files: NumPy values, paths, else repr."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)
