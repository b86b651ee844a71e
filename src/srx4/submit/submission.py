"""The submission CSV, in one of the two formats Kaggle's SR competitions use:

    png  `id,Encoded_Image`   base64 of the PNG bytes (GNR638)
    rle  `id,filename,rle`    the SRGB cell of srx4.submit.rle ("Super Resolution in
                              Video Games"): run-length + zlib + base64 of the BGR bytes

The format comes from the sample submission (its header and the form of a cell),
else from --format. One row per test image, streamed (500 GNR638 frames make
~2 GB), written to a temp file and renamed, every row decoded back to exactly its
PNG's pixels (rle) or size-checked (png) before the CSV becomes final.
"""
import base64
import csv
import os
import sys
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from srx4.core.errors import UserError
from srx4.image.codec import ImageError, decode_image, image_size, list_images
from srx4.core.progress import progress
from srx4.submit.rle import decode_rle, encode_rle, is_literal

csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))  # rows are megabytes long


class SubmissionError(UserError, ValueError):
    """A submission that would be wrong; the message names the file or id."""
    exit_code = 1           # a CSV refused: nothing written


@dataclass(frozen=True)
class Format:
    name: str
    header: tuple
    literal: bool = True        # rle: cells as the text of a bytes literal, b'...'


PNG = Format("png", ("id", "Encoded_Image"))
RLE = Format("rle", ("id", "filename", "rle"))
FORMATS = {f.name: f for f in (PNG, RLE)}


def format_of_header(header, where) -> Format:
    names = [h.strip() for h in header or []]
    for fmt in FORMATS.values():
        if names[:len(fmt.header)] == list(fmt.header):
            return fmt
    raise SubmissionError(f"{where}: header {header} is none of the known formats: "
                          + "; ".join(",".join(f.header) for f in FORMATS.values()))


def read_sample(sample_csv):
    """(Format, [(id, filename or None)]) of a sample submission: the format from its header,
    and for rle whether its cells are bytes literals (b'...') or bare base64."""
    with open(sample_csv, newline="") as f:
        reader = csv.reader(f)
        fmt = format_of_header(next(reader, None), sample_csv)
        rows = [row for row in reader if row]
    if fmt is RLE:
        cells = [r[2] for r in rows if len(r) > 2 and r[2].strip()]
        fmt = replace(fmt, literal=is_literal(cells[0]) if cells else True)
        return fmt, [(r[0], r[1] if len(r) > 1 else None) for r in rows]
    return fmt, [(r[0], None) for r in rows]


def read_sample_ids(sample_csv) -> list:
    return [i for i, _ in read_sample(sample_csv)[1]]


def match_ids(lr_files, sample=None) -> list:
    """[(id, filename, lr_path)] in submission order: the sample's (id, filename) rows when
    given, each matched to an LR file by its filename, else its id (by name or by stem);
    without a sample, ids are the LR file names (png) and filenames the same."""
    if sample is None:
        return [(p.name, p.name, p) for p in lr_files]
    by_name = {p.name: p for p in lr_files}
    by_stem = {p.stem: p for p in lr_files}

    def find(key):
        return None if not key else by_name.get(key) or by_stem.get(Path(key).stem) or by_stem.get(key)
    return [(i, name, find(name) or find(i)) for i, name in sample]


def choose_format(sample_csv=None, wanted: str = "auto"):
    """(Format, sample rows or None): the sample's format (a --format that disagrees is
    refused), else `wanted` (auto = png)."""
    if sample_csv:
        fmt, rows = read_sample(sample_csv)
        if wanted not in ("auto", fmt.name):
            raise SubmissionError(f"--format {wanted}, but {sample_csv} is a {fmt.name} submission "
                                  f"({','.join(fmt.header)})")
        return fmt, rows
    return FORMATS["png" if wanted == "auto" else wanted], None


def rle_cell(rgb: np.ndarray, name: str, fmt: Format) -> bytes:
    """A decoded PNG, uint8 (H, W, 3) RGB -> the rle cell, checked by decoding it back to
    exactly these pixels."""
    cell = encode_rle(rgb, fmt.literal)
    if not np.array_equal(decode_rle(cell, *rgb.shape[:2]), rgb):
        raise SubmissionError(f"{name}: its rle cell does not decode back to its pixels")
    return cell.encode("ascii")


def png_for(png_dir: Path, lr_path: Path) -> Path:
    return png_dir / f"{lr_path.stem}.png"


def check_png(data: bytes, name: str, lr_path: Path, scale: int) -> np.ndarray:
    """Decode PNG bytes fully, check the size is scale x the LR's; the RGB image."""
    img = decode_image(data, name)
    lr_w, lr_h = image_size(lr_path)
    if img.shape[:2] != (lr_h * scale, lr_w * scale):
        raise SubmissionError(f"{name}: {img.shape[1]}x{img.shape[0]} is not {scale} x "
                              f"{lr_w}x{lr_h} ({lr_path.name})")
    return img


def write_submission(png_dir, lr_dir, out_csv, scale=4, sample_csv=None, allow_missing=False, workers=None,
                     fmt: str = "auto", quiet: bool = False):
    """Validate and stream the CSV in the sample's format (else `fmt`). Returns (rows
    written, missing ids)."""
    png_dir, out_csv = Path(png_dir), Path(out_csv)
    lr_files = list_images(lr_dir)
    if not lr_files and not sample_csv:
        raise SubmissionError(f"{lr_dir}: no test LR images")
    form, sample = choose_format(sample_csv, fmt)
    entries = match_ids(lr_files, sample)
    unmatched = [row_id for row_id, _, lr_path in entries if lr_path is None]
    if unmatched and not allow_missing:   # refused before anything is written
        raise SubmissionError(f"{sample_csv}: {len(unmatched)} of {len(entries)} ids match no test image in "
                              f"{lr_dir} (by name or stem), e.g. {', '.join(unmatched[:5])}")
    workers = workers or os.cpu_count() or 1

    def load(entry):
        row_id, filename, lr_path = entry
        if lr_path is None:
            return row_id, None, f"{row_id}: no test LR image for this id"
        png = png_for(png_dir, lr_path)
        if not png.is_file():
            return row_id, None, f"{png}: missing prediction for {lr_path.name}"
        data = png.read_bytes()
        try:
            rgb = check_png(data, str(png), lr_path, scale)
            if form.name == "rle":
                return row_id, csv_field(filename or lr_path.name) + b"," + rle_cell(rgb, str(png), form), None
        except (ImageError, SubmissionError) as err:
            return row_id, None, str(err)
        return row_id, base64.b64encode(data), None

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_csv.parent, prefix=f".{out_csv.name}.", suffix=".tmp")
    rows, missing = 0, []
    try:
        with os.fdopen(fd, "wb") as f, ThreadPoolExecutor(workers) as pool:
            f.write(",".join(form.header).encode() + b"\n")
            # a sliding window of 2 x workers rows in flight: order kept, memory bounded
            window = deque()
            bar = progress(total=len(entries), desc="CSV", unit="row", quiet=quiet)
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


def iter_rows(csv_path, size_of=None):
    """Yield (id, filename or None, decoded uint8 RGB image) from a submission CSV of either
    format, row by row. An rle cell holds no size: `size_of(id, filename)` -> (height, width)."""
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        fmt = format_of_header(next(reader, None), csv_path)
        for line, row in enumerate(reader, start=2):
            if len(row) < len(fmt.header):
                raise SubmissionError(f"{csv_path}: row {line} has {len(row)} field(s), not {len(fmt.header)}")
            if fmt.name == "rle":
                if size_of is None:
                    raise SubmissionError(f"{csv_path}: an rle submission needs the test images' sizes")
                try:
                    yield row[0], row[1], decode_rle(row[2], *size_of(row[0], row[1]))
                except ValueError as err:
                    raise SubmissionError(f"{csv_path}: row {line} ({row[0]}, {row[1]}): {err}") from None
                continue
            try:
                data = base64.b64decode(row[1], validate=True)
            except ValueError:
                raise SubmissionError(f"{csv_path}: row {line} ({row[0]}): not base64") from None
            try:
                img = decode_image(data, f"{csv_path} row {line} ({row[0]})")
            except ImageError as err:
                raise SubmissionError(str(err)) from None
            yield row[0], None, img


def validate_csv(csv_path, lr_dir, scale=4, sample_csv=None) -> int:
    """Check a finished CSV: every test LR has exactly one row, every row decodes
    to scale x its LR. Returns the row count; raises SubmissionError naming the id."""
    entries = match_ids(list_images(lr_dir), read_sample(sample_csv)[1] if sample_csv else None)
    expected = {row_id: lr for row_id, _, lr in entries}
    by_filename = {name: lr for _, name, lr in entries if name}

    def size_of(row_id, filename):
        lr = expected.get(row_id) or by_filename.get(filename)
        if lr is None:
            raise ValueError(f"id {row_id} is not a test image")
        lr_w, lr_h = image_size(lr)
        return lr_h * scale, lr_w * scale

    seen = set()
    for row_id, _, img in iter_rows(csv_path, size_of):
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
