"""The explicit-loop tile of the Numba kernels, for narrow layers.

For narrow layers a loop along h (h < 16) does not fill a vector, so a tile
is worked on transposed (hidden unit x row): every loop runs along the
tile's T contiguous rows, one hidden unit j at a time (X is transposed once
per fit, or each gathered batch straight into a transposed buffer). Sums
over rows are in functions of their own with fastmath 'reassoc' (see
``jit``); everything else is 'contract' only. Where this path is chosen:
``plan``.
"""

from numba import njit

from .activations import activation
from .calls import kernel
from .intrinsics import row_segment, rows_view, segment, smaller, wide_vectors
from .jit import JIT, JIT_ROW_SUM, constant_flag
from .rows import residual


@njit(inline="always", **JIT)
def _forward_last(x, w, bias, accumulate, a, g, yhat0, w2, code):
    """The last feature's pass of z1_j: z = (g[i] if accumulate else bias) + w x[i];
    a = g(z), g = g'(z); yhat0 += w2 a. (``accumulate``: the flag ``wide``.)"""
    # two loops rather than one reading a second name for g: LLVM's runtime
    # overlap check would fail on the alias and run the scalar loop
    if accumulate is not None:
        for i in range(x.shape[0]):
            ai, gi = activation(g[i] + w * x[i], code)
            a[i] = ai
            g[i] = gi
            yhat0[i] += w2 * ai
    else:
        for i in range(x.shape[0]):
            ai, gi = activation(bias + w * x[i], code)
            a[i] = ai
            g[i] = gi
            yhat0[i] += w2 * ai


@kernel(JIT)
def _forward_unit(XT, r0, T, W1, b1, W2, j, code, a, g, yhat, wide, multi, many):
    """z1_j = X_t W1[:, j] + b1[j], a = g(z1_j), g = g'(z1_j); yhat += a W2[j, :].
    ``wide`` (d > 1), ``multi`` (k > 1) and ``many`` (d >= 4) are the
    tiles' flags (``records.Tiles``)."""
    wide_vectors()
    d = XT.shape[0]
    k = W2.shape[1]
    bias = b1[j]
    if wide is not None:
        # z1_j accumulates in g over the first d - 1 features, in feature
        # order, four features a pass to spare loads and stores of g
        w = W1[0, j]
        x = row_segment(XT, 0, r0, T)
        for i in range(T):
            g[i] = bias + w * x[i]
        l = 1
        if many is not None:
            while l + 4 <= d - 1:
                w_a, w_b, w_c, w_d = W1[l, j], W1[l + 1, j], W1[l + 2, j], W1[l + 3, j]
                x_a = row_segment(XT, l, r0, T)
                x_b = row_segment(XT, l + 1, r0, T)
                x_c = row_segment(XT, l + 2, r0, T)
                x_d = row_segment(XT, l + 3, r0, T)
                for i in range(T):
                    g[i] = (((g[i] + w_a * x_a[i]) + w_b * x_b[i]) + w_c * x_c[i]) + w_d * x_d[i]
                l += 4
        while l < d - 1:
            w = W1[l, j]
            x = row_segment(XT, l, r0, T)
            for i in range(T):
                g[i] += w * x[i]
            l += 1
    x = row_segment(XT, d - 1, r0, T)
    w = W1[d - 1, j]
    w2 = W2[j, 0]
    _forward_last(x, w, bias, wide, a, g, yhat[0], w2, code)
    if multi is not None:
        for c in range(1, k):
            w2 = W2[j, c]
            yhat_c = yhat[c]
            for i in range(T):
                yhat_c[i] += w2 * a[i]


@njit(inline="always", **JIT_ROW_SUM)
def _dz_unit(x0, D0, w2, a, g, dz, keep):
    """k = 1: dz = w2 D0 g for one unit (kept in dz unless ``keep`` is
    None); returns (sum dz, sum x0 dz, sum a D0)."""
    sum_dz = 0.0
    sum_x0_dz = 0.0
    sum_a_D0 = 0.0
    if keep is not None:
        for i in range(x0.shape[0]):
            dzi = (w2 * D0[i]) * g[i]
            dz[i] = dzi
            sum_dz += dzi
            sum_x0_dz += x0[i] * dzi
            sum_a_D0 += a[i] * D0[i]
    else:
        # d = 1: no other feature's sum reads dz again
        for i in range(x0.shape[0]):
            dzi = (w2 * D0[i]) * g[i]
            sum_dz += dzi
            sum_x0_dz += x0[i] * dzi
            sum_a_D0 += a[i] * D0[i]
    return sum_dz, sum_x0_dz, sum_a_D0


@njit(inline="always", **JIT_ROW_SUM)
def _dz_unit_multi(x0, D, W2, j, a, g, dz, grad_W2):
    """k > 1: dz = (sum_c D[c] W2[j, c]) g for unit j, kept in dz,
    grad_W2[j, c] += sum a D[c]; returns (sum dz, sum x0 dz)."""
    k = W2.shape[1]
    sum_dz = 0.0
    sum_x0_dz = 0.0
    w2 = W2[j, 0]
    D0 = D[0]
    for i in range(x0.shape[0]):
        dz[i] = w2 * D0[i]
    for c in range(1, k):
        w2 = W2[j, c]
        Dc = D[c]
        for i in range(x0.shape[0]):
            dz[i] += w2 * Dc[i]
    for i in range(x0.shape[0]):
        dzi = dz[i] * g[i]
        dz[i] = dzi
        sum_dz += dzi
        sum_x0_dz += x0[i] * dzi
    for c in range(k):
        Dc = D[c]
        sum_a_Dc = 0.0
        for i in range(x0.shape[0]):
            sum_a_Dc += a[i] * Dc[i]
        grad_W2[j, c] += sum_a_Dc
    return sum_dz, sum_x0_dz


# The backward kernel loops over all hidden units: a call per pair passed
# its ~85 words of arrays h / 2 times a tile (docs/kernels.md).

@kernel(JIT_ROW_SUM)
def _backward_units(XT, r0, T, W2, D, A, G, dz, grad_W1, grad_b1, grad_W2, wide, multi,
                    many):
    """For the hidden units two at a time, j and j + 1 (the last alone for
    an odd h): dz = (D W2[j]^T) g' (``_dz_unit``), then the row sums
    grad_b1[j] += sum dz, grad_W1[l, j] += sum X_t[:, l] dz,
    grad_W2[j, c] += sum a D[c]. Two units at once share every load of X
    and dz among six sums (three features x two units): on one thread at
    (100000, 10, 32) these loops took 3.6 ms an epoch against 5.2 one unit
    at a time (docs/kernels.md). With one unit the second set of sums
    repeats the first and is dropped."""
    wide_vectors()
    d = XT.shape[0]
    h = W2.shape[0]
    x0 = row_segment(XT, 0, r0, T)
    dz_a = segment(dz, 0, T)
    for j in range(0, h, 2):
        units = smaller(2, h - j)
        dz_b = segment(dz, T, T) if units == 2 else dz_a
        for u in range(units):
            # the flag picks one of the two before they are inlined: only its
            # IR is copied in (docs/kernels.md, "Compiling on demand")
            if multi is None:
                sum_dz, sum_x0_dz, sum_a_D0 = _dz_unit(x0, D[0], W2[j + u, 0], A[j + u],
                                                       G[j + u], dz_b if u else dz_a, wide)
                grad_W2[j + u, 0] += sum_a_D0
            else:
                sum_dz, sum_x0_dz = _dz_unit_multi(x0, D, W2, j + u, A[j + u], G[j + u],
                                                   dz_b if u else dz_a, grad_W2)
            grad_b1[j + u] += sum_dz
            grad_W1[0, j + u] += sum_x0_dz
        l = 1
        if many is not None:
            while l + 3 <= d:
                x_a = row_segment(XT, l, r0, T)
                x_b = row_segment(XT, l + 1, r0, T)
                x_c = row_segment(XT, l + 2, r0, T)
                s_a0 = 0.0
                s_b0 = 0.0
                s_c0 = 0.0
                s_a1 = 0.0
                s_b1 = 0.0
                s_c1 = 0.0
                for i in range(T):
                    p = dz_a[i]
                    q = dz_b[i]
                    s_a0 += x_a[i] * p
                    s_b0 += x_b[i] * p
                    s_c0 += x_c[i] * p
                    s_a1 += x_a[i] * q
                    s_b1 += x_b[i] * q
                    s_c1 += x_c[i] * q
                grad_W1[l, j] += s_a0
                grad_W1[l + 1, j] += s_b0
                grad_W1[l + 2, j] += s_c0
                if units == 2:
                    grad_W1[l, j + 1] += s_a1
                    grad_W1[l + 1, j + 1] += s_b1
                    grad_W1[l + 2, j + 1] += s_c1
                l += 3
        while l < d:
            x = row_segment(XT, l, r0, T)
            s_0 = 0.0
            s_1 = 0.0
            for i in range(T):
                s_0 += x[i] * dz_a[i]
                s_1 += x[i] * dz_b[i]
            grad_W1[l, j] += s_0
            if units == 2:
                grad_W1[l, j + 1] += s_1
            l += 1


@njit(inline="always", **JIT)
def tile_explicit(rows, r0, T, params, code, scale, first, tiles, wk, grads):
    """One tile of the T rows from r0 of rows = (XT, YT, w), with worker
    wk's buffers: adds its gradients to grads (W1 d x h), returns its
    weighted sum of squared residuals. (``first``: unused here; the GEMM
    tile writes its first product instead of adding it.)"""
    XT, YT, w = rows
    W1, b1, W2, b2 = params
    h = W1.shape[1]
    k = W2.shape[1]
    G = rows_view(tiles.G[wk], h, T)        # g'(z1)
    A = rows_view(tiles.A[wk], h, T)        # a1
    R = rows_view(tiles.R[wk], k, T)        # yhat, then dL/dyhat
    dz = segment(tiles.dz[wk], 0, 2 * T)
    grad_W1, grad_b1, grad_W2, grad_b2 = grads
    # the record's flags as constants, which the kernels prune by
    wide, multi = constant_flag(tiles.wide), constant_flag(tiles.multi)
    many = constant_flag(tiles.many)
    for c in range(k):
        R[c, :] = b2[c]
    for j in range(h):
        _forward_unit(XT, r0, T, W1, b1, W2, j, code, A[j], G[j], R, wide, multi, many)
    loss = 0.0
    w_t = segment(w, r0, T)
    for c in range(k):
        loss_c, sum_D = residual(R[c], row_segment(YT, c, r0, T), w_t, scale)
        loss += loss_c
        grad_b2[c] += sum_D
    _backward_units(XT, r0, T, W2, R, A, G, dz, grad_W1, grad_b1, grad_W2, wide, multi,
                    many)
    return loss

