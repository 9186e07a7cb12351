"""The Numba backend's threads: fork-safe, thread-safe, the user's threading
layer left as chosen. Anything that can hang or crash runs in a child
process with a generous hang guard (no wall-clock assertion)."""

import os
import subprocess
import sys
import textwrap
import threading
from importlib import metadata

import numpy as np
import pytest

import shallownet

from conftest import make_problem

pytest.importorskip("numba")

# the kernels may be compiled in the child (first use): minutes, not hours
HANG_GUARD = 900

# n_threads=2 on rows enough for several chunks, so the fit runs parallel regions
_PROBLEM = "make_problem(6000, 5, 1, seed=2)"
_FIT = "dict(hidden=32, epochs=4, backend='numba', n_threads=2, random_state=1)"


def _has_tbb():
    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


def _child(code, **env):
    """Run ``code`` in a fresh interpreter that imports the tests' helpers."""
    tests = os.path.dirname(os.path.abspath(__file__))
    script = f"import sys; sys.path.insert(0, {tests!r})\n" + textwrap.dedent(code)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=HANG_GUARD, env=environment)


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork")
def test_fork_started_child_fits_after_the_parent_fitted():
    result = _child(f"""
        import multiprocessing, warnings
        import numpy as np, numba, shallownet
        from conftest import make_problem
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        X, y = {_PROBLEM}
        parent = shallownet.fit(X, y, **{_FIT})

        def child_fit(_):
            return shallownet.fit(X, y, **{_FIT}).loss_curve

        with multiprocessing.get_context("fork").Pool(2) as pool:
            curves = pool.map(child_fit, range(2))
        assert all(np.array_equal(c, parent.loss_curve) for c in curves), curves
        print("layer", numba.threading_layer())
        """)
    assert result.returncode == 0, result.stderr[-3000:]
    if _has_tbb():
        assert "layer tbb" in result.stdout


@pytest.mark.skipif(not _has_tbb(), reason="the tbb package is not installed")
def test_tbb_is_used_unless_the_user_chose_a_layer():
    code = f"""
        import numba, shallownet
        from conftest import make_problem
        X, y = {_PROBLEM}
        shallownet.fit(X, y, **{_FIT})
        print("layer", numba.threading_layer())
        """
    assert "layer tbb" in _child(code).stdout
    # a layer the user chose stays chosen
    chosen = _child(code, NUMBA_THREADING_LAYER="workqueue")
    assert "layer workqueue" in chosen.stdout, chosen.stderr[-3000:]


def test_concurrent_fits_in_threads_match_a_fit_alone():
    X, y = make_problem(6000, 5, 1, seed=2)
    options = dict(hidden=32, epochs=4, backend="numba", n_threads=2, random_state=1)
    alone = shallownet.fit(X, y, **options)
    results = [None] * 4
    errors = []

    def fit(i):
        try:
            results[i] = shallownet.fit(X, y, **options)
        except BaseException as error:   # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert not errors and all(r is not None for r in results)
    for r in results:
        assert np.array_equal(r.loss_curve, alone.loss_curve)
        for p, q in zip(r.params, alone.params):
            assert np.array_equal(p, q)
