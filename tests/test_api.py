"""The public contract: shapes, dtypes, copies, determinism, lazy imports."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest

import shallownet
from shallownet import Params

from conftest import make_problem


def test_fit_returns_model_with_documented_shapes(backend):
    X, y = make_problem(40, 3, 1)
    model = shallownet.fit(X, y, hidden=5, epochs=7, backend=backend, random_state=0)
    assert isinstance(model.params, Params)
    W1, b1, W2, b2 = model.params
    assert (W1.shape, b1.shape, W2.shape, b2.shape) == ((3, 5), (5,), (5, 1), (1,))
    assert all(p.dtype == np.float64 for p in model.params)
    assert model.loss_curve.shape == (7,) and model.loss_curve.dtype.kind == "f"
    assert model.predict(X).shape == (40,)
    assert model.backend == backend


def test_two_d_y_predicts_two_d(backend):
    X, Y = make_problem(40, 3, 2)
    model = shallownet.fit(X, Y, hidden=4, epochs=3, backend=backend, random_state=0)
    assert model.params.W2.shape == (4, 2)
    assert model.predict(X).shape == (40, 2)
    X1, y1 = make_problem(40, 3, 1)
    model = shallownet.fit(X1, y1.reshape(-1, 1), hidden=4, epochs=3, backend=backend)
    assert model.predict(X1).shape == (40, 1)


def test_loss_curve_entry_zero_is_loss_of_initial_weights(backend):
    X, y = make_problem(30, 2, 1)
    model = shallownet.fit(X, y, hidden=3, epochs=4, backend=backend, random_state=5)
    init = shallownet.fit(X, y, hidden=3, epochs=1, backend="numpy", random_state=5)
    start = shallownet._params.init_params(2, 3, 1, "tanh", np.random.default_rng(5), np.float64)
    loss0, _ = shallownet.loss_and_gradients(start, X, y)
    assert model.loss_curve[0] == pytest.approx(loss0, rel=1e-14)
    assert init.loss_curve[0] == pytest.approx(loss0, rel=1e-14)


def test_prediction_is_the_formula(backend):
    X, y = make_problem(30, 2, 1)
    model = shallownet.fit(X, y, hidden=3, epochs=20, backend=backend, random_state=1)
    W1, b1, W2, b2 = model.params
    np.testing.assert_allclose(model.predict(X), (np.tanh(X @ W1 + b1) @ W2 + b2)[:, 0], rtol=1e-14)


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_inputs_are_never_modified(backend):
    X, y = make_problem(60, 3, 1)
    init = Params(np.full((3, 4), 0.1), np.zeros(4), np.full((4, 1), 0.2), np.zeros(1))
    weights = np.linspace(0.5, 2.0, 60)
    for a in (X, y, weights, *init):
        a.setflags(write=False)  # a kernel writing to them would raise or crash
    before = _digest(X, y, weights, *init)
    model = shallownet.fit(X, y, hidden=4, epochs=10, backend=backend, init=init,
                           sample_weight=weights)
    shallownet.fit(X, y, hidden=4, epochs=3, backend=backend, init=init, sample_weight=weights,
                   optimizer="adam", batch_size=16)
    shallownet.loss_and_gradients(init, X, y, backend=backend, sample_weight=weights)
    assert _digest(X, y, weights, *init) == before
    assert not any(np.shares_memory(p, q) for p, q in zip(model.params, init))
    # writable inputs are left alone too
    Xw, yw = X.copy(), y.copy()
    initw = Params(*(a.copy() for a in init))
    ww = weights.copy()
    shallownet.fit(Xw, yw, hidden=4, epochs=10, backend=backend, init=initw, sample_weight=ww)
    assert _digest(Xw, yw, ww, *initw) == before


@pytest.mark.parametrize("convert", [
    lambda X: X.tolist(),
    lambda X: np.asfortranarray(X),
    lambda X: np.repeat(X, 2, axis=1)[:, ::2],   # non-contiguous view
    lambda X: (X * 100).astype(np.int64),
    lambda X: X.astype(np.float16),
])
def test_array_likes_are_converted(convert, backend):
    X, y = make_problem(30, 2, 1)
    Xc = convert(X)
    got = shallownet.fit(Xc, list(y), hidden=3, epochs=5, backend=backend, random_state=0)
    want = shallownet.fit(np.array(Xc, dtype=np.float64), y, hidden=3, epochs=5,
                          backend=backend, random_state=0)
    assert np.array_equal(got.params.W1, want.params.W1)


def test_float32_follows_X_and_dtype_argument(backend):
    X, y = make_problem(30, 2, 1, dtype=np.float32)
    assert shallownet.fit(X, y, epochs=3, backend=backend).params.W1.dtype == np.float32
    assert shallownet.fit(X, y, epochs=3, backend=backend, dtype="float64").params.b2.dtype == np.float64
    X64 = X.astype(np.float64)
    model = shallownet.fit(X64, y, epochs=3, backend=backend, dtype=np.float32)
    assert model.params.W2.dtype == np.float32
    assert model.predict(X64).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_random_state_is_bitwise_reproducible(backend, dtype):
    X, y = make_problem(100, 4, 1, dtype=dtype)
    a = shallownet.fit(X, y, epochs=20, backend=backend, random_state=7)
    b = shallownet.fit(X, y, epochs=20, backend=backend, random_state=7)
    c = shallownet.fit(X, y, epochs=20, backend=backend, random_state=8)
    assert all(np.array_equal(p, q) for p, q in zip(a.params, b.params))
    assert not np.array_equal(a.params.W1, c.params.W1)


def test_import_is_lazy_and_compiles_nothing():
    # scipy.special alone was 0.24 of the 0.38 s `import shallownet` took,
    # importlib.metadata (for __version__) 42 of the next 126 ms
    code = ("import sys; import shallownet; "
            "print('numba' in sys.modules, 'shallownet._cython_train' in sys.modules, "
            "'scipy.special' in sys.modules, 'importlib.metadata' in sys.modules); "
            "print(shallownet.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["False", "False", "False", "False"]
    # read on first use, the installed distribution's version
    from importlib.metadata import version
    assert lines[1] == shallownet.__version__ == version("shallownet")


def test_auto_picks_an_available_backend():
    X, y = make_problem(30, 2, 1)
    model = shallownet.fit(X, y, epochs=2, backend="auto")
    assert model.backend == shallownet.available_backends()[0]
