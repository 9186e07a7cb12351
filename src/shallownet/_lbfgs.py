"""L-BFGS over the packed parameters: SciPy's L-BFGS-B, as scikit-learn runs it.

``evaluate(params) -> (loss, Params grads)`` is the only access to the data,
so the same driver serves a local fit, a distributed one
(``shallownet.dask``), where each evaluation is one pass over the parts, and
the scikit-learn drop-in (``shallownet.neural_network``).

As scikit-learn runs it: the parameters are packed in its order (every
layer's coefficients, then every layer's intercepts: W1, W2, b1, b2), in
the parameters' dtype; SciPy iterates in float64 but evaluates at points
cast to the start's dtype (float32 parameters are evaluated at float32
points, as in scikit-learn); the options are ``maxfun``, ``maxiter``,
``gtol=tol``, and ``iprint`` for SciPy releases that still read it.

By default ``minimize_packed`` runs ``shallownet._cython_lbfgs``: SciPy's
L-BFGS-B iteration for variables without bounds, compiled (its step
choices, line search, update rule, stopping tests, counts and messages),
taking the same iterates up to rounding (tests/test_lbfgs.py)
without SciPy's ~60 us of ``setulb`` calls and Python an iteration
(docs/dropin.md). ``engine="scipy"`` runs SciPy's own, also where the
extension is missing: where SciPy's L-BFGS-B is the C routine ``setulb``
(SciPy 1.15 to 1.17, ``_SETULB_LOOP``) in a loop of its own, the loop of
``scipy.optimize.minimize`` without its per-evaluation wrappers, the same
calls with the same arguments, so the same iterates bit for bit; other
releases run ``minimize`` itself.
"""

from typing import Any, NamedTuple

import numpy as np
import scipy

from ._params import Params

_SCIPY = tuple(int(p) for p in scipy.__version__.split(".")[:2])
# SciPy 1.15 dropped L-BFGS-B's iprint option (it warns when given)
_SCIPY_READS_IPRINT = _SCIPY < (1, 15)
# the releases whose minimize runs the C setulb in the loop _setulb_loop
# repeats (1.14 and older: Fortran, another signature; later: not yet read)
_SETULB_LOOP = (1, 15) <= _SCIPY < (1, 18)
# L-BFGS-B's options that scikit-learn leaves at minimize's defaults:
# corrections kept, ftol, line-search steps
_CORRECTIONS, _FTOL, _MAX_LINE_SEARCH = 10, 2.2204460492503131e-09, 20
# the messages of SciPy 1.15+ for the tasks a run without bounds ends on
_MESSAGES = {(4, 401): "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
             (4, 402): "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
             (5, 502): "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
             (5, 504): "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
             (5, 505): "STOP: CALLBACK REQUESTED HALT",
             (8, 0): "ABNORMAL: "}
ENGINES = ("compiled", "scipy")


class LbfgsResult(NamedTuple):
    params: Params           # the last iterate, in the dtype of the starting params
    loss_curve: np.ndarray   # float64 (n_iter,): the loss after each iteration
    initial_loss: float      # the loss at the starting params
    n_iter: int              # iterations taken
    n_fun: int               # evaluations of the loss and gradients
    converged: bool          # SciPy's success flag (False on max_iter, max_fun or a callback stop)
    message: str
    optimize_result: Any     # SciPy's OptimizeResult (x: the float64 iterate, packed; status)


def pack(params):
    """One vector, W1, W2, b1, b2 raveled (scikit-learn's order), in their common dtype."""
    W1, b1, W2, b2 = params
    return np.concatenate([np.ravel(W1), np.ravel(W2), np.ravel(b1), np.ravel(b2)])


def unpack(vector, like):
    """Params shaped and typed as ``like`` from a packed vector (fresh arrays)."""
    W1, b1, W2, b2 = like
    ends = np.cumsum([W1.size, W2.size, b1.size, b2.size])
    pieces = np.split(np.asarray(vector), ends[:-1])
    return Params(*(np.ascontiguousarray(piece.reshape(p.shape), dtype=p.dtype)
                    for piece, p in zip((pieces[0], pieces[2], pieces[1], pieces[3]), like)))


def packed_loss(evaluate, like):
    """The packed form ``loss(x, out, scale) -> L`` that ``run_lbfgs`` takes,
    over ``evaluate(params) -> (L, grads)`` on Params shaped and typed as
    ``like``."""
    def loss(x, out, scale):
        value, grads = evaluate(unpack(x, like))
        np.multiply(pack(grads), scale, out=out)
        return value
    return loss


def run_lbfgs(loss_at, params, *, max_iter, max_fun, tol, callback=None, iprint=-1,
              check_finite=True):
    """Minimise the loss from ``params`` with L-BFGS-B (no bounds).

    ``loss_at(x, out, scale) -> L`` evaluates on packed vectors in the
    parameters' dtype (``shallownet.backends.open_packed_loss``), its
    gradients times ``scale`` into ``out``.

    ``max_iter`` and ``max_fun`` cap the iterations and the evaluations;
    ``tol`` is SciPy's ``gtol`` (the largest gradient entry at which to stop),
    as in scikit-learn's ``solver="lbfgs"``. ``callback(iteration, loss,
    params) -> bool`` is called after each iteration; True stops. ``iprint``
    is scikit-learn's (1 when verbose, else -1), passed to SciPy releases
    that read it. Raises FloatingPointError when the loss at the last
    iterate is not finite, unless ``check_finite`` is False (scikit-learn
    checks the weights instead).
    """
    like = Params(*params)
    dtype = like.W1.dtype
    losses = []

    def fun(vector):
        # SciPy's float64 point in the parameters' dtype, as unpack would cast it
        x = np.ascontiguousarray(vector, dtype=dtype)
        grad = np.empty_like(x)
        loss = float(loss_at(x, grad, 1.0))
        if not losses:
            losses.append(loss)
        return loss, grad.astype(np.float64, copy=False)

    def on_iteration(x, loss):
        loss = float(loss)
        losses.append(loss)
        return callback is not None and callback(len(losses) - 2, loss, unpack(x, like))

    result = minimize_packed(fun, pack(like), max_iter=max_iter, max_fun=max_fun, tol=tol,
                             iprint=iprint, callback=on_iteration)
    # a trial point of the line search may overflow (the search backs off);
    # the point it ends on may not
    if check_finite and not np.isfinite(result.fun):
        raise FloatingPointError(f"L-BFGS diverged: the loss became {result.fun:g}; scale X and y")
    return LbfgsResult(unpack(result.x, like), np.asarray(losses[1:], dtype=np.float64), losses[0],
                       int(result.nit), int(result.nfev), bool(result.success),
                       str(result.message), result)


def minimize_packed(fun, x0, *, max_iter, max_fun, tol, iprint=-1, callback=None,
                    engine="compiled"):
    """SciPy's L-BFGS-B from the packed vector ``x0``, as scikit-learn calls
    it: ``fun(x) -> (loss, gradient)`` on packed vectors in ``x0``'s dtype
    (it must not modify ``x``), the options above; returns an
    OptimizeResult as SciPy's (no ``hess_inv``). ``callback(x, loss) -> bool``
    after each iteration, on the float64 iterate; True stops. ``engine``:
    ``"compiled"`` (SciPy's iteration, compiled; SciPy's own where the
    extension is missing) or ``"scipy"``. ``iprint`` reaches SciPy releases
    that still read it."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "compiled":
        try:
            from . import _cython_lbfgs
        except ImportError:
            pass
        else:
            return _compiled(_cython_lbfgs, fun, x0, max_iter, max_fun, tol, callback)
    if _SETULB_LOOP:
        return _setulb_loop(fun, x0, max_iter, max_fun, tol, callback)
    from scipy.optimize import minimize  # SciPy's optimizer module: only when used

    def on_iteration(intermediate_result):
        if callback(intermediate_result.x, intermediate_result.fun):
            raise StopIteration

    options = dict(maxiter=max_iter, maxfun=max_fun, gtol=tol)
    if _SCIPY_READS_IPRINT:
        options["iprint"] = iprint
    # without a callback (scikit-learn passes none) SciPy builds no
    # intermediate result per iteration
    return minimize(fun, x0, jac=True, method="L-BFGS-B",
                    callback=None if callback is None else on_iteration, options=options)


def _compiled(kernels, fun, x0, max_iter, max_fun, tol, callback):
    """``kernels.minimize`` with SciPy's options and result."""
    x, f, g, n_fun, n_iter, task = kernels.minimize(
        fun, x0, _CORRECTIONS, int(max_iter), int(max_fun), float(tol), _FTOL,
        _MAX_LINE_SEARCH, callback)
    return _result(x, f, g, n_fun, n_iter, task[0], _MESSAGES[tuple(task)],
                   tuple(task) == (5, 505), max_iter, max_fun)


def _result(x, f, g, n_fun, n_iter, task_status, message, stopped, max_iter, max_fun):
    """SciPy's OptimizeResult for a run without bounds that ended on a task
    of status ``task_status`` (4: converged), ``stopped`` by the callback."""
    from scipy.optimize import OptimizeResult

    if task_status == 4:
        status = 0
    elif n_fun > max_fun or n_iter >= max_iter:
        status = 1
    else:
        status = 2
    if stopped:                               # as minimize reports a callback's stop
        status, message = 99, "`callback` raised `StopIteration`."
    return OptimizeResult(fun=f, jac=g, nfev=n_fun, njev=n_fun, nit=n_iter, status=status,
                          message=message, x=x, success=status == 0)


def _setulb_loop(fun, x0, max_iter, max_fun, tol, callback):
    """``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")``
    without bounds, as SciPy 1.15-1.17 run it: the same setulb calls on the
    same arrays, an evaluation wherever SciPy's memoised function makes one
    (at the start, then at each requested point that differs from the last
    one evaluated), the point cast to x0's dtype as SciPy's ScalarFunction
    casts it, the same stopping tests, counts and message."""
    from scipy.optimize import _lbfgsb
    from scipy.optimize._lbfgsb_py import status_messages, task_messages

    x0 = np.asarray(x0).ravel()
    dtype = x0.dtype if x0.dtype.kind == "f" else np.dtype(np.float64)
    n, m = x0.size, _CORRECTIONS
    point = x0.astype(dtype)                  # the point last evaluated, in its dtype
    value, grad = fun(point)
    n_fun = 1
    x = np.array(x0, dtype=np.float64)
    f = np.array(0.0)
    g = np.zeros(n)
    unbounded = np.zeros(n, np.int32)         # nbd: no bound on any variable
    lower, upper = np.zeros(n), np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, np.int32)
    task, ln_task = np.zeros(2, np.int32), np.zeros(2, np.int32)
    lsave, isave, dsave = np.zeros(4, np.int32), np.zeros(44, np.int32), np.zeros(29)
    factr = _FTOL / np.finfo(float).eps
    n_iter = 0
    stopped = False                           # by the callback
    while True:
        g = np.array(g, dtype=np.float64)     # a float64 copy: setulb's own
        _lbfgsb.setulb(m, x, lower, upper, unbounded, f, g, factr, tol, wa, iwa, task,
                       lsave, isave, dsave, _MAX_LINE_SEARCH, ln_task)
        if task[0] == 3:                      # the loss and gradients at x
            if not np.array_equal(x, point):
                point = x.astype(dtype)
                value, grad = fun(point)
                n_fun += 1
            f, g = value, grad
        elif task[0] == 1:                    # an iteration ended
            n_iter += 1
            if callback is not None and callback(x, f):
                stopped = True
                task[:] = 5, 505
            if n_iter >= max_iter:
                task[:] = 5, 504
            elif n_fun > max_fun:
                task[:] = 5, 502
        else:
            break
    return _result(x, f, g, n_fun, n_iter, task[0],
                   status_messages[task[0]] + ": " + task_messages[task[1]], stopped,
                   max_iter, max_fun)
