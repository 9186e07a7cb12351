"""
Speed-up against problem size
=============================

How much faster the compiled backends run an epoch than the NumPy reference,
as the number of rows and the number of hidden units grow. The time of one
epoch is the slope between fits of two lengths, so the fixed cost of a fit
(validation, initial weights, setting up the run) cancels. Every fit runs on
one thread, so the figure compares the kernels rather than the core count.

The shapes are kept small so that the documentation builds in seconds; the
benchmark command (``python -m shallownet.bench``) measures large ones. The
Numba backend is left out here because its first call compiles the kernels
(tens of seconds); the benchmark command times it beside the others.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import shallownet

backends = [name for name in shallownet.available_backends() if name != "numba"]  # numpy last
print("backends timed:", backends)
rng = np.random.default_rng(0)


def fit_seconds(X, y, backend, hidden, epochs, repeats=3):
    """Best time of ``repeats`` fits of ``epochs`` full-batch epochs on one thread."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        shallownet.fit(X, y, hidden=hidden, epochs=epochs, backend=backend, n_threads=1,
                       random_state=0)
        best = min(best, time.perf_counter() - start)
    return best


def epoch_seconds(backend, n, d, hidden, min_seconds=0.03):
    """Seconds per epoch: the slope between a 1-epoch fit and the shortest
    doubling of epochs that takes ``min_seconds`` longer, so that the noise of
    the fixed cost is small beside the epochs' time."""
    X = rng.standard_normal((n, d))
    y = np.sin(X).sum(axis=1)
    one = fit_seconds(X, y, backend, hidden, 1)
    epochs = 4
    while (longer := fit_seconds(X, y, backend, hidden, epochs)) - one < min_seconds:
        epochs *= 2
    return (longer - one) / (epochs - 1)


# %%
# Rows grow at d = 10 features and 32 hidden units; hidden units grow at
# 2000 rows and 10 features.

rows = [250, 500, 1000, 2000, 4000, 8000]
hiddens = [4, 8, 16, 32, 64, 128]
by_rows = {b: [epoch_seconds(b, n, 10, 32) for n in rows] for b in backends}
by_hidden = {b: [epoch_seconds(b, 2000, 10, h) for h in hiddens] for b in backends}

for n, *seconds in zip(rows, *(by_rows[b] for b in backends)):
    print(f"n = {n:5d}: " + ", ".join(f"{b} {1e3 * s:.3f} ms" for b, s in zip(backends, seconds)))

# %%
# Speed-up over the NumPy reference (above 1: faster than NumPy).

fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, sizes, times, label in ((axes[0], rows, by_rows, "rows n (d = 10, h = 32)"),
                                (axes[1], hiddens, by_hidden, "hidden units h (n = 2000, d = 10)")):
    for backend in backends[:-1]:   # the last is numpy itself
        speedup = np.array(times["numpy"]) / np.array(times[backend])
        ax.plot(sizes, speedup, marker="o", label=backend)
    ax.axhline(1.0, color="k", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(label)
    ax.legend()
axes[0].set_ylabel("epoch time of numpy / epoch time of the backend")
fig.suptitle("Speed-up of one full-batch epoch over the NumPy reference, one thread")
fig.tight_layout()
plt.show()
