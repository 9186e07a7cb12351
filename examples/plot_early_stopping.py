"""
Training and validation curves with early stopping
==================================================

With ``early_stopping=True``, :func:`shallownet.fit` holds out
``validation_fraction`` of the rows, measures the mean squared error on them
after every epoch, stops once it has not improved by ``tol`` for
``n_iter_no_change`` epochs, and restores the parameters of the best epoch.
:attr:`~shallownet.Model.loss_curve` and
:attr:`~shallownet.Model.validation_curve` hold both curves.

A small, noisy data set and a wide hidden layer make the network overfit, so
the two curves part.
"""

import matplotlib.pyplot as plt
import numpy as np

import shallownet

rng = np.random.default_rng(0)
n, d = 300, 4
X = rng.standard_normal((n, d))
y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * rng.standard_normal(n)

# %%
# Fit with Adam on minibatches. ``epochs`` is an upper bound: training stops
# when the validation loss has not improved for 100 epochs.

model = shallownet.fit(
    X, y, hidden=128, activation="tanh", optimizer="adam", learning_rate=3e-3,
    batch_size=32, epochs=3000, early_stopping=True, validation_fraction=0.25,
    n_iter_no_change=100, tol=0.0, random_state=0, backend="auto")
print(model)
print(f"stopped after {model.n_epochs_} epochs; best epoch {model.best_epoch_}")

# %%
# The training loss keeps falling while the validation loss turns up: the
# parameters kept are those of the epoch marked by the dashed line.

fig, ax = plt.subplots(figsize=(7, 4))
epochs = np.arange(model.n_epochs_)
ax.plot(epochs, model.loss_curve, label="training loss (mean of the batch losses)")
ax.plot(epochs, model.validation_curve, label="validation loss")
ax.axvline(model.best_epoch_, color="k", linestyle="--", linewidth=1,
           label=f"best epoch ({model.best_epoch_}), restored")
ax.set_yscale("log")
ax.set_xlabel("epoch")
ax.set_ylabel("mean squared error")
ax.set_title("Early stopping on a noisy problem")
ax.legend()
fig.tight_layout()
plt.show()
