"""The NumPy reference backend: the readable definition of correct.

Every other backend is tested against this module. The math is in
``docs/derivation.md``; the optimizers in ``docs/training.md``.
"""

import numpy as np

from .._activations import ACTIVATIONS
from .._params import Params
from .._options import ADAM

# BLAS may use every one of the fit's n_threads (None); the compiled backends say 1.
BLAS_THREADS = None
# an epoch may walk orders that name a subset of X's rows
SUBSET_ORDERS = True

_BY_CODE = {a.code: a for a in ACTIVATIONS.values()}


def _loss_and_gradients(X, Y, sample_weight, W1, b1, W2, b2, act, alpha):
    """Weighted MSE plus L2 penalty and its gradients on the rows given.

    L = sum_i w_i sum_c (Y_ic - yhat_ic)^2 / W + (alpha / W) (|W1|^2 + |W2|^2),
    W = sum_i w_i. With unit weights and alpha = 0 this is the seed's
    (1/n) sum (y - yhat)^2.
    """
    weight_sum = sample_weight.sum(dtype=np.float64)
    z1 = X @ W1 + b1                      # (n, h)
    a1 = act.g(z1)                        # (n, h)
    yhat = a1 @ W2 + b2                   # (n, k)
    residual = Y - yhat
    loss = float(np.sum(sample_weight[:, None] * residual * residual, dtype=np.float64))
    dL_dyhat = (X.dtype.type(-2.0 / weight_sum) * sample_weight)[:, None] * residual  # (n, k)
    grad_W2 = a1.T @ dL_dyhat             # (h, k)
    grad_b2 = dL_dyhat.sum(axis=0)        # (k,)
    dL_dz1 = (dL_dyhat @ W2.T) * act.g_prime(z1)   # (n, h)
    grad_W1 = X.T @ dL_dz1                # (d, h)
    grad_b1 = dL_dz1.sum(axis=0)          # (h,)
    if alpha:
        scale = X.dtype.type(2.0 * alpha / weight_sum)
        loss += alpha * float(np.sum(W1 * W1, dtype=np.float64) + np.sum(W2 * W2, dtype=np.float64))
        grad_W1 += scale * W1
        grad_W2 += scale * W2
    return loss / weight_sum, Params(grad_W1, grad_b1, grad_W2, grad_b2)


def _step(params, grads, state, spec, lr):
    """One optimizer update of every parameter, in place."""
    t = int(state.t[0])
    if spec.optimizer == ADAM:
        bias1 = 1.0 - spec.beta1 ** t
        bias2 = 1.0 - spec.beta2 ** t
        for p, g, m, v in zip(params, grads, state.m, state.v):
            m *= spec.beta1
            m += (1.0 - spec.beta1) * g
            v *= spec.beta2
            v += (1.0 - spec.beta2) * g * g
            if spec.epsilon_before_correction:
                p -= (lr * np.sqrt(bias2) / bias1) * m / (np.sqrt(v) + spec.epsilon)
            else:
                p -= lr * (m / bias1) / (np.sqrt(v / bias2) + spec.epsilon)
    elif spec.momentum:
        for p, g, velocity in zip(params, grads, state.m):
            velocity *= spec.momentum
            velocity -= lr * g
            if spec.nesterov:
                p += spec.momentum * velocity - lr * g
            else:
                p += velocity
    else:
        for p, g in zip(params, grads):
            p -= lr * g


def apply_activation(z, activation_code):
    act = _BY_CODE[activation_code]
    return act.g(z), act.g_prime(z)


def loss_and_gradients(X, Y, sample_weight, params, activation_code, alpha, n_threads):
    """Return ``(L, Params(dL/dW1, dL/db1, dL/dW2, dL/db2))`` at ``params``."""
    return _loss_and_gradients(X, Y, sample_weight, *params, _BY_CODE[activation_code], alpha)


def open_run(X, Y, sample_weight, params, state, spec, losses, n_threads):
    """A callable ``run(epoch0, start, count, orders) -> finished`` that
    trains ``count`` epochs by ``train`` (see ``shallownet.backends``)."""
    def run(epoch0, start, count, orders):
        return train(X, Y, sample_weight, params, state, spec, epoch0, orders,
                     losses[start:start + count])
    return run


def train(X, Y, sample_weight, params, state, spec, epoch0, orders, loss_curve):
    """Run ``len(loss_curve)`` epochs, updating ``params`` and ``state`` in place.

    Epoch e of the call is epoch ``epoch0 + e`` of the fit (for the learning
    rate schedule). Each epoch walks the rows in ``orders[e]`` (which may name
    fewer rows than X has), or all rows in order when ``orders`` is empty, in
    batches of ``spec.batch_size``; each batch with a positive weight
    sum takes one optimizer step at its own loss. ``loss_curve[e]`` receives the
    weighted mean of the epoch's batch losses (for one batch: the loss at the
    parameters the epoch started from). Returns the number of finished epochs,
    stopping at the first non-finite batch loss.
    """
    act = _BY_CODE[spec.activation]
    n = orders.shape[1] if len(orders) else X.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by the caller
        for epoch in range(len(loss_curve)):
            clock = (epoch0 + epoch) * spec.schedule_scale + 1
            lr = X.dtype.type(spec.learning_rate / clock ** spec.power_t)
            epoch_loss = epoch_weight = 0.0
            for start in range(0, n, spec.batch_size):
                rows = (orders[epoch, start:start + spec.batch_size] if len(orders)
                        else slice(start, start + spec.batch_size))
                weights = sample_weight[rows]
                batch_weight = float(weights.sum(dtype=np.float64))
                if batch_weight == 0:
                    continue
                loss, grads = _loss_and_gradients(X[rows], Y[rows], weights, *params, act,
                                                  spec.alpha)
                if not np.isfinite(loss):
                    loss_curve[epoch] = loss
                    return epoch
                epoch_loss += loss * batch_weight
                epoch_weight += batch_weight
                state.t[0] += 1
                _step(params, grads, state, spec, lr)
            loss_curve[epoch] = epoch_loss / epoch_weight
    return len(loss_curve)
