"""Tables, plots and output files of a deep experiment (:mod:`ul4m4.experiments.deep`).

It reuses the benchmark's summary (:func:`ul4m4.experiments.report.summarise`: mean ±
std over seeds of every numeric column), its Markdown table and plot helpers and its
atomic writes, so both commands report the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from ._common import setting_records
from .benchmark import environment
from .deep import K_METHODS, DeepResult

__all__ = [
    "DEEP_RESULT_FILES",
    "STAGES",
    "deep_main_table",
    "deep_summary_markdown",
    "primary_metric",
    "stage_table",
    "stage_totals",
    "write_deep_outputs",
]

#: Files :func:`write_deep_outputs` writes (plots only when there is something to draw).
DEEP_RESULT_FILES = (
    "results.csv",
    "results.json",
    "summary.csv",
    "summary.md",
    "config.json",
    "metric_vs_missing.png",
    "k_stability.png",
)

#: Timed stages, in pipeline order: (column, header).
STAGES = (
    ("encode_s", "encode (s)"),
    ("mask_s", "mask (s)"),
    ("impute_s", "impute (s)"),
    ("train_s", "train (s)"),
    ("evaluate_s", "evaluate (s)"),
)

#: The downstream score of the main table per task (the fusion model's default
#: checkpoint-selection metric), and whether lower is better.
_PRIMARY = {"multilabel": "micro_f1", "multiclass": "macro_f1", "regression": "mae"}
_FURTHER = {
    "multilabel": ["samples_f1", "macro_f1", "subset_accuracy", "legacy_flattened_f1"],
    "multiclass": ["accuracy"],
    "regression": ["pearson_r", "binary_accuracy", "binary_f1", "binary_f1_weighted", "mse"],
}
_NAMES = {
    **report.METRIC_NAMES,
    "mae": "MAE",
    "pearson_r": "Pearson r",
    "binary_accuracy": "binary accuracy (≥ 0)",
    "binary_f1": "binary F1 (≥ 0)",
    "binary_f1_weighted": "weighted binary F1",
    "mse": "test MSE",
    "block_mse": "block-MSE",
    "best_val_score": "best validation score",
}


def primary_metric(task: str) -> str:
    """Main downstream score: true micro-F1 (multilabel), macro-F1 (multiclass), MAE."""
    return _PRIMARY[task]


def _task(result: DeepResult) -> str:
    return str(result.dataset_info.get("task", "multilabel"))


def _table(summary: Any, result: DeepResult, metrics: list[str], digits: int = 3) -> str:
    text = report.markdown_table(summary, result, metrics, digits)
    # The benchmark names columns with its own vocabulary; add the deep metrics'.
    for key, name in _NAMES.items():
        text = text.replace(f"| {key} @ ", f"| {name} @ ")
    return text


def deep_main_table(result: DeepResult, summary: Any | None = None) -> str:
    """Markdown: the primary test score and block-MSE of the imputed test embeddings."""
    summary = report.summarise(result) if summary is None else summary
    return _table(summary, result, [primary_metric(_task(result)), "block_mse"])


def stage_table(result: DeepResult, summary: Any | None = None) -> str:
    """Markdown: mean wall seconds of every stage per method (over seeds and settings)."""
    summary = report.summarise(result) if summary is None else summary
    labels, _ = report.row_order(result)
    lines = [
        "| method | " + " | ".join(h for _, h in STAGES) + " | total (s) |",
        "|---|" + "---:|" * (len(STAGES) + 1),
    ]
    for label in labels:
        sub = summary[summary["label"] == label]
        values = []
        for key, _ in STAGES:
            column = f"{key}_mean"
            vals = sub[column].to_numpy(dtype=float) if column in sub else np.array([np.nan])
            values.append(float(np.nanmean(vals)) if not np.isnan(vals).all() else float("nan"))
        total = float(np.nansum(values))
        cells = ["–" if math.isnan(v) else f"{v:.2f}" for v in values] + [f"{total:.2f}"]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def deep_summary_markdown(result: DeepResult, summary: Any | None = None) -> str:
    """The full ``summary.md`` text."""
    summary = report.summarise(result) if summary is None else summary
    cfg = result.config
    info = result.dataset_info
    task = _task(result)
    metric = primary_metric(task)
    seeds = cfg.seed_list()
    mods = ", ".join(f"{m} ({d})" for m, d in info.get("modalities", {}).items())
    sizes = ", ".join(f"{k} {v}" for k, v in info.get("split_sizes", {}).items())
    direction = "lower is better" if metric == "mae" else "higher is better"
    out = [
        f"# UL4M4 deep experiment: {cfg.dataset} ({cfg.protocol} protocol)",
        "",
        f"{info.get('n_samples')} samples ({sizes}); modalities (dims): {mods}; task {task}.",
        f"Seeds {seeds[0]}–{seeds[-1]} ({len(seeds)}); elapsed {result.elapsed_s:.1f} s.",
        "",
        f"Realised share of missing modality slots: {report.realised_shares(result)}.",
        "",
        f"## Test {_NAMES.get(metric, metric)} ({direction}) and block-MSE",
        "",
        "Fusion model trained on the imputed (or, for mask-aware and modality-dropout, "
        "masked) training split, checkpoint chosen on validation, scored on test. "
        "Block-MSE: per-dimension squared error in training z-space of the imputed test "
        "embeddings on the blocks the simulation hid (the training mean scores about 1).",
        "",
        deep_main_table(result, summary),
        "",
        "## Further test scores",
        "",
    ]
    for m in [*_FURTHER[task], "best_val_score"]:
        if f"{m}_mean" in summary and summary[f"{m}_mean"].notna().any():
            out += [f"### {_NAMES.get(m, m)}", "", _table(summary, result, [m]), ""]
    out += [
        "## Time per stage (mean over seeds and settings)",
        "",
        "encode: embedding the raw items (cache reads included; counted once per seed, or "
        "per setting where the encoder is trained on the masked training split); mask: "
        "drawing and applying the missingness; impute: fitting on the training split and "
        "filling train/val/test; train: the fusion model; evaluate: test predictions and scores.",
        "",
        stage_table(result, summary),
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------ plots
def plot_metric_vs_missing(result: DeepResult, summary: Any) -> bytes | None:
    """The primary score and block-MSE vs the realised share of missing slots (± std)."""
    if summary.empty or summary["missing_realised_mean"].nunique() < 2:
        return None
    labels, _ = report.row_order(result)
    metric = primary_metric(_task(result))
    fig, axes = report.new_figure(2)
    for ax, m in zip(axes, [metric, "block_mse"], strict=True):
        for label in labels:
            report.plot_band(ax, summary[summary["label"] == label], "missing_realised_mean", m,
                             label=label)
        ax.set_xlabel("share of missing modality slots (realised)")
        ax.set_ylabel(f"{_NAMES.get(m, m)} (test)")
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle(f"{result.config.dataset}: fusion model vs missingness")
    return report.png_bytes(fig)


def plot_k_stability(result: DeepResult, summary: Any) -> bytes | None:
    """The primary score and block-MSE of the UL4M4 methods vs k, one line per setting."""
    sub = summary[summary["method"].isin(K_METHODS)]
    if sub.empty or sub["k"].nunique() < 2:
        return None
    metric = primary_metric(_task(result))
    settings = [s.label for s in result.config.settings()]
    fig, axes = report.new_figure(2)
    for ax, m in zip(axes, [metric, "block_mse"], strict=True):
        drew_ref = report.k_stability_axis(ax, sub, summary, m, settings, ("-", "--", "-."),
                                           _NAMES.get(m, m))
        _legend(ax, title="dotted: mean imputation" if drew_ref else None)
    fig.suptitle(f"{result.config.dataset}: stability of UL4M4 over k")
    return report.png_bytes(fig)


def _legend(ax: Any, title: str | None = None) -> None:
    # An empty panel (e.g. no block-MSE where hidden items were never encoded) has no legend.
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", title=title)
    else:
        ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)


# ------------------------------------------------------------------------ files
def config_record(result: DeepResult) -> dict[str, Any]:
    """The content of ``config.json``: command, configuration, data, versions, machine."""
    cfg = result.config
    frame = result.frame()
    settings = setting_records(cfg.settings(), frame, {"samples_restored": "n_restored"})
    stages = stage_totals(frame)
    return {
        "command": shlex.join(result.argv) if result.argv is not None else None,
        "argv": result.argv,
        "config": dataclasses.asdict(cfg)
        | {"ks": cfg.k_values(), "fusion_config": dataclasses.asdict(cfg.fusion_config())},
        "seeds": cfg.seed_list(),
        "settings": settings,
        "runs": [report.method_label(m, k) for m, k in cfg.runs()],
        "dataset": result.dataset_info,
        "stage_seconds_total": stages,
        "started_at": result.started_at,
        "elapsed_s": round(result.elapsed_s, 3),
        **environment(),
    }


def stage_totals(frame: Any) -> dict[str, float | None]:
    """Wall seconds spent in each stage over the whole run, shared stages counted once.

    Every row carries the encode and mask time of the data it used, so rows of one seed
    (encode) or one seed and setting (mask) repeat the same value; those are summed once.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"seed": [0, 0, 0, 0], "setting": ["a", "a", "b", "b"],
    ...     "encode_s": [2.0, 2.0, 0.0, 0.0], "mask_s": [0.1, 0.1, 0.2, 0.2],
    ...     "impute_s": [1.0, 0.0, 1.0, 0.0], "train_s": [3.0, 3.0, 3.0, 3.0],
    ...     "evaluate_s": [0.5, 0.5, 0.5, 0.5]})
    >>> stage_totals(rows)
    {'encode_s': 2.0, 'mask_s': 0.30000000000000004, 'impute_s': 2.0, 'train_s': 12.0, 'evaluate_s': 2.0}
    """
    if len(frame) == 0:
        return {key: None for key, _ in STAGES}
    shared = frame.drop_duplicates(["seed", "setting"])
    out = {
        "encode_s": float(shared.drop_duplicates(["seed", "encode_s"])["encode_s"].sum()),
        "mask_s": float(shared["mask_s"].sum()),
    }
    for key in ("impute_s", "train_s", "evaluate_s"):
        out[key] = float(np.nansum(frame[key].to_numpy(dtype=float)))
    return out


def write_deep_outputs(result: DeepResult, out_dir: str | Path) -> list[Path]:
    """Write every result file into ``out_dir`` (created if needed), each atomically.

    Returns
    -------
    list of Path
        The files written (see :data:`DEEP_RESULT_FILES`).
    """
    summary = report.summarise(result)
    rows = json.dumps(result.rows, indent=1, default=report.json_default, allow_nan=True)
    texts = {
        "results.csv": result.frame().to_csv(index=False),
        "results.json": rows + "\n",
        "summary.csv": summary.to_csv(index=False),
        "summary.md": deep_summary_markdown(result, summary),
    }
    return report.write_result_files(out_dir, texts, lambda: {
        "metric_vs_missing.png": plot_metric_vs_missing(result, summary),
        "k_stability.png": plot_k_stability(result, summary),
    }, config_record(result))
