"""Every check on user input, made once, in Python, before any kernel runs.

Kernels trust what comes out of here: C-contiguous, 2-D, finite arrays of one
float dtype (float32 or float64), and hyperparameters of the right type and
range. Errors name the argument and say what was wrong.
"""

import math
import numbers

import numpy as np

from ._activations import ACTIVATIONS
from ._params import Params
from ._threads import usable_cores

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, X_raw):
    """The working dtype: ``dtype`` if given, else float32 for float32 X, else float64."""
    if dtype is None:
        raw_dtype = getattr(X_raw, "dtype", None)
        return np.dtype(np.float32) if raw_dtype == np.float32 else np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def check_not_dask(value, name):
    """Refuse a dask collection (without importing dask): converting it would
    gather all of it into this process."""
    if getattr(type(value), "__dask_graph__", None) is not None:
        raise TypeError(f"{name} is a dask {type(value).__name__}: converting it would pull the "
                        "whole of it into this process; use shallownet.dask.fit and "
                        "shallownet.dask.predict, which keep the data on the workers")


def _as_real_array(value, name, dtype):
    """Convert an array-like of real numbers to a C-contiguous array of ``dtype``."""
    if type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous:
        return value  # already what the kernels take: the common case, kept cheap
    if value is None:
        raise TypeError(f"{name} must be an array-like of real numbers, got None")
    check_not_dask(value, name)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array-like of real numbers: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        if kind != "O":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold real numbers, got objects that are not: {exc}") from None
    with np.errstate(over="ignore"):
        # float64 -> float32 may overflow to inf; the finiteness check below reports it
        return np.ascontiguousarray(arr, dtype=dtype)


# A large array is first checked by its sum: NaN and inf propagate into a
# sum (inf - inf is NaN), so a finite sum means finite entries. Only a sum
# that is not finite (a bad entry, or large finite entries whose sum
# overflows) falls back to the elementwise check, whose boolean temporary
# has the array's shape. Measured at (20000, 784) float64: 13.3 against
# 17.6 ms. Not a BLAS product with a vector of ones, though it took 7-10 ms
# on two threads: OpenBLAS's worker thread then spins for ~0.1 s, on a core
# that the training kernels, called next, need (seen as 60-70 ms of CPU
# taken by that thread during each 3-epoch fit at that shape).
_SUM_CHECK_MIN_SIZE = 1 << 16


def _check_finite(arr, name):
    if arr.size >= _SUM_CHECK_MIN_SIZE:
        with np.errstate(over="ignore", invalid="ignore"):
            total = arr.sum()
        if np.isfinite(total):
            return
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity (or a value too large for {arr.dtype})")


def check_X(X, dtype, n_features=None):
    X = _as_real_array(X, "X", dtype)
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D of shape (n_samples, n_features), got {X.ndim}-D with shape {X.shape}; "
            "reshape a single feature with X.reshape(-1, 1)")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty: shape {X.shape}, need at least one sample and one feature")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model was fitted with {n_features}")
    _check_finite(X, "X")
    return X


def check_X_y(X, y, dtype):
    """Return ``(X, Y)``: X (n, d), Y (n, k) C-contiguous arrays of ``dtype``."""
    X = check_X(X, dtype)
    y = _as_real_array(y, "y", dtype)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y have different numbers of samples: X has {X.shape[0]}, y has {y.shape[0]}")
    Y = y.reshape(-1, 1) if y.ndim == 1 else y
    if Y.shape[1] == 0:
        raise ValueError(f"y is empty: shape {y.shape}, need at least one output")
    _check_finite(Y, "y")
    return X, Y


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_learning_rate(value, name="learning_rate"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def check_activation(activation):
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def check_n_threads(n_threads):
    """``None`` means every core this process may use (``_threads.usable_cores``)."""
    if n_threads is None:
        return usable_cores()
    return check_positive_int(n_threads, "n_threads")


def check_random_state(random_state):
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"random_state must be None, a non-negative integer or a numpy Generator, got {random_state!r}: {exc}"
        ) from None


def check_init(init, d, hidden, k, dtype, name="init"):
    """Copy ``init`` into fresh C-contiguous arrays of ``dtype`` after checking shapes."""
    if not isinstance(init, (tuple, list)) or len(init) != 4:
        raise TypeError(f"{name} must be a Params or a 4-tuple (W1, b1, W2, b2), got {type(init).__name__}")
    names = Params._fields
    if hidden < 1:
        raise ValueError(f"{name}.W1 has {hidden} hidden units (shape ({d}, {hidden})); "
                         "a network needs at least one")
    expected = ((d, hidden), (hidden,), (hidden, k), (k,))
    arrays = []
    for field, value, shape in zip(names, init, expected):
        arr = _as_real_array(value, f"{name}.{field}", dtype)
        if arr.shape != shape:
            raise ValueError(f"{name}.{field} must have shape {shape} for d={d}, hidden={hidden}, k={k}; "
                             f"got {arr.shape}")
        _check_finite(arr, f"{name}.{field}")
        arrays.append(arr.copy())  # always private: the kernels update it in place
    return Params(*arrays)


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_real(value, name, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number in the interval [low, high] (ends open where said)."""
    def interval():
        return (f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
                f"{'inf' if high is None else high}{')' if high_open else ']'}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in {interval()}, got {value!r}")
    value = float(value)
    ok = math.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must be a real number in {interval()}, got {value!r}")
    return value


def check_sample_weight(sample_weight, n, dtype):
    """Unit weights for None; else a finite, non-negative (n,) array with a positive sum."""
    if sample_weight is None:
        return np.ones(n, dtype=dtype)
    w = _as_real_array(sample_weight, "sample_weight", dtype)
    if w.ndim == 0:
        w = np.full(n, w, dtype=dtype)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    _check_finite(w, "sample_weight")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not w.sum(dtype=np.float64) > 0:
        raise ValueError("sample_weight must have a positive sum: all weights are zero")
    return w.copy() if np.may_share_memory(w, sample_weight) else w


def check_verbose(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"verbose must be a non-negative integer, got {verbose!r}")
    return int(verbose)
