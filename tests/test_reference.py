"""The NumPy reference against the seed's formulas: by hand and by finite differences."""

import math

import numpy as np
import pytest

import shallownet
from shallownet import Params

from conftest import ACTIVATIONS, make_problem


def test_seed_scalar_case_identity_by_hand():
    # d = h = k = 1, one sample x = 1, y = 1, identity g, w1 = 0.5, b1 = 0, w2 = 1, b2 = 0:
    # z1 = 0.5, a1 = 0.5, yhat = 0.5, L = (1 - 0.5)^2 = 0.25, dL/dyhat = -2 (1 - 0.5) / 1 = -1,
    # dL/dw2 = -1 * a1 = -0.5, dL/db2 = -1, dL/dw1 = -1 * w2 * g'(z1) * x = -1, dL/db1 = -1.
    init = Params(np.array([[0.5]]), np.array([0.0]), np.array([[1.0]]), np.array([0.0]))
    loss, grads = shallownet.loss_and_gradients(init, [[1.0]], [1.0], activation="identity")
    assert loss == 0.25
    assert [g.item() for g in grads] == [-1.0, -1.0, -0.5, -1.0]
    # one step with learning rate 0.1: w1 = 0.6, b1 = 0.1, w2 = 1.05, b2 = 0.1; then
    # yhat = 1.05 * (0.6 + 0.1) + 0.1 = 0.835 and L = 0.165^2 = 0.027225
    one_step = shallownet.fit([[1.0]], [1.0], hidden=1, activation="identity", learning_rate=0.1,
                              epochs=1, backend="numpy", init=init)
    two_steps = shallownet.fit([[1.0]], [1.0], hidden=1, activation="identity", learning_rate=0.1,
                               epochs=2, backend="numpy", init=init)
    assert two_steps.loss_curve[0] == 0.25
    assert two_steps.loss_curve[1] == pytest.approx(0.027225, rel=1e-14)
    W1, b1, W2, b2 = (p.item() for p in one_step.params)
    for got, want in ((W1, 0.6), (b1, 0.1), (W2, 1.05), (b2, 0.1)):
        assert got == pytest.approx(want, rel=1e-14)


def _seed_scalar_gradients(x, y, w1, b1, w2, b2, g, g_prime):
    """The seed's scalar formulas, summed sample by sample in plain Python."""
    n = len(x)
    loss = dw1 = db1 = dw2 = db2 = 0.0
    for xi, yi in zip(x, y):
        z1 = w1 * xi + b1
        a1 = g(z1)
        yhat = w2 * a1 + b2
        loss += (yi - yhat) ** 2 / n
        dL_dyhat = -2.0 * (yi - yhat) / n
        dw2 += dL_dyhat * a1
        db2 += dL_dyhat
        dw1 += dL_dyhat * w2 * g_prime(z1) * xi
        db1 += dL_dyhat * w2 * g_prime(z1)
    return loss, (dw1, db1, dw2, db2)


SCALAR_G = {
    "identity": (lambda z: z, lambda z: 1.0),
    "relu": (lambda z: max(z, 0.0), lambda z: 1.0 if z > 0 else 0.0),
    "tanh": (math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "sigmoid": (lambda z: 1 / (1 + math.exp(-z)),
                lambda z: (1 / (1 + math.exp(-z))) * (1 - 1 / (1 + math.exp(-z)))),
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_seed_scalar_case_every_backend(activation, backend):
    x = [0.3, -1.2, 2.0, 0.7]
    y = [0.1, -0.5, 0.8, 0.0]
    w1, b1, w2, b2 = 0.8, 0.1, -0.6, 0.05
    g, g_prime = SCALAR_G[activation]
    init = Params(np.array([[w1]]), np.array([b1]), np.array([[w2]]), np.array([b2]))
    loss, grads = shallownet.loss_and_gradients(init, np.array(x)[:, None], y,
                                                activation=activation, backend=backend)
    want_loss, want_grads = _seed_scalar_gradients(x, y, w1, b1, w2, b2, g, g_prime)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    for got, want in zip(grads, want_grads):
        assert got.shape in ((1, 1), (1,))
        assert got.item() == pytest.approx(want, rel=1e-12, abs=1e-15)
    # and the update p := p - lr * dL/dp, three epochs by hand
    params = [w1, b1, w2, b2]
    losses = []
    for _ in range(3):
        step_loss, step_grads = _seed_scalar_gradients(x, y, *params, g, g_prime)
        losses.append(step_loss)
        params = [p - 0.05 * dp for p, dp in zip(params, step_grads)]
    model = shallownet.fit(np.array(x)[:, None], y, hidden=1, activation=activation,
                           learning_rate=0.05, epochs=3, backend=backend, init=init)
    np.testing.assert_allclose(model.loss_curve, losses, rtol=1e-12)
    np.testing.assert_allclose([p.item() for p in model.params], params, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,d,h,k", [(7, 1, 1, 1), (30, 3, 5, 1), (25, 4, 6, 3)])
def test_gradients_match_central_differences(activation, n, d, h, k, backend):
    X, y = make_problem(n, d, k, seed=n + d)
    rng = np.random.default_rng(1)
    params = Params(rng.normal(size=(d, h)), rng.normal(size=h), rng.normal(size=(h, k)),
                    rng.normal(size=k))
    _, grads = shallownet.loss_and_gradients(params, X, y, activation=activation, backend=backend)
    eps = 1e-6
    for name, p, grad in zip(Params._fields, params, grads):
        numeric = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[Params._fields.index(name)][idx] += eps
            minus[Params._fields.index(name)][idx] -= eps
            l_plus, _ = shallownet.loss_and_gradients(plus, X, y, activation=activation, backend="numpy")
            l_minus, _ = shallownet.loss_and_gradients(minus, X, y, activation=activation, backend="numpy")
            numeric[idx] = (l_plus - l_minus) / (2 * eps)
        err = np.max(np.abs(numeric - grad)) / max(np.max(np.abs(grad)), 1e-12)
        assert err <= 1e-6, f"{name}: relative error {err:.2e} against central differences"


def test_loss_decreases_on_learnable_problem(backend):
    X, y = make_problem(400, 3, 1, seed=3)
    model = shallownet.fit(X, y, hidden=12, learning_rate=0.1, epochs=300, backend=backend,
                           random_state=0)
    curve = model.loss_curve
    assert curve[-1] < 0.2 * curve[0]
    assert np.all(np.diff(curve) <= 1e-12 * curve[0])  # small steps: monotone descent
    assert np.mean((model.predict(X) - y) ** 2) < 0.2 * np.var(y)
