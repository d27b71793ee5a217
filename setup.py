"""Build of the compiled kernels; everything else is in pyproject.toml.

One implementation (``ul4m4/_kernels_impl.pxi``) is compiled once per instruction set:
``_kernels_baseline`` everywhere, plus ``_kernels_avx2`` and ``_kernels_avx512`` on
x86-64. ``ul4m4/_kernels.py`` picks the best one the CPU runs when it is imported.
"""

import platform
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Contraction off: a fused multiply-add would round differently from NumPy's
# separate multiply and add, and the sums must be the same bits everywhere. No
# fast-math: the compiler may not reassociate a sum, so vector lanes only run
# across features (elementwise). -mfma is left out on purpose: nothing to gain.
COMMON = ["-O3", "-ffp-contract=off", "-fno-fast-math"]
X86_VARIANTS = {
    "baseline": ["-march=x86-64"],
    "avx2": ["-march=x86-64", "-mavx2"],
    "avx512": ["-march=x86-64", "-mavx2", "-mavx512f", "-mavx512bw", "-mavx512dq",
               "-mavx512vl"],
}
HERE = Path(__file__).resolve().parent


def variants() -> dict[str, list[str]]:
    """Variant name -> extra compiler flags: three on x86-64, the baseline elsewhere."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_VARIANTS
    return {"baseline": []}


def extension(name: str, flags: list[str]) -> Extension:
    return Extension(
        f"ul4m4._kernels_{name}",
        [f"ul4m4/_kernels_{name}.pyx"],
        depends=["ul4m4/_kernels_impl.pxi"],
        extra_compile_args=COMMON + flags,
    )


class BuildExt(build_ext):
    """``build_ext`` that first removes the single-variant build an older checkout left.

    ``ul4m4/_kernels`` used to be the extension itself; a stale ``_kernels*.so`` next
    to the new ``_kernels.py`` would be imported in its place.
    """

    def run(self) -> None:
        for stale in (HERE / "ul4m4").glob("_kernels.*"):
            if stale.suffix in (".so", ".pyd", ".c"):
                stale.unlink()
        super().run()


setup(
    ext_modules=cythonize(
        [extension(name, flags) for name, flags in variants().items()],
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": BuildExt},
)
