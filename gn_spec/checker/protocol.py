"""The wire format between the checker (parent) and the worker process that runs the target.

A message is one frame over a :class:`multiprocessing.connection.Connection` (length-prefixed bytes, no
pickle): a 4-byte big-endian length, a JSON header of that length, then the message's arrays' bytes back to
back, each C-ordered in the dtype and shape the header's ``"wire"`` list gives for it.  The header refers
to arrays by their position.  Neither side unpickles anything it receives: the parent must stay safe even
when the code in the worker is hostile, so a dtype is accepted only if it is a plain number (``WIRE_KINDS``;
no objects, no structured records) and the sizes must add up to the frame.

One frame a message, not one for the header and one for each array: each frame could wake the other process
once, and on a 2-core machine those wake-ups were a large part of a call's round trip.
"""

from __future__ import annotations

import json
import math
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

#: The largest frame either side accepts (bytes); a bigger frame is treated as a protocol violation.
MAX_FRAME_BYTES = 1 << 31

#: dtypes that may cross the wire.  bfloat16 has no numpy dtype: it travels as float32 holding bf16 values.
WIRE_KINDS = frozenset("biuf")

#: The most arrays one message may carry.
MAX_ARRAYS = 64


class ProtocolError(RuntimeError):
    """The other side sent something that is not a well-formed message."""


def encode_message(header: dict[str, Any], arrays: list[np.ndarray] = ()) -> bytes:  # type: ignore[assignment]
    """One frame: ``header`` (JSON-serializable; it gains ``"wire"``, the arrays' dtypes and shapes) and the
    arrays' bytes (C order; strides are not preserved)."""
    blobs = [np.ascontiguousarray(a) for a in arrays]
    for a in blobs:
        if a.dtype.kind not in WIRE_KINDS:
            raise TypeError(f"array of dtype {a.dtype} cannot cross the wire")
    body = dict(header)
    body["wire"] = [[a.dtype.str, list(a.shape)] for a in blobs]
    head = json.dumps(body).encode()
    return b"".join([len(head).to_bytes(4, "big"), head, *(a.tobytes() for a in blobs)])


def decode_message(frame: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The header and arrays of one frame; ProtocolError when it is malformed (a hostile worker's, say)."""
    view = memoryview(frame)
    length = int.from_bytes(view[:4], "big") if len(view) >= 4 else -1
    if not 0 <= length <= len(view) - 4:
        raise ProtocolError("malformed header frame: no header of the stated length")
    try:
        header = json.loads(bytes(view[4 : 4 + length]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"malformed header frame: {exc}") from exc
    meta = header.pop("wire", None) if isinstance(header, dict) else None
    if not isinstance(meta, list):
        raise ProtocolError("header is not a JSON object with a \"wire\" list")
    if len(meta) > MAX_ARRAYS:
        raise ProtocolError(f"implausible number of arrays: {len(meta)}")
    arrays, offset = [], 4 + length
    for entry in meta:
        dtype, shape = _array_meta(entry)
        count = math.prod(shape)
        if offset + count * dtype.itemsize > len(view):
            raise ProtocolError("the arrays' sizes exceed the frame")
        arrays.append(np.frombuffer(view, dtype, count, offset).reshape(shape).copy())
        offset += count * dtype.itemsize
    if offset != len(view):
        raise ProtocolError(f"{len(view) - offset} bytes after the last array")
    header["n_arrays"] = len(arrays)
    return header, arrays


def _array_meta(entry: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """An array's (dtype, shape) from its header entry, refusing all but plain numbers."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
        raise ProtocolError(f"malformed array entry {str(entry)[:80]}")
    try:
        dtype = np.dtype(entry[0])
    except TypeError as exc:
        raise ProtocolError(f"malformed array frame: dtype {entry[0][:40]!r}: {exc}") from exc
    if dtype.kind not in WIRE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"array of dtype {dtype} is not allowed on the wire")
    shape = entry[1]
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 32):
        raise ProtocolError(f"malformed array shape {str(shape)[:80]}")
    return dtype, tuple(shape)


def send_message(conn: Connection, header: dict[str, Any], arrays: list[np.ndarray] = ()) -> None:  # type: ignore[assignment]
    """Send ``header`` (JSON-serializable) and ``arrays`` as one frame."""
    conn.send_bytes(encode_message(header, arrays))


def recv_message(conn: Connection) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Receive one message (its header gains ``"n_arrays"``); EOFError when the other side has gone,
    ProtocolError when malformed."""
    return decode_message(conn.recv_bytes(MAX_FRAME_BYTES))


class ArrayPacker:
    """Collects arrays for one message and hands out their indices for the header."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def add(self, a: np.ndarray) -> int:
        self.arrays.append(a)
        return len(self.arrays) - 1
