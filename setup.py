"""Build of the compiled kernels; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

# Contraction off: a fused multiply-add would round differently from NumPy's
# separate multiply and add, and the sums must be the same bits everywhere.
KERNELS = Extension(
    "ul4m4._kernels",
    ["ul4m4/_kernels.pyx"],
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
)

setup(ext_modules=cythonize([KERNELS], compiler_directives={"language_level": "3"}))
