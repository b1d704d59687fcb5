"""The wire format between the checker (parent) and the worker process that runs the target.

A message is one JSON header followed by zero or more arrays in ``.npy`` format, each sent as its own frame
over a :class:`multiprocessing.connection.Connection` (length-prefixed byte frames, no pickle).  The header
refers to arrays by their position.  Neither side unpickles anything it receives: the parent must stay safe
even when the code in the worker is hostile, so arrays are read with ``allow_pickle=False`` and object arrays
are refused.
"""

from __future__ import annotations

import io
import json
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

#: The largest frame either side accepts (bytes); a bigger frame is treated as a protocol violation.
MAX_FRAME_BYTES = 1 << 31

#: dtypes that may cross the wire.  bfloat16 has no numpy dtype: it travels as float32 holding bf16 values.
WIRE_KINDS = frozenset("biuf")


class ProtocolError(RuntimeError):
    """The other side sent something that is not a well-formed message."""


def encode_array(a: np.ndarray) -> bytes:
    """Serialize a plain numeric array to ``.npy`` bytes (C order; strides are not preserved)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def decode_array(data: bytes) -> np.ndarray:
    """Read ``.npy`` bytes, refusing pickled (object) payloads."""
    try:
        a = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # a malformed frame from a hostile worker
        raise ProtocolError(f"malformed array frame: {exc}") from exc
    if a.dtype.kind not in WIRE_KINDS:
        raise ProtocolError(f"array of dtype {a.dtype} is not allowed on the wire")
    return a


def send_message(conn: Connection, header: dict[str, Any], arrays: list[np.ndarray] = ()) -> None:  # type: ignore[assignment]
    """Send ``header`` (JSON-serializable) and ``arrays``; the header gains ``"n_arrays"``."""
    body = dict(header)
    body["n_arrays"] = len(arrays)
    conn.send_bytes(json.dumps(body).encode())
    for a in arrays:
        conn.send_bytes(encode_array(a))


def recv_message(conn: Connection) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Receive one message; EOFError when the other side has gone, ProtocolError when malformed."""
    raw = conn.recv_bytes(MAX_FRAME_BYTES)
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed header frame: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("n_arrays"), int):
        raise ProtocolError("header is not a JSON object with an integer n_arrays")
    n = header["n_arrays"]
    if not 0 <= n <= 64:
        raise ProtocolError(f"implausible number of arrays: {n}")
    arrays = [decode_array(conn.recv_bytes(MAX_FRAME_BYTES)) for _ in range(n)]
    return header, arrays


class ArrayPacker:
    """Collects arrays for one message and hands out their indices for the header."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def add(self, a: np.ndarray) -> int:
        self.arrays.append(a)
        return len(self.arrays) - 1
