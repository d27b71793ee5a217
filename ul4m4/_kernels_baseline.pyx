# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled kernels built for the baseline ISA (x86-64: SSE2), and the CPU check.

Runs on every CPU of its architecture. :func:`cpu_supports` tells whether the CPU and
the OS can run another build variant, before :mod:`ul4m4._kernels` imports it (an
unsupported variant would stop the process with SIGILL).
"""

include "_kernels_impl.pxi"

cdef extern from *:
    """
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #include <cpuid.h>

    /* The XCR0 state bits the OS saves on context switches: AVX needs SSE and
       AVX (0x06); AVX-512 also needs opmask, ZMM0-15 high and ZMM16-31 (0xE0). */
    static int ul4m4_os_saves(unsigned int bits) {
        unsigned int eax, ebx, ecx, edx, xcr0_lo, xcr0_hi;
        if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE))
            return 0;
        __asm__ volatile ("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
        return (xcr0_lo & bits) == bits;
    }

    static int ul4m4_cpu_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && ul4m4_os_saves(0x06);
    }

    static int ul4m4_cpu_has_avx512(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl") && ul4m4_os_saves(0xE6);
    }
    #else
    static int ul4m4_cpu_has_avx2(void) { return 0; }
    static int ul4m4_cpu_has_avx512(void) { return 0; }
    #endif
    """
    int ul4m4_cpu_has_avx2() nogil
    int ul4m4_cpu_has_avx512() nogil


def cpu_supports(str isa):
    """Whether this CPU and OS can run the kernels built for ``isa``.

    Parameters
    ----------
    isa : {"baseline", "avx2", "avx512"}
        A build variant. ``"avx512"`` needs AVX-512 F, BW, DQ and VL (and AVX2);
        the vector variants also need the OS to save the wider registers (XCR0).

    Returns
    -------
    bool
        ``True`` for ``"baseline"``; for the vector variants, what CPUID and XCR0
        report (always ``False`` off x86).

    Raises
    ------
    ValueError
        For a name that is not a variant.
    """
    if isa == "baseline":
        return True
    if isa == "avx2":
        return bool(ul4m4_cpu_has_avx2())
    if isa == "avx512":
        return bool(ul4m4_cpu_has_avx512())
    raise ValueError(f"unknown kernel variant {isa!r}; expected baseline, avx2 or avx512")
