"""Every compiled backend against the NumPy reference."""

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import expit

import shallownet
from shallownet import Params
from shallownet._activations import ACTIVATIONS as ACTIVATION_TABLE
from shallownet.backends import BACKENDS, _load

from conftest import ACTIVATIONS, COMPILED_BACKENDS, make_problem, relative_error

# float64: 200 epochs of gradient descent stay within this relative error of the reference
RTOL64 = 1e-10
# float32: rounding differs from the reference's BLAS; after 50 epochs
RTOL32 = 2e-4

# n below and above one chunk (2048 rows), so the serial and the parallel paths both run;
# (2500, 30, 40, 1) takes the GEMM tiles with k = 1 (fused dW2); (3000, 70, 64, 2)
# takes BLAS in one chunk of >= 2048 rows, where Cython accumulates dL/dW1
# transposed and its reduction transposes it back
ONE_TALL_CHUNK = (3000, 70, 64, 2)
SHAPES = [
    (1, 1, 1, 1), (50, 1, 1, 1), (64, 1, 16, 1), (40, 7, 1, 1), (33, 5, 9, 4),
    (300, 20, 70, 2), (5000, 3, 8, 1), (4100, 40, 64, 3), (2500, 30, 40, 1), ONE_TALL_CHUNK,
]
# GEMM tiles with k = 1 in two chunks of tall tiles (d x h >= 4096), several
# tiles each (the first writes dW1, the others accumulate into it)
TALL_K1 = (4500, 70, 80, 1)


def test_every_backend_is_available():
    # the wheel ships all three; a missing one is a build defect, not a skip
    assert sorted(shallownet.available_backends()) == sorted(BACKENDS)


def _fit_pair(backend, activation, n, d, h, k, epochs, dtype, learning_rate=0.05):
    X, y = make_problem(n, d, k, seed=n * 7 + d, dtype=dtype)
    kwargs = dict(hidden=h, activation=activation, learning_rate=learning_rate, epochs=epochs,
                  random_state=n + h)
    return (shallownet.fit(X, y, backend=backend, **kwargs),
            shallownet.fit(X, y, backend="numpy", **kwargs))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,d,h,k", SHAPES)
def test_fit_matches_reference_float64(compiled_backend, activation, n, d, h, k):
    model, ref = _fit_pair(compiled_backend, activation, n, d, h, k, 200, np.float64)
    assert relative_error(model.loss_curve, ref.loss_curve) <= RTOL64
    for name, p, q in zip(Params._fields, model.params, ref.params):
        assert p.dtype == np.float64 and p.shape == q.shape
        err = relative_error(p, q)
        assert err <= RTOL64, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,d,h,k", [(50, 1, 1, 1), (33, 5, 9, 4), (5000, 3, 8, 1), (4100, 40, 64, 3),
                                     TALL_K1])
def test_fit_matches_reference_float32(compiled_backend, activation, n, d, h, k):
    model, ref = _fit_pair(compiled_backend, activation, n, d, h, k, 50, np.float32)
    assert model.params.W1.dtype == np.float32
    assert relative_error(model.loss_curve, ref.loss_curve) <= RTOL32
    for name, p, q in zip(Params._fields, model.params, ref.params):
        err = relative_error(p, q)
        assert err <= RTOL32, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n,d,h,k", [(1, 1, 1, 1), (33, 5, 9, 4), (5000, 3, 8, 1), (3000, 200, 100, 2),
                                     TALL_K1, ONE_TALL_CHUNK])
def test_loss_and_gradients_match_reference(compiled_backend, activation, n, d, h, k):
    X, y = make_problem(n, d, k, seed=5)
    rng = np.random.default_rng(2)
    params = Params(rng.normal(size=(d, h)) / np.sqrt(d), rng.normal(size=h),
                    rng.normal(size=(h, k)), rng.normal(size=k))
    loss, grads = shallownet.loss_and_gradients(params, X, y, activation=activation,
                                                backend=compiled_backend)
    ref_loss, ref_grads = shallownet.loss_and_gradients(params, X, y, activation=activation)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for name, g, r in zip(Params._fields, grads, ref_grads):
        assert g.shape == r.shape
        err = relative_error(g, r)
        assert err <= 1e-12, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,d,h,k", [(33, 5, 9, 4), (2000, 10, 100, 1), (3000, 200, 100, 2)])
def test_packed_loss_is_loss_and_gradients_packed(backend, dtype, n, d, h, k):
    # the L-BFGS evaluation (backends.open_packed_loss: the backend's own, or
    # the fallback over loss_and_gradients) on packed vectors, several calls
    # on one opened loss, weighted rows, and 2 threads over several chunks
    from shallownet._lbfgs import pack
    from shallownet.backends import open_packed_loss, resolve_backend, thread_limits
    module = resolve_backend(backend)[1]
    X, y = make_problem(n, d, k, seed=3, dtype=dtype)
    Y = np.ascontiguousarray(y.reshape(n, -1))
    w = np.random.default_rng(4).uniform(0.5, 2.0, n).astype(dtype)
    code = ACTIVATION_TABLE["tanh"].code
    with thread_limits(module, 2):
        loss_at = open_packed_loss(module, X, Y, w, h, code, 0.01, 2)
        for seed in range(3):
            rng = np.random.default_rng(seed)
            params = Params(*(np.ascontiguousarray(a, dtype=dtype) for a in (
                rng.normal(size=(d, h)) / np.sqrt(d), rng.normal(size=h),
                rng.normal(size=(h, k)), rng.normal(size=k))))
            out = np.empty(sum(p.size for p in params), dtype=dtype)
            loss = loss_at(pack(params), out, 0.5)
            ref_loss, ref_grads = module.loss_and_gradients(X, Y, w, params, code, 0.01, 2)
            assert loss == ref_loss
            np.testing.assert_array_equal(out, pack(ref_grads) * dtype(0.5))


def test_a_later_batch_with_more_chunks_than_the_largest(compiled_backend):
    # Cython rounds chunks up to multiples of 8 rows and gives a chunk at
    # least 64 rows: at h (d + k) = 4096 a batch of 1025 rows runs in 15
    # chunks (of 72 rows), the epoch's last batch of 1024 in 16; buffers and
    # threads are sized for the most chunks of any batch
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2049, 1))
    y = np.sin(X[:, 0])
    kwargs = dict(hidden=2048, optimizer="adam", batch_size=1025, epochs=2, learning_rate=1e-3,
                  random_state=0, shuffle=False)
    ref = shallownet.fit(X, y, backend="numpy", **kwargs)
    fits = [shallownet.fit(X, y, backend=compiled_backend, n_threads=t, **kwargs)
            for t in (1, 4)]
    for p, q, r in zip(*(f.params for f in fits), ref.params):
        np.testing.assert_array_equal(p, q)
        assert relative_error(p, r) <= RTOL64


def _ulp_error(actual, reference):
    spacing = np.spacing(np.maximum(np.abs(reference), np.finfo(np.float64).tiny))
    return np.abs(actual - reference) / spacing


FLOAT_RANGE = np.concatenate([
    -np.logspace(-300, 308, 4000), [-0.0, 0.0], np.logspace(-300, 308, 4000),
    np.linspace(-30, 30, 20001),
])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_match_numpy_over_float_range(compiled_backend, activation):
    module = _load(compiled_backend)
    act = ACTIVATION_TABLE[activation]
    z = np.ascontiguousarray(FLOAT_RANGE)
    a, a_prime = module.apply_activation(z.copy(), act.code)
    want, want_prime = act.g(z), act.g_prime(z)
    if activation == "sigmoid":
        # documented: below z = -708 the kernels return exp(-708) ~ 3.3e-308
        normal = z > -708
        assert np.max(_ulp_error(a[normal], want[normal])) <= 4
        assert np.all(np.abs(a[~normal] - want[~normal]) <= 3.4e-308)
        assert np.max(np.abs(a_prime - want_prime)) <= 4 * np.finfo(np.float64).eps * 0.25
    else:
        assert np.max(_ulp_error(a, want)) <= 4
        assert np.max(np.abs(a_prime - want_prime)) <= 4 * np.finfo(np.float64).eps


FLOAT32_RANGE = np.concatenate([
    -np.logspace(-40, 38, 4000), [-0.0, 0.0], np.logspace(-40, 38, 4000),
    np.linspace(-100, 100, 200001),
]).astype(np.float32)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_float32_activations_over_float32_range(compiled_backend, activation):
    # float32 tiles compute in float32 (docs/kernels.md): measured at most
    # 2.63 ulp (tanh) and 2.22 ulp (sigmoid) from the exact value rounded to
    # float32, and 3.2 and 4.0 ulp for g'(z) against sech(z)^2 and
    # sigmoid(z) sigmoid(-z). Beyond the clamps (|z| > 44 for tanh, |z| > 87
    # for sigmoid) g and g' are off by less than 2.5e-38, absolutely.
    module = _load(compiled_backend)
    z = FLOAT32_RANGE.copy()
    a, a_prime = module.apply_activation(z, ACTIVATION_TABLE[activation].code)
    assert a.dtype == a_prime.dtype == np.float32
    assert np.array_equal(z, FLOAT32_RANGE)
    z64 = z.astype(np.float64)
    with np.errstate(over="ignore"):
        if activation == "tanh":
            want, want_prime = np.tanh(z64), 1.0 / np.cosh(z64) ** 2
            inside = np.ones(z.size, bool)
            inside_prime = np.abs(z64) < 44
        else:
            want, want_prime = expit(z64), expit(z64) * expit(-z64)
            inside = z64 > -87
            inside_prime = np.abs(z64) < 87

    def ulps(actual, exact):
        rounded = np.abs(exact.astype(np.float32))
        spacing = np.spacing(np.maximum(rounded, np.finfo(np.float32).tiny)).astype(np.float64)
        return np.abs(actual - exact) / spacing

    inside_prime &= want_prime > np.finfo(np.float32).tiny
    assert np.max(ulps(a[inside], want[inside])) <= 3
    assert np.max(ulps(a_prime[inside_prime], want_prime[inside_prime])) <= 4.5
    assert np.max(np.abs(a[~inside] - want[~inside]), initial=0) <= 2.5e-38
    assert np.max(np.abs(a_prime[~inside_prime] - want_prime[~inside_prime])) <= 2.5e-38


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_is_exactly_odd_and_saturates(compiled_backend, dtype):
    module = _load(compiled_backend)
    z = np.linspace(0, 40, 4001).astype(dtype)
    a, _ = module.apply_activation(z, ACTIVATION_TABLE["tanh"].code)
    b, _ = module.apply_activation(-z, ACTIVATION_TABLE["tanh"].code)
    assert np.array_equal(a, -b)
    assert a[-1] == 1.0
    # monotone up to the approximation's few-ulp error (it is not correctly rounded)
    assert np.all(np.diff(a) >= -4 * np.spacing(a[1:]))


# (n, d, h, optimizer options): each splits its batches into several chunks
# (a chunk holds at least 2**20 units of rows * h * (d + k) in both compiled
# backends; docs/kernels.md), so fits on 1 and 2 threads take the parallel
# path in different ways: several chunks of narrow rows; chunks of a single
# input; minibatches split into chunks, with a serial last batch; and rows
# wide enough for the GEMM tiles.
_THREAD_CASES = [(40000, 6, 24, {}), (70000, 1, 16, {}),
                 (24000, 5, 32, dict(optimizer="adam", batch_size=12000, learning_rate=1e-3)),
                 (5000, 80, 64, {}), (9000, 6, 24, {}), (4000, 1, 16, {}),
                 (6000, 5, 32, dict(optimizer="adam", batch_size=2800, learning_rate=1e-3))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, d, h, options", _THREAD_CASES)
def test_results_do_not_depend_on_n_threads(compiled_backend, dtype, n, d, h, options):
    X, y = make_problem(n, d, 2, seed=11, dtype=dtype)
    options = {"learning_rate": 0.05, **options}
    fits = [shallownet.fit(X, y, hidden=h, epochs=30, random_state=3, backend=compiled_backend,
                           n_threads=t, **options) for t in (1, 2, 1)]
    for other in fits[1:]:
        assert np.array_equal(other.loss_curve, fits[0].loss_curve)
        for p, q in zip(other.params, fits[0].params):
            assert np.array_equal(p, q)


def test_same_random_state_same_start_everywhere():
    X, y = make_problem(20, 3, 1)
    first = {b: shallownet.fit(X, y, epochs=1, backend=b, random_state=42).loss_curve[0]
             for b in BACKENDS}
    assert len({round(v, 12) for v in first.values()}) == 1


def test_numba_thread_count_is_set_for_the_fit_and_restored():
    numba = pytest.importorskip("numba")
    X, y = make_problem(200, 2, 1, seed=1)
    before = numba.get_num_threads()
    seen = []
    shallownet.fit(X, y, epochs=3, backend="numba", n_threads=1,
                   callback=lambda epoch, loss, params: seen.append(numba.get_num_threads()))
    # set once for the whole fit, every block ran with it, and it is back
    assert seen == [1, 1, 1]
    assert numba.get_num_threads() == before
    # a direct call outside a fit sets and restores it too
    backend = _load("numba")
    loss, _ = backend.loss_and_gradients(X, y.reshape(-1, 1), np.ones(200),
                                         shallownet.fit(X, y, epochs=1, backend="numba").params,
                                         ACTIVATION_TABLE["tanh"].code, 0.0, 1)
    assert np.isfinite(loss) and numba.get_num_threads() == before


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "identity"])
def test_numba_float64_forms_take_g_prime_as_derivative64_does(name):
    # the GEMM tiles form g' from a1 with derivative64, the float64
    # activation forms with their own copy of its formula: the same bits
    pytest.importorskip("numba")
    from numba import njit

    from shallownet._numba.activations import activation, derivative64

    code = ACTIVATION_TABLE[name].code

    @njit(fastmath={"contract"})        # the kernels' flags (jit.JIT)
    def both(z):
        g = np.empty_like(z)
        from_a = np.empty_like(z)
        for i in range(z.shape[0]):
            a, g[i] = activation(z[i], code)
            from_a[i] = derivative64(a, code)
        return g, from_a

    z = np.concatenate([np.linspace(-30.0, 30.0, 20001), [0.0, -0.0, 1e-300, -1e-300]])
    g, from_a = both(z)
    assert g.tobytes() == from_a.tobytes()


def test_numba_row_views_are_the_slices_they_replace():
    # the tiles take their rows through intrinsics.segment and row_segment,
    # not slices: the same elements, as views (a write reaches the array)
    pytest.importorskip("numba")
    from numba import njit

    from shallownet._numba.intrinsics import row_segment, segment

    @njit
    def views(a3, a2, a1, start, row):
        return (segment(a3, start, 2), segment(a2, start, 3), segment(a1, start, 4),
                row_segment(a2, row, start, 2))

    a3 = np.arange(60.0).reshape(5, 4, 3)
    a2 = np.arange(36, dtype=np.float32).reshape(6, 6)
    a1 = np.arange(10, dtype=np.int64)
    # (the caller keeps a segment inside its array: no slice clipping to compare)
    for start, row in [(0, 0), (1, 3), (3, 5)]:
        got = views(a3, a2, a1, start, row)
        want = (a3[start:start + 2], a2[start:start + 3], a1[start:start + 4],
                a2[row, start:start + 2])
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape and g.strides == w.strides
            np.testing.assert_array_equal(g, w)
    s3, s2, s1, r = views(a3, a2, a1, 1, 3)
    s3[1, 2, 0] = -1.0
    s2[2, 5] = -2.0
    s1[3] = -3
    r[1] = -4.0
    assert a3[2, 2, 0] == -1.0 and a2[3, 5] == -2.0 and a1[4] == -3 and a2[3, 2] == -4.0


def test_numba_min_max_and_zero_intrinsics_match_numba():
    # intrinsics.smaller, larger and zero replace min(), max() and a zeroing
    # loop in the kernels: the same values as Numba's min and max, NaN
    # operands and signed zeros included (bit for bit), and every element 0
    pytest.importorskip("numba")
    from numba import njit

    from shallownet._numba.intrinsics import larger, smaller, zero

    @njit
    def ours(a, b):
        return smaller(a, b), larger(a, b)

    @njit
    def numbas(a, b):
        return min(a, b), max(a, b)

    values = [0.0, -0.0, 1.5, -2.0, np.inf, -np.inf, np.nan, 20.0]
    for dtype in (np.float64, np.float32):
        for a in values:
            for b in values:
                got = ours(dtype(a), dtype(b))
                want = numbas(dtype(a), dtype(b))
                for g, w in zip(got, want):
                    assert dtype(g).tobytes() == dtype(w).tobytes(), (a, b)
    for a, b in [(3, 7), (7, 3), (-1, 0), (2, 2)]:
        assert ours(a, b) == numbas(a, b) == (min(a, b), max(a, b))
    assert ours(2, np.int64(5)) == (2, 5)

    @njit
    def zeroed(a):
        zero(a)

    for a in (np.arange(1.0, 8.0), np.arange(1, 5, dtype=np.float32), np.arange(1, 6)):
        zeroed(a)
        assert not a.any() and not np.signbit(a).any()
    empty = np.empty(0)
    zeroed(empty)


# Fits whose batches end in a partial block of 32 samples, in one chunk and in
# several (chunks of multiples of 8 rows): (n, d, h, k, options)
_ISA_CASES = [(517, 3, 16, 1, {}), (77, 1, 5, 2, {}), (4100, 5, 8, 1, {}),
              (1000, 20, 100, 1, dict(optimizer="adam", batch_size=200, learning_rate=1e-3)),
              (333, 7, 33, 2, dict(optimizer="adam", batch_size=61, learning_rate=1e-3))]
_ISA_SCRIPT = """
import sys, numpy as np, shallownet
from shallownet import _cython_train
sys.path.insert(0, sys.argv[1])
from conftest import make_problem
out = {"isa": np.array(_cython_train.ISA)}
for i, (n, d, h, k, options) in enumerate(%r):
    for dtype in (np.float64, np.float32):
        X, y = make_problem(n, d, k, seed=i, dtype=dtype)
        fit = shallownet.fit(X, y, hidden=h, epochs=20, random_state=1, backend="cython",
                             activation="tanh", **{"learning_rate": 0.05, **options})
        for j, p in enumerate(fit.params):
            out[f"{i}-{np.dtype(dtype).name}-{j}"] = p
np.savez(sys.argv[2], **out)
""" % (_ISA_CASES,)


def test_every_isa_build_of_the_cython_loops(tmp_path):
    # The extension holds AVX-512, AVX2 and baseline builds of its loops and
    # runs the best the CPU has; SHALLOWNET_ISA caps it, so every build this
    # CPU can run is checked here: against the reference, and AVX2 against
    # AVX-512 bit for bit (the same lanes, trees and FMA contraction)
    if "cython" not in shallownet.available_backends():
        pytest.fail("the cython backend is missing from the build")
    script = tmp_path / "isa_fits.py"
    script.write_text(_ISA_SCRIPT)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    results = {}
    for cap in ("baseline", "avx2", "avx512"):
        path = tmp_path / f"{cap}.npz"
        proc = subprocess.run([sys.executable, str(script), tests_dir, str(path)],
                              env={**os.environ, "SHALLOWNET_ISA": cap},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        with np.load(path) as got:
            results[str(got["isa"])] = {key: got[key] for key in got.files if key != "isa"}
    assert "baseline" in results
    for i, (n, d, h, k, options) in enumerate(_ISA_CASES):
        for dtype, rtol in ((np.float64, RTOL64), (np.float32, RTOL32)):
            X, y = make_problem(n, d, k, seed=i, dtype=dtype)
            ref = shallownet.fit(X, y, hidden=h, epochs=20, random_state=1, backend="numpy",
                                 activation="tanh", **{"learning_rate": 0.05, **options})
            for isa, params in results.items():
                for j, r in enumerate(ref.params):
                    got = params[f"{i}-{np.dtype(dtype).name}-{j}"]
                    assert relative_error(got, r) <= rtol, (isa, i, np.dtype(dtype).name, j)
    if "avx2" in results and "avx512" in results:
        for key, value in results["avx2"].items():
            assert np.array_equal(value, results["avx512"][key]), key
