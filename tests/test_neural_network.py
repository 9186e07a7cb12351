"""shallownet.neural_network.MLPRegressor against scikit-learn's MLPRegressor.

Three kinds of evidence that changing the import line changes nothing but
the speed: scikit-learn's own MLPRegressor tests run against the drop-in;
fitted models compared with scikit-learn's for the same random_state over
every solver, activation, schedule, early stopping and warm start; and
scikit-learn's estimator checks.

A compiled backend takes part in the stochastic cases once its training
loop runs scikit-learn's forms (TrainSpec.schedule_scale,
epsilon_before_correction, row subsets); until then those cases skip,
saying so. L-BFGS needs only loss_and_gradients and runs on every backend.
"""

import inspect
import json
import os
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is an optional dependency")
import scipy.sparse  # noqa: E402
import sklearn.neural_network  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks  # noqa: E402

from shallownet._activations import ACTIVATIONS as SHALLOWNET_ACTIVATIONS  # noqa: E402
from shallownet._lbfgs import pack, packed_loss, run_lbfgs  # noqa: E402
from shallownet._params import Params  # noqa: E402
from shallownet.backends import available_backends, resolve_backend  # noqa: E402
from shallownet.neural_network import MLPRegressor, _runs_sklearn_forms  # noqa: E402

from conftest import ALL_BACKENDS  # noqa: E402

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


def needs_sklearn_forms(backend, solver="adam"):
    """Skip a stochastic case on a backend whose loop does not yet run scikit-learn's forms."""
    if solver != "lbfgs" and not _runs_sklearn_forms(backend):
        pytest.skip(f"backend {backend!r} does not run scikit-learn's schedule/Adam forms yet")


def regression_data(n=240, d=6, k=1, seed=0):
    X, y = make_regression(n_samples=n, n_features=d, n_targets=k, noise=5.0, random_state=seed)
    return X, (y - y.mean(axis=0)) / y.std(axis=0)


# -- 1. scikit-learn's own tests -----------------------------------------------

_SKLEARN_TESTS = Path(sklearn.neural_network.__file__).parent / "tests" / "test_mlp.py"
_IMPORT_LINE = "from sklearn.neural_network import MLPClassifier, MLPRegressor\n"

# Keeps the tests that use MLPRegressor (its parameter, where a test is
# parametrized over both estimators), makes the drop-in's default backend
# the one under test, and logs which engine each fit used.
_CONFTEST = '''
import inspect
import json
import os

import pytest

from shallownet.neural_network import MLPRegressor

MLPRegressor.__init__.__kwdefaults__["backend"] = os.environ["DROPIN_BACKEND"]
_fit = MLPRegressor._fit


def _logged_fit(self, *args, **kwargs):
    try:
        return _fit(self, *args, **kwargs)
    finally:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(os.environ["DROPIN_LOG"], "a") as log:
            log.write(json.dumps([test, self.solver, getattr(self, "engine_", None),
                                  getattr(self, "fallback_reason_", None)]) + "\\n")


MLPRegressor._fit = _logged_fit


@pytest.fixture
def global_random_seed():
    return 42


def pytest_collection_modifyitems(config, items):
    def uses_regressor(item):
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(getattr(v, "__name__", None) == "MLPClassifier" for v in params.values()):
            return False
        return "MLPRegressor" in inspect.getsource(item.function)
    items[:] = [item for item in items if uses_regressor(item)]
'''


def _run_sklearn_tests(tmp_path, backend):
    source = _SKLEARN_TESTS.read_text()
    assert _IMPORT_LINE in source, "scikit-learn's test_mlp.py no longer imports as expected"
    source = source.replace(_IMPORT_LINE, "from sklearn.neural_network import MLPClassifier\n"
                            "from shallownet.neural_network import MLPRegressor\n")
    (tmp_path / "test_mlp.py").write_text(source)
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    log, report = tmp_path / "engines.jsonl", tmp_path / "report.xml"
    env = dict(os.environ, DROPIN_BACKEND=backend, DROPIN_LOG=str(log))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), f"--junitxml={report}", "test_mlp.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600)
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    fits = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, counts, fits


@pytest.mark.slow
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_sklearn_own_mlp_regressor_tests_pass(tmp_path, backend):
    needs_sklearn_forms(backend)
    done, counts, fits = _run_sklearn_tests(tmp_path, backend)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    # 22 test functions use MLPRegressor; their parametrizations make more
    assert counts["tests"] >= 22, counts
    tests = {test for test, *_ in fits}
    assert len(tests) >= 20
    # what scikit-learn's own training ran, and why: only what the kernels cannot
    fallbacks = {(test.split("::")[-1], reason) for test, _, engine, reason in fits
                 if engine == "scikit-learn"}
    assert {test.split("[")[0] for test, _ in fallbacks} <= {
        "test_mlp_regressor_dtypes_casting", "test_mlp_param_dtypes",
        "test_mlp_vs_poisson_glm_equivalent", "test_mlp_sample_weight_with_early_stopping"
    }, fallbacks
    # a fit refused before training (bad input) logs no engine
    accelerated = [(test, solver, engine) for test, solver, engine, _ in fits
                   if engine not in ("scikit-learn", None)]
    for test, solver, engine in accelerated:
        assert engine == f"shallownet:{backend}", (test, solver, engine)
    accelerated_tests = {test.split("::")[-1].split("[")[0] for test, *_ in accelerated}
    assert {"test_lbfgs_regression", "test_lbfgs_regression_maxfun",
            "test_multioutput_regression", "test_partial_fit_regression", "test_shuffle",
            "test_early_stopping", "test_nonfinite_params", "test_mlp_diverging_loss",
            "test_mlp_loading_from_joblib_partial_fit", "test_warm_start_full_iteration",
            "test_mlp_warm_start_with_early_stopping", "test_mlp_warm_start_no_convergence",
            "test_minimum_input_sample_size"} <= accelerated_tests


# -- 2. the same model as scikit-learn's ----------------------------------------

# Every case runs 50 epochs (or L-BFGS iterations) from scikit-learn's draws.
# Measured with backend="numpy" (float64): stochastic solvers agree to
# 3e-16 in the parameters and loss_curve_ (one or two ulps: the gradients'
# sums are ordered differently); L-BFGS to 1e-9 (its line search amplifies
# those ulps). The tolerances below leave room for the compiled backends'
# summation orders.
STOCHASTIC_ATOL = 1e-9
LBFGS_ATOL = 1e-6

CASES = {
    "adam": dict(),
    "adam-shuffle-off": dict(shuffle=False),
    "adam-alpha-batch": dict(alpha=0.1, batch_size=64),
    "adam-early-stopping": dict(early_stopping=True, n_iter_no_change=4, tol=1e-3),
    "adam-stops-on-tol": dict(tol=1e-2, n_iter_no_change=3),
    "sgd": dict(solver="sgd"),
    "sgd-momentum-0": dict(solver="sgd", momentum=0.0),
    "sgd-classical-momentum": dict(solver="sgd", nesterovs_momentum=False),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=2),
    "sgd-early-stopping": dict(solver="sgd", early_stopping=True, validation_fraction=0.2),
    "sgd-no-shuffle-early-stopping": dict(solver="sgd", early_stopping=True, shuffle=False),
    "sgd-batch-1": dict(solver="sgd", batch_size=1, max_iter=3, learning_rate_init=1e-3),
    "lbfgs": dict(solver="lbfgs"),
    "lbfgs-alpha": dict(solver="lbfgs", alpha=0.5),
}


def fitted_pair(backend, X, y, n_fits=1, **params):
    params = {"hidden_layer_sizes": (16,), "random_state": 7, "max_iter": 50, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SklearnMLPRegressor(**params)
        ours = MLPRegressor(backend=backend, **params)
        for _ in range(n_fits):
            theirs.fit(X, y)
            ours.fit(X, y)
    return theirs, ours


def assert_same_model(theirs, ours, atol):
    assert ours.engine_.startswith("shallownet:")
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.n_layers_ == theirs.n_layers_ == 3
    assert ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=0, atol=atol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=atol, atol=0)
    if theirs.solver == "lbfgs":
        return
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=atol, atol=0)
    assert (ours.best_loss_ is None) == (theirs.best_loss_ is None)
    if theirs.early_stopping:
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                                   rtol=0, atol=atol)
        assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                            abs=atol)
    else:
        assert ours.validation_scores_ is theirs.validation_scores_ is None
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=atol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_model_as_sklearn(backend, case):
    params = CASES[case]
    needs_sklearn_forms(backend, params.get("solver", "adam"))
    X, y = regression_data()
    theirs, ours = fitted_pair(backend, X, y, **params)
    assert_same_model(theirs, ours, LBFGS_ATOL if "lbfgs" in case else STOCHASTIC_ATOL)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_model_every_activation(backend, solver, activation):
    needs_sklearn_forms(backend, solver)
    X, y = regression_data(seed=1)
    theirs, ours = fitted_pair(backend, X, y, solver=solver, activation=activation)
    assert_same_model(theirs, ours, LBFGS_ATOL if solver == "lbfgs" else STOCHASTIC_ATOL)


@pytest.mark.parametrize("params", [dict(), dict(solver="sgd", learning_rate="invscaling"),
                                    dict(early_stopping=True), dict(solver="lbfgs")],
                         ids=["adam", "sgd-invscaling", "early-stopping", "lbfgs"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_model_warm_start(backend, params):
    needs_sklearn_forms(backend, params.get("solver", "adam"))
    X, y = regression_data(seed=2)
    theirs, ours = fitted_pair(backend, X, y, n_fits=3, warm_start=True, max_iter=15, **params)
    atol = LBFGS_ATOL if params.get("solver") == "lbfgs" else STOCHASTIC_ATOL
    assert_same_model(theirs, ours, atol)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_model_partial_fit(backend, solver):
    needs_sklearn_forms(backend, solver)
    X, y = regression_data(seed=3)
    theirs = SklearnMLPRegressor(hidden_layer_sizes=(8,), solver=solver, random_state=0,
                                 learning_rate="invscaling")
    ours = MLPRegressor(hidden_layer_sizes=(8,), solver=solver, random_state=0,
                        learning_rate="invscaling", backend=backend)
    # changing sizes: invscaling's clock is samples seen
    for start, stop in ((0, 120), (100, 240), (0, 60), (37, 200)):
        theirs.partial_fit(X[start:stop], y[start:stop])
        ours.partial_fit(X[start:stop], y[start:stop])
    assert_same_model(theirs, ours, STOCHASTIC_ATOL)


@pytest.mark.parametrize("params", [dict(solver="adam"), dict(solver="sgd", alpha=0.5),
                                    dict(solver="sgd", learning_rate="invscaling", alpha=0.0),
                                    dict(solver="sgd", learning_rate="adaptive", tol=1e-2),
                                    dict(solver="lbfgs")],
                         ids=["adam", "sgd-alpha", "sgd-invscaling-no-alpha", "sgd-adaptive",
                              "lbfgs"])
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_model_several_outputs(backend, params):
    # with a penalty, one call per batch (scikit-learn's loss averages the
    # data term over the outputs, not the penalty); without, whole blocks
    solver = params["solver"]
    needs_sklearn_forms(backend, solver)
    X, y = regression_data(k=3, seed=4)
    theirs, ours = fitted_pair(backend, X, y, **params)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0,
                                   atol=LBFGS_ATOL if solver == "lbfgs" else STOCHASTIC_ATOL)
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=STOCHASTIC_ATOL)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_float32_stays_float32_and_close(backend):
    needs_sklearn_forms(backend)
    X, y = regression_data(seed=5)
    X32 = X.astype(np.float32)
    theirs, ours = fitted_pair(backend, X32, y, max_iter=20)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert ours.predict(X32).dtype == np.float32
    # scikit-learn mixes float32 parameters with float64 targets; the kernels run float32
    for a, b in zip(theirs.coefs_, ours.coefs_):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_lbfgs_float32_like_sklearn(backend):
    # scikit-learn's L-BFGS on float32 X runs a float32 forward pass against
    # float64 targets, gradients and iterates; the drop-in runs float64 at the
    # same float32 points: 4e-8 apart after 5 iterations, measured
    X, y = regression_data(seed=5)
    theirs, ours = fitted_pair(backend, X.astype(np.float32), y, solver="lbfgs", max_iter=5)
    assert all(c.dtype == np.float64 for c in theirs.coefs_ + ours.coefs_)
    assert_same_model(theirs, ours, 1e-6)


# -- what falls back ---------------------------------------------------------------

FALLBACKS = {
    "two-hidden-layers": (dict(hidden_layer_sizes=(5, 3)), {}),
    "poisson": (dict(loss="poisson", solver="lbfgs"), {}),
    "sparse-X": (dict(), dict(sparse=True)),
    "sample-weight-adam": (dict(), dict(sample_weight=True)),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_fallback_is_sklearn_exactly(case):
    params, how = FALLBACKS[case]
    X, y = regression_data(seed=6)
    y = np.abs(y) if params.get("loss") == "poisson" else y
    fit_args = {}
    if how.get("sample_weight"):
        fit_args["sample_weight"] = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    if how.get("sparse"):
        X = scipy.sparse.csr_matrix(X)
    params = dict(random_state=0, max_iter=20, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SklearnMLPRegressor(**params).fit(X, y, **fit_args)
        ours = MLPRegressor(**params).fit(X, y, **fit_args)
    assert ours.engine_ == "scikit-learn" and ours.fallback_reason_
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_lbfgs_sample_weight_accelerated(backend):
    X, y = regression_data(seed=8)
    w = np.random.default_rng(1).uniform(0.0, 3.0, len(y))
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", random_state=0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SklearnMLPRegressor(**params).fit(X, y, sample_weight=w)
        ours = MLPRegressor(backend=backend, **params).fit(X, y, sample_weight=w)
    assert ours.engine_ == f"shallownet:{backend}"
    assert_same_model(theirs, ours, LBFGS_ATOL)


# -- the interface ---------------------------------------------------------------------

def test_constructor_is_sklearns_plus_backend_and_threads():
    ours = inspect.signature(MLPRegressor.__init__).parameters
    theirs = inspect.signature(SklearnMLPRegressor.__init__).parameters
    assert list(ours)[:-2] == list(theirs)
    for name, param in theirs.items():
        assert ours[name].default == param.default and ours[name].kind == param.kind
    assert list(ours)[-2:] == ["backend", "n_threads"]
    assert ours["backend"].default == "auto" and ours["n_threads"].default is None


def test_errors_like_sklearn():
    X, y = regression_data(n=40)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).fit(X, y).partial_fit(X, y)
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.01).fit(X[:10], y[:10])
    assert (hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
            == hasattr(SklearnMLPRegressor(solver="lbfgs"), "partial_fit"))
    with pytest.raises(ValueError, match="backend"):
        MLPRegressor(backend="fortran").fit(X, y)
    with pytest.raises(ValueError, match="n_threads"):
        MLPRegressor(n_threads=0).fit(X, y)


def test_n_threads_does_not_change_the_model():
    X, y = regression_data(n=400)
    fits = [MLPRegressor(max_iter=5, random_state=0, n_threads=t).fit(X, y) for t in (1, 2)]
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        np.testing.assert_array_equal(a, b)


@parametrize_with_checks([MLPRegressor(max_iter=100, backend="numpy"), MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("backend", [b for b in ALL_BACKENDS if b != "numpy"])
def test_sklearn_estimator_checks_compiled(backend):
    needs_sklearn_forms(backend)
    results = check_estimator(MLPRegressor(max_iter=100, backend=backend), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed


def test_epoch_shuffle_draws_what_sklearn_shuffle_draws():
    from sklearn.utils import shuffle
    from shallownet.neural_network import _shuffled
    ours, theirs = np.random.RandomState(3), np.random.RandomState(3)
    a = b = np.arange(57)
    for _ in range(4):
        a, b = _shuffled(a, ours), shuffle(b, random_state=theirs)
        np.testing.assert_array_equal(a, b)
    assert ours.randint(1 << 30) == theirs.randint(1 << 30)


def test_compiled_epoch_shuffle_is_in_use():
    # the wheel builds it: a fallback to NumPy's shuffle here would be a
    # silent loss of speed, not of correctness
    from shallownet.neural_network import _legacy_shuffle
    assert _legacy_shuffle() is not None


@pytest.mark.parametrize("n", [1, 2, 3, 31, 624, 625, 2000, 20000])
def test_compiled_epoch_shuffle_is_numpys_draw_for_draw(n):
    from sklearn.utils import shuffle
    from shallownet.neural_network import _shuffled
    for seed in range(12):
        ours, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
        # start anywhere in the generator's block of 624 words
        ours.random_sample(seed * 53), theirs.random_sample(seed * 53)
        a = b = np.random.default_rng(seed).permutation(n)
        for _ in range(3):
            a, b = _shuffled(a, ours), shuffle(b, random_state=theirs)
            np.testing.assert_array_equal(a, b)
        mine, numpys = ours.get_state(), theirs.get_state()
        np.testing.assert_array_equal(mine[1], numpys[1])
        assert mine[2:] == numpys[2:]
        assert ours.standard_normal() == theirs.standard_normal()


def test_epoch_shuffle_of_another_bit_generator_is_numpys():
    # RandomState over PCG64: NumPy's own shuffle, the same draws as sklearn's
    from sklearn.utils import shuffle
    from shallownet.neural_network import _shuffled
    ours = np.random.RandomState(np.random.PCG64(5))
    theirs = np.random.RandomState(np.random.PCG64(5))
    a = b = np.arange(100)
    for _ in range(3):
        a, b = _shuffled(a, ours), shuffle(b, random_state=theirs)
        np.testing.assert_array_equal(a, b)


# -- run_lbfgs ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_run_lbfgs_on_shallownet_loss(dtype):
    X, y = regression_data(n=100, seed=9)
    X, Y = X.astype(dtype), y.reshape(-1, 1).astype(dtype)
    w = np.ones(len(X), dtype=dtype)
    _, module = resolve_backend("numpy")
    code = SHALLOWNET_ACTIVATIONS["tanh"].code
    rng = np.random.default_rng(0)
    start = Params(*(rng.uniform(-0.3, 0.3, s).astype(dtype) for s in
                     ((6, 5), (5,), (5, 1), (1,))))
    seen = []

    def evaluate(params):
        assert all(p.dtype == dtype and p.flags.c_contiguous for p in params)
        return module.loss_and_gradients(X, Y, w, params, code, 0.0, 1)
    loss = packed_loss(evaluate, start)

    def loss_at(x, out, scale):
        # SciPy's point arrives in the parameters' dtype, contiguous
        assert x.dtype == dtype and x.flags.c_contiguous and out.dtype == dtype
        return loss(x, out, scale)

    result = run_lbfgs(loss_at, start, max_iter=40, max_fun=15000, tol=1e-6,
                       callback=lambda i, loss, p: seen.append(p.W1.copy()) and False)
    assert result.n_iter == len(seen) == len(result.loss_curve) <= 40
    assert all(p.dtype == dtype for p in result.params)
    # scikit-learn's packing, in the parameters' dtype: SciPy evaluates there
    assert pack(start).dtype == dtype
    x = result.optimize_result.x
    np.testing.assert_array_equal(pack(result.params), x.astype(dtype))
    W1, b1, W2, b2 = result.params
    np.testing.assert_array_equal(x[:W1.size].astype(dtype), W1.ravel())
    np.testing.assert_array_equal(x[W1.size:W1.size + W2.size].astype(dtype), W2.ravel())
    assert result.loss_curve[-1] < result.initial_loss / 5


def test_backend_auto_picks_a_backend_that_runs_sklearns_forms():
    X, y = regression_data(n=50)
    est = MLPRegressor(max_iter=2).fit(X, y)
    name = est.engine_.split(":")[1]
    assert name in available_backends() and _runs_sklearn_forms(name)
