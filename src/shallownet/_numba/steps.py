"""The optimizer steps of the Numba kernels and the learning-rate schedule.

Elementwise, in the order of operations of the reference's _step and in the
parameters' dtype (every scalar is converted to it first, as NumPy does with
a Python float); no fastmath, so no FMA: with the same gradient the update
is rounded exactly as NumPy rounds it. ``step_kind`` names the kind a fit's
options give; the entry point calls that kind's update (``plain_step``,
``momentum_step``, ``adam_step``, ``adam_folded_step``), chosen by its
constant kind (``epochs.make_train``).
"""

import math

import numpy as np
from numba import njit

from .._options import ADAM
from .calls import kernel
from .intrinsics import flat, wide_vectors
from .jit import JIT, JIT_EXACT, like
from .records import AdamScalars

# the step kinds (compile-time constants of a fit)
PLAIN, MOMENTUM, ADAM_STEP, ADAM_FOLDED = 0, 1, 2, 3


def step_kind(optimizer, momentum, epsilon_before_correction):
    """The kind of step of an optimizer code with these settings."""
    if optimizer == ADAM:
        return ADAM_FOLDED if epsilon_before_correction else ADAM_STEP
    return MOMENTUM if momentum != 0.0 else PLAIN


def step_moments(kind):
    """The moments a step kind keeps: none (PLAIN), m (MOMENTUM), m and v
    (Adam); the others are None in the kernels' state and workspace."""
    return 0 if kind == PLAIN else 1 if kind == MOMENTUM else 2


@kernel(JIT_EXACT)
def _step_sgd(p, g, lr):
    """p -= lr g."""
    wide_vectors()
    for i in range(p.shape[0]):
        p[i] -= lr * g[i]


@kernel(JIT_EXACT)
def _step_momentum(p, g, velocity, mu, lr, nesterov):
    """velocity = mu velocity - lr g; p += velocity, or with Nesterov p += mu velocity - lr g."""
    wide_vectors()
    if nesterov:
        for i in range(p.shape[0]):
            vi = velocity[i] * mu
            vi = vi - lr * g[i]
            velocity[i] = vi
            p[i] += mu * vi - lr * g[i]
    else:
        for i in range(p.shape[0]):
            vi = velocity[i] * mu
            vi = vi - lr * g[i]
            velocity[i] = vi
            p[i] += vi


@kernel(JIT_EXACT)
def _step_adam(p, g, m, v, c, folded):
    """m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2; then
    p -= lr (m / bias1) / (sqrt(v / bias2) + epsilon), or with ``folded``
    (True; None otherwise) epsilon added to sqrt(v) before the bias
    correction, which the float64 step = lr sqrt(bias2) / bias1 carries:
    p -= step m / (sqrt(v) + epsilon), the quotient formed in float64 and
    rounded once into p, as NumPy does with a float64 scalar step.
    c: the ``AdamScalars``."""
    wide_vectors()
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] * c.beta1
        mi = mi + c.one_minus_beta1 * gi
        vi = v[i] * c.beta2
        vi = vi + (c.one_minus_beta2 * gi) * gi
        m[i] = mi
        v[i] = vi
        if folded is None:
            p[i] -= c.lr * (mi / c.bias1) / (np.sqrt(vi / c.bias2) + c.epsilon)
        else:
            p[i] -= (c.step * np.float64(mi)) / np.float64(np.sqrt(vi) + c.epsilon)


@kernel(JIT_EXACT)
def learning_rate(learning_rate, epoch, schedule_scale, power_t):
    """learning_rate / (epoch schedule_scale + 1) ** power_t in float64,
    rounded as the reference rounds it (no FMA)."""
    return learning_rate / math.pow(np.float64(epoch) * schedule_scale + 1.0, power_t)


# The updates of every parameter (and of the state's moments), state.t
# counting this step; lr in the parameters' dtype. The weight matrices pass
# as 1-D views: each step is compiled once, for 1-D arrays.

@njit(inline="always", **JIT)
def plain_step(params, grads, state, lr, s):
    _step_sgd(flat(params.W1), flat(grads.W1), lr)
    _step_sgd(params.b1, grads.b1, lr)
    _step_sgd(flat(params.W2), flat(grads.W2), lr)
    _step_sgd(params.b2, grads.b2, lr)


@njit(inline="always", **JIT)
def momentum_step(params, grads, state, lr, s):
    mu = like(s.momentum, params.W1)
    m = state.m
    _step_momentum(flat(params.W1), flat(grads.W1), flat(m.W1), mu, lr,
                   s.nesterov)
    _step_momentum(params.b1, grads.b1, m.b1, mu, lr, s.nesterov)
    _step_momentum(flat(params.W2), flat(grads.W2), flat(m.W2), mu, lr,
                   s.nesterov)
    _step_momentum(params.b2, grads.b2, m.b2, mu, lr, s.nesterov)


@njit(inline="always", **JIT)
def _adam_steps(params, grads, state, c, folded):
    m, v = state.m, state.v
    _step_adam(flat(params.W1), flat(grads.W1), flat(m.W1),
               flat(v.W1), c, folded)
    _step_adam(params.b1, grads.b1, m.b1, v.b1, c, folded)
    _step_adam(flat(params.W2), flat(grads.W2), flat(m.W2),
               flat(v.W2), c, folded)
    _step_adam(params.b2, grads.b2, m.b2, v.b2, c, folded)


@njit(inline="always", **JIT)
def adam_step(params, grads, state, lr, s):
    t = np.float64(state.t[0])
    W1 = params.W1
    c = AdamScalars(lr, like(s.beta1, W1), like(1.0 - s.beta1, W1), like(s.beta2, W1),
                    like(1.0 - s.beta2, W1), like(1.0 - math.pow(s.beta1, t), W1),
                    like(1.0 - math.pow(s.beta2, t), W1), like(s.epsilon, W1), 0.0)
    _adam_steps(params, grads, state, c, None)


@njit(inline="always", **JIT)
def adam_folded_step(params, grads, state, lr, s):
    t = np.float64(state.t[0])
    W1 = params.W1
    bias1 = 1.0 - math.pow(s.beta1, t)
    bias2 = 1.0 - math.pow(s.beta2, t)
    step = np.float64(lr) * math.sqrt(bias2) / bias1
    c = AdamScalars(lr, like(s.beta1, W1), like(1.0 - s.beta1, W1), like(s.beta2, W1),
                    like(1.0 - s.beta2, W1), like(bias1, W1), like(bias2, W1),
                    like(s.epsilon, W1), step)
    _adam_steps(params, grads, state, c, True)
