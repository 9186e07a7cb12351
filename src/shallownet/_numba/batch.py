"""A batch's loss and gradients: its chunks (serially or in parallel), their
reduction in chunk order, and the L2 penalty.

``gemm`` (the GEMM tiles, else the explicit loops) and ``parallel`` are
compile-time flags, None or True (see ``jit``): the code behind the other
value is never compiled. ``cut`` is the batch's (n_chunks, chunk_rows,
tile_rows), from ``plan`` in Python (``shallownet._numba.cut``).
"""

from numba import prange

from .calls import kernel
from .explicit import tile_explicit
from .gemm import tile_gemm
from .intrinsics import flat, rows_view, smaller, wide_vectors, zero
from .jit import JIT, like
from .records import Params
from .rows import add_scaled, gather, sum_chunks, sum_squares


# The epoch loop, the batch, the chunk and the tiles' loops are each compiled
# on their own and call one another by symbol (``calls``): each is optimized
# once, and the chunk is shared by the serial and the parallel loop.

@kernel(JIT)
def chunk(gemm, code, c, wk, row0, m, cut, rows, source, params, scale, tiles, chunks,
          single, into):
    """Chunk c of the batch of m rows from row0, on worker wk's buffers: its
    loss into chunks.loss[c] and its gradients into its own accumulators,
    or with ``single`` (the batch is this one chunk) into ``into``, tile by
    tile. A shuffled batch's chunk first gathers its own rows
    (``source``), in parallel with the others; rows in order pass None."""
    wide_vectors()
    chunk_rows, tile_rows = cut[1], cut[2]
    begin = row0 + c * chunk_rows
    end = smaller(row0 + m, begin + chunk_rows)
    if source is not None:
        # into the path's layout: transposed for the explicit loops
        gather(source, begin, end, gemm)
    if single is None:
        grads = Params(chunks.W1[c], chunks.b1[c], chunks.W2[c], chunks.b2[c])
    else:
        grads = into
    if gemm is None:
        zero(flat(grads.W1))           # (the GEMM tiles write it first)
    zero(grads.b1)
    zero(flat(grads.W2))
    zero(grads.b2)
    loss = 0.0
    for r0 in range(begin, end, tile_rows):
        T = smaller(tile_rows, end - r0)
        if gemm is None:
            loss += tile_explicit(rows, r0, T, params, code, scale, r0 == begin, tiles, wk,
                                  grads)
        else:
            loss += tile_gemm(rows, r0, T, params, code, scale, r0 == begin, tiles, wk, grads)
    chunks.loss[c] = loss


@kernel(dict(JIT, parallel=True))
def _chunks_prange(gemm, code, n_workers, row0, m, cut, rows, source, params, scale, tiles,
                   chunks):
    # one prange iteration per worker; a worker owns its buffers and a
    # contiguous run of chunks (a static schedule)
    n_chunks = cut[0]
    for wk in prange(n_workers):
        for c in range(wk * n_chunks // n_workers, (wk + 1) * n_chunks // n_workers):
            chunk(gemm, code, c, wk, row0, m, cut, rows, source, params, scale, tiles, chunks,
                  None, None)


# one compiled batch for both entry points, train and loss_and_gradients
@kernel(JIT)
def gradients(gemm, parallel, single, penalty, code, rows, source, row0, m, cut, weight,
              params, alpha, tiles, chunks, grads):
    """L_B and its gradients (into grads) at params for the batch of the m
    rows from row0 of ``rows``, cut as ``cut`` says (``plan`` of m rows),
    whose weights sum to ``weight`` > 0; returns L_B. With ``single`` the
    batch is one chunk, which adds into grads itself; with ``penalty``
    None, alpha is 0. A shuffled batch's chunks
    first gather its rows there from ``source``; rows in order pass None.
    W1 and grads.W1 are in the path's layout: d x h on the explicit path,
    transposed (h x d) on the GEMM path. The same code serves every
    optimizer."""
    W1, _, W2, _ = params
    n_chunks = cut[0]
    # dL/dyhat_i = scale w_i (yhat_i - y_i), scale = 2 / W_B in the parameters' dtype
    scale = like(2.0 / weight, W1)
    # every chunk, on one thread or on as many workers as there are tile
    # buffers (the same sums either way: chunks are fixed by the row count
    # and reduced in chunk order)
    grad_W1, grad_b1, grad_W2, grad_b2 = grads
    if parallel is not None and n_chunks > 1:
        _chunks_prange(gemm, code, smaller(tiles.G.shape[0], n_chunks), row0, m, cut, rows,
                       source, params, scale, tiles, chunks)
    else:
        # one chunk runs without a parallel region: its start-up would
        # dominate a small batch. Worker c - c: an int64, as in the parallel
        # loop (a literal 0 would compile the chunk once more), and without
        # ``single`` the parallel loop's arguments: one chunk for both
        if single is None:
            for c in range(n_chunks):
                chunk(gemm, code, c, c - c, row0, m, cut, rows, source, params, scale, tiles,
                      chunks, None, None)
        else:
            # the batch is this one chunk (c = 0): it adds into grads itself
            c = n_chunks - 1
            chunk(gemm, code, c, c, row0, m, cut, rows, source, params, scale, tiles, chunks,
                  single, grads)
    if single is None:
        # reduce in chunk order: the same sums whatever the number of workers
        # (on flat views: a chunk's accumulators are a row)
        sum_chunks(flat(grad_W1), rows_view(flat(chunks.W1), chunks.W1.shape[0], grad_W1.size),
                   n_chunks)
        sum_chunks(grad_b1, chunks.b1, n_chunks)
        sum_chunks(flat(grad_W2), rows_view(flat(chunks.W2), chunks.W2.shape[0], grad_W2.size),
                   n_chunks)
        sum_chunks(grad_b2, chunks.b2, n_chunks)
    loss = chunks.loss[0]
    for c in range(1, n_chunks):
        loss += chunks.loss[c]
    if penalty is not None and alpha != 0.0:
        # the L2 penalty (alpha / W_B) (|W1|^2 + |W2|^2) and its gradients
        loss += alpha * (sum_squares(W1) + sum_squares(W2))
        s = like(2.0 * alpha / weight, W1)
        add_scaled(grad_W1, s, W1)
        add_scaled(grad_W2, s, W2)
    return loss / weight
