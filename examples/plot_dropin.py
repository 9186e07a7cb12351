"""
The scikit-learn drop-in: the same model, sooner
================================================

:class:`shallownet.neural_network.MLPRegressor` takes scikit-learn's
``MLPRegressor`` arguments and reproduces its initial weights, batches and
steps draw for draw, so changing the import line of a scikit-learn program
gives the same model, trained by shallownet's kernels. Here both fit the
diabetes data set shipped with scikit-learn inside the same pipeline, which
standardises the features and the target: one hidden layer of 16 units,
Adam on minibatches of 200 rows, 300 epochs and a strong L2 penalty.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn import neural_network as sklearn_nn
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shallownet import neural_network as shallownet_nn

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

# n_iter_no_change > max_iter: both run every epoch
arguments = dict(hidden_layer_sizes=(16,), activation="relu", solver="adam",
                 learning_rate_init=1e-3, batch_size=200, alpha=10.0, max_iter=300,
                 n_iter_no_change=301, random_state=0)


def fitted(module):
    """A pipeline around ``module.MLPRegressor(**arguments)``, fitted; best of 3 times."""
    seconds = float("inf")
    for _ in range(3):
        pipeline = TransformedTargetRegressor(
            make_pipeline(StandardScaler(), module.MLPRegressor(**arguments)),
            transformer=StandardScaler())
        start = time.perf_counter()
        with warnings.catch_warnings():
            # both warn that they stopped at max_iter, which is what was asked
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipeline.fit(X_train, y_train)
        seconds = min(seconds, time.perf_counter() - start)
    return pipeline, seconds


# %%
# The same arguments to both classes; ``engine_`` says which kernels trained.

sklearn_model, sklearn_seconds = fitted(sklearn_nn)
shallownet_model, shallownet_seconds = fitted(shallownet_nn)
print("engine:", shallownet_model.regressor_[-1].engine_)
gap = np.abs(sklearn_model.predict(X_test) - shallownet_model.predict(X_test)).max()
print(f"largest difference between the two models' test predictions: {gap:.2e}")
for name, model, seconds in (("scikit-learn", sklearn_model, sklearn_seconds),
                             ("shallownet", shallownet_model, shallownet_seconds)):
    print(f"{name:>12}: fit in {seconds:.3f} s, test R^2 = {model.score(X_test, y_test):.6f}")

# %%
# The two loss curves lie on top of each other.

fig, ax = plt.subplots(figsize=(7, 4))
for name, model, seconds, style in (
        ("scikit-learn", sklearn_model, sklearn_seconds, "-"),
        ("shallownet drop-in", shallownet_model, shallownet_seconds, "--")):
    ax.plot(model.regressor_[-1].loss_curve_, style, linewidth=2,
            label=f"{name} ({seconds:.2f} s)")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (scikit-learn's: half the MSE)")
ax.set_title("Same arguments, same random_state, same model")
ax.legend()
fig.tight_layout()
plt.show()
