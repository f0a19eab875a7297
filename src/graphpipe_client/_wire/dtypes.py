"""The GraphPipe ``Type`` enum and its mapping to numpy dtypes."""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["SUPPORTED_TYPES_TEXT", "DataType", "dtype_of", "type_of_dtype"]


class DataType(enum.IntEnum):
    """The wire enum ``graphpipe.Type`` (a ``ubyte``).

    Example:
        >>> DataType.Float32.dtype
        dtype('float32')
    """

    Null = 0
    Uint8 = 1
    Int8 = 2
    Uint16 = 3
    Int16 = 4
    Uint32 = 5
    Int32 = 6
    Uint64 = 7
    Int64 = 8
    Float16 = 9
    Float32 = 10
    Float64 = 11
    String = 12

    @property
    def dtype(self) -> np.dtype[np.generic] | None:
        """The numpy dtype of this type: ``object`` for String, ``None`` for Null."""
        return dtype_of(self)


# Little-endian dtypes, indexed by the wire value. String and Null have no
# fixed-size dtype.
_WIRE_DTYPES: dict[int, np.dtype[np.generic]] = {
    DataType.Uint8: np.dtype("<u1"),
    DataType.Int8: np.dtype("<i1"),
    DataType.Uint16: np.dtype("<u2"),
    DataType.Int16: np.dtype("<i2"),
    DataType.Uint32: np.dtype("<u4"),
    DataType.Int32: np.dtype("<i4"),
    DataType.Uint64: np.dtype("<u8"),
    DataType.Int64: np.dtype("<i8"),
    DataType.Float16: np.dtype("<f2"),
    DataType.Float32: np.dtype("<f4"),
    DataType.Float64: np.dtype("<f8"),
}

# Keyed by (kind, itemsize): byte order does not matter for the type.
_TYPE_OF_KIND_SIZE: dict[tuple[str, int], DataType] = {
    (dt.kind, dt.itemsize): DataType(code) for code, dt in _WIRE_DTYPES.items()
}

SUPPORTED_TYPES_TEXT = (
    "uint8, int8, uint16, int16, uint32, int32, uint64, int64, float16, float32, "
    "float64, and strings (str or bytes)"
)


def wire_dtype(code: int) -> np.dtype[np.generic] | None:
    """The little-endian numpy dtype of a numeric wire type, else ``None``."""
    return _WIRE_DTYPES.get(code)


def dtype_of(code: int) -> np.dtype[np.generic] | None:
    """The numpy dtype a wire type decodes to: ``object`` for String, ``None`` for Null/unknown."""
    if code == DataType.String:
        return np.dtype(object)
    return _WIRE_DTYPES.get(code)


def type_of_dtype(dtype: np.dtype[np.generic]) -> DataType | None:
    """The wire type of a numeric numpy dtype (any byte order), else ``None``."""
    return _TYPE_OF_KIND_SIZE.get((dtype.kind, dtype.itemsize))
