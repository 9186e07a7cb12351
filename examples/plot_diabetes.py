"""
A real data set, against scikit-learn
=====================================

The diabetes data set shipped with scikit-learn (442 patients, 10 features,
a measure of disease progression one year later) fitted by
:func:`shallownet.fit` and by scikit-learn's ``MLPRegressor`` with the same
settings: one hidden layer of 16 ReLU units, Adam on minibatches of 200 rows,
the same learning rate, 300 epochs, and a strong L2 penalty (``alpha``),
which keeps a network this size from overfitting 331 training rows. Both see
the same standardised features and target. shallownet runs on one thread: a
data set this small has too little work to share out between threads.

The two do not start from the same weights (each library draws its own), so
their fits differ by the luck of the draw; scikit-learn also reports half the
mean squared error as its loss, doubled here to compare the curves.
"""

import time
import warnings

import matplotlib.pyplot as plt
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

import shallownet

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
x_scaler = StandardScaler().fit(X_train)
y_scaler = StandardScaler().fit(y_train.reshape(-1, 1))
X_train_s, X_test_s = x_scaler.transform(X_train), x_scaler.transform(X_test)
y_train_s = y_scaler.transform(y_train.reshape(-1, 1)).ravel()
epochs = 300


def fit_shallownet():
    model = shallownet.fit(
        X_train_s, y_train_s, hidden=16, activation="relu", optimizer="adam",
        learning_rate=1e-3, batch_size=200, alpha=10.0, epochs=epochs, random_state=0,
        backend="auto", n_threads=1)
    return model.predict, model.loss_curve


def fit_sklearn():
    # n_iter_no_change > max_iter: scikit-learn runs every epoch, as shallownet does
    model = MLPRegressor(
        hidden_layer_sizes=(16,), activation="relu", solver="adam", learning_rate_init=1e-3,
        batch_size=200, alpha=10.0, max_iter=epochs, n_iter_no_change=epochs + 1,
        random_state=0)
    with warnings.catch_warnings():
        # scikit-learn warns that it stopped at max_iter, which is what was asked
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train_s, y_train_s)
    return model.predict, [2 * loss for loss in model.loss_curve_]


# %%
# Fit both and score them on the held-out quarter. Each fit is timed three
# times and the best time kept (the first call of a library in a process also
# loads its code).

results = {}
for name, fit in (("shallownet", fit_shallownet), ("scikit-learn", fit_sklearn)):
    seconds = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        predict, curve = fit()
        seconds = min(seconds, time.perf_counter() - start)
    y_pred = y_scaler.inverse_transform(predict(X_test_s).reshape(-1, 1)).ravel()
    r2 = 1 - ((y_test - y_pred) ** 2).sum() / ((y_test - y_test.mean()) ** 2).sum()
    results[name] = dict(y_pred=y_pred, seconds=seconds, curve=curve, r2=r2)
    print(f"{name:>12}: fit in {seconds:.3f} s, test R^2 = {r2:.3f}")

print(f"shallownet fitted {results['scikit-learn']['seconds'] / results['shallownet']['seconds']:.1f}x "
      f"as fast as scikit-learn (one run on the machine that built these pages)")

# %%
# Predictions on the test set against the measured values, and the training
# loss (mean squared error of the standardised target, plus the penalty) per epoch.

fig, (ax_pred, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.2))
lo, hi = y_test.min(), y_test.max()
ax_pred.plot([lo, hi], [lo, hi], color="k", linewidth=1)
for name, result in results.items():
    ax_pred.scatter(y_test, result["y_pred"], s=14, alpha=0.7,
                    label=f"{name} (R$^2$ = {result['r2']:.2f})")
    ax_loss.plot(result["curve"], label=f"{name} ({result['seconds']:.2f} s)")
ax_pred.set_xlabel("measured progression")
ax_pred.set_ylabel("predicted progression")
ax_pred.set_title("Held-out patients")
ax_pred.legend()
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("training loss (MSE + penalty, standardised y)")
ax_loss.set_title("Training loss")
ax_loss.legend()
fig.tight_layout()
plt.show()
