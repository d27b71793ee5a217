"""The SPEC §5 attention fusion model over one token per modality (PyTorch).

For ``M`` modalities with inputs ``x^m`` of width ``d_m``:

1. (optional) z-score ``x^m`` with training statistics stored as buffers;
2. token ``t^m = W_m x^m + b_m`` of width ``d`` (one linear projection per modality);
3. ``layers`` times, post-LN self-attention without a feed-forward sub-layer:
   ``T <- LayerNorm(T + Dropout(MHA(T, T, T)))``;
4. mean over the tokens, ``Linear(d, d) + ReLU``, then the task head (an MLP with
   ``head_hidden`` widths and the output layer). Regression outputs pass through
   ``Hardtanh(low, high)``.

The **mask-aware** variant takes an ``(B, M)`` observation mask: missing tokens are
excluded from attention as keys (``key_padding_mask``) and from the mean pool, and
nothing is imputed. A missing modality's input is replaced by zeros before the
projection, so its values cannot reach the output at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .config import FusionConfig
from .metrics import TASKS

__all__ = ["FusionModel", "PostLNAttentionBlock"]


class PostLNAttentionBlock(nn.Module):
    """``x <- LayerNorm(x + Dropout(MultiheadAttention(x, x, x)))`` (no feed-forward)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        attended, _ = self.attention(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        return self.norm(x + self.dropout(attended))


def _head(d: int, hidden: Sequence[int], n_outputs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = d
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


class FusionModel(nn.Module):
    """Multi-head self-attention over modality tokens, mean pool and a task head.

    Parameters
    ----------
    dims : mapping of str to int
        Modality names (in token order) and input widths.
    n_outputs : int
        Labels (multilabel), classes (multiclass) or 1 (regression).
    task : {"multilabel", "multiclass", "regression"}
    config : FusionConfig, optional
    mask_aware : bool, default=False
        Accept an observation mask in :meth:`forward` (missing tokens excluded from
        attention and pooling).
    output_range : (float, float), optional
        Regression only: ``Hardtanh`` bounds of the output; ``None`` leaves it unbounded.

    Attributes
    ----------
    names : list of str
    dims : list of int
    mean, scale : buffers, one pair per modality (``mean_<i>``, ``scale_<i>``)
        Input standardisation (identity until :meth:`set_standardization`).

    Examples
    --------
    >>> import torch
    >>> model = FusionModel({"text": 6, "image": 4}, 3, "multiclass",
    ...                     FusionConfig(d=8, heads=2), mask_aware=True)
    >>> x = [torch.randn(5, 6), torch.randn(5, 4)]
    >>> mask = torch.tensor([[True, False]] * 5)   # image missing everywhere
    >>> model.eval()(x, mask).shape                 # logits
    torch.Size([5, 3])
    """

    def __init__(
        self,
        dims: dict[str, int],
        n_outputs: int,
        task: str,
        config: FusionConfig | None = None,
        *,
        mask_aware: bool = False,
        output_range: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if not dims:
            raise ValueError("dims must name at least one modality")
        config = FusionConfig() if config is None else config
        self.names = [str(n) for n in dims]
        self.dims = [int(v) for v in dims.values()]
        self.task = task
        self.n_outputs = int(n_outputs)
        self.config = config
        self.mask_aware = bool(mask_aware)
        self.output_range = _check_range(output_range, task)
        self.projections = nn.ModuleList(nn.Linear(d_m, config.d) for d_m in self.dims)
        self.blocks = nn.ModuleList(
            PostLNAttentionBlock(config.d, config.heads, config.dropout)
            for _ in range(config.layers)
        )
        self.pool_projection = nn.Sequential(nn.Linear(config.d, config.d), nn.ReLU())
        self.head = _head(config.d, config.head_hidden, self.n_outputs, config.dropout)
        self.bound = (
            nn.Hardtanh(*self.output_range) if self.output_range is not None else nn.Identity()
        )
        for i, d_m in enumerate(self.dims):
            self.register_buffer(f"mean_{i}", torch.zeros(d_m))
            self.register_buffer(f"scale_{i}", torch.ones(d_m))

    # ---------------------------------------------------------------- set-up
    def set_standardization(self, means: Sequence[Tensor], scales: Sequence[Tensor]) -> None:
        """Store per-modality input means and scales (applied as ``(x - mean) / scale``)."""
        for i, (mu, sd) in enumerate(zip(means, scales, strict=True)):
            getattr(self, f"mean_{i}").copy_(torch.as_tensor(mu, dtype=torch.float32))
            getattr(self, f"scale_{i}").copy_(torch.as_tensor(sd, dtype=torch.float32))

    # --------------------------------------------------------------- forward
    def tokens(self, inputs: Sequence[Tensor], present: Tensor | None = None) -> Tensor:
        """Project each modality to one token: ``(B, M, d)``; absent inputs become zeros first."""
        if len(inputs) != len(self.dims):
            raise ValueError(
                f"expected {len(self.dims)} modality tensors ({self.names}), got {len(inputs)}"
            )
        out = []
        for i, (x, proj) in enumerate(zip(inputs, self.projections, strict=True)):
            z = (x - getattr(self, f"mean_{i}")) / getattr(self, f"scale_{i}")
            if present is not None:
                # Zero the (standardised) input of an absent token: no value of it, NaN
                # included, can reach the output.
                z = torch.where(
                    present[:, i : i + 1], z, torch.zeros((), dtype=z.dtype, device=z.device)
                )
            out.append(proj(z))
        return torch.stack(out, dim=1)

    def forward(
        self, inputs: Sequence[Tensor], mask: Tensor | None = None, *, drop: Tensor | None = None
    ) -> Tensor:
        """Raw outputs: logits (multilabel, multiclass) or bounded values ``(B,)`` (regression).

        Parameters
        ----------
        inputs : sequence of Tensor
            One ``(B, d_m)`` float tensor per modality, in :attr:`names` order.
        mask : bool Tensor of shape (B, M), optional
            Mask-aware models only: True where the modality is observed. At least one
            True per row. ``None`` means every modality is observed.
        drop : bool Tensor of shape (B, M), optional
            Models that are *not* mask-aware: tokens whose standardised input is set to
            zero (modality dropout during training). Mask-aware models drop tokens by
            masking them instead.
        """
        if mask is not None and not self.mask_aware:
            raise ValueError("this FusionModel is not mask-aware; pass mask=None")
        if drop is not None and self.mask_aware:
            raise ValueError("a mask-aware FusionModel drops tokens through mask, not drop")
        present = mask if mask is not None else (~drop if drop is not None else None)
        x = self.tokens(inputs, present)
        padding = None if mask is None else ~mask
        for block in self.blocks:
            x = block(x, key_padding_mask=padding)
        pooled = self._mean_pool(x, mask)
        out = self.head(self.pool_projection(pooled))
        if self.task == "regression":
            return self.bound(out[:, 0])
        return out

    @staticmethod
    def _mean_pool(x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            return x.mean(dim=1)
        weights = mask.to(x.dtype).unsqueeze(-1)
        # torch.where, not a product: an absent token's output must not leak even if
        # it were NaN (0 * NaN = NaN).
        kept = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        return kept.sum(dim=1) / weights.sum(dim=1)

    def probabilities(self, outputs: Tensor) -> Tensor:
        """Map :meth:`forward` outputs to scores: sigmoid, softmax or the values."""
        if self.task == "multilabel":
            return torch.sigmoid(outputs)
        if self.task == "multiclass":
            return torch.softmax(outputs, dim=-1)
        return outputs


def _check_range(output_range: tuple[float, float] | None, task: str) -> tuple[float, float] | None:
    if output_range is None:
        return None
    if task != "regression":
        raise ValueError("output_range applies to the regression task only")
    low, high = (float(v) for v in output_range)
    if not low < high:
        raise ValueError(f"output_range must be (low, high) with low < high, got {output_range}")
    return (low, high)
