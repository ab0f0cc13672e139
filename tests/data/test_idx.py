import gzip
import os

import numpy as np
import pytest

from cnnjax.data.idx import IdxFormatError, read_idx, write_idx


def _hand_made_idx(path):
    # magic: 0, 0, type 0x08 (uint8), 3 dims; sizes 2, 2, 3 big-endian; then 12 bytes of data
    payload = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    payload += bytes(range(12))
    with open(path, "wb") as f:
        f.write(payload)
    return payload


def test_reads_hand_made_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    _hand_made_idx(path)
    array = read_idx(path)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, np.arange(12, dtype=np.uint8).reshape(2, 2, 3))


def test_reads_gzip_and_big_endian_types(tmp_path):
    path = tmp_path / "labels.gz"
    payload = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + np.array([1, -2, 70000], ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(payload)
    np.testing.assert_array_equal(read_idx(path), [1, -2, 70000])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = os.path.join(tmp_path, "a" + suffix)
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "cut-idx3-ubyte"
    payload = _hand_made_idx(path)
    with open(path, "wb") as f:
        f.write(payload[:-1])
    with pytest.raises(IdxFormatError, match=r"cut-idx3-ubyte.*truncated"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    write_idx(path, np.zeros((100, 28, 28), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxFormatError, match="cut.gz"):
        read_idx(path)


def test_not_idx_names_the_file(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"hello world, not idx")
    with pytest.raises(IdxFormatError, match="junk.bin.*not an IDX"):
        read_idx(path)


def test_unknown_type_code(tmp_path):
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(IdxFormatError, match="type code 0x07"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_real_fashion_mnist_headers(fashion_mnist_dir):
    labels = read_idx(os.path.join(fashion_mnist_dir, "t10k-labels-idx1-ubyte.gz"))
    assert labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).tolist() == [1000] * 10
