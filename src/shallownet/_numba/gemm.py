"""The GEMM tile of the Numba kernels, for wider layers.

The products are BLAS GEMMs (``intrinsics.gemm``); the elementwise work is
fused around them on the tile transposed (row j of G, A and R is hidden
unit or output j), so that every loop runs along the T rows. W1 and its
gradient are transposed too (h x d): with these layouts OpenBLAS packs its
operands with cheaper copies (docs/kernels.md). Where this path is chosen:
``plan``.
"""

from numba import njit

from .activations import activation, derivative64
from .calls import kernel
from .intrinsics import NO_TRANS, TRANS, flat, gemm, rows_view, segment, wide_vectors
from .jit import JIT, JIT_ROW_SUM, constant_flag, derivative_from_output
from .rows import residual


@njit(inline="always", **JIT)
def _activate_units(G, A, b1, code):
    """A = g(G + b1), G := g'(G + b1) for a transposed tile: row j is hidden unit j."""
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        bj = b1[j]
        for i in range(Gj.shape[0]):
            Aj[i], Gj[i] = activation(Gj[i] + bj, code)


@njit(inline="always", **JIT)
def _activate_units_k1(G, b1, w2, R0, code):
    """k = 1, g' from a1 (_derivative_from_output): G := a1 = g(G + b1) in
    place, and R0 += a1^T w2 (yhat) in the same pass, unit by unit."""
    for j in range(G.shape[0]):
        Gj = G[j]
        bj = b1[j]
        w2j = w2[j]
        for i in range(Gj.shape[0]):
            a, _ = activation(Gj[i] + bj, code)
            Gj[i] = a
            R0[i] += w2j * a


@njit(inline="always", **JIT)
def _tile_forward_product(X_t, W1T, G):
    """G = (X_t W1)^T, h x T row-major, from W1T = W1^T (h x d): BLAS sees
    the column-major T x h product X_t W1 as X_t^T transposed times W1T."""
    h, d = W1T.shape
    T = X_t.shape[0]
    gemm(TRANS, NO_TRANS, T, h, d, X_t, d, W1T, d, 0.0, G, T)


@njit(inline="always", **JIT)
def _tile_dW1_product(X_t, G, grad_W1T, first):
    """grad_W1T = (X_t^T G^T)^T (h x d) when ``first`` (beta = 0: no
    zeroing), else grad_W1T += it: BLAS sees the column-major d x h
    X_t^T G^T, as X_t (d x T) times G (T x h), neither transposed."""
    h, d = grad_W1T.shape
    T = X_t.shape[0]
    gemm(NO_TRANS, NO_TRANS, d, h, T, X_t, d, G, T, 0.0 if first else 1.0, grad_W1T, d)


@kernel(JIT_ROW_SUM)
def _backward_units_k1(G, A, D, w2, grad_b1, grad_w2):
    """k = 1, a transposed tile: G := dL/dz1 = (D w2_j) g' row by row (row j
    is hidden unit j), grad_b1[j] += its sum, grad_w2[j] += sum a1 D."""
    wide_vectors()
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        w2j = w2[j]
        sum_dz = 0.0
        sum_a_D = 0.0
        for i in range(Gj.shape[0]):
            dz = (D[i] * w2j) * Gj[i]
            Gj[i] = dz
            sum_dz += dz
            sum_a_D += Aj[i] * D[i]
        grad_b1[j] += sum_dz
        grad_w2[j] += sum_a_D


@njit(inline="always", **JIT_ROW_SUM)
def _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, code):
    for j in range(G.shape[0]):
        Gj = G[j]
        w2j = w2[j]
        sum_dz = 0.0
        sum_a_D = 0.0
        for i in range(Gj.shape[0]):
            a = Gj[i]
            dz = (D[i] * w2j) * derivative64(a, code)
            Gj[i] = dz
            sum_dz += dz
            sum_a_D += a * D[i]
        grad_b1[j] += sum_dz
        grad_w2[j] += sum_a_D


@kernel(JIT_ROW_SUM)
def _backward_units_k1_from_a(G, D, w2, grad_b1, grad_w2, code):
    """As _backward_units_k1 with G holding a1 (_activate_units_k1): g' from
    a1, so the tile needs one h x T buffer, read and written twice, where
    a1 and g' took two."""
    wide_vectors()
    _backward_units_k1_loop(G, D, w2, grad_b1, grad_w2, code)


@kernel(JIT_ROW_SUM)
def _backward_units(G, A, grad_b1):
    """k > 1, a transposed tile: G := dL/dz1 = A g' (A holding dL/da1),
    grad_b1[j] += row j's sum."""
    wide_vectors()
    for j in range(G.shape[0]):
        Gj = G[j]
        Aj = A[j]
        sum_dz = 0.0
        for i in range(Gj.shape[0]):
            dz = Aj[i] * Gj[i]
            Gj[i] = dz
            sum_dz += dz
        grad_b1[j] += sum_dz


@njit(inline="always", **JIT)
def tile_gemm(rows, r0, T, params, code, scale, first, tiles, wk, grads):
    """One tile of the T rows from r0 of rows = (X, Y, w), with worker wk's
    buffers, W1 and its gradient transposed (h x d): adds the tile's
    gradients to grads, returns its weighted sum of squared residuals. The
    chunk's ``first`` tile writes its dW1 product instead (beta = 0: no
    zeroing of the h x d accumulator). The tile's cases reach ``_tile`` as
    constants (``jit.constant_flag``): only its own case is compiled."""
    return _tile(rows, r0, T, params, code, scale, first, tiles, wk, grads,
                 constant_flag(tiles.multi), derivative_from_output(params.W1))


@kernel(JIT)
def _tile(rows, r0, T, params, code, scale, first, tiles, wk, grads, multi, from_output):
    """``tile_gemm``; ``multi`` (k > 1) and ``from_output`` (g' from a1:
    float64) are flags, None or True."""
    wide_vectors()
    X, Y, w = rows
    W1T, b1, W2, b2 = params
    grad_W1T, grad_b1, grad_W2, grad_b2 = grads
    h, d = W1T.shape
    k = W2.shape[1]
    X_t = segment(X, r0, T)
    G = rows_view(tiles.G[wk], h, T)        # z1 - b1, then g'(z1), then dL/dz1
    A = rows_view(tiles.A[wk], h, T)        # a1, then (k > 1) dL/da1
    R = rows_view(tiles.R[wk], k, T)        # yhat, then dL/dyhat
    _tile_forward_product(X_t, W1T, G)
    if multi is None and from_output is not None:
        # k = 1: one buffer, G holds z1 - b1, then a1, then dL/dz1
        R0 = R[0]
        R0[:] = b2[0]
        w2 = flat(W2)
        _activate_units_k1(G, b1, w2, R0, code)
        loss, sum_D = residual(R0, Y[r0:r0 + T, 0], segment(w, r0, T), scale)
        grad_b2[0] += sum_D
        _backward_units_k1_from_a(G, R0, w2, grad_b1, flat(grad_W2), code)
        _tile_dW1_product(X_t, G, grad_W1T, first)
        return loss
    _activate_units(G, A, b1, code)
    for c in range(k):
        R[c, :] = b2[c]
    if multi is None:
        R0 = R[0]
        for j in range(h):
            w2j = W2[j, 0]
            Aj = A[j]
            for i in range(T):
                R0[i] += w2j * Aj[i]
    else:
        gemm(NO_TRANS, TRANS, T, k, h, A, T, W2, k, 1.0, R, T)          # R += (A^T W2)^T
    loss = 0.0
    w_t = segment(w, r0, T)
    for c in range(k):
        loss_c, sum_D = residual(R[c], Y[r0:r0 + T, c], w_t, scale)
        loss += loss_c
        grad_b2[c] += sum_D
    if multi is None:
        _backward_units_k1(G, A, R[0], flat(W2), grad_b1, flat(grad_W2))
    else:
        gemm(TRANS, NO_TRANS, k, h, T, R, T, A, T, 1.0, grad_W2, k)      # grad_W2 += A R^T
        gemm(NO_TRANS, NO_TRANS, T, h, k, R, T, W2, k, 0.0, A, T)        # A = (R^T W2^T)^T = W2 R
        _backward_units(G, A, grad_b1)
    _tile_dW1_product(X_t, G, grad_W1T, first)
    return loss
