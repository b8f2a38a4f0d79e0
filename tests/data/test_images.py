"""data.name=images: a folder of PNG/JPEG files (optionally one sub-folder per label), grey or RGB,
resized to data.image_shape, scaled to [0, 1]; bad folders and files are one-line DataErrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from implicit_vae.config import ConfigError, DataConfig, load_config
from implicit_vae.data import DataError, load_dataset


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return path


def grey_folder(folder, n=12, size=(6, 5)):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *size))
    for i, img in enumerate(images):
        save(folder / f"img{i:02d}.png", img)
    return images


def load(path, **kw):
    return load_dataset(DataConfig(name="images", path=str(path), **kw), seed=0)


def raises(match, path, **kw):
    with pytest.raises(DataError, match=match) as info:
        load(path, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_grey_folder_keeps_its_size_and_scales_to_unit_interval(tmp_path):
    images = grey_folder(tmp_path / "imgs")
    ds = load(tmp_path / "imgs", val_fraction=0.0, test_fraction=0.0)
    assert ds.image_shape == (6, 5) and ds.channels == 1 and ds.event_shape == (1, 6, 5)
    assert ds.train_labels is None and ds.binarize == "dynamic" and ds.dynamic_binarize
    assert ds.train.min() >= 0 and ds.train.max() <= 1
    got = sorted(map(tuple, (ds.train * 255).round().int().tolist()))
    assert got == sorted(map(tuple, images.reshape(12, -1).tolist()))


def test_label_sub_folders_give_labels_and_names(tmp_path):
    for k, name in enumerate(["cats", "dogs"]):
        for i in range(6):
            save(tmp_path / name / f"{i}.png", np.full((4, 4), 40 * k + i))
    ds = load(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.info["label_names"] == ["cats", "dogs"]
    labels = ds.train_labels.tolist()
    assert sorted(labels) == [0] * 6 + [1] * 6
    for x, y in zip(ds.train, labels):  # each image's label is its folder's
        assert (x[0] * 255).round() < 40 if y == 0 else (x[0] * 255).round() >= 40


def test_rgb_resized_and_converted_by_image_shape(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        save(tmp_path / f"{i}.png", rng.integers(0, 256, (9, 7, 3)))
    Image.fromarray(rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)).save(tmp_path / "j.jpg")
    ds = load(tmp_path, image_shape=[3, 4, 5])
    assert ds.channels == 3 and ds.image_shape == (4, 5) and ds.data_dim == 60
    assert ds.event_shape == (3, 4, 5)
    grey = load(tmp_path, image_shape=[4, 5])  # [H, W]: converted to grey
    assert grey.channels == 1 and grey.data_dim == 20
    assert load(tmp_path).channels == 3  # without image_shape: the first image's mode and size


def test_uniform_image_of_the_requested_size_is_exact(tmp_path):
    for i in range(10):
        save(tmp_path / f"{i}.png", np.full((8, 8), 51 * (i % 5)))
    ds = load(tmp_path, image_shape=[1, 2, 2], binarize="none", val_fraction=0.0,
              test_fraction=0.0)
    assert sorted(set(torch.round(ds.train * 255).flatten().tolist())) == [0, 51, 102, 153, 204]


def test_bad_folders_and_files(tmp_path):
    raises("folder not found", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    raises("no images found", tmp_path / "empty")
    grey_folder(tmp_path / "junk")
    (tmp_path / "junk" / "img05.png").write_bytes(b"not a png at all")
    assert "img05.png: cannot read as an image" in raises("cannot read", tmp_path / "junk")
    grey_folder(tmp_path / "sizes")
    save(tmp_path / "sizes" / "img99.png", np.zeros((3, 3)))
    msg = raises(r"img99.png: 3 x 3 pixels, but the first image \(img00.png\) is 6 x 5",
                 tmp_path / "sizes")
    assert "data.image_shape" in msg
    assert load(tmp_path / "sizes", image_shape=[6, 5]).data_dim == 30  # resizing mends it
    raises(r"data.image_shape: \[2, 6, 5\] is not an image shape", tmp_path / "sizes",
           image_shape=[2, 6, 5])
    grey_folder(tmp_path / "mixed" / "a")
    save(tmp_path / "mixed" / "loose.png", np.zeros((6, 5)))
    raises("loose.png: an image beside the label sub-folders", tmp_path / "mixed")
    few = tmp_path / "few"
    grey_folder(few, n=3)
    raises("3 images; expected at least 10", few)


def test_images_needs_a_path():
    with pytest.raises(ConfigError, match="data.path: required when data.name is 'images'"):
        load_config(None, ["data.name=images"])


def test_file_rows_may_carry_an_image_shape(tmp_path):
    np.save(tmp_path / "flat.npy", np.random.default_rng(0).random((20, 12)))
    ds = load_dataset(DataConfig(name="file", path=str(tmp_path / "flat.npy"),
                                 image_shape=[3, 4]), seed=0)
    assert ds.image_shape == (3, 4) and ds.event_shape == (1, 3, 4)
