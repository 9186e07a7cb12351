"""The Numba backend: a thin adapter over ``shallownet._numba_kernels``.

Allocates the outputs, sets Numba's thread count and hands the validated
arrays to the compiled kernels (compiled on first use and cached on disk;
importing this module compiles nothing).
"""

import threading
from contextlib import contextmanager

import numba
import numpy as np

from .. import _numba_kernels as kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region: one thread each.
BLAS_THREADS = 1

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


def train(X, Y, sample_weight, params, state, spec, orders, loss_curve, n_threads):
    """Run ``len(loss_curve)`` epochs on ``params`` and ``state`` in place, in
    one compiled call (see ``shallownet.backends`` and ``docs/training.md``).

    Returns the number of finished epochs.
    """
    count = _count(n_threads)
    if not _in_run(count):
        with threads(count):
            return train(X, Y, sample_weight, params, state, spec, orders, loss_curve, count)
    return int(kernels.train(
        X, Y, sample_weight, *params, *state.m, *state.v, state.t,
        int(spec.activation), int(spec.optimizer), float(spec.learning_rate),
        float(spec.power_t), float(spec.momentum), bool(spec.nesterov), float(spec.beta1),
        float(spec.beta2), float(spec.epsilon), float(spec.alpha), int(spec.batch_size),
        int(spec.epoch0), orders, loss_curve, count))


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    count = _count(n_threads)
    if not _in_run(count):
        with threads(count):
            return loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, count)
    grads = Params(*(np.empty_like(p) for p in params))
    loss = kernels.loss_and_gradients(X, Y, sample_weight, *params, int(activation_code),
                                      float(alpha), count, *grads)
    return float(loss), grads


def apply_activation(z, activation_code):
    """``(g(z), g'(z))`` as the kernels compute them, for a C-contiguous 1-D ``z``."""
    g = np.empty_like(z)
    g_prime = np.empty_like(z)
    kernels.activate(z, g, g_prime, activation_code)
    return g, g_prime
