"""SRGB's rle submission cell and CSV ("Super Resolution in Video Games"): real images
encoded here and decoded by a reader written in this file from the format's description
alone (BGR bytes, (value, count) pairs with runs cut at 255, zlib, base64, a bytes
literal), so the encoder is not checked against itself."""
import base64
import csv
import zlib

import numpy as np
import pytest

from conftest import BENCHMARKS, photo_crops, run_script
from srx4.image.codec import read_image, write_png
from srx4.image.resize import imresize
from srx4.submit.rle import decode_rle, encode_rle, run_pairs
from srx4.submit.submission import SubmissionError, iter_rows, validate_csv, write_submission


def reference_decode(cell: str, height: int, width: int) -> np.ndarray:
    """The description, read plainly: strip b'...', base64, zlib, then value/count pairs one
    by one into BGR bytes, reshaped and turned to RGB."""
    if cell.startswith("b'") and cell.endswith("'"):
        cell = cell[2:-1]
    pairs = zlib.decompress(base64.b64decode(cell))
    out = bytearray()
    for k in range(0, len(pairs), 2):
        value, count = pairs[k], pairs[k + 1]
        assert 1 <= count <= 255
        out += bytes([value]) * count
    bgr = np.frombuffer(bytes(out), dtype=np.uint8).reshape(height, width, 3)
    return bgr[:, :, ::-1]


def real_images():
    """A photo crop, a Set14 image, and a photo with a flat band 600 px wide (runs far
    longer than 255 values, as game frames' flat UI regions have)."""
    banded = photo_crops(1, 96)[0].copy()
    banded = np.concatenate([banded, np.full((96, 200, 3), (12, 200, 77), np.uint8)], axis=1)
    return [photo_crops(2, 64)[1], read_image(BENCHMARKS / "Set14" / "HR" / "comic.png"), banded]


def test_cells_decode_to_the_pixels_by_an_independent_reader():
    for img in real_images():
        h, w = img.shape[:2]
        for literal in (True, False):
            cell = encode_rle(img, literal)
            assert cell.startswith("b'") == literal and cell.endswith("'") == literal
            assert base64.b64decode(cell.strip("b'"))[:2] == b"\x78\xda"        # zlib's header: best level
            assert np.array_equal(reference_decode(cell, h, w), img)
            assert np.array_equal(decode_rle(cell, h, w), img)
        assert zlib.decompress(base64.b64decode(encode_rle(img, False))) == run_pairs(img[:, :, ::-1])


def test_runs_are_cut_at_255():
    for length, counts in ((1, [1]), (255, [255]), (256, [255, 1]), (510, [255, 255]), (511, [255, 255, 1])):
        flat = np.concatenate([np.full(length, 7, np.uint8), [9]])
        pairs = run_pairs(flat)
        assert list(pairs[0::2]) == [7] * len(counts) + [9]
        assert list(pairs[1::2]) == counts + [1]


def test_bad_cells_are_refused_with_the_reason():
    img = photo_crops(1, 32)[0]
    cell = encode_rle(img)
    with pytest.raises(ValueError, match="not 16 x 32 x 3"):
        decode_rle(cell, 16, 32)
    with pytest.raises(ValueError, match="not base64 of zlib"):
        decode_rle("b'@@@'", 32, 32)
    with pytest.raises(ValueError, match="odd number"):
        decode_rle(base64.b64encode(zlib.compress(b"\x01\x02\x03")).decode(), 1, 1)
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        encode_rle(img[:, :, 0])


@pytest.fixture
def srgb_like(tmp_path):
    """lr/ of 16x16 crops, png/ their x4 'predictions', and sample submissions in both cell forms."""
    for k, hr in enumerate(photo_crops(3, 64)):
        write_png(tmp_path / "lr" / f"{k:05d}.png", imresize(hr, 1 / 4))
        write_png(tmp_path / "png" / f"{k:05d}.png", hr)
    for name, cell in (("sample_literal.csv", "b'eJwDAAAAAAE='"), ("sample_bare.csv", "eJwDAAAAAAE=")):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([("id", "filename", "rle"), (0, "00002.png", cell), (1, "00000.png", cell),
                                     (2, "00001.png", cell)])
    return tmp_path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_sample_chooses_the_format_the_form_and_the_order(srgb_like):
    for sample, literal in (("sample_literal.csv", True), ("sample_bare.csv", False)):
        out = srgb_like / f"out_{sample}"
        assert write_submission(srgb_like / "png", srgb_like / "lr", out, sample_csv=srgb_like / sample)[0] == 3
        rows = read_csv(out)
        assert rows[0] == ["id", "filename", "rle"]
        assert [r[:2] for r in rows[1:]] == [["0", "00002.png"], ["1", "00000.png"], ["2", "00001.png"]]
        for _, filename, cell in rows[1:]:
            assert cell.startswith("b'") == literal
            assert np.array_equal(reference_decode(cell, 64, 64), read_image(srgb_like / "png" / filename))
        assert validate_csv(out, srgb_like / "lr", sample_csv=srgb_like / sample) == 3
    with pytest.raises(SubmissionError, match="--format png, but .* is a rle submission"):
        write_submission(srgb_like / "png", srgb_like / "lr", srgb_like / "x.csv", fmt="png",
                         sample_csv=srgb_like / "sample_literal.csv")
    plain = srgb_like / "plain.csv"                                  # no sample: --format rle
    write_submission(srgb_like / "png", srgb_like / "lr", plain, fmt="rle")
    assert [r[:2] for r in read_csv(plain)[1:]] == [["00000.png", "00000.png"], ["00001.png", "00001.png"],
                                                    ["00002.png", "00002.png"]]
    assert validate_csv(plain, srgb_like / "lr") == 3


def test_iter_rows_reads_an_rle_csv_back_with_the_sizes_it_asks_for(srgb_like):
    """iter_rows on an rle CSV written from a sample: (id, filename, pixels) per row in the
    sample's order, each cell decoded at the size that size_of(id, filename) gives."""
    out = srgb_like / "s.csv"
    write_submission(srgb_like / "png", srgb_like / "lr", out, sample_csv=srgb_like / "sample_bare.csv")
    asked = []

    def size_of(row_id, filename):
        asked.append((row_id, filename))
        return read_image(srgb_like / "png" / filename).shape[:2]
    rows = list(iter_rows(out, size_of))
    assert asked == [("0", "00002.png"), ("1", "00000.png"), ("2", "00001.png")]
    assert [(r[0], r[1]) for r in rows] == asked
    for _, filename, pixels in rows:
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, read_image(srgb_like / "png" / filename))


def test_a_broken_rle_row_is_named(srgb_like):
    out = srgb_like / "s.csv"
    write_submission(srgb_like / "png", srgb_like / "lr", out, sample_csv=srgb_like / "sample_literal.csv")
    rows = read_csv(out)
    rows[2][2] = encode_rle(photo_crops(1, 32)[0])                    # a 32x32 image where 64x64 belongs
    with open(out, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(SubmissionError, match=r"row 3 \(1, 00000.png\): 3072 values, not 64 x 64 x 3"):
        validate_csv(out, srgb_like / "lr", sample_csv=srgb_like / "sample_literal.csv")
    with pytest.raises(SubmissionError, match="needs the test images' sizes"):
        list(iter_rows(out))


def test_cli_writes_rle_and_score_reads_it_like_the_pngs(srgb_like):
    """make_submission.py --format rle, then score.py on the CSV and on the PNG folder: the same figures."""
    hr = srgb_like / "hr"
    hr.mkdir()
    for k, img in enumerate(photo_crops(3, 64)):
        write_png(hr / f"{k:05d}.png", img)
    run_script("predict.py", "--model", "bicubic", "--input", srgb_like / "lr", "--output", srgb_like / "pred",
               work=srgb_like)
    done = run_script("make_submission.py", "--input", srgb_like / "pred", "--lr-dir", srgb_like / "lr", "--output",
                      srgb_like / "sub.csv", "--format", "rle", "--sample", "none", work=srgb_like)
    assert "(id,filename,rle): 3 rows" in done.stdout
    (srgb_like / "data").mkdir()
    (srgb_like / "data" / "competition.txt").write_text("super-resolution-in-video-games\n")  # as download.py writes
    scores = {}
    for source in ("sub.csv", "pred"):
        done = run_script("score.py", srgb_like / source, "--hr", hr, "--lr", srgb_like / "lr", "--output",
                          srgb_like / f"{source}_scores.csv", work=srgb_like)
        scores[source] = read_csv(srgb_like / f"{source}_scores.csv")
        psnr = np.mean([float(r[1]) for r in scores[source][1:]])            # the psnr column
        assert (f"leaderboard figure (psnr; the leaderboard of super-resolution-in-video-games): {psnr:.4f}"
                in done.stdout)
    assert scores["sub.csv"] == scores["pred"] and len(scores["pred"]) == 4
    assert scores["pred"][0][1] == "psnr"
    done = run_script("score.py", srgb_like / "pred", "--hr", hr, "--metric", "score", "--output",
                      srgb_like / "again.csv", work=srgb_like)
    assert "leaderboard figure (score; --metric)" in done.stdout
