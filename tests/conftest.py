import os
from pathlib import Path

import numpy as np
import pytest

import shallownet
from shallownet.backends import BACKENDS

ALL_BACKENDS = tuple(BACKENDS)
COMPILED_BACKENDS = tuple(b for b in ALL_BACKENDS if b != "numpy")
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def pytest_report_header(config):
    return [f"shallownet {shallownet.__version__} from {Path(shallownet.__file__).parent}",
            f"available backends: {shallownet.available_backends()}"]


def pytest_sessionstart(session):
    # .ci/run sets this: the suite must exercise the installed wheel, not src/
    if os.environ.get("SHALLOWNET_TEST_INSTALLED"):
        location = Path(shallownet.__file__).resolve()
        assert "site-packages" in location.parts, f"testing {location}, not the installed package"


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Every backend; a backend that does not load fails the test instead of skipping it."""
    return request.param


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    return request.param


def make_problem(n, d, k, seed=0, dtype=np.float64):
    """A smooth learnable regression problem: y depends on X through sines."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, k)) / np.sqrt(d)
    Y = np.sin(X @ W) + 0.05 * rng.standard_normal((n, k))
    return X.astype(dtype), (Y[:, 0] if k == 1 else Y).astype(dtype)


def relative_error(actual, reference):
    """max |actual - reference| / max |reference| (the error scaled by the array's size)."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = np.max(np.abs(reference))
    diff = np.max(np.abs(actual - reference))
    return diff / scale if scale > 0 else diff
