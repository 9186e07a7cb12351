"""Property-based tests: any input either fits correctly or raises a clear exception."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import shallownet

from conftest import ALL_BACKENDS

EXPECTED_ERRORS = (ValueError, TypeError, FloatingPointError)
ARGUMENT_NAMES = ("X", "y", "init", "params", "learning_rate", "hidden", "epochs", "diverged")

DTYPES = st.sampled_from([
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64,
    np.float16, np.float32, np.float64, np.complex128, "U3", "S2", object,
])


@st.composite
def arrays(draw, shape):
    dtype = draw(DTYPES)
    if dtype in ("U3", "S2"):
        return draw(hnp.arrays(np.dtype(dtype), shape))
    if dtype is object:
        return draw(hnp.arrays(object, shape, elements=st.one_of(
            st.floats(allow_nan=True), st.integers(-10, 10), st.text(max_size=2), st.none())))
    base = draw(hnp.arrays(np.dtype(dtype), shape))
    layout = draw(st.sampled_from(["C", "F", "view", "readonly"]))
    if layout == "F":
        base = np.asfortranarray(base)
    elif layout == "view" and base.ndim == 2:
        base = np.repeat(base, 2, axis=0)[::2]
    elif layout == "readonly":
        base.setflags(write=False)
    return base


@st.composite
def problems(draw):
    n = draw(st.integers(0, 12))
    d = draw(st.integers(0, 4))
    k = draw(st.integers(1, 3))
    X = draw(arrays(draw(st.sampled_from([(n, d), (n,), (n, d, 1)]))))
    y = draw(arrays(draw(st.sampled_from([(n,), (n, k), (n + 1,)]))))
    return X, y


def _check_outcome(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may warn from inside a kernel
        try:
            model = call()
        except EXPECTED_ERRORS as exc:
            assert any(name in str(exc) for name in ARGUMENT_NAMES), str(exc)
            return None
    return model


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(), learning_rate=st.sampled_from([1e-3, 0.1, 10.0, 1e8]))
def test_fit_returns_a_model_or_raises_clearly(backend, problem, learning_rate):
    X, y = problem
    before = [a.tobytes() if isinstance(a, np.ndarray) and a.dtype != object else None for a in problem]
    model = _check_outcome(lambda: shallownet.fit(X, y, hidden=3, epochs=5, backend=backend,
                                                  learning_rate=learning_rate, random_state=0))
    after = [a.tobytes() if isinstance(a, np.ndarray) and a.dtype != object else None for a in problem]
    assert before == after, "fit modified its input"
    if model is not None:
        assert all(np.isfinite(p).all() for p in model.params)
        assert np.isfinite(model.loss_curve).all()
        pred = model.predict(X)
        assert pred.shape[0] == np.shape(X)[0]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 6), h=st.integers(1, 9), k=st.integers(1, 3),
       scale=st.sampled_from([1e-150, 1e-5, 1.0, 1e5, 1e150]), seed=st.integers(0, 2**32 - 1))
def test_gradients_match_reference_on_random_shapes_and_scales(backend, n, d, h, k, scale, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale
    Y = rng.standard_normal((n, k))
    params = shallownet.Params(rng.standard_normal((d, h)), rng.standard_normal(h),
                               rng.standard_normal((h, k)), rng.standard_normal(k))
    try:
        loss, grads = shallownet.loss_and_gradients(params, X, Y, backend=backend)
    except (ValueError, FloatingPointError):
        return
    ref_loss, ref_grads = shallownet.loss_and_gradients(params, X, Y, backend="numpy")
    assert np.isfinite(ref_loss) == np.isfinite(loss)
    if np.isfinite(ref_loss):
        assert loss == pytest.approx(ref_loss, rel=1e-11)
        # dL/dW1 and dL/db1 go through g'(z1) = 1 - tanh(z1)^2, whose rounding
        # error is ~eps absolute in any implementation (the reference's too):
        # for a saturated unit that is a large relative error. Their bound is
        # therefore eps-sized in absolute terms, scaled by the sums the error
        # is carried through: sum_i |x_i| |dL/dyhat_i| |W2|^T.
        with np.errstate(all="ignore"):
            yhat = np.tanh(X @ params.W1 + params.b1) @ params.W2 + params.b2
            dyhat = np.abs(2.0 / n * (yhat - Y)) @ np.abs(params.W2).T      # (n, h)
            carried = [np.abs(X).T @ dyhat, dyhat.sum(axis=0), 0.0, 0.0]
        for g, r, c in zip(grads, ref_grads, carried):
            atol = 1e-12 * max(1.0, np.max(np.abs(r))) + 8 * np.finfo(np.float64).eps * c
            excess = np.abs(g - r) - (1e-9 * np.abs(r) + atol)
            assert np.all(excess <= 0), f"gradients differ from the reference by {np.max(excess):.3g} too much"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 30), d=st.integers(1, 5), k=st.integers(1, 3),
       optimizer=st.sampled_from(["gd", "sgd", "adam"]), one_d=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_estimator_and_save_load_round_trip(backend, n, d, k, optimizer, one_d, dtype, seed,
                                            tmp_path_factory):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.standard_normal(n if one_d else (n, k)).astype(dtype)
    est = shallownet.ShallowNetRegressor(hidden=3, epochs=4, optimizer=optimizer, batch_size=4,
                                         backend=backend, random_state=seed)
    est.fit(X, y)
    pred = est.predict(X)
    assert pred.shape == y.shape and np.isfinite(pred).all()
    path = tmp_path_factory.mktemp("save") / "model.npz"
    est.model_.save(path)
    loaded = shallownet.load(path)
    np.testing.assert_array_equal(loaded.predict(X), pred)
    assert loaded.dtype == est.model_.dtype


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_memory_mapped_and_pandas_inputs(backend, tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = np.sin(X).sum(1)
    path = tmp_path / "X.dat"
    mapped = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mapped[:] = X
    mapped.flush()
    readonly = np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)
    want = shallownet.fit(X, y, epochs=5, backend=backend, random_state=0)
    for X_in, y_in in ((readonly, y), (pd.DataFrame(X), pd.Series(y))):
        got = shallownet.fit(X_in, y_in, epochs=5, backend=backend, random_state=0)
        assert all(np.array_equal(p, q) for p, q in zip(got.params, want.params))
        np.testing.assert_array_equal(got.predict(X_in), want.predict(X))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_constant_target_and_huge_feature_scale(backend, optimizer):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    # a constant target is learnt through the output bias
    model = shallownet.fit(X, np.full(200, 3.5), epochs=300, learning_rate=0.05,
                           optimizer=optimizer, backend=backend, random_state=0)
    assert model.loss_curve[-1] < 1e-2 * model.loss_curve[0]
    # features of scale 1e6: tanh saturates, the fit stays finite or raises the divergence error
    X_big = X * 1e6
    try:
        big = shallownet.fit(X_big, np.sin(X).sum(1), epochs=50, learning_rate=0.01,
                             optimizer=optimizer, backend=backend, random_state=0)
    except FloatingPointError as exc:
        assert "diverged" in str(exc)
    else:
        assert all(np.isfinite(p).all() for p in big.params)
        assert np.isfinite(big.predict(X_big)).all()
