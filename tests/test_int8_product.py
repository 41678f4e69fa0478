"""Products by a fixed matrix in 8-bit integers (onnxruntime), against float64 products."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

import numpy as np
import pytest

from pipeline.int8_product import WEIGHT_LEVELS, Int8Product, Uint8Product, model_bytes


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((256, 300)).astype(np.float32) * 0.05
    matrix[:, 7] *= 40.0  # a column far larger than the rest keeps its own scale
    return matrix


def test_products_match_float_products(weights: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((120, 256)).astype(np.float32)
    x[:, ::9] *= 6.0  # uneven features, as after a ReLU and a residual
    got = Int8Product(weights)(x)
    exact = x.astype(np.float64) @ weights.astype(np.float64)
    assert got.shape == (120, 300) and got.dtype == np.float32
    cosines = row_cosines(got, exact)
    # One scale for the whole left operand: the rows with the smallest values lose most.
    assert cosines.min() > 0.98 and np.median(cosines) > 0.9995
    # Each column is scaled on its own: with one scale for the matrix, the large column
    # would leave the others a few levels each.
    small = np.delete(np.arange(300), 7)
    error = np.linalg.norm(got[:, small] - exact[:, small]) / np.linalg.norm(exact[:, small])
    assert error < 0.03
    assert np.abs(got - exact).max() < 0.05 * np.abs(exact).max()


def test_the_same_matrix_always_gives_the_same_product(weights: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    product = Int8Product(weights)
    first = product(x)
    product(rng.standard_normal((500, 256)).astype(np.float32))
    assert np.array_equal(product(x), first)
    assert np.array_equal(Int8Product(weights)(x), first)
    # ... whatever the kernel's thread count.
    assert np.array_equal(Int8Product(weights, threads=2)(x), first)
    # Calls from several threads at once give the same.
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(product(x))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(np.array_equal(r, first) for r in results)


def test_any_left_operand_layout_is_accepted(weights: np.ndarray) -> None:
    rng = np.random.default_rng(8)
    wide = rng.standard_normal((40, 512)).astype(np.float64)
    view = wide[:, 100:356]  # not contiguous, float64
    product = Int8Product(weights)
    assert np.array_equal(product(view), product(np.ascontiguousarray(view, dtype=np.float32)))
    assert product(np.zeros((0, 256), dtype=np.float32)).shape == (0, 300)


def test_zero_inputs_and_zero_columns() -> None:
    matrix = np.ones((16, 4), dtype=np.float32)
    matrix[:, 2] = 0.0
    product = Int8Product(matrix)
    assert np.array_equal(product(np.zeros((3, 16), dtype=np.float32)), np.zeros((3, 4), dtype=np.float32))
    got = product(np.full((2, 16), 0.5, dtype=np.float32))
    assert np.allclose(got[:, [0, 1, 3]], 8.0, rtol=0.02)
    assert np.array_equal(got[:, 2], [0.0, 0.0])


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones(4, dtype=np.float32), "2-D"),
        (np.ones((0, 4), dtype=np.float32), "non-empty"),
        (np.array([[1.0, np.nan]], dtype=np.float32), "finite"),
    ],
)
def test_bad_weights_are_refused(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Int8Product(matrix)


def test_a_wrong_shape_is_refused(weights: np.ndarray) -> None:
    with pytest.raises(ValueError, match="cannot multiply"):
        Int8Product(weights)(np.ones((3, 255), dtype=np.float32))


def test_weights_use_seven_bits(weights: np.ndarray) -> None:
    # u8 x s8 pair sums must not saturate 16 bits on x86 CPUs without VNNI: |w| <= 63.
    product = Int8Product(weights)
    assert product.weights.dtype == np.int8
    assert np.abs(product.weights).max() == WEIGHT_LEVELS == 63
    assert 2 * 255 * WEIGHT_LEVELS <= 32767
    # Each column's largest weight maps to +-63, and back to within half a level.
    assert np.array_equal(np.abs(product.weights).max(axis=0), np.full(300, 63))
    assert np.abs(product.weights * product.scale - weights).max() <= product.scale.max() / 2 + 1e-7
    assert product.weights.tobytes() in model_bytes(product.weights, product.scale)


@pytest.mark.parametrize(
    ("quantised", "scale", "message"),
    [
        (np.ones((4, 3), dtype=np.int16), np.ones(3, dtype=np.float32), "int8"),
        (np.ones((4, 3), dtype=np.int8), np.ones(4, dtype=np.float32), "one scale per column"),
    ],
)
def test_a_malformed_model_is_refused(quantised: np.ndarray, scale: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_bytes(quantised, scale)


def _product_in_child(product: Int8Product, x: np.ndarray, queue: Any) -> None:
    queue.put((os.getpid(), product(x), product._pid))


def test_a_forked_process_makes_its_own_session(weights: np.ndarray) -> None:
    # The prepare workers are forked from a process that loaded the encoder; onnxruntime
    # does not support a session used across a fork.
    rng = np.random.default_rng(10)
    x = rng.standard_normal((30, 256)).astype(np.float32)
    product = Int8Product(weights)
    expected = product(x)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_child, args=(product, x, queue))
    child.start()
    pid, got, session_pid = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert pid != os.getpid() and session_pid == pid  # the child made a session of its own
    assert np.array_equal(got, expected)
    assert product._pid == os.getpid()  # the parent's is untouched


# ---------------------------------------------------------------------------- exact left operands


def test_uint8_products_are_exact_integer_products(weights: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    a = rng.integers(0, 256, (90, 256)).astype(np.uint8)
    for zero_point in (0, 128):
        product = Uint8Product(weights, zero_point=zero_point)
        got = product(a)
        integers = (a.astype(np.int64) - zero_point) @ product.weights.astype(np.int64)
        expected = integers * product.scale.astype(np.float64)
        assert got.shape == (90, 300) and got.dtype == np.float32
        # The integers are exact; only the final scaling rounds (to float32).
        assert np.abs(got - expected).max() <= 1e-6 * np.abs(expected).max()
        assert np.abs(product.weights).max() <= WEIGHT_LEVELS


def test_a_uint8_products_row_depends_on_that_row_alone(weights: np.ndarray) -> None:
    rng = np.random.default_rng(12)
    a = rng.integers(0, 256, (200, 256)).astype(np.uint8)
    product = Uint8Product(weights, zero_point=128)
    whole = product(a)
    for rows in (slice(0, 1), slice(13, 14), slice(5, 77), slice(None, None, -1), slice(1, None, 3)):
        assert np.array_equal(product(a[rows]), whole[rows])
    assert np.array_equal(Uint8Product(weights, threads=2, zero_point=128)(a), whole)


def test_uint8_products_refuse_what_they_cannot_read(weights: np.ndarray) -> None:
    product = Uint8Product(weights)
    with pytest.raises(ValueError, match="uint8"):
        product(np.zeros((3, 256), dtype=np.float32))
    with pytest.raises(ValueError, match="cannot multiply"):
        product(np.zeros((3, 255), dtype=np.uint8))
    assert product(np.zeros((0, 256), dtype=np.uint8)).shape == (0, 300)
    with pytest.raises(ValueError, match="zero point"):
        Uint8Product(weights, zero_point=256)
