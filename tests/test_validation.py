"""ul4m4.validation: the NaN scan of converted inputs."""

from __future__ import annotations

import pandas as pd
import pytest

from ul4m4.validation import check_multimodal


def test_a_partly_na_row_is_a_partly_nan_row():
    frame = pd.DataFrame([[1.0, 2.0], [None, 3.0], [4.0, 5.0]]).astype("Float64")
    with pytest.raises(ValueError, match=r"modality 'a': rows \[1\] have some but not all"):
        check_multimodal({"a": frame})
