"""Hyper-parameters of the attention fusion model and its trainer (no PyTorch needed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["OPTIMIZERS", "PRESETS", "FusionConfig"]

#: Optimisers :func:`ul4m4.fusion.fit_fusion` can build.
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class FusionConfig:
    """Architecture and training settings of the SPEC §5 fusion model.

    The model projects each modality to ``d`` dimensions (one token per modality),
    applies ``layers`` post-LN self-attention blocks ``x = LayerNorm(x + MHA(x))``
    (no feed-forward sub-layer), averages the tokens, applies ``Linear(d, d) + ReLU``
    and a task head (an MLP with hidden widths ``head_hidden``, then the output layer).

    Parameters
    ----------
    d : int, default=128
        Token width.
    heads : int, default=4
        Attention heads; must divide ``d``.
    layers : int, default=1
        Attention blocks.
    dropout : float, default=0.1
        Dropout on the attention weights, on each attention output before the residual
        sum, and between the hidden layers of the head.
    head_hidden : tuple of int, default=()
        Hidden widths of the head MLP after ``Linear(d, d) + ReLU``.
    lr : float, default=5e-4
        Learning rate.
    weight_decay : float, default=0.0
        L2 penalty (decoupled for ``"adamw"``).
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
    momentum : float, default=0.0
        Momentum of ``"sgd"``.
    batch_size : int, default=32
        Training mini-batch size (the last, smaller batch is kept).
    max_epochs : int, default=20
    patience : int or None, default=5
        Stop after this many epochs without a validation improvement; ``None`` trains
        all ``max_epochs`` (the checkpoint is still selected on validation).
    min_delta : float, default=0.0
        An epoch improves when its score beats the best by more than this.
    selection_metric : str or None, default=None
        Validation metric that selects the checkpoint: a key of
        :func:`ul4m4.fusion.evaluate_task` or ``"loss"``. ``None`` picks ``"micro_f1"``
        (multilabel), ``"macro_f1"`` (multiclass) or ``"mae"`` (regression). Errors
        (``loss``, ``mae``, ``mse``) are minimised, everything else maximised.
    class_weight : "balanced", None or sequence of float, default="balanced"
        Weights of the multi-class cross-entropy: ``"balanced"`` gives class ``c`` the
        weight ``n / (C * n_c)`` computed on the training labels (a class absent from
        training counts as seen once), ``None`` weighs all classes 1.
    threshold : float, default=0.5
        Decision threshold on multi-label probabilities for the validation score.
    standardize : bool, default=True
        z-score each modality inside the model with the mean and unbiased std of its
        observed training rows (a constant dimension's becomes 1, the rule of
        :func:`ul4m4.statistics.constant_dimensions`), so raw embeddings of any scale can be
        fed in.
    grad_clip : float or None, default=None
        Clip the global gradient norm to this value.
    eval_batch_size : int, default=1024
        Batch size of validation and prediction passes.
    device : str, default="cpu"
        Torch device; runs are bit-reproducible on CPU.
    deterministic : bool, default=True
        Request ``torch.use_deterministic_algorithms`` while fitting (restored after).
    num_threads : int or None, default=None
        Torch CPU threads while fitting and predicting (restored after); ``None``
        keeps torch's setting. The model is small, so 1 is often fastest on a busy
        machine.

    Examples
    --------
    >>> FusionConfig(d=32, heads=1, dropout=0.2).layers
    1
    >>> FusionConfig.preset("mosi").batch_size
    8
    """

    d: int = 128
    heads: int = 4
    layers: int = 1
    dropout: float = 0.1
    head_hidden: tuple[int, ...] = ()
    lr: float = 5e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.0
    batch_size: int = 32
    max_epochs: int = 20
    patience: int | None = 5
    min_delta: float = 0.0
    selection_metric: str | None = None
    class_weight: str | Sequence[float] | None = "balanced"
    threshold: float = 0.5
    standardize: bool = True
    grad_clip: float | None = None
    eval_batch_size: int = 1024
    device: str = "cpu"
    deterministic: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self._check_positive_ints()
        if self.d % self.heads:
            raise ValueError(f"heads={self.heads} must divide d={self.d}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.momentum >= 0):
            raise ValueError("lr must be > 0, weight_decay and momentum >= 0")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"patience must be a positive int or None, got {self.patience!r}")
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ValueError(
                f"num_threads must be a positive int or None, got {self.num_threads!r}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise ValueError(
                f"class_weight must be 'balanced', None or a sequence, got {self.class_weight!r}"
            )
        object.__setattr__(self, "head_hidden", tuple(int(h) for h in self.head_hidden))
        if self.class_weight is not None and not isinstance(self.class_weight, str):
            object.__setattr__(self, "class_weight", tuple(float(w) for w in self.class_weight))
        if any(h < 1 for h in self.head_hidden):
            raise ValueError(f"head_hidden widths must be >= 1, got {self.head_hidden}")

    def _check_positive_ints(self) -> None:
        for name in ("d", "heads", "layers", "batch_size", "max_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def replace(self, **changes: Any) -> FusionConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> FusionConfig:
        """The settings of one reference experiment of SPEC §5, optionally changed.

        ``"mmimdb"`` (d=256, 4 heads, 2 layers, head 256-128-64-C, Adam 5e-5, batch 64,
        15 epochs), ``"mosi"`` (d=32, 1 head, 1 layer, dropout 0.2, linear head,
        Adam 5e-4, batch 8, 20 epochs; pass ``output_range=(-3, 3)`` to
        :func:`~ul4m4.fusion.fit_fusion`) and ``"sleep_edf"`` (d=128, 8 heads,
        1 layer, head 128-64-5, SGD 0.2, batch 32, 20 epochs, class weights
        [1, 1, .5, 1.5, 1]). The references train all epochs and keep the best
        validation checkpoint, so presets set ``patience=None``.
        """
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown preset {name!r}; expected one of {sorted(PRESETS)}"
            ) from None
        return cls(**{**base, **changes})


#: Keyword arguments of :meth:`FusionConfig.preset`.
PRESETS: dict[str, dict[str, Any]] = {
    "mmimdb": dict(
        d=256,
        heads=4,
        layers=2,
        head_hidden=(128, 64),
        lr=5e-5,
        batch_size=64,
        max_epochs=15,
        patience=None,
    ),
    "mosi": dict(
        d=32,
        heads=1,
        layers=1,
        dropout=0.2,
        head_hidden=(),
        lr=5e-4,
        batch_size=8,
        max_epochs=20,
        patience=None,
    ),
    "sleep_edf": dict(
        d=128,
        heads=8,
        layers=1,
        head_hidden=(64,),
        optimizer="sgd",
        lr=0.2,
        batch_size=32,
        max_epochs=20,
        patience=None,
        class_weight=(1.0, 1.0, 0.5, 1.5, 1.0),
    ),
}
