"""pytest-benchmark: one fit() of E epochs per backend x shape x dtype.

    PYTHONPATH=src pytest benches/                          # small and medium shapes
    SHALLOWNET_BENCH_FULL=1 PYTHONPATH=src pytest benches/  # also the big ones
    pytest benches/ --benchmark-compare                     # against a saved run (--benchmark-autosave)

Each group is one shape; within it every backend and dtype trains for the same
E epochs, so the times of a group compare directly. The time of one call is
E epochs plus fit()'s fixed cost; ``extra_info`` holds the per-epoch time and
GFLOP/s (matrix products only, ``2 n h (2 d + 3 k)`` per epoch, see
``shallownet.bench``). For ratios to scikit-learn, PyTorch and the machine's
GEMM rate use ``python -m shallownet.bench``.
"""

import functools
import os

import numpy as np
import pytest

import shallownet
from shallownet.backends import BACKENDS
from shallownet.bench import ACTIVATION, LEARNING_RATE, flops_per_epoch, make_data, shape_label, unavailable_reason

FULL = os.environ.get("SHALLOWNET_BENCH_FULL") == "1"

# (n, d, h) -> epochs per fit() call: about 0.1 s with the NumPy backend on 2 cores,
# so a test (1 warm-up + ROUNDS calls) takes a second or two.
SHAPES = {
    (1000, 1, 1): 2000,
    (1000, 1, 16): 500,
    (10000, 10, 32): 20,
    (100000, 1, 16): 4,
    (100000, 10, 32): 2,
}
# the big shapes of `python -m shallownet.bench --shapes full`; seconds per call
FULL_SHAPES = {
    (100000, 100, 128): 2,
    (1000000, 10, 64): 1,
    (20000, 784, 256): 2,
}
ROUNDS = 5
FULL_ROUNDS = 3
DTYPES = (np.float64, np.float32)


@functools.lru_cache(maxsize=None)
def _data(n, d, dtype):
    X, y = make_data(n, d, dtype)
    X.flags.writeable = False  # shared by every test of the shape: no backend may write to it
    y.flags.writeable = False
    return X, y


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("shape", list(SHAPES) + list(FULL_SHAPES), ids=shape_label)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_fit(benchmark, backend, shape, dtype):
    why_not = unavailable_reason(backend)
    if why_not is not None:
        pytest.skip(f"backend {backend!r} not available: {why_not}")
    big = shape in FULL_SHAPES
    if big and not FULL:
        pytest.skip(f"{shape_label(shape)} is a big shape: set SHALLOWNET_BENCH_FULL=1 to run it")
    n, d, h = shape
    epochs = FULL_SHAPES[shape] if big else SHAPES[shape]
    X, y = _data(n, d, dtype)
    dtype_name = np.dtype(dtype).name

    benchmark.group = f"fit {shape_label(shape)}"  # read when the stats are created: set it first
    benchmark.extra_info.update(backend=backend, shape=shape_label(shape), n=n, d=d, h=h,
                                dtype=dtype_name, epochs=epochs, flops_per_epoch=flops_per_epoch(n, d, h))

    model = benchmark.pedantic(
        shallownet.fit, args=(X, y),
        kwargs=dict(hidden=h, activation=ACTIVATION, learning_rate=LEARNING_RATE, epochs=epochs,
                    backend=backend, random_state=0, dtype=dtype),
        rounds=FULL_ROUNDS if big else ROUNDS, warmup_rounds=1, iterations=1)

    assert model.backend == backend
    assert np.isfinite(model.loss_curve).all()
    if benchmark.stats is not None:  # None with --benchmark-disable
        seconds_per_epoch = benchmark.stats.stats.median / epochs
        benchmark.extra_info["ms_per_epoch"] = 1e3 * seconds_per_epoch
        benchmark.extra_info["gflops"] = flops_per_epoch(n, d, h) / seconds_per_epoch / 1e9
