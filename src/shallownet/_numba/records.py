"""The named records the Numba kernels pass around (namedtuples of arrays
and scalars: Numba types each field, so a record costs nothing at run time)."""

from typing import NamedTuple

import numpy as np

from .._params import Params  # noqa: F401  (W1, b1, W2, b2; gradients and moments too)


class Rows(NamedTuple):
    """The rows a tile reads: X (n, d) and Y (n, k) row-major on the GEMM
    path; on the explicit path their transposes XT (d, n) and YT (k, n).
    w (n,): the sample weights. (An entry point's ``data`` holds X and Y
    themselves, or None where it reads only the workspace's XT and YT.)"""
    X: np.ndarray
    Y: np.ndarray
    w: np.ndarray


class Source(NamedTuple):
    """Where a shuffled batch's rows come from and go: rows order[i] of the
    fit's X (n, d) and Y (n, k) into X_to and Y_to, in the layout the tiles
    read (row-major batch buffers, or transposed ones for the explicit loops)."""
    X: np.ndarray
    Y: np.ndarray
    order: np.ndarray
    X_to: np.ndarray
    Y_to: np.ndarray


class Tiles(NamedTuple):
    """Each worker's tile buffers, one row per worker: G and A (h x T), R
    (k x T), dz (2 T, two units' worth; explicit loops only); and three
    flags of the shapes for the explicit tiles, None or True (``jit``):
    ``wide`` d > 1, ``multi`` k > 1, ``many`` d >= ``plan.MANY_FEATURES``
    (the passes over several features at once can run), so that a tile
    compiles the loops of its own case only (read through
    ``jit.constant_flag``: a record's True is a plain bool, which Numba does
    not prune by)."""
    G: np.ndarray
    A: np.ndarray
    R: np.ndarray
    dz: np.ndarray
    wide: object
    multi: object
    many: object


class Chunks(NamedTuple):
    """Each chunk's gradient accumulators and loss, one row per chunk."""
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    loss: np.ndarray


class State(NamedTuple):
    """The optimizer's state: m (velocity or first moment), v (second
    moment), each None where the step keeps none; t int64 (1,) the steps
    taken."""
    m: Params
    v: Params
    t: np.ndarray


class Settings(NamedTuple):
    """The scalars of a run (see shallownet._options.TrainSpec)."""
    learning_rate: float
    power_t: float
    schedule_scale: float
    momentum: float
    nesterov: bool
    beta1: float
    beta2: float
    epsilon: float
    alpha: float
    rows: int            # rows a batch: min(batch_size, n)


class Epochs(NamedTuple):
    """One call's epochs: epoch0 (the schedule's count of the first), the
    orders of shuffled epochs, int64 (count, m) (None for rows in order),
    the fit's curve, of which
    losses[start:start + count] is written, and ``cuts``: the cuts (see
    ``shallownet._numba.cut``) of an epoch's full batches and of its last."""
    epoch0: int
    count: int
    orders: np.ndarray
    losses: np.ndarray
    start: int
    cuts: tuple


class Workspace(NamedTuple):
    """The buffers of a run of calls (``plan.workspace``); a buffer the
    run's configuration does not use is None."""
    XT: np.ndarray           # explicit path: X transposed (all rows, or a gathered batch)
    YT: np.ndarray
    X_batch: np.ndarray      # GEMM path, gathered batches: the batch's rows
    Y_batch: np.ndarray
    w_batch: np.ndarray      # gathered batches: the batch's weights
    tiles: Tiles
    chunks: Chunks
    W1T: np.ndarray          # GEMM path: W1 and its moments transposed (h x d)
    mW1T: np.ndarray
    vW1T: np.ndarray
    grads: Params            # a batch's gradients (dW1 transposed on the GEMM path)
    batch_weight: np.ndarray  # rows in order: each batch's weight sum (float64)
    unit_weights: np.ndarray  # (1,) float64: 1.0 when every sample weight is 1


class AdamScalars(NamedTuple):
    """An Adam step's scalars, in the parameters' dtype but for ``step``
    (float64: lr sqrt(bias2) / bias1, the folded form's step size)."""
    lr: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    bias1: float
    bias2: float
    epsilon: float
    step: float
