"""Make LR/HR training pairs from HR-only photos (DIV2K, T91, BSD200, your own).

In:  --hr a folder of HR images (any mode; grey becomes RGB).
Out: OUT/hr/NAME.png (cropped to a multiple of the scale) and OUT/lr/NAME.png
     (MATLAB bicubic x1/scale): the layout train.py reads. With --crop-size and
     --step, aligned sub-images NAME_sNNN.png instead (as the DIV2K scripts do),
     which train.py's split keeps together per source photo.

    python src/prepare_data.py --hr ../shared/train/T91 --out data/train
    python src/prepare_data.py --hr DIV2K_train_HR --out data/div2k --crop-size 480 --step 240

Re-running skips sources whose outputs already exist; unreadable files and
photos smaller than --crop-size are named, counted and skipped.
"""
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from srx4.core.errors import MissingData
from srx4.core.cli import option, parse_config, run_main
from srx4.image.codec import ImageError, list_images, read_image, write_png
from srx4.image.resize import imresize, modcrop
from srx4.core.progress import progress


@dataclass
class PrepareConfig:
    hr: str = option("", "folder of HR images")
    out: str = option("data/train", "output folder (gets hr/ and lr/)")
    scale: int = option(4, "downscaling factor")
    crop_size: int = option(0, "HR sub-image side (0 = whole images); a multiple of the scale")
    step: int = option(0, "stride between sub-images (default: crop size)")
    workers: int = option(0, "processes (0 = all cores)")
    quiet: bool = option(False, "no progress bars or progress lines")


def boxes(h, w, size, step, scale):
    """Top-left corners (multiples of scale) covering the image, the last row/column at the edge."""
    step = max(scale, step - step % scale)

    def starts(n):
        s = list(range(0, n - size + 1, step))
        if s and s[-1] != n - size:
            s.append(n - size)
        return s
    return [(y, x) for y in starts(h) for x in starts(w)]


def prepare_one(job):
    """Write the pairs of one HR photo. Returns (name, pairs written, error or None, too small)."""
    path, out, scale, size, step = job
    path, out = Path(path), Path(out)
    first = out / "lr" / (f"{path.stem}_s001.png" if size else f"{path.stem}.png")
    if first.is_file():
        return path.name, 0, None, False
    try:
        hr = modcrop(read_image(path), scale)
    except ImageError as err:
        return path.name, 0, str(err), False
    if size and min(hr.shape[:2]) < size:
        return f"{path} ({hr.shape[1]}x{hr.shape[0]})", 0, None, True
    lr = imresize(hr, 1 / scale)  # the whole photo, so sub-images have no resize border effects
    if not size:
        items = [(path.stem, hr, lr)]
    else:
        items = [(f"{path.stem}_s{k + 1:03d}", hr[y:y + size, x:x + size],
                  lr[y // scale:(y + size) // scale, x // scale:(x + size) // scale])
                 for k, (y, x) in enumerate(boxes(*hr.shape[:2], size, step, scale))]
    for name, hr_piece, lr_piece in reversed(items):  # the _s001 marker file is written last
        write_png(out / "hr" / f"{name}.png", hr_piece)
        write_png(out / "lr" / f"{name}.png", lr_piece)
    return path.name, len(items), None, False


def main(argv=None):
    config = parse_config(PrepareConfig, "Make LR/HR pairs from HR images.", argv)
    hr_dir = Path(config.hr)
    if not hr_dir.is_dir():
        raise MissingData(f"{hr_dir}: HR folder not found")
    size = config.crop_size - config.crop_size % config.scale
    jobs = [(str(p), config.out, config.scale, size, config.step or size) for p in list_images(hr_dir)]
    written, failed, small = 0, [], []
    with ProcessPoolExecutor(config.workers or None) as pool:
        for name, count, error, too_small in progress(pool.map(prepare_one, jobs, chunksize=4), total=len(jobs),
                                                       desc="prepare", unit="img", quiet=config.quiet):
            written += count
            if error:
                failed.append(error)
                print(f"skipped: {error}", file=sys.stderr)
            if too_small:
                small.append(name)
                print(f"skipped: {name} is smaller than --crop-size {size}", file=sys.stderr)
    print(f"{len(jobs)} HR images -> {written} new pairs in {config.out}/{{hr,lr}}"
          + (f"; {len(failed)} unreadable" if failed else "")
          + (f"; {len(small)} smaller than --crop-size {size} (named above)" if small else ""))
    return 1 if failed and len(failed) == len(jobs) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
