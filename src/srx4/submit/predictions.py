"""Reading predictions back for scoring (score.py): a PNG folder or a submission CSV of
either format, each prediction with its ground truth, its LR and the LR's bicubic
upscale (the baseline line), decoded one image ahead in a thread.

    count, items = predictions(source, hr_dir)
    for name, sr, hr, lr, bicubic, scale in load_all(items, hr_dir, lr_dir, 4): ...
"""
import queue
import threading
from pathlib import Path

from srx4.image.codec import image_size, list_images, read_image
from srx4.image.scoring import bicubic_prediction
from srx4.submit import submission_log
from srx4.submit.submission import iter_rows


def predictions(source: Path, hr_dir: Path):
    """(count, iterator of (name, uint8 image)) from a PNG folder or a CSV of either format
    (an rle cell's size is its HR image's; a row's name is its filename, else its id)."""
    if source.is_dir():
        files = list_images(source)
        return len(files), ((path.name, read_image(path)) for path in files)
    with open(source, "rb") as f:              # one row per line (base64 has no line breaks)
        count = max(0, sum(1 for _ in f) - 1)

    def size_of(row_id, filename):
        width, height = image_size(find_hr(hr_dir, filename or row_id))
        return height, width
    return count, ((filename or row_id, img) for row_id, filename, img in iter_rows(source, size_of))


def find_hr(hr_dir: Path, name: str) -> Path:
    for candidate in [hr_dir / name] + sorted(hr_dir.glob(Path(name).stem + ".*")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{hr_dir}: no HR image for {name}")


def load_all(items, hr_dir: Path, lr_dir: Path, default_scale: int):
    """Yield (name, sr, hr, lr or None, bicubic or None, scale), decoded in a background thread one
    image ahead, so decoding overlaps the scoring of the previous image."""
    def load(name, sr):
        hr_path = find_hr(hr_dir, name)
        hr = read_image(hr_path, keep_grey=True)
        lr_path = lr_dir / hr_path.name
        if not lr_path.is_file():
            return name, sr, hr, None, None, default_scale
        lr = read_image(lr_path, keep_grey=True)
        scale = hr.shape[0] // lr.shape[0]
        return name, sr, hr, lr, bicubic_prediction(lr, scale), scale

    ahead = queue.Queue(maxsize=2)

    def produce():
        try:
            for name, sr in items:
                ahead.put(load(name, sr))
        except BaseException as err:         # handed to the consumer, which re-raises it
            ahead.put(err)
            return
        ahead.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while (item := ahead.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def lr_dir_for(source: Path, hr_dir: Path):
    """The LR folder for the bicubic line when --lr is not given: lr/ beside the HR, else the
    one predict.py recorded in the PNG folder (or, for a CSV, in the folder it was made from)."""
    if (hr_dir.parent / "lr").is_dir():
        return hr_dir.parent / "lr"
    made = None if source.is_dir() else submission_log.entry_for(source)
    png_dir = source if source.is_dir() else (Path(made["png_dir"]) if made and made.get("png_dir") else None)
    recorded = submission_log.lr_dir_of(png_dir) if png_dir else None
    return recorded if recorded and recorded.is_dir() else None
