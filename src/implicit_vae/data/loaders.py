"""Data sets held in memory: AVB's toy4, sklearn digits, MNIST from IDX files, statically
binarised MNIST from .amat files, and user files.

Every problem with user data raises :class:`DataError` with one line naming the file and what was
expected; nothing is ever downloaded. Image intensities are scaled to [0, 1]; binarisation follows
``DataOptions.binarize``: ``dynamic`` keeps train intensities (the trainer resamples Bernoulli(x)
per batch) and binarises val/test once, ``fixed`` binarises every split once, ``none`` keeps
intensities, and ``auto`` (the default) does what the data need: ``dynamic`` for grey levels,
nothing for data that are already 0/1 (toy4, binarized_mnist, a 0/1 file). binarized_mnist *is* a
fixed binarisation, so asking for ``dynamic`` or ``fixed`` there is an error, not a resampling.
All randomness comes from ``torch.Generator`` objects seeded from ``seed``.
"""

from __future__ import annotations

import csv
import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .amat import is_amat, read_amat
from .errors import DataError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
BINARIZED_MNIST_SPLITS = ("train", "valid", "test")  # file binarized_mnist_{split}.amat[.gz]
BINARIZED_MNIST_SIZES = (50_000, 10_000, 10_000)  # the standard split (Larochelle & Murray, 2011)
FILE_EXTENSIONS = (".npz", ".npy", ".csv", ".amat")  # .amat may also be .amat.gz
MIN_EXAMPLES = 10
# IDX type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataOptions(Protocol):
    """What the loaders read (``DataOptions`` has these fields; any object with them will do)."""

    name: str
    path: str | None
    binarize: str
    val_fraction: float
    test_fraction: float
    toy4_size: int
    mnist_train_limit: int | None
    image_shape: list[int] | None


@dataclass
class Dataset:
    """Split data set; each split is (N_split, D) float32, labels (N_split,) int64 or None."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None
    val_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    image_shape: tuple[int, int] | None  # (H, W) when rows are flattened images
    binary: bool  # the model sees {0,1} data (dynamic binarisation counts as binary)
    dynamic_binarize: bool  # the trainer must resample Bernoulli(train batch) each step
    name: str
    note: str | None = None  # e.g. which MNIST fallback split was used
    channels: int = 1  # colour channels of an image row (its event shape is (channels, H, W))

    @property
    def data_dim(self) -> int:
        return int(self.train.shape[1])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one example as the networks see it: (C, H, W) for images, else (D,)."""
        if self.image_shape is None:
            return (self.data_dim,)
        return (self.channels, *self.image_shape)


def binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample Bernoulli(x) elementwise for x in [0, 1]; returns float32 of x's shape."""
    return torch.bernoulli(x.float(), generator=generator)


def _mode(cfg: DataOptions) -> str:
    """The binarisation of grey-level data: ``auto`` is ``dynamic``."""
    return "dynamic" if cfg.binarize == "auto" else cfg.binarize


def _generator(seed: int, stream: int) -> torch.Generator:
    """Independent generator per purpose (split, binarisation, ...) derived from one seed."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _holdout_size(fraction: float, n: int) -> int:
    return max(1, round(fraction * n)) if fraction > 0 else 0


def split_indices(n: int, val_fraction: float, test_fraction: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, val, test) index tensors covering range(n)."""
    n_val, n_test = _holdout_size(val_fraction, n), _holdout_size(test_fraction, n)
    if n - n_val - n_test < 1:
        raise DataError(f"{n} examples leave no training data after val/test splits; "
                        "lower data.val_fraction/data.test_fraction or add data")
    perm = torch.randperm(n, generator=generator)
    return perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test]


def _finish(name: str, xs: tuple, ys: tuple, image_shape: tuple[int, int] | None, mode: str,
            seed: int, note: str | None = None) -> Dataset:
    """Apply the binarisation mode to intensity splits xs = (train, val, test)."""
    xs = tuple(x.float() for x in xs)
    gen = _generator(seed, 1)  # evaluation splits are binarised once, reproducibly
    if mode == "fixed":
        xs = tuple(binarize(x, gen) for x in xs)
    elif mode == "dynamic":
        xs = (xs[0], binarize(xs[1], gen), binarize(xs[2], gen))
    return Dataset(*xs, *ys, image_shape=image_shape, binary=mode != "none",
                   dynamic_binarize=mode == "dynamic", name=name, note=note)


def _toy4(cfg: DataOptions, seed: int) -> Dataset:
    """AVB's toy: x is one of the four one-hot vectors in R^4, drawn uniformly."""
    n = cfg.toy4_size
    sizes = [n, _holdout_size(cfg.val_fraction, n), _holdout_size(cfg.test_fraction, n)]
    labels = torch.randint(0, 4, (sum(sizes),), generator=_generator(seed, 0))
    ys = torch.split(labels, sizes)
    xs = tuple(torch.nn.functional.one_hot(y, 4).float() for y in ys)
    return Dataset(*xs, *ys, image_shape=None, binary=True, dynamic_binarize=False, name="toy4")


def _split_and_finish(name: str, x: torch.Tensor, y: torch.Tensor | None, cfg: DataOptions,
                      seed: int, image_shape: tuple[int, int] | None, mode: str) -> Dataset:
    idx = split_indices(len(x), cfg.val_fraction, cfg.test_fraction, _generator(seed, 0))
    ys = tuple(None if y is None else y[i] for i in idx)
    return _finish(name, tuple(x[i] for i in idx), ys, image_shape, mode, seed)


def _digits(cfg: DataOptions, seed: int) -> Dataset:
    """sklearn's 1797 8x8 digits (bundled, no download), 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return _split_and_finish("digits", x, y, cfg, seed, (8, 8), _mode(cfg))


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the extension says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: not a valid gzip file ({err}); it may be truncated") from None
    if not raw:
        raise DataError(f"{path}: file is empty")
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), validating magic number, type code, dims and size.

    Returns:
        Array of the header's shape, e.g. (N, 28, 28) uint8 images or (N,) uint8 labels.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected "
                        "0x0000, a type code 08/09/0B/0C/0D/0E and a nonzero dimension count)")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, expected {header}+)")
    dims = struct.unpack(f">{raw[3]}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes but the header (dims {dims}) implies "
                        f"{expected}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(directory: Path, base: str) -> Path | None:
    return next((p for p in (directory / base, directory / f"{base}.gz") if p.is_file()), None)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file (N, H, W) and a labels file (N,) in 0..9."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected an images file (3-D IDX, N x H x W), found "
                        f"shape {images.shape}; is it a labels file?")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a labels file (1-D IDX), found shape "
                        f"{labels.shape}; is it an images file?")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has "
                        f"{len(labels)} labels; expected matching counts")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{labels_path}: labels range {labels.min()}..{labels.max()}; "
                        "expected 0..9")
    return images, labels


def load_mnist_dir(directory: str | Path, train_limit: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Read MNIST IDX files from ``directory``.

    With all four files the train files give the train pool and t10k the test set. With only the
    t10k files (documented fallback) the first 9/10 (9,000) form the train pool and the last 1/10
    (1,000) the test set. ``train_limit`` keeps only the first N images of the train pool.

    Returns:
        (pool_images (N, H, W) uint8, pool_labels (N,) uint8, test_images, test_labels, note),
        where note describes the fallback or is None.
    """
    directory = Path(directory)
    if train_limit is not None and train_limit < 1:
        raise DataError(f"data.mnist_train_limit: {train_limit} must be at least 1 (or null)")
    expected = ", ".join(f"{f}[.gz]" for f in MNIST_FILES)
    found = {f: _find(directory, f) for f in MNIST_FILES} if directory.is_dir() else {}
    if not any(found.values()):
        raise DataError(f"{directory}: no MNIST files found; expected {expected}")
    missing = [f for f, p in found.items() if p is None]
    if any(f.startswith("t10k") for f in missing) or len(missing) == 1:
        raise DataError(f"{directory}: missing {', '.join(missing)}; expected {expected}")
    test_x, test_y = _read_pair(found[MNIST_FILES[2]], found[MNIST_FILES[3]])
    note = None
    if missing:  # t10k-only fallback
        n_test = len(test_x) // 10
        pool_x, pool_y = test_x[:-n_test], test_y[:-n_test]
        test_x, test_y = test_x[-n_test:], test_y[-n_test:]
        note = (f"train files absent in {directory}: using t10k-only fallback, first "
                f"{len(pool_x)} t10k images for train/val and last {n_test} for test")
    else:
        pool_x, pool_y = _read_pair(found[MNIST_FILES[0]], found[MNIST_FILES[1]])
        if pool_x.shape[1:] != test_x.shape[1:]:
            raise DataError(f"{directory}: train images {pool_x.shape[1:]} and t10k images "
                            f"{test_x.shape[1:]} differ in size; expected equal")
    if train_limit is not None:
        pool_x, pool_y = pool_x[:train_limit], pool_y[:train_limit]
    return pool_x, pool_y, test_x, test_y, note


def _mnist(cfg: DataOptions, seed: int) -> Dataset:
    """MNIST; val is the last val_fraction of the train pool; the test set is fixed by the files."""
    if not cfg.path:
        raise DataError("data.path: required for mnist; give the directory holding "
                        f"{', '.join(MNIST_FILES)} (optionally .gz)")
    pool_x, pool_y, test_x, test_y, note = load_mnist_dir(cfg.path, cfg.mnist_train_limit)
    n_train = len(pool_x) - _holdout_size(cfg.val_fraction, len(pool_x))
    if n_train < 1:
        raise DataError(f"{cfg.path}: {len(pool_x)} training images leave none after the val split")
    xs = (pool_x[:n_train], pool_x[n_train:], test_x)
    ys = (pool_y[:n_train], pool_y[n_train:], test_y)
    xs = tuple(torch.as_tensor(a.reshape(len(a), -1), dtype=torch.float32) / 255.0 for a in xs)
    ys = tuple(torch.as_tensor(a, dtype=torch.int64) for a in ys)
    return _finish("mnist", xs, ys, tuple(test_x.shape[1:]), _mode(cfg), seed, note)


def load_binarized_mnist_dir(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``binarized_mnist_{train,valid,test}.amat`` (each optionally .gz) from ``directory``.

    Returns:
        (train, valid, test), each (N, 784) uint8 of 0/1, rows in the files' order.
    """
    directory = Path(directory)
    names = [f"binarized_mnist_{split}.amat" for split in BINARIZED_MNIST_SPLITS]
    expected = ", ".join(f"{n}[.gz]" for n in names)
    if not directory.is_dir():
        raise DataError(f"{directory}: directory not found; expected one holding {expected}")
    found = [_find(directory, n) for n in names]
    missing = [n for n, p in zip(names, found) if p is None]
    if missing:
        absent = ", ".join(f"{n} or {n}.gz" for n in missing)
        raise DataError(f"{directory}: missing {absent} (looked in {directory.resolve()}); "
                        f"expected {expected}")
    why = " (binarized MNIST rows are 28 x 28 = 784 pixels)"
    return tuple(read_amat(p, width=28 * 28, why=why) for p in found)


def _binarized_mnist(cfg: DataOptions, seed: int) -> Dataset:
    """Statically binarised MNIST: the files' train/valid/test are our train/val/test, unchanged
    (no val/test fractions, no resampling); ``mnist_train_limit`` keeps the first N train rows."""
    if cfg.binarize not in ("auto", "none"):
        raise DataError(f"data.binarize: {cfg.binarize!r} cannot apply to binarized_mnist, whose "
                        "pixels are already a fixed 0/1 sample; use data.binarize=auto or none")
    if not cfg.path:
        raise DataError("data.path: required for binarized_mnist; give the directory holding "
                        "binarized_mnist_{train,valid,test}.amat (optionally .gz)")
    if cfg.mnist_train_limit is not None and cfg.mnist_train_limit < 1:
        raise DataError(f"data.mnist_train_limit: {cfg.mnist_train_limit} must be at least 1 "
                        "(or null)")
    splits = list(load_binarized_mnist_dir(cfg.path))
    sizes = tuple(len(x) for x in splits)
    note = None
    if sizes != BINARIZED_MNIST_SIZES:
        note = (f"{cfg.path}: binarized_mnist splits of {'/'.join(map(str, sizes))} rows, not the "
                f"standard {'/'.join(map(str, BINARIZED_MNIST_SIZES))}")
    if cfg.mnist_train_limit is not None:
        splits[0] = splits[0][:cfg.mnist_train_limit]
    xs = tuple(torch.from_numpy(x).float() for x in splits)
    return Dataset(*xs, None, None, None, image_shape=(28, 28), binary=True,
                   dynamic_binarize=False, name="binarized_mnist", note=note)


def _read_csv(path: Path) -> np.ndarray:
    """Numeric CSV; a first row with no numeric cell is a header. Rows are numbered as lines."""
    try:
        with path.open(newline="") as fh:
            rows = [(i, r) for i, r in enumerate(csv.reader(fh), 1) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a readable text CSV ({err})") from None
    if rows and not any(_is_number(c) for c in rows[0][1]):
        rows = rows[1:]  # header row
    if not rows:
        raise DataError(f"{path}: no data rows; expected numeric rows")
    width = len(rows[0][1])
    for i, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: row {i} has {len(row)} columns; expected {width}")
        for j, cell in enumerate(row, start=1):
            if not _is_number(cell):
                raise DataError(f"{path}: row {i}, column {j}: {cell!r} is not a number")
    return np.array([[float(c) for c in row] for _, row in rows], dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, optional y) from a .npz, .npy, .csv or .amat[.gz] file."""
    if is_amat(path):
        return read_amat(path), None
    if path.suffix.lower() not in FILE_EXTENSIONS:
        raise DataError(f"{path}: unknown extension {path.suffix!r}; expected one of "
                        f"{', '.join(FILE_EXTENSIONS)} (or .amat.gz)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path), None
    with path.open("rb") as fh:  # without this check np.load falls back to unpickling
        head = fh.read(6)
    if not head.startswith({".npy": b"\x93NUMPY", ".npz": b"PK"}[suffix]):
        raise DataError(f"{path}: not a valid {suffix} file (bad leading bytes {head!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded, None
        with loaded:
            keys = list(loaded.keys())
            if "x" in keys:
                return loaded["x"], (loaded["y"] if "y" in keys else None)
            if len(keys) == 1:
                return loaded[keys[0]], None
    except (ValueError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    raise DataError(f"{path}: npz holds arrays {keys}; expected one named 'x' (or a single array)")


def _file(cfg: DataOptions, seed: int) -> Dataset:
    """User array file; (N, D) rows or (N, H, W) images, checked finite and in range."""
    if not cfg.path:
        raise DataError("data.path: required for data.name=file; give an .npz, .npy, .csv or "
                        ".amat[.gz] file")
    path = Path(cfg.path)
    x, y = _read_array_file(path)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{path}: data have dtype {x.dtype}; expected numbers")
    image_shape = tuple(x.shape[1:]) if x.ndim == 3 else None
    if x.ndim not in (2, 3):
        raise DataError(f"{path}: data have shape {x.shape}; expected 2-D (N, D) or 3-D (N, H, W)")
    x = x.reshape(len(x), -1).astype(np.float64)
    if len(x) < MIN_EXAMPLES or x.shape[1] < 1:
        raise DataError(f"{path}: data have shape {x.shape}; expected at least {MIN_EXAMPLES} "
                        "rows and 1 column")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf values, first at row {r}, column {c}; "
                        "expected finite numbers")
    if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number)
                          or not np.array_equal(y, np.round(y))):
        raise DataError(f"{path}: labels 'y' have shape {y.shape} dtype {y.dtype}; expected "
                        f"({len(x)},) integers")
    mode = _mode(cfg)
    if np.isin(x, (0.0, 1.0)).all():
        mode = "fixed"  # already binary: Bernoulli of 0/1 is the identity
    elif mode != "none" and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{path}: data range [{x.min():g}, {x.max():g}] is not in [0, 1], so it "
                        f"cannot be binarised; use data.binarize=none with a gaussian likelihood")
    labels = None if y is None else torch.as_tensor(y, dtype=torch.int64)
    channels = 1
    if cfg.image_shape is not None:
        channels, image_shape = _image_shape(cfg.image_shape, x.shape[1])
    data = _split_and_finish("file", torch.as_tensor(x, dtype=torch.float32), labels, cfg,
                             seed, image_shape, mode)
    data.channels = channels
    return data


def _image_shape(shape: list[int], columns: int) -> tuple[int, tuple[int, int]]:
    """``data.image_shape`` [H, W] or [C, H, W] -> (C, (H, W)), checked against the row length."""
    if len(shape) not in (2, 3) or math.prod(shape) != columns:
        raise DataError(f"data.image_shape: {list(shape)} does not fit rows of {columns} values; "
                        "expected [H, W] or [C, H, W] whose product is the row length")
    return (1, (shape[0], shape[1])) if len(shape) == 2 else (shape[0], (shape[1], shape[2]))


_LOADERS = {"toy4": _toy4, "digits": _digits, "mnist": _mnist, "file": _file,
            "binarized_mnist": _binarized_mnist}


def load_dataset(cfg: DataOptions, seed: int) -> Dataset:
    """Load and split the data set named by ``cfg.name``; raises DataError for bad input."""
    if cfg.name not in _LOADERS:
        raise DataError(f"data.name: {cfg.name!r} is unknown; expected one of "
                        f"{', '.join(_LOADERS)}")
    return _LOADERS[cfg.name](cfg, seed)
