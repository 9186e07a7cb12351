"""Loops over rows both tile kinds and the batch loop share: the residual,
weight sums and gathers, sums of squares."""

import numpy as np
from numba import njit

from .calls import kernel
from .intrinsics import flat, prefetch, wide_vectors
from .jit import JIT, JIT_EXACT, JIT_ROW_SUM, entry

# Shuffled batches: while gathering row i, prefetch row i + PREFETCH_ROWS of
# the batch. Measured at (n, d, h) = (100000, 10, 32), batches of 200, Adam,
# one thread: the cost of random over in-order rows fell from 2.5-4.5 ms to
# ~0.6 ms an epoch (of ~10); 32 was no better, prefetching the whole next
# batch at once saved only ~1 ms.
PREFETCH_ROWS = 16


@kernel(JIT_ROW_SUM)
def residual(yhat, y, w, scale):
    """yhat := dL/dyhat = (scale w_i) (yhat - y); returns
    (sum of w_i (yhat - y)^2, sum of dL/dyhat)."""
    wide_vectors()
    loss = 0.0
    sum_D = 0.0
    for i in range(yhat.shape[0]):
        r = yhat[i] - y[i]
        wi = w[i]
        v = np.float64(r)
        loss += (np.float64(wi) * v) * v
        D = (scale * wi) * r
        yhat[i] = D
        sum_D += D
    return loss, sum_D


@kernel(JIT_ROW_SUM)
def sum_squares(a):
    """sum a^2 over all of a, in float64."""
    wide_vectors()
    values = flat(a)
    s = 0.0
    for i in range(values.shape[0]):
        v = np.float64(values[i])
        s += v * v
    return s


@kernel(JIT_EXACT)
def add_scaled(grad, s, p):
    """grad += s * p (rounded as NumPy rounds it: no FMA)."""
    wide_vectors()
    grad_flat = flat(grad)
    p_flat = flat(p)
    for i in range(grad_flat.shape[0]):
        grad_flat[i] += s * p_flat[i]


@njit(**entry(JIT_ROW_SUM))
def weight_sum(w):
    """sum w in float64."""
    wide_vectors()
    s = 0.0
    for i in range(w.shape[0]):
        s += np.float64(w[i])
    return s


@kernel(JIT_ROW_SUM)
def gather_weights(w, rows, w_batch):
    """w_batch[i] = w[rows[i]]; returns their sum in float64."""
    wide_vectors()
    m = rows.shape[0]
    s = 0.0
    for i in range(m):
        if i + PREFETCH_ROWS < m:
            prefetch(w, rows[i + PREFETCH_ROWS])
        wi = w[rows[i]]
        w_batch[i] = wi
        s += np.float64(wi)
    return s


@njit(inline="always", **JIT)
def _prefetch_row(X, Y, r):
    """Ask for the cache lines of row r of X (its first and last element) and of Y."""
    d = X.shape[1]
    k = Y.shape[1]
    prefetch(X, r * d)
    prefetch(X, r * d + d - 1)
    prefetch(Y, r * k)


@kernel(JIT)
def gather(source, begin, end, gemm):
    """Rows order[i] of X and Y, for i in [begin, end), into row i of X_to
    and Y_to with ``gemm`` (the GEMM tiles' layout), or with ``gemm`` None
    into column i (the explicit loops' layout). (The flag, not a bool: only
    its layout's loops are compiled.)"""
    wide_vectors()
    X, Y, order, X_to, Y_to = source
    d = X.shape[1]
    k = Y.shape[1]
    for i in range(begin, end):
        if i + PREFETCH_ROWS < end:
            _prefetch_row(X, Y, order[i + PREFETCH_ROWS])
        r = order[i]
        if gemm is None:
            for l in range(d):
                X_to[l, i] = X[r, l]
            for c in range(k):
                Y_to[c, i] = Y[r, c]
        else:
            for l in range(d):
                X_to[i, l] = X[r, l]
            for c in range(k):
                Y_to[i, c] = Y[r, c]


# Sums of whole arrays as loops on 1-D views: an array assignment or
# in-place add would compile NumPy's shape check and its error message
# (~3 s of compile time) for shapes that are right by construction; the
# views come from intrinsics.flat, with no check. They are compiled on their
# own, once for every dtype (inlined in Numba IR, their loops had been a
# quarter of the epoch loop's code). (Zeroing is a memset: ``intrinsics.zero``.)

@kernel(JIT_EXACT)
def sum_chunks(dst, parts, n):
    """dst = parts[0] + parts[1] + ... + parts[n - 1], added in that order
    (dst 1-D, parts 2-D: one row a chunk)."""
    wide_vectors()
    first = parts[0]
    for i in range(dst.shape[0]):
        dst[i] = first[i]
    for c in range(1, n):
        part = parts[c]
        for i in range(dst.shape[0]):
            dst[i] += part[i]


@kernel(JIT_EXACT)
def transpose_into(dst, src):
    """dst = src^T for 2-D arrays."""
    wide_vectors()
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[j, i] = src[i, j]
