"""encode_modality and EmbeddingCache: missing items, batching, resumable and checked cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from _processes import kill_when

from ul4m4.encoders import CacheWarning, EmbeddingCache, content_key, encode_modality
from ul4m4.encoders.cache import item_hash

REPO = Path(__file__).resolve().parents[1]

# The encoder used in-process and by the subprocess of the kill test: it appends every
# item it encodes to a log file (before returning), so the test knows what was computed.
SLOW_ENCODER = textwrap.dedent(
    """
    import time
    import numpy as np

    class SlowEncoder:
        dim = 3
        cache_id = "slow-counting-encoder-v1"

        def __init__(self, log=None, delay=0.0):
            self.log, self.delay, self.seen = log, delay, []

        def __call__(self, items):
            time.sleep(self.delay)
            self.seen.extend(items)
            if self.log is not None:
                with open(self.log, "a") as fh:
                    fh.write("".join(item + "\\n" for item in items))
            return np.array(
                [[len(s), sum(map(ord, s)) % 97, s.count("1")] for s in items], dtype=np.float32
            )
    """
)


class CountingEncoder:
    """Embeds a text as (length, number of vowels); records every item it is called on."""

    dim = 2

    def __init__(self, cache_id: str = "counting-v1") -> None:
        self.cache_id = cache_id
        self.calls: list[list[str]] = []

    @property
    def seen(self) -> list[str]:
        return [item for call in self.calls for item in call]

    def __call__(self, items):
        self.calls.append(list(items))
        for item in items:
            assert isinstance(item, str), f"encoder called on a missing item: {item!r}"
        return np.array([[len(t), sum(c in "aeiou" for c in t)] for t in items], dtype=np.float32)


def expected_rows(items):
    return np.array(
        [[np.nan, np.nan] if t is None else [len(t), sum(c in "aeiou" for c in t)] for t in items],
        dtype=np.float32,
    )


ITEMS = ["apple", None, "kiwi", "banana", None, "fig", "cherry", "date"]


def test_missing_items_get_nan_rows_and_are_never_encoded():
    enc = CountingEncoder()
    out = encode_modality(enc, ITEMS, batch_size=3, progress=False)
    np.testing.assert_array_equal(out, expected_rows(ITEMS))
    assert out.dtype == np.float32
    assert enc.seen == [t for t in ITEMS if t is not None]
    assert [len(c) for c in enc.calls] == [3, 3]  # batches of present items only


def test_progress_bar_can_be_switched_on_and_off(capsys, tmp_path):
    pytest.importorskip("tqdm")
    encode_modality(CountingEncoder(), ITEMS, cache_dir=tmp_path, desc="fruit", progress=True)
    assert "fruit" in capsys.readouterr().err
    encode_modality(CountingEncoder(), ITEMS, desc="fruit", progress=False)
    assert capsys.readouterr().err == ""


def test_pandas_style_nan_counts_as_missing_and_all_missing_keeps_width():
    enc = CountingEncoder()
    out = encode_modality(enc, [float("nan"), "ab"], progress=False)
    assert np.isnan(out[0]).all() and out[1].tolist() == [2, 1]
    empty = encode_modality(enc, [None, None], progress=False)
    assert empty.shape == (2, 2) and np.isnan(empty).all()
    assert encode_modality(enc, [], progress=False).shape == (0, 2)


def test_cache_hits_skip_the_encoder_and_duplicates_are_encoded_once(tmp_path):
    items = ITEMS + ["kiwi", "apple"]
    first = CountingEncoder()
    out1 = encode_modality(first, items, cache_dir=tmp_path, batch_size=2, progress=False)
    assert sorted(first.seen) == sorted(set(t for t in items if t is not None))
    second = CountingEncoder()
    out2 = encode_modality(second, items, cache_dir=tmp_path, progress=False)
    assert second.calls == []
    np.testing.assert_array_equal(out1, expected_rows(items))
    np.testing.assert_array_equal(out2, out1)


def test_deleted_entry_is_recomputed_alone(tmp_path):
    encode_modality(CountingEncoder(), ITEMS, cache_dir=tmp_path, progress=False)
    cache = EmbeddingCache(tmp_path, "counting-v1", dim=2)
    cache.path(item_hash("banana")).unlink()
    enc = CountingEncoder()
    out = encode_modality(enc, ITEMS, cache_dir=tmp_path, progress=False)
    assert enc.seen == ["banana"]
    np.testing.assert_array_equal(out, expected_rows(ITEMS))


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],  # truncated
        lambda raw: raw[:-4] + np.float32(7.0).tobytes(),  # payload changed, checksum not
        lambda raw: b"",  # empty file
        lambda raw: b"garbage" * 20,  # not an entry
    ],
    ids=["truncated", "bit-rot", "empty", "garbage"],
)
def test_corrupt_entry_is_detected_warned_and_recomputed(tmp_path, damage):
    encode_modality(CountingEncoder(), ITEMS, cache_dir=tmp_path, progress=False)
    path = EmbeddingCache(tmp_path, "counting-v1", dim=2).path(item_hash("cherry"))
    path.write_bytes(damage(path.read_bytes()))
    enc = CountingEncoder()
    with pytest.warns(CacheWarning, match=r"cache entry .*\.emb"):
        out = encode_modality(enc, ITEMS, cache_dir=tmp_path, progress=False)
    assert enc.seen == ["cherry"]
    np.testing.assert_array_equal(out, expected_rows(ITEMS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry is valid again
        encode_modality(CountingEncoder(), ITEMS, cache_dir=tmp_path, progress=False)


def test_entry_under_the_wrong_key_fails_the_checksum(tmp_path):
    cache = EmbeddingCache(tmp_path, "counting-v1", dim=2)
    cache.put(item_hash("a"), np.array([1.0, 2.0]))
    wrong = cache.path(item_hash("b"))
    wrong.parent.mkdir(parents=True, exist_ok=True)
    wrong.write_bytes(cache.path(item_hash("a")).read_bytes())
    with pytest.warns(CacheWarning, match="checksum"):
        assert cache.get(item_hash("b")) is None
    assert cache.n_corrupt == 1


def test_cache_is_separate_per_encoder_id(tmp_path):
    encode_modality(CountingEncoder("v1"), ["kiwi"], cache_dir=tmp_path, progress=False)
    other = CountingEncoder("v2")
    encode_modality(other, ["kiwi"], cache_dir=tmp_path, progress=False)
    assert other.seen == ["kiwi"]
    assert len(list(tmp_path.iterdir())) == 2


def test_leftover_temporary_files_are_ignored_and_removable(tmp_path):
    encode_modality(CountingEncoder(), ["kiwi"], cache_dir=tmp_path, progress=False)
    cache = EmbeddingCache(tmp_path, "counting-v1", dim=2)
    stray = cache.path(item_hash("fig")).parent / ".tmp-half-written"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"UL4M4EMB\x01")
    enc = CountingEncoder()
    out = encode_modality(enc, ["kiwi", "fig"], cache_dir=tmp_path, progress=False)
    assert enc.seen == ["fig"] and out[1].tolist() == [3, 1]
    assert cache.remove_stale_temporaries() == 1 and not stray.exists()
    assert sorted(cache.keys()) == sorted([item_hash("kiwi"), item_hash("fig")])


def test_put_get_round_trip_and_width_check(tmp_path):
    cache = EmbeddingCache(tmp_path, "x", dim=3)
    key = item_hash("k")
    assert cache.get(key) is None
    cache.put(key, np.array([0.5, -1.0, 3.25], dtype=np.float64))
    np.testing.assert_array_equal(cache.get(key), np.float32([0.5, -1.0, 3.25]))
    with pytest.raises(ValueError, match="expected 3"):
        cache.put(key, np.zeros(2))
    with pytest.warns(CacheWarning, match="width 3, expected 4"):
        assert EmbeddingCache(tmp_path, "x", dim=4).get(key) is None


def test_bad_encoder_output_names_the_rows():
    class Broken(CountingEncoder):
        def __call__(self, items):
            out = super().__call__(items)
            out[-1, 0] = np.nan
            return out

    with pytest.raises(ValueError, match=r"non-finite values for rows \[7\]"):
        encode_modality(Broken(), ITEMS, progress=False)

    class Short(CountingEncoder):
        def __call__(self, items):
            return super().__call__(items)[:-1]

    with pytest.raises(ValueError, match=r"returned shape \(2, 2\) for 3 items"):
        encode_modality(Short(), ITEMS, batch_size=3, progress=False)


def test_cache_needs_a_cache_id(tmp_path):
    def plain(items):
        return np.ones((len(items), 1))

    with pytest.raises(AttributeError, match="no cache_id"):
        encode_modality(plain, ["a"], cache_dir=tmp_path, progress=False)
    # Without a cache a plain function is fine; the width comes from its output.
    assert encode_modality(plain, ["a", None], progress=False).shape == (2, 1)


def test_content_key_reads_file_contents_not_names(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    c.write_bytes(b"different")
    assert content_key(a) == content_key(b) != content_key(c)
    assert content_key("a") != content_key(b"a")
    x = np.arange(4, dtype=np.float32)
    assert content_key(x) != content_key(x.astype(np.float64))
    assert content_key(x) != content_key(x.reshape(2, 2))
    with pytest.raises(TypeError, match="content_key"):
        content_key(object())


def test_killed_job_resumes_without_recomputing_finished_items(tmp_path):
    (tmp_path / "slow_encoder.py").write_text(SLOW_ENCODER)
    items = [f"item-{i:02d}" for i in range(40)]
    cache_dir, log = tmp_path / "cache", tmp_path / "encoded.log"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(tmp_path)!r})
            from slow_encoder import SlowEncoder
            from ul4m4.encoders import encode_modality
            items = {items!r}
            encode_modality(SlowEncoder({str(log)!r}, delay=0.25), items,
                            cache_dir={str(cache_dir)!r}, batch_size=2, progress=False)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    # Killed once 8 items (4 batches) are encoded.
    kill_when(proc, lambda: log.exists() and len(log.read_text().split()) >= 8, "the encoding job")

    sys.path.insert(0, str(tmp_path))
    try:
        from slow_encoder import SlowEncoder
    finally:
        sys.path.remove(str(tmp_path))
    cache = EmbeddingCache(cache_dir, SlowEncoder.cache_id, SlowEncoder.dim)
    finished = {item for item in items if item_hash(item) in set(cache.keys())}
    # Killed part-way: the 4th batch had been encoded, so the first 3 were stored.
    assert 6 <= len(finished) < len(items)

    rerun = SlowEncoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no half-written entry is ever read
        resumed = encode_modality(rerun, items, cache_dir=cache_dir, batch_size=2, progress=False)
    assert not finished & set(rerun.seen)
    assert sorted(rerun.seen) == sorted(set(items) - finished)
    uninterrupted = encode_modality(SlowEncoder(), items, batch_size=2, progress=False)
    np.testing.assert_array_equal(resumed, uninterrupted)
