"""shallownet._lbfgs.minimize_packed against SciPy's L-BFGS-B.

engine="scipy" runs SciPy's own and must match ``scipy.optimize.minimize``
bit for bit. The default, the compiled shallownet._cython_lbfgs: without bounds the two run the same iteration; they differ in rounding
only (a two-loop recursion against L-BFGS-B's compact form). On
Rosenbrock's valley, which amplifies a difference of rounding, the
evaluation points agree to ~1e-11 for the first 30 evaluations, to ~1e-9 at
the 40th and ~1e-3 at the 100th; runs stopped earlier agree in every count.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

from shallownet import _cython_lbfgs, _lbfgs

SAME_POINTS = 30       # evaluations compared point by point
POINT_RTOL = 1e-10


def rosenbrock(dtype, seen):
    """Rosenbrock's function in ``dtype``, its points recorded in ``seen``."""
    def fun(x):
        assert x.dtype == dtype
        seen.append(x.copy())
        x = x.astype(np.float64)
        r = x[1:] - x[:-1] ** 2
        s = 1.0 - x[:-1]
        g = np.zeros_like(x)
        g[1:] += 200.0 * r
        g[:-1] += -400.0 * r * x[:-1] - 2.0 * s
        return float(100.0 * r @ r + s @ s), g.astype(dtype)
    return fun


def wrong_gradient(dtype, seen):
    """A gradient of the wrong sign: every line search fails."""
    def fun(x):
        seen.append(x.copy())
        return float(x @ x), (-2.0 * x).astype(dtype)
    return fun


def both(problem, dtype, x0, max_iter, max_fun, tol, stop_at=None, engine="compiled"):
    """``engine``'s run and SciPy's, with their evaluation points and the
    iterates their callbacks saw."""
    ours_at, theirs_at, ours_seen, theirs_seen = [], [], [], []

    def stop(seen):
        def callback(x, loss):
            seen.append((x.copy(), float(loss)))
            return stop_at is not None and len(seen) >= stop_at
        return callback

    ours = _lbfgs.minimize_packed(problem(dtype, ours_at), x0, max_iter=max_iter,
                                  max_fun=max_fun, tol=tol, callback=stop(ours_seen),
                                  engine=engine)

    def on_iteration(intermediate_result):
        if stop(theirs_seen)(intermediate_result.x, intermediate_result.fun):
            raise StopIteration
    theirs = minimize(problem(dtype, theirs_at), x0, jac=True, method="L-BFGS-B",
                      callback=on_iteration,
                      options=dict(maxiter=max_iter, maxfun=max_fun, gtol=tol))
    return ours, theirs, (ours_at, theirs_at), (ours_seen, theirs_seen)


@pytest.mark.parametrize("dtype,options,stop_at", [
    (np.float64, dict(max_iter=200, max_fun=15000, tol=1e-5), None),     # converges
    (np.float32, dict(max_iter=200, max_fun=15000, tol=1e-5), None),     # float32 points
    (np.float64, dict(max_iter=7, max_fun=15000, tol=1e-5), None),       # max_iter
    (np.float64, dict(max_iter=200, max_fun=9, tol=1e-5), None),         # max_fun
    (np.float64, dict(max_iter=200, max_fun=15000, tol=1e-5), 4),        # callback stop
    (np.float64, dict(max_iter=200, max_fun=15000, tol=10.0), None),     # gtol at once
])
def test_scipy_engine_is_scipys_lbfgsb_bit_for_bit(dtype, options, stop_at):
    # shallownet's own loop over SciPy's setulb (SciPy 1.15-1.17; minimize
    # itself elsewhere): the same evaluation points, result, counts, message
    x0 = np.linspace(-1.2, 1.4, 12).astype(dtype)
    ours, theirs, (ours_at, theirs_at), (ours_seen, theirs_seen) = both(
        rosenbrock, dtype, x0, stop_at=stop_at, engine="scipy", **options)
    assert len(ours_at) == len(theirs_at) == ours.nfev == theirs.nfev > 1
    for a, b in zip(ours_at, theirs_at):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.x, theirs.x)
    assert ours.x.dtype == theirs.x.dtype == np.float64
    assert (ours.fun, ours.nit, ours.status, ours.success, ours.message) == \
        (theirs.fun, theirs.nit, theirs.status, theirs.success, theirs.message)
    np.testing.assert_array_equal(ours.jac, theirs.jac)
    assert len(ours_seen) == len(theirs_seen) == ours.nit
    for (xa, fa), (xb, fb) in zip(ours_seen, theirs_seen):
        np.testing.assert_array_equal(xa, xb)
        assert fa == fb
    if stop_at is not None:
        assert ours.nit == stop_at and not ours.success


def test_scipy_engine_loops_over_setulb_where_its_loop_is_known():
    # SciPy 1.15-1.17 run the C setulb in the loop shallownet repeats; other
    # releases take scipy.optimize.minimize (the test above holds for both)
    import scipy
    release = tuple(int(p) for p in scipy.__version__.split(".")[:2])
    assert _lbfgs._SETULB_LOOP == ((1, 15) <= release < (1, 18))


@pytest.mark.parametrize("dtype,options,stop_at", [
    (np.float64, dict(max_iter=7, max_fun=15000, tol=1e-5), None),       # max_iter
    (np.float64, dict(max_iter=200, max_fun=9, tol=1e-5), None),         # max_fun
    (np.float64, dict(max_iter=200, max_fun=15000, tol=1e-5), 4),        # callback stop
    (np.float64, dict(max_iter=200, max_fun=15000, tol=10.0), None),     # gtol
    (np.float32, dict(max_iter=7, max_fun=15000, tol=1e-5), None),       # float32 points
    (np.float32, dict(max_iter=200, max_fun=15000, tol=1e-5), None),     # converges
])
def test_cython_lbfgs_takes_scipys_iterates(dtype, options, stop_at):
    x0 = np.linspace(-1.2, 1.4, 12).astype(dtype)
    ours, theirs, (ours_at, theirs_at), (ours_seen, theirs_seen) = both(
        rosenbrock, dtype, x0, stop_at=stop_at, **options)
    assert (ours.nit, ours.nfev, ours.status, ours.success, ours.message) == \
        (theirs.nit, theirs.nfev, theirs.status, theirs.success, theirs.message)
    assert len(ours_at) == len(theirs_at) == ours.nfev > 1
    for a, b in zip(ours_at[:SAME_POINTS], theirs_at[:SAME_POINTS]):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=POINT_RTOL, atol=1e-12)
    assert len(ours_seen) == len(theirs_seen) == ours.nit
    assert ours.x.dtype == np.float64
    if ours.nfev <= SAME_POINTS:
        np.testing.assert_allclose(ours.x, theirs.x, rtol=POINT_RTOL, atol=1e-12)
        assert ours.fun == pytest.approx(theirs.fun, rel=1e-9)
    else:
        np.testing.assert_allclose(ours.x, 1.0, atol=1e-3)   # both at the minimum
    np.testing.assert_array_equal(ours.jac, np.asarray(ours.jac, dtype=np.float64))
    if stop_at is not None:
        assert ours.nit == stop_at and not ours.success


def test_cython_lbfgs_converges_where_scipy_does():
    # float64 on the valley: the points part after ~40 evaluations, both
    # runs stop on the relative reduction at the minimum
    x0 = np.linspace(-1.2, 1.4, 12)
    ours, theirs, (ours_at, theirs_at), _ = both(rosenbrock, np.float64, x0, 200, 15000, 1e-5)
    for a, b in zip(ours_at[:SAME_POINTS], theirs_at[:SAME_POINTS]):
        np.testing.assert_allclose(a, b, rtol=POINT_RTOL, atol=1e-12)
    assert ours.success and theirs.success and ours.message == theirs.message
    assert abs(ours.nit - theirs.nit) <= 5
    np.testing.assert_allclose(ours.x, theirs.x, atol=1e-4)


def test_cython_lbfgs_ends_abnormally_where_scipy_does():
    ours, theirs, (ours_at, theirs_at), _ = both(wrong_gradient, np.float64, np.ones(3),
                                                 200, 15000, 1e-5)
    assert (ours.nit, ours.nfev, ours.status, ours.message) == \
        (theirs.nit, theirs.nfev, theirs.status, theirs.message) == (0, 18, 2, "ABNORMAL: ")
    for a, b in zip(ours_at, theirs_at):
        np.testing.assert_allclose(a, b, rtol=POINT_RTOL)
    np.testing.assert_array_equal(ours.x, np.ones(3))


def test_cython_lbfgs_is_the_default_and_deterministic():
    x0 = np.linspace(-1.2, 1.4, 12)
    runs = [_lbfgs.minimize_packed(rosenbrock(np.float64, []), x0, max_iter=60, max_fun=15000,
                                   tol=1e-5) for _ in range(2)]
    direct = _cython_lbfgs.minimize(rosenbrock(np.float64, []), x0, 10, 60, 15000, 1e-5,
                                    _lbfgs._FTOL, 20)
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0].x, direct[0])
    assert runs[0].nfev == direct[3] and runs[0].nit == direct[4] == 60


def test_cython_lbfgs_leaves_its_start_and_passes_fresh_points():
    x0 = np.linspace(-1.2, 1.4, 12)
    before = x0.copy()
    points = []

    def fun(x):
        points.append(x)
        value, grad = rosenbrock(np.float64, [])(x)
        x[:] = np.nan            # a careless function may write to its point
        return value, grad
    result = _lbfgs.minimize_packed(fun, x0, max_iter=5, max_fun=15000, tol=1e-5)
    np.testing.assert_array_equal(x0, before)
    assert np.isfinite(result.x).all() and result.nit == 5
    assert len({id(p) for p in points}) == len(points)


def test_cython_lbfgs_passes_an_exception_through():
    def fun(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _lbfgs.minimize_packed(fun, np.ones(4), max_iter=5, max_fun=15000, tol=1e-5)


def test_minimize_packed_refuses_an_unknown_engine():
    with pytest.raises(ValueError, match="engine must be one of"):
        _lbfgs.minimize_packed(rosenbrock(np.float64, []), np.ones(3), max_iter=5,
                               max_fun=10, tol=1e-5, engine="fortran")


_VECTOR_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "_lbfgs_vectors.h"

static unsigned long long mix(unsigned long long h, double v)
{
    unsigned long long u;
    memcpy(&u, &v, sizeof u);
    return h * 1000003ULL ^ u;
}

int main(void)
{
    unsigned long long h = 0;
    srand(1);
    for (int trial = 0; trial < 100; trial++) {
        ptrdiff_t n = 1 + rand() % 2000;
        double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
        double *c = malloc(n * sizeof(double)), *e = malloc(n * sizeof(double));
        for (ptrdiff_t i = 0; i < n; i++) {
            a[i] = (rand() / (double) RAND_MAX - 0.5) * 1e3;
            b[i] = c[i] = rand() / (double) RAND_MAX - 0.3;
        }
        h = mix(h, sn_lbfgs_dot(a, b, n));
        h = mix(h, sn_lbfgs_max_abs(a, n));
        sn_lbfgs_axpy(0.37, a, c, n);
        sn_lbfgs_scale(1.3, c, n);
        sn_lbfgs_step(e, 0.71, a, c, n);
        sn_lbfgs_pair(a, b, 1.7, e, c, a, n);
        for (ptrdiff_t i = 0; i < n; i++)
            h = mix(mix(h, a[i]), b[i]);
        free(a); free(b); free(c); free(e);
    }
    printf("%llx\n", h);
    return 0;
}
"""


def test_lbfgs_vector_builds_compute_the_same_bits(tmp_path):
    # each ISA build of csrc/_lbfgs_vectors.h (the module picks one when it
    # loads) against the others and an unoptimised build, on this CPU
    import platform
    import shutil
    import subprocess
    from pathlib import Path

    header = Path(__file__).resolve().parents[1] / "csrc" / "_lbfgs_vectors.h"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not header.exists():
        pytest.skip("needs a C compiler and the source tree's csrc/")
    (tmp_path / "driver.c").write_text(_VECTOR_DRIVER)
    flags = {"unoptimised": ["-O0", "-DSN_LBFGS_ONE_BUILD"],
             "baseline": ["-O3", "-DSN_LBFGS_ONE_BUILD"],
             "clones": ["-O3"]}
    if platform.machine() == "x86_64":
        cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        for isa in ("avx2", "avx512f"):
            if f" {isa}" in cpu:
                flags[isa] = ["-O3", f"-m{isa}", "-DSN_LBFGS_ONE_BUILD"]
    outputs = {}
    for name, extra in flags.items():
        binary = tmp_path / name
        subprocess.run([compiler, *extra, "-ffp-contract=off", f"-I{header.parent}",
                        str(tmp_path / "driver.c"), "-o", str(binary), "-lm"], check=True)
        outputs[name] = subprocess.run([str(binary)], check=True, capture_output=True,
                                       text=True).stdout
    assert len(set(outputs.values())) == 1, outputs
