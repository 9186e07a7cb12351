"""The option vocabulary: names, codes and checks of the training options.

The bottom of the package: every module may import it, it imports nothing
of shallownet's but validation and Params. The codes are the ones the
kernels read (``TrainSpec``); docs/training.md defines what they mean.
"""

from typing import NamedTuple

import numpy as np

from . import _validation as v
from ._params import Params

SGD, ADAM, LBFGS = 0, 1, 2
# "gd" is the seed's method: SGD on one batch of all the rows, in order;
# "lbfgs" runs in Python (SciPy's L-BFGS-B) on the kernels' loss and
# gradients, so no kernel reads its code
OPTIMIZERS = {"gd": SGD, "sgd": SGD, "adam": ADAM, "lbfgs": LBFGS}
SCHEDULES = ("constant", "invscaling")


class TrainSpec(NamedTuple):
    """The scalars every backend's ``train`` reads (see ``shallownet.backends``)."""

    activation: int      # code from _activations.ACTIVATIONS
    optimizer: int       # SGD or ADAM
    learning_rate: float
    power_t: float       # epoch e steps with learning_rate / (e + 1) ** power_t
    momentum: float
    nesterov: bool
    beta1: float
    beta2: float
    epsilon: float
    alpha: float         # L2 penalty
    batch_size: int
    shuffled: bool       # each epoch walks the rows of its order (a permutation)
    # epoch e steps with learning_rate / (e * schedule_scale + 1) ** power_t;
    # scikit-learn's invscaling counts samples seen (schedule_scale = n)
    schedule_scale: float = 1.0
    # Adam's epsilon added to sqrt(v) before the bias correction, folded
    # into the step size (scikit-learn's form) instead of after it
    epsilon_before_correction: bool = False


class OptimizerState(NamedTuple):
    m: Params            # SGD: velocity; Adam: first moment
    v: Params            # Adam: second moment
    t: np.ndarray        # int64 (1,): optimizer steps taken so far


def new_state(params):
    zeros = lambda: Params(*(np.zeros_like(p) for p in params))  # noqa: E731
    return OptimizerState(zeros(), zeros(), np.zeros(1, dtype=np.int64))


def check_options(options, n_samples=None):
    """Validate fit's training options in place; returns the dict."""
    o = options
    o["hidden"] = v.check_positive_int(o["hidden"], "hidden")
    v.check_activation(o["activation"])
    o["learning_rate"] = v.check_learning_rate(o["learning_rate"])
    o["epochs"] = v.check_positive_int(o["epochs"], "epochs")
    o["optimizer"] = v.check_choice(o["optimizer"], "optimizer", OPTIMIZERS)
    o["batch_size"] = v.check_positive_int(o["batch_size"], "batch_size")
    o["shuffle"] = v.check_bool(o["shuffle"], "shuffle")
    o["momentum"] = v.check_real(o["momentum"], "momentum", low=0.0, high=1.0, high_open=True)
    o["nesterov"] = v.check_bool(o["nesterov"], "nesterov")
    if o["nesterov"] and not o["momentum"]:
        raise ValueError("nesterov=True needs a momentum > 0")
    o["beta1"] = v.check_real(o["beta1"], "beta1", low=0.0, high=1.0, high_open=True)
    o["beta2"] = v.check_real(o["beta2"], "beta2", low=0.0, high=1.0, high_open=True)
    o["epsilon"] = v.check_real(o["epsilon"], "epsilon", low=0.0, low_open=True)
    o["alpha"] = v.check_real(o["alpha"], "alpha", low=0.0)
    o["learning_rate_schedule"] = v.check_choice(o["learning_rate_schedule"],
                                                 "learning_rate_schedule", SCHEDULES)
    o["power_t"] = v.check_real(o["power_t"], "power_t", low=0.0)
    o["early_stopping"] = v.check_bool(o["early_stopping"], "early_stopping")
    o["validation_fraction"] = v.check_real(o["validation_fraction"], "validation_fraction",
                                            low=0.0, high=1.0, low_open=True, high_open=True)
    o["n_iter_no_change"] = v.check_positive_int(o["n_iter_no_change"], "n_iter_no_change")
    # files saved before L-BFGS existed have no max_fun
    o["max_fun"] = v.check_positive_int(o.get("max_fun", 15000), "max_fun")
    if o["optimizer"] == "lbfgs" and o["early_stopping"]:
        raise ValueError("early_stopping needs optimizer 'gd', 'sgd' or 'adam'; L-BFGS stops "
                         "on tol (the largest gradient entry), epochs (its iterations) and max_fun")
    o["tol"] = v.check_real(o["tol"], "tol", low=0.0)
    return o


