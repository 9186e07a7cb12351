"""Model: the result of a fit: predict, partial_fit, save and load."""

from __future__ import annotations

import json
import os

import numpy as np
from numpy.typing import ArrayLike

from . import _modelfile
from . import _validation as v
from ._activations import ACTIVATIONS
from ._options import OptimizerState, check_options
from ._params import Params
from ._training import Trainer
from .backends import resolve_backend

# version of the .npz layout written by Model.save; load refuses any other
FORMAT_VERSION = 1


class Model:
    """A fitted network ``yhat = g(X W1 + b1) W2 + b2``.

    Returned by :func:`fit` and :func:`load`; not meant to be constructed
    directly. A model predicts, trains on (:meth:`partial_fit`), saves itself
    to a portable file (:meth:`save`) and pickles.

    Attributes
    ----------
    params : Params
        ``(W1, b1, W2, b2)`` in the dtype of the fit.
    loss_curve : ndarray of float64
        Training loss, one entry per epoch run. For "gd", the loss at the parameters the epoch
        started from (entry 0 is the loss of the initial weights); for the
        minibatch optimizers, the weighted mean of the epoch's batch losses.
    validation_curve : ndarray of float64
        With early stopping, the validation loss after each epoch; else empty.
    n_epochs_ : int
        Epochs run, fewer than asked when training stopped early.
    best_epoch_ : int or None
        With early stopping, the epoch whose parameters were restored.
    n_features_in_ : int
        Number of input features d.
    dtype : numpy.dtype
        float32 or float64, the precision of the fit.
    backend : str
        The backend that trains and that :meth:`partial_fit` uses.
    activation : str
        The hidden layer's activation.
    learning_rate : float
        The learning rate of the fit.
    options : dict
        Every training option of the fit, validated.
    """

    def __init__(self, trainer, backend, one_d_y):
        self._trainer = trainer
        self.backend = backend
        self._one_d_y = one_d_y
        self.loss_curve = np.empty(0)
        self.validation_curve = np.empty(0)

    # -- settings and results
    params = property(lambda self: self._trainer.params)
    options = property(lambda self: dict(self._trainer.options))
    activation = property(lambda self: self._trainer.options["activation"])
    learning_rate = property(lambda self: self._trainer.options["learning_rate"])
    dtype = property(lambda self: self.params.W1.dtype)
    n_features_in_ = property(lambda self: self.params.W1.shape[0])
    n_epochs_ = property(lambda self: len(self.loss_curve))
    best_epoch_ = property(lambda self: self._trainer.best_epoch)

    def _train(self, X, Y, sample_weight, epochs, *, rows=None, validation=None, callback=None,
               callback_every=1, verbose=0):
        progress, close = _progress(verbose, epochs)
        try:
            losses, val_losses = self._trainer.run(
                X, Y, sample_weight, epochs, rows=rows, validation=validation, callback=callback,
                callback_every=callback_every, progress=progress)
        finally:
            close()
        self.loss_curve = np.concatenate([self.loss_curve, losses])
        self.validation_curve = np.concatenate([self.validation_curve, val_losses])

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the targets of ``X``.

        Parameters
        ----------
        X : array-like of shape (m, d)
            Inputs, finite; converted to the model's dtype.

        Returns
        -------
        yhat : ndarray of shape (m,) or (m, k)
            1-D if the model was fitted with a 1-D ``y``, else 2-D.
        """
        X = v.check_X(X, self.dtype, n_features=self.n_features_in_)
        W1, b1, W2, b2 = self.params
        yhat = ACTIVATIONS[self.activation].g(X @ W1 + b1) @ W2 + b2
        return yhat[:, 0] if self._one_d_y else yhat

    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> Model:
        """Train one more epoch on ``(X, y)``, keeping the optimizer state.

        The epoch is the fit's next one (for the learning-rate schedule and Adam's
        step count), with the fit's settings and backend, and goes on from the
        fit's optimizer state and shuffling generator. Early stopping does not
        apply.

        Parameters
        ----------
        X : array-like of shape (n, d)
            Inputs, finite, with the fit's number of features.
        y : array-like of shape (n,) or (n, k)
            Targets, finite, with the fit's number of outputs.
        sample_weight : array-like of shape (n,), optional
            Non-negative weights with a positive sum; default: every row weighs 1.

        Returns
        -------
        Model
            This model, updated in place.
        """
        X, Y = v.check_X_y(X, y, self.dtype)
        if X.shape[1] != self.n_features_in_ or Y.shape[1] != self.params.W2.shape[1]:
            raise ValueError(f"X, y have shapes {X.shape}, {np.shape(y)}, but the model was fitted "
                             f"with {self.n_features_in_} features and {self.params.W2.shape[1]} outputs")
        sample_weight = v.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        self._train(X, Y, sample_weight, 1)
        return self

    # -- persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        trainer = state.pop("_trainer")
        state["_trainer_state"] = {k: val for k, val in trainer.__dict__.items() if k != "module"}
        return state

    def __setstate__(self, state):
        trainer_state = state.pop("_trainer_state")
        self.__dict__.update(state)
        _, module = resolve_backend(self.backend)
        self._trainer = Trainer.__new__(Trainer)
        self._trainer.__dict__.update(trainer_state, module=module)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to a portable ``.npz`` file, without pickles.

        The file holds the parameters, the optimizer state, the curves, the
        settings and the package version; :func:`load` reads it back and training
        goes on where it stopped.

        Parameters
        ----------
        path : str or path-like
            Where to write.
        """
        from . import __version__
        t = self._trainer
        meta = dict(format=FORMAT_VERSION, shallownet_version=__version__, backend=self.backend,
                    one_d_y=self._one_d_y, options=t.options, epochs_done=t.epochs_done,
                    n_threads=t.n_threads, shuffle_state=t.shuffle_rng.bit_generator.state)
        arrays = {f"param_{name}": p for name, p in zip(Params._fields, t.params)}
        arrays.update({f"m_{name}": p for name, p in zip(Params._fields, t.state.m)})
        arrays.update({f"v_{name}": p for name, p in zip(Params._fields, t.state.v)})
        with open(path, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), step=t.state.t, loss_curve=self.loss_curve,
                     validation_curve=self.validation_curve, **arrays)

    def __repr__(self):
        d, h = self.params.W1.shape
        k = self.params.W2.shape[1]
        last = f"{self.loss_curve[-1]:.6g}" if len(self.loss_curve) else "n/a"
        return (f"Model(d={d}, hidden={h}, k={k}, activation={self.activation!r}, "
                f"optimizer={self.options['optimizer']!r}, backend={self.backend!r}, "
                f"dtype={self.dtype.name}, epochs={self.n_epochs_}, final_loss={last})")


def load(path: str | os.PathLike[str], backend: str | None = None, *,
         max_bytes: int = 1 << 32) -> Model:
    """Read a model written by :meth:`Model.save`.

    The file is treated as untrusted: only the members a model has are read,
    each checked against its ``.npy`` header and the model's shapes before its
    data is decompressed. (A pickled :class:`Model` is different: unpickling an
    untrusted file runs arbitrary code.)

    Parameters
    ----------
    path : str or path-like
        The file to read.
    backend : str, optional
        The backend the loaded model trains with; default: the one it was saved
        with.
    max_bytes : int, default=2**32
        The most bytes the file's members may declare in all, before any is
        decompressed.

    Returns
    -------
    Model
        The model, ready to predict and to train on.

    Raises
    ------
    ValueError
        When the file is not a shallownet model file, is damaged or malformed
        (saying what is wrong), declares more than ``max_bytes``, or was
        written in another file format version.
    """
    try:
        meta, data = _modelfile.read(path, FORMAT_VERSION, max_bytes)
    except _modelfile.FileError as exc:
        raise ValueError(f"{path!s} is not a readable shallownet model file: {exc}") from None
    if data is None:
        raise ValueError(f"{path!s} was written by shallownet {meta.get('shallownet_version')} in file "
                         f"format {meta['format']}; this version reads format {FORMAT_VERSION} only")
    try:
        options = check_options(dict(meta["options"]))
        act = v.check_activation(options["activation"])
        params = Params(*(data[f"param_{n}"] for n in Params._fields))
        m = Params(*(data[f"m_{n}"] for n in Params._fields))
        second = Params(*(data[f"v_{n}"] for n in Params._fields))
        d, h = params.W1.shape
        if h != options["hidden"]:
            raise ValueError(f"W1 has {h} hidden units, the options say {options['hidden']}")
        for group, name in ((params, "param"), (m, "m"), (second, "v")):
            v.check_init(group, d, h, params.W2.shape[1], params.W1.dtype, name=name)
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["shuffle_state"]
        name, module = resolve_backend(backend or meta["backend"])
        trainer = Trainer(module, options, act, params,
                          OptimizerState(m, second, data["step"].astype(np.int64).reshape(1)),
                          rng, v.check_n_threads(meta["n_threads"]))
        trainer.epochs_done = int(meta["epochs_done"])
        model = Model(trainer, backend=name, one_d_y=v.check_bool(meta["one_d_y"], "one_d_y"))
        model.loss_curve = data["loss_curve"].astype(np.float64)
        model.validation_curve = data["validation_curve"].astype(np.float64)
    except (KeyError, ValueError, TypeError, OverflowError, RecursionError, AttributeError) as exc:
        raise ValueError(f"{path!s} is a damaged shallownet model file: "
                         f"{type(exc).__name__}: {exc}") from None
    return model


def _progress(verbose, epochs):
    """(callback(done, loss), close()) for verbose > 0, else (None, no-op)."""
    if not verbose:
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        step = max(1, epochs // 10)
        printed = [0]

        def report(done, loss):  # blocks vary in length: print on passing a tenth
            if done // step > printed[0] or done == epochs:
                printed[0] = done // step
                print(f"epoch {done}/{epochs}  loss {loss:.6g}", flush=True)
        return report, lambda: None
    bar = tqdm(total=epochs, unit="epoch")
    last = [0]

    def update(done, loss):
        bar.update(done - last[0])
        last[0] = done
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    return update, bar.close
