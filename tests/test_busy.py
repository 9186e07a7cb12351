"""Where users really run fits: Ctrl-C, several fits at once, thread limits, memory, small calls."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import shallownet
from shallownet import _threads

from conftest import make_problem

# generous guard against a hang: the fit would otherwise run for minutes
HANG_GUARD_SECONDS = 300


def _child(code, timeout=HANG_GUARD_SECONDS, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_ctrl_c_stops_a_long_fit(backend):
    # a fit of ~10**7 epochs; SIGINT once it runs: KeyboardInterrupt, not the whole fit
    code = f"""
        import sys, time, numpy as np, shallownet
        X = np.random.default_rng(0).standard_normal((2000, 8)); y = X.sum(axis=1)
        shallownet.fit(X[:50], y[:50], epochs=2, backend={backend!r})   # compile first
        print("ready", flush=True)
        start = time.perf_counter()
        try:
            shallownet.fit(X, y, hidden=32, epochs=10**7, learning_rate=1e-4, backend={backend!r})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        print("finished", flush=True)
        sys.exit(3)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(1.0)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
        seconds = time.perf_counter() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0 and "interrupted" in out, (out, err)
    print(f"{backend}: {seconds:.2f} s from SIGINT to exit")


def _blas_threads():
    return sorted((lib["filepath"], lib["num_threads"]) for lib in threadpool_info()
                  if lib["user_api"] == "blas")


def test_thread_settings_left_as_found_after_concurrent_fits(backend):
    X, y = make_problem(20000, 20, 1)   # large enough that fits limit BLAS
    before = _blas_threads()
    errors = []

    def work(seed):
        try:
            for i in range(3):
                shallownet.fit(X, y, hidden=16, epochs=2 + seed % 3, backend=backend,
                               n_threads=1 + (seed + i) % 2, random_state=seed)
        except Exception as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_SECONDS)
    assert not errors
    assert _blas_threads() == before


def test_blas_limits_nest_and_restore_in_any_order():
    libraries = _threads._blas_libraries()
    if not libraries:
        pytest.skip("no BLAS library loaded")
    before = [lib.num_threads for lib in libraries]
    a, b = _threads.blas_limit(1), _threads.blas_limit(2)
    a.__enter__()
    b.__enter__()
    assert all(lib.num_threads == 1 for lib in libraries)
    a.__exit__(None, None, None)       # the first to enter leaves first
    assert all(lib.num_threads == min(2, n) for lib, n in zip(libraries, before))
    b.__exit__(None, None, None)
    assert [lib.num_threads for lib in libraries] == before


def test_blas_limit_restores_while_another_fit_thread_lives():
    # threadpoolctl >= 3.8 lets only the first Python thread to set an
    # OpenBLAS limit change it; the last fit to end must still restore it
    # while that first thread is alive
    libraries = _threads._blas_libraries()
    if not libraries:
        pytest.skip("no BLAS library loaded")
    for lib in libraries:
        clear = getattr(type(lib), "clear_controlling_thread", None)
        if clear is not None:
            clear(force=True)
    before = [lib.num_threads for lib in libraries]
    entered, left, finish = threading.Event(), threading.Event(), threading.Event()

    def first_fit():
        with _threads.blas_limit(1):
            entered.set()
            left.wait(HANG_GUARD_SECONDS)
        finish.wait(HANG_GUARD_SECONDS)   # stays alive after its fit

    thread = threading.Thread(target=first_fit)
    thread.start()
    try:
        assert entered.wait(HANG_GUARD_SECONDS)
        with _threads.blas_limit(1):
            left.set()
            time.sleep(0.05)
        assert thread.is_alive()
        assert [lib.num_threads for lib in libraries] == before
    finally:
        left.set()
        finish.set()
        thread.join(HANG_GUARD_SECONDS)


def test_default_threads_respect_process_limits(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert shallownet._validation.check_n_threads(None) == _threads.usable_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads.usable_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert _threads.usable_cores() <= cores
    monkeypatch.delenv("OMP_NUM_THREADS")
    with threadpool_limits(limits=1, user_api="blas"):
        assert _threads.usable_cores() == 1
    monkeypatch.setattr(_threads, "_cgroup_cores", 1)
    assert _threads.usable_cores() == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity")
def test_default_threads_respect_affinity():
    out = _child("""
        import os, shallownet
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        print(shallownet._threads.usable_cores())
    """)
    assert out.stdout.strip() == "1", out.stderr


def test_curves_grow_with_the_epochs_run(backend):
    X, y = make_problem(50, 2, 1)
    tracemalloc.start()
    model = shallownet.fit(X, y, epochs=10**9, backend=backend,
                           callback=lambda epoch, loss, params: epoch >= 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert model.n_epochs_ == 3 and len(model.loss_curve) == 3
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB for 3 epochs"
    stopped = shallownet.fit(X, y, epochs=10**9, backend=backend, early_stopping=True,
                             n_iter_no_change=2, tol=1e9, random_state=0)
    assert stopped.n_epochs_ == 3 and len(stopped.validation_curve) == 3


def _peak_bytes(fit):
    tracemalloc.start()
    fit()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_early_stopping_does_not_copy_X(backend, optimizer):
    X, y = make_problem(20000, 50, 1)    # 8 MB
    kwargs = dict(hidden=4, epochs=2, backend=backend, optimizer=optimizer, random_state=0)
    shallownet.fit(X[:100], y[:100], **kwargs)   # compile outside the measurement
    alone = _peak_bytes(lambda: shallownet.fit(X, y, **kwargs))
    stopping = _peak_bytes(lambda: shallownet.fit(X, y, early_stopping=True, **kwargs))
    # the validation rows are copied (a tenth of X); a copy of the training
    # rows would add 0.9 X more
    assert stopping - alone < 0.3 * X.nbytes, f"{(stopping - alone) / X.nbytes:.2f} x X more"


def test_early_stopping_matches_training_on_the_kept_rows(backend):
    # the subset walked inside X trains exactly as on a copy of those rows
    X, y = make_problem(300, 3, 1)
    kwargs = dict(hidden=8, epochs=5, backend=backend, early_stopping=True, random_state=3,
                  n_iter_no_change=100)
    for extra in (dict(), dict(optimizer="adam", batch_size=32),
                  dict(optimizer="sgd", batch_size=40, shuffle=False)):
        model = shallownet.fit(X, y, **kwargs, **extra)
        rng = np.random.default_rng(3)
        init = shallownet._params.init_params(3, 8, 1, "tanh", rng, np.float64)
        split, _ = rng.spawn(2)
        order = split.permutation(300)
        rows = np.sort(order[30:])
        ref = shallownet.fit(X[rows], y[rows], **dict(kwargs, early_stopping=False, init=init),
                             **extra)
        np.testing.assert_allclose(model.loss_curve, ref.loss_curve, rtol=1e-12)


def test_evaluator_matches_loss_and_gradients_and_checks_params(backend):
    X, y = make_problem(100, 5, 1)
    params = shallownet._params.init_params(5, 8, 1, "tanh", 0, np.float64)
    evaluate = shallownet.Evaluator(X, y, backend=backend, alpha=0.1)
    loss, grads = evaluate(params)
    ref_loss, ref_grads = shallownet.loss_and_gradients(params, X, y, backend=backend, alpha=0.1)
    assert loss == ref_loss
    for g, r in zip(grads, ref_grads):
        np.testing.assert_array_equal(g, r)
    as_lists = tuple(p.tolist() for p in params)    # any array-like goes the slow way
    assert evaluate(as_lists)[0] == loss
    with pytest.raises(ValueError, match="params.b2 contains NaN"):
        evaluate(params._replace(b2=np.array([np.nan])))
    with pytest.raises(ValueError, match="0 hidden units"):
        evaluate((np.zeros((5, 0)), np.zeros(0), np.zeros((0, 1)), np.zeros(1)))
    with pytest.raises(ValueError, match="params.W1 must have shape"):
        evaluate(params._replace(W1=np.zeros((4, 8))))


def test_blas_threads_are_limited_only_where_blas_runs(monkeypatch):
    # an Evaluator call sets and restores BLAS's thread count only where the
    # backend sends the products to BLAS: Cython's loops do them below
    # d x h = 4096, the NumPy reference never does
    from shallownet import backends
    limits = []
    real = _threads.blas_limit
    monkeypatch.setattr(_threads, "blas_limit", lambda n: limits.append(n) or real(n))
    for backend, (n, d, h), limited in (("cython", (442, 10, 100), False),
                                        ("cython", (300, 70, 64), True),
                                        ("numpy", (442, 10, 100), True)):
        X, y = make_problem(n, d, 1)
        params = shallownet._params.init_params(d, h, 1, "tanh", 0, np.float64)
        limits.clear()
        shallownet.Evaluator(X, y, backend=backend)(params)
        assert bool(limits) == limited, (backend, n, d, h)
        module = backends._load(backend)
        assert (backends.blas_work(module, n, d, h) > 0) == limited


def test_loss_and_gradients_calls_that_reuse_buffers_agree(compiled_backend):
    # the Cython backend keeps a call's buffers and threads for the next call
    # of each Python thread that fits in them: calls of other shapes, dtypes
    # and thread counts in between, and calls from several threads at once,
    # give what a first call gives, bit for bit (the compiled backends do not
    # depend on the thread count; NumPy's BLAS may, by an ulp)
    cases = [(442, 10, 100, 2), (60, 3, 5, 1), (442, 10, 100, 1), (3000, 70, 64, 2),
             (442, 10, 100, 2)]
    problems = {}
    for n, d, h, threads in cases:
        X, y = make_problem(n, d, 1, seed=n + d)
        problems[(n, d, h)] = (X, y, shallownet._params.init_params(d, h, 1, "tanh", 0,
                                                                     np.float64))

    def evaluate(n, d, h, threads, dtype=np.float64):
        X, y, params = problems[(n, d, h)]
        params = shallownet.Params(*(p.astype(dtype) for p in params))
        return shallownet.loss_and_gradients(params, X.astype(dtype), y.astype(dtype),
                                             backend=compiled_backend,
                                             n_threads=threads)

    first = {case: evaluate(*case) for case in cases}
    again = [evaluate(*case) for case in cases]
    again.append(evaluate(442, 10, 100, 2, np.float32))
    again.append(evaluate(442, 10, 100, 2))
    results = {}

    def worker(i):
        results[i] = [evaluate(*case) for case in cases[::-1] * 3]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for case, (loss, grads) in zip(cases + [cases[0]], again[:5] + again[6:]):
        assert loss == first[case][0]
        for g, r in zip(grads, first[case][1]):
            np.testing.assert_array_equal(g, r)
    for got in results.values():
        for case, (loss, grads) in zip(cases[::-1] * 3, got):
            assert loss == first[case][0]
            for g, r in zip(grads, first[case][1]):
                np.testing.assert_array_equal(g, r)


def test_zero_hidden_units_is_a_value_error_everywhere(backend):
    X, y = make_problem(10, 3, 1)
    empty = (np.zeros((3, 0)), np.zeros(0), np.zeros((0, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="0 hidden units"):
        shallownet.loss_and_gradients(empty, X, y, backend=backend)
    with pytest.raises(ValueError, match="0 hidden units"):
        shallownet.fit(X, y, init=empty, backend=backend)
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        shallownet.fit(X, y, hidden=0, backend=backend)
