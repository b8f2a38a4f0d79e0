"""Data sets held in memory: AVB's toy4, sklearn digits, MNIST from IDX files, statically
binarised MNIST from .amat files, user files (one file split by fractions, or one file per split)
and folders of images.

Every problem with user data raises :class:`DataError` with one line naming the file and what was
expected; nothing is ever downloaded. Image intensities are scaled to [0, 1]; binarisation follows
``DataOptions.binarize``: ``dynamic`` keeps train intensities (the trainer resamples Bernoulli(x)
per batch) and binarises val/test once, ``fixed`` binarises every split once, ``none`` keeps
intensities, and ``auto`` (the default) does what the likelihood needs: nothing for a gaussian
likelihood; for a bernoulli one ``dynamic`` for grey levels and nothing for data that are already
0/1 (toy4, binarized_mnist, a 0/1 file). On 0/1 data ``dynamic`` and ``fixed`` would change nothing,
so nothing is done and :attr:`Dataset.binarize` says ``none``: that attribute is what was done, and
what a run records. binarized_mnist *is* a fixed binarisation, so asking for ``dynamic`` or
``fixed`` there is an error, not a resampling. ``standardize`` rescales every numeric column by the
mean and standard deviation of the training split. All randomness comes from ``torch.Generator``
objects seeded from ``seed``.

What re-applies a data set's preprocessing identically later (the categories of one-hot text
columns, the standardisation's means and deviations, the label names of an image folder) is in
:attr:`Dataset.info`; a run saves it, and ``load_dataset(..., info=saved)`` uses it instead of
recomputing it.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .amat import read_amat
from .errors import DataError
from .images import list_images, read_images
from .tables import TextTable, encode_table, encoded_names, read_bytes, read_table, table_encoding

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
BINARIZED_MNIST_SPLITS = ("train", "valid", "test")  # file binarized_mnist_{split}.amat[.gz]
BINARIZED_MNIST_SIZES = (50_000, 10_000, 10_000)  # the standard split (Larochelle & Murray, 2011)
FILE_EXTENSIONS = (".npz", ".npy", ".csv", ".txt", ".amat")  # each may also end in .gz
SPLIT_FILE_NAMES = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}
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
    # optional (read with getattr): train_path, val_path, test_path, standardize


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
    binarize: str = "none"  # what was done: dynamic, fixed or none (a run records this)
    notes: list[str] = field(default_factory=list)  # one line each, e.g. how a split was made
    info: dict[str, Any] = field(default_factory=dict)  # what re-applies the preprocessing

    def __post_init__(self):
        if self.note and self.note not in self.notes:
            self.notes.insert(0, self.note)

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


@dataclass
class _Context:
    likelihood: str | None  # None: as before likelihoods chose (auto is dynamic on grey levels)
    info: dict[str, Any]  # a run's saved Dataset.info ({} for a new run)


def _zero_one(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def _resolve_binarize(cfg: DataOptions, ctx: _Context, xs: tuple[torch.Tensor, ...]
                      ) -> tuple[str, bool, str | None]:
    """(what is done: dynamic, fixed or none; whether the model sees 0/1 data; a note)."""
    if all(_zero_one(x) for x in xs):  # Bernoulli of 0/1 is the identity
        note = None
        if cfg.binarize in ("dynamic", "fixed"):
            note = (f"data.binarize={cfg.binarize} changes nothing on data that are already 0/1; "
                    "nothing was done (recorded as none)")
        return "none", True, note
    mode = cfg.binarize
    if mode == "auto":
        mode = "none" if ctx.likelihood == "gaussian" else "dynamic"
    return mode, mode != "none", None


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


def _finish(name: str, xs: tuple, ys: tuple, image_shape: tuple[int, int] | None, seed: int,
            mode: str, binary: bool, note: str | None = None) -> Dataset:
    """Apply the (resolved) binarisation mode to intensity splits xs = (train, val, test)."""
    xs = tuple(x.float() for x in xs)
    gen = _generator(seed, 1)  # evaluation splits are binarised once, reproducibly
    if mode == "fixed":
        xs = tuple(binarize(x, gen) for x in xs)
    elif mode == "dynamic":
        xs = (xs[0], binarize(xs[1], gen), binarize(xs[2], gen))
    return Dataset(*xs, *ys, image_shape=image_shape, binary=binary,
                   dynamic_binarize=mode == "dynamic", name=name, note=note, binarize=mode)


def _toy4(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
    """AVB's toy: x is one of the four one-hot vectors in R^4, drawn uniformly."""
    n = cfg.toy4_size
    sizes = [n, _holdout_size(cfg.val_fraction, n), _holdout_size(cfg.test_fraction, n)]
    labels = torch.randint(0, 4, (sum(sizes),), generator=_generator(seed, 0))
    ys = torch.split(labels, sizes)
    xs = tuple(torch.nn.functional.one_hot(y, 4).float() for y in ys)
    _, _, note = _resolve_binarize(cfg, ctx, xs)
    return Dataset(*xs, *ys, image_shape=None, binary=True, dynamic_binarize=False, name="toy4",
                   notes=[note] if note else [])


def _split_and_finish(name: str, x: torch.Tensor, y: torch.Tensor | None, cfg: DataOptions,
                      seed: int, image_shape: tuple[int, int] | None, ctx: _Context) -> Dataset:
    idx = split_indices(len(x), cfg.val_fraction, cfg.test_fraction, _generator(seed, 0))
    ys = tuple(None if y is None else y[i] for i in idx)
    xs = tuple(x[i] for i in idx)
    mode, binary, note = _resolve_binarize(cfg, ctx, xs)
    return _finish(name, xs, ys, image_shape, seed, mode, binary, note)


def _digits(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
    """sklearn's 1797 8x8 digits (bundled, no download), 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return _split_and_finish("digits", x, y, cfg, seed, (8, 8), ctx)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), validating magic number, type code, dims and size.

    Returns:
        Array of the header's shape, e.g. (N, 28, 28) uint8 images or (N,) uint8 labels.
    """
    path = Path(path)
    raw = read_bytes(path)
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


def _mnist(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
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
    mode, binary, mode_note = _resolve_binarize(cfg, ctx, xs)
    data = _finish("mnist", xs, ys, tuple(test_x.shape[1:]), seed, mode, binary, note)
    data.notes += [mode_note] if mode_note else []
    return data


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


def _binarized_mnist(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
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


def _base_and_ext(path: Path) -> tuple[str, str]:
    """(name without its data extension, the extension) of e.g. ``train.csv.gz``: ("train",
    ".csv"); the extension is "" when it is not one the loaders read."""
    name = path.name.lower().removesuffix(".gz")
    for ext in FILE_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def _read_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None] | TextTable:
    """(x, optional y) from a .npz, .npy or .amat file, or the cells of a .csv/.txt table; each
    optionally gzip-compressed (``.gz``)."""
    base, ext = _base_and_ext(path)
    if not ext:
        shown = path.suffix if path.suffix.lower() != ".gz" else "".join(path.suffixes[-2:])
        raise DataError(f"{path}: unknown extension {shown!r}; expected one of "
                        f"{', '.join(FILE_EXTENSIONS)} (each optionally .gz)")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if ext == ".amat":
        return read_amat(path), None
    if ext in (".csv", ".txt"):
        return read_table(path)
    raw = read_bytes(path)
    if not raw.startswith({".npy": b"\x93NUMPY", ".npz": b"PK"}[ext]):
        raise DataError(f"{path}: not a valid {ext} file (bad leading bytes {raw[:6]!r})")
    try:  # allow_pickle=False: a file named .npy never runs code
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
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


def _check_array(path: Path, x: np.ndarray, y: np.ndarray | None, min_rows: int
                 ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int] | None]:
    """(x as (N, D) float64, y, (H, W) when x was (N, H, W)), checked finite with enough rows."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{path}: data have dtype {x.dtype}; expected numbers")
    if x.ndim not in (2, 3):
        raise DataError(f"{path}: data have shape {x.shape}; expected 2-D (N, D) or 3-D (N, H, W)")
    image_shape = tuple(x.shape[1:]) if x.ndim == 3 else None
    x = x.reshape(len(x), -1).astype(np.float64)
    if len(x) < min_rows or x.shape[1] < 1:
        raise DataError(f"{path}: data have shape {x.shape}; expected at least {min_rows} "
                        f"row{'s' if min_rows > 1 else ''} and 1 column")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf values, first at row {r}, column {c}; "
                        "expected finite numbers")
    if y is not None and (y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number)
                          or not np.array_equal(y, np.round(y))):
        raise DataError(f"{path}: labels 'y' have shape {y.shape} dtype {y.dtype}; expected "
                        f"({len(x)},) integers")
    return x, y, image_shape


def _split_folder(folder: Path) -> dict[str, Path]:
    """train.<ext>, val.<ext> (or valid.<ext>) and test.<ext> of a folder; train is required."""
    found: dict[str, Path] = {}
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for split, stems in SPLIT_FILE_NAMES.items():
        hits = [p for p in files if _base_and_ext(p)[1] and _base_and_ext(p)[0] in stems]
        if len(hits) > 1:
            raise DataError(f"{folder}: {len(hits)} files for the {split} split "
                            f"({', '.join(p.name for p in hits)}); expected one")
        if hits:
            found[split] = hits[0]
    if "train" not in found:
        have = ", ".join(p.name for p in files[:8]) or "nothing"
        raise DataError(f"{folder}: no train file (it holds {have}); expected train.<ext>, "
                        "optionally val.<ext> (or valid.<ext>) and test.<ext>, with <ext> one of "
                        f"{', '.join(e[1:] for e in FILE_EXTENSIONS)} (each optionally .gz)")
    return found


def file_sources(cfg: DataOptions) -> dict[str, Path]:
    """Where data.name=file reads from: {"all": one file} (split by the fractions), or {"train":
    …, optionally "val": …, "test": …} from data.train_path/val_path/test_path or a folder."""
    given = {s: getattr(cfg, f"{s}_path", None) for s in ("train", "val", "test")}
    if any(given.values()):
        if not given["train"]:
            raise DataError("data.val_path/data.test_path: given without data.train_path; "
                            "expected data.train_path too (the training split)")
        if cfg.path:
            raise DataError("data.path and data.train_path are both set; expected one of them "
                            "(data.path: one file, or a folder of train/val/test files)")
        return {s: Path(p) for s, p in given.items() if p}
    if not cfg.path:
        raise DataError("data.path: required for data.name=file; give an .npz, .npy, .csv, .txt "
                        "or .amat file (optionally .gz), a folder of train/val/test files, or "
                        "data.train_path")
    path = Path(cfg.path)
    return _split_folder(path) if path.is_dir() else {"all": path}


def _as_tensors(x, y) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Arrays as tensors before they are indexed by split indices: NumPy reads a one-element index
    tensor as a scalar and would return a one-row split as a 1-D row."""
    return torch.as_tensor(x), (None if y is None else torch.as_tensor(y))


def _file(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
    """User files: one file split by the fractions, or one file per split."""
    sources = file_sources(cfg)
    raw = {s: _read_array_file(p) for s, p in sources.items()}
    info: dict[str, Any] = {"sources": {s: str(p) for s, p in sources.items()}}
    tables = [r for r in raw.values() if isinstance(r, TextTable)]
    if tables:
        encoding = ctx.info.get("encoding") or table_encoding(tables)
        names, one_hot = encoded_names(encoding)
        info.update(encoding=encoding, columns=names, one_hot=one_hot)
    arrays = {}
    for split, r in raw.items():
        x, y = (encode_table(r, encoding), None) if isinstance(r, TextTable) else r
        arrays[split] = _check_array(sources[split], x, y,
                                     MIN_EXAMPLES if split in ("all", "train") else 1)
    first = next(iter(arrays))
    for split, (x, _, _) in arrays.items():
        if x.shape[1] != arrays[first][0].shape[1]:
            raise DataError(f"{sources[split]}: rows of {x.shape[1]} values, but "
                            f"{sources[first]} has {arrays[first][0].shape[1]}; expected the same "
                            "columns in every split")
    image_shape = arrays[first][2]
    notes: list[str] = []
    gen = _generator(seed, 0)
    if "all" in arrays:
        x, y = _as_tensors(*arrays["all"][:2])
        idx = split_indices(len(x), cfg.val_fraction, cfg.test_fraction, gen)
        xs, ys = tuple(x[i] for i in idx), tuple(None if y is None else y[i] for i in idx)
    else:
        x, y = _as_tensors(*arrays["train"][:2])
        vf = 0.0 if "val" in arrays else cfg.val_fraction
        tf = 0.0 if "test" in arrays else cfg.test_fraction
        if vf or tf:
            idx = split_indices(len(x), vf, tf, gen)
        else:  # the training file as it is, in its order
            idx = (torch.arange(len(x)), torch.arange(0), torch.arange(0))
        xs, ys = [x[idx[0]], None, None], [None if y is None else y[idx[0]], None, None]
        for k, (split, fraction) in enumerate((("val", vf), ("test", tf)), 1):
            if split in arrays:
                xs[k], ys[k] = arrays[split][0], arrays[split][1]
                continue
            xs[k], ys[k] = x[idx[k]], (None if y is None else y[idx[k]])
            key = f"data.{split}_fraction"
            notes.append(f"no {split} file: the {split} split is {len(idx[k])} rows held out "
                         f"from {sources['train']} by {key}={fraction:g} (seeded)" if fraction
                         else f"no {split} file and {key}=0: the {split} split is empty")
    xs = tuple(torch.as_tensor(a, dtype=torch.float32) for a in xs)
    ys = tuple(None if a is None else torch.as_tensor(a, dtype=torch.int64) for a in ys)
    mode, binary, note = _resolve_binarize(cfg, ctx, xs)
    notes += [note] if note else []
    if mode != "none":
        for split, a in zip(("train", "val", "test"), xs):
            if a.numel() and (a.min() < 0 or a.max() > 1):
                where = sources.get(split) or sources.get("all") or sources["train"]
                asked = f"data.binarize={cfg.binarize}" + (
                    f" ({mode} for a {ctx.likelihood or 'bernoulli'} likelihood)"
                    if cfg.binarize == "auto" else "")
                raise DataError(f"{where}: data range [{a.min():g}, {a.max():g}] is not in [0, 1], "
                                f"so {asked} cannot binarise them; use data.binarize=none with a "
                                "gaussian likelihood")
    channels = 1
    if cfg.image_shape is not None:
        channels, image_shape = _image_shape(cfg.image_shape, xs[0].shape[1])
    data = _finish("file", xs, ys, image_shape, seed, mode, binary)
    data.channels, data.notes, data.info = channels, notes, info
    return data


def _images(cfg: DataOptions, seed: int, ctx: _Context) -> Dataset:
    """A folder of PNG/JPEG images (optionally one sub-folder per label), scaled to [0, 1]."""
    if not cfg.path:
        raise DataError("data.path: required for data.name=images; give a folder of PNG/JPEG "
                        "images (optionally one sub-folder per label)")
    folder = Path(cfg.path)
    files, labels, names = list_images(folder)
    saved = ctx.info.get("label_names")
    if saved is not None and names != saved:
        raise DataError(f"{folder}: label folders {names} differ from the {saved} the run was "
                        "trained with")
    x, channels, size = read_images(files, cfg.image_shape)
    if len(x) < MIN_EXAMPLES:
        raise DataError(f"{folder}: {len(x)} images; expected at least {MIN_EXAMPLES}")
    y = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    data = _split_and_finish("images", torch.from_numpy(x), y, cfg, seed, size, ctx)
    data.channels = channels
    data.info = {"images": len(files), "channels": channels, "image_size": list(size)}
    if names is not None:
        data.info["label_names"] = names
    return data


def _image_shape(shape: list[int], columns: int) -> tuple[int, tuple[int, int]]:
    """``data.image_shape`` [H, W] or [C, H, W] -> (C, (H, W)), checked against the row length."""
    if len(shape) not in (2, 3) or math.prod(shape) != columns:
        raise DataError(f"data.image_shape: {list(shape)} does not fit rows of {columns} values; "
                        "expected [H, W] or [C, H, W] whose product is the row length")
    return (1, (shape[0], shape[1])) if len(shape) == 2 else (shape[0], (shape[1], shape[2]))


_LOADERS = {"toy4": _toy4, "digits": _digits, "mnist": _mnist, "file": _file,
            "binarized_mnist": _binarized_mnist, "images": _images}


def load_dataset(cfg: DataOptions, seed: int, likelihood: str | None = None,
                 info: dict[str, Any] | None = None) -> Dataset:
    """Load and split the data set named by ``cfg.name``; raises DataError for bad input.

    Args:
        likelihood: ``model.likelihood``; ``binarize=auto`` does what it needs (None: what a
            bernoulli likelihood needs).
        info: a run's saved :attr:`Dataset.info`: its text categories, standardisation and label
            names are re-applied rather than recomputed.
    """
    if cfg.name not in _LOADERS:
        raise DataError(f"data.name: {cfg.name!r} is unknown; expected one of "
                        f"{', '.join(_LOADERS)}")
    ctx = _Context(likelihood, dict(info or {}))
    data = _LOADERS[cfg.name](cfg, seed, ctx)
    if getattr(cfg, "standardize", False):
        _standardize(data, ctx)
    return data


def _standardize(data: Dataset, ctx: _Context) -> None:
    """(x - mean) / std per numeric column, mean and std of the training split (or the saved
    ones); one-hot columns are left 0/1, a column constant in training is only centred."""
    if data.binarize != "none":
        raise DataError(f"data.standardize: the data were binarised ({data.binarize}); "
                        "standardised values are not 0/1, so use data.binarize=none")
    saved = ctx.info.get("standardize")
    d = data.data_dim
    if saved is not None:
        mean = torch.tensor(saved["mean"], dtype=torch.float64)
        std = torch.tensor(saved["std"], dtype=torch.float64)
        if mean.shape != (d,) or std.shape != (d,):
            raise DataError(f"data.standardize: the run's saved means are for {len(mean)} "
                            f"columns, but the data have {d}")
        constant = [int(i) for i in saved.get("constant_columns", [])]
    else:
        train = data.train.double()
        mean, std = train.mean(0), train.std(0, unbiased=False)
        one_hot = torch.tensor(data.info.get("one_hot", [False] * d), dtype=torch.bool)
        flat = (std <= 1e-12 * torch.clamp(mean.abs(), min=1.0)) & ~one_hot
        constant = torch.nonzero(flat).flatten().tolist()
        std = torch.where(flat, torch.ones_like(std), std)
        mean, std = torch.where(one_hot, 0.0, mean), torch.where(one_hot, 1.0, std)
        if constant:
            data.notes.append(f"data.standardize: {len(constant)} column(s) constant in the "
                              "training split (std 0) are only centred")
    for split in ("train", "val", "test"):
        x = getattr(data, split)
        setattr(data, split, ((x.double() - mean) / std).float())
    data.binary = False
    data.info["standardize"] = {"mean": mean.tolist(), "std": std.tolist(),
                                "constant_columns": constant}
