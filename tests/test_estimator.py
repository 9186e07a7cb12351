"""ShallowNetRegressor (fit's names, shallownet's loss) as scikit-learn sees it."""

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is an optional dependency")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import shallownet  # noqa: E402
from shallownet import ShallowNetRegressor  # noqa: E402

from conftest import ALL_BACKENDS, make_problem  # noqa: E402


@parametrize_with_checks([ShallowNetRegressor(backend=b, random_state=0) for b in ALL_BACKENDS])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_pipeline_gridsearch_clone_pickle(backend):
    X, y = make_problem(300, 4, 1)
    pipe = make_pipeline(StandardScaler(), ShallowNetRegressor(
        backend=backend, random_state=0, optimizer="adam", epochs=200))
    search = GridSearchCV(pipe, {"shallownetregressor__hidden": [4, 16],
                                 "shallownetregressor__learning_rate": [0.01, 0.003]},
                          cv=3, n_jobs=2)
    search.fit(X, y)
    assert search.best_score_ > 0.8
    best = search.best_estimator_
    again = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(again.predict(X), best.predict(X))
    fresh = clone(best).fit(X, y)
    np.testing.assert_array_equal(fresh.predict(X), best.predict(X))


def test_dataframe_feature_names(backend):
    pd = pytest.importorskip("pandas")
    X, y = make_problem(50, 3, 1)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    est = ShallowNetRegressor(backend=backend, epochs=20, random_state=0).fit(frame, y)
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    assert est.n_features_in_ == 3
    with pytest.warns(UserWarning, match="feature names"):
        from_array = est.predict(X)
    np.testing.assert_array_equal(est.predict(frame), from_array)


def test_partial_fit_and_warm_start(backend):
    X, y = make_problem(200, 3, 1)
    est = ShallowNetRegressor(backend=backend, optimizer="adam", random_state=0)
    for _ in range(5):
        est.partial_fit(X, y)
    assert est.n_iter_ == 5
    # five partial_fit epochs are the same as a five-epoch fit
    full = ShallowNetRegressor(backend=backend, optimizer="adam", random_state=0,
                               epochs=5).fit(X, y)
    for a, b in zip(est.coefs_, full.coefs_):
        np.testing.assert_array_equal(a, b)
    warm = ShallowNetRegressor(backend=backend, epochs=10, random_state=0,
                               warm_start=True).fit(X, y)
    first = warm.loss_curve_.copy()
    warm.fit(X, y)
    assert warm.loss_curve_[0] == pytest.approx(first[-1], rel=0.2)
    assert warm.loss_curve_[0] < first[0]


def test_names_kept_apart():
    # MLPRegressor always means scikit-learn's parameters and loss
    from shallownet.neural_network import MLPRegressor
    assert shallownet.MLPRegressor is MLPRegressor
    assert shallownet.ShallowNetRegressor is not MLPRegressor
    assert "hidden" in ShallowNetRegressor().get_params()
    assert "hidden_layer_sizes" in MLPRegressor().get_params()
