"""The table of backends: one name, one module, one contract.

A backend is a module with these functions, called only with validated
input (X and Y C-contiguous, 2-D, finite, of one float dtype, float32 or
float64; sample_weight (n,) finite, non-negative, positive sum, same dtype;
the parameters and optimizer state private C-contiguous arrays in that dtype):

``open_run(X, Y, sample_weight, params, state, spec, losses, n_threads) -> run``
    Opens a run of calls on one fit's arrays, which stay the same objects for
    the run's life: ``params`` (a ``Params``) and ``state`` (an
    ``OptimizerState``: ``m``, ``v`` Params-shaped, ``t`` an int64 (1,) step
    counter) are updated in place; ``spec`` is a ``TrainSpec`` of scalars
    (``shallownet._training``); ``losses`` is the fit's float64 loss curve.
    A compiled backend sets up its buffers here, once.

``run(epoch0, start, count, orders) -> int``
    Runs ``count`` epochs, the first being epoch ``epoch0`` of the fit (for
    the learning-rate schedule). ``orders`` is an int64 (count, m) array,
    m <= n, with each epoch's rows in their order when ``spec.shuffled`` (an
    epoch then walks those m rows only: early stopping trains on a subset of
    X's rows without copying X), else ignored (all rows in order). Each epoch walks the rows in batches of ``spec.batch_size``; a
    batch whose weights sum to zero is skipped; any other takes one optimizer
    step at its own loss (``docs/training.md``). ``losses[start + e]``
    receives the weighted mean of epoch e's batch losses. Returns the number
    of finished epochs: all of them, or the first epoch with a non-finite
    batch loss. A call is meant to be cheap: a fit with a callback makes one
    per ``callback_every`` epochs.

``loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads) -> (float, Params)``
    The loss and its four gradients at ``params``.

``open_packed_loss(X, Y, sample_weight, h, activation_code, alpha, n_threads) -> loss`` (optional)
    ``loss(x, out, scale) -> float``: the loss at the parameters packed in
    ``x`` (``shallownet._lbfgs.pack``'s order and X's dtype), ``scale`` times
    its gradients written into ``out`` (packed the same way), for L-BFGS's
    many evaluations on the same data. A backend without it gets
    ``open_packed_loss`` below, over ``loss_and_gradients``.

``uses_blas(d, h) -> bool`` (optional)
    Whether a call on layers of these sizes runs its two d x h products
    through BLAS (absent: always). ``blas_work`` below reads it, so that a
    call whose products are the backend's own loops leaves BLAS's thread
    count alone.

``apply_activation(z, activation_code) -> (g(z), g'(z))``
    The backend's own activation and derivative on a C-contiguous 1-D array
    (for the tests that compare every backend with NumPy over the float range).

The results of a backend may not depend on ``n_threads``: the compiled
backends split rows into chunks fixed by ``n`` alone and reduce the chunks'
private gradients in a fixed order.

``BLAS_THREADS`` in each module says how many threads BLAS may use during a
call (the compiled backends run BLAS on one thread inside their own parallel
regions); ``thread_limits`` sets it around a run of calls
(``shallownet._threads.blas_limit``: one table for every fit in progress,
restored when the last ends), and enters the module's optional
``threads(n_threads)`` context.
"""

import contextlib
import importlib

import numpy as np

from .. import _threads

# name -> module; "auto" tries them in AUTO_ORDER (fastest first, measured in
# docs/kernels.md).
BACKENDS = {
    "numpy": "shallownet.backends.numpy",
    "numba": "shallownet.backends.numba",
    "cython": "shallownet.backends.cython",
}
AUTO_ORDER = ("cython", "numba", "numpy")

_loaded = {}
_failed = {}


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name in _failed:
        raise _failed[name]
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        err = RuntimeError(f"backend {name!r} is not available in this install: {exc}")
        _failed[name] = err
        raise err from exc
    _loaded[name] = module
    _threads.rescan()  # the module may have loaded a BLAS library
    return module


def available_backends() -> list[str]:
    """The names of the backends that load in this install, fastest first.

    A backend is left out when its compiled code cannot be imported (a wheel
    built without the Cython extension, or a Numba that does not import). Numba's kernels
    are not compiled here: that happens on their first use.

    Returns
    -------
    list of str
        A subset of ``["cython", "numba", "numpy"]``, in that order;
        ``backend="auto"`` takes the first.

    Examples
    --------
    >>> import shallownet
    >>> "numpy" in shallownet.available_backends()
    True
    """
    names = []
    for name in AUTO_ORDER:
        try:
            _load(name)
        except RuntimeError:
            continue
        names.append(name)
    return names


def resolve_backend(backend):
    """Return ``(name, module)`` for a backend name or ``"auto"``."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend == "auto":
        name = available_backends()[0]
        return name, _load(name)
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    return backend, _load(backend)


# OpenBLAS runs a product on one thread below m n k = 2**18 (its
# multithreading threshold, 4 x 65536), so a run whose largest product is
# smaller needs no limit: small calls skip setting and restoring it (two
# library calls each way, most of a small loss_and_gradients call).
BLAS_SERIAL_WORK = 1 << 18


def blas_work(module, n, d, h):
    """The m n k of the largest BLAS product of a call into ``module`` on n
    rows and layers d x h (0 when the backend's own loops do the products),
    for ``thread_limits``."""
    uses_blas = getattr(module, "uses_blas", None)
    return n * d * h if uses_blas is None or uses_blas(d, h) else 0


@contextlib.contextmanager
def thread_limits(module, n_threads, shape=None):
    """The threads of a run of calls into ``module``: BLAS limited to the
    threads the module allows during a call (unless the calls' ``shape``,
    (n, d, h) as for ``blas_work``, makes their largest product smaller than
    ``BLAS_SERIAL_WORK``), and the module's own thread pool, if it has one
    (``module.threads``), set to ``n_threads`` once for the run rather than
    at every call."""
    with contextlib.ExitStack() as stack:
        if shape is None or blas_work(module, *shape) >= BLAS_SERIAL_WORK:
            stack.enter_context(_threads.blas_limit(module.BLAS_THREADS or n_threads))
        if hasattr(module, "threads"):
            stack.enter_context(module.threads(n_threads))
        yield


def open_packed_loss(module, X, Y, sample_weight, h, activation_code, alpha, n_threads):
    """``module``'s ``open_packed_loss``, or the same callable over its
    ``loss_and_gradients``: ``loss(x, out, scale) -> L`` on packed vectors
    (see the contract above)."""
    if hasattr(module, "open_packed_loss"):
        return module.open_packed_loss(X, Y, sample_weight, h, activation_code, alpha,
                                       n_threads)
    from .._lbfgs import packed_loss
    from .._params import Params
    d, k = X.shape[1], Y.shape[1]
    like = Params(*(np.empty(shape, dtype=X.dtype) for shape in ((d, h), (h,), (h, k), (k,))))
    return packed_loss(lambda params: module.loss_and_gradients(
        X, Y, sample_weight, params, activation_code, alpha, n_threads), like)
