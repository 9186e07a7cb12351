"""The Numba backend: a thin adapter over the kernels of ``shallownet._numba``.

Allocates the outputs, sets Numba's thread count and hands the validated
arrays to the compiled kernels (compiled on first use and cached on disk;
importing this module compiles nothing).
"""

import ctypes
import gc
import sys
import threading
from contextlib import contextmanager, nullcontext
from importlib import metadata

import numba
import numpy as np

# the name under which Numba looks the TBB runtime up (numba.np.ufunc.parallel)
_TBB_NAMES = {"win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}


def _load_tbb():
    """Load the TBB runtime of the ``tbb`` package, when Numba's threading
    layer is still to be chosen by its default order: Numba then picks TBB,
    which is fork-safe and thread-safe and whose idle workers sleep, over
    GNU OpenMP (docs/kernels.md). Numba finds TBB by its library name
    alone, which the package's copy (in the environment's lib folder) is
    not found under in a virtual environment; loaded here first, it is.
    A threading layer the user chose (NUMBA_THREADING_LAYER or its
    priority list) is left as it is. Returns the path loaded, or None."""
    from numba.np.ufunc import parallel
    if (parallel._is_initialized or numba.config.THREADING_LAYER != "default"
            or numba.config.THREADING_LAYER_PRIORITY[0] != "tbb"):
        return None
    name = _TBB_NAMES.get(sys.platform, "libtbb.so.12")
    try:
        files = metadata.distribution("tbb").files or ()
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name:
            path = str(file.locate())
            try:
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                return None
            return path
    return None


TBB_LOADED = _load_tbb()

from .. import _numba as kernels  # noqa: E402  (after TBB: it may start Numba's threads)
from .._params import Params

# The kernels call BLAS from inside their own parallel region: one thread each.
BLAS_THREADS = 1


def uses_blas(d, h):
    """Whether the two d x h products of a call go to BLAS (the GEMM tiles)."""
    return kernels.uses_gemm(d, h)


# the thread count ``threads`` has set for this Python thread's run of calls
_run = threading.local()


def _count(n_threads):
    return max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))


@contextmanager
def threads(n_threads):
    """Numba's thread count set to n_threads (at most its pool's size) for a
    run of calls, then restored; yields the count set. A fit enters it once
    (``backends.thread_limits``): Numba's getter and setter cost ~1.6 us
    each, which every return from compiled code (every callback) paid when
    each call set the count itself. The setter only runs when the count
    changes."""
    count = _count(n_threads)
    previous = numba.get_num_threads()
    outer = getattr(_run, "count", None)
    if count != previous:
        numba.set_num_threads(count)
    _run.count = count
    try:
        yield count
    finally:
        _run.count = outer
        if count != previous:
            numba.set_num_threads(previous)


def _in_run(count):
    """True inside a run of calls (``threads``) that set this count."""
    return getattr(_run, "count", None) == count


@contextmanager
def compiling():
    """The cyclic garbage collector paused (if it was on) while a kernel may
    compile, and back on after: Numba's compiler makes some 200k
    short-lived objects in a first fit, and the collections they set off
    cost it 3-14% of its time (docs/kernels.md, "Compiling on demand");
    they are collected once the collector runs again. Only what can
    compile is wrapped (a run's call with no epochs before its first, a
    new evaluation, a weighted run's sums), so a fit's epochs and the
    user's callbacks run with the collector as it was."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def open_run(X, Y, sample_weight, params, state, spec, losses, n_threads):
    """A callable ``run(epoch0, start, count, orders) -> finished`` that
    trains ``count`` epochs in one compiled call (see ``shallownet.backends``
    and ``docs/training.md``). The work buffers are allocated and the
    transposed X filled once here, for every call of the run; the kernel is
    the one compiled for this run's configuration."""
    workers = _count(n_threads)
    n, d = X.shape
    rows = max(1, min(int(spec.batch_size), n))
    gather = bool(spec.shuffled)
    h, k = params.W1.shape[1], Y.shape[1]
    kind = kernels.step_kind(int(spec.optimizer), float(spec.momentum),
                             bool(spec.epsilon_before_correction))
    moments = kernels.step_moments(kind)
    ws = kernels.workspace(n, d, h, k, X.dtype, rows, workers, gather, moments)
    with compiling():           # weighted batches' sums compile on first use
        kernels.prepare(ws, X, Y, sample_weight, rows, gather)
    gemm, parallel, single = kernels.configure(rows, d, h, k, X.dtype.itemsize, workers)
    train = kernels.trainer(int(spec.activation), kind, gemm, parallel, gather, single,
                            kernels.penalized(float(spec.alpha)))
    # X and Y themselves are read by the GEMM tiles and the gathers only;
    # None where not: two arrays less for the entry point to unbox
    read = gemm is not None or gather
    data = kernels.Rows(X if read else None, Y if read else None, sample_weight)
    params = Params(*params)
    # the moments the step does not keep are None: not unboxed, not compiled
    state = kernels.State(Params(*state.m) if moments >= 1 else None,
                          Params(*state.v) if moments == 2 else None, state.t)
    settings = kernels.Settings(
        float(spec.learning_rate), float(spec.power_t), float(spec.schedule_scale),
        float(spec.momentum), bool(spec.nesterov), float(spec.beta1), float(spec.beta2),
        float(spec.epsilon), float(spec.alpha), rows)
    full_cut = kernels.cut(rows, d, h, k, X.dtype.itemsize)
    cuts = {}       # an epoch's rows -> (cut of a full batch, cut of its last batch)
    compiled = []   # the run's types are fixed: only its first call may compile

    def run(epoch0, start, count, orders):
        # the checks the compiled code does not make (it trusts its input)
        if start < 0 or count < 0 or start + count > len(losses):
            raise ValueError(f"epochs [{start}, {start + count}) outside the run's "
                             f"{len(losses)} losses")
        if gather:
            # an epoch may walk fewer rows than X has (m <= n), not none
            if orders.dtype != np.int64 or orders.ndim != 2 or orders.shape[0] < count \
                    or not 1 <= orders.shape[1] <= n or not orders.flags.c_contiguous:
                raise ValueError(f"orders must have shape ({count}, m), 1 <= m <= {n}, "
                                 f"int64, C-contiguous, got {orders.shape}")
        else:
            orders = None
        if not _in_run(workers):
            with threads(workers):
                return run(epoch0, start, count, orders)
        walked = orders.shape[1] if gather else n
        if walked not in cuts:
            last = walked - (walked - 1) // rows * rows
            cuts[walked] = (full_cut, kernels.cut(last, d, h, k, X.dtype.itemsize))
        block = kernels.Epochs(int(epoch0), int(count), orders, losses, int(start), cuts[walked])
        if not compiled:
            # compile (or load) the kernel in a call with no epochs, which
            # changes nothing; the epochs then run outside the pause
            with compiling():
                train(data, params, state, settings, block._replace(count=0), ws)
            compiled.append(True)
        return train(data, params, state, settings, block, ws)

    return run


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    count = _count(n_threads)
    n, d = X.shape
    h, k = params[0].shape[1], Y.shape[1]
    # the kernel and a workspace for one batch of all n rows; a small one is
    # kept for the next call with the same shapes (an Evaluator's loop) in
    # this thread, where its set-up would be a good part of the call
    penalty = kernels.penalized(float(alpha))
    key = (n, d, h, k, X.dtype, count, int(activation_code), penalty)
    cached = getattr(_run, "evaluation", None)
    new = cached is None or cached[0] != key
    if new:
        gemm, parallel, single = kernels.configure(n, d, h, k, X.dtype.itemsize, count)
        # no optimizer: no moments
        ws = kernels.workspace(n, d, h, k, X.dtype, n, count, False, 0)
        cached = (key, kernels.evaluator(int(activation_code), gemm, parallel, single, penalty),
                  ws, gemm is None, parallel is not None,
                  kernels.cut(n, d, h, k, X.dtype.itemsize))
        size = sum(a.nbytes for a in _arrays(ws))
        _run.evaluation = cached if size <= _KEEP_WORKSPACE_BYTES else None
    _, evaluate, ws, explicit, parallel, cut = cached
    # a new evaluation's kernel may compile now
    first = compiling() if new else nullcontext()
    # the thread count matters only to a parallel kernel: a serial one (every
    # small call) skips setting and restoring it (docs/kernels.md, "Threads")
    if parallel and not _in_run(count):
        with threads(count), first:
            return loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, count)
    if explicit:
        np.copyto(ws.XT, X.T)
        np.copyto(ws.YT, Y.T)
    grads = Params(*(np.empty_like(p) for p in params))
    with first:
        data = kernels.Rows(None, None, sample_weight) if explicit else \
            kernels.Rows(X, Y, sample_weight)
        loss = evaluate(data, Params(*params), float(alpha),
                        kernels.weight_sum(sample_weight), cut, ws, grads)
    return float(loss), grads


# the largest evaluation workspace a thread keeps between calls
_KEEP_WORKSPACE_BYTES = 4 << 20


def _arrays(record):
    for field in record:
        if isinstance(field, tuple):
            yield from _arrays(field)
        elif isinstance(field, np.ndarray):
            yield field


def apply_activation(z, activation_code):
    """``(g(z), g'(z))`` as the kernels compute them, for a C-contiguous 1-D ``z``."""
    g = np.empty_like(z)
    g_prime = np.empty_like(z)
    with compiling():
        kernels.activator(int(activation_code))(z, g, g_prime)
    return g, g_prime
