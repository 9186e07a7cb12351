"""The Numba backend's forms of TrainSpec's scikit-learn fields against the
NumPy reference: schedule_scale, epsilon_before_correction, and orders that
name fewer rows than X has. Called through the backend contract
(open_run / run), as the trainer calls it."""

import numpy as np
import pytest

from shallownet._activations import ACTIVATIONS
from shallownet._params import Params, init_params
from shallownet._training import ADAM, SGD, TrainSpec, new_state
from shallownet.backends import _load

from conftest import make_problem, relative_error

pytest.importorskip("numba")

# float64: the same operations in the same order, up to the kernels' sums
# over rows (vector partial sums); float32 also through its own activations
TOLERANCE = {np.float64: 1e-10, np.float32: 2e-4}


def _spec(**fields):
    base = dict(activation=ACTIVATIONS["tanh"].code, optimizer=SGD, learning_rate=0.05,
                power_t=0.0, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
                epsilon=1e-8, alpha=0.0, batch_size=16, shuffled=False)
    base.update(fields)
    return TrainSpec(**base)


def _train(backend, X, Y, spec, epochs, orders, blocks=1, h=6):
    """Params, state and loss curve after ``epochs`` epochs in ``blocks`` calls."""
    module = _load(backend)
    d, k = X.shape[1], Y.shape[1]
    params = init_params(d, h, k, "tanh", 7, X.dtype)
    state = new_state(params)
    losses = np.full(epochs, np.nan)
    run = module.open_run(X, Y, np.ones(len(X), X.dtype), params, state, spec, losses, 2)
    per_block = epochs // blocks
    for b in range(blocks):
        first = b * per_block
        block_orders = orders[first:first + per_block] if len(orders) else orders
        assert run(first, first, per_block, np.ascontiguousarray(block_orders)) == per_block
    return params, state, losses


def _compare(X, Y, spec, epochs, orders=np.empty((0, 0), np.int64), blocks=1, h=6):
    ours = _train("numba", X, Y, spec, epochs, orders, blocks, h)
    reference = _train("numpy", X, Y, spec, epochs, orders, blocks, h)
    tol = TOLERANCE[X.dtype.type]
    assert relative_error(ours[2], reference[2]) < tol
    for p, q in zip(ours[0], reference[0]):
        assert relative_error(p, q) < tol
    for ps, qs in zip(ours[1][:2], reference[1][:2]):
        for p, q in zip(ps, qs):
            assert relative_error(p, q) < tol
    assert ours[1].t[0] == reference[1].t[0]
    return ours


def _problem(n=60, d=3, k=1, dtype=np.float64):
    X, y = make_problem(n, d, k, seed=4, dtype=dtype)
    return X, y.reshape(n, -1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scale", [1.0, 60.0, 0.37])
def test_schedule_scale(dtype, scale):
    X, Y = _problem(dtype=dtype)
    spec = _spec(power_t=0.5, schedule_scale=scale, learning_rate=0.2)
    # epochs split over calls: epoch0 carries the schedule across them
    _compare(X, Y, spec, 8, blocks=4)


def test_schedule_scale_changes_the_steps():
    X, Y = _problem()
    plain = _train("numba", X, Y, _spec(power_t=0.5, learning_rate=0.2), 4,
                   np.empty((0, 0), np.int64))
    scaled = _train("numba", X, Y, _spec(power_t=0.5, learning_rate=0.2, schedule_scale=60.0),
                    4, np.empty((0, 0), np.int64))
    assert plain[2][0] == scaled[2][0]       # epoch 0: lr / 1 either way
    assert not np.array_equal(plain[2][1:], scaled[2][1:])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("epsilon", [1e-8, 0.1])
def test_adam_epsilon_before_correction(dtype, epsilon):
    X, Y = _problem(k=2, dtype=dtype)
    spec = _spec(optimizer=ADAM, learning_rate=0.01, epsilon=epsilon,
                 epsilon_before_correction=True)
    _compare(X, Y, spec, 5)


def test_adam_epsilon_before_correction_step_by_hand():
    # one batch of 8 rows a step, one chunk: the gradients are the same sums
    # in both backends up to the kernels' row order, so only the step is compared
    X, Y = _problem(n=8)
    spec = _spec(optimizer=ADAM, learning_rate=0.01, epsilon=0.1, batch_size=8,
                 epsilon_before_correction=True)
    ours = _train("numba", X, Y, spec, 1, np.empty((0, 0), np.int64))
    # the same step by hand from the reference's gradient at the start
    module = _load("numpy")
    start = init_params(3, 6, 1, "tanh", 7, X.dtype)
    _, grads = module.loss_and_gradients(X, Y, np.ones(8), start, spec.activation, 0.0, 1)
    for p0, g, p in zip(start, grads, ours[0]):
        m = (1 - 0.9) * g
        v = (1 - 0.999) * g * g
        step = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
        assert relative_error(p, p0 - step * m / (np.sqrt(v) + 0.1)) < 1e-12


def test_epsilon_forms_differ():
    X, Y = _problem()
    spec = _spec(optimizer=ADAM, learning_rate=0.01, epsilon=0.1)
    after = _train("numba", X, Y, spec, 2, np.empty((0, 0), np.int64))
    before = _train("numba", X, Y, spec._replace(epsilon_before_correction=True), 2,
                    np.empty((0, 0), np.int64))
    assert not np.array_equal(after[0].W1, before[0].W1)


def _orders(epochs, n, m, seed=3):
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n)[:m] for _ in range(epochs)]).astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, d, h, m, batch", [
    (60, 3, 6, 45, 16),         # the last batch short (45 = 2 * 16 + 13)
    (60, 3, 6, 60, 16),         # every row
    (60, 3, 6, 10, 16),         # fewer rows than a batch
    (50, 40, 128, 37, 200),     # one batch, d*h large enough for the GEMM tiles
])
def test_orders_over_fewer_rows(dtype, n, d, h, m, batch):
    X, Y = _problem(n=n, d=d, dtype=dtype)
    for optimizer in (SGD, ADAM):
        spec = _spec(optimizer=optimizer, shuffled=True, batch_size=min(batch, n),
                     learning_rate=0.01 if optimizer == ADAM else 0.05)
        _compare(X, Y, spec, 4, orders=_orders(4, n, m), blocks=2, h=h)


def test_orders_over_fewer_rows_use_only_those_rows():
    # rows outside the orders may hold anything: the fit does not read them
    X, Y = _problem(n=40)
    orders = _orders(3, 40, 25)
    spec = _spec(shuffled=True, batch_size=8)
    first = _train("numba", X, Y, spec, 3, orders)
    unused = np.setdiff1d(np.arange(40), orders)
    X2, Y2 = X.copy(), Y.copy()
    X2[unused] = 1e6
    Y2[unused] = -1e6
    second = _train("numba", X2, Y2, spec, 3, orders)
    assert np.array_equal(first[2], second[2])
    for p, q in zip(first[0], second[0]):
        assert np.array_equal(p, q)


def test_orders_must_name_at_least_one_row_and_at_most_n():
    X, Y = _problem(n=20)
    module = _load("numba")
    params = init_params(3, 4, 1, "tanh", 0, X.dtype)
    losses = np.full(1, np.nan)
    run = module.open_run(X, Y, np.ones(20), params, new_state(params),
                          _spec(shuffled=True, batch_size=8), losses, 1)
    for bad in (np.empty((1, 0), np.int64), np.zeros((1, 21), np.int64)):
        with pytest.raises(ValueError, match="orders"):
            run(0, 0, 1, bad)
    assert isinstance(params, Params)
