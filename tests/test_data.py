"""Tests for implicit_vae.data: every data set name, seeded splits, binarisation, IDX, bad input."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_vae.config import DataConfig
from implicit_vae.data import (
    MNIST_FILES,
    DataError,
    binarize,
    load_dataset,
    load_mnist_dir,
    read_idx,
    split_indices,
)

torch.set_num_threads(1)
REAL_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
          np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """Serialise ``a`` (uint8 or big-endian dtype) as IDX: magic, big-endian dims, data."""
    magic = bytes([0, 0, _CODES[a.dtype], a.ndim])
    return magic + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(a)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist(
    directory: Path, n_train: int | None, n_test: int, gz: bool = True, side: int = 4
) -> None:
    """Write random side x side 'MNIST' IDX files; n_train None leaves out the train files."""
    rng = np.random.default_rng(0)
    sizes = ([] if n_train is None else [("train", n_train)]) + [("t10k", n_test)]
    for prefix, n in sizes:
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)


def file_cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(name="file", path=str(path), **kw)


def raises(match: str, cfg: DataConfig) -> str:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(cfg, seed=0)
    assert "\n" not in str(info.value)
    return str(info.value)


# --- names ---------------------------------------------------------------------------------

def test_toy4_one_hot_and_sizes():
    ds = load_dataset(DataConfig(name="toy4", toy4_size=400), seed=1)
    assert ds.train.shape == (400, 4) and ds.val.shape == (40, 4) and ds.test.shape == (40, 4)
    assert ds.binary and not ds.dynamic_binarize and ds.data_dim == 4
    assert torch.equal(ds.train.sum(1), torch.ones(400))
    assert torch.equal(ds.train.argmax(1), ds.train_labels)
    assert set(ds.train_labels.tolist()) == {0, 1, 2, 3}
    again = load_dataset(DataConfig(name="toy4", toy4_size=400), seed=1)
    assert torch.equal(ds.train, again.train)


def test_digits_scaling_shapes_labels():
    ds = load_dataset(DataConfig(name="digits", binarize="none"), seed=0)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
    assert ds.data_dim == 64 and ds.image_shape == (8, 8) and not ds.binary
    assert len(ds.val) == len(ds.test) == 180
    full = torch.cat([ds.train, ds.val, ds.test])
    assert full.dtype == torch.float32 and full.min() == 0 and full.max() == 1
    labels = torch.cat([ds.train_labels, ds.val_labels, ds.test_labels])
    assert set(labels.tolist()) == set(range(10))


def test_seeded_split_deterministic_and_disjoint():
    parts = split_indices(100, 0.1, 0.2, torch.Generator().manual_seed(3))
    same = split_indices(100, 0.1, 0.2, torch.Generator().manual_seed(3))
    other = split_indices(100, 0.1, 0.2, torch.Generator().manual_seed(4))
    assert [len(p) for p in parts] == [70, 10, 20]
    assert sorted(torch.cat(parts).tolist()) == list(range(100))
    assert all(torch.equal(a, b) for a, b in zip(parts, same, strict=True))
    assert not torch.equal(parts[0], other[0])
    assert [len(p) for p in split_indices(10, 0.01, 0.0, torch.Generator())] == [9, 1, 0]


def test_binarise_modes_digits():
    dyn = load_dataset(DataConfig(binarize="dynamic"), seed=0)
    fixed = load_dataset(DataConfig(binarize="fixed"), seed=0)
    none = load_dataset(DataConfig(binarize="none"), seed=0)
    is01 = lambda t: bool(((t == 0) | (t == 1)).all())  # noqa: E731
    assert dyn.binary and dyn.dynamic_binarize and not is01(dyn.train)
    assert is01(dyn.val) and is01(dyn.test)
    assert torch.equal(dyn.train, none.train)  # train kept as intensities
    assert fixed.binary and not fixed.dynamic_binarize
    assert all(is01(t) for t in (fixed.train, fixed.val, fixed.test))
    assert not none.binary and not none.dynamic_binarize and not is01(none.val)
    # evaluation binarisation is fixed by the seed
    assert torch.equal(dyn.val, load_dataset(DataConfig(binarize="dynamic"), seed=0).val)


def test_binarize_is_bernoulli():
    p = torch.full((20000,), 0.3)
    x = binarize(p, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    assert abs(x.mean().item() - 0.3) < 0.02


# --- IDX and MNIST -------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", ">f4", ">i4"])
def test_idx_round_trip(tmp_path, gz, dtype):
    a = np.arange(2 * 3 * 5).reshape(2, 3, 5).astype(dtype)
    back = read_idx(write_idx(tmp_path / "a.idx", a, gz))
    assert back.shape == (2, 3, 5) and np.array_equal(back, a)


def test_mnist_full_four_file_layout(tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=20, gz=False)
    ds = load_dataset(DataConfig(name="mnist", path=str(tmp_path), binarize="none"), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    assert ds.image_shape == (4, 4) and ds.data_dim == 16 and ds.note is None
    assert ds.train.max() <= 1 and ds.train.min() >= 0 and ds.test_labels.dtype == torch.int64
    pool_x, *_ = load_mnist_dir(tmp_path, train_limit=30)
    assert len(pool_x) == 30
    limited = DataConfig(name="mnist", path=str(tmp_path), mnist_train_limit=30)
    assert len(load_dataset(limited, seed=0).train) == 27


def test_mnist_t10k_only_fallback(tmp_path):
    fake_mnist(tmp_path, n_train=None, n_test=100)
    ds = load_dataset(DataConfig(name="mnist", path=str(tmp_path)), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (81, 9, 10)
    assert "fallback" in ds.note and ds.dynamic_binarize
    assert torch.equal(ds.test_labels, torch.arange(90, 100) % 10)  # the last tenth


def test_real_t10k_files():
    if not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST t10k files not present at {REAL_MNIST.resolve()}")
    images = read_idx(REAL_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(REAL_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    ds = load_dataset(DataConfig(name="mnist", path=str(REAL_MNIST), binarize="none"), seed=0)
    assert len(ds.train) + len(ds.val) == 9000 and len(ds.test) == 1000
    assert ds.image_shape == (28, 28) and ds.data_dim == 784 and ds.note
    assert ds.train.max() == 1.0 and ds.train.mean() < 0.5


def test_mnist_missing_directory_lists_expected_files(tmp_path):
    msg = raises("no MNIST files", DataConfig(name="mnist", path=str(tmp_path / "nope")))
    assert "nope" in msg and all(f in msg for f in MNIST_FILES)


def test_mnist_missing_one_train_file(tmp_path):
    fake_mnist(tmp_path, n_train=20, n_test=20, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    raises("missing train-labels-idx1-ubyte", DataConfig(name="mnist", path=str(tmp_path)))


def test_truncated_idx(tmp_path):
    raw = idx_bytes(np.zeros((5, 4, 4), np.uint8))
    (tmp_path / "t.idx").write_bytes(raw[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "t.gz")


def test_idx_wrong_magic(tmp_path):
    (tmp_path / "m.idx").write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="not an IDX file.*0x12340801"):
        read_idx(tmp_path / "m.idx")


def test_mislabelled_and_mismatched_mnist_files(tmp_path):
    fake_mnist(tmp_path, n_train=None, n_test=20, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(labels, np.zeros((20, 4, 4), np.uint8))  # an images file in the labels slot
    raises("expected a labels file", DataConfig(name="mnist", path=str(tmp_path)))
    write_idx(labels, np.zeros(19, np.uint8))
    raises("20 images but .* 19 labels", DataConfig(name="mnist", path=str(tmp_path)))


# --- user files ----------------------------------------------------------------------------

def test_file_npz_with_labels_and_npy_images(tmp_path):
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(50), other=np.zeros(3))
    ds = load_dataset(file_cfg(tmp_path / "d.npz", binarize="none"), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 5, 5) and not ds.binary
    assert sorted(torch.cat([ds.train_labels, ds.val_labels, ds.test_labels]).tolist()) == \
        list(range(50))
    np.save(tmp_path / "i.npy", x.reshape(50, 2, 3))
    ds = load_dataset(file_cfg(tmp_path / "i.npy"), seed=0)
    assert ds.image_shape == (2, 3) and ds.data_dim == 6 and ds.dynamic_binarize
    assert ds.train_labels is None


def test_file_csv_header_and_binary_detection(tmp_path):
    rows = "\n".join(f"{i % 2},{(i + 1) % 2},1" for i in range(20))
    (tmp_path / "b.csv").write_text("a,b,c\n" + rows + "\n")
    ds = load_dataset(file_cfg(tmp_path / "b.csv", binarize="none"), seed=0)
    assert ds.data_dim == 3 and len(ds.train) == 16 and ds.binary and not ds.dynamic_binarize


def test_file_gaussian_data_allowed_without_binarisation(tmp_path):
    np.save(tmp_path / "g.npy", np.random.default_rng(0).normal(size=(30, 3)))
    ds = load_dataset(file_cfg(tmp_path / "g.npy", binarize="none"), seed=0)
    assert not ds.binary and ds.train.min() < 0


@pytest.mark.parametrize("name, content, match", [
    ("missing.npy", None, "file not found"),
    ("empty.npy", b"", "empty"),
    ("empty.csv", b"", "empty"),
    ("junk.npy", b"hello world", "not a valid .npy file"),
    ("d.dat", b"1,2\n", r"unknown extension '\.dat'; expected one of \.npz, \.npy, \.csv"),
    ("bad.csv", b"a,b\n" + b"1,2\n" * 5 + b"3,oops\n" + b"1,2\n" * 5, r"row 7, column 2: 'oops'"),
    ("short.csv", b"1,2\n" * 5, "at least 10 rows"),
])
def test_bad_files(tmp_path, name, content, match):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    assert name in raises(match, file_cfg(tmp_path / name))


def test_bad_array_contents(tmp_path):
    np.save(tmp_path / "one_d.npy", np.zeros(20))
    raises(r"shape \(20,\); expected 2-D", file_cfg(tmp_path / "one_d.npy"))
    x = np.full((20, 3), 0.5)
    x[4, 1], x[7, 2] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", x)
    raises("2 NaN/inf values, first at row 4, column 1", file_cfg(tmp_path / "nan.npy"))
    np.savez(tmp_path / "many.npz", a=np.zeros((20, 2)), b=np.zeros((20, 2)))
    raises(r"arrays \['a', 'b'\]; expected one named 'x'", file_cfg(tmp_path / "many.npz"))
    np.save(tmp_path / "wide.npy", np.linspace(-2, 3, 60).reshape(20, 3))
    msg = raises(r"not in \[0, 1\]", file_cfg(tmp_path / "wide.npy", binarize="fixed"))
    assert "data.binarize=none" in msg and "gaussian" in msg
