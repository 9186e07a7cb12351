"""The Numba kernels of shallownet (design: docs/kernels.md; semantics:
docs/training.md), by concern:

- ``jit``: compiler flags, dtype helpers (``like``, ``derivative_from_output``)
- ``calls``: kernels calling one another by symbol, without linking
- ``intrinsics``: bit casts, unchecked views, BLAS GEMM by symbol, prefetch,
  min and max, zeroing
- ``activations``: g and g' in float64 and float32, one dispatch
- ``rows``: residual, weight sums and gathers, sums of squares
- ``explicit`` and ``gemm``: the two kinds of tile
- ``plan``: chunks, tiles and path from the shapes; the run's buffers
  (Python: a run passes its batches' cuts in)
- ``batch``: a batch's loss and gradients over its chunks
- ``steps``: the optimizer steps and the learning-rate schedule
- ``epochs``: a block of epochs; one loss-and-gradients evaluation
- ``records``: the named records passed between them

Trains yhat = g(X W1 + b1) W2 + b2 on the weighted squared loss with an L2
penalty: each epoch walks the rows (in order, or in a given order per epoch)
in batches; a batch B with weight sum W_B > 0 takes
  L_B = sum_{i in B} w_i sum_c (yhat_ic - y_ic)^2 / W_B + alpha (|W1|^2 + |W2|^2) / W_B
and its four gradients, then one optimizer step. The whole block of epochs
is one compiled call. The kernels trust their input: X (n, d) and Y (n, k)
C-contiguous, finite, float32 or float64, possibly read-only; w (n,)
finite, non-negative, of X's dtype; the parameters and optimizer state
C-contiguous, writable, of X's dtype; orders int64; losses float64. They
write the parameters, state and their slice of the curve, and never raise.

A fit compiles only what it runs: the functions below build one entry point
per configuration (activation, step kind, GEMM tiles or explicit loops,
serial or parallel, gathered batches or not, batches of one chunk or more,
a penalty or not), whose constants every kernel
below it is compiled for (``jit``); Numba caches each on disk (its cache key
includes the constants).
"""

from functools import cache

from numba import njit

from . import epochs
from .activations import activate as _activate
from .jit import JIT, entry
from .plan import plan, prepare, workspace
from .records import Epochs, Params, Rows, Settings, State
from .rows import weight_sum
from .steps import step_kind, step_moments

__all__ = ["Epochs", "Params", "Rows", "Settings", "State", "configure", "cut", "penalized",
           "trainer", "evaluator", "activator", "prepare", "workspace", "step_kind",
           "step_moments", "weight_sum"]


def _flag(on):
    return True if on else None


def configure(n, d, h, k, itemsize, n_threads):
    """The flags (gemm, parallel, single) of batches of at most n rows with
    these shapes and threads, None (off) or True (on): the path is fixed by
    the shapes; a batch that is one chunk, or one thread, runs serially and
    never compiles the parallel code; where every batch is one chunk
    (single), the chunk adds into the gradients itself and no reduction is
    compiled."""
    n_chunks, _, _, use_gemm, _ = plan(n, d, h, k, itemsize)
    return _flag(use_gemm), _flag(n_chunks > 1 and n_threads > 1), _flag(n_chunks == 1)


def cut(n, d, h, k, itemsize):
    """(n_chunks, chunk_rows, tile_rows) of a batch of n rows, as ``plan``
    cuts it: computed here and passed in, since compiling the plan into
    the kernels was a sixth of the epoch loop's code (docs/kernels.md,
    "Compiling on demand")."""
    n_chunks, chunk_rows, tile_rows, _, _ = plan(n, d, h, k, itemsize)
    return int(n_chunks), int(chunk_rows), int(tile_rows)


def penalized(alpha):
    """The flag of a fit's L2 penalty: without one (alpha = 0) its sums and
    gradients are not compiled."""
    return _flag(alpha != 0)


def uses_gemm(d, h):
    """Whether layers of these sizes take the GEMM tiles (BLAS)."""
    return bool(plan(1, d, h, 1, 8)[3])


@cache
def trainer(code, kind, gemm, parallel, gather, single, penalty):
    """The compiled ``train(data, params, state, settings, epochs, ws)`` of
    one configuration (``epochs.make_train``)."""
    return epochs.make_train(code, kind, gemm, parallel, _flag(gather), single, penalty)


@cache
def evaluator(code, gemm, parallel, single, penalty):
    """The compiled ``loss_and_gradients(data, params, alpha, weight, cut, ws,
    grads)`` of one configuration (``epochs.make_loss_and_gradients``)."""
    return epochs.make_loss_and_gradients(code, gemm, parallel, single, penalty)


@cache
def activator(code):
    """The compiled ``activate(z, a, g)`` of one activation."""
    @njit(**entry(JIT))
    def activate(z, a, g):
        _activate(z, a, g, code)
    return activate
