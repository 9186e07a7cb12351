"""How a batch is cut up, and the buffers of a run.

A batch's rows are cut into chunks (each with its own gradient
accumulators, reduced in chunk order) and chunks into tiles of one of two
kinds, chosen by the shapes alone: explicit loops (``explicit``) or GEMM
tiles (``gemm``). All of it is fixed by the batch's row count and the
shapes, never by the thread count, so results are bitwise the same for any
n_threads (docs/kernels.md).
"""

import math

import numpy as np
from llvmlite.binding import get_host_cpu_features
from numba import njit

from .jit import JIT_ROW_SUM, entry
from .records import Chunks, Params, Tiles, Workspace
from .rows import weight_sum

# Chunks: fixed by the batch's row count alone (docs/kernels.md): the largest
# power of two <= min(MAX_CHUNKS, n // min_rows) chunks (powers of two share
# out evenly over 2, 4, ... threads), where a chunk holds enough work to pay
# for the parallel region it may run in, on a busy machine too: a row costs
# h (2 (d + k) + 33) operations (a multiply-add each way per input and
# output, ~33 for the activation, its derivative and the rest), and a chunk
# needs CHUNK_MIN_OPS of them, ~0.3 ms single-threaded (3 G operations/s
# measured at (4000, 20, 100)): a region that waits tens of microseconds for
# a second thread costs a few percent. Below 2 * CHUNK_MIN_OPS a batch is one
# chunk, run serially: Adam's 200-row batches at (4000, 20, 100) (1.5 M
# operations) ran 15x slower in a 2-thread region per batch than serially
# with two busy processes on the 2 cores (OpenMP layer), and (1000, 1, 16)
# is at its single-core floor (docs/kernels.md). Tall GEMM tiles (d*h >=
# GEMM_TALL_DH) take at least GEMM_MIN_CHUNK_ROWS rows a chunk.
MAX_CHUNKS = 32
GEMM_MIN_CHUNK_ROWS = 2048
GEMM_TALL_DH = 4096
CHUNK_MIN_OPS = 1 << 20
# Two tile kernels, chosen by the shapes, and by whether the host has
# AVX-512: OpenBLAS's AVX-512 GEMM kernels gain more from it than the loops.
# With AVX-512 (measured single-threaded at n = 50000, tanh): the explicit
# loops won by 1.3-3x at h <= 8 and at d = 1, h = 16; they tied with the
# GEMMs at d*h = 64 with h >= 16, and lost by 1.3-2.5x from d*h = 160
# (h >= 16) or d*h = 256 (any h) on. Without it (Zen 3, AVX2 + FMA; full
# batch, 2 threads, 7 interleaved rounds, ms an epoch, loops against GEMMs):
# (100000, 4, 16) 2.92 against 4.26, (100000, 10, 32) 8.37 against 9.14,
# but (50000, 20, 32) 6.35 against 5.72 and (50000, 16, 64) 13.5 against
# 11.6; Adam's 200-row batches at (100000, 10, 32) 14.0 against 15.2.
# - explicit loops along the rows of a transposed tile, for narrow layers:
#   their tile buffers (a1 and g'(z1), h x T; yhat, k x T; the X tile, d x T)
#   stay within SMALL_TILE_BYTES of L2;
SMALL_TILE_BYTES = 256 * 1024
SMALL_TILE_MIN_ROWS = 64
SMALL_TILE_MAX_ROWS = 4096
# - BLAS GEMMs (_gemm) on transposed tiles (h x T), otherwise, with W1 and
#   its gradient transposed (h x d): OpenBLAS packs those layouts with
#   cheaper copies (_tile_gemm). T = 256 rows was the fastest of 128 ...
#   2048 at (n, d, h) = (50000, 10, 32), (50000, 100, 128) and
#   (20000, 784, 256) (row-major tiles), though within a few percent of
#   384 ... 1024; at 2048 the tile buffers leave L2 and it was 15-20% slower.
GEMM_TILE_ROWS = 256
_AVX512 = bool(get_host_cpu_features().get("avx512f", False))
GEMM_MIN_HIDDEN = 16
GEMM_MIN_DH = 64 if _AVX512 else 512
GEMM_ALWAYS_DH = 256 if _AVX512 else 512
# The explicit tiles pass over several features at once (four a pass in the
# forward tile from d = 6, three in the backward tile from d = 4): below
# MANY_FEATURES those loops never run, and the tiles do not compile them
# (docs/kernels.md, "Compiling on demand").
MANY_FEATURES = 4


# Python only: a run passes its batches' cuts to the kernels (``cut`` in
# ``shallownet._numba``), which once compiled this into every batch
def plan(n, d, h, k, itemsize):
    """(n_chunks, chunk_rows, tile_rows, use_gemm, max_tile_rows) for a batch
    of n rows of ``itemsize``-byte elements: fixed by the shapes alone.
    n_chunks is monotone in n, and tile_rows <= max_tile_rows, which
    buffers for n rows hold."""
    use_gemm = (h >= GEMM_MIN_HIDDEN and d * h >= GEMM_MIN_DH) or d * h >= GEMM_ALWAYS_DH
    min_rows = max(CHUNK_MIN_OPS // (h * (2 * (d + k) + 33)), 1)
    if d * h >= GEMM_TALL_DH:
        min_rows = max(min_rows, GEMM_MIN_CHUNK_ROWS)
    if use_gemm:
        tile_rows = GEMM_TILE_ROWS
    else:
        tile_rows = SMALL_TILE_BYTES // (itemsize * (2 * h + k + d))
        tile_rows = min(max(tile_rows - tile_rows % 8, SMALL_TILE_MIN_ROWS), SMALL_TILE_MAX_ROWS)
    chunks = min(n // min_rows, MAX_CHUNKS)
    n_chunks = 1
    while 2 * n_chunks <= chunks:
        n_chunks *= 2
    chunk_rows = max((n + n_chunks - 1) // n_chunks, 1)
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    return n_chunks, chunk_rows, min(tile_rows, chunk_rows), use_gemm, max(min(tile_rows, n), 1)


class _Arena:
    """Views carved out of one buffer of a dtype, each starting on a 64-byte
    boundary (a vector load never straddles a cache line at a row's start).
    Called once to count (no buffer yet: returns None), then again, in the
    same order, to carve: one allocation, where ~25 aligned arrays of their
    own cost ~0.2 ms a fit."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.step = max(64 // self.dtype.itemsize, 1)
        self.at = 0
        self.buffer = None

    def __call__(self, *shape):
        size = math.prod(shape)
        at = self.at
        self.at = at + size + (-(at + size)) % self.step
        if self.buffer is None:
            return None
        return self.buffer[at:at + size].reshape(shape)

    def allocate(self):
        raw = np.empty(self.at + self.step, self.dtype)
        skip = (-raw.ctypes.data % 64) // self.dtype.itemsize
        self.buffer = raw[skip:skip + self.at]
        self.at = 0


def workspace(n, d, h, k, dtype, rows, n_threads, gather, moments):
    """The buffers of a run of calls on n rows in batches of at most
    ``rows`` rows, allocated once (in Python: compiled code never
    allocates): per-worker tile buffers and per-chunk accumulators; the
    transposed X and Y of the explicit loops (all of X, or with ``gather``
    a batch's rows); the row-major batch buffers of the GEMM path with
    ``gather``; the GEMM path's transposed W1 and as many of its optimizer
    moments as the step keeps (``moments``: 0, 1 or 2); the gathered
    weights; the four gradients (dW1 transposed on the GEMM path, as the
    chunks' dW1); the chunks' losses, each in-order batch's weight sum, and
    whether every sample weight is 1 (float64). A buffer the run's kernel
    does not use is None: the entry point then neither unboxes nor compiles
    code for it (docs/kernels.md, "Compiling on demand"). ``prepare`` fills
    the parts that stay the same across the run's calls."""
    n_chunks, _, _, use_gemm, tile_rows = plan(rows, d, h, k, np.dtype(dtype).itemsize)
    n_workers = max(1, min(n_threads, n_chunks))
    n_batches = (n + rows - 1) // rows
    # the explicit loops run along rows: X transposed, all of it once per
    # fit, or each gathered batch straight into a transposed buffer; the
    # GEMM path holds W1, its gradients and its optimizer moments transposed
    # (h x d) within a call
    xt_cols = None if use_gemm else rows if gather else n
    w1 = (h, d) if use_gemm else (d, h)
    e, e64 = _Arena(dtype), _Arena(np.float64)

    def used(on, arena, *shape):
        return arena(*shape) if on else None

    def carve():
        # one chunk adds into the batch's gradients itself: no accumulators
        own = n_chunks > 1
        return Workspace(
            XT=used(xt_cols, e, d, xt_cols), YT=used(xt_cols, e, k, xt_cols),
            X_batch=used(use_gemm and gather, e, rows, d),
            Y_batch=used(use_gemm and gather, e, rows, k),
            w_batch=used(gather, e, rows),
            tiles=Tiles(e(n_workers, tile_rows * h), e(n_workers, tile_rows * h),
                        e(n_workers, tile_rows * k), e(n_workers, 0 if use_gemm else 2 * tile_rows),
                        True if d > 1 else None, True if k > 1 else None,
                        True if d >= MANY_FEATURES else None),
            chunks=Chunks(used(own, e, n_chunks, *w1), used(own, e, n_chunks, h),
                          used(own, e, n_chunks, h, k), used(own, e, n_chunks, k),
                          e64(n_chunks)),
            W1T=used(use_gemm, e, h, d), mW1T=used(use_gemm and moments >= 1, e, h, d),
            vW1T=used(use_gemm and moments == 2, e, h, d),
            grads=Params(e(*w1), e(h), e(h, k), e(k)),
            batch_weight=used(not gather, e64, n_batches), unit_weights=used(gather, e64, 1))

    carve()                     # counts
    e.allocate()
    e64.allocate()
    return carve()


@njit(**entry(JIT_ROW_SUM))
def _batch_weights(w, rows, out):
    for batch in range(out.shape[0]):
        start = batch * rows
        out[batch] = weight_sum(w[start:min(w.shape[0], start + rows)])


def prepare(ws, X, Y, w, rows, gather):
    """Fill the parts of a run's workspace that stay the same across its
    calls: the transposed X and Y (rows in order, explicit loops), each
    in-order batch's weight sum (``weight_sum``'s order, the kernels'), and
    the unit-weights flag."""
    if not gather and ws.XT is not None:
        np.copyto(ws.XT, X.T)
        np.copyto(ws.YT, Y.T)
    unit = bool(np.all(w == 1))
    if ws.batch_weight is not None:
        if unit:
            # m ones sum to m exactly in any order: no compiled sum, whose
            # first compile was ~0.4 s of a first fit
            first = np.arange(ws.batch_weight.shape[0]) * rows
            ws.batch_weight[:] = np.minimum(w.shape[0] - first, rows)
        else:
            _batch_weights(w, rows, ws.batch_weight)
    if ws.unit_weights is not None:
        ws.unit_weights[0] = 1.0 if unit else 0.0
