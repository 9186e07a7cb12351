"""Training speed of every backend against each other, scikit-learn and PyTorch.

    python -m shallownet.bench --shapes quick
    python -m shallownet.bench --shapes full --dtype both --markdown full.md --plot speedup.png
    python -m shallownet.bench --shapes 100000x10x32 20000x784x256 --threads 1

For every shape (n, d, h), with k = 1 output and tanh, each implementation
trains on the same data (X standard normal, y = sin(X w) + noise, learning
rate 0.01) through its public entry point, and its time per epoch and fixed
cost per fit are measured as follows (``timing``):

* one warm-up call of 2 epochs first (so Numba's compilation, page faults and
  thread start-up are not timed). Its loss after the first step is compared
  with the NumPy backend's, to catch a backend that is fast because it is wrong;
* a pause (``--settle``), then pairs of probing calls choose E so that E
  epochs last ``--min-time`` seconds (or ``--epochs`` fixes it);
* then ``--repeats`` rounds in which every implementation takes one turn:
  a pause, then whole fits of 1, E and 2E epochs. The time per epoch is the
  median of ``(t(2E) - t(E)) / E``, in which a fit's fixed cost (validation,
  initialisation, set-up) cancels; the fixed cost is the median ``t(1)``
  less one epoch, reported as its own column.

Implementations (``implementations``): the shallownet backends that load
(``available_backends()``; the others are listed as "not available", never
timed), scikit-learn's ``MLPRegressor`` (plain full-batch SGD, no momentum, no
regularisation, no early stopping; its loss is half the MSE and its initial
weights differ, so it is a speed comparison only) and a PyTorch eager loop
(``nn.Linear`` layers, autograd, ``torch.optim.SGD``, ``nn.MSELoss``, started
from the same weights as shallownet). All run with ``--threads`` threads:
``n_threads`` for fit(), BLAS limited with threadpoolctl,
``torch.set_num_threads``.

GFLOP/s count only the matrix products of one epoch, ``2 n h (2 d + 3 k)``,
compared with the rate of one large BLAS GEMM (``numpy.matmul``) timed in the
same rounds. Where those products are nearly all of an epoch's work (full
batch, d x h >= 4096), the two d x h products alone, as two BLAS calls of the
same shapes, take a turn too: a floor for those epochs.

Modules: ``cases`` (presets, data), ``implementations``, ``timing``,
``report`` (table, Markdown), ``plot``, ``cli`` (the command line).
"""

from .cases import (ACTIVATION, ALL_IMPLEMENTATIONS, LEARNING_RATE, PRESETS, flops_per_epoch,
                    make_data, shape_label)
from .cli import build_parser, main
from .implementations import unavailable_reason
from .timing import Result, choose_epochs, time_round_robin

__all__ = ["ACTIVATION", "ALL_IMPLEMENTATIONS", "LEARNING_RATE", "PRESETS", "Result", "build_parser",
           "choose_epochs", "flops_per_epoch", "main", "make_data", "shape_label", "time_round_robin",
           "unavailable_reason"]
