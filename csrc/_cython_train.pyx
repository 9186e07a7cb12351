# Contract: full-batch gradient descent for yhat = g(X W1 + b1) W2 + b2 with
# L = (1/n) sum over samples and outputs of (y - yhat)**2, p := p - lr dL/dp.
#
# Assumes validated input (src/shallownet/_validation.py): X (n, d) and Y (n, k)
# C-contiguous, finite, float32 or float64, possibly read-only; W1 (d, h),
# b1 (h,), W2 (h, k), b2 (k,) C-contiguous arrays of the same dtype; loss_curve
# float64 (epochs,). Never raises for user input (MemoryError only).
#
# train() updates the parameters in place and writes loss_curve[e] (the loss at
# the parameters epoch e starts from); it returns the number of finished
# epochs. loss_and_gradients() writes the four gradients into caller-allocated
# arrays and returns the loss. apply_activation() writes g(z) and g'(z).
#
# Design (docs/kernels.md): rows split into chunks fixed by n alone, each with
# private gradients, reduced in chunk order, so results do not depend on
# n_threads; inside a chunk, tiles of rows held feature-major (one row of the
# tile buffer per hidden unit), so every loop runs over samples, contiguous,
# whatever h is. The two d x h products go to BLAS when d * h is large.

from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport uintptr_t
from libc.math cimport isfinite
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused floating:
    float
    double

cdef extern from "_activations.h" nogil:
    # documented in the header; m and mp count samples, mp a multiple of SN_LANES
    enum: SN_LANES      # samples per block: tiles are padded to whole blocks
    const char *sn_select_isa()
    int sn_isa_level    # 0 baseline, 1 AVX2 + FMA, 2 AVX-512
    void sn_activation_d(int code, Py_ssize_t rows, Py_ssize_t cols, double *z_gprime,
                         Py_ssize_t ld_z, double *a, Py_ssize_t ld_a)
    void sn_activation_f(int code, Py_ssize_t rows, Py_ssize_t cols, float *z_gprime,
                         Py_ssize_t ld_z, float *a, Py_ssize_t ld_a)
    void sn_transpose_d(Py_ssize_t m, Py_ssize_t cols, Py_ssize_t mp, const double *src, double *dst)
    void sn_transpose_f(Py_ssize_t m, Py_ssize_t cols, Py_ssize_t mp, const float *src, float *dst)
    void sn_forward_d(Py_ssize_t d, Py_ssize_t h, Py_ssize_t mp, const double *Xt,
                      const double *W1, const double *b1, double *Zt)
    void sn_forward_f(Py_ssize_t d, Py_ssize_t h, Py_ssize_t mp, const float *Xt,
                      const float *W1, const float *b1, float *Zt)
    double sn_output_backward_d(Py_ssize_t h, Py_ssize_t k, Py_ssize_t m, Py_ssize_t mp,
                                const double *At, const double *W2, const double *b2,
                                double two_over_n, double *Yt, double *Gt, Py_ssize_t ld_g,
                                double *grad_b1, double *grad_W2, double *grad_b2)
    double sn_output_backward_f(Py_ssize_t h, Py_ssize_t k, Py_ssize_t m, Py_ssize_t mp,
                                const float *At, const float *W2, const float *b2,
                                float two_over_n, float *Yt, float *Gt, Py_ssize_t ld_g,
                                float *grad_b1, float *grad_W2, float *grad_b2)
    void sn_grad_W1_d(Py_ssize_t d, Py_ssize_t h, Py_ssize_t mp, const double *Xt,
                      const double *DZt, double *grad_W1)
    void sn_grad_W1_f(Py_ssize_t d, Py_ssize_t h, Py_ssize_t mp, const float *Xt,
                      const float *DZt, float *grad_W1)

cdef enum:
    # docs/kernels.md: chunk_rows = max(2048, ceil(n / 32))
    MIN_CHUNK_ROWS = 2048
    MAX_CHUNKS = 32
    # Small d*h: elements of one thread's tile buffers (Xt, Yt, Zt, At),
    # sized to stay in L2 (measured).
    SMALL_TILE_ELEMENTS = 32768
    MAX_SMALL_TILE_ROWS = 1024
    # Large d*h: rows per GEMM tile; long tiles pack W1 once for many rows and
    # update grad_W1 once per many rows (measured) ...
    BLAS_TILE_ROWS = 1024
    # ... while the elementwise work runs on sub-tiles that stay in L2.
    BLAS_SUB_ROWS = 128
    # d*h from which the two d x h products go to BLAS (measured).
    BLAS_MIN_DH = 4096
    ALIGN_BYTES = 64


ctypedef struct Plan:
    Py_ssize_t n, d, h, k
    Py_ssize_t chunk_rows, n_chunks
    Py_ssize_t tile_rows       # rows of a tile (of the two GEMMs, with BLAS)
    Py_ssize_t sub_rows        # rows of the elementwise work (= tile_rows without BLAS)
    Py_ssize_t n_params        # d*h + h + h*k + k: one flat gradient vector
    Py_ssize_t grad_stride     # n_params rounded up to SN_LANES
    Py_ssize_t xt_size         # X tile transposed (no BLAS only)
    Py_ssize_t yt_size         # Y sub-tile, then dL/dyhat
    Py_ssize_t zt_size         # z1 tile, then g'(z1), then dL/dz1
    Py_ssize_t at_size         # a1 sub-tile
    Py_ssize_t scratch_stride  # one thread's buffers
    Py_ssize_t n_workers       # threads of the parallel region, <= n_chunks
    int activation_code
    bint use_blas


# The instruction set the C loops run with, the best this CPU has, chosen at import.
ISA = sn_select_isa().decode()
_ISA_LEVELS = {"baseline": 0, "avx2": 1, "avx512": 2}


def _set_isa(name):
    """Tests only: run the C loops with instruction set ``name`` ("baseline",
    "avx2" or "avx512", at most ``ISA``); returns the previous one. Call it
    between fits, never while a kernel runs."""
    global sn_isa_level
    if name not in _ISA_LEVELS or _ISA_LEVELS[name] > _ISA_LEVELS[ISA]:
        raise ValueError(f"instruction set must be one of {list(_ISA_LEVELS)} up to {ISA!r}, got {name!r}")
    previous = {level: key for key, level in _ISA_LEVELS.items()}[sn_isa_level]
    sn_isa_level = _ISA_LEVELS[name]
    return previous


cdef inline Py_ssize_t _round_up(Py_ssize_t x, Py_ssize_t multiple) noexcept nogil:
    return (x + multiple - 1) // multiple * multiple


cdef Py_ssize_t TUNE_SMALL = SMALL_TILE_ELEMENTS, TUNE_SMALL_MAX = MAX_SMALL_TILE_ROWS, TUNE_BLAS_ROWS = BLAS_TILE_ROWS, TUNE_MIN_DH = BLAS_MIN_DH, TUNE_SUB = BLAS_SUB_ROWS
def _tune(small, small_max, blas_rows, min_dh, sub):  # TEMPORARY
    global TUNE_SMALL, TUNE_SMALL_MAX, TUNE_BLAS_ROWS, TUNE_MIN_DH, TUNE_SUB
    TUNE_SMALL, TUNE_SMALL_MAX, TUNE_BLAS_ROWS, TUNE_MIN_DH, TUNE_SUB = small, small_max, blas_rows, min_dh, sub


cdef Plan _make_plan(Py_ssize_t n, Py_ssize_t d, Py_ssize_t h, Py_ssize_t k,
                     int activation_code, int n_threads) noexcept:
    cdef Plan plan
    cdef Py_ssize_t rows
    plan.n, plan.d, plan.h, plan.k = n, d, h, k
    plan.activation_code = activation_code
    plan.chunk_rows = max(<Py_ssize_t> MIN_CHUNK_ROWS, (n + MAX_CHUNKS - 1) // MAX_CHUNKS)
    plan.n_chunks = (n + plan.chunk_rows - 1) // plan.chunk_rows
    plan.n_workers = max(1, min(<Py_ssize_t> n_threads, plan.n_chunks))
    plan.use_blas = d * h >= TUNE_MIN_DH
    if plan.use_blas:
        rows = TUNE_BLAS_ROWS
    else:
        rows = min(max(TUNE_SMALL // (2 * h + d + k), <Py_ssize_t> SN_LANES), TUNE_SMALL_MAX)
    # no tile longer than a chunk (small n), always whole blocks of samples
    plan.tile_rows = _round_up(min(rows, plan.chunk_rows), SN_LANES)
    plan.sub_rows = min(<Py_ssize_t> TUNE_SUB, plan.tile_rows) if plan.use_blas else plan.tile_rows
    plan.n_params = d * h + h + h * k + k
    plan.grad_stride = _round_up(plan.n_params, SN_LANES)
    plan.xt_size = 0 if plan.use_blas else d * plan.tile_rows
    plan.yt_size = k * plan.sub_rows
    plan.zt_size = h * plan.tile_rows
    plan.at_size = h * plan.sub_rows
    plan.scratch_stride = plan.xt_size + plan.yt_size + plan.zt_size + plan.at_size
    return plan


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       floating alpha, const floating *a, int lda,
                       const floating *b, int ldb, floating beta,
                       floating *c, int ldc) noexcept nogil:
    # BLAS is column-major: a row-major (r x s) array is passed as its
    # transpose, a column-major (s x r) one.
    if floating is double:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double *> a, &lda,
              <double *> b, &ldb, &beta, c, &ldc)
    else:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float *> a, &lda,
              <float *> b, &ldb, &beta, c, &ldc)


cdef inline void _activation(int code, Py_ssize_t rows, Py_ssize_t cols,
                             floating *z_gprime, Py_ssize_t ld_z,
                             floating *a, Py_ssize_t ld_a) noexcept nogil:
    if floating is double:
        sn_activation_d(code, rows, cols, z_gprime, ld_z, a, ld_a)
    else:
        sn_activation_f(code, rows, cols, z_gprime, ld_z, a, ld_a)


cdef inline void _transpose(Py_ssize_t m, Py_ssize_t cols, Py_ssize_t mp,
                            const floating *src, floating *dst) noexcept nogil:
    if floating is double:
        sn_transpose_d(m, cols, mp, src, dst)
    else:
        sn_transpose_f(m, cols, mp, src, dst)


cdef inline double _output_backward(const Plan *plan, Py_ssize_t m, Py_ssize_t mp,
                                    const floating *At, const floating *W2,
                                    const floating *b2, floating *Yt,
                                    floating *Gt, Py_ssize_t ld_g,
                                    floating *grad) noexcept nogil:
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k
    cdef floating two_over_n = <floating> (2.0 / plan.n)
    cdef floating *grad_b1 = grad + d * h
    cdef floating *grad_W2 = grad_b1 + h
    cdef floating *grad_b2 = grad_W2 + h * k
    if floating is double:
        return sn_output_backward_d(h, k, m, mp, At, W2, b2, two_over_n, Yt, Gt, ld_g,
                                    grad_b1, grad_W2, grad_b2)
    else:
        return sn_output_backward_f(h, k, m, mp, At, W2, b2, two_over_n, Yt, Gt, ld_g,
                                    grad_b1, grad_W2, grad_b2)


cdef void _tile(const Plan *plan, const floating *X, const floating *Y,
                Py_ssize_t row0, Py_ssize_t m,
                const floating *W1, const floating *b1,
                const floating *W2, const floating *b2,
                floating *scratch, floating *grad, double *loss) noexcept nogil:
    """Add the loss and gradients of rows [row0, row0 + m) to ``grad``/``loss``.

    Buffers are feature-major with row stride mp (m rounded up to SN_LANES):
    Zt[j*mp + i] is z1 of sample row0 + i, hidden unit j, so the C loops run
    over samples, contiguous, for any h (even h = 1). Padding samples i >= m
    get dL/dyhat = 0 and add exact zeros.
    """
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k
    cdef Py_ssize_t mp = _round_up(m, SN_LANES)
    cdef Py_ssize_t i, j, s, ms, msp
    cdef floating *Xt = scratch                  # (d, mp): X tile transposed (no BLAS)
    cdef floating *Yt = Xt + plan.xt_size        # (k, msp): Y, then dL/dyhat
    cdef floating *Zt = Yt + plan.yt_size        # (h, mp): z1, then g'(z1), then dL/dz1
    cdef floating *At = Zt + plan.zt_size        # (h, msp): a1
    cdef floating *grad_W1 = grad
    cdef const floating *X_tile = X + row0 * d

    if not plan.use_blas:
        _transpose(m, d, mp, X_tile, Xt)
        _transpose(m, k, mp, Y + row0 * k, Yt)
        if floating is double:
            sn_forward_d(d, h, mp, Xt, W1, b1, Zt)
        else:
            sn_forward_f(d, h, mp, Xt, W1, b1, Zt)
        _activation(plan.activation_code, 1, h * mp, Zt, 0, At, 0)
        loss[0] += _output_backward(plan, m, mp, At, W2, b2, Yt, Zt, mp, grad)
        if floating is double:
            sn_grad_W1_d(d, h, mp, Xt, Zt, grad_W1)
        else:
            sn_grad_W1_f(d, h, mp, Xt, Zt, grad_W1)
        return

    # z1 = X W1 + b1: column-major Zt is (mp x h), Zt[:m] += X_tile (m x d) @ W1 (d x h)
    for j in range(h):
        for i in range(mp):
            Zt[j * mp + i] = b1[j]
    _gemm(c'T', c'T', <int> m, <int> h, <int> d, 1, X_tile, <int> d,
          W1, <int> h, 1, Zt, <int> mp)
    # the elementwise work, on windows of Zt small enough to stay in cache
    s = 0
    while s < m:
        ms = min(plan.sub_rows, m - s)
        msp = _round_up(ms, SN_LANES)
        _transpose(ms, k, msp, Y + (row0 + s) * k, Yt)
        _activation(plan.activation_code, h, msp, Zt + s, mp, At, msp)
        loss[0] += _output_backward(plan, ms, msp, At, W2, b2, Yt, Zt + s, mp, grad)
        s += plan.sub_rows
    # grad_W1 += X^T dL/dz1: column-major grad_W1 is (h x d),
    # += dL/dz1^T (h x m) @ X_tile (m x d)
    _gemm(c'T', c'T', <int> h, <int> d, <int> m, 1, Zt, <int> mp,
          X_tile, <int> d, 1, grad_W1, <int> h)


cdef void _chunk(const Plan *plan, Py_ssize_t chunk, const floating *X, const floating *Y,
                 const floating *W1, const floating *b1,
                 const floating *W2, const floating *b2,
                 floating *scratch, floating *grad, double *loss) noexcept nogil:
    cdef Py_ssize_t row0 = chunk * plan.chunk_rows
    cdef Py_ssize_t row_end = min(row0 + plan.chunk_rows, plan.n)
    cdef Py_ssize_t i, t0
    for i in range(plan.n_params):
        grad[i] = 0
    loss[0] = 0
    t0 = row0
    while t0 < row_end:
        _tile(plan, X, Y, t0, min(plan.tile_rows, row_end - t0),
              W1, b1, W2, b2, scratch, grad, loss)
        t0 += plan.tile_rows


cdef double _loss_and_gradients(const Plan *plan, const floating *X, const floating *Y,
                                const floating *W1, const floating *b1,
                                const floating *W2, const floating *b2,
                                floating *scratch, floating *chunk_grads,
                                double *chunk_loss, floating *grad) noexcept nogil:
    """Sum of squared residuals (not yet / n); gradients into ``grad``."""
    cdef Py_ssize_t c, i
    cdef Py_ssize_t n_chunks = plan.n_chunks, stride = plan.grad_stride
    cdef double loss
    if n_chunks == 1:
        # one chunk: no parallel region, whose start-up would dominate small n
        _chunk(plan, 0, X, Y, W1, b1, W2, b2, scratch, grad, chunk_loss)
        return chunk_loss[0]
    for c in prange(n_chunks, schedule='static', num_threads=plan.n_workers):
        _chunk(plan, c, X, Y, W1, b1, W2, b2,
               scratch + threadid() * plan.scratch_stride,
               chunk_grads + c * stride, chunk_loss + c)
    # reduce in chunk order: the same sums whatever thread ran which chunk
    for i in range(plan.n_params):
        grad[i] = chunk_grads[i]
    loss = chunk_loss[0]
    for c in range(1, n_chunks):
        loss += chunk_loss[c]
        for i in range(plan.n_params):
            grad[i] += chunk_grads[c * stride + i]
    return loss


cdef class _Workspace:
    """Every buffer of one fit, allocated once, aligned to cache lines."""
    cdef void *block
    cdef char *scratch
    cdef char *chunk_grads
    cdef char *grad
    cdef double *chunk_loss

    def __cinit__(self, Py_ssize_t scratch_elems, Py_ssize_t chunk_grad_elems,
                  Py_ssize_t grad_elems, Py_ssize_t n_chunks, Py_ssize_t itemsize):
        cdef Py_ssize_t sizes[4]
        sizes[0] = _round_up(scratch_elems * itemsize, ALIGN_BYTES)
        sizes[1] = _round_up(chunk_grad_elems * itemsize, ALIGN_BYTES)
        sizes[2] = _round_up(grad_elems * itemsize, ALIGN_BYTES)
        sizes[3] = _round_up(n_chunks * sizeof(double), ALIGN_BYTES)
        self.block = malloc(sizes[0] + sizes[1] + sizes[2] + sizes[3] + ALIGN_BYTES)
        if self.block == NULL:
            raise MemoryError("shallownet: cannot allocate the Cython kernel's workspace")
        cdef char *base = <char *> _round_up(<uintptr_t> self.block, ALIGN_BYTES)
        self.scratch = base
        self.chunk_grads = base + sizes[0]
        self.grad = self.chunk_grads + sizes[1]
        self.chunk_loss = <double *> (self.grad + sizes[2])

    def __dealloc__(self):
        free(self.block)


cdef _Workspace _allocate(const Plan *plan, Py_ssize_t itemsize):
    return _Workspace(plan.n_workers * plan.scratch_stride,
                      (plan.n_chunks if plan.n_chunks > 1 else 0) * plan.grad_stride,
                      plan.grad_stride, plan.n_chunks, itemsize)


cdef void _descend(floating *param, const floating *grad, Py_ssize_t size,
                   floating learning_rate) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        param[i] -= learning_rate * grad[i]


def train(const floating[:, ::1] X, const floating[:, ::1] Y,
          floating[:, ::1] W1, floating[::1] b1, floating[:, ::1] W2, floating[::1] b2,
          int activation_code, double learning_rate, Py_ssize_t epochs, int n_threads,
          double[::1] loss_curve):
    """Run ``epochs`` gradient-descent steps in place; return the epochs finished."""
    cdef Plan plan = _make_plan(X.shape[0], X.shape[1], W1.shape[1], Y.shape[1],
                                activation_code, n_threads)
    cdef _Workspace ws = _allocate(&plan, sizeof(floating))
    cdef floating *scratch = <floating *> ws.scratch
    cdef floating *chunk_grads = <floating *> ws.chunk_grads
    cdef floating *grad = <floating *> ws.grad
    cdef floating lr = <floating> learning_rate
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k
    cdef Py_ssize_t epoch, done = epochs
    cdef double loss
    with nogil:
        for epoch in range(epochs):
            loss = _loss_and_gradients(&plan, &X[0, 0], &Y[0, 0], &W1[0, 0], &b1[0],
                                       &W2[0, 0], &b2[0], scratch, chunk_grads,
                                       ws.chunk_loss, grad) / plan.n
            loss_curve[epoch] = loss
            if not isfinite(loss):
                done = epoch
                break
            _descend(&W1[0, 0], grad, d * h, lr)
            _descend(&b1[0], grad + d * h, h, lr)
            _descend(&W2[0, 0], grad + d * h + h, h * k, lr)
            _descend(&b2[0], grad + d * h + h + h * k, k, lr)
    return done


def loss_and_gradients(const floating[:, ::1] X, const floating[:, ::1] Y,
                       const floating[:, ::1] W1, const floating[::1] b1,
                       const floating[:, ::1] W2, const floating[::1] b2,
                       floating[:, ::1] grad_W1, floating[::1] grad_b1,
                       floating[:, ::1] grad_W2, floating[::1] grad_b2,
                       int activation_code, int n_threads):
    """Write dL/dW1, dL/db1, dL/dW2, dL/db2 into the grad_* arrays; return L."""
    cdef Plan plan = _make_plan(X.shape[0], X.shape[1], W1.shape[1], Y.shape[1],
                                activation_code, n_threads)
    cdef _Workspace ws = _allocate(&plan, sizeof(floating))
    cdef floating *grad = <floating *> ws.grad
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k, i
    cdef double loss
    with nogil:
        loss = _loss_and_gradients(&plan, &X[0, 0], &Y[0, 0], &W1[0, 0], &b1[0],
                                   &W2[0, 0], &b2[0], <floating *> ws.scratch,
                                   <floating *> ws.chunk_grads, ws.chunk_loss, grad) / plan.n
        for i in range(d * h):
            (&grad_W1[0, 0])[i] = grad[i]
        for i in range(h):
            grad_b1[i] = grad[d * h + i]
        for i in range(h * k):
            (&grad_W2[0, 0])[i] = grad[d * h + h + i]
        for i in range(k):
            grad_b2[i] = grad[d * h + h + h * k + i]
    return loss


def apply_activation(floating[::1] z_gprime, floating[::1] a, int activation_code):
    """a := g(z), z_gprime := g'(z) in place (z_gprime holds z on entry)."""
    with nogil:
        _activation(activation_code, 1, z_gprime.shape[0], &z_gprime[0], 0, &a[0], 0)
