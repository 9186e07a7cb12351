"""shallownet.dask on a LocalCluster of worker processes (2 workers x 1 thread).

One cluster for the module: starting one costs seconds. The backend is
"auto" (Cython in a full install): Numba would compile its kernels again in
every worker process.
"""

import os
import signal

import numpy as np
import pytest

pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import shallownet  # noqa: E402
import shallownet.dask as sd  # noqa: E402
from shallownet._lbfgs import packed_loss, run_lbfgs  # noqa: E402
from shallownet._params import init_params  # noqa: E402

from conftest import make_problem, relative_error  # noqa: E402

# measured: 2e-16 to 1e-15 after 30 epochs; rounding of the part sums and
# the client's step, not a different computation
AGREEMENT_RTOL = 1e-12
CHUNKS = 150        # 400 rows: blocks of 150, 150, 100


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    client.wait_for_workers(2)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    return make_problem(400, 4, 2, seed=3)


def as_dask(X, y, chunks=CHUNKS):
    y_chunks = chunks if y.ndim == 1 else (chunks, y.shape[1])
    return da.from_array(X, chunks=(chunks, X.shape[1])), da.from_array(y, chunks=y_chunks)


def evaluators_per_worker(client):
    return sorted(client.run(lambda dask_worker: len(dask_worker.state.actors)).values())


SETTINGS = dict(hidden=6, epochs=30, learning_rate=0.05, random_state=0)


def test_agrees_with_fit(client, problem):
    X, y = problem
    w = np.random.default_rng(1).uniform(0.0, 2.0, X.shape[0])
    options = dict(SETTINGS, momentum=0.8, nesterov=True, alpha=0.01)
    model = sd.fit(*as_dask(X, y), client=client, sample_weight=da.from_array(w, chunks=CHUNKS),
                   **options)
    ref = shallownet.fit(X, y, sample_weight=w, backend=model.backend, **options)
    assert isinstance(model, shallownet.Model)
    assert model.n_epochs_ == ref.n_epochs_ == 30
    for a, b in zip(model.params, ref.params):
        assert relative_error(a, b) <= AGREEMENT_RTOL
    np.testing.assert_allclose(model.loss_curve, ref.loss_curve, rtol=AGREEMENT_RTOL)
    assert model.loss_curve[-1] < model.loss_curve[0]
    # the fitted Model is an ordinary one: predict and partial_fit run locally
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)
    model.partial_fit(X, y)
    assert model.n_epochs_ == 31


def test_float32_agrees_with_fit(client, problem):
    X, y = (a.astype(np.float32) for a in problem)
    model = sd.fit(*as_dask(X, y), client=client, **SETTINGS)
    ref = shallownet.fit(X, y, backend=model.backend, **SETTINGS)
    assert model.dtype == np.float32
    for a, b in zip(model.params, ref.params):
        assert relative_error(a, b) <= 1e-5


def test_bitwise_identical_across_runs_workers_and_placement(client, problem):
    X, y = problem
    Xd, yd = as_dask(X, y)
    workers = sorted(client.scheduler_info()["workers"])
    seen = []

    def fit_on(targets, n_threads=None):
        # fresh keys each time: persisting keys already in memory would not move them
        fresh = [da.from_array(a, chunks=c.chunks, name=False) for a, c in ((X, Xd), (y, yd))]
        data = client.persist(fresh, workers=targets, allow_other_workers=False)
        counts = []

        def count(epoch, loss, params):  # how many evaluators this fit runs
            if epoch == 0:
                counts.append(evaluators_per_worker(client))
            return False
        model = sd.fit(*data, client=client, n_threads=n_threads, callback=count, momentum=0.5,
                       **SETTINGS)
        seen.append(counts[0])
        return model

    models = [fit_on(workers), fit_on(workers), fit_on(workers[:1]), fit_on(workers[1:]),
              fit_on(workers, n_threads=2)]
    assert [1, 1] in seen and [0, 1] in seen
    for other in models[1:]:
        for a, b in zip(models[0].params, other.params):
            assert np.array_equal(a, b)
        assert np.array_equal(models[0].loss_curve, other.loss_curve)


def test_lbfgs(client, problem):
    X, y = problem
    options = dict(hidden=6, random_state=0, epochs=40, alpha=0.001)
    model = sd.fit(*as_dask(X, y), client=client, optimizer="lbfgs", **options)
    again = sd.fit(*as_dask(X, y), client=client, optimizer="lbfgs", **options)
    for a, b in zip(model.params, again.params):
        assert np.array_equal(a, b)
    assert model.options["optimizer"] == "lbfgs"
    assert 1 <= model.n_epochs_ <= 40 and model.n_fun_ >= model.n_epochs_
    # the same optimizer in one process on the gathered data
    start = init_params(4, 6, 2, "tanh", 0, np.float64)    # as fit draws them

    def evaluate(params):
        return shallownet.loss_and_gradients(params, X, y, backend=model.backend, alpha=0.001)
    local = run_lbfgs(packed_loss(evaluate, start), start, max_iter=40, max_fun=15000, tol=1e-4)
    assert local.n_iter == model.n_epochs_
    np.testing.assert_allclose(model.loss_curve, local.loss_curve, rtol=1e-8)
    gd = sd.fit(*as_dask(X, y), client=client, learning_rate=0.05, **options)
    assert model.loss_curve[-1] < gd.loss_curve[-1]


def test_minibatch_optimizers_refused(client, problem):
    for optimizer in ("sgd", "adam"):
        with pytest.raises(ValueError, match="synchronisation"):
            sd.fit(*as_dask(*problem), client=client, optimizer=optimizer)
    with pytest.raises(ValueError, match="optimizer"):
        sd.fit(*as_dask(*problem), client=client, optimizer="newton")
    with pytest.raises(ValueError, match="early stopping needs optimizer='gd'"):
        sd.fit(*as_dask(*problem), client=client, optimizer="lbfgs", early_stopping=True)


@pytest.mark.parametrize("k", [1, 2])
def test_predict_is_lazy(client, problem, k):
    X, y = problem
    y = y[:, 0] if k == 1 else y
    model = sd.fit(*as_dask(X, y), client=client, **SETTINGS)
    Xd = da.from_array(X, chunks=(CHUNKS, X.shape[1]))
    yhat = sd.predict(model, Xd)
    assert isinstance(yhat, da.Array)
    assert yhat.shape == ((400,) if k == 1 else (400, k))
    assert yhat.chunks[0] == Xd.chunks[0]
    np.testing.assert_array_equal(yhat.compute(), model.predict(X))
    with pytest.raises(ValueError, match="features"):
        sd.predict(model, Xd[:, :3])


def test_dataframes(client, problem):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = problem
    y = y[:, 0]
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    Xf = dd.from_pandas(frame, npartitions=3, sort=False)
    yf = dd.from_pandas(pd.Series(y, name="y"), npartitions=3, sort=False)
    lengths = tuple(len(part) for part in Xf.partitions)
    model = sd.fit(Xf, yf, client=client, **SETTINGS)
    Xd, yd = as_dask(X, y, chunks=lengths)
    from_arrays = sd.fit(Xd, yd, client=client, **SETTINGS)
    for a, b in zip(model.params, from_arrays.params):
        assert np.array_equal(a, b)
    yhat = sd.predict(model, Xf)
    assert isinstance(yhat, da.Array) and yhat.ndim == 1
    np.testing.assert_array_equal(yhat.compute(), model.predict(X))
    # a DataFrame X with a dask-array y cut the same way
    mixed = sd.fit(Xf, yd, client=client, **SETTINGS)
    assert np.array_equal(mixed.params.W1, model.params.W1)


def test_bad_input(client, problem):
    X, y = problem
    Xd, yd = as_dask(X, y)
    bad = X.copy()
    bad[370, 2] = np.nan                      # in the last block
    with pytest.raises(ValueError, match="X part 2 contains NaN"):
        sd.fit(da.from_array(bad, chunks=(CHUNKS, 4)), yd, client=client, **SETTINGS)
    bad_y = y.copy()
    bad_y[10, 1] = np.inf
    with pytest.raises(ValueError, match="y part 0 contains NaN"):
        sd.fit(Xd, da.from_array(bad_y, chunks=(CHUNKS, 2)), client=client, **SETTINGS)
    with pytest.raises(ValueError, match="row chunks"):
        sd.fit(Xd, yd.rechunk({0: (100, 200, 100)}), client=client, **SETTINGS)
    with pytest.raises(ValueError, match="same row blocks"):
        sd.fit(Xd, yd.rechunk({0: 100}), client=client, **SETTINGS)
    with pytest.raises(ValueError, match="columns"):
        sd.fit(Xd.rechunk({1: 2}), yd, client=client, **SETTINGS)
    with pytest.raises(ValueError, match="non-negative"):
        sd.fit(Xd, yd, client=client, sample_weight=da.from_array(-np.ones(400), chunks=CHUNKS),
               **SETTINGS)
    with pytest.raises(TypeError, match="shallownet.fit"):
        sd.fit(X, y, client=client)
    with pytest.raises(TypeError, match="unexpected"):
        sd.fit(Xd, yd, client=client, hidden_units=3)


def test_bad_dataframe_partitions(client, problem):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    from dask import delayed
    X, y = problem
    first = pd.DataFrame(X[:200], columns=["a", "b", "c", "d"])
    renamed = pd.DataFrame(X[200:], columns=["a", "b", "c", "e"])
    Xf = dd.from_delayed([delayed(first), delayed(renamed)], meta=first, verify_meta=False)
    yd = da.from_array(y, chunks=(200, 2))
    with pytest.raises(ValueError, match="same columns"):
        sd.fit(Xf, yd, client=client, **SETTINGS)
    # unknown partition lengths that do not match y's blocks: found on the workers
    Xf = dd.from_pandas(pd.DataFrame(X, columns=list("abcd")), npartitions=2, sort=False)
    with pytest.raises(ValueError, match="same rows"):
        sd.fit(Xf, da.from_array(y, chunks=((100, 300), (2,))), client=client, **SETTINGS)


def test_early_stopping(client, problem):
    X, y = problem
    Xd, yd = as_dask(X, y, chunks=50)
    seen = {}

    def record(epoch, loss, params):
        seen[epoch] = tuple(p.copy() for p in params)
        return False
    model = sd.fit(Xd, yd, client=client, early_stopping=True, validation_fraction=0.25,
                   n_iter_no_change=3, tol=0.0, callback=record,
                   **dict(SETTINGS, epochs=150, learning_rate=0.5))
    assert len(model.validation_curve) == model.n_epochs_
    assert model.best_epoch_ == int(np.argmin(model.validation_curve))
    for a, b in zip(model.params, seen[model.best_epoch_]):
        assert np.array_equal(a, b)
    # an explicit validation set: the same mechanics
    Xv, yv = as_dask(*make_problem(100, 4, 2, seed=9), chunks=50)
    held = sd.fit(Xd, yd, client=client, validation=(Xv, yv), **SETTINGS)
    assert len(held.validation_curve) == held.n_epochs_
    with pytest.raises(ValueError, match="whole row blocks"):
        sd.fit(*as_dask(X, y, chunks=400), client=client, early_stopping=True, **SETTINGS)


def test_callback_stops_and_verbose(client, problem, capsys):
    X, y = problem
    model = sd.fit(*as_dask(X, y), client=client, verbose=1,
                   callback=lambda epoch, loss, params: epoch == 4, **SETTINGS)
    assert model.n_epochs_ == 5
    ref = shallownet.fit(X, y, backend=model.backend, epochs=5,
                         **{k: v for k, v in SETTINGS.items() if k != "epochs"})
    np.testing.assert_allclose(model.loss_curve, ref.loss_curve, rtol=AGREEMENT_RTOL)


def signal_an_evaluators_worker(client, signum):
    """A callback that sends ``signum`` at epoch 2 to a worker running an evaluator;
    returns (callback, [pid])."""
    sent = []

    def callback(epoch, loss, params):
        if epoch == 2:
            workers = client.run(lambda dask_worker: (os.getpid(), len(dask_worker.state.actors)))
            pid = next(pid for pid, evaluators in workers.values() if evaluators)
            sent.append(pid)
            os.kill(pid, signum)
        return False
    return callback, sent


def test_frozen_worker_fails_after_timeout(client, problem):
    callback, frozen = signal_an_evaluators_worker(client, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match="did not answer within timeout=2 s"):
            sd.fit(*as_dask(*problem), client=client, callback=callback, timeout=2,
                   **dict(SETTINGS, epochs=10**6))
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)


def test_killed_worker_fails_the_fit(client, problem):
    # last in the module: the nanny restarts the worker, which holds nothing
    callback, _ = signal_an_evaluators_worker(client, signal.SIGKILL)
    # timeout: a backstop only; the loss is seen at once, as a RuntimeError
    with pytest.raises(RuntimeError, match="was lost during the fit"):
        sd.fit(*as_dask(*problem), client=client, callback=callback, timeout=60,
               **dict(SETTINGS, epochs=10**6))
    client.wait_for_workers(2, timeout=60)
