"""What is timed: the presets of shapes, the data, the settings every implementation shares."""

import os
from typing import NamedTuple

import numpy as np

from shallownet import Params

K = 1                        # outputs
ACTIVATION = "tanh"
LEARNING_RATE = 0.01
ADAM_BATCH = 200             # --optimizer adam: scikit-learn's default minibatch
ADAM_LEARNING_RATE = 0.001   # and its default Adam step
WARMUP_EPOCHS = 2            # epoch 1's loss is taken after one step: it checks the gradients
SEED = 0
# Where the epoch's two d x h products are nearly all of its work, and the
# compiled backends switch to BLAS tiles (docs/kernels.md): the shapes at
# which the products-alone floor is timed.
PRODUCTS_MIN_DH = 4096


class Preset(NamedTuple):
    shapes: tuple           # (n, d, h) triples
    min_time: float         # seconds of epochs (fixed cost excluded) one timed call should last
    gemm_size: int          # the square GEMM that gives the reference rate


PRESETS = {
    "full": Preset(
        shapes=((1000, 1, 1), (1000, 1, 16), (100000, 1, 16), (100000, 10, 32),
                (100000, 100, 128), (1000000, 10, 64), (20000, 784, 256)),
        min_time=0.5, gemm_size=4096),
    # the small end of "full" and a scaled-down medium shape: a smoke run in
    # seconds, measured the same way (the per-epoch slope), only shorter
    "quick": Preset(shapes=((1000, 1, 1), (1000, 1, 16), (10000, 10, 32)),
                    min_time=0.05, gemm_size=1024),
}
# anything but the quick preset alone is measured as the full preset is
EXPLICIT_SHAPES_MIN_TIME = PRESETS["full"].min_time
EXPLICIT_SHAPES_GEMM_SIZE = PRESETS["full"].gemm_size

DTYPES = {"float64": (np.float64,), "float32": (np.float32,), "both": (np.float64, np.float32)}

COMPETITORS = ("sklearn", "torch")
BACKEND_NAMES = ("numpy", "numba", "cython")
# the order of the table's rows: the reference first
ALL_IMPLEMENTATIONS = BACKEND_NAMES + COMPETITORS


def flops_per_epoch(n, d, h, k=K):
    """Floating-point operations of the matrix products of one epoch: ``2 n h (2 d + 3 k)``."""
    return 2 * n * h * (2 * d + 3 * k)


def make_data(n, d, dtype=np.float64, seed=SEED):
    """X standard normal (n, d); y = sin(X w) + 0.1 noise with |w| = 1, so y is O(1) for any d."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    y = np.sin(X @ w) + 0.1 * rng.standard_normal(n)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(y, dtype=dtype)


def initial_params(d, hidden, dtype, k=K, seed=SEED):
    """Starting weights every implementation that can take them starts from
    (shallownet through ``fit(init=...)``, PyTorch copied into its layers):
    Glorot-uniform as fit() documents it (bound sqrt(6 / (fan_in + fan_out))
    for tanh; W1, b1, W2, b2 in that order)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for fan_in, fan_out in ((d, hidden), (hidden, k)):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        arrays.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        arrays.append(rng.uniform(-bound, bound, fan_out))
    return Params(*(np.ascontiguousarray(a, dtype=dtype) for a in arrays))


def shape_label(shape):
    n, d, h = shape
    return f"{n}x{d}x{h}"


def usable_cores():
    """The cores this process may run on (the default of ``--threads``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
