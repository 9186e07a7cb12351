"""Bad input raises a clear exception naming the argument, before any kernel runs."""

import numpy as np
import pytest

import shallownet
from shallownet import Params

from conftest import make_problem

X_OK, Y_OK = make_problem(10, 2, 1)


def _init(d=2, h=3, k=1):
    return Params(np.zeros((d, h)), np.zeros(h), np.zeros((h, k)), np.zeros(k))


BAD_FIT_CALLS = [
    # (kwargs for fit, exception type, text the message must contain)
    (dict(X=np.zeros(10), y=Y_OK), ValueError, "X must be 2-D"),
    (dict(X=np.zeros((10, 2, 1)), y=Y_OK), ValueError, "X must be 2-D"),
    (dict(X=X_OK, y=np.zeros((10, 1, 1))), ValueError, "y must be 1-D"),
    (dict(X=X_OK, y=Y_OK[:9]), ValueError, "different numbers of samples"),
    (dict(X=np.zeros((0, 2)), y=np.zeros(0)), ValueError, "X is empty"),
    (dict(X=np.zeros((10, 0)), y=Y_OK), ValueError, "X is empty"),
    (dict(X=X_OK, y=np.zeros((10, 0))), ValueError, "y is empty"),
    (dict(X=np.where(np.eye(10, 2) > 0, np.nan, X_OK), y=Y_OK), ValueError, "X contains NaN"),
    (dict(X=np.where(np.eye(10, 2) > 0, np.inf, X_OK), y=Y_OK), ValueError, "X contains NaN or infinity"),
    (dict(X=X_OK, y=np.r_[Y_OK[:9], np.nan]), ValueError, "y contains NaN"),
    (dict(X=X_OK, y=np.r_[Y_OK[:9], -np.inf]), ValueError, "y contains NaN or infinity"),
    (dict(X=np.full((10, 2), 1e300), y=Y_OK, dtype=np.float32), ValueError, "X contains NaN or infinity"),
    (dict(X=[["a", "b"]] * 10, y=Y_OK), TypeError, "X must hold real numbers"),
    (dict(X=X_OK, y=["x"] * 10), TypeError, "y must hold real numbers"),
    (dict(X=X_OK + 1j, y=Y_OK), TypeError, "X must hold real numbers, got complex"),
    (dict(X=np.array([[object(), 1.0]] * 10), y=Y_OK), TypeError, "X must hold real numbers"),
    (dict(X=[[1.0, 2.0], [3.0]], y=[1.0, 2.0]), TypeError, "X must be an array-like"),
    (dict(X=None, y=Y_OK), TypeError, "X must be an array-like"),
    (dict(X=X_OK, y=Y_OK, backend="torch"), ValueError, "backend must be"),
    (dict(X=X_OK, y=Y_OK, backend=3), TypeError, "backend must be a string"),
    (dict(X=X_OK, y=Y_OK, activation="softplus"), ValueError, "activation must be one of"),
    (dict(X=X_OK, y=Y_OK, activation=None), ValueError, "activation must be one of"),
    (dict(X=X_OK, y=Y_OK, hidden=0), ValueError, "hidden must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, hidden=-3), ValueError, "hidden must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, hidden=2.5), TypeError, "hidden must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, hidden=True), TypeError, "hidden must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, epochs=0), ValueError, "epochs must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, epochs="10"), TypeError, "epochs must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, learning_rate=0.0), ValueError, "learning_rate must be a positive finite"),
    (dict(X=X_OK, y=Y_OK, learning_rate=-0.1), ValueError, "learning_rate must be a positive finite"),
    (dict(X=X_OK, y=Y_OK, learning_rate=np.nan), ValueError, "learning_rate must be a positive finite"),
    (dict(X=X_OK, y=Y_OK, learning_rate=np.inf), ValueError, "learning_rate must be a positive finite"),
    (dict(X=X_OK, y=Y_OK, learning_rate="0.1"), TypeError, "learning_rate must be a positive finite"),
    (dict(X=X_OK, y=Y_OK, n_threads=0), ValueError, "n_threads must be a positive integer"),
    (dict(X=X_OK, y=Y_OK, dtype=np.int32), ValueError, "dtype must be float32 or float64"),
    (dict(X=X_OK, y=Y_OK, random_state="seed"), ValueError, "random_state must be"),
    (dict(X=X_OK, y=Y_OK, random_state=-1), ValueError, "random_state must be"),
    (dict(X=X_OK, y=Y_OK, hidden=3, init=[1, 2]), TypeError, "init must be a Params"),
    (dict(X=X_OK, y=Y_OK, hidden=3, init=_init(d=3)), ValueError, "init.W1 must have shape (2, 3)"),
    (dict(X=X_OK, y=Y_OK, hidden=3, init=_init(k=2)), ValueError, "init.W2 must have shape (3, 1)"),
    (dict(X=X_OK, y=Y_OK, hidden=4, init=_init()), ValueError, "init.W1 has 3 hidden units but hidden=4"),
    (dict(X=X_OK, y=Y_OK, hidden=3,
          init=_init()._replace(b2=np.array([np.nan]))), ValueError, "init.b2 contains NaN"),
]


@pytest.mark.parametrize("kwargs,exc,text", BAD_FIT_CALLS, ids=[c[2] for c in BAD_FIT_CALLS])
def test_bad_fit_input_raises(kwargs, exc, text, backend):
    kwargs = dict(kwargs)
    kwargs.setdefault("backend", backend)
    with pytest.raises(exc) as info:
        shallownet.fit(kwargs.pop("X"), kwargs.pop("y"), epochs=kwargs.pop("epochs", 5), **kwargs)
    assert text in str(info.value)


def test_bad_loss_and_gradients_input_raises():
    with pytest.raises(ValueError, match="params.W2 must have shape"):
        shallownet.loss_and_gradients(_init(k=2), X_OK, Y_OK)
    with pytest.raises(TypeError, match="params must be a Params"):
        shallownet.loss_and_gradients("W", X_OK, Y_OK)
    with pytest.raises(ValueError, match="params.W1 must be 2-D"):
        shallownet.loss_and_gradients((np.zeros(3), 0, 0, 0), X_OK, Y_OK)
    with pytest.raises(ValueError, match="X contains NaN"):
        shallownet.loss_and_gradients(_init(), np.full((10, 2), np.nan), Y_OK)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_arrays_are_checked_entry_by_entry(dtype):
    # at this size the check starts with the array's sum (_check_finite):
    # one bad entry anywhere, opposite infinities, and large finite entries
    # whose sum overflows must all be judged as the elementwise check judges them
    from shallownet._validation import _SUM_CHECK_MIN_SIZE, check_X
    n, d = 4096, 20
    assert n * d >= _SUM_CHECK_MIN_SIZE
    base = np.random.default_rng(0).standard_normal((n, d)).astype(dtype)
    for i, j, value in [(0, 0, np.nan), (n - 1, d - 1, np.inf), (1234, 7, -np.inf)]:
        X = base.copy()
        X[i, j] = value
        before = X.copy()
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            check_X(X, dtype)
        np.testing.assert_array_equal(X, before)     # the input is left as it was
    X = base.copy()
    X[10, 3], X[20, 3] = np.inf, -np.inf            # inf - inf: a NaN sum
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        check_X(X, dtype)
    huge = np.full((n, d), np.finfo(dtype).max / 2, dtype)   # finite; the sum overflows
    with np.errstate(over="ignore"):
        assert not np.isfinite(huge.sum())
    checked = check_X(huge, dtype)
    assert checked is huge or np.array_equal(checked, huge)
    assert check_X(base, dtype) is base            # no copy of valid input either
    Y = base[:, :16].copy()                          # a 2-D y of this size too
    Y[5, 1] = np.nan
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        shallownet.fit(base, Y, epochs=1, backend="numpy")


def test_predict_checks_its_input():
    model = shallownet.fit(X_OK, Y_OK, hidden=3, epochs=2, backend="numpy")
    with pytest.raises(ValueError, match="X has 3 features, but the model was fitted with 2"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(np.full((4, 2), np.nan))
    with pytest.raises(ValueError, match="X must be 2-D"):
        model.predict(np.zeros(2))


def test_divergence_raises_instead_of_returning_nan(backend):
    X, y = make_problem(50, 2, 1)
    with pytest.raises(FloatingPointError, match=r"diverged.*learning_rate=1e\+06.*smaller"):
        shallownet.fit(X * 100, y * 1e3, learning_rate=1e6, epochs=200, activation="identity",
                       backend=backend, random_state=0)
    # the very last step overflows while every loss was finite: caught as well
    with pytest.raises(FloatingPointError,
                       match=r"non-finite in the last step of epoch 0 with learning_rate=1e\+300"):
        shallownet.fit(X, y * 1e10, learning_rate=1e300, epochs=1, activation="identity",
                       backend=backend, random_state=0)


def test_dask_input_points_to_shallownet_dask():
    da = pytest.importorskip("dask.array")
    X = da.ones((20, 3), chunks=10)
    y = da.ones(20, chunks=10)
    with pytest.raises(TypeError, match="X is a dask Array.*shallownet.dask.fit"):
        shallownet.fit(X, np.ones(20), backend="numpy")
    with pytest.raises(TypeError, match="y is a dask Array"):
        shallownet.fit(np.ones((20, 3)), y, backend="numpy")
    model = shallownet.fit(np.ones((20, 3)), np.ones(20), epochs=1, backend="numpy")
    with pytest.raises(TypeError, match="shallownet.dask.predict"):
        model.predict(X)


def test_dask_input_to_the_estimators_points_to_shallownet_dask():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("sklearn")
    X = da.ones((20, 3), chunks=10)
    for estimator in (shallownet.MLPRegressor(max_iter=2),
                      shallownet.ShallowNetRegressor(epochs=2, backend="numpy")):
        with pytest.raises(TypeError, match="X is a dask Array.*shallownet.dask"):
            estimator.fit(X, np.ones(20))
