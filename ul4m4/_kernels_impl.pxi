# The kernels' one implementation, included by every build variant
# (_kernels_baseline.pyx, _kernels_avx2.pyx, _kernels_avx512.pyx).
#
# * Group sums (add_rows, add_squared_deviations) add rows one after the other,
#   in row order: every group's total is its running value plus its rows in
#   increasing row order, so a sum over a data set does not depend on how the
#   rows were chunked.
# * The partial distance from per-modality GEMMs (partial_sq_dists_from_cross)
#   and its bounded argmin (bounded_argmin) replace a dozen NumPy passes over
#   (B, k) float64 temporaries by one pass that writes each output once.
#
# Every variant is compiled with floating-point contraction off and without
# fast-math, and float32 inputs are widened exactly, so the sums are the bits of
# the same additions done in NumPy. Vector lanes run across features or centres
# only (elementwise), never across the rows of a sum, so every variant gives the
# same bits. The loops release the GIL: a thread can add one chunk while others
# compute the next.

from libc.math cimport INFINITY, NAN
from libc.stdlib cimport free, malloc
from libc.stdint cimport int64_t

ctypedef fused real:
    float
    double


cdef inline double _row_sq(const real *row, const real *center, Py_ssize_t d) noexcept nogil:
    """``sum_t (row[t] - center[t]) ** 2`` in float64: 8 running sums by ``t % 8``, then in order."""
    cdef double acc[8]
    cdef double dev, total = 0.0
    cdef Py_ssize_t t, lane
    for lane in range(8):
        acc[lane] = 0.0
    for t in range(0, d - d % 8, 8):
        for lane in range(8):
            dev = <double>row[t + lane] - <double>center[t + lane]
            acc[lane] += dev * dev
    for t in range(d - d % 8, d):
        dev = <double>row[t] - <double>center[t]
        acc[t % 8] += dev * dev
    for lane in range(8):
        total += acc[lane]
    return total


def add_rows(
    double[:, ::1] sums,
    const int64_t[::1] labels,
    const real[:, ::1] block,
    const unsigned char[::1] keep=None,
    const real[:, ::1] centers=None,
    double[::1] sq=None,
):
    """``sums[labels[i]] += block[i]`` for every kept row i, in row order, in place.

    ``sums`` is (k, d) float64, ``labels`` (B,) int64 in ``[0, k)``, ``block``
    (B, d) float32 or float64 and ``keep`` an optional (B,) uint8 mask: rows with
    ``keep[i] == 0`` are skipped (their values are never read into a sum). With
    ``centers`` (k, d) and ``sq`` (B,), also ``sq[i] = ||block[i] -
    centers[labels[i]]||^2`` for every kept row, as :func:`sq_to_assigned`
    computes it, while the row is in cache.
    """
    cdef Py_ssize_t n = block.shape[0], d = block.shape[1], k = sums.shape[0]
    cdef Py_ssize_t i, t
    cdef int64_t j
    cdef bint every_row = keep is None
    cdef bint distances = centers is not None
    if labels.shape[0] != n or (not every_row and keep.shape[0] != n):
        raise ValueError("labels, keep and block must have the same number of rows")
    if sums.shape[1] != d:
        raise ValueError(f"sums has {sums.shape[1]} columns, block has {d}")
    if distances != (sq is not None):
        raise ValueError("centers and sq go together")
    if distances and (centers.shape[0] != k or centers.shape[1] != d or sq.shape[0] != n):
        raise ValueError("centers must be (k, d) like sums and sq (B,) like block's rows")
    with nogil:
        for i in range(n):
            if every_row or keep[i]:
                j = labels[i]
                if j < 0 or j >= k:
                    with gil:
                        raise IndexError(f"label {j} of row {i} is outside [0, {k})")
                for t in range(d):
                    sums[j, t] += block[i, t]
                if distances:
                    sq[i] = _row_sq(&block[i, 0], &centers[j, 0], d)


def add_squared_deviations(
    double[::1] sums,
    const real[:, ::1] block,
    const double[::1] center,
    const unsigned char[::1] keep=None,
):
    """``sums += (block[i] - center) ** 2`` for every kept row i, in row order, in place.

    Each term is ``(double(x) - c) * (double(x) - c)``, rounded as NumPy rounds
    ``d = x.astype(float64) - c; d *= d``, then added to the running total.
    """
    cdef Py_ssize_t n = block.shape[0], d = block.shape[1]
    cdef Py_ssize_t i, t
    cdef double dev
    cdef bint every_row = keep is None
    if sums.shape[0] != d or center.shape[0] != d:
        raise ValueError(f"sums and center must have {d} entries")
    if not every_row and keep.shape[0] != n:
        raise ValueError("keep and block must have the same number of rows")
    with nogil:
        for i in range(n):
            if every_row or keep[i]:
                for t in range(d):
                    dev = <double>block[i, t] - center[t]
                    dev = dev * dev
                    sums[t] += dev


cdef inline void _add_shared(double *num, double *bound, double *count, Py_ssize_t j,
                             double cross, double norm, double inv) noexcept nogil:
    """One shared modality of pair j: ``max(-2 cross + norm, 0) / d_m`` and its bound term."""
    cdef double value = cross * -2.0 + norm
    value = value if value > 0.0 else 0.0
    num[j] += value * inv
    bound[j] += norm * inv
    count[j] += 1.0


cdef inline void _row_distances(
    const real *cross, Py_ssize_t k, const double *row_norms, const int64_t *at,
    Py_ssize_t n_mod, const double *center_norms, const unsigned char *center_has,
    const bint *every_center, const double *inv_dims, double gamma,
    double *num, double *bound, double *count, double *sq, double *err,
) noexcept nogil:
    """Squared partial distances ``sq[j]`` of one row to every centre j, and bounds ``err[j]``.

    ``at`` is the row's line of the (B, M) row map, ``cross`` (R, k), ``center_norms``
    (M, k) and ``center_has`` (k, M) are C-contiguous.
    """
    cdef Py_ssize_t j, m
    cdef int64_t r
    cdef double inv, rn
    cdef const real *products
    cdef const double *norms
    for j in range(k):
        num[j] = 0.0
        bound[j] = 0.0
        count[j] = 0.0
    for m in range(n_mod):
        r = at[m]
        if r < 0:
            continue
        inv = inv_dims[m]
        rn = row_norms[r]
        products = cross + r * k
        norms = center_norms + m * k
        if every_center[m]:
            # Without the per-centre test, the compiler vectorises the loop.
            for j in range(k):
                _add_shared(num, bound, count, j, products[j], rn + norms[j], inv)
            continue
        for j in range(k):
            if center_has[j * n_mod + m]:
                _add_shared(num, bound, count, j, products[j], rn + norms[j], inv)
    for j in range(k):
        if count[j] > 0.0:
            inv = 1.0 / count[j]
            sq[j] = num[j] * inv
            err[j] = bound[j] * gamma * inv
        else:
            sq[j] = INFINITY
            err[j] = 0.0


cdef inline bint _row_argmin(const double *sq, const double *err, Py_ssize_t k,
                             int64_t *label, double *best) noexcept nogil:
    """Argmin of ``sq`` (ties to the lowest index); whether the bounds leave it in doubt."""
    cdef Py_ssize_t j, arg = 0
    cdef double low = sq[0], upper
    cdef int contenders = 0
    for j in range(1, k):
        if sq[j] < low:
            low = sq[j]
            arg = j
    label[0] = arg
    best[0] = low
    if low == INFINITY:
        return False
    upper = low + err[arg]
    for j in range(k):
        if sq[j] - err[j] <= upper:
            contenders += 1
    return contenders > 1


cdef bint *_every_center(const unsigned char[:, ::1] center_has) except NULL:
    """Per modality, whether every centre has it (malloc'ed; the caller frees it)."""
    cdef Py_ssize_t k = center_has.shape[0], n_mod = center_has.shape[1], j, m
    cdef bint *every = <bint *> malloc((n_mod if n_mod > 0 else 1) * sizeof(bint))
    if every == NULL:
        raise MemoryError()
    for m in range(n_mod):
        every[m] = True
        for j in range(k):
            if not center_has[j, m]:
                every[m] = False
                break
    return every


cdef _check_cross_arguments(Py_ssize_t n_rows, Py_ssize_t k, const double[::1] row_norms,
                            const int64_t[:, ::1] at, const double[:, ::1] center_norms,
                            const unsigned char[:, ::1] center_has, const double[::1] inv_dims):
    cdef Py_ssize_t n = at.shape[0], n_mod = at.shape[1], i, m
    if row_norms.shape[0] != n_rows or center_norms.shape[0] != n_mod \
            or center_norms.shape[1] != k:
        raise ValueError("row_norms must be (R,) like cross's rows and center_norms (M, k)")
    if center_has.shape[0] != k or center_has.shape[1] != n_mod or inv_dims.shape[0] != n_mod:
        raise ValueError("center_has must be (k, M) and inv_dims (M,) with at's (B, M)")
    for i in range(n):
        for m in range(n_mod):
            if at[i, m] >= n_rows or at[i, m] < -1:
                raise IndexError(f"at[{i}, {m}] = {at[i, m]} is outside [-1, {n_rows})")


def partial_sq_dists_from_cross(
    const real[:, ::1] cross,
    const double[::1] row_norms,
    const int64_t[:, ::1] at,
    const double[:, ::1] center_norms,
    const unsigned char[:, ::1] center_has,
    const double[::1] inv_dims,
    double gamma,
    double[:, ::1] sq,
    double[:, ::1] err,
):
    """Squared partial distances and their error bounds from per-modality GEMMs.

    Row ``r = at[i, m]`` of ``cross`` (R, k) is the product ``z_i^m @ c^m.T`` and
    ``row_norms[r]`` its float64 squared norm; ``at[i, m] = -1`` where row i lacks
    modality m. So the GEMMs need only cover the rows that observe a modality
    (see :class:`ul4m4.blocks.PackedBlocks`). ``center_norms`` (M, k) are the
    centres' squared norms, ``center_has`` (k, M) their modality sets and
    ``inv_dims[m] = 1 / d_m``. For every pair, over the modalities both have, in
    modality order::

        s_m = max(-2 * cross + (||z||^2 + ||c||^2), 0) * inv_dims[m]
        sq  = (sum_m s_m) * (1 / count),  err = gamma * (sum_m norms_m * inv_dims[m]) / count

    and ``sq = +inf``, ``err = 0`` where nothing is shared.
    """
    cdef Py_ssize_t n = at.shape[0], k = cross.shape[1], n_mod = at.shape[1], i
    cdef double *num
    cdef bint *every_center
    _check_cross_arguments(cross.shape[0], k, row_norms, at, center_norms, center_has, inv_dims)
    if sq.shape[0] != n or sq.shape[1] != k or err.shape[0] != n or err.shape[1] != k:
        raise ValueError("sq and err must be (B, k)")
    if k == 0 or n == 0:
        return
    every_center = _every_center(center_has)
    num = <double *> malloc(3 * k * sizeof(double))
    if num == NULL:
        free(every_center)
        raise MemoryError()
    with nogil:
        for i in range(n):
            _row_distances(&cross[0, 0], k, &row_norms[0], &at[i, 0], n_mod, &center_norms[0, 0],
                           &center_has[0, 0], every_center, &inv_dims[0], gamma,
                           num, num + k, num + 2 * k, &sq[i, 0], &err[i, 0])
    free(num)
    free(every_center)


def nearest_from_cross(
    const real[:, ::1] cross,
    const double[::1] row_norms,
    const int64_t[:, ::1] at,
    const double[:, ::1] center_norms,
    const unsigned char[:, ::1] center_has,
    const double[::1] inv_dims,
    double gamma,
    int64_t[::1] labels,
    double[::1] best,
    unsigned char[::1] ambiguous,
):
    """:func:`partial_sq_dists_from_cross` then :func:`bounded_argmin`, row by row.

    The same labels, best values and flags, without writing the (B, k) distances:
    each row's distances live in a k-long scratch line.
    """
    cdef Py_ssize_t n = at.shape[0], k = cross.shape[1], n_mod = at.shape[1], i
    cdef double *num
    cdef bint *every_center
    _check_cross_arguments(cross.shape[0], k, row_norms, at, center_norms, center_has, inv_dims)
    if labels.shape[0] != n or best.shape[0] != n or ambiguous.shape[0] != n:
        raise ValueError("labels, best and ambiguous must have one entry per row")
    if k == 0:
        raise ValueError("cross has no column")
    if n == 0:
        return
    every_center = _every_center(center_has)
    num = <double *> malloc(5 * k * sizeof(double))
    if num == NULL:
        free(every_center)
        raise MemoryError()
    with nogil:
        for i in range(n):
            _row_distances(&cross[0, 0], k, &row_norms[0], &at[i, 0], n_mod, &center_norms[0, 0],
                           &center_has[0, 0], every_center, &inv_dims[0], gamma,
                           num, num + k, num + 2 * k, num + 3 * k, num + 4 * k)
            ambiguous[i] = _row_argmin(num + 3 * k, num + 4 * k, k, &labels[i], &best[i])
    free(num)
    free(every_center)


def bounded_argmin(
    const double[:, ::1] sq,
    const double[:, ::1] err,
    int64_t[::1] labels,
    double[::1] best,
    unsigned char[::1] ambiguous,
):
    """Row-wise argmin of ``sq`` (ties to the lowest index), and which rows it may be wrong for.

    Writes ``labels[i]``, ``best[i] = sq[i, labels[i]]`` and ``ambiguous[i] = 1``
    when ``best[i]`` is finite and some other entry ``j`` has
    ``sq[i, j] - err[i, j] <= best[i] + err[i, labels[i]]``: the error bounds
    then cannot tell the two apart.
    """
    cdef Py_ssize_t n = sq.shape[0], k = sq.shape[1], i
    if err.shape[0] != n or err.shape[1] != k:
        raise ValueError("sq and err must have the same shape")
    if labels.shape[0] != n or best.shape[0] != n or ambiguous.shape[0] != n:
        raise ValueError("labels, best and ambiguous must have one entry per row")
    if k == 0:
        raise ValueError("sq has no column")
    with nogil:
        for i in range(n):
            ambiguous[i] = _row_argmin(&sq[i, 0], &err[i, 0], k, &labels[i], &best[i])


def candidate_minimum(
    const float[:, ::1] p,
    const float[:, ::1] q_open_t,
    const float[:, ::1] inverse_t,
    double[:, ::1] scores,
):
    """``scores[i, f] = min_j (p[i, j] + q_open_t[j, f]) * inverse_t[j, f]``, in float32.

    The greedy completion's candidate scores without the (B, k, k) tensor
    (``q_open_t`` and ``inverse_t`` are the transposed (k, k) terms): each sum and
    product is rounded to float32 as NumPy rounds them, the minimum propagates
    NaN as ``np.min`` does, and the result is widened to float64. Vector lanes
    run across candidates f, so every variant gives the same bits.
    """
    cdef Py_ssize_t n = p.shape[0], k = p.shape[1], i, f, j
    cdef float value, pj
    cdef float *low
    cdef unsigned char *nan
    if q_open_t.shape[0] != k or q_open_t.shape[1] != k or inverse_t.shape[0] != k \
            or inverse_t.shape[1] != k:
        raise ValueError("q_open_t and inverse_t must be (k, k) with p's (B, k)")
    if scores.shape[0] != n or scores.shape[1] != k:
        raise ValueError("scores must be (B, k)")
    if k == 0 or n == 0:
        return
    low = <float *> malloc(k * sizeof(float))
    nan = <unsigned char *> malloc(k * sizeof(unsigned char))
    if low == NULL or nan == NULL:
        free(low)
        free(nan)
        raise MemoryError()
    with nogil:
        for i in range(n):
            for f in range(k):
                low[f] = INFINITY
                nan[f] = 0
            for j in range(k):
                pj = p[i, j]
                for f in range(k):
                    value = pj + q_open_t[j, f]
                    value = value * inverse_t[j, f]
                    nan[f] |= value != value
                    low[f] = value if value < low[f] else low[f]
            for f in range(k):
                scores[i, f] = NAN if nan[f] else <double> low[f]
    free(low)
    free(nan)


def sq_to_assigned(
    const real[:, ::1] block,
    const int64_t[::1] labels,
    const real[:, ::1] centers,
    double[::1] out,
):
    """``out[i] = sum_t (block[i, t] - centers[labels[i], t]) ** 2``, in float64, in a fixed order.

    Each difference is formed in float64 from the widened values and squared;
    the squares are summed into 8 running totals by ``t % 8`` (so the compiler
    may keep them in one vector) that are then added in order. The value depends
    only on the row and its centre, never on the chunk the row is in.
    """
    cdef Py_ssize_t n = block.shape[0], d = block.shape[1], k = centers.shape[0], i
    cdef int64_t j
    if labels.shape[0] != n or out.shape[0] != n:
        raise ValueError("labels, out and block must have the same number of rows")
    if centers.shape[1] != d:
        raise ValueError(f"centers has {centers.shape[1]} columns, block has {d}")
    with nogil:
        for i in range(n):
            j = labels[i]
            if j < 0 or j >= k:
                with gil:
                    raise IndexError(f"label {j} of row {i} is outside [0, {k})")
            out[i] = _row_sq(&block[i, 0], &centers[j, 0], d)
