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
from .jit import JIT, JIT_ROW_SUM
from .rows import residual


@njit(inline="always", **JIT)
def _forward_last(x, w, bias, accumulate, a, g, yhat0, w2, code):
    """The last feature's pass of z1_j: z = (g[i] if accumulate else bias) + w x[i];
    a = g(z), g = g'(z); yhat0 += w2 a."""
    # two loops rather than one reading a second name for g: LLVM's runtime
    # overlap check would fail on the alias and run the scalar loop
    if accumulate:
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


@njit(**JIT)
def _forward_unit(XT, r0, T, W1, b1, W2, j, code, a, g, yhat):
    """z1_j = X_t W1[:, j] + b1[j], a = g(z1_j), g = g'(z1_j); yhat += a W2[j, :]."""
    d = XT.shape[0]
    k = W2.shape[1]
    bias = b1[j]
    if d > 1:
        # z1_j accumulates in g over the first d - 1 features, in feature
        # order, four features a pass to spare loads and stores of g
        w = W1[0, j]
        x = XT[0, r0:r0 + T]
        for i in range(T):
            g[i] = bias + w * x[i]
        l = 1
        while l + 4 <= d - 1:
            w_a, w_b, w_c, w_d = W1[l, j], W1[l + 1, j], W1[l + 2, j], W1[l + 3, j]
            x_a = XT[l, r0:r0 + T]
            x_b = XT[l + 1, r0:r0 + T]
            x_c = XT[l + 2, r0:r0 + T]
            x_d = XT[l + 3, r0:r0 + T]
            for i in range(T):
                g[i] = (((g[i] + w_a * x_a[i]) + w_b * x_b[i]) + w_c * x_c[i]) + w_d * x_d[i]
            l += 4
        while l < d - 1:
            w = W1[l, j]
            x = XT[l, r0:r0 + T]
            for i in range(T):
                g[i] += w * x[i]
            l += 1
    x = XT[d - 1, r0:r0 + T]
    w = W1[d - 1, j]
    w2 = W2[j, 0]
    accumulate = d > 1
    _forward_last(x, w, bias, accumulate, a, g, yhat[0], w2, code)
    for c in range(1, k):
        w2 = W2[j, c]
        yhat_c = yhat[c]
        for i in range(T):
            yhat_c[i] += w2 * a[i]


@njit(**JIT_ROW_SUM)
def _backward_unit(XT, r0, T, W2, j, D, a, g, dz, grad_W1, grad_b1, grad_W2):
    """dz = (sum_c D[c] W2[j, c]) g, then the row sums
    grad_b1[j] += sum dz, grad_W1[l, j] += sum X_t[:, l] dz, grad_W2[j, c] += sum a D[c]."""
    d = XT.shape[0]
    k = W2.shape[1]
    x0 = XT[0, r0:r0 + T]
    D0 = D[0]
    w2 = W2[j, 0]
    sum_dz = 0.0
    sum_x0_dz = 0.0
    if k == 1:
        sum_a_D0 = 0.0
        if d == 1:
            for i in range(T):
                dzi = (w2 * D0[i]) * g[i]
                sum_dz += dzi
                sum_x0_dz += x0[i] * dzi
                sum_a_D0 += a[i] * D0[i]
        else:
            for i in range(T):
                dzi = (w2 * D0[i]) * g[i]
                dz[i] = dzi
                sum_dz += dzi
                sum_x0_dz += x0[i] * dzi
                sum_a_D0 += a[i] * D0[i]
        grad_W2[j, 0] += sum_a_D0
    else:
        for i in range(T):
            dz[i] = w2 * D0[i]
        for c in range(1, k):
            w2 = W2[j, c]
            Dc = D[c]
            for i in range(T):
                dz[i] += w2 * Dc[i]
        for i in range(T):
            dzi = dz[i] * g[i]
            dz[i] = dzi
            sum_dz += dzi
            sum_x0_dz += x0[i] * dzi
        for c in range(k):
            Dc = D[c]
            sum_a_Dc = 0.0
            for i in range(T):
                sum_a_Dc += a[i] * Dc[i]
            grad_W2[j, c] += sum_a_Dc
    grad_b1[j] += sum_dz
    grad_W1[0, j] += sum_x0_dz
    # the other features four at a time: one load of dz for four sums
    l = 1
    while l + 4 <= d:
        x_a = XT[l, r0:r0 + T]
        x_b = XT[l + 1, r0:r0 + T]
        x_c = XT[l + 2, r0:r0 + T]
        x_d = XT[l + 3, r0:r0 + T]
        sum_a = 0.0
        sum_b = 0.0
        sum_c = 0.0
        sum_d = 0.0
        for i in range(T):
            dzi = dz[i]
            sum_a += x_a[i] * dzi
            sum_b += x_b[i] * dzi
            sum_c += x_c[i] * dzi
            sum_d += x_d[i] * dzi
        grad_W1[l, j] += sum_a
        grad_W1[l + 1, j] += sum_b
        grad_W1[l + 2, j] += sum_c
        grad_W1[l + 3, j] += sum_d
        l += 4
    while l < d:
        x = XT[l, r0:r0 + T]
        sum_x_dz = 0.0
        for i in range(T):
            sum_x_dz += x[i] * dz[i]
        grad_W1[l, j] += sum_x_dz
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
    G = tiles.G[wk][:h * T].reshape((h, T))        # g'(z1)
    A = tiles.A[wk][:h * T].reshape((h, T))        # a1
    R = tiles.R[wk][:k * T].reshape((k, T))        # yhat, then dL/dyhat
    dz = tiles.dz[wk][:T]
    grad_W1, grad_b1, grad_W2, grad_b2 = grads
    for c in range(k):
        R[c, :] = b2[c]
    for j in range(h):
        _forward_unit(XT, r0, T, W1, b1, W2, j, code, A[j], G[j], R)
    loss = 0.0
    w_t = w[r0:r0 + T]
    for c in range(k):
        loss_c, sum_D = residual(R[c], YT[c, r0:r0 + T], w_t, scale)
        loss += loss_c
        grad_b2[c] += sum_D
    for j in range(h):
        _backward_unit(XT, r0, T, W2, j, R, A[j], G[j], dz, grad_W1, grad_b1, grad_W2)
    return loss

