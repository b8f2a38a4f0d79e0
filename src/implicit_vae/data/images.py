"""A folder of PNG/JPEG images as rows of pixel intensities in [0, 1] (read with Pillow).

The images lie in the folder itself, or in one sub-folder per label (``cats/``, ``dogs/``…: the
labels are the sub-folders' names, sorted, numbered 0, 1…). Every image is converted to grey or RGB
and resized to ``data.image_shape`` ([H, W] or [1, H, W]: grey; [3, H, W]: RGB); without it every
image must have the first one's size, and the first one's mode (grey or colour) decides.
An RGB row is laid out channel first (C, H, W), as the networks see it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;L")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """(image files in a fixed order, their label numbers, the label names) — labels None when the
    images lie in the folder itself."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected a folder of PNG/JPEG images "
                        "(optionally one sub-folder per label)")
    top = sorted(p for p in folder.iterdir() if _is_image(p))
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    labelled = {d.name: sorted(p for p in d.iterdir() if _is_image(p)) for d in subs}
    labelled = {k: v for k, v in labelled.items() if v}
    if top and labelled:
        raise DataError(f"{top[0]}: an image beside the label sub-folders "
                        f"({', '.join(labelled)}); expected all images in the folder itself or "
                        "all in sub-folders")
    if top:
        return top, None, None
    if not labelled:
        raise DataError(f"{folder}: no images found; expected .png, .jpg or .jpeg files in the "
                        "folder or in one sub-folder per label")
    names = sorted(labelled)
    files = [p for n in names for p in labelled[n]]
    labels = [k for k, n in enumerate(names) for _ in labelled[n]]
    return files, labels, names


def read_images(files: list[Path], image_shape: list[int] | None
                ) -> tuple[np.ndarray, int, tuple[int, int]]:
    """(rows (N, C*H*W) float32 in [0, 1], C, (H, W))."""
    from PIL import Image, UnidentifiedImageError

    if image_shape is not None and (len(image_shape) not in (2, 3)
                                    or (len(image_shape) == 3 and image_shape[0] not in (1, 3))):
        raise DataError(f"data.image_shape: {list(image_shape)} is not an image shape; expected "
                        "[H, W] or [1, H, W] (grey) or [3, H, W] (RGB)")
    rows, size, channels = [], None, None
    if image_shape is not None:
        channels = 1 if len(image_shape) == 2 else image_shape[0]
        size = (image_shape[-2], image_shape[-1])
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                if channels is None:
                    channels = 1 if img.mode in _GREY_MODES else 3
                    size = (img.height, img.width)
                if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grey: to 8 bits
                    arr = np.asarray(img, dtype=np.float64)
                    top = 65535.0 if img.mode.startswith("I;16") else max(arr.max(), 1.0)
                    img = Image.fromarray(np.clip(arr / top * 255, 0, 255).astype(np.uint8))
                img = img.convert("L" if channels == 1 else "RGB")
                if (img.height, img.width) != size:
                    if image_shape is None:
                        raise DataError(
                            f"{path}: {img.height} x {img.width} pixels, but the first image "
                            f"({files[0].name}) is {size[0]} x {size[1]}; set data.image_shape "
                            "(e.g. [H, W]) to resize every image"
                        )
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except DataError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(f"{path}: cannot read as an image ({first}); expected a PNG or "
                            "JPEG file") from None
        rows.append(arr.reshape(-1) if channels == 1 else arr.transpose(2, 0, 1).reshape(-1))
    return np.stack(rows), channels, size
