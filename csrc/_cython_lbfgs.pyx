"""L-BFGS-B on a problem without bounds, compiled: SciPy's iteration.

For variables without bounds, L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995;
SciPy's ``setulb``) reduces to L-BFGS: its generalized Cauchy point and
subspace minimisation give the quasi-Newton step ``-H g`` of the compact
limited-memory matrix, which equals the two-loop recursion's with
``H0 = (s'y / y'y) I`` (Byrd, Nocedal and Schnabel 1994). This module runs
that iteration step for step as SciPy 1.15-1.17 run it for
``scipy.optimize.minimize(method="L-BFGS-B")`` without bounds: the first
step ``1 / ||d||``, then 1; the Moré-Thuente line search with L-BFGS-B's
constants (``ftol=1e-3``, ``gtol=0.9``, ``xtol=0.1``, steps in [0, 1e10]),
at most ``max_line_search`` trial points, a failed search retried once from
steepest descent with the memory cleared; the update skipped when
``s'y <= eps * (-g's)``; the driver's order of tests (callback, ``maxiter``,
``maxfun``, then the gradient's largest entry and the relative reduction of
the loss); an evaluation wherever SciPy's memoised function makes one.

What differs is rounding only: the recursion and the compact form order
their sums differently (the tests state by how much, docs/dropin.md). What
is gained is SciPy's ~60 us of ``setulb`` calls and Python an iteration
(docs/dropin.md, "L-BFGS on diabetes").
"""

from libc.math cimport fabs, sqrt
from libc.string cimport memcpy

import numpy as np

# L-BFGS-B's line search constants (lnsrlb) and machine epsilon
cdef double SEARCH_FTOL = 1e-3, SEARCH_GTOL = 0.9, SEARCH_XTOL = 0.1
cdef double STEP_MIN = 0.0, STEP_MAX = 1e10
cdef double EPSILON = 2.220446049250313e-16

# What a run ended on: SciPy's task codes (scipy.optimize._lbfgsb_py)
CONVERGED_GRADIENT = (4, 401)
CONVERGED_REDUCTION = (4, 402)
STOPPED_MAX_FUN = (5, 502)
STOPPED_MAX_ITER = (5, 504)
STOPPED_CALLBACK = (5, 505)
ABNORMAL = (8, 0)


cdef enum SearchTask:
    SEARCH_EVALUATE = 0     # evaluate at the new step and call again
    SEARCH_CONVERGED = 1    # sufficient decrease and curvature hold
    SEARCH_WARNING = 2      # no progress possible: take the best step


cdef struct Search:
    # the Moré-Thuente search's state (dcsrch): the interval [stx, sty]
    # around a step that satisfies both conditions, with the loss and the
    # directional derivative at its ends
    bint bracketed
    int stage
    double finit, ginit, gtest
    double stx, fx, gx, sty, fy, gy
    double stmin, stmax, width, width1


cdef void search_start(Search *s, double f, double g, double stp) noexcept nogil:
    s.bracketed = False
    s.stage = 1
    s.finit, s.ginit = f, g
    s.gtest = SEARCH_FTOL * g
    s.width = STEP_MAX - STEP_MIN
    s.width1 = s.width / 0.5
    s.stx, s.fx, s.gx = 0.0, f, g
    s.sty, s.fy, s.gy = 0.0, f, g
    s.stmin = 0.0
    s.stmax = stp + 4.0 * stp


cdef SearchTask search_step(Search *s, double f, double g, double *stp) noexcept nogil:
    """One call of the search with the loss ``f`` and derivative ``g`` at
    ``stp[0]``; sets the next trial step when it returns SEARCH_EVALUATE."""
    cdef double ftest = s.finit + stp[0] * s.gtest
    cdef double fm, fxm, fym, gm, gxm, gym
    cdef SearchTask task = SEARCH_EVALUATE
    if s.stage == 1 and f <= ftest and g >= 0.0:
        s.stage = 2
    if s.bracketed and (stp[0] <= s.stmin or stp[0] >= s.stmax):
        task = SEARCH_WARNING          # rounding errors prevent progress
    if s.bracketed and s.stmax - s.stmin <= SEARCH_XTOL * s.stmax:
        task = SEARCH_WARNING          # the interval is below xtol
    if stp[0] == STEP_MAX and f <= ftest and g <= s.gtest:
        task = SEARCH_WARNING
    if stp[0] == STEP_MIN and (f > ftest or g >= s.gtest):
        task = SEARCH_WARNING
    if f <= ftest and fabs(g) <= SEARCH_GTOL * (-s.ginit):
        task = SEARCH_CONVERGED
    if task != SEARCH_EVALUATE:
        return task

    if s.stage == 1 and f <= s.fx and f > ftest:
        # the modified function (the loss minus its sufficient-decrease line)
        # while no step has met the first condition with a rising derivative
        fm, fxm, fym = f - stp[0] * s.gtest, s.fx - s.stx * s.gtest, s.fy - s.sty * s.gtest
        gm, gxm, gym = g - s.gtest, s.gx - s.gtest, s.gy - s.gtest
        next_step(&s.stx, &fxm, &gxm, &s.sty, &fym, &gym, stp, fm, gm, &s.bracketed,
                  s.stmin, s.stmax)
        s.fx, s.fy = fxm + s.stx * s.gtest, fym + s.sty * s.gtest
        s.gx, s.gy = gxm + s.gtest, gym + s.gtest
    else:
        next_step(&s.stx, &s.fx, &s.gx, &s.sty, &s.fy, &s.gy, stp, f, g, &s.bracketed,
                  s.stmin, s.stmax)

    if s.bracketed:
        # bisect when the interval has not shrunk enough over two steps
        if fabs(s.sty - s.stx) >= 0.66 * s.width1:
            stp[0] = s.stx + 0.5 * (s.sty - s.stx)
        s.width1 = s.width
        s.width = fabs(s.sty - s.stx)
        s.stmin, s.stmax = min(s.stx, s.sty), max(s.stx, s.sty)
    else:
        s.stmin = stp[0] + 1.1 * (stp[0] - s.stx)
        s.stmax = stp[0] + 4.0 * (stp[0] - s.stx)
    stp[0] = min(max(stp[0], STEP_MIN), STEP_MAX)
    if (s.bracketed and (stp[0] <= s.stmin or stp[0] >= s.stmax)
            or s.bracketed and s.stmax - s.stmin <= SEARCH_XTOL * s.stmax):
        stp[0] = s.stx                 # no better step can be told apart: the best one
    return SEARCH_EVALUATE


cdef double cubic_root(double theta, double da, double db, bint clamp) noexcept nogil:
    """The square root in the minimiser of the cubic through two points,
    scaled by the largest magnitude against overflow; its argument clamped
    at 0 where rounding may take it below (a shrinking derivative)."""
    cdef double s = max(fabs(theta), fabs(da), fabs(db))
    cdef double q = (theta / s) * (theta / s) - (da / s) * (db / s)
    if clamp:
        q = max(0.0, q)
    return s * sqrt(q)


cdef void next_step(double *stx, double *fx, double *dx, double *sty, double *fy, double *dy,
                    double *stp, double fp, double dp, bint *bracketed,
                    double stpmin, double stpmax) noexcept nogil:
    """The safeguarded trial step of the search (dcstep): a cubic or
    secant step from the interval's ends and the new point, kept inside
    the interval; then the interval updated with the new point."""
    cdef double sgnd = dp * (dx[0] / fabs(dx[0]))
    cdef double theta, gamma, p, q, r, stpc, stpq, stpf
    if fp > fx[0]:
        # a higher loss: a minimum lies between; the cubic or the quadratic step
        theta = 3.0 * (fx[0] - fp) / (stp[0] - stx[0]) + dx[0] + dp
        gamma = cubic_root(theta, dx[0], dp, False)
        if stp[0] < stx[0]:
            gamma = -gamma
        p = (gamma - dx[0]) + theta
        q = ((gamma - dx[0]) + gamma) + dp
        r = p / q
        stpc = stx[0] + r * (stp[0] - stx[0])
        stpq = stx[0] + ((dx[0] / ((fx[0] - fp) / (stp[0] - stx[0]) + dx[0])) / 2.0) \
            * (stp[0] - stx[0])
        if fabs(stpc - stx[0]) < fabs(stpq - stx[0]):
            stpf = stpc
        else:
            stpf = stpc + (stpq - stpc) / 2.0
        bracketed[0] = True
    elif sgnd < 0.0:
        # a lower loss and derivatives of opposite signs: bracketed too
        theta = 3.0 * (fx[0] - fp) / (stp[0] - stx[0]) + dx[0] + dp
        gamma = cubic_root(theta, dx[0], dp, False)
        if stp[0] > stx[0]:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx[0]
        r = p / q
        stpc = stp[0] + r * (stx[0] - stp[0])
        stpq = stp[0] + (dp / (dp - dx[0])) * (stx[0] - stp[0])
        if fabs(stpc - stp[0]) > fabs(stpq - stp[0]):
            stpf = stpc
        else:
            stpf = stpq
        bracketed[0] = True
    elif fabs(dp) < fabs(dx[0]):
        # a lower loss, same signs, the derivative shrinking in magnitude
        theta = 3.0 * (fx[0] - fp) / (stp[0] - stx[0]) + dx[0] + dp
        gamma = cubic_root(theta, dx[0], dp, True)
        if stp[0] > stx[0]:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx[0] - dp)) + gamma
        r = p / q
        if r < 0.0 and gamma != 0.0:
            stpc = stp[0] + r * (stx[0] - stp[0])
        elif stp[0] > stx[0]:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp[0] + (dp / (dp - dx[0])) * (stx[0] - stp[0])
        if bracketed[0]:
            stpf = stpc if fabs(stpc - stp[0]) < fabs(stpq - stp[0]) else stpq
            if stp[0] > stx[0]:
                stpf = min(stp[0] + 0.66 * (sty[0] - stp[0]), stpf)
            else:
                stpf = max(stp[0] + 0.66 * (sty[0] - stp[0]), stpf)
        else:
            stpf = stpc if fabs(stpc - stp[0]) > fabs(stpq - stp[0]) else stpq
            stpf = min(stpmax, stpf)
            stpf = max(stpmin, stpf)
    else:
        # a lower loss, same signs, the derivative not shrinking
        if bracketed[0]:
            theta = 3.0 * (fp - fy[0]) / (sty[0] - stp[0]) + dy[0] + dp
            gamma = cubic_root(theta, dy[0], dp, False)
            if stp[0] > sty[0]:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy[0]
            r = p / q
            stpf = stp[0] + r * (sty[0] - stp[0])
        elif stp[0] > stx[0]:
            stpf = stpmax
        else:
            stpf = stpmin

    if fp > fx[0]:
        sty[0], fy[0], dy[0] = stp[0], fp, dp
    else:
        if sgnd < 0.0:
            sty[0], fy[0], dy[0] = stx[0], fx[0], dx[0]
        stx[0], fx[0], dx[0] = stp[0], fp, dp
    stp[0] = stpf


# -- vectors -------------------------------------------------------------------
# csrc/_lbfgs_vectors.h: built per ISA, the same bits on each

cdef extern from "_lbfgs_vectors.h" nogil:
    double dot "sn_lbfgs_dot"(const double *a, const double *b, Py_ssize_t n)
    double largest_magnitude "sn_lbfgs_max_abs"(const double *a, Py_ssize_t n)
    void axpy "sn_lbfgs_axpy"(double a, const double *x, double *y, Py_ssize_t n)
    void scale "sn_lbfgs_scale"(double a, double *x, Py_ssize_t n)
    void step "sn_lbfgs_step"(double *x, double stp, const double *d, const double *t,
                              Py_ssize_t n)
    void pair "sn_lbfgs_pair"(double *s, double *y, double stp, const double *d,
                              const double *g, const double *g_old, Py_ssize_t n)


cdef void direction(double *d, const double *g, const double *S, const double *Y,
                    const double *rho, double *alpha, int head, int col, int m,
                    double gamma, Py_ssize_t n) noexcept nogil:
    """``d = -H g``: the two-loop recursion over the ``col`` stored pairs,
    oldest at ``head`` in the rings S and Y, with ``H0 = gamma I``."""
    cdef int c, slot
    cdef double beta
    memcpy(d, g, n * sizeof(double))
    scale(-1.0, d, n)
    for c in range(col - 1, -1, -1):
        slot = (head + c) % m
        alpha[slot] = rho[slot] * dot(S + slot * n, d, n)
        axpy(-alpha[slot], Y + slot * n, d, n)
    scale(gamma, d, n)
    for c in range(col):
        slot = (head + c) % m
        beta = rho[slot] * dot(Y + slot * n, d, n)
        axpy(alpha[slot] - beta, S + slot * n, d, n)


cdef class _Memo:
    """``fun`` at the points the run asks for, as SciPy's memoised
    function calls it: at a point cast to the start's dtype, again only
    when the point differs from the last one evaluated."""
    cdef object fun, dtype
    cdef double[::1] last, last_g
    cdef double last_f
    cdef public long n_fun

    def __init__(self, fun, dtype, Py_ssize_t n):
        self.fun, self.dtype = fun, dtype
        self.last, self.last_g = np.empty(n), np.empty(n)
        self.n_fun = 0

    cdef double evaluate(self, x_array, double *x, double *g, Py_ssize_t n) except? -1.0:
        """The loss at ``x`` (the data of ``x_array``), its gradient written to ``g``."""
        cdef Py_ssize_t i
        cdef double[::1] evaluated, gradient
        if self.n_fun:
            for i in range(n):
                if x[i] != self.last[i]:
                    break
            else:
                memcpy(g, &self.last_g[0], n * sizeof(double))
                return self.last_f
        point = x_array.astype(self.dtype)
        value, grad = self.fun(point)
        self.n_fun += 1
        evaluated = np.asarray(point, dtype=np.float64)
        gradient = np.ascontiguousarray(grad, dtype=np.float64).ravel()
        if gradient.shape[0] != n:
            raise ValueError(f"the gradient has {gradient.shape[0]} entries, the point {n}")
        memcpy(&self.last[0], &evaluated[0], n * sizeof(double))
        memcpy(&self.last_g[0], &gradient[0], n * sizeof(double))
        memcpy(g, &gradient[0], n * sizeof(double))
        self.last_f = float(value)
        return self.last_f


def minimize(fun, x0, int m, long max_iter, long max_fun, double gtol, double ftol,
             int max_line_search, callback=None):
    """Minimise ``fun`` from ``x0``: ``fun(x) -> (loss, gradient)`` at
    points in ``x0``'s dtype (fresh arrays), ``m`` corrections kept, SciPy's
    ``maxiter``, ``maxfun``, ``gtol``, ``ftol`` and ``maxls``;
    ``callback(x, loss) -> bool`` after each iteration, True stops.

    Returns ``(x, loss, gradient, n_fun, n_iter, task)``: the float64 iterate,
    the loss and gradient there, the evaluations and iterations made, and
    the (status, message) codes of SciPy's task on which the run ended.
    """
    x0 = np.asarray(x0).ravel()
    cdef Py_ssize_t n = x0.shape[0]
    dtype = x0.dtype if x0.dtype.kind == "f" else np.dtype(np.float64)
    x_array = np.array(x0, dtype=np.float64)
    cdef double[::1] x = x_array
    cdef double[::1] g = np.zeros(n), d = np.empty(n), t = np.empty(n), r = np.empty(n)
    cdef double[:, ::1] S = np.zeros((m, n)), Y = np.zeros((m, n))
    cdef double[::1] rho = np.zeros(m), alpha = np.zeros(m)
    cdef _Memo memo = _Memo(fun, dtype, n)
    # the relative reduction of the loss at which to stop, as L-BFGS-B forms it
    cdef double tol = (ftol / EPSILON) * EPSILON
    cdef double f, fold, gd, gdold, stp, dr, ddum, rr, gamma = 1.0
    cdef int head = 0, col = 0, slot, ifun
    cdef long n_iter = 0
    cdef bint failed
    cdef SearchTask found
    cdef Search search

    if n < 1 or m < 1:
        raise ValueError(f"need a point and a memory of at least one entry, got {n} and {m}")
    f = memo.evaluate(x_array, &x[0], &g[0], n)
    if largest_magnitude(&g[0], n) <= gtol:
        return x_array, f, np.asarray(g), memo.n_fun, n_iter, CONVERGED_GRADIENT
    while True:
        if col == 0:
            memcpy(&d[0], &g[0], n * sizeof(double))
            scale(-1.0, &d[0], n)            # steepest descent: H = I
        else:
            direction(&d[0], &g[0], &S[0, 0], &Y[0, 0], &rho[0], &alpha[0], head, col, m,
                      gamma, n)
        # the line search from x along d (lnsrlb): the first step 1/||d||
        stp = min(1.0 / sqrt(dot(&d[0], &d[0], n)), STEP_MAX) if n_iter == 0 else 1.0
        memcpy(&t[0], &x[0], n * sizeof(double))
        memcpy(&r[0], &g[0], n * sizeof(double))
        fold = f
        gd = gdold = dot(&g[0], &d[0], n)
        failed = gd >= 0.0                   # not a descent direction
        if not failed:
            search_start(&search, f, gd, stp)
            ifun = 0
            while True:
                ifun += 1
                if ifun - 1 >= max_line_search:
                    failed = True
                    break
                step(&x[0], stp, &d[0], &t[0], n)
                f = memo.evaluate(x_array, &x[0], &g[0], n)
                gd = dot(&g[0], &d[0], n)
                found = search_step(&search, f, gd, &stp)
                if found != SEARCH_EVALUATE:
                    break
        if failed:
            memcpy(&x[0], &t[0], n * sizeof(double))
            memcpy(&g[0], &r[0], n * sizeof(double))
            f = fold
            if col == 0:
                return x_array, f, np.asarray(g), memo.n_fun, n_iter, ABNORMAL
            col, head, gamma = 0, 0, 1.0     # clear the memory, try steepest descent
            continue
        n_iter += 1
        # the driver's tests, then L-BFGS-B's own, in SciPy's order
        task = None
        if callback is not None and callback(x_array.copy(), f):
            task = STOPPED_CALLBACK          # reported as such whatever else holds
        elif n_iter >= max_iter:
            task = STOPPED_MAX_ITER
        elif memo.n_fun > max_fun:
            task = STOPPED_MAX_FUN
        if task is None and largest_magnitude(&g[0], n) <= gtol:
            task = CONVERGED_GRADIENT
        if task is None and fold - f <= tol * max(fabs(fold), fabs(f), 1.0):
            task = CONVERGED_REDUCTION
        if task is not None:
            return x_array, f, np.asarray(g), memo.n_fun, n_iter, task
        # the pair (s, y) = (stp d, g - g_old), skipped unless s'y > eps (-g_old's)
        if stp == 1.0:
            dr, ddum = gd - gdold, -gdold
        else:
            dr, ddum = (gd - gdold) * stp, -gdold * stp
        if dr <= EPSILON * ddum:
            continue
        slot = (head + col) % m
        if col == m:
            head = (head + 1) % m
        else:
            col += 1
        pair(&S[slot, 0], &Y[slot, 0], stp, &d[0], &g[0], &r[0], n)
        rr = dot(&Y[slot, 0], &Y[slot, 0], n)
        rho[slot] = 1.0 / dr
        gamma = dr / rr
