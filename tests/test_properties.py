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
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12 * max(1.0, np.max(np.abs(r))))
