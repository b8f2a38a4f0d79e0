"""Text tables: headers, one-hot text columns, line numbers in errors, .txt and .gz files,
data.standardize, and the warning for columns of very different scales."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from implicit_vae.config import ConfigError, DataConfig, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.data import DataError, load_dataset
from implicit_vae.training.fit import TrainingInputWarning, check_against_data


def table(n: int = 40, header: bool = True) -> str:
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    lines = ["height,colour,income"] if header else []
    for i in range(n):
        lines.append(f"{rng.normal(170, 10):.1f},{colours[i % 3]},{rng.normal(5e4, 2e4):.0f}")
    return "\n".join(lines) + "\n"


def load(path, **kw):
    kw.setdefault("binarize", "none")
    return load_dataset(DataConfig(name="file", path=str(path), **kw), seed=0,
                        likelihood=kw.pop("likelihood", "gaussian"))


def raises(match: str, path, **kw) -> str:
    with pytest.raises(DataError, match=match) as info:
        load(path, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_text_column_is_one_hot_with_sorted_categories_recorded(tmp_path):
    (tmp_path / "t.csv").write_text(table())
    ds = load(tmp_path / "t.csv")
    assert ds.data_dim == 5
    assert ds.info["columns"] == ["height", "colour=blue", "colour=green", "colour=red", "income"]
    assert ds.info["encoding"]["columns"][1] == {"name": "colour",
                                                 "categories": ["blue", "green", "red"]}
    x = torch.cat([ds.train, ds.val, ds.test])
    assert torch.equal(x[:, 1:4].sum(1), torch.ones(40))  # exactly one category per row
    assert x[:, 0].min() > 100  # the numeric columns kept their values


def test_saved_encoding_is_reapplied_not_recomputed(tmp_path):
    (tmp_path / "t.csv").write_text(table())
    info = load(tmp_path / "t.csv").info
    # A run made with a fourth category keeps its four columns, even where the file has only three.
    info["encoding"]["columns"][1]["categories"] = ["blue", "green", "purple", "red"]
    ds = load_dataset(DataConfig(name="file", path=str(tmp_path / "t.csv"), binarize="none"),
                      seed=0, likelihood="gaussian", info=info)
    assert ds.data_dim == 6 and ds.train[:, 3].abs().sum() == 0
    info["encoding"]["columns"][1]["categories"] = ["blue", "green"]
    with pytest.raises(DataError, match="'red' is not one of the categories of 'colour'") as err:
        load_dataset(DataConfig(name="file", path=str(tmp_path / "t.csv"), binarize="none"),
                     seed=0, likelihood="gaussian", info=info)
    assert "row 2, column 2" in str(err.value)  # line 2: the first row after the header


def test_first_line_all_numeric_is_data_not_header(tmp_path):
    rows = "\n".join(f"{i},{i % 2}" for i in range(20)) + "\n"
    (tmp_path / "n.csv").write_text(rows)
    ds = load(tmp_path / "n.csv")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 20  # the first line was not dropped
    assert "columns" not in ds.info or ds.info["columns"][0] == "column 1"
    (tmp_path / "h.csv").write_text("a,b\n" + rows)
    ds = load(tmp_path / "h.csv")
    assert len(ds.train) + len(ds.val) + len(ds.test) == 20 and ds.info["columns"] == ["a", "b"]


def test_bad_cell_names_its_file_line_and_is_cut_to_40_characters(tmp_path):
    long = "x" * 100
    # header on line 1, a blank line 3 (counted as a text editor counts it), the bad cell on line 9
    text = "a,b\n0,1\n\n" + "0,1\n" * 5 + f"1,{long}\n" + "0,1\n" * 10
    (tmp_path / "bad.csv").write_text(text)
    msg = raises(r"row 9, column 2: 'x{39}…' is not a number", tmp_path / "bad.csv")
    assert long not in msg and "bad.csv" in msg and "column 'b' holds numbers" in msg
    (tmp_path / "empty.csv").write_text("a,b\n" + "0,1\n" * 11 + "1,\n")
    raises("row 13, column 2: an empty cell is not a number", tmp_path / "empty.csv")


def test_ragged_row_gives_its_line(tmp_path):
    (tmp_path / "r.csv").write_text("a,b\n" + "0,1\n" * 4 + "1\n" + "0,1\n" * 8)
    raises("row 6 has 1 columns; expected 2", tmp_path / "r.csv")


def test_txt_and_gz_files_read_like_their_plain_forms(tmp_path):
    x = np.random.default_rng(1).random((30, 4))
    np.savetxt(tmp_path / "d.txt", x)
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    np.save(tmp_path / "d.npy", x)
    for name in ("d.txt", "d.csv", "d.npy"):
        raw = (tmp_path / name).read_bytes()
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw))
    bits = (x > 0.5).astype(int)
    (tmp_path / "b.amat").write_text("\n".join(" ".join(map(str, r)) for r in bits) + "\n")
    (tmp_path / "b.amat.gz").write_bytes(gzip.compress((tmp_path / "b.amat").read_bytes()))
    ref = load(tmp_path / "d.npy")
    for name in ("d.txt", "d.csv", "d.txt.gz", "d.csv.gz", "d.npy.gz"):
        ds = load(tmp_path / name)
        assert torch.allclose(ds.train, ref.train, atol=1e-6), name
    assert torch.equal(load(tmp_path / "b.amat.gz").train, load(tmp_path / "b.amat").train)
    (tmp_path / "broken.csv.gz").write_bytes(gzip.compress(b"a,b\n" + b"0,1\n" * 20)[:20])
    raises("not a valid gzip file", tmp_path / "broken.csv.gz")


def test_standardize_uses_the_training_split_only(tmp_path):
    (tmp_path / "t.csv").write_text(table(60))
    ds = load(tmp_path / "t.csv", standardize=True)
    numeric = [0, 4]
    assert torch.allclose(ds.train[:, numeric].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(ds.train[:, numeric].std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert not torch.allclose(ds.val[:, numeric].mean(0), torch.zeros(2), atol=1e-3)
    assert set(ds.train[:, 1:4].unique().tolist()) == {0.0, 1.0}  # one-hot columns stay 0/1
    raw = load(tmp_path / "t.csv")
    mean, std = raw.train.double().mean(0), raw.train.double().std(0, unbiased=False)
    assert torch.allclose(ds.test[:, 0].double(), (raw.test[:, 0].double() - mean[0]) / std[0],
                          atol=1e-4)
    saved = ds.info["standardize"]
    assert saved["mean"][0] == pytest.approx(float(mean[0])) and saved["mean"][1] == 0.0


def test_standardize_constant_column_is_only_centred_and_saved_stats_reapply(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 3))
    x[:, 1] = 7.0
    np.save(tmp_path / "c.npy", x)
    ds = load(tmp_path / "c.npy", standardize=True)
    assert torch.all(ds.train[:, 1] == 0) and torch.isfinite(ds.train).all()
    assert ds.info["standardize"]["constant_columns"] == [1]
    assert any("constant in the training split" in n for n in ds.notes)
    info = {"standardize": {"mean": [1.0, 7.0, 0.0], "std": [2.0, 1.0, 1.0]}}
    again = load_dataset(DataConfig(name="file", path=str(tmp_path / "c.npy"), binarize="none",
                                    standardize=True), seed=0, likelihood="gaussian", info=info)
    raw = load(tmp_path / "c.npy")
    assert torch.allclose(again.train[:, 0], (raw.train[:, 0] - 1) / 2)  # the saved numbers
    assert again.info["standardize"]["mean"] == [1.0, 7.0, 0.0]


def test_standardize_config_checks():
    with pytest.raises(ConfigError, match="data.standardize: true makes values outside"):
        load_config(None, ["data.standardize=true"])  # default likelihood is bernoulli
    with pytest.raises(ConfigError, match="cannot follow data.binarize=dynamic"):
        load_config(None, ["data.standardize=true", "model.likelihood=gaussian",
                           "data.binarize=dynamic"])


def _model_and_data(path, *sets):
    cfg = load_config(None, ["data.name=file", f"data.path={path}", "model.likelihood=gaussian",
                             "model.posterior=gaussian", "divergence.name=analytic",
                             "model.hidden=[8]", "model.latent_dim=2", *sets])
    data = load_dataset(cfg.data, 0, likelihood="gaussian")
    return cfg, build_model(cfg, data.event_shape), data


def test_gaussian_on_columns_of_very_different_scales_warns_once(tmp_path, recwarn):
    (tmp_path / "t.csv").write_text(table())
    cfg, model, data = _model_and_data(tmp_path / "t.csv")
    check_against_data(cfg, model, data)
    scale = [w for w in recwarn if issubclass(w.category, TrainingInputWarning)
             and "data.standardize" in str(w.message)]
    assert len(scale) == 1 and "set data.standardize: true" in str(scale[0].message)
    recwarn.clear()
    cfg, model, data = _model_and_data(tmp_path / "t.csv", "data.standardize=true")
    check_against_data(cfg, model, data)
    assert not [w for w in recwarn if "data.standardize" in str(w.message)]
