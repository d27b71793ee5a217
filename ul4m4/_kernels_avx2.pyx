# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled kernels built for AVX2 (x86-64 only; import it only where the CPU has AVX2).

Same source and same bits as :mod:`ul4m4._kernels_baseline`; use :mod:`ul4m4._kernels`,
which imports this module only after checking the CPU.
"""

include "_kernels_impl.pxi"
