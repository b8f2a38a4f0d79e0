"""Tests for the .amat reader and the binarized_mnist data set: small generated fixtures (plain and
gzipped), every kind of bad file, the binarisation rule, and the shared copy when it is present."""

from __future__ import annotations

import gzip
import hashlib
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_vae.config import DataConfig, load_config
from implicit_vae.data import DataError, amat, load_binarized_mnist_dir, load_dataset, read_amat

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "data" / "binarized_mnist"
# md5 of the decompressed text, from REAL / "README.md", and the pixel means it quotes.
REAL_MD5 = {"train": "db28b1a6ae0fe70cbd3da91acf46e477", "valid": "bf37822a04e94123630de6a7dfd9c9ef",
            "test": "14e41ae11040adba6ab8cb291eda0dd8"}
REAL_MEANS = {"train": 0.1306, "valid": 0.1311, "test": 0.1325}
REAL_ROWS = {"train": 50_000, "valid": 10_000, "test": 10_000}


def amat_text(rows: np.ndarray) -> bytes:
    """The standard layout: values separated by one space, one row a line."""
    return b"".join(b" ".join(b"%d" % v for v in row) + b"\n" for row in rows)


def write(path: Path, content: bytes | np.ndarray, gz: bool | None = None) -> Path:
    raw = amat_text(content) if isinstance(content, np.ndarray) else content
    gz = path.name.endswith(".gz") if gz is None else gz
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def bits(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, d), dtype=np.uint8)


def fake_binarized_mnist(directory: Path, sizes=(12, 5, 4), gz=(True, False, True)):
    """binarized_mnist_{train,valid,test}.amat[.gz] of random 784-pixel rows; returns the rows."""
    directory.mkdir(exist_ok=True)
    out = {}
    for (split, n), z, seed in zip(zip(("train", "valid", "test"), sizes), gz, range(3)):
        out[split] = bits(n, 784, seed)
        write(directory / f"binarized_mnist_{split}.amat{'.gz' if z else ''}", out[split])
    return out


def bm_cfg(path: Path | None, **kw) -> DataConfig:
    return DataConfig(name="binarized_mnist", path=None if path is None else str(path), **kw)


def raises(match: str, call, *args, **kw) -> str:
    with pytest.raises(DataError, match=match) as info:
        call(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# --- the reader ---------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_read_amat_round_trip(tmp_path, gz):
    rows = bits(7, 9)
    x = read_amat(write(tmp_path / ("a.amat.gz" if gz else "a.amat"), rows))
    assert x.dtype == np.uint8 and np.array_equal(x, rows)


def test_read_amat_tolerates_layout_variants(tmp_path):
    """Tabs, repeated and trailing spaces, CRLF, blank lines and no final newline are all fine."""
    text = b"0\t1  0 \r\n\n1 1 1\r\n   \n0 0 1"
    assert np.array_equal(read_amat(write(tmp_path / "v.amat", text)),
                          [[0, 1, 0], [1, 1, 1], [0, 0, 1]])


def test_gzip_detected_from_bytes_not_name(tmp_path):
    rows = bits(3, 4)
    assert np.array_equal(read_amat(write(tmp_path / "plain_name.amat", rows, gz=True)), rows)
    assert np.array_equal(read_amat(write(tmp_path / "gz_name.amat.gz", rows, gz=False)), rows)


def test_read_amat_across_blocks(tmp_path, monkeypatch):
    """Lines that straddle the read blocks parse the same, and errors keep their line numbers."""
    monkeypatch.setattr(amat, "_BLOCK", 5)
    rows = bits(40, 11)
    for name in ("b.amat", "b.amat.gz"):
        assert np.array_equal(read_amat(write(tmp_path / name, rows)), rows)
    text = bytearray(amat_text(rows))
    text[22 * 11 * 2 + 4] = ord("7")  # line 23, third value
    msg = raises("line 23: value '7' is not 0 or 1", read_amat, write(tmp_path / "c.amat",
                                                                       bytes(text)))
    assert "c.amat" in msg


@pytest.mark.parametrize("bad, shown", [
    (b"2", "'2'"), (b"0.5", "'0.5'"), (b"01", "'01'"), (b"-1", "'-1'"), (b"x", "'x'"),
    (b"1e0", "'1e0'"), (b"\xff\xfe", "'\ufffd\ufffd'"),
])
def test_values_other_than_0_1(tmp_path, bad, shown):
    path = write(tmp_path / "v.amat", b"0 1 0\n1 " + bad + b" 1\n")
    msg = raises(re.escape(f"{path}: line 2: value {shown} is not 0 or 1"), read_amat, path)
    assert "0/1 values separated by spaces" in msg


def test_inconsistent_row_lengths(tmp_path):
    path = write(tmp_path / "r.amat", b"0 1 0\n\n1 1 1\n1 1\n")
    raises(re.escape(f"{path}: line 4 has 2 values; expected 3 like line 1"), read_amat, path)
    raises(re.escape(f"{path}: line 1 has 3 values; expected 4"), read_amat, path, width=4)


@pytest.mark.parametrize("content, match", [
    (b"", "file is empty"),
    (b"\n \n\t\n", "no data rows"),
])
def test_empty_files(tmp_path, content, match):
    path = write(tmp_path / "e.amat", content)
    raises(re.escape(f"{path}: {match}"), read_amat, path)


def test_corrupt_gzip(tmp_path):
    whole = gzip.compress(amat_text(bits(200, 50)))
    truncated = write(tmp_path / "t.amat.gz", whole[: len(whole) // 2], gz=False)
    raises(re.escape(f"{truncated}: not a valid gzip file"), read_amat, truncated)
    garbage = write(tmp_path / "g.amat.gz", b"\x1f\x8b" + bytes(range(256)) * 4, gz=False)
    raises(re.escape(f"{garbage}: not a valid gzip file"), read_amat, garbage)


def test_missing_file(tmp_path):
    raises(re.escape(f"{tmp_path / 'no.amat'}: file not found"), read_amat, tmp_path / "no.amat")


# --- the binarized_mnist data set ---------------------------------------------------------------

def test_binarized_mnist_keeps_the_standard_split(tmp_path):
    rows = fake_binarized_mnist(tmp_path / "bm")
    ds = load_dataset(bm_cfg(tmp_path / "bm"), seed=3)
    for split, key in (("train", "train"), ("val", "valid"), ("test", "test")):
        x = getattr(ds, split)
        assert x.dtype == torch.float32 and x.shape == (len(rows[key]), 784)
        assert torch.equal(x, torch.from_numpy(rows[key]).float())  # same rows, same order
    assert ds.name == "binarized_mnist" and ds.image_shape == (28, 28)
    assert ds.event_shape == (1, 28, 28) and ds.data_dim == 784
    assert ds.binary and not ds.dynamic_binarize
    assert ds.train_labels is None and ds.val_labels is None and ds.test_labels is None
    assert "12/5/4" in ds.note and "50000/10000/10000" in ds.note  # not the standard sizes
    again = load_dataset(bm_cfg(tmp_path / "bm", val_fraction=0.4, test_fraction=0.3), seed=9)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)


def test_binarized_mnist_train_limit(tmp_path):
    rows = fake_binarized_mnist(tmp_path / "bm")
    ds = load_dataset(bm_cfg(tmp_path / "bm", mnist_train_limit=5), seed=0)
    assert torch.equal(ds.train, torch.from_numpy(rows["train"][:5]).float())
    assert len(ds.val) == 5 and len(ds.test) == 4


def test_binarize_default_is_auto_and_allowed(tmp_path):
    """Not setting data.binarize (auto) and none both keep the data; the config says auto."""
    fake_binarized_mnist(tmp_path / "bm")
    cfg = load_config(overrides=["data.name=binarized_mnist", f"data.path={tmp_path / 'bm'}"])
    assert cfg.data.binarize == "auto"
    auto = load_dataset(cfg.data, seed=0)
    none = load_dataset(bm_cfg(tmp_path / "bm", binarize="none"), seed=0)
    assert torch.equal(auto.train, none.train) and auto.binary and none.binary


@pytest.mark.parametrize("mode", ["dynamic", "fixed"])
def test_binarize_dynamic_or_fixed_is_refused(tmp_path, mode):
    fake_binarized_mnist(tmp_path / "bm")
    msg = raises(f"data.binarize: '{mode}' cannot apply to binarized_mnist", load_dataset,
                 bm_cfg(tmp_path / "bm", binarize=mode), seed=0)
    assert "auto or none" in msg
    # refused before any file is read: a missing directory gives the same message
    raises("data.binarize", load_dataset, bm_cfg(tmp_path / "nowhere", binarize=mode), seed=0)


def test_auto_is_dynamic_for_grey_levels():
    auto = load_dataset(DataConfig(name="digits"), seed=0)
    dynamic = load_dataset(DataConfig(name="digits", binarize="dynamic"), seed=0)
    assert auto.dynamic_binarize and torch.equal(auto.train, dynamic.train)
    assert torch.equal(auto.val, dynamic.val)


def test_binarized_mnist_missing_split_names_file_and_place(tmp_path):
    fake_binarized_mnist(tmp_path / "bm")
    (tmp_path / "bm" / "binarized_mnist_valid.amat").unlink()
    msg = raises("missing binarized_mnist_valid.amat or binarized_mnist_valid.amat.gz",
                 load_binarized_mnist_dir, tmp_path / "bm")
    assert str((tmp_path / "bm").resolve()) in msg and "train" not in msg.split("expected")[0]


def test_binarized_mnist_missing_directory_and_path(tmp_path):
    msg = raises(re.escape(f"{tmp_path / 'nowhere'}: directory not found"), load_dataset,
                 bm_cfg(tmp_path / "nowhere"), seed=0)
    assert "binarized_mnist_train.amat[.gz]" in msg
    raises("data.path: required for binarized_mnist", load_dataset, bm_cfg(None), seed=0)


def test_binarized_mnist_wrong_row_length(tmp_path):
    fake_binarized_mnist(tmp_path / "bm")
    path = write(tmp_path / "bm" / "binarized_mnist_test.amat.gz", bits(4, 783))
    msg = raises(re.escape(f"{path}: line 1 has 783 values; expected 784"), load_dataset,
                 bm_cfg(tmp_path / "bm"), seed=0)
    assert "28 x 28" in msg


def test_binarized_mnist_bad_value_and_bad_gzip(tmp_path):
    fake_binarized_mnist(tmp_path / "bm")
    valid = tmp_path / "bm" / "binarized_mnist_valid.amat"
    text = bytearray(valid.read_bytes())
    text[2 * 784 * 3] = ord("2")  # first value of line 4
    valid.write_bytes(bytes(text))
    raises(re.escape(f"{valid}: line 4: value '2' is not 0 or 1"), load_dataset,
           bm_cfg(tmp_path / "bm"), seed=0)
    train = tmp_path / "bm" / "binarized_mnist_train.amat.gz"
    train.write_bytes(train.read_bytes()[:-30])
    raises(re.escape(f"{train}: not a valid gzip file"), load_dataset, bm_cfg(tmp_path / "bm"),
           seed=0)


def test_unknown_name_lists_binarized_mnist():
    raises("expected one of .*binarized_mnist", load_dataset, DataConfig(name="cifar"), seed=0)


# --- .amat as a user file -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["u.amat", "u.AMAT", "u.amat.gz"])
def test_user_amat_file(tmp_path, name):
    rows = bits(30, 6)
    path = write(tmp_path / name, rows)
    ds = load_dataset(DataConfig(name="file", path=str(path), image_shape=[2, 3]), seed=0)
    assert ds.binary and not ds.dynamic_binarize and ds.image_shape == (2, 3)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 30 and ds.data_dim == 6
    got = torch.cat([ds.train, ds.val, ds.test])
    assert sorted(map(tuple, got.int().tolist())) == sorted(map(tuple, rows.tolist()))


def test_user_amat_file_errors(tmp_path):
    path = write(tmp_path / "u.amat", b"0 1\n1 0 1\n")
    raises(re.escape(f"{path}: line 2 has 3 values; expected 2 like line 1"), load_dataset,
           DataConfig(name="file", path=str(path)), seed=0)
    few = write(tmp_path / "few.amat", bits(3, 4))
    raises("at least 10 rows", load_dataset, DataConfig(name="file", path=str(few)), seed=0)
    msg = raises("unknown extension", load_dataset,
                 DataConfig(name="file", path=str(write(tmp_path / "u.dat", b"0 1\n"))), seed=0)
    assert ".amat" in msg


# --- the shared copy ----------------------------------------------------------------------------

def test_real_binarized_mnist():
    """Shapes, values, README pixel means, and the md5 of the text rebuilt from the parsed rows
    (so the parse is exact); the 50,000-row train file loads in well under 5 s."""
    files = {s: REAL / f"binarized_mnist_{s}.amat.gz" for s in REAL_ROWS}
    if not all(p.is_file() for p in files.values()):
        pytest.skip(f"shared binarized MNIST not present at {REAL.resolve()}")
    start = time.perf_counter()
    train = read_amat(files["train"], width=784)
    seconds = time.perf_counter() - start
    assert seconds < 10, f"reading the train split took {seconds:.1f} s"  # ~1 s; slack for load
    ds = load_dataset(bm_cfg(REAL), seed=0)
    assert ds.note is None and ds.binary and not ds.dynamic_binarize
    assert torch.equal(ds.train, torch.from_numpy(train).float())
    for split, x in (("train", ds.train), ("valid", ds.val), ("test", ds.test)):
        assert x.shape == (REAL_ROWS[split], 784)
        assert ((x == 0) | (x == 1)).all()
        assert round(float(x.mean()), 4) == REAL_MEANS[split]
        text = np.full((len(x), 2 * 784), ord(" "), dtype=np.uint8)
        text[:, 0::2] = x.numpy().astype(np.uint8) + ord("0")
        text[:, -1] = ord("\n")
        assert hashlib.md5(text.tobytes()).hexdigest() == REAL_MD5[split], split
