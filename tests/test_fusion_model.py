"""The SPEC §5 fusion model: shapes, a literal re-implementation, masking and modality dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from ul4m4.fusion import FusionConfig, FusionModel  # noqa: E402
from ul4m4.fusion.train import modality_dropout_mask  # noqa: E402

DIMS = {"text": 6, "image": 4, "audio": 5}


def _model(task="multiclass", n_outputs=3, mask_aware=False, seed=0, **config):
    torch.manual_seed(seed)
    cfg = FusionConfig(**{"d": 8, "heads": 2, "layers": 2, "dropout": 0.1, **config})
    bounds = (-3.0, 3.0) if task == "regression" else None
    model = FusionModel(DIMS, n_outputs, task, cfg, mask_aware=mask_aware, output_range=bounds)
    # non-trivial standardisation, so the test also checks where it is applied
    g = torch.Generator().manual_seed(seed + 1)
    model.set_standardization(
        [torch.randn(d, generator=g) for d in DIMS.values()],
        [torch.rand(d, generator=g) + 0.5 for d in DIMS.values()],
    )
    return model.eval()


def _inputs(n, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, d, generator=g) for d in DIMS.values()]


def _literal_forward(model, inputs, keep=None):
    """Plain re-implementation from the weights: post-LN attention, no FFN, mean pool.

    ``keep`` (list of modality indices) runs the sequence with only those tokens,
    which is what masking the others out must be equivalent to.
    """
    keep = range(len(inputs)) if keep is None else keep
    tokens = []
    for i in keep:
        z = (inputs[i] - getattr(model, f"mean_{i}")) / getattr(model, f"scale_{i}")
        proj = model.projections[i]
        tokens.append(z @ proj.weight.T + proj.bias)
    x = torch.stack(tokens, dim=1)  # (B, T, d)
    d, h = model.config.d, model.config.heads
    for block in model.blocks:
        att = block.attention
        wq, wk, wv = att.in_proj_weight.chunk(3)
        bq, bk, bv = att.in_proj_bias.chunk(3)

        def split(t):
            return t.reshape(t.shape[0], t.shape[1], h, d // h).transpose(1, 2)

        q, k, v = split(x @ wq.T + bq), split(x @ wk.T + bk), split(x @ wv.T + bv)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        heads = (weights @ v).transpose(1, 2).reshape(x.shape)
        attended = heads @ att.out_proj.weight.T + att.out_proj.bias
        y = x + attended
        mu = y.mean(-1, keepdim=True)
        var = y.var(-1, unbiased=False, keepdim=True)
        x = (y - mu) / torch.sqrt(var + block.norm.eps) * block.norm.weight + block.norm.bias
    pooled = x.mean(dim=1)
    lin = model.pool_projection[0]
    out = torch.relu(pooled @ lin.weight.T + lin.bias)
    for layer in model.head:
        if isinstance(layer, torch.nn.Linear):
            out = out @ layer.weight.T + layer.bias
        elif isinstance(layer, torch.nn.ReLU):
            out = torch.relu(out)
    if model.task == "regression":
        return torch.clamp(out[:, 0], *model.output_range)
    return out


@pytest.mark.parametrize(
    ("task", "n_outputs", "shape"),
    [("multiclass", 5, (7, 5)), ("multilabel", 4, (7, 4)), ("regression", 1, (7,))],
)
@pytest.mark.parametrize("mask_aware", [False, True])
def test_output_shapes_and_probabilities(task, n_outputs, shape, mask_aware):
    model = _model(task, n_outputs, mask_aware, head_hidden=(6,))
    out = model(_inputs(7, scale=10.0))
    assert out.shape == shape
    p = model.probabilities(out)
    if task == "multiclass":
        torch.testing.assert_close(p.sum(dim=1), torch.ones(7))
    elif task == "multilabel":
        assert ((p > 0) & (p < 1)).all()
    else:
        assert ((p >= -3) & (p <= 3)).all()


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_matches_literal_post_ln_attention_without_ffn(task):
    model = _model(task, 3 if task == "multiclass" else 1, head_hidden=(5, 4))
    x = _inputs(9, seed=3)
    torch.testing.assert_close(model(x), _literal_forward(model, x), rtol=1e-5, atol=1e-5)


def test_regression_output_is_bounded_by_hardtanh():
    model = _model("regression", 1)
    with torch.no_grad():
        model.head[-1].bias.fill_(100.0)
    assert torch.equal(model(_inputs(4)), torch.full((4,), 3.0))


def test_mask_aware_equals_running_on_the_observed_tokens_only():
    model = _model(mask_aware=True)
    x = _inputs(6, seed=4)
    mask = torch.tensor([[True, False, True]] * 6)
    torch.testing.assert_close(
        model(x, mask), _literal_forward(model, x, keep=[0, 2]), rtol=1e-5, atol=1e-5
    )
    # all observed: the same as the plain model with the same weights
    full = torch.ones(6, 3, dtype=torch.bool)
    torch.testing.assert_close(model(x, full), _literal_forward(model, x), rtol=1e-5, atol=1e-5)


def test_missing_tokens_do_not_affect_outputs():
    model = _model(mask_aware=True)
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(20, 3, generator=g) < 0.6
    mask[~mask.any(dim=1), 0] = True
    x = _inputs(20, seed=5)
    changed = [
        torch.where(m[:, None], a, torch.full_like(a, v))
        for a, m, v in zip(x, mask.T, (1e6, -7.0, 3.0), strict=True)
    ]
    nan_filled = [
        torch.where(m[:, None], a, torch.full_like(a, float("nan")))
        for a, m in zip(x, mask.T, strict=True)
    ]
    base = model(x, mask)
    assert torch.equal(model(changed, mask), base)
    assert torch.equal(model(nan_filled, mask), base)
    # while an observed value does change the output of its sample
    poked = [a.clone() for a in x]
    row = int(torch.nonzero(mask[:, 1])[0])
    poked[1][row] += 1.0
    assert not torch.equal(model(poked, mask)[row], base[row])


def test_each_sample_is_independent_of_the_batch():
    model = _model(mask_aware=True)
    x = _inputs(10, seed=6)
    mask = torch.ones(10, 3, dtype=torch.bool)
    mask[::2, 1] = False
    whole = model(x, mask)
    alone = torch.cat([model([a[i : i + 1] for a in x], mask[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(whole, alone, rtol=1e-5, atol=1e-6)


def test_plain_model_drop_zeroes_the_standardised_input():
    model = _model()
    x = _inputs(5, seed=8)
    drop = torch.zeros(5, 3, dtype=torch.bool)
    drop[:, 2] = True
    at_mean = [x[0], x[1], model.mean_2.expand(5, -1).clone()]
    torch.testing.assert_close(model(x, drop=drop), model(at_mean), rtol=1e-5, atol=1e-6)


def test_mask_arguments_are_checked():
    with pytest.raises(ValueError, match="not mask-aware"):
        _model()(_inputs(2), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="through mask"):
        _model(mask_aware=True)(_inputs(2), drop=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected 3 modality tensors"):
        _model()(_inputs(2)[:2])


# ----------------------------------------------------------- modality dropout
def test_modality_dropout_never_drops_every_token():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(2000, 4, generator=g) < 0.5
    mask[~mask.any(dim=1), 3] = True
    for p in (0.3, 0.9, 0.999):
        kept = modality_dropout_mask(mask, p, torch.Generator().manual_seed(1))
        assert kept.any(dim=1).all()
        assert not (kept & ~mask).any()  # only observed tokens can be kept
    # the rescued token is uniform among the observed ones
    full = torch.ones(4000, 4, dtype=torch.bool)
    kept = modality_dropout_mask(full, 0.999999, torch.Generator().manual_seed(2))
    assert (kept.sum(dim=1) == 1).all()
    share = kept.float().mean(dim=0)
    assert torch.all((share - 0.25).abs() < 0.03)


def test_modality_dropout_rate_and_determinism():
    mask = torch.ones(5000, 5, dtype=torch.bool)
    kept = modality_dropout_mask(mask, 0.2, torch.Generator().manual_seed(3))
    # with 5 tokens an all-dropped row has probability 0.2**5, so the rate is ~0.2
    assert abs(1 - kept.float().mean().item() - 0.2) < 0.01
    again = modality_dropout_mask(mask, 0.2, torch.Generator().manual_seed(3))
    other = modality_dropout_mask(mask, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(kept, again) and not torch.equal(kept, other)
    assert modality_dropout_mask(mask, 0.0, torch.Generator()) is mask


# ---------------------------------------------------------------------- config
def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="must divide"):
        FusionConfig(d=10, heads=4)
    with pytest.raises(ValueError, match="dropout"):
        FusionConfig(dropout=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        FusionConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="patience"):
        FusionConfig(patience=0)
    with pytest.raises(ValueError, match="unknown preset"):
        FusionConfig.preset("imagenet")
    mosi = FusionConfig.preset("mosi")
    assert (mosi.d, mosi.heads, mosi.layers, mosi.dropout, mosi.batch_size) == (32, 1, 1, 0.2, 8)
    sleep = FusionConfig.preset("sleep_edf", max_epochs=3)
    assert sleep.optimizer == "sgd" and sleep.max_epochs == 3 and len(sleep.class_weight) == 5
    imdb = FusionConfig.preset("mmimdb")
    assert (imdb.d, imdb.heads, imdb.layers, imdb.head_hidden) == (256, 4, 2, (128, 64))
    model = FusionModel({"a": 3}, 4, "multilabel", imdb)
    widths = [m.out_features for m in model.head if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 64, 4]
    assert np.isclose(FusionConfig().replace(lr=0.1).lr, 0.1)
