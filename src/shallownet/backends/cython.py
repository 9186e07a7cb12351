"""The Cython backend: a thin adapter over the compiled ``shallownet._cython_train``.

The kernels (``csrc/_cython_train.pyx``, ``csrc/_activations.h``) run the whole
block of epochs, every batch and every optimizer step, in one call of a
``Run`` with the GIL released; this module only allocates outputs and unpacks
``Params``, ``OptimizerState`` and ``TrainSpec``, which the kernels read
by field name. See ``docs/kernels.md`` for
the design and ``docs/training.md`` for the optimizers.
"""

import numpy as np

from .. import _cython_train as _kernels
from .._params import Params

# The kernels call BLAS from inside their own parallel region, one chunk per
# thread: BLAS itself must stay on one thread or the cores are oversubscribed.
BLAS_THREADS = 1


def uses_blas(d, h):
    """Whether the two d x h products of a call go to BLAS."""
    return d * h >= _kernels.BLAS_FROM_DH


def open_run(X, Y, sample_weight, params, state, spec, losses, n_threads):
    """A callable ``run(epoch0, start, count, orders) -> finished`` over these
    arrays (see ``shallownet.backends``): a ``_cython_train.Run``, whose plan,
    workspace and pointers are set up once there, from the records themselves."""
    sample_weight = np.ascontiguousarray(sample_weight, dtype=X.dtype)
    return _kernels.open_run(X, Y, sample_weight, params, state, spec, losses, int(n_threads))


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    grads = Params(*(np.empty_like(p) for p in params))
    loss = _kernels.loss_and_gradients(X, Y, np.ascontiguousarray(sample_weight, dtype=X.dtype),
                                       *params, *grads, activation_code, float(alpha), n_threads)
    return loss, grads


def open_packed_loss(X, Y, sample_weight, h, activation_code, alpha, n_threads):
    """A callable ``loss(x, out, scale) -> L`` on these arrays (see
    ``shallownet.backends.open_packed_loss``): a ``_cython_train.PackedLoss``,
    whose plan, workspace and threads are set up once for every evaluation."""
    sample_weight = np.ascontiguousarray(sample_weight, dtype=X.dtype)
    return _kernels.open_packed_loss(X, Y, sample_weight, int(h), int(activation_code),
                                     float(alpha), int(n_threads))


def apply_activation(z, activation_code):
    """Return ``(g(z), g'(z))`` as this backend's kernels compute them."""
    g_prime = np.array(z, copy=True, order="C")
    g = np.empty_like(g_prime)
    if g.size:
        _kernels.apply_activation(g_prime, g, activation_code)
    return g, g_prime
