"""The Numba backend: a thin adapter over ``shallownet._numba_kernels``.

Allocates the outputs, sets Numba's thread count for the call and hands the
validated arrays to the compiled kernels (compiled on first use and cached on
disk; importing this module compiles nothing).
"""

from contextlib import contextmanager

import numba
import numpy as np

from .. import _numba_kernels as kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region: one thread each.
BLAS_THREADS = 1


@contextmanager
def _numba_threads(n_threads):
    """Numba's thread count set to n_threads (at most its pool's size) for the
    block, then restored; yields the count set. Numba's getter and setter
    cost ~1.6 us each, paid at every return from compiled code (every
    callback): the setter only runs when the count changes."""
    previous = numba.get_num_threads()
    n_threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    if n_threads == previous:
        yield n_threads
        return
    numba.set_num_threads(n_threads)
    try:
        yield n_threads
    finally:
        numba.set_num_threads(previous)


def train(X, Y, sample_weight, params, state, spec, orders, loss_curve, n_threads):
    """Run ``len(loss_curve)`` epochs on ``params`` and ``state`` in place, in
    one compiled call (see ``shallownet.backends`` and ``docs/training.md``).

    Returns the number of finished epochs.
    """
    with _numba_threads(n_threads) as threads:
        return int(kernels.train(
            X, Y, sample_weight, *params, *state.m, *state.v, state.t,
            int(spec.activation), int(spec.optimizer), float(spec.learning_rate),
            float(spec.power_t), float(spec.momentum), bool(spec.nesterov), float(spec.beta1),
            float(spec.beta2), float(spec.epsilon), float(spec.alpha), int(spec.batch_size),
            int(spec.epoch0), orders, loss_curve, threads))


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    grads = Params(*(np.empty_like(p) for p in params))
    with _numba_threads(n_threads) as threads:
        loss = kernels.loss_and_gradients(X, Y, sample_weight, *params, int(activation_code),
                                          float(alpha), threads, *grads)
    return float(loss), grads


def apply_activation(z, activation_code):
    """``(g(z), g'(z))`` as the kernels compute them, for a C-contiguous 1-D ``z``."""
    g = np.empty_like(z)
    g_prime = np.empty_like(z)
    kernels.activate(z, g, g_prime, activation_code)
    return g, g_prime
