"""Reader for the IDX file format of the MNIST family (plain or gzip-compressed).

Layout: two zero bytes, a type code, the number of dimensions ``n``; ``n`` big-endian uint32 sizes;
then the data, big-endian, C order.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """An IDX file that is truncated, corrupt or not IDX at all."""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({e})") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array of its declared type and shape."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"IDX file {path} does not exist")
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IdxFormatError(f"{path}: not an IDX file (the first two bytes must be zero)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise IdxFormatError(
            f"{path}: unknown IDX type code 0x{type_code:02x}; allowed: "
            + ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} bytes, {header} needed for {ndim} dims)")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxFormatError(
            f"{path}: truncated or corrupt: shape {shape} of {dtype.name} needs {expected} data bytes, "
            f"found {len(data) - header}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"array.dtype={array.dtype} has no IDX type; allowed: {', '.join(sorted({d.name for d in codes}))}")
    code = codes[native]
    payload = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload += array.astype(IDX_TYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
