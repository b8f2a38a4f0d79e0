"""Read a written figure back: decode the PNG and check it holds a picture, not just a PNG header."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def decoded_png(path: str | Path, min_side: int = 50) -> np.ndarray:
    """The image at ``path``, decoded by matplotlib: (H, W, 3 or 4) with both sides at least
    ``min_side`` pixels and more than one colour (a blank or truncated file fails)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(Path(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    assert min(img.shape[:2]) >= min_side, img.shape
    rgb = img[..., :3].reshape(-1, 3)
    assert (rgb != rgb[0]).any(axis=1).mean() > 0.001, f"{path} is (nearly) one colour"
    return img
