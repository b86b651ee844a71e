"""The submission CSV: `id,Encoded_Image`, one row per test image, the image as
base64 of PNG bytes. Streamed row by row (500 GNR638 frames make ~2 GB),
written to a temp file and renamed, validated before it becomes final.
"""
import base64
import csv
import os
import sys
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from srx4.core.errors import UserError
from srx4.image.codec import ImageError, decode_image, image_size, list_images
from srx4.core.progress import progress

HEADER = ("id", "Encoded_Image")
csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))  # rows are megabytes long


class SubmissionError(UserError, ValueError):
    exit_code = 1           # a CSV refused: nothing written
    """A submission that would be wrong; the message names the file or id."""


def read_sample_ids(sample_csv) -> list:
    with open(sample_csv, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != list(HEADER):
            raise SubmissionError(f"{sample_csv}: header {header} is not {','.join(HEADER)}")
        return [row[0] for row in reader if row]


def match_ids(lr_files, sample_ids=None) -> list:
    """[(id, lr_path)] in submission order: the sample's ids when given (matched to LR
    files by name or by stem), else the LR file names."""
    if sample_ids is None:
        return [(p.name, p) for p in lr_files]
    by_name = {p.name: p for p in lr_files}
    by_stem = {p.stem: p for p in lr_files}
    return [(i, by_name.get(i) or by_stem.get(Path(i).stem) or by_stem.get(i)) for i in sample_ids]


def png_for(png_dir: Path, lr_path: Path) -> Path:
    return png_dir / f"{lr_path.stem}.png"


def check_png(data: bytes, name: str, lr_path: Path, scale: int):
    """Decode PNG bytes fully and check the size is scale x the LR's."""
    img = decode_image(data, name)
    lr_w, lr_h = image_size(lr_path)
    if img.shape[:2] != (lr_h * scale, lr_w * scale):
        raise SubmissionError(f"{name}: {img.shape[1]}x{img.shape[0]} is not {scale} x "
                              f"{lr_w}x{lr_h} ({lr_path.name})")


def write_submission(png_dir, lr_dir, out_csv, scale=4, sample_csv=None, allow_missing=False, workers=None):
    """Validate and stream the CSV. Returns (rows written, missing ids)."""
    png_dir, out_csv = Path(png_dir), Path(out_csv)
    lr_files = list_images(lr_dir)
    if not lr_files and not sample_csv:
        raise SubmissionError(f"{lr_dir}: no test LR images")
    entries = match_ids(lr_files, read_sample_ids(sample_csv) if sample_csv else None)
    unmatched = [row_id for row_id, lr_path in entries if lr_path is None]
    if unmatched and not allow_missing:   # refused before anything is written
        raise SubmissionError(f"{sample_csv}: {len(unmatched)} of {len(entries)} ids match no test image in "
                              f"{lr_dir} (by name or stem), e.g. {', '.join(unmatched[:5])}")
    workers = workers or os.cpu_count() or 1

    def load(entry):
        row_id, lr_path = entry
        if lr_path is None:
            return row_id, None, f"{row_id}: no test LR image for this id"
        png = png_for(png_dir, lr_path)
        if not png.is_file():
            return row_id, None, f"{png}: missing prediction for {lr_path.name}"
        data = png.read_bytes()
        try:
            check_png(data, str(png), lr_path, scale)
        except (ImageError, SubmissionError) as err:
            return row_id, None, str(err)
        return row_id, base64.b64encode(data), None

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_csv.parent, prefix=f".{out_csv.name}.", suffix=".tmp")
    rows, missing = 0, []
    try:
        with os.fdopen(fd, "wb") as f, ThreadPoolExecutor(workers) as pool:
            f.write(",".join(HEADER).encode() + b"\n")
            # a sliding window of 2 x workers rows in flight: order kept, memory bounded
            window = deque()
            bar = progress(total=len(entries), desc="CSV", unit="row")
            for entry in entries + [None] * (2 * workers):
                if entry is not None:
                    window.append(pool.submit(load, entry))
                if len(window) < 2 * workers and entry is not None:
                    continue
                if not window:
                    break
                row_id, encoded, problem = window.popleft().result()
                bar.update()
                if problem:
                    if not allow_missing:
                        raise SubmissionError(problem)
                    missing.append(problem)
                    continue
                f.write(csv_field(row_id) + b"," + encoded + b"\n")   # base64 never needs quoting
                rows += 1
            bar.close()
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_csv)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows, missing


def csv_field(text: str) -> bytes:
    """One CSV field, quoted only when it has to be."""
    if any(c in text for c in ',"\r\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text.encode("utf-8")


def iter_rows(csv_path):
    """Yield (id, decoded uint8 image) from a submission CSV, row by row."""
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or list(header[:2]) != list(HEADER):
            raise SubmissionError(f"{csv_path}: header {header} is not {','.join(HEADER)}")
        for line, row in enumerate(reader, start=2):
            if len(row) < 2:
                raise SubmissionError(f"{csv_path}: row {line} has {len(row)} field(s)")
            try:
                data = base64.b64decode(row[1], validate=True)
            except ValueError:
                raise SubmissionError(f"{csv_path}: row {line} ({row[0]}): not base64") from None
            try:
                img = decode_image(data, f"{csv_path} row {line} ({row[0]})")
            except ImageError as err:
                raise SubmissionError(str(err)) from None
            yield row[0], img


def validate_csv(csv_path, lr_dir, scale=4, sample_csv=None) -> int:
    """Check a finished CSV: every test LR has exactly one row, every row decodes
    to scale x its LR. Returns the row count; raises SubmissionError naming the id."""
    entries = match_ids(list_images(lr_dir), read_sample_ids(sample_csv) if sample_csv else None)
    expected = {row_id: lr for row_id, lr in entries}
    seen = set()
    for row_id, img in iter_rows(csv_path):
        if row_id in seen:
            raise SubmissionError(f"{csv_path}: id {row_id} appears twice")
        if row_id not in expected:
            raise SubmissionError(f"{csv_path}: id {row_id} is not a test image")
        seen.add(row_id)
        lr_w, lr_h = image_size(expected[row_id])
        if img.shape[:2] != (lr_h * scale, lr_w * scale):
            raise SubmissionError(f"{csv_path}: id {row_id} is {img.shape[1]}x{img.shape[0]}, "
                                  f"not {scale} x {lr_w}x{lr_h}")
    absent = [i for i in expected if i not in seen]
    if absent:
        raise SubmissionError(f"{csv_path}: {len(absent)} test image(s) have no row, e.g. {absent[0]}")
    return len(seen)
