# Contract (src/shallownet/backends/__init__.py, docs/training.md): train the
# net yhat = g(X W1 + b1) W2 + b2 on L_B = sum_B w_i (y_i - yhat_i)**2 / W_B +
# alpha (|W1|^2 + |W2|^2) / W_B, W_B = sum_B w_i, for a block of epochs, each a
# walk over the rows (in order, or in a given order per epoch) in batches of
# batch_size consecutive rows, one optimizer step (SGD, momentum, Nesterov or
# Adam) per batch with a positive weight sum. The NumPy reference
# (src/shallownet/backends/numpy.py) is the definition of correct; the
# updates take the reference's operations in its order, so they agree to
# rounding.
#
# Assumes validated input (src/shallownet/_validation.py): X (n, d) and Y (n, k)
# C-contiguous, finite, float32 or float64, possibly read-only; sample_weight
# (n,) finite, non-negative, positive sum; W1 (d, h), b1 (h,), W2 (h, k),
# b2 (k,) and the optimizer moments C-contiguous arrays of the same dtype; t an
# int64 (1,) step counter; orders int64 (epochs, m), each row m <= n distinct
# rows of X; losses float64. Never raises for user input (MemoryError only).
#
# open_run() sets up a Run once per fit (plan, workspace, pointers); each call
# of the Run trains a block of epochs, updates the parameters and the
# optimizer state in place and writes losses[start + e] (the weighted mean of
# the epoch's batch losses, each at the parameters before its step); it
# returns the number of finished epochs.
# loss_and_gradients() writes the four gradients into caller-allocated arrays
# and returns the loss. apply_activation() writes g(z) and g'(z).
#
# Design (docs/kernels.md): the rows of a batch split into chunks fixed by the
# batch's row count alone, each with private gradients, reduced in chunk
# order, so results do not depend on n_threads (a batch of one chunk, such as
# every minibatch of a few hundred rows, runs serially on the calling
# thread). The chunks of a batch are shared by the extension's own thread
# pool (csrc/_pool.h: claimed dynamically, the caller included; workers
# sleep when idle; a forked child starts fresh workers). Inside a chunk,
# tiles of rows held feature-major (one row of the tile buffer per hidden
# unit), so every loop runs over samples, contiguous, whatever h is. The two d x h products go to BLAS when d * h is large.
# Shuffled batches are gathered into buffers allocated once per fit; batches
# in order are slices of X and Y. The whole block of epochs runs with the GIL
# released.

import threading

from libc.stdlib cimport malloc, free
from libc.stdint cimport uintptr_t, int64_t
from libc.math cimport isfinite, pow, sqrt
from scipy.linalg.cython_blas cimport dgemm, sgemm

ctypedef fused floating:
    float
    double

cdef extern from "_activations.h" nogil:
    # documented in the header; m and mp count samples, mp a multiple of SN_LANES
    enum: SN_LANES      # samples per block: tiles are padded to whole blocks
    enum: SN_GATHER_AHEAD   # a gather prefetches the row this many places ahead
    enum: SN_PREFETCH_PARAMS_BYTES  # parameters up to this size are prefetched a chunk
    const char *sn_select_isa()
    void sn_prefetch_span(const void *p, Py_ssize_t nbytes)
    void sn_prefetch_rows(const int64_t *order, Py_ssize_t rows, const void *base,
                          Py_ssize_t row_bytes)
    void sn_activation_d(int code, Py_ssize_t rows, Py_ssize_t cols, double *z_gprime,
                         Py_ssize_t ld_z, double *a, Py_ssize_t ld_a)
    void sn_activation_f(int code, Py_ssize_t rows, Py_ssize_t cols, float *z_gprime,
                         Py_ssize_t ld_z, float *a, Py_ssize_t ld_a)
    void sn_gather_transpose_d(Py_ssize_t m, Py_ssize_t cols, Py_ssize_t mp, const double *src,
                               const int64_t *order, double *dst)
    void sn_gather_transpose_f(Py_ssize_t m, Py_ssize_t cols, Py_ssize_t mp, const float *src,
                               const int64_t *order, float *dst)
    int sn_forward_d(Py_ssize_t d, Py_ssize_t h, Py_ssize_t m, Py_ssize_t mp, int code,
                     const double *Xt, const double *W1, const double *b1, double *Zt,
                     double *At)
    int sn_forward_f(Py_ssize_t d, Py_ssize_t h, Py_ssize_t m, Py_ssize_t mp, int code,
                     const float *Xt, const float *W1, const float *b1, float *Zt, float *At)
    double sn_output_backward_d(Py_ssize_t h, Py_ssize_t k, Py_ssize_t m, Py_ssize_t mp,
                                const double *At, const double *W2, const double *b2,
                                double two_over_w, const double *Wt, double *Yt,
                                int gprime_code, double *Gt, Py_ssize_t ld_g,
                                double *grad_b1, double *grad_W2, double *grad_b2)
    double sn_output_backward_f(Py_ssize_t h, Py_ssize_t k, Py_ssize_t m, Py_ssize_t mp,
                                const float *At, const float *W2, const float *b2,
                                float two_over_w, const float *Wt, float *Yt,
                                int gprime_code, float *Gt, Py_ssize_t ld_g,
                                float *grad_b1, float *grad_W2, float *grad_b2)
    void sn_grad_W1_d(Py_ssize_t d, Py_ssize_t h, Py_ssize_t m, Py_ssize_t mp,
                      const double *Xt, const double *DZt, double *grad_W1)
    void sn_grad_W1_f(Py_ssize_t d, Py_ssize_t h, Py_ssize_t m, Py_ssize_t mp,
                      const float *Xt, const float *DZt, float *grad_W1)
    void sn_adam_d(Py_ssize_t size, double *p, const double *g, double *m, double *v,
                   double lr, double beta1, double c1, double beta2, double c2,
                   double bias1, double bias2, double eps)
    void sn_adam_f(Py_ssize_t size, float *p, const float *g, float *m, float *v,
                   float lr, float beta1, float c1, float beta2, float c2,
                   float bias1, float bias2, float eps)
    void sn_adam_eps_first_d(Py_ssize_t size, double *p, const double *g, double *m,
                             double *v, double step, double beta1, double c1, double beta2,
                             double c2, double eps)
    void sn_adam_eps_first_f(Py_ssize_t size, float *p, const float *g, float *m, float *v,
                             double step, float beta1, float c1, float beta2, float c2,
                             float eps)

cdef extern from "_pool.h" nogil:
    # documented in the header: fn(arg, chunk, thread) for every chunk, the
    # calling thread included (thread 0), with dynamic claiming
    ctypedef void (*sn_chunk_fn)(void *arg, Py_ssize_t chunk, int thread) noexcept nogil
    ctypedef struct sn_pool:
        int n_threads
    void sn_pool_init(sn_pool *pool, int n_threads)
    void sn_pool_destroy(sn_pool *pool)
    void sn_pool_run(sn_pool *pool, sn_chunk_fn fn, void *arg, Py_ssize_t n_chunks)

cdef enum:
    # optimizer codes of shallownet._training
    SGD = 0
    ADAM = 1
    # docs/kernels.md ("Threshold"): a batch of n rows splits into n_chunks =
    # the largest power of two <= min(32, n // min_rows) chunks of
    # ceil(n / n_chunks) rows rounded up to CHUNK_ROW_MULTIPLE (powers of
    # two share out evenly over 2, 4, ... threads). A chunk must hold enough
    # work to pay for handing it to another thread: min_rows = 2048 with
    # BLAS (tall GEMM tiles), else CHUNK_WORK // (h (d + k)) rows, at least
    # MIN_CHUNK_ROWS: Adam's 200-row batches split in two from d = 10,
    # h = 100 (measured in docs/kernels.md, "Threshold"); with another
    # process on one core the pool's trials keep such batches on the caller
    # (csrc/_pool.h), level with one thread.
    MAX_CHUNKS = 32
    BLAS_MIN_CHUNK_ROWS = 2048
    CHUNK_WORK = 1 << 16
    # ... and at least two blocks of samples: each chunk also pays its own
    # gradient slot and lane sums (four 1-2 block chunks of a 200-row batch
    # at (20000, 20), h = 100 were slower than two: docs/kernels.md)
    MIN_CHUNK_ROWS = 64
    # chunk lengths are multiples of this many rows (the doubles of an
    # AVX-512 register): the loops stop at a chunk's last register, so its
    # padding is under a register, not up to 15 rows (docs/kernels.md)
    CHUNK_ROW_MULTIPLE = 8
    # Small d*h: elements of one thread's tile buffers (Xt, Yt, Zt, At),
    # sized to stay in L2 (measured).
    SMALL_TILE_ELEMENTS = 32768
    MAX_SMALL_TILE_ROWS = 1024
    # Large d*h: at most this many rows per GEMM tile; long tiles pack W1 once
    # for many rows and update grad_W1 once per many rows. At
    # (20000, 784, 256) (chunks of 2500 rows) 2048 (two tiles of 1250) beat
    # 1024 (three of 834) by 1-3% in three interleaved pairs of runs.
    BLAS_TILE_ROWS = 2048
    # ... while the elementwise work runs on sub-tiles that stay in L2.
    BLAS_SUB_ROWS = 128
    # Chunks of at least this many rows (with BLAS) accumulate dL/dW1
    # transposed (h x d), as X_tile^T dL/dz1 with neither operand transposed,
    # which OpenBLAS packs with cheaper copies: single-threaded on 2048-row
    # tiles at (20000, 784, 256) that product ran at 96.0% of a square
    # DGEMM's rate against 91.6% (docs/kernels.md). The reduction of the
    # chunks transposes it back; below this many rows a batch is too short
    # for that reduction to pay.
    TRANSPOSED_W1_MIN_ROWS = 2048
    # square blocks of that transposing reduction
    TRANSPOSE_BLOCK = 32
    # d*h from which the two d x h products go to BLAS (measured).
    BLAS_MIN_DH = 4096
    ALIGN_BYTES = 64


ctypedef struct Plan:
    # the current batch (_set_rows)
    Py_ssize_t n               # rows of the batch
    Py_ssize_t chunk_rows, n_chunks
    Py_ssize_t tile_rows       # rows of a tile (of the two GEMMs, with BLAS)
    Py_ssize_t sub_rows        # rows of the elementwise work (= tile_rows without BLAS)
    bint transposed_W1         # the chunks accumulate dL/dW1 transposed (h x d)
    double two_over_w          # 2 / (the batch's weight sum)
    # fixed for a call, buffers sized for its largest batch
    Py_ssize_t d, h, k
    Py_ssize_t max_chunks      # chunks of the largest batch
    Py_ssize_t min_chunk_rows  # no more chunks than rows // min_chunk_rows
    Py_ssize_t max_tile_rows   # the tile length cap, before it meets a chunk
    Py_ssize_t n_params        # d*h + h + h*k + k: one flat gradient vector
    Py_ssize_t grad_stride     # n_params rounded up to SN_LANES
    Py_ssize_t xt_size         # X tile transposed (no BLAS only)
    Py_ssize_t yt_size         # Y sub-tile, then dL/dyhat
    Py_ssize_t zt_size         # z1 tile, then g'(z1), then dL/dz1
    Py_ssize_t at_size         # a1 sub-tile
    Py_ssize_t wt_size         # sample weights of a sub-tile
    Py_ssize_t scratch_stride  # one thread's buffers
    Py_ssize_t n_workers       # threads of the parallel region, <= max_chunks
    int activation_code
    bint use_blas


# The instruction set the C loops run with, chosen once for this CPU at import.
ISA = sn_select_isa().decode()
# d*h from which the two d x h products go to BLAS (below, the C loops do them)
BLAS_FROM_DH = BLAS_MIN_DH


cdef inline Py_ssize_t _round_up(Py_ssize_t x, Py_ssize_t multiple) noexcept nogil:
    return (x + multiple - 1) // multiple * multiple


cdef inline Py_ssize_t _sub_rows(const Plan *plan) noexcept nogil:
    """Rows of the elementwise work within a tile of plan.tile_rows rows."""
    return min(<Py_ssize_t> BLAS_SUB_ROWS, plan.tile_rows) if plan.use_blas else plan.tile_rows


cdef inline Py_ssize_t _max_chunks(const Plan *plan, Py_ssize_t n) noexcept nogil:
    """The largest power of two <= min(MAX_CHUNKS, n // min_chunk_rows): the
    chunks of a batch of n rows before rounding (which may leave fewer)."""
    cdef Py_ssize_t chunks = min(n // plan.min_chunk_rows, <Py_ssize_t> MAX_CHUNKS)
    cdef Py_ssize_t power = 1
    while 2 * power <= chunks:
        power *= 2
    return power


cdef void _set_rows(Plan *plan, Py_ssize_t n) noexcept nogil:
    """Chunks and tiles of a batch of n rows: fixed by n and the shapes alone.

    n_chunks is at most the power of two of the largest batch
    (_max_chunks) and no tile is longer than max_tile_rows, so a plan made
    for the largest batch of a call has buffers for each of its batches."""
    cdef Py_ssize_t tiles
    plan.n = n
    plan.n_chunks = _max_chunks(plan, n)
    plan.chunk_rows = (n + plan.n_chunks - 1) // plan.n_chunks
    if plan.n_chunks > 1:
        # whole registers of samples (the kernels stop at the last register
        # holding a sample): chunks as even as that allows, 104 and 96 rows
        # of a 200-row batch, where whole blocks made 112 and 88
        plan.chunk_rows = _round_up(plan.chunk_rows, CHUNK_ROW_MULTIPLE)
    plan.n_chunks = (n + plan.chunk_rows - 1) // plan.chunk_rows
    # tiles of equal length (no short last tile), at most max_tile_rows and
    # no longer than a chunk (small n), always whole blocks of samples
    tiles = (plan.chunk_rows + plan.max_tile_rows - 1) // plan.max_tile_rows
    plan.tile_rows = _round_up((plan.chunk_rows + tiles - 1) // tiles, SN_LANES)
    plan.sub_rows = _sub_rows(plan)
    plan.transposed_W1 = plan.use_blas and plan.chunk_rows >= TRANSPOSED_W1_MIN_ROWS


cdef Plan _make_plan(Py_ssize_t max_rows, Py_ssize_t d, Py_ssize_t h, Py_ssize_t k,
                     int activation_code, int n_threads) noexcept:
    """The plan of a call whose batches have at most max_rows rows."""
    cdef Plan plan
    plan.d, plan.h, plan.k = d, h, k
    plan.activation_code = activation_code
    plan.use_blas = d * h >= BLAS_MIN_DH
    if plan.use_blas:
        plan.min_chunk_rows = BLAS_MIN_CHUNK_ROWS
        plan.max_tile_rows = BLAS_TILE_ROWS
    else:
        plan.min_chunk_rows = _round_up(
            max(<Py_ssize_t> CHUNK_WORK // (h * (d + k)), <Py_ssize_t> MIN_CHUNK_ROWS), SN_LANES)
        plan.max_tile_rows = min(max(SMALL_TILE_ELEMENTS // (2 * h + d + k), <Py_ssize_t> SN_LANES),
                                 <Py_ssize_t> MAX_SMALL_TILE_ROWS)
    _set_rows(&plan, max_rows)
    # buffers for the longest tile of any batch of at most max_rows rows
    plan.tile_rows = _round_up(min(plan.max_tile_rows, max_rows), SN_LANES)
    plan.sub_rows = _sub_rows(&plan)
    plan.two_over_w = 2.0 / max_rows
    # a bound for every batch of at most max_rows rows (rounding the chunks
    # up may leave the largest batch fewer than a smaller one)
    plan.max_chunks = _max_chunks(&plan, max_rows)
    plan.n_workers = max(1, min(<Py_ssize_t> n_threads, plan.max_chunks))
    plan.n_params = d * h + h + h * k + k
    plan.grad_stride = _round_up(plan.n_params, SN_LANES)
    plan.xt_size = 0 if plan.use_blas else d * plan.tile_rows
    plan.yt_size = k * plan.sub_rows
    plan.zt_size = h * plan.tile_rows
    plan.at_size = h * plan.sub_rows
    plan.wt_size = plan.sub_rows
    plan.scratch_stride = (plan.xt_size + plan.yt_size + plan.zt_size + plan.at_size
                           + plan.wt_size)
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
                            const floating *src, const int64_t *order,
                            floating *dst) noexcept nogil:
    """dst (cols x mp) = src[order]^T (order NULL: the first m rows), zero-padded."""
    if floating is double:
        sn_gather_transpose_d(m, cols, mp, src, order, dst)
    else:
        sn_gather_transpose_f(m, cols, mp, src, order, dst)


cdef inline double _output_backward(const Plan *plan, Py_ssize_t m, Py_ssize_t mp,
                                    const floating *At, const floating *W2,
                                    const floating *b2, const floating *Wt, floating *Yt,
                                    int gprime_code, floating *Gt, Py_ssize_t ld_g,
                                    floating *grad) noexcept nogil:
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k
    # the reference's dtype(2 / W_B), rounded once
    cdef floating two_over_w = <floating> plan.two_over_w
    cdef floating *grad_b1 = grad + d * h
    cdef floating *grad_W2 = grad_b1 + h
    cdef floating *grad_b2 = grad_W2 + h * k
    if floating is double:
        return sn_output_backward_d(h, k, m, mp, At, W2, b2, two_over_w, Wt, Yt, gprime_code,
                                    Gt, ld_g, grad_b1, grad_W2, grad_b2)
    else:
        return sn_output_backward_f(h, k, m, mp, At, W2, b2, two_over_w, Wt, Yt, gprime_code,
                                    Gt, ld_g, grad_b1, grad_W2, grad_b2)


cdef inline void _weights_tile(Py_ssize_t m, Py_ssize_t mp, const floating *w,
                               floating *Wt) noexcept nogil:
    """Wt = the m weights from w, zero-padded to mp."""
    cdef Py_ssize_t i
    for i in range(m):
        Wt[i] = w[i]
    for i in range(m, mp):
        Wt[i] = 0


ctypedef struct Rows:
    # where a batch's rows come from: NULL order for a batch that is a slice
    # of X, Y and w; else the batch's rows of the full arrays X, Y, w (typed
    # as the call's floating type), which each chunk gathers into the
    # batch buffers
    const int64_t *order
    const int64_t *next_order  # the next batch's rows, to prefetch
    Py_ssize_t next_rows       # 0: no next batch
    const void *X
    const void *Y
    const void *w


cdef inline void _prefetch(const int64_t *order, Py_ssize_t rows, Py_ssize_t d, Py_ssize_t k,
                           const floating *X, const floating *Y, const floating *w,
                           bint unit_weights) noexcept nogil:
    sn_prefetch_rows(order, rows, X, d * sizeof(floating))
    sn_prefetch_rows(order, rows, Y, k * sizeof(floating))
    if not unit_weights:
        sn_prefetch_rows(order, rows, w, sizeof(floating))


cdef void _gather_rows(Py_ssize_t row0, Py_ssize_t row_end, const Rows *src, Py_ssize_t d,
                       Py_ssize_t k, const floating *X, const floating *Y, const floating *w,
                       floating *Xb, floating *Yb, floating *wb) noexcept nogil:
    """Copy the rows src.order[row0:row_end] of X, Y (and w, unless wb is
    NULL) into rows row0:row_end of Xb, Yb (and wb)."""
    cdef Py_ssize_t i, j, r
    cdef const int64_t *order = src.order
    for i in range(row0, row_end):
        r = order[i]
        if i + SN_GATHER_AHEAD < row_end:
            sn_prefetch_rows(order + i + SN_GATHER_AHEAD, 1, X, d * sizeof(floating))
        for j in range(d):
            Xb[i * d + j] = X[r * d + j]
        for j in range(k):
            Yb[i * k + j] = Y[r * k + j]
    _gather_weights(row0, row_end, order, w, wb)


cdef inline void _gather_weights(Py_ssize_t row0, Py_ssize_t row_end, const int64_t *order,
                                 const floating *w, floating *wb) noexcept nogil:
    """wb[row0:row_end] = w[order[row0:row_end]] (nothing if wb is NULL)."""
    cdef Py_ssize_t i
    if wb != NULL:
        for i in range(row0, row_end):
            wb[i] = w[order[i]]


cdef void _tile(const Plan *plan, const floating *X, const floating *Y,
                const floating *w, const Rows *src, Py_ssize_t row0, Py_ssize_t m,
                const floating *W1, const floating *b1,
                const floating *W2, const floating *b2,
                floating *scratch, floating *grad, double *loss) noexcept nogil:
    """Add the loss and gradients of rows [row0, row0 + m) to ``grad``/``loss``.

    Buffers are feature-major with row stride mp (m rounded up to SN_LANES):
    Zt[j*mp + i] is z1 of sample row0 + i, hidden unit j, so the C loops run
    over samples, contiguous, for any h (even h = 1). Padding samples i >= m
    get dL/dyhat = 0 and add exact zeros. ``w`` holds the rows' sample
    weights, or is NULL for unit weights. With src.order set (a shuffled
    batch) the explicit loops take the tile's rows of X and Y from src,
    gathered as they are transposed (X and Y are then not read).
    """
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k
    cdef Py_ssize_t mp = _round_up(m, SN_LANES)
    cdef Py_ssize_t i, j, s, ms, msp
    cdef int gprime_code
    cdef floating *Xt = scratch                  # (d, mp): X tile transposed (no BLAS)
    cdef floating *Yt = Xt + plan.xt_size        # (k, msp): Y, then dL/dyhat
    cdef floating *Zt = Yt + plan.yt_size        # (h, mp): z1, then g'(z1), then dL/dz1
    cdef floating *At = Zt + plan.zt_size        # (h, msp): a1
    cdef floating *Wt = At + plan.at_size        # (msp,): sample weights, or unused
    cdef const floating *Wt_or_unit = NULL
    cdef floating *grad_W1 = grad
    cdef const floating *X_tile = X + row0 * d

    if not plan.use_blas:
        if src.order != NULL:
            _transpose(m, d, mp, <const floating *> src.X, src.order + row0, Xt)
            _transpose(m, k, mp, <const floating *> src.Y, src.order + row0, Yt)
        else:
            _transpose(m, d, mp, X_tile, NULL, Xt)
            _transpose(m, k, mp, Y + row0 * k, NULL, Yt)
        # z1, then a1 into At block by block while in registers or L1, and
        # g'(z1) into Zt unless the output side takes it from At (gprime_code)
        if floating is double:
            gprime_code = sn_forward_d(d, h, m, mp, plan.activation_code, Xt, W1, b1, Zt, At)
        else:
            gprime_code = sn_forward_f(d, h, m, mp, plan.activation_code, Xt, W1, b1, Zt, At)
        if m != mp:
            # a short tile (a minibatch of 200 rows pads to 208): the padding
            # gets At = 0 and a finite g' (0, or g'(0) taken from At), which
            # dL/dyhat = 0 turns into exact zeros
            for j in range(h):
                for i in range(m, mp):
                    At[j * mp + i] = 0
                    Zt[j * mp + i] = 0
        if w != NULL:
            _weights_tile(m, mp, w + row0, Wt)
            Wt_or_unit = Wt
        loss[0] += _output_backward(plan, m, mp, At, W2, b2, Wt_or_unit, Yt, gprime_code, Zt,
                                    mp, grad)
        if floating is double:
            sn_grad_W1_d(d, h, m, mp, Xt, Zt, grad_W1)
        else:
            sn_grad_W1_f(d, h, m, mp, Xt, Zt, grad_W1)
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
        _transpose(ms, k, msp, Y + (row0 + s) * k, NULL, Yt)
        _activation(plan.activation_code, h, msp, Zt + s, mp, At, msp)
        if w != NULL:
            _weights_tile(ms, msp, w + row0 + s, Wt)
            Wt_or_unit = Wt
        loss[0] += _output_backward(plan, ms, msp, At, W2, b2, Wt_or_unit, Yt, -1, Zt + s, mp,
                                    grad)
        s += plan.sub_rows
    if plan.transposed_W1:
        # grad_W1 holds (X^T dL/dz1)^T (h x d): column-major it is (d x h),
        # += X_tile^T (d x m) @ dL/dz1 (m x h), neither operand transposed
        _gemm(c'N', c'N', <int> d, <int> h, <int> m, 1, X_tile, <int> d,
              Zt, <int> mp, 1, grad_W1, <int> d)
    else:
        # grad_W1 += X^T dL/dz1: column-major grad_W1 is (h x d),
        # += dL/dz1^T (h x m) @ X_tile (m x d)
        _gemm(c'T', c'T', <int> h, <int> d, <int> m, 1, Zt, <int> mp,
              X_tile, <int> d, 1, grad_W1, <int> h)


cdef void _chunk(const Plan *plan, Py_ssize_t chunk, const floating *X, const floating *Y,
                 const floating *w, const Rows *src, const floating *W1, const floating *b1,
                 const floating *W2, const floating *b2,
                 floating *scratch, floating *grad, double *loss) noexcept nogil:
    cdef Py_ssize_t row0 = chunk * plan.chunk_rows
    cdef Py_ssize_t row_end = min(row0 + plan.chunk_rows, plan.n)
    cdef Py_ssize_t i, t0
    if not plan.use_blas and plan.n_params * sizeof(floating) <= SN_PREFETCH_PARAMS_BYTES:
        # the parameters all at once: on two threads the other core's step
        # wrote half of them (docs/kernels.md, "Threads")
        sn_prefetch_span(W1, plan.d * plan.h * sizeof(floating))
        sn_prefetch_span(b1, plan.h * sizeof(floating))
        sn_prefetch_span(W2, plan.h * plan.k * sizeof(floating))
    if src.order != NULL:
        # a shuffled batch: this chunk gathers its own rows (in parallel with
        # the other chunks), then starts the same rows of the next batch on
        # their way into cache. The explicit loops' tiles gather X and Y
        # themselves, straight into their transposed layout (_tile): one
        # read of each row and no copy
        if plan.use_blas:
            _gather_rows(row0, row_end, src, plan.d, plan.k, <const floating *> src.X,
                         <const floating *> src.Y, <const floating *> src.w,
                         <floating *> X, <floating *> Y, <floating *> w)
        else:
            _gather_weights(row0, row_end, src.order, <const floating *> src.w,
                            <floating *> w)
        _prefetch(src.next_order + row0, max(0, min(row_end, src.next_rows) - row0),
                  plan.d, plan.k, <const floating *> src.X, <const floating *> src.Y,
                  <const floating *> src.w, w == NULL)
    for i in range(plan.n_params):
        grad[i] = 0
    loss[0] = 0
    t0 = row0
    while t0 < row_end:
        _tile(plan, X, Y, w, src, t0, min(plan.tile_rows, row_end - t0),
              W1, b1, W2, b2, scratch, grad, loss)
        t0 += plan.tile_rows


ctypedef struct ChunkJob:
    # the arguments of _chunk for every chunk of one batch, typed as the
    # call's floating type
    const Plan *plan
    const Rows *src
    const void *X
    const void *Y
    const void *w
    const void *W1
    const void *b1
    const void *W2
    const void *b2
    void *scratch
    void *chunk_grads
    double *chunk_loss


cdef void _chunk_task_d(void *arg, Py_ssize_t c, int thread) noexcept nogil:
    cdef ChunkJob *j = <ChunkJob *> arg
    _chunk(j.plan, c, <const double *> j.X, <const double *> j.Y, <const double *> j.w,
           j.src, <const double *> j.W1, <const double *> j.b1, <const double *> j.W2,
           <const double *> j.b2, <double *> j.scratch + thread * j.plan.scratch_stride,
           <double *> j.chunk_grads + c * j.plan.grad_stride, j.chunk_loss + c)


cdef void _chunk_task_f(void *arg, Py_ssize_t c, int thread) noexcept nogil:
    cdef ChunkJob *j = <ChunkJob *> arg
    _chunk(j.plan, c, <const float *> j.X, <const float *> j.Y, <const float *> j.w,
           j.src, <const float *> j.W1, <const float *> j.b1, <const float *> j.W2,
           <const float *> j.b2, <float *> j.scratch + thread * j.plan.scratch_stride,
           <float *> j.chunk_grads + c * j.plan.grad_stride, j.chunk_loss + c)


cdef inline bint _reduced_in_chunks(const Plan *plan) noexcept nogil:
    """Whether _run_chunks leaves the gradients in the chunks' slots, for a
    reduction (else a single chunk wrote them into ``grad`` itself)."""
    return plan.n_chunks > 1 or plan.transposed_W1


cdef double _run_chunks(const Plan *plan, sn_pool *pool, const floating *X,
                        const floating *Y, const floating *w, const Rows *src,
                        const floating *W1, const floating *b1,
                        const floating *W2, const floating *b2,
                        floating *scratch, floating *chunk_grads,
                        double *chunk_loss, floating *grad) noexcept nogil:
    """Over the plan.n rows of X, Y (weights w, NULL for unit weights): the
    weighted sum of squared residuals (not yet / W_B, no penalty), and the
    gradients of the data term (with dL/dyhat = (2 w_i / W_B) R_i) into the
    chunks' slots (``_reduced_in_chunks``) or, for one chunk, into ``grad``.
    With src.order set, X, Y and w are the batch buffers the chunks gather into."""
    cdef Py_ssize_t c
    cdef double loss
    cdef ChunkJob job
    if plan.n_chunks == 1:
        # one chunk: no parallel region, whose start-up would dominate small n
        _chunk(plan, 0, X, Y, w, src, W1, b1, W2, b2, scratch,
               chunk_grads if plan.transposed_W1 else grad, chunk_loss)
        return chunk_loss[0]
    job.plan, job.src = plan, src
    job.X, job.Y, job.w = X, Y, w
    job.W1, job.b1, job.W2, job.b2 = W1, b1, W2, b2
    job.scratch, job.chunk_grads, job.chunk_loss = scratch, chunk_grads, chunk_loss
    if floating is double:
        sn_pool_run(pool, _chunk_task_d, &job, plan.n_chunks)
    else:
        sn_pool_run(pool, _chunk_task_f, &job, plan.n_chunks)
    loss = chunk_loss[0]
    for c in range(1, plan.n_chunks):
        loss += chunk_loss[c]
    return loss


cdef void _reduce_range(const Plan *plan, const floating *chunk_grads, floating *grad,
                        Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """grad[lo:hi] = the chunks' gradients summed in chunk order: the same
    sums whatever thread ran which chunk, or which reduced which range."""
    cdef Py_ssize_t c, i, stride = plan.grad_stride
    for i in range(lo, hi):
        grad[i] = chunk_grads[i]
    for c in range(1, plan.n_chunks):
        for i in range(lo, hi):
            grad[i] += chunk_grads[c * stride + i]


cdef void _reduce(const Plan *plan, const floating *chunk_grads,
                  floating *grad) noexcept nogil:
    """The chunks' gradients into ``grad`` (after _run_chunks, where
    _reduced_in_chunks)."""
    cdef Py_ssize_t first = 0
    if plan.transposed_W1:
        _reduce_transposed(plan.d, plan.h, plan.n_chunks, plan.grad_stride, chunk_grads, grad)
        first = plan.d * plan.h
    _reduce_range(plan, chunk_grads, grad, first, plan.n_params)


cdef void _reduce_transposed(Py_ssize_t d, Py_ssize_t h, Py_ssize_t n_chunks,
                             Py_ssize_t stride, const floating *chunk_grads,
                             floating *grad) noexcept nogil:
    """grad[:d*h] (d x h) = the sum, in chunk order, of the chunks' first
    d*h entries, each (dL/dW1)^T (h x d); by square blocks, so that the
    strided reads stay in cache."""
    cdef Py_ssize_t a0 = 0, b0, a, b, c, a_end, b_end
    cdef const floating *part
    while a0 < d:
        a_end = min(a0 + <Py_ssize_t> TRANSPOSE_BLOCK, d)
        b0 = 0
        while b0 < h:
            b_end = min(b0 + <Py_ssize_t> TRANSPOSE_BLOCK, h)
            for a in range(a0, a_end):
                for b in range(b0, b_end):
                    grad[a * h + b] = chunk_grads[b * d + a]
            for c in range(1, n_chunks):
                part = chunk_grads + c * stride
                for a in range(a0, a_end):
                    for b in range(b0, b_end):
                        grad[a * h + b] += part[b * d + a]
            b0 = b_end
        a0 = a_end


cdef class _Workspace:
    """Every buffer of one call, allocated once, aligned to cache lines."""
    cdef void *block
    cdef char *scratch
    cdef char *chunk_grads
    cdef char *grad
    cdef char *gathered     # shuffled batch: X rows, Y rows, weights
    cdef double *chunk_loss
    cdef sn_pool pool       # the threads that share the chunks, one scratch each
    cdef Py_ssize_t capacity[6]   # the sizes it was made for (_workspace_sizes)
    cdef int n_threads

    def __cinit__(self, Py_ssize_t scratch_elems, Py_ssize_t chunk_grad_elems,
                  Py_ssize_t grad_elems, Py_ssize_t gather_elems, Py_ssize_t n_chunks,
                  Py_ssize_t itemsize, int n_threads):
        cdef Py_ssize_t sizes[5]
        self.capacity = [scratch_elems, chunk_grad_elems, grad_elems, gather_elems, n_chunks,
                         itemsize]
        self.n_threads = n_threads
        # the workers start on the first batch of more than one chunk
        sn_pool_init(&self.pool, n_threads)
        sizes[0] = _round_up(scratch_elems * itemsize, ALIGN_BYTES)
        sizes[1] = _round_up(chunk_grad_elems * itemsize, ALIGN_BYTES)
        sizes[2] = _round_up(grad_elems * itemsize, ALIGN_BYTES)
        sizes[3] = _round_up(gather_elems * itemsize, ALIGN_BYTES)
        sizes[4] = _round_up(n_chunks * sizeof(double), ALIGN_BYTES)
        self.block = malloc(sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4] + ALIGN_BYTES)
        if self.block == NULL:
            raise MemoryError("shallownet: cannot allocate the Cython kernel's workspace")
        cdef char *base = <char *> _round_up(<uintptr_t> self.block, ALIGN_BYTES)
        self.scratch = base
        self.chunk_grads = base + sizes[0]
        self.grad = self.chunk_grads + sizes[1]
        self.gathered = self.grad + sizes[2]
        self.chunk_loss = <double *> (self.gathered + sizes[3])

    def __dealloc__(self):
        with nogil:
            sn_pool_destroy(&self.pool)
        free(self.block)


cdef void _workspace_sizes(const Plan *plan, Py_ssize_t gather_rows, Py_ssize_t itemsize,
                           Py_ssize_t *sizes) noexcept:
    """The _Workspace arguments of a plan: elements of scratch, chunk
    gradients, gradient and gathered rows, chunks, itemsize."""
    sizes[0] = plan.n_workers * plan.scratch_stride
    # one chunk's too when it may accumulate dL/dW1 transposed
    sizes[1] = (plan.max_chunks if plan.max_chunks > 1 or plan.use_blas else 0) * plan.grad_stride
    sizes[2] = plan.grad_stride
    sizes[3] = gather_rows * (plan.d + plan.k + 1)
    sizes[4] = plan.max_chunks
    sizes[5] = itemsize


cdef _Workspace _allocate(const Plan *plan, Py_ssize_t gather_rows, Py_ssize_t itemsize):
    cdef Py_ssize_t sizes[6]
    _workspace_sizes(plan, gather_rows, itemsize, sizes)
    return _Workspace(sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5],
                      <int> plan.n_workers)


# loss_and_gradients keeps its last workspace (buffers and the pool's
# threads) per Python thread for the next call that fits in it, where a new
# one per call cost its allocation and, on a call of several chunks, a
# thread start: at (442, 10, 100) on two threads ~50 us of a ~110 us call
# (docs/kernels.md). Large ones are not kept (their calls dwarf the set-up).
_kept = threading.local()
MAX_KEPT_BYTES = 1 << 23


cdef _Workspace _call_workspace(const Plan *plan, Py_ssize_t itemsize):
    cdef _Workspace ws = getattr(_kept, "workspace", None)
    cdef Py_ssize_t need[6]
    _workspace_sizes(plan, 0, itemsize, need)
    if (ws is not None and ws.n_threads == plan.n_workers and ws.capacity[5] == itemsize
            and all(need[i] <= ws.capacity[i] for i in range(5))):
        return ws
    ws = _allocate(plan, 0, itemsize)
    _kept.workspace = ws if (need[0] + need[1] + need[2]) * itemsize <= MAX_KEPT_BYTES else None
    return ws


cdef bint _all_ones(const floating *w, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if w[i] != 1:
            return False
    return True


cdef double _sum_squares(const floating *a, Py_ssize_t size) noexcept nogil:
    """sum a_i^2 in double (the reference's np.sum(a * a, dtype=np.float64)),
    in four interleaved partial sums: one running sum waited on the adder's
    latency at every term (~3 us of an 85 us Adam batch at d = 20, h = 100)."""
    cdef Py_ssize_t i = 0
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef floating x0, x1, x2, x3
    while i + 4 <= size:
        x0 = a[i] * a[i]
        x1 = a[i + 1] * a[i + 1]
        x2 = a[i + 2] * a[i + 2]
        x3 = a[i + 3] * a[i + 3]
        s0 += x0
        s1 += x1
        s2 += x2
        s3 += x3
        i += 4
    while i < size:
        x0 = a[i] * a[i]
        s0 += x0
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef double _penalty_sum(const Plan *plan, const floating *W1, const floating *W2) noexcept nogil:
    return (_sum_squares(W1, plan.d * plan.h) + _sum_squares(W2, plan.h * plan.k))


cdef void _add_penalty(floating *grad, const floating *param, Py_ssize_t size,
                       floating scale) noexcept nogil:
    """grad += scale * param (scale = dtype(2 alpha / W_B))."""
    cdef Py_ssize_t i
    for i in range(size):
        grad[i] = grad[i] + scale * param[i]


ctypedef struct Step:
    # the scalars of one optimizer step, in double; each is rounded to the
    # parameters' dtype where used, as the reference's NumPy scalars are
    int optimizer
    bint nesterov
    double lr                  # learning_rate / (epoch + 1) ** power_t
    double momentum
    double beta1, beta2
    double one_minus_beta1, one_minus_beta2
    double bias1, bias2        # 1 - beta ** t
    double epsilon
    bint epsilon_first         # eps added to sqrt(v) before the bias correction


cdef void _update(const Step *st, floating *p, const floating *g, floating *m, floating *v,
                  Py_ssize_t size) noexcept nogil:
    """One step of one parameter, elementwise, with the reference's operations in
    its order (src/shallownet/backends/numpy.py, _step): each line there is one
    rounding here, in the same dtype."""
    cdef Py_ssize_t i
    cdef floating lr = <floating> st.lr
    cdef floating mu = <floating> st.momentum
    cdef floating beta1 = <floating> st.beta1, beta2 = <floating> st.beta2
    cdef floating c1 = <floating> st.one_minus_beta1, c2 = <floating> st.one_minus_beta2
    cdef floating bias1 = <floating> st.bias1, bias2 = <floating> st.bias2
    cdef floating eps = <floating> st.epsilon
    cdef double step
    if st.optimizer == ADAM and st.epsilon_first:
        # the reference's float64 step size (dtype(lr) * sqrt(bias2) / bias1)
        step = <double> lr * sqrt(st.bias2) / st.bias1
        if floating is double:
            sn_adam_eps_first_d(size, p, g, m, v, step, beta1, c1, beta2, c2, eps)
        else:
            sn_adam_eps_first_f(size, p, g, m, v, step, beta1, c1, beta2, c2, eps)
    elif st.optimizer == ADAM:
        # vectorised in the header, one rounding per line of the reference
        if floating is double:
            sn_adam_d(size, p, g, m, v, lr, beta1, c1, beta2, c2, bias1, bias2, eps)
        else:
            sn_adam_f(size, p, g, m, v, lr, beta1, c1, beta2, c2, bias1, bias2, eps)
    elif st.momentum != 0:
        if st.nesterov:
            for i in range(size):
                m[i] = m[i] * mu
                m[i] = m[i] - lr * g[i]
                p[i] = p[i] + (mu * m[i] - lr * g[i])
        else:
            for i in range(size):
                m[i] = m[i] * mu
                m[i] = m[i] - lr * g[i]
                p[i] = p[i] + m[i]
    else:
        for i in range(size):
            p[i] = p[i] - lr * g[i]


ctypedef struct Weights:
    # the parameters a batch is evaluated at, typed as the call's floating type
    const void *W1
    const void *b1
    const void *W2
    const void *b2


cdef double _batch(Plan *plan, sn_pool *pool, const floating *X, const floating *Y,
                   const floating *w,
                   const Rows *src, Py_ssize_t rows, double weight, double alpha,
                   const Weights *params,
                   floating *scratch, floating *chunk_grads, double *chunk_loss,
                   floating *grad, bint finish) noexcept nogil:
    """The loss L_B of ``rows`` rows of weight sum ``weight`` (penalty
    included) at ``params`` and, with ``finish``, its gradients (penalty
    included) into ``grad``; without, the data term's gradients as
    _run_chunks leaves them, for a training step to finish (_step)."""
    cdef double loss
    cdef floating scale
    cdef const floating *W1 = <const floating *> params.W1
    cdef const floating *b1 = <const floating *> params.b1
    cdef const floating *W2 = <const floating *> params.W2
    cdef const floating *b2 = <const floating *> params.b2
    _set_rows(plan, rows)
    plan.two_over_w = 2.0 / weight
    loss = _run_chunks(plan, pool, X, Y, w, src, W1, b1, W2, b2, scratch, chunk_grads,
                       chunk_loss, grad)
    if alpha != 0:
        loss += alpha * _penalty_sum(plan, W1, W2)
    if finish:
        if _reduced_in_chunks(plan):
            _reduce(plan, chunk_grads, grad)
        if alpha != 0:
            scale = <floating> (2.0 * alpha / weight)
            _add_penalty(grad, W1, plan.d * plan.h, scale)
            _add_penalty(grad + plan.d * plan.h + plan.h, W2, plan.h * plan.k, scale)
    return loss / weight


cdef double _gathered_weight(const int64_t *order, Py_ssize_t rows,
                             const floating *w) noexcept nogil:
    """The weight sum of the rows order[:rows], summed in batch order."""
    cdef Py_ssize_t i
    cdef double weight = 0
    for i in range(rows):
        weight += w[order[i]]
    return weight


cdef double _weight_sum(const floating *w, Py_ssize_t rows) noexcept nogil:
    cdef Py_ssize_t i
    cdef double weight = 0
    for i in range(rows):
        weight += w[i]
    return weight


ctypedef struct Fit:
    # everything a run of calls shares, fixed when the run opens: shapes,
    # settings, and pointers into arrays that the Run object keeps alive
    Py_ssize_t n, d, k, bs
    bint shuffled, unit_weights
    double learning_rate, power_t, alpha
    double schedule_scale      # epoch e steps with lr / (e schedule_scale + 1) ** power_t
    const void *X
    const void *Y
    const void *w
    void *params[4]
    void *firsts[4]
    void *seconds[4]
    Py_ssize_t offsets[5]
    int64_t *t
    double *losses
    Py_ssize_t n_losses
    Plan plan
    Step st


cdef void _step_range(const Fit *f, const floating *chunk_grads, floating *grad,
                      bint reduce, floating scale, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Entries lo .. hi - 1 of the flat parameter vector (W1, b1, W2, b2):
    their gradients reduced from the chunks (``reduce``), the penalty's
    scale * W added (with f.alpha != 0), then the optimizer's step. Each entry
    goes through the same operations in the same order wherever the ranges
    fall, so any split gives the numbers of one range over everything."""
    cdef Py_ssize_t q, a, b, off
    if reduce:
        _reduce_range(&f.plan, chunk_grads, grad, lo, hi)
    for q in range(4):
        off = f.offsets[q]
        a = max(lo, off)
        b = min(hi, f.offsets[q + 1])
        if a >= b:
            continue
        if f.alpha != 0 and (q == 0 or q == 2):   # W1 and W2
            _add_penalty(grad + a, <const floating *> f.params[q] + (a - off), b - a, scale)
        _update(&f.st, <floating *> f.params[q] + (a - off), grad + a,
                <floating *> f.firsts[q] + (a - off), <floating *> f.seconds[q] + (a - off),
                b - a)


ctypedef struct StepJob:
    # the arguments of _step_range for the parts of one step, typed as the
    # call's floating type
    const Fit *f
    const void *chunk_grads
    void *grad
    double scale
    Py_ssize_t n_parts


cdef inline Py_ssize_t _part_start(const StepJob *j, Py_ssize_t part) noexcept nogil:
    # equal parts, cut at multiples of 16 entries: whole cache lines of the
    # (aligned) gradient vector in either dtype, so that the threads share
    # no line of it
    return min(j.f.plan.n_params, (j.f.plan.n_params * part // j.n_parts + 15) // 16 * 16)


cdef void _step_task_d(void *arg, Py_ssize_t part, int thread) noexcept nogil:
    cdef StepJob *j = <StepJob *> arg
    _step_range(j.f, <const double *> j.chunk_grads, <double *> j.grad, True,
                <double> j.scale, _part_start(j, part), _part_start(j, part + 1))


cdef void _step_task_f(void *arg, Py_ssize_t part, int thread) noexcept nogil:
    cdef StepJob *j = <StepJob *> arg
    _step_range(j.f, <const float *> j.chunk_grads, <float *> j.grad, True,
                <float> j.scale, _part_start(j, part), _part_start(j, part + 1))


cdef void _step(Fit *f, sn_pool *pool, const floating *chunk_grads, floating *grad,
                double weight) noexcept nogil:
    """The optimizer's step after a batch's _run_chunks (f.st set for it):
    reduction, penalty gradient and update together, range by range, shared
    with the pool's threads when the chunks were (docs/kernels.md, "The
    step"); a transposed dW1 is reduced first, on this thread."""
    cdef floating scale = <floating> (2.0 * f.alpha / weight)
    cdef StepJob job
    if f.plan.n_chunks > 1 and not f.plan.transposed_W1:
        job.f, job.chunk_grads, job.grad = f, chunk_grads, grad
        job.scale = scale
        job.n_parts = pool.n_threads
        if floating is double:
            sn_pool_run(pool, _step_task_d, &job, job.n_parts)
        else:
            sn_pool_run(pool, _step_task_f, &job, job.n_parts)
        return
    if _reduced_in_chunks(&f.plan):
        _reduce(&f.plan, chunk_grads, grad)
    _step_range(f, chunk_grads, grad, False, scale, 0, f.plan.n_params)


cdef class Run:
    """A run of calls on one fit's arrays: ``run(epoch0, start, count, orders)``
    trains ``count`` epochs, writing losses[start:start + count]. The plan,
    the workspace and every pointer are set up once, by ``open_run``; a call
    costs well under a microsecond before its epochs start."""
    cdef Fit fit
    cdef _Workspace ws
    cdef bint is_double
    cdef object arrays      # keeps every array the pointers point into alive

    def __call__(self, Py_ssize_t epoch0, Py_ssize_t start, Py_ssize_t count, orders):
        cdef const int64_t[:, ::1] order_view
        cdef const int64_t *order0 = NULL
        cdef Py_ssize_t rows = self.fit.n
        if start < 0 or count < 0 or start + count > self.fit.n_losses:
            raise ValueError(f"epochs [{start}, {start + count}) outside the run's "
                             f"{self.fit.n_losses} losses")
        if self.fit.shuffled:
            order_view = orders
            if (order_view.shape[0] < count or order_view.shape[1] > self.fit.n
                    or order_view.shape[1] < 1):
                raise ValueError(f"orders must have shape ({count}, m), 1 <= m <= "
                                 f"{self.fit.n}, got {tuple(orders.shape)}")
            if count:
                order0 = &order_view[0, 0]
                rows = order_view.shape[1]
        if self.is_double:
            return _epochs(<const double *> self.fit.X, &self.fit, self.ws, order0, rows,
                           epoch0, start, count)
        return _epochs(<const float *> self.fit.X, &self.fit, self.ws, order0, rows,
                       epoch0, start, count)


cdef Py_ssize_t _epochs(const floating *X0, Fit *f, _Workspace ws, const int64_t *order0,
                        Py_ssize_t n, Py_ssize_t epoch0, Py_ssize_t first,
                        Py_ssize_t epochs) noexcept:
    """Epochs first .. first + epochs - 1 of the run's losses, with the GIL
    released; returns the number finished. Each epoch walks n rows: all of
    X in order, or the n rows of its order (n <= X's rows)."""
    cdef Py_ssize_t d = f.d, k = f.k, bs = f.bs
    cdef const floating *Y0 = <const floating *> f.Y
    cdef const floating *w0 = <const floating *> f.w
    cdef floating *grad = <floating *> ws.grad
    cdef floating *scratch = <floating *> ws.scratch
    cdef floating *chunk_grads = <floating *> ws.chunk_grads
    cdef floating *Xb = <floating *> ws.gathered
    cdef floating *Yb = Xb + bs * d
    cdef floating *wb = Yb + bs * k
    cdef double *loss_curve = f.losses + first
    cdef bint shuffled = order0 != NULL, unit_weights = f.unit_weights
    cdef int64_t steps = f.t[0]
    cdef Py_ssize_t epoch, start, rows, done = epochs
    cdef double loss, weight, epoch_loss, epoch_weight
    cdef bint diverged = False
    cdef const floating *Xs
    cdef const floating *Ys
    cdef const floating *ws_
    cdef Rows src
    cdef Weights params
    src.order = NULL
    src.X, src.Y, src.w = X0, Y0, w0
    params.W1, params.b1, params.W2, params.b2 = f.params[0], f.params[1], f.params[2], f.params[3]
    with nogil:
        for epoch in range(epochs):
            # the reference's dtype(learning_rate / (epoch schedule_scale + 1) ** power_t)
            f.st.lr = f.learning_rate / pow(<double> (epoch0 + epoch) * f.schedule_scale + 1.0,
                                            f.power_t)
            epoch_loss = 0
            epoch_weight = 0
            start = 0
            while start < n:
                rows = min(bs, n - start)
                if shuffled:
                    src.order = order0 + epoch * n + start
                    src.next_order = src.order + rows
                    src.next_rows = min(bs, n - start - rows)
                    weight = (<double> rows if unit_weights
                              else _gathered_weight(src.order, rows, w0))
                    Xs = Xb
                    Ys = Yb
                    ws_ = wb
                else:
                    Xs = X0 + start * d
                    Ys = Y0 + start * k
                    ws_ = w0 + start
                    weight = <double> rows if unit_weights else _weight_sum(ws_, rows)
                start += bs
                if weight == 0:
                    continue
                if unit_weights:
                    ws_ = NULL
                loss = _batch(&f.plan, &ws.pool, Xs, Ys, ws_, &src, rows, weight, f.alpha,
                              &params, scratch, chunk_grads, ws.chunk_loss, grad, False)
                if not isfinite(loss):
                    loss_curve[epoch] = loss
                    diverged = True
                    break
                epoch_loss += loss * weight
                epoch_weight += weight
                steps += 1
                if f.st.optimizer == ADAM:
                    f.st.bias1 = 1.0 - pow(f.st.beta1, <double> steps)
                    f.st.bias2 = 1.0 - pow(f.st.beta2, <double> steps)
                _step(f, &ws.pool, chunk_grads, grad, weight)
            if diverged:
                done = epoch
                break
            loss_curve[epoch] = epoch_loss / epoch_weight
    f.t[0] = steps
    return done


cdef void _flat_pointers(params, void **out, const floating *of_type) except *:
    """out[:4] = the data of a Params-shaped record (W1, b1, W2, b2) of C-contiguous
    arrays of this floating type (validated in Python)."""
    cdef floating[:, ::1] W1 = params[0]
    cdef floating[::1] b1 = params[1]
    cdef floating[:, ::1] W2 = params[2]
    cdef floating[::1] b2 = params[3]
    out[0], out[1], out[2], out[3] = &W1[0, 0], &b1[0], &W2[0, 0], &b2[0]


def open_run(const floating[:, ::1] X, const floating[:, ::1] Y,
             const floating[::1] sample_weight, params, state, spec,
             double[::1] losses, int n_threads):
    """A ``Run`` over these arrays: ``params`` a ``Params``, ``state`` an
    ``OptimizerState``, ``spec`` a ``TrainSpec`` (``shallownet._training``),
    read once here by field name. The Run keeps every array alive."""
    cdef int64_t[::1] t = state.t
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], h = params.W1.shape[1], k = Y.shape[1]
    cdef Run run = Run.__new__(Run)
    cdef Fit *f = &run.fit
    f.n, f.d, f.k = n, d, k
    f.bs = max(1, min(<Py_ssize_t> spec.batch_size, n))
    f.shuffled = spec.shuffled
    f.learning_rate, f.power_t, f.alpha = spec.learning_rate, spec.power_t, spec.alpha
    f.schedule_scale = spec.schedule_scale
    f.X, f.Y, f.w = &X[0, 0], &Y[0, 0], &sample_weight[0]
    # the four parameters as flat vectors, in the order of the gradient vector
    _flat_pointers(params, f.params, &X[0, 0])
    _flat_pointers(state.m, f.firsts, &X[0, 0])
    _flat_pointers(state.v, f.seconds, &X[0, 0])
    f.t = &t[0]
    f.losses = &losses[0] if losses.shape[0] else NULL
    f.n_losses = losses.shape[0]
    f.plan = _make_plan(f.bs, d, h, k, spec.activation, n_threads)
    f.offsets[:] = [0, d * h, d * h + h, d * h + h + h * k, f.plan.n_params]
    f.st.optimizer = spec.optimizer
    f.st.nesterov = spec.nesterov
    f.st.momentum = spec.momentum
    f.st.beta1, f.st.beta2 = spec.beta1, spec.beta2
    f.st.one_minus_beta1, f.st.one_minus_beta2 = 1.0 - f.st.beta1, 1.0 - f.st.beta2
    f.st.epsilon = spec.epsilon
    f.st.epsilon_first = spec.epsilon_before_correction
    with nogil:
        # unit weights: the weight products are exact, so they are left out
        f.unit_weights = _all_ones(&sample_weight[0], n)
    run.ws = _allocate(&f.plan, f.bs if f.shuffled else 0, sizeof(floating))
    run.is_double = floating is double
    run.arrays = (X.base, Y.base, sample_weight.base, params, state, losses.base)
    return run


def loss_and_gradients(const floating[:, ::1] X, const floating[:, ::1] Y,
                       const floating[::1] sample_weight,
                       const floating[:, ::1] W1, const floating[::1] b1,
                       const floating[:, ::1] W2, const floating[::1] b2,
                       floating[:, ::1] grad_W1, floating[::1] grad_b1,
                       floating[:, ::1] grad_W2, floating[::1] grad_b2,
                       int activation_code, double alpha, int n_threads):
    """Write dL/dW1, dL/db1, dL/dW2, dL/db2 into the grad_* arrays; return L."""
    cdef Py_ssize_t n = X.shape[0]
    cdef Plan plan = _make_plan(n, X.shape[1], W1.shape[1], Y.shape[1],
                                activation_code, n_threads)
    cdef _Workspace ws = _call_workspace(&plan, sizeof(floating))
    cdef floating *grad = <floating *> ws.grad
    cdef Py_ssize_t d = plan.d, h = plan.h, k = plan.k, i
    cdef const floating *w = &sample_weight[0]
    cdef double loss, weight
    cdef Rows in_place
    cdef Weights at
    in_place.order = NULL
    with nogil:
        if _all_ones(w, n):
            weight = <double> n
            w = NULL
        else:
            weight = _weight_sum(w, n)
        at.W1, at.b1, at.W2, at.b2 = &W1[0, 0], &b1[0], &W2[0, 0], &b2[0]
        loss = _batch(&plan, &ws.pool, &X[0, 0], &Y[0, 0], w, &in_place, n, weight, alpha,
                      &at, <floating *> ws.scratch, <floating *> ws.chunk_grads,
                      ws.chunk_loss, grad, True)
        for i in range(d * h):
            (&grad_W1[0, 0])[i] = grad[i]
        for i in range(h):
            grad_b1[i] = grad[d * h + i]
        for i in range(h * k):
            (&grad_W2[0, 0])[i] = grad[d * h + h + i]
        for i in range(k):
            grad_b2[i] = grad[d * h + h + h * k + i]
    return loss


cdef class PackedLoss:
    """The loss and gradients on one data set at any parameters, packed:
    ``loss(x, out, scale)`` reads x (W1, W2, b1, b2 raveled, in X's dtype,
    C-contiguous: shallownet._lbfgs.pack's order) and writes ``scale`` times
    the gradients into ``out`` in the same order; returns the loss. The plan,
    the workspace and its thread pool are set up once, by ``open_packed_loss``,
    and kept for every evaluation of an L-BFGS run."""
    cdef Plan plan
    cdef _Workspace ws
    cdef const void *X
    cdef const void *Y
    cdef const void *w          # NULL for unit weights
    cdef double weight, alpha
    cdef Py_ssize_t n
    cdef bint is_double
    cdef object arrays

    def __call__(self, x, out, double scale):
        cdef const double[::1] xd
        cdef double[::1] od
        cdef const float[::1] xf
        cdef float[::1] of
        if self.is_double:
            xd = x
            od = out
            if xd.shape[0] != self.plan.n_params or od.shape[0] != self.plan.n_params:
                raise ValueError(f"x and out must hold {self.plan.n_params} parameters")
            return _packed_loss(self, &xd[0], &od[0], scale)
        xf = x
        of = out
        if xf.shape[0] != self.plan.n_params or of.shape[0] != self.plan.n_params:
            raise ValueError(f"x and out must hold {self.plan.n_params} parameters")
        return _packed_loss(self, &xf[0], &of[0], scale)


cdef double _packed_loss(PackedLoss self, const floating *x, floating *out,
                         double scale) noexcept:
    cdef Py_ssize_t d = self.plan.d, h = self.plan.h, k = self.plan.k, i
    cdef Py_ssize_t dh = d * h, hk = h * k
    cdef floating *grad = <floating *> self.ws.grad
    cdef floating s = <floating> scale
    cdef double loss
    cdef Rows in_place
    cdef Weights at
    in_place.order = NULL
    with nogil:
        # x is packed W1, W2, b1, b2
        at.W1, at.b1, at.W2, at.b2 = x, x + dh + hk, x + dh, x + dh + hk + h
        loss = _batch(&self.plan, &self.ws.pool, <const floating *> self.X,
                      <const floating *> self.Y, <const floating *> self.w, &in_place, self.n,
                      self.weight, self.alpha, &at, <floating *> self.ws.scratch,
                      <floating *> self.ws.chunk_grads, self.ws.chunk_loss, grad, True)
        # grad is W1, b1, W2, b2; out is W1, W2, b1, b2
        for i in range(dh):
            out[i] = s * grad[i]
        for i in range(hk):
            out[dh + i] = s * grad[dh + h + i]
        for i in range(h):
            out[dh + hk + i] = s * grad[dh + i]
        for i in range(k):
            out[dh + hk + h + i] = s * grad[dh + h + hk + i]
    return loss


def open_packed_loss(const floating[:, ::1] X, const floating[:, ::1] Y,
                     const floating[::1] sample_weight, Py_ssize_t h, int activation_code,
                     double alpha, int n_threads):
    """A ``PackedLoss`` on these arrays (kept alive by it) for h hidden units."""
    cdef PackedLoss f = PackedLoss.__new__(PackedLoss)
    cdef Py_ssize_t n = X.shape[0]
    f.plan = _make_plan(n, X.shape[1], h, Y.shape[1], activation_code, n_threads)
    f.ws = _allocate(&f.plan, 0, sizeof(floating))
    f.X, f.Y, f.n, f.alpha = &X[0, 0], &Y[0, 0], n, alpha
    with nogil:
        if _all_ones(&sample_weight[0], n):
            f.weight = <double> n
            f.w = NULL
        else:
            f.weight = _weight_sum(&sample_weight[0], n)
            f.w = &sample_weight[0]
    f.is_double = floating is double
    f.arrays = (X.base, Y.base, sample_weight.base)
    return f


def apply_activation(floating[::1] z_gprime, floating[::1] a, int activation_code):
    """a := g(z), z_gprime := g'(z) in place (z_gprime holds z on entry)."""
    with nogil:
        _activation(activation_code, 1, z_gprime.shape[0], &z_gprime[0], 0, &a[0], 0)
