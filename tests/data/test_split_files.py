"""One file per split: data.train_path/val_path/test_path, or data.path naming a folder of
train.<ext>, val.<ext> (or valid.<ext>) and test.<ext>; a missing val/test file is held out of
train by the fractions (with a note); a single file keeps its seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implicit_vae.config import ConfigError, DataConfig, load_config
from implicit_vae.data import DataError, load_dataset, split_indices
from implicit_vae.data.loaders import _generator


def rows(n: int, seed: int, d: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d))


def write(path, x):
    if path.name.endswith((".csv", ".csv.gz")):
        np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    else:
        np.save(path, x)
    return path


def load(**kw):
    kw.setdefault("binarize", "none")
    return load_dataset(DataConfig(name="file", **kw), seed=0, likelihood="gaussian")


def test_three_paths_give_the_three_splits_unchanged(tmp_path):
    xs = [rows(30, 0), rows(7, 1), rows(5, 2)]
    paths = [write(tmp_path / f"{s}.npy", x) for s, x in zip(("tr", "va", "te"), xs)]
    ds = load(train_path=str(paths[0]), val_path=str(paths[1]), test_path=str(paths[2]),
              val_fraction=0.5, test_fraction=0.5)  # fractions are not used for given splits
    for got, want in zip((ds.train, ds.val, ds.test), xs):
        assert torch.allclose(got, torch.as_tensor(want, dtype=torch.float32))
    assert ds.notes == [] and ds.info["sources"]["val"] == str(paths[1])


def test_folder_with_train_valid_test_files_of_any_format(tmp_path):
    write(tmp_path / "train.csv", rows(30, 0))
    write(tmp_path / "valid.npy", rows(6, 1))
    write(tmp_path / "test.csv", rows(4, 2))
    (tmp_path / "README").write_text("not data")
    ds = load(path=str(tmp_path))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 6, 4)
    assert torch.allclose(ds.val, torch.as_tensor(rows(6, 1), dtype=torch.float32))


def test_missing_val_and_test_are_held_out_of_train_with_a_note(tmp_path):
    x = rows(40, 0)
    write(tmp_path / "train.npy", x)
    ds = load(path=str(tmp_path), val_fraction=0.25, test_fraction=0.1)
    train, val, test = split_indices(40, 0.25, 0.1, _generator(0, 0))
    assert torch.allclose(ds.val, torch.as_tensor(x[val.numpy()], dtype=torch.float32))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (26, 10, 4)
    assert any("no val file: the val split is 10 rows held out" in n and "val_fraction=0.25" in n
               for n in ds.notes)
    assert any("no test file" in n for n in ds.notes)
    write(tmp_path / "test.npy", rows(5, 3))
    ds = load(path=str(tmp_path), val_fraction=0.25, test_fraction=0.0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, 5)
    ds = load(path=str(tmp_path), val_fraction=0.0)
    assert len(ds.val) == 0 and any("val_fraction=0: the val split is empty" in n
                                    for n in ds.notes)


def test_single_file_split_is_unchanged(tmp_path):
    x = rows(50, 0)
    path = write(tmp_path / "d.npy", x)
    ds = load(path=str(path))
    train, val, test = split_indices(50, 0.1, 0.1, _generator(0, 0))
    assert torch.allclose(ds.train, torch.as_tensor(x[train.numpy()], dtype=torch.float32))
    assert torch.allclose(ds.test, torch.as_tensor(x[test.numpy()], dtype=torch.float32))
    assert ds.notes == []


def test_text_categories_are_shared_by_every_split(tmp_path):
    (tmp_path / "train.csv").write_text("n,c\n" + "".join(f"{i},a\n" for i in range(12)))
    (tmp_path / "test.csv").write_text("n,c\n1,b\n2,a\n")
    ds = load(path=str(tmp_path), val_fraction=0.2)
    assert ds.info["columns"] == ["n", "c=a", "c=b"]
    assert ds.test[:, 1:].tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("files, match", [
    ([], "no train file"),
    (["val.npy"], r"no train file \(it holds val.npy\)"),
    (["train.npy", "train.csv"], "2 files for the train split"),
    (["train.npy", "val.npy", "valid.npy"], "2 files for the val split"),
])
def test_bad_folders(tmp_path, files, match):
    for name in files:
        write(tmp_path / name, rows(20, 0))
    with pytest.raises(DataError, match=match) as info:
        load(path=str(tmp_path))
    assert "\n" not in str(info.value)


def test_splits_with_other_columns_or_too_few_rows(tmp_path):
    write(tmp_path / "train.npy", rows(20, 0))
    write(tmp_path / "val.npy", rows(5, 1, d=4))
    with pytest.raises(DataError, match=r"val.npy: rows of 4 values, but .*train.npy has 3"):
        load(path=str(tmp_path))
    write(tmp_path / "val.npy", rows(5, 1))
    write(tmp_path / "train.npy", rows(4, 0))
    with pytest.raises(DataError, match=r"train.npy: data have shape \(4, 3\); expected at least"):
        load(path=str(tmp_path))


@pytest.mark.parametrize("sets, match", [
    (["data.name=file", "data.val_path=v.npy"], "data.val_path: given without data.train_path"),
    (["data.name=file", "data.path=d.npy", "data.train_path=t.npy"],
     "data.path and data.train_path are both set"),
    (["data.train_path=t.npy"], "data.train_path: only data.name=file reads split files"),
])
def test_config_checks_of_split_keys(sets, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, sets)


def test_train_path_alone_satisfies_the_path_requirement(tmp_path):
    path = write(tmp_path / "t.npy", rows(20, 0))
    cfg = load_config(None, ["data.name=file", f"data.train_path={path}"])
    assert cfg.data.path is None and cfg.data.train_path == str(path)


@pytest.mark.parametrize("layout", ["one file", "train file only"])
@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_one_row_holdout_is_still_a_table_of_rows(tmp_path, layout, suffix):
    """40 rows and 1 % held out: val and test are (1, D), not a bare row of D values (NumPy read a
    one-element index tensor as a scalar index)."""
    x = np.random.default_rng(0).random((40, 5)).astype(np.float32)
    path = tmp_path / f"x{suffix}"
    np.save(path, x) if suffix == ".npy" else np.savetxt(path, x, delimiter=",")
    key = "path" if layout == "one file" else "train_path"
    data = load_dataset(DataConfig(name="file", **{key: str(path)}, val_fraction=0.01,
                                   test_fraction=0.01, binarize="none"), seed=0)  # fmt: skip
    assert data.train.shape == (38, 5) and data.val.shape == (1, 5) and data.test.shape == (1, 5)
    rows = torch.cat([data.train, data.val, data.test])
    assert torch.allclose(rows.sort(0).values, torch.from_numpy(x).sort(0).values, atol=1e-6)
