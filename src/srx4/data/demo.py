"""The bundled demo competition, made from the colour photographs that
scikit-image ships inside its package (no download).

Out: DIR/train/{lr,hr}/*.png and DIR/test/{lr,hr}/*.png, HR cropped to a
multiple of 4 and LR made by MATLAB bicubic x1/4 of the whole photo. Training
photos are cut into aligned sub-images named SOURCE_sNNN.png, so a seeded
split keeps each photo (and the motorcycle stereo pair, one "source") on one
side. Two photos are held out whole as the demo test set, HR kept for scoring.
"""
from pathlib import Path

import numpy as np

from srx4.image.codec import write_png
from srx4.image.resize import imresize, modcrop

TRAIN_PHOTOS = ["astronaut", "rocket", "hubble_deep_field", "immunohistochemistry",
                "motorcycle_left", "motorcycle_right", "retina"]
TEST_PHOTOS = ["chelsea", "coffee"]
SUB_IMAGE_HR = 192          # sub-image side (HR pixels); LR side = 48
MAX_SUB_IMAGES = 12         # per photo, evenly spread, so no photo dominates


def load_photo(name: str) -> np.ndarray:
    from skimage import data
    if name.startswith("motorcycle"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


def sub_image_boxes(h: int, w: int, size: int, limit: int):
    """Top-left corners (multiples of 4) of non-overlapping size x size boxes, at most `limit`."""
    boxes = [(y, x) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]
    if len(boxes) > limit:
        boxes = [boxes[i] for i in np.linspace(0, len(boxes) - 1, limit).round().astype(int)]
    return boxes


def build_demo(out_dir, scale: int = 4) -> Path:
    """Write the demo data set (skips work already done). Returns out_dir."""
    out_dir = Path(out_dir)
    if (out_dir / "test" / "hr" / f"{TEST_PHOTOS[-1]}.png").is_file():
        return out_dir
    for name in TRAIN_PHOTOS + TEST_PHOTOS:
        hr = modcrop(load_photo(name), scale)
        lr = imresize(hr, 1 / scale)
        if name in TEST_PHOTOS:
            write_png(out_dir / "test" / "hr" / f"{name}.png", hr)
            write_png(out_dir / "test" / "lr" / f"{name}.png", lr)
            continue
        source = "motorcycle" if name.startswith("motorcycle") else name
        offset = 100 if name.endswith("right") else 0       # the stereo pair: one source, distinct names
        for k, (y, x) in enumerate(sub_image_boxes(*hr.shape[:2], SUB_IMAGE_HR, MAX_SUB_IMAGES)):
            stem = f"{source}_s{offset + k + 1:03d}.png"
            write_png(out_dir / "train" / "hr" / stem, hr[y:y + SUB_IMAGE_HR, x:x + SUB_IMAGE_HR])
            ly, lx, ls = y // scale, x // scale, SUB_IMAGE_HR // scale
            write_png(out_dir / "train" / "lr" / stem, lr[ly:ly + ls, lx:lx + ls])
    return out_dir
