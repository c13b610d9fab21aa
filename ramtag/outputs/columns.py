"""Arrow columns made from Python values through their buffers, without ``pa.array``.

pyarrow's ``pa.array`` asks, on its first call, whether pandas is installed by importing it (to
tell pandas objects apart), which costs every run 0.4-0.6 s when pandas is there, as it is beside
ramtag. The outputs need only a few plain column types, and Arrow's layout for each is simple: a
validity bitmap (absent when no value is null), then offsets and values, or fixed-width values.
``pa.Array.from_buffers`` assembles them from NumPy arrays without a conversion step that could
import anything. Each builder returns what ``pa.array(values, type)`` returns for its type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_INDEX = np.iinfo(np.int32).max  # offsets of string and list columns are 32-bit


def _validity(present: Sequence[bool]) -> pa.Buffer | None:
    """Arrow's validity bitmap (bit i set: value i is there, least significant bit first), or none
    when every value is there."""
    mask = np.asarray(present, dtype=bool)
    if mask.all():
        return None
    return pa.py_buffer(np.packbits(mask, bitorder="little"))


def _offsets(lengths: Sequence[int], what: str) -> pa.Buffer:
    ends = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=ends[1:])
    if ends[-1] > _INDEX:
        raise ValueError(f"{what}: {ends[-1]} values in one batch, more than 32-bit offsets can hold")
    return pa.py_buffer(ends.astype(np.int32))


def integers(values: Sequence[int | None], type: pa.DataType) -> pa.Array:
    """A column of ``type`` (a fixed-width integer or timestamp type); ``None`` is null."""
    dtype = np.dtype(f"int{type.bit_width}")
    data = np.fromiter((0 if value is None else value for value in values), dtype=dtype, count=len(values))
    present = _validity([value is not None for value in values])
    return pa.Array.from_buffers(type, len(values), [present, pa.py_buffer(data)])


def booleans(values: Sequence[bool]) -> pa.Array:
    """A bool column (no nulls)."""
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def strings(values: Sequence[str | None]) -> pa.Array:
    """A UTF-8 string column; ``None`` is null."""
    encoded = [b"" if value is None else value.encode("utf-8") for value in values]
    offsets = _offsets([len(text) for text in encoded], "string bytes")
    present = _validity([value is not None for value in values])
    return pa.Array.from_buffers(pa.string(), len(values), [present, offsets, pa.py_buffer(b"".join(encoded))])


def string_lists(values: Sequence[Sequence[str]]) -> pa.Array:
    """A list-of-strings column (no nulls: an empty list where there is nothing)."""
    items = strings([text for row in values for text in row])
    offsets = _offsets([len(row) for row in values], "list items")
    return pa.Array.from_buffers(pa.list_(pa.string()), len(values), [None, offsets], children=[items])


def float_lists(values: Sequence[Sequence[float]]) -> pa.Array:
    """A list-of-float32 column (no nulls)."""
    flat = np.fromiter((value for row in values for value in row), dtype=np.float32)
    items = pa.Array.from_buffers(pa.float32(), len(flat), [None, pa.py_buffer(flat)])
    offsets = _offsets([len(row) for row in values], "list items")
    return pa.Array.from_buffers(pa.list_(pa.float32()), len(values), [None, offsets], children=[items])


def float_rows(values: np.ndarray, present: Sequence[bool]) -> pa.Array:
    """A fixed-size-list-of-float32 column from a (rows, size) array; rows not ``present`` are null."""
    rows, size = values.shape
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    items = pa.Array.from_buffers(pa.float32(), len(flat), [None, pa.py_buffer(flat)])
    return pa.Array.from_buffers(pa.list_(pa.float32(), size), rows, [_validity(present)], children=[items])
