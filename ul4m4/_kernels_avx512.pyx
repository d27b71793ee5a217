# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled kernels built for AVX-512 F/BW/DQ/VL (x86-64 only; import it only where the CPU has them).

Same source and same bits as :mod:`ul4m4._kernels_baseline`; use :mod:`ul4m4._kernels`,
which imports this module only after checking the CPU and the OS.
"""

include "_kernels_impl.pxi"
