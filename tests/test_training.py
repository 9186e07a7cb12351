"""Optimizers, penalty, weights, schedules, early stopping, partial_fit, callbacks, save/load."""

import pickle

import numpy as np
import pytest

import shallownet
import shallownet._training

from conftest import ACTIVATIONS, COMPILED_BACKENDS, make_problem, relative_error

RTOL64 = 1e-9     # float64, 100 epochs, every optimizer
RTOL32 = 2e-3     # float32, 30 epochs

OPTIMIZER_CASES = {
    "gd": dict(optimizer="gd"),
    "gd-momentum": dict(optimizer="gd", momentum=0.9),
    "sgd": dict(optimizer="sgd", batch_size=7),
    "sgd-momentum": dict(optimizer="sgd", batch_size=16, momentum=0.8),
    "sgd-nesterov": dict(optimizer="sgd", batch_size=16, momentum=0.8, nesterov=True),
    "sgd-noshuffle-invscaling": dict(optimizer="sgd", batch_size=10, shuffle=False,
                                     learning_rate_schedule="invscaling", power_t=0.3),
    "sgd-batch1": dict(optimizer="sgd", batch_size=1, learning_rate=0.005),
    "adam": dict(optimizer="adam", batch_size=16, learning_rate=0.003),
    "adam-full-batch": dict(optimizer="adam", batch_size=10_000, learning_rate=0.01),
}


def _weights(n, seed=4):
    w = np.random.default_rng(seed).uniform(0, 2, n)
    w[::5] = 0.0  # zero weights must be handled too
    return w


def _compare(model, ref, rtol):
    assert model.n_epochs_ == ref.n_epochs_
    assert relative_error(model.loss_curve, ref.loss_curve) <= rtol
    for name, p, q in zip(shallownet.Params._fields, model.params, ref.params):
        err = relative_error(p, q)
        assert err <= rtol, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("case", OPTIMIZER_CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.01])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_optimizers_match_reference_float64(compiled_backend, case, alpha, weighted):
    X, y = make_problem(50, 3, 2, seed=9)
    kwargs = dict(dict(learning_rate=0.02), **OPTIMIZER_CASES[case])
    kwargs.update(hidden=5, epochs=100, alpha=alpha, random_state=2,
                  sample_weight=_weights(50) if weighted else None)
    _compare(shallownet.fit(X, y, backend=compiled_backend, **kwargs),
             shallownet.fit(X, y, backend="numpy", **kwargs), RTOL64)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("case", ["gd-momentum", "sgd-nesterov", "adam"])
def test_optimizers_every_activation_multichunk(compiled_backend, activation, case):
    # 5000 rows: full batches run the parallel chunks; minibatches gather shuffled rows
    X, y = make_problem(5000, 4, 1, seed=3)
    kwargs = dict(dict(learning_rate=0.02), **OPTIMIZER_CASES[case])
    kwargs.update(hidden=8, epochs=20 if case != "gd-momentum" else 100, activation=activation,
                  alpha=1e-3, random_state=1, sample_weight=_weights(5000))
    _compare(shallownet.fit(X, y, backend=compiled_backend, **kwargs),
             shallownet.fit(X, y, backend="numpy", **kwargs), RTOL64)


def test_weighted_shuffled_batches_gathered_by_chunks(compiled_backend):
    # batches of 512 rows at h = 32 split into several chunks, each of which
    # gathers its own shuffled rows and weights (docs/kernels.md)
    X, y = make_problem(3000, 5, 1, seed=12)
    kwargs = dict(optimizer="adam", batch_size=512, learning_rate=1e-3, hidden=32, epochs=15,
                  random_state=4, sample_weight=_weights(3000))
    fits = [shallownet.fit(X, y, backend=compiled_backend, n_threads=t, **kwargs) for t in (1, 2)]
    assert np.array_equal(fits[0].loss_curve, fits[1].loss_curve)
    for p, q in zip(fits[0].params, fits[1].params):
        assert np.array_equal(p, q)
    _compare(fits[1], shallownet.fit(X, y, backend="numpy", **kwargs), RTOL64)


@pytest.mark.parametrize("case", ["gd", "sgd-momentum", "adam"])
def test_optimizers_match_reference_float32(compiled_backend, case):
    X, y = make_problem(300, 4, 1, seed=5, dtype=np.float32)
    kwargs = dict(dict(learning_rate=0.02), **OPTIMIZER_CASES[case])
    kwargs.update(hidden=8, epochs=30, random_state=0, alpha=0.01)
    model = shallownet.fit(X, y, backend=compiled_backend, **kwargs)
    assert model.params.W1.dtype == np.float32
    _compare(model, shallownet.fit(X, y, backend="numpy", **kwargs), RTOL32)


def test_loss_and_gradients_with_weights_and_penalty(backend):
    X, y = make_problem(40, 3, 2)
    rng = np.random.default_rng(0)
    params = shallownet.Params(rng.normal(size=(3, 4)), rng.normal(size=4),
                               rng.normal(size=(4, 2)), rng.normal(size=2))
    w = _weights(40)
    loss, grads = shallownet.loss_and_gradients(params, X, y, backend=backend, sample_weight=w,
                                                alpha=0.1)
    # by definition: weighted mean squared error plus the penalty, gradients by differences
    W1, b1, W2, b2 = params
    residual = y - (np.tanh(X @ W1 + b1) @ W2 + b2)
    want = (np.sum(w[:, None] * residual ** 2) + 0.1 * (np.sum(W1 ** 2) + np.sum(W2 ** 2))) / w.sum()
    assert loss == pytest.approx(want, rel=1e-12)
    eps = 1e-6
    for index in range(4):
        for idx in np.ndindex(params[index].shape):
            plus = [p.copy() for p in params]
            minus = [p.copy() for p in params]
            plus[index][idx] += eps
            minus[index][idx] -= eps
            lp, _ = shallownet.loss_and_gradients(plus, X, y, sample_weight=w, alpha=0.1)
            lm, _ = shallownet.loss_and_gradients(minus, X, y, sample_weight=w, alpha=0.1)
            assert grads[index][idx] == pytest.approx((lp - lm) / (2 * eps), rel=1e-5, abs=1e-8)


def test_integer_weights_equal_repeated_rows():
    X, y = make_problem(30, 2, 1)
    w = np.random.default_rng(1).integers(1, 4, 30)
    weighted = shallownet.fit(X, y, sample_weight=w, epochs=50, backend="numpy", random_state=0)
    repeated = shallownet.fit(np.repeat(X, w, axis=0), np.repeat(y, w), epochs=50,
                              backend="numpy", random_state=0)
    _compare(weighted, repeated, 1e-12)


def test_early_stopping_restores_best_and_matches_reference(backend):
    X, y = make_problem(400, 3, 1, seed=8)
    kwargs = dict(optimizer="adam", learning_rate=0.01, epochs=2000, early_stopping=True,
                  n_iter_no_change=5, tol=1e-3, random_state=0)
    snapshots = []
    model = shallownet.fit(X, y, backend=backend, **kwargs,
                           callback=lambda e, loss, p: snapshots.append([a.copy() for a in p]))
    assert model.n_epochs_ < 2000
    curve = model.validation_curve
    assert len(curve) == model.n_epochs_ == len(snapshots)
    # the rule: an epoch is the new best when its validation loss beats the
    # best so far by tol; it stopped because the 5 epochs after the last best
    # did not
    best_loss, best = np.inf, None
    for epoch, loss in enumerate(curve):
        if loss < best_loss - 1e-3:
            best_loss, best = loss, epoch
    assert model.best_epoch_ == best == model.n_epochs_ - 6
    # and the parameters of that epoch were restored
    for p, q in zip(model.params, snapshots[best]):
        np.testing.assert_array_equal(p, q)
    if backend != "numpy":
        _compare(model, shallownet.fit(X, y, backend="numpy", **kwargs), RTOL64)


def test_partial_fit_continues_like_one_fit(backend):
    X, y = make_problem(120, 3, 1)
    kwargs = dict(optimizer="adam", batch_size=32, learning_rate=0.01, random_state=3)
    model = shallownet.fit(X, y, epochs=4, backend=backend, **kwargs)
    for _ in range(3):
        model.partial_fit(X, y)
    whole = shallownet.fit(X, y, epochs=7, backend=backend, **kwargs)
    assert model.n_epochs_ == 7
    np.testing.assert_array_equal(model.loss_curve, whole.loss_curve)
    for p, q in zip(model.params, whole.params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("optimizer", [
    dict(optimizer="adam", batch_size=100), dict(optimizer="sgd", momentum=0.9, nesterov=True),
    dict(optimizer="sgd", momentum=0.9, batch_size=64, shuffle=True, alpha=1e-3)])
def test_continuing_on_blas_tiles_is_one_fit(backend, optimizer):
    # d x h = 4096: both compiled backends take their BLAS tiles, and the
    # Numba kernel holds W1 and its optimizer moments transposed within a
    # call; two callbacks and three partial fits must hand them on exactly
    X, y = make_problem(300, 64, 2, seed=4)
    kwargs = dict(hidden=64, learning_rate=0.01, random_state=1, backend=backend, **optimizer)
    whole = shallownet.fit(X, y, epochs=7, **kwargs)
    seen = []
    model = shallownet.fit(X, y, epochs=4, callback=lambda e, loss, p: seen.append(e),
                           callback_every=2, **kwargs)
    assert seen == [1, 3]
    for _ in range(3):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.loss_curve, whole.loss_curve)
    for p, q in zip(model.params, whole.params):
        np.testing.assert_array_equal(p, q)
    if backend != "numpy":
        _compare(whole, shallownet.fit(X, y, epochs=7, **dict(kwargs, backend="numpy")), RTOL64)


def test_orders_drawn_ahead_change_nothing(backend, monkeypatch):
    # blocks of 2 epochs, so the next block's orders are drawn on the helper
    # thread; a run stopped by its callback must leave the shuffle RNG where
    # its last trained epoch left it, or partial_fit would go on differently
    X, y = make_problem(120, 3, 1)
    kwargs = dict(optimizer="sgd", batch_size=16, momentum=0.9, learning_rate=0.01,
                  random_state=5, backend=backend)
    whole = shallownet.fit(X, y, epochs=8, **kwargs)
    monkeypatch.setattr(shallownet._training, "_OVERLAP_ORDER_ENTRIES", 2 * 120)
    # the helper thread draws only while a core is left free (n_threads below
    # the usable cores); pretend there is one
    monkeypatch.setattr(shallownet._training, "usable_cores", lambda: 64)
    draws = []
    draw = shallownet._training._Orders._draw_recorded
    monkeypatch.setattr(shallownet._training._Orders, "_draw_recorded",
                        lambda self, epochs: draws.append(epochs) or draw(self, epochs))
    ahead = shallownet.fit(X, y, epochs=8, **kwargs)
    # blocks of 1, 2, 2, 2, 1 epochs (the first block is one epoch, timed to
    # size the next): the next block's orders are drawn ahead of blocks 2-5,
    # as many epochs as the block before expected
    assert draws == [1, 2, 2, 1]
    np.testing.assert_array_equal(ahead.loss_curve, whole.loss_curve)
    stopped = shallownet.fit(X, y, epochs=8, callback=lambda e, loss, p: e >= 4, **kwargs)
    assert stopped.n_epochs_ == 5
    for _ in range(3):
        stopped.partial_fit(X, y)
    np.testing.assert_array_equal(stopped.loss_curve, whole.loss_curve)
    for p, q in zip(stopped.params, whole.params):
        np.testing.assert_array_equal(p, q)


def test_callback_every_and_stop(backend):
    X, y = make_problem(60, 2, 1)
    seen = []

    def callback(epoch, loss, params):
        seen.append((epoch, loss))
        assert isinstance(params, shallownet.Params)
        return epoch >= 29

    model = shallownet.fit(X, y, epochs=100, backend=backend, callback=callback, callback_every=10,
                           random_state=0)
    assert [e for e, _ in seen] == [9, 19, 29]
    assert model.n_epochs_ == 30
    assert [loss for _, loss in seen] == [model.loss_curve[e] for e, _ in seen]
    # a callback does not change the numbers
    plain = shallownet.fit(X, y, epochs=30, backend=backend, random_state=0)
    np.testing.assert_array_equal(plain.loss_curve, model.loss_curve)


@pytest.mark.parametrize("shape", [(150, 2, 3), (150, 20, 16)], ids=["explicit", "gemm"])
@pytest.mark.parametrize("case", ["sgd-momentum", "adam", "gd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_call_per_epoch_equals_one_call(backend, shape, case, dtype):
    # a run's buffers are set up once (open_run) and reused by every call: a
    # fit returning to Python after every epoch must give the same bits as
    # one call for all of it, with shuffled, weighted batches
    n, d, h = shape
    X, y = make_problem(n, d, 1, dtype=dtype)
    kwargs = dict(OPTIMIZER_CASES[case], hidden=h, epochs=12, random_state=3, backend=backend,
                  sample_weight=_weights(n).astype(dtype))
    whole = shallownet.fit(X, y, **kwargs)
    stepped = shallownet.fit(X, y, callback=lambda e, loss, p: False, callback_every=1, **kwargs)
    np.testing.assert_array_equal(stepped.loss_curve, whole.loss_curve)
    for p, q in zip(stepped.params, whole.params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("name", COMPILED_BACKENDS)
def test_run_rejects_calls_outside_its_arrays(name):
    from shallownet._params import init_params
    from shallownet.backends import resolve_backend, thread_limits
    _, module = resolve_backend(name)
    X, y = make_problem(40, 2, 1)
    Y = y[:, None].copy()
    params = init_params(2, 4, 1, "tanh", 0, np.float64)
    state = shallownet._training.new_state(params)
    spec = shallownet._training.TrainSpec(2, shallownet._training.SGD, 0.01, 0.0, 0.0, False,
                                          0.9, 0.999, 1e-8, 0.0, 8, True)
    losses = np.zeros(3)
    with thread_limits(module, 1):
        run = module.open_run(X, Y, np.ones(40), params, state, spec, losses, 1)
        order = np.arange(40, dtype=np.int64)[None, :]
        assert run(0, 2, 1, order) == 1 and np.isfinite(losses[2])
        with pytest.raises(ValueError, match="orders must have shape"):
            # more rows than X has (fewer is a subset: early stopping's)
            run(0, 0, 1, np.zeros((1, 41), np.int64))
        with pytest.raises(ValueError, match="outside"):
            run(0, 2, 2, np.vstack([order, order]))
    assert losses[0] == losses[1] == 0      # nothing ran


def test_verbose_prints_progress(backend, capsys):
    X, y = make_problem(60, 2, 1)
    model = shallownet.fit(X, y, epochs=50, backend=backend, verbose=1, random_state=0)
    captured = capsys.readouterr()
    assert "50/50" in captured.out + captured.err
    # blocks sized by time do not change the numbers
    plain = shallownet.fit(X, y, epochs=50, backend=backend, random_state=0)
    np.testing.assert_array_equal(model.loss_curve, plain.loss_curve)


def test_progress_without_tqdm_prints_tenths(monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    X, y = make_problem(60, 2, 1)
    # sgd with a shuffle: blocks of several epochs, whose ends skip most tenths
    shallownet.fit(X, y, epochs=1000, backend="numpy", verbose=1, optimizer="sgd", batch_size=20)
    lines = capsys.readouterr().out.strip().splitlines()
    assert 1 <= len(lines) <= 10 and lines[-1].startswith("epoch 1000/1000")


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_save_load_roundtrip_and_continue(backend, optimizer, tmp_path):
    X, y = make_problem(80, 3, 2)
    model = shallownet.fit(X, y, epochs=5, backend=backend, optimizer=optimizer, random_state=0,
                           batch_size=16)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = shallownet.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.loss_curve, model.loss_curve)
    assert loaded.options == model.options
    for m in (pickle.loads(pickle.dumps(model)), loaded):
        m.partial_fit(X, y)
    model.partial_fit(X, y)
    for p, q, r in zip(model.params, loaded.params, pickle.loads(pickle.dumps(model)).params):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(p, r)


def test_load_rejects_damaged_and_foreign_files(tmp_path):
    X, y = make_problem(20, 2, 1)
    model = shallownet.fit(X, y, epochs=2, backend="numpy")
    good = tmp_path / "good.npz"
    model.save(good)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable shallownet model file"):
        shallownet.load(damaged)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a readable shallownet model file"):
        shallownet.load(other)
    import json
    with np.load(good) as f:
        data = dict(f)
    meta = json.loads(str(data["meta"]))
    meta["format"] = 99
    data["meta"] = np.array(json.dumps(meta))
    future = tmp_path / "future.npz"
    np.savez(future, **data)
    with pytest.raises(ValueError, match="format 99; this version reads format 1"):
        shallownet.load(future)
    data["meta"] = np.array(json.dumps(dict(meta, format=1)))
    data["param_W2"] = np.zeros((7, 7))
    broken = tmp_path / "broken.npz"
    np.savez(broken, **data)
    with pytest.raises(ValueError, match=r"member 'param_W2' has shape \(7, 7\)"):
        shallownet.load(broken)


BAD_OPTIONS = [
    (dict(optimizer="bfgs"), ValueError, "optimizer must be one of"),
    (dict(optimizer="lbfgs", early_stopping=True), ValueError, "early_stopping needs optimizer"),
    (dict(max_fun=0), ValueError, "max_fun must be a positive integer"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(momentum=1.0), ValueError, "momentum must be a real number in [0.0, 1.0)"),
    (dict(momentum=-0.1), ValueError, "momentum must be"),
    (dict(nesterov=True), ValueError, "nesterov=True needs a momentum"),
    (dict(beta1=1.0), ValueError, "beta1 must be"),
    (dict(beta2=np.nan), ValueError, "beta2 must be"),
    (dict(epsilon=0.0), ValueError, "epsilon must be"),
    (dict(alpha=-1.0), ValueError, "alpha must be"),
    (dict(learning_rate_schedule="adaptive"), ValueError, "learning_rate_schedule must be one of"),
    (dict(validation_fraction=1.0, early_stopping=True), ValueError, "validation_fraction must be"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be a positive integer"),
    (dict(tol=-1.0), ValueError, "tol must be"),
    (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (dict(sample_weight=np.ones(3)), ValueError, "sample_weight must have shape (10,)"),
    (dict(sample_weight=-np.ones(10)), ValueError, "sample_weight must be non-negative"),
    (dict(sample_weight=np.zeros(10)), ValueError, "sample_weight must have a positive sum"),
    (dict(sample_weight=np.full(10, np.nan)), ValueError, "sample_weight contains NaN"),
    (dict(callback=3), TypeError, "callback must be callable"),
    (dict(callback_every=0), ValueError, "callback_every must be a positive integer"),
    (dict(verbose=-1), ValueError, "verbose must be"),
]


@pytest.mark.parametrize("kwargs,exc,text", BAD_OPTIONS, ids=[c[2] for c in BAD_OPTIONS])
def test_bad_training_options_raise(kwargs, exc, text):
    X, y = make_problem(10, 2, 1)
    with pytest.raises(exc) as info:
        shallownet.fit(X, y, epochs=3, backend="numpy", **kwargs)
    assert text in str(info.value)


def test_shuffled_orders_are_uniform_permutations():
    from shallownet._shuffle import permutation
    rng = np.random.default_rng(3)
    order = permutation(rng, 1000)
    assert order.dtype == np.int64
    np.testing.assert_array_equal(np.sort(order), np.arange(1000))
    # the same RNG state gives the same order
    np.testing.assert_array_equal(permutation(np.random.default_rng(3), 1000), order)
    # each of the 6 orders of 3 rows: 6000 draws, expected 1000 each; a
    # uniform shuffle stays within +-150 (4.7 sigma) of it
    counts = {}
    for _ in range(6000):
        key = tuple(permutation(rng, 3))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6
    assert all(850 <= c <= 1150 for c in counts.values()), counts
    assert permutation(rng, 1).tolist() == [0]
    assert permutation(rng, 0).shape == (0,)
    # the pure-Python loop (used without Numba) gives the same orders
    from shallownet._shuffle import _fisher_yates
    u = np.random.default_rng(4).random(500)
    compiled, python = np.empty(500, np.int64), np.empty(500, np.int64)
    shallownet._shuffle._shuffle(u, compiled)
    _fisher_yates(u, python)
    np.testing.assert_array_equal(compiled, python)


def test_lbfgs_in_fit_every_backend(backend, tmp_path):
    # SciPy's L-BFGS-B on the kernels' loss and gradients: every backend
    # follows the NumPy reference, and beats as many gd epochs
    X, y = make_problem(200, 3, 1)
    kwargs = dict(hidden=8, epochs=30, optimizer="lbfgs", random_state=0, tol=0.0)
    model = shallownet.fit(X, y, backend=backend, **kwargs)
    reference = shallownet.fit(X, y, backend="numpy", **kwargs)
    assert model.n_epochs_ == len(model.loss_curve) == 30
    np.testing.assert_allclose(model.loss_curve, reference.loss_curve, rtol=1e-6)
    gd = shallownet.fit(X, y, hidden=8, epochs=30, learning_rate=0.1, random_state=0,
                        backend=backend)
    assert model.loss_curve[-1] < 0.5 * gd.loss_curve[-1]
    seen = []
    stopped = shallownet.fit(X, y, backend=backend, **dict(kwargs, epochs=100),
                             callback=lambda e, loss, p: seen.append(e) or e >= 4)
    assert seen == [0, 1, 2, 3, 4] and stopped.n_epochs_ == 5
    path = tmp_path / "lbfgs.npz"
    model.save(path)
    loaded = shallownet.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    loaded.partial_fit(X, y)     # one more iteration, from the saved parameters
    assert loaded.n_epochs_ == 31
