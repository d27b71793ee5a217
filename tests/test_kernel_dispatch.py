"""The kernels' build variant is chosen at import, can be forced, and never changes a bit."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from ul4m4 import _kernels

ROOT = Path(__file__).resolve().parents[1]
USABLE = _kernels.usable_variants()

#: A short fit, printed as the variant in use and a digest of centres, labels and inertia.
FIT_SCRIPT = """
import hashlib
import numpy as np
from ul4m4 import UL4M4Imputer, _kernels

rng = np.random.default_rng(0)
X = {"a": rng.standard_normal((3000, 64)).astype(np.float32),
     "b": rng.standard_normal((3000, 32)).astype(np.float32)}
X["a"] += np.repeat(rng.standard_normal((8, 64)).astype(np.float32) * 3, 375, axis=0)
X["b"][rng.random(3000) < 0.4] = np.nan
model = UL4M4Imputer(8, random_state=0).fit(X)
digest = hashlib.sha256()
for name in model.modalities_:
    digest.update(np.ascontiguousarray(model.cluster_centers_[name]).tobytes())
digest.update(model.labels_.tobytes())
digest.update(np.float64(model.inertia_).tobytes())
print(_kernels.ISA, model.n_iter_, digest.hexdigest())
"""


def _run(code: str, isa: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop(_kernels.ENV_VAR, None)
    if isa is not None:
        env[_kernels.ENV_VAR] = isa
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_a_fit_gives_the_same_bits_under_every_variant_this_cpu_runs():
    outputs = {}
    for isa in USABLE:
        done = _run(FIT_SCRIPT, isa)
        assert done.returncode == 0, done.stderr
        used, n_iter, digest = done.stdout.split()
        assert used == isa
        assert int(n_iter) > 1
        outputs[isa] = digest
    assert len(set(outputs.values())) == 1, outputs


def test_without_the_switch_the_best_usable_variant_is_used():
    done = _run("from ul4m4 import _kernels; print(_kernels.ISA)", None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == USABLE[0]


@pytest.mark.parametrize("value", ["sse9", "native"])
def test_an_unknown_variant_is_a_clear_import_error(value):
    done = _run("import ul4m4", value)
    assert done.returncode == 1
    assert "ImportError" in done.stderr
    assert f"UL4M4_ISA='{value}' is not a kernel variant" in done.stderr


def test_select_variant():
    usable = ("avx2", "baseline")
    assert _kernels.select_variant(None, usable) == "avx2"
    assert _kernels.select_variant(" Auto ", usable) == "avx2"
    assert _kernels.select_variant("", usable) == "avx2"
    assert _kernels.select_variant("BASELINE", usable) == "baseline"
    with pytest.raises(ImportError, match="the avx512 kernels are not built or this CPU/OS "
                                          "does not support them; usable here: avx2, baseline"):
        _kernels.select_variant("avx512", usable)
    with pytest.raises(ImportError, match="not a kernel variant"):
        _kernels.select_variant("avx", usable)


def test_a_variant_this_cpu_cannot_run_is_refused_before_it_is_loaded():
    refused = [isa for isa in _kernels.VARIANTS if isa not in USABLE]
    if not refused:
        pytest.skip("this CPU runs every built variant")
    done = _run("import ul4m4", refused[0])
    assert done.returncode == 1
    assert "not built or this CPU/OS does not support them" in done.stderr


def test_cpu_supports():
    assert _kernels.cpu_supports("baseline")
    if _kernels.cpu_supports("avx512"):
        assert _kernels.cpu_supports("avx2")
    with pytest.raises(ValueError, match="unknown kernel variant 'avx'"):
        _kernels.cpu_supports("avx")


X86 = platform.machine().lower() in ("x86_64", "amd64")
#: The widest vector registers each variant is built to use.
REGISTERS = {"baseline": "%xmm", "avx2": "%ymm", "avx512": "%zmm"}


@pytest.mark.skipif(not X86 or shutil.which("objdump") is None,
                    reason="x86-64 with objdump only")
@pytest.mark.parametrize("isa", [isa for isa in _kernels.VARIANTS if _kernels.is_built(isa)])
def test_each_variant_uses_its_vectors_and_no_fused_multiply_add(isa):
    """Contraction is off: no FMA instruction (it rounds once where NumPy rounds twice)."""
    path = find_spec(f"ul4m4._kernels_{isa}").origin
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                             capture_output=True, text=True, check=True).stdout
    assert not re.findall(r"^\s*[0-9a-f]+:\s+v?fn?m(?:add|sub)", listing, re.MULTILINE)
    assert REGISTERS[isa] in listing
    wider = list(REGISTERS.values())[list(REGISTERS).index(isa) + 1:]
    assert not [reg for reg in wider if reg in listing]
