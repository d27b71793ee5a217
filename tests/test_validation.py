"""ul4m4.validation: the NaN scan of converted inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ul4m4.validation import check_multimodal, validate


def test_a_partly_na_row_is_a_partly_nan_row():
    frame = pd.DataFrame([[1.0, 2.0], [None, 3.0], [4.0, 5.0]]).astype("Float64")
    with pytest.raises(ValueError, match=r"modality 'a': rows \[1\] have some but not all"):
        check_multimodal({"a": frame})


def _in_blocks(cut):
    """A reduce_blocks that cuts the rows into blocks of ``cut`` and joins them in a
    pairwise tree, as Dask does."""

    def reduce_blocks(arrays, fn, combine, *aligned, n_threads=1):
        n = arrays[0].shape[0]
        parts = [fn([a[s:s + cut] for a in arrays], *[x[s:s + cut] for x in aligned],
                    n_threads=1) for s in range(0, n, cut)]
        while len(parts) > 1:
            pairs = [parts[i:i + 2] for i in range(0, len(parts), 2)]
            parts = [combine(*p) if len(p) == 2 else p[0] for p in pairs]
        return parts[0]

    return reduce_blocks


@pytest.mark.parametrize("cut", [1, 3, 7, 50])
def test_the_scan_gives_one_answer_however_the_rows_are_blocked(cut):
    """validate is the one scan of every engine: per row block, the blocks joined."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3)), rng.integers(0, 5, (20, 2))
    a[[2, 11, 19]] = np.nan
    whole = validate(["a", "b"], [a, b])
    blocked = validate(["a", "b"], [a, b], reduce_blocks=_in_blocks(cut))
    assert np.array_equal(whole.mask, blocked.mask)
    assert not blocked.mask[[2, 11, 19], 0].any() and blocked.mask[:, 1].all()
    a[[5, 13], 1], a[17, 0] = np.nan, np.inf
    for reduce_blocks in (_in_blocks(cut), None):
        kwargs = {} if reduce_blocks is None else {"reduce_blocks": reduce_blocks}
        with pytest.raises(ValueError, match=r"modality 'a': rows \[17\] contain infinite"):
            validate(["a", "b"], [a, b], **kwargs)
        a[17, 0] = 0.0
        with pytest.raises(ValueError, match=r"modality 'a': rows \[5, 13\] have some but"):
            validate(["a", "b"], [a, b], **kwargs)
        assert np.array_equal(validate(["a", "b"], [a, b], partial="missing", **kwargs).mask[:, 0],
                              ~np.isnan(a).any(axis=1))
        a[17, 0] = np.inf
