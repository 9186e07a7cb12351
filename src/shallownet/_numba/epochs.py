"""The compiled calls: a block of epochs (``train``) and one evaluation of
the loss and its gradients over all rows (``loss_and_gradients``).

Each is built for one configuration, as compile-time constants: the activation
code (a literal integer, dispatched on while typing), the step kind (the
closure's integer, whose branches Numba prunes), and the flags ``gemm`` (GEMM
tiles, else explicit loops), ``parallel``, ``gather`` (shuffled batches, else
rows in order), ``single`` (every batch one chunk) and ``penalty`` (alpha !=
0), each None or True (see ``jit``). ``shallownet._numba``
keeps one compiled function per configuration a fit uses.
"""

import numpy as np
from numba import njit

from .batch import gradients
from .calls import kernel
from .intrinsics import smaller, wide_vectors
from .jit import JIT, entry, like
from .records import Params, Rows, Source, State
from .rows import gather_weights, transpose_into
from .steps import (ADAM_STEP, MOMENTUM, PLAIN, adam_folded_step, adam_step, learning_rate,
                    momentum_step, plain_step, step_moments)


@kernel(JIT)
def _copy_transposed(W1, m, v, W1_from, m_from, v_from):
    """W1 = W1_from^T, and as many of the optimizer's moments as it keeps
    (m and v are None where it keeps none): into the GEMM path's layout or
    back."""
    transpose_into(W1, W1_from)
    if m is not None:
        transpose_into(m, m_from)
    if v is not None:
        transpose_into(v, v_from)


def make_train(code, kind, gemm, parallel, gather, single, penalty):
    """The compiled ``train`` of one configuration: the constants are the
    closure's, pruned and passed on as compile-time constants (the factory
    is the entry point itself: a level of calls less to compile). Numba
    prunes a branch on a closure's constant (``kind == PLAIN``) before
    inlining and typing it, so only this kind's step is compiled. The
    moments the step does not keep are None in ``state`` and ``ws``."""
    moments = step_moments(kind)

    @njit(**entry(JIT))
    def train(data, params, state, settings, epochs, ws):
        """Run epochs.count epochs on params and the optimizer state in place;
        see the package's docstring. Returns the number of finished epochs
        (stops at the first batch loss that is not finite, after writing it to
        the curve)."""
        wide_vectors()
        X, Y, w = data           # X and Y None where only ws.XT and ws.YT are read
        n = w.shape[0]
        rows = settings.rows
        orders = epochs.orders
        full_cut, last_cut = epochs.cuts
        # an epoch's rows: all n in order, or the m rows of its order
        walked = n if gather is None else orders.shape[1]
        n_batches = (walked + rows - 1) // rows
        first_m, second_v = state.m, state.v
        if gemm is not None:
            # the GEMM path's layout for the whole call, undone before
            # returning; a moment the step does not keep is None
            P = Params(ws.W1T, params.b1, params.W2, params.b2)
            if moments == 0:
                _copy_transposed(ws.W1T, None, None, params.W1, None, None)
                S = state
            elif moments == 1:
                _copy_transposed(ws.W1T, ws.mW1T, None, params.W1, first_m.W1, None)
                S = State(Params(ws.mW1T, first_m.b1, first_m.W2, first_m.b2), None, state.t)
            else:
                _copy_transposed(ws.W1T, ws.mW1T, ws.vW1T, params.W1, first_m.W1,
                                 second_v.W1)
                S = State(Params(ws.mW1T, first_m.b1, first_m.W2, first_m.b2),
                          Params(ws.vW1T, second_v.b1, second_v.W2, second_v.b2), state.t)
        else:
            P = params
            S = state
        grads = ws.grads
        tiles, chunks = ws.tiles, ws.chunks
        # unit weights: a shuffled batch's weights are all ones, set once here
        # rather than gathered (200 random reads a batch) before every batch
        unit_weights = False
        if gather is not None:
            unit_weights = ws.unit_weights[0] == 1.0
            if unit_weights:
                ws.w_batch[:] = 1
        # the rows the tiles read, in the path's layout: a gathered batch's
        # buffers (row 0 on), or all rows
        if gemm is None:
            batch_rows = Rows(ws.XT, ws.YT, ws.w_batch)
            X_to, Y_to = ws.XT, ws.YT
            in_order = Rows(ws.XT, ws.YT, w)
        else:
            batch_rows = Rows(ws.X_batch, ws.Y_batch, ws.w_batch)
            X_to, Y_to = ws.X_batch, ws.Y_batch
            in_order = Rows(X, Y, w)
        finished = epochs.count
        for epoch in range(epochs.count):
            lr = like(learning_rate(settings.learning_rate, epochs.epoch0 + epoch,
                                    settings.schedule_scale, settings.power_t), P.W1)
            epoch_loss = 0.0
            epoch_weight = 0.0
            for batch in range(n_batches):
                first = batch * rows
                m = smaller(rows, walked - first)
                cut = full_cut if m == rows else last_cut
                if gather is not None:
                    order = orders[epoch, first:first + m]
                    if unit_weights:
                        weight = np.float64(m)           # the exact sum of m ones
                    else:
                        weight = gather_weights(w, order, ws.w_batch)
                        if weight == 0.0:
                            continue
                    loss = gradients(gemm, parallel, single, penalty, code, batch_rows,
                                     Source(X, Y, order, X_to, Y_to), 0, m, cut, weight, P,
                                     settings.alpha, tiles, chunks, grads)
                else:
                    weight = ws.batch_weight[batch]
                    if weight == 0.0:
                        continue
                    loss = gradients(gemm, parallel, single, penalty, code, in_order, None,
                                     first, m, cut, weight, P, settings.alpha, tiles, chunks,
                                     grads)
                if not np.isfinite(loss):
                    epochs.losses[epochs.start + epoch] = loss
                    finished = epoch
                    break
                epoch_loss += loss * weight
                epoch_weight += weight
                S.t[0] += 1
                # one branch is left: the kind is a constant of the closure
                if kind == PLAIN:
                    plain_step(P, grads, S, lr, settings)
                elif kind == MOMENTUM:
                    momentum_step(P, grads, S, lr, settings)
                elif kind == ADAM_STEP:
                    adam_step(P, grads, S, lr, settings)
                else:
                    adam_folded_step(P, grads, S, lr, settings)
            if finished < epochs.count:
                break
            epochs.losses[epochs.start + epoch] = epoch_loss / epoch_weight
        if gemm is not None:
            if moments == 0:
                _copy_transposed(params.W1, None, None, ws.W1T, None, None)
            elif moments == 1:
                _copy_transposed(params.W1, first_m.W1, None, ws.W1T, ws.mW1T, None)
            else:
                _copy_transposed(params.W1, first_m.W1, second_v.W1, ws.W1T, ws.mW1T, ws.vW1T)
        return finished
    return train


def make_loss_and_gradients(code, gemm, parallel, single, penalty):
    """The compiled ``loss_and_gradients`` of one configuration."""

    @njit(**entry(JIT))
    def loss_and_gradients(data, params, alpha, weight, cut, ws, grads):
        """L over all rows of data, whose weights sum to ``weight``, at params;
        its gradients into grads. cut: the cut of a batch of all rows
        (``shallownet._numba.cut``); ws: a workspace for one batch of all
        rows, prepared (``plan.prepare``)."""
        wide_vectors()
        X, Y, w = data           # X and Y None on the explicit path
        n = w.shape[0]
        # row 0 as n - n, an int64 like the batches' first rows in train: a
        # literal 0 would compile the parallel chunks (batch._chunks_prange)
        # again rather than share train's
        if gemm is None:
            return gradients(gemm, parallel, single, penalty, code, Rows(ws.XT, ws.YT, w),
                             None, n - n, n, cut, weight, params, alpha, ws.tiles, ws.chunks,
                             grads)
        # the GEMM path's layout: W1 and its gradient transposed
        transpose_into(ws.W1T, params.W1)
        loss = gradients(gemm, parallel, single, penalty, code, Rows(X, Y, w), None, n - n,
                         n, cut, weight, Params(ws.W1T, params.b1, params.W2, params.b2), alpha,
                         ws.tiles, ws.chunks, Params(ws.grads.W1, grads.b1, grads.W2, grads.b2))
        transpose_into(grads.W1, ws.grads.W1)
        return loss
    return loss_and_gradients
