"""Attention fusion model over modality embeddings, its trainer and the task metrics (SPEC §5).

The downstream model of the UL4M4 experiments: one token per modality (a linear
projection to ``d``), post-LN multi-head self-attention without feed-forward, mean
pooling, ``Linear + ReLU`` and a task head (multi-label, multi-class or bounded
regression). A mask-aware variant leaves missing modalities out of attention and
pooling (the "no imputation" baseline); training-time modality dropout is another
baseline.

PyTorch is needed for the model and the trainer (``pip install 'ul4m4[torch]'``); it is
imported on first use of :class:`FusionModel`, :func:`fit_fusion` or
:func:`predict_fusion`, so :class:`FusionConfig` and the NumPy metrics
(:func:`evaluate_task`) work without it.

Examples
--------
>>> import numpy as np
>>> from ul4m4.fusion import FusionConfig, fit_fusion, predict_fusion, evaluate_task
>>> rng = np.random.default_rng(0)
>>> X = {"text": rng.normal(size=(200, 8)), "image": rng.normal(size=(200, 4))}
>>> y = (X["text"][:, 0] > 0).astype(int)
>>> split = lambda a, s: {k: v[s] for k, v in a.items()}
>>> res = fit_fusion(split(X, slice(0, 150)), y[:150], split(X, slice(150, 200)), y[150:],
...                  task="multiclass", config=FusionConfig(d=16, heads=2, max_epochs=5),
...                  progress=False)
>>> scores = predict_fusion(res, split(X, slice(150, 200)))
>>> sorted(evaluate_task("multiclass", y[150:], scores))
['accuracy', 'macro_f1']
"""

from __future__ import annotations

from typing import Any

from .config import FusionConfig
from .metrics import (
    METRIC_NAMES,
    TASKS,
    evaluate_task,
    legacy_flattened_f1,
    multiclass_scores,
    multilabel_scores,
    regression_scores,
)

__all__ = [
    "METRIC_NAMES",
    "TASKS",
    "FusionConfig",
    "FusionModel",
    "FusionResult",
    "evaluate_task",
    "fit_fusion",
    "legacy_flattened_f1",
    "modality_dropout_mask",
    "multiclass_scores",
    "multilabel_scores",
    "predict_fusion",
    "regression_scores",
]

# Names that need PyTorch, and the submodule defining each.
_TORCH_NAMES = {
    "FusionModel": "model",
    "FusionResult": "train",
    "fit_fusion": "train",
    "predict_fusion": "train",
    "modality_dropout_mask": "train",
}


def __getattr__(name: str) -> Any:
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(f".{_TORCH_NAMES[name]}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ImportError(f"ul4m4.fusion.{name} needs PyTorch: pip install 'ul4m4[torch]'") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
